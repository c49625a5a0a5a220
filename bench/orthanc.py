"""Start a throw-away Orthanc with the DICOMweb plugin, listening on 127.0.0.1 only.

Used by the benchmark (reference numbers) and, later, by interoperability tests::

    from bench.orthanc import start_orthanc

    with start_orthanc(8043) as orthanc:          # temp folder, removed at stop()
        requests.get(orthanc.dicomweb_url + "/studies")

CLI: ``python -m bench.orthanc [--port 8043] [--workdir DIR]`` starts it, prints its URL
and pid, and keeps it running until Ctrl-C / SIGTERM.

Orthanc 1.10 has no option for the HTTP bind address (it always binds 0.0.0.0), so the
process is started with a tiny ``LD_PRELOAD`` shim, compiled on the fly with ``cc``, that
rewrites wildcard ``bind()`` addresses to the loopback one. After start-up the listening
sockets are checked with psutil and the start fails if any is not on loopback.
Environment overrides: ``ORTHANC_BIN`` (binary), ``ORTHANC_DICOMWEB_PLUGIN`` (plugin .so).

``start_orthanc(..., extra={...})`` merges more configuration into the generated one (the
interoperability tests add ``DicomWeb.Servers`` and users): a dict value is merged one level
deep, so ``{"DicomWeb": {"Servers": ...}}`` keeps the DICOMweb root. With
``AuthenticationEnabled`` the first ``RegisteredUsers`` entry becomes ``OrthancProcess.auth``.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

HOST = "127.0.0.1"
DEFAULT_PORT = 8043
LOOPBACK_IPS = ("127.0.0.1", "::1")
BINARY_CANDIDATES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_PATTERNS = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/libOrthancDicomWeb.so*",
    "/usr/local/share/orthanc/plugins/libOrthancDicomWeb.so",
)

# LD_PRELOAD shim: turn bind(INADDR_ANY / in6addr_any) into bind(loopback).
SHIM_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind = 0;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in v4;
        memcpy(&v4, addr, sizeof v4);
        if (v4.sin_addr.s_addr == htonl(INADDR_ANY)) v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real_bind(fd, (const struct sockaddr *)&v4, sizeof v4);
    }
    if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 v6;
        memcpy(&v6, addr, sizeof v6);
        if (IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr)) v6.sin6_addr = in6addr_loopback;
        return real_bind(fd, (const struct sockaddr *)&v6, sizeof v6);
    }
    return real_bind(fd, addr, len);
}
"""


class OrthancError(RuntimeError):
    """Orthanc could not be found, started, or confined to loopback."""


def find_orthanc_binary() -> str:
    """Return the Orthanc executable: $ORTHANC_BIN, then PATH, then Debian's location."""
    candidates = [os.environ.get("ORTHANC_BIN"), shutil.which("Orthanc"), *BINARY_CANDIDATES]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise OrthancError("Orthanc binary not found (apt-get install orthanc, or set ORTHANC_BIN)")


def find_dicomweb_plugin() -> str:
    """Return the DICOMweb plugin .so: $ORTHANC_DICOMWEB_PLUGIN, then Debian's locations."""
    override = os.environ.get("ORTHANC_DICOMWEB_PLUGIN")
    if override:
        if not os.path.isfile(override):
            raise OrthancError(f"ORTHANC_DICOMWEB_PLUGIN={override} is not a file")
        return override
    for pattern in PLUGIN_PATTERNS:
        matches = sorted(glob.glob(pattern))
        if matches:
            return matches[0]
    raise OrthancError(
        "DICOMweb plugin not found (apt-get install orthanc-dicomweb, "
        "or set ORTHANC_DICOMWEB_PLUGIN)"
    )


def build_config(port: int, workdir: Path, plugin: str, extra: dict | None = None) -> dict:
    """Orthanc configuration: everything in ``workdir``, HTTP only, no auth, no DICOM port;
    ``extra`` merged over it (dict values one level deep)."""
    config = {
        "Name": f"bench-orthanc-{port}",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": port,
        "HttpServerEnabled": True,
        "HttpCompressionEnabled": False,  # same wire format as our server: no gzip
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SaveJobs": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
    }
    for key, value in (extra or {}).items():
        base = config.get(key)
        config[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) \
            else value
    return config


def config_auth(config: dict) -> tuple[str, str] | None:
    """(user, password) to call an Orthanc with this configuration, if it asks for one."""
    users = config.get("RegisteredUsers") or {}
    if not config.get("AuthenticationEnabled") or not users:
        return None
    user = next(iter(users))
    return user, users[user]


def build_loopback_shim(workdir: Path) -> Path:
    """Compile the bind() shim into ``workdir`` and return the path of the .so."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OrthancError("a C compiler (cc) is needed to keep Orthanc on 127.0.0.1")
    source, library = workdir / "loopback_bind.c", workdir / "loopback_bind.so"
    source.write_text(SHIM_SOURCE)
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"]
    subprocess.run(command, check=True, capture_output=True)
    return library


def port_is_busy(port: int) -> bool:
    """True when something already accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every TCP socket that process ``pid`` listens on."""
    connections = psutil.Process(pid).net_connections(kind="inet")
    return [tuple(c.laddr) for c in connections if c.status == psutil.CONN_LISTEN]


class OrthancProcess:
    """A running Orthanc; ``stop()`` (or leaving the ``with`` block) ends it and cleans up."""

    def __init__(self, popen: subprocess.Popen, port: int, workdir: Path, owned: bool,
                 auth: tuple[str, str] | None = None):
        self.popen = popen
        self.port = port
        self.workdir = workdir
        self.auth = auth  # HTTP Basic credentials for its REST API, None without authentication
        self.log_path = workdir / "orthanc.log"
        self._owned_workdir = owned  # remove the folder at stop() when we created it
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        """Root of Orthanc's REST API, e.g. ``http://127.0.0.1:8043``."""
        return f"http://{HOST}:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root, e.g. ``http://127.0.0.1:8043/dicom-web`` (no trailing slash)."""
        return f"{self.url}/dicom-web"

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of Orthanc's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; idempotent."""
        with self._lock:
            if self.running():
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait()
            if self._owned_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self._owned_workdir = False

    def __enter__(self) -> OrthancProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _wait_until_ready(orthanc: OrthancProcess, timeout: float) -> None:
    """Poll ``GET /system`` until it answers 200; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not orthanc.running():
            raise OrthancError(f"Orthanc exited at start-up:\n{orthanc.log_tail()}")
        try:
            answer = requests.get(orthanc.url + "/system", auth=orthanc.auth, timeout=2)
            if answer.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise OrthancError(f"Orthanc did not answer /system within {timeout}s:\n{orthanc.log_tail()}")


def _check_loopback(orthanc: OrthancProcess) -> None:
    """Fail if Orthanc listens on anything but loopback (the shim did not apply)."""
    exposed = [a for a in listening_addresses(orthanc.pid) if a[0] not in LOOPBACK_IPS]
    if exposed:
        raise OrthancError(f"Orthanc listens outside loopback: {exposed}")


def _spawn(port: int, workdir: Path, config: dict) -> subprocess.Popen:
    """Write the config, compile the shim and launch Orthanc (log in workdir/orthanc.log)."""
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    env = dict(os.environ)
    preload = [str(build_loopback_shim(workdir)), env.get("LD_PRELOAD", "")]
    env["LD_PRELOAD"] = " ".join(p for p in preload if p)
    with open(workdir / "orthanc.log", "wb") as log:
        return subprocess.Popen(
            [find_orthanc_binary(), str(config_path)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C aimed at the caller does not reach Orthanc
        )


def start_orthanc(
    port: int = DEFAULT_PORT, workdir: str | Path | None = None, timeout: float = 60.0,
    extra: dict | None = None,
) -> OrthancProcess:
    """Start Orthanc + DICOMweb on 127.0.0.1:``port``, data in ``workdir`` (temp if None).

    Returns once ``GET /system`` answers. A temp folder created here is deleted by
    ``stop()``; a given ``workdir`` is kept (and reused: its storage persists). ``extra``:
    more configuration (see ``build_config``).
    """
    if port_is_busy(port):
        raise OrthancError(f"port {port} on {HOST} is already in use")
    plugin = find_dicomweb_plugin()  # before a temp folder exists that could be left behind
    find_orthanc_binary()
    owned = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="bench-orthanc-") if owned else workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config = build_config(port, folder, plugin, extra)
    orthanc = OrthancProcess(_spawn(port, folder, config), port, folder, owned,
                             config_auth(config))
    atexit.register(orthanc.stop)  # never leave an orphan Orthanc behind
    try:
        _wait_until_ready(orthanc, timeout)
        _check_loopback(orthanc)
    except BaseException:
        orthanc.stop()
        raise
    return orthanc


def _raise_interrupt(*_args) -> None:
    """SIGTERM handler: unwind like Ctrl-C so the ``with`` block stops Orthanc."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """CLI: start Orthanc, print where it is, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (8043)")
    parser.add_argument("--workdir", help="storage/index folder (default: temp, removed)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with start_orthanc(args.port, args.workdir) as orthanc:
        print(f"Orthanc pid={orthanc.pid} url={orthanc.url} dicomweb={orthanc.dicomweb_url}")
        print(f"workdir={orthanc.workdir} (Ctrl-C to stop)", flush=True)
        try:
            while orthanc.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    print("Orthanc stopped")


if __name__ == "__main__":
    main()
