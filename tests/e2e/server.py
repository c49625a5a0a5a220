"""Run the real deployment shape: ``dicomweb-server`` (gunicorn) in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.s3server import free_port


class Server:
    """A gunicorn server on a free loopback port with its own data folder."""

    module = "app.cli"  # run as ``python -m``; tests/e2e/jobs_app.py adds test job types

    def __init__(self, workdir: Path, *, workers: int = 2, threads: int = 4,
                 extra: dict[str, object] | None = None, pin_host: bool = False,
                 port: int | None = None) -> None:
        self.workdir = workdir
        # ``port`` chosen beforehand (free_port()) when the configuration must name it, e.g.
        # a server listed in its own DicomWeb.Servers.
        self.port = port or free_port()
        config = {"StorageDirectory": str(workdir / "storage"),
                  "IndexDirectory": str(workdir / "index"), "HttpPort": self.port}
        if pin_host:
            # dicomweb-client sends ``Host`` without the port; a deployment behind such
            # clients pins the public host in the settings (reference §4.9).
            config["DicomWeb"] = {"Host": f"127.0.0.1:{self.port}"}
        config.update(extra or {})
        self.config = workdir / "config.json"
        self.config.write_text(json.dumps(config))
        self.args = ["--config", str(self.config), "--workers", str(workers),
                     "--threads", str(threads)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.root = f"http://127.0.0.1:{self.port}/dicom-web"

    def use_config(self, path: Path) -> Server:
        """Serve with this configuration file or folder instead of the generated one (it
        must set ``HttpPort`` to :attr:`port` and keep its data under :attr:`workdir`)."""
        self.args[1] = str(path)
        return self

    def start(self, timeout: float = 30) -> Server:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, *self.args],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parents[2],
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                requests.get(f"{self.root}/studies", timeout=5)
                return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
