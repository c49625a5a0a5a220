"""STOW-RS (PS3.18 §10.5): ``POST {root}studies[/{study}]``.

The request body is read incrementally from the WSGI stream: at most one part is
spooled at a time, so a request larger than memory stores fine.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, json, request

from app.dicom import multipart, negotiation, store
from app.dicom.dicomjson import json_to_xml
from app.dicom.identifiers import check_uid
from app.errors import UnsupportedMediaType
from app.http import request_base_url
from app.services import services

blueprint = Blueprint("stow_rs", __name__)


def _boundary() -> str:
    """Check the request Content-Type (§10.5.1.1): multipart/related; type=application/dicom."""
    return multipart.multipart_boundary(request.headers.get("Content-Type", ""))


def _dicom_parts(boundary: str) -> Iterator[multipart.Part]:
    """Parts of the body; the first part's type decides 415 before anything is stored."""
    stream = request.stream
    for number, part in enumerate(multipart.iter_parts(stream.read, boundary)):
        part_type = part.headers.get("content-type", "application/dicom")
        if "application/dicom" not in part_type.lower():
            if number == 0:
                raise UnsupportedMediaType(f"Part 1 has Content-Type {part_type!r}, "
                                           "expected application/dicom")
        yield part


@blueprint.post("/studies", defaults={"study": None})
@blueprint.post("/studies/<study>")
def store_instances(study: str | None) -> Response:
    """Store Instances; 200 / 202 / 400 / 409 with a Store Instances Response Module.

    The storage policy comes from Orthanc's options: OverwriteInstances (a SOPInstanceUID
    stored before is kept, answered with WarningReason B006, unless true) and the limits
    MaximumStorageSize / MaximumPatientCount with MaximumStorageMode (app.dicom.store)."""
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    format_ = negotiation.negotiate_search(request.headers.get("Accept"))
    boundary = _boundary()
    svc = services()
    settings = svc.settings
    outcome = store.store_instances(
        _dicom_parts(boundary),
        storage=svc.storage,
        index=svc.index,
        base_url=request_base_url(),
        study_uid=study,
        binary_mode=settings.DicomWeb.OtherBinaryMode,
        policy=store.StoragePolicy.from_orthanc(
            settings.OverwriteInstances, settings.MaximumStorageSize,
            settings.MaximumPatientCount, settings.MaximumStorageMode),
    )
    answer = outcome.answer()
    if format_ == "xml":
        return Response(json_to_xml(answer), status=outcome.status(),
                        content_type="application/dicom+xml")
    return Response(json.dumps(answer), status=outcome.status(),
                    content_type="application/dicom+json")

