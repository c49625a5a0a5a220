"""QIDO-RS answers: one :class:`backends.base.SearchResult` -> one DICOM JSON object.

Which attributes a match carries (PS3.18 §10.6.3.3, tables 10.6.3-3 to -5):

* the default attributes of the query level (:data:`DEFAULT_FIELDS`, the lists of
  Orthanc's plugin) plus StudyDescription at study level, which Orthanc only returns
  on request but every viewer's study list shows;
* the default attributes of each parent level (study for a series search, study and
  series for an instance search, PS3.18 §10.6.3.3.2-3), unless that parent's UID was
  a *query parameter*. A UID from the URL path (``/studies/{st}/series``) does not
  suppress them: same as Orthanc, and what OHIF's series list expects;
* every matching key and every ``includefield`` attribute found in the match;
  ``includefield=all`` adds every stored attribute of the query level and of the
  parent levels shown (PS3.18 §8.3.4.3);
* always SpecificCharacterSet ``ISO_IR 192`` (values are UTF-8) and RetrieveURL
  (0008,1190); InstanceAvailability is computed (``ONLINE``) when asked for.

Missing attributes are omitted; present-but-empty ones keep ``{"vr": ...}`` without
``Value``. Keys come out sorted by tag, as DICOM JSON (PS3.18 F.2) orders them.

Attributes that ExtraMainDicomTags keeps at a level (:mod:`app.dicom.levels`) are part of
that level's JSON, so ``includefield`` finds them there before looking in the parents.

A server maximum (Orthanc's ``LimitFindResults`` / ``LimitFindInstances``) is applied by
:func:`capped_query` and :func:`apply_cap`: when it cuts the matches, the answer holds the
maximum and the blueprint adds the Warning of PS3.18 §8.3.4.4 (:data:`CAPPED_WARNING`),
so that a client asks for the rest with ``offset``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from app.dicom.query import QidoRequest
from backends.base import DicomJson, Level, Query, SearchResult

SPECIFIC_CHARACTER_SET = 0x00080005
INSTANCE_AVAILABILITY = 0x00080056
RETRIEVE_URL = 0x00081190

# PS3.18 §8.3.4.4: the text of ``Warning: 299 {service}: "..."`` when the server's maximum
# number of results cut the answer.
CAPPED_WARNING = ("The number of results exceeded the maximum supported by the server. "
                  "Additional results can be requested.")

DEFAULT_FIELDS: dict[Level, tuple[int, ...]] = {
    Level.STUDY: (
        0x00080020,  # StudyDate
        0x00080030,  # StudyTime
        0x00080050,  # AccessionNumber
        0x00080056,  # InstanceAvailability
        0x00080061,  # ModalitiesInStudy
        0x00080090,  # ReferringPhysicianName
        0x00080201,  # TimezoneOffsetFromUTC
        0x00081030,  # StudyDescription (not an Orthanc default)
        0x00100010,  # PatientName
        0x00100020,  # PatientID
        0x00100030,  # PatientBirthDate
        0x00100040,  # PatientSex
        0x0020000D,  # StudyInstanceUID
        0x00200010,  # StudyID
        0x00201206,  # NumberOfStudyRelatedSeries
        0x00201208,  # NumberOfStudyRelatedInstances
    ),
    Level.SERIES: (
        0x00080060,  # Modality
        0x00080201,  # TimezoneOffsetFromUTC
        0x0008103E,  # SeriesDescription
        0x0020000E,  # SeriesInstanceUID
        0x00200011,  # SeriesNumber
        0x00201209,  # NumberOfSeriesRelatedInstances
        0x00400244,  # PerformedProcedureStepStartDate
        0x00400245,  # PerformedProcedureStepStartTime
        0x00400275,  # RequestAttributesSequence
    ),
    Level.INSTANCE: (
        0x00080016,  # SOPClassUID
        0x00080018,  # SOPInstanceUID
        0x00080056,  # InstanceAvailability
        0x00080201,  # TimezoneOffsetFromUTC
        0x00200013,  # InstanceNumber
        0x00280008,  # NumberOfFrames
        0x00280010,  # Rows
        0x00280011,  # Columns
        0x00280100,  # BitsAllocated
    ),
}

_PARENTS: dict[Level, tuple[Level, ...]] = {
    Level.STUDY: (),
    Level.SERIES: (Level.STUDY,),
    Level.INSTANCE: (Level.SERIES, Level.STUDY),
}
_UID_TAGS: dict[Level, str] = {
    Level.STUDY: "0020000D", Level.SERIES: "0020000E", Level.INSTANCE: "00080018",
}
_URL_SEGMENTS: dict[Level, str] = {
    Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances",
}


def build_answer(result: SearchResult, request: QidoRequest, base_url: str) -> DicomJson:
    """The DICOM JSON object answering one match of ``request``."""
    shown = _shown_levels(request)
    wanted = _wanted(request, shown)
    return _answer(result, request, base_url, shown, wanted, sorted(wanted))


def _answer(result: SearchResult, request: QidoRequest, base_url: str, shown: set[Level],
            wanted: set[str], ordered: list[str]) -> DicomJson:
    sources = _sources(result, request.query.level)
    answer: DicomJson = {}
    for tag in ordered:
        attr = _find(sources, tag)
        if attr is not None:
            answer[tag] = attr
    if request.include_all:
        for source_level, attrs in sources:
            if source_level in shown:
                for tag, attr in attrs.items():
                    answer.setdefault(tag, _copy(attr))
    _add_computed(answer, request, result, base_url, wanted)
    return dict(sorted(answer.items()))


def build_answers(
    results: list[SearchResult], request: QidoRequest, base_url: str
) -> list[DicomJson]:
    """:func:`build_answer` for every match, in order (the field lists computed once)."""
    shown = _shown_levels(request)
    wanted = _wanted(request, shown)
    ordered = sorted(wanted)
    return [_answer(result, request, base_url, shown, wanted, ordered) for result in results]


def retrieve_url(result: SearchResult, level: Level, base_url: str) -> str | None:
    """RetrieveURL (0008,1190) of a match: ``{base}studies/{st}[/series/{se}[/instances/..]]``."""
    url = base_url if base_url.endswith("/") else base_url + "/"
    parts = []
    for step in (Level.STUDY, Level.SERIES, Level.INSTANCE):
        uid = _first_value(_level_json(result, step), _UID_TAGS[step])
        if uid is None:
            return None
        parts.append(f"{_URL_SEGMENTS[step]}/{quote(str(uid), safe='')}")
        if step is level:
            break
    return url + "/".join(parts)


def _shown_levels(request: QidoRequest) -> set[Level]:
    """Query level plus the parents whose attributes are returned (PS3.18 §10.6.3.3)."""
    level = request.query.level
    parents = set(_PARENTS[level]) - set(request.parent_uid_in_query)
    return {level} | parents


def _wanted(request: QidoRequest, shown: set[Level]) -> set[str]:
    tags = {f"{tag:08X}" for lvl in shown for tag in DEFAULT_FIELDS[lvl]}
    return tags | set(request.filter_tags) | set(request.include)


def _sources(result: SearchResult, level: Level) -> list[tuple[Level, DicomJson]]:
    """The JSON of the query level first, then of its parents (nearest first)."""
    return [(lvl, _level_json(result, lvl)) for lvl in (level, *_PARENTS[level])]


def _level_json(result: SearchResult, level: Level) -> DicomJson:
    return {Level.STUDY: result.study, Level.SERIES: result.series,
            Level.INSTANCE: result.instance}[level]


def _find(sources: list[tuple[Level, DicomJson]], tag: str) -> dict[str, Any] | None:
    for _level, attrs in sources:
        if tag in attrs:
            return _copy(attrs[tag])
    return None


def _copy(attr: dict[str, Any]) -> dict[str, Any]:
    """The attribute, with an empty ``Value`` dropped (present but empty, issue 111).

    Answers are serialised, never mutated, so only that case needs a copy.
    """
    if "Value" in attr and not attr["Value"]:
        return {k: v for k, v in attr.items() if k != "Value"}
    return attr


def _first_value(attrs: DicomJson, tag: str) -> Any:
    values = attrs.get(tag, {}).get("Value") or [None]
    return values[0]


def _add_computed(
    answer: DicomJson, request: QidoRequest, result: SearchResult, base_url: str,
    wanted: set[str],
) -> None:
    answer[f"{SPECIFIC_CHARACTER_SET:08X}"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    url = retrieve_url(result, request.query.level, base_url)
    if url is not None:
        answer[f"{RETRIEVE_URL:08X}"] = {"vr": "UR", "Value": [url]}
    availability = f"{INSTANCE_AVAILABILITY:08X}"
    if request.include_all or availability in wanted:
        answer[availability] = {"vr": "CS", "Value": ["ONLINE"]}


def result_cap(level: Level, limit_find_results: int, limit_find_instances: int) -> int:
    """The server's maximum number of matches at ``level`` (0 = none): Orthanc's
    ``LimitFindInstances`` for instances, ``LimitFindResults`` for studies and series."""
    return limit_find_instances if level is Level.INSTANCE else limit_find_results


def capped_query(query: Query, cap: int) -> Query:
    """The query the index runs under a server maximum ``cap`` (0 = none).

    A client ``limit`` up to the cap is kept as is (no warning: the client chose its page).
    Otherwise one row more than the cap is asked for, so that :func:`apply_cap` can tell a
    cut answer from one that holds exactly ``cap`` matches. ``offset`` is unchanged: the
    client pages past the cap with it.
    """
    if cap <= 0 or (query.limit is not None and query.limit <= cap):
        return query
    return replace(query, limit=cap + 1)


def apply_cap(results: list[SearchResult], cap: int) -> tuple[list[SearchResult], bool]:
    """The matches of a :func:`capped_query` cut to ``cap``; True if anything was cut."""
    if cap <= 0 or len(results) <= cap:
        return results, False
    return results[:cap], True
