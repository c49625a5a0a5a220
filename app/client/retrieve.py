"""The WADO-RS retrieve job ``DicomWebWadoRetrieveClient`` (reference §7.6): one GET per
resource to a remote server, each ``application/dicom`` part of the ``multipart/related``
answer stored here as a STOW-RS part would be (``app.dicom.store.store_one``, with the
configured storage policy).

The answer is parsed as it arrives (``multipart.iter_parts`` over the response's raw
stream): one part at a time is spooled (memory up to 8 MiB, then a temporary file), never a
whole study. The job checkpoints after each instance; it cannot be paused (pause acts as
cancel, as in Orthanc) and an interrupted job restarts from the resource it was in. Its
Content adds what Orthanc leaves out although its Book promises it: ``Instances``, the local
Orthanc ids of what was stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.client.job_support import MIB, failed, previous_content, remote_for
from app.client.remote import NETWORK_PROTOCOL, Remote, build_uri, has_header
from app.dicom import multipart, store
from app.dicom.media_types import parse_content_type
from app.errors import BadRequest, DicomWebError, UnsupportedMediaType
from app.jobs import JobContext, JobFailed, register_job_type
from backends.base import InstanceRecord, StoredInstance

JOB_TYPE = "DicomWebWadoRetrieveClient"
UNIVERSAL_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DEBUG_DELAY = 0.05  # seconds per part with "Debug": true (Orthanc: 50 ms)
_HINT = ("; the remote DICOMweb server might need the option "
         "\"HasWadoRsUniversalTransferSyntax\" set to false in its definition")
# Orthanc ErrorCode and HTTP status of a part that could not be stored, by STOW failure reason.
_STORE_FAILURES = {store.CANNOT_UNDERSTAND: (15, 502, "is not a DICOM instance this server "
                                                       "can read"),
                   store.OUT_OF_RESOURCES: (19, 507, "does not fit in the storage limits"),
                   store.PROCESSING_FAILURE: (-1, 500, "could not be stored")}


# --------------------------------------------------------------------------------------------
# Submission


def study_uri(study: str, series: str | None = None, instance: str | None = None) -> str:
    uri = f"/studies/{study}"
    if series:
        uri += f"/series/{series}"
    if instance:
        uri += f"/instances/{instance}"
    return uri


def resource(uri: str, arguments: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    """One GET of the job: its URI with the arguments, and the request's headers."""
    return {"Uri": build_uri(uri, arguments), "HttpHeaders": headers}


def parameters(server: str, resources: list[dict[str, Any]], debug: bool) -> dict[str, Any]:
    return {"Server": server, "Resources": resources, "Debug": debug}


def initial_content() -> dict[str, Any]:
    return {"NetworkUsageMB": "0", "ReceivedInstancesCount": "0", "Instances": []}


# --------------------------------------------------------------------------------------------
# The job


@dataclass
class _Received(store.StowOutcome):
    """A STOW outcome that also keeps the Orthanc id of what was stored (or kept)."""

    ids: list[str] = field(default_factory=list)

    def add_stored(self, record: InstanceRecord) -> None:
        super().add_stored(record)
        self.ids.append(record.instance_key)

    def add_kept(self, record: InstanceRecord, kept: StoredInstance) -> None:
        super().add_kept(record, kept)
        self.ids.append(kept.instance_key)


class _Run:
    """One attempt of the job: the Content it keeps up to date."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.resources: list[dict[str, Any]] = ctx.parameters["Resources"]
        self.remote: Remote = remote_for(ctx, ctx.parameters["Server"])
        self.content = previous_content(ctx) or initial_content()
        self.ids: dict[str, None] = dict.fromkeys(self.content.get("Instances", []))
        self.earlier = int(self.content.get("NetworkUsageBytes", "0"))
        settings = ctx.services.settings
        self.policy = store.StoragePolicy.from_orthanc(
            settings.OverwriteInstances, settings.MaximumStorageSize,
            settings.MaximumPatientCount, settings.MaximumStorageMode)
        self.binary_mode = settings.DicomWeb.OtherBinaryMode
        self.debug = bool(ctx.parameters.get("Debug"))

    def checkpoint(self, position: int) -> None:
        network = self.earlier + self.remote.received
        self.content.update({"NetworkUsageMB": str(network // MIB),
                             "NetworkUsageBytes": str(network),
                             "ReceivedInstancesCount": str(len(self.ids)),
                             "Instances": list(self.ids)})
        total = max(len(self.resources), 1)
        self.ctx.checkpoint(position, min(100, 100 * position // total), self.content)

    def retrieve(self, position: int) -> None:
        """GET one resource and store every instance of its answer."""
        item = self.resources[position]
        headers = dict(item.get("HttpHeaders", {}))
        # Reference §7.6: ask for the stored transfer syntaxes unless the request says what
        # it accepts (the server's own HttpHeaders do not count, as in Orthanc).
        if not has_header(headers, "Accept") and self.remote.server.universal_transfer_syntax:
            headers["Accept"] = UNIVERSAL_ACCEPT
        try:
            with self.remote.request("GET", item["Uri"], headers=headers) as response:
                boundary = _boundary(response.headers.get("Content-Type"), self.remote.name)
                self._store_parts(multipart.iter_parts(self.remote.reader(response), boundary),
                                  position)
        except JobFailed:
            raise
        except DicomWebError as exc:
            # A remote that cannot send the stored transfer syntaxes may refuse the Accept.
            universal = "transfer-syntax=*" in headers.get("Accept", "")
            raise failed(exc, _HINT if universal and "406" in exc.message else "") from None

    def _store_parts(self, parts: Any, position: int) -> None:
        try:
            for part in parts:
                self._store(part)
                if self.debug:
                    time.sleep(DEBUG_DELAY)
                self.checkpoint(position)
        except (BadRequest, UnsupportedMediaType) as exc:  # the multipart framing
            raise JobFailed(f"The WADO-RS answer of the DICOMweb server \"{self.remote.name}\" "
                            f"is not a valid multipart body: {exc.message}",
                            code=NETWORK_PROTOCOL, status=502) from None

    def _store(self, part: multipart.Part) -> None:
        part_type = part.headers.get("content-type")
        if part_type is None:
            raise JobFailed("Missing Content-Type for a part of WADO-RS answer",
                            code=NETWORK_PROTOCOL, status=502)
        main = part_type.split(";", 1)[0].strip()
        if main.lower() != "application/dicom":
            raise JobFailed("Parts of a WADO-RS retrieve should have \"application/dicom\" "
                            f"type, but received: {main[:80]}", code=NETWORK_PROTOCOL,
                            status=502)
        outcome = _Received(base_url="")
        services = self.ctx.services
        with store.spool(part.iter_chunks()) as (f, size):
            store.store_one(f, size, outcome, storage=services.storage, index=services.index,
                            study_uid=None, binary_mode=self.binary_mode, policy=self.policy)
        if outcome.failed:
            _, sop, reason = outcome.failed[0]
            code, status, why = _STORE_FAILURES.get(reason, _STORE_FAILURES[
                store.PROCESSING_FAILURE])
            raise JobFailed(f"An instance received from the DICOMweb server "
                            f"\"{self.remote.name}\" {why}", code=code, status=status,
                            details=f"SOPInstanceUID {sop}" if sop else "")
        self.ids.update(dict.fromkeys(outcome.ids))


def _boundary(content_type: str | None, server: str) -> str:
    """The boundary of a ``multipart/related`` answer; anything else fails the job with
    Orthanc's hint about HasWadoRsUniversalTransferSyntax."""
    if not content_type:
        raise JobFailed(f"No Content-Type provided by the remote WADO-RS server \"{server}\""
                        + _HINT, code=NETWORK_PROTOCOL, status=502)
    try:
        media, params = parse_content_type(content_type)
    except BadRequest:
        media, params = content_type[:80], {}
    if media != "multipart/related" or not params.get("boundary"):
        raise JobFailed(f"The remote WADO-RS server \"{server}\" answers with a \"{media}\" "
                        "Content-Type, but \"multipart/related\" with a boundary is expected"
                        + _HINT, code=NETWORK_PROTOCOL, status=502)
    return params["boundary"]


def run(ctx: JobContext) -> dict[str, Any]:
    """Retrieve the resources from ``ctx.position`` on; returns the final Content."""
    attempt = _Run(ctx)
    for position in range(ctx.position, len(attempt.resources)):
        attempt.retrieve(position)
        attempt.checkpoint(position + 1)
    attempt.checkpoint(len(attempt.resources))
    return attempt.content


register_job_type(JOB_TYPE, run, pausable=False)
