"""The ``Dictionary``, ``DefaultPrivateCreator`` and ``DefaultEncoding`` settings, seen
through HTTP: STOW then WADO-RS metadata and QIDO-RS.

Each test builds its app from the settings and configures the dictionary as
``create_app`` does; the teardown restores pydicom's own dictionary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app import create_app
from app.dicom import dictionary
from tests.api.data import ct, uid
from tests.api.test_stow import post
from tests.conftest import dicom_bytes, make_settings

DICTIONARY = {
    "0009,1001": ["DS", "Abnormality score", 1, 1, "Lunit"],  # as Orthanc's issue 168
    "0009,02": ["LO", "LunitLabel"],  # element offset, creator: DefaultPrivateCreator
    "00e1,10c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
    "4444,0010": ["LO", "SiteCode", 1, 1],  # a public tag pydicom does not know
    "0014,1020": ["DA", "ValidationExpiryDate", 1, 1],  # pydicom: ExpiryDate
}
SCORE, LABEL, CREATOR, SITE, EXPIRY = "00091001", "00091002", "00090010", "44440010", "00141020"
Make = Callable[..., FlaskClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Make]:
    apps: list[Flask] = []

    def make(**overrides: Any) -> FlaskClient:
        settings = make_settings(tmp_path / f"app{len(apps)}", **overrides)
        application = create_app(settings)
        dictionary.configure(settings.Dictionary, settings.DefaultPrivateCreator,
                             settings.LoadPrivateDictionary, settings.DefaultEncoding)
        apps.append(application)
        return application.test_client()

    yield make
    for application in apps:
        application.extensions["dicomweb"].index.close()
    dictionary.configure({})


def _instance(syntax: str = ImplicitVRLittleEndian, score_vr: str = "DS",
              creator: str = "Lunit", block: int = 0x10) -> tuple[bytes, dict[str, str]]:
    ids = {"st": uid(), "se": uid(), "sop": uid()}
    ds = ct(ids["st"], ids["se"], ids["sop"], patient="LUNIT^CASE")
    ds.file_meta.TransferSyntaxUID = syntax
    ds.add_new(0x00090000 | block, "LO", creator)
    ds.add_new(0x00090001 | block << 8, score_vr, b"98.41 " if score_vr == "UN" else "98.41")
    ds.add_new(0x00090002 | block << 8, "LO", "POSITIVE")
    ds.add_new(0x00E10010, "LO", "ELSCINT1")
    ds.add_new(0x00E110C2, "UI", "1.2.3.4")
    ds.add_new(0x44440010, "LO", "SITE7")
    ds.add_new(0x00141020, "DA", "20250630")
    return dicom_bytes(ds), ids


def _metadata(client: FlaskClient, ids: dict[str, str]) -> dict[str, Any]:
    r = client.get(f"/dicom-web/studies/{ids['st']}/series/{ids['se']}/instances/"
                   f"{ids['sop']}/metadata")
    assert r.status_code == 200, r.get_data(as_text=True)
    (meta,) = r.get_json()
    return meta


def _search(client: FlaskClient, path: str) -> list[dict[str, Any]]:
    r = client.get(f"/dicom-web/{path}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


@pytest.fixture
def lunit(make_client: Make) -> tuple[FlaskClient, dict[str, str]]:
    """An app with the Dictionary, holding one Implicit VR Little Endian instance."""
    client = make_client(Dictionary=DICTIONARY, DefaultPrivateCreator="Lunit")
    data, ids = _instance()
    assert post(client, [data]).status_code == 200
    return client, ids


# --- Dictionary: metadata -----------------------------------------------------------------


def test_implicit_vr_values_get_the_declared_vrs(lunit) -> None:  # type: ignore[no-untyped-def]
    meta = _metadata(*lunit)
    assert meta[CREATOR] == {"vr": "LO", "Value": ["Lunit"]}
    assert meta[SCORE] == {"vr": "DS", "Value": [98.41]}
    assert meta[LABEL] == {"vr": "LO", "Value": ["POSITIVE"]}
    assert meta["00E110C2"] == {"vr": "UI", "Value": ["1.2.3.4"]}
    assert meta[SITE] == {"vr": "LO", "Value": ["SITE7"]}
    assert meta[EXPIRY] == {"vr": "DA", "Value": ["20250630"]}


def test_without_the_dictionary_they_stay_unknown(make_client: Make) -> None:
    client = make_client()
    data, ids = _instance()
    assert post(client, [data]).status_code == 200
    meta = _metadata(client, ids)
    assert meta[SCORE]["vr"] == "UN" and "BulkDataURI" in meta[SCORE]
    assert meta[SITE]["vr"] == "UN"
    answer = _search(client, f"instances?includefield={SCORE}")
    assert SCORE not in answer[0]  # binary: never in QIDO answers


def test_private_block_is_found_through_its_creator(make_client: Make) -> None:
    client = make_client(Dictionary=DICTIONARY, DefaultPrivateCreator="Lunit")
    data, ids = _instance(block=0x11)  # Lunit reserved (0009,11xx)
    assert post(client, [data]).status_code == 200
    meta = _metadata(client, ids)
    assert meta["00091101"] == {"vr": "DS", "Value": [98.41]}
    answer = _search(client, "instances?00090011=Lunit&includefield=Abnormality%20score")
    assert answer[0]["00091101"] == {"vr": "DS", "Value": [98.41]}


def test_another_creator_keeps_its_own_vrs(make_client: Make) -> None:
    client = make_client(Dictionary=DICTIONARY, DefaultPrivateCreator="Lunit")
    data, ids = _instance(creator="OTHER VENDOR")
    assert post(client, [data]).status_code == 200
    assert _metadata(client, ids)[SCORE]["vr"] == "UN"


@pytest.mark.parametrize("score_vr", ["DS", "UN"])
def test_explicit_vr_files_agree(make_client: Make, score_vr: str) -> None:
    # DS: read directly from the bytes (rawjson); UN: by pydicom, which replaces the UN.
    client = make_client(Dictionary=DICTIONARY, DefaultPrivateCreator="Lunit")
    data, ids = _instance(ExplicitVRLittleEndian, score_vr=score_vr)
    assert post(client, [data]).status_code == 200
    assert _metadata(client, ids)[SCORE] == {"vr": "DS", "Value": [98.41]}


# --- Dictionary: QIDO -----------------------------------------------------------------------


@pytest.mark.parametrize("include", [
    "Abnormality%20score", SCORE, "0009,1001", "0009xx01", "0009,xx01",
])
def test_private_includefield(lunit, include: str) -> None:  # type: ignore[no-untyped-def]
    client, ids = lunit
    (answer,) = _search(client, f"instances?includefield={include}")
    assert answer[SCORE] == {"vr": "DS", "Value": [98.41]}
    assert answer[CREATOR] == {"vr": "LO", "Value": ["Lunit"]}  # PS3.18 §10.6.3.3
    assert LABEL not in answer


def test_creator_match_and_private_include_as_orthanc_issue_168(lunit) -> None:  # type: ignore[no-untyped-def]
    client, ids = lunit
    (answer,) = _search(client, f"instances?00090010=Lunit&includefield={SCORE}")
    assert answer[CREATOR]["Value"] == ["Lunit"] and answer[SCORE]["Value"] == [98.41]
    assert _search(client, f"instances?00090010=Lunit2&includefield={SCORE}") == []
    assert len(_search(client, "studies?00090010=Lunit")) == 1


@pytest.mark.parametrize(("query", "found"), [
    ("LunitLabel=POS*", True), ("LunitLabel=positive", True), ("LunitLabel=NEG*", False),
    ("00091002=POSITIVE", True), ("SiteCode=SITE7", True), ("SiteCode=SITE8", False),
    ("ValidationExpiryDate=20250101-20251231", True), ("ExpiryDate=-20241231", False),
    ("PET-CT%20Multi%20Modality%20Name=1.2.3.4", True),
])
def test_filters_on_dictionary_attributes(lunit, query: str, found: bool) -> None:  # type: ignore[no-untyped-def]
    client, ids = lunit
    r = client.get(f"/dicom-web/studies?{query}")
    assert r.status_code == 200 and "Warning" not in r.headers, r.headers
    assert [a["0020000D"]["Value"][0] for a in r.get_json()] == ([ids["st"]] if found else [])


def test_public_dictionary_attributes_in_answers(lunit) -> None:  # type: ignore[no-untyped-def]
    client, ids = lunit
    (answer,) = _search(client, "instances?includefield=SiteCode,ValidationExpiryDate")
    assert answer[SITE] == {"vr": "LO", "Value": ["SITE7"]}
    assert answer[EXPIRY] == {"vr": "DA", "Value": ["20250630"]}
    (answer,) = _search(client, "instances?SiteCode=SITE*")
    assert answer[SITE]["Value"] == ["SITE7"]  # a matching key is returned


def test_unknown_private_tag_filter_is_ignored_with_a_warning(lunit) -> None:  # type: ignore[no-untyped-def]
    client, _ids = lunit
    r = client.get("/dicom-web/studies?00331010=x")
    assert r.status_code == 200 and len(r.get_json()) == 1
    assert "00331010" in r.headers["Warning"]


# --- DefaultEncoding ------------------------------------------------------------------------


def _no_charset(text: str, codec: str, syntax: str, charset: str | None = None,
                raw: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    """An instance whose PatientName and StudyDescription are ``text`` (``raw``: the
    name's bytes) encoded with ``codec``, without Specific Character Set (or with
    ``charset``)."""
    ids = {"st": uid(), "se": uid(), "sop": uid()}
    placeholder = "Q" * len(text.encode(codec))
    name = raw or text.encode(codec)
    ds = ct(ids["st"], ids["se"], ids["sop"], patient="N" * len(name),
            StudyDescription=placeholder)
    del ds.SpecificCharacterSet
    if charset:
        ds.SpecificCharacterSet = charset
    ds.file_meta.TransferSyntaxUID = syntax
    data = dicom_bytes(ds)
    data = data.replace(b"N" * len(name), name, 1).replace(placeholder.encode(),
                                                          text.encode(codec), 1)
    return data, ids


SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]  # rawjson, then pydicom


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize(("encoding", "text", "codec"), [
    (None, "Müller^Jörg", "latin-1"),  # Latin1, Orthanc's default
    ("Latin1", "Müller^Jörg", "latin-1"),
    ("Cyrillic", "Иванов^Иван", "iso8859_5"),
    ("Windows1251", "Иванов^Иван", "cp1251"),
    ("Greek", "Διονυσιος", "iso8859_7"),
    ("Utf8", "Dvořák^Antonín", "utf-8"),
    ("Latin2", "Dvořák^Antonín", "iso8859_2"),
    ("Japanese", "ﾔﾏﾀﾞ^ﾀﾛｳ", "shift_jis"),
    ("Chinese", "王^小东", "gb18030"),
])
def test_files_without_charset_are_decoded_with_default_encoding(
    make_client: Make, syntax: str, encoding: str | None, text: str, codec: str
) -> None:
    client = make_client(**({"DefaultEncoding": encoding} if encoding else {}))
    data, ids = _no_charset(text, codec, syntax)
    assert post(client, [data]).status_code == 200
    meta = _metadata(client, ids)
    assert meta["00100010"]["Value"] == [{"Alphabetic": text}]
    assert meta["00081030"]["Value"] == [text]
    assert "00080005" not in meta
    (answer,) = _search(client, f"studies?StudyInstanceUID={ids['st']}")
    assert answer["00100010"]["Value"] == [{"Alphabetic": text}]
    assert answer["00080005"]["Value"] == ["ISO_IR 192"]


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_case_insensitive_search_on_decoded_cyrillic(make_client: Make, syntax: str) -> None:
    client = make_client(DefaultEncoding="Cyrillic")
    data, ids = _no_charset("Иванов^Иван", "iso8859_5", syntax)
    assert post(client, [data]).status_code == 200
    found = _search(client, "studies?PatientName=иванов*")
    assert [a["0020000D"]["Value"][0] for a in found] == [ids["st"]]


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_specific_character_set_wins_over_default_encoding(make_client: Make,
                                                           syntax: str) -> None:
    client = make_client(DefaultEncoding="Cyrillic")
    data, ids = _no_charset("Müller^Jörg", "latin-1", syntax, charset="ISO_IR 100")
    assert post(client, [data]).status_code == 200
    assert _metadata(client, ids)["00100010"]["Value"] == [{"Alphabetic": "Müller^Jörg"}]


def test_japanese_kanji_code_extensions_without_charset(make_client: Make) -> None:
    client = make_client(DefaultEncoding="JapaneseKanji")
    raw = "Yamada^Tarou=山田^太郎".encode("iso2022_jp")  # ESC $ B ... ESC ( B
    data, ids = _no_charset("Yamada", "ascii", ExplicitVRLittleEndian, raw=raw)
    assert post(client, [data]).status_code == 200
    name = _metadata(client, ids)["00100010"]["Value"][0]
    assert name == {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}


def test_unknown_default_encoding_is_refused(tmp_path: Path) -> None:
    from app.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="DefaultEncoding 'Klingon'"):
        dictionary.configure({}, "", True, "Klingon")
    with pytest.raises(ConfigurationError):
        make_settings(tmp_path, DefaultEncoding="Klingon")
