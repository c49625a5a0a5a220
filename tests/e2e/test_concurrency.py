"""Several gunicorn workers storing the same study at once lose nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.api.data import ct_bytes, uid
from tests.conftest import stow_body
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


def test_concurrent_stow_of_one_study_loses_nothing(tmp_path: Path) -> None:
    server = Server(tmp_path, workers=4, threads=2).start()
    try:
        study, series = uid(), [uid() for _ in range(3)]
        files = [ct_bytes(study, series[i % 3], number=i) for i in range(160)]

        def send(chunk: list[bytes]) -> int:
            body, ctype = stow_body(chunk)
            return requests.post(f"{server.root}/studies", data=body, timeout=120,
                                 headers={"Content-Type": ctype}).status_code

        batches = [files[i:i + 2] for i in range(0, len(files), 2)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, batches))
        assert statuses == [200] * len(batches)
        instances = requests.get(f"{server.root}/studies/{study}/instances", timeout=30).json()
        assert len(instances) == 160
        assert len({i["00080018"]["Value"][0] for i in instances}) == 160
        (answer,) = requests.get(f"{server.root}/studies", timeout=30).json()
        assert answer["00201206"]["Value"] == [3]
        assert answer["00201208"]["Value"] == [160]
        blobs = list((tmp_path / "storage").rglob("*"))
        assert len([b for b in blobs if b.is_file()]) == 160
    finally:
        server.stop()
