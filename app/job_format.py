"""Orthanc's vocabulary for jobs: ErrorCode numbers and descriptions (OrthancFramework
Enumerations), the HTTP status of each (reference §0), the failure fields of a job's Content
(reference §7.5) and the ``/jobs/{id}`` JSON (JobInfo::Format). No Flask.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from app.errors import (
    BadRequest,
    Conflict,
    DicomWebError,
    Forbidden,
    GatewayTimeout,
    NotAcceptable,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from backends.base import JobRecord, JobState

FINISHED = (JobState.SUCCESS, JobState.FAILURE)

# Orthanc's ErrorCode numbers and descriptions (OrthancFramework Enumerations.h / .cpp,
# EnumerationToString(ErrorCode)): the ones a job of this server can end with.
SUCCESS, INTERNAL_ERROR, CANCELED_JOB = 0, -1, 37
ERROR_DESCRIPTIONS: dict[int, str] = {
    -1: "Internal error", 0: "Success", 1: "Error encountered within the plugin engine",
    2: "Not implemented yet", 3: "Parameter out of range",
    4: "The server hosting Orthanc is running out of memory", 5: "Bad type for a parameter",
    6: "Bad sequence of calls", 7: "Accessing an inexistent item", 8: "Bad request",
    9: "Error in the network protocol", 10: "Error while calling a system command",
    11: "Error with the database engine", 12: "Badly formatted URI", 13: "Inexistent file",
    14: "Cannot write to file", 15: "Bad file format", 16: "Timeout", 17: "Unknown resource",
    19: "The file storage is full", 20: "Corrupted file (e.g. inconsistent MD5 hash)",
    21: "Inexistent tag", 22: "Cannot modify a read-only data structure",
    28: "Cannot parse a JSON document", 29: "Bad credentials were provided to an HTTP request",
    34: "Cannot send a response which is acceptable according to the Accept HTTP header",
    36: "The database is currently not available (probably a transient situation)",
    37: "This job was canceled", 41: "Incorrect range request",
    43: "A bad revision number was provided, which might indicate conflict between "
        "multiple writers",
    45: "Access to a resource is forbidden", 2018: "Cannot store an instance",
    3000: "Unsupported media type",
}
# Orthanc's ConvertErrorCodeToHttpStatus (Enumerations.cpp; reference §0): anything else 500.
HTTP_STATUS: dict[int, int] = {
    **dict.fromkeys((3, 5, 8, 12, 15, 28), 400), **dict.fromkeys((7, 13, 17, 21), 404),
    29: 401, 34: 406, 36: 503, 41: 416, 43: 409, 45: 403, 3000: 415,
}
_ERRORS: dict[int, type[DicomWebError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 406: NotAcceptable,
    409: Conflict, 415: UnsupportedMediaType, 503: ServiceUnavailable, 504: GatewayTimeout,
}


def error_description(code: int) -> str:
    if code in ERROR_DESCRIPTIONS:
        return ERROR_DESCRIPTIONS[code]
    return "Error encountered within some plugin" if code >= 1000000 else "Unknown error code"


def failure(code: int, details: str, content: dict[str, Any] | None = None,
             status: int | None = None) -> dict[str, Any]:
    """Changes that end a job in Failure. The Content gets Orthanc's FunctionErrorCode,
    FunctionErrorDescription and FunctionErrorDetails (reference §7.5), plus the HTTP status
    a synchronous call answers with."""
    content = dict(content or {})
    content.update(FunctionErrorCode=code, FunctionErrorDescription=error_description(code),
                   FunctionErrorDetails=details,
                   FunctionHttpStatus=status or HTTP_STATUS.get(code, 500))
    return {"state": JobState.FAILURE, "error_code": code,
            "error_description": error_description(code), "error_details": details,
            "content": json.dumps(content)}


def loads_object(text: str) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def raise_for_job(job: JobRecord) -> None:
    """A synchronous call's answer: nothing for Success; for anything else the app.errors
    class of the HTTP status stored at failure (else Orthanc's status of its ErrorCode)."""
    if job.state == JobState.SUCCESS:
        return
    content = loads_object(job.content)
    status = content.get("FunctionHttpStatus") or HTTP_STATUS.get(job.error_code, 500)
    if job.state != JobState.FAILURE:
        status = 500
    error_class = _ERRORS.get(int(status), DicomWebError)
    error = error_class(job.error_description or error_description(job.error_code),
                        details=job.error_details or None)
    error.status = int(status)
    raise error


# -- Orthanc's job JSON (JobInfo::Format) ---------------------------------------------------


def iso_time(posix: float) -> str:
    """boost's to_iso_string: ``20261128T010203.123456`` (UTC; no fraction when zero)."""
    moment = datetime.fromtimestamp(posix, UTC)
    text = moment.strftime("%Y%m%dT%H%M%S")
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def job_json(job: JobRecord, now: float) -> dict[str, Any]:
    """``/jobs/{id}`` as Orthanc answers it; keys in jsoncpp's order (sorted)."""
    runtime = int(job.runtime * 1000) / 1000.0  # total_milliseconds / 1000
    body: dict[str, Any] = {}
    if job.state in FINISHED:
        body["CompletionTime"] = iso_time(job.completed or now)
    body.update({
        "Content": loads_object(job.content), "CreationTime": iso_time(job.created),
        "EffectiveRuntime": runtime, "ErrorCode": job.error_code,
        "ErrorDescription": job.error_description or error_description(job.error_code),
        "ErrorDetails": job.error_details})
    progress = job.progress / 100
    if job.state == JobState.RUNNING and progress > 0.01 and runtime > 0:
        # JobInfo's estimate: the time so far, scaled by what remains.
        body["EstimatedTimeOfArrival"] = iso_time(now + runtime / progress * (1 - progress))
    body.update({"ID": job.id, "Priority": job.priority, "Progress": job.progress,
                 "State": job.state.value, "Timestamp": iso_time(now), "Type": job.type})
    return body
