"""A study larger than a worker should hold is streamed in and out.

Stores ~300 MB in one chunked STOW request, retrieves it whole, and samples the
workers' resident memory meanwhile: the peak stays far below the study size.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from tests.api.data import ct, uid
from tests.conftest import dicom_bytes
from tests.e2e.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INSTANCES, FRAMES = 20, 30  # 20 × (512×512×2×30 ≈ 15.7 MB) ≈ 315 MB


class PeakRss:
    """Samples the summed RSS of a process's children (the gunicorn workers)."""

    def __init__(self, pid: int) -> None:
        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            rss = 0
            for child in self.proc.children(recursive=True):
                try:
                    rss = max(rss, child.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, rss)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()


def big_instance(study: str, series: str, n: int) -> bytes:
    ds = ct(study, series, number=n, rows=512, columns=512, frames=FRAMES)
    rng = np.random.default_rng(n)
    ds.PixelData = rng.integers(0, 4096, 512 * 512 * FRAMES, dtype=np.uint16).tobytes()
    return dicom_bytes(ds)


def body(study: str, series: str, boundary: str, sizes: list[int]) -> Iterator[bytes]:
    for n in range(INSTANCES):
        data = big_instance(study, series, n + 1)
        sizes.append(len(data))
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        for i in range(0, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def test_300mb_study_streams_in_and_out(tmp_path: Path) -> None:
    server = Server(tmp_path, workers=1, threads=2).start()
    try:
        assert server.proc is not None
        study, series, boundary, sizes = uid(), uid(), uuid.uuid4().hex, []
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
        with PeakRss(server.proc.pid) as stow_mem:
            r = requests.post(f"{server.root}/studies", data=body(study, series, boundary, sizes),
                              headers={"Content-Type": ctype}, timeout=600)
        assert r.status_code == 200, r.text
        assert len(r.json()["00081199"]["Value"]) == INSTANCES
        total = sum(sizes)
        assert total > 300_000_000

        accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        received = 0
        with PeakRss(server.proc.pid) as wado_mem, requests.get(
                f"{server.root}/studies/{study}", headers={"Accept": accept},
                stream=True, timeout=600) as resp:
            assert resp.status_code == 200
            for chunk in resp.iter_content(1 << 20):
                received += len(chunk)
        assert total < received < total + 10_000  # multipart framing only

        # A worker holding the study would need > 300 MB; streaming keeps it near baseline.
        assert stow_mem.peak < 200_000_000, stow_mem.peak
        assert wado_mem.peak < 200_000_000, wado_mem.peak
    finally:
        server.stop()
