"""The QIDO query parser (app.dicom.query) under hostile query strings.

Arbitrary keys and values (unicode, control characters, huge strings, wildcards, ranges,
lists, percent-encodings, SQL and LIKE/GLOB metacharacters) give a query or a
:class:`BadRequest`, never another exception; and a query that parses runs on a SQLite
index without an exception, finding only what a plain match would find.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dicom.ingest import build_record
from app.dicom.query import QidoRequest, parse_qido, warning_texts
from app.errors import BadRequest
from backends import sqlite_index
from backends.base import Index, Level
from tests.api.data import ct_bytes, uid
from tests.fuzz.corpus import hostile_strings

KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientWeight", "StudyDate", "StudyTime", "AcquisitionDateTime", "AccessionNumber",
    "StudyDescription", "Modality", "ModalitiesInStudy", "InstanceAvailability",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
    "SeriesNumber", "InstanceNumber", "Rows", "NumberOfFrames", "ReferencedSOPSequence",
    "PixelData", "RetrieveAETitle", "00100010", "0010,0010", "0020000d", "00091001",
    "0009,0010", "0009,xx01", "00290010", "7FE00010", "FFFEE000", "00020010", "00000000",
    "includefield", "INCLUDEFIELD", "limit", "offset", "fuzzymatching",
    "emptyvaluematching", "multiplevaluematching", "accept", "charset", "",
    "ReferencedSOPSequence.ReferencedSOPInstanceUID", "patientname",
]
PIECES = ["*", "?", "-", ",", "\\", "%2C", "%2c", "%", "_", "'", '"', ";", "^", "=", " ",
          "\x00", "\n", "[", "]", "!", "0", "1", "9", "20240102", "101500", "1.2.3", ".",
          "e", "+", "ONLINE", "true", "all", "DOE", "é", "\u0663", "\uff12", "' OR 1=1 --"]

values = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.sampled_from(hostile_strings()),
    st.builds(lambda c, n: c * n, st.sampled_from(["9", "*", "1", "a", "-"]),
              st.sampled_from([64, 1000, 4301, 20000])),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20),
                 st.sampled_from(hostile_strings()))
pairs = st.lists(st.tuples(keys, values), max_size=6)


def _parse(level: Level, params: list[tuple[str, str]]) -> QidoRequest | None:
    try:
        return parse_qido(level, params)
    except BadRequest:
        return None


@settings(max_examples=2500, deadline=None)
@given(level=st.sampled_from([Level.STUDY, Level.SERIES, Level.INSTANCE]), params=pairs)
def test_query_or_bad_request(level: Level, params: list[tuple[str, str]]) -> None:
    parsed = _parse(level, params)
    if parsed is not None:
        for constraint in parsed.query.constraints:
            assert all(isinstance(v, str) for v in constraint.values)
        for text in warning_texts(parsed):  # it goes in a header: printable ASCII only
            assert all(" " <= char <= "~" for char in text), text


@pytest.mark.parametrize("key", ["\r", "\n", "a\r\nSet-Cookie: x=1", "\x00", "caf\u00e9",
                                 "\U0001f600", 'a"b\\c'])
def test_warning_text_of_hostile_keys_is_printable(key: str) -> None:
    """Regression: an unknown key with CR/LF went into the Warning header (a 500)."""
    parsed = parse_qido(Level.STUDY, [(key, "1"), ("includefield", key)])
    (text,) = warning_texts(parsed)
    assert all(" " <= char <= "~" for char in text), text
    assert "\r" not in text and "\n" not in text


@pytest.mark.parametrize("key", ["Rows", "SeriesNumber", "InstanceNumber", "NumberOfFrames"])
def test_huge_integer_values_are_a_bad_request(key: str) -> None:
    """Regression: more than 4300 digits made int() raise ValueError (a 500)."""
    for value in ("9" * 5000, "1" * 4301, "1," + "2" * 4400):
        with pytest.raises(BadRequest):
            parse_qido(Level.INSTANCE, [(key, value)])


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """A SQLite index holding three instances, each of its own study."""
    idx = sqlite_index(Path(tmp_path_factory.mktemp("qido-index")))
    for number, (patient, modality) in enumerate([("DOE^JOHN", "CT"), ("O'HARA^KIM", "MR"),
                                                  ("50%_OFF\\X", "CT")]):
        data = ct_bytes(uid(), uid(), patient=patient,
                        modality=modality, patient_id=f"P{number}%_")
        idx.add_instance(build_record(io.BytesIO(data), storage_key=f"k{number}",
                                      size=len(data)))
    yield idx
    idx.close()


@settings(max_examples=1000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.sampled_from([Level.STUDY, Level.SERIES, Level.INSTANCE]), params=pairs,
       case_sensitive=st.booleans())
def test_parsed_queries_run_on_sqlite(index: Index, level: Level,
                                      params: list[tuple[str, str]],
                                      case_sensitive: bool) -> None:
    try:
        parsed = parse_qido(level, params, case_sensitive=case_sensitive)
    except BadRequest:
        return
    results = index.search(parsed.query)
    assert len(results) <= 3


@pytest.mark.parametrize(("key", "value", "found"), [
    ("PatientName", "%", 0), ("PatientName", "_", 0), ("PatientName", "*%*", 1),
    ("PatientName", "*_*", 1), ("PatientName", "' OR 1=1 --", 0),
    ("PatientName", "*' OR '1'='1", 0), ("PatientName", "O'HARA*", 1),
    ("PatientName", "[DO]*", 0), ("PatientName", "*[%]*", 0), ("PatientID", "P_%_", 0),
    ("PatientID", "P1%_", 1), ("PatientID", "P?%_", 3), ("PatientName", "*", 3),
])
def test_metacharacters_match_literally(index: Index, key: str, value: str,
                                        found: int) -> None:
    """SQL LIKE/GLOB metacharacters in values are literal; only * and ? are wildcards."""
    parsed = parse_qido(Level.INSTANCE, [(key, value)])
    assert len(index.search(parsed.query)) == found
