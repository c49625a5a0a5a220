"""DICOMweb client routes: {root}servers/... (reference §1.2, §7)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("dicomweb_client", __name__)
