"""Do the index and the storage area agree? (``dicomweb-server check [--repair]``)

What can go wrong, and why:

- **Orphan blobs**: a blob no index row refers to. A STOW writes the blob first and commits
  the index row next; a process killed in between (SIGKILL, power loss, OOM) leaves the
  blob behind, as does a blob whose delete failed after its row was removed (S3 down during
  a DELETE). Harmless (never served), it only costs its space.
- **Rows without their blob**: an index row whose blob is gone: an instance QIDO lists but
  WADO cannot serve. The write order above never produces one; a blob deleted by hand, a
  storage restored from an older backup than the index, or a lost disk does.
- **Size mismatches** (``sizes=True``): a blob whose size differs from the size recorded at
  ingest (truncated or replaced by hand). Reported, never repaired: restore it from a backup
  or store the instance again.
- **Interrupted writes**: temporary files (filesystem) or unfinished multipart uploads (S3)
  of writes whose process died; never readable, they only cost space.

The race with writes in flight, and why the grace period: the server keeps running while
the check runs. A STOW in flight has written its blob and not yet committed its index row,
so its blob looks like an orphan for a moment. Such a blob is young: the commit follows the
write at once. The check therefore never deletes an unreferenced blob younger than the
grace period (default 10 minutes, by the blob's time of last write as the storage reports
it: the file's mtime, the object's LastModified), nor one whose age the storage cannot tell,
and it lists the index a second time just before judging, so that a blob whose STOW
committed since the first listing is left alone. The grace period must exceed the longest
time one instance's STOW takes between the end of its blob's write and the index commit; for
S3 multipart uploads (above 8 MiB), which some services date from the upload's start, the
upload's duration as well. Interrupted writes get the same grace period. With a grace
period of 0 (tests, a stopped server) every unreferenced blob is an orphan.

The other order is safe by construction: the index is listed *before* the storage, and a
blob is only deleted after its row is removed, so a row listed first whose blob is missing
from the later storage listing is either a real loss or a row removed in between (DELETE,
a replacement): each such candidate is looked up again, blob first and row next, and
repaired with a removal that only applies while the row still refers to that blob
(``Index.remove(..., storage_key=...)``): never the row a concurrent STOW of the same
instance just wrote.

Memory: the keys of the index are held in a set (about 100 bytes per instance); the storage
is streamed. Rows without their blob and ``sizes`` walk the index study by study.

Plain functions and values, no Flask: :mod:`app.cli` builds the backends (the same
``build_storage`` / ``build_index`` as the server) and prints :meth:`Report.text`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from backends.base import (
    BackendUnavailable,
    Index,
    Level,
    Query,
    StorageArea,
    StoredInstance,
)

DEFAULT_GRACE = 600.0  # seconds: an unreferenced blob younger than this may be a STOW in flight
STUDIES_PER_PAGE = 100  # studies listed per search when walking the index
SHOWN = 20  # problems listed per kind in the report (all are counted)


@dataclass(frozen=True)
class Unreferenced:
    """A blob no index row refers to."""

    key: str
    size: int | None  # None: the storage cannot tell
    age: float | None  # seconds since its last write; None: the storage cannot tell


@dataclass(frozen=True)
class Blobless:
    """An index row whose blob is missing."""

    key: str
    study_uid: str
    series_uid: str
    sop_uid: str


@dataclass(frozen=True)
class Mismatch:
    """A blob whose size is not the one recorded at ingest."""

    key: str
    sop_uid: str
    recorded: int
    stored: int


@dataclass
class Report:
    """What a check found and what its repair did; :meth:`text` is what the CLI prints."""

    grace: float
    indexed: int = 0  # blobs the index refers to (one per instance)
    stored: int = 0  # blobs in the storage area
    orphans: list[Unreferenced] = field(default_factory=list)  # older than the grace period
    recent: list[Unreferenced] = field(default_factory=list)  # younger, or age unknown
    blobless: list[Blobless] = field(default_factory=list)
    mismatches: list[Mismatch] | None = None  # None: sizes not checked
    interrupted: list[str] = field(default_factory=list)
    repaired: bool = False
    deleted: list[str] = field(default_factory=list)  # orphan keys deleted by the repair
    removed: list[str] = field(default_factory=list)  # keys of the blobless rows removed
    gone: list[str] = field(default_factory=list)  # blobless rows changed meanwhile
    swept: list[str] = field(default_factory=list)  # interrupted writes removed
    failures: list[str] = field(default_factory=list)  # repairs that failed, and why
    seconds: float = 0.0

    @property
    def problems(self) -> int:
        """Problems still there (after the repair, if any); 0: consistent."""
        return (len(self.orphans) - len(self.deleted)
                + len(self.blobless) - len(self.removed) - len(self.gone)
                + len(self.mismatches or ())
                + len(self.interrupted) - len(self.swept))

    @property
    def consistent(self) -> bool:
        return self.problems == 0

    def text(self, shown: int = SHOWN) -> str:
        grace = _duration(self.grace)
        lines = [f"{self.indexed} instances in the index, {self.stored} blobs in the storage"]
        lines.append(f"orphan blobs (no index row, older than {grace}): {len(self.orphans)}")
        lines += _some([f"  {o.key}  {_size(o.size)}  written {_age(o.age)}"
                        for o in self.orphans], shown)
        if self.recent:
            lines.append(f"recent unreferenced blobs (younger than {grace} or age unknown: "
                         f"maybe STOWs in flight, left alone): {len(self.recent)}")
            lines += _some([f"  {o.key}  {_size(o.size)}  written {_age(o.age)}"
                            for o in self.recent], shown)
        lines.append(f"index rows without their blob: {len(self.blobless)}")
        lines += _some([f"  {b.key}  instance {b.sop_uid} (study {b.study_uid}, series "
                        f"{b.series_uid})" for b in self.blobless], shown)
        if self.mismatches is None:
            lines.append("size mismatches: not checked (--sizes)")
        else:
            lines.append(f"size mismatches: {len(self.mismatches)}")
            lines += _some([f"  {m.key}  instance {m.sop_uid}: {m.stored} bytes stored, "
                            f"{m.recorded} recorded" for m in self.mismatches], shown)
        lines.append(f"interrupted writes (older than {grace}): {len(self.interrupted)}")
        lines += _some([f"  {name}" for name in self.interrupted], shown)
        if self.repaired:
            lines.append(
                f"repair: {len(self.removed)} index rows removed, {len(self.deleted)} orphan "
                f"blobs deleted, {len(self.swept)} interrupted writes removed"
                + (f" ({len(self.gone)} rows changed meanwhile, left alone)" if self.gone
                   else ""))
            lines += _some([f"  failed: {failure}" for failure in self.failures], shown)
            if self.mismatches:
                lines.append("  size mismatches are not repaired: restore those blobs from a "
                             "backup, or store the instances again")
        verdict = ("consistent" if self.consistent else
                   f"{self.problems} problem{'s' * (self.problems != 1)} "
                   f"{'remain' if self.repaired else 'found'}"
                   + ("" if self.repaired else " (--repair fixes all but size mismatches)"))
        lines.append(f"{verdict} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def check(storage: StorageArea, index: Index, *, repair: bool = False,
          grace: float = DEFAULT_GRACE, sizes: bool = False,
          clock: Callable[[], float] = time.time) -> Report:
    """Compare ``index`` with ``storage``; with ``repair``, remove the rows without blobs
    (index first), then delete the orphan blobs and the interrupted writes older than
    ``grace`` seconds. ``BackendUnavailable`` propagates (nothing is judged then)."""
    if grace < 0:
        raise ValueError("the grace period cannot be negative")
    started = time.monotonic()
    report = Report(grace=grace)
    # 1. The index first, then the storage: a row's blob is written before the row, so a
    #    row listed here has its blob in the listing below unless it is lost or was removed
    #    in between (checked again in _blobless).
    missing = set(index.storage_keys())
    report.indexed = len(missing)
    candidates: list[str] = []
    for key in storage.keys():
        report.stored += 1
        if key in missing:
            missing.remove(key)
        else:
            candidates.append(key)
    _unreferenced(report, candidates, storage, index, clock)
    _blobless_and_sizes(report, missing, storage, index, sizes)
    report.interrupted = storage.sweep_interrupted(grace)
    if repair:
        _repair(report, storage, index)
    report.seconds = time.monotonic() - started
    return report


def _unreferenced(report: Report, candidates: list[str], storage: StorageArea, index: Index,
                  clock: Callable[[], float]) -> None:
    """Age each candidate, then drop those the index refers to by now (STOWs that committed
    since the first listing); split the rest by the grace period."""
    if not candidates:
        return
    found: list[Unreferenced] = []
    for key in candidates:
        try:
            stat = storage.stat(key)
        except FileNotFoundError:  # deleted since (a STOW that failed, a repair elsewhere)
            continue
        except NotImplementedError:
            found.append(Unreferenced(key, None, None))
            continue
        found.append(Unreferenced(key, stat.size, max(0.0, clock() - stat.modified)))
    referenced = set(index.storage_keys())
    for blob in found:
        if blob.key in referenced:
            continue
        old = blob.age is not None and blob.age >= report.grace
        (report.orphans if old or report.grace == 0 else report.recent).append(blob)


def _blobless_and_sizes(report: Report, missing: set[str], storage: StorageArea,
                        index: Index, sizes: bool) -> None:
    """Confirm each row without a blob (the blob absent first, then the row still there:
    together they prove the loss, since a blob is only deleted once its row is gone); with
    ``sizes``, compare every blob's size with the recorded one on the same walk."""
    missing = {key for key in missing if not _exists(storage, key)}
    if sizes:
        report.mismatches = []
    if not missing and not sizes:
        return
    for inst in _walk(index):
        if inst.storage_key in missing:
            report.blobless.append(Blobless(inst.storage_key, inst.study_uid,
                                            inst.series_uid, inst.sop_uid))
            missing.discard(inst.storage_key)
            if not missing and not sizes:
                return
        elif sizes:
            try:
                stored = storage.stat(inst.storage_key).size
            except FileNotFoundError:  # removed meanwhile (a DELETE), or lost since
                continue
            except NotImplementedError:
                report.mismatches = None
                sizes = False
                continue
            if stored != inst.size:
                assert report.mismatches is not None
                report.mismatches.append(
                    Mismatch(inst.storage_key, inst.sop_uid, inst.size, stored))


def _exists(storage: StorageArea, key: str) -> bool:
    try:
        storage.stat(key)
    except FileNotFoundError:
        return False
    except NotImplementedError:
        try:
            storage.read_range(key, 0, 1)
        except FileNotFoundError:
            return False
    return True


def _walk(index: Index) -> Iterator[StoredInstance]:
    """Every instance, study by study (``STUDIES_PER_PAGE`` studies per search)."""
    offset = 0
    while page := index.search(Query(Level.STUDY, limit=STUDIES_PER_PAGE, offset=offset)):
        for result in page:
            yield from index.instances(str(result.study["0020000D"]["Value"][0]))
        offset += len(page)


def _repair(report: Report, storage: StorageArea, index: Index) -> None:
    """Index first (rows without blobs), then the storage (orphans, interrupted writes).
    A failure is recorded and the repair goes on; an unreachable backend stops it."""
    report.repaired = True
    for row in report.blobless:
        removed = index.remove(row.study_uid, row.series_uid, row.sop_uid,
                               storage_key=row.key)
        (report.removed if removed.instances else report.gone).append(row.key)
    for blob in report.orphans:
        try:
            storage.delete(blob.key)
        except (OSError, BackendUnavailable) as exc:
            report.failures.append(f"deleting blob {blob.key}: {exc}")
            continue
        report.deleted.append(blob.key)
    if report.interrupted:
        try:
            swept = set(storage.sweep_interrupted(report.grace, delete=True))
        except (OSError, BackendUnavailable) as exc:
            report.failures.append(f"removing interrupted writes: {exc}")
            return
        report.swept = [name for name in report.interrupted if name in swept]


def _some(lines: list[str], shown: int) -> list[str]:
    if len(lines) <= shown:
        return lines
    return [*lines[:shown], f"  ... and {len(lines) - shown} more"]


def _size(size: int | None) -> str:
    return "size unknown" if size is None else f"{size} bytes"


def _age(age: float | None) -> str:
    return "at an unknown time" if age is None else f"{_duration(age)} ago"


def _duration(seconds: float) -> str:
    """``45 s`` / ``12 min`` / ``3.5 h`` / ``2.0 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
