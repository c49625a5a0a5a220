"""STOW-RS (PS3.18 §10.5): ``POST {root}studies[/{study}]``.

The request body is read incrementally from the WSGI stream: at most one part is
spooled at a time, so a request larger than memory stores fine.

``Limits.MaximumRequestSize`` (MiB): a Content-Length above it is 413 before a byte is
read; a chunked body passing it stops there (``store.store_instances`` says what was
kept). ``Limits.MaximumStowInstances``: the parts after that many are refused. Either
refusal is named in a ``Warning: 299`` header of the Store Instances answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Blueprint, Response, json, request

from app.dicom import multipart, negotiation, store
from app.dicom.dicomjson import json_to_xml
from app.dicom.identifiers import check_uid
from app.errors import PayloadTooLarge, UnsupportedMediaType
from app.http import request_base_url
from app.services import services

blueprint = Blueprint("stow_rs", __name__)


def _boundary() -> str:
    """Check the request Content-Type (§10.5.1.1): multipart/related; type=application/dicom."""
    return multipart.multipart_boundary(request.headers.get("Content-Type", ""))


def _body_reader(limit: int) -> Callable[[int], bytes]:
    """``read(n)`` of the request body within ``Limits.MaximumRequestSize`` (bytes, 0: none).

    A Content-Length above the limit is refused before a byte is read (413); a chunked body
    raises :class:`store.RequestTooLarge` from ``read`` once it passes the limit, and
    ``store_instances`` decides what that means for the parts already stored."""
    read = request.stream.read
    if not limit:
        return read
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body ({length} bytes) is larger than "
                              f"Limits.MaximumRequestSize ({limit // store.MIB} MiB)")
    total = 0

    def limited(size: int) -> bytes:
        nonlocal total
        data = read(size)
        total += len(data)
        if total > limit:
            raise store.RequestTooLarge(f"The request body passed Limits.MaximumRequestSize "
                                        f"({limit // store.MIB} MiB)")
        return data

    return limited


def _dicom_parts(boundary: str, read: Callable[[int], bytes]) -> Iterator[multipart.Part]:
    """Parts of the body; the first part's type decides 415 before anything is stored."""
    for number, part in enumerate(multipart.iter_parts(read, boundary)):
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
    svc = services()
    settings = svc.settings
    read = _body_reader(settings.Limits.MaximumRequestSize * store.MIB)
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    format_ = negotiation.negotiate_search(request.headers.get("Accept"))
    boundary = _boundary()
    outcome = store.store_instances(
        _dicom_parts(boundary, read),
        storage=svc.storage,
        index=svc.index,
        base_url=request_base_url(),
        study_uid=study,
        binary_mode=settings.DicomWeb.OtherBinaryMode,
        policy=store.StoragePolicy.from_orthanc(
            settings.OverwriteInstances, settings.MaximumStorageSize,
            settings.MaximumPatientCount, settings.MaximumStorageMode),
        max_instances=settings.Limits.MaximumStowInstances,
    )
    answer = outcome.answer()
    headers = _warning(outcome.limit_warnings, settings.Name)
    if format_ == "xml":
        return Response(json_to_xml(answer), status=outcome.status(),
                        content_type="application/dicom+xml", headers=headers)
    return Response(json.dumps(answer), status=outcome.status(),
                    content_type="application/dicom+json", headers=headers)


def _warning(texts: list[str], agent: str) -> dict[str, str]:
    """``Warning: 299 <service>: <text>`` naming the request limit that refused parts."""
    if not texts:
        return {}
    agent = "".join(c for c in agent if c.isalnum() or c in "-_.") or "dicomweb"
    return {"Warning": ", ".join(f'299 {agent}: "{t[:300]}"' for t in texts)}

