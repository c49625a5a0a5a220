"""Jobs under the real deployment shape: gunicorn with 2 workers, each running jobs
(tests/e2e/jobs_app.py adds a slow test job type and ``X-Worker-Pid`` on every answer).

- A job submitted on one worker is visible from both, paused, resumed and canceled from the
  worker that does not run it, and the jobs of one worker are taken by the other when the
  first is busy.
- The whole server SIGKILLed during a job and started again on the same data: the running
  job is resumed from its last checkpoint by a new worker, a paused job stays paused, a
  finished job stays listed: nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from backends.base import JobState
from backends.index_sqlite import SqliteIndex
from tests.e2e.server import Server
from tests.e2e.test_crash import kill_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKERS = 2


class JobsServer(Server):
    module = "tests.e2e.jobs_app"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JobsServer]:
    srv = JobsServer(tmp_path, workers=WORKERS, threads=4, extra={"ConcurrentJobs": 2})
    srv.start()
    yield srv
    srv.stop()


def get_job(server: JobsServer, job_id: str) -> tuple[dict[str, Any], int]:
    """The job as a fresh connection's worker answers it, and that worker's pid."""
    answer = requests.get(f"{server.base}/jobs/{job_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json(), int(answer.headers["X-Worker-Pid"])


def wait_job(server: JobsServer, job_id: str, done: Callable[[dict[str, Any]], bool],
             timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job, _ = get_job(server, job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, f"timed out: {job}\n{server.log()}"
        time.sleep(0.1)


def submit(server: JobsServer, session: requests.Session | None = None, **body: Any) -> str:
    answer = (session or requests).post(f"{server.base}/test/jobs", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    job_id: str = answer.json()["ID"]
    return job_id


def session_on(server: JobsServer, wanted: Callable[[int], bool]) -> requests.Session:
    """A kept-alive connection to a worker whose pid satisfies ``wanted``."""
    for _ in range(300):
        session = requests.Session()
        answer = session.get(f"{server.base}/jobs", timeout=10)
        if wanted(int(answer.headers["X-Worker-Pid"])):
            return session
        session.close()
    raise AssertionError("no connection reached the wanted worker")


def running_pid(job: dict[str, Any]) -> int:
    return int(job["Content"]["Pid"])


def test_every_worker_answers_for_and_runs_any_job(server: JobsServer) -> None:
    with requests.Session() as one_worker:
        ids = [submit(server, one_worker, Steps=10, Delay=0.2) for _ in range(4)]
    seen: dict[int, set[str]] = {}  # worker pid -> states it answered for the first job
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS or not all(
            get_job(server, job_id)[0]["State"] == "Success" for job_id in ids):
        job, pid = get_job(server, ids[0])
        seen.setdefault(pid, set()).add(job["State"])
        assert time.monotonic() < deadline, (seen, server.log())
        time.sleep(0.05)
    runners = {running_pid(get_job(server, job_id)[0]) for job_id in ids}
    assert len(runners) == WORKERS  # one worker was busy: the other took jobs from the Index
    assert len(seen) == WORKERS  # both answered for the same job
    listed = requests.get(f"{server.base}/jobs", timeout=10).json()
    assert set(ids) <= set(listed)


def test_pause_resume_and_cancel_from_the_other_worker(server: JobsServer) -> None:
    job_id = submit(server, Steps=40, Delay=0.1)
    job = wait_job(server, job_id, lambda j: j["State"] == "Running" and j["Progress"] >= 10)
    runner = running_pid(job)
    other = session_on(server, lambda pid: pid != runner)

    paused = other.post(f"{server.base}/jobs/{job_id}/pause", timeout=10)
    assert paused.json() == {} and int(paused.headers["X-Worker-Pid"]) != runner
    job = wait_job(server, job_id, lambda j: j["State"] == "Paused")
    position = job["Content"]["Done"]
    assert 4 <= position < 40
    time.sleep(0.5)
    assert get_job(server, job_id)[0]["Content"]["Done"] == position  # it really stopped

    assert other.post(f"{server.base}/jobs/{job_id}/resume", timeout=10).json() == {}
    job = wait_job(server, job_id, lambda j: j["State"] == "Running" and len(
        j["Content"]["Starts"]) == 2)
    assert job["Content"]["Starts"][1]["Position"] == position  # resumed where it stopped
    runner = running_pid(job)
    other = session_on(server, lambda pid: pid != runner)
    canceled = other.post(f"{server.base}/jobs/{job_id}/cancel", timeout=10)
    assert canceled.json() == {} and int(canceled.headers["X-Worker-Pid"]) != runner
    job = wait_job(server, job_id, lambda j: j["State"] == "Failure")
    assert (job["ErrorCode"], job["ErrorDescription"]) == (37, "This job was canceled")
    assert job["Content"]["Done"] < 40


def test_synchronous_job_answers_its_final_state(server: JobsServer) -> None:
    answer = requests.post(f"{server.base}/test/jobs",
                           json={"Synchronous": True, "Steps": 3, "Delay": 0.05}, timeout=60)
    job = answer.json()
    assert (job["State"], job["Progress"], job["Content"]["Done"]) == ("Success", 100, 3)
    assert job["Content"]["Pid"] == int(answer.headers["X-Worker-Pid"])  # ran in the request
    for _ in range(6):
        assert get_job(server, job["ID"])[0]["State"] == "Success"


def test_jobs_survive_a_killed_server(server: JobsServer) -> None:
    finished = submit(server, Steps=1, Delay=0)
    wait_job(server, finished, lambda j: j["State"] == "Success")
    paused = submit(server, Steps=50, Delay=0.1)
    wait_job(server, paused, lambda j: j["State"] == "Running")
    requests.post(f"{server.base}/jobs/{paused}/pause", timeout=10)
    paused_at = wait_job(server, paused, lambda j: j["State"] == "Paused")["Content"]["Done"]
    running = submit(server, Steps=30, Delay=0.2)
    job = wait_job(server, running, lambda j: j["State"] == "Running" and
                   j["Content"].get("Done", 0) >= 5)
    first_runner = running_pid(job)

    kill_everything(server)
    server.start()

    assert get_job(server, finished)[0]["State"] == "Success"
    assert get_job(server, paused)[0]["State"] == "Paused"
    job = wait_job(server, running, lambda j: j["State"] == "Success", timeout=60)
    first, second = job["Content"]["Starts"]
    assert (first["Position"], first["Pid"]) == (0, first_runner)
    assert second["Position"] >= 5 and second["Pid"] != first_runner  # resumed, not restarted
    assert second["Pid"] in {p.pid for p in psutil.Process(server.proc.pid).children()}

    requests.post(f"{server.base}/jobs/{paused}/resume", timeout=10)
    job = wait_job(server, paused, lambda j: j["State"] == "Success")
    assert job["Content"]["Starts"][1]["Position"] == paused_at


def test_a_stopped_server_gives_its_jobs_back(server: JobsServer) -> None:
    """SIGTERM (a deployment's restart): each worker puts its jobs back to Pending as it
    exits, so that the next server resumes them at once instead of after their lease."""
    job_id = submit(server, Steps=100, Delay=0.1)
    wait_job(server, job_id, lambda j: j["Content"].get("Done", 0) >= 3)
    server.stop()
    index = SqliteIndex(server.workdir / "index" / "index.sqlite")
    try:
        job = index.job(job_id)
    finally:
        index.close()
    assert job is not None
    assert (job.state, job.owner, job.attempts) == (JobState.PENDING, None, 0)
    assert job.position >= 3
