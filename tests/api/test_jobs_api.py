"""Orthanc's /jobs REST API (app/jobs_api.py) through the Flask test client: listing,
Orthanc's job JSON, the control actions and their refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient

from app import jobs
from app.jobs import JobContext, JobEngine
from backends.base import JobRecord, JobState

ORTHANC_KEYS = {"ID", "Type", "State", "Progress", "Priority", "CreationTime",
                "EffectiveRuntime", "ErrorCode", "ErrorDescription", "ErrorDetails",
                "Timestamp", "Content"}


def slow(ctx: JobContext) -> dict[str, Any]:
    total = ctx.parameters["Steps"]
    for step in range(ctx.position, total):
        time.sleep(ctx.parameters.get("Delay", 0))
        ctx.checkpoint(step + 1, (step + 1) * 100 // total, {"Done": str(step + 1)})
    return {"Done": str(total)}


def in_app(ctx: JobContext) -> dict[str, Any]:
    return {"Root": current_app.extensions["dicomweb"].settings.DicomWeb.root}


@pytest.fixture(autouse=True)
def job_types() -> Iterator[None]:
    saved = dict(jobs.JOB_TYPES)  # the registry is module state: restored after the test
    jobs.JOB_TYPES.clear()
    jobs.register_job_type("Slow", slow)
    jobs.register_job_type("InApp", in_app)
    yield
    jobs.JOB_TYPES.clear()
    jobs.JOB_TYPES.update(saved)


@pytest.fixture
def engine(app: Flask) -> JobEngine:
    found: JobEngine = app.extensions["jobs"]
    found.autostart = False  # jobs run only when a test says so
    return found


def wait_state(client: FlaskClient, job_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        body: dict[str, Any] = client.get(f"/jobs/{job_id}").get_json()
        if body["State"] == state:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.02)


def test_list_and_expand(client: FlaskClient, engine: JobEngine) -> None:
    assert client.get("/jobs").get_json() == []
    first = engine.submit("Slow", {"Steps": 1}, priority=2, content={"Server": "a"})
    second = engine.submit("Slow", {"Steps": 1})
    answer = client.get("/jobs")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == [first.id, second.id]
    expanded = client.get("/jobs?expand").get_json()
    assert [job["ID"] for job in expanded] == [first.id, second.id]
    assert set(expanded[0]) == ORTHANC_KEYS
    assert expanded[0] | {"Timestamp": "", "CreationTime": ""} == {
        "ID": first.id, "Type": "Slow", "State": "Pending", "Progress": 0, "Priority": 2,
        "CreationTime": "", "EffectiveRuntime": 0.0, "ErrorCode": 0,
        "ErrorDescription": "Success", "ErrorDetails": "", "Timestamp": "",
        "Content": {"Server": "a"}}


def test_a_finished_job(client: FlaskClient, engine: JobEngine) -> None:
    job = engine.submit("Slow", {"Steps": 2})
    engine.run_next()
    body = client.get(f"/jobs/{job.id}").get_json()
    assert set(body) == ORTHANC_KEYS | {"CompletionTime"}
    assert (body["State"], body["Progress"], body["Content"]) == ("Success", 100, {"Done": "2"})
    assert body["CompletionTime"] >= body["CreationTime"]


def test_control_actions_follow_orthancs_state_machine(client: FlaskClient,
                                                        engine: JobEngine) -> None:
    job_id = engine.submit("Slow", {"Steps": 1}).id

    def post(action: str) -> Any:
        return client.post(f"/jobs/{job_id}/{action}")

    answer = post("pause")
    assert (answer.status_code, answer.get_json()) == (200, {})
    assert client.get(f"/jobs/{job_id}").get_json()["State"] == "Paused"
    assert post("resume").get_json() == {}
    refused = post("resume")
    assert refused.status_code == 400
    assert "Pending" in refused.get_json()["Message"]
    assert post("resubmit").status_code == 400
    assert post("cancel").get_json() == {}
    body = client.get(f"/jobs/{job_id}").get_json()
    assert (body["State"], body["ErrorCode"]) == ("Failure", 37)
    assert body["ErrorDescription"] == "This job was canceled"
    assert post("cancel").status_code == 200  # finished: nothing to do (Orthanc)
    assert post("resubmit").get_json() == {}
    assert client.get(f"/jobs/{job_id}").get_json()["State"] == "Pending"


def test_unknown_jobs_and_actions(client: FlaskClient, engine: JobEngine) -> None:
    for answer in (client.get("/jobs/nope"), client.post("/jobs/nope/cancel")):
        assert answer.status_code == 404
        assert answer.get_json()["HttpStatus"] == 404
    job_id = engine.submit("Slow", {"Steps": 1}).id
    assert client.post(f"/jobs/{job_id}/explode").status_code == 404


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("get", "/jobs/{id}/cancel", {"POST"}),
    ("put", "/jobs/{id}/pause", {"POST"}),
    ("post", "/jobs", {"GET", "HEAD", "OPTIONS"}),
    ("delete", "/jobs/{id}", {"GET", "HEAD", "OPTIONS"}),
])
def test_wrong_methods_are_405_json(client: FlaskClient, engine: JobEngine, method: str,
                                    path: str, allowed: set[str]) -> None:
    job_id = engine.submit("Slow", {"Steps": 1}).id
    answer = getattr(client, method)(path.format(id=job_id))
    assert answer.status_code == 405
    assert answer.get_json()["HttpStatus"] == 405
    assert {m.strip() for m in answer.headers["Allow"].split(",")} - {"OPTIONS"} == (
        allowed - {"OPTIONS"})


def test_runner_threads_run_and_cancel_jobs(client: FlaskClient, engine: JobEngine) -> None:
    engine.autostart = True
    done = engine.submit("Slow", {"Steps": 3})
    assert wait_state(client, done.id, "Success")["Content"] == {"Done": "3"}
    long = engine.submit("Slow", {"Steps": 500, "Delay": 0.01})
    deadline = time.monotonic() + 10
    while client.get(f"/jobs/{long.id}").get_json()["Progress"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    running = client.get(f"/jobs/{long.id}").get_json()
    assert running["State"] == "Running" and "EstimatedTimeOfArrival" in running
    assert client.post(f"/jobs/{long.id}/cancel").get_json() == {}
    assert wait_state(client, long.id, "Failure")["ErrorCode"] == 37


def test_the_first_request_starts_the_runner_when_jobs_wait(app: Flask,
                                                            client: FlaskClient) -> None:
    # A restarted server run without gunicorn's post_worker_init: the Index holds a job.
    app.extensions["dicomweb"].index.add_job(JobRecord(
        id="waiting", type="Slow", state=JobState.PENDING, priority=0, created=time.time(),
        parameters='{"Steps": 1}'))
    assert wait_state(client, "waiting", "Success")["Progress"] == 100


def test_job_functions_run_in_the_application_context(client: FlaskClient,
                                                      engine: JobEngine) -> None:
    engine.autostart = True  # a runner thread, outside any request
    job_id = engine.submit("InApp", {}).id
    assert wait_state(client, job_id, "Success")["Content"] == {"Root": "/dicom-web/"}
