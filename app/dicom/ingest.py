"""One STOW-RS part → :class:`InstanceRecord` (PS3.18 §10.5, Orthanc ``StowRs.cpp``).

The file is parsed once, and never held twice in memory: straight from its bytes by
:mod:`app.dicom.rawjson` when it can (an in-memory part as is, a larger one through a
read-only mmap), else by pydicom with ``defer_size`` (values above 64 KB, PixelData above
all, stay on disk). Both readings give the same record: the level attributes QIDO
answers from, the full DICOM JSON metadata (BulkDataURIs relative to the server root,
see ``dicomjson.rebase``), the Orthanc ids and the byte ranges of every frame in the
stored file (:mod:`app.dicom.frames`), so that a frame is later served with ranged
reads and no decoding.

Text of a file without Specific Character Set (0008,0005) is decoded with the
``DefaultEncoding`` of the settings (Orthanc does the same), given as ``encoding`` or
else the one :func:`app.dicom.dictionary.configure` was given.

Hostile files cost bounded work: both readings count data elements and sequence items
as they parse them and stop at ``Limits.MaximumInstanceElements`` (:func:`configure`),
so that a small file of empty items (16 bytes each, ~800 bytes of memory and ~17 µs
each in pydicom) is refused before it costs seconds and hundreds of MB.
"""

from __future__ import annotations

import io
import logging
import mmap
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, BinaryIO

import pydicom
import pydicom.filereader
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info

from app.dicom import dictionary, rawjson
from app.dicom.dicomjson import (
    BINARY_VRS,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    TooManyElements,
    dataset_to_json,
    json_dumps,
    without_binary,
)
from app.dicom.frames import DEFLATED, DatasetAttributes, Frames, JsonAttributes, frame_ranges
from app.dicom.identifiers import is_valid_uid, orthanc_ids
from app.dicom.levels import SERIES_LEVEL, STUDY_LEVEL, add_extra_tags
from backends.base import DicomJson, InstanceRecord, Level

log = logging.getLogger(__name__)

# FailureReason values of PS3.4 Annex B.2.3 / PS3.18 §10.5.3 (FailedSOPSequence).
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_MISMATCH = 0xA900
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700

# A deflated data set is inflated in memory by pydicom: larger ones are refused.
MAX_INFLATED = 128 << 20
# Deepest nesting of sequences taken. Every reader and writer of the stored file recurses
# per level (pydicom's writer hits Python's recursion limit near 250 levels, then its
# error messages double at each level: GBs); real instances nest a few levels.
MAX_DEPTH = 64
# Data elements + sequence items of one instance (Limits.MaximumInstanceElements; 0: no
# limit). Large real instances have a few hundred thousand (an RT structure set of 30,000
# contours ~300,000, an enhanced MR of 3,000 frames ~100,000).
DEFAULT_MAX_ELEMENTS = 1_000_000
# Longest text of a parser's exception kept in an IngestError (and so in the logs).
MAX_MESSAGE = 500
DEFLATED_LE = "1.2.840.10008.1.2.1.99"

DEFER_SIZE = "64 KB"
IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = (
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
)
# Larger instance-level attributes (e.g. a per-frame functional groups sequence) stay
# in the metadata only, out of the index row QIDO reads.
MAX_INDEXED_ATTRIBUTE = 8 * 1024

_NATIVE = frozenset({IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE})
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
_REQUIRED_TAGS = ("0020000D", "0020000E", "00080016", "00080018")  # the same, as JSON keys
_SPECIFIC_CHARACTER_SET = 0x00080005
_PYDICOM_DEFAULT_CODECS = (["iso8859"], ["latin_1"])  # what pydicom decodes with anyway
_LIMIT_SETTING = "Limits.MaximumInstanceElements"

_max_elements = DEFAULT_MAX_ELEMENTS


def configure(max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
    """Process-wide ingest limit from the settings (``Limits.MaximumInstanceElements``)."""
    global _max_elements
    _max_elements = max_elements


class IngestError(Exception):
    """A part that cannot be stored; ``reason`` is its FailureReason (0008,1197)."""

    def __init__(
        self,
        reason: int,
        message: str,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> None:
        if len(message) > MAX_MESSAGE:  # pydicom's texts can be huge (tracebacks, values)
            message = message[:MAX_MESSAGE] + f"... ({len(message) - MAX_MESSAGE} more)"
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


def read_instance(f: BinaryIO, encoding: str | None = None) -> Dataset:
    """Parse a DICOM file (preamble and meta header optional), values > 64 KB deferred;
    text decoded with ``encoding`` (a DefaultEncoding name) if the file does not say.

    Raises :class:`IngestError` (0xC000) for anything unparseable or without the
    four UIDs of PS3.18 §10.5.1 as valid UIDs.
    """
    start = f.tell()
    try:
        _check_inflated_size(f, start)
        f.seek(start)
        ds = pydicom.dcmread(_Bounded(f), defer_size=DEFER_SIZE, force=True)
        if transfer_syntax(ds) in DEFLATED:
            # pydicom inflates into memory; deferred reads would seek in the raw file.
            f.seek(start)
            ds = pydicom.dcmread(f, force=True)
        else:
            _check_within_file(ds, f.seek(0, 2))
    except (IngestError, TooManyElements):
        raise
    except Exception as exc:  # any parser failure is the client's file
        raise IngestError(CANNOT_UNDERSTAND, f"Cannot parse DICOM: {_text(exc)}") from exc
    _default_character_set(ds, encoding or dictionary.default_encoding())
    _required_uids(ds)
    return ds


class _Bounded:
    """A file whose ``read(n)`` asks for no more than the bytes left: pydicom reads a value
    with ``read(length)``, and a buffered file allocates ``length`` bytes before reading,
    so a 4 GB length field in a small file would allocate 4 GB."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        position = f.tell()
        self._end = f.seek(0, 2)
        f.seek(position)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._f.read()
        return self._f.read(max(0, min(size, self._end - self._f.tell())))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _check_inflated_size(f: BinaryIO, start: int) -> None:
    """Refuse a Deflated Explicit VR Little Endian file that inflates beyond
    :data:`MAX_INFLATED` (pydicom inflates the whole data set in memory: a deflate bomb of
    1 MB would take GBs). Counted in a streaming pass, nothing kept."""
    preamble = f.read(132)
    if preamble[128:132] != b"DICM":
        f.seek(start)  # as pydicom does: the meta group may come without a preamble
    try:
        meta = _read_file_meta_info(_Bounded(f))
    except TooManyElements:
        raise
    except Exception:  # pydicom's own reading then says what is wrong
        return
    if str(meta.get("TransferSyntaxUID", "")).strip("\0 ") != DEFLATED_LE:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    while chunk := f.read(1 << 16):
        while chunk:
            inflated += len(inflater.decompress(chunk, 1 << 20))
            if inflated > MAX_INFLATED:
                raise IngestError(OUT_OF_RESOURCES, "Deflated data set inflates beyond "
                                  f"{MAX_INFLATED >> 20} MiB")
            chunk = inflater.unconsumed_tail
        if inflater.eof:
            return


def _check_within_file(ds: Dataset, end: int) -> None:
    """Refuse a top-level value that runs past the end of the file (a truncated file, or a
    length field set to GBs): pydicom reads it silently short, and every later reading of
    the stored file (bulk data, conversion, de-identification) would trust the length."""
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.length == UNDEFINED_LENGTH:
            continue
        short = (raw.value_tell + raw.length > end if raw.value is None
                 else len(raw.value) < raw.length)
        if short:
            raise IngestError(CANNOT_UNDERSTAND, f"Value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) "
                              f"is {raw.length} bytes long, past the end of the file")


def _default_character_set(ds: Dataset, encoding: str) -> None:
    """Decode a data set without Specific Character Set with the codecs of ``encoding``
    (nested items inherit them, as they would its Specific Character Set)."""
    codecs = dictionary.charset_codecs(encoding)
    if _SPECIFIC_CHARACTER_SET in ds or codecs in _PYDICOM_DEFAULT_CODECS:
        return
    # pydicom has no public way to set the encoding a data set inherits; its elements
    # are converted later (on access), with this one.
    ds._parent_encoding = codecs
    ds.set_original_encoding(*ds.original_encoding, character_encoding=codecs)


def _uid_value(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:  # an unconvertible value counts as absent
        return None
    return str(value) if isinstance(value, str) and value else None


def _required_uids(ds: Dataset) -> tuple[str, str, str, str]:
    values = [_uid_value(ds, keyword) for keyword in _REQUIRED_UIDS]
    bad = [k for k, v in zip(_REQUIRED_UIDS, values, strict=True) if not is_valid_uid(v)]
    if bad:
        raise IngestError(
            CANNOT_UNDERSTAND,
            f"Missing or invalid {', '.join(bad)}",
            sop_class_uid=values[2],
            sop_instance_uid=values[3],
        )
    study, series, sop_class, sop = (str(v) for v in values)
    return study, series, sop_class, sop


def transfer_syntax(ds: Dataset) -> str:
    """The file's transfer syntax; without one in the meta header, the one pydicom used.

    A native syntax contradicted by the data set itself (pydicom checks the first
    elements and switches) is replaced by the encoding actually found.
    """
    meta = getattr(ds, "file_meta", None)
    declared = str(meta.get("TransferSyntaxUID") or "").strip() if meta is not None else ""
    implicit, little = ds.original_encoding
    used = IMPLICIT_LE if implicit else EXPLICIT_LE if little is not False else EXPLICIT_BE
    if not declared:
        return used
    if declared in _NATIVE and implicit is not None and declared != used:
        return used
    return declared


def build_record(
    f: BinaryIO, *, storage_key: str, size: int, binary_mode: str = "BulkDataURI",
    encoding: str | None = None, max_elements: int | None = None,
) -> InstanceRecord:
    """Everything the index keeps about the instance in ``f`` (positioned at its start).

    Read straight from the bytes by :mod:`app.dicom.rawjson` when it can (the common
    Explicit VR Little Endian file), else with pydicom; both give the same record.
    ``encoding``: DefaultEncoding (Orthanc name), None for the configured one.
    ``max_elements``: data elements + sequence items allowed (0: any number), None for
    the configured limit; past it, :class:`IngestError` :data:`OUT_OF_RESOURCES` is
    raised as soon as the reading counts one too many.
    """
    start = f.tell()
    encoding = encoding or dictionary.default_encoding()
    limit = _max_elements if max_elements is None else max_elements
    try:
        record = direct_record(f, start, storage_key=storage_key, size=size,
                               binary_mode=binary_mode, encoding=encoding,
                               max_elements=limit)
        if record is not None:
            return record
        f.seek(start)
        with _counted(limit):
            return pydicom_record(f, storage_key=storage_key, size=size,
                                  binary_mode=binary_mode, encoding=encoding)
    except TooManyElements as exc:
        raise IngestError(OUT_OF_RESOURCES,
                          f"Instance refused: {exc} ({_LIMIT_SETTING})") from None


def pydicom_record(
    f: BinaryIO, *, storage_key: str, size: int, binary_mode: str = "BulkDataURI",
    encoding: str | None = None,
) -> InstanceRecord:
    """:func:`build_record` with pydicom reading the file (any file it can read)."""
    start = f.tell()
    ds = read_instance(f, encoding)
    study, series, sop_class, sop = _required_uids(ds)
    try:
        syntax = transfer_syntax(ds)
        raw = ds.get_item(PIXEL_DATA, keep_deferred=True)  # before it gets converted
        tell = getattr(raw, "value_tell", None)
        pixel = (tell, raw.length) if isinstance(raw, RawDataElement) and tell is not None \
            else None
        frames = frame_ranges(pixel, DatasetAttributes(ds), f, start, syntax)
        full = dataset_to_json(ds, bulk_prefix=_bulk_prefix(study, series, sop),
                               binary_mode=binary_mode)
        return _assemble(full, (study, series, sop), syntax, frames, storage_key, size)
    except (IngestError, TooManyElements):
        raise
    except Exception as exc:  # e.g. a truncated deferred value
        raise IngestError(
            CANNOT_UNDERSTAND, f"Cannot read DICOM: {_text(exc)}",
            sop_class_uid=sop_class, sop_instance_uid=sop,
        ) from exc


def direct_record(
    f: BinaryIO, start: int, *, storage_key: str, size: int, binary_mode: str = "BulkDataURI",
    encoding: str | None = None, max_elements: int = 0,
) -> InstanceRecord | None:
    """:func:`build_record` by :mod:`app.dicom.rawjson`; None where it declines, and where
    anything is wrong with the file (pydicom then decides how to report it), except more
    than ``max_elements`` (:class:`TooManyElements`: not read again by pydicom)."""
    codecs = dictionary.charset_codecs(encoding or dictionary.default_encoding())
    with _file_bytes(f) as buf:
        if buf is None:
            return None
        try:
            raw = rawjson.read_file(buf, start, binary_mode, codecs, max_elements)
            uids = [_json_uid(raw.json, tag) for tag in _REQUIRED_TAGS]
            if not all(is_valid_uid(uid) for uid in uids):
                return None
            study, series, _, sop = (str(uid) for uid in uids)
            raw.set_bulk_prefix(_bulk_prefix(study, series, sop))
            frames = frame_ranges(raw.pixel_data, JsonAttributes(raw), f, start,
                                  raw.transfer_syntax)
            return _assemble(raw.json, (study, series, sop), raw.transfer_syntax, frames,
                             storage_key, size)
        except rawjson.Unsupported as exc:
            log.debug("read with pydicom: %s", exc)
        except (IngestError, TooManyElements):
            raise
        except Exception:  # pydicom's reading decides what is wrong with the file
            log.debug("direct reading failed", exc_info=True)
    return None


def _text(exc: BaseException) -> str:
    """An exception's text, cut: pydicom's can be megabytes (values, nested tracebacks)."""
    text = str(exc)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "..."


# --- counting what pydicom parses ----------------------------------------------------

class _Budget:
    """Data elements + sequence items one ingest may still parse."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise TooManyElements(self.limit)


_budget: ContextVar[_Budget | None] = ContextVar("ingest_budget", default=None)
_read_elements = pydicom.filereader.data_element_generator


@contextmanager
def _counted(limit: int) -> Iterator[None]:
    """pydicom's parsing in this thread counted against ``limit`` (0: not counted)."""
    token = _budget.set(_Budget(limit) if limit else None)
    try:
        yield
    finally:
        _budget.reset(token)


def _counted_elements(*args: Any, **kwargs: Any) -> Iterator[Any]:
    """``pydicom.filereader.data_element_generator``, counted during an ingest.

    pydicom reads every data set through it, eagerly (the file, items of undefined-length
    sequences) or later (a defined-length sequence when its value is first converted),
    so one call is one data set (the file, or a sequence item) and each element it yields
    one element: counting here bounds pydicom's work however the file nests, and stops it
    mid-file. Outside an ingest (transcoding, WADO-URI), it is pydicom's own.
    """
    budget = _budget.get()
    elements = _read_elements(*args, **kwargs)
    if budget is None:
        return elements
    budget.take()
    return _counting(elements, budget)


def _counting(elements: Iterator[Any], budget: _Budget) -> Iterator[Any]:
    for element in elements:
        budget.take()
        yield element


# read_dataset looks the generator up by name at each call: every data set pydicom reads
# goes through the counting one. (pydicom has no hook per element or per item.)
pydicom.filereader.data_element_generator = _counted_elements


@contextmanager
def _file_bytes(f: BinaryIO) -> Iterator[Any]:
    """The whole file as bytes (an in-memory file, not copied) or a read-only mmap of it;
    None for other file objects (a SpooledTemporaryFile would roll over on fileno())."""
    if isinstance(f, io.BytesIO):
        yield f.getvalue()
        return
    mapped = None
    if not isinstance(f, tempfile.SpooledTemporaryFile):
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (AttributeError, OSError, ValueError):  # no descriptor, empty, not a file
            mapped = None
    try:
        yield mapped
    finally:
        if mapped is not None:
            mapped.close()


def _json_uid(full: DicomJson, tag: str) -> str | None:
    """A UID as :func:`_uid_value` gives it: one non-empty string value, else None."""
    values = full.get(tag, {}).get("Value")
    if not values or len(values) != 1 or not isinstance(values[0], str):
        return None
    return values[0] or None


def _bulk_prefix(study: str, series: str, sop: str) -> str:
    return f"studies/{study}/series/{series}/instances/{sop}"


def _assemble(
    full: DicomJson,
    uids: tuple[str, str, str],
    syntax: str,
    frames: Frames,
    storage_key: str,
    size: int,
) -> InstanceRecord:
    study, series, sop = uids
    _check_depth(full)
    metadata = json_dumps(full)
    # No attribute can serialise longer than the whole metadata.
    levels = split_levels(full, all_small=len(metadata) <= MAX_INDEXED_ATTRIBUTE)
    patient_id = full.get("00100020", {}).get("Value", [""])[0]
    keys = orthanc_ids(str(patient_id or ""), study, series, sop)
    return InstanceRecord(
        patient_key=keys[0], study_key=keys[1], series_key=keys[2], instance_key=keys[3],
        study=levels[Level.STUDY], series=levels[Level.SERIES],
        instance=levels[Level.INSTANCE], metadata=metadata,
        transfer_syntax=syntax, storage_key=storage_key, size=size, frames=frames,
    )


def _check_depth(full: DicomJson) -> None:
    """Refuse sequences nested deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    stack = [(full, 1)]
    while stack:
        dataset, depth = stack.pop()
        for entry in dataset.values():
            items = entry.get("Value") if entry.get("vr") == "SQ" else None
            if not items:
                continue
            if depth > MAX_DEPTH:
                raise IngestError(CANNOT_UNDERSTAND,
                                  f"Sequences nested deeper than {MAX_DEPTH} levels")
            stack.extend((item, depth + 1) for item in items if isinstance(item, dict))


def split_levels(full: DicomJson, *, all_small: bool = False) -> dict[Level, DicomJson]:
    """Top-level non-binary attributes of the instance, by level (levels.py).

    Instance-level attributes longer than :data:`MAX_INDEXED_ATTRIBUTE` once
    serialised are left out (they remain in the metadata); ``all_small``: the caller
    knows none is, so none is serialised here.
    """
    study: DicomJson = {}
    series: DicomJson = {}
    instance: DicomJson = {}
    for key, entry in full.items():
        vr = entry.get("vr")
        if vr in BINARY_VRS:
            continue
        if vr == "SQ" and "Value" in entry:
            entry = {"vr": "SQ", "Value": [without_binary(item) for item in entry["Value"]]}
        tag = int(key, 16)
        if tag in STUDY_LEVEL:  # level_of(), without a Level lookup per attribute
            study[key] = entry
        elif tag in SERIES_LEVEL:
            series[key] = entry
        elif all_small or len(json_dumps(entry)) <= MAX_INDEXED_ATTRIBUTE:
            instance[key] = entry
    split = {Level.STUDY: study, Level.SERIES: series, Level.INSTANCE: instance}
    add_extra_tags(split)  # ExtraMainDicomTags: also kept at the level they are listed at
    return split
