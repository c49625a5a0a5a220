"""QIDO-RS query string -> :class:`QidoRequest` (PS3.18 §8.3.4, §10.6.1; PS3.4 C.2.2.2).

The blueprint hands over the decoded query pairs in order plus the UIDs of the URL
path; this module validates them and decides the kind of matching of every key, so
that a backend only executes a :class:`backends.base.Query`.

Decisions where the standard (or Orthanc) leaves a choice, see also ``docs/conformance.md``:

* Keys are keywords (case-sensitive, as in PS3.6), names of the ``Dictionary``
  settings (:mod:`app.dicom.dictionary`), ``GGGGEEEE`` or ``GGGG,EEEE``.
  Unknown keys, sequence paths (``A.B``) and filters on SQ or binary attributes are
  ignored and listed in ``unsupported`` (a ``Warning: 299`` header).
* Private attributes (PS3.18 §8.3.4.3, §10.6.3.3): a private data element is a key by
  number (``GGGGXXEE``; ``GGGGxxEE`` for "in the block of the creator named in this
  query") or by its ``Dictionary`` name. Its VR comes from the dictionary of the private
  creator matched in the same query (``GGGG,00XX=creator``), else of
  DefaultPrivateCreator, else from the ``Dictionary`` if it gives one VR for that
  element under any creator; unknown, it can be included but not matched. A Dictionary
  name puts the element in the block of its creator's matching key if any, else in the
  block of its key (``0009,1001``), else in block 10. Including a private data element
  includes its Private Creator element too (PS3.18 §10.6.3.3). Private creator
  elements (``GGGG,0010``-``GGGG,00FF``) are LO.
  An empty key is ignored silently (Weasis sends ``?&includefield=...``). ``accept``
  and ``charset`` (PS3.18 §8.3.3) are left to the blueprint.
* A repeated attribute is a 400 (PS3.18 §8.3.4.1 rule 2), and so is a repeated
  ``limit``, ``offset`` or ``fuzzymatching``.
* UI values split on ``,`` and ``\\`` (UID list matching, PS3.4 C.2.2.2.2). A UID
  value of only ``*`` is universal matching; any other ``*``/``?`` in a UID is a 400
  (wildcards are not defined for UI, PS3.4 C.2.2.2.4; Orthanc silently matched nothing).
* Other string VRs: ``,`` or ``\\`` make a list (as Orthanc); a list item may not hold
  wildcards (400). ``*``/``?`` make wildcard matching for AE CS LO LT PN SH ST UC UR
  UT; a value of only ``*`` is universal matching for every VR; other wildcards on
  other VRs are a 400.
* DA/TM/DT: ``-`` is the range separator (PS3.4 C.2.2.2.5). Values are validated and
  normalised (``.`` of old dates and ``:`` of old times removed); the upper bound of
  a TM/DT range is padded with ``9`` so that every value with that prefix compares
  lower or equal as a string. Time-zone offsets in DT query values are a 400.
* Combined date-time matching (PS3.4 C.2.2.2.5.1) for StudyDate/StudyTime and the
  other Date/Time pairs of :data:`DATE_TIME_PAIRS`: when both keys are given, neither
  is a list and at least one is a range, they become one RANGE on the date with
  ``also`` = the time keyword and bounds date+time (a single value counts as the
  range [v, v]). Two single values stay two SINGLE constraints.
* Integer VRs (IS, US, ...) are validated and normalised (``007`` -> ``7``); DS/FL/FD
  are validated and kept as given.
* ``fuzzymatching=true`` (PS3.18 §8.3.4.2, PS3.4 C.2.2.2.1.1): every PN key without
  wildcards and without a list becomes :attr:`Match.FUZZY`. Its ``values`` are the query
  *words* (split on ``^``, ``=`` and white space); a name matches when every word is
  a prefix of some word of the name (split the same way), always case- and
  accent-insensitive (:func:`backends.base.fold`). ``Doe^J`` finds ``DOE^JOHN`` and
  ``John Doe``-style names alike.
* ``ModalitiesInStudy`` at study level is a constraint on the series' ``Modality``
  (any series matches, PS3.18 §10.6.1.2.1.1); at series/instance level it is matched
  against the study's computed ModalitiesInStudy. Other computed attributes take
  their level from :data:`COMPUTED_LEVELS`; an InstanceAvailability key that matches
  ``ONLINE`` is universal matching (everything is online).
* A constraint's ``level`` is the attribute's level (:func:`app.dicom.levels.level_of`),
  below the query level included (``studies?Rows=512``: any instance matches).
* ``emptyvaluematching``/``multiplevaluematching`` (PS3.18 §8.3.4.5-6) are validated;
  ``true`` is not supported and produces the standard warning text.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydicom import datadict

from app.dicom import dictionary
from app.dicom.levels import level_of
from app.errors import BadRequest
from backends.base import Constraint, Level, Match, Query

# PS3.4 C.2.2.2.4: VRs for which '*' and '?' are wildcards.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
INTEGER_VRS = frozenset({"IS", "US", "UL", "SS", "SL", "UV", "SV"})
DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
# No matching defined or supported: sequences (PS3.4 C.2.2.2.6), bulk data, tags.
UNMATCHABLE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"})

# PS3.4 C.2.2.2.5.1 combined date-time matching: date keyword -> time keyword.
DATE_TIME_PAIRS: dict[str, str] = {
    "StudyDate": "StudyTime",
    "SeriesDate": "SeriesTime",
    "AcquisitionDate": "AcquisitionTime",
    "ContentDate": "ContentTime",
    "PerformedProcedureStepStartDate": "PerformedProcedureStepStartTime",
}

# Query parameters the blueprint handles itself (PS3.18 §8.3.3).
TRANSPORT_PARAMS = frozenset({"accept", "charset"})

# PS3.18 §8.3.4.5 and §8.3.4.6: the Warning texts for flags we do not implement.
FLAG_WARNINGS: dict[str, str] = {
    "emptyvaluematching": "The emptyvaluematching parameter is not supported. "
                          "Empty Value Matching has not been performed.",
    "multiplevaluematching": "The multiplevaluematching parameter is not supported. "
                             "Multiple Value Matching has not been performed.",
}

MODALITIES_IN_STUDY = 0x00080061
INSTANCE_AVAILABILITY = 0x00080056
MODALITY = 0x00080060
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E

_HEX_TAG = re.compile(r"^([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})$")
_BLOCK_TAG = re.compile(r"^([0-9A-Fa-f]{4}),?[xX]{2}([0-9A-Fa-f]{2})$")  # GGGGxxEE
_HEX4 = re.compile(r"^[0-9A-Fa-f]{4}$")
_ELEMENT = re.compile(r"^([0-9A-Fa-f]{2}|[xX]{2})[0-9A-Fa-f]{2}$")
_UINT = re.compile(r"^[0-9]+$")
_INTEGER = re.compile(r"^[+-]?[0-9]+$")
_DECIMAL = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_TM = re.compile(r"^([0-9]{2})(([0-9]{2})(([0-9]{2})(\.[0-9]{1,6})?)?)?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?$")
_LIST_SEPARATORS = re.compile(r"[,\\]")
_PN_WORD_SEPARATORS = re.compile(r"[\^=\s]+")
_ENCODED_COMMA = re.compile(r"%2c", re.IGNORECASE)


@dataclass(frozen=True)
class Attribute:
    """A DICOM attribute resolved from a query key (PS3.6 data dictionary)."""

    tag: int
    keyword: str
    vr: str

    @property
    def hex(self) -> str:
        return f"{self.tag:08X}"


@dataclass(frozen=True)
class QidoRequest:
    """A QIDO-RS request, parsed and validated; :mod:`app.dicom.search` answers it."""

    query: Query
    include: frozenset[str] = frozenset()  # includefield tags, 8 uppercase hex digits
    include_all: bool = False  # includefield=all
    fuzzy: bool = False  # fuzzymatching=true
    filter_tags: frozenset[str] = frozenset()  # tags of every matching key, echoed back
    from_path: frozenset[Level] = frozenset()  # levels whose UID came from the URL path
    parent_uid_in_query: frozenset[Level] = frozenset()  # ... from a query parameter
    unsupported: list[str] = field(default_factory=list)  # ignored keys / includefields


# Private creators matched in a query: (group, block) -> creator (PS3.5 §7.8.1).
Creators = Mapping[tuple[int, int], str]


def lookup_attribute(name: str, creators: Creators | None = None) -> Attribute | None:
    """Resolve a keyword, a ``Dictionary`` name, ``GGGGEEEE`` or ``GGGG,EEEE`` (private
    tags included, ``GGGGxxEE`` too); None if unknown. ``creators``: the private
    creators the query matches, which place and type private elements."""
    creators = creators or {}
    match = _HEX_TAG.match(name)
    block = _BLOCK_TAG.match(name)
    entry = None if match or block else dictionary.entry_named(name)
    if match:
        tag = int(match.group(1) + match.group(2), 16)
    elif block:
        group = int(block.group(1), 16)
        tag = group << 16 | _block_of(creators, group) << 8 | int(block.group(2), 16)
    elif entry is not None:
        return _configured(entry, creators)
    elif not name.isidentifier():  # pydicom maps "" to a retired tag
        return None
    else:
        found = datadict.tag_for_keyword(name)  # keywords are case-sensitive (PS3.6)
        if found is None:
            return None
        tag = found
    group = tag >> 16
    if group in (0x0000, 0x0002, 0xFFFE):  # command, meta, items
        return None
    if group % 2:
        return _private(tag, creators)
    try:
        vr, _vm, _name, _retired, keyword = datadict.get_entry(tag)
    except KeyError:
        return None
    return Attribute(tag, keyword or f"{tag:08X}", vr.split(" or ")[0])


def _block_of(creators: Creators, group: int, creator: str | None = None) -> int:
    """The block of ``group`` the query's creator match reserves (the only one of the
    group, or the one of ``creator``), else the first block, 10."""
    blocks = [b for (g, b), c in creators.items() if g == group and creator in (None, c)]
    return blocks[0] if len(blocks) == 1 or (blocks and creator) else 0x10


def _private(tag: int, creators: Creators) -> Attribute | None:
    """A private creator (LO) or private data element (VR from the dictionaries)."""
    group, element = tag >> 16, tag & 0xFFFF
    if group in dictionary.ILLEGAL_PRIVATE_GROUPS:
        return None
    if 0x0010 <= element <= 0x00FF:
        return Attribute(tag, f"{tag:08X}", "LO")
    if element < 0x1000:
        return None
    vr = dictionary.private_vr(tag, creators.get((group, element >> 8)))
    return Attribute(tag, f"{tag:08X}", vr or "UN")


def _configured(entry: dictionary.Entry, creators: Creators) -> Attribute:
    if entry.creator is None:
        keyword = datadict.keyword_for_tag(entry.tag) or f"{entry.tag:08X}"
        return Attribute(entry.tag, keyword, entry.vr)
    block = None
    if any(g == entry.group and c == entry.creator for (g, _b), c in creators.items()):
        block = _block_of(creators, entry.group, entry.creator)
    tag = entry.tag_in_block(block)
    return Attribute(tag, f"{tag:08X}", entry.vr)


def private_creator_tag(tag: int) -> int | None:
    """(gggg,00xx) of a private data element (gggg,xxee); None for other tags."""
    group, element = tag >> 16, tag & 0xFFFF
    return group << 16 | element >> 8 if group % 2 and element >= 0x1000 else None


def query_creators(params: Iterable[tuple[str, str]]) -> dict[tuple[int, int], str]:
    """Private creators a query matches (``GGGG,00XX=creator``): (group, block) -> creator."""
    creators = {}
    for key, value in params:
        match = _HEX_TAG.match(key)
        if not match:
            continue
        group, element = int(match.group(1), 16), int(match.group(2), 16)
        text = _ENCODED_COMMA.sub(",", value).strip()
        if group % 2 and 0x10 <= element <= 0xFF and text and not set(text) & set("*?,\\"):
            creators[(group, element)] = text
    return creators


def tag_of(name: str) -> str:
    """8-hex tag of a keyword, ``GGGGEEEE`` or ``GGGG,EEEE`` (private tags by number).

    For names read from the settings (e.g. extrapolated metadata tags); raises
    ``ValueError`` for an unknown keyword or malformed tag.
    """
    attribute = lookup_attribute(name.strip())
    if attribute is not None:
        return attribute.hex
    match = _HEX_TAG.match(name.strip())
    if match:
        return (match.group(1) + match.group(2)).upper()
    raise ValueError(f"not a DICOM keyword or tag: {name!r}")


def parse_qido(
    level: Level,
    params: Iterable[tuple[str, str]],
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    case_sensitive: bool = False,
) -> QidoRequest:
    """Parse the query pairs of a QIDO-RS search at ``level`` (PS3.18 §10.6.1).

    ``study_uid``/``series_uid`` come from the URL path (``/studies/{st}/series``).
    Raises :class:`BadRequest` naming the offending parameter.
    """
    pairs = list(params)
    builder = _Builder(level, creators=query_creators(pairs))
    for key, value in pairs:
        builder.add(key, value)
    return builder.finish(study_uid, series_uid, case_sensitive)


def warning_texts(request: QidoRequest) -> list[str]:
    """Texts for ``Warning: 299 <service>: <text>`` headers (PS3.18 §8.3.4), printable
    ASCII only: a parameter name is the client's text, and a CR, LF or non-Latin-1
    character in a header value made the answer a 500."""
    texts = [FLAG_WARNINGS[name] for name in request.unsupported if name in FLAG_WARNINGS]
    others = [name for name in request.unsupported if name not in FLAG_WARNINGS]
    if others:
        texts.append("The following query parameters are not supported and were ignored: "
                     + ", ".join(_printable(name) for name in others))
    return texts


def _printable(text: str) -> str:
    """``text`` in printable ASCII: quotes and backslashes escaped (the Warning text is a
    quoted-string), other characters as Python escapes (``\\r``, ``\\xe9``)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


@dataclass
class _Filter:
    attribute: Attribute
    key: str  # as sent, for error messages
    value: str


@dataclass
class _Builder:
    """Accumulates the parameters; constraints are built at the end because
    ``fuzzymatching`` and the time of a date-time pair may come later."""

    level: Level
    creators: Creators = field(default_factory=dict)
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    filters: list[_Filter] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def add(self, key: str, value: str) -> None:
        lowered = key.lower()
        if not key or lowered in TRANSPORT_PARAMS:
            return
        if lowered == "includefield":
            self._add_include(value)
        elif lowered in ("limit", "offset", "fuzzymatching", *FLAG_WARNINGS):
            self._add_single(lowered, key, value)
        else:
            self._add_filter(key, value)

    def _once(self, name: str, key: str) -> None:
        if name in self.seen:
            raise BadRequest(f"Query parameter {key} is repeated")
        self.seen.add(name)

    def _add_single(self, name: str, key: str, value: str) -> None:
        self._once(name, key)
        if name in ("limit", "offset"):
            number = _parse_uint(key, value)
            if name == "offset":
                self.offset = number
            else:
                self.limit = number or None  # PS3.18 §8.3.4.4; 0 = no limit (Orthanc)
        elif name == "fuzzymatching":
            self.fuzzy = _parse_bool(key, value)
        elif _parse_bool(key, value):
            self.unsupported.append(name)

    def _add_include(self, value: str) -> None:
        # PS3.18 §8.3.4.3: comma-separated, repeatable; "all" = every attribute.
        for name in _split_names(value):
            if name.lower() == "all":
                self.include_all = True
                continue
            attribute = lookup_attribute(name, self.creators)
            if attribute is None:
                self.unsupported.append(name)
                continue
            self.include.add(attribute.hex)
            creator = private_creator_tag(attribute.tag)
            if creator is not None:  # PS3.18 §10.6.3.3: with its Private Creator
                self.include.add(f"{creator:08X}")

    def _add_filter(self, key: str, value: str) -> None:
        attribute = lookup_attribute(key, self.creators)
        if attribute is None:
            self.unsupported.append(key)  # unknown, private or a sequence path
            return
        self._once(attribute.hex, key)
        if attribute.vr in UNMATCHABLE_VRS and value.strip():
            self.unsupported.append(key)
            return
        self.filters.append(_Filter(attribute, key, value))

    def finish(
        self, study_uid: str | None, series_uid: str | None, case_sensitive: bool
    ) -> QidoRequest:
        path = _path_constraints(study_uid, series_uid)
        built = [(f, _constraint(f, self.level, self.fuzzy)) for f in self.filters]
        constraints = [c for _f, c in built if c is not None]
        query = Query(
            level=self.level,
            constraints=tuple(path + _combine_date_time(constraints)),
            case_sensitive=case_sensitive,
            limit=self.limit,
            offset=self.offset,
        )
        filter_tags = {f.attribute.hex for f in self.filters} | {c.tag for c in path}
        in_query = {_UID_LEVELS[f.attribute.tag] for f in self.filters
                    if f.attribute.tag in _UID_LEVELS}
        return QidoRequest(
            query=query,
            include=frozenset(self.include),
            include_all=self.include_all,
            fuzzy=self.fuzzy,
            filter_tags=frozenset(filter_tags),
            from_path=frozenset(c.level for c in path),
            parent_uid_in_query=frozenset(in_query),
            unsupported=self.unsupported,
        )


_UID_LEVELS = {STUDY_INSTANCE_UID: Level.STUDY, SERIES_INSTANCE_UID: Level.SERIES}

# Attributes the index computes (PS3.18 §10.6.3.3, PS3.4 C.3.4) and stores with their
# level's JSON; levels.level_of only knows stored attributes.
COMPUTED_LEVELS: dict[int, Level] = {
    0x00080061: Level.STUDY,  # ModalitiesInStudy
    0x00080062: Level.STUDY,  # SOPClassesInStudy
    0x00201206: Level.STUDY,  # NumberOfStudyRelatedSeries
    0x00201208: Level.STUDY,  # NumberOfStudyRelatedInstances
    0x00201209: Level.SERIES,  # NumberOfSeriesRelatedInstances
}


MAX_UINT = 2**31 - 1  # beyond any result set; keeps values inside a database INTEGER


def _parse_uint(key: str, value: str) -> int:
    if not _UINT.match(value.strip()) or len(value.strip()) > 10:
        raise BadRequest(f"Query parameter {key} must be a non-negative integer, not {value!r}")
    number = int(value)
    if number > MAX_UINT:
        raise BadRequest(f"Query parameter {key} must be at most {MAX_UINT}, not {value!r}")
    return number


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise BadRequest(f"Query parameter {key} must be true or false, not {value!r}")
    return lowered == "true"


def _split_names(value: str) -> list[str]:
    """Split an includefield value on commas (also a literal ``%2C``), rejoining the
    two halves of a ``GGGG,EEEE`` tag."""
    parts = [p.strip() for p in _ENCODED_COMMA.sub(",", value).split(",")]
    names: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and _HEX4.match(parts[i]) and _ELEMENT.match(parts[i + 1]):
            names.append(parts[i] + parts[i + 1])
            i += 2
            continue
        if parts[i]:
            names.append(parts[i])
        i += 1
    return names


def _path_constraints(study_uid: str | None, series_uid: str | None) -> list[Constraint]:
    """UIDs of the URL path: single value matching on the unique keys (PS3.18 §10.6.1.2)."""
    constraints = []
    for uid, tag in ((study_uid, STUDY_INSTANCE_UID), (series_uid, SERIES_INSTANCE_UID)):
        if uid:
            attribute = _attribute(tag)
            constraints.append(_make(attribute, _UID_LEVELS[tag], Match.SINGLE, (uid,)))
    return constraints


def _attribute(tag: int) -> Attribute:
    found = lookup_attribute(f"{tag:08X}")
    assert found is not None
    return found


def _make(attribute: Attribute, level: Level, kind: Match, values: tuple[str, ...]) -> Constraint:
    return Constraint(level=level, keyword=attribute.keyword, tag=attribute.hex,
                      vr=attribute.vr, kind=kind, values=values)


def _constraint(flt: _Filter, query_level: Level, fuzzy: bool) -> Constraint | None:
    """One matching key -> a constraint, or None for universal matching (C.2.2.2.3)."""
    attribute, value = flt.attribute, _ENCODED_COMMA.sub(",", flt.value).strip()
    level = COMPUTED_LEVELS.get(attribute.tag) or level_of(attribute.tag, query_level)
    if attribute.tag == MODALITIES_IN_STUDY and query_level is Level.STUDY:
        # PS3.18 §10.6.1.2.1.1: a study matches when any of its series' Modality does.
        attribute, level = _attribute(MODALITY), Level.SERIES
    if not value or set(value) == {"*"}:
        return None
    parsed = _parse_value(attribute, flt.key, value, fuzzy)
    if parsed is None:
        return None
    kind, values = parsed
    if attribute.tag == INSTANCE_AVAILABILITY and _matches_online(values):
        return None  # everything is ONLINE (computed, never stored)
    return _make(attribute, level, kind, values)


def _matches_online(values: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase("ONLINE", v.upper()) for v in values)


def _parse_value(
    attribute: Attribute, key: str, value: str, fuzzy: bool
) -> tuple[Match, tuple[str, ...]] | None:
    vr = attribute.vr
    if vr == "UI":
        return _parse_uids(key, value)
    if vr in ("DA", "TM", "DT"):
        return _parse_temporal(vr, key, value)
    has_wildcard = "*" in value or "?" in value
    if has_wildcard and vr not in WILDCARD_VRS:
        raise BadRequest(f"Wildcards are not allowed in {key} (VR {vr}, PS3.4 C.2.2.2.4)")
    items = [v.strip() for v in _LIST_SEPARATORS.split(value)]
    if len(items) > 1:
        if has_wildcard:
            raise BadRequest(f"Wildcards are not allowed in a list of values ({key})")
        return Match.LIST, tuple(_scalar(vr, key, v) for v in items if v)
    if has_wildcard:
        return Match.WILDCARD, (value,)
    if fuzzy and vr == "PN":
        words = tuple(w for w in _PN_WORD_SEPARATORS.split(value) if w)
        return (Match.FUZZY, words) if words else None
    return Match.SINGLE, (_scalar(vr, key, value),)


def _scalar(vr: str, key: str, value: str) -> str:
    """Validate (and normalise) one non-temporal value."""
    if vr in INTEGER_VRS:
        try:
            if not _INTEGER.match(value):
                raise ValueError(value)
            return str(int(value))  # ValueError beyond 4300 digits (sys.int_info)
        except ValueError:
            raise BadRequest(f"Bad value for {key}: {value!r} is not an integer") from None
    if vr in DECIMAL_VRS and not _DECIMAL.match(value):
        raise BadRequest(f"Bad value for {key}: {value!r} is not a number")
    return value


def _parse_uids(key: str, value: str) -> tuple[Match, tuple[str, ...]] | None:
    """UID list matching (PS3.4 C.2.2.2.2): ``,`` (PS3.18) or ``\\`` (OHIF) separated."""
    uids = tuple(u.strip() for u in _LIST_SEPARATORS.split(value) if u.strip())
    if any("*" in u or "?" in u for u in uids):
        raise BadRequest(f"Wildcards are not allowed in UIDs ({key}, PS3.4 C.2.2.2.4)")
    if not uids:
        return None
    return (Match.LIST, uids) if len(uids) > 1 else (Match.SINGLE, uids)


def _parse_temporal(vr: str, key: str, value: str) -> tuple[Match, tuple[str, ...]] | None:
    """Single value, list or range (PS3.4 C.2.2.2.5) of a DA, TM or DT key."""
    items = [v.strip() for v in _LIST_SEPARATORS.split(value) if v.strip()]
    if len(items) > 1:
        if any("-" in v for v in items):
            raise BadRequest(f"Bad value for {key}: a list may not contain ranges")
        return Match.LIST, tuple(_normalise(vr, key, v) for v in items)
    if "-" not in value:
        return Match.SINGLE, (_normalise(vr, key, value),)
    bounds = value.split("-")
    if len(bounds) != 2:
        raise BadRequest(f"Bad value for {key}: a range has exactly one '-'")
    lo, hi = (b.strip() for b in bounds)
    if not lo and not hi:
        return None  # "-" alone: every value
    lo = _normalise(vr, key, lo) if lo else ""
    hi = _pad_high(vr, _normalise(vr, key, hi)) if hi else ""
    return Match.RANGE, (lo, hi)


def _normalise(vr: str, key: str, value: str) -> str:
    if vr == "DA":
        return _normalise_date(key, value)
    if vr == "TM":
        return _normalise_time(key, value)
    if not _DT.match(value):
        raise BadRequest(f"Bad value for {key}: {value!r} is not a DICOM DT (no offsets)")
    return value


def _normalise_date(key: str, value: str) -> str:
    text = value.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise BadRequest(f"Bad value for {key}: {value!r} is not a date YYYYMMDD") from None
    if len(text) != 8:
        raise BadRequest(f"Bad value for {key}: {value!r} is not a date YYYYMMDD")
    return text


def _normalise_time(key: str, value: str) -> str:
    text = value.replace(":", "")  # ACR-NEMA style HH:MM:SS
    match = _TM.match(text)
    if not match or not _time_in_range(match):
        raise BadRequest(f"Bad value for {key}: {value!r} is not a time HHMMSS.FFFFFF")
    return text


def _time_in_range(match: re.Match[str]) -> bool:
    hours, minutes, seconds = match.group(1), match.group(3), match.group(5)
    return int(hours) < 24 and int(minutes or 0) < 60 and int(seconds or 0) <= 60


def _pad_high(vr: str, value: str) -> str:
    """Upper bound such that every stored value with this prefix compares <= it."""
    if vr == "DA":
        return value
    digits = 6 if vr == "TM" else 14
    whole, _, fraction = value.partition(".")
    return whole.ljust(digits, "9") + "." + fraction.ljust(6, "9")


def _combine_date_time(constraints: list[Constraint]) -> list[Constraint]:
    """Merge Date and Time keys into one date-time range (PS3.4 C.2.2.2.5.1)."""
    by_keyword = {c.keyword: c for c in constraints}
    result = list(constraints)
    for date_kw, time_kw in DATE_TIME_PAIRS.items():
        date, time = by_keyword.get(date_kw), by_keyword.get(time_kw)
        if date is None or time is None or not _combinable(date, time):
            continue
        d_lo, d_hi = _as_range(date)
        t_lo, t_hi = _as_range(time)
        lo = d_lo + t_lo if d_lo else ""
        hi = d_hi + _pad_high("TM", t_hi) if d_hi else ""
        combined = Constraint(level=date.level, keyword=date.keyword, tag=date.tag, vr=date.vr,
                              kind=Match.RANGE, values=(lo, hi), also=time.keyword)
        result[result.index(date)] = combined
        result.remove(time)
    return result


def _combinable(date: Constraint, time: Constraint) -> bool:
    kinds = {date.kind, time.kind}
    return kinds <= {Match.SINGLE, Match.RANGE} and Match.RANGE in kinds


def _as_range(constraint: Constraint) -> tuple[str, str]:
    if constraint.kind is Match.RANGE:
        return constraint.values[0], constraint.values[1]
    return constraint.values[0], constraint.values[0]
