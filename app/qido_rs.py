"""QIDO-RS (PS3.18 §10.6): the six search routes.

Parsing lives in ``app.dicom.query``, answer building in ``app.dicom.search``; the
index does the matching. ``LimitFindResults`` (studies, series) and ``LimitFindInstances``
cap an answer; a cut answer carries the Warning of PS3.18 §8.3.4.4.
"""

from __future__ import annotations

from flask import Blueprint, Response, json, request

from app.dicom import negotiation, query, search
from app.dicom.dicomjson import json_to_xml
from app.dicom.identifiers import check_uid
from app.http import multipart_response, query_pairs, request_base_url
from app.services import services
from backends.base import Level

blueprint = Blueprint("qido_rs", __name__)


def _search(level: Level, study: str | None = None, series: str | None = None) -> Response:
    if study is not None:
        check_uid(study, "StudyInstanceUID")
    if series is not None:
        check_uid(series, "SeriesInstanceUID")
    fmt = negotiation.negotiate_search(request.headers.get("Accept"))
    svc = services()
    settings = svc.settings
    parsed = query.parse_qido(level, query_pairs(), study_uid=study, series_uid=series,
                              case_sensitive=settings.qido_case_sensitive)
    cap = search.result_cap(level, settings.LimitFindResults, settings.LimitFindInstances)
    results, cut = search.apply_cap(svc.index.search(search.capped_query(parsed.query, cap)),
                                    cap)
    answers = search.build_answers(results, parsed, request_base_url())
    texts = query.warning_texts(parsed) + ([search.CAPPED_WARNING] if cut else [])
    headers = _warning(texts, settings.Name)
    if fmt == "xml":
        parts = (({"Content-Type": "application/dicom+xml"}, [json_to_xml(a)]) for a in answers)
        return multipart_response("application/dicom+xml", parts, headers=headers)
    return Response(json.dumps(answers), content_type="application/dicom+json",
                    headers=headers)


def _warning(texts: list[str], agent: str) -> dict[str, str]:
    """``Warning: 299 <service>: <text>`` for what the server ignored or cut (PS3.18 §8.3.4)."""
    if not texts:
        return {}
    agent = "".join(c for c in agent if c.isalnum() or c in "-_.") or "dicomweb"
    # Several warnings go in one header, comma-separated (RFC 7234 §5.5).
    return {"Warning": ", ".join(f'299 {agent}: "{t[:300]}"' for t in texts)}


@blueprint.get("/studies")
def search_for_studies() -> Response:
    return _search(Level.STUDY)


@blueprint.get("/series")
def search_for_series() -> Response:
    return _search(Level.SERIES)


@blueprint.get("/instances")
def search_for_instances() -> Response:
    return _search(Level.INSTANCE)


@blueprint.get("/studies/<study>/series")
def search_for_study_series(study: str) -> Response:
    return _search(Level.SERIES, study)


@blueprint.get("/studies/<study>/instances")
def search_for_study_instances(study: str) -> Response:
    return _search(Level.INSTANCE, study)


@blueprint.get("/studies/<study>/series/<series>/instances")
def search_for_series_instances(study: str, series: str) -> Response:
    return _search(Level.INSTANCE, study, series)
