"""Orthanc options that change QIDO answers, through the Flask test client:
ExtraMainDicomTags (kept, searchable, returned, in MainDicomTags metadata),
LimitFindResults / LimitFindInstances (capped answers with the PS3.18 §8.3.4.4 Warning),
CaseSensitivePN and its DicomWeb.QidoCaseSensitive override."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.dicom import levels
from app.dicom.search import CAPPED_WARNING
from tests.api.data import ct_bytes, uid
from tests.api.test_stow import post
from tests.conftest import make_settings

STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
IMAGE_TYPE, TIMEZONE, MANUFACTURER, FRAME_OF_REFERENCE = (
    "00080008", "00080201", "00080070", "00200052")
PN = "00100010"

EXTRA = {
    "Patient": ["0008,0070"],  # Manufacturer (a series attribute) with the study
    "Study": ["TimezoneOffsetFromUTC"],
    "Series": ["ImageType", "00080201"],
    "Instance": ["FrameOfReferenceUID", "Rows", "SOPClassUID"],
}

MakeClient = Callable[..., FlaskClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """A client on a fresh deployment built with settings overrides."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> FlaskClient:
        settings = make_settings(tmp_path / f"deployment{len(apps)}", **overrides)
        application = create_app(settings)
        # The process-wide ExtraMainDicomTags (create_app sets it too).
        levels.configure_extra_tags(settings.ExtraMainDicomTags)
        apps.append(application)
        return application.test_client()

    yield make
    levels.configure_extra_tags(None)
    for application in apps:
        application.extensions["dicomweb"].index.close()


def values(answer: list[dict], tag: str) -> list[Any]:
    return [a[tag]["Value"][0] if "Value" in a.get(tag, {}) else None for a in answer]


# ---------------------------------------------------------------------------------------------
# ExtraMainDicomTags


def _load_extra(client: FlaskClient) -> dict[str, str]:
    """Study A: CT series (instance 1 ORIGINAL in frame F1, then instance 2 DERIVED in F2)
    and an MR series (ORIGINAL); study B in another time zone."""
    ids = {"a": uid(), "b": uid(), "ct": uid(), "mr": uid(), "b_se": uid(),
           "f1": uid(), "f2": uid(), "f3": uid(), "i1": uid(), "i2": uid()}
    files = [
        ct_bytes(ids["a"], ids["ct"], ids["i1"], number=1, ImageType=["ORIGINAL", "PRIMARY"],
                 TimezoneOffsetFromUTC="+0100", FrameOfReferenceUID=ids["f1"],
                 Manufacturer="ACME"),
        ct_bytes(ids["a"], ids["ct"], ids["i2"], number=2, ImageType=["DERIVED", "SECONDARY"],
                 TimezoneOffsetFromUTC="+0100", FrameOfReferenceUID=ids["f2"],
                 Manufacturer="ACME"),
        ct_bytes(ids["a"], ids["mr"], modality="MR", ImageType=["ORIGINAL", "PRIMARY"],
                 TimezoneOffsetFromUTC="+0100", FrameOfReferenceUID=ids["f3"],
                 Manufacturer="ACME"),
        ct_bytes(ids["b"], ids["b_se"], patient="ROE^RICHARD", patient_id="P9",
                 ImageType=["ORIGINAL", "PRIMARY"], TimezoneOffsetFromUTC="-0500",
                 Manufacturer="OTHER"),
    ]
    r = post(client, files)
    assert r.status_code == 200, r.get_data(as_text=True)
    return ids


def test_create_app_configures_extra_tags(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, ExtraMainDicomTags={"Series": ["ImageType"]}))
    try:
        assert levels.level_of(0x00080008, levels.Level.SERIES) is levels.Level.SERIES
        assert levels.extra_tags().copies == (("00080008", levels.Level.INSTANCE,
                                                levels.Level.SERIES),)
    finally:
        app.extensions["dicomweb"].index.close()
        levels.configure_extra_tags(None)


def test_without_extra_tags_series_do_not_carry_instance_attributes(
        make_client: MakeClient) -> None:
    client = make_client()
    ids = _load_extra(client)
    answer = client.get(f"/dicom-web/studies/{ids['a']}/series?includefield=ImageType").get_json()
    assert values(answer, IMAGE_TYPE) == [None, None]
    # A key of a lower level matches when any child does: both series have an ORIGINAL.
    found = client.get("/dicom-web/series?ImageType=ORIGINAL").get_json()
    assert values(found, SERIES_UID) == [ids["ct"], ids["mr"], ids["b_se"]]
    studies = client.get("/dicom-web/studies").get_json()
    assert values(studies, TIMEZONE) == [None, None]


def test_series_extra_tag_is_returned_with_includefield(make_client: MakeClient) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA)
    ids = _load_extra(client)
    answer = client.get(f"/dicom-web/studies/{ids['a']}/series?includefield=ImageType").get_json()
    # The series' own value: its most recently stored instance's.
    assert [a[IMAGE_TYPE]["Value"] for a in answer] == [["DERIVED", "SECONDARY"],
                                                        ["ORIGINAL", "PRIMARY"]]
    # TimezoneOffsetFromUTC is a default attribute of series answers, now kept there.
    assert values(answer, TIMEZONE) == ["+0100", "+0100"]


def test_series_extra_tag_is_matched_on_the_series(make_client: MakeClient) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA)
    ids = _load_extra(client)
    derived = client.get("/dicom-web/series?ImageType=DERIVED").get_json()
    assert values(derived, SERIES_UID) == [ids["ct"]]
    assert derived[0][IMAGE_TYPE]["Value"] == ["DERIVED", "SECONDARY"]  # the key is echoed
    original = client.get("/dicom-web/series?ImageType=original").get_json()  # folded
    assert values(original, SERIES_UID) == [ids["mr"], ids["b_se"]]
    # Instances still match on their own value.
    instances = client.get(f"/dicom-web/studies/{ids['a']}/instances?ImageType=ORIGINAL")
    assert values(instances.get_json(), SOP_UID)[0] == ids["i1"]
    assert len(instances.get_json()) == 2


def test_study_extra_tags_are_default_fields_and_searchable(make_client: MakeClient) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA)
    ids = _load_extra(client)
    studies = client.get("/dicom-web/studies").get_json()
    assert values(studies, TIMEZONE) == ["+0100", "-0500"]  # a study default (PS3.18)
    assert MANUFACTURER not in studies[0]  # kept, but not a default
    found = client.get("/dicom-web/studies?TimezoneOffsetFromUTC=-0500").get_json()
    assert values(found, STUDY_UID) == [ids["b"]]


def test_patient_extra_tag_lives_with_the_study(make_client: MakeClient) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA)
    ids = _load_extra(client)
    answer = client.get("/dicom-web/studies?includefield=00080070").get_json()
    assert values(answer, MANUFACTURER) == ["ACME", "OTHER"]
    found = client.get("/dicom-web/studies?00080070=oth*").get_json()
    assert values(found, STUDY_UID) == [ids["b"]]
    assert found[0][MANUFACTURER]["Value"] == ["OTHER"]


def test_instance_extra_tag_is_each_instance_own_value(make_client: MakeClient) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA)
    ids = _load_extra(client)
    path = f"/dicom-web/studies/{ids['a']}/series/{ids['ct']}/instances"
    answer = client.get(f"{path}?includefield=FrameOfReferenceUID").get_json()
    assert values(answer, FRAME_OF_REFERENCE) == [ids["f1"], ids["f2"]]
    found = client.get(f"{path}?FrameOfReferenceUID={ids['f1']}").get_json()
    assert values(found, SOP_UID) == [ids["i1"]]


def test_without_extra_tags_instances_show_their_series_frame_of_reference(
        make_client: MakeClient) -> None:
    client = make_client()
    ids = _load_extra(client)
    path = f"/dicom-web/studies/{ids['a']}/series/{ids['ct']}/instances"
    answer = client.get(f"{path}?includefield=FrameOfReferenceUID").get_json()
    assert values(answer, FRAME_OF_REFERENCE) == [ids["f2"], ids["f2"]]  # the series' value


@pytest.mark.parametrize("mode", ["MainDicomTags", "Extrapolate"])
@pytest.mark.parametrize("level", ["Studies", "Series"])
def test_main_dicom_tags_metadata_carries_extra_tags(make_client: MakeClient, mode: str,
                                                     level: str) -> None:
    client = make_client(ExtraMainDicomTags=EXTRA, DicomWeb={f"{level}Metadata": mode})
    ids = _load_extra(client)
    path = f"/dicom-web/studies/{ids['a']}"
    if level == "Series":
        path += f"/series/{ids['ct']}"
    r = client.get(f"{path}/metadata")
    assert r.status_code == 200, r.get_data(as_text=True)
    answer = [a for a in r.get_json() if a[SERIES_UID]["Value"] == [ids["ct"]]]
    assert values(answer, SOP_UID) == [ids["i1"], ids["i2"]]
    assert values(answer, FRAME_OF_REFERENCE) == [ids["f1"], ids["f2"]]  # per instance
    assert [a[IMAGE_TYPE]["Value"][0] for a in answer] == ["ORIGINAL", "DERIVED"]
    assert values(answer, TIMEZONE) == ["+0100", "+0100"]
    assert values(answer, MANUFACTURER) == ["ACME", "ACME"]


def test_main_dicom_tags_metadata_without_extra_tags_repeats_the_series_value(
        make_client: MakeClient) -> None:
    client = make_client(DicomWeb={"SeriesMetadata": "MainDicomTags"})
    ids = _load_extra(client)
    answer = client.get(f"/dicom-web/studies/{ids['a']}/series/{ids['ct']}/metadata").get_json()
    assert values(answer, FRAME_OF_REFERENCE) == [ids["f2"], ids["f2"]]


def test_instances_stored_before_the_setting_do_not_have_the_copies(
        make_client: MakeClient) -> None:
    client = make_client()
    ids = _load_extra(client)
    levels.configure_extra_tags(EXTRA)  # as after a restart with the new setting
    answer = client.get(f"/dicom-web/studies/{ids['a']}/series?includefield=ImageType").get_json()
    assert values(answer, IMAGE_TYPE) == [None, None]
    # A new instance refreshes its study and series: they now carry the copies.
    post(client, [ct_bytes(ids["a"], ids["mr"], modality="MR", number=2,
                           ImageType=["DERIVED", "SECONDARY"], TimezoneOffsetFromUTC="+0100")])
    answer = client.get(f"/dicom-web/studies/{ids['a']}/series?includefield=ImageType").get_json()
    assert values(answer, IMAGE_TYPE) == [None, "DERIVED"]


# ---------------------------------------------------------------------------------------------
# LimitFindResults / LimitFindInstances


def _load_studies(client: FlaskClient, count: int = 5, per_study: int = 1) -> list[str]:
    studies = [uid() for _ in range(count)]
    files = []
    for n, study in enumerate(studies):
        series = uid()
        files += [ct_bytes(study, series, number=i + 1, patient_id=f"P{n}")
                  for i in range(per_study)]
    assert post(client, files).status_code == 200
    return studies


def _capped(r: Any) -> bool:
    return f'299 DICOMweb: "{CAPPED_WARNING}"' in r.headers.get("Warning", "")


def test_limit_find_results_caps_studies_with_the_standard_warning(
        make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=2)
    studies = _load_studies(client)
    r = client.get("/dicom-web/studies")
    assert r.status_code == 200
    assert values(r.get_json(), STUDY_UID) == studies[:2]
    assert r.headers["Warning"] == (
        '299 DICOMweb: "The number of results exceeded the maximum supported by the server. '
        'Additional results can be requested."')


@pytest.mark.parametrize("query,expected,capped", [
    ("offset=2", slice(2, 4), True),        # paging past the cap
    ("offset=3", slice(3, 5), False),       # the last page: nothing cut
    ("offset=4", slice(4, 5), False),
    ("offset=9", slice(0, 0), False),
    ("limit=1", slice(0, 1), False),        # the client's smaller page is its choice
    ("limit=2", slice(0, 2), False),        # equal to the cap: not cut by the server
    ("limit=3", slice(0, 2), True),         # larger than the cap: cut, warned
    ("limit=3&offset=1", slice(1, 3), True),
    ("limit=0", slice(0, 2), True),         # 0 = no client limit
])
def test_limit_find_results_paging(make_client: MakeClient, query: str, expected: slice,
                                   capped: bool) -> None:
    client = make_client(LimitFindResults=2)
    studies = _load_studies(client)
    r = client.get(f"/dicom-web/studies?{query}")
    assert values(r.get_json(), STUDY_UID) == studies[expected]
    assert _capped(r) is capped


def test_exactly_the_cap_is_not_cut(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=5)
    studies = _load_studies(client)
    r = client.get("/dicom-web/studies")
    assert values(r.get_json(), STUDY_UID) == studies and "Warning" not in r.headers


def test_paging_with_offset_collects_everything_once(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=2)
    studies = _load_studies(client)
    seen: list[str] = []
    while True:  # what dicomweb-client's get_remaining does
        page = client.get(f"/dicom-web/studies?offset={len(seen)}").get_json()
        if not page:
            break
        seen += values(page, STUDY_UID)
    assert seen == studies


def test_series_level_uses_limit_find_results(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=3, LimitFindInstances=100)
    _load_studies(client)
    r = client.get("/dicom-web/series")
    assert len(r.get_json()) == 3 and _capped(r)


def test_instance_level_uses_limit_find_instances(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=0, LimitFindInstances=3)
    studies = _load_studies(client, count=2, per_study=4)
    r = client.get("/dicom-web/instances")
    assert len(r.get_json()) == 3 and _capped(r)
    r = client.get(f"/dicom-web/studies/{studies[1]}/instances")
    assert len(r.get_json()) == 3 and _capped(r)
    r = client.get(f"/dicom-web/studies/{studies[1]}/instances?offset=3")
    assert len(r.get_json()) == 1 and not _capped(r)
    r = client.get("/dicom-web/studies")  # LimitFindResults=0: no cap
    assert len(r.get_json()) == 2 and "Warning" not in r.headers


def test_limit_find_results_does_not_cap_instances(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=1)
    _load_studies(client, count=2, per_study=3)
    r = client.get("/dicom-web/instances")
    assert len(r.get_json()) == 6 and "Warning" not in r.headers


def test_cap_warning_joins_other_warnings_and_xml(make_client: MakeClient) -> None:
    client = make_client(LimitFindResults=1, Name="My PACS")
    _load_studies(client, count=2)
    r = client.get("/dicom-web/studies?NotAKeyword=1")
    assert r.headers["Warning"] == (
        '299 MyPACS: "The following query parameters are not supported and were ignored: '
        f'NotAKeyword", 299 MyPACS: "{CAPPED_WARNING}"')
    r = client.get("/dicom-web/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 200 and r.data.count(b"<NativeDicomModel") == 1
    assert r.headers["Warning"] == f'299 MyPACS: "{CAPPED_WARNING}"'


def test_no_limit_by_default(make_client: MakeClient) -> None:
    client = make_client()
    _load_studies(client, count=3)
    r = client.get("/dicom-web/studies")
    assert len(r.get_json()) == 3 and "Warning" not in r.headers


# ---------------------------------------------------------------------------------------------
# CaseSensitivePN / DicomWeb.QidoCaseSensitive


@pytest.mark.parametrize("overrides,lower_matches", [
    ({}, True),                                                     # default: insensitive
    ({"CaseSensitivePN": False}, True),
    ({"CaseSensitivePN": True}, False),
    ({"CaseSensitivePN": True, "DicomWeb": {"QidoCaseSensitive": False}}, True),
    ({"CaseSensitivePN": False, "DicomWeb": {"QidoCaseSensitive": True}}, False),
    ({"DicomWeb": {"QidoCaseSensitive": None}}, True),              # null = not set
])
def test_case_sensitive_pn(make_client: MakeClient, overrides: dict[str, Any],
                           lower_matches: bool) -> None:
    client = make_client(**overrides)
    study = uid()
    assert post(client, [ct_bytes(study, uid(), patient="DOE^JOHN")]).status_code == 200
    lower = client.get("/dicom-web/studies?PatientName=doe*").get_json()
    assert values(lower, STUDY_UID) == ([study] if lower_matches else [])
    exact = client.get("/dicom-web/studies?PatientName=DOE*").get_json()
    assert values(exact, STUDY_UID) == [study]  # the stored case always matches
    assert exact[0][PN]["Value"][0]["Alphabetic"] == "DOE^JOHN"
