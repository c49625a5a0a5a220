"""Orthanc's jobs REST API: /jobs, /jobs/{id}, cancel/pause/resume/resubmit."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("jobs_api", __name__)
