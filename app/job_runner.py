"""How a worker process runs jobs (app/jobs.py is the interface; docs/jobs.md).

Each worker process runs up to ``ConcurrentJobs`` jobs in daemon threads, started in the
worker (never in gunicorn's master): a dispatcher claims the next job (``Index.claim_job``:
highest priority, then a running job whose owner died), and a heartbeat renews the lease of
every job the process runs. A job function reports its steps through
:meth:`JobContext.checkpoint`, where a cancel or pause asked by another worker stops it.
What a job becomes when it stops (finished, paused, canceled, given back) is written with
compare-and-set on its owner: a worker that lost its job writes nothing. No Flask.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.job_format import (
    CANCELED_JOB,
    FINISHED,
    INTERNAL_ERROR,
    SUCCESS,
    error_description,
    failure,
    loads_object,
)
from backends.base import BackendUnavailable, JobRecord, JobState

if TYPE_CHECKING:
    from app.services import Services

log = logging.getLogger(__name__)

LEASE = 30.0  # seconds a running job stays with its owner without a heartbeat
POLL = 0.5  # seconds between two claims of an idle dispatcher
MAX_ATTEMPTS = 3  # runs of one job; a job whose worker died this often fails
CHECKPOINT_INTERVAL = 0.2  # seconds between two checkpoint writes of one job


class JobInterrupted(Exception):  # noqa: N818 - reads as the event it reports
    """Raised by :meth:`JobContext.checkpoint` when another worker asked to cancel or pause,
    or the lease was lost. Job functions let it propagate."""


class JobFailed(Exception):
    """A job function's clear failure: ends the job in state Failure.

    ``code``: Orthanc ErrorCode number (9 NetworkProtocol, 15 BadFileFormat, 17
    UnknownResource, 3 ParameterOutOfRange...); ``status``: the HTTP status a synchronous
    call answers with."""

    def __init__(self, description: str, *, code: int = 9, details: str = "",
                 status: int = 500) -> None:
        super().__init__(description)
        self.description, self.code, self.details, self.status = (description, code,
                                                                  details, status)


@dataclass
class JobContext:
    """What a job function gets: its parameters, where an earlier attempt stopped
    (``position``, ``content``) and the application's services."""

    job_id: str
    parameters: dict[str, Any]
    position: int
    services: Services
    content: dict[str, Any] = field(default_factory=dict)  # the Content last checkpointed
    _run: _Running | None = field(default=None, repr=False, compare=False)

    def checkpoint(self, position: int, progress: int, content: dict[str, Any]) -> None:
        """Persist steps done, percent and the user-visible Content; renew the lease; raise
        JobInterrupted when a cancel/pause was requested or the lease was lost. Writes at
        most every CHECKPOINT_INTERVAL (a resumed job may redo the steps of that interval:
        steps are idempotent), so it is cheap enough to call per instance."""
        self.position, self.content = position, content
        if self._run is not None:
            self._run.engine._checkpoint(self._run, position, progress, content)


JobFunction = Callable[[JobContext], dict[str, Any]]  # returns the final Content


@dataclass(frozen=True)
class JobType:
    run: JobFunction
    pausable: bool = True


JOB_TYPES: dict[str, JobType] = {}


def register_job_type(name: str, run: JobFunction, *, pausable: bool = True) -> None:
    """Known job types, filled at import by the modules that define jobs. ``pausable``
    False: a pause abandons the work in progress and the job starts again from its first
    step when resumed (Orthanc's retrieve job, reference §7.6)."""
    JOB_TYPES[name] = JobType(run, pausable)


@dataclass
class _Running:
    """A job this process runs: what its checkpoints and the heartbeat need."""

    engine: JobRunner
    job: JobRecord
    started: float  # time.monotonic() when this attempt began
    position: int = 0
    progress: int = 0
    content: dict[str, Any] = field(default_factory=dict)
    last_write: float = 0.0
    interrupt: str | None = None  # "cancel", "pause", "lost" or "released"

    def runtime(self) -> float:
        return self.job.runtime + time.monotonic() - self.started


@dataclass
class _Process:
    """The runner of one process: rebuilt in a forked child (nothing crosses a fork)."""

    pid: int
    owner: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    running: dict[str, _Running] = field(default_factory=dict)
    busy: int = 0  # slots taken by the dispatcher's jobs
    dispatching: bool = False
    beating: bool = False
    checked: bool = False  # first request: unfinished jobs looked for
    threads: list[threading.Thread] = field(default_factory=list)


def _new_owner() -> str:
    # hostname:pid names the worker in logs; the random part keeps a restarted container
    # (same hostname, pid numbers reused) from matching a dead owner.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    """Runs jobs in this process: the dispatcher, the heartbeat, one job's run and
    its end. :class:`app.jobs.JobEngine` adds submitting and controlling."""

    def __init__(self, services: Services, *, concurrency: int = 2, history: int = 10,
                 lease: float | None = None, poll: float | None = None,
                 max_attempts: int | None = None, checkpoint_interval: float | None = None,
                 autostart: bool = True,
                 context: Callable[[], AbstractContextManager[Any]] | None = None) -> None:
        self.services = services
        self.index = services.index
        self.concurrency = max(1, concurrency)
        self.history = max(0, history)
        # Module constants read now (not as default values): tests shorten them.
        self.lease = lease if lease is not None else LEASE
        self.poll = poll if poll is not None else POLL
        self.max_attempts = max_attempts if max_attempts is not None else MAX_ATTEMPTS
        self.checkpoint_interval = (checkpoint_interval if checkpoint_interval is not None
                                    else CHECKPOINT_INTERVAL)
        self.autostart = autostart  # False: runner threads start only by start() (tests)
        # Entered around each job function: the Flask application context (create_app).
        self._context = context or nullcontext
        self._proc: _Process | None = None
        self._proc_lock = threading.Lock()

    # -- the runner of this process ----------------------------------------------------

    def _state(self) -> _Process:
        proc = self._proc
        if proc is None or proc.pid != os.getpid():
            with self._proc_lock:
                proc = self._proc
                if proc is None or proc.pid != os.getpid():
                    proc = self._proc = _Process(os.getpid(), _new_owner())
        return proc

    @property
    def owner(self) -> str:
        return self._state().owner

    def start(self) -> None:
        """Start this process's dispatcher and heartbeat (once per process). gunicorn calls
        it in each worker after the fork (``post_worker_init``), never in the master."""
        proc = self._state()
        with proc.lock:
            if proc.dispatching or proc.stop.is_set():
                return
            proc.dispatching = True
        self._spawn(proc, self._dispatch, "jobs-dispatch")
        self._ensure_heartbeat(proc)
        _EXITING.add(self)

    def start_if_needed(self) -> None:
        """At the first request of a process: start the runner when the Index holds jobs
        to run (a server started without gunicorn's post_worker_init, after a restart)."""
        proc = self._state()
        if proc.checked or proc.dispatching or not self.autostart:
            return
        proc.checked = True  # one look per process, even if the index is down now
        try:
            waiting = any(job.state in (JobState.PENDING, JobState.RUNNING)
                          for job in self.index.jobs())
        except Exception:
            log.exception("jobs: cannot look for jobs to run")
            return
        if waiting:
            self.start()

    def stop(self, release: bool = True) -> None:
        """Stop this process's threads. ``release``: the jobs it runs go back to Pending at
        once (their position kept) instead of waiting for their lease to pass."""
        proc = self._state()
        proc.stop.set()
        proc.wake.set()
        if release:
            with proc.lock:
                running = list(proc.running.values())
            for run in running:
                self._release(run)
        for thread in proc.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2 * self.poll + 1)

    def _spawn(self, proc: _Process, target: Callable[[_Process], None], name: str) -> None:
        thread = threading.Thread(target=target, args=(proc,), name=name, daemon=True)
        proc.threads.append(thread)
        thread.start()

    def _ensure_heartbeat(self, proc: _Process) -> None:
        with proc.lock:
            if proc.beating:
                return
            proc.beating = True
        self._spawn(proc, self._heartbeat, "jobs-heartbeat")

    def _dispatch(self, proc: _Process) -> None:
        failures = 0
        while not proc.stop.is_set():
            proc.wake.clear()
            wait = self.poll
            try:
                if self._take_slot(proc):
                    job = self._claim(proc)
                    failures = 0
                    if job is not None:
                        threading.Thread(target=self._execute, args=(proc, job),
                                         name="jobs-run", daemon=True).start()
                        continue
                    self._free_slot(proc)
            except Exception:  # the index may be down: try again, less and less often
                self._free_slot(proc)
                failures += 1
                wait = min(self.poll * 2 ** failures, 30.0)
                log.exception("job dispatcher: cannot claim a job")
            proc.wake.wait(wait)

    def _take_slot(self, proc: _Process) -> bool:
        with proc.lock:
            if proc.busy >= self.concurrency:
                return False
            proc.busy += 1
            return True

    def _free_slot(self, proc: _Process) -> None:
        with proc.lock:
            proc.busy = max(0, proc.busy - 1)

    def _claim(self, proc: _Process) -> JobRecord | None:
        return self.index.claim_job(proc.owner, time.time(), self.lease, types=list(JOB_TYPES))

    def _execute(self, proc: _Process, job: JobRecord) -> None:
        try:
            self._run_claimed(job)
        except Exception:
            log.exception("job %s: runner failed", job.id)
        finally:
            self._free_slot(proc)
            proc.wake.set()

    def _heartbeat(self, proc: _Process) -> None:
        """Renew the lease of every job of this process, every third of the lease: a long
        single step (a 1 GB upload) keeps its job."""
        while not proc.stop.wait(self.lease / 3):
            with proc.lock:
                running = list(proc.running.values())
            for run in running:
                try:
                    row = self.index.update_job(
                        run.job.id, {"lease_until": time.time() + self.lease,
                                     "runtime": run.runtime()},
                        owner=proc.owner, states=(JobState.RUNNING,))
                except Exception:
                    log.exception("job %s: cannot renew the lease", run.job.id)
                    continue
                self._note(run, row)

    def run_next(self) -> JobRecord | None:
        """Claim the next job and run it in the calling thread; its final record, or None
        when there was nothing to run (or it did not finish here)."""
        proc = self._state()
        self._ensure_heartbeat(proc)
        job = self._claim(proc)
        return self._run_claimed(job) if job is not None else None

    # -- running one job ---------------------------------------------------------------

    def _run_claimed(self, job: JobRecord) -> JobRecord | None:
        """Run a job this process owns (state Running); the final record if it finished
        here, None if it was paused, released or taken away."""
        if job.request == "cancel":
            return self._finish(job, self._canceled(job))
        if job.request == "pause":
            self._settle_paused(job)
            return None
        if job.attempts > self.max_attempts:
            return self._finish(job, failure(
                INTERNAL_ERROR, f"The job was interrupted {job.attempts - 1} times (the "
                f"worker running it stopped each time), last at step {job.position}",
                loads_object(job.content)))
        kind = JOB_TYPES.get(job.type)
        if kind is None:  # claim_job only hands out registered types
            return self._finish(job, failure(INTERNAL_ERROR, f"Unknown job type {job.type}",
                                             loads_object(job.content)))
        proc = self._state()
        run = _Running(self, job, time.monotonic(), job.position, job.progress,
                       loads_object(job.content))
        with proc.lock:
            proc.running[job.id] = run
        try:
            return self._call(kind, run)
        finally:
            with proc.lock:
                proc.running.pop(job.id, None)

    def _call(self, kind: JobType, run: _Running) -> JobRecord | None:
        job = run.job
        ctx = JobContext(job.id, loads_object(job.parameters), job.position, self.services,
                         dict(run.content), run)
        try:
            with self._context():
                content = kind.run(ctx)
        except JobInterrupted:
            return self._settle_interrupted(run)
        except JobFailed as exc:
            details = f"{exc.description}: {exc.details}" if exc.details else exc.description
            return self._finish(job, failure(exc.code, details, run.content, exc.status), run)
        except BackendUnavailable as exc:
            return self._finish(job, failure(36, str(exc), run.content, 503), run)
        except Exception:
            log.exception("job %s (%s) failed", job.id, job.type)
            return self._finish(job, failure(
                INTERNAL_ERROR, "Unexpected error; see the server log", run.content), run)
        return self._finish(job, {
            "state": JobState.SUCCESS, "progress": 100, "position": run.position,
            "content": json.dumps(content), "error_code": SUCCESS,
            "error_description": error_description(SUCCESS), "error_details": ""}, run)

    def _checkpoint(self, run: _Running, position: int, progress: int,
                    content: dict[str, Any]) -> None:
        run.position, run.progress, run.content = position, max(0, min(100, int(progress))), content
        if run.interrupt is None and time.monotonic() - run.last_write >= self.checkpoint_interval:
            run.last_write = time.monotonic()
            row = self.index.update_job(run.job.id, {
                "position": position, "progress": run.progress, "content": json.dumps(content),
                "lease_until": time.time() + self.lease, "runtime": run.runtime()},
                owner=self.owner, states=(JobState.RUNNING,))
            self._note(run, row)
        if run.interrupt is not None:
            raise JobInterrupted(run.interrupt)

    @staticmethod
    def _note(run: _Running, row: JobRecord | None) -> None:
        """What a lease renewal tells: a request from another worker, or a lost job."""
        if row is None:
            run.interrupt = run.interrupt or "lost"
        elif row.request and run.interrupt is None:
            run.interrupt = row.request

    def _settle_interrupted(self, run: _Running) -> JobRecord | None:
        if run.interrupt in ("lost", "released"):
            return None  # another worker has it, or will
        row = self.index.job(run.job.id)
        if row is None or row.state != JobState.RUNNING or row.owner != self.owner:
            return None
        if row.request == "cancel":
            return self._finish(row, self._canceled(row), run)
        if row.request is None:  # the pause was withdrawn (resume) after it stopped us
            self._release(run)
            self._wake()
        else:
            self._settle_paused(row, run)
        return None

    def _settle_paused(self, job: JobRecord, run: _Running | None = None) -> None:
        changes = self._paused(job)
        if run is not None:
            changes.update(runtime=run.runtime(), content=json.dumps(run.content),
                           progress=run.progress, position=changes.get("position", run.position))
        self.index.update_job(job.id, changes, owner=self.owner, states=(JobState.RUNNING,))

    def _release(self, run: _Running) -> None:
        """Give a job back (this process stops): Pending again, the attempt not counted."""
        run.interrupt = "released"
        try:
            self.index.update_job(run.job.id, {
                "state": JobState.PENDING, "owner": None, "lease_until": None, "request": None,
                "position": run.position, "progress": run.progress,
                "content": json.dumps(run.content), "runtime": run.runtime(),
                "attempts": max(0, run.job.attempts - 1)},
                owner=self.owner, states=(JobState.RUNNING,))
        except Exception:
            log.exception("job %s: cannot release it", run.job.id)

    def _finish(self, job: JobRecord, changes: dict[str, Any],
                run: _Running | None = None) -> JobRecord | None:
        changes = {"completed": time.time(), "owner": None, "lease_until": None,
                   "request": None, **changes}
        if run is not None:  # what the last checkpoints may not have written yet
            changes = {"position": run.position, "progress": run.progress,
                       "content": json.dumps(run.content), **changes,
                       "runtime": run.runtime()}
        row = self.index.update_job(job.id, changes, owner=job.owner,
                                    states=(JobState.RUNNING,))
        if row is None:
            log.warning("job %s: finished, but another worker took it meanwhile", job.id)
            return None
        self._prune()
        return row

    def _canceled(self, job: JobRecord) -> dict[str, Any]:
        # Orthanc's STOW job also starts again from its first instance after a cancel.
        return {"state": JobState.FAILURE, "error_code": CANCELED_JOB,
                "error_description": error_description(CANCELED_JOB), "error_details": "",
                "position": 0, "completed": time.time(), "owner": None, "lease_until": None,
                "request": None}

    def _paused(self, job: JobRecord) -> dict[str, Any]:
        changes: dict[str, Any] = {"state": JobState.PAUSED, "owner": None,
                                   "lease_until": None, "request": None}
        if not pausable(job.type):
            changes.update(position=0, progress=0)  # reference §7.6: starts again
        return changes

    def _prune(self) -> None:
        """Keep the JobsHistorySize most recently finished jobs."""
        finished = sorted((job for job in self.index.jobs() if job.state in FINISHED),
                          key=lambda job: (job.completed or job.created, job.created))
        excess = len(finished) - self.history
        if excess > 0:
            self.index.remove_jobs([job.id for job in finished[:excess]])

    def _wake(self) -> None:
        """A job to run: this process's dispatcher claims it now (started if need be)."""
        if self.autostart:
            self.start()
        self._state().wake.set()


class _Exiting:
    """Engines whose runner threads run in this process: at exit (a gunicorn worker
    stopping gracefully), their jobs go back to Pending at once rather than after their
    lease."""

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[JobRunner] = weakref.WeakSet()
        self.registered = False

    def add(self, engine_: JobRunner) -> None:
        self.engines.add(engine_)
        if not self.registered:
            atexit.register(self.release)
            self.registered = True

    def release(self) -> None:
        for engine_ in list(self.engines):
            proc = engine_._proc
            if proc is not None and proc.pid == os.getpid() and proc.running:
                engine_.stop(release=True)


_EXITING = _Exiting()


def pausable(type_: str) -> bool:
    kind = JOB_TYPES.get(type_)
    return kind is None or kind.pausable


