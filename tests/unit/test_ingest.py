from __future__ import annotations

import io
import json
import struct
import tempfile
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset
from pydicom.pixels.utils import get_expected_length
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from app.dicom import ingest, rawjson
from app.dicom.identifiers import orthanc_ids
from app.dicom.ingest import (
    CANNOT_UNDERSTAND,
    MAX_INDEXED_ATTRIBUTE,
    OUT_OF_RESOURCES,
    IngestError,
    build_record,
    read_instance,
)
from backends.base import InstanceRecord, Level
from tests.dicom_compare import ALL_FILES, DATA, assert_round_trip

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

SC = "1.2.840.10008.5.1.4.1.1.7"


def _record(path: Path, **kwargs: object) -> InstanceRecord:
    with open(path, "rb") as f:
        return build_record(f, storage_key="key", size=path.stat().st_size, **kwargs)


def _frame_bytes(data: bytes, frame: tuple[tuple[int, int], ...]) -> bytes:
    return b"".join(data[offset:offset + length] for offset, length in frame)


def _check_frames(record: InstanceRecord, path: Path) -> None:
    if not record.frames:
        return
    data = path.read_bytes()
    ds = pydicom.dcmread(path, force=True)
    count = int(ds.get("NumberOfFrames") or 1)
    assert len(record.frames) == count
    if UID(record.transfer_syntax).is_compressed:
        expected = list(generate_frames(ds.PixelData, number_of_frames=count))
        assert [_frame_bytes(data, f) for f in record.frames] == expected
        return
    size = record.frames[0][0][1]
    assert size == get_expected_length(ds, unit="bytes") // count
    for i, frame in enumerate(record.frames):
        assert _frame_bytes(data, frame) == ds.PixelData[i * size:(i + 1) * size]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_bundled_file_gives_a_record_or_an_ingest_error(path: Path) -> None:
    try:
        record = _record(path)
    except IngestError as exc:
        assert exc.reason == CANNOT_UNDERSTAND
        return
    assert_round_trip(json.loads(record.metadata), path)
    _check_frames(record, path)
    assert record.uid(Level.INSTANCE) == pydicom.dcmread(path, force=True).SOPInstanceUID


def test_native_multi_frame_and_encapsulated_files_have_frames() -> None:
    for name, count in (("rtdose.dcm", 15), ("rtdose_expb.dcm", 15), ("rtdose_rle.dcm", 15),
                        ("examples_ybr_color.dcm", 30), ("SC_rgb_rle_2frame.dcm", 2),
                        ("examples_jpeg2k.dcm", 1), ("SC_ybr_full_422_uncompressed.dcm", 1)):
        assert len(_record(DATA / "test_files" / name).frames) == count, name


def test_record_contents() -> None:
    path = DATA / "test_files" / "CT_small.dcm"
    record = _record(path)
    ds = pydicom.dcmread(path)
    assert record.uid(Level.STUDY) == ds.StudyInstanceUID
    assert record.uid(Level.SERIES) == ds.SeriesInstanceUID
    assert record.transfer_syntax == ExplicitVRLittleEndian
    assert record.storage_key == "key" and record.size == path.stat().st_size
    assert (record.patient_key, record.study_key, record.series_key, record.instance_key) == \
        orthanc_ids(ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert record.study["00100010"]["Value"] == [{"Alphabetic": "CompressedSamples^CT1"}]
    assert "00100010" not in record.series and "00100010" not in record.instance
    assert record.series["00080060"] == {"vr": "CS", "Value": ["CT"]}
    assert record.instance["00080016"]["Value"] == [ds.SOPClassUID]
    assert all("7FE00010" not in level
               for level in (record.study, record.series, record.instance))
    prefix = (f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
              f"/instances/{ds.SOPInstanceUID}/bulk/7fe00010")
    assert f'"BulkDataURI":"{prefix}"' in record.metadata


def _instance(**attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.5"
    ds.PatientID = "PID"
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def _file(ds: Dataset, **kwargs: object) -> io.BytesIO:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=kwargs.pop("enforce", True), **kwargs)
    buffer.seek(0)
    return buffer


def _build(f: BinaryIO, **kwargs: object) -> InstanceRecord:
    return build_record(f, storage_key="k", size=0, **kwargs)


def test_file_without_preamble_or_meta() -> None:
    ds = pydicom.dcmread(DATA / "test_files" / "no_meta.dcm", force=True)
    assert "StudyInstanceUID" not in ds
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    ds.SOPClassUID, ds.SOPInstanceUID = SC, "1.2.3.4.5"
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True)
    assert buffer.getvalue()[128:132] != b"DICM"
    buffer.seek(0)
    record = _build(buffer)
    assert record.transfer_syntax == ImplicitVRLittleEndian
    assert record.uid(Level.INSTANCE) == "1.2.3.4.5"


def test_big_endian_without_meta() -> None:
    record = _record(DATA / "test_files" / "ExplVR_BigEndNoMeta.dcm")
    assert record.transfer_syntax == ExplicitVRBigEndian


def test_deflated_has_no_frames() -> None:
    record = _record(DATA / "test_files" / "image_dfl.dcm")
    assert record.transfer_syntax == "1.2.840.10008.1.2.1.99" and record.frames == ()
    assert '"BulkDataURI":"' in record.metadata


@pytest.mark.parametrize("data", [b"", b"not a dicom file at all" * 10, b"\x00" * 300])
def test_garbage_is_cannot_understand(data: bytes) -> None:
    with pytest.raises(IngestError) as info:
        _build(io.BytesIO(data))
    assert info.value.reason == CANNOT_UNDERSTAND
    assert info.value.sop_instance_uid is None


def test_missing_uids_report_the_sop_uids() -> None:
    ds = _instance()
    del ds.StudyInstanceUID
    with pytest.raises(IngestError) as info:
        _build(_file(ds))
    assert info.value.reason == CANNOT_UNDERSTAND
    assert "StudyInstanceUID" in str(info.value)
    assert (info.value.sop_class_uid, info.value.sop_instance_uid) == (SC, "1.2.3.4")


def test_invalid_uid_is_cannot_understand() -> None:
    with pytest.raises(IngestError) as info:
        read_instance(_file(_instance(SeriesInstanceUID="1.2.abc"), enforce=True))
    assert info.value.reason == CANNOT_UNDERSTAND and "SeriesInstanceUID" in info.value.message


def test_large_instance_attributes_stay_out_of_the_index() -> None:
    items = []
    for i in range(400):
        item = Dataset()
        item.ReferencedSOPInstanceUID = f"1.2.3.{i}"
        items.append(item)
    ds = _instance(ReferencedImageSequence=Sequence(items), ImageType=["DERIVED"])
    record = _build(_file(ds))
    assert "00081140" not in record.instance
    assert "00081140" in json.loads(record.metadata)
    assert record.instance["00080008"] == {"vr": "CS", "Value": ["DERIVED"]}
    assert MAX_INDEXED_ATTRIBUTE < len(record.metadata)


def _native(rows: int, columns: int, bits: int, frames: int, data: bytes) -> Dataset:
    ds = _instance(Rows=rows, Columns=columns, BitsAllocated=bits, BitsStored=bits,
                   HighBit=bits - 1, SamplesPerPixel=1, PixelRepresentation=0,
                   PhotometricInterpretation="MONOCHROME2", NumberOfFrames=frames)
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
    return ds


def test_bits_allocated_one() -> None:
    buffer = _file(_native(16, 16, 1, 3, bytes(range(96))))
    record = _build(buffer)
    assert [_frame_bytes(buffer.getvalue(), f) for f in record.frames] == [
        bytes(range(32)), bytes(range(32, 64)), bytes(range(64, 96))]
    # Frames under 32 bytes: ranges would cost more memory than the pixels, none recorded.
    assert _build(_file(_native(4, 4, 1, 3, bytes(range(6))))).frames == ()
    # 9 bits per frame: frames are not byte aligned, no ranges.
    assert _build(_file(_native(3, 3, 1, 3, bytes(4)))).frames == ()


def test_short_native_value_gives_no_frames() -> None:
    assert _build(_file(_native(4, 4, 8, 3, bytes(40)))).frames == ()


def _encapsulated(frames: list[bytes], **kwargs: object) -> Dataset:
    ds = _instance(Rows=10, Columns=10, BitsAllocated=8, SamplesPerPixel=1,
                   NumberOfFrames=len(frames), PhotometricInterpretation="MONOCHROME2")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate(frames, **kwargs)
    ds["PixelData"].VR = "OB"
    return ds


FRAMES = [bytes([i]) * 100 for i in range(1, 4)]


def test_encapsulated_fragments_grouped_by_basic_offset_table() -> None:
    buffer = _file(_encapsulated(FRAMES, fragments_per_frame=2, has_bot=True))
    record = _build(buffer)
    assert [len(f) for f in record.frames] == [2, 2, 2]
    assert [_frame_bytes(buffer.getvalue(), f) for f in record.frames] == FRAMES


def test_encapsulated_fragments_grouped_by_extended_offset_table() -> None:
    ds = _encapsulated(FRAMES, fragments_per_frame=2, has_bot=False)
    fragment_item = 8 + 50
    ds.ExtendedOffsetTable = struct.pack("<3Q", 0, 2 * fragment_item, 4 * fragment_item)
    ds.ExtendedOffsetTableLengths = struct.pack("<3Q", 100, 100, 100)
    buffer = _file(ds)
    record = _build(buffer)
    assert [_frame_bytes(buffer.getvalue(), f) for f in record.frames] == FRAMES


def test_encapsulated_without_offsets_gives_no_frames() -> None:
    ds = _encapsulated(FRAMES, fragments_per_frame=2, has_bot=False)
    assert _build(_file(ds)).frames == ()


def test_spooled_file_and_inline_binary_with_deferred_values() -> None:
    ds = _native(256, 256, 16, 2, bytes(256 * 256 * 4))
    ds.add_new(0x00420011, "OB", b"%PDF" * 40000)  # deferred (> 64 KB), then inlined
    data = _file(ds).getvalue()
    for limit in (len(data) * 2, 1024):  # in memory, then rolled over to disk
        with tempfile.SpooledTemporaryFile(max_size=limit) as spool:
            spool.write(data)
            spool.seek(0)
            record = _build(spool, binary_mode="InlineBinary")
        metadata = json.loads(record.metadata)
        assert len(metadata["00420011"]["InlineBinary"]) == 160000 // 3 * 4 + 4
        assert "BulkDataURI" in metadata["7FE00010"]
        assert [_frame_bytes(data, f) for f in record.frames] == [bytes(131072)] * 2


def test_hundred_megabyte_native_file_in_bounded_memory(tmp_path: Path) -> None:
    rows = columns = 512
    frames = 200  # 512*512*2*200 = 100 MiB
    ds = _instance(Rows=rows, Columns=columns, BitsAllocated=16, BitsStored=16, HighBit=15,
                   SamplesPerPixel=1, PixelRepresentation=0, NumberOfFrames=frames,
                   PhotometricInterpretation="MONOCHROME2")
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    frame = rows * columns * 2
    with open(path, "ab") as f:  # PixelData appended by hand, never held whole
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frame * frames))
        for i in range(frames):
            f.write(bytes([i % 256]) * frame)
    tracemalloc.start()
    try:
        record = _record(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 1024 * 1024, peak
    assert len(record.frames) == frames
    last_offset, last_length = record.frames[-1][0]
    assert last_offset + last_length == path.stat().st_size
    with open(path, "rb") as f:
        f.seek(record.frames[7][0][0])
        assert f.read(4) == b"\x07" * 4


# --- Limits.MaximumInstanceElements: hostile files of many empty items ------------------

_ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def _with_items(count: int, *, implicit: bool, defined: bool = False) -> bytes:
    """An instance ending with a ContentSequence (0040,A730) of ``count`` empty items:
    16 bytes each (undefined length, item delimiters), 8 bytes each if ``defined``."""
    ds = _instance()
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = _file(ds).getvalue()
    if defined:
        items = struct.pack("<HHL", 0xFFFE, 0xE000, 0) * count
        length = len(items)
    else:
        items, length = (_ITEM + _ITEM_END) * count + _SEQUENCE_END, 0xFFFFFFFF
    header = (struct.pack("<HHL", 0x0040, 0xA730, length) if implicit
              else struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, length))
    return data + header + items


def _elements_and_items(data: bytes) -> int:
    """Data elements (File Meta excluded) and sequence items of a file, by pydicom."""
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    elements = list(ds.iterall())
    return len(elements) + sum(len(e.value) for e in elements if e.VR == "SQ")


class _Calls:
    """Wraps a function and counts its calls."""

    def __init__(self, function: object) -> None:
        self.function = function
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.function(*args, **kwargs)  # type: ignore[operator]


HOSTILE = [pytest.param(True, False, id="implicit-undefined-items"),
           pytest.param(True, True, id="implicit-defined-items"),
           pytest.param(False, False, id="explicit-undefined-items"),
           pytest.param(False, True, id="explicit-defined-items")]


@pytest.mark.parametrize(("implicit", "defined"), HOSTILE)
def test_too_many_items_refused_while_parsing(
    implicit: bool, defined: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20,000 empty items against a limit of 1,000: refused with 0xA700 after ~1,000 items
    parsed, by pydicom (implicit VR, including a defined-length sequence parsed only when
    converted) or by rawjson (explicit VR, never handed to pydicom)."""
    data_sets = _Calls(ingest._read_elements)  # pydicom: one call per data set (item)
    items = _Calls(rawjson._ITEM_HEADER)  # rawjson: one call per item header
    monkeypatch.setattr(ingest, "_read_elements", data_sets)
    monkeypatch.setattr(rawjson, "_ITEM_HEADER", items)
    with pytest.raises(IngestError) as info:
        _build(io.BytesIO(_with_items(20_000, implicit=implicit, defined=defined)),
               max_elements=1_000)
    assert info.value.reason == OUT_OF_RESOURCES
    assert "more than 1,000 data elements and sequence items" in info.value.message
    assert "Limits.MaximumInstanceElements" in info.value.message
    if implicit:
        assert 900 < data_sets.calls <= 1_000
    else:
        assert data_sets.calls == 0  # refused by rawjson: pydicom never read it
        assert 900 < items.calls <= 1_001


@pytest.mark.parametrize(("implicit", "defined"), HOSTILE)
def test_limit_counts_elements_and_items(implicit: bool, defined: bool) -> None:
    data = _with_items(30, implicit=implicit, defined=defined)
    total = _elements_and_items(data)
    if implicit:
        # pydicom also counts the File Meta group (read twice: deflate check, then parse)
        # and 4 data sets (those two, the absent Command group, the data set itself).
        total += 2 * len(pydicom.dcmread(io.BytesIO(data)).file_meta) + 4
    record = _build(io.BytesIO(data), max_elements=total)
    assert len(json.loads(record.metadata)["0040A730"]["Value"]) == 30
    with pytest.raises(IngestError):
        _build(io.BytesIO(data), max_elements=total - 1)


@pytest.mark.parametrize(("implicit", "defined"), HOSTILE)
def test_no_limit(implicit: bool, defined: bool) -> None:
    data = _with_items(5_000, implicit=implicit, defined=defined)
    record = _build(io.BytesIO(data), max_elements=0)
    assert len(json.loads(record.metadata)["0040A730"]["Value"]) == 5_000


def test_configured_limit_and_pydicom_uncounted_afterwards() -> None:
    data = _with_items(100, implicit=True)
    ingest.configure(50)
    try:
        with pytest.raises(IngestError) as info:
            _build(io.BytesIO(data))
        assert info.value.reason == OUT_OF_RESOURCES
        # Outside an ingest (transcoding, WADO-URI), pydicom reads without a budget.
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        assert len(ds.ContentSequence) == 100
    finally:
        ingest.configure()
    assert len(json.loads(_build(io.BytesIO(data)).metadata)["0040A730"]["Value"]) == 100


def test_default_limit_takes_a_large_real_structure() -> None:
    """An RT structure set of 40,000 contours (~360,000 elements and items) is taken."""
    image = Dataset()
    image.ReferencedSOPClassUID = SC
    image.ReferencedSOPInstanceUID = "1.2.3.4.5"
    contour = Dataset()
    contour.ContourImageSequence = Sequence([image])
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.NumberOfContourPoints = 2
    contour.ContourNumber = 1
    contour.ContourData = [0.0, 1.0, 2.0, 1.0, 0.0, 2.0]
    encoded = DicomFileLike(io.BytesIO())
    encoded.is_implicit_VR, encoded.is_little_endian = False, True
    write_dataset(encoded, contour)
    contour_bytes = _ITEM + encoded.parent.getvalue() + _ITEM_END
    contour_sequence = struct.pack("<HH2sHL", 0x3006, 0x0040, b"SQ", 0, 0xFFFFFFFF)
    roi = (_ITEM + contour_sequence + contour_bytes * 40_000 + _SEQUENCE_END
           + struct.pack("<HH2sH", 0x3006, 0x0084, b"IS", 2) + b"1 " + _ITEM_END)
    data = (_file(_instance()).getvalue()
            + struct.pack("<HH2sHL", 0x3006, 0x0039, b"SQ", 0, 0xFFFFFFFF) + roi
            + _SEQUENCE_END)
    per_contour = 1 + sum(1 for _ in contour.iterall()) + 1  # its item, elements, image item
    assert 40_000 * per_contour > 350_000
    record = _build(io.BytesIO(data))
    metadata = json.loads(record.metadata)
    assert len(metadata["30060039"]["Value"][0]["30060040"]["Value"]) == 40_000


def test_parser_messages_are_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydicom's texts can be huge (its writer's double at each nesting level): what an
    IngestError keeps, and so what is logged, is cut."""
    def fail(*args: object, **kwargs: object) -> None:
        raise ValueError("x" * 1_000_000)

    monkeypatch.setattr(pydicom, "dcmread", fail)
    with pytest.raises(IngestError) as info:
        read_instance(_file(_instance()))
    assert info.value.reason == CANNOT_UNDERSTAND
    assert len(info.value.message) < ingest.MAX_MESSAGE + 100
    assert len(str(IngestError(CANNOT_UNDERSTAND, "y" * 10_000))) < ingest.MAX_MESSAGE + 100
