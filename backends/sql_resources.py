"""Orthanc's resource model, the change log, jobs and properties on either SQL index
(schema version 4, :mod:`backends.schema_v4`).

The SQL here is the common subset of SQLite and PostgreSQL (double-quoted identifiers,
``RETURNING``, ``ON CONFLICT``, ``NULLS LAST``), written with ``?`` placeholders; each index
supplies the two hooks of :class:`SqlResources` that run a unit of work in a read snapshot
or a write transaction, and translates the placeholders if its driver wants others. That is
what keeps both indexes answering the same: one text per statement.

Ids are the ``*_key`` columns (Orthanc's ids, computed at ingest); v4 indexes each of them,
so a lookup by id reads a few index pages, never a table. The order "first stored" is the
primary key of studies, series and instances (a replacement keeps its row) and, for
patients, ``patients.first_stored``.
"""

from __future__ import annotations

import dataclasses
import json
from abc import abstractmethod
from collections.abc import Callable, Collection, Sequence, Sized
from typing import Any, TypeVar

from .base import (
    JOB_FIELDS,
    Change,
    DicomJson,
    JobRecord,
    JobState,
    Resource,
    ResourceIndex,
    ResourceType,
    StoredInstance,
)

T = TypeVar("T")
# Runs one statement with ``?`` placeholders in the current transaction; its rows ([] if none).
Q = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

# PS3.3 C.7.1.1 Patient Module (with the retired OtherPatientIDs that Orthanc still shows):
# what a patient resource shows of its most recently stored study; the study keeps the rest.
PATIENT_MODULE = frozenset({
    "00081120",  # ReferencedPatientSequence
    "00100010",  # PatientName
    "00100020",  # PatientID
    "00100021",  # IssuerOfPatientID
    "00100022",  # TypeOfPatientID
    "00100024",  # IssuerOfPatientIDQualifiersSequence
    "00100026",  # SourcePatientGroupIdentificationSequence
    "00100027",  # GroupOfPatientsIdentificationSequence
    "00100030",  # PatientBirthDate
    "00100032",  # PatientBirthTime
    "00100033",  # PatientBirthDateInAlternativeCalendar
    "00100034",  # PatientDeathDateInAlternativeCalendar
    "00100035",  # PatientAlternativeCalendar
    "00100040",  # PatientSex
    "00100200",  # QualityControlSubject
    "00100212",  # StrainDescription
    "00100213",  # StrainNomenclature
    "00100216",  # StrainStockSequence
    "00100218",  # StrainAdditionalInformation
    "00100219",  # StrainCodeSequence
    "00100221",  # GeneticModificationsSequence
    "00101000",  # OtherPatientIDs (retired)
    "00101001",  # OtherPatientNames
    "00101002",  # OtherPatientIDsSequence
    "00101100",  # ReferencedPatientPhotoSequence
    "00102160",  # EthnicGroup
    "00102201",  # PatientSpeciesDescription
    "00102202",  # PatientSpeciesCodeSequence
    "00102292",  # PatientBreedDescription
    "00102293",  # PatientBreedCodeSequence
    "00102294",  # BreedRegistrationSequence
    "00102297",  # ResponsiblePerson
    "00102298",  # ResponsiblePersonRole
    "00102299",  # ResponsibleOrganization
    "00104000",  # PatientComments
    "00120062",  # PatientIdentityRemoved
    "00120063",  # DeidentificationMethod
    "00120064",  # DeidentificationMethodCodeSequence
})
_PATIENT_ID = "00100020"

# Change types of Orthanc's /changes written by the v4 triggers.
NEW = {ResourceType.PATIENT: "NewPatient", ResourceType.STUDY: "NewStudy",
       ResourceType.SERIES: "NewSeries", ResourceType.INSTANCE: "NewInstance"}
DELETED = "Deleted"

JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(JobRecord))
_JOB_SELECT = ", ".join(f'"{name}"' for name in JOB_COLUMNS)
_NO_LIMIT = 1 << 62  # SQLite needs a LIMIT before OFFSET; PostgreSQL refuses -1

_IDS = {  # ids in the order first stored
    ResourceType.PATIENT: "SELECT patient_key FROM patients ORDER BY first_stored",
    ResourceType.STUDY: "SELECT study_key FROM studies ORDER BY pk",
    ResourceType.SERIES: "SELECT series_key FROM series ORDER BY pk",
    ResourceType.INSTANCE: "SELECT instance_key FROM instances ORDER BY pk",
}
_FROM = ("FROM instances i JOIN series se ON se.pk = i.series_pk"
         " JOIN studies st ON st.pk = se.study_pk")
_STORED = ('SELECT st."StudyInstanceUID", se."SeriesInstanceUID", i."SOPInstanceUID",'
           ' i."SOPClassUID", i.instance_key, i.transfer_syntax, i.storage_key, i.size,'
           ' i."InstanceNumber", i.frames')
# Index.instances' order; a patient's studies first in the order they were stored.
_ORDER = 'se.pk, i."InstanceNumber" NULLS LAST, i."SOPInstanceUID"'
_UNDER = {
    ResourceType.PATIENT: ("st.patient_key = ?", f"st.pk, {_ORDER}"),
    ResourceType.STUDY: ("st.study_key = ?", _ORDER),
    ResourceType.SERIES: ("se.series_key = ?", _ORDER),
    ResourceType.INSTANCE: ("i.instance_key = ?", _ORDER),
}
# Last time a study received an instance: the newest ``stored`` of its instances, read from
# the (series_pk, stored) index of v4.
_STUDY_UPDATED = ("(SELECT max(i.stored) FROM series se JOIN instances i"
                  " ON i.series_pk = se.pk WHERE se.study_pk = st.pk)")


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, ArithmeticError):
        return None


def stored_instance(row: Sequence[Any]) -> StoredInstance:
    """A StoredInstance from the first ten columns of :data:`_STORED`."""
    study, series, sop, sop_class, key, syntax, storage, size, number, frames = row[:10]
    return StoredInstance(study, series, sop, sop_class or "", key, syntax, storage, int(size),
                          _number(number),
                          tuple(tuple(map(tuple, f)) for f in json.loads(frames)))


def split_patient(study: DicomJson) -> tuple[DicomJson, DicomJson]:
    """A study's JSON as (patient-module attributes, the rest)."""
    patient = {tag: el for tag, el in study.items() if tag in PATIENT_MODULE}
    rest = {tag: el for tag, el in study.items() if tag not in PATIENT_MODULE}
    return patient, rest


def _first_value(attrs: DicomJson, tag: str) -> str:
    values = attrs.get(tag, {}).get("Value") or [""]
    return str(values[0])


def job_from_row(row: Sequence[Any]) -> JobRecord:
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["state"] = JobState(values["state"])
    return JobRecord(**values)


def _job_value(value: Any) -> Any:
    return value.value if isinstance(value, JobState) else value


def _marks(items: Sized) -> str:
    return ", ".join("?" * len(items))


class SqlResources(ResourceIndex):
    """Every :class:`ResourceIndex` method over the two hooks below."""

    # Appended to the SELECT choosing the job to claim; SQLite has taken the write lock
    # already (BEGIN IMMEDIATE), PostgreSQL skips rows other claims hold.
    _CLAIM_LOCK = ""

    @abstractmethod
    def _read(self, work: Callable[[Q], T], single: bool = False) -> T:
        """Run ``work`` in one read snapshot; ``single``: it runs one statement (which sees
        one snapshot anyway: PostgreSQL then saves the round trips of a transaction)."""

    @abstractmethod
    def _write(self, work: Callable[[Q], T]) -> T:
        """Run ``work`` in one write transaction (SQLite: holding the write lock)."""

    # -- resources -------------------------------------------------------------------------

    def resource_ids(self, type_: ResourceType, *, since: int = 0,
                     limit: int | None = None) -> list[str]:
        bound = _NO_LIMIT if limit is None else max(limit, 0)
        rows = self._read(lambda q: q(f"{_IDS[type_]} LIMIT ? OFFSET ?",
                                      [bound, max(since, 0)]), single=True)
        return [key for (key,) in rows]

    def resource(self, type_: ResourceType, id_: str) -> Resource | None:
        build = {ResourceType.PATIENT: _patient, ResourceType.STUDY: _study,
                 ResourceType.SERIES: _series, ResourceType.INSTANCE: _instance}[type_]
        return self._read(lambda q: build(q, id_))

    def resource_instances(self, type_: ResourceType, id_: str) -> list[StoredInstance]:
        where, order = _UNDER[type_]
        rows = self._read(lambda q: q(f"{_STORED} {_FROM} WHERE {where} ORDER BY {order}",
                                      [id_]), single=True)
        return [stored_instance(row) for row in rows]

    def counts(self) -> dict[ResourceType, int]:
        # Patients and instances from the totals the v3 triggers keep (no scan of the
        # biggest table); studies and series are counted.
        [row] = self._read(lambda q: q(
            "SELECT (SELECT coalesce(sum(patients), 0) FROM storage_usage),"
            " (SELECT count(*) FROM studies), (SELECT count(*) FROM series),"
            " (SELECT coalesce(sum(instances), 0) FROM patients)", []), single=True)
        return {type_: int(n) for type_, n in zip(ResourceType, row, strict=True)}

    # -- change log ------------------------------------------------------------------------

    def changes(self, since: int = 0, limit: int = 100) -> list[Change]:
        rows = self._read(lambda q: q(
            "SELECT seq, change_type, resource_type, resource_id, date FROM changes"
            " WHERE seq > ? ORDER BY seq LIMIT ?", [since, max(limit, 0)]), single=True)
        return [Change(int(seq), kind, ResourceType(level), id_, float(date))
                for seq, kind, level, id_, date in rows]

    def last_change(self) -> int:
        [(seq,)] = self._read(lambda q: q("SELECT coalesce(max(seq), 0) FROM changes", []),
                              single=True)
        return int(seq)

    # -- jobs ------------------------------------------------------------------------------

    def add_job(self, job: JobRecord) -> None:
        values = [_job_value(getattr(job, name)) for name in JOB_COLUMNS]
        self._write(lambda q: q(f"INSERT INTO jobs ({_JOB_SELECT}) VALUES ({_marks(values)})",
                                values))

    def job(self, job_id: str) -> JobRecord | None:
        rows = self._read(lambda q: q(f"SELECT {_JOB_SELECT} FROM jobs WHERE id = ?", [job_id]),
                          single=True)
        return job_from_row(rows[0]) if rows else None

    def jobs(self) -> list[JobRecord]:
        rows = self._read(lambda q: q(f"SELECT {_JOB_SELECT} FROM jobs ORDER BY created, pk",
                                      []), single=True)
        return [job_from_row(row) for row in rows]

    def claim_job(self, owner: str, now: float, lease: float,
                  types: Collection[str] | None = None) -> JobRecord | None:
        kinds = None if types is None else list(types)
        if kinds == []:
            return None
        kind_term = "" if kinds is None else f" AND type IN ({_marks(kinds)})"

        candidates = (("state = ?", [JobState.PENDING.value]),
                      ("state = ? AND lease_until < ?", [JobState.RUNNING.value, now]))
        # Idle dispatchers poll twice a second per worker: look first without the write
        # transaction (on SQLite a database-wide write lock that STOW would queue behind).
        waiting = self._read(lambda q: q(
            f"SELECT 1 FROM jobs WHERE (({candidates[0][0]}) OR ({candidates[1][0]}))"
            f"{kind_term} LIMIT 1",
            [*candidates[0][1], *candidates[1][1], *(kinds or [])]))
        if not waiting:
            return None

        def claim(q: Q) -> JobRecord | None:
            # Pending first; else a Running job whose owner's lease passed (it died).
            for condition, params in candidates:
                found = q(f"SELECT pk FROM jobs WHERE {condition}{kind_term}"
                          f" ORDER BY priority DESC, created, pk LIMIT 1{self._CLAIM_LOCK}",
                          [*params, *(kinds or [])])
                if found:
                    rows = q("UPDATE jobs SET state = ?, owner = ?, lease_until = ?,"
                             f" attempts = attempts + 1 WHERE pk = ? RETURNING {_JOB_SELECT}",
                             [JobState.RUNNING.value, owner, now + lease, found[0][0]])
                    return job_from_row(rows[0])
            return None

        return self._write(claim)

    def update_job(self, job_id: str, changes: dict[str, Any], *,
                   owner: str | None | object = ..., states: Collection[JobState] = ()
                   ) -> JobRecord | None:
        unknown = set(changes) - JOB_FIELDS
        if unknown:
            raise ValueError(f"not job fields: {sorted(unknown)}")
        where, params = ["id = ?"], [job_id]
        if owner is None:
            where.append("owner IS NULL")
        elif owner is not ...:
            where.append("owner = ?")
            params.append(owner)
        if states:
            where.append(f"state IN ({_marks(states)})")
            params += [JobState(s).value for s in states]
        condition = " AND ".join(where)
        if changes:
            sets = ", ".join(f'"{name}" = ?' for name in changes)
            sql = f"UPDATE jobs SET {sets} WHERE {condition} RETURNING {_JOB_SELECT}"
            params = [*(_job_value(v) for v in changes.values()), *params]
        else:
            sql = f"SELECT {_JOB_SELECT} FROM jobs WHERE {condition}"
        rows = self._write(lambda q: q(sql, params))
        return job_from_row(rows[0]) if rows else None

    def clear_changes(self) -> None:
        self._write(lambda q: q("DELETE FROM changes", []))

    def remove_jobs(self, job_ids: Collection[str]) -> None:
        ids = list(job_ids)

        def remove(q: Q) -> None:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                q(f"DELETE FROM jobs WHERE id IN ({_marks(chunk)})", chunk)

        if ids:
            self._write(remove)

    # -- properties ------------------------------------------------------------------------

    def properties(self, prefix: str) -> dict[str, str]:
        # The range keeps the primary key's index in use; substr() tells the prefix exactly.
        rows = self._read(lambda q: q(
            "SELECT name, value FROM properties WHERE name >= ? AND substr(name, 1, ?) = ?"
            " ORDER BY name", [prefix, len(prefix), prefix]), single=True)
        return dict(rows)

    def set_property(self, name: str, value: str | None) -> None:
        if value is None:
            self._write(lambda q: q("DELETE FROM properties WHERE name = ?", [name]))
        else:
            self._write(lambda q: q(
                "INSERT INTO properties (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value", [name, value]))


# ---------------------------------------------------------------------------------------------
# One resource (one read snapshot each)


def _patient(q: Q, key: str) -> Resource | None:
    studies = q(f"SELECT st.study_key, st.attrs, {_STUDY_UPDATED} FROM studies st"
                " WHERE st.patient_key = ? ORDER BY st.pk", [key])
    if not studies:
        return None
    # The most recently stored study speaks for the patient (the last one among equals).
    latest = max(range(len(studies)), key=lambda n: (studies[n][2] or 0.0, n))
    patient, _ = split_patient(json.loads(studies[latest][1]))
    return Resource(ResourceType.PATIENT, key, None, tuple(row[0] for row in studies), patient,
                    {"PatientID": _first_value(patient, _PATIENT_ID)},
                    last_update=float(studies[latest][2] or 0.0))


def _study(q: Q, key: str) -> Resource | None:
    rows = q(f'SELECT st.pk, st.patient_key, st.attrs, st."StudyInstanceUID", {_STUDY_UPDATED}'
             " FROM studies st WHERE st.study_key = ? ORDER BY st.pk LIMIT 1", [key])
    if not rows:
        return None
    pk, parent, attrs, study_uid, updated = rows[0]
    children = q("SELECT series_key FROM series WHERE study_pk = ? ORDER BY pk", [pk])
    _, study = split_patient(json.loads(attrs))
    return Resource(ResourceType.STUDY, key, parent, tuple(c for (c,) in children), study,
                    {"StudyInstanceUID": study_uid}, last_update=float(updated or 0.0))


def _series(q: Q, key: str) -> Resource | None:
    rows = q('SELECT se.pk, st.study_key, se.attrs, st."StudyInstanceUID",'
             ' se."SeriesInstanceUID", (SELECT max(i.stored) FROM instances i'
             " WHERE i.series_pk = se.pk) FROM series se JOIN studies st ON st.pk = se.study_pk"
             " WHERE se.series_key = ? ORDER BY se.pk LIMIT 1", [key])
    if not rows:
        return None
    pk, parent, attrs, study_uid, series_uid, updated = rows[0]
    children = q("SELECT instance_key FROM instances WHERE series_pk = ? ORDER BY pk", [pk])
    return Resource(ResourceType.SERIES, key, parent, tuple(c for (c,) in children),
                    json.loads(attrs),
                    {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid},
                    last_update=float(updated or 0.0))


def _instance(q: Q, key: str) -> Resource | None:
    rows = q(f"{_STORED}, i.attrs, se.series_key, i.stored {_FROM}"
             " WHERE i.instance_key = ? LIMIT 1", [key])
    if not rows:
        return None
    stored = stored_instance(rows[0])
    attrs, parent, updated = rows[0][10:]
    return Resource(ResourceType.INSTANCE, key, parent, (), json.loads(attrs),
                    {"StudyInstanceUID": stored.study_uid,
                     "SeriesInstanceUID": stored.series_uid, "SOPInstanceUID": stored.sop_uid},
                    instance=stored, last_update=float(updated or 0.0))
