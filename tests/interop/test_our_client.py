"""Our DICOMweb client against a real Orthanc (reference §7, with our improvements).

Ours queries Orthanc (``/qido``: the same simplified answer Orthanc's own client gives),
proxies it (``/get``), retrieves from it (``/retrieve`` synchronously, answering the local
ids it stored too; ``/retrieve`` and ``/wado`` as asynchronous jobs polled on ``/jobs``),
stores to it (``/stow``, synchronous and as a job: Orthanc then holds byte-identical files)
and asks it to delete (``/delete``: Orthanc's DICOMweb server refuses DELETE). A remote
that refuses (wrong password) or is down gives a clear JSON error; a wrong method, 405.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest
import requests

from tests.interop.conftest import Interop, single_part
from tests.interop.files import MULTI_FRAME, bundled_study, generated_series

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]

OPERATIONS = ("get", "qido", "wado", "retrieve", "stow", "delete")


def test_qido_on_orthanc_is_simplified_like_orthancs_client(interop: Interop) -> None:
    instances = bundled_study()
    interop.upload_to_orthanc(instances)
    study = instances[0].study
    for uri, arguments in (("/studies", {"PatientID": instances[0].patient_id}),
                           (f"/studies/{study}/series", {"Modality": "MR"}),
                           (f"/studies/{study}/series/{instances[3].series}/instances",
                            {"includefield": "NumberOfFrames"})):
        body = {"Uri": uri, "Arguments": arguments}
        ours = interop.our_client("orthanc", "qido", body)
        assert ours.status_code == 200, ours.text
        theirs = interop.orthanc_client("self", "qido", body)
        assert theirs.status_code == 200, theirs.text
        assert _strings_only(ours.json()) == _strings_only(theirs.json()), uri
        assert ours.json(), uri
    found = interop.our_client("orthanc", "qido", {"Uri": "/studies",
                                                   "Arguments": {"StudyInstanceUID": study}})
    (entry,) = found.json()
    assert entry["0020000D"] == {"Group": 0x20, "Element": 0x0D, "Name": "StudyInstanceUID",
                                 "vr": "UI", "Value": study}


def test_get_metadata_from_orthanc(interop: Interop) -> None:
    """``/get`` returns Orthanc's body and Content-Type unchanged (reference §7.4)."""
    instances = bundled_study(("CT_small.dcm", MULTI_FRAME))
    interop.upload_to_orthanc(instances)
    uri = f"/studies/{instances[0].study}/metadata"
    ours = interop.our_client("orthanc", "get", {"Uri": uri})
    assert ours.status_code == 200, ours.text
    assert ours.headers["Content-Type"].startswith("application/dicom+json")
    direct = interop.orthanc_rest("GET", "/dicom-web" + uri)
    assert ours.json() == direct.json()
    assert len(ours.json()) == 2


def test_retrieve_from_orthanc_synchronously(interop: Interop) -> None:
    """``/retrieve`` is synchronous by default; it answers the ids of what it stored."""
    instances = bundled_study()
    extra = generated_series(3)
    interop.upload_to_orthanc(instances + extra)
    resources = [{"Study": instances[0].study},
                 {"Study": extra[0].study, "Series": extra[0].series,
                  "Instance": extra[2].sop}]
    answer = interop.our_client("orthanc", "retrieve", {"Resources": resources})
    assert answer.status_code == 200, answer.text
    content = answer.json()
    assert content["ReceivedInstancesCount"] == str(len(instances) + 1)
    received = instances + [extra[2]]
    assert {i.ids[3] for i in received} <= _strings(content)  # our improvement on §7.6
    for instance in received:
        got = interop.our_file(instance)
        assert single_part(got) == instance.data, instance.name
    assert interop.our_file(extra[0]).status_code == 404  # not asked for


def test_retrieve_from_orthanc_as_job(interop: Interop) -> None:
    instances = generated_series(4)
    interop.upload_to_orthanc(instances)
    url = f"{interop.ours.root}/servers/orthanc/retrieve"
    answer = interop.http.post(url, timeout=60, json={
        "Resources": [{"Study": instances[0].study}], "Asynchronous": True, "Priority": 3})
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["ID"]
    # Path is relative to the request (reference §7.5): it must lead to the same job.
    by_path = interop.http.get(urllib.parse.urljoin(url, answer.json()["Path"]), timeout=60)
    assert by_path.status_code == 200, by_path.text
    assert by_path.json()["ID"] == job_id
    job = interop.our_wait_job(job_id)
    assert (job["State"], job["Type"], job["Priority"]) == \
        ("Success", "DicomWebWadoRetrieveClient", 3), job
    assert job["Content"]["ReceivedInstancesCount"] == "4"
    assert job["Progress"] == 100
    assert all(single_part(interop.our_file(i)) == i.data for i in instances)
    listed = interop.http.get(_server_root(interop) + "/jobs", timeout=60)
    assert job_id in listed.json()


def test_wado_from_orthanc(interop: Interop) -> None:
    """``/wado`` is asynchronous by default (reference §7.6); ``Synchronous`` answers the
    job's Content directly."""
    instances = bundled_study((MULTI_FRAME, "MR_small_RLE.dcm"))
    interop.upload_to_orthanc(instances)
    multi, rle = instances
    answer = interop.our_client("orthanc", "wado",
                                {"Uri": f"/studies/{multi.study}/series/{multi.series}"})
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"ID", "Path"}
    job = interop.our_wait_job(answer.json()["ID"])
    assert job["State"] == "Success", job
    assert single_part(interop.our_file(multi)) == multi.data
    assert interop.our_file(rle).status_code == 404

    answer = interop.our_client("orthanc", "wado", {"Uri": rle.path, "Synchronous": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ReceivedInstancesCount"] == "1"
    assert single_part(interop.our_file(rle)) == rle.data


def test_stow_to_orthanc_synchronously(interop: Interop) -> None:
    instances = bundled_study() + generated_series(3)
    interop.stow_to_ours(instances)
    resources = sorted({i.ids[1] for i in instances})  # two studies, by Orthanc id
    answer = interop.our_client("orthanc", "stow", {"Resources": resources})
    assert answer.status_code == 200, answer.text
    assert answer.json()["InstancesCount"] == str(len(instances))
    for instance in instances:
        stored = interop.orthanc_file(instance)
        assert stored.status_code == 200, instance.name
        assert stored.content == instance.data, instance.name


def test_stow_to_orthanc_as_job(interop: Interop) -> None:
    instances = generated_series(5)
    interop.stow_to_ours(instances)
    answer = interop.our_client("orthanc", "stow", {
        "Resources": [instances[0].ids[2], instances[1].ids[3]], "Asynchronous": True})
    assert answer.status_code == 200, answer.text
    job = interop.our_wait_job(answer.json()["ID"])
    assert (job["State"], job["Type"]) == ("Success", "DicomWebStowClient"), job
    assert job["Content"]["InstancesCount"] == "5"  # the series; the instance once
    assert all(interop.orthanc_file(i).content == i.data for i in instances)


def test_delete_on_orthanc_is_refused_clearly(interop: Interop) -> None:
    """Orthanc's DICOMweb server (plugin 1.7) has no DELETE (405, ``Allow: GET,POST``): its
    own client cannot delete on it either. Ours relays the refusal as a JSON 502 naming the
    server and Orthanc's status, and Orthanc keeps the instances. (Deleting through our
    client is tested end to end against our server: test_self_remote.)"""
    (instance,) = generated_series(1)
    interop.upload_to_orthanc([instance])
    for body in ({"Level": "Study", "StudyInstanceUID": instance.study},
                 {"Level": "Instance", "StudyInstanceUID": instance.study,
                  "SeriesInstanceUID": instance.series, "SOPInstanceUID": instance.sop}):
        ours = interop.our_client("orthanc", "delete", body)
        assert ours.status_code == 502, ours.text
        assert "orthanc" in ours.json()["Message"] and "405" in ours.json()["Message"]
        theirs = interop.orthanc_client("self", "delete", body)
        assert theirs.status_code == 500, theirs.text  # Orthanc: other statuses → 500 (§7.3)
    assert interop.orthanc_file(instance).content == instance.data


def test_wrong_password_is_a_clear_error(interop: Interop) -> None:
    """Orthanc answers 401; ours says so in JSON (reference §7.3: 401/403 → 401)."""
    (instance,) = generated_series(1)
    interop.stow_to_ours([instance])
    for operation, body in (("qido", {"Uri": "/studies"}),
                            ("get", {"Uri": "/studies"}),
                            ("stow", {"Resources": [instance.ids[3]]}),
                            ("retrieve", {"Resources": [{"Study": instance.study}]})):
        answer = interop.our_client("orthanc-badpass", operation, body)
        assert answer.status_code == 401, (operation, answer.text)
        assert answer.json()["HttpStatus"] == 401
        assert '"orthanc-badpass"' in _explanation(answer), operation


def test_remote_down_is_a_clear_error(interop: Interop) -> None:
    """Nothing listens: a JSON error naming the problem, synchronously or in the job."""
    (instance,) = generated_series(1)
    interop.stow_to_ours([instance])
    for operation, body in (("qido", {"Uri": "/studies"}),
                            ("stow", {"Resources": [instance.ids[3]]}),
                            ("retrieve", {"Resources": [{"Study": instance.study}]})):
        answer = interop.our_client("down", operation, body)
        assert answer.status_code == 502, (operation, answer.text)  # Orthanc: 500 (§7.3)
        assert '"down"' in _explanation(answer), operation
    answer = interop.our_client("down", "stow", {"Resources": [instance.ids[3]],
                                                 "Asynchronous": True})
    assert answer.status_code == 200, answer.text
    job = interop.our_wait_job(answer.json()["ID"])
    assert job["State"] == "Failure", job
    assert job["ErrorCode"] == 9, job  # NetworkProtocol, as Orthanc
    assert '"down"' in job["ErrorDetails"], job


@pytest.mark.parametrize("operation", OPERATIONS)
def test_wrong_method_is_405(interop: Interop, operation: str) -> None:
    """Ours answers 405 with Allow: POST (Orthanc gives 400 for some of them)."""
    answer = interop.http.get(f"{interop.ours.root}/servers/orthanc/{operation}", timeout=60)
    assert answer.status_code == 405, answer.text
    assert "POST" in answer.headers["Allow"]


def test_bad_requests(interop: Interop) -> None:
    unknown = interop.our_client("no-such-server", "qido", {"Uri": "/studies"})
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["Message"]
    missing = interop.our_client("orthanc", "retrieve", {})
    assert missing.status_code == 400, missing.text
    unknown_id = interop.our_client("orthanc", "stow", {"Resources": ["0" * 8]})
    assert unknown_id.status_code == 404, unknown_id.text
    no_delete = interop.our_client("down", "delete", {"Level": "Study",
                                                      "StudyInstanceUID": "1.2.3"})
    assert no_delete.status_code == 400, no_delete.text  # HasDelete false (reference §7.7)
    assert "HasDelete" in no_delete.json()["Message"]
    malformed = interop.http.post(f"{interop.ours.root}/servers/orthanc/qido", data="{",
                                  headers={"Content-Type": "application/json"}, timeout=60)
    assert malformed.status_code == 400, malformed.text


def _explanation(answer: requests.Response) -> str:
    """Message and Details of a JSON error answer."""
    body = answer.json()
    return f"{body['Message']} {body.get('Details', '')}"


def _server_root(interop: Interop) -> str:
    """Where Orthanc's REST API (``/jobs``) lives on our server."""
    return interop.ours.root.rsplit("/dicom-web", 1)[0]


def _strings_only(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Simplified QIDO results without numeric values: plugin 1.7 drops them, later versions
    (and ours) keep integers (reference §7.4)."""
    return [{tag: {k: v for k, v in entry.items()
                   if not (k == "Value" and isinstance(v, int | float))}
             for tag, entry in result.items()} for result in results]


def _strings(value: Any) -> set[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*map(_strings, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_strings, value)) if value else set()
    return set()




def _our_jobs(interop: Interop, job_id: str, action: str = "") -> requests.Response:
    root = interop.ours.root.rsplit("/dicom-web", 1)[0]
    if action:
        return interop.http.post(f"{root}/jobs/{job_id}/{action}", timeout=30)
    return interop.http.get(f"{root}/jobs/{job_id}", timeout=30)


def _wait_state(interop: Interop, job_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job = _our_jobs(interop, job_id).json()
        if job["State"] in states or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_stow_job_to_orthanc_paused_resumed_cancelled_resubmitted(interop: Interop) -> None:
    """Job operations on a STOW job whose remote is Orthanc: paused mid-way (Debug: 0.1 s
    per instance) it stops with part of the series on Orthanc; resumed it sends the rest;
    cancelled it fails with Orthanc's CanceledJob; resubmitted it sends everything."""
    instances = generated_series(12)
    interop.stow_to_ours(instances)
    body = {"Resources": [instances[0].ids[2]], "Asynchronous": True, "Debug": True}
    job_id = interop.our_client("orthanc", "stow", body).json()["ID"]
    _wait_state(interop, job_id, ("Running",))
    time.sleep(0.3)
    assert _our_jobs(interop, job_id, "pause").status_code == 200
    paused = _wait_state(interop, job_id, ("Paused", "Success"))
    assert paused["State"] == "Paused", paused
    on_orthanc = sum(interop.orthanc_file(i).status_code == 200 for i in instances)
    assert 0 < on_orthanc < len(instances)
    assert _our_jobs(interop, job_id, "resume").status_code == 200
    done = _wait_state(interop, job_id, ("Success", "Failure"))
    assert done["State"] == "Success", done
    assert done["Content"]["InstancesCount"] == str(len(instances))
    assert all(interop.orthanc_file(i).content == i.data for i in instances)

    again = generated_series(12)
    interop.stow_to_ours(again)
    job_id = interop.our_client("orthanc", "stow", {**body, "Resources": [again[0].ids[2]]}
                                ).json()["ID"]
    _wait_state(interop, job_id, ("Running",))
    assert _our_jobs(interop, job_id, "cancel").status_code == 200
    cancelled = _wait_state(interop, job_id, ("Failure", "Success"))
    assert cancelled["State"] == "Failure" and cancelled["ErrorDescription"], cancelled
    assert _our_jobs(interop, job_id, "resubmit").status_code == 200
    done = _wait_state(interop, job_id, ("Success", "Failure"))
    assert done["State"] == "Success", done
    assert all(interop.orthanc_file(i).content == i.data for i in again)


def test_retrieve_job_from_orthanc_cancelled_then_resubmitted(interop: Interop) -> None:
    """A retrieve job (not pausable, as Orthanc's) from Orthanc: cancelled while it runs
    (Debug: 50 ms per part) it fails; resubmitted it stores every instance."""
    instances = generated_series(20)
    interop.upload_to_orthanc(instances)
    body = {"Resources": [{"Study": instances[0].study}], "Asynchronous": True, "Debug": True}
    job_id = interop.our_client("orthanc", "retrieve", body).json()["ID"]
    _wait_state(interop, job_id, ("Running",))
    assert _our_jobs(interop, job_id, "cancel").status_code == 200
    cancelled = _wait_state(interop, job_id, ("Failure", "Success"))
    assert cancelled["State"] == "Failure", cancelled
    assert _our_jobs(interop, job_id, "resubmit").status_code == 200
    done = _wait_state(interop, job_id, ("Success", "Failure"))
    assert done["State"] == "Success", done
    assert done["Content"]["ReceivedInstancesCount"] == str(len(instances))
    assert all(single_part(interop.our_file(i)) == i.data for i in instances)


def test_wildcard_and_list_lookups_on_orthanc(interop: Interop) -> None:
    """``*`` and ``,`` reach Orthanc unencoded: Orthanc 1.10 decodes neither ``%2A`` nor
    ``%2C``, and its own client's wildcard lookups find nothing."""
    first, second = bundled_study(("CT_small.dcm",)), bundled_study(("MR_small_RLE.dcm",))
    interop.upload_to_orthanc(first + second)
    patient = first[0].patient_id
    wildcard = {"Uri": "/studies", "Arguments": {"PatientID": patient[:-3] + "*"}}
    ours = interop.our_client("orthanc", "qido", wildcard)
    assert ours.status_code == 200, ours.text
    assert [s["0020000D"]["Value"] for s in ours.json()
            if s["00100020"]["Value"] == patient] == [first[0].study]
    theirs = interop.orthanc_client("self", "qido", wildcard)
    assert theirs.status_code == 200 and theirs.json() == []  # Orthanc's client: %2A
    uids = f"{first[0].study},{second[0].study}"
    listed = interop.our_client("orthanc", "qido", {"Uri": "/studies",
                                                    "Arguments": {"StudyInstanceUID": uids}})
    assert listed.status_code == 200, listed.text
    assert sorted(s["0020000D"]["Value"] for s in listed.json()) == \
        sorted([first[0].study, second[0].study])
