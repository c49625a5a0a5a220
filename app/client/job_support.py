"""What both client jobs need from the job engine: the remote server of a running job and
the Content an earlier attempt left."""

from __future__ import annotations

from typing import Any

from app.client.remote import UNKNOWN_RESOURCE, HttpOptions, Remote, orthanc_code
from app.client.servers import ServerRegistry
from app.errors import DicomWebError
from app.jobs import JobContext, JobFailed

MIB = 1 << 20


def remote_for(ctx: JobContext, name: str) -> Remote:
    """The remote of a running job, looked up afresh (it may have changed or gone since the
    job was submitted, maybe on another node)."""
    settings = ctx.services.settings
    registry = ServerRegistry(settings.DicomWeb.Servers, settings.DicomWeb.ServersInDatabase,
                              ctx.services.index)
    server = registry.get(name)
    if server is None:
        raise JobFailed(f"Unknown DICOMweb server: {name}", code=UNKNOWN_RESOURCE, status=404)
    return Remote(name, server, HttpOptions.from_settings(settings))


def previous_content(ctx: JobContext) -> dict[str, Any] | None:
    """The Content an earlier attempt of this job left, when the job resumes (a job that
    starts again from its first step starts afresh)."""
    return dict(ctx.content) if ctx.position and ctx.content else None


def failed(exc: DicomWebError, hint: str = "") -> JobFailed:
    """A remote failure as the job's failure; a synchronous call answers its status."""
    return JobFailed(exc.message + hint, code=orthanc_code(exc), details=exc.details or "",
                     status=exc.status)
