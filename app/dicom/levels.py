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
"""

from __future__ import annotations

from pydicom.datadict import tag_for_keyword

from backends.base import Level

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


def level_of(tag: int) -> Level:
    """The level a top-level attribute belongs to; private and unknown tags → instance."""
    if tag in STUDY_LEVEL:
        return Level.STUDY
    if tag in SERIES_LEVEL:
        return Level.SERIES
    return Level.INSTANCE
