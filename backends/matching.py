"""QIDO attribute matching in pure Python, and how the SQL backends store column values.

The SQL backends translate constraints on indexed columns into SQL; everything else (and the
confirmation of anything SQL can only narrow) goes through :func:`matches`, which implements the
matching rules of PS3.4 C.2.2.2 on a DICOM JSON element (PS3.18 F.2).

Stored column values (:func:`row_values`) and query values (:func:`query_value`) are normalised
the same way, so that plain SQL comparisons give the same answers as :func:`matches`:

* DA without ``.`` (ACR-NEMA ``2020.01.31``), TM without ``:``; DT unchanged;
* a PN value keeps one column per component group (Alphabetic, Ideographic, Phonetic, PS3.5
  6.2.1.1): ``PatientName`` holds the Alphabetic group with its ``^`` separators,
  ``PatientName_ideographic`` and ``PatientName_phonetic`` the other groups;
* several values are joined with ``\\`` (the DICOM value delimiter);
* text VRs also get a ``<column>_folded`` copy (:func:`backends.base.fold`) for the default
  case- and accent-insensitive matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from .base import COLUMNS, Constraint, Match, fold

# Tag and VR of every indexed column keyword (PS3.6 data dictionary).
COLUMN_TAGS: dict[str, tuple[str, str]] = {
    "StudyInstanceUID": ("0020000D", "UI"),
    "StudyDate": ("00080020", "DA"),
    "StudyTime": ("00080030", "TM"),
    "AccessionNumber": ("00080050", "SH"),
    "ReferringPhysicianName": ("00080090", "PN"),
    "StudyID": ("00200010", "SH"),
    "StudyDescription": ("00081030", "LO"),
    "PatientName": ("00100010", "PN"),
    "PatientID": ("00100020", "LO"),
    "PatientBirthDate": ("00100030", "DA"),
    "PatientSex": ("00100040", "CS"),
    "SeriesInstanceUID": ("0020000E", "UI"),
    "Modality": ("00080060", "CS"),
    "SeriesNumber": ("00200011", "IS"),
    "SeriesDescription": ("0008103E", "LO"),
    "SeriesDate": ("00080021", "DA"),
    "SeriesTime": ("00080031", "TM"),
    "BodyPartExamined": ("00180015", "CS"),
    "PerformedProcedureStepStartDate": ("00400244", "DA"),
    "PerformedProcedureStepStartTime": ("00400245", "TM"),
    "SOPInstanceUID": ("00080018", "UI"),
    "SOPClassUID": ("00080016", "UI"),
    "InstanceNumber": ("00200013", "IS"),
    "Rows": ("00280010", "US"),
    "Columns": ("00280011", "US"),
    "BitsAllocated": ("00280100", "US"),
    "NumberOfFrames": ("00280008", "IS"),
    "ContentDate": ("00080023", "DA"),
    "ContentTime": ("00080033", "TM"),
}

# VRs matched case-insensitively by default (the string VRs Orthanc applies wildcards to);
# UIDs, dates, times and numbers always match exactly.
TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
# Integer VRs: stored with integer affinity so that they sort numerically.
INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
# VRs whose leading spaces are significant (PS3.5 6.2); every other value is stripped.
_UNSTRIPPED_VRS = frozenset({"LT", "ST", "UT"})
PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

# Word separators of fuzzy PN matching: white space, the component delimiter '^' and the
# group delimiter '='.
_WORDS = re.compile(r"[\s^=]+")
# Missing time in combined date-time matching: the date stands for the whole day
# (PS3.4 C.2.2.2.5.1), so it is the day's last instant against a lower bound, its first
# against an upper bound.
DAY_END = "235959.999999"


# ---------------------------------------------------------------------------------------------
# Normalisation shared by stored values and query values


def normalise(vr: str, value: Any) -> str:
    """One DICOM JSON value as the string that is stored and compared.

    A PN object gives its Alphabetic group; numbers give their decimal form.
    """
    if value is None:
        return ""
    if isinstance(value, Mapping):
        value = value.get("Alphabetic", "")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer() and vr in INTEGER_VRS:
        value = int(value)
    text = str(value)
    if vr not in _UNSTRIPPED_VRS:
        text = text.strip()
    if vr == "DA":
        return text.replace(".", "")  # ACR-NEMA dates, PS3.5 6.2 note
    if vr == "TM":
        return text.replace(":", "")
    return text


def _fold(text: str) -> str:
    """:func:`backends.base.fold`; for ASCII text that is ``lower()`` (NFKD changes
    nothing, there are no combining marks and casefold lowers), much faster."""
    return text.lower() if text.isascii() else fold(text)


def is_text(vr: str) -> bool:
    """True if the VR has a folded copy and matches case-insensitively by default."""
    return vr in TEXT_VRS


def column_names(keyword: str) -> tuple[str, ...]:
    """Every physical column a SQL backend keeps for an indexed keyword."""
    vr = COLUMN_TAGS[keyword][1]
    bases = [keyword]
    if vr == "PN":
        bases += [f"{keyword}_ideographic", f"{keyword}_phonetic"]
    if not is_text(vr):
        return tuple(bases)
    return tuple(name for base in bases for name in (base, f"{base}_folded"))


def match_columns(keyword: str, folded: bool) -> tuple[str, ...]:
    """The columns a constraint is compared with: any of them may match (one per PN group)."""
    vr = COLUMN_TAGS[keyword][1]
    bases = [keyword] + ([f"{keyword}_ideographic", f"{keyword}_phonetic"] if vr == "PN" else [])
    if folded and is_text(vr):
        return tuple(f"{base}_folded" for base in bases)
    return tuple(bases)


def _group_text(vr: str, values: list[Any], group: str) -> str | None:
    """``\\``-joined normalised values of one PN group (or plain values); None if all empty."""
    if group == "Alphabetic":
        parts = [normalise(vr, v) for v in values]
    else:
        parts = [normalise(vr, v.get(group, "")) if isinstance(v, Mapping) else "" for v in values]
    return "\\".join(parts) if any(parts) else None


def row_values(keywords: Iterable[str], attrs: Mapping[str, Any]) -> dict[str, str | None]:
    """Column name -> stored value for the indexed keywords of one level's DICOM JSON.

    Missing and empty attributes are stored as NULL, so that they never match a
    non-universal key (PS3.4 C.2.2.2).
    """
    row: dict[str, str | None] = {}
    for keyword in keywords:
        tag, vr = COLUMN_TAGS[keyword]
        values = list((attrs.get(tag) or {}).get("Value") or [])
        groups = PN_GROUPS if vr == "PN" else ("Alphabetic",)
        for group in groups:
            name = keyword if group == "Alphabetic" else f"{keyword}_{group.lower()}"
            text = _group_text(vr, values, group)
            row[name] = text
            if is_text(vr):
                row[f"{name}_folded"] = None if text is None else _fold(text)
    return row


def query_value(vr: str, value: str, folded: bool) -> str:
    """A query value normalised like the stored column it is compared with."""
    text = normalise(vr, value)
    return fold(text) if folded and is_text(vr) else text


def fuzzy_words(value: str) -> list[str]:
    """Folded words of a fuzzy query or name: split on white space, ``^`` and ``=``."""
    return [w for w in _WORDS.split(fold(value)) if w]


def is_column(constraint: Constraint) -> bool:
    """True if the constraint (and its ``also`` keyword) are indexed columns of its level."""
    columns = COLUMNS[constraint.level]
    return constraint.keyword in columns and (constraint.also is None or constraint.also in columns)


# ---------------------------------------------------------------------------------------------
# Matching


def is_universal(constraint: Constraint) -> bool:
    """Universal matching (PS3.4 C.2.2.2.3): an empty key, or a wildcard made of '*' only."""
    values = [v for v in constraint.values if v.strip()]  # spaces only = zero length
    if constraint.kind is Match.WILDCARD:
        return all(set(v) <= {"*"} for v in values)
    if constraint.kind is Match.FUZZY:
        return not any(fuzzy_words(v) for v in values)
    return not values


def element_groups(vr: str, element: Mapping[str, Any] | None) -> Iterator[list[str]]:
    """Per value of an element, its non-empty normalised texts: the groups of a PN value."""
    for value in (element or {}).get("Value") or ():
        if isinstance(value, Mapping):
            texts = [normalise(vr, value.get(group, "")) for group in PN_GROUPS]
        else:
            texts = [normalise(vr, value)]
        yield [t for t in texts if t]


def element_strings(vr: str, element: Mapping[str, Any] | None) -> Iterator[str]:
    """Every non-empty normalised value of an element; each group of a PN value."""
    for texts in element_groups(vr, element):
        yield from texts


@lru_cache(maxsize=512)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """Anchored regex for a DICOM wildcard: '*' any run, '?' one character (C.2.2.2.4)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _fuzzy(words: list[str], names: list[str]) -> bool:
    """Every query word is a prefix of some word of the name."""
    return all(any(name.startswith(word) for name in names) for word in words)


def _compare(kind: Match, queries: list[str], value: str) -> bool:
    if kind is Match.SINGLE or kind is Match.LIST:  # C.2.2.2.1, C.2.2.2.2
        return value in queries
    if kind is Match.WILDCARD:  # C.2.2.2.4
        return any(wildcard_regex(q).fullmatch(value) for q in queries)
    if kind is Match.RANGE:  # C.2.2.2.5: lexicographic on normalised values, '' is open
        lo, hi = (queries + ["", ""])[:2]
        return (not lo or value >= lo) and (not hi or value <= hi)
    raise ValueError(f"unknown matching kind {kind!r}")


def matches(constraint: Constraint, element: dict[str, Any] | None, case_sensitive: bool) -> bool:
    """True if a DICOM JSON element matches the constraint (PS3.4 C.2.2.2).

    Multi-valued elements match if any value does; a PN value matches if any of its
    component groups does, except for fuzzy matching, where the words of the query may
    come from any group of the name. A missing or empty element matches only a universal
    key.
    """
    if is_universal(constraint):
        return True
    kind, vr = constraint.kind, constraint.vr
    if kind is Match.FUZZY:  # words of all the query values, in the words of a whole name
        words = [w for q in constraint.values for w in fuzzy_words(normalise(vr, q))]
        return any(_fuzzy(words, fuzzy_words(" ".join(texts)))
                   for texts in element_groups(vr, element))
    folded = not case_sensitive and kind is not Match.RANGE
    queries = [query_value(vr, q, folded) for q in constraint.values]
    if kind is not Match.RANGE:
        queries = [q for q in queries if q]
    for value in element_strings(vr, element):
        if folded and is_text(vr):
            value = fold(value)
        if _compare(kind, queries, value):
            return True
    return False


def matches_combined(
    constraint: Constraint,
    date: dict[str, Any] | None,
    time: dict[str, Any] | None,
    case_sensitive: bool,
) -> bool:
    """Combined date and time matching (PS3.4 C.2.2.2.5.1): ``date + time`` compared as one.

    A missing time stands for the whole day (:data:`DAY_END`). Only the first values are
    combined: both attributes are single-valued.
    """
    if is_universal(constraint):
        return True
    day = next(element_strings("DA", date), None)
    hour = next(element_strings("TM", time), None)
    if day is None:
        return False
    if constraint.kind is not Match.RANGE:
        combined = {"vr": "DT", "Value": [day + (hour or "")]}
        return matches(constraint, combined, case_sensitive)
    lo, hi = (normalise("DT", v) for v in (list(constraint.values) + ["", ""])[:2])
    return (not lo or day + (hour or DAY_END) >= lo) and (not hi or day + (hour or "") <= hi)


def tag_of(keyword: str) -> str:
    """The tag of a keyword: indexed columns here, anything else from pydicom's dictionary."""
    if keyword in COLUMN_TAGS:
        return COLUMN_TAGS[keyword][0]
    from pydicom.datadict import tag_for_keyword  # only for rare non-column combined keys

    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"unknown keyword {keyword!r}")
    return f"{tag:08X}"
