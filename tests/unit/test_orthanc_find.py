"""app.dicom.orthanc_find: /tools/find bodies → Index queries, ids of matches, lookups."""

from __future__ import annotations

import pytest

from app.dicom.identifiers import orthanc_ids
from app.dicom.orthanc_find import find_ids, lookup_queries, parse_find, result_id
from app.errors import BadRequest
from backends.base import Level, Match, ResourceType, SearchResult


def test_levels_and_matching_kinds() -> None:
    req = parse_find({"Level": "series", "Query": {
        "PatientName": "DOE*", "StudyDate": "20240101-20241231", "Modality": "CT\\MR",
        "SeriesDescription": ""}, "Limit": 5, "Since": 2})
    assert req.type is ResourceType.SERIES and req.query.level is Level.SERIES
    kinds = {c.keyword: c.kind for c in req.query.constraints}
    assert kinds == {"PatientName": Match.WILDCARD, "StudyDate": Match.RANGE,
                     "Modality": Match.LIST}  # an empty value matches everything
    assert (req.query.limit, req.query.offset, req.expand) == (5, 2, False)
    assert req.query.case_sensitive is False
    assert parse_find({"Level": "Study", "Query": {}}, case_sensitive_default=True) \
        .query.case_sensitive is True
    assert parse_find({"Level": "Study", "Query": {}, "CaseSensitive": True,
                       "RequestedTags": ["Rows"], "Full": True}).query.case_sensitive


def test_patient_level_is_a_study_search_paged_after_folding() -> None:
    req = parse_find({"Level": "Patient", "Query": {"PatientID": "P1"}, "Limit": 1,
                      "Since": 1})
    assert req.query.level is Level.STUDY
    assert req.query.limit is None and req.query.offset == 0

    def study(patient: str, uid: str) -> SearchResult:
        return SearchResult(study={"00100020": {"vr": "LO", "Value": [patient]},
                                   "0020000D": {"vr": "UI", "Value": [uid]}})

    results = [study("A", "1.1"), study("A", "1.2"), study("B", "1.3"), study("C", "1.4")]
    assert find_ids(req, results) == [orthanc_ids("B", "", "", "")[0]]


def test_result_ids_are_orthanc_ids() -> None:
    result = SearchResult(study={"00100020": {"vr": "LO", "Value": ["P"]},
                                 "0020000D": {"vr": "UI", "Value": ["1.2"]}},
                          series={"0020000E": {"vr": "UI", "Value": ["1.2.3"]}},
                          instance={"00080018": {"vr": "UI", "Value": ["1.2.3.4"]}})
    ids = orthanc_ids("P", "1.2", "1.2.3", "1.2.3.4")
    assert [result_id(result, t) for t in ResourceType] == list(ids)


@pytest.mark.parametrize("body", [
    "Study", {"Level": 3}, {"Level": "Study", "Query": {"Nope": "x"}},
    {"Level": "Study", "Query": {"PatientID": ["a"]}}, {"Level": "Study", "Since": "1"},
    {"Level": "Study", "Limit": True}, {"Level": "Study", "CaseSensitive": 1},
    {"Level": "Study", "Query": {"StudyInstanceUID": "1.2.*"}},
])
def test_bad_bodies(body: object) -> None:
    with pytest.raises(BadRequest):
        parse_find(body)


def test_lookup_queries_are_exact_and_skip_uids_for_other_values() -> None:
    assert [(t, q.constraints[0].keyword) for t, q in lookup_queries("ACC*")] == [
        (ResourceType.PATIENT, "PatientID"), (ResourceType.STUDY, "AccessionNumber")]
    queries = lookup_queries("1.2.3")
    assert len(queries) == 5
    assert all(q.case_sensitive and q.constraints[0].kind is Match.SINGLE
               and q.constraints[0].values == ("1.2.3",) for _, q in queries)
