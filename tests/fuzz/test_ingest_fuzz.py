"""DICOM ingest (``ingest.build_record`` on a spooled part, as STOW does) under hostile
files: mutated real files, huge length fields, absurd VRs, deep nesting, deflate bombs.

Every file gives a record or an :class:`IngestError` (which store.py answers with a
FailedSOPSequence item), never another exception, in bounded time and memory.
"""

from __future__ import annotations

import io
import struct
import tempfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app import create_app
from app.dicom import ingest
from app.dicom.dicomjson import json_to_xml
from app.dicom.ingest import IngestError, build_record
from app.dicom.store import spool
from backends.base import InstanceRecord
from tests.api.data import ct, ct_bytes
from tests.conftest import dicom_bytes, make_settings, stow_body
from tests.fuzz import corpus
from tests.fuzz.dicom_mutations import (
    ITEM,
    ITEM_END,
    PREFIX,
    SEQUENCE_END,
    before_pixel_data,
    deep_sequence,
    element,
    mutated_files,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on bad values

SECONDS = 10  # per file: a hang fails the test instead of stalling the run


@contextmanager
def _as_spooled(data: bytes, on_disk: bool) -> Iterator[tuple[BinaryIO, int]]:
    """The part as store.py hands it over: in memory, or (large parts) a temporary file."""
    if not on_disk:
        with spool([data]) as spooled:
            yield spooled
        return
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        yield f, len(data)


def ingest_outcome(data: bytes, on_disk: bool = False) -> InstanceRecord | IngestError:
    started = time.perf_counter()
    try:
        with _as_spooled(data, on_disk) as (f, size):
            outcome: InstanceRecord | IngestError = build_record(f, storage_key="k", size=size)
    except IngestError as exc:
        outcome = exc
    assert time.perf_counter() - started < SECONDS
    return outcome


def _check_record(record: InstanceRecord, size: int) -> None:
    """What later requests do with a stored record works too (metadata, XML, frames)."""
    import json

    metadata = json.loads(record.metadata)
    json_to_xml(metadata)
    for frame in record.frames:
        for offset, length in frame:
            assert 0 <= offset and offset + length <= size


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_files(), on_disk=st.booleans())
def test_mutated_files_give_a_record_or_a_rejection(data: bytes, on_disk: bool) -> None:
    outcome = ingest_outcome(data, on_disk)
    event(type(outcome).__name__)
    if isinstance(outcome, InstanceRecord):
        _check_record(outcome, len(data))


def _peak_allocation(data: bytes, on_disk: bool) -> tuple[int, InstanceRecord | IngestError]:
    tracemalloc.start()
    try:
        outcome = ingest_outcome(data, on_disk)
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def _small_file_with(big: bytes) -> bytes:
    """A valid ~1 KB CT with ``big`` (an element claiming a huge length) before PixelData."""
    return before_pixel_data(ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "5"), big)


HUGE = 0xFFFFFFF0  # 4 GB


@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize(("tag", "vr"), [
    (0x00091010, b"OB"), (0x00091010, b"UN"), (0x00324000, b"UT"), (0x0040A730, b"SQ"),
    (0x00189999, b"UC"), (0x7FE00008, b"OF"),
])
def test_4gb_length_field_in_a_small_file(tag: int, vr: bytes, on_disk: bool) -> None:
    """Regression: read from a temporary file (parts over 8 MiB), pydicom's read(length)
    made the buffered file allocate the 4 GB claimed. Now refused, with little memory."""
    data = _small_file_with(element(tag, vr, b"x" * 40, HUGE))
    peak, outcome = _peak_allocation(data, on_disk)
    assert isinstance(outcome, IngestError)
    assert peak < 16 << 20


@pytest.mark.parametrize("on_disk", [False, True])
def test_4gb_pixel_data_is_refused(on_disk: bool) -> None:
    """Regression: a 4 GB PixelData length in a 1 KB file was stored, and every later read
    of the stored file (bulk data, conversion, anonymize) allocated 4 GB."""
    base = ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "6")
    data = base[:base.rfind(b"\xe0\x7f\x10\x00")] + element(0x7FE00010, b"OW", b"\x01" * 64,
                                                              HUGE)
    assert len(data) < 2048
    peak, outcome = _peak_allocation(data, on_disk)
    assert isinstance(outcome, IngestError)
    assert "past the end of the file" in outcome.message
    assert peak < 16 << 20


@pytest.mark.parametrize("on_disk", [False, True])
def test_100_byte_input_with_4gb_lengths(on_disk: bool) -> None:
    """A 100-byte input made of huge length fields does not allocate GBs."""
    candidates = [
        b"\x08\x00\x18\x00" + b"\xff\xff\xff\x7f" + b"1" * 92,
        element(0x00080018, b"UT", b"1.2" * 30, HUGE)[:100],
        (element(0x0040A730, b"SQ", b"", 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000, HUGE)
         + b"x" * 100)[:100],
        (b"\x00" * 128 + b"DICM" + element(0x00020010, b"UI", b"1.2.840.10008.1.2.1\x00")
         + element(0x7FE00010, b"OB", b"", HUGE))[:100].ljust(100, b"\x00"),
    ]
    for data in candidates:
        assert len(data) == 100
        peak, outcome = _peak_allocation(data, on_disk)
        assert isinstance(outcome, IngestError)
        assert peak < 16 << 20


@pytest.mark.parametrize("defined", [False, True])
def test_10000_nested_sequences(defined: bool) -> None:
    """10,000 levels of nesting are refused, quickly and with little memory."""
    data = before_pixel_data(ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "7"),
                             deep_sequence(10000, defined=defined))
    peak, outcome = _peak_allocation(data, False)
    assert isinstance(outcome, IngestError)
    assert peak < 256 << 20


@pytest.mark.parametrize("defined", [False, True])
def test_nesting_limit(defined: bool) -> None:
    """Regression: 300 nested sequences (a 7 KB file) were stored; converting the instance
    then hit the recursion limit inside pydicom's writer, whose error messages double at
    each level (24 GB, the process killed). MAX_DEPTH levels are taken, one more is not."""
    def nested(depth: int) -> InstanceRecord | IngestError:
        return ingest_outcome(before_pixel_data(
            ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "9"), deep_sequence(depth,
                                                                            defined=defined)))

    record = nested(ingest.MAX_DEPTH)
    assert isinstance(record, InstanceRecord)
    _check_record(record, 10**6)
    refused = nested(ingest.MAX_DEPTH + 1)
    assert isinstance(refused, IngestError) and "nested" in refused.message
    assert isinstance(nested(300), IngestError)


def _deflated(inflated_size: int) -> bytes:
    """A Deflated Explicit VR Little Endian CT whose data set inflates to about
    ``inflated_size`` bytes (zeros in a private OB: compresses a thousandfold)."""
    ds = ct(PREFIX + "1", PREFIX + "2", PREFIX + "8")
    ds.file_meta.TransferSyntaxUID = ingest.DEFLATED_LE
    good = dicom_bytes(ds)
    meta_end = 144 + struct.unpack("<L", good[140:144])[0]
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    plain = dicom_bytes(ds)
    dataset = plain[144 + struct.unpack("<L", plain[140:144])[0]:]
    head = before_pixel_data(dataset, element(0x00091010, b"OB", b"", inflated_size))
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(head[:head.rfind(b"\x09\x00\x10\x10") + 12])
    zeros = b"\x00" * (1 << 20)
    for _ in range(inflated_size >> 20):
        stream += deflater.compress(zeros)
    stream += deflater.compress(head[head.rfind(b"\x09\x00\x10\x10") + 12:])
    return good[:meta_end] + stream + deflater.flush()


def test_deflate_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: pydicom inflates a deflated data set in memory; a 200 KB upload
    inflating to 200 MB took 670 MB. Beyond MAX_INFLATED it is refused, having kept
    nothing."""
    monkeypatch.setattr(ingest, "MAX_INFLATED", 4 << 20)
    bomb = _deflated(16 << 20)
    assert len(bomb) < 64 << 10
    peak, outcome = _peak_allocation(bomb, False)
    assert isinstance(outcome, IngestError)
    assert outcome.reason == ingest.OUT_OF_RESOURCES
    assert peak < 8 << 20
    small = _deflated(1 << 20)
    assert isinstance(ingest_outcome(small), InstanceRecord)


def test_default_inflation_limit_refuses_a_1gb_bomb() -> None:
    """The corpus bomb (1 MB inflating to 1 GB) with the default limit."""
    bomb = corpus.read(corpus.CORPUS / "refused_deflate_bomb_1gb.dcm.gz")
    assert len(bomb) < 2 << 20
    peak, outcome = _peak_allocation(bomb, False)
    assert isinstance(outcome, IngestError)
    assert outcome.reason == ingest.OUT_OF_RESOURCES
    assert peak < 32 << 20


@pytest.mark.parametrize("vr", [b"\x00\x00", b"ZZ", b"  ", b"\xff\xff"])
def test_absurd_vrs(vr: bytes) -> None:
    data = _small_file_with(element(0x00091010, b"LO", b"abcd")[:4] + vr + b"\x04\x00abcd")
    ingest_outcome(data)
    ingest_outcome(data, on_disk=True)


def _items(count: int, *, implicit: bool) -> bytes:
    """A valid CT with a ContentSequence of ``count`` empty items (16 bytes each) before
    PixelData; implicit VR: read by pydicom, explicit: by rawjson."""
    items = (ITEM + ITEM_END) * count + SEQUENCE_END
    if not implicit:
        return before_pixel_data(ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "20"),
                                 element(0x0040A730, b"SQ", b"", 0xFFFFFFFF) + items)
    ds = ct(PREFIX + "1", PREFIX + "2", PREFIX + "21")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    return before_pixel_data(dicom_bytes(ds),
                             struct.pack("<HHL", 0x0040, 0xA730, 0xFFFFFFFF) + items)


def test_a_million_empty_items_refused_at_the_default_limit() -> None:
    """16 MB of empty items (rawjson's reading) against Limits.MaximumInstanceElements'
    default: refused (0xA700) once the limit is counted, nothing more parsed."""
    outcome = ingest_outcome(_items(ingest.DEFAULT_MAX_ELEMENTS, implicit=False), on_disk=True)
    assert isinstance(outcome, IngestError)
    assert outcome.reason == ingest.OUT_OF_RESOURCES


@pytest.fixture
def limited_client(tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app(make_settings(tmp_path, Limits={"MaximumInstanceElements": 1000}))
    try:
        yield app.test_client()
    finally:
        app.extensions["jobs"].stop()
        app.extensions["dicomweb"].index.close()
        ingest.configure()  # process-wide: back to the default for the other tests


@pytest.mark.parametrize("implicit", [True, False])
def test_stow_refuses_too_many_elements_and_keeps_stored_data(
    limited_client: FlaskClient, tmp_path: Path, implicit: bool
) -> None:
    """Through the app (Limits.MaximumInstanceElements 1000): STOW-RS answers a failed
    item 0xA700 and a Warning naming the limit, stores the normal part of the same request,
    nothing of the hostile one; POST /instances answers 400 JSON with the reason."""
    normal = ct_bytes(PREFIX + "1", PREFIX + "2", PREFIX + "22")
    hostile = _items(20_000, implicit=implicit)
    body, ctype = stow_body([normal, hostile])
    answer = limited_client.post("/dicom-web/studies", data=body,
                                 headers={"Content-Type": ctype})
    assert answer.status_code == 202
    failed = answer.get_json()["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[ingest.OUT_OF_RESOURCES]]
    assert "Limits.MaximumInstanceElements" in answer.headers["Warning"]
    stored = limited_client.get("/dicom-web/instances").get_json()
    assert [i["00080018"]["Value"] for i in stored] == [[PREFIX + "22"]]
    blobs = [p for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    assert len(blobs) == 1 and blobs[0].read_bytes() == normal

    refused = limited_client.post("/instances", data=hostile,
                                  headers={"Content-Type": "application/dicom"})
    assert refused.status_code == 400
    assert "Limits.MaximumInstanceElements" in refused.get_json()["Message"]
    assert [p for p in (tmp_path / "storage").rglob("*") if p.is_file()] == blobs

    # In a ZIP archive: the same 400 naming the member (not "storage full").
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/hostile.dcm", hostile)
    refused = limited_client.post("/instances", data=zipped.getvalue())
    assert refused.status_code == 400
    message = refused.get_json()["Message"]
    assert "Limits.MaximumInstanceElements" in message and "a/hostile.dcm" in message
    assert [p for p in (tmp_path / "storage").rglob("*") if p.is_file()] == blobs
