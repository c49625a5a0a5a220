"""A tiny TCP proxy on a loopback port, to cut a service off and bring it back.

``TcpProxy(upstream_port).open()`` listens on ``127.0.0.1:port`` and forwards every
connection to ``127.0.0.1:upstream_port`` (one thread per direction). ``close()`` is
the outage: the listener goes away (new connections are refused) and every live
connection is cut, pooled keep-alive ones included. ``open()`` again listens on the same
port: the service behind it, with its state, is reachable again.
"""

from __future__ import annotations

import socket
import threading

HOST = "127.0.0.1"
CHUNK = 1 << 16


class TcpProxy:
    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def open(self) -> TcpProxy:
        """Listen (on the same port as before, if any) and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below (Linux)
            listener.close()
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            _cut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=5)
            except OSError:
                _cut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._live.update((client, upstream))
            threading.Thread(target=self._forward, args=(client, upstream), daemon=True).start()

    def _forward(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions of one connection (the answers in a second thread); then close."""
        answers = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        answers.start()
        _pump(client, upstream)
        answers.join()
        with self._lock:
            self._live.difference_update((client, upstream))
        _cut(client)
        _cut(upstream)

    def __enter__(self) -> TcpProxy:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy one direction until EOF, then half-close; on an error cut both sides."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        _cut(src)
        _cut(dst)


def _cut(sock: socket.socket) -> None:
    """Shut down and close, ignoring a socket already gone."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
