"""StorageCompression (Orthanc): files compressed on disk, every route unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flask.testing import FlaskClient

from app import create_app
from tests.api.data import ct, uid
from tests.api.test_stow import post
from tests.api.test_wado import AS_STORED, parts
from tests.conftest import dicom_bytes, make_settings


def client(tmp_path: Path, compression: bool) -> FlaskClient:
    return create_app(make_settings(tmp_path, StorageCompression=compression)).test_client()


def blobs(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in (tmp_path / "storage").rglob("*") if p.is_file()]


def instance(frames: int = 4) -> tuple[str, str, str, bytes, np.ndarray]:
    st, se, sop = uid(), uid(), uid()
    values = np.tile(np.arange(64, dtype=np.uint16), (frames, 64, 1))  # compressible
    return st, se, sop, dicom_bytes(ct(st, se, sop, frames=frames, rows=64, columns=64,
                                       pixels=values)), values


def test_files_are_compressed_and_every_route_is_unchanged(tmp_path: Path) -> None:
    c = client(tmp_path, True)
    st, se, sop, data, values = instance()
    assert post(c, [data]).status_code == 200
    (blob,) = blobs(tmp_path)
    assert len(blob) < len(data) / 4 and b"DICM" not in blob[:200]
    base = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    assert parts(c.get(base, headers={"Accept": AS_STORED}))[0][1] == data
    assert c.get(f"/wado?requestType=WADO&objectUID={sop}&contentType=application/dicom"
                 ).data == data
    frames = parts(c.get(f"{base}/frames/3,1"))
    assert [b for _, b in frames] == [values[2].tobytes(), values[0].tobytes()]
    assert c.get(f"{base}/rendered").status_code == 200
    bulk = c.get(f"{base}/metadata").json[0]["7FE00010"]["BulkDataURI"]
    assert parts(c.get(bulk[bulk.index("/dicom-web"):]))[0][1] == values.tobytes()


def test_turning_compression_on_keeps_older_files_readable(tmp_path: Path) -> None:
    st, se, sop, data, _ = instance(1)
    assert post(client(tmp_path, False), [data]).status_code == 200
    later = client(tmp_path, True)
    st2, se2, sop2, data2, _ = instance(1)
    assert post(later, [data2]).status_code == 200
    for s, d in ((st, data), (st2, data2)):
        assert parts(later.get(f"/dicom-web/studies/{s}", headers={"Accept": AS_STORED}))[0][1] == d
    # and back off again: the compressed file is still served
    plain = client(tmp_path, False)
    assert parts(plain.get(f"/dicom-web/studies/{st2}", headers={"Accept": AS_STORED}))[0][1] \
        == data2
