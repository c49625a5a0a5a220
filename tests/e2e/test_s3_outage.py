"""S3 goes away and comes back under a running server (S3 on moto + PostgreSQL).

The server reaches a moto server of its own through a TCP proxy (``tests.tcpproxy``);
closing the proxy is the outage (connections refused, pooled ones cut) while moto keeps
its objects, so the same bucket is back when the proxy reopens. During the outage what
needs S3 answers 503 with a JSON reason and stores nothing; what needs only the index
(QIDO, metadata, DELETE) goes on working. Short S3 timeouts and two attempts per request keep
each failing request around a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import pg
from tests.api.data import ct_bytes, uid
from tests.deployments import objects, postgresql_section, s3_section
from tests.e2e.client import AS_STORED, get, parts, stow, uids, wado_uri
from tests.e2e.server import Server
from tests.s3server import MotoServer
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.e2e

QUICK_S3 = {"ConnectionTimeout": 1, "RequestTimeout": 3, "MaxAttempts": 2}


@dataclass
class Setup:
    server: Server
    proxy: TcpProxy
    moto: MotoServer
    bucket: str

    def objects(self) -> int:
        return len(objects(self.moto.endpoint, self.bucket))  # straight to moto


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A server whose S3 is a moto server of its own behind a proxy (the session's moto
    server is left alone)."""
    with MotoServer() as moto, TcpProxy(moto.port) as proxy, pg.database() as dsn:
        bucket = "outage"
        server = Server(tmp_path, workers=1, threads=4, extra={
            "AwsS3Storage": s3_section(proxy.endpoint, bucket, **QUICK_S3),
            "PostgreSQL": postgresql_section(dsn)})
        try:
            yield Setup(server.start(), proxy, moto, bucket)
        finally:
            server.stop()
        moto.log.unlink(missing_ok=True)


def sops(server: Server) -> list[str]:
    return sorted(uids(get(server, "instances"), "00080018"))


def single_part(answer: requests.Response) -> bytes:
    ((_, body),) = parts(answer)
    return body


def retrieve(server: Server, path: str) -> requests.Response:
    return get(server, path, AS_STORED)


def assert_unavailable(answer: requests.Response) -> None:
    """503 with a JSON body naming S3, never a 500 or a truncated 200."""
    assert answer.status_code == 503, (answer.status_code, answer.text[:500])
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Retry-After"] == "5"
    body = answer.json()
    assert body["HttpStatus"] == 503
    assert "S3" in body["Message"] and "unavailable" in body["Message"]


def test_s3_outage_answers_503_stores_nothing_and_recovers(setup: Setup) -> None:
    server = setup.server
    study, series = uid(), uid()
    files = {sop: ct_bytes(study, series, sop, number=n, frames=2)
             for n, sop in enumerate([uid() for _ in range(4)], 1)}
    for chunk in (list(files.values())[:2], list(files.values())[2:]):
        assert stow(server, chunk).status_code == 200
    first = next(iter(files))
    path = f"studies/{study}/series/{series}/instances/{first}"
    assert single_part(retrieve(server, path)) == files[first]  # pooled connections now

    setup.proxy.close()
    late = {sop: ct_bytes(study, series, sop, number=10 + n)
            for n, sop in enumerate([uid(), uid()])}
    assert_unavailable(stow(server, list(late.values())))
    assert_unavailable(retrieve(server, path))
    assert_unavailable(retrieve(server, f"studies/{study}"))
    assert_unavailable(get(server, f"{path}/frames/1"))
    assert_unavailable(get(server, f"{path}/bulk/7fe00010"))
    assert_unavailable(wado_uri(server, study, series, first, contentType="application/dicom"))
    assert_unavailable(wado_uri(server, study, series, first))  # rendered JPEG
    # The index alone answers searches and metadata.
    assert sops(server) == sorted(files)
    metadata = get(server, f"studies/{study}/metadata")
    assert metadata.status_code == 200 and len(metadata.json()) == len(files)
    # DELETE only needs the index to be done; the object stays behind, unreferenced.
    gone = list(files)[-1]
    deleted = requests.delete(f"{server.root}/{path.replace(first, gone)}", timeout=60)
    assert deleted.status_code == 200 and deleted.json() == {"RemovedInstances": 1}
    del files[gone]

    setup.proxy.open()
    assert sops(server) == sorted(files)  # nothing of the refused STOW is visible
    assert setup.objects() == len(files) + 1  # nor stored (+1: the deleted one's object)
    assert retrieve(server, path.replace(first, gone)).status_code == 404
    for sop, data in files.items():
        assert single_part(retrieve(server, path.replace(first, sop))) == data
        dicom = wado_uri(server, study, series, sop, contentType="application/dicom")
        assert dicom.status_code == 200 and dicom.content == data
    assert stow(server, list(late.values())).status_code == 200  # the client's retry
    assert sops(server) == sorted([*files, *late])
    assert setup.objects() == len(files) + len(late) + 1
