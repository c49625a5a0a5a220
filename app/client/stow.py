"""The STOW-RS client job ``DicomWebStowClient`` (reference §7.5): local instances, named by
Orthanc ids of patients, studies, series or instances, sent to a remote server in one
``multipart/related`` POST to ``{url}/studies``.

The body streams from the storage area one instance at a time: chunked when the server's
``ChunkedTransfers`` allows it (the default), else with a ``Content-Length`` computed from
the sizes in the Index before the first byte (Orthanc buffers the whole body then).
The job checkpoints after each instance sent; a paused or interrupted job resumes with a new
POST from the first instance not sent (Orthanc does the same).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.client.job_support import MIB, failed, previous_content, remote_for
from app.client.remote import NETWORK_PROTOCOL
from app.dicom import multipart
from app.errors import BadRequest, DicomWebError, NotFound
from app.jobs import JobContext, JobFailed, JobInterrupted, register_job_type
from backends.base import BackendUnavailable, ResourceIndex, ResourceType, StoredInstance

log = logging.getLogger(__name__)

JOB_TYPE = "DicomWebStowClient"
DEBUG_DELAY = 0.1  # seconds per instance with "Debug": true (Orthanc: 100 ms)
# Orthanc resolves an id as an instance, then a series, a study, a patient (ParseStowRequest).
_LEVELS = (ResourceType.INSTANCE, ResourceType.SERIES, ResourceType.STUDY, ResourceType.PATIENT)
_CONTENT_KEYS = {ResourceType.PATIENT: "Patients", ResourceType.STUDY: "Studies",
                 ResourceType.SERIES: "Series", ResourceType.INSTANCE: "Instances"}


# --------------------------------------------------------------------------------------------
# Submission


def resolve(index: ResourceIndex, ids: list[Any]) -> tuple[list[str], dict[str, list[str]]]:
    """The instance ids under the given Orthanc ids (each once, in order) and the job's
    ``Resources`` content (reference §7.5); an unknown id is :class:`NotFound` (404) before
    any job exists."""
    instances: dict[str, None] = {}
    given: dict[ResourceType, list[str]] = {}
    for id_ in ids:
        if not isinstance(id_, str) or not id_:
            raise BadRequest("\"Resources\" must be an array of Orthanc ids (non-empty strings)")
        for level in _LEVELS:
            found = index.resource_instances(level, id_)
            if found:
                given.setdefault(level, []).append(id_)
                instances.update(dict.fromkeys(i.instance_key for i in found))
                break
        else:
            raise NotFound(f"Unknown resource: {id_[:80]} (not a patient, study, series or "
                           "instance of this server)")
    content = {_CONTENT_KEYS[level]: given[level] for level in reversed(_LEVELS)
               if level in given and level is not ResourceType.INSTANCE}
    content["Instances"] = list(instances)
    return list(instances), content


def initial_content(server: str, instances: list[str],
                    resources: dict[str, list[str]]) -> dict[str, Any]:
    """The job's Content as soon as it is created (Orthanc ≥ 1.23); numbers as strings."""
    return {"Resources": resources, "Server": server, "InstancesCount": str(len(instances)),
            "NetworkSizeMB": "0"}


def parameters(server: str, instances: list[str], headers: dict[str, str],
               debug: bool) -> dict[str, Any]:
    return {"Server": server, "Instances": instances, "HttpHeaders": headers, "Debug": debug}


# --------------------------------------------------------------------------------------------
# The job


class _Abort(Exception):  # noqa: N818 - a signal carried through requests, not an error kind
    """Raised inside the request body to stop the POST: not an ``OSError``, which urllib3
    would take for a network failure. ``cause`` is what really happened."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Progress:
    position: int  # index in the job's instance list of the next one to send
    total: int
    sent: int = 0  # instances sent by this run's POST
    network: int = 0  # DICOM bytes sent, over every run


class _Body:
    """The multipart body, produced as urllib3 sends it; ``__len__`` only when sized.

    A pause or cancel asked while it is sent (``checkpoint`` raises JobInterrupted after an
    instance) ends a chunked body there, properly closed, so that the remote stores and
    acknowledges every instance sent; the interruption is raised once the answer is checked
    (``interrupted``). A sized body cannot end early: it is aborted, and the instance whose
    closing delimiter was never sent counts as not sent (a resumed job sends it again).
    """

    def __init__(self, ctx: JobContext, todo: list[tuple[int, StoredInstance]],
                 progress: _Progress, content: dict[str, Any], sized: bool) -> None:
        self.ctx, self.todo, self.progress, self.content = ctx, todo, progress, content
        self.boundary = multipart.new_boundary()
        self.length = multipart.body_length(self.boundary, map(self._head, todo)) \
            if sized else None
        self.interrupted: JobInterrupted | None = None

    @staticmethod
    def _head(item: tuple[int, StoredInstance]) -> dict[str, str]:
        return {"Content-Type": "application/dicom", "Content-Length": str(item[1].size)}

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._parts()
        except (JobInterrupted, JobFailed, OSError, BackendUnavailable) as exc:
            raise _Abort(exc) from exc

    def _parts(self) -> Iterator[bytes]:
        storage = self.ctx.services.storage
        debug = bool(self.ctx.parameters.get("Debug"))
        for position, instance in self.todo:
            if debug:
                time.sleep(DEBUG_DELAY)
            yield multipart.part_head(self.boundary, self._head((position, instance)))
            size = 0
            for chunk in storage.iter_chunks(instance.storage_key):
                size += len(chunk)
                yield chunk
            if size != instance.size and self.length is not None:
                raise JobFailed(f"Instance {instance.instance_key} has {size} bytes in the "
                                f"storage area, the index says {instance.size}", code=20)
            yield multipart.PART_TAIL
            try:
                self._done(position, size)
            except JobInterrupted as exc:
                if self.length is not None:  # sized: abort; this instance is not delimited
                    self._checkpoint(position)  # raises JobInterrupted again
                self.interrupted = exc
                break
        yield multipart.closing(self.boundary)

    def _done(self, position: int, size: int) -> None:
        progress = self.progress
        progress.sent += 1
        progress.network += size
        self.content["NetworkSizeMB"] = str(progress.network // MIB)
        self.content["NetworkSizeBytes"] = str(progress.network)
        self._checkpoint(position + 1)

    def _checkpoint(self, position: int) -> None:
        self.progress.position = position
        self.ctx.checkpoint(position, 100 * position // self.progress.total, self.content)


class _SizedBody(_Body):
    def __len__(self) -> int:
        assert self.length is not None
        return self.length


def run(ctx: JobContext) -> dict[str, Any]:
    """Send the instances from ``ctx.position`` on; returns the final Content."""
    params = ctx.parameters
    remote = remote_for(ctx, params["Server"])
    ids: list[str] = params["Instances"]
    content = previous_content(ctx)  # a resumed attempt continues its Content
    if content is None:  # that of the submission (Resources, Server...), counters at zero
        content = {**initial_content(params["Server"], ids, {}), **ctx.content,
                   "NetworkSizeMB": "0"}
        content.pop("NetworkSizeBytes", None)
    todo = [(position, found) for position in range(ctx.position, len(ids))
            if (found := _instance(ctx.services.index, ids[position])) is not None]
    progress = _Progress(ctx.position, max(len(ids), 1),
                         network=int(content.get("NetworkSizeBytes", "0")))
    if not todo:  # nothing (left) to send: no empty POST
        ctx.checkpoint(len(ids), 100, content)
        return content
    sized = not remote.server.chunked_transfers
    body = (_SizedBody if sized else _Body)(ctx, todo, progress, content, sized)
    headers = {**params.get("HttpHeaders", {}), "Accept": "application/dicom+json",
               "Content-Type": multipart.content_type("application/dicom", body.boundary)}
    try:
        with remote.request("POST", "/studies", headers=headers, body=body) as response:
            answer = _json(response.content, remote.name)
    except _Abort as abort:
        if isinstance(abort.cause, OSError):  # a blob that cannot be read here
            raise JobFailed("An instance to send cannot be read from the storage area",
                            code=13 if isinstance(abort.cause, FileNotFoundError) else -1,
                            details=type(abort.cause).__name__, status=500) from None
        raise abort.cause from None
    except DicomWebError as exc:
        raise _failed(exc, remote.name) from None
    check_stow_answer(answer, remote.name, progress.sent)
    if body.interrupted is not None:  # paused or canceled after the instances acknowledged
        raise body.interrupted
    content["NetworkSizeMB"] = str(progress.network // MIB)
    ctx.checkpoint(len(ids), 100, content)
    return content


def _instance(index: ResourceIndex, id_: str) -> StoredInstance | None:
    """The instance to send; one deleted since the job was created is skipped."""
    found = index.resource_instances(ResourceType.INSTANCE, id_)
    if not found:
        log.warning("STOW-RS client: instance %s was deleted before it was sent", id_)
        return None
    return found[0]


def _failed(exc: DicomWebError, server: str) -> JobFailed:
    hint = ""
    if "411" in exc.message:  # Length Required: the remote cannot read chunked bodies
        hint = (f"; the server may not accept chunked transfers: set \"ChunkedTransfers\" "
                f"to false in the definition of \"{server}\"")
    return failed(exc, hint)


def _json(body: bytes, server: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise JobFailed(f"The STOW-RS answer of the DICOMweb server \"{server}\" is not JSON",
                        code=NETWORK_PROTOCOL, status=502) from None


def _sequence_size(answer: dict[str, Any], tag: str, server: str) -> int | None:
    """Items in a sequence attribute (upper- or lower-case key); None when absent."""
    value = answer.get(tag.upper(), answer.get(tag.lower()))
    if value is None:
        return None
    items = value.get("Value", []) if isinstance(value, dict) else None
    if not isinstance(items, list):
        raise JobFailed(f"Unable to parse STOW-RS JSON response from DICOMweb server {server}",
                        code=NETWORK_PROTOCOL, status=502)
    return len(items)


def check_stow_answer(answer: Any, server: str, count: int) -> None:
    """Orthanc ``CheckStowAnswer``: ReferencedSOPSequence with one item per instance sent,
    FailedSOPSequence and OtherFailuresSequence missing or empty; else NetworkProtocol."""
    stored = _sequence_size(answer, "00081199", server) if isinstance(answer, dict) else None
    if stored is None:
        raise JobFailed(f"Unable to parse STOW-RS JSON response from DICOMweb server {server}",
                        code=NETWORK_PROTOCOL, status=502)
    if stored != count:
        raise JobFailed(f"The STOW-RS server was only able to receive {stored} instances out "
                        f"of {count}", code=NETWORK_PROTOCOL, status=502)
    for tag, name in (("00081198", "Failed SOP Sequence (0008,1198)"),
                      ("0008119A", "Other Failures Sequence (0008,119A)")):
        failed = _sequence_size(answer, tag, server)
        if failed:
            raise JobFailed(f"The response from the STOW-RS server contains {failed} items "
                            f"in its {name} tag", code=NETWORK_PROTOCOL, status=502)


register_job_type(JOB_TYPE, run, pausable=True)
