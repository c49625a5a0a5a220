"""Orthanc's ``POST /tools/find`` and ``POST /tools/lookup`` as Index queries (no Flask).

``/tools/find`` takes ``{"Level", "Query": {tag: value}, "Expand", "Limit", "Since",
"CaseSensitive", ...}``. The query values go through the QIDO parser
(:func:`app.dicom.query.parse_qido`), which implements the same PS3.4 C.2.2.2 matching as
Orthanc's ``DatabaseLookup`` (reference §3.4): ``*``/``?`` wildcards on text VRs, ``a-b``
ranges on DA/TM/DT, ``\\``-separated lists, an empty value or ``*`` matching everything.
Where the two differ, ours is stricter or answers more (docs/orthanc-api.md): a ``,`` is
also a list separator, wildcards in a UID are a 400 rather than a literal match, and a
StudyDate+StudyTime pair is matched as one date-time range.

The Patient level, which DICOMweb lacks, is a study search whose matches are folded into
their patients (first-stored order), paged afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.dicom.identifiers import is_valid_uid, orthanc_ids
from app.dicom.query import lookup_attribute, parse_qido
from app.errors import BadRequest
from backends.base import Constraint, Level, Match, Query, ResourceType, SearchResult

LEVELS: dict[str, ResourceType] = {t.value.lower(): t for t in ResourceType}
_QUERY_LEVEL = {ResourceType.PATIENT: Level.STUDY, ResourceType.STUDY: Level.STUDY,
                ResourceType.SERIES: Level.SERIES, ResourceType.INSTANCE: Level.INSTANCE}
_MAX = 2**31 - 1


@dataclass(frozen=True)
class FindRequest:
    """A ``/tools/find`` body, validated. ``query`` has no limit for the Patient level
    (patients are paged after folding)."""

    type: ResourceType
    query: Query
    expand: bool
    limit: int | None
    since: int


def parse_find(body: Any, *, case_sensitive_default: bool = False) -> FindRequest:
    """Validate a ``/tools/find`` body; :class:`BadRequest` names what is wrong.

    ``CaseSensitive`` defaults to ``case_sensitive_default`` (CaseSensitivePN, as Orthanc).
    Other keys (RequestedTags, Full, Short, Labels, ...) are accepted and ignored.
    """
    if not isinstance(body, dict):
        raise BadRequest("The body of /tools/find must be a JSON object")
    level = body.get("Level")
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise BadRequest('"Level" must be one of "Patient", "Study", "Series", "Instance"')
    type_ = LEVELS[level.lower()]
    query = body.get("Query", {})
    if not isinstance(query, dict):
        raise BadRequest('"Query" must be a JSON object of tag names and values')
    expand = _boolean(body, "Expand", False)
    case_sensitive = _boolean(body, "CaseSensitive", case_sensitive_default)
    limit = _count(body, "Limit") or None
    since = _count(body, "Since")
    pairs = list(_pairs(query))
    parsed = parse_qido(_QUERY_LEVEL[type_], pairs, case_sensitive=case_sensitive).query
    if type_ is not ResourceType.PATIENT:
        parsed = Query(parsed.level, parsed.constraints, parsed.case_sensitive,
                       limit=limit, offset=since)
    return FindRequest(type_, parsed, expand, limit, since)


def _boolean(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadRequest(f'"{key}" must be true or false')
    return value


def _count(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX:
        raise BadRequest(f'"{key}" must be a non-negative integer')
    return value


def _pairs(query: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """Query entries as QIDO pairs; each key must name a DICOM attribute (keyword,
    ``gggg,eeee`` or ``ggggeeee``) and each value be a string (Orthanc's rules)."""
    for key, value in query.items():
        if lookup_attribute(key) is None:
            raise BadRequest(f"Unknown DICOM tag in Query: {key[:80]!r}")
        if not isinstance(value, str):
            raise BadRequest(f'The value of "{key[:80]}" in Query must be a string')
        yield key, value


def result_id(result: SearchResult, type_: ResourceType) -> str:
    """The Orthanc id of a match (patient: the id of its study's patient)."""
    patient_id = _text(result.study, "00100020")
    ids = orthanc_ids(patient_id, _text(result.study, "0020000D"),
                      _text(result.series, "0020000E"), _text(result.instance, "00080018"))
    position = {ResourceType.PATIENT: 0, ResourceType.STUDY: 1, ResourceType.SERIES: 2,
                ResourceType.INSTANCE: 3}[type_]
    return ids[position]


def _text(attrs: Mapping[str, Any], tag: str) -> str:
    values = attrs.get(tag, {}).get("Value") or [""]
    return str(values[0] or "")


def find_ids(request: FindRequest, results: list[SearchResult]) -> list[str]:
    """The ids answered for ``results`` of ``request.query``: for patients, distinct and
    paged here; for other levels already paged by the Index."""
    ids = [result_id(r, request.type) for r in results]
    if request.type is not ResourceType.PATIENT:
        return ids
    distinct = list(dict.fromkeys(ids))
    end = None if request.limit is None else request.since + request.limit
    return distinct[request.since:end]


# --------------------------------------------------------------------------- #
# /tools/lookup
# --------------------------------------------------------------------------- #

# Orthanc's identifier tags (LookupIdentifierExact), in the order it answers them.
_LOOKUPS: tuple[tuple[ResourceType, Level, str, str, str], ...] = (
    (ResourceType.PATIENT, Level.STUDY, "PatientID", "00100020", "LO"),
    (ResourceType.STUDY, Level.STUDY, "StudyInstanceUID", "0020000D", "UI"),
    (ResourceType.STUDY, Level.STUDY, "AccessionNumber", "00080050", "SH"),
    (ResourceType.SERIES, Level.SERIES, "SeriesInstanceUID", "0020000E", "UI"),
    (ResourceType.INSTANCE, Level.INSTANCE, "SOPInstanceUID", "00080018", "UI"),
)


def lookup_queries(value: str) -> list[tuple[ResourceType, Query]]:
    """One exact, case-sensitive single-value query per identifier the value may be (UIDs
    only when it is one), with no wildcard: ``*`` in a PatientID is a character here."""
    out = []
    for type_, level, keyword, tag, vr in _LOOKUPS:
        if vr == "UI" and not is_valid_uid(value):
            continue
        constraint = Constraint(level, keyword, tag, vr, Match.SINGLE, (value,))
        out.append((type_, Query(level, (constraint,), case_sensitive=True)))
    return out
