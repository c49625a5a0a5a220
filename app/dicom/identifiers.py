"""UID validation and Orthanc-compatible resource identifiers.

UIDs (PS3.5 §9.1) are at most 64 characters of digits and dots, in non-empty
dot-separated components. The standard also forbids a leading zero in a
multi-digit component, but real-world archives hold many such UIDs (``1.2.03``),
and refusing them would make stored studies unreachable; they are accepted.

Resource ids follow Orthanc's ``DicomInstanceHasher``: the SHA-1 of the
``|``-joined PatientID and UIDs down to the level, formatted like Orthanc's
``Toolbox::ComputeSHA1`` as five groups of eight lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import re

from app.errors import BadRequest

_UID_MAX_LENGTH = 64  # PS3.5 §9.1
_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def is_valid_uid(s: object) -> bool:
    """Whether ``s`` is a UID per PS3.5 §9.1, leading zeros in components tolerated."""
    return (
        isinstance(s, str)
        and 0 < len(s) <= _UID_MAX_LENGTH
        and _UID_RE.fullmatch(s) is not None
    )


def check_uid(s: str, what: str) -> str:
    """Return ``s`` if it is a valid UID, else raise :class:`BadRequest` naming ``what``."""
    if not is_valid_uid(s):
        raise BadRequest(f"Invalid {what}: not a DICOM UID", details=repr(s)[:80])
    return s


def orthanc_hash(text: str) -> str:
    """SHA-1 of the UTF-8 text as Orthanc formats it: ``xxxxxxxx-xxxxxxxx-…`` (5 groups)."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_ids(
    patient_id: str, study: str, series: str, sop: str
) -> tuple[str, str, str, str]:
    """Orthanc ids of the patient, study, series and instance of one instance.

    ``patient_id`` is the PatientID value (``""`` when absent), as Orthanc's
    ``DicomInstanceHasher`` uses it.
    """
    parts = (patient_id, study, series, sop)
    return (
        orthanc_hash(parts[0]),
        orthanc_hash("|".join(parts[:2])),
        orthanc_hash("|".join(parts[:3])),
        orthanc_hash("|".join(parts)),
    )
