"""DICOMweb client routes under the DicomWeb Root (reference §1.2, §7): the remote servers
(``servers``, ``servers/{name}``) and what can be done with one (``get``, ``qido``,
``wado``, ``retrieve``, ``stow``, ``delete``). docs/client.md describes every route.

This module parses the HTTP request and answers; the work is in ``app.client``. Importing
it registers the two job types (``app.client.stow``, ``app.client.retrieve``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState

from app.client import qido, retrieve, stow
from app.client.remote import HttpOptions, Remote, has_header, merge_headers
from app.client.servers import (
    ServerDefinitionError,
    ServerRegistry,
    check_headers,
    check_name,
    parse_server,
)
from app.dicom.identifiers import check_uid
from app.errors import BadGateway, BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge
from app.jobs import engine, raise_for_job
from app.services import EXTENSION as SERVICES
from app.services import services

blueprint = Blueprint("dicomweb_client", __name__)

EXTENSION = "dicomweb_client"  # app.extensions key of the ServerRegistry
MAX_BODY = 16 << 20  # bytes of a client route's JSON body
OPERATIONS = ["get", "retrieve", "stow", "wado", "qido"]  # + "delete" with HasDelete
# Not forwarded by /get: hop-by-hop headers (RFC 9110 §7.6.1), those this server sets
# itself, and the remote's cookies (they would be stored for this server's origin).
_NOT_FORWARDED = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "date", "server",
    "set-cookie"))


@blueprint.record_once
def _setup(state: BlueprintSetupState) -> None:
    """One registry per application, prepared at creation (seeded or cleaned in the Index;
    retried at the first request if the Index is down)."""
    settings = state.app.extensions[SERVICES].settings
    registry = ServerRegistry(settings.DicomWeb.Servers, settings.DicomWeb.ServersInDatabase,
                              state.app.extensions[SERVICES].index)
    registry.try_prepare()
    state.app.extensions[EXTENSION] = registry


def _registry() -> ServerRegistry:
    from flask import current_app

    found: ServerRegistry = current_app.extensions[EXTENSION]
    return found


def _json(value: Any) -> Response:
    return Response(json.dumps(value), content_type="application/json")


# --------------------------------------------------------------------------------------------
# Request bodies


def _body() -> Any:
    """The JSON request body (at most MAX_BODY bytes)."""
    if (request.content_length or 0) > MAX_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY >> 20} MiB")
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY >> 20} MiB")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest("The request body is not valid JSON",
                         details=str(exc)[:200]) from None


def _object() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object")
    return body


def _strings(body: dict[str, Any], key: str) -> dict[str, str]:
    """An optional object of string → string (``Arguments``, ``HttpHeaders``)."""
    value = body.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(f"\"{key}\" must be a JSON object of strings")
    return value


def _headers(body: dict[str, Any]) -> dict[str, str]:
    try:
        return check_headers(_strings(body, "HttpHeaders"), "HttpHeaders")
    except ServerDefinitionError as exc:
        raise BadRequest(str(exc)) from None


def _option(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise BadRequest(f"\"{key}\" must be {'true or false' if kind is bool else 'an integer'}")
    return value


def _uri(body: dict[str, Any]) -> str:
    uri = body.get("Uri")
    if not isinstance(uri, str):
        raise BadRequest("A request to the DICOMweb client must provide a JSON object with the "
                         "field \"Uri\" containing the URI of interest")
    return uri


# --------------------------------------------------------------------------------------------
# Servers (reference §7.2)


def _remote(name: str) -> Remote:
    server = _registry().get(name)
    if server is None:
        raise NotFound(f"Unknown DICOMweb server: {name}")
    return Remote(name, server, HttpOptions.from_settings(services().settings))


@blueprint.get("/servers")
def list_servers() -> Response:
    """Names, sorted; ``?expand`` (its presence): name → public description."""
    servers = _registry().all()
    if "expand" in request.args:
        return _json({name: server.public() for name, server in servers.items()})
    return _json(list(servers))


@blueprint.get("/servers/<name>")
def server_operations(name: str) -> Response:
    remote = _remote(name)
    return _json(OPERATIONS + (["delete"] if remote.server.has_delete else []))


@blueprint.put("/servers/<name>")
def put_server(name: str) -> Response:
    """Create or replace; every worker and node sees it at once (docs/client.md)."""
    definition = _body()
    try:
        check_name(name)
        server = parse_server(definition)
    except ServerDefinitionError as exc:
        raise BadRequest(f"Bad definition of the DICOMweb server \"{name}\": {exc}") from None
    _registry().put(name, server)
    return _json({})


@blueprint.delete("/servers/<name>")
def delete_server(name: str) -> Response:
    """404 for an unknown name (Orthanc: 400)."""
    if not _registry().delete(name):
        raise NotFound(f"Unknown DICOMweb server: {name}")
    return _json({})


# --------------------------------------------------------------------------------------------
# /get and /qido (reference §7.4)


@blueprint.post("/servers/<name>/get")
def get(name: str) -> Response:
    """The remote answer as it comes: status, body and Content-Type (and the other headers
    but hop-by-hop ones), streamed."""
    remote = _remote(name)
    body = _object()
    uri = _request_uri(body, "Arguments")
    headers = _headers(body)
    stack = ExitStack()
    try:
        answer = stack.enter_context(remote.request("GET", uri, headers=headers))
        forwarded = {k: v for k, v in answer.headers.items()
                     if k.lower() not in _NOT_FORWARDED}
        forwarded.setdefault("Content-Type", "application/octet-stream")
        response = Response(_raw_chunks(answer, stack), status=answer.status_code,
                            headers=forwarded)
    except BaseException:
        stack.close()
        raise
    response.call_on_close(stack.close)
    return response


def _raw_chunks(answer: Any, stack: ExitStack) -> Iterator[bytes]:
    """The body bytes as received (a compressed body stays compressed, its
    Content-Encoding and Content-Length forwarded with it); the remote connection is
    closed at the end, or when the client goes away."""
    try:
        yield from answer.raw.stream(1 << 16, decode_content=False)
    finally:
        stack.close()


def _request_uri(body: dict[str, Any], *argument_keys: str) -> str:
    from app.client.remote import build_uri

    arguments: dict[str, str] = {}
    for key in argument_keys:
        arguments.update(_strings(body, key))
    return build_uri(_uri(body), arguments)


@blueprint.post("/servers/<name>/qido")
def qido_client(name: str) -> Response:
    """The remote QIDO-RS answer, simplified (reference §7.4). ``Accept:
    application/dicom+json`` is sent unless a header of the server or the request says."""
    remote = _remote(name)
    body = _object()
    uri = _request_uri(body, "Arguments")
    headers = _headers(body)
    if not has_header(merge_headers(remote.server.http_headers, headers), "Accept"):
        headers["Accept"] = "application/dicom+json"
    with remote.request("GET", uri, headers=headers) as answer:
        text = answer.content
    try:
        found = json.loads(text)
    except ValueError:
        raise BadGateway(f"The QIDO-RS answer of the DICOMweb server \"{name}\" is not JSON "
                         f"(Content-Type {answer.headers.get('Content-Type')})") from None
    return _json(qido.simplify(found, name))


# --------------------------------------------------------------------------------------------
# Jobs: /wado, /retrieve (reference §7.6), /stow (§7.5)


def _refuse_if_read_only() -> None:
    """Retrieving stores instances here: refused when ReadOnly (Orthanc leaves /retrieve
    unregistered: 404)."""
    if services().settings.ReadOnly:
        raise MethodNotAllowed("This server is read-only (ReadOnly: true): nothing can be "
                               "retrieved into it", headers={"Allow": ""})


def _submit(type_: str, parameters: dict[str, Any], content: dict[str, Any],
            body: dict[str, Any], synchronous: bool) -> Response:
    """Synchronous: run here and answer the job's Content (or its error); asynchronous:
    ``{"ID", "Path"}`` at once. Options as Orthanc's ``SubmitJob``."""
    if "Synchronous" in body:
        synchronous = _option(body, "Synchronous", bool, True)
    elif "Asynchronous" in body:
        synchronous = not _option(body, "Asynchronous", bool, False)
    priority = _option(body, "Priority", int, 0)
    jobs = engine()
    if synchronous:
        job = jobs.run(type_, parameters, priority=priority, content=content)
        raise_for_job(job)
        return _json(json.loads(job.content))
    job = jobs.submit(type_, parameters, priority=priority, content=content)
    return _json({"ID": job.id, "Path": _job_path(job.id)})


def _job_path(job_id: str) -> str:
    """``/jobs/{id}`` relative to the request path (Orthanc's ``.././../jobs/{id}`` resolves
    below the Root instead)."""
    depth = request.path.strip("/").count("/")
    return "../" * depth + f"jobs/{job_id}"


@blueprint.post("/servers/<name>/wado")
def wado_client(name: str) -> Response:
    """One WADO-RS GET of ``Uri`` stored here; asynchronous by default."""
    _refuse_if_read_only()
    remote = _remote(name)
    body = _object()
    resource = retrieve.resource(_uri(body), _strings(body, "Arguments"), _headers(body))
    debug = _option(body, "Debug", bool, False)
    return _submit(retrieve.JOB_TYPE, retrieve.parameters(remote.name, [resource], debug),
                   retrieve.initial_content(), body, synchronous=False)


@blueprint.post("/servers/<name>/retrieve")
def retrieve_client(name: str) -> Response:
    """Studies, series or instances by UID; synchronous by default. ``GetArguments``
    (Orthanc's name) and ``Arguments`` are both read."""
    _refuse_if_read_only()
    remote = _remote(name)
    body = _object()
    items = body.get("Resources")
    if not isinstance(items, list):
        raise BadRequest("The body must be a JSON object containing an array \"Resources\"")
    arguments = {**_strings(body, "GetArguments"), **_strings(body, "Arguments")}
    headers = _headers(body)
    resources = [retrieve.resource(_resource_uri(item), arguments, headers) for item in items]
    debug = _option(body, "Debug", bool, False)
    return _submit(retrieve.JOB_TYPE, retrieve.parameters(remote.name, resources, debug),
                   retrieve.initial_content(), body, synchronous=True)


def _resource_uri(item: Any) -> str:
    """``{"Study", "Series"?, "Instance"?}`` → ``/studies/…``; the UIDs are checked (they
    become path segments of the remote URL)."""
    if not isinstance(item, dict) or not isinstance(item.get("Study"), str):
        raise BadRequest("Missing \"Study\" field in an item of \"Resources\"")
    uids = [item["Study"]]
    for key in ("Series", "Instance"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"\"{key}\" must be a string")
        uids.append(value or "")
    if uids[2] and not uids[1]:
        raise BadRequest("Missing \"Series\" field in the body, as \"Instance\" is present")
    for uid, what in zip(uids, ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
                         strict=True):
        if uid:
            check_uid(uid, what)
    return retrieve.study_uri(*uids)


@blueprint.post("/servers/<name>/stow")
def stow_client(name: str) -> Response:
    """Local patients, studies, series or instances (Orthanc ids) sent in one STOW-RS
    request; synchronous by default. Unknown ids are 404 before any job exists."""
    remote = _remote(name)
    body = _object()
    ids = body.get("Resources")
    if not isinstance(ids, list):
        raise BadRequest("A request to the DICOMweb STOW-RS client must provide a JSON object "
                         "with the field \"Resources\" containing an array of resources to "
                         "be sent")
    headers = _headers(body)
    debug = _option(body, "Debug", bool, False)
    instances, resources = stow.resolve(services().index, ids)
    return _submit(stow.JOB_TYPE, stow.parameters(remote.name, instances, headers, debug),
                   stow.initial_content(remote.name, instances, resources), body,
                   synchronous=True)


# --------------------------------------------------------------------------------------------
# /delete (reference §7.7)

_LEVELS = {"STUDY": 1, "STUDIES": 1, "SERIES": 2, "INSTANCE": 3, "INSTANCES": 3}
_UID_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@blueprint.post("/servers/<name>/delete")
def delete_client(name: str) -> Response:
    """HTTP DELETE of a remote study, series or instance; the server must have
    ``HasDelete`` (else 400, as Orthanc)."""
    remote = _remote(name)
    if not remote.server.has_delete:
        raise BadRequest(f"Cannot delete on DICOMweb server, check out property "
                         f"\"HasDelete\": {name}")
    body = _object()
    level = body.get("Level")
    if not isinstance(level, str) or not isinstance(body.get("StudyInstanceUID"), str):
        raise BadRequest("The request body must contain a JSON object with fields \"Level\" "
                         "and \"StudyInstanceUID\"")
    depth = _LEVELS.get(level.upper())
    if depth is None:
        raise BadRequest(f"\"Level\" must be Study, Series or Instance, not {level[:40]!r}")
    uids = []
    for key in _UID_KEYS[:depth]:
        uid = body.get(key)
        if not isinstance(uid, str):
            raise BadRequest(f"The request body must contain the field \"{key}\"")
        uids.append(check_uid(uid, key))
    with remote.request("DELETE", retrieve.study_uri(*uids)):
        pass
    return _json({})
