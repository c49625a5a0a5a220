"""app.dicom.dictionary: validation of Orthanc's ``Dictionary`` entries, registration
with pydicom (undone by the next call) and the DefaultEncoding charsets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import datadict

from app.dicom import dictionary
from app.dicom.query import lookup_attribute, parse_qido, tag_of
from app.errors import ConfigurationError
from app.settings import ENCODINGS
from backends.base import Level


@pytest.fixture(autouse=True)
def _pristine() -> Iterator[None]:
    dictionary.configure({})
    yield
    dictionary.configure({})


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("0009,10011", ["DS", "X", 1, 1, "C"], "not a tag"),
    ("zz09,1001", ["DS", "X", 1, 1, "C"], "not a tag"),
    ("NotAKeyword", ["DS", "X"], "not a tag"),
    ("0011,1001", "DS", "expected a list"),
    ("0011,1001", ["DS"], "expected a list"),
    ("0011,1001", ["DS", "X", 1, 1, "C", "extra"], "expected a list"),
    ("0011,1001", ["XX", "X", 1, 1, "C"], "unknown VR 'XX'"),
    ("0011,1001", ["ds", "X", 1, 1, "C"], "unknown VR 'ds'"),
    ("0011,1001", ["US or SS", "X", 1, 1, "C"], "unknown VR"),
    ("0011,1001", [1, "X"], "unknown VR 1"),
    ("0011,1001", ["DS", "", 1, 1, "C"], "name (2nd item) must be a non-empty string"),
    ("0011,1001", ["DS", 7, 1, 1, "C"], "name (2nd item)"),
    ("0011,1001", ["DS", "X", "1", 1, "C"], "minimum multiplicity (3th item) must be an "
                                            "integer, got '1'"),
    ("0011,1001", ["DS", "X", 1, 1.5, "C"], "maximum multiplicity (4th item) must be an "
                                            "integer"),
    ("0011,1001", ["DS", "X", True, 1, "C"], "must be an integer"),
    ("0011,1001", ["DS", "X", 0, 1, "C"], "minimum multiplicity must be at least 1"),
    ("0011,1001", ["DS", "X", 1, -1, "C"], "must not be negative"),
    ("0011,1001", ["DS", "X", 3, 2, "C"], "maximum multiplicity (2) must be 0 (any)"),
    ("0011,1001", ["DS", "X", 1, 1, 5], "private creator (5th item) must be a string"),
    ("0011,1001", ["DS", "X", 1, 1], "private tag without a private creator"),
    ("0011,1001", ["DS", "X", 1, 1, ""], "no DefaultPrivateCreator"),
    ("0010,9999", ["DS", "X", 1, 1, "C"], "only for private tags"),
    ("0002,0100", ["UI", "X"], "group 0002 (file meta)"),
    ("0000,0900", ["US", "X"], "group 0000 (command)"),
    ("fffe,e000", ["UN", "X"], "group FFFE"),
    ("0010,0000", ["UL", "X"], "group length"),
    ("0007,1001", ["LO", "X", 1, 1, "C"], "cannot hold private elements"),
    ("ffff,1001", ["LO", "X", 1, 1, "C"], "cannot hold private elements"),
    ("0011,0501", ["LO", "X", 1, 1, "C"], "neither an element offset"),
])
def test_each_problem_is_named_with_its_key(key: str, value: Any, problem: str) -> None:
    problems = dictionary.problems({key: value})
    assert len(problems) == 1
    assert problems[0].startswith(f"Dictionary entry {key!r}: ")
    assert problem in problems[0]
    with pytest.raises(ConfigurationError) as raised:
        dictionary.validate({key: value})
    assert str(raised.value) == problems[0]
    with pytest.raises(ConfigurationError) as raised:
        dictionary.configure({key: value})
    assert str(raised.value) == problems[0]


def test_every_problem_is_listed_and_nothing_registered() -> None:
    settings = {"4444,0010": ["LO", "Fine"], "0011,1001": ["XX", "A"],
                "0013,1001": ["LO", "B"]}
    problems = dictionary.problems(settings, default_encoding="Martian")
    assert [p.split(":")[0] for p in problems] == [
        "Dictionary entry '0011,1001'", "Dictionary entry '0013,1001'",
        "DefaultEncoding 'Martian' is not one of Ascii, Utf8, Latin1, Latin2, Latin3, Latin4, "
        "Latin5, Cyrillic, Arabic, Greek, Hebrew, Thai, Japanese, Chinese, JapaneseKanji, "
        "Korean, SimplifiedChinese, Windows1251"]
    with pytest.raises(ConfigurationError) as raised:
        dictionary.configure(settings, "", True, "Martian")
    assert str(raised.value) == "; ".join(problems)
    assert datadict.tag_for_keyword("Fine") is None
    dictionary.validate({"4444,0010": ["LO", "Fine"]})  # valid: nothing raised


def test_same_tag_twice_is_a_problem() -> None:
    problems = dictionary.problems({"4444,0010": ["LO", "A"], "44440010": ["LO", "B"],
                                    "0011,1001": ["LO", "C", 1, 1, "X"],
                                    "0011,1101": ["LO", "D", 1, 1, "X"],
                                    "0011,01": ["LO", "E", 1, 1, "Y"]})
    assert problems == [
        "Dictionary entry '44440010': the same tag as '4444,0010'",
        "Dictionary entry '0011,1101': the same tag as '0011,1001'"]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("0014,1020", ["DA", "ValidationExpiryDate", 1, 1], (0x00141020, "1", None)),
    ("00e1,10c2", ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
     (0x00E110C2, "1", "ELSCINT1")),
    ("2001,5f", ["SQ", "StackSequence", 1, 1, "Philips Imaging DD 001"],
     (0x2001005F, "1", "Philips Imaging DD 001")),
    ("4444 , 0010", ["LO", "Spaced"], (0x44440010, "1", None)),
    ("44440010", ["LO", "Eight", 1, 0], (0x44440010, "1-n", None)),
    ("PatientName", ["PN", "Name", 2, 4], (0x00100010, "2-4", None)),
    ("0011,1001", ["LO", "Defaulted", 1, 1], (0x00111001, "1", "DEFAULT")),
    ("0011,1001", ["LO", "Own", 1, 1, "OWN"], (0x00111001, "1", "OWN")),  # own creator wins
])
def test_valid_entries(key: str, value: list[Any], expected: tuple[Any, ...]) -> None:
    entry = dictionary.parse_entry(key, value, "DEFAULT")
    assert (entry.tag, entry.vm, entry.creator) == expected


def test_private_entries_land_in_a_block() -> None:
    offset = dictionary.parse_entry("2001,5f", ["SQ", "S", 1, 1, "P"])
    assert offset.tag_in_block() == 0x2001105F and offset.tag_in_block(0x12) == 0x2001125F
    exact = dictionary.parse_entry("0009,1101", ["LO", "L", 1, 1, "P"])
    assert exact.tag_in_block() == 0x00091101 and exact.tag_in_block(0x10) == 0x00091001


# --- registration -------------------------------------------------------------------------


SAMPLE = {
    "4444,0010": ["LO", "SiteCode", 1, 1],
    "0014,1020": ["DA", "ValidationExpiryDate", 1, 1],
    "0018,0010": ["LO", "Contrast Agent Renamed", 1, 3],  # a standard tag: new VM
    "0009,1001": ["DS", "Abnormality score", 1, 1, "Lunit"],
    "0009,02": ["LO", "LunitLabel"],
    "00e1,10c4": ["CS", "Overridden", 1, 1, "ELSCINT1"],  # pydicom has an exact key
    "0019,1001": ["LO", "Private data element", 1, 1, "A"],
    "0021,1001": ["LO", "Private data element", 1, 1, "B"],
    "0023,1001": ["LO", "PatientID", 1, 1, "C"],  # a standard keyword of another tag
}


def test_public_entries_in_pydicom() -> None:
    empty_keyword = datadict.keyword_dict.get("")
    dictionary.configure(SAMPLE | {"4444,0012": ["LO", "Not an identifier"]}, "Lunit")
    assert datadict.get_entry(0x44440012) == ("LO", "1", "Not an identifier", "", "")
    assert datadict.keyword_dict.get("") == empty_keyword
    assert datadict.get_entry(0x44440010) == ("LO", "1", "SiteCode", "", "SiteCode")
    assert datadict.tag_for_keyword("SiteCode") == 0x44440010
    # A standard tag keeps its keyword; the configured name becomes an alias.
    assert datadict.get_entry(0x00141020)[4] == "ExpiryDate"
    assert datadict.tag_for_keyword("ValidationExpiryDate") == 0x00141020
    assert datadict.get_entry(0x00180010)[:2] == ("LO", "1-3")
    assert datadict.keyword_for_tag(0x00180010) == "ContrastBolusAgent"


def test_private_entries_in_pydicom() -> None:
    dictionary.configure(SAMPLE, "Lunit")
    assert datadict.private_dictionary_VR(0x00091001, "Lunit") == "DS"
    assert datadict.private_dictionary_VR(0x00091201, "Lunit") == "DS"  # any block
    assert datadict.private_dictionary_VR(0x00091002, "Lunit") == "LO"  # default creator
    assert datadict.private_dictionary_VR(0x00E110C4, "ELSCINT1") == "CS"
    assert datadict.private_dictionary_VR(0x00E111C4, "ELSCINT1") == "CS"


def test_reconfiguring_restores_pydicom() -> None:
    before_public = dict(datadict.DicomDictionary)
    before_keywords = dict(datadict.keyword_dict)
    before_private = {k: dict(v) for k, v in datadict.private_dictionaries.items()}
    dictionary.configure(SAMPLE, "Lunit")
    dictionary.configure(SAMPLE, "Lunit")  # idempotent
    assert datadict.private_dictionary_VR(0x00091001, "Lunit") == "DS"
    dictionary.configure({})
    assert datadict.tag_for_keyword("SiteCode") is None
    assert datadict.tag_for_keyword("ValidationExpiryDate") is None
    assert 0x44440010 not in datadict.DicomDictionary
    assert datadict.get_entry(0x00180010)[1] == "1"
    assert datadict.private_dictionary_VR(0x00E110C4, "ELSCINT1") != "CS"
    assert "Lunit" not in datadict.private_dictionaries
    assert datadict.DicomDictionary == before_public
    assert datadict.keyword_dict == before_keywords
    assert {k: dict(v) for k, v in datadict.private_dictionaries.items()} == before_private
    assert dictionary.entry_named("SiteCode") is None


def test_names_usable_as_keys() -> None:
    dictionary.configure(SAMPLE, "Lunit")
    entry = dictionary.entry_named("Abnormality score")
    assert entry is not None and entry.tag_in_block() == 0x00091001
    assert dictionary.entry_named("Private data element") is None  # two entries
    assert dictionary.entry_named("PatientID") is None  # stays (0010,0020)
    assert datadict.tag_for_keyword("PatientID") == 0x00100020
    assert lookup_attribute("PatientID").tag == 0x00100020  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "tag", "vr"), [
    ("SiteCode", "44440010", "LO"),
    ("ValidationExpiryDate", "00141020", "DA"),
    ("Contrast Agent Renamed", "00180010", "LO"),
    ("Abnormality score", "00091001", "DS"),
    ("LunitLabel", "00091002", "LO"),
    ("00091001", "00091001", "DS"),
    ("0009,1101", "00091101", "DS"),  # any block: DefaultPrivateCreator's dictionary
    ("0009xx02", "00091002", "LO"),
    ("00190010", "00190010", "LO"),  # a private creator element
    ("00191001", "00191001", "LO"),  # only "A" declares it: that VR
    ("00331001", "00331001", "UN"),  # unknown
])
def test_lookup_attribute_with_the_dictionary(name: str, tag: str, vr: str) -> None:
    dictionary.configure(SAMPLE, "Lunit")
    attribute = lookup_attribute(name)
    assert attribute is not None and (attribute.hex, attribute.vr) == (tag, vr)
    assert tag_of(name) == tag


def test_private_vr_precedence() -> None:
    dictionary.configure({"0009,1001": ["DS", "Score", 1, 1, "Lunit"],
                          "0009,1002": ["LO", "A", 1, 1, "Lunit"],
                          "0009,1102": ["SH", "B", 1, 1, "Other"]}, "Lunit")
    assert dictionary.private_vr(0x00091001) == "DS"  # DefaultPrivateCreator
    assert dictionary.private_vr(0x00091001, "Other") is None  # a named creator decides
    assert dictionary.private_vr(0x00091002, "Other") == "SH"
    dictionary.configure({"0009,1002": ["LO", "A", 1, 1, "Lunit"],
                          "0009,1102": ["SH", "B", 1, 1, "Other"],
                          "0009,1003": ["FL", "C", 1, 1, "Other"]})
    assert dictionary.private_vr(0x00091002) is None  # two VRs for offset 02
    assert dictionary.private_vr(0x00091003) == "FL"  # one


def test_creator_match_in_the_query_places_and_types_private_keys() -> None:
    dictionary.configure({"0009,1001": ["DS", "Score", 1, 1, "Lunit"],
                          "0009,1002": ["SH", "Other", 1, 1, "Other"]})
    req = parse_qido(Level.INSTANCE, [("00090012", "Lunit"), ("includefield", "Score"),
                                      ("00091202", "x")])
    assert req.include == {"00091201", "00090012"}
    assert req.unsupported == ["00091202"]  # Lunit has no offset 02: unknown VR
    req = parse_qido(Level.INSTANCE, [("00090012", "Other"), ("00091202", "x")])
    assert [c.vr for c in req.query.constraints] == ["LO", "SH"]


def test_load_private_dictionary_false_is_accepted() -> None:
    dictionary.configure({}, "", False)
    assert datadict.private_dictionary_VR(0x00E110C2, "ELSCINT1") == "UI"


# --- DefaultEncoding ----------------------------------------------------------------------


def test_every_orthanc_encoding_has_codecs() -> None:
    assert set(dictionary.ENCODING_CHARSETS) == set(ENCODINGS)
    codecs = {name: dictionary.charset_codecs(name) for name in ENCODINGS}
    assert codecs == {
        "Ascii": ["iso8859"], "Utf8": ["UTF8"], "Latin1": ["latin_1"],
        "Latin2": ["iso8859_2"], "Latin3": ["iso8859_3"], "Latin4": ["iso8859_4"],
        "Latin5": ["iso_ir_148"], "Cyrillic": ["iso_ir_144"], "Arabic": ["iso_ir_127"],
        "Greek": ["iso_ir_126"], "Hebrew": ["iso_ir_138"], "Thai": ["iso_ir_166"],
        "Japanese": ["shift_jis"], "Chinese": ["GB18030"],
        "JapaneseKanji": ["iso8859", "iso2022_jp"], "Korean": ["iso8859", "euc_kr"],
        "SimplifiedChinese": ["iso8859", "iso_ir_58"], "Windows1251": ["cp1251"],
    }
    with pytest.raises(ValueError):
        dictionary.charset_codecs("Klingon")


def test_default_encoding_and_creator_are_kept_until_the_next_call() -> None:
    dictionary.configure({}, "Lunit", True, "Cyrillic")
    assert (dictionary.default_encoding(), dictionary.default_private_creator()) == (
        "Cyrillic", "Lunit")
    dictionary.configure({})
    assert (dictionary.default_encoding(), dictionary.default_private_creator()) == (
        "Latin1", "")
