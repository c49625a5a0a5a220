"""The STOW spool: a part in memory (shared bytes) or, past the limit, in a temporary file;
the storage policy: answers with warnings, making room under the limits (recycling)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.dicom import store
from backends.base import InstanceRecord
from backends.index_sqlite import SqliteIndex
from tests.contract.records import make_record, orthanc_id


def test_small_part_is_one_in_memory_buffer() -> None:
    with store.spool([b"ab", b"", b"cde"]) as (f, size):
        assert isinstance(f, io.BytesIO)
        assert (size, f.tell(), f.read()) == (5, 0, b"abcde")
    assert f.closed


def test_large_part_goes_to_a_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "SPOOL_IN_MEMORY", 4)
    with store.spool([b"ab", b"cd", b"ef", b"g"]) as (f, size):
        assert not isinstance(f, io.BytesIO)
        assert f.fileno() >= 0  # a real file: ingest maps it instead of reading it
        assert (size, f.tell(), f.read()) == (7, 0, b"abcdefg")
    assert f.closed


def test_failed_part_closes_its_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "SPOOL_IN_MEMORY", 1)
    spooled = store.spool(_failing())
    with pytest.raises(ConnectionResetError):
        spooled.__enter__()
    assert spooled.file is not None and spooled.file.closed


def _failing() -> Iterator[bytes]:
    yield b"abc"
    raise ConnectionResetError("client went away")


# ---------------------------------------------------------------------------------------------
# Storage policy: OverwriteInstances, MaximumStorageSize / MaximumPatientCount and their mode


def test_policy_from_orthanc_options() -> None:
    assert store.StoragePolicy.from_orthanc(False, 0, 0, "Recycle") == store.StoragePolicy()
    assert not store.ORTHANC_DEFAULTS.overwrite and not store.ORTHANC_DEFAULTS.limited
    policy = store.StoragePolicy.from_orthanc(True, 3, 7, "Reject")
    assert policy == store.StoragePolicy(True, 3 * 1024 * 1024, 7, recycle=False)
    assert policy.limited and store.StoragePolicy(max_patients=1).limited


def test_warned_instances_answer_202_with_warning_reason() -> None:
    outcome = store.StowOutcome(base_url="http://h/")
    outcome.stored.append(("1.2.3", "9.1", "9", "9.0", 0))
    assert outcome.status() == 200
    outcome.stored.append(("1.2.3", "9.2", "9", "9.0", store.ELEMENTS_DISCARDED))
    assert outcome.status() == 202
    first, second = outcome.answer()["00081199"]["Value"]
    assert "00081196" not in first
    assert second["00081196"] == {"vr": "US", "Value": [0xB006]}
    only_kept = store.StowOutcome(base_url="http://h/", stored=outcome.stored[1:])
    assert only_kept.status() == 202


class Blobs:
    """A storage area that only records deletions (make_room never writes)."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, key: str) -> None:
        self.deleted.append(key)


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SqliteIndex]:
    """Patients A, B, C stored in that order: 100, 200 and 300 bytes."""
    index = SqliteIndex(tmp_path / "index.sqlite")
    for n, (patient_id, size) in enumerate([("A", 100), ("B", 200), ("C", 300)]):
        index.add_instance(make_record(f"1.{n}", f"1.{n}.1", f"1.{n}.1.1", PatientID=patient_id,
                                       size=size, storage_key=f"blob-{patient_id}"))
    yield index
    index.close()


def incoming(patient_id: str, size: int) -> InstanceRecord:
    return make_record("2", "2.1", "2.1.1", PatientID=patient_id, size=size)


def room(index: Any, record: InstanceRecord, policy: store.StoragePolicy, *,
         replaced: int = 0, protected: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    blobs = Blobs()
    reason = store.make_room(record, replaced, storage=blobs, index=index,  # type: ignore[arg-type]
                             policy=policy, protected={orthanc_id(p) for p in protected})
    return reason, blobs.deleted


def patients(index: SqliteIndex) -> list[str]:
    names = {orthanc_id(p): p for p in "ABCDX"}
    return [names[p.patient_key] for p in index.oldest_patients(10)]


def test_room_within_the_limits_deletes_nothing(index: SqliteIndex) -> None:
    assert room(index, incoming("X", 400), store.StoragePolicy(max_bytes=1000)) == (0, [])
    assert room(index, incoming("X", 1), store.StoragePolicy(max_patients=4)) == (0, [])
    # a patient already stored adds no patient
    assert room(index, incoming("C", 1), store.StoragePolicy(max_patients=3)) == (0, [])


def test_recycling_takes_the_oldest_until_both_limits_hold(index: SqliteIndex) -> None:
    both = store.StoragePolicy(max_bytes=1000, max_patients=3)
    assert room(index, incoming("X", 450), both) == (0, ["blob-A"])  # 50 bytes, 1 patient
    assert room(index, incoming("Y", 750), both) == (0, ["blob-B", "blob-C"])
    assert patients(index) == []


def test_recycling_for_the_patient_count(index: SqliteIndex) -> None:
    assert room(index, incoming("X", 1), store.StoragePolicy(max_patients=2)) == (
        0, ["blob-A", "blob-B"])


def test_recycling_spares_the_incoming_and_protected_patients(index: SqliteIndex) -> None:
    # C stores more: A goes first, never C itself
    assert room(index, incoming("C", 500), store.StoragePolicy(max_bytes=1000)) == (
        0, ["blob-A"])
    # B and C protected (stored by the same request): nobody may go
    reason, deleted = room(index, incoming("X", 800), store.StoragePolicy(max_bytes=1000),
                           protected=("B", "C"))
    assert (reason, deleted) == (store.OUT_OF_RESOURCES, [])
    assert patients(index) == ["B", "C"]


def test_reject_and_what_never_fits_delete_nothing(index: SqliteIndex) -> None:
    reject = store.StoragePolicy(max_bytes=1000, max_patients=3, recycle=False)
    assert room(index, incoming("X", 10), reject) == (store.OUT_OF_RESOURCES, [])
    assert room(index, incoming("C", 500), reject) == (store.OUT_OF_RESOURCES, [])
    assert room(index, incoming("C", 300), reject) == (0, [])
    assert room(index, incoming("X", 1001), store.StoragePolicy(max_bytes=1000)) == (
        store.OUT_OF_RESOURCES, [])
    assert patients(index) == ["A", "B", "C"]


def test_a_replaced_instance_is_counted_out(index: SqliteIndex) -> None:
    policy = store.StoragePolicy(max_bytes=600, recycle=False)
    assert room(index, incoming("C", 300), policy, replaced=300) == (0, [])
    assert room(index, incoming("C", 301), policy, replaced=300) == (store.OUT_OF_RESOURCES, [])


class StoresMeanwhile:
    """The index, where another request stores into the first patient chosen for recycling
    right after it was chosen."""

    def __init__(self, index: SqliteIndex) -> None:
        self.index = index
        self.done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)

    def oldest_patients(self, limit: int, exclude: Any = ()) -> Any:
        chosen = self.index.oldest_patients(limit, exclude)
        if not self.done:
            self.done = True
            self.index.add_instance(make_record("1.0", "1.0.1", "1.0.1.2", PatientID="A"))
        return chosen


def test_a_patient_stored_to_meanwhile_is_not_recycled(index: SqliteIndex) -> None:
    reason, deleted = room(StoresMeanwhile(index), incoming("X", 1),
                           store.StoragePolicy(max_patients=3))
    assert (reason, deleted) == (0, ["blob-B"])  # A received an instance: B went instead
    assert patients(index) == ["C", "A"]
