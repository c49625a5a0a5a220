"""What the SQL indexes (SQLite, PostgreSQL) share: the schema's shape, the indexes of each
migration, the query skeleton and the computed attributes of QIDO answers.

Each backend renders these in its own dialect; keeping them here is what makes the two
give identical results (tests/contract/test_postgres.py compares them query by query).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import matching
from .base import Constraint, DicomJson, Level, Match, SearchResult

TABLE = {Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}
ALIAS = {Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
DEPTH = {Level.STUDY: 0, Level.SERIES: 1, Level.INSTANCE: 2}
FROM = {
    Level.STUDY: "studies st",
    Level.SERIES: "series se JOIN studies st ON st.pk = se.study_pk",
    Level.INSTANCE: "instances i JOIN series se ON se.pk = i.series_pk"
    " JOIN studies st ON st.pk = se.study_pk",
}
# Parents' JSON is read once per distinct parent, with the computed attributes.
SELECT = {
    Level.STUDY: "st.pk",
    Level.SERIES: "st.pk, se.pk",
    Level.INSTANCE: "st.pk, se.pk, i.attrs",
}

# The indexed keywords of schema version 1, frozen: a migration never changes once released.
# A keyword added to backends.base later needs a new migration (ALTER TABLE ... ADD COLUMN and
# a backfill from ``attrs``); the contract tests compare the tables with the current tuples.
V1_KEYWORDS = {
    Level.STUDY: ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                  "ReferringPhysicianName", "StudyID", "StudyDescription", "PatientName",
                  "PatientID", "PatientBirthDate", "PatientSex"),
    Level.SERIES: ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                   "SeriesDate", "SeriesTime", "BodyPartExamined",
                   "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"),
    Level.INSTANCE: ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns",
                     "BitsAllocated", "NumberOfFrames", "ContentDate", "ContentTime"),
}

# Indexes per migration: (table, columns, partial: only rows where the first is not NULL).
IndexSpec = tuple[str, tuple[str, ...], bool]
V1_INDEXES: tuple[IndexSpec, ...] = (
    ("studies", ("PatientName_folded",), False),
    ("studies", ("PatientName_ideographic_folded",), True),
    ("studies", ("PatientName_phonetic_folded",), True),
    ("studies", ("PatientID_folded",), False),
    ("studies", ("StudyDate",), False),
    ("studies", ("AccessionNumber_folded",), False),
    ("series", ("study_pk",), False),
    ("series", ("Modality_folded",), False),
    ("instances", ("series_pk", "InstanceNumber"), False),
    ("instances", ("storage_key",), False),
)
# Covering indexes for the computed attributes of QIDO (counts, ModalitiesInStudy,
# SOPClassesInStudy): grouped queries read the index only, never the wide rows that carry
# the metadata JSON.
V2_INDEXES: tuple[IndexSpec, ...] = (
    ("instances", ("series_pk", "SOPClassUID"), False),
    ("series", ("study_pk", "Modality"), False),
)

# Schema version 3: what Orthanc's MaximumStorageSize / MaximumPatientCount compare with, and
# their recycling order. Each instance row carries its patient key (its study's); triggers on
# ``instances`` keep one ``patients`` row per patient (bytes, instances, ``last_stored``: a
# counter bumped whenever the patient receives an instance) and the totals in
# ``storage_usage``. Being triggers, every write path (add, replace, moves between patients,
# DELETE, cascades from a study or series) keeps them exact, and reading them scans nothing.
# The totals are split over USAGE_SLOTS rows summed when read: on PostgreSQL each session adds
# to the row of its backend pid, so that concurrent stores do not queue on one hot row.
USAGE_SLOTS = 16
V3_INDEXES: tuple[IndexSpec, ...] = (
    ("instances", ("patient_key",), False),
    ("studies", ("patient_key",), False),
    ("patients", ("last_stored",), False),
)

# Schema version 4 (backends.schema_v4): Orthanc ids (lookups by id read an index), the last
# update of a series (and through it of studies and patients), the order of patients, jobs.
V4_INDEXES: tuple[IndexSpec, ...] = (
    ("studies", ("study_key",), False),
    ("series", ("series_key",), False),
    ("instances", ("instance_key",), False),
    ("instances", ("series_pk", "stored"), False),
    ("patients", ("first_stored",), False),
    ("jobs", ("state", "priority"), False),
)

# Computed attributes (PS3.18 §10.6.3.3) as matching keys. ModalitiesInStudy and
# SOPClassesInStudy match when any series / instance of the study matches (PS3.18
# §10.6.1.2.1.1); the counts compare with a count of the children.
COMPUTED_ANY = {
    "ModalitiesInStudy": (Level.SERIES, "cs", "st.pk IN (SELECT cs.study_pk FROM series cs"
                          " WHERE "),
    "SOPClassesInStudy": (Level.INSTANCE, "ci", "st.pk IN (SELECT cs.study_pk FROM series cs"
                          " JOIN instances ci ON ci.series_pk = cs.pk WHERE "),
}
CHILD_KEYWORD = {"ModalitiesInStudy": "Modality", "SOPClassesInStudy": "SOPClassUID"}
COMPUTED_COUNT = {
    "NumberOfStudyRelatedSeries": "(SELECT count(*) FROM series cs WHERE cs.study_pk = st.pk)",
    "NumberOfStudyRelatedInstances": "(SELECT count(*) FROM series cs JOIN instances ci"
                                     " ON ci.series_pk = cs.pk WHERE cs.study_pk = st.pk)",
    "NumberOfSeriesRelatedInstances": "(SELECT count(*) FROM instances ci"
                                      " WHERE ci.series_pk = se.pk)",
}

# Computed attributes, PS3.18 §10.6.3.3 (tables 10.6.3-3 and -4).
MODALITIES_IN_STUDY = "00080061"
SOP_CLASSES_IN_STUDY = "00080062"
STUDY_RELATED_SERIES = "00201206"
STUDY_RELATED_INSTANCES = "00201208"
SERIES_RELATED_INSTANCES = "00201209"


def multi(vr: str, values: list[str]) -> dict[str, Any]:
    """A multi-valued DICOM JSON attribute; no values → present but empty."""
    return {"vr": vr, "Value": values} if values else {"vr": vr}


def count(value: int) -> dict[str, Any]:
    return {"vr": "IS", "Value": [value]}


def with_study_computed(attrs: dict[int, DicomJson], series: Mapping[int, int],
                        instances: Mapping[int, int], modalities: Mapping[int, set[str]],
                        classes: Mapping[int, set[str]]) -> dict[int, DicomJson]:
    """Put the computed study attributes, gathered per study pk, into the study JSON."""
    for pk, study in attrs.items():
        study[MODALITIES_IN_STUDY] = multi("CS", sorted(modalities[pk]))
        study[SOP_CLASSES_IN_STUDY] = multi("UI", sorted(classes[pk]))
        study[STUDY_RELATED_SERIES] = count(series[pk])
        study[STUDY_RELATED_INSTANCES] = count(instances[pk])
    return attrs


def search_result(level: Level, row: Sequence[Any], studies: dict[int, DicomJson],
                  series: dict[int, DicomJson]) -> SearchResult:
    """One match from a ``SELECT`` row; each result gets its own copies of the parents."""
    study = dict(studies[row[0]])
    if level is Level.STUDY:
        return SearchResult(study)
    if level is Level.SERIES:
        return SearchResult(study, dict(series[row[1]]))
    return SearchResult(study, dict(series[row[1]]), json.loads(row[2]))


Term = tuple[str, list[Any]]


def column_term(c: Constraint, case_sensitive: bool, alias: str,
                fuzzy_term: Callable[[str, Sequence[str], Constraint], Term],
                compare: Callable[[str, str, Constraint, bool], Term]) -> Term:
    """SQL of a constraint on an indexed column, any of its columns matching (PN groups);
    the dialect supplies how one column is compared and how fuzzy matching is written."""
    vr = matching.COLUMN_TAGS[c.keyword][1]
    if c.kind is Match.FUZZY:
        return fuzzy_term(alias, matching.match_columns(c.keyword, matching.is_text(vr)), c)
    fold = matching.is_text(vr) and not case_sensitive
    sql: list[str] = []
    params: list[Any] = []
    for column in matching.match_columns(c.keyword, fold and c.kind is not Match.RANGE):
        term, values = compare(alias, column, c, fold)
        sql.append(f"({term})")
        params += values
    return f"({' OR '.join(sql)})", params
