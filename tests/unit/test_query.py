"""Unit tests for app.dicom.query (QIDO-RS parameters, PS3.18 §8.3.4; PS3.4 C.2.2.2)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from app.dicom.query import QidoRequest, lookup_attribute, parse_qido, tag_of, warning_texts
from app.errors import BadRequest
from backends.base import Constraint, Level, Match

STUDY, SERIES, INSTANCE = Level.STUDY, Level.SERIES, Level.INSTANCE
OHIF_INCLUDE = "00081030%2C00080060%2C00080090%2C00100030"
OHIF_LIST = f"limit=101&offset=0&fuzzymatching=false&includefield={OHIF_INCLUDE}"


def qs(query: str) -> list[tuple[str, str]]:
    """Decode a query string the way the framework does (werkzeug ~ parse_qsl)."""
    return parse_qsl(query, keep_blank_values=True)


def parse(query: str, level: Level = STUDY, **kwargs: object) -> QidoRequest:
    return parse_qido(level, qs(query), **kwargs)  # type: ignore[arg-type]


def only(request: QidoRequest) -> Constraint:
    assert len(request.query.constraints) == 1, request.query.constraints
    return request.query.constraints[0]


def kinds(request: QidoRequest) -> list[tuple[str, Match, tuple[str, ...]]]:
    return [(c.keyword, c.kind, c.values) for c in request.query.constraints]


# --- OHIF's exact requests (viewers.md) -------------------------------------------------

def test_ohif_study_list() -> None:
    req = parse(OHIF_LIST)
    assert req.query.limit == 101 and req.query.offset == 0
    assert req.fuzzy is False and req.query.constraints == ()
    assert req.include == {"00081030", "00080060", "00080090", "00100030"}
    assert req.unsupported == [] and not req.include_all


def test_ohif_patient_name_wildcard() -> None:
    req = parse(f"PatientName=*SYNT*&{OHIF_LIST}")
    c = only(req)
    assert (c.level, c.keyword, c.tag, c.vr, c.kind, c.values) == (
        STUDY, "PatientName", "00100010", "PN", Match.WILDCARD, ("*SYNT*",))
    assert req.filter_tags == {"00100010"}


def test_ohif_study_uid() -> None:
    req = parse(f"{OHIF_LIST}&StudyInstanceUID=1.2.3")
    assert kinds(req) == [("StudyInstanceUID", Match.SINGLE, ("1.2.3",))]
    assert req.parent_uid_in_query == {STUDY} and req.from_path == frozenset()


def test_ohif_patient_id_by_tag_number() -> None:
    req = parse(f"00100020=PAT-1&{OHIF_LIST}")
    c = only(req)
    assert (c.keyword, c.tag, c.vr, c.kind, c.values) == (
        "PatientID", "00100020", "LO", Match.SINGLE, ("PAT-1",))


def test_ohif_several_study_uids_joined_with_backslash() -> None:
    req = parse_qido(STUDY, [("StudyInstanceUID", "1.2.3\\1.2.4")])
    assert kinds(req) == [("StudyInstanceUID", Match.LIST, ("1.2.3", "1.2.4"))]


def test_ohif_series_list() -> None:
    req = parse("includefield=00080021%2C00080031%2C0008103E%2C00200011", SERIES,
                study_uid="1.2.3")
    assert req.include == {"00080021", "00080031", "0008103E", "00200011"}
    assert kinds(req) == [("StudyInstanceUID", Match.SINGLE, ("1.2.3",))]
    assert req.from_path == {STUDY} and req.parent_uid_in_query == frozenset()


def test_ohif_other_filters_from_the_bundle() -> None:
    req = parse("AccessionNumber=*A1*&StudyDescription=*ct*&ModalitiesInStudy=CT"
                "&StudyDate=20200101-20201231")
    assert kinds(req) == [
        ("AccessionNumber", Match.WILDCARD, ("*A1*",)),
        ("StudyDescription", Match.WILDCARD, ("*ct*",)),
        ("Modality", Match.SINGLE, ("CT",)),
        ("StudyDate", Match.RANGE, ("20200101", "20201231")),
    ]


# --- keys -------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["PatientID", "00100020", "0010,0020"])
def test_key_forms(key: str) -> None:
    assert only(parse_qido(STUDY, [(key, "X")])).tag == "00100020"


@pytest.mark.parametrize("key", ["0020000d", "0020000D", "0020,000d"])
def test_hex_keys_are_case_insensitive(key: str) -> None:
    assert only(parse_qido(STUDY, [(key, "1.2")])).keyword == "StudyInstanceUID"


@pytest.mark.parametrize("key", [
    "patientname",  # keywords are case-sensitive (PS3.6)
    "NoSuchKeyword",
    "00091010",  # private
    "0009,1010",
    "00020010",  # file meta
    "ReferencedSeriesSequence.SeriesInstanceUID",  # sequence path
    "001000200",  # malformed
    "LimitX",
])
def test_unsupported_keys_are_listed(key: str) -> None:
    req = parse_qido(STUDY, [(key, "x"), ("PatientID", "1")])
    assert req.unsupported == [key]
    assert [c.keyword for c in req.query.constraints] == ["PatientID"]
    assert warning_texts(req) == [
        f"The following query parameters are not supported and were ignored: {key}"]


def test_empty_key_is_ignored_weasis() -> None:
    req = parse("&includefield=PatientName")
    assert req.unsupported == [] and req.include == {"00100010"}


def test_transport_params_are_left_to_the_blueprint() -> None:
    req = parse("accept=application/dicom%2Bjson&charset=utf-8")
    assert req.unsupported == [] and req.query.constraints == ()


@pytest.mark.parametrize("query", ["PatientID=1&PatientID=2", "PatientID=1&00100020=2",
                                   "limit=1&limit=2", "offset=0&offset=0",
                                   "fuzzymatching=true&fuzzymatching=true"])
def test_repeated_parameters_are_rejected(query: str) -> None:
    with pytest.raises(BadRequest, match="repeated"):
        parse(query)


def test_sequence_filter_is_unsupported_but_empty_sequence_key_is_returned() -> None:
    req = parse("RequestAttributesSequence=x", SERIES)
    assert req.unsupported == ["RequestAttributesSequence"] and not req.filter_tags
    req = parse("RequestAttributesSequence=", SERIES)
    assert req.unsupported == [] and req.filter_tags == {"00400275"}
    assert req.query.constraints == ()


# --- limit, offset, fuzzymatching ---------------------------------------------------------

@pytest.mark.parametrize(("query", "limit", "offset"), [
    ("", None, 0),
    ("limit=0", None, 0),
    ("limit=5&offset=10", 5, 10),
    ("offset=007", None, 7),
    ("limit=%2010", 10, 0),
])
def test_limit_offset(query: str, limit: int | None, offset: int) -> None:
    req = parse(query)
    assert (req.query.limit, req.query.offset) == (limit, offset)


@pytest.mark.parametrize("query", ["limit=-1", "limit=abc", "limit=", "offset=1.5",
                                   "offset=%2B3", "limit=1e3"])
def test_bad_limit_offset(query: str) -> None:
    name = query.split("=")[0]
    with pytest.raises(BadRequest, match=name):
        parse(query)


@pytest.mark.parametrize(("value", "fuzzy"), [("true", True), ("false", False),
                                               ("TRUE", True), ("False", False)])
def test_fuzzymatching_values(value: str, fuzzy: bool) -> None:
    assert parse(f"fuzzymatching={value}").fuzzy is fuzzy


@pytest.mark.parametrize("value", ["", "yes", "1", "on"])
def test_bad_fuzzymatching(value: str) -> None:
    with pytest.raises(BadRequest, match="fuzzymatching"):
        parse(f"fuzzymatching={value}")


@pytest.mark.parametrize(("value", "kind", "values"), [
    ("Doe^John", Match.FUZZY, ("Doe", "John")),
    ("doe", Match.FUZZY, ("doe",)),
    ("  Doe  J ", Match.FUZZY, ("Doe", "J")),
    ("Doe^J=山田^太郎", Match.FUZZY, ("Doe", "J", "山田", "太郎")),
    ("Doe*", Match.WILDCARD, ("Doe*",)),  # wildcards keep wildcard matching
    ("Doe,Roe", Match.LIST, ("Doe", "Roe")),
])
def test_fuzzy_person_names(value: str, kind: Match, values: tuple[str, ...]) -> None:
    # fuzzymatching after the filter, as OHIF orders them
    req = parse_qido(STUDY, [("PatientName", value), ("fuzzymatching", "true")])
    assert kinds(req) == [("PatientName", kind, values)]


def test_fuzzy_only_touches_person_names() -> None:
    req = parse("fuzzymatching=true&PatientID=Doe&ReferringPhysicianName=Smith")
    assert kinds(req) == [("PatientID", Match.SINGLE, ("Doe",)),
                          ("ReferringPhysicianName", Match.FUZZY, ("Smith",))]


def test_fuzzy_with_only_separators_is_universal() -> None:
    req = parse("fuzzymatching=true&PatientName=%5E%5E")
    assert req.query.constraints == () and req.filter_tags == {"00100010"}


@pytest.mark.parametrize("flag", ["emptyvaluematching", "multiplevaluematching"])
def test_unimplemented_flags(flag: str) -> None:
    assert parse(f"{flag}=false").unsupported == []
    req = parse(f"{flag}=true")
    assert req.unsupported == [flag]
    (text,) = warning_texts(req)
    assert text.startswith(f"The {flag} parameter is not supported.")
    with pytest.raises(BadRequest, match=flag):
        parse(f"{flag}=maybe")


# --- includefield ---------------------------------------------------------------------------

@pytest.mark.parametrize(("params", "include"), [
    ([("includefield", "StudyDescription")], {"00081030"}),
    ([("includefield", "00081030,00080060")], {"00081030", "00080060"}),
    ([("includefield", "00081030%2C00080060")], {"00081030", "00080060"}),  # literal %2C
    ([("includefield", "00081030%2c00080060")], {"00081030", "00080060"}),
    ([("includefield", "0008,1030")], {"00081030"}),  # GGGG,EEEE survives split
    ([("includefield", "0008,1030,0010,0010,Modality")], {"00081030", "00100010", "00080060"}),
    ([("includefield", "PatientName"), ("includefield", "0020000d")], {"00100010", "0020000D"}),
    ([("includefield", " PatientName , ,Modality ")], {"00100010", "00080060"}),
    ([("includefield", "")], set()),
])
def test_includefield(params: list[tuple[str, str]], include: set[str]) -> None:
    req = parse_qido(STUDY, params)
    assert req.include == include and req.unsupported == [] and not req.include_all


@pytest.mark.parametrize("value", ["all", "ALL", "all,PatientName"])
def test_includefield_all(value: str) -> None:
    assert parse_qido(STUDY, [("includefield", value)]).include_all


def test_unknown_includefield_is_unsupported_not_an_error() -> None:
    req = parse_qido(STUDY, [("includefield", "PatientName,Bogus,00020010,a.b")])
    assert req.include == {"00100010"}
    assert req.unsupported == ["Bogus", "00020010", "a.b"]


def test_private_includefield_brings_its_private_creator() -> None:
    # PS3.18 §10.6.3.3: a private data element comes with its Private Creator element.
    req = parse_qido(STUDY, [("includefield", "00091010,0009,1110,00190010")])
    assert req.include == {"00091010", "00090010", "00091110", "00090011", "00190010"}
    assert req.unsupported == []


# --- filter values --------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("PatientName", ""), ("PatientName", "*"), ("PatientName", "**"),
    ("StudyInstanceUID", ""), ("StudyInstanceUID", "*"), ("StudyDate", ""),
    ("StudyDate", "-"), ("SeriesNumber", "*"), ("StudyInstanceUID", ",\\"),
])
def test_universal_matching_is_returned_but_not_a_constraint(key: str, value: str) -> None:
    req = parse_qido(SERIES, [(key, value)])
    assert req.query.constraints == ()
    assert req.filter_tags == {lookup_attribute(key).hex}  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "kind", "values"), [
    ("1.2.3", Match.SINGLE, ("1.2.3",)),
    (" 1.2.3 ", Match.SINGLE, ("1.2.3",)),
    ("1.2.3,1.2.4", Match.LIST, ("1.2.3", "1.2.4")),
    ("1.2.3\\1.2.4\\1.2.5", Match.LIST, ("1.2.3", "1.2.4", "1.2.5")),
    ("1.2.3%2C1.2.4", Match.LIST, ("1.2.3", "1.2.4")),
    ("1.2.3,", Match.SINGLE, ("1.2.3",)),
])
def test_uid_matching(value: str, kind: Match, values: tuple[str, ...]) -> None:
    assert kinds(parse_qido(SERIES, [("SeriesInstanceUID", value)])) == [
        ("SeriesInstanceUID", kind, values)]


@pytest.mark.parametrize("value", ["1.2.*", "1.2.?", "1.2,1.*"])
def test_wildcards_in_uids_are_rejected(value: str) -> None:
    with pytest.raises(BadRequest, match="StudyInstanceUID"):
        parse_qido(STUDY, [("StudyInstanceUID", value)])


@pytest.mark.parametrize(("key", "value", "kind", "values"), [
    ("PatientName", "Doe^John", Match.SINGLE, ("Doe^John",)),
    ("PatientName", "Do?^*", Match.WILDCARD, ("Do?^*",)),
    ("PatientID", " 12 ", Match.SINGLE, ("12",)),
    ("AccessionNumber", "A*", Match.WILDCARD, ("A*",)),
    ("StudyDescription", "Head, neck", Match.LIST, ("Head", "neck")),
    ("StudyID", "a\\b", Match.LIST, ("a", "b")),
    ("PatientSex", "F", Match.SINGLE, ("F",)),
    ("ReferringPhysicianName", "Smith", Match.SINGLE, ("Smith",)),
])
def test_string_values(key: str, value: str, kind: Match, values: tuple[str, ...]) -> None:
    assert kinds(parse_qido(STUDY, [(key, value)])) == [(key, kind, values)]


@pytest.mark.parametrize(("key", "value", "values"), [
    ("SeriesNumber", "007", ("7",)),
    ("SeriesNumber", "-3", ("-3",)),
    ("InstanceNumber", "1,2", ("1", "2")),
    ("Rows", "512", ("512",)),
    ("SliceThickness", "2.5", ("2.5",)),
    ("SliceThickness", "1e-3", ("1e-3",)),
])
def test_numeric_values(key: str, value: str, values: tuple[str, ...]) -> None:
    c = only(parse_qido(INSTANCE, [(key, value)]))
    assert (c.keyword, c.values) == (key, values)


@pytest.mark.parametrize(("key", "value"), [
    ("SeriesNumber", "abc"), ("SeriesNumber", "1.5"), ("SliceThickness", "thin"),
    ("SeriesNumber", "1*"), ("Rows", "5?2"), ("PatientName", "A*,B"),
])
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(BadRequest, match=key):
        parse_qido(INSTANCE, [(key, value)])


# --- dates and times -------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "kind", "values"), [
    ("StudyDate", "20200131", Match.SINGLE, ("20200131",)),
    ("StudyDate", "2020.01.31", Match.SINGLE, ("20200131",)),
    ("StudyDate", "20200101-20200131", Match.RANGE, ("20200101", "20200131")),
    ("StudyDate", "20200101-", Match.RANGE, ("20200101", "")),
    ("StudyDate", "-20200131", Match.RANGE, ("", "20200131")),
    ("StudyDate", "2020.01.01-2020.01.31", Match.RANGE, ("20200101", "20200131")),
    ("StudyDate", "20200101,20200105", Match.LIST, ("20200101", "20200105")),
    ("StudyTime", "1200", Match.SINGLE, ("1200",)),
    ("StudyTime", "12:00:30", Match.SINGLE, ("120030",)),
    ("StudyTime", "1200-1300", Match.RANGE, ("1200", "130099.999999")),
    ("StudyTime", "08-12", Match.RANGE, ("08", "129999.999999")),
    ("StudyTime", "-120000", Match.RANGE, ("", "120000.999999")),
    ("StudyTime", "-120000.5", Match.RANGE, ("", "120000.599999")),
    ("StudyTime", "235959.123456-", Match.RANGE, ("235959.123456", "")),
    ("AcquisitionDateTime", "2020-202101", Match.RANGE,
     ("2020", "20210199999999.999999")),
    ("AcquisitionDateTime", "20200101120000", Match.SINGLE, ("20200101120000",)),
])
def test_temporal_values(key: str, value: str, kind: Match, values: tuple[str, ...]) -> None:
    assert kinds(parse_qido(INSTANCE, [(key, value)])) == [(key, kind, values)]


@pytest.mark.parametrize(("key", "value"), [
    ("StudyDate", "abc"), ("StudyDate", "2020-01-01"), ("StudyDate", "20201345"),
    ("StudyDate", "2020010"), ("StudyDate", "202001011"), ("StudyDate", "2020*"),
    ("StudyDate", "20200101-20200102,20200105"), ("StudyTime", "25"),
    ("StudyTime", "1260"), ("StudyTime", "12a"), ("StudyTime", "1-2-3"),
    ("AcquisitionDateTime", "20200101120000+0100"), ("AcquisitionDateTime", "20x"),
])
def test_bad_temporal_values(key: str, value: str) -> None:
    with pytest.raises(BadRequest, match=key):
        parse_qido(INSTANCE, [(key, value)])


@pytest.mark.parametrize(("date", "time", "values"), [
    ("20200101-20200105", "1000-1800", ("202001011000", "20200105180099.999999")),
    ("20200101", "1000-1800", ("202001011000", "20200101180099.999999")),
    ("20200101-20200105", "1200", ("202001011200", "20200105120099.999999")),
    ("20200101-", "1000-", ("202001011000", "")),
    ("-20200105", "-1800", ("", "20200105180099.999999")),
    ("20200101-", "-1800", ("20200101", "")),
    ("20200101-20200105", "-1800", ("20200101", "20200105180099.999999")),
])
def test_combined_date_time(date: str, time: str, values: tuple[str, str]) -> None:
    # PS3.4 C.2.2.2.5.1: one date-time range instead of two independent ones
    for params in ([("StudyDate", date), ("StudyTime", time)],
                   [("StudyTime", time), ("StudyDate", date)]):
        c = only(parse_qido(STUDY, params))
        assert (c.keyword, c.kind, c.values, c.also) == (
            "StudyDate", Match.RANGE, values, "StudyTime")
        assert (c.level, c.tag, c.vr) == (STUDY, "00080020", "DA")


@pytest.mark.parametrize(("date", "time"), [
    ("20200101", "1200"),  # two single values: plain equality
    ("20200101,20200102", "1000-1200"),  # a list never combines
    ("20200101-20200105", ""),  # universal time
])
def test_date_time_not_combined(date: str, time: str) -> None:
    req = parse_qido(STUDY, [("StudyDate", date), ("StudyTime", time)])
    assert all(c.also is None for c in req.query.constraints)
    assert req.filter_tags == {"00080020", "00080030"}


def test_series_date_time_pair_combines_too() -> None:
    c = only(parse_qido(SERIES, [("SeriesDate", "20200101"), ("SeriesTime", "10-11")]))
    assert (c.keyword, c.also, c.level) == ("SeriesDate", "SeriesTime", SERIES)


def test_combined_study_range_in_series_search_is_a_parent_constraint() -> None:
    req = parse_qido(SERIES, [("StudyDate", "20200101-"), ("StudyTime", "1000-"),
                              ("Modality", "CT")])
    assert [(c.level, c.keyword, c.also) for c in req.query.constraints] == [
        (STUDY, "StudyDate", "StudyTime"), (SERIES, "Modality", None)]


# --- levels, ModalitiesInStudy, path UIDs, case sensitivity ------------------------------------

@pytest.mark.parametrize(("value", "kind", "values"), [
    ("CT", Match.SINGLE, ("CT",)),
    ("CT,MR", Match.LIST, ("CT", "MR")),
    ("CT\\MR", Match.LIST, ("CT", "MR")),
    ("C*", Match.WILDCARD, ("C*",)),
])
def test_modalities_in_study_matches_any_series(value: str, kind: Match,
                                                values: tuple[str, ...]) -> None:
    req = parse_qido(STUDY, [("ModalitiesInStudy", value)])
    c = only(req)
    assert (c.level, c.keyword, c.tag, c.vr, c.kind, c.values) == (
        SERIES, "Modality", "00080060", "CS", kind, values)
    assert req.filter_tags == {"00080061"}  # echoed as ModalitiesInStudy


def test_modalities_in_study_below_study_level_is_a_study_attribute() -> None:
    c = only(parse_qido(SERIES, [("00080061", "CT")]))
    assert (c.level, c.keyword, c.kind) == (STUDY, "ModalitiesInStudy", Match.SINGLE)


@pytest.mark.parametrize(("level", "key", "expected"), [
    (STUDY, "PatientName", STUDY),
    (SERIES, "PatientName", STUDY),  # parent constraint
    (INSTANCE, "StudyDescription", STUDY),
    (STUDY, "Modality", SERIES),  # any child series matches
    (STUDY, "Rows", INSTANCE),  # any child instance matches (Orthanc: studies?Rows=512)
    (INSTANCE, "SOPClassUID", INSTANCE),
    (INSTANCE, "NumberOfStudyRelatedInstances", STUDY),  # computed
    (STUDY, "NumberOfSeriesRelatedInstances", SERIES),
])
def test_constraint_level(level: Level, key: str, expected: Level) -> None:
    assert only(parse_qido(level, [(key, "1" if "Number" in key or key == "Rows"
                                    else "X")])).level is expected


@pytest.mark.parametrize("value", ["ONLINE", "online", "ONLINE,NEARLINE", "ON*"])
def test_instance_availability_online_is_universal(value: str) -> None:
    req = parse_qido(INSTANCE, [("InstanceAvailability", value)])
    assert req.query.constraints == () and req.filter_tags == {"00080056"}


def test_instance_availability_offline_matches_nothing() -> None:
    c = only(parse_qido(INSTANCE, [("InstanceAvailability", "OFFLINE")]))
    assert (c.keyword, c.values) == ("InstanceAvailability", ("OFFLINE",))


def test_path_uids() -> None:
    req = parse_qido(INSTANCE, qs("SOPClassUID=1.2.840"), study_uid="1.2", series_uid="1.2.3")
    assert [(c.level, c.keyword, c.kind, c.values) for c in req.query.constraints] == [
        (STUDY, "StudyInstanceUID", Match.SINGLE, ("1.2",)),
        (SERIES, "SeriesInstanceUID", Match.SINGLE, ("1.2.3",)),
        (INSTANCE, "SOPClassUID", Match.SINGLE, ("1.2.840",)),
    ]
    assert req.from_path == {STUDY, SERIES} and req.parent_uid_in_query == frozenset()
    assert req.filter_tags == {"0020000D", "0020000E", "00080016"}


def test_path_and_query_uid_both_apply() -> None:
    req = parse_qido(SERIES, [("StudyInstanceUID", "1.3")], study_uid="1.2")
    assert [c.values for c in req.query.constraints] == [("1.2",), ("1.3",)]
    assert req.from_path == {STUDY} and req.parent_uid_in_query == {STUDY}


def test_series_uid_in_query_of_instance_search() -> None:
    req = parse_qido(INSTANCE, [("SeriesInstanceUID", "1.2")], study_uid="1")
    assert req.parent_uid_in_query == {SERIES} and req.from_path == {STUDY}


@pytest.mark.parametrize("flag", [True, False])
def test_case_sensitive_is_passed_into_the_query(flag: bool) -> None:
    req = parse("PatientName=doe", case_sensitive=flag)
    assert req.query.case_sensitive is flag and req.query.level is STUDY


def test_constraint_order_follows_the_query_string() -> None:
    req = parse("Modality=CT&PatientID=1&AccessionNumber=2", SERIES)
    assert [c.keyword for c in req.query.constraints] == [
        "Modality", "PatientID", "AccessionNumber"]


# --- helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "tag"), [
    ("PatientName", "00100010"), ("0010,0010", "00100010"), ("7fe00010", "7FE00010"),
    ("00091010", "00091010"), ("0009,1010", "00091010"),
])
def test_tag_of(name: str, tag: str) -> None:
    assert tag_of(name) == tag


@pytest.mark.parametrize("name", ["patientname", "Nope", "123", ""])
def test_tag_of_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError):
        tag_of(name)


def test_lookup_attribute_repeating_group_and_multi_vr() -> None:
    overlay = lookup_attribute("60000010")
    assert overlay is not None and overlay.keyword == "OverlayRows"
    smallest = lookup_attribute("SmallestImagePixelValue")
    assert smallest is not None and smallest.vr == "US"


def test_no_warnings_without_unsupported_parameters() -> None:
    assert warning_texts(parse(OHIF_LIST)) == []
