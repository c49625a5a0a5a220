"""Orthanc's resource REST API (the subset tools rely on), at the server root.

Resources are addressed by Orthanc ids (``app.dicom.identifiers.orthanc_ids``) and
answered in Orthanc 1.10-1.12 shapes (``app.dicom.orthanc_resources``); what differs
from Orthanc is in docs/orthanc-api.md. ``GET {root}info`` (reference §1.3) lives on
:data:`info_blueprint`, registered under the DICOMweb root.

Reads never touch a DICOM file except where Orthanc reads one too: ``/file``, ``/tags``,
``/content``, ``/rendered``. Writes (``POST /instances``, ``DELETE``) go through STOW's
storage policy and DELETE's order (index first, then blobs); with ``ReadOnly`` they are
refused (:data:`WRITE_ENDPOINTS`). ``POST /tools/find`` and ``/tools/lookup`` only read:
``app.security.READ_ENDPOINTS`` lets read-only users call them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from importlib import metadata
from typing import Any, BinaryIO

from flask import Blueprint, Response, json, request

from app.dicom import (
    archive,
    orthanc_find,
    orthanc_resources,
    orthanc_tags,
    render,
    rendered,
    store,
)
from app.dicom.bulkdata import read_chunks
from app.dicom.frame_source import FrameSource
from app.dicom.ingest import read_instance
from app.dicom.negotiation import parse_accept
from app.dicom.orthanc_resources import CHILD_TYPE, PATHS, TYPES
from app.dicom.query import lookup_attribute
from app.dicom.retrieve import primed
from app.dicom.search import result_cap
from app.errors import BadRequest, DicomWebError, NotAcceptable, NotFound, PayloadTooLarge
from app.services import services
from backends.base import Resource, ResourceType, StoredInstance

log = logging.getLogger(__name__)
blueprint = Blueprint("orthanc_api", __name__)
info_blueprint = Blueprint("orthanc_info", __name__)

# Refused with ReadOnly (app._refuse_writes).
WRITE_ENDPOINTS = ("orthanc_api.upload", "orthanc_api.delete_resource", "orthanc_api.clear_changes")

API_VERSION = 24  # Orthanc 1.12.4's REST API, the shapes answered here
DATABASE_VERSION = 6  # Orthanc's database schema whose resource model the Index mirrors
INSTANCE = "/instances/<id_>"
PLUGIN = "dicom-web"
CHANGES_LIMIT = 100  # Orthanc's default ?limit of /changes
CHANGES_MAX = 10_000


class InsufficientStorage(DicomWebError):
    """Orthanc's FullStorage: the storage limits refuse the instance (RFC 4918 §11.5)."""

    status = 507


def _version() -> str:
    try:
        return metadata.version("dicomweb-server")
    except metadata.PackageNotFoundError:
        return "mainline"


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #

def _json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")


def _flag(name: str) -> bool:
    """Orthanc's boolean argument: present, and not ``false``/``0``."""
    value = request.args.get(name)
    return value is not None and value.strip().lower() not in ("false", "0")


def _uint(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not value.strip().isdigit() or len(value.strip()) > 10:
        raise BadRequest(f"Argument {name} must be a non-negative integer, not {value[:20]!r}")
    return int(value)


def _format() -> str:
    """MainDicomTags / tags format: ``?full``, ``?short``, else Human (``?simplify``)."""
    if _flag("full"):
        return "Full"
    return "Short" if _flag("short") else "Human"


def _resource(type_: ResourceType, id_: str) -> Resource:
    found = services().index.resource(type_, id_)
    if found is None:
        raise NotFound(f"Unknown {type_.value.lower()}: {id_[:64]}")
    return found


def _extra_tags() -> dict[ResourceType, tuple[int, ...]]:
    """ExtraMainDicomTags of the settings, by level (validated at start-up)."""
    out = {}
    for level, names in services().settings.ExtraMainDicomTags.items():
        attributes = [lookup_attribute(name) for name in names]
        tags = tuple(a.tag for a in attributes if a is not None and a.vr != "SQ")
        for type_ in ResourceType:
            if type_.value == level:
                out[type_] = tags
    return out


def _expanded(resource: Resource, fmt: str = "Human",
              extra: dict[ResourceType, tuple[int, ...]] | None = None) -> dict[str, Any]:
    index = services().index
    fallback = patient = None
    if resource.type is ResourceType.SERIES and resource.children:
        # Series main tags that are instance level here come from its first instance.
        first = index.resource(ResourceType.INSTANCE, resource.children[0])
        fallback = first.attrs if first is not None else None
    if resource.type is ResourceType.STUDY and resource.parent is not None:
        owner = index.resource(ResourceType.PATIENT, resource.parent)
        patient = owner.attrs if owner is not None else None
    return orthanc_resources.expand(resource, fmt=fmt, fallback=fallback, patient=patient,
                                    extra_tags=extra if extra is not None else _extra_tags())


def _expand_ids(type_: ResourceType, ids: list[str]) -> list[dict[str, Any]]:
    index, fmt, extra = services().index, _format(), _extra_tags()
    resources = (index.resource(type_, id_) for id_ in ids)
    # A resource deleted between the listing and now is left out.
    return [_expanded(r, fmt, extra) for r in resources if r is not None]


# --------------------------------------------------------------------------- #
# Resources
# --------------------------------------------------------------------------- #

def list_resources(level: str) -> Response:
    """``GET /patients|studies|series|instances[?expand][&since=&limit=]``: ids in the order
    first stored. Orthanc requires ``since`` and ``limit`` together; either alone works
    here (``since`` defaults to 0, ``limit`` to none)."""
    type_ = TYPES[level]
    ids = services().index.resource_ids(type_, since=_uint("since") or 0, limit=_uint("limit"))
    return _json(_expand_ids(type_, ids) if _flag("expand") else ids)


def get_resource(level: str, id_: str) -> Response:
    return _json(_expanded(_resource(TYPES[level], id_), _format()))


def related_resources(level: str, id_: str, related: str) -> Response:
    """Orthanc's routes to the expanded descendants (``/patients/{id}/studies``,
    ``/studies/{id}/instances``...) and ancestor (``/instances/{id}/series``,
    ``/series/{id}/patient``...) of a resource (:func:`_register_levels`)."""
    type_ = TYPES[level]
    resource = _resource(type_, id_)
    order = list(ResourceType)
    target = TYPES.get(related) or ResourceType(related.capitalize())
    if order.index(target) < order.index(type_):
        return _json(_expanded(_ancestor(resource, target), _format()))
    return _json(_expand_ids(target, _descendants(resource, target)))


def _ancestor(resource: Resource, target: ResourceType) -> Resource:
    order = list(ResourceType)
    while resource.type is not target and resource.parent is not None:
        resource = _resource(order[order.index(resource.type) - 1], resource.parent)
    return resource


def _descendants(resource: Resource, target: ResourceType) -> list[str]:
    """Ids at ``target`` below ``resource``, in the order first stored."""
    index = services().index
    if target is ResourceType.INSTANCE:
        return [i.instance_key for i in index.resource_instances(resource.type, resource.id)]
    ids, current = list(resource.children), CHILD_TYPE[resource.type]
    while current is not target:
        found = (index.resource(current, i) for i in ids)
        ids = [c for r in found if r is not None for c in r.children]
        current = CHILD_TYPE[current]
    return ids


def delete_resource(level: str, id_: str) -> Response:
    """Delete a resource and everything below it: the index in one transaction, then
    the blobs (as app.delete). Answers ``{"RemainingAncestor": {ID, Path, Type} | null}``,
    the nearest ancestor still holding something."""
    svc = services()
    resource = _resource(TYPES[level], id_)
    chain = _ancestors(resource)
    if resource.type is ResourceType.PATIENT:
        removed = svc.index.remove_patient(resource.id)
    else:
        uids = resource.uids
        series = uids.get("SeriesInstanceUID") if resource.type is not ResourceType.STUDY else None
        sop = uids.get("SOPInstanceUID") if resource.type is ResourceType.INSTANCE else None
        removed = svc.index.remove(uids["StudyInstanceUID"], series, sop)
    if not removed.instances:
        raise NotFound(f"Unknown {resource.type.value.lower()}: {id_[:64]} (deleted meanwhile)")
    store.delete_blobs(svc.storage, removed.storage_keys)
    remaining = next((orthanc_resources.ancestor(t, i) for t, i in chain
                      if svc.index.resource(t, i) is not None), None)
    return _json({"RemainingAncestor": remaining})


def _ancestors(resource: Resource) -> list[tuple[ResourceType, str]]:
    """(type, id) of the ancestors, nearest first, read before a deletion."""
    order = list(ResourceType)
    chain = []
    current: Resource | None = resource
    while current is not None and current.parent is not None:
        parent_type = order[order.index(current.type) - 1]
        chain.append((parent_type, current.parent))
        current = services().index.resource(parent_type, current.parent)
    return chain


# --------------------------------------------------------------------------- #
# POST /instances
# --------------------------------------------------------------------------- #

def _body_chunks(limit: int) -> Iterator[bytes]:
    """The request body in chunks, within ``Limits.MaximumRequestSize`` (0: none)."""
    length = request.content_length
    if limit and length is not None and length > limit:
        raise PayloadTooLarge(f"The request body ({length} bytes) is larger than "
                              f"Limits.MaximumRequestSize ({limit // store.MIB} MiB)")
    total = 0
    while chunk := request.stream.read(1 << 20):
        total += len(chunk)
        if limit and total > limit:
            raise PayloadTooLarge("The request body passed Limits.MaximumRequestSize "
                                  f"({limit // store.MIB} MiB)")
        yield chunk


@blueprint.post("/instances")
def upload() -> Response:
    """Store one DICOM file sent as the body, or every DICOM file of a ZIP archive (Orthanc
    1.8.2+), through STOW's path and storage policy (OverwriteInstances,
    MaximumStorageSize / MaximumPatientCount). One file answers
    ``{ID, ParentPatient, ParentSeries, ParentStudy, Path, Status}``, Status ``Success`` or
    ``AlreadyStored`` (kept as first stored, OverwriteInstances false); an archive answers
    an array of them, one per stored member (:func:`_upload_archive`)."""
    settings = services().settings
    outcome = store.StowOutcome(base_url="")
    with store.spool(_body_chunks(settings.Limits.MaximumRequestSize * store.MIB)) as (f, size):
        head = f.read(4)
        f.seek(0)
        if not size:
            raise BadRequest("The request body is empty: send a DICOM file or a ZIP archive")
        if archive.is_zip(head):
            return _json(_upload_archive(f, size))
        _store(f, size, outcome)
    if outcome.failed:
        _raise_failure(outcome)
    _sop_class, sop, _study, _series, warning = outcome.stored[0]
    return _json(_upload_answer(sop, "AlreadyStored" if warning else "Success"))


def _store(f: BinaryIO, size: int, outcome: store.StowOutcome) -> None:
    svc = services()
    settings = svc.settings
    policy = store.StoragePolicy.from_orthanc(
        settings.OverwriteInstances, settings.MaximumStorageSize,
        settings.MaximumPatientCount, settings.MaximumStorageMode)
    store.store_one(f, size, outcome, storage=svc.storage, index=svc.index, study_uid=None,
                    binary_mode=settings.DicomWeb.OtherBinaryMode, policy=policy)


def _upload_archive(f: BinaryIO, size: int) -> list[dict[str, Any]]:
    """Store the archive's members one at a time (each spooled alone), as Orthanc's
    UploadDicomFile does: folders and empty members skipped, a member that is no storable
    DICOM file (not DICOM, a DICOMDIR, UIDs missing) skipped with a log line. A storage
    refusal stops there (507, or 500), the members before it staying stored, as in Orthanc.

    The central directory is checked first (``archive.check_members``): a member larger
    than ``Limits.MaximumRequestSize`` (what one upload may be), more entries than
    ``MaximumArchiveMembers``, more bytes than ``MaximumArchiveSize``, an encrypted member
    or a zip bomb's signs refuse the whole archive before anything is stored."""
    limits = services().settings.Limits
    bounds = archive.ArchiveLimits(max_members=limits.MaximumArchiveMembers,
                                   max_member_size=limits.MaximumRequestSize * store.MIB,
                                   max_total_size=limits.MaximumArchiveSize * store.MIB)
    # One outcome for the whole archive: its patients are protected from recycling.
    outcome = store.StowOutcome(base_url="")
    answers = []
    with archive.Archive(f, size, bounds) as zipped:
        for info in zipped.members:
            failed = len(outcome.failed)
            with store.spool(zipped.chunks(info)) as (member, member_size):
                _store(member, member_size, outcome)
            if len(outcome.failed) == failed:
                _sop_class, sop, _study, _series, warning = outcome.stored[-1]
                answers.append(_upload_answer(sop, "AlreadyStored" if warning else "Success"))
            elif outcome.failed[-1][2] == store.CANNOT_UNDERSTAND:
                log.info("ZIP member %r skipped: not a DICOM file that can be stored",
                         info.filename[:200])
            else:
                _raise_failure(outcome, f" (ZIP member {info.filename[:200]!r}; "
                                        f"{len(answers)} member(s) before it were stored)")
    return answers


def _raise_failure(outcome: store.StowOutcome, where: str = "") -> None:
    """The error of the last failed instance of ``outcome``."""
    reason = outcome.failed[-1][2]
    if reason == store.OUT_OF_RESOURCES and outcome.limit_warnings:
        # An ingest limit (Limits.MaximumInstanceElements), not a full storage.
        raise BadRequest(outcome.limit_warnings[-1] + where)
    if reason == store.CANNOT_UNDERSTAND:
        raise BadRequest("The body is not a DICOM file that can be stored (unparseable, or "
                         "without valid SOPClassUID, SOPInstanceUID, StudyInstanceUID and "
                         "SeriesInstanceUID)")
    if reason == store.OUT_OF_RESOURCES:
        raise InsufficientStorage("The storage is full (MaximumStorageSize or "
                                  f"MaximumPatientCount with MaximumStorageMode Reject){where}")
    raise DicomWebError(f"The instance could not be stored{where}")


def _upload_answer(sop: str, status: str) -> dict[str, Any]:
    """Ids of the instance as stored (for AlreadyStored: the copy kept) and its parents."""
    index = services().index
    stored = index.find_instance(sop)
    instance = index.resource(ResourceType.INSTANCE, stored.instance_key) if stored else None
    if instance is None or instance.parent is None:
        raise DicomWebError("The instance was deleted while it was being stored")
    series = _resource(ResourceType.SERIES, instance.parent)
    study = _resource(ResourceType.STUDY, str(series.parent))
    return {"ID": instance.id, "ParentPatient": study.parent, "ParentSeries": series.id,
            "ParentStudy": study.id, "Path": orthanc_resources.path_of(
                ResourceType.INSTANCE, instance.id), "Status": status}


# --------------------------------------------------------------------------- #
# One instance: file, tags, content, frames
# --------------------------------------------------------------------------- #

def _instance(id_: str) -> StoredInstance:
    resource = _resource(ResourceType.INSTANCE, id_)
    if resource.instance is None:
        raise NotFound(f"Unknown instance: {id_[:64]}")
    return resource.instance


@blueprint.get(INSTANCE + "/file")
def instance_file(id_: str) -> Response:
    """The DICOM file as stored, streamed (its first chunk read before the answer
    starts: an unreachable storage is a 503, not a cut answer)."""
    inst = _instance(id_)
    body = primed(services().storage.iter_chunks(inst.storage_key))
    return Response(body, content_type="application/dicom", direct_passthrough=True,
                    headers={"Content-Length": str(inst.size),
                             "Content-Disposition": f'filename="{id_}.dcm"'})


def _tags(id_: str, fmt: str) -> Response:
    inst = _instance(id_)
    with services().storage.open(inst.storage_key) as f:
        ds = read_instance(f)
        answer = orthanc_tags.dataset_tags(ds, fmt)  # deferred sequences read while open
    return _json(answer)


@blueprint.get(INSTANCE + "/tags")
def instance_tags(id_: str) -> Response:
    """``?simplify`` (names → values), ``?short`` (tags → values), else Full."""
    fmt = "Human" if _flag("simplify") else "Short" if _flag("short") else "Full"
    return _tags(id_, fmt)


@blueprint.get(INSTANCE + "/simplified-tags")
def instance_simplified_tags(id_: str) -> Response:
    return _tags(id_, "Human")


@blueprint.get(INSTANCE + "/content", defaults={"path": ""})
@blueprint.get(INSTANCE + "/content/<path:path>")
def instance_content(id_: str, path: str) -> Response:
    """Raw values by path (``0008-1140/0/0008-1150``, items 0-based); a path ending on a
    data set lists its tags, on a sequence its item indexes (reference §11)."""
    inst = _instance(id_)
    steps = [p for p in path.split("/") if p]
    storage = services().storage
    with storage.open(inst.storage_key) as f:
        found = orthanc_tags.content(read_instance(f), steps)
    if found.listing is not None:
        return _json(found.listing)
    if found.data is not None:
        return Response(found.data, content_type="application/octet-stream")
    body = primed(read_chunks(storage, inst.storage_key, found.start, found.length))
    return Response(body, content_type="application/octet-stream", direct_passthrough=True,
                    headers={"Content-Length": str(found.length)})


@blueprint.get(INSTANCE + "/frames")
def instance_frames(id_: str) -> Response:
    """Frame numbers, 0-based as everywhere in Orthanc's REST API."""
    count = FrameSource(services().storage, _instance(id_)).count()
    return _json(list(range(count)))


def _rendered(id_: str, frame: int, default: str) -> Response:
    """A frame rendered as PNG (default) or JPEG (``?quality``), fitted in ``?width`` /
    ``?height``, windowed by ``?window-center`` / ``?window-width`` if both are given,
    else as the WADO-RS rendered route does (the file's window)."""
    media = _image_type(default)
    quality = request.args.get("quality")
    params = render.parse_rendered_params(
        {"quality": quality} if quality is not None else {}, media)
    params = render.RenderParams(
        media, quality=params.quality, window=_window(),
        viewport=render.Viewport(_size("width"), _size("height")))
    inst = _instance(id_)
    answer = rendered.rendered(services().storage, inst, frame + 1, params)
    return Response(answer.body, content_type=answer.media_type, direct_passthrough=True,
                    headers={"Content-Length": str(answer.length)})


def _image_type(default: str) -> str:
    """Orthanc's negotiation of images: PNG unless JPEG is preferred by Accept."""
    for media_range in sorted(parse_accept(request.headers.get("Accept")),
                              key=lambda r: -r.q):
        if media_range.q <= 0:
            continue
        for candidate in (default, "image/png", "image/jpeg"):
            if media_range.matches(candidate):
                return candidate
    if request.headers.get("Accept", "").strip():
        raise NotAcceptable("Rendered images are image/png or image/jpeg")
    return default


def _size(name: str) -> int | None:
    value = _uint(name)
    if value is not None and not 0 < value <= render.MAX_SIZE:
        raise BadRequest(f"Argument {name} must be between 1 and {render.MAX_SIZE}")
    return value


def _window() -> render.Window | None:
    center, width = request.args.get("window-center"), request.args.get("window-width")
    if center is None or width is None:
        return None
    try:
        window = render.Window(float(center), float(width))
    except ValueError:
        raise BadRequest("window-center and window-width must be numbers") from None
    if not window.width > 0:
        raise BadRequest("window-width must be positive")
    return window


@blueprint.get(INSTANCE + "/rendered")
@blueprint.get(INSTANCE + "/preview")
def instance_rendered(id_: str) -> Response:
    return _rendered(id_, 0, "image/png")


@blueprint.get(INSTANCE + "/frames/<int:frame>/rendered")
@blueprint.get(INSTANCE + "/frames/<int:frame>/preview")
def frame_rendered(id_: str, frame: int) -> Response:
    """Orthanc's frames are 0-based here (its REST API), unlike WADO-RS."""
    return _rendered(id_, frame, "image/png")


# --------------------------------------------------------------------------- #
# Tools
# --------------------------------------------------------------------------- #

def _json_body() -> Any:
    try:
        return json.loads(request.get_data(cache=False) or b"null")
    except ValueError:
        raise BadRequest("The body must be JSON") from None


@blueprint.post("/tools/find")
def find() -> Response:
    """Search by attributes: ids, or expanded resources with ``"Expand": true``. The
    server's LimitFindResults / LimitFindInstances cap the answer as Orthanc does."""
    svc = services()
    settings = svc.settings
    req = orthanc_find.parse_find(_json_body(), case_sensitive_default=settings.CaseSensitivePN)
    cap = result_cap(req.query.level, settings.LimitFindResults, settings.LimitFindInstances)
    query = req.query
    if cap and req.type is not ResourceType.PATIENT and (query.limit is None
                                                          or query.limit > cap):
        query = replace(query, limit=cap)
    ids = orthanc_find.find_ids(req, svc.index.search(query))
    if cap:
        ids = ids[:cap]
    return _json(_expand_ids(req.type, ids) if req.expand else ids)


@blueprint.post("/tools/lookup")
def lookup() -> Response:
    """A PatientID, StudyInstanceUID, AccessionNumber, SeriesInstanceUID or
    SOPInstanceUID (the body, as text) → ``[{ID, Path, Type}]``, exact matches."""
    value = request.get_data(cache=False).decode("utf-8", errors="replace").strip()
    index = services().index
    out: list[dict[str, str]] = []
    for type_, query in orthanc_find.lookup_queries(value) if value else []:
        for id_ in dict.fromkeys(orthanc_find.result_id(r, type_) for r in index.search(query)):
            out.append(orthanc_resources.ancestor(type_, id_))
    return _json(out)


# --------------------------------------------------------------------------- #
# System
# --------------------------------------------------------------------------- #

@blueprint.get("/system")
def system() -> Response:
    settings = services().settings
    postgres = settings.PostgreSQL is not None and settings.PostgreSQL.EnableIndex
    return _json({
        "ApiVersion": API_VERSION,
        "Capabilities": {"HasExtendedChanges": False, "HasExtendedFind": False},
        "CheckRevisions": False,
        "DatabaseBackendPlugin": "PostgreSQL" if postgres else None,
        "DatabaseVersion": DATABASE_VERSION,
        "DicomAet": "ORTHANC",
        "DicomPort": 0,  # no DICOM network service
        "HasLabels": False,
        "HttpPort": settings.HttpPort,
        "IsHttpServerSecure": settings.authentication or not settings.remote_access,
        "MaximumPatientCount": settings.MaximumPatientCount,
        "MaximumStorageMode": settings.MaximumStorageMode,
        "MaximumStorageSize": settings.MaximumStorageSize,
        "Name": settings.Name,
        "OverwriteInstances": settings.OverwriteInstances,
        "PluginsEnabled": True,
        "ReadOnly": settings.ReadOnly,
        "StorageAreaPlugin": "AwsS3Storage" if settings.AwsS3Storage is not None else None,
        "StorageCompression": settings.StorageCompression,
        "Version": _version(),
    })


@blueprint.get("/statistics")
def statistics() -> Response:
    index = services().index
    return _json(orthanc_resources.statistics(index.counts(), index.usage().size))


@blueprint.delete("/changes")
def clear_changes() -> Response:
    """Empty the change log (Orthanc: ``DELETE /changes``); its ``seq`` keeps growing."""
    services().index.clear_changes()
    return _json({})


@blueprint.get("/changes")
def changes() -> Response:
    """``?since=&limit=`` (default 100, at most 10000) or ``?last``."""
    index = services().index
    if "last" in request.args:
        last = index.last_change()
        found = index.changes(since=last - 1, limit=1) if last else []
        return _json(orthanc_resources.changes_json(found, True, last))
    since = _uint("since") or 0
    limit = min(_uint("limit") or CHANGES_LIMIT, CHANGES_MAX)
    found = index.changes(since=since, limit=limit + 1)  # one more tells whether done
    done = len(found) <= limit
    found = found[:limit]
    last = found[-1].seq if found else max(since, index.last_change()) if done else since
    return _json(orthanc_resources.changes_json(found, done, last))


@blueprint.get("/plugins")
def plugins() -> Response:
    return _json([PLUGIN])


@blueprint.get("/plugins/<name>")
def plugin(name: str) -> Response:
    """What Orthanc tells of its DICOMweb plugin, so that tools probing for it find it."""
    if name != PLUGIN:
        raise NotFound(f"Unknown plugin: {name[:64]}")
    root = services().settings.DicomWeb.root
    return _json({
        "Description": "Implementation of DICOMweb (QIDO-RS, STOW-RS and WADO-RS) "
                       "and WADO-URI.",
        "ExtendsOrthancExplorer": False,
        "ID": PLUGIN,
        "RootUri": f"..{root}app/client/index.html",
        "Version": _version(),
    })


def _register_levels() -> None:
    """One rule per level and per related level (plain paths: tools that walk the URL map,
    such as the audit and security tests, meet every route)."""
    order = list(ResourceType)
    for type_, path in PATHS.items():
        level = {"level": path}
        blueprint.add_url_rule(f"/{path}", "list_resources", list_resources,
                               methods=["GET"], defaults=level)
        blueprint.add_url_rule(f"/{path}/<id_>", "get_resource", get_resource,
                               methods=["GET"], defaults=level)
        blueprint.add_url_rule(f"/{path}/<id_>", "delete_resource", delete_resource,
                               methods=["DELETE"], defaults=level)
        position = order.index(type_)
        related = [PATHS[t] for t in order[position + 1:]]
        related += [t.value.lower() for t in order[:position]]
        for name in dict.fromkeys(related):  # "series" is both, by level
            blueprint.add_url_rule(f"/{path}/<id_>/{name}", "related_resources",
                                   related_resources, methods=["GET"],
                                   defaults={**level, "related": name})


_register_levels()


@info_blueprint.get("/info")
def info() -> Response:
    """``GET {root}info`` (reference §1.3): the DICOMweb root, and the Orthanc REST API
    root relative to it (``./`` then ``../`` per segment of the root)."""
    root = services().settings.DicomWeb.root
    segments = [s for s in root.split("/") if s]
    return _json({"DicomWebRoot": root, "OrthancApiRoot": "./" + "../" * len(segments)})


__all__ = ["PATHS", "WRITE_ENDPOINTS", "blueprint", "info_blueprint"]
