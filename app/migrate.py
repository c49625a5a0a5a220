"""Copy every instance of one deployment into another (``dicomweb-server migrate``).

Typical use: from the filesystem + SQLite of a single machine to S3 + PostgreSQL shared
by several nodes. Each instance is streamed from the source storage through STOW's own
path (:func:`app.dicom.store.spool` then :func:`app.dicom.store.store_one`): the blob is
written to the target storage under a new key, then re-ingested into the target index,
so the target holds exactly what a STOW of the same file would have produced.

The copy is idempotent and resumable: an instance whose SOPInstanceUID the target index
already lists is skipped, so a run that was interrupted (or that failed on some
instances) is simply run again. With ``delete_source`` an instance leaves the source
(index first, then its blob) only once the target has it.

Plain functions and values, no Flask: the CLI (``app.cli``) builds the backends and
draws the progress bar; tests call :func:`migrate` directly.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from app.dicom.store import StowOutcome, spool, store_one
from app.settings import Settings
from backends.base import (
    BackendUnavailable,
    Index,
    Level,
    Query,
    SearchResult,
    StorageArea,
    StoredInstance,
)

log = logging.getLogger(__name__)

NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
STUDY_INSTANCE_UID = "0020000D"


@dataclass(frozen=True)
class Deployment:
    """One side of a migration: its two backends, and how the target ingests."""

    storage: StorageArea
    index: Index
    binary_mode: str = "BulkDataURI"  # DicomWeb.OtherBinaryMode of the target


@dataclass
class Summary:
    """Counts so far; the progress bar and the final report read them."""

    total: int = 0
    copied: int = 0
    skipped: int = 0  # already in the target (an earlier, interrupted run)
    deleted: int = 0  # removed from the source (``delete_source``)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOPInstanceUID, why)
    aborted: str | None = None  # a backend became unreachable: the run stopped
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.copied + self.skipped + len(self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed and self.aborted is None

    def report(self, limit: int = 20) -> str:
        """The closing text: counts, then the first failures, then what to do."""
        seconds = time.monotonic() - self.started
        lines = [f"{self.copied} copied, {self.skipped} already in the target, "
                 f"{len(self.failed)} failed, {self.deleted} deleted from the source "
                 f"({self.total} in the source at the start, {seconds:.1f} s)"]
        lines += [f"  failed: {sop}: {why}" for sop, why in self.failed[:limit]]
        if len(self.failed) > limit:
            lines.append(f"  ... and {len(self.failed) - limit} more (see the log)")
        if self.aborted:
            lines.append(f"stopped: {self.aborted}")
        if not self.ok:
            lines.append("run the same command again to resume: copied instances are skipped")
        return "\n".join(lines)


def migrate(source: Deployment, target: Deployment, *, delete_source: bool = False,
            batch: int = 100, jobs: int = 4,
            progress: Callable[[Summary], None] | None = None) -> Summary:
    """Copy every instance of ``source`` into ``target``; never raises for one instance.

    Studies are listed ``batch`` at a time (memory stays bounded whatever the size of the
    source); the instances of a study are copied by ``jobs`` threads. An unreachable
    backend, or Ctrl-C, stops the run (``Summary.aborted``) rather than failing every
    instance; running it again resumes.
    """
    run = _Run(source, target, delete_source, progress or (lambda _summary: None))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            run.all(batch, pool)
        except BackendUnavailable as exc:
            run.summary.aborted = f"backend unavailable: {exc}"
        except KeyboardInterrupt:
            run.summary.aborted = "interrupted"
        finally:
            pool.shutdown(cancel_futures=True)  # queued copies are dropped
    return run.summary


def count_instances(index: Index, batch: int) -> int:
    """Instances in the index, from the studies' NumberOfStudyRelatedInstances."""
    return sum(int(result.study[NUMBER_OF_STUDY_RELATED_INSTANCES]["Value"][0])
               for result in _studies(index, batch))


def _studies(index: Index, batch: int,
             still_there: Callable[[str], bool] = lambda _: True) -> Iterator[SearchResult]:
    """Every study, in storing order, ``batch`` per query.

    ``still_there(study_uid)`` is asked once the caller is done with a study: a study it
    removed (``delete_source``) no longer takes a place in the pages that follow.
    """
    offset = 0
    while page := index.search(Query(Level.STUDY, limit=batch, offset=offset)):
        for result in page:
            yield result
            offset += still_there(_uid(result))


def _uid(result: SearchResult) -> str:
    return str(result.study[STUDY_INSTANCE_UID]["Value"][0])


class _Run:
    """One migration: walks the source study by study, counts in ``summary``."""

    def __init__(self, source: Deployment, target: Deployment, delete_source: bool,
                 report: Callable[[Summary], None]) -> None:
        self.source, self.target, self.delete_source = source, target, delete_source
        self.report = report
        self.summary = Summary()

    def all(self, batch: int, pool: ThreadPoolExecutor) -> None:
        self.summary.total = count_instances(self.source.index, batch)
        self.report(self.summary)
        for result in _studies(self.source.index, batch, self._still_there):
            if not self.study(_uid(result), pool):
                return

    def _still_there(self, study: str) -> bool:
        return not self.delete_source or bool(self.source.index.instances(study))

    def study(self, study: str, pool: ThreadPoolExecutor) -> bool:
        """Copy one study's instances; False when a backend went away (stop the run)."""
        present = {inst.sop_uid for inst in self.target.index.instances(study)}
        instances = self.source.index.instances(study)
        outcomes = pool.map(lambda inst: self.instance(inst, inst.sop_uid in present),
                            instances)
        for inst, (outcome, detail) in zip(instances, outcomes, strict=True):
            if outcome == "unavailable":
                self.summary.aborted = f"backend unavailable: {detail}"
                self.report(self.summary)
                return False
            self._count(inst, outcome, detail)
            self.report(self.summary)
        return True

    def _count(self, inst: StoredInstance, outcome: str, detail: str | None) -> None:
        summary = self.summary
        if outcome == "failed":
            log.error("migrating %s failed: %s", inst.sop_uid, detail)
            summary.failed.append((inst.sop_uid, detail or "unknown error"))
            return
        if outcome == "copied":
            summary.copied += 1
        else:
            summary.skipped += 1
        if detail == "deleted":
            summary.deleted += 1

    def instance(self, inst: StoredInstance, present: bool) -> tuple[str, str | None]:
        """("copied" | "skipped" | "failed" | "unavailable", detail); runs in a pool thread."""
        try:
            failure = None if present else _copy(inst, self.source, self.target)
            if failure:
                return "failed", failure
            deleted = self.delete_source and _delete_from_source(inst, self.source)
            return ("skipped" if present else "copied"), ("deleted" if deleted else None)
        except BackendUnavailable as exc:
            return "unavailable", str(exc)
        except Exception as exc:  # one bad instance never stops the others
            log.exception("migrating %s", inst.sop_uid)
            return "failed", f"{type(exc).__name__}: {exc}"


def _copy(inst: StoredInstance, source: Deployment, target: Deployment) -> str | None:
    """Stream the blob into the target through STOW's path; a reason if it failed."""
    outcome = StowOutcome(base_url="")
    try:
        with spool(source.storage.iter_chunks(inst.storage_key)) as (f, size):
            if size != inst.size:
                return f"the source blob has {size} bytes, its index says {inst.size}"
            store_one(f, size, outcome, storage=target.storage, index=target.index,
                      study_uid=None, binary_mode=target.binary_mode)
    except FileNotFoundError:
        return "the source blob is missing"
    if outcome.failed:
        (_, _, reason), = outcome.failed
        return f"the target refused it (FailureReason 0x{reason:04X}, see the log)"
    stored_sop = outcome.stored[0][1]
    if stored_sop != inst.sop_uid:
        return f"the file holds SOPInstanceUID {stored_sop}, not the one its index lists"
    return None


def _delete_from_source(inst: StoredInstance, source: Deployment) -> bool:
    """Index first, then the blob (as DELETE does): never a row without its file."""
    removed = source.index.remove(inst.study_uid, inst.series_uid, inst.sop_uid)
    for key in removed.storage_keys:
        source.storage.delete(key)
    return removed.instances > 0


def same_index(a: Settings, b: Settings) -> bool:
    """Whether two configurations name the same index (a migration onto itself)."""
    return _index_identity(a) == _index_identity(b)


def _index_identity(settings: Settings) -> str:
    pg = settings.PostgreSQL
    if pg is not None and pg.EnableIndex:
        return pg.ConnectionUri or f"postgresql://{pg.Host}:{pg.Port}/{pg.Database}"
    return str(settings.index_path.resolve())


class Progress:
    """A one-line progress bar on a terminal (a line every few seconds otherwise).

    ``[#########...........]  1200/5000  24%  52.1/s  ETA 1:13  skipped 30  failed 4``
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else 5.0
        self.width, self.clock = width, clock
        self.last, self.drawn = float("-inf"), -1

    def __call__(self, summary: Summary) -> None:
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._draw(summary, now)

    def finish(self, summary: Summary) -> None:
        """Draw the final state (unless already shown) and end the line."""
        if self.drawn != summary.done:
            self._draw(summary, self.clock())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, summary: Summary, now: float) -> None:
        text = self.line(summary, now)
        self.stream.write(f"\r{text}\033[K" if self.tty else f"{text}\n")
        self.stream.flush()
        self.drawn = summary.done

    def line(self, summary: Summary, now: float) -> str:
        total, done = summary.total, summary.done
        fraction = done / total if total else 1.0
        filled = round(self.width * min(fraction, 1.0))
        rate = done / max(now - summary.started, 1e-9)
        eta = _clock_time((total - done) / rate) if rate and done < total else "-:--"
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                f"{fraction:4.0%} {rate:.1f}/s ETA {eta} skipped {summary.skipped} "
                f"failed {len(summary.failed)}")


def _clock_time(seconds: float) -> str:
    """``1:05:09`` / ``5:09``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
