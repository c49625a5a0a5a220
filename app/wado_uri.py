"""WADO-URI (PS3.18 §9): ``GET {wado}?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..``.

The view reads the parameters; rendering, conversion and de-identification live in
``app.dicom`` (``rendered``, ``transcode``, ``anonymize``).
"""

from __future__ import annotations

import io

import pydicom
from flask import Blueprint, Response, request

from app.dicom import rendered
from app.dicom.anonymize import anonymize
from app.dicom.identifiers import check_uid
from app.dicom.pixels import guard
from app.dicom.render import parse_wado_uri_params
from app.dicom.retrieve import primed
from app.dicom.transcode import can_transcode, transcode
from app.errors import BadRequest, NotAcceptable, NotFound
from app.services import services
from backends.base import StorageArea, StoredInstance

blueprint = Blueprint("wado_uri", __name__)

IMAGE_TYPES = {"image/jpeg": "image/jpeg", "image/jpg": "image/jpeg", "image/png": "image/png",
               "image/gif": "image/gif"}
DICOM = "application/dicom"
# §9.1.2.4.1: objects without an image: documents and video go out as themselves.
DOCUMENT_TYPES = frozenset({"application/pdf", "video/mpeg", "video/mp4"})


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
    inst = _locate(sop, request.args.get("studyUID"), request.args.get("seriesUID"))
    content_type = _content_type(inst)
    storage = services().storage
    if content_type == DICOM:
        return _dicom(storage, inst, request.args.get("transferSyntax"),
                      _flag("anonymize"))
    if _flag("anonymize"):
        raise BadRequest("WADO-URI: anonymize applies to contentType=application/dicom only")
    if content_type in DOCUMENT_TYPES:
        return _document(storage, inst, content_type)
    params = parse_wado_uri_params(request.args, IMAGE_TYPES[content_type])
    answer = rendered.rendered(storage, inst, _frame_number(), params)
    return Response(answer.body, content_type=answer.media_type,
                    headers={"Content-Length": str(answer.length)})


def _content_type(inst: StoredInstance) -> str:
    """§9.1.2.4.1: a list of types in preference order; the first one we can make wins.
    Absent: JPEG for images (Orthanc's default), the document itself for a PDF or video."""
    raw = request.args.get("contentType")
    if not raw:
        if rendered.is_pdf(inst):
            return "application/pdf"
        return "image/jpeg"
    wanted = [t.split(";")[0].strip().lower() for t in raw.split(",") if t.strip()]
    for media in wanted:
        if media == DICOM or media in IMAGE_TYPES or media in DOCUMENT_TYPES:
            return media
    raise NotAcceptable(f"WADO-URI: unsupported contentType {raw!r}; use application/dicom, "
                        "image/jpeg, image/png, image/gif, application/pdf or video/mpeg|mp4")


def _flag(name: str) -> bool:
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() not in ("yes", "no", "true", "false"):
        raise BadRequest(f"WADO-URI: {name} must be yes or no")
    return value.lower() in ("yes", "true")


def _frame_number() -> int:
    value = request.args.get("frameNumber")
    if value is None:
        return 1
    try:
        number = int(value)
    except ValueError:
        raise BadRequest("WADO-URI: frameNumber must be an integer") from None
    if number < 1:
        raise BadRequest("WADO-URI: frameNumber starts at 1")
    return number


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


def _document(storage: StorageArea, inst: StoredInstance, content_type: str) -> Response:
    if content_type == "application/pdf" and not rendered.is_pdf(inst):
        raise NotAcceptable("WADO-URI: the instance is not an encapsulated PDF")
    if content_type.startswith("video/") and not rendered.is_video(inst):
        raise NotAcceptable("WADO-URI: the instance is not a video")
    answer = rendered.rendered(storage, inst, 1, parse_wado_uri_params({}, "image/jpeg"))
    return Response(answer.body, content_type=answer.media_type,
                    headers={"Content-Length": str(answer.length)})


def _dicom(storage: StorageArea, inst: StoredInstance, syntax: str | None,
           deidentify: bool) -> Response:
    """The stored file, converted when ``transferSyntax`` asks (§9.1.2.4.8), de-identified
    with PS3.15's basic profile when ``anonymize=yes`` (§9.1.2.4.7)."""
    target = syntax.strip() if syntax and syntax.strip() != "*" else "*"
    if not can_transcode(inst.transfer_syntax, target):
        raise NotAcceptable(f"WADO-URI: cannot convert the instance from "
                            f"{inst.transfer_syntax} to transfer syntax {target}")
    if deidentify:
        data = _anonymized(storage, inst)
        if target not in ("*", inst.transfer_syntax):
            data, _ = transcode(io.BytesIO(data), target)
        return Response(data, content_type=DICOM)
    if target in ("*", inst.transfer_syntax):
        return Response(primed(storage.iter_chunks(inst.storage_key)), content_type=DICOM,
                        headers={"Content-Length": str(inst.size)}, direct_passthrough=True)
    with storage.open(inst.storage_key) as f:
        data, _ = transcode(f, target)
    return Response(data, content_type=DICOM)


def _anonymized(storage: StorageArea, inst: StoredInstance) -> bytes:
    """The de-identified file; an element pydicom cannot convert is a 406, not a 500."""
    with storage.open(inst.storage_key) as f:
        ds = pydicom.dcmread(f, force=True)
    for tag in [tag for tag in ds.keys() if tag.group == 0x0002]:
        del ds[tag]  # file meta elements misplaced in the data set: the file meta has them

    def run() -> bytes:
        anonymize(ds)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    return guard("de-identify the instance", run)
