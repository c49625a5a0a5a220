"""Two stateless nodes sharing one PostgreSQL database and one S3 bucket (moto).

Each node is a separate ``dicomweb-server`` (gunicorn) on its own port and data folder,
with the same ``AwsS3Storage`` and ``PostgreSQL`` sections: what one node stores the
other finds, serves and deletes; concurrent STOW through both loses nothing, duplicates
nothing and leaves no orphan object. Both pin ``DicomWeb.Host`` to one public name, as
nodes behind a load balancer do, so their answers are identical.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pydicom
import pytest
import requests

from tests import pg
from tests.api.data import ct, ct_bytes, uid
from tests.conftest import dicom_bytes
from tests.deployments import drop_bucket, new_bucket, objects, postgresql_section, s3_section
from tests.e2e.client import AS_STORED, OCTETS, get, parts, stow, uids, wado_uri
from tests.e2e.server import Server
from tests.s3server import MotoServer

pytestmark = pytest.mark.e2e

PUBLIC = "http://pacs.test"  # the load balancer's name in generated URLs


class Cluster:
    """Two nodes over one database and one bucket."""

    def __init__(self, a: Server, b: Server, endpoint: str, bucket: str) -> None:
        self.a, self.b, self.endpoint, self.bucket = a, b, endpoint, bucket

    def objects(self) -> int:
        return len(objects(self.endpoint, self.bucket))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, moto_s3: MotoServer) -> Iterator[Cluster]:
    bucket = new_bucket()
    with pg.database() as dsn:
        shared = {"AwsS3Storage": s3_section(moto_s3.endpoint, bucket),
                  "PostgreSQL": postgresql_section(dsn),
                  "DicomWeb": {"Host": PUBLIC.removeprefix("http://")}}
        nodes = [Server(tmp_path_factory.mktemp(name), workers=2, threads=4, extra=shared)
                 for name in ("node-a", "node-b")]
        try:
            for node in nodes:
                node.start()
            yield Cluster(*nodes, moto_s3.endpoint, bucket)
        finally:
            for node in nodes:
                node.stop()
    drop_bucket(moto_s3.endpoint, bucket)


# --------------------------------------------------------------------------- #
# one instance, two nodes
# --------------------------------------------------------------------------- #


def test_stored_on_a_found_retrieved_and_deleted_through_b(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    study, series, sop = uid(), uid(), uid()
    data = ct_bytes(study, series, sop, frames=2)
    assert stow(a, [data]).status_code == 200

    assert uids(get(b, "studies", StudyInstanceUID=study), "0020000D") == [study]
    assert uids(get(b, "instances", SOPInstanceUID=sop), "00080018") == [sop]
    path = f"studies/{study}/series/{series}/instances/{sop}"
    ((_, retrieved),) = parts(get(b, path, AS_STORED))
    assert retrieved == data
    metadata = get(b, f"{path}/metadata").json()
    assert metadata == get(a, f"{path}/metadata").json()  # same public URLs from both
    assert metadata[0]["00080018"]["Value"] == [sop]
    assert metadata[0]["7FE00010"]["BulkDataURI"].startswith(f"{PUBLIC}/dicom-web/{path}/")
    before = cluster.objects()

    deleted = requests.delete(f"{b.root}/{path}", timeout=60)
    assert deleted.status_code == 200 and deleted.json() == {"RemovedInstances": 1}
    assert get(a, "studies", StudyInstanceUID=study).json() == []
    assert get(a, path, AS_STORED).status_code == 404
    assert get(a, f"{path}/metadata").status_code == 404
    assert wado_uri(a, study, series, sop, contentType="application/dicom").status_code == 404
    assert cluster.objects() == before - 1


# --------------------------------------------------------------------------- #
# concurrent STOW of one study through both nodes
# --------------------------------------------------------------------------- #

INSTANCES, SERIES, PER_REQUEST = 60, 3, 3


def test_concurrent_stow_through_both_nodes_loses_and_duplicates_nothing(
        cluster: Cluster) -> None:
    """Every third instance goes to both nodes, at the same moment; the rest to one."""
    study, series = uid(), [uid() for _ in range(SERIES)]
    files = [ct_bytes(study, series[i % SERIES], number=i) for i in range(INSTANCES)]
    to_a = [f for i, f in enumerate(files) if i % 3 in (0, 2)]
    to_b = [f for i, f in enumerate(files) if i % 3 in (1, 2)]
    requests_ = [(node, chunk) for node, batch in ((cluster.a, to_a), (cluster.b, to_b))
                 for chunk in _chunks(batch, PER_REQUEST)]
    objects_before, instances_before = cluster.objects(), _instance_count(cluster.a)

    with ThreadPoolExecutor(max_workers=8) as pool:  # A and B requests interleaved
        statuses = list(pool.map(lambda r: stow(*r).status_code, _interleave(requests_)))
    # 202 where a request carried an instance the other node had stored first: kept, with
    # a warning (OverwriteInstances false, Orthanc's default).
    assert set(statuses) <= {200, 202} and statuses.count(200) >= 1

    for node in (cluster.a, cluster.b):
        sops = uids(get(node, f"studies/{study}/instances"), "00080018")
        assert len(sops) == len(set(sops)) == INSTANCES
        (found,) = get(node, "studies", StudyInstanceUID=study).json()
        assert found["00201206"]["Value"] == [SERIES]
        assert found["00201208"]["Value"] == [INSTANCES]
        for one in series:
            (counted,) = get(node, f"studies/{study}/series", SeriesInstanceUID=one).json()
            assert counted["00201209"]["Value"] == [INSTANCES // SERIES]
    # A re-sent instance was kept as first stored: no second object was left behind.
    assert cluster.objects() - objects_before == INSTANCES
    assert _instance_count(cluster.a) - instances_before == INSTANCES
    assert cluster.objects() == _instance_count(cluster.a)


def _chunks(items: list[bytes], size: int) -> list[list[bytes]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _interleave(jobs: list[tuple[Server, list[bytes]]]) -> list[tuple[Server, list[bytes]]]:
    """A, B, A, B...: the requests carrying the same instances start together."""
    on_a = [job for job in jobs if job[0].port == jobs[0][0].port]
    on_b = [job for job in jobs if job[0].port != jobs[0][0].port]
    pairs = itertools.zip_longest(on_a, on_b)
    return [job for pair in pairs for job in pair if job is not None]


def _instance_count(node: Server) -> int:
    return sum(s["00201208"]["Value"][0] for s in get(node, "studies").json())


# --------------------------------------------------------------------------- #
# the whole DICOMweb surface on S3 + PostgreSQL
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def study(cluster: Cluster) -> dict[str, Any]:
    """One study stored through node A: a 3-frame instance and a single-frame one in
    series 1, one instance in series 2 (another modality)."""
    st, se1, se2 = uid(), uid(), uid()
    sops = [uid(), uid(), uid()]
    datasets = [ct(st, se1, sops[0], number=1, frames=3, patient_id="MULTI"),
                ct(st, se1, sops[1], number=2, patient_id="MULTI"),
                ct(st, se2, sops[2], number=1, patient_id="MULTI", modality="MR",
                   SeriesNumber=2)]
    files = [dicom_bytes(ds) for ds in datasets]
    answer = stow(cluster.a, files)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["00081199"]["Value"]) == 3
    return {"st": st, "series": [se1, se1, se2], "sops": sops, "files": files,
            "pixels": [ds.PixelData for ds in datasets]}


def test_qido_at_every_level(cluster: Cluster, study: dict[str, Any]) -> None:
    b, st, (se1, _, se2), sops = cluster.b, study["st"], study["series"], study["sops"]
    assert uids(get(b, "studies", PatientID="MULTI"), "0020000D") == [st]
    (found,) = get(b, "studies", StudyInstanceUID=st, includefield="ModalitiesInStudy").json()
    assert sorted(found["00080061"]["Value"]) == ["CT", "MR"]
    assert uids(get(b, f"studies/{st}/series"), "0020000E") == [se1, se2]
    assert uids(get(b, "series", Modality="MR"), "0020000E") == [se2]
    assert sorted(uids(get(b, f"studies/{st}/instances"), "00080018")) == sorted(sops)
    assert uids(get(b, f"studies/{st}/series/{se1}/instances"), "00080018") == sops[:2]
    assert uids(get(b, "instances", SOPInstanceUID=sops[2]), "00080018") == [sops[2]]
    assert get(b, "studies", PatientID="NOBODY").json() == []


def test_wado_rs_study_series_instance_byte_identical(cluster: Cluster,
                                                      study: dict[str, Any]) -> None:
    b, st, (se1, _, _), sops, files = (cluster.b, study["st"], study["series"], study["sops"],
                                       study["files"])
    assert sorted(body for _, body in parts(get(b, f"studies/{st}", AS_STORED))) == sorted(files)
    assert [body for _, body in parts(get(b, f"studies/{st}/series/{se1}", AS_STORED))] == \
        files[:2]
    ((headers, body),) = parts(get(b, f"studies/{st}/series/{se1}/instances/{sops[1]}",
                                   AS_STORED))
    assert body == files[1]
    assert headers["content-type"].startswith("application/dicom")


def test_metadata_of_series_and_study(cluster: Cluster, study: dict[str, Any]) -> None:
    a, b, st, (se1, _, _) = cluster.a, cluster.b, study["st"], study["series"]
    series_meta = get(b, f"studies/{st}/series/{se1}/metadata").json()
    assert [m["00080018"]["Value"][0] for m in series_meta] == study["sops"][:2]
    study_meta = get(b, f"studies/{st}/metadata").json()
    assert sorted(m["00080018"]["Value"][0] for m in study_meta) == sorted(study["sops"])
    assert study_meta == get(a, f"studies/{st}/metadata").json()
    # Every attribute survives: the metadata rebuilds each stored dataset (but pixels).
    for meta, data in zip(series_meta, study["files"][:2], strict=True):
        ds = pydicom.Dataset.from_json(json.dumps(meta), lambda *_: b"")
        original = pydicom.dcmread(io.BytesIO(data))
        assert ds.PatientName == original.PatientName and ds.Rows == original.Rows


def test_frames_and_bulk_data(cluster: Cluster, study: dict[str, Any]) -> None:
    b, st, (se1, _, _), sops, pixels = (cluster.b, study["st"], study["series"],
                                        study["sops"], study["pixels"])
    path = f"studies/{st}/series/{se1}/instances/{sops[0]}"
    frame = len(pixels[0]) // 3
    got = [body for _, body in parts(get(b, f"{path}/frames/3,1", OCTETS))]
    assert got == [pixels[0][2 * frame:], pixels[0][:frame]]
    (meta,) = get(b, f"{path}/metadata").json()
    uri = meta["7FE00010"]["BulkDataURI"]
    ((_, bulk),) = parts(get(b, uri.removeprefix(f"{PUBLIC}/dicom-web/"), OCTETS))
    assert bulk == pixels[0]


def test_wado_uri_dicom_and_jpeg(cluster: Cluster, study: dict[str, Any]) -> None:
    st, se2, sop = study["st"], study["series"][2], study["sops"][2]
    dicom = wado_uri(cluster.b, st, se2, sop, contentType="application/dicom")
    assert dicom.status_code == 200 and dicom.content == study["files"][2]
    jpeg = wado_uri(cluster.b, st, se2, sop)
    assert jpeg.status_code == 200 and jpeg.headers["Content-Type"] == "image/jpeg"
    assert jpeg.content[:2] == b"\xff\xd8"


def test_delete_series_then_study(cluster: Cluster, study: dict[str, Any]) -> None:
    """Last in the module: removes the study the tests above read."""
    a, b, st, (se1, _, se2) = cluster.a, cluster.b, study["st"], study["series"]
    before = cluster.objects()
    answer = requests.delete(f"{a.root}/studies/{st}/series/{se2}", timeout=60)
    assert answer.status_code == 200 and answer.json() == {"RemovedInstances": 1}
    assert uids(get(b, f"studies/{st}/series"), "0020000E") == [se1]
    answer = requests.delete(f"{b.root}/studies/{st}", timeout=60)
    assert answer.json() == {"RemovedInstances": 2}
    assert get(a, "studies", StudyInstanceUID=st).json() == []
    assert get(a, f"studies/{st}", AS_STORED).status_code == 404
    assert requests.delete(f"{a.root}/studies/{st}", timeout=60).status_code == 404
    assert cluster.objects() == before - 3
    assert cluster.objects() == _instance_count(a)
