"""WADO-RS (PS3.18 §10.4): retrieve studies, series, instances, metadata, frames, bulk data.

Views parse the request and pick the response shape; ``app.dicom.retrieve`` decides
404/406 before the first byte and yields the parts.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from app.dicom import bulkdata, negotiation, render, rendered, retrieve
from app.dicom.identifiers import check_uid
from app.errors import BadRequest
from app.http import multipart_response, request_base_url
from app.services import services

blueprint = Blueprint("wado_rs", __name__)

STUDY = "/studies/<study>"
SERIES = STUDY + "/series/<series>"
INSTANCE = SERIES + "/instances/<sop>"


def _uids(study: str, series: str | None = None, sop: str | None = None) -> None:
    check_uid(study, "StudyInstanceUID")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    if sop is not None:
        check_uid(sop, "SOPInstanceUID")


def _retrieve(study: str, series: str | None = None, sop: str | None = None) -> Response:
    _uids(study, series, sop)
    target = negotiation.negotiate_dicom(request.headers.get("Accept"))
    svc = services()
    instances = retrieve.locate(svc.index, study, series, sop)
    parts = retrieve.dicom_parts(svc.storage, instances, target)
    return multipart_response("application/dicom", parts)


@blueprint.get(STUDY)
def retrieve_study(study: str) -> Response:
    return _retrieve(study)


@blueprint.get(SERIES)
def retrieve_series(study: str, series: str) -> Response:
    return _retrieve(study, series)


@blueprint.get(INSTANCE)
def retrieve_instance(study: str, series: str, sop: str) -> Response:
    return _retrieve(study, series, sop)


def _metadata(study: str, series: str | None = None, sop: str | None = None) -> Response:
    _uids(study, series, sop)
    fmt = negotiation.negotiate_metadata(request.headers.get("Accept"))
    svc = services()
    dw = svc.settings.DicomWeb
    mode, tags = ((dw.SeriesMetadata, dw.SeriesMetadataExtrapolatedTags) if series
                  else (dw.StudiesMetadata, dw.StudiesMetadataExtrapolatedTags))
    text = retrieve.metadata_json(svc.index, request_base_url(), study, series, sop,
                                  mode=mode, extrapolated=_tags(tags))
    if fmt == "xml":
        return multipart_response("application/dicom+xml", retrieve.metadata_xml_parts(text))
    return Response(text, content_type="application/dicom+json")


def _tags(names: list[str]) -> list[str]:
    from app.dicom.query import tag_of

    return [tag_of(n) for n in names]


@blueprint.get(STUDY + "/metadata")
def retrieve_study_metadata(study: str) -> Response:
    return _metadata(study)


@blueprint.get(SERIES + "/metadata")
def retrieve_series_metadata(study: str, series: str) -> Response:
    return _metadata(study, series)


@blueprint.get(INSTANCE + "/metadata")
def retrieve_instance_metadata(study: str, series: str, sop: str) -> Response:
    return _metadata(study, series, sop)


@blueprint.get(INSTANCE + "/frames/<frame_list>")
@blueprint.get(INSTANCE + "/frames", defaults={"frame_list": None})
def retrieve_frames(study: str, series: str, sop: str, frame_list: str | None) -> Response:
    """Frames 1..N when no list is given (Orthanc's all-frames route is off by one)."""
    _uids(study, series, sop)
    svc = services()
    (inst,) = retrieve.locate(svc.index, study, series, sop)
    numbers = retrieve.parse_frame_list(frame_list) if frame_list is not None else None
    location = f"{request_base_url()}studies/{study}/series/{series}/instances/{sop}"
    part_type, parts = retrieve.frame_parts(svc.storage, inst, numbers,
                                            request.headers.get("Accept"), location)
    return multipart_response(part_type, parts)


@blueprint.get(INSTANCE + "/bulk/<path:path>")
def retrieve_bulkdata(study: str, series: str, sop: str, path: str) -> Response:
    _uids(study, series, sop)
    negotiation.negotiate_bulk(request.headers.get("Accept"))
    svc = services()
    (inst,) = retrieve.locate(svc.index, study, series, sop)
    parts = bulkdata.bulk_parts(svc.storage, inst, path)
    return multipart_response("application/octet-stream", parts)


def _rendered(study: str, series: str | None = None, sop: str | None = None,
              frame_list: str | None = None, *, thumbnail: bool = False) -> Response:
    """Rendered and thumbnail resources (PS3.18 §8.3.5): a study or series is shown by its
    representative instance, an instance by its first frame, a frame by itself."""
    _uids(study, series, sop)
    media = negotiation.negotiate_rendered(request.headers.get("Accept"),
                                           request.args.get("accept"))
    params = render.parse_rendered_params(request.args, media, thumbnail=thumbnail)
    svc = services()
    instances = retrieve.locate(svc.index, study, series, sop)
    inst = instances[0] if sop else rendered.representative(instances)
    frame = _single_frame(frame_list) if frame_list is not None else 1
    answer = rendered.rendered(svc.storage, inst, frame, params, thumbnail=thumbnail)
    return Response(answer.body, content_type=answer.media_type,
                    headers={"Content-Length": str(answer.length)}, direct_passthrough=True)


def _single_frame(frame_list: str) -> int:
    """A rendered frame resource names one frame: several would need a multi-frame image
    format, which the JPEG and PNG answers cannot carry."""
    numbers = retrieve.parse_frame_list(frame_list)
    if len(numbers) != 1:
        raise BadRequest("Rendered frames are served one at a time: give one frame number")
    return numbers[0]


def _rendered_routes(suffix: str, thumbnail: bool) -> None:
    kind = "thumbnail" if thumbnail else "rendered"

    def study_view(study: str) -> Response:
        return _rendered(study, thumbnail=thumbnail)

    def series_view(study: str, series: str) -> Response:
        return _rendered(study, series, thumbnail=thumbnail)

    def instance_view(study: str, series: str, sop: str) -> Response:
        return _rendered(study, series, sop, thumbnail=thumbnail)

    def frames_view(study: str, series: str, sop: str, frame_list: str) -> Response:
        return _rendered(study, series, sop, frame_list, thumbnail=thumbnail)

    for rule, view, name in (
            (STUDY, study_view, f"retrieve_study_{kind}"),
            (SERIES, series_view, f"retrieve_series_{kind}"),
            (INSTANCE, instance_view, f"retrieve_instance_{kind}"),
            (INSTANCE + "/frames/<frame_list>", frames_view, f"retrieve_frames_{kind}")):
        blueprint.add_url_rule(rule + suffix, name, view, methods=["GET"])


_rendered_routes("/rendered", thumbnail=False)
_rendered_routes("/thumbnail", thumbnail=True)
