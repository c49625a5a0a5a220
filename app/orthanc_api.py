"""Orthanc's resource REST API (the subset tools rely on), at the server root."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("orthanc_api", __name__)
