"""Crashes under load lose nothing acknowledged and leave nothing half-visible.

A real ``dicomweb-server`` (gunicorn, 2 workers) takes single-instance STOWs from several
client threads, each instance new, each answer recorded. Mid-load one worker is SIGKILLed
(gunicorn starts another; the load goes on and must keep being acknowledged), then the
whole server is (master and workers at once, as a power cut or the OOM killer would). The
server is started again on the same data, and then:

- every instance acknowledged with 200 is retrievable, byte for byte (WADO-RS,
  ``transfer-syntax=*``);
- nothing unacknowledged is half-visible: every instance QIDO lists (acknowledged or not) is
  retrieved whole and byte-identical to what was sent, and its metadata parses; the
  retrieval, the metadata and the QIDO answers list the same instances;
- the index and the storage agree: ``dicomweb-server check`` finds no index row without
  its blob; orphan blobs (written, then the process died before the index commit) and
  interrupted writes may be there: ``check --repair --grace 0`` removes them, after which
  ``check`` reports the deployment consistent.

Filesystem + SQLite, and S3 (moto) + PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from tests import pg
from tests.api.data import ct_bytes, uid
from tests.conftest import stow_body
from tests.deployments import drop_bucket, new_bucket, postgresql_section, s3_section
from tests.e2e.client import AS_STORED, get, parts, uids
from tests.e2e.server import Server
from tests.s3server import MotoServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 6
BEFORE_WORKER_KILL = 100  # acknowledged instances before the worker is killed
AFTER_WORKER_KILL = 150  # ... and after it, before the whole server is killed
LOAD_TIMEOUT = 30.0  # seconds to reach each of those counts
ROOT = "1.2.826.0.1.3680043.8.498.77"


@dataclass
class Load:
    """Client threads storing new instances one per request; what they sent and what was
    acknowledged."""

    root: str
    sent: dict[str, bytes] = field(default_factory=dict)  # SOPInstanceUID -> file
    acked: set[str] = field(default_factory=set)  # answered 200
    failures: list[str] = field(default_factory=list)  # connection errors (expected)
    unexpected: list[str] = field(default_factory=list)  # any other answer than 200
    studies: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(CLIENTS):
            study, series = uid(), uid()
            self.studies.append(study)
            self.threads.append(threading.Thread(target=self._client, args=(n, study, series),
                                                 daemon=True, name=f"stow-{n}"))
        for thread in self.threads:
            thread.start()
        return self

    def _client(self, n: int, study: str, series: str) -> None:
        # One instance made by pydicom, then copies with another SOPInstanceUID of the same
        # length patched in (both places it occurs): new instances at no client CPU cost.
        placeholder = f"{ROOT}.{n + 1}{'9' * 9}"
        template = ct_bytes(study, series, placeholder, rows=32, columns=32)
        assert template.count(placeholder.encode()) == 2
        session = requests.Session()
        for count in itertools.count():
            if self.stop.is_set():
                return
            sop = f"{ROOT}.{n + 1}{count:09d}"
            data = template.replace(placeholder.encode(), sop.encode())
            with self.lock:
                self.sent[sop] = data
            body, ctype = stow_body([data])
            try:
                answer = session.post(f"{self.root}/studies", data=body, timeout=30,
                                      headers={"Content-Type": ctype})
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(f"{sop}: {type(exc).__name__}")
                session.close()
                session = requests.Session()
                if self.stop.is_set():
                    return
                time.sleep(0.05)  # the server is down: do not spin
                continue
            with self.lock:
                if answer.status_code == 200:
                    self.acked.add(sop)
                else:
                    self.unexpected.append(f"{sop}: {answer.status_code} {answer.text[:200]}")

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while len(self.acked) < count:
            assert time.monotonic() < deadline, (
                f"only {len(self.acked)} of {count} acknowledged; {self.failures[-5:]}"
                f" {self.unexpected[-5:]}")
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)
            assert not thread.is_alive()


def kill_one_worker(server: Server) -> int:
    assert server.proc is not None
    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == 2, workers
    workers[0].kill()  # SIGKILL
    return workers[0].pid


def kill_everything(server: Server) -> None:
    """SIGKILL the master first (it would start new workers), then every worker."""
    assert server.proc is not None
    master = psutil.Process(server.proc.pid)
    tree = [master, *master.children(recursive=True)]
    for proc in tree:
        proc.kill()
    psutil.wait_procs(tree, timeout=10)
    server.proc.wait(timeout=10)


def check(server: Server, *options: str) -> tuple[int, str]:
    """``dicomweb-server check`` on the server's configuration, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "check", "--config", str(server.config), *options],
        capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[2])
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout


def count(report: str, what: str) -> int:
    [line] = [line for line in report.splitlines() if line.startswith(what)]
    return int(line.rsplit(":", 1)[1])


def run_crashes(server: Server) -> Load:
    load = Load(server.root).start()
    try:
        load.wait_for(BEFORE_WORKER_KILL)
        killed = kill_one_worker(server)
        load.wait_for(len(load.acked) + AFTER_WORKER_KILL)  # a new worker took over
        assert server.proc is not None
        assert killed not in [p.pid for p in psutil.Process(server.proc.pid).children()]
        load.stop.set()  # requests in flight are cut by the kill below
        kill_everything(server)
    finally:
        load.finish()
    assert not load.unexpected, load.unexpected[:5]
    return load


def verify(server: Server, load: Load) -> None:
    """Acknowledged: all there, byte for byte. Visible: whole."""
    listed: set[str] = set()
    for study in load.studies:
        qido = set(uids(get(server, f"studies/{study}/instances"), "00080018"))
        answer = get(server, f"studies/{study}", AS_STORED)
        retrieved: dict[str, bytes] = {}
        if qido:
            for headers, data in parts(answer):
                ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
                assert ctype.startswith("application/dicom")
                [sop] = [s for s in qido if s.encode() in data] or ["?"]
                retrieved[sop] = data
        else:
            assert answer.status_code == 404
        assert set(retrieved) == qido, "QIDO and WADO-RS disagree"
        for sop, data in retrieved.items():
            assert data == load.sent[sop], f"{sop} differs from what was sent"
        if qido:
            metadata = get(server, f"studies/{study}/metadata").json()
            assert {m["00080018"]["Value"][0] for m in metadata} == qido
            assert all(m["0020000D"]["Value"] == [study] for m in metadata)
        listed |= qido
    assert load.acked <= listed, f"lost: {sorted(load.acked - listed)[:5]}"
    unacked = listed - load.acked
    # Stored, answered, answer lost in the kill: fine, as long as whole (checked above).
    assert len(unacked) <= len(load.failures)


def crash_and_recover(server: Server) -> None:
    server.start()
    load = run_crashes(server)
    assert len(load.failures) >= 1  # the kills did cut requests
    server.start()  # the same data, after the crash
    verify(server, load)

    status, report = check(server)
    assert count(report, "index rows without their blob") == 0, report
    print(f"{len(load.acked)} acknowledged, {len(load.sent)} sent, {len(load.failures)} cut;"
          f" before the repair:\n{report}")
    status, report = check(server, "--repair", "--grace", "0", "--sizes")
    print(report)
    assert status == 0, report
    assert count(report, "index rows without their blob") == 0
    assert count(report, "size mismatches") == 0
    status, report = check(server, "--grace", "0")
    assert status == 0 and report.splitlines()[-1].startswith("consistent"), report
    assert count(report, "orphan blobs") == 0 and count(report, "interrupted writes") == 0

    # still serving, and still storing
    verify(server, load)
    study, series, sop = uid(), uid(), uid()
    body, ctype = stow_body([ct_bytes(study, series, sop)])
    assert requests.post(f"{server.root}/studies", data=body, timeout=30,
                         headers={"Content-Type": ctype}).status_code == 200


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, workers=2, threads=2)
    yield srv
    srv.stop()


def test_crashes_on_filesystem_and_sqlite(server: Server) -> None:
    crash_and_recover(server)


@pytest.fixture
def cluster_node(tmp_path: Path, moto_s3: MotoServer) -> Iterator[Server]:
    bucket = new_bucket()
    with pg.database() as dsn:
        srv = Server(tmp_path, workers=2, threads=2, extra={
            "AwsS3Storage": s3_section(moto_s3.endpoint, bucket),
            "PostgreSQL": postgresql_section(dsn)})
        try:
            yield srv
        finally:
            srv.stop()
    drop_bucket(moto_s3.endpoint, bucket)


def test_crashes_on_s3_and_postgresql(cluster_node: Server) -> None:
    assert "AwsS3Storage" in json.loads(cluster_node.config.read_text())
    crash_and_recover(cluster_node)
