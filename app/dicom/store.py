"""STOW-RS processing (PS3.18 §10.5): one part at a time, spool → validate → store → index.

Plain functions, no Flask. A part is fully validated before any byte reaches the
storage area, and the index is committed only after the blob is durable, so a
crash at any point leaves at worst an unreferenced blob, never a visible half.

What a store may do besides adding is a :class:`StoragePolicy` (Orthanc's
``OverwriteInstances``, ``MaximumStorageSize``, ``MaximumPatientCount`` and
``MaximumStorageMode``): keep or replace an instance stored before, and refuse an
instance or recycle the least recently stored patients when a limit would be passed.
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
from app.errors import BadRequest, PayloadTooLarge
from backends.base import (
    BackendUnavailable,
    Index,
    InstanceRecord,
    Level,
    PatientUsage,
    StorageArea,
    StoredInstance,
)

log = logging.getLogger(__name__)

SPOOL_IN_MEMORY = 8 << 20  # parts above this go to a temporary file (then mmapped)

# Failure reasons, PS3.4 Annex GG.4-1 / PS3.18 §10.5.3.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# Warning reason of an instance whose SOPInstanceUID was already stored and kept as it was
# (OverwriteInstances false). PS3.18 Table I.2-1 (the C-STORE warnings of PS3.4 Table B.2-1)
# has no code for "already stored, not replaced"; of the three it defines, B000 "Coercion of
# Data Elements" and B007 "Data Set does not match SOP Class" describe a change or a defect
# of the stored copy, while here every element received was set aside: B006 "Elements
# Discarded". The item is in ReferencedSOPSequence (the instance is stored: the first copy)
# and the request answers 202, which Table 10.5.3-1 gives to "stored some of the Instances
# but warnings or failures exist for others"; 200 is for all stored as sent. Orthanc answers
# 200 without a warning (docs/conformance.md).
ELEMENTS_DISCARDED = 0xB006

MIB = 1 << 20  # Orthanc's MaximumStorageSize unit (megabytes of 1024 × 1024 bytes)
_RECYCLE_ROUNDS = 5  # usage re-read after each round: concurrent stores fill it up too
_KEPT = -1  # _persist: a concurrent store of the same instance came first


@dataclass(frozen=True)
class StoragePolicy:
    """What a store may do besides adding, as plain values; defaults are Orthanc's.

    ``overwrite``: a stored SOPInstanceUID is replaced (else the first copy is kept and the
    new one discarded, answered with :data:`ELEMENTS_DISCARDED`). ``max_bytes`` /
    ``max_patients`` (0: no limit): what the stored instances may add up to, sizes as
    stored. ``recycle``: make room by deleting the least recently stored patients (else
    refuse the instance with :data:`OUT_OF_RESOURCES`).
    """

    overwrite: bool = False
    max_bytes: int = 0
    max_patients: int = 0
    recycle: bool = True

    @classmethod
    def from_orthanc(cls, overwrite_instances: bool, maximum_storage_size: int,
                     maximum_patient_count: int, maximum_storage_mode: str) -> StoragePolicy:
        """From Orthanc's options (MaximumStorageSize in MB, mode Recycle or Reject)."""
        return cls(overwrite_instances, maximum_storage_size * MIB, maximum_patient_count,
                   maximum_storage_mode != "Reject")

    @property
    def limited(self) -> bool:
        return bool(self.max_bytes or self.max_patients)


ORTHANC_DEFAULTS = StoragePolicy()


class Part(Protocol):
    headers: dict[str, str]

    def iter_chunks(self) -> Iterator[bytes]: ...


class RequestTooLarge(PayloadTooLarge):
    """The body passed ``Limits.MaximumRequestSize`` while it was being read (413 when
    nothing was stored yet; see :func:`store_instances`)."""


@dataclass
class StowOutcome:
    """What happened to each part; :meth:`status` and :meth:`answer` follow §10.5.3."""

    base_url: str
    study_uid: str | None = None
    # class, sop, study, series, WarningReason (0: none)
    stored: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    failed: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    conflict: bool = False
    # Patient keys stored by this request so far: recycling never removes them (the answer
    # is about to list their instances as stored).
    patients: set[str] = field(default_factory=set)
    # Why some parts were refused by a request limit (for a Warning header), if any.
    limit_warnings: list[str] = field(default_factory=list)

    def status(self) -> int:
        """200 all stored as sent; 202 some stored, and others failed or were stored with a
        warning; 409 nothing stored and a study mismatch; 400 nothing stored otherwise
        (an empty request stores nothing and is 200)."""
        if not self.failed and not any(s[4] for s in self.stored):
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

    def _stored_item(self, sop_class: str, sop: str, st: str, se: str,
                     warning: int) -> dict[str, Any]:
        url = f"{self.base_url}studies/{st}/series/{se}/instances/{sop}"
        item = {"00081150": _ui(sop_class), "00081155": _ui(sop), "00081190": _ur(url)}
        if warning:
            item["00081196"] = {"vr": "US", "Value": [warning]}
        return item

    def add_stored(self, record: InstanceRecord) -> None:
        st = record.uid(Level.STUDY)
        self.study_uid = self.study_uid or st
        self.patients.add(record.patient_key)
        self.stored.append((str(record.instance["00080016"]["Value"][0]),
                            record.uid(Level.INSTANCE), st, record.uid(Level.SERIES), 0))

    def add_kept(self, record: InstanceRecord, kept: StoredInstance) -> None:
        """An instance already stored under this SOPInstanceUID, answered where it is."""
        self.study_uid = self.study_uid or kept.study_uid
        self.patients.add(record.patient_key)
        sop_class = kept.sop_class_uid or str(record.instance["00080016"]["Value"][0])
        self.stored.append((sop_class, kept.sop_uid, kept.study_uid, kept.series_uid,
                            ELEMENTS_DISCARDED))


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
    policy: StoragePolicy = ORTHANC_DEFAULTS,
    max_instances: int = 0,
) -> StowOutcome:
    """Store every part of a STOW-RS request; ``study_uid`` comes from the URL, if any.

    A body that breaks off (bad framing, truncated upload) after some parts were
    stored still gets a Store Instances answer: the stored parts are listed and the
    broken remainder counts as one failure (202), so the client knows what landed.
    Before anything was processed, the framing error itself is raised (400).

    Request limits (``Limits``): the parts after the first ``max_instances`` (0: no limit)
    are read and discarded, never parsed nor stored, each one a failed item with
    :data:`OUT_OF_RESOURCES`. A body that passes ``MaximumRequestSize`` while it is read
    (``parts`` raises :class:`RequestTooLarge`) stops there: the part being received is
    discarded before anything of it is written, the parts stored before it stay stored and
    are answered with one :data:`OUT_OF_RESOURCES` failure for the remainder (202); if
    nothing was processed yet, the 413 itself is raised.
    """
    outcome = StowOutcome(base_url=base_url)
    refused = 0
    try:
        for number, part in enumerate(parts, 1):
            if max_instances and number > max_instances:
                for _ in part.iter_chunks():  # read past it: the next part may follow
                    pass
                refused += 1
                outcome.failed.append((None, None, OUT_OF_RESOURCES))
                continue
            _store_part(part, outcome, storage=storage, index=index, study_uid=study_uid,
                        binary_mode=binary_mode, policy=policy)
    except RequestTooLarge as exc:
        if not (outcome.stored or outcome.failed):
            raise
        log.warning("STOW body passed the size limit after %d stored part(s): %s",
                    len(outcome.stored), exc.message)
        outcome.failed.append((None, None, OUT_OF_RESOURCES))
        outcome.limit_warnings.append(f"{exc.message}; the rest of the request was not read")
    except BadRequest as exc:
        if not (outcome.stored or outcome.failed):
            raise
        log.warning("STOW body broke off after %d stored part(s): %s",
                    len(outcome.stored), exc.message)
        outcome.failed.append((None, None, CANNOT_UNDERSTAND))
    if refused:
        outcome.limit_warnings.insert(0, f"{refused} part(s) beyond MaximumStowInstances "
                                         f"({max_instances}) were refused, not stored")
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
    policy: StoragePolicy = ORTHANC_DEFAULTS,
) -> None:
    key = storage.new_key()
    try:
        record = build_record(f, storage_key=key, size=size, binary_mode=binary_mode)
    except IngestError as exc:
        limit = exc.reason == OUT_OF_RESOURCES  # an ingest limit (elements, inflated size)
        log.log(logging.WARNING if limit else logging.INFO, "Instance refused (0x%04X): %s",
                exc.reason, exc.message)
        outcome.failed.append((exc.sop_class_uid, exc.sop_instance_uid, exc.reason))
        if limit:  # named to the client (STOW-RS Warning header, POST /instances 400)
            outcome.limit_warnings.append(exc.message)
        return
    sop_class = str(record.instance["00080016"]["Value"][0])
    sop, st = record.uid(Level.INSTANCE), record.uid(Level.STUDY)
    if study_uid is not None and st != study_uid:
        # PS3.18 §10.5.1: instances of another study than the target URL's are refused.
        outcome.conflict = True
        outcome.failed.append((sop_class, sop, PROCESSING_FAILURE))
        return
    existing = None
    if not policy.overwrite or policy.limited:
        existing = index.find_instance(sop)
        if existing is not None and not policy.overwrite:
            outcome.add_kept(record, existing)  # nothing written
            return
    if policy.limited:
        reason = make_room(record, existing.size if existing else 0, storage=storage,
                           index=index, policy=policy, protected=outcome.patients)
        if reason:
            outcome.failed.append((sop_class, sop, reason))
            return
    reason = _persist(f, record, storage, index, policy.overwrite)
    if reason == _KEPT:
        existing = index.find_instance(sop)
        if existing is not None:
            outcome.add_kept(record, existing)
            return
        reason = PROCESSING_FAILURE  # stored by a concurrent request, and deleted since
    if reason:
        outcome.failed.append((sop_class, sop, reason))
        return
    outcome.add_stored(record)


def make_room(record: InstanceRecord, replaced_size: int, *, storage: StorageArea,
              index: Index, policy: StoragePolicy, protected: set[str]) -> int:
    """0 when ``record`` may be stored within the policy's limits, once the least recently
    stored patients are recycled if the policy says so (index first, then their blobs);
    else :data:`OUT_OF_RESOURCES`, and then nothing was deleted.

    Never recycled: the record's own patient and the ``protected`` ones (stored by the same
    request). A patient that received an instance since it was chosen is left alone
    (``Index.remove_patient`` compares ``last_stored``), so an instance acknowledged by a
    concurrent request is never taken. Concurrent stores may pass a limit by the instances
    in flight: each store re-reads the usage, so the next one brings it back.
    """
    if policy.max_bytes and record.size > policy.max_bytes:
        log.warning("%s (%d bytes) can never fit in MaximumStorageSize (%d bytes)",
                    record.uid(Level.INSTANCE), record.size, policy.max_bytes)
        return OUT_OF_RESOURCES
    for _ in range(_RECYCLE_ROUNDS):
        usage = index.usage(record.patient_key)
        excess_bytes = excess_patients = 0
        if policy.max_bytes:
            excess_bytes = usage.size - replaced_size + record.size - policy.max_bytes
        if policy.max_patients:
            new_patient = usage.patient_size is None
            excess_patients = usage.patients + new_patient - policy.max_patients
        if excess_bytes <= 0 and excess_patients <= 0:
            return 0
        victims = _victims(index, {record.patient_key, *protected}, excess_bytes,
                           excess_patients) if policy.recycle else None
        if victims is None:
            log.warning("storage full (%d bytes, %d patients): %s refused", usage.size,
                        usage.patients, record.uid(Level.INSTANCE))
            return OUT_OF_RESOURCES
        for victim in victims:
            removed = index.remove_patient(victim.patient_key, victim.last_stored)
            if removed.instances:
                log.info("recycled patient %s (%d instances) to store %s",
                         victim.patient_key, removed.instances, record.uid(Level.INSTANCE))
            for key in removed.storage_keys:
                _delete_quietly(storage, key)
    return 0


def _victims(index: Index, protected: set[str], excess_bytes: int,
             excess_patients: int) -> list[PatientUsage] | None:
    """The least recently stored patients whose removal covers both excesses, or None if
    removing every patient that may go would not (Orthanc: "Cannot recycle more patients")."""
    limit = 8
    while True:
        candidates = index.oldest_patients(limit, protected)
        chosen: list[PatientUsage] = []
        freed = 0
        for candidate in candidates:
            if freed >= excess_bytes and len(chosen) >= excess_patients:
                break
            chosen.append(candidate)
            freed += candidate.size
        if freed >= excess_bytes and len(chosen) >= excess_patients:
            return chosen
        if len(candidates) < limit:
            return None
        limit *= 8


def _persist(f: BinaryIO, record: InstanceRecord, storage: StorageArea, index: Index,
             overwrite: bool) -> int:
    """Blob first, then the index, then the replaced blob: nothing half-visible.

    Without ``overwrite``, an instance stored meanwhile by a concurrent request wins: this
    blob is deleted again and :data:`_KEPT` returned, so that exactly one blob remains.
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
        if overwrite:
            replaced = index.add_instance(record)
        elif index.add_instance_if_absent(record):
            replaced = None
        else:
            _delete_quietly(storage, record.storage_key)
            return _KEPT
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


def delete_blobs(storage: StorageArea, keys: Iterable[str]) -> None:
    """Remove the blobs of rows a removal just took out of the index (DELETE, Orthanc's
    REST API): the removal is done whatever happens here; a blob that cannot be deleted
    is left to ``dicomweb-server check``."""
    for key in keys:
        _delete_quietly(storage, key)
