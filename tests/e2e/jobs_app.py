"""``python -m tests.e2e.jobs_app [dicomweb-server options]``: the real server (``app.cli``:
gunicorn, preloaded app, one job runner per worker) plus what tests/e2e/test_jobs.py needs
and production code must not have:

- a slow job type, ``TestSleep`` (parameters ``Steps``, ``Delay``; its Content records the
  worker pid and the position of each attempt);
- ``POST /test/jobs`` submitting one (``{"ID"}``; ``"Synchronous": true`` answers the final
  job JSON);
- an ``X-Worker-Pid`` header on every answer, to tell the workers apart;
- a short lease (``$DICOMWEB_TEST_JOB_LEASE`` seconds, default 3), so that a killed
  server's job is taken again within seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

import app as application
from app import cli, job_runner, jobs

job_runner.LEASE = float(os.environ.get("DICOMWEB_TEST_JOB_LEASE", "3"))


def sleeper(ctx: jobs.JobContext) -> dict[str, Any]:
    steps, delay = int(ctx.parameters["Steps"]), float(ctx.parameters["Delay"])
    starts = [*ctx.content.get("Starts", []), {"Position": ctx.position, "Pid": os.getpid()}]
    content: dict[str, Any] = {"Starts": starts, "Pid": os.getpid(), "Done": ctx.position}
    for step in range(ctx.position, steps):
        time.sleep(delay)
        content = {**content, "Done": step + 1}
        ctx.checkpoint(step + 1, (step + 1) * 100 // steps, content)
    return content


jobs.register_job_type("TestSleep", sleeper)

blueprint = Blueprint("test_jobs", __name__)


@blueprint.post("/test/jobs")
def submit() -> Response:
    body = request.get_json()
    engine = jobs.engine()
    priority = int(body.get("Priority", 0))
    if body.get("Synchronous"):
        return jsonify(jobs.job_json(engine.run("TestSleep", body, priority=priority),
                                     time.time()))
    return jsonify({"ID": engine.submit("TestSleep", body, priority=priority).id})


@blueprint.after_app_request
def _worker_pid(response: Response) -> Response:
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response


_create_app = application.create_app


def create_app(*args: Any, **kwargs: Any) -> Flask:
    flask_app = _create_app(*args, **kwargs)
    flask_app.register_blueprint(blueprint)
    return flask_app


# app.cli.serve imports create_app from the package when it runs: it gets this one.
application.create_app = create_app  # type: ignore[assignment]

if __name__ == "__main__":
    raise SystemExit(cli.main())
