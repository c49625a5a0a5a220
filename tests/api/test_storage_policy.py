"""Orthanc's storage options through STOW-RS (Flask test client): OverwriteInstances (keep
the first copy, answered with WarningReason B006, or replace it), MaximumStorageSize and
MaximumPatientCount with MaximumStorageMode Recycle (the least recently stored patients
go) or Reject (FailureReason A700, nothing written). Blobs are counted in the storage
folder itself: nothing may be left behind, whatever the outcome or the concurrency."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.dicom.store import ELEMENTS_DISCARDED, OUT_OF_RESOURCES
from backends.sql_schema import V4_INDEXES
from tests import pg
from tests.api.data import ct_bytes, uid
from tests.api.test_stow import FAILED, REFERENCED, post
from tests.conftest import make_settings

WARNING_REASON, FAILURE_REASON, SOP_UID = "00081196", "00081197", "00081155"
PATIENT_ID = "00100020"
MB = 1 << 20


class Deployment:
    """One app on its own storage folder (SQLite index unless given PostgreSQL)."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        self.app: Flask = create_app(make_settings(root, **overrides))
        self.client: FlaskClient = self.app.test_client()

    def blobs(self) -> list[Path]:
        """Every file in the storage folder (a left-over temporary file counts too)."""
        return [p for p in (self.root / "storage").rglob("*") if p.is_file()]

    def stow(self, *files: bytes) -> Any:
        return post(self.client, list(files))

    def patients(self) -> list[str]:
        """PatientIDs of the stored studies, in QIDO order."""
        answer = self.client.get("/dicom-web/studies?includefield=PatientID")
        assert answer.status_code in (200, 204)
        return sorted({s[PATIENT_ID]["Value"][0] for s in answer.get_json() or []})

    def retrieve(self, study: str, series: str, sop: str) -> bytes:
        response = self.client.get(f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
                                   headers={"Accept": 'multipart/related; type="application/dicom";'
                                                      ' transfer-syntax=*'})
        assert response.status_code == 200
        body = response.get_data()
        start = body.index(b"\r\n\r\n") + 4
        return body[start:body.rindex(b"\r\n--")]

    def close(self) -> None:
        self.app.extensions["dicomweb"].index.close()


MakeDeployment = Callable[..., Deployment]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[MakeDeployment]:
    made: list[Deployment] = []

    def make(**overrides: Any) -> Deployment:
        made.append(Deployment(tmp_path / f"deployment{len(made)}", **overrides))
        return made[-1]

    yield make
    for deployment in made:
        deployment.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings overrides choosing the index: SQLite, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield {}
        return
    with pg.database() as dsn:
        yield {"PostgreSQL": {"EnableIndex": True, "ConnectionUri": dsn}}


def referenced(response: Any) -> list[dict[str, Any]]:
    return response.get_json().get(REFERENCED, {}).get("Value", [])


def failed(response: Any) -> list[tuple[str, int]]:
    return [(item[SOP_UID]["Value"][0], item[FAILURE_REASON]["Value"][0])
            for item in response.get_json().get(FAILED, {}).get("Value", [])]


def one_patient(patient_id: str, *, size: int = 4, instances: int = 1) -> list[bytes]:
    """``instances`` CT files of one new study of patient ``patient_id``; ``size`` rows and
    columns of 16-bit pixels (384: about 295 kB each)."""
    study, series = uid(), uid()
    return [ct_bytes(study, series, number=n, patient_id=patient_id, rows=size, columns=size)
            for n in range(instances)]


# ---------------------------------------------------------------------------------------------
# OverwriteInstances


def test_a_stored_instance_is_kept_by_default(deploy: MakeDeployment) -> None:
    d = deploy()
    st, se, sop = uid(), uid(), uid()
    first = ct_bytes(st, se, sop, patient="FIRST^ONE")
    second = ct_bytes(st, se, sop, patient="SECOND^TWO")
    assert d.stow(first).status_code == 200
    again = d.stow(second)
    # PS3.18 Table 10.5.3-1: stored, with a warning (the first copy is what is stored).
    assert again.status_code == 202
    [item] = referenced(again)
    assert item[SOP_UID]["Value"] == [sop]
    assert item[WARNING_REASON] == {"vr": "US", "Value": [ELEMENTS_DISCARDED]}
    assert item["00081190"]["Value"][0].endswith(f"/studies/{st}/series/{se}/instances/{sop}")
    assert FAILED not in again.get_json()
    assert len(d.blobs()) == 1  # the second was never written
    assert d.retrieve(st, se, sop) == first
    names = d.client.get(f"/dicom-web/studies?StudyInstanceUID={st}").get_json()
    assert names[0]["00100010"]["Value"][0]["Alphabetic"] == "FIRST^ONE"


def test_kept_and_new_instances_in_one_request(deploy: MakeDeployment) -> None:
    d = deploy()
    st, se, sop = uid(), uid(), uid()
    assert d.stow(ct_bytes(st, se, sop)).status_code == 200
    new = uid()
    answer = d.stow(ct_bytes(st, se, sop, patient="OTHER^NAME"), ct_bytes(st, se, new))
    assert answer.status_code == 202
    warnings = {i[SOP_UID]["Value"][0]: i.get(WARNING_REASON) for i in referenced(answer)}
    assert warnings == {sop: {"vr": "US", "Value": [ELEMENTS_DISCARDED]}, new: None}
    assert len(d.blobs()) == 2


def test_overwrite_instances_replaces(deploy: MakeDeployment) -> None:
    d = deploy(OverwriteInstances=True)
    st, se, sop = uid(), uid(), uid()
    first = ct_bytes(st, se, sop, patient="FIRST^ONE")
    second = ct_bytes(st, se, sop, patient="SECOND^TWO")
    assert d.stow(first).status_code == 200
    again = d.stow(second)
    assert again.status_code == 200
    [item] = referenced(again)
    assert WARNING_REASON not in item
    assert len(d.blobs()) == 1  # the replaced blob is gone
    assert d.retrieve(st, se, sop) == second
    names = d.client.get(f"/dicom-web/studies?StudyInstanceUID={st}").get_json()
    assert names[0]["00100010"]["Value"][0]["Alphabetic"] == "SECOND^TWO"


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep-first", "overwrite"])
def test_concurrent_stores_of_one_instance_leave_one_blob(
        deploy: MakeDeployment, index_settings: dict[str, Any], overwrite: bool) -> None:
    d = deploy(OverwriteInstances=overwrite, **index_settings)
    st, se, sop = uid(), uid(), uid()
    files = [ct_bytes(st, se, sop, patient=f"COPY^{n}") for n in range(6)]
    barrier = threading.Barrier(len(files))
    answers: dict[bytes, Any] = {}

    def stow(data: bytes) -> None:
        client = d.app.test_client()
        barrier.wait(timeout=30)
        answers[data] = post(client, [data])

    threads = [threading.Thread(target=stow, args=(f,)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(d.blobs()) == 1
    stored = d.retrieve(st, se, sop)
    assert stored in files
    statuses = sorted(a.status_code for a in answers.values())
    if overwrite:
        assert statuses == [200] * len(files)
    else:  # exactly one was stored as sent; the others were answered as kept
        assert statuses == [200] + [202] * (len(files) - 1)
        assert answers[stored].status_code == 200
    assert len(d.client.get(f"/dicom-web/studies/{st}/instances").get_json()) == 1


# ---------------------------------------------------------------------------------------------
# MaximumPatientCount


def test_patient_count_recycles_the_least_recently_stored(deploy: MakeDeployment) -> None:
    d = deploy(MaximumPatientCount=2)
    p1, p2, p3, p4 = (one_patient(p) for p in ("P1", "P2", "P3", "P4"))
    assert d.stow(*p1).status_code == 200
    assert d.stow(*p2).status_code == 200
    assert d.stow(*p3).status_code == 200
    assert d.patients() == ["P2", "P3"]
    assert len(d.blobs()) == 2
    # P2 receives an instance: now P3 is the least recently stored
    assert d.stow(one_patient("P2")[0]).status_code == 200
    assert d.stow(*p4).status_code == 200
    assert d.patients() == ["P2", "P4"]
    assert len(d.blobs()) == 3  # P2's two instances and P4's
    for gone in ("P1", "P3"):
        assert not d.client.get(f"/dicom-web/studies?PatientID={gone}").get_json()


def test_patient_count_never_recycles_a_patient_of_the_same_request(
        deploy: MakeDeployment) -> None:
    d = deploy(MaximumPatientCount=1)
    assert d.stow(*one_patient("P0")).status_code == 200
    p1, p2 = one_patient("P1", instances=2), one_patient("P2")
    answer = d.stow(*p1, *p2)
    # P0 made room for P1; P1's instances are in this very answer, so P2 cannot have it
    assert answer.status_code == 202
    assert len(referenced(answer)) == 2
    assert [reason for _, reason in failed(answer)] == [OUT_OF_RESOURCES]
    assert d.patients() == ["P1"]
    assert len(d.blobs()) == 2


def test_patient_count_reject(deploy: MakeDeployment) -> None:
    d = deploy(MaximumPatientCount=2, MaximumStorageMode="Reject")
    assert d.stow(*one_patient("P1")).status_code == 200
    assert d.stow(*one_patient("P2")).status_code == 200
    p3 = one_patient("P3")
    refused = d.stow(*p3)
    assert refused.status_code == 400  # nothing stored, no study conflict: the existing rules
    [(_, reason)] = failed(refused)
    assert reason == OUT_OF_RESOURCES == 0xA700
    assert len(d.blobs()) == 2 and d.patients() == ["P1", "P2"]
    # a patient already stored still receives instances; with a refused one: 202
    answer = d.stow(one_patient("P1")[0], *p3)
    assert answer.status_code == 202
    assert len(referenced(answer)) == 1 and len(failed(answer)) == 1
    assert len(d.blobs()) == 3


# ---------------------------------------------------------------------------------------------
# MaximumStorageSize (MB of 1024 × 1024 bytes, sizes as stored)


def test_storage_size_recycles_until_the_instance_fits(deploy: MakeDeployment) -> None:
    d = deploy(MaximumStorageSize=1)
    files = {p: one_patient(p, size=384) for p in ("P1", "P2", "P3", "P4")}
    size = len(files["P1"][0])
    assert 290_000 < size < 300_000 and 3 * size < MB < 4 * size
    for patient in ("P1", "P2", "P3"):
        assert d.stow(*files[patient]).status_code == 200
    assert len(d.blobs()) == 3
    assert d.stow(*files["P4"]).status_code == 200
    assert d.patients() == ["P2", "P3", "P4"]
    assert sum(p.stat().st_size for p in d.blobs()) <= MB
    # two instances of one more patient need two patients to go
    answer = d.stow(*one_patient("P5", size=384, instances=2))
    assert answer.status_code == 200
    assert d.patients() == ["P4", "P5"]


def test_storage_size_refuses_what_can_never_fit(deploy: MakeDeployment) -> None:
    d = deploy(MaximumStorageSize=1)
    assert d.stow(*one_patient("P1", size=384)).status_code == 200
    huge = one_patient("P2", size=760)[0]  # 1.1 MiB
    assert len(huge) > MB
    refused = d.stow(huge)
    assert refused.status_code == 400
    assert [reason for _, reason in failed(refused)] == [OUT_OF_RESOURCES]
    assert d.patients() == ["P1"] and len(d.blobs()) == 1  # nobody recycled for nothing


def test_storage_size_reject(deploy: MakeDeployment) -> None:
    d = deploy(MaximumStorageSize=1, MaximumStorageMode="Reject")
    for patient in ("P1", "P2", "P3"):
        assert d.stow(*one_patient(patient, size=384)).status_code == 200
    before = sorted(d.blobs())
    answer = d.stow(one_patient("P1", size=384)[0], one_patient("P4", size=4)[0])
    # a fourth 295 kB instance does not fit, even for a stored patient; a small one does
    assert answer.status_code == 202
    assert [reason for _, reason in failed(answer)] == [OUT_OF_RESOURCES]
    assert len(referenced(answer)) == 1
    assert len(d.blobs()) == len(before) + 1
    assert d.patients() == ["P1", "P2", "P3", "P4"]


def test_overwrite_counts_the_replaced_size_out(deploy: MakeDeployment) -> None:
    d = deploy(MaximumStorageSize=1, MaximumStorageMode="Reject", OverwriteInstances=True)
    st, se, sop = uid(), uid(), uid()
    for n in range(3):  # each replaces the last: one instance stored, never 3 × 295 kB
        data = ct_bytes(st, se, sop, patient_id="P1", rows=384, columns=384,
                        patient=f"V{n}^X")
        assert d.stow(data).status_code == 200
    assert d.stow(*one_patient("P2", size=384)).status_code == 200
    assert d.stow(*one_patient("P3", size=384)).status_code == 200
    assert len(d.blobs()) == 3


# ---------------------------------------------------------------------------------------------
# An index made before the usage existed (schema version 2) is filled in when it migrates


def _downgrade_to_v2(settings: dict[str, Any], root: Path) -> None:
    """Undo migrations 4 and 3 (what an index written by an older release looks like)."""
    logged = ("patients", "studies", "series", "instances")
    v4 = ["DROP TABLE changes", "DROP TABLE jobs", "DROP TABLE properties",
          *(f"DROP INDEX ix_{table}_{'_'.join(columns)}"
            for table, columns, _ in V4_INDEXES if table not in ("jobs", "patients")),
          "ALTER TABLE instances DROP COLUMN stored",
          "DELETE FROM schema_version WHERE version = 4"]
    statements = [
        "DROP TABLE patients", "DROP TABLE storage_usage",
        "DROP INDEX ix_studies_patient_key", "DROP INDEX ix_instances_patient_key",
        "ALTER TABLE instances DROP COLUMN patient_key",
        "DELETE FROM schema_version WHERE version = 3",
    ]
    if not settings:
        with sqlite3.connect(root / "index" / "index.sqlite") as conn:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'")]
            for trigger in names:  # v3's usage triggers and v4's change log
                conn.execute(f"DROP TRIGGER {trigger}")
            for statement in v4 + statements:
                conn.execute(statement)
        return
    with psycopg.connect(settings["PostgreSQL"]["ConnectionUri"], autocommit=True) as conn:
        for table in logged:
            conn.execute(f"DROP TRIGGER log_{table}_new ON {table}")
            conn.execute(f"DROP TRIGGER log_{table}_gone ON {table}")
        for table in ("studies", "series"):
            conn.execute(f"DROP TRIGGER log_{table}_rekeyed ON {table}")
        conn.execute("DROP TRIGGER log_instances_rewritten ON instances")
        for table in logged:
            conn.execute(f"DROP FUNCTION dicomweb_{table}_logged")
            conn.execute(f"DROP FUNCTION dicomweb_{table}_gone")
        for trigger in ("instance_added", "instance_changed", "instances_removed"):
            conn.execute(f"DROP TRIGGER {trigger} ON instances")
        for function in ("instance_added", "instance_changed", "instances_removed"):
            conn.execute(f"DROP FUNCTION dicomweb_{function}")
        conn.execute("DROP SEQUENCE patients_last_stored")
        for statement in v4 + statements:
            conn.execute(statement)
        conn.execute("DROP SEQUENCE patients_first_stored")


def test_usage_of_an_older_index_is_filled_in(tmp_path: Path,
                                              index_settings: dict[str, Any]) -> None:
    root = tmp_path / "deployment"
    old = Deployment(root, **index_settings)
    for patient in ("P1", "P2", "P3"):
        assert old.stow(*one_patient(patient, instances=2)).status_code == 200
    old.close()
    _downgrade_to_v2(index_settings, root)
    d = Deployment(root, MaximumPatientCount=2, **index_settings)
    try:
        assert d.stow(*one_patient("P4")).status_code == 200  # P1 and P2 were stored first
        assert d.patients() == ["P3", "P4"]
        assert len(d.blobs()) == 3
    finally:
        d.close()
