"""QIDO-RS through the Flask test client."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.api.data import ct_bytes, uid
from tests.api.test_stow import post

PN, PID, STUDY_UID, SERIES_UID = "00100010", "00100020", "0020000D", "0020000E"


@pytest.fixture
def loaded(client: FlaskClient) -> dict[str, str]:
    """Three studies: two CT patients and one with an MR + CT study."""
    ids = {"a": uid(), "b": uid(), "c": uid(), "c_mr": uid(), "c_ct": uid()}
    files = [
        ct_bytes(ids["a"], uid(), patient="DOE^JOHN", patient_id="P1", date="20200105"),
        ct_bytes(ids["b"], uid(), patient="Müller^Anna", patient_id="P2", date="20210610"),
        ct_bytes(ids["c"], ids["c_mr"], patient="DOE^JANE", patient_id="P3", date="20220301",
                 modality="MR", number=2),
        ct_bytes(ids["c"], ids["c_mr"], patient="DOE^JANE", patient_id="P3", date="20220301",
                 modality="MR", number=1),
        ct_bytes(ids["c"], ids["c_ct"], patient="DOE^JANE", patient_id="P3", date="20220301"),
    ]
    assert post(client, files).status_code == 200
    return ids


def uids(answer: list[dict], tag: str = STUDY_UID) -> list[str]:
    return [a[tag]["Value"][0] for a in answer]


def test_all_studies_in_stored_order_with_defaults(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/dicom-web/studies")
    assert r.status_code == 200 and r.content_type == "application/dicom+json"
    answer = r.get_json()
    assert uids(answer) == [loaded["a"], loaded["b"], loaded["c"]]
    c = answer[2]
    assert c["00080061"]["Value"] == ["CT", "MR"]  # ModalitiesInStudy
    assert c["00201206"]["Value"] == [2] and c["00201208"]["Value"] == [3]
    assert c["00080005"]["Value"] == ["ISO_IR 192"]
    assert c["00081190"]["Value"] == [f"http://localhost/dicom-web/studies/{loaded['c']}"]
    assert c["00080056"]["Value"] == ["ONLINE"]


@pytest.mark.parametrize("query,expected", [
    ("PatientName=DOE*", ["a", "c"]),
    ("PatientName=doe^j*", ["a", "c"]),         # case-insensitive by default
    ("PatientName=muller*", ["b"]),             # accent-insensitive
    ("PatientName=*ANN?", ["b"]),
    ("00100020=P2", ["b"]),                     # tag number key, as OHIF sends
    ("StudyDate=20200101-20211231", ["a", "b"]),
    ("StudyDate=20210101-", ["b", "c"]),
    ("StudyDate=-20200105", ["a"]),
    ("ModalitiesInStudy=MR", ["c"]),
    ("ModalitiesInStudy=CT", ["a", "b", "c"]),
    ("PatientID=P1,P3", ["a", "c"]),
    ("PatientName=jane&fuzzymatching=true", ["c"]),
    ("PatientName=", ["a", "b", "c"]),          # universal match
])
def test_study_filters(client: FlaskClient, loaded, query: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/dicom-web/studies?{query}")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert uids(r.get_json()) == [loaded[k] for k in expected]


def test_uid_list(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get(f"/dicom-web/studies?StudyInstanceUID={loaded['a']}\\{loaded['c']}")
    assert uids(r.get_json()) == [loaded["a"], loaded["c"]]


def test_limit_offset(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/dicom-web/studies?limit=1&offset=1")
    assert uids(r.get_json()) == [loaded["b"]]


@pytest.mark.parametrize("query", ["limit=abc", "offset=-1", "fuzzymatching=maybe"])
def test_bad_parameters_are_400(client: FlaskClient, query: str) -> None:
    r = client.get(f"/dicom-web/studies?{query}")
    assert r.status_code == 400
    assert r.get_json()["HttpStatus"] == 400


def test_includefield_percent_encoded_list(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/dicom-web/studies?includefield=00081030%2C00080060&PatientID=P1")
    (study,) = r.get_json()
    assert study["00081030"]["Value"] == ["Chest"]


def test_includefield_all_at_study_level(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    (study,) = client.get("/dicom-web/studies?includefield=all&PatientID=P1").get_json()
    assert study["00100030"]["Value"] == ["19700101"]  # PatientBirthDate
    assert "00280010" not in study  # Rows is not a study attribute


def test_series_in_study_with_parent_attributes(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(f"/dicom-web/studies/{loaded['c']}/series").get_json()
    assert uids(answer, SERIES_UID) == [loaded["c_mr"], loaded["c_ct"]]
    assert answer[0]["00080060"]["Value"] == ["MR"]
    assert answer[0]["00201209"]["Value"] == [2]
    assert answer[0][PN]["Value"][0]["Alphabetic"] == "DOE^JANE"


def test_series_search_with_study_param_omits_parent_attributes(client, loaded) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(f"/dicom-web/series?StudyInstanceUID={loaded['c']}").get_json()
    assert len(answer) == 2
    assert PN not in answer[0]


def test_instances_ordered_by_instance_number(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    answer = client.get(
        f"/dicom-web/studies/{loaded['c']}/series/{loaded['c_mr']}/instances").get_json()
    assert [a["00200013"]["Value"][0] for a in answer] == [1, 2]
    assert answer[0]["00280010"]["Value"] == [4]
    assert answer[0]["00081190"]["Value"][0].endswith(
        f"/series/{loaded['c_mr']}/instances/{answer[0]['00080018']['Value'][0]}")


def test_unknown_study_in_path_is_empty(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    assert client.get(f"/dicom-web/studies/{uid()}/series").get_json() == []


def test_xml_answer(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/dicom-web/studies", headers={"Accept": "application/dicom+xml"})
    assert r.status_code == 200
    assert r.content_type.startswith("multipart/related")
    assert r.data.count(b"<NativeDicomModel") == 3


def test_unknown_key_gives_warning_header(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/dicom-web/studies?NotAKeyword=1")
    assert r.status_code == 200
    assert "NotAKeyword" in r.headers.get("Warning", "")


def test_post_on_search_route_is_405_with_allow(client: FlaskClient) -> None:
    r = client.put("/dicom-web/studies")
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]
    assert r.get_json()["HttpStatus"] == 405


def test_double_slash_is_single(client: FlaskClient, loaded) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/dicom-web//studies").status_code == 200



def _storable_charset_files() -> list:  # type: ignore[type-arg]
    """Bundled charset files that carry the four UIDs STOW requires."""
    from pathlib import Path

    import pydicom

    folder = Path(pydicom.data.__file__).parent / "charset_files"
    keep = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if all(k in ds for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                                 "SOPClassUID")):
            keep.append(path)
    return keep


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", _storable_charset_files(), ids=lambda p: p.name)
def test_every_character_set_answers_utf8(client: FlaskClient, path) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    ds = pydicom.dcmread(path)
    assert post(client, [path.read_bytes()]).status_code == 200
    r = client.get(f"/dicom-web/studies?StudyInstanceUID={ds.StudyInstanceUID}")
    assert r.headers["Content-Type"].startswith("application/dicom+json")
    (study,) = r.get_json()
    assert study["00080005"]["Value"] == ["ISO_IR 192"]
    name = study[PN]["Value"][0]
    expected = ds.PatientName
    assert name.get("Alphabetic", "") == (expected.alphabetic or "")
    assert name.get("Ideographic", "") == (expected.ideographic or "")
