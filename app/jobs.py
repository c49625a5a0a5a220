"""Jobs: long operations (the DICOMweb client's STOW and retrieve) that users watch and
control through Orthanc's ``/jobs`` API (reference §7.5, §7.6; docs/jobs.md).

Every job is a row of the Index (:class:`backends.base.JobRecord`): any worker of any node
answers for and controls any job, and jobs survive a restart. This module is the interface
job modules use (:func:`register_job_type`, :class:`JobContext`, :class:`JobFailed`) and
the engine's public side: submitting, running synchronously, and Orthanc's state machine
(cancel, pause, resume, resubmit). How a worker runs jobs: app/job_runner.py; Orthanc's
error codes and job JSON: app/job_format.py.

No Flask here but :func:`engine`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from typing import Any

from app.errors import BadRequest, NotFound, ServiceUnavailable
from app.job_format import (  # noqa: F401 - job_json, raise_for_job: part of this interface
    FINISHED,
    SUCCESS,
    error_description,
    iso_time,
    job_json,
    loads_object,
    raise_for_job,
)
from app.job_runner import (  # noqa: F401 - the interface job modules and tests use
    CHECKPOINT_INTERVAL,
    JOB_TYPES,
    LEASE,
    MAX_ATTEMPTS,
    POLL,
    JobContext,
    JobFailed,
    JobFunction,
    JobInterrupted,
    JobRunner,
    JobType,
    pausable,
    register_job_type,
)
from backends.base import JobRecord, JobState

EXTENSION = "jobs"  # app.extensions key


class JobEngine(JobRunner):
    """Submits, runs and controls jobs; one per application (``app.extensions["jobs"]``).
    Any worker of any node controls any job: every change is a compare-and-set on its row."""

    def submit(self, type_: str, parameters: dict[str, Any], *, priority: int = 0,
               content: dict[str, Any] | None = None) -> JobRecord:
        """Asynchronous: a Pending row in the Index; a runner thread of any worker claims
        it (this process's first, woken at once)."""
        job = self._new(type_, parameters, priority, content, JobState.PENDING)
        self.index.add_job(job)
        self._wake()
        return job

    def run(self, type_: str, parameters: dict[str, Any], *, priority: int = 0,
            content: dict[str, Any] | None = None) -> JobRecord:
        """Synchronous: recorded in the Index as Running owned by this process, run in the
        calling thread (its lease renewed by the heartbeat), final record returned (Success
        or Failure; see :func:`raise_for_job`). Paused meanwhile, it waits for the job to
        finish wherever it runs (Orthanc's SubmitAndWait)."""
        proc = self._state()
        self._ensure_heartbeat(proc)
        job = replace(self._new(type_, parameters, priority, content, JobState.RUNNING),
                      owner=proc.owner, lease_until=time.time() + self.lease, attempts=1)
        self.index.add_job(job)
        final = self._run_claimed(job)
        return final if final is not None else self._wait(job.id)

    def _new(self, type_: str, parameters: dict[str, Any], priority: int,
             content: dict[str, Any] | None, state: JobState) -> JobRecord:
        if type_ not in JOB_TYPES:
            raise ValueError(f"unknown job type {type_!r}")
        return JobRecord(id=str(uuid.uuid4()), type=type_, state=state, priority=priority,
                         created=time.time(), parameters=json.dumps(parameters),
                         content=json.dumps(content or {}))

    def _wait(self, job_id: str) -> JobRecord:
        while True:
            job = self.index.job(job_id)
            if job is None:  # pruned at once: JobsHistorySize 0
                return JobRecord(id=job_id, type="", state=JobState.FAILURE, priority=0,
                                 created=time.time(), parameters="{}", error_code=7,
                                 error_description=error_description(7),
                                 error_details="The job finished and was forgotten at once: "
                                               "JobsHistorySize is 0")
            if job.state in FINISHED:
                return job
            time.sleep(self.poll)

    def get(self, job_id: str) -> JobRecord:
        job = self.index.job(job_id)
        if job is None:
            raise NotFound(f"Unknown job: {job_id}")
        return job

    def cancel(self, job_id: str) -> JobRecord:
        """Pending, Paused → Failure (CanceledJob); Running → its owner stops at its next
        checkpoint; Success, Failure: nothing to do (Orthanc)."""
        return self._control(job_id, "cancel")

    def pause(self, job_id: str) -> JobRecord:
        """Pending → Paused; Running → its owner stops at its next checkpoint; Paused,
        Success, Failure: nothing to do (Orthanc)."""
        return self._control(job_id, "pause")

    def _control(self, job_id: str, action: str) -> JobRecord:
        for _ in range(20):  # another worker may change the row between read and write
            job = self.get(job_id)
            if job.state in FINISHED or (action == "pause" and job.state == JobState.PAUSED):
                return job
            dead = (job.state == JobState.RUNNING
                    and (job.lease_until or 0) < time.time())
            if job.state == JobState.RUNNING and not dead:
                if job.request == "cancel":
                    return job
                row = self.index.update_job(job_id, {"request": action}, owner=job.owner,
                                            states=(JobState.RUNNING,))
                if row is not None:
                    self._signal_local(job_id, action)
                    return row
                continue
            changes = self._canceled(job) if action == "cancel" else self._paused(job)
            row = self.index.update_job(job_id, changes, owner=job.owner, states=(job.state,))
            if row is not None:
                if action == "cancel":
                    self._prune()
                return row
        raise ServiceUnavailable(f"Job {job_id} changes too often; try again")

    def _signal_local(self, job_id: str, action: str | None) -> None:
        """Tell a job this process runs at once (its next checkpoint, not the next write)."""
        proc = self._state()
        with proc.lock:
            run = proc.running.get(job_id)
        if run is None:
            return
        if action is None:  # a pause withdrawn
            if run.interrupt == "pause":
                run.interrupt = None
        elif run.interrupt in (None, "pause"):
            run.interrupt = action

    def resume(self, job_id: str) -> JobRecord:
        """Paused → Pending (a Running job asked to pause: the request withdrawn);
        otherwise 400 as Orthanc."""
        job = self.get(job_id)
        if job.state == JobState.RUNNING and job.request == "pause":
            row = self.index.update_job(job_id, {"request": None}, owner=job.owner,
                                        states=(JobState.RUNNING,))
            if row is not None and row.request is None:
                self._signal_local(job_id, None)
                return row
            job = self.get(job_id)
        if job.state != JobState.PAUSED:
            raise BadRequest(f"Cannot resume job {job_id}: it is {job.state.value}, "
                             "not Paused (Orthanc: BadSequenceOfCalls)")
        changes: dict[str, Any] = {"state": JobState.PENDING, "attempts": 0}
        if not pausable(job.type):
            changes.update(position=0, progress=0)
        return self._to_pending(job, changes, "resume")

    def resubmit(self, job_id: str) -> JobRecord:
        """Failure → Pending from its first step (Orthanc); otherwise 400."""
        job = self.get(job_id)
        if job.state != JobState.FAILURE:
            raise BadRequest(f"Cannot resubmit job {job_id}: it is {job.state.value}, "
                             "not Failure (Orthanc: BadSequenceOfCalls)")
        content = {key: value for key, value in loads_object(job.content).items()
                   if not key.startswith("Function")}
        return self._to_pending(job, {
            "state": JobState.PENDING, "position": 0, "progress": 0, "runtime": 0.0,
            "attempts": 0, "error_code": SUCCESS, "error_description": error_description(0),
            "error_details": "", "completed": None, "content": json.dumps(content)},
            "resubmit")

    def _to_pending(self, job: JobRecord, changes: dict[str, Any], action: str) -> JobRecord:
        row = self.index.update_job(job.id, {**changes, "owner": None, "lease_until": None,
                                             "request": None},
                                    owner=None, states=(job.state,))
        if row is None:
            now = self.get(job.id)
            raise BadRequest(f"Cannot {action} job {job.id}: it is now {now.state.value}")
        self._wake()
        return row

    def jobs(self) -> list[JobRecord]:
        return self.index.jobs()



def engine() -> JobEngine:
    """The current application's engine."""
    from flask import current_app

    found: JobEngine = current_app.extensions[EXTENSION]
    return found

