"""The ``ResourceIndex`` contract (schema version 4): Orthanc ids, the change log, jobs and
properties. Mixed into :class:`tests.contract.index.IndexContract`, whose ``index`` and
``keys`` (the archive of :func:`tests.contract.index.archive`) fixtures it uses.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

from app.dicom.identifiers import orthanc_ids
from backends.base import Index, InstanceRecord, JobRecord, JobState, Level, ResourceType
from tests.contract.records import make_record

P, ST, SE, IN = ResourceType.PATIENT, ResourceType.STUDY, ResourceType.SERIES, \
    ResourceType.INSTANCE
# The archive's instances in the order stored, and the PatientID of each study.
STORED = ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.2.1", "1.2.1.1", "1.2.1.2", "1.3.1.1",
          "1.4.1.1", "1.5.1.1"]
PATIENT_OF = {"1.1": "PID-a", "1.2": "PID-b", "1.3": "pid-c", "1.4": "PID-d", "1.5": "PID-e"}


def ids(sop: str, patient_id: str | None = None) -> tuple[str, str, str, str]:
    """Orthanc ids of an archive instance (its UIDs are prefixes of one another)."""
    study, series = sop.rsplit(".", 2)[0], sop.rsplit(".", 1)[0]
    return orthanc_ids(patient_id or PATIENT_OF[study], study, series, sop)


def logged(index: Index, since: int) -> Counter[tuple[str, ResourceType, str]]:
    """The changes after ``since`` as a multiset (the order within one write is free)."""
    return Counter((c.change_type, c.resource_type, c.resource_id)
                   for c in index.changes(since, 1000))


def new(*entries: tuple[ResourceType, str]) -> list[tuple[str, ResourceType, str]]:
    names = {P: "NewPatient", ST: "NewStudy", SE: "NewSeries", IN: "NewInstance"}
    return [(names[type_], type_, id_) for type_, id_ in entries]


def deleted(*entries: tuple[ResourceType, str]) -> list[tuple[str, ResourceType, str]]:
    return [("Deleted", type_, id_) for type_, id_ in entries]


def job(id_: str, priority: int = 0, created: float = 1000.0, **fields: Any) -> JobRecord:
    return JobRecord(id=id_, type=fields.pop("type", "DicomWebStow"),
                     state=fields.pop("state", JobState.PENDING), priority=priority,
                     created=created, parameters='{"n": 1}', **fields)


def claim_all(index: Index, owner: str, got: list[str]) -> None:
    while (claimed := index.claim_job(owner, time.time(), 60)) is not None:
        got.append(claimed.id)


class ResourceIndexContract:
    """Behaviour every index shares for Orthanc's resource model."""

    # -- resources by Orthanc id -------------------------------------------------------------

    def test_ids_are_orthancs_of_the_stored_uids(self, index: Index,
                                                 keys: dict[str, str]) -> None:
        assert index.resource_ids(IN) == [ids(sop)[3] for sop in STORED]
        assert index.resource_ids(SE) == list(dict.fromkeys(ids(sop)[2] for sop in STORED))
        assert index.resource_ids(ST) == list(dict.fromkeys(ids(sop)[1] for sop in STORED))
        assert index.resource_ids(P) == list(dict.fromkeys(ids(sop)[0] for sop in STORED))
        for sop in STORED:
            instance = index.resource(IN, ids(sop)[3])
            assert instance is not None and instance.type is IN
            assert instance.instance == index.find_instance(sop)
            uids = instance.uids
            assert uids["SOPInstanceUID"] == sop
            assert ids(sop)[3] == orthanc_ids(PATIENT_OF[uids["StudyInstanceUID"]],
                                              uids["StudyInstanceUID"],
                                              uids["SeriesInstanceUID"], sop)[3]

    def test_parents_and_children(self, index: Index, keys: dict[str, str]) -> None:
        patient, study, series, instance = ids("1.1.1.1")
        p = index.resource(P, patient)
        assert p is not None and p.parent is None and p.children == (study,)
        assert p.uids == {"PatientID": "PID-a"}
        s = index.resource(ST, study)
        assert s is not None and s.parent == patient
        assert s.children == (series, ids("1.1.2.1")[2])
        assert s.uids == {"StudyInstanceUID": "1.1"}
        se = index.resource(SE, series)
        assert se is not None and se.parent == study
        # first stored order, not InstanceNumber (1.1.1.2 is number 1)
        assert se.children == tuple(ids(sop)[3] for sop in STORED[:3])
        assert se.uids == {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1"}
        i = index.resource(IN, instance)
        assert i is not None and i.parent == series and i.children == ()

    def test_attributes_of_each_level(self, index: Index, keys: dict[str, str]) -> None:
        patient, study, series, instance = ids("1.1.1.1")
        p, s = index.resource(P, patient), index.resource(ST, study)
        se, i = index.resource(SE, series), index.resource(IN, instance)
        assert p is not None and s is not None and se is not None and i is not None
        assert p.attrs["00100010"]["Value"] == [{"Alphabetic": "Müller^Hans"}]
        assert p.attrs["00100020"]["Value"] == ["PID-a"]
        assert "00080020" not in p.attrs and "00080080" not in p.attrs  # study attributes
        assert s.attrs["00080020"]["Value"] == ["20200110"]
        assert s.attrs["0020000D"]["Value"] == ["1.1"]
        assert "00100010" not in s.attrs and "00100020" not in s.attrs
        assert se.attrs["00080060"]["Value"] == ["CT"] and "00080020" not in se.attrs
        assert i.attrs["00080018"]["Value"] == ["1.1.1.1"] and i.attrs["00200013"]["Value"] == [2]
        assert p.instance is None and s.instance is None and se.instance is None

    def test_patient_shows_its_most_recently_stored_study(self, index: Index) -> None:
        index.add_instance(make_record("1", "1.1", "1.1.1", PatientID="X",
                                       PatientName="First^Name", OtherPatientIDs="O1"))
        index.add_instance(make_record("2", "2.1", "2.1.1", PatientID="X",
                                       PatientName="Second^Name"))
        patient = ids("1.1.1.1", "X")[0]
        p = index.resource(P, patient)
        assert p is not None and p.attrs["00100010"]["Value"] == [{"Alphabetic": "Second^Name"}]
        assert "00101000" not in p.attrs
        assert p.children == (orthanc_ids("X", "1", "", "")[1], orthanc_ids("X", "2", "", "")[1])
        index.add_instance(make_record("1", "1.1", "1.1.2", PatientID="X",
                                       PatientName="First^Name", OtherPatientIDs="O1"))
        p = index.resource(P, patient)
        assert p is not None and p.attrs["00100010"]["Value"] == [{"Alphabetic": "First^Name"}]
        assert p.attrs["00101000"]["Value"] == ["O1"]  # OtherPatientIDs: patient module
        assert p.children[0] == orthanc_ids("X", "1", "", "")[1]  # order: first stored

    def test_last_update(self, index: Index) -> None:
        before = time.time()
        index.add_instance(make_record("1", "1.1", "1.1.1"))
        middle = time.time()
        index.add_instance(make_record("1", "1.2", "1.2.1"))
        after = time.time()
        first = orthanc_ids("P1", "1", "1.1", "1.1.1")
        second = orthanc_ids("P1", "1", "1.2", "1.2.1")
        updated = {type_: r.last_update for type_, id_ in zip((P, ST, SE, IN), first,
                                                              strict=True)
                   if (r := index.resource(type_, id_)) is not None}
        assert len(updated) == 4
        assert before - 1 <= updated[IN] == updated[SE] <= middle + 1
        assert middle - 1 <= updated[ST] == updated[P] <= after + 1
        assert updated[ST] >= updated[SE]
        newest = index.resource(IN, second[3])
        assert newest is not None and newest.last_update == updated[ST]

    def test_paging(self, index: Index, keys: dict[str, str]) -> None:
        every = index.resource_ids(IN)
        assert index.resource_ids(IN, since=2, limit=3) == every[2:5]
        assert index.resource_ids(IN, limit=4) == every[:4]
        assert index.resource_ids(IN, since=7) == every[7:]
        assert index.resource_ids(IN, since=9) == [] and index.resource_ids(IN, limit=0) == []
        assert index.resource_ids(P, since=1, limit=2) == index.resource_ids(P)[1:3]

    def test_replacement_keeps_its_place(self, index: Index, keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.1", "1.1.1", "1.1.1.1", InstanceNumber=2,
                                       PatientName="Müller^Hans", PatientID="PID-a"))
        assert index.resource_ids(IN) == [ids(sop)[3] for sop in STORED]

    def test_unknown_ids(self, index: Index, keys: dict[str, str]) -> None:
        for type_ in ResourceType:
            assert index.resource(type_, "0000-unknown") is None
            assert index.resource_instances(type_, "0000-unknown") == []
        # an id of another level is unknown at this one
        assert index.resource(ST, ids("1.1.1.1")[0]) is None

    def test_resource_instances_in_index_order(self, index: Index,
                                               keys: dict[str, str]) -> None:
        patient, study, series, instance = ids("1.1.1.1")
        assert index.resource_instances(P, patient) == index.instances("1.1")
        assert index.resource_instances(ST, study) == index.instances("1.1")
        assert index.resource_instances(SE, series) == index.instances("1.1", "1.1.1")
        assert [i.sop_uid for i in index.resource_instances(SE, series)] == [
            "1.1.1.2", "1.1.1.1", "1.1.1.3"]
        assert index.resource_instances(IN, instance) == index.instances("1.1", "1.1.1",
                                                                         "1.1.1.1")

    def test_patient_instances_follow_the_order_of_its_studies(self, index: Index) -> None:
        for study in ("2", "1"):
            index.add_instance(make_record(study, f"{study}.1", f"{study}.1.1", PatientID="X"))
        index.add_instance(make_record("2", "2.2", "2.2.1", PatientID="X"))  # a later series
        got = index.resource_instances(P, orthanc_ids("X", "", "", "")[0])
        assert [i.sop_uid for i in got] == ["2.1.1", "2.2.1", "1.1.1"]

    def test_counts(self, index: Index) -> None:
        assert index.counts() == {P: 0, ST: 0, SE: 0, IN: 0}
        for record in [make_record("1", "1.1", "1.1.1"), make_record("1", "1.1", "1.1.2"),
                       make_record("2", "2.1", "2.1.1", PatientID="Y")]:
            index.add_instance(record)
        assert index.counts() == {P: 2, ST: 2, SE: 2, IN: 3}

    # -- change log --------------------------------------------------------------------------

    def test_no_changes_in_an_empty_index(self, index: Index) -> None:
        assert index.changes() == [] and index.last_change() == 0

    def test_changes_of_new_resources(self, index: Index) -> None:
        before = time.time()
        index.add_instance(make_record("1", "1.1", "1.1.1"))
        first = orthanc_ids("P1", "1", "1.1", "1.1.1")
        assert logged(index, 0) == Counter(new(*zip((P, ST, SE, IN), first, strict=True)))
        mark = index.last_change()
        assert mark == 4 or mark == index.changes(0)[-1].seq
        index.add_instance(make_record("1", "1.1", "1.1.2"))
        index.add_instance(make_record("1", "1.2", "1.2.1"))
        second = orthanc_ids("P1", "1", "1.1", "1.1.2")
        third = orthanc_ids("P1", "1", "1.2", "1.2.1")
        assert logged(index, mark) == Counter(new((IN, second[3]), (SE, third[2]),
                                                  (IN, third[3])))
        every = index.changes(0, 100)
        assert [c.seq for c in every] == sorted({c.seq for c in every})
        assert all(before - 5 <= c.date <= time.time() + 5 for c in every)
        assert index.last_change() == every[-1].seq
        assert index.changes(every[1].seq, 2) == every[2:4]
        assert index.changes(index.last_change()) == []

    def test_cleared_changes_keep_counting(self, index: Index) -> None:
        index.add_instance(make_record("1", "1.1", "1.1.1"))
        before = index.changes(0)
        index.clear_changes()
        assert index.changes(0) == [] and index.last_change() == 0
        index.add_instance(make_record("1", "1.1", "1.1.2"))
        (entry,) = index.changes(0)
        assert entry.change_type == "NewInstance" and entry.seq > before[-1].seq

    def test_changes_of_replacements(self, index: Index, keys: dict[str, str]) -> None:
        """A new blob under the same id logs NewInstance again (Orthanc overwrites and logs
        the store); the same blob, or a kept first instance, logs nothing."""
        mark = index.last_change()
        record = make_record("1.2", "1.2.1", "1.2.1.1", PatientID="PID-b")
        index.add_instance(record)
        assert logged(index, mark) == Counter(new((IN, ids("1.2.1.1")[3])))
        mark = index.last_change()
        index.add_instance(record)
        assert not index.add_instance_if_absent(make_record("1.2", "1.2.1", "1.2.1.1",
                                                            PatientID="PID-b"))
        assert index.changes(mark) == []

    def test_changes_of_a_move(self, index: Index, keys: dict[str, str]) -> None:
        """The only instance of study 1.5 (patient PID-e) stored again under a new study of
        patient P1: everything it left behind is deleted, everything it enters is new."""
        mark = index.last_change()
        index.add_instance(make_record("1.9", "1.9.1", "1.5.1.1"))
        old, moved = ids("1.5.1.1"), orthanc_ids("P1", "1.9", "1.9.1", "1.5.1.1")
        assert logged(index, mark) == Counter(
            deleted(*zip((P, ST, SE, IN), old, strict=True))
            + new(*zip((P, ST, SE, IN), moved, strict=True)))

    def test_changes_of_a_study_moved_to_another_patient(self, index: Index) -> None:
        index.add_instance(make_record("1", "1.1", "1.1.1", PatientID="X"))
        mark = index.last_change()
        index.add_instance(make_record("1", "1.1", "1.1.2", PatientID="Y"))
        x, y = orthanc_ids("X", "1", "1.1", "1.1.1"), orthanc_ids("Y", "1", "1.1", "1.1.2")
        assert logged(index, mark) == Counter(
            deleted((P, x[0]), (ST, x[1]), (SE, x[2]))
            + new((P, y[0]), (ST, y[1]), (SE, y[2]), (IN, y[3])))
        assert index.resource(ST, y[1]) is not None and index.resource(ST, x[1]) is None

    def test_changes_of_removals(self, index: Index, keys: dict[str, str]) -> None:
        mark = index.last_change()
        index.remove("1.1", "1.1.1", "1.1.1.1")  # one of three
        assert logged(index, mark) == Counter(deleted((IN, ids("1.1.1.1")[3])))
        mark = index.last_change()
        index.remove("1.1", "1.1.2", "1.1.2.1")  # the last of its series
        assert logged(index, mark) == Counter(
            deleted((IN, ids("1.1.2.1")[3]), (SE, ids("1.1.2.1")[2])))
        mark = index.last_change()
        index.remove("1.2", "1.2.1")  # a series: the study and patient go with it
        assert logged(index, mark) == Counter(deleted(
            *((IN, ids(sop)[3]) for sop in ("1.2.1.1", "1.2.1.2")),
            (SE, ids("1.2.1.1")[2]), (ST, ids("1.2.1.1")[1]), (P, ids("1.2.1.1")[0])))
        mark = index.last_change()
        index.remove("1.1")  # a study (cascade)
        assert logged(index, mark) == Counter(deleted(
            *((IN, ids(sop)[3]) for sop in ("1.1.1.2", "1.1.1.3")),
            *zip((SE, ST, P), ids("1.1.1.2")[2::-1], strict=True)))
        mark = index.last_change()
        assert index.remove("9.9").instances == 0
        assert index.changes(mark) == []

    def test_changes_of_a_removed_patient(self, index: Index, keys: dict[str, str]) -> None:
        index.add_instance(make_record("1.9", "1.9.1", "1.9.1.1", PatientID="PID-a"))
        mark = index.last_change()
        index.remove_patient(ids("1.1.1.1")[0])
        extra = orthanc_ids("PID-a", "1.9", "1.9.1", "1.9.1.1")
        assert logged(index, mark) == Counter(deleted(
            *((IN, ids(sop)[3]) for sop in STORED[:4]), (IN, extra[3]),
            (SE, ids("1.1.1.1")[2]), (SE, ids("1.1.2.1")[2]), (SE, extra[2]),
            (ST, ids("1.1.1.1")[1]), (ST, extra[1]), (P, extra[0])))
        assert index.counts()[P] == 4

    # -- jobs --------------------------------------------------------------------------------

    def test_jobs_round_trip(self, index: Index) -> None:
        assert index.jobs() == [] and index.job("nope") is None
        full = job("b", 5, 2000.0, content='{"x": 1}', progress=40, position=3, error_code=9,
                   error_description="Bad", error_details="why", completed=2100.5,
                   runtime=1.25, owner="w1", lease_until=2200.0, request="cancel",
                   attempts=2, state=JobState.FAILURE)
        index.add_job(full)
        index.add_job(job("a", created=1000.0))
        assert index.job("b") == full
        assert [j.id for j in index.jobs()] == ["a", "b"]  # oldest first
        index.remove_jobs(["a", "unknown"])
        assert index.jobs() == [full]

    def test_claim_order(self, index: Index) -> None:
        for record in [job("old-low", 0, 1.0), job("new-high", 5, 3.0), job("old-high", 5, 2.0),
                       job("paused", 9, 0.5, state=JobState.PAUSED),
                       job("done", 9, 0.5, state=JobState.SUCCESS)]:
            index.add_job(record)
        got = [index.claim_job("w", 100.0, 30.0) for _ in range(4)]
        assert [g.id if g else None for g in got] == ["old-high", "new-high", "old-low", None]
        first = got[0]
        assert first is not None and first.state is JobState.RUNNING and first.owner == "w"
        assert first.lease_until == 130.0 and first.attempts == 1
        assert index.job("old-high") == first

    def test_claim_by_type(self, index: Index) -> None:
        index.add_job(job("stow", 9, type="DicomWebStow"))
        index.add_job(job("get", 0, type="DicomWebRetrieve"))
        claimed = index.claim_job("w", 100.0, 30.0, types=["DicomWebRetrieve"])
        assert claimed is not None and claimed.id == "get"
        assert index.claim_job("w", 100.0, 30.0, types=[]) is None
        assert index.claim_job("w", 100.0, 30.0, types=["Other"]) is None

    def test_lease_expiry_resumes_a_job(self, index: Index) -> None:
        index.add_job(job("j"))
        held = index.claim_job("dead", 100.0, 30.0)
        assert held is not None and held.attempts == 1
        assert index.claim_job("other", 129.0, 30.0) is None  # the lease still runs
        resumed = index.claim_job("other", 131.0, 30.0)
        assert resumed is not None and resumed.id == "j" and resumed.owner == "other"
        assert resumed.attempts == 2 and resumed.lease_until == 161.0
        # a pending job goes before an abandoned one
        index.add_job(job("fresh", -5))
        assert index.claim_job("x", 1000.0, 1.0).id == "fresh"  # type: ignore[union-attr]

    def test_update_job_compare_and_set(self, index: Index) -> None:
        index.add_job(job("j"))
        # owner None matches a job nobody holds
        done = index.update_job("j", {"progress": 10}, owner=None, states=[JobState.PENDING])
        assert done is not None and done.progress == 10
        claimed = index.claim_job("w1", 100.0, 30.0)
        assert claimed is not None
        assert index.update_job("j", {"progress": 50}, owner="w2") is None
        assert index.update_job("j", {"progress": 50}, owner=None) is None
        assert index.update_job("j", {"progress": 50}, states=[JobState.PAUSED]) is None
        assert index.update_job("missing", {"progress": 50}) is None
        assert index.job("j") == claimed  # nothing written by the failed ones
        finished = index.update_job(
            "j", {"state": JobState.SUCCESS, "progress": 100, "owner": None, "completed": 120.0},
            owner="w1", states=[JobState.RUNNING, JobState.PAUSED])
        assert finished is not None and finished.state is JobState.SUCCESS
        assert finished.owner is None and finished.completed == 120.0
        assert index.job("j") == finished
        assert index.update_job("j", {}, states=[JobState.SUCCESS]) == finished
        assert index.update_job("j", {"request": "cancel"}).request == "cancel"  # type: ignore
        with pytest.raises(ValueError):
            index.update_job("j", {"id": "other"})

    def test_concurrent_claims_take_each_job_once(self, index: Index) -> None:
        for n in range(40):
            index.add_job(job(f"j{n}", n % 3, float(n)))
        got: list[list[str]] = [[] for _ in range(4)]
        threads = [threading.Thread(target=claim_all, args=(index, f"w{n}", got[n]))
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        claimed = [j for each in got for j in each]
        assert sorted(claimed) == sorted(f"j{n}" for n in range(40))

    # -- properties --------------------------------------------------------------------------

    def test_properties(self, index: Index) -> None:
        assert index.properties("") == {}
        index.set_property("servers.a", '{"Url": "http://a"}')
        index.set_property("servers.b", "2")
        index.set_property("serversX", "3")
        index.set_property("other", "4")
        index.set_property("servers.%_", "5")  # LIKE metacharacters are plain characters
        assert index.properties("servers.") == {"servers.a": '{"Url": "http://a"}',
                                                "servers.b": "2", "servers.%_": "5"}
        assert index.properties("servers.%") == {"servers.%_": "5"}
        assert len(index.properties("")) == 5
        index.set_property("servers.a", "new")  # last writer wins
        index.set_property("servers.b", None)
        index.set_property("missing", None)
        assert index.properties("servers.") == {"servers.a": "new", "servers.%_": "5"}
        assert index.properties("zzz") == {}


# -- migrating a database of schema version 3 (used by test_sqlite and test_postgres) ---------


def insert_v3(execute: Any, mark: str, record: InstanceRecord) -> None:
    """Rows of ``record`` as a version-3 index held them (every NOT NULL column; the v3
    triggers fill ``patients``). ``execute(sql, params)`` returns the rows; ``mark`` is the
    driver's placeholder."""
    def insert(table: str, values: dict[str, Any]) -> int:
        names = ", ".join(f'"{name}"' for name in values)
        marks = ", ".join([mark] * len(values))
        return execute(f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING pk",
                       list(values.values()))[0][0]

    study = insert("studies", {"study_key": record.study_key, "patient_key": record.patient_key,
                               "attrs": json.dumps(record.study),
                               "StudyInstanceUID": record.uid(Level.STUDY)})
    series = insert("series", {"study_pk": study, "series_key": record.series_key,
                               "attrs": json.dumps(record.series),
                               "SeriesInstanceUID": record.uid(Level.SERIES)})
    insert("instances", {"series_pk": series, "instance_key": record.instance_key,
                         "attrs": json.dumps(record.instance), "metadata": record.metadata,
                         "frames": "[]", "transfer_syntax": record.transfer_syntax,
                         "storage_key": record.storage_key, "size": record.size,
                         "SOPInstanceUID": record.uid(Level.INSTANCE),
                         "patient_key": record.patient_key})


V3_RECORDS = [make_record("1", "1.1", "1.1.1", PatientID="A"),
              make_record("2", "2.1", "2.1.1", PatientID="B"),
              make_record("3", "3.1", "3.1.1", PatientID="A")]


def check_migrated_v3(index: Index) -> None:
    """What an index migrated from :data:`V3_RECORDS` shows, and logs from then on."""
    a, b, c = (orthanc_ids(p, "", "", "")[0] for p in ("A", "B", "C"))
    assert index.resource_ids(P) == [a, b]  # by their first study
    assert index.counts() == {P: 2, ST: 3, SE: 3, IN: 3}
    assert index.changes() == [] and index.last_change() == 0
    patient = index.resource(P, a)
    assert patient is not None and patient.last_update == 0.0  # unknown before v4
    assert patient.children == (V3_RECORDS[0].study_key, V3_RECORDS[2].study_key)
    assert index.resource_instances(P, a) == index.instances("1") + index.instances("3")
    index.add_instance(make_record("4", "4.1", "4.1.1", PatientID="C"))
    assert index.resource_ids(P) == [a, b, c]
    index.remove("2")
    kinds = Counter((change.change_type, change.resource_type) for change in index.changes())
    assert kinds == Counter([*(("Deleted", t) for t in (P, ST, SE, IN)), ("NewPatient", P),
                             ("NewStudy", ST), ("NewSeries", SE), ("NewInstance", IN)])
