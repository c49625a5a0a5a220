"""Audit log (``AuditLogFile``, ours): one JSON line per request that touches patient data.

Audited: every request routed to a DICOMweb or WADO-URI blueprint (QIDO-RS, WADO-RS,
STOW-RS, DELETE, WADO-URI) or to Orthanc's resource REST API, and every request under the
DICOMweb root or the WADO-URI path that matched no route (404, or 405 such as a DELETE on a
ReadOnly server), whatever its outcome: refused ones (401, 403) included. Not audited:
``OPTIONS`` (it reads nothing) and routes outside those services (static assets).

A line, keys in this order::

    {"time": "2025-01-31T09:15:02.123Z", "user": "alice", "remote": "127.0.0.1",
     "method": "GET", "route": "/dicom-web/studies/<study>/series/<series>",
     "path": "/dicom-web/studies/1.2.3/series/4.5.6", "study": "1.2.3", "status": 200}

- ``time``: UTC, when the response was decided (its status known, before the body streams).
- ``user``: the user the request's Basic credentials name when it is a registered one (a 401
  with a registered user is a wrong password), else null; null when authentication is off
  and when remote access refused the request (before its credentials were read).
  Never a password, never the Authorization header.
- ``route``: the URL rule (null when no route matched); ``path`` without the query string
  (QIDO queries may carry patient names).
- ``study``: the ``study`` of the URL, else the query's ``StudyInstanceUID``, ``0020000D``
  or (WADO-URI) ``studyUID``; null otherwise. STOW-RS to ``/studies`` learns its studies
  only while parsing the body: its line has the URL's study, else null.
- ``status``: the status sent, including 401/403/404/500.

The line is written once the answer is made (before a streamed body), with one ``os.write``
on a descriptor opened with ``O_APPEND``: gunicorn workers and threads append to the same
file without interleaving (POSIX appends on a local filesystem; not on NFS). The file is
opened for each line, so logrotate may move it away at any time; it is created ``0600``.
A line that cannot be written is reported in the error log; the request is still answered.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request

from app.errors import ConfigurationError
from app.settings import Settings

log = logging.getLogger(__name__)

# orthanc_api: Orthanc's resource REST API (its /system-like routes are logged too);
# orthanc_info: {root}info, under the DICOMweb root like the services.
PATIENT_DATA_BLUEPRINTS = frozenset({"qido_rs", "wado_rs", "stow_rs", "delete", "wado_uri",
                                     "orthanc_api", "orthanc_info", "jobs_api",
                                     "dicomweb_client"})
_STUDY_PARAMETERS = ("StudyInstanceUID", "0020000D", "0020000d", "studyUID")
_MAX_TEXT = 2048


def problems(settings: Settings) -> list[str]:
    """Whether AuditLogFile could be appended to (nothing is created here)."""
    if not settings.AuditLogFile:
        return []
    path = Path(settings.AuditLogFile)
    where = f"AuditLogFile: {settings.AuditLogFile}"
    if path.is_dir():
        return [f"{where} is a folder"]
    if path.exists():
        return [] if os.access(path, os.W_OK) else [f"{where} is not writable"]
    parent = path.parent
    if not parent.is_dir():
        return [f"{where}: the folder {parent} does not exist"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{where}: cannot create a file in {parent}"]
    return []


class AuditLog:
    """Appends one JSON line per ``write``, atomically with respect to other writers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record) + "\n").encode("ascii")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            written = os.write(fd, line)
        finally:
            os.close(fd)
        if written != len(line):
            raise OSError(f"short write ({written} of {len(line)} bytes)")


def install_audit(app: Flask, settings: Settings) -> None:
    """Register the audit hooks when ``AuditLogFile`` is set. The status is taken by an
    ``after_request`` hook (the last call wins, so a later hook's failure turned into a 500
    is what is logged) and the line written at ``teardown_request`` (500 if no response
    was ever made). Raises ConfigurationError when the file cannot be appended to."""
    if not settings.AuditLogFile:
        return
    found = problems(settings)
    if found:
        raise ConfigurationError("; ".join(found))
    audit_log = AuditLog(settings.AuditLogFile)
    roots = []
    if settings.DicomWeb.Enable:
        roots.append(settings.DicomWeb.root.rstrip("/"))
    if settings.DicomWeb.EnableWado:
        roots.append(settings.DicomWeb.wado_root.rstrip("/"))

    def audited() -> bool:
        if request.method == "OPTIONS":
            return False
        if request.url_rule is not None:
            return not PATIENT_DATA_BLUEPRINTS.isdisjoint(request.blueprints)
        path = request.path
        return any(path == root or path.startswith(root + "/") for root in roots)

    @app.after_request
    def _audit_status(response: Response) -> Response:
        g.dicomweb_audit = (_now(), response.status_code)
        return response

    @app.teardown_request
    def _audit_line(exc: BaseException | None) -> None:
        # A streamed body (stream_with_context) pushes the context again: teardown runs
        # once more when the stream ends. One line per request.
        if g.get("dicomweb_audit_done"):
            return
        g.dicomweb_audit_done = True
        try:
            if not audited():
                return
            time, status = g.get("dicomweb_audit") or (_now(), 500)
            audit_log.write(record(time, status))
        except Exception:  # the answer is given; the error log says the line is missing
            log.exception("audit log: cannot write the line of %s %s",
                          request.method, request.path)


def record(time: str, status: int) -> dict[str, Any]:
    """The audit line of the current request."""
    from app.security import request_user

    rule = request.url_rule
    return {
        "time": time,
        "user": request_user(),
        "remote": request.remote_addr,
        "method": request.method,
        "route": rule.rule if rule is not None else None,
        "path": request.path[:_MAX_TEXT],
        "study": _study(),
        "status": status,
    }


def _study() -> str | None:
    study = (request.view_args or {}).get("study")
    if not study:
        study = next((request.args[name] for name in _STUDY_PARAMETERS
                      if request.args.get(name)), None)
    return str(study)[:_MAX_TEXT] if study else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
