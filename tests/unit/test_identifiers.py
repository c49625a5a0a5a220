from __future__ import annotations

import re

import pytest

from app.dicom.identifiers import check_uid, is_valid_uid, orthanc_hash, orthanc_ids
from app.errors import BadRequest

ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")


@pytest.mark.parametrize("uid", [
    "1.2.840.10008.1.2.1",
    "1",
    "0.0",
    "1.2.03.004",  # leading zeros: invalid per PS3.5 §9.1 but common, accepted
    "1." + "2" * 62,  # exactly 64 characters
])
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)
    assert check_uid(uid, "StudyInstanceUID") == uid


@pytest.mark.parametrize("uid", [
    "", ".", "1.", ".1", "1..2", "1.2.a", "1.2 ", " 1.2", "1,2", "1.2\x00",
    "1." + "2" * 63,  # 65 characters
    "1.2\n", "１.２",  # non-ASCII digits
])
def test_invalid_uids(uid: str) -> None:
    assert not is_valid_uid(uid)


@pytest.mark.parametrize("value", [None, 1.2, b"1.2", ["1.2"]])
def test_non_strings_are_not_uids(value: object) -> None:
    assert not is_valid_uid(value)


def test_check_uid_names_the_parameter() -> None:
    with pytest.raises(BadRequest) as info:
        check_uid("1.2.x", "SeriesInstanceUID")
    assert "SeriesInstanceUID" in info.value.message
    assert info.value.status == 400


def test_hash_format_matches_orthanc_toolbox() -> None:
    # Orthanc's own unit test of Toolbox::ComputeSHA1 (UnitTestsSources/ToolboxTests).
    assert orthanc_hash("") == "da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709"
    assert orthanc_hash("The quick brown fox jumps over the lazy dog") == (
        "2fd4e1c6-7a2d28fc-ed849ee1-bb76e739-1b93eb12")


def test_ids_match_ids_reported_by_an_orthanc_server() -> None:
    # Patient and study ids as listed by a real Orthanc (/studies/{id}: ID, ParentPatient,
    # PatientMainDicomTags.PatientID, MainDicomTags.StudyInstanceUID).
    patient, study, _, _ = orthanc_ids(
        "", "1.2.276.0.7230010.3.1.2.567598148.27567.1585172748.124", "1.2", "1.2.3")
    assert patient == "da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709"
    assert study == "d279e981-c99c42ff-1b4f98f6-9b8f3864-3ff04cc5"
    patient, study, _, _ = orthanc_ids(
        "Unknown", "1.2.276.0.1.3.1.127.0.0.1.7812.1594035217.3", "1.2", "1.2.3")
    assert patient == "bc7819b3-4ff87570-745fbe46-1e36a16f-80e562ce"
    assert study == "cb634f41-ec7085aa-fc8f88c7-76b90616-4907a9f9"


def test_ids_follow_the_hasher_scheme() -> None:
    ids = orthanc_ids("PAT", "1.2", "1.2.3", "1.2.3.4")
    assert ids == (
        orthanc_hash("PAT"),
        orthanc_hash("PAT|1.2"),
        orthanc_hash("PAT|1.2|1.2.3"),
        orthanc_hash("PAT|1.2|1.2.3|1.2.3.4"),
    )
    assert all(ORTHANC_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 4
    assert orthanc_ids("PAT", "1.2", "1.2.3", "1.2.3.4") == ids  # deterministic


def test_ids_depend_on_every_parent() -> None:
    base = orthanc_ids("PAT", "1.2", "1.2.3", "1.2.3.4")
    other_patient = orthanc_ids("PAT2", "1.2", "1.2.3", "1.2.3.4")
    assert all(a != b for a, b in zip(base, other_patient, strict=True))
    other_series = orthanc_ids("PAT", "1.2", "1.2.4", "1.2.3.4")
    assert other_series[:2] == base[:2] and other_series[2:] != base[2:]


def test_non_ascii_patient_id_is_hashed_as_utf8() -> None:
    assert orthanc_ids("Müller", "1", "2", "3")[0] == orthanc_hash("Müller")
    assert orthanc_hash("Müller") != orthanc_hash("Muller")
