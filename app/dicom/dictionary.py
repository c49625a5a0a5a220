"""Orthanc's ``Dictionary``, ``DefaultPrivateCreator``, ``LoadPrivateDictionary`` and
``DefaultEncoding`` settings, applied once per process at start-up.

``Dictionary`` (Orthanc's format, ``OrthancConfiguration`` ``LoadCustomDictionary``)::

    "Dictionary": {
      "0014,1020": ["DA", "ValidationExpiryDate", 1, 1],
      "00e1,10c2": ["UI", "PET-CT Multi Modality Name", 1, 1, "ELSCINT1"],
      "2001,5f":   ["SQ", "StackSequence", 1, 1, "Philips Imaging DD 001"]
    }

Key: the tag, ``gggg,eeee`` (1 to 4 hexadecimal digits each side, as DCMTK's
``findTagFromName`` reads it), ``ggggeeee`` or a DICOM keyword. Value: VR, name, then
optionally the minimum multiplicity (>= 1, default 1), the maximum (0 = any, default 1)
and the private creator.

Decisions:

* Public entries (even group) are written into pydicom's dictionary: a new tag gets the
  name as keyword (when it is a Python identifier), an existing tag keeps its standard
  keyword and gets the configured VR/VM, the name becoming an alias of it
  (``ValidationExpiryDate`` and ``ExpiryDate`` both find (0014,1020)).
* Private entries (odd group) are registered for their creator, the entry's own (5th
  item) or else ``DefaultPrivateCreator``; without either the entry is an error. They
  are block-agnostic, as pydicom's own private dictionary: ``0009,1001`` and ``0009,01``
  both describe element 01 of the block the creator reserved in the file, wherever
  (PS3.5 §7.8.1; DCMTK reads a 2-digit element the same way and ``0009,1001`` only in
  block 10). The configured entry replaces pydicom's entries for the same creator,
  group and element offset.
* A name is usable as a QIDO key (:func:`entry_named`) when exactly one entry has it
  and it is not the standard keyword of another tag (``"Private data element"`` is
  commonly repeated for every creator: such names are simply not keys).
* ``LoadPrivateDictionary`` is accepted; pydicom's private dictionary is always there.
* ``DefaultEncoding`` is the character set of files without Specific Character Set
  (0008,0005) (:data:`ENCODING_CHARSETS`); ingest reads it through
  :func:`default_encoding`. A present but empty (0008,0005) is the default repertoire,
  as pydicom reads it.

Process-wide state, like pydicom's dictionary itself: :func:`configure` is called by
``create_app`` with the settings (identical in every worker, set before gunicorn forks).
A new call replaces what the previous one registered, so it is idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import datadict
from pydicom.charset import convert_encodings
from pydicom.valuerep import AMBIGUOUS_VR, VR

from app.errors import ConfigurationError

log = logging.getLogger(__name__)

# Orthanc's DefaultEncoding -> the Specific Character Set (0008,0005) it stands for
# (Orthanc ``GetDicomSpecificCharacterSet``); the ISO 2022 multi-byte sets come with the
# default repertoire first, as DICOM writes them ("\ISO 2022 IR 87").
ENCODING_CHARSETS: dict[str, str | None] = {
    "Ascii": "ISO_IR 6",
    "Utf8": "ISO_IR 192",
    "Latin1": "ISO_IR 100",
    "Latin2": "ISO_IR 101",
    "Latin3": "ISO_IR 109",
    "Latin4": "ISO_IR 110",
    "Latin5": "ISO_IR 148",
    "Cyrillic": "ISO_IR 144",
    "Arabic": "ISO_IR 127",
    "Greek": "ISO_IR 126",
    "Hebrew": "ISO_IR 138",
    "Thai": "ISO_IR 166",
    "Japanese": "ISO_IR 13",
    "Chinese": "GB18030",
    "JapaneseKanji": "\\ISO 2022 IR 87",
    "Korean": "\\ISO 2022 IR 149",
    "SimplifiedChinese": "\\ISO 2022 IR 58",
    "Windows1251": None,  # no DICOM defined term: Python's cp1251
}
_CODEC_ONLY = {"Windows1251": ["cp1251"]}

VRS: frozenset[str] = frozenset(str(vr.value) for vr in VR) - AMBIGUOUS_VR
# PS3.5 §7.8.1: odd groups that cannot hold private data elements.
ILLEGAL_PRIVATE_GROUPS = frozenset({0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF})
_RESERVED_GROUPS = {0x0000: "command", 0x0002: "file meta", 0xFFFE: "item delimitation"}

_TAG_COMMA = re.compile(r"^([0-9A-Fa-f]{1,4})\s*,\s*([0-9A-Fa-f]{1,4})$")
_TAG_8 = re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$")
_FORMAT = "[VR, name, minimum multiplicity, maximum multiplicity, private creator]"


@dataclass(frozen=True)
class Entry:
    """One valid ``Dictionary`` entry; ``creator`` is None for a public tag."""

    key: str  # as written in the settings
    group: int
    element: int  # as written: "2001,5f" is 0x005F (an element offset, private only)
    vr: str
    name: str
    vm: str  # "1", "1-n", "2-4"
    creator: str | None

    @property
    def tag(self) -> int:
        return self.group << 16 | self.element

    def tag_in_block(self, block: int | None = None) -> int:
        """The tag of this entry in a data set: a private element lands in the block its
        creator reserved (``block``; default: the block of the key, else 0x10)."""
        if self.creator is None:
            return self.tag
        if block is None:
            block = self.element >> 8 if self.element >= 0x1000 else 0x10
        return self.group << 16 | block << 8 | (self.element & 0xFF)


@dataclass
class _State:
    """What :func:`configure` changed in pydicom, to undo it on the next call."""

    public: dict[int, Any]  # tag -> previous DicomDictionary entry (None: absent)
    keywords: dict[str, int | None]
    private: dict[tuple[str, str], Any]  # (creator, key) -> previous entry
    created: set[str]  # creators that had no private dictionary


_state = _State({}, {}, {}, set())
_names: dict[str, Entry] = {}
_private_vrs: dict[tuple[int, int], set[str]] = {}  # (group, offset) -> configured VRs
_settings: dict[str, str] = {"creator": "", "encoding": "Latin1"}


# --- validation ---------------------------------------------------------------------


def parse_tag(key: str) -> int:
    """The tag of a ``Dictionary`` key; ValueError with the reason."""
    text = key.strip()
    match = _TAG_COMMA.match(text) or _TAG_8.match(text)
    if match:
        return int(match.group(1), 16) << 16 | int(match.group(2), 16)
    found = datadict.tag_for_keyword(text) if text.isidentifier() else None
    if found is None:
        raise ValueError("not a tag: expected 'gggg,eeee' (hexadecimal) or a DICOM keyword")
    return int(found)


def parse_entry(key: str, value: Any, default_private_creator: str = "") -> Entry:
    """One ``Dictionary`` entry; ValueError naming the first problem."""
    tag = parse_tag(key)
    if not isinstance(value, list) or not 2 <= len(value) <= 5:
        raise ValueError(f"expected a list {_FORMAT} (2 to 5 items), got {value!r}")
    vr, name, *rest = value
    if not isinstance(vr, str) or vr not in VRS:
        raise ValueError(f"unknown VR {vr!r} (one of {', '.join(sorted(VRS))})")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the name (2nd item) must be a non-empty string, got {name!r}")
    low = _multiplicity(rest[0], "minimum", 3) if rest else 1
    high = _multiplicity(rest[1], "maximum", 4) if len(rest) > 1 else 1
    if low < 1:
        raise ValueError(f"the minimum multiplicity must be at least 1, got {low}")
    if high and high < low:
        raise ValueError(f"the maximum multiplicity ({high}) must be 0 (any) or at least "
                         f"the minimum ({low})")
    creator = rest[2] if len(rest) > 2 else None
    if creator is not None and not isinstance(creator, str):
        raise ValueError(f"the private creator (5th item) must be a string, got {creator!r}")
    group, element = tag >> 16, tag & 0xFFFF
    _check_tag(group, element)
    if group % 2 == 0:
        if creator:
            raise ValueError(f"a private creator ({creator!r}) is only for private tags "
                             f"(odd group), not group {group:04X}")
        creator = None
    else:
        creator = creator or default_private_creator
        if not creator:
            raise ValueError("private tag without a private creator (5th item) and no "
                             "DefaultPrivateCreator")
    vm = str(low) if low == high else f"{low}-{high or 'n'}"
    return Entry(key, group, element, vr, name.strip(), vm, creator)


def _multiplicity(value: Any, which: str, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"the {which} multiplicity ({position}th item) must be an integer, "
                         f"got {value!r}")
    if value < 0:
        raise ValueError(f"the {which} multiplicity must not be negative, got {value}")
    return value


def _check_tag(group: int, element: int) -> None:
    if group in _RESERVED_GROUPS:
        raise ValueError(f"group {group:04X} ({_RESERVED_GROUPS[group]}) cannot be declared")
    if element == 0:
        raise ValueError("group length elements (gggg,0000) cannot be declared")
    if group % 2 == 0:
        return
    if group in ILLEGAL_PRIVATE_GROUPS:
        raise ValueError(f"group {group:04X} cannot hold private elements (PS3.5 7.8.1)")
    if 0x0100 <= element < 0x1000:
        raise ValueError(f"element {element:04X} is neither an element offset (gggg,00ee) "
                         "nor in a private block (gggg,xxee with xx from 10 to FF)")


def parse_entries(
    settings_dictionary: Mapping[str, Any], default_private_creator: str = ""
) -> tuple[list[Entry], list[str]]:
    """The valid entries, and one message per invalid or duplicated one."""
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[tuple[int, int, str | None], str] = {}
    for key, value in settings_dictionary.items():
        try:
            entry = parse_entry(key, value, default_private_creator)
        except ValueError as exc:
            problems.append(f"Dictionary entry {key!r}: {exc}")
            continue
        offset = entry.element & 0xFF if entry.creator is not None else entry.element
        identity = (entry.group, offset, entry.creator)
        if identity in seen:
            problems.append(f"Dictionary entry {key!r}: the same tag as {seen[identity]!r}")
            continue
        seen[identity] = key
        entries.append(entry)
    return entries, problems


def problems(
    settings_dictionary: Mapping[str, Any],
    default_private_creator: str = "",
    default_encoding: str = "Latin1",
) -> list[str]:
    """Every problem of these settings, one message each (empty: valid)."""
    found = parse_entries(settings_dictionary, default_private_creator)[1]
    if default_encoding not in ENCODING_CHARSETS:
        found.append(f"DefaultEncoding {default_encoding!r} is not one of "
                     f"{', '.join(ENCODING_CHARSETS)}")
    return found


def validate(
    settings_dictionary: Mapping[str, Any],
    default_private_creator: str = "",
    default_encoding: str = "Latin1",
) -> None:
    """Raise :class:`ConfigurationError` naming every problem (``"; "``-separated);
    registers nothing (``check-config``)."""
    found = problems(settings_dictionary, default_private_creator, default_encoding)
    if found:
        raise ConfigurationError("; ".join(found))


# --- registration -------------------------------------------------------------------


def configure(
    settings_dictionary: Mapping[str, Any],
    default_private_creator: str = "",
    load_private: bool = True,
    default_encoding: str = "Latin1",
) -> None:
    """Register the ``Dictionary`` with pydicom and keep ``DefaultPrivateCreator`` and
    ``DefaultEncoding``, replacing what a previous call did.

    Raises :class:`ConfigurationError` naming every problem (nothing is changed then).
    """
    validate(settings_dictionary, default_private_creator, default_encoding)
    entries, _ = parse_entries(settings_dictionary, default_private_creator)
    _restore()
    names = _usable_names(entries)
    for entry in entries:
        if entry.creator is None:
            _register_public(entry)
        else:
            _register_private(entry)
    _names.update(names)
    for entry in entries:
        if entry.creator is not None:
            _private_vrs.setdefault((entry.group, entry.element & 0xFF), set()).add(entry.vr)
    _settings.update(creator=default_private_creator, encoding=default_encoding)
    if not load_private:
        log.info("LoadPrivateDictionary is false: pydicom's private dictionary stays loaded")
    if entries:
        log.info("Dictionary: %d entries registered", len(entries))


def _usable_names(entries: list[Entry]) -> dict[str, Entry]:
    """Names that designate one entry (called before registering: pydicom's keywords are
    the standard ones)."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.name] = counts.get(entry.name, 0) + 1
    names = {}
    for entry in entries:
        standard = datadict.tag_for_keyword(entry.name)
        if counts[entry.name] > 1:
            log.debug("Dictionary name %r is shared by several entries", entry.name)
        elif standard is not None and standard != entry.tag:
            log.warning("Dictionary entry %r: %r is the keyword of (%04X,%04X); it keeps "
                        "that meaning", entry.key, entry.name, standard >> 16,
                        standard & 0xFFFF)
        else:
            names[entry.name] = entry
    return names


def _register_public(entry: Entry) -> None:
    """What ``datadict.add_dict_entries`` does, keeping what it replaces and without
    mapping the keyword "" (a name that is no Python identifier is no keyword)."""
    existing = datadict.DicomDictionary.get(entry.tag)
    keyword = existing[4] if existing and existing[4] else ""
    alias = entry.name if entry.name.isidentifier() else ""
    if alias and datadict.tag_for_keyword(alias) not in (None, entry.tag):
        alias = ""  # a standard keyword of another tag keeps its meaning
    keyword = keyword or alias
    _state.public.setdefault(entry.tag, existing)
    datadict.DicomDictionary[entry.tag] = (entry.vr, entry.vm, entry.name, "", keyword)
    for word in {keyword, alias} - {""}:
        _state.keywords.setdefault(word, datadict.keyword_dict.get(word))
        datadict.keyword_dict[word] = entry.tag


def _register_private(entry: Entry) -> None:
    assert entry.creator is not None
    creator = entry.creator
    if creator not in datadict.private_dictionaries:
        _state.created.add(creator)
    table = datadict.private_dictionaries.get(creator, {})
    group, offset = f"{entry.group:04X}", f"{entry.element & 0xFF:02X}"
    # pydicom looks up "ggggeeee" first, then "ggggxxee" then "ggxxxxee": replace the
    # creator's exact entries for this element offset too.
    keys = [k for k in table if k[:4] == group and k[-2:] == offset and "xx" not in k]
    for key in [*keys, f"{group}xx{offset}"]:
        _state.private.setdefault((creator, key), table.get(key))
    value = (entry.vr, entry.vm, entry.name, "")
    datadict.add_private_dict_entries(creator, {entry.tag_in_block(0x10): value})
    for key in keys:
        datadict.private_dictionaries[creator][key] = value


def _restore() -> None:
    """Undo the previous :func:`configure` (pydicom's dictionaries as they were)."""
    for tag, previous in _state.public.items():
        if previous is None:
            datadict.DicomDictionary.pop(tag, None)
        else:
            datadict.DicomDictionary[tag] = previous
    for word, tag in _state.keywords.items():
        if tag is None:
            datadict.keyword_dict.pop(word, None)
        else:
            datadict.keyword_dict[word] = tag
    for (creator, key), previous in _state.private.items():
        table = datadict.private_dictionaries.get(creator, {})
        if previous is None:
            table.pop(key, None)
        else:
            table[key] = previous
    for creator in _state.created:
        if not datadict.private_dictionaries.get(creator, True):
            del datadict.private_dictionaries[creator]
    _state.public.clear()
    _state.keywords.clear()
    _state.private.clear()
    _state.created.clear()
    _names.clear()
    _private_vrs.clear()
    _settings.update(creator="", encoding="Latin1")


# --- lookups --------------------------------------------------------------------------


def entry_named(name: str) -> Entry | None:
    """The configured entry a name (the 2nd item of its value) designates, if usable."""
    return _names.get(name)


def default_private_creator() -> str:
    return _settings["creator"]


def private_vr(tag: int, creator: str | None = None) -> str | None:
    """VR of a private data element: from ``creator``'s dictionary when given, else from
    DefaultPrivateCreator's, else the one VR the Dictionary gives that element offset
    under any creator; None if unknown."""
    name = creator or _settings["creator"]
    if name:
        try:
            return str(datadict.private_dictionary_VR(tag, name))
        except KeyError:
            pass
    if creator:
        return None
    vrs = _private_vrs.get((tag >> 16, tag & 0xFF), set())
    return next(iter(vrs)) if len(vrs) == 1 else None


def default_encoding() -> str:
    """The configured DefaultEncoding (Orthanc name)."""
    return _settings["encoding"]


def charset_codecs(encoding: str) -> list[str]:
    """Python codecs pydicom decodes with for a DefaultEncoding name (ValueError if
    unknown): those of its Specific Character Set."""
    if encoding in _CODEC_ONLY:
        return list(_CODEC_ONLY[encoding])
    if encoding not in ENCODING_CHARSETS:
        raise ValueError(f"unknown DefaultEncoding {encoding!r}")
    charset = ENCODING_CHARSETS[encoding]
    assert charset is not None
    return convert_encodings(charset.split("\\"))
