"""Which level (study / series / instance) each top-level attribute belongs to.

The split follows the Information Entities of PS3.3 A.1.2: the Patient, Clinical
Trial Subject, General Study, Patient Study and Clinical Trial Study modules
describe the study (patients are not a DICOMweb level, PS3.18 §10.6: their
attributes are answered with the study); General Series, Clinical Trial Series,
Frame of Reference and General Equipment describe the series. Every other
attribute, private tags included, is instance level.

Attributes are kept by tag as plain ``int`` sets so that the per-element lookup
done at ingest is a set membership test.

``TimezoneOffsetFromUTC`` belongs to the SOP Common module and stays at the
instance level even though Orthanc repeats it at every level.

Orthanc's ``ExtraMainDicomTags`` setting (:func:`configure_extra_tags`, called once at
start-up) keeps listed attributes *also* at the level they are listed at: ingest copies
them there (:func:`add_extra_tags`), so that QIDO answers and MainDicomTags metadata of
that level carry them and a search at that level matches that level's own value
(:func:`level_of` with a query level). Instances stored before the setting changed keep
what they were stored with (Orthanc, too, asks for a reconstruction).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydicom import datadict
from pydicom.datadict import tag_for_keyword

from app.errors import ConfigurationError
from backends.base import DicomJson, Level

log = logging.getLogger(__name__)

# PS3.3 C.7.1.1 Patient, C.7.1.3 Clinical Trial Subject.
_PATIENT_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID", "PatientBirthDate", "PatientBirthTime",
    "PatientBirthDateInAlternativeCalendar", "PatientDeathDateInAlternativeCalendar",
    "PatientAlternativeCalendar", "PatientSex", "QualityControlSubject", "StrainDescription",
    "StrainNomenclature", "StrainStockSequence", "StrainAdditionalInformation",
    "StrainCodeSequence", "GeneticModificationsSequence", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "ReferencedPatientPhotoSequence",
    "EthnicGroup", "EthnicGroupCodeSequence", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "ResponsiblePerson", "ResponsiblePersonRole",
    "ResponsibleOrganization", "PatientComments", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "SourcePatientGroupIdentificationSequence", "GroupOfPatientsIdentificationSequence",
    "ReferencedPatientSequence", "PatientReligiousPreference", "PatientMotherBirthName",
    "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank", "BranchOfService",
    "CountryOfResidence", "RegionOfResidence", "PatientInsurancePlanCodeSequence",
    "PatientPrimaryLanguageCodeSequence", "MedicalRecordLocator",
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
)

# PS3.3 C.7.2.1 General Study, C.7.2.2 Patient Study, C.7.2.3 Clinical Trial Study,
# plus the requesting physician/service that QIDO clients search studies by.
_STUDY_KEYWORDS: tuple[str, ...] = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
    "ConsultingPhysicianIdentificationSequence", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "RequestingServiceCodeSequence",
    "ReferencedStudySequence", "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence", "RequestingPhysician", "RequestingService",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge",
    "PatientSize", "PatientWeight", "PatientBodyMassIndex", "MeasuredAPDimension",
    "MeasuredLateralDimension", "PatientSizeCodeSequence", "MedicalAlerts", "Allergies",
    "SmokingStatus", "PregnancyStatus", "LastMenstrualDate", "PatientState", "Occupation",
    "AdditionalPatientHistory", "AdmissionID", "IssuerOfAdmissionIDSequence",
    "ServiceEpisodeID", "IssuerOfServiceEpisodeIDSequence", "ServiceEpisodeDescription",
    "PatientSexNeutered", "ReasonForVisit", "ReasonForVisitCodeSequence",
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription",
    "ConsentForClinicalTrialUseSequence",
)

# PS3.3 C.7.3.1 General Series, C.7.3.2 Clinical Trial Series, C.7.4.1 Frame of
# Reference, C.7.5.1 General Equipment.
_SERIES_KEYWORDS: tuple[str, ...] = (
    "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate", "SeriesTime",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "ProtocolName",
    "SeriesDescription", "SeriesDescriptionCodeSequence", "OperatorsName",
    "OperatorIdentificationSequence", "ReferencedPerformedProcedureStepSequence",
    "RelatedSeriesSequence", "BodyPartExamined", "PatientPosition",
    "SmallestPixelValueInSeries", "LargestPixelValueInSeries", "RequestAttributesSequence",
    "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime", "PerformedProcedureStepDescription",
    "PerformedProtocolCodeSequence", "CommentsOnThePerformedProcedureStep",
    "AnatomicalOrientationType", "TreatmentSessionUID",
    "ClinicalTrialCoordinatingCenterName", "ClinicalTrialSeriesID",
    "ClinicalTrialSeriesDescription",
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "InstitutionalDepartmentTypeCodeSequence",
    "ManufacturerModelName", "ManufacturerDeviceClassUID", "DeviceSerialNumber",
    "SoftwareVersions", "GantryID", "UDISequence", "DeviceUID", "SpatialResolution",
    "DateOfLastCalibration", "TimeOfLastCalibration",
)


def _tags(keywords: tuple[str, ...]) -> frozenset[int]:
    tags = {tag_for_keyword(keyword) for keyword in keywords}
    if None in tags:  # a typo in the tables above; caught by the unit tests at import
        missing = [k for k in keywords if tag_for_keyword(k) is None]
        raise ValueError(f"unknown DICOM keywords: {missing}")
    return frozenset(int(tag) for tag in tags if tag is not None)


# Patient attributes are answered at the study level (PS3.18 §10.6.3.3.1).
STUDY_LEVEL: frozenset[int] = _tags(_PATIENT_KEYWORDS) | _tags(_STUDY_KEYWORDS)
SERIES_LEVEL: frozenset[int] = _tags(_SERIES_KEYWORDS)


def natural_level(tag: int) -> Level:
    """The level a top-level attribute belongs to; private and unknown tags → instance."""
    if tag in STUDY_LEVEL:
        return Level.STUDY
    if tag in SERIES_LEVEL:
        return Level.SERIES
    return Level.INSTANCE


def level_of(tag: int, query_level: Level | None = None) -> Level:
    """The level whose stored attributes a QIDO key on ``tag`` is matched against.

    Without ``query_level``, or for an attribute no ExtraMainDicomTags entry lists: the
    attribute's own level (:func:`natural_level`); a key of a level below the query
    level then matches when any child does. With ExtraMainDicomTags, the first of the
    query level and its parents (nearest first) that keeps the attribute: the series'
    own ImageType for ``series?ImageType=...`` listed at Series, on one row per series;
    each instance's own FrameOfReferenceUID for ``instances?FrameOfReferenceUID=...``
    listed at Instance. That is also where the answer takes the value from
    (:mod:`app.dicom.search` looks in the same order), so a match shows what matched.
    """
    natural = natural_level(tag)
    extra = _extra.levels.get(tag) if query_level is not None else None
    if not extra or query_level is None:
        return natural
    for level in _UPWARDS[query_level]:
        if level is natural or level in extra:
            return level
    return natural


# ---------------------------------------------------------------------------------------------
# ExtraMainDicomTags

# Orthanc's levels; patients are not a DICOMweb level, their attributes live with the study.
SETTING_LEVELS: dict[str, Level] = {
    "Patient": Level.STUDY, "Study": Level.STUDY, "Series": Level.SERIES,
    "Instance": Level.INSTANCE,
}
_DEPTH = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}
# A level, then its parents, nearest first (the order QIDO answers look attributes up in).
_UPWARDS: dict[Level, tuple[Level, ...]] = {
    Level.STUDY: (Level.STUDY,),
    Level.SERIES: (Level.SERIES, Level.STUDY),
    Level.INSTANCE: (Level.INSTANCE, Level.SERIES, Level.STUDY),
}
# Binary VRs are bulk data, never kept with a level's attributes (ingest.split_levels).
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Computed by the index for every answer (PS3.18 §10.6.3.3); a stored copy is never read.
_COMPUTED = frozenset({
    0x00080056,  # InstanceAvailability
    0x00080061,  # ModalitiesInStudy
    0x00080062,  # SOPClassesInStudy
    0x00201200, 0x00201202, 0x00201204,  # NumberOfPatientRelated{Studies,Series,Instances}
    0x00201206, 0x00201208, 0x00201209,  # NumberOf{Study,Series}Related...
})
_HEX_TAG = re.compile(r"^([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})$")


@dataclass(frozen=True)
class ExtraTags:
    """ExtraMainDicomTags, resolved: what ingest copies and where QIDO may match it."""

    # (JSON key, level holding the attribute, level it is also kept at)
    copies: tuple[tuple[str, Level, Level], ...] = ()
    # tag -> levels it is also kept at (its own level excluded)
    levels: Mapping[int, frozenset[Level]] = field(default_factory=dict)


_extra = ExtraTags()


def parse_extra_tags(extra: Mapping[str, Sequence[str]]) -> ExtraTags:
    """Resolve an ``ExtraMainDicomTags`` setting (keywords or ``GGGG,EEEE`` / ``GGGGEEEE``).

    Raises :class:`ConfigurationError` naming an unknown level, keyword or malformed tag
    (Orthanc refuses to start too). Attributes that can never be kept with a level's
    attributes are skipped with a warning rather than refused, so that an Orthanc file
    loads as is: binary VRs (bulk data), groups 0000/0002/FFFE (not in the data set),
    computed attributes (the index computes them). Sequences are kept at any level
    (Orthanc ≥ 1.11 does the same). Listing an attribute at its own level changes nothing:
    every non-binary attribute is already kept there.
    """
    copies: dict[tuple[int, Level], Level] = {}
    for name, entries in extra.items():
        target = SETTING_LEVELS.get(name)
        if target is None:
            raise ConfigurationError(
                f"ExtraMainDicomTags: unknown level {name!r} "
                f"(expected one of {', '.join(SETTING_LEVELS)})")
        if isinstance(entries, str) or not isinstance(entries, Sequence):
            raise ConfigurationError(f"ExtraMainDicomTags.{name}: expected a list of tags")
        for entry in entries:
            tag = _resolve(name, entry)
            if tag is None:
                continue
            source = natural_level(tag)
            if source is not target:
                copies[(tag, target)] = source
    levels: dict[int, set[Level]] = {}
    for tag, target in copies:
        levels.setdefault(tag, set()).add(target)
    ordered = sorted(copies.items(), key=lambda item: (item[0][0], _DEPTH[item[0][1]]))
    return ExtraTags(
        copies=tuple((f"{tag:08X}", source, target) for (tag, target), source in ordered),
        levels={tag: frozenset(found) for tag, found in levels.items()},
    )


def _resolve(level: str, entry: object) -> int | None:
    """The tag of one listed name; None (with a warning) if it can never be kept."""
    if not isinstance(entry, str):
        raise ConfigurationError(f"ExtraMainDicomTags.{level}: {entry!r} is not a tag name")
    name = entry.strip()
    match = _HEX_TAG.match(name)
    if match:
        tag = int(match.group(1) + match.group(2), 16)
    else:
        found = tag_for_keyword(name) if name.isidentifier() else None
        if found is None:
            raise ConfigurationError(
                f"ExtraMainDicomTags.{level}: unknown DICOM tag {entry!r} "
                "(a keyword, GGGG,EEEE or GGGGEEEE)")
        tag = int(found)
    group = tag >> 16
    reason = None
    if group in (0x0000, 0x0002, 0xFFFE):
        reason = "it is not an attribute of the data set"
    elif tag in _COMPUTED:
        reason = "the server computes it"
    elif _binary(tag):
        reason = "binary attributes are bulk data, never indexed"
    if reason is not None:
        log.warning("ExtraMainDicomTags.%s: %s ignored: %s", level, entry, reason)
        return None
    return tag


def _binary(tag: int) -> bool:
    try:
        vr = datadict.dictionary_VR(tag)
    except KeyError:  # private or unknown: whatever VR the files give it
        return False
    return any(v.strip() in _BINARY_VRS for v in vr.split(" or "))


def validate_extra_tags(extra: Mapping[str, Sequence[str]] | None) -> None:
    """Raise :class:`ConfigurationError` if ``extra`` would be refused; changes nothing
    (``check-config``)."""
    parse_extra_tags(extra or {})


def configure_extra_tags(extra: Mapping[str, Sequence[str]] | None) -> ExtraTags:
    """Set the process-wide ExtraMainDicomTags (once, at start-up, before any ingest).

    ``extra`` is ``Settings.ExtraMainDicomTags``; ``None`` or ``{}`` resets to none. Every
    node and worker sharing an index must be configured alike.
    """
    global _extra
    _extra = parse_extra_tags(extra or {})
    return _extra


def extra_tags() -> ExtraTags:
    """The ExtraMainDicomTags in effect."""
    return _extra


def add_extra_tags(split: Mapping[Level, DicomJson]) -> None:
    """Copy the ExtraMainDicomTags of one instance, split by level, to the levels they are
    listed at (ingest calls it on the result of its split).

    Copied from the level that kept the attribute: one left out there (an instance-level
    attribute over the size limit, a binary one) is not copied either.
    """
    for key, source, target in _extra.copies:
        entry = split[source].get(key)
        if entry is not None:
            split[target].setdefault(key, entry)
