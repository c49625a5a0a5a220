"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) next to our server.

Both run on loopback with their own configuration and storage, each listing the other in
``DicomWeb.Servers`` (reference §7.1): Orthanc knows ours as ``ours`` (chunked uploads, the
default) and ``ours-sized`` (``ChunkedTransfers: false``), both with ``HasDelete``, and
itself as ``self`` (its own client's answers are the reference for ours); ours
knows Orthanc as ``orthanc``, plus ``orthanc-badpass`` (wrong password: Orthanc runs with
authentication), ``down`` (nothing listens there) and itself as ``self`` (needs concurrent
request handling: gunicorn with 2 workers × 4 threads). Module-scoped: one pair per module.

Under CI (``CI=1``, set by ``.ci/run`` which installs Orthanc) a missing Orthanc fails the
tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from bench.orthanc import (
    OrthancError,
    OrthancProcess,
    build_loopback_shim,
    find_dicomweb_plugin,
    find_orthanc_binary,
    start_orthanc,
)
from tests.e2e.client import parts
from tests.e2e.server import Server
from tests.interop.files import Instance
from tests.s3server import free_port

ORTHANC_USER, ORTHANC_PASSWORD = "interop", "orthanc-" + uuid.uuid4().hex[:8]
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
TIMEOUT = 60


def require_orthanc(tmp_dir: Path) -> None:
    """Skip (fail under CI) unless Orthanc, its DICOMweb plugin and ``cc`` are here."""
    try:
        find_orthanc_binary()
        find_dicomweb_plugin()
        build_loopback_shim(tmp_dir)  # Orthanc 1.10 cannot bind to loopback by itself
    except (OrthancError, OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires Orthanc for the interoperability tests: {exc}")
        pytest.skip(f"Orthanc is not installed here ({exc}); .ci/run installs it")


@dataclass
class Interop:
    """Our server and Orthanc, each a DICOMweb client of the other."""

    ours: Server
    orthanc: OrthancProcess
    http: requests.Session = field(default_factory=requests.Session)

    # --- Orthanc -----------------------------------------------------------------
    def orthanc_rest(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Orthanc's REST API (``/instances``, ``/jobs/{id}``...), authenticated."""
        return self.http.request(method, self.orthanc.url + path, auth=self.orthanc.auth,
                                 timeout=TIMEOUT, **kwargs)

    def orthanc_client(self, server: str, operation: str, body: Any) -> requests.Response:
        """``POST /dicom-web/servers/{server}/{operation}`` on Orthanc (reference §1.2)."""
        return self.orthanc_rest("POST", f"/dicom-web/servers/{server}/{operation}", json=body)

    def upload_to_orthanc(self, instances: list[Instance]) -> None:
        for instance in instances:
            answer = self.orthanc_rest("POST", "/instances", data=instance.data,
                                       headers={"Content-Type": "application/dicom"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["ID"] == instance.ids[3]

    def orthanc_file(self, instance: Instance) -> requests.Response:
        return self.orthanc_rest("GET", f"/instances/{instance.ids[3]}/file")

    def orthanc_wait_job(self, job_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        return wait_job(lambda: self.orthanc_rest("GET", f"/jobs/{job_id}"), timeout)

    # --- ours --------------------------------------------------------------------
    def our_client(self, server: str, operation: str, body: Any) -> requests.Response:
        """``POST {root}/servers/{server}/{operation}`` on our server."""
        return self.http.post(f"{self.ours.root}/servers/{server}/{operation}", json=body,
                              timeout=TIMEOUT)

    def stow_to_ours(self, instances: list[Instance]) -> None:
        boundary = uuid.uuid4().hex
        body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                        + i.data + b"\r\n" for i in instances) + f"--{boundary}--".encode()
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        answer = self.http.post(f"{self.ours.root}/studies", data=body, timeout=TIMEOUT,
                                headers={"Content-Type": ctype,
                                         "Accept": "application/dicom+json"})
        assert answer.status_code == 200, answer.text

    def our_file(self, instance: Instance) -> requests.Response:
        """WADO-RS of one instance as stored (one part)."""
        return self.http.get(self.ours.root + instance.path, headers={"Accept": AS_STORED},
                             timeout=TIMEOUT)

    def our_wait_job(self, job_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        # Jobs are under the server root, next to the DICOMweb root (Orthanc's layout).
        root = self.ours.root.rsplit("/dicom-web", 1)[0]
        return wait_job(lambda: self.http.get(f"{root}/jobs/{job_id}", timeout=TIMEOUT),
                        timeout)


def single_part(answer: requests.Response) -> bytes:
    """The body of a one-part multipart/related WADO-RS answer."""
    assert answer.status_code == 200, answer.text[:300]
    ((_, body),) = parts(answer)
    return body


def wait_job(fetch: Any, timeout: float) -> dict[str, Any]:
    """Poll a ``/jobs/{id}`` until it leaves Pending/Running; its last JSON."""
    deadline = time.monotonic() + timeout
    while True:
        answer = fetch()
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["State"] not in ("Pending", "Running") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def orthanc_config(ours: Server, own_port: int) -> dict[str, Any]:
    """Orthanc: authentication on, our server twice (chunked and sized uploads), itself."""
    return {
        "AuthenticationEnabled": True,
        "RegisteredUsers": {ORTHANC_USER: ORTHANC_PASSWORD},
        "HttpTimeout": 30,
        "DicomWeb": {"Servers": {
            "ours": {"Url": ours.root, "HasDelete": True},
            "ours-sized": {"Url": ours.root, "HasDelete": True, "ChunkedTransfers": False},
            "self": {"Url": f"http://127.0.0.1:{own_port}/dicom-web/", "HasDelete": True,
                     "Username": ORTHANC_USER, "Password": ORTHANC_PASSWORD},
        }},
    }


def our_config(own_port: int, orthanc_port: int) -> dict[str, Any]:
    """Ours: Orthanc with right and wrong credentials, a dead port, and itself."""
    orthanc_root = f"http://127.0.0.1:{orthanc_port}/dicom-web/"
    return {
        "HttpTimeout": 30,
        "DicomWeb": {"Servers": {
            "orthanc": {"Url": orthanc_root, "Username": ORTHANC_USER,
                        "Password": ORTHANC_PASSWORD, "HasDelete": True},
            "orthanc-badpass": [orthanc_root, ORTHANC_USER, "wrong-password"],
            "down": [f"http://127.0.0.1:{free_port()}/dicom-web/"],
            "self": {"Url": f"http://127.0.0.1:{own_port}/dicom-web/", "HasDelete": True},
        }},
    }


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    workdir = tmp_path_factory.mktemp("interop")
    require_orthanc(workdir)
    own_port, orthanc_port = free_port(), free_port()
    ours = Server(workdir, workers=2, threads=4, port=own_port,
                  extra=our_config(own_port, orthanc_port))
    ours.start()
    try:
        orthanc = start_orthanc(orthanc_port, workdir / "orthanc",
                                extra=orthanc_config(ours, orthanc_port))
    except BaseException:
        ours.stop()
        raise
    pair = Interop(ours, orthanc)
    yield pair
    pair.http.close()
    orthanc.stop()
    ours.stop()
