"""Orthanc's DICOMweb client (plugin 1.7) against our server (reference §7).

Orthanc queries our server (``/qido``), proxies our answers (``/get``: metadata, rendered),
retrieves from us and stores what it got (``/retrieve``, ``/wado``: the files Orthanc then
holds are byte-identical to the ones we were given), stores its instances on our server
(``/stow``, chunked and sized bodies: we keep them byte-identical) and deletes on our
server (``/delete``, ``HasDelete``). Instances: pydicom's bundled files (RLE, JPEG 2000,
multi-frame JPEG baseline, multi-frame implicit VR, SR) and generated CTs.
"""

from __future__ import annotations

import json

import pytest

from tests.interop.conftest import Interop, single_part
from tests.interop.files import MULTI_FRAME, bundled_study, generated_series

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_stow_from_orthanc_is_stored_byte_identical(interop: Interop) -> None:
    """Orthanc's STOW-RS job sends one multipart body (chunked by default, reference §7.5)."""
    instances = bundled_study() + generated_series(5)
    interop.upload_to_orthanc(instances)
    studies = sorted({i.ids[1] for i in instances})
    answer = interop.orthanc_client("ours", "stow", {"Resources": studies})
    assert answer.status_code == 200, answer.text
    assert answer.json()["InstancesCount"] == str(len(instances))
    for instance in instances:
        got = interop.our_file(instance)
        assert got.status_code == 200, (instance.name, got.text[:300])
        assert single_part(got) == instance.data, instance.name


def test_stow_from_orthanc_without_chunked_transfers(interop: Interop) -> None:
    """``ChunkedTransfers: false``: Orthanc sends the body with a Content-Length."""
    instances = generated_series(3)
    interop.upload_to_orthanc(instances)
    answer = interop.orthanc_client("ours-sized", "stow", {"Resources": [instances[0].ids[2]]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["InstancesCount"] == "3"
    assert all(single_part(interop.our_file(i)) == i.data for i in instances)


def test_qido_from_orthanc(interop: Interop) -> None:
    """Orthanc parses our QIDO answers and simplifies them (reference §7.4)."""
    instances = bundled_study()
    interop.stow_to_ours(instances)
    study = instances[0].study
    studies = _qido(interop, "/studies", {"StudyInstanceUID": study})
    assert len(studies) == 1
    assert studies[0]["0020000D"] == {"Group": 0x20, "Element": 0x0D, "Name": "StudyInstanceUID",
                                      "vr": "UI", "Value": study}
    assert studies[0]["00100020"]["Value"] == instances[0].patient_id
    # Plugin 1.7 keeps only string and PN values: numbers (IS as JSON numbers) lose theirs.
    assert studies[0]["00201208"]["vr"] == "IS"  # NumberOfStudyRelatedInstances
    assert studies[0]["00080061"]["Value"] == "CT"  # first of CT, MR, RTDOSE, SR, US

    series = _qido(interop, f"/studies/{study}/series", {})
    assert sorted(s["0020000E"]["Value"] for s in series) == sorted(i.series for i in instances)
    modalities = {s["0020000E"]["Value"]: s["00080060"]["Value"] for s in series}
    assert modalities[instances[0].series] == "CT"

    multi = next(i for i in instances if i.name == MULTI_FRAME)
    found = _qido(interop, f"/studies/{study}/series/{multi.series}/instances",
                  {"includefield": "NumberOfFrames"})
    assert [f["00080018"]["Value"] for f in found] == [multi.sop]
    assert found[0]["00280008"]["vr"] == "IS"  # NumberOfFrames, included on request

    by_name = _qido(interop, "/studies", {"PatientID": instances[0].patient_id,
                                          "ModalitiesInStudy": "SR"})
    assert [s["0020000D"]["Value"] for s in by_name] == [study]


def test_get_metadata_from_orthanc(interop: Interop) -> None:
    """Orthanc's ``/get`` proxies our answer unchanged, Content-Type included."""
    instances = bundled_study(("CT_small.dcm", MULTI_FRAME))
    interop.stow_to_ours(instances)
    uri = f"/studies/{instances[0].study}/metadata"
    proxied = interop.orthanc_client("ours", "get", {"Uri": uri})
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["Content-Type"].startswith("application/dicom+json")
    direct = interop.http.get(interop.ours.root + uri, timeout=60)
    assert proxied.json() == direct.json()
    assert sorted(m["00080018"]["Value"][0] for m in proxied.json()) == \
        sorted(i.sop for i in instances)


def test_get_rendered_from_orthanc(interop: Interop) -> None:
    """Rendered images through Orthanc's ``/get``: its Accept header reaches us."""
    (instance,) = bundled_study(("CT_small.dcm",))
    interop.stow_to_ours([instance])
    uri = instance.path + "/rendered"
    png = interop.orthanc_client("ours", "get", {"Uri": uri,
                                                 "HttpHeaders": {"Accept": "image/png"}})
    assert png.status_code == 200, png.text
    assert png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    direct = interop.http.get(interop.ours.root + uri, headers={"Accept": "image/png"},
                              timeout=60)
    assert png.content == direct.content
    jpeg = interop.orthanc_client("ours", "get", {"Uri": uri, "Arguments": {"quality": "90"}})
    assert jpeg.status_code == 200, jpeg.text
    assert jpeg.headers["Content-Type"] == "image/jpeg"
    assert jpeg.content.startswith(b"\xff\xd8")


def test_retrieve_from_ours_into_orthanc(interop: Interop) -> None:
    """``/retrieve`` (synchronous by default): Orthanc stores exactly our bytes."""
    instances = bundled_study()
    extra = generated_series(4)
    interop.stow_to_ours(instances + extra)
    resources = [{"Study": instances[0].study},
                 {"Study": extra[0].study, "Series": extra[0].series},
                 {"Study": extra[0].study, "Series": extra[0].series, "Instance": extra[1].sop}]
    answer = interop.orthanc_client("ours", "retrieve", {"Resources": resources})
    assert answer.status_code == 200, answer.text
    # The last resource is received a second time (Orthanc counts what it received).
    assert answer.json()["ReceivedInstancesCount"] == str(len(instances) + len(extra) + 1)
    for instance in instances + extra:
        stored = interop.orthanc_file(instance)
        assert stored.status_code == 200, instance.name
        assert stored.content == instance.data, instance.name


def test_wado_job_from_ours_into_orthanc(interop: Interop) -> None:
    """``/wado`` is asynchronous by default: an Orthanc job that succeeds."""
    instances = bundled_study((MULTI_FRAME, "MR_small_RLE.dcm"))
    interop.stow_to_ours(instances)
    multi = instances[0]
    answer = interop.orthanc_client("ours", "wado",
                                    {"Uri": f"/studies/{multi.study}/series/{multi.series}"})
    assert answer.status_code == 200, answer.text
    job = interop.orthanc_wait_job(answer.json()["ID"])
    assert job["State"] == "Success", job
    assert job["Type"] == "DicomWebWadoRetrieveClient"
    assert job["Content"]["ReceivedInstancesCount"] == "1"
    assert interop.orthanc_file(multi).content == multi.data
    assert interop.orthanc_file(instances[1]).status_code == 404  # other series: not asked


def test_delete_from_orthanc(interop: Interop) -> None:
    """``/delete`` with ``HasDelete``: Orthanc sends DELETE to our studies/series/instances."""
    doomed = generated_series(3)
    whole = generated_series(2)
    interop.stow_to_ours(doomed + whole)
    first = doomed[0]
    answers = [
        interop.orthanc_client("ours", "delete", {
            "Level": "Instance", "StudyInstanceUID": first.study,
            "SeriesInstanceUID": first.series, "SOPInstanceUID": first.sop}),
        interop.orthanc_client("ours", "delete", {
            "Level": "Series", "StudyInstanceUID": first.study,
            "SeriesInstanceUID": first.series}),
        interop.orthanc_client("ours", "delete", {
            "Level": "Study", "StudyInstanceUID": whole[0].study}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    for instance in doomed + whole:
        assert interop.our_file(instance).status_code == 404, instance.name
    again = interop.orthanc_client("ours", "delete", {
        "Level": "Study", "StudyInstanceUID": whole[0].study})
    assert again.status_code == 404  # our 404 reaches Orthanc's caller (reference §7.3)


def _qido(interop: Interop, uri: str, arguments: dict[str, str]) -> list[dict]:
    answer = interop.orthanc_client("ours", "qido", {"Uri": uri, "Arguments": arguments})
    assert answer.status_code == 200, answer.text
    return json.loads(answer.text)
