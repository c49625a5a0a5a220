"""An Orthanc site's configuration works as is: the server starts on Debian's own
``/etc/orthanc/`` folder (tests/data/orthanc-debian, only paths and port changed) and on
``settings.example.json``, and serves DICOMweb with each."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import requests

from app.settings import strip_comments
from tests.api.data import ct_bytes, uid
from tests.conftest import stow_body
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "tests" / "data" / "orthanc-debian"


def set_values(path: Path, **values: object) -> None:
    """Change top-level values in a commented JSON file, leaving every comment and every
    other key as it is (the file is the user's, not a re-serialisation of it)."""
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf'("{key}"\s*:\s*)("[^"]*"|[0-9]+)', rf"\g<1>{json.dumps(value)}",
                              text, count=1)
        assert count == 1, key
    path.write_text(text)
    json.loads(strip_comments(text))  # still valid


def serves(server: Server) -> None:
    """STOW, QIDO, WADO-RS metadata and WADO-URI all answer on this configuration."""
    st, se, sop = uid(), uid(), uid()
    body, ctype = stow_body([ct_bytes(st, se, sop)])
    base = f"http://127.0.0.1:{server.port}"
    r = requests.post(f"{base}/dicom-web/studies", data=body,
                      headers={"Content-Type": ctype}, timeout=30)
    assert r.status_code == 200, r.text
    found = requests.get(f"{base}/dicom-web/studies?StudyInstanceUID={st}", timeout=30).json()
    assert found[0]["0020000D"]["Value"] == [st]
    meta = requests.get(f"{base}/dicom-web/studies/{st}/series/{se}/metadata", timeout=30)
    assert meta.json()[0]["00080018"]["Value"] == [sop]
    wado = requests.get(f"{base}/wado?requestType=WADO&objectUID={sop}"
                        "&contentType=application/dicom", timeout=30)
    assert wado.status_code == 200 and wado.content.startswith(b"\0" * 128 + b"DICM")


def test_debian_orthanc_configuration_folder(tmp_path: Path) -> None:
    folder = tmp_path / "orthanc"
    shutil.copytree(DEBIAN, folder)
    (tmp_path / "run").mkdir()
    server = Server(tmp_path / "run")
    set_values(folder / "orthanc.json", StorageDirectory=str(tmp_path / "run" / "storage"),
               IndexDirectory=str(tmp_path / "run" / "index"), HttpPort=server.port)
    server.use_config(folder).start()
    try:
        serves(server)
        log = server.log()
        assert "ignored" in log and "DicomAet" in log  # told once, with the reason
    finally:
        server.stop()


def test_settings_example(tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    shutil.copy(REPO / "settings.example.json", config)
    server = Server(tmp_path)
    set_values(config, StorageDirectory=str(tmp_path / "storage"),
               IndexDirectory=str(tmp_path / "index"), HttpPort=server.port)
    server.use_config(config).start()
    try:
        serves(server)
    finally:
        server.stop()
