"""WADO-URI (PS3.18 §9): ``GET {wado}?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..``."""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.dicom.identifiers import check_uid
from app.dicom.render import render
from app.dicom.retrieve import primed
from app.dicom.transcode import can_transcode, transcode
from app.errors import BadRequest, NotAcceptable, NotFound
from app.services import services
from backends.base import StorageArea, StoredInstance

blueprint = Blueprint("wado_uri", __name__)

IMAGE_TYPES = {"image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/png": "image/png",
               "image/gif": "image/gif"}


def _required(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise BadRequest(f"WADO-URI: the {name} parameter is required")
    return value


@blueprint.get("", strict_slashes=False)
def retrieve_wado_uri() -> Response:
    """§9.1: objectUID is required; studyUID and seriesUID, when given, must agree."""
    if _required("requestType") != "WADO":
        raise BadRequest("WADO-URI: requestType must be WADO")
    sop = check_uid(_required("objectUID"), "objectUID")
    study = request.args.get("studyUID")
    series = request.args.get("seriesUID")
    inst = _locate(sop, study, series)
    content_type = (request.args.get("contentType") or "image/jpeg").split(",")[0].strip()
    storage = services().storage
    if content_type == "application/dicom":
        return _dicom(storage, inst, request.args.get("transferSyntax"))
    if content_type not in IMAGE_TYPES:
        raise NotAcceptable(f"WADO-URI: unsupported contentType {content_type!r}")
    media = IMAGE_TYPES[content_type]
    with storage.open(inst.storage_key) as f:
        data = render(f, frame=_int("frameNumber", 1), media_type=media)
    return Response(data, content_type=media)


def _int(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"WADO-URI: {name} must be an integer") from None


def _locate(sop: str, study: str | None, series: str | None) -> StoredInstance:
    index = services().index
    for uid, name in ((study, "studyUID"), (series, "seriesUID")):
        if uid is not None:
            check_uid(uid, name)
    found = index.find_instance(sop)
    if found is None or (study and found.study_uid != study) or (
            series and found.series_uid != series):
        raise NotFound("WADO-URI: no such instance")
    return found


def _dicom(storage: StorageArea, inst: StoredInstance, syntax: str | None) -> Response:
    """The stored file, or a conversion when ``transferSyntax`` asks for one (§9.1.2.4.3?)."""
    target = syntax if syntax and syntax != "*" else "*"
    if not can_transcode(inst.transfer_syntax, target):
        raise NotAcceptable(f"Cannot convert the instance to transfer syntax {target}")
    if target in ("*", inst.transfer_syntax):
        return Response(primed(storage.iter_chunks(inst.storage_key)),
                        content_type="application/dicom",
                        headers={"Content-Length": str(inst.size)}, direct_passthrough=True)
    with storage.open(inst.storage_key) as f:
        return Response(transcode(f, target), content_type="application/dicom")

