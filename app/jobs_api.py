"""Orthanc's jobs REST API at the server root: ``GET /jobs[?expand]``, ``GET /jobs/{id}``,
``POST /jobs/{id}/cancel|pause|resume|resubmit`` (answer ``{}`` as Orthanc). Any worker of
any node answers for any job: the state is read from the Index (app/jobs.py, docs/jobs.md).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from app.jobs import engine, job_json

blueprint = Blueprint("jobs_api", __name__)

ACTIONS = ("cancel", "pause", "resume", "resubmit")


@blueprint.before_app_request
def _start_runner() -> None:
    # The first request a process serves starts its runner if jobs wait in the Index (a
    # server run without gunicorn's post_worker_init hook, e.g. ``gunicorn wsgi:app``).
    engine().start_if_needed()


@blueprint.get("/jobs")
def list_jobs() -> Response:
    """Ids, oldest first; with ``?expand`` (presence only, as Orthanc) the job objects."""
    jobs = engine().jobs()
    if "expand" in request.args:
        now = time.time()
        return jsonify([job_json(job, now) for job in jobs])
    return jsonify([job.id for job in jobs])


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(job_json(engine().get(job_id), time.time()))


def control_job(job_id: str, action: str) -> Response:
    """Unknown job: 404; an action its state does not allow: 400 naming the state."""
    getattr(engine(), action)(job_id)
    empty: dict[str, Any] = {}
    return jsonify(empty)


for _action in ACTIONS:
    blueprint.add_url_rule(f"/jobs/<job_id>/{_action}", endpoint=f"{_action}_job",
                           view_func=control_job, methods=["POST"],
                           defaults={"action": _action})
