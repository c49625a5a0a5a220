"""The two backend contracts, and the plain values they exchange.

``StorageArea`` keeps whole DICOM files as opaque blobs under generated keys.
``Index`` is the source of truth: what exists, the attributes QIDO searches,
the DICOM JSON metadata built at ingest and the frame offsets. Neither knows
anything about HTTP, and this package never imports ``app``.
"""

from __future__ import annotations

import enum
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

# DICOM JSON (PS3.18 F.2) of a set of attributes: {"0020000D": {"vr": "UI", "Value": [...]}}
DicomJson = dict[str, dict[str, Any]]

# Indexed attributes per level, by DICOM keyword. A backend keeps each in a column of its
# own so that QIDO matching runs in the database; every other attribute of the level lives in
# the level's DICOM JSON and is matched after the database narrowed the candidates.
STUDY_COLUMNS: tuple[str, ...] = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "StudyID", "StudyDescription", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
)
SERIES_COLUMNS: tuple[str, ...] = (
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "BodyPartExamined", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)
INSTANCE_COLUMNS: tuple[str, ...] = (
    "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
    "NumberOfFrames", "ContentDate", "ContentTime",
)


class Level(enum.Enum):
    """Query/retrieve levels of PS3.4 C.6.1 that DICOMweb exposes."""

    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


COLUMNS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: STUDY_COLUMNS,
    Level.SERIES: SERIES_COLUMNS,
    Level.INSTANCE: INSTANCE_COLUMNS,
}


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a string (QIDO default matching).

    NFKD splits accented letters into base + combining mark; dropping the marks
    and case-folding makes ``Gusev`` match ``ГУСЕВ``-style case variants and
    ``Müller`` match ``muller``.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Match(enum.Enum):
    """Kinds of matching of PS3.4 C.2.2.2, decided by the query parser."""

    SINGLE = "single"  # C.2.2.2.1 single value (exact; folded unless case-sensitive)
    LIST = "list"  # C.2.2.2.2 list of UIDs / values: any equal
    WILDCARD = "wildcard"  # C.2.2.2.4 '*' and '?'
    RANGE = "range"  # C.2.2.2.5 (lo, hi); '' is an open end; bounds already padded
    FUZZY = "fuzzy"  # PN fuzzy matching: every query word is a prefix of some name word


@dataclass(frozen=True)
class Constraint:
    """One matching key of a query.

    ``level`` is the level the attribute belongs to. A constraint on a level below
    the query level (``Modality`` in a study search) matches when *any* child
    matches, which is how ModalitiesInStudy matching works (PS3.18 §8.3.4.1).
    ``keyword`` may name a column of that level or any other attribute, matched
    against the level's DICOM JSON. ``also`` is a second keyword whose value is
    appended before comparing: StudyDate+StudyTime combined ranges (PS3.4 C.2.2.2.5.1).
    """

    level: Level
    keyword: str
    tag: str  # 8 uppercase hex digits
    vr: str
    kind: Match
    values: tuple[str, ...]
    also: str | None = None


@dataclass(frozen=True)
class Query:
    """A QIDO search, already parsed and validated."""

    level: Level
    constraints: tuple[Constraint, ...] = ()
    case_sensitive: bool = False
    limit: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class InstanceRecord:
    """Everything the index keeps about one instance, built at ingest."""

    patient_key: str  # Orthanc-compatible ids (SHA-1 scheme), see app.dicom.identifiers
    study_key: str
    series_key: str
    instance_key: str
    study: DicomJson  # patient + study level attributes (PS3.3 patient and study modules)
    series: DicomJson
    instance: DicomJson  # instance-level attributes QIDO answers with (no bulk data)
    metadata: str  # full DICOM JSON text of the instance (BulkDataURI with a placeholder base)
    transfer_syntax: str
    storage_key: str
    size: int
    frames: Sequence[Sequence[tuple[int, int]]] = ()  # per frame: (offset, length) byte ranges

    def uid(self, level: Level) -> str:
        attrs = {Level.STUDY: self.study, Level.SERIES: self.series,
                 Level.INSTANCE: self.instance}[level]
        key = {Level.STUDY: "0020000D", Level.SERIES: "0020000E",
               Level.INSTANCE: "00080018"}[level]
        return str(attrs[key]["Value"][0])


@dataclass(frozen=True)
class StoredInstance:
    """An instance as WADO needs it: where its bytes are and how they are encoded."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    instance_key: str
    transfer_syntax: str
    storage_key: str
    size: int
    instance_number: int | None
    frames: Sequence[Sequence[tuple[int, int]]] = field(default=(), compare=False)


@dataclass(frozen=True)
class SearchResult:
    """One QIDO match: DICOM JSON of its level and of its parents.

    Computed attributes are filled in by the index: ModalitiesInStudy,
    SOPClassesInStudy, NumberOfStudyRelatedSeries/Instances in ``study`` and
    NumberOfSeriesRelatedInstances in ``series`` (PS3.18 §10.6.3.3).
    ``series`` is empty for a study search, ``instance`` unless an instance search.
    """

    study: DicomJson
    series: DicomJson = field(default_factory=dict)
    instance: DicomJson = field(default_factory=dict)


@dataclass(frozen=True)
class Removed:
    """What a removal took out of the index; the caller then deletes the blobs."""

    storage_keys: tuple[str, ...]
    instances: int


@dataclass(frozen=True)
class Usage:
    """What the storage limits compare with (Orthanc's MaximumStorageSize and
    MaximumPatientCount): every stored instance's size as stored, and the patients."""

    size: int  # bytes
    patients: int  # distinct patient keys
    patient_size: int | None = None  # bytes of the patient asked about; None: not stored


@dataclass(frozen=True)
class PatientUsage:
    """One patient as recycling sees it."""

    patient_key: str
    # Increasing: when the patient last received an instance (a new or a replacing one).
    # Opaque; only compared with what another call returned.
    last_stored: int
    size: int  # bytes
    instances: int


@dataclass(frozen=True)
class BlobStat:
    """What a storage area tells about one blob without reading it (consistency checks)."""

    size: int  # bytes, as :meth:`StorageArea.open` reads them (uncompressed)
    modified: float  # POSIX time the blob was last written (its whole content visible)


class BackendUnavailable(Exception):  # noqa: N818 - reads as the condition it reports
    """A backend service (S3, PostgreSQL) cannot be reached or keeps failing.

    Raised after the backend's own retries; the application answers 503 with the reason.
    Never raised for a missing blob or row (those are ``FileNotFoundError`` / empty results).
    """


class StorageArea(ABC):
    """Blobs under opaque keys. Keys come from :meth:`new_key`, never from client input."""

    @staticmethod
    def new_key() -> str:
        return uuid.uuid4().hex

    @abstractmethod
    def write(self, key: str, stream: BinaryIO) -> int:
        """Store the rest of ``stream`` atomically under ``key``; return the byte count.

        Either the whole blob becomes visible or nothing does (crash included).
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open a blob for reading; the caller closes it. ``FileNotFoundError`` if absent."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start`` with one ranged read."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a blob; an absent key is not an error."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every stored key (consistency checks and migrations)."""

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Stream a blob in chunks without holding it whole."""
        with self.open(key) as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def stat(self, key: str) -> BlobStat:
        """Size and time of last write of a blob; ``FileNotFoundError`` if absent.

        ``dicomweb-server check`` tells an unreferenced blob left by a crash from one a
        STOW in flight has just written (blob first, index row next) by its age.
        ``NotImplementedError``: this storage area cannot tell (the check then never
        deletes an unreferenced blob unless its grace period is 0).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot stat a blob")

    def sweep_interrupted(self, older_than: float, *, delete: bool = False) -> list[str]:
        """Debris of writes that never finished (a process killed mid-write): temporary
        files, unfinished multipart uploads. Returns the names of those last touched more
        than ``older_than`` seconds ago, and removes them when ``delete``. They are never
        keys nor readable; younger ones may be writes in progress. Default: none known."""
        return []


# ---------------------------------------------------------------------------------------------
# Orthanc's resource model (its REST API, the DICOMweb client's STOW by Orthanc ids), the
# change log, jobs and small shared properties: schema version 4 of the SQL indexes.


class ResourceType(enum.Enum):
    """Orthanc's four resource levels; ids are ``app.dicom.identifiers.orthanc_ids``."""

    PATIENT = "Patient"
    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


@dataclass(frozen=True)
class Resource:
    """One patient, study, series or instance as Orthanc's REST API shows it.

    ``attrs`` is the DICOM JSON of the level as indexed (a patient: the patient-module
    attributes, PS3.3 C.7.1.1, of its most recently stored study; a study: its attributes
    without those). ``parent`` is None for a patient;
    ``children`` are the ids one level down, in the order they were first stored (empty
    for an instance). ``uids``: StudyInstanceUID / SeriesInstanceUID / SOPInstanceUID down to
    the level (a patient: its PatientID value under ``"PatientID"``).
    """

    type: ResourceType
    id: str
    parent: str | None
    children: tuple[str, ...]
    attrs: DicomJson
    uids: dict[str, str]
    instance: StoredInstance | None = None  # for an instance
    last_update: float = 0.0  # POSIX time the resource last received an instance (0: unknown,
    # stored before schema version 4)


@dataclass(frozen=True)
class Change:
    """One entry of the change log (Orthanc's ``/changes``)."""

    seq: int
    change_type: str  # NewInstance / NewSeries / NewStudy / NewPatient / Deleted
    resource_type: ResourceType
    resource_id: str
    date: float  # POSIX time


class JobState(enum.Enum):
    """Orthanc's job states (``/jobs/{id}`` ``State``)."""

    PENDING = "Pending"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCESS = "Success"
    FAILURE = "Failure"


@dataclass(frozen=True)
class JobRecord:
    """A job as the Index keeps it: every worker of every node sees the same row.

    ``parameters`` (JSON) is what the runner needs to run or resume the job; ``content``
    (JSON) is what users see. ``position`` is the number of steps done, where a resumed job
    starts again. A running job is held by ``owner`` until ``lease_until``: a job whose
    owner died (lease passed) is claimed again by another worker. ``request`` is a signal
    from another worker to the owner: ``"cancel"`` or ``"pause"``.
    """

    id: str
    type: str
    state: JobState
    priority: int
    created: float  # POSIX times
    parameters: str
    content: str = "{}"
    progress: int = 0  # percent
    position: int = 0
    error_code: int = 0
    error_description: str = "Success"
    error_details: str = ""
    completed: float | None = None
    runtime: float = 0.0  # seconds spent running, over every attempt
    owner: str | None = None
    lease_until: float | None = None
    request: str | None = None
    attempts: int = 0  # times a worker claimed it (a resumed job: > 1)


JOB_FIELDS = frozenset(JobRecord.__dataclass_fields__) - {"id"}


class ResourceIndex(ABC):
    """Orthanc's resource model, change log, jobs and properties (schema version 4).

    Kept apart from :class:`Index` only to keep each contract readable; every index
    implements both, and every method is safe across workers and nodes.
    """

    # -- resources by Orthanc id ----------------------------------------------------------

    @abstractmethod
    def resource_ids(self, type_: ResourceType, *, since: int = 0,
                     limit: int | None = None) -> list[str]:
        """Ids at a level in the order first stored (a replaced instance keeps its place);
        ``since`` ids are skipped, then at most ``limit`` returned (Orthanc's
        ``?since=&limit=``: ``since`` is a position, not a change seq)."""

    @abstractmethod
    def resource(self, type_: ResourceType, id_: str) -> Resource | None:
        """One resource, or None (also for the id of another level). Reads indexes only."""

    @abstractmethod
    def resource_instances(self, type_: ResourceType, id_: str) -> list[StoredInstance]:
        """Every instance under a resource (itself, for an instance), in the order of
        :meth:`Index.instances` (a patient: its studies in the order stored); [] if unknown."""

    @abstractmethod
    def counts(self) -> dict[ResourceType, int]:
        """Number of patients, studies, series and instances (``/statistics``)."""

    # -- change log -----------------------------------------------------------------------

    @abstractmethod
    def changes(self, since: int = 0, limit: int = 100) -> list[Change]:
        """Changes with ``seq > since``, oldest first, at most ``limit``. Every write path
        records them in the same transaction as the write (database triggers):
        ``New<Level>`` when a resource appears (a patient: with its first instance),
        ``Deleted`` (``resource_type`` its level) when it goes, cascades included, and both
        when an id changes (a study moved to another patient). A replacement of an instance
        by a new blob logs ``NewInstance`` again under the same id (Orthanc logs the
        overwriting store); the same blob again logs nothing. The order within one write is
        unspecified. On PostgreSQL a seq may become visible after a higher one committed
        by a concurrent write (as with Orthanc's PostgreSQL plugin)."""

    @abstractmethod
    def clear_changes(self) -> None:
        """Empty the change log (Orthanc's ``DELETE /changes``). ``seq`` keeps growing: a
        reader polling with ``since`` never sees a number twice."""

    @abstractmethod
    def last_change(self) -> int:
        """The ``seq`` of the newest change (0: none)."""

    # -- jobs -----------------------------------------------------------------------------

    @abstractmethod
    def add_job(self, job: JobRecord) -> None:
        """Insert a new job."""

    @abstractmethod
    def job(self, job_id: str) -> JobRecord | None:
        """One job, or None."""

    @abstractmethod
    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""

    @abstractmethod
    def claim_job(self, owner: str, now: float, lease: float,
                  types: Collection[str] | None = None) -> JobRecord | None:
        """Atomically take the next job to run: the Pending job of highest priority (oldest
        first among equals), else a Running job whose lease passed (its owner died: it is
        resumed). The job becomes Running, owned by ``owner`` until ``now + lease``,
        ``attempts`` + 1. Of concurrent claims, each job goes to exactly one. ``types``:
        only jobs of these types (None: any; empty: none). Paused and finished jobs are
        never claimed."""

    @abstractmethod
    def update_job(self, job_id: str, changes: dict[str, Any], *,
                   owner: str | None | object = ..., states: Collection[JobState] = ()
                   ) -> JobRecord | None:
        """Compare-and-set: apply ``changes`` (field name → value, :data:`JOB_FIELDS`) if the
        row exists, its ``owner`` equals ``owner`` (when given; None matches no owner) and
        its state is one of ``states`` (when given). Returns the row after the change, or
        None if a condition failed (nothing written). Empty ``changes``: only the check.
        ``ValueError`` for a name outside :data:`JOB_FIELDS`."""

    @abstractmethod
    def remove_jobs(self, job_ids: Collection[str]) -> None:
        """Forget jobs (history pruning)."""

    # -- small shared properties (remote servers with ServersInDatabase, ...) -------------

    @abstractmethod
    def properties(self, prefix: str) -> dict[str, str]:
        """Every property whose name starts with ``prefix``."""

    @abstractmethod
    def set_property(self, name: str, value: str | None) -> None:
        """Set (or with None remove) a property; atomic, last writer wins."""


class Index(ResourceIndex):
    """What exists and everything derived from it at ingest. Safe across processes."""

    @abstractmethod
    def add_instance(self, record: InstanceRecord) -> str | None:
        """Insert or replace an instance (keyed by SOPInstanceUID) in one transaction.

        Creates the study and series as needed and refreshes their attributes.
        Returns the storage key of the replaced instance, if any, so that the caller
        can delete the old blob after this commit.
        """

    @abstractmethod
    def add_instance_if_absent(self, record: InstanceRecord) -> bool:
        """Insert an instance unless one with its SOPInstanceUID is stored (Orthanc's
        ``OverwriteInstances: false``): True if inserted; False if one was already there, in
        which case nothing changed (not even the study and series attributes).

        Atomic: of concurrent calls for the same new SOPInstanceUID exactly one inserts.
        """

    @abstractmethod
    def usage(self, patient_key: str | None = None) -> Usage:
        """Stored bytes and patients (maintained at each write: no scan), and the bytes of
        ``patient_key`` if given and stored."""

    @abstractmethod
    def oldest_patients(self, limit: int, exclude: Collection[str] = ()) -> list[PatientUsage]:
        """Up to ``limit`` patients, least recently stored first (the recycling order: the
        patient whose latest instance arrived first), leaving out the ``exclude`` keys."""

    @abstractmethod
    def remove_patient(self, patient_key: str, last_stored: int | None = None) -> Removed:
        """Delete every study of a patient in one transaction; the caller then deletes the
        blobs. With ``last_stored`` (from :meth:`oldest_patients`), only if the patient
        received no instance since: a patient chosen for recycling that a concurrent store
        just added to is left alone (``Removed((), 0)``)."""

    @abstractmethod
    def search(self, query: Query) -> list[SearchResult]:
        """QIDO: matches in a stable order (the order resources were first stored)."""

    @abstractmethod
    def instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[StoredInstance]:
        """Instances under a study/series/instance, by series then InstanceNumber then UID.

        An empty list when nothing matches; a series or instance is only found under
        its own parents.
        """

    @abstractmethod
    def find_instance(self, sop_uid: str) -> StoredInstance | None:
        """The instance with this SOPInstanceUID wherever it is (WADO-URI), or None."""

    @abstractmethod
    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        """DICOM JSON texts of the instances, in the order of :meth:`instances`."""

    @abstractmethod
    def remove(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
        *, storage_key: str | None = None,
    ) -> Removed:
        """Delete a study, series or instance (and parents left empty) in one transaction.

        With ``storage_key`` (an instance only: ``sop_uid`` required), the instance is
        removed only while its row still refers to that blob: a repair removing a row whose
        blob is lost never takes the row a concurrent STOW of the same instance just wrote.
        """

    @abstractmethod
    def storage_keys(self) -> Iterator[str]:
        """Every storage key a row refers to (consistency checks), streamed: rows are read a
        page at a time, never all at once and without one long transaction, so that a huge
        index costs little memory and holds no lock. Keys of rows added or removed during the
        iteration may or may not be listed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (tests and shutdown)."""

