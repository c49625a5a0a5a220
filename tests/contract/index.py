"""The ``Index`` contract: mix ``IndexContract`` into a ``Test*`` class that provides an
``index`` fixture (an empty index)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import pytest

from backends import matching
from backends.base import Constraint, Index, Level, Match, PatientUsage, Query, Removed, Usage
from tests.contract.records import (
    CT_IMAGE,
    MR_IMAGE,
    constraint,
    make_record,
    orthanc_id,
    query,
    single,
    uid,
    value,
)
from tests.contract.resources import ResourceIndexContract

SR_DOCUMENT = "1.2.840.10008.5.1.4.1.1.88.22"
ALL_STUDIES = ["1.1", "1.2", "1.3", "1.4", "1.5"]
ALL_SERIES = ["1.1.1", "1.1.2", "1.2.1", "1.3.1", "1.4.1", "1.5.1"]
# Instance order: by study, series, then InstanceNumber (missing last).
ALL_INSTANCES = ["1.1.1.2", "1.1.1.1", "1.1.1.3", "1.1.2.1", "1.2.1.1", "1.2.1.2", "1.3.1.1",
                 "1.4.1.1", "1.5.1.1"]

STUDY_A = {"PatientName": "Müller^Hans", "PatientID": "PID-a", "StudyDate": "20200110",
           "StudyTime": "083000", "AccessionNumber": "ACC[1]", "StudyDescription": "Chest CT",
           "InstitutionName": "General Hospital"}
STUDY_B = {"PatientName": "Doe^John", "PatientID": "PID-b", "StudyDate": "20200120",
           "StudyTime": "235900", "AccessionNumber": "ACC1", "StudyDescription": "brain MR",
           "InstitutionName": "General Clinic", "Modality": "MR", "SOPClassUID": MR_IMAGE,
           "ProtocolName": "Brain", "OperatorsName": "Brown^Alice=ブラウン^アリス"}
STUDY_C = {"PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう", "PatientID": "pid-c",
           "StudyDate": "20200201", "StudyTime": None, "AccessionNumber": None,
           "InstitutionName": ""}
STUDY_D = {"PatientName": "Smith[1]^Ann", "PatientID": "PID-d", "StudyDate": "20191231",
           "StudyTime": "120000", "InstitutionName": "general hospital", "Modality": "MR"}
STUDY_E = {"PatientName": "Smith1^Ann", "PatientID": "PID-e", "StudyDate": "20200301",
           "Modality": "US"}


def archive() -> list[Any]:
    """Five studies, six series, nine instances covering every matching case."""
    ct = {"ProtocolName": "Thorax Routine", **STUDY_A}
    sr = {**STUDY_A, "Modality": "SR", "SOPClassUID": SR_DOCUMENT, "SeriesNumber": 2}
    return [
        make_record("1.1", "1.1.1", "1.1.1.1", InstanceNumber=2, **ct),
        make_record("1.1", "1.1.1", "1.1.1.2", InstanceNumber=1, **ct),
        make_record("1.1", "1.1.1", "1.1.1.3", Rows=256, **ct),
        make_record("1.1", "1.1.2", "1.1.2.1", **sr),
        make_record("1.2", "1.2.1", "1.2.1.1", InstanceNumber=1, ImageType="ORIGINAL\\PRIMARY",
                    AcquisitionDate="20200120", AcquisitionTime="100000", **STUDY_B),
        make_record("1.2", "1.2.1", "1.2.1.2", InstanceNumber=2, ImageType="DERIVED\\SECONDARY",
                    AcquisitionDate="20200120", AcquisitionTime="140000", **STUDY_B),
        make_record("1.3", "1.3.1", "1.3.1.1", **STUDY_C),
        make_record("1.4", "1.4.1", "1.4.1.1", **STUDY_D),
        make_record("1.5", "1.5.1", "1.5.1.1", **STUDY_E),
    ]


SIZE = 1234  # make_record's default size
# Patients of :func:`archive`, in the order they were first stored: instances per patient.
ARCHIVE_PATIENTS = {"PID-a": 4, "PID-b": 2, "pid-c": 1, "PID-d": 1, "PID-e": 1}


def patient(patient_id: str) -> str:
    """The patient key make_record gives a PatientID."""
    return orthanc_id(patient_id)


def order(index: Index, *exclude: str) -> list[str]:
    """PatientIDs of the archive in recycling order (least recently stored first)."""
    names = {patient(p): p for p in [*ARCHIVE_PATIENTS, "P1", "X", "Y"]}
    return [names[p.patient_key]
            for p in index.oldest_patients(100, [patient(e) for e in exclude])]


def found(index: Index, level: Level, *constraints: Any, **kw: Any) -> list[str]:
    """UIDs of the matches of a search, in result order."""
    results = index.search(Query(level, tuple(constraints), **kw))
    attrs = {Level.STUDY: "study", Level.SERIES: "series", Level.INSTANCE: "instance"}[level]
    return [uid(getattr(r, attrs), level) for r in results]


class IndexContract(ResourceIndexContract):
    """Behaviour every index shares (its Orthanc resource model: ResourceIndexContract)."""

    @pytest.fixture
    def keys(self, index: Index) -> dict[str, str]:
        """Fill the index with :func:`archive`; SOPInstanceUID -> storage key."""
        records = archive()
        for record in records:
            assert index.add_instance(record) is None
        return {record.uid(Level.INSTANCE): record.storage_key for record in records}

    # -- add and replace ---------------------------------------------------------------------

    def test_empty(self, index: Index) -> None:
        assert index.search(Query(Level.STUDY)) == []
        assert index.instances("1.1") == []
        assert index.metadata("1.1") == []
        assert index.find_instance("1.1.1.1") is None

    def test_replace_returns_old_key(self, index: Index) -> None:
        first = make_record("1", "1.1", "1.1.1")
        assert index.add_instance(first) is None
        second = make_record("1", "1.1", "1.1.1")
        assert index.add_instance(second) == first.storage_key
        assert index.add_instance(second) is None  # same blob: nothing to delete
        assert [i.storage_key for i in index.instances("1")] == [second.storage_key]

    def test_replace_refreshes_attributes_and_keeps_order(self, index: Index,
                                                          keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.1", "1.1.1", "1.1.1.3", InstanceNumber=0,
                                       PatientName="Renamed^Patient", Modality="MR"))
        assert found(index, Level.STUDY) == ALL_STUDIES
        assert found(index, Level.STUDY, single("PatientName", "renamed^patient")) == ["1.1"]
        assert found(index, Level.STUDY, single("PatientName", "müller^hans")) == []
        assert found(index, Level.SERIES, single("Modality", "MR"))[0] == "1.1.1"
        assert [i.sop_uid for i in index.instances("1.1", "1.1.1")] == [
            "1.1.1.3", "1.1.1.2", "1.1.1.1"]

    def test_replace_moves_instance_to_new_parents(self, index: Index,
                                                   keys: dict[str, str]) -> None:
        moved = make_record("1.9", "1.9.1", "1.5.1.1")
        assert index.add_instance(moved) == keys["1.5.1.1"]
        assert found(index, Level.STUDY) == ["1.1", "1.2", "1.3", "1.4", "1.9"]
        assert index.instances("1.5") == []
        assert [i.series_uid for i in index.instances("1.9")] == ["1.9.1"]
        assert index.find_instance("1.5.1.1").study_uid == "1.9"  # type: ignore[union-attr]

    def test_moving_one_of_several_keeps_old_parents(self, index: Index,
                                                     keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.2", "1.2.9", "1.2.1.2", **STUDY_B))
        assert found(index, Level.SERIES, single("StudyInstanceUID", "1.2")) == ["1.2.1",
                                                                                  "1.2.9"]
        assert [i.sop_uid for i in index.instances("1.2", "1.2.1")] == ["1.2.1.1"]

    # -- single value and list matching (PS3.4 C.2.2.2.1, C.2.2.2.2) -------------------------

    @pytest.mark.parametrize(("keyword", "value_", "expected"), [
        ("PatientID", "PID-b", ["1.2"]),
        ("PatientID", "pid-b", ["1.2"]),
        ("PatientName", "muller^hans", ["1.1"]),
        ("PatientName", "MÜLLER^HANS", ["1.1"]),
        ("PatientName", "Doe", []),
        ("PatientName", "山田^太郎", ["1.3"]),
        ("PatientName", "やまだ^たろう", ["1.3"]),
        ("StudyInstanceUID", "1.3", ["1.3"]),
        ("StudyDate", "20200120", ["1.2"]),
        ("StudyDate", "2020.01.20", ["1.2"]),
        ("StudyTime", "08:30:00", ["1.1"]),
        ("AccessionNumber", "acc[1]", ["1.1"]),
        ("StudyDescription", "BRAIN mr", ["1.2"]),
    ])
    def test_single_value(self, index: Index, keys: dict[str, str], keyword: str, value_: str,
                          expected: list[str]) -> None:
        assert found(index, Level.STUDY, single(keyword, value_)) == expected

    @pytest.mark.parametrize(("keyword", "value_", "expected"), [
        ("PatientID", "pid-b", []),
        ("PatientID", "pid-c", ["1.3"]),
        ("PatientName", "muller^hans", []),
        ("PatientName", "MÜLLER^HANS", []),
        ("PatientName", "Müller^Hans", ["1.1"]),
        ("InstitutionName", "general hospital", ["1.4"]),
    ])
    def test_single_value_case_sensitive(self, index: Index, keys: dict[str, str], keyword: str,
                                         value_: str, expected: list[str]) -> None:
        hits = found(index, Level.STUDY, single(keyword, value_), case_sensitive=True)
        assert hits == expected

    def test_list_of_uids(self, index: Index, keys: dict[str, str]) -> None:
        uids = constraint("StudyInstanceUID", Match.LIST, "1.4", "1.2", "9.9")
        assert found(index, Level.STUDY, uids) == ["1.2", "1.4"]
        sops = constraint("SOPInstanceUID", Match.LIST, "1.1.1.3", "1.2.1.1")
        assert found(index, Level.INSTANCE, sops) == ["1.1.1.3", "1.2.1.1"]

    def test_list_of_values(self, index: Index, keys: dict[str, str]) -> None:
        accessions = constraint("AccessionNumber", Match.LIST, "ACC1", "acc[1]")
        assert found(index, Level.STUDY, accessions) == ["1.1", "1.2"]
        assert found(index, Level.STUDY, accessions, case_sensitive=True) == ["1.2"]
        modalities = constraint("Modality", Match.LIST, "SR", "US")
        assert found(index, Level.SERIES, modalities) == ["1.1.2", "1.5.1"]

    def test_numbers(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.SERIES, single("SeriesNumber", "2")) == ["1.1.2"]
        assert found(index, Level.INSTANCE, single("Rows", "256")) == ["1.1.1.3"]
        numbers = constraint("InstanceNumber", Match.LIST, "1", "2")
        assert found(index, Level.INSTANCE, numbers) == [
            "1.1.1.2", "1.1.1.1", "1.2.1.1", "1.2.1.2"]

    # -- wildcards (C.2.2.2.4) ---------------------------------------------------------------

    @pytest.mark.parametrize(("pattern", "expected"), [
        ("doe*", ["1.2"]),
        ("*^j?hn", ["1.2"]),
        ("m?ller*", ["1.1"]),
        ("smith[1]*", ["1.4"]),
        ("*]^ann", ["1.4"]),
        ("smith?^ann", ["1.5"]),
        ("山田*", ["1.3"]),
        ("*たろう", ["1.3"]),
        ("*", ALL_STUDIES),
        ("x*", []),
    ])
    def test_wildcard(self, index: Index, keys: dict[str, str], pattern: str,
                      expected: list[str]) -> None:
        wildcard = constraint("PatientName", Match.WILDCARD, pattern)
        assert found(index, Level.STUDY, wildcard) == expected

    def test_wildcard_case_sensitive(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY, constraint("PatientName", Match.WILDCARD, "doe*"),
                     case_sensitive=True) == []
        assert found(index, Level.STUDY, constraint("PatientName", Match.WILDCARD, "D*"),
                     case_sensitive=True) == ["1.2"]

    def test_universal_wildcard_matches_missing(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY,
                     constraint("StudyDescription", Match.WILDCARD, "*")) == ALL_STUDIES
        assert found(index, Level.STUDY, single("StudyDescription", "")) == ALL_STUDIES
        # Not universal: a missing or empty attribute does not match (C.2.2.2).
        assert found(index, Level.STUDY,
                     constraint("StudyDescription", Match.WILDCARD, "*?*")) == ["1.1", "1.2"]

    # -- ranges (C.2.2.2.5) ------------------------------------------------------------------

    @pytest.mark.parametrize(("lo", "hi", "expected"), [
        ("20200101", "20200131", ["1.1", "1.2"]),
        ("", "20200110", ["1.1", "1.4"]),
        ("20200201", "", ["1.3", "1.5"]),
        ("20200120", "20200120", ["1.2"]),
        ("20210101", "", []),
    ])
    def test_date_range(self, index: Index, keys: dict[str, str], lo: str, hi: str,
                        expected: list[str]) -> None:
        dates = constraint("StudyDate", Match.RANGE, lo, hi)
        assert found(index, Level.STUDY, dates) == expected

    def test_time_range(self, index: Index, keys: dict[str, str]) -> None:
        times = constraint("StudyTime", Match.RANGE, "080000", "100000")
        assert found(index, Level.STUDY, times) == ["1.1"]
        assert found(index, Level.STUDY, constraint("StudyTime", Match.RANGE, "230000", "")) == [
            "1.2"]

    @pytest.mark.parametrize(("lo", "hi", "expected"), [
        ("20200110080000", "20200120235959", ["1.1", "1.2"]),
        ("20200110090000", "20200120235959", ["1.2"]),
        ("20200110090000", "20200201", ["1.2", "1.3"]),  # a date without time: the whole day
        ("20200201120000", "", ["1.3", "1.5"]),
        ("", "20200110083000", ["1.1", "1.4"]),
    ])
    def test_combined_date_time_range(self, index: Index, keys: dict[str, str], lo: str, hi: str,
                                      expected: list[str]) -> None:
        combined = constraint("StudyDate", Match.RANGE, lo, hi, also="StudyTime")
        assert found(index, Level.STUDY, combined) == expected

    def test_combined_range_on_other_attributes(self, index: Index, keys: dict[str, str]) -> None:
        combined = constraint("AcquisitionDate", Match.RANGE, "20200120120000", "",
                              also="AcquisitionTime")
        assert found(index, Level.INSTANCE, combined) == ["1.2.1.2"]

    # -- fuzzy person names ------------------------------------------------------------------

    @pytest.mark.parametrize(("words", "expected"), [
        ("hans mu", ["1.1"]),
        ("jo", ["1.2"]),
        ("john doe", ["1.2"]),
        ("JOHN^D", ["1.2"]),
        ("ohn", []),
        ("jo smi", []),
        ("yamada 山田", ["1.3"]),  # words from any component group of the name
        ("tar", ["1.3"]),
        ("山田", ["1.3"]),
        ("ann smith[1]", ["1.4"]),
        ("an sm", ["1.4", "1.5"]),
    ])
    def test_fuzzy_person_name(self, index: Index, keys: dict[str, str], words: str,
                               expected: list[str]) -> None:
        fuzzy = constraint("PatientName", Match.FUZZY, words)
        assert found(index, Level.STUDY, fuzzy) == expected
        # The same words given as separate values: all of them must be found.
        split = constraint("PatientName", Match.FUZZY, *words.replace("^", " ").split())
        assert found(index, Level.STUDY, split) == expected

    # -- constraints on other levels ---------------------------------------------------------

    @pytest.mark.parametrize(("modalities", "expected"), [
        (("SR",), ["1.1"]),
        (("CT",), ["1.1", "1.3"]),
        (("SR", "US"), ["1.1", "1.5"]),
        (("mr",), ["1.2", "1.4"]),
    ])
    def test_modality_any_series(self, index: Index, keys: dict[str, str],
                                 modalities: tuple[str, ...], expected: list[str]) -> None:
        kind = Match.LIST if len(modalities) > 1 else Match.SINGLE
        assert found(index, Level.STUDY, constraint("Modality", kind, *modalities)) == expected
        in_study = constraint("ModalitiesInStudy", kind, *modalities, level=Level.STUDY)
        assert found(index, Level.STUDY, in_study) == expected

    def test_computed_attributes_as_keys(self, index: Index, keys: dict[str, str]) -> None:
        in_study = constraint("ModalitiesInStudy", Match.SINGLE, "SR", level=Level.STUDY)
        assert found(index, Level.SERIES, in_study) == ["1.1.1", "1.1.2"]
        assert found(index, Level.INSTANCE, in_study) == ALL_INSTANCES[:4]
        classes = constraint("SOPClassesInStudy", Match.LIST, MR_IMAGE, SR_DOCUMENT,
                             level=Level.STUDY)
        assert found(index, Level.STUDY, classes) == ["1.1", "1.2"]
        assert found(index, Level.SERIES, classes) == ["1.1.1", "1.1.2", "1.2.1"]
        counts = {"NumberOfStudyRelatedSeries": (Level.STUDY, "2", ["1.1"]),
                  "NumberOfStudyRelatedInstances": (Level.STUDY, "2", ["1.2"])}
        for keyword, (level, number, expected) in counts.items():
            assert found(index, Level.STUDY, single(keyword, number, level=level)) == expected
        per_series = single("NumberOfSeriesRelatedInstances", "3", level=Level.SERIES)
        assert found(index, Level.SERIES, per_series) == ["1.1.1"]
        assert found(index, Level.STUDY, per_series) == ["1.1"]
        assert found(index, Level.INSTANCE, per_series) == ALL_INSTANCES[:3]

    def test_modality_wildcard_in_study_search(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY, constraint("Modality", Match.WILDCARD, "?r")) == [
            "1.1", "1.2", "1.4"]

    def test_instance_constraints_in_study_search(self, index: Index,
                                                  keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY, single("SOPClassUID", SR_DOCUMENT)) == ["1.1"]
        assert found(index, Level.STUDY, single("SOPClassUID", CT_IMAGE)) == [
            "1.1", "1.3", "1.4", "1.5"]
        # Several child constraints are met by the same child.
        assert found(index, Level.STUDY, single("Modality", "CT"),
                     single("InstanceNumber", "2")) == ["1.1"]
        assert found(index, Level.STUDY, single("Modality", "SR"),
                     single("InstanceNumber", "2")) == []

    def test_parent_constraints(self, index: Index, keys: dict[str, str]) -> None:
        doe = constraint("PatientName", Match.WILDCARD, "doe*")
        assert found(index, Level.SERIES, doe) == ["1.2.1"]
        assert found(index, Level.INSTANCE, doe) == ["1.2.1.1", "1.2.1.2"]
        assert found(index, Level.SERIES, single("StudyInstanceUID", "1.1")) == ["1.1.1", "1.1.2"]
        assert found(index, Level.INSTANCE, single("StudyInstanceUID", "1.1"),
                     single("Modality", "ct")) == ["1.1.1.2", "1.1.1.1", "1.1.1.3"]

    def test_child_constraint_in_series_search(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.SERIES, single("InstanceNumber", "2")) == ["1.1.1", "1.2.1"]

    # -- attributes that are not indexed columns ---------------------------------------------

    def test_other_attributes(self, index: Index, keys: dict[str, str]) -> None:
        general = constraint("InstitutionName", Match.WILDCARD, "general*")
        assert found(index, Level.STUDY, general) == ["1.1", "1.2", "1.4"]
        assert found(index, Level.STUDY, general, case_sensitive=True) == ["1.4"]
        assert found(index, Level.STUDY, single("InstitutionName", "GENERAL CLINIC")) == ["1.2"]
        routine = constraint("ProtocolName", Match.WILDCARD, "*routine")
        assert found(index, Level.SERIES, routine) == ["1.1.1"]

    def test_other_attributes_missing_or_empty(self, index: Index, keys: dict[str, str]) -> None:
        anything = constraint("InstitutionName", Match.WILDCARD, "?*")
        assert found(index, Level.STUDY, anything) == ["1.1", "1.2", "1.4"]
        universal = constraint("InstitutionName", Match.WILDCARD, "*")
        assert found(index, Level.STUDY, universal) == ALL_STUDIES

    def test_other_attributes_multi_valued(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.INSTANCE, single("ImageType", "derived")) == ["1.2.1.2"]
        assert found(index, Level.INSTANCE, single("ImageType", "ORIGINAL")) == ["1.2.1.1"]
        types = constraint("ImageType", Match.LIST, "PRIMARY", "SECONDARY")
        assert found(index, Level.INSTANCE, types) == ["1.2.1.1", "1.2.1.2"]

    @pytest.mark.parametrize(("other", "expected"), [
        (constraint("OperatorsName", Match.FUZZY, "ali br"), ["1.2.1"]),
        (constraint("OperatorsName", Match.FUZZY, "lice"), []),
        (constraint("OperatorsName", Match.WILDCARD, "ブラウン*"), ["1.2.1"]),
        (single("OperatorsName", "BROWN^ALICE"), ["1.2.1"]),
        (constraint("AcquisitionDate", Match.RANGE, "20200101", ""), ["1.2.1"]),
        (constraint("AcquisitionDate", Match.RANGE, "", "20200119"), []),
    ])
    def test_other_attributes_every_kind(self, index: Index, keys: dict[str, str],
                                         other: Constraint, expected: list[str]) -> None:
        assert found(index, Level.SERIES, other) == expected

    def test_other_attributes_of_children(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY, single("ProtocolName", "brain")) == ["1.2"]
        assert found(index, Level.STUDY, single("ImageType", "DERIVED")) == ["1.2"]
        assert found(index, Level.SERIES, single("ImageType", "DERIVED")) == ["1.2.1"]

    def test_other_and_column_attributes_together(self, index: Index,
                                                  keys: dict[str, str]) -> None:
        general = constraint("InstitutionName", Match.WILDCARD, "general*")
        dates = constraint("StudyDate", Match.RANGE, "20200101", "")
        assert found(index, Level.STUDY, general, dates) == ["1.1", "1.2"]

    @pytest.mark.parametrize("case_sensitive", [False, True])
    @pytest.mark.parametrize("key", [
        single("PatientName", "yamada^tarou"),
        single("PatientName", "Smith1^Ann"),
        constraint("PatientName", Match.WILDCARD, "*^a?n"),
        constraint("PatientName", Match.WILDCARD, "S*[*"),
        constraint("PatientName", Match.FUZZY, "hans"),
        constraint("PatientName", Match.LIST, "doe^john", "Smith[1]^Ann"),
        constraint("PatientID", Match.WILDCARD, "pid-?"),
        constraint("StudyDescription", Match.WILDCARD, "*ct"),
        constraint("StudyDate", Match.RANGE, "20200115", "20200215"),
        constraint("StudyTime", Match.RANGE, "", "110000"),
        constraint("AccessionNumber", Match.WILDCARD, "acc[?]"),
    ], ids=repr)
    def test_columns_agree_with_reference_matching(self, index: Index, keys: dict[str, str],
                                                   key: Constraint, case_sensitive: bool) -> None:
        """The database answers what PS3.4 matching on the DICOM JSON answers."""
        studies = {r.uid(Level.STUDY): r.study for r in archive()}
        expected = [uid_ for uid_, attrs in studies.items()
                    if matching.matches(key, attrs.get(key.tag), case_sensitive)]
        assert found(index, Level.STUDY, key, case_sensitive=case_sensitive) == expected

    # -- pages and order ---------------------------------------------------------------------

    def test_order(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.STUDY) == ALL_STUDIES
        assert found(index, Level.SERIES) == ALL_SERIES
        assert found(index, Level.INSTANCE) == ALL_INSTANCES

    @pytest.mark.parametrize(("limit", "offset", "expected"), [
        (2, 0, ["1.1", "1.2"]),
        (2, 1, ["1.2", "1.3"]),
        (None, 3, ["1.4", "1.5"]),
        (10, 4, ["1.5"]),
        (3, 5, []),
        (0, 0, []),
    ])
    def test_limit_offset(self, index: Index, keys: dict[str, str], limit: int | None,
                          offset: int, expected: list[str]) -> None:
        assert found(index, Level.STUDY, limit=limit, offset=offset) == expected

    @pytest.mark.parametrize(("limit", "offset", "expected"), [
        (1, 0, ["1.1"]),
        (1, 1, ["1.2"]),
        (5, 2, ["1.4"]),
        (None, 1, ["1.2", "1.4"]),
        (2, 3, []),
    ])
    def test_limit_offset_with_other_attributes(self, index: Index, keys: dict[str, str],
                                                limit: int | None, offset: int,
                                                expected: list[str]) -> None:
        general = constraint("InstitutionName", Match.WILDCARD, "general*")
        assert found(index, Level.STUDY, general, limit=limit, offset=offset) == expected

    def test_limit_offset_instances(self, index: Index, keys: dict[str, str]) -> None:
        assert found(index, Level.INSTANCE, limit=3, offset=2) == ALL_INSTANCES[2:5]
        derived = single("ImageType", "DERIVED")
        assert found(index, Level.SERIES, derived, limit=1, offset=0) == ["1.2.1"]

    # -- results and computed attributes (PS3.18 §10.6.3.3) ----------------------------------

    def test_study_results(self, index: Index, keys: dict[str, str]) -> None:
        [a] = index.search(query(Level.STUDY, single("StudyInstanceUID", "1.1")))
        assert value(a.study, "PatientName") == [{"Alphabetic": "Müller^Hans"}]
        assert value(a.study, "StudyDate") == ["20200110"]
        assert value(a.study, "ModalitiesInStudy") == ["CT", "SR"]
        assert value(a.study, "SOPClassesInStudy") == sorted([CT_IMAGE, SR_DOCUMENT])
        assert value(a.study, "NumberOfStudyRelatedSeries") == [2]
        assert value(a.study, "NumberOfStudyRelatedInstances") == [4]
        assert a.series == {} and a.instance == {}
        [c] = index.search(query(Level.STUDY, single("StudyInstanceUID", "1.3")))
        assert value(c.study, "PatientName") == [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}]

    def test_computed_attributes_count_the_whole_study(self, index: Index,
                                                       keys: dict[str, str]) -> None:
        [a] = index.search(query(Level.STUDY, single("Modality", "SR")))
        assert value(a.study, "ModalitiesInStudy") == ["CT", "SR"]
        assert value(a.study, "NumberOfStudyRelatedInstances") == [4]

    def test_series_results(self, index: Index, keys: dict[str, str]) -> None:
        results = index.search(query(Level.SERIES, single("StudyInstanceUID", "1.1")))
        assert [value(r.series, "NumberOfSeriesRelatedInstances") for r in results] == [[3], [1]]
        assert [value(r.series, "Modality") for r in results] == [["CT"], ["SR"]]
        assert all(value(r.study, "NumberOfStudyRelatedSeries") == [2] for r in results)
        assert all(value(r.study, "PatientID") == ["PID-a"] for r in results)
        assert results[0].instance == {}

    def test_instance_results(self, index: Index, keys: dict[str, str]) -> None:
        [r] = index.search(query(Level.INSTANCE, single("SOPInstanceUID", "1.2.1.2")))
        assert value(r.instance, "InstanceNumber") == [2]
        assert value(r.instance, "SOPClassUID") == [MR_IMAGE]
        assert value(r.series, "SeriesInstanceUID") == ["1.2.1"]
        assert value(r.series, "NumberOfSeriesRelatedInstances") == [2]
        assert value(r.study, "PatientName") == [{"Alphabetic": "Doe^John"}]

    def test_results_do_not_share_state(self, index: Index, keys: dict[str, str]) -> None:
        first, second = index.search(query(Level.SERIES, single("StudyInstanceUID", "1.1")))
        first.study.clear()
        assert value(second.study, "PatientID") == ["PID-a"]

    # -- instances, metadata, find_instance --------------------------------------------------

    def test_instances(self, index: Index, keys: dict[str, str]) -> None:
        assert [i.sop_uid for i in index.instances("1.1")] == ALL_INSTANCES[:4]
        assert [i.sop_uid for i in index.instances("1.1", "1.1.2")] == ["1.1.2.1"]
        [one] = index.instances("1.1", "1.1.1", "1.1.1.1")
        assert (one.study_uid, one.series_uid, one.sop_uid) == ("1.1", "1.1.1", "1.1.1.1")
        assert one.sop_class_uid == CT_IMAGE
        assert one.storage_key == keys["1.1.1.1"]
        assert (one.size, one.instance_number) == (1234, 2)
        assert one.transfer_syntax == "1.2.840.10008.1.2.1"
        assert [list(map(tuple, f)) for f in one.frames] == [[(1200, 34)]]
        assert len(one.instance_key) == 44
        assert index.instances("1.1", sop_uid="1.1.1.3")[0].instance_number is None

    @pytest.mark.parametrize(("study", "series", "sop"), [
        ("9.9", None, None),
        ("1.2", "1.1.1", None),
        ("1.1", "1.1.2", "1.1.1.1"),
        ("1.2", None, "1.1.1.1"),
        ("1.1", "1.1.1", "9.9"),
    ])
    def test_instances_only_under_their_parents(self, index: Index, keys: dict[str, str],
                                                study: str, series: str | None,
                                                sop: str | None) -> None:
        assert index.instances(study, series, sop) == []
        assert index.metadata(study, series, sop) == []

    def test_metadata(self, index: Index, keys: dict[str, str]) -> None:
        texts = index.metadata("1.1")
        assert [uid(json.loads(t), Level.INSTANCE) for t in texts] == ALL_INSTANCES[:4]
        [one] = index.metadata("1.2", "1.2.1", "1.2.1.2")
        assert value(json.loads(one), "ImageType") == ["DERIVED", "SECONDARY"]
        assert value(json.loads(one), "PatientName") == [{"Alphabetic": "Doe^John"}]

    def test_find_instance(self, index: Index, keys: dict[str, str]) -> None:
        found_ = index.find_instance("1.2.1.1")
        assert found_ is not None
        assert (found_.study_uid, found_.series_uid) == ("1.2", "1.2.1")
        assert found_.storage_key == keys["1.2.1.1"]
        assert index.find_instance("9.9") is None

    # -- remove ------------------------------------------------------------------------------

    def test_remove_instance(self, index: Index, keys: dict[str, str]) -> None:
        assert index.remove("1.1", "1.1.1", "1.1.1.1") == Removed((keys["1.1.1.1"],), 1)
        assert [i.sop_uid for i in index.instances("1.1")] == ["1.1.1.2", "1.1.1.3", "1.1.2.1"]
        [a] = index.search(query(Level.STUDY, single("StudyInstanceUID", "1.1")))
        assert value(a.study, "NumberOfStudyRelatedInstances") == [3]

    def test_remove_last_instance_removes_empty_parents(self, index: Index,
                                                        keys: dict[str, str]) -> None:
        assert index.remove("1.1", "1.1.2", "1.1.2.1").instances == 1
        assert found(index, Level.SERIES, single("StudyInstanceUID", "1.1")) == ["1.1.1"]
        [a] = index.search(query(Level.STUDY, single("StudyInstanceUID", "1.1")))
        assert value(a.study, "ModalitiesInStudy") == ["CT"]
        assert index.remove("1.5", sop_uid="1.5.1.1").storage_keys == (keys["1.5.1.1"],)
        assert found(index, Level.STUDY) == ALL_STUDIES[:4]
        assert found(index, Level.SERIES) == ["1.1.1", "1.2.1", "1.3.1", "1.4.1"]

    def test_remove_series(self, index: Index, keys: dict[str, str]) -> None:
        removed = index.remove("1.1", "1.1.1")
        assert removed == Removed(tuple(keys[k] for k in ALL_INSTANCES[:3]), 3)
        assert found(index, Level.SERIES, single("StudyInstanceUID", "1.1")) == ["1.1.2"]
        assert index.remove("1.1", "1.1.2").instances == 1
        assert found(index, Level.STUDY) == ALL_STUDIES[1:]

    def test_remove_study(self, index: Index, keys: dict[str, str]) -> None:
        removed = index.remove("1.1")
        assert removed == Removed(tuple(keys[k] for k in ALL_INSTANCES[:4]), 4)
        assert found(index, Level.STUDY) == ALL_STUDIES[1:]
        assert found(index, Level.INSTANCE) == ALL_INSTANCES[4:]
        assert index.instances("1.1") == [] and index.find_instance("1.1.1.1") is None

    @pytest.mark.parametrize(("study", "series", "sop"), [
        ("9.9", None, None), ("1.2", "1.1.1", None), ("1.2", "1.2.1", "1.1.1.1"),
    ])
    def test_remove_nothing(self, index: Index, keys: dict[str, str], study: str,
                            series: str | None, sop: str | None) -> None:
        assert index.remove(study, series, sop) == Removed((), 0)
        assert found(index, Level.INSTANCE) == ALL_INSTANCES

    def test_add_after_remove(self, index: Index, keys: dict[str, str]) -> None:
        index.remove("1.1")
        record = make_record("1.1", "1.1.1", "1.1.1.1")
        assert index.add_instance(record) is None
        assert found(index, Level.STUDY) == ["1.2", "1.3", "1.4", "1.5", "1.1"]

    def test_remove_only_while_the_row_refers_to_the_blob(self, index: Index,
                                                          keys: dict[str, str]) -> None:
        """A repair removing a row whose blob is lost never takes the row a concurrent STOW
        of the same instance just wrote with another blob."""
        stale = keys["1.1.1.1"]
        newer = make_record("1.1", "1.1.1", "1.1.1.1", InstanceNumber=2, **STUDY_A)
        index.add_instance(newer)
        assert index.remove("1.1", "1.1.1", "1.1.1.1", storage_key=stale) == Removed((), 0)
        kept = index.find_instance("1.1.1.1")
        assert kept is not None and kept.storage_key == newer.storage_key
        assert index.remove("1.5", "1.5.1", "1.5.1.1", storage_key=keys["1.5.1.1"]) == Removed(
            (keys["1.5.1.1"],), 1)
        assert found(index, Level.STUDY) == ALL_STUDIES[:4]  # the emptied study went too
        assert index.remove("1.2", sop_uid="1.2.1.1", storage_key=keys["1.2.1.1"]).instances == 1
        with pytest.raises(ValueError):
            index.remove("1.1", "1.1.1", storage_key=newer.storage_key)
        assert len(index.instances("1.1")) == 4

    # -- storage keys (consistency checks) ---------------------------------------------------

    def test_storage_keys_of_an_empty_index(self, index: Index) -> None:
        assert list(index.storage_keys()) == []

    def test_storage_keys_are_every_referenced_blob(self, index: Index,
                                                    keys: dict[str, str]) -> None:
        listed = list(index.storage_keys())
        assert sorted(listed) == sorted(keys.values())  # each once

    def test_storage_keys_follow_replacements_and_removals(self, index: Index,
                                                          keys: dict[str, str]) -> None:
        replacement = make_record("1.1", "1.1.1", "1.1.1.1", InstanceNumber=2, **STUDY_A)
        index.add_instance(replacement)
        index.remove("1.2")
        expected = {k for sop, k in keys.items() if not sop.startswith("1.2.")}
        expected = expected - {keys["1.1.1.1"]} | {replacement.storage_key}
        assert set(index.storage_keys()) == expected
        assert len(list(index.storage_keys())) == len(expected)

    def test_storage_keys_stream_page_by_page(self, index: Index, keys: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """Pages of KEYS_PAGE rows; nothing is held between pages: the index takes writes
        from another thread while a listing is half-way."""
        monkeypatch.setattr(sys.modules[type(index).__module__], "KEYS_PAGE", 2)
        listing = index.storage_keys()
        first = [next(listing), next(listing), next(listing)]
        added = make_record("1.9", "1.9.1", "1.9.1.1")
        writer = threading.Thread(target=index.add_instance, args=(added,))
        writer.start()
        writer.join(timeout=20)
        assert not writer.is_alive()
        listed = first + list(listing)
        # a row added during the listing may or may not be in it; every other one is, once
        assert sorted(k for k in listed if k != added.storage_key) == sorted(keys.values())
        assert len(listed) == len(set(listed))

    # -- keep the first (OverwriteInstances: false) ------------------------------------------

    def test_add_if_absent_keeps_the_first(self, index: Index) -> None:
        first = make_record("1", "1.1", "1.1.1", PatientName="First^One")
        assert index.add_instance_if_absent(first) is True
        second = make_record("1", "1.1", "1.1.1", PatientName="Second^Two", size=99)
        assert index.add_instance_if_absent(second) is False
        [kept] = index.instances("1")
        assert kept.storage_key == first.storage_key and kept.size == SIZE
        # nothing of the second was written, not even the study's attributes
        assert found(index, Level.STUDY, single("PatientName", "first^one")) == ["1"]
        assert index.usage() == Usage(SIZE, 1)

    def test_add_if_absent_stores_a_new_instance_like_add(self, index: Index,
                                                           keys: dict[str, str]) -> None:
        record = make_record("1.1", "1.1.1", "1.1.1.9", InstanceNumber=9, **STUDY_A)
        assert index.add_instance_if_absent(record) is True
        assert "1.1.1.9" in [i.sop_uid for i in index.instances("1.1", "1.1.1")]
        assert index.usage(patient("PID-a")).patient_size == 5 * SIZE

    def test_concurrent_adds_if_absent_insert_once(self, index: Index) -> None:
        records = [make_record("1", "1.1", "1.1.1") for _ in range(8)]
        results: dict[str, bool] = {}
        barrier = threading.Barrier(len(records))

        def add(record: Any) -> None:
            barrier.wait(timeout=30)
            results[record.storage_key] = index.add_instance_if_absent(record)

        threads = [threading.Thread(target=add, args=(r,)) for r in records]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [key for key, added in results.items() if added]
        assert len(results) == len(records) and len(winners) == 1
        assert [i.storage_key for i in index.instances("1")] == winners
        assert index.usage() == Usage(SIZE, 1)

    # -- storage usage (MaximumStorageSize, MaximumPatientCount) -----------------------------

    def test_usage_of_an_empty_index(self, index: Index) -> None:
        assert index.usage() == Usage(0, 0, None)
        assert index.usage(patient("P1")) == Usage(0, 0, None)
        assert index.oldest_patients(10) == []

    def test_usage_counts_bytes_and_patients(self, index: Index, keys: dict[str, str]) -> None:
        assert index.usage() == Usage(9 * SIZE, 5)
        assert index.usage(patient("PID-a")) == Usage(9 * SIZE, 5, 4 * SIZE)
        assert index.usage(patient("nobody")).patient_size is None

    def test_usage_follows_replacements_and_removals(self, index: Index,
                                                     keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1", size=5000, **STUDY_B))
        assert index.usage(patient("PID-b")) == Usage(8 * SIZE + 5000, 5, SIZE + 5000)
        index.add_instance(make_record("1.2", "1.2.1", "1.2.1.1", size=5000, **STUDY_B))
        assert index.usage().size == 8 * SIZE + 5000  # the same size again: no change
        index.remove("1.2", "1.2.1", "1.2.1.2")
        assert index.usage(patient("PID-b")) == Usage(7 * SIZE + 5000, 5, 5000)
        index.remove("1.2")
        assert index.usage(patient("PID-b")) == Usage(7 * SIZE, 4, None)
        index.remove("1.1", "1.1.1")
        assert index.usage(patient("PID-a")) == Usage(4 * SIZE, 4, SIZE)
        for study in ["1.1", "1.3", "1.4", "1.5"]:
            index.remove(study)
        assert index.usage() == Usage(0, 0)
        assert index.oldest_patients(10) == []

    def test_usage_follows_a_study_moved_to_another_patient(self, index: Index) -> None:
        index.add_instance(make_record("1", "1.1", "1.1.1", PatientID="X", size=100))
        index.add_instance(make_record("1", "1.2", "1.2.1", PatientID="X", size=200))
        index.add_instance(make_record("2", "2.1", "2.1.1", PatientID="Y", size=400))
        # A new instance of study 1 names patient Y: the study and its instances follow.
        index.add_instance(make_record("1", "1.1", "1.1.2", PatientID="Y", size=800))
        assert index.usage(patient("Y")) == Usage(1500, 1, 1500)
        assert index.usage(patient("X")).patient_size is None
        assert [p.instances for p in index.oldest_patients(10)] == [4]
        # a series moved to a study of another patient takes its instances along
        index.add_instance(make_record("3", "3.1", "3.1.1", PatientID="X", size=10))
        index.add_instance(make_record("3", "1.2", "1.2.2", PatientID="X", size=20))
        assert index.usage(patient("X")) == Usage(1530, 2, 230)
        assert index.usage(patient("Y")).patient_size == 1300
        # an instance replaced under another patient moves alone
        index.add_instance(make_record("2", "2.1", "1.1.1", PatientID="Y", size=100))
        assert index.usage(patient("Y")).patient_size == 1300
        assert sorted(p.instances for p in index.oldest_patients(10)) == [3, 3]
        index.remove("1")
        index.remove("2")
        index.remove("3")
        assert index.usage() == Usage(0, 0) and index.oldest_patients(10) == []

    def test_oldest_patients_are_the_least_recently_stored(self, index: Index,
                                                          keys: dict[str, str]) -> None:
        assert order(index) == list(ARCHIVE_PATIENTS)
        oldest = index.oldest_patients(2)
        assert [(p.size, p.instances) for p in oldest] == [(4 * SIZE, 4), (2 * SIZE, 2)]
        assert all(isinstance(p, PatientUsage) for p in oldest)
        assert oldest[0].last_stored < oldest[1].last_stored
        # a new instance moves its patient last, and so does a replacement (a new blob)
        index.add_instance(make_record("1.1", "1.1.1", "1.1.1.9", **STUDY_A))
        assert order(index) == ["PID-b", "pid-c", "PID-d", "PID-e", "PID-a"]
        index.add_instance(make_record("1.3", "1.3.1", "1.3.1.1", **STUDY_C))
        assert order(index) == ["PID-b", "PID-d", "PID-e", "PID-a", "pid-c"]
        # a removal does not count as activity, nor does an instance kept as it was
        index.remove("1.2", "1.2.1", "1.2.1.1")
        index.add_instance_if_absent(make_record("1.4", "1.4.1", "1.4.1.1", **STUDY_D))
        assert order(index) == ["PID-b", "PID-d", "PID-e", "PID-a", "pid-c"]
        assert order(index, "PID-b", "PID-e") == ["PID-d", "PID-a", "pid-c"]
        assert len(index.oldest_patients(1, [patient("PID-b")])) == 1

    def test_remove_patient(self, index: Index, keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.9", "1.9.1", "1.9.1.1", **STUDY_A))
        removed = index.remove_patient(patient("PID-a"))
        assert sorted(removed.storage_keys) == sorted(
            [keys[k] for k in ALL_INSTANCES[:4]] + [index_key(removed, keys)])
        assert removed.instances == 5
        assert found(index, Level.STUDY) == ALL_STUDIES[1:]
        assert index.find_instance("1.1.1.1") is None and index.instances("1.9") == []
        assert index.usage() == Usage(5 * SIZE, 4)
        assert order(index) == ["PID-b", "pid-c", "PID-d", "PID-e"]
        assert index.remove_patient(patient("PID-a")) == Removed((), 0)

    def test_remove_patient_spares_one_stored_to_since(self, index: Index,
                                                       keys: dict[str, str]) -> None:
        [oldest] = index.oldest_patients(1)
        index.add_instance(make_record("1.1", "1.1.1", "1.1.1.9", **STUDY_A))  # meanwhile
        assert index.remove_patient(oldest.patient_key, oldest.last_stored) == Removed((), 0)
        assert len(index.instances("1.1")) == 5
        [now] = index.oldest_patients(1)
        assert now.patient_key == patient("PID-b")
        assert index.remove_patient(now.patient_key, now.last_stored).instances == 2
        assert index.usage() == Usage(8 * SIZE, 4)


def index_key(removed: Removed, keys: dict[str, str]) -> str:
    """The one removed key that is not in ``keys`` (an instance added by the test)."""
    [extra] = set(removed.storage_keys) - set(keys.values())
    return extra
