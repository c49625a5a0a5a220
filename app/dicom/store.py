"""STOW-RS processing (PS3.18 §10.5): one part at a time, spool → validate → store → index.

Plain functions, no Flask. A part is fully validated before any byte reaches the
storage area, and the index is committed only after the blob is durable, so a
crash at any point leaves at worst an unreferenced blob, never a visible half.
"""

from __future__ import annotations

import errno
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from app.dicom.ingest import IngestError, build_record
from app.errors import BadRequest
from backends.base import BackendUnavailable, Index, InstanceRecord, Level, StorageArea

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY = 8 << 20  # parts above this go to a temporary file (then mmapped)

# Failure reasons, PS3.4 Annex GG.4-1 / PS3.18 §10.5.3.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


class Part(Protocol):
    headers: dict[str, str]

    def iter_chunks(self) -> Iterator[bytes]: ...


@dataclass
class StowOutcome:
    """What happened to each part; :meth:`status` and :meth:`answer` follow §10.5.3."""

    base_url: str
    study_uid: str | None = None
    stored: list[tuple[str, str, str, str]] = field(default_factory=list)  # class, sop, st, se
    failed: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    conflict: bool = False

    def status(self) -> int:
        """200 all stored; 202 some failed; 409 nothing stored and a study mismatch;
        400 nothing stored otherwise (an empty request stores nothing and is 200)."""
        if not self.failed:
            return 200
        if self.stored:
            return 202
        return 409 if self.conflict else 400

    def answer(self) -> dict[str, Any]:
        """Store Instances Response Module as DICOM JSON (PS3.18 Table 10.5.3-1)."""
        body: dict[str, Any] = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
        if self.study_uid:
            body["00081190"] = _ur(f"{self.base_url}studies/{self.study_uid}")
        if self.failed:
            body["00081198"] = {"vr": "SQ", "Value": [_failed_item(*f) for f in self.failed]}
        body["00081199"] = {"vr": "SQ", "Value": [self._stored_item(*s) for s in self.stored]}
        return body

    def _stored_item(self, sop_class: str, sop: str, st: str, se: str) -> dict[str, Any]:
        url = f"{self.base_url}studies/{st}/series/{se}/instances/{sop}"
        return {"00081150": _ui(sop_class), "00081155": _ui(sop), "00081190": _ur(url)}


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]}


def _ur(value: str) -> dict[str, Any]:
    return {"vr": "UR", "Value": [value]}


def _failed_item(sop_class: str | None, sop: str | None, reason: int) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if sop_class:
        item["00081150"] = _ui(sop_class)
    if sop:
        item["00081155"] = _ui(sop)
    item["00081197"] = {"vr": "US", "Value": [reason]}
    return item


def store_instances(
    parts: Iterable[Part],
    *,
    storage: StorageArea,
    index: Index,
    base_url: str,
    study_uid: str | None = None,
    binary_mode: str = "BulkDataURI",
) -> StowOutcome:
    """Store every part of a STOW-RS request; ``study_uid`` comes from the URL, if any.

    A body that breaks off (bad framing, truncated upload) after some parts were
    stored still gets a Store Instances answer: the stored parts are listed and the
    broken remainder counts as one failure (202), so the client knows what landed.
    Before anything was processed, the framing error itself is raised (400).
    """
    outcome = StowOutcome(base_url=base_url)
    try:
        for part in parts:
            _store_part(part, outcome, storage=storage, index=index, study_uid=study_uid,
                        binary_mode=binary_mode)
    except BadRequest as exc:
        if not (outcome.stored or outcome.failed):
            raise
        log.warning("STOW body broke off after %d stored part(s): %s",
                    len(outcome.stored), exc.message)
        outcome.failed.append((None, None, CANNOT_UNDERSTAND))
    return outcome


def _store_part(part: Part, outcome: StowOutcome, **options: Any) -> None:
    if "application/dicom" not in part.headers.get("content-type", "application/dicom"):
        # Later parts of another type fail alone (the blueprint answers 415 if the first
        # one is wrong, before anything is stored).
        for _ in part.iter_chunks():
            pass
        outcome.failed.append((None, None, CANNOT_UNDERSTAND))
        return
    with spool(part.iter_chunks()) as (f, size):
        store_one(f, size, outcome, **options)


class spool:  # noqa: N801 - used as a context manager, reads like a function
    """A part's bytes as a file: in memory up to 8 MiB, else in a temporary file.

    In memory, the chunks are joined once into the bytes of an ``io.BytesIO``, which
    shares them: ingest (``getvalue()``) and the storage write use them without a copy.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = chunks
        self.file: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, int]:
        try:
            size = self._fill()
        except BaseException:  # e.g. the client went away mid-part
            self.__exit__()
            raise
        assert self.file is not None
        self.file.seek(0)
        return self.file, size

    def _fill(self) -> int:
        pending: list[bytes] = []
        size = 0
        for chunk in self.chunks:
            size += len(chunk)
            if self.file is None and size > SPOOL_IN_MEMORY:
                self.file = tempfile.TemporaryFile()  # already unlinked: gone when closed
                self.file.writelines(pending)
                pending = []
            if self.file is None:
                pending.append(chunk)
            else:
                self.file.write(chunk)
        if self.file is None:
            self.file = io.BytesIO(b"".join(pending))
        return size

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def store_one(
    f: BinaryIO,
    size: int,
    outcome: StowOutcome,
    *,
    storage: StorageArea,
    index: Index,
    study_uid: str | None,
    binary_mode: str,
) -> None:
    key = storage.new_key()
    try:
        record = build_record(f, storage_key=key, size=size, binary_mode=binary_mode)
    except IngestError as exc:
        outcome.failed.append((exc.sop_class_uid, exc.sop_instance_uid, exc.reason))
        return
    sop_class = str(record.instance["00080016"]["Value"][0])
    sop, st = record.uid(Level.INSTANCE), record.uid(Level.STUDY)
    if study_uid is not None and st != study_uid:
        # PS3.18 §10.5.1: instances of another study than the target URL's are refused.
        outcome.conflict = True
        outcome.failed.append((sop_class, sop, PROCESSING_FAILURE))
        return
    reason = _persist(f, record, storage, index)
    if reason:
        outcome.failed.append((sop_class, sop, reason))
        return
    outcome.study_uid = outcome.study_uid or st
    outcome.stored.append((sop_class, sop, st, record.uid(Level.SERIES)))


def _persist(f: BinaryIO, record: InstanceRecord, storage: StorageArea, index: Index) -> int:
    """Blob first, then the index, then the replaced blob: nothing half-visible.

    An unreachable backend (``BackendUnavailable``) is not a per-instance failure: it
    propagates and the whole request answers 503, the blob of this part removed first
    when the index was the one that failed.
    """
    f.seek(0)
    try:
        storage.write(record.storage_key, f)
    except OSError as exc:
        log.error("storing %s failed: %s", record.uid(Level.INSTANCE), exc)
        return OUT_OF_RESOURCES if exc.errno == errno.ENOSPC else PROCESSING_FAILURE
    try:
        replaced = index.add_instance(record)
    except BackendUnavailable:
        _delete_quietly(storage, record.storage_key)
        raise
    except Exception:
        log.exception("indexing %s failed", record.uid(Level.INSTANCE))
        _delete_quietly(storage, record.storage_key)
        return PROCESSING_FAILURE
    if replaced and replaced != record.storage_key:
        _delete_quietly(storage, replaced)
    return 0


def _delete_quietly(storage: StorageArea, key: str) -> None:
    """Remove a blob no row refers to; if that fails too, a consistency sweep finds it."""
    try:
        storage.delete(key)
    except (OSError, BackendUnavailable) as exc:
        log.warning("could not delete unreferenced blob %s: %s", key, exc)
