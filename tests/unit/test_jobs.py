"""The job engine (app/jobs.py) on a real SQLite index: priorities, the Orthanc state machine
(cancel, pause, resume, resubmit), failures, leases (a dead owner's job resumed at its
position by another engine on the same index file), history pruning and Orthanc's job JSON.

Two engines on one index file with different owners stand for two worker processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import jobs
from app.errors import BadRequest, DicomWebError, NotFound
from app.jobs import JobContext, JobEngine, JobFailed, job_json, raise_for_job
from app.services import Services
from app.settings import parse_settings
from backends.base import JobRecord, JobState
from backends.index_sqlite import SqliteIndex
from backends.storage_fs import FilesystemStorage

GATES: dict[str, threading.Event] = {}  # gate name -> event a "Steps" job waits on
ORDER: list[str] = []  # names of the jobs, in the order they started


def steps(ctx: JobContext) -> dict[str, Any]:
    """Parameters: Steps, Delay, Name, GateAt + Gate (the first attempt waits on
    GATES[Gate] before that step). Content: Starts (the position each attempt began at),
    Done."""
    p = ctx.parameters
    ORDER.append(p.get("Name", ""))
    first = not ctx.content.get("Starts")
    content = {"Starts": [*ctx.content.get("Starts", []), ctx.position], "Done": ctx.position}
    for step in range(ctx.position, p["Steps"]):
        if step == p.get("GateAt") and first:
            GATES[p["Gate"]].wait(10)
        time.sleep(p.get("Delay", 0))
        content = {**content, "Done": step + 1}
        ctx.checkpoint(step + 1, (step + 1) * 100 // p["Steps"], content)
    return content


def failing(ctx: JobContext) -> dict[str, Any]:
    ctx.checkpoint(1, 50, {"Sent": "1"})
    raise JobFailed("The remote server lost it", code=17, details="study 1.2.3", status=404)


def crashing(ctx: JobContext) -> dict[str, Any]:
    ctx.checkpoint(1, 50, {})
    raise RuntimeError("secret path /var/x")


@pytest.fixture(autouse=True)
def job_types() -> Iterator[None]:
    saved = dict(jobs.JOB_TYPES)  # the registry is module state: restored after the test
    jobs.JOB_TYPES.clear()
    jobs.register_job_type("Steps", steps)
    jobs.register_job_type("Unpausable", steps, pausable=False)
    jobs.register_job_type("Failing", failing)
    jobs.register_job_type("Crashing", crashing)
    ORDER.clear()
    GATES.clear()
    yield
    jobs.JOB_TYPES.clear()
    jobs.JOB_TYPES.update(saved)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "index.sqlite"


@pytest.fixture
def engines(tmp_path: Path, db: Path) -> Iterator[list[JobEngine]]:
    made: list[JobEngine] = []
    yield made
    for gate in GATES.values():
        gate.set()
    for engine in made:
        engine.stop(release=False)
        engine.index.close()


@pytest.fixture
def make(tmp_path: Path, db: Path, engines: list[JobEngine]) -> Any:
    settings = parse_settings({"StorageDirectory": str(tmp_path / "storage")}, "<test>")

    def make_engine(**options: Any) -> JobEngine:
        """A worker: its own connection to the shared index file, its own owner."""
        services = Services(settings, FilesystemStorage(tmp_path / "storage"), SqliteIndex(db))
        options = {"autostart": False, "checkpoint_interval": 0, "poll": 0.05, **options}
        engine = JobEngine(services, **options)
        engines.append(engine)
        return engine

    return make_engine


def wait_for(engine: JobEngine, job_id: str, predicate: Any, timeout: float = 10) -> JobRecord:
    deadline = time.monotonic() + timeout
    while True:
        job = engine.get(job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"timed out; last: {job}"
        time.sleep(0.02)


def in_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def content(job: JobRecord) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(job.content)
    return value


# --------------------------------------------------------------------------------------------
# running


def test_jobs_run_by_priority_then_age(make: Any) -> None:
    engine = make()
    for name, priority in (("low", -1), ("first-high", 5), ("normal", 0), ("second-high", 5)):
        engine.submit("Steps", {"Steps": 1, "Name": name}, priority=priority)
    while engine.run_next() is not None:
        pass
    assert ORDER == ["first-high", "second-high", "normal", "low"]


def test_success_records_content_progress_and_runtime(make: Any) -> None:
    engine = make()
    submitted = engine.submit("Steps", {"Steps": 3, "Delay": 0.02}, content={"Server": "x"})
    assert submitted.state == JobState.PENDING
    assert content(engine.get(submitted.id)) == {"Server": "x"}
    done = engine.run_next()
    assert done is not None and done.id == submitted.id
    assert done.state == JobState.SUCCESS
    assert (done.progress, done.position, done.attempts) == (100, 3, 1)
    assert content(done) == {"Starts": [0], "Done": 3}
    assert done.runtime >= 0.06 and done.completed is not None
    assert (done.owner, done.lease_until, done.error_code) == (None, None, 0)


def test_synchronous_run_returns_the_final_record(make: Any) -> None:
    engine = make()
    done = engine.run("Steps", {"Steps": 2})
    assert done.state == JobState.SUCCESS and content(done)["Done"] == 2
    assert engine.get(done.id).state == JobState.SUCCESS  # visible in /jobs like any job
    raise_for_job(done)  # nothing raised


def test_failure_is_recorded_and_raises_the_stored_status(make: Any) -> None:
    engine = make()
    failed = engine.run("Failing", {})
    assert failed.state == JobState.FAILURE
    assert failed.error_code == 17 and failed.error_description == "Unknown resource"
    assert failed.error_details == "The remote server lost it: study 1.2.3"
    assert content(failed) == {
        "Sent": "1", "FunctionErrorCode": 17, "FunctionErrorDescription": "Unknown resource",
        "FunctionErrorDetails": "The remote server lost it: study 1.2.3",
        "FunctionHttpStatus": 404}
    with pytest.raises(NotFound) as caught:
        raise_for_job(failed)
    assert caught.value.message == "Unknown resource"
    assert caught.value.details == "The remote server lost it: study 1.2.3"


def test_unexpected_error_fails_without_leaking_its_message(make: Any) -> None:
    engine = make()
    failed = engine.run("Crashing", {})
    assert (failed.state, failed.error_code) == (JobState.FAILURE, -1)
    assert "secret" not in failed.error_details and "secret" not in failed.content
    with pytest.raises(DicomWebError) as caught:
        raise_for_job(failed)
    assert caught.value.status == 500


def test_unknown_type_is_refused_at_submit(make: Any) -> None:
    with pytest.raises(ValueError, match="Nope"):
        make().submit("Nope", {})


def test_runner_threads_take_jobs_at_once_and_respect_concurrency(make: Any) -> None:
    engine = make(concurrency=2, autostart=True, poll=5)  # a long poll: the submit wakes it
    running: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def counted(ctx: JobContext) -> dict[str, Any]:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.2)
        with lock:
            running.pop()
        return {}

    jobs.register_job_type("Counted", counted)
    started = time.monotonic()
    ids = [engine.submit("Counted", {}).id for _ in range(4)]
    for job_id in ids:
        wait_for(engine, job_id, lambda j: j.state == JobState.SUCCESS)
    assert peak[0] == 2
    assert time.monotonic() - started < 2.5  # never waited for the 5 s poll


# --------------------------------------------------------------------------------------------
# the state machine (Orthanc's JobsRegistry)


def test_cancel_pending_then_resubmit(make: Any) -> None:
    engine = make()
    job = engine.submit("Steps", {"Steps": 2})
    canceled = engine.cancel(job.id)
    assert canceled.state == JobState.FAILURE
    assert (canceled.error_code, canceled.error_description) == (37, "This job was canceled")
    assert engine.cancel(job.id) == engine.get(job.id)  # finished: nothing to do (Orthanc)
    with pytest.raises(BadRequest, match="Failure"):
        engine.resume(job.id)
    again = engine.resubmit(job.id)
    assert (again.state, again.position, again.error_code, again.completed) == (
        JobState.PENDING, 0, 0, None)
    assert engine.run_next().state == JobState.SUCCESS  # type: ignore[union-attr]
    with pytest.raises(BadRequest, match="Success"):
        engine.resubmit(job.id)


def test_pause_and_resume_pending(make: Any) -> None:
    engine = make()
    job = engine.submit("Steps", {"Steps": 1})
    assert engine.pause(job.id).state == JobState.PAUSED
    assert engine.pause(job.id).state == JobState.PAUSED  # nothing to do (Orthanc)
    assert engine.run_next() is None  # a paused job is not run
    assert engine.resume(job.id).state == JobState.PENDING
    with pytest.raises(BadRequest, match="Pending"):
        engine.resume(job.id)
    assert engine.run_next().state == JobState.SUCCESS  # type: ignore[union-attr]


def test_unknown_job_is_404(make: Any) -> None:
    engine = make()
    for action in (engine.get, engine.cancel, engine.pause, engine.resume, engine.resubmit):
        with pytest.raises(NotFound):
            action("no-such-job")


def test_cancel_a_job_running_on_another_worker(make: Any) -> None:
    worker, other = make(), make()
    job = worker.submit("Steps", {"Steps": 200, "Delay": 0.01})
    thread = in_thread(worker.run_next)
    wait_for(other, job.id, lambda j: j.position >= 2)
    asked = other.cancel(job.id)
    assert (asked.state, asked.request) == (JobState.RUNNING, "cancel")
    done = wait_for(other, job.id, lambda j: j.state == JobState.FAILURE)
    thread.join(5)
    assert done.error_code == 37 and done.request is None and done.owner is None
    assert content(done)["Done"] < 200


def test_pause_a_running_job_then_resume_at_its_position(make: Any) -> None:
    worker, other = make(), make()
    job = worker.submit("Steps", {"Steps": 30, "Delay": 0.01})
    in_thread(worker.run_next).join(0.0)
    wait_for(other, job.id, lambda j: j.position >= 3)
    other.pause(job.id)
    paused = wait_for(other, job.id, lambda j: j.state == JobState.PAUSED)
    assert paused.position >= 3 and paused.owner is None
    other.resume(job.id)
    done = other.run_next()
    assert done is not None and done.state == JobState.SUCCESS
    assert content(done)["Starts"] == [0, paused.position]  # resumed, not restarted


def test_pause_of_an_unpausable_job_starts_it_again(make: Any) -> None:
    worker, other = make(), make()
    job = worker.submit("Unpausable", {"Steps": 30, "Delay": 0.01})
    in_thread(worker.run_next)
    wait_for(other, job.id, lambda j: j.position >= 3)
    other.pause(job.id)
    paused = wait_for(other, job.id, lambda j: j.state == JobState.PAUSED)
    assert paused.position == 0  # reference §7.6: a retrieve starts again when resumed
    other.resume(job.id)
    done = other.run_next()
    assert done is not None and content(done)["Starts"][-1] == 0


def test_resume_withdraws_a_pause_not_yet_seen(make: Any) -> None:
    engine = make()
    GATES["g"] = threading.Event()
    job = engine.submit("Steps", {"Steps": 2, "GateAt": 1, "Gate": "g"})
    thread = in_thread(engine.run_next)
    wait_for(engine, job.id, lambda j: j.position == 1)
    assert engine.pause(job.id).request == "pause"
    assert engine.resume(job.id).request is None
    GATES["g"].set()
    thread.join(5)
    assert engine.get(job.id).state == JobState.SUCCESS


# --------------------------------------------------------------------------------------------
# leases: dead owners, heartbeats, restarts


def test_a_dead_owners_job_is_resumed_at_its_position_by_another_worker(make: Any) -> None:
    dying, survivor = make(lease=0.5), make(lease=0.5)
    GATES["g"] = threading.Event()
    job = dying.submit("Steps", {"Steps": 6, "GateAt": 3, "Gate": "g"})
    result: list[JobRecord | None] = []
    thread = in_thread(lambda: result.append(dying.run_next()))
    wait_for(survivor, job.id, lambda j: j.position == 3)
    dying.stop(release=False)  # its heartbeat stops, as when the process is killed
    assert survivor.run_next() is None  # the lease has not passed yet
    time.sleep(0.6)
    done = survivor.run_next()
    assert done is not None and done.state == JobState.SUCCESS
    assert content(done)["Starts"] == [0, 3] and done.attempts == 2
    GATES["g"].set()  # the "dead" worker wakes up: its job was taken, it writes nothing
    thread.join(5)
    assert result == [None]
    assert survivor.get(job.id) == done


def test_the_heartbeat_keeps_a_long_step_leased(make: Any) -> None:
    worker, other = make(lease=0.6), make(lease=0.6)
    GATES["g"] = threading.Event()
    job = worker.submit("Steps", {"Steps": 1, "GateAt": 0, "Gate": "g"})
    thread = in_thread(worker.run_next)
    wait_for(other, job.id, lambda j: j.state == JobState.RUNNING)
    deadline = time.monotonic() + 1.5  # 2.5 leases without a checkpoint
    while time.monotonic() < deadline:
        assert other.run_next() is None
        time.sleep(0.1)
    GATES["g"].set()
    thread.join(5)
    done = other.get(job.id)
    assert done.state == JobState.SUCCESS and done.attempts == 1


def test_a_job_interrupted_too_often_fails_with_the_reason(make: Any, db: Path) -> None:
    engine = make()
    dead = JobRecord(id="j1", type="Steps", state=JobState.RUNNING, priority=0, created=1.0,
                     parameters=json.dumps({"Steps": 9}), position=4, owner="gone:1:x",
                     lease_until=time.time() - 1, attempts=jobs.MAX_ATTEMPTS)
    engine.index.add_job(dead)
    failed = engine.run_next()
    assert failed is not None and failed.state == JobState.FAILURE
    assert failed.error_details == ("The job was interrupted 3 times (the worker running it "
                                    "stopped each time), last at step 4")
    assert ORDER == []  # not run a fourth time
    assert engine.resubmit("j1").attempts == 0


def test_cancel_of_a_dead_owners_job_is_immediate(make: Any) -> None:
    engine = make()
    engine.index.add_job(JobRecord(id="j1", type="Steps", state=JobState.RUNNING, priority=0,
                                   created=1.0, parameters="{}", owner="gone:1:x",
                                   lease_until=time.time() - 1, attempts=1))
    assert engine.cancel("j1").state == JobState.FAILURE


def test_a_stopping_worker_gives_its_jobs_back(make: Any) -> None:
    stopping, other = make(concurrency=1), make()
    job = stopping.submit("Steps", {"Steps": 30, "Delay": 0.01})
    stopping.start()
    wait_for(other, job.id, lambda j: j.position >= 3)
    stopping.stop(release=True)
    released = wait_for(other, job.id, lambda j: j.state == JobState.PENDING)
    assert released.owner is None and released.attempts == 0 and released.position >= 3
    done = other.run_next()
    assert done is not None and content(done)["Starts"][0] == 0
    assert content(done)["Starts"][1] >= 3 and done.attempts == 1


# --------------------------------------------------------------------------------------------
# history


def test_history_keeps_the_most_recently_finished(make: Any) -> None:
    engine = make(history=2)
    finished = []
    for _ in range(4):
        finished.append(engine.submit("Steps", {"Steps": 1}).id)
        engine.run_next()
    waiting = engine.submit("Steps", {"Steps": 1}, priority=-1).id
    paused = engine.submit("Steps", {"Steps": 1}, priority=-1).id
    engine.pause(paused)
    assert [job.id for job in engine.jobs()] == [*finished[2:], waiting, paused]
    engine.cancel(waiting)  # finishing by cancel prunes as well
    assert [job.id for job in engine.jobs()] == [finished[3], waiting, paused]


def test_no_history_still_answers_synchronous_calls(make: Any) -> None:
    engine = make(history=0)
    done = engine.run("Steps", {"Steps": 1})
    assert done.state == JobState.SUCCESS and engine.jobs() == []


# --------------------------------------------------------------------------------------------
# Orthanc's JSON (JobInfo::Format)


def test_job_json_is_orthancs() -> None:
    job = JobRecord(id="abc", type="DicomWebStowClient", state=JobState.SUCCESS, priority=3,
                    created=1764291723.5, parameters="{}", content='{"InstancesCount": "2"}',
                    progress=100, completed=1764291725.0, runtime=1.5004)
    assert job_json(job, 1764291726.25) == {
        "CompletionTime": "20251128T010205", "Content": {"InstancesCount": "2"},
        "CreationTime": "20251128T010203.500000", "EffectiveRuntime": 1.5, "ErrorCode": 0,
        "ErrorDescription": "Success", "ErrorDetails": "", "ID": "abc", "Priority": 3,
        "Progress": 100, "State": "Success", "Timestamp": "20251128T010206.250000",
        "Type": "DicomWebStowClient"}


def test_job_json_of_a_running_job_estimates_its_arrival() -> None:
    job = JobRecord(id="abc", type="T", state=JobState.RUNNING, priority=0, created=100.0,
                    parameters="{}", progress=25, runtime=10.0)
    body = job_json(job, 1000.0)
    assert "CompletionTime" not in body
    assert body["EstimatedTimeOfArrival"] == jobs.iso_time(1030.0)
    assert list(body) == sorted(body)
