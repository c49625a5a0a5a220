"""Unit tests for app.dicom.search (QIDO-RS answers, PS3.18 §10.6.3.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.dicom.query import QidoRequest, parse_qido
from app.dicom.search import (
    CAPPED_WARNING,
    DEFAULT_FIELDS,
    apply_cap,
    build_answer,
    build_answers,
    capped_query,
    result_cap,
    retrieve_url,
)
from backends.base import DicomJson, Level, Query, SearchResult

STUDY, SERIES, INSTANCE = Level.STUDY, Level.SERIES, Level.INSTANCE
BASE = "http://pacs.example/dicom-web/"
ST, SE, SOP = "1.2.3", "1.2.3.4", "1.2.3.4.5"


def attr(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


STUDY_JSON: DicomJson = {
    "00080005": attr("CS", "ISO_IR 100"),  # stored charset: replaced by ISO_IR 192
    "00080020": attr("DA", "20200131"),
    "00080030": attr("TM", "120000"),
    "00080050": attr("SH"),  # present but empty
    "00080061": attr("CS", "CT", "MR"),
    "00080090": attr("PN", {"Alphabetic": "Ref^Doc"}),
    "00081030": attr("LO", "Head CT"),
    "00100010": attr("PN", {"Alphabetic": "Doe^Jane"}),
    "00100020": attr("LO", "PAT-1"),
    "00100030": attr("DA", "19700101"),
    "00100040": attr("CS", "F"),
    "00101010": attr("AS", "050Y"),  # not a default
    "0020000D": attr("UI", ST),
    "00200010": attr("SH", "S1"),
    "00201206": attr("IS", 2),
    "00201208": attr("IS", 10),
}
SERIES_JSON: DicomJson = {
    "00080021": attr("DA", "20200131"),  # not a default
    "00080060": attr("CS", "CT"),
    "0008103E": attr("LO", "Axial"),
    "0020000E": attr("UI", SE),
    "00200011": attr("IS", 3),
    "00201209": attr("IS", 5),
    "00400275": {"vr": "SQ", "Value": [{"00401001": attr("SH", "RP1")}]},
}
INSTANCE_JSON: DicomJson = {
    "00080016": attr("UI", "1.2.840.10008.5.1.4.1.1.2"),
    "00080018": attr("UI", SOP),
    "00080201": attr("SH", "+0100"),
    "00200013": attr("IS", 7),
    "00280010": attr("US", 512),
    "00280011": attr("US", 512),
    "00280100": attr("US", 16),
    "00180050": attr("DS", "2.5"),  # SliceThickness, not a default
}

STUDY_RESULT = SearchResult(study=STUDY_JSON)
SERIES_RESULT = SearchResult(study=STUDY_JSON, series=SERIES_JSON)
INSTANCE_RESULT = SearchResult(study=STUDY_JSON, series=SERIES_JSON, instance=INSTANCE_JSON)
RESULTS = {STUDY: STUDY_RESULT, SERIES: SERIES_RESULT, INSTANCE: INSTANCE_RESULT}

STUDY_DEFAULT_PRESENT = {
    "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081030",
    "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206",
    "00201208",
}
SERIES_DEFAULT_PRESENT = {"00080060", "0008103E", "0020000E", "00200011", "00201209",
                          "00400275"}
INSTANCE_DEFAULT_PRESENT = {"00080016", "00080018", "00080056", "00080201", "00200013",
                            "00280010", "00280011", "00280100"}
ALWAYS = {"00080005", "00081190"}


def request(level: Level, query: str = "", **kwargs: Any) -> QidoRequest:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    return parse_qido(level, pairs, **kwargs)  # type: ignore[arg-type]


def answer(level: Level, query: str = "", **kwargs: Any) -> DicomJson:
    return build_answer(RESULTS[level], request(level, query, **kwargs), BASE)


# --- default attributes -----------------------------------------------------------------------

def test_default_fields_table() -> None:
    assert len(DEFAULT_FIELDS[STUDY]) == 16 and 0x00081030 in DEFAULT_FIELDS[STUDY]
    assert len(DEFAULT_FIELDS[SERIES]) == 9 and len(DEFAULT_FIELDS[INSTANCE]) == 9
    for tags in DEFAULT_FIELDS.values():
        assert list(tags) == sorted(set(tags))


def test_study_answer() -> None:
    got = answer(STUDY)
    assert set(got) == STUDY_DEFAULT_PRESENT | ALWAYS
    assert got["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert got["00081190"] == {"vr": "UR", "Value": [BASE + "studies/1.2.3"]}
    assert got["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    assert got["00081030"] == attr("LO", "Head CT")  # StudyDescription by default
    assert got["00080050"] == {"vr": "SH"}  # present but empty: no Value
    assert "00101010" not in got and "00080201" not in got  # not default / missing


def test_keys_are_sorted_by_tag() -> None:
    for level in (STUDY, SERIES, INSTANCE):
        keys = list(answer(level, "includefield=all"))
        assert keys == sorted(keys)


def test_series_answer_with_study_attributes() -> None:
    got = answer(SERIES)
    assert set(got) == SERIES_DEFAULT_PRESENT | STUDY_DEFAULT_PRESENT | ALWAYS
    assert got["00081190"]["Value"] == [BASE + "studies/1.2.3/series/1.2.3.4"]
    assert got["00400275"]["Value"][0]["00401001"]["Value"] == ["RP1"]


def test_instance_answer_with_parents() -> None:
    got = answer(INSTANCE)
    assert set(got) == (INSTANCE_DEFAULT_PRESENT | SERIES_DEFAULT_PRESENT
                        | STUDY_DEFAULT_PRESENT | ALWAYS)
    assert got["00081190"]["Value"] == [
        BASE + "studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"]
    assert got["00080201"] == attr("SH", "+0100")


# --- parent attributes (PS3.18 §10.6.3.3.2-3) --------------------------------------------------

def test_study_uid_as_query_parameter_drops_study_attributes() -> None:
    got = answer(SERIES, f"StudyInstanceUID={ST}")
    assert set(got) == SERIES_DEFAULT_PRESENT | ALWAYS | {"0020000D"}  # the filter is echoed


def test_study_uid_in_path_keeps_study_attributes() -> None:
    got = answer(SERIES, study_uid=ST)
    assert set(got) == SERIES_DEFAULT_PRESENT | STUDY_DEFAULT_PRESENT | ALWAYS


def test_instance_search_parent_uids_in_query() -> None:
    got = answer(INSTANCE, f"SeriesInstanceUID={SE}", study_uid=ST)
    assert set(got) == (INSTANCE_DEFAULT_PRESENT | STUDY_DEFAULT_PRESENT | ALWAYS
                        | {"0020000E"})
    got = answer(INSTANCE, f"StudyInstanceUID={ST}&SeriesInstanceUID={SE}")
    assert set(got) == INSTANCE_DEFAULT_PRESENT | ALWAYS | {"0020000D", "0020000E"}


# --- filters and includefield ---------------------------------------------------------------

def test_filter_tags_are_echoed() -> None:
    got = answer(STUDY, "PatientAge=050Y&00080021=")
    assert got["00101010"] == attr("AS", "050Y")
    assert "00080021" not in got  # study search: no series JSON to find it in


def test_modalities_in_study_filter_is_echoed() -> None:
    got = answer(STUDY, "ModalitiesInStudy=CT")
    assert got["00080061"] == attr("CS", "CT", "MR")


def test_includefield_ohif_study_list() -> None:
    got = answer(STUDY, "includefield=00081030%2C00080060%2C00080090%2C00100030")
    assert set(got) == STUDY_DEFAULT_PRESENT | ALWAYS  # Modality is not a study attribute


def test_includefield_ohif_series_list() -> None:
    got = answer(SERIES, "includefield=00080021%2C00080031%2C0008103E%2C00200011", study_uid=ST)
    assert got["00080021"] == attr("DA", "20200131")
    assert "00080031" not in got  # missing: omitted


def test_includefield_parent_and_child_levels() -> None:
    got = answer(INSTANCE, f"StudyInstanceUID={ST}&includefield=PatientAge,SliceThickness")
    assert got["00101010"] == attr("AS", "050Y")  # parent attribute asked for explicitly
    assert got["00180050"] == attr("DS", "2.5")
    assert "00100010" not in got


def test_includefield_all() -> None:
    got = answer(SERIES, "includefield=all")
    stored = set(STUDY_JSON) | set(SERIES_JSON)
    assert set(got) == stored | ALWAYS | {"00080056"}
    assert got["00080005"]["Value"] == ["ISO_IR 192"]


def test_includefield_all_respects_parent_uid_in_query() -> None:
    got = answer(SERIES, f"includefield=all&StudyInstanceUID={ST}")
    assert set(got) == set(SERIES_JSON) | ALWAYS | {"0020000D", "00080056"}


def test_instance_availability_only_when_asked_at_series_level() -> None:
    assert "00080056" not in answer(SERIES, f"StudyInstanceUID={ST}")
    got = answer(SERIES, f"StudyInstanceUID={ST}&includefield=InstanceAvailability")
    assert got["00080056"]["Value"] == ["ONLINE"]


def test_own_level_wins_over_parents() -> None:
    result = SearchResult(study={**STUDY_JSON, "00080201": attr("SH", "+0000")},
                          series=SERIES_JSON, instance=INSTANCE_JSON)
    got = build_answer(result, request(INSTANCE), BASE)
    assert got["00080201"] == attr("SH", "+0100")


# --- values are copied, emptiness, URLs ------------------------------------------------------

def test_building_answers_leaves_the_index_json_untouched() -> None:
    # Answers share attribute dicts with the index results (they are only serialised),
    # so building them must never modify those.
    before = json.dumps(STUDY_JSON, sort_keys=True)
    build_answers([SearchResult(study=STUDY_JSON)] * 2, request(STUDY), BASE)
    assert json.dumps(STUDY_JSON, sort_keys=True) == before


def test_empty_value_list_becomes_vr_only() -> None:
    result = SearchResult(study={**STUDY_JSON, "00100010": {"vr": "PN", "Value": []}})
    assert build_answer(result, request(STUDY), BASE)["00100010"] == {"vr": "PN"}


@pytest.mark.parametrize(("level", "base", "url"), [
    (STUDY, "http://h/dicom-web", "http://h/dicom-web/studies/1.2.3"),
    (SERIES, "http://h/", "http://h/studies/1.2.3/series/1.2.3.4"),
    (INSTANCE, "/r/", "/r/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"),
])
def test_retrieve_url(level: Level, base: str, url: str) -> None:
    assert retrieve_url(RESULTS[level], level, base) == url


def test_retrieve_url_missing_uid_is_omitted() -> None:
    result = SearchResult(study={"00100010": attr("PN", {"Alphabetic": "X"})})
    got = build_answer(result, request(STUDY), BASE)
    assert "00081190" not in got and got["00100010"]


def test_build_answers_keeps_order() -> None:
    other = SearchResult(study={**STUDY_JSON, "0020000D": attr("UI", "9.9")})
    got = build_answers([STUDY_RESULT, other], request(STUDY), BASE)
    assert [a["0020000D"]["Value"][0] for a in got] == [ST, "9.9"]


# --- ExtraMainDicomTags copies: the query level's own copy first ------------------------------

def test_extra_tag_copy_is_found_at_the_query_level_first() -> None:
    series = {**SERIES_JSON, "00080008": attr("CS", "DERIVED"), "00080201": attr("SH", "-0500")}
    instance = {**INSTANCE_JSON, "00080008": attr("CS", "ORIGINAL")}
    study = {**STUDY_JSON, "00080201": attr("SH", "+0900")}
    got = build_answer(SearchResult(study, series), request(SERIES, "includefield=ImageType"),
                       BASE)
    assert got["00080008"] == attr("CS", "DERIVED") and got["00080201"] == attr("SH", "-0500")
    got = build_answer(SearchResult(study, series, instance),
                       request(INSTANCE, "includefield=ImageType"), BASE)
    assert got["00080008"] == attr("CS", "ORIGINAL")
    assert got["00080201"] == attr("SH", "+0100")  # the instance's own
    assert build_answer(SearchResult(study), request(STUDY), BASE)["00080201"] == attr(
        "SH", "+0900")  # a study default, when the study keeps it


# --- LimitFindResults / LimitFindInstances ----------------------------------------------------

def test_result_cap_by_level() -> None:
    assert result_cap(STUDY, 10, 50) == 10 and result_cap(SERIES, 10, 50) == 10
    assert result_cap(INSTANCE, 10, 50) == 50 and result_cap(INSTANCE, 10, 0) == 0


@pytest.mark.parametrize("limit,offset,cap,expected", [
    (None, 0, 0, None),   # no cap: the query as is
    (7, 3, 0, 7),
    (None, 0, 5, 6),      # one row more than the cap tells a cut answer
    (None, 20, 5, 6),     # offset kept: paging past the cap
    (3, 0, 5, 3),         # the client's smaller page
    (5, 0, 5, 5),         # equal to the cap: no extra row, no warning
    (9, 2, 5, 6),
])
def test_capped_query(limit: int | None, offset: int, cap: int, expected: int | None) -> None:
    query = Query(STUDY, limit=limit, offset=offset, case_sensitive=True)
    capped = capped_query(query, cap)
    assert capped.limit == expected
    assert (capped.offset, capped.case_sensitive, capped.level) == (offset, True, STUDY)
    if expected == limit:
        assert capped is query


def test_apply_cap() -> None:
    results = [SearchResult({"0020000D": attr("UI", str(n))}) for n in range(6)]
    assert apply_cap(results, 0) == (results, False)
    assert apply_cap(results, 6) == (results, False)
    assert apply_cap(results[:5], 5) == (results[:5], False)
    assert apply_cap(results, 5) == (results[:5], True)


def test_capped_warning_is_the_standard_text() -> None:
    assert CAPPED_WARNING == ("The number of results exceeded the maximum supported by the "
                              "server. Additional results can be requested.")
