"""A server that lists itself as a remote (``self`` in its own ``DicomWeb.Servers``).

Each call holds one gunicorn thread while the request it sends to itself needs another:
this works only with concurrent request handling (2 workers × 4 threads here), and must
keep working with several such calls at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.interop.conftest import Interop, single_part
from tests.interop.files import Instance, bundled_study, generated_series

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_qido_and_get_through_itself(interop: Interop) -> None:
    instances = bundled_study()
    interop.stow_to_ours(instances)
    study = instances[0].study
    found = interop.our_client("self", "qido", {"Uri": f"/studies/{study}/series"})
    assert found.status_code == 200, found.text
    assert sorted(s["0020000E"]["Value"] for s in found.json()) == \
        sorted(i.series for i in instances)
    metadata = interop.our_client("self", "get", {"Uri": f"/studies/{study}/metadata"})
    assert metadata.status_code == 200, metadata.text
    assert len(metadata.json()) == len(instances)


def test_retrieve_and_stow_through_itself(interop: Interop) -> None:
    """Its own instances come back unchanged (already stored: kept as they are)."""
    instances = bundled_study() + generated_series(3)
    interop.stow_to_ours(instances)
    retrieved = interop.our_client("self", "retrieve", {
        "Resources": [{"Study": instances[0].study}, {"Study": instances[-1].study}]})
    assert retrieved.status_code == 200, retrieved.text
    assert retrieved.json()["ReceivedInstancesCount"] == str(len(instances))
    stored = interop.our_client("self", "stow", {"Resources": [instances[0].ids[1]]})
    assert stored.status_code == 200, stored.text
    assert stored.json()["InstancesCount"] == str(len(instances) - 3)
    for instance in instances:
        assert single_part(interop.our_file(instance)) == instance.data, instance.name


def test_jobs_through_itself(interop: Interop) -> None:
    instances = generated_series(4)
    interop.stow_to_ours(instances)
    for operation, body in (
            ("stow", {"Resources": [instances[0].ids[2]], "Asynchronous": True}),
            ("retrieve", {"Resources": [{"Study": instances[0].study}],
                          "Asynchronous": True}),
            ("wado", {"Uri": f"/studies/{instances[0].study}"})):
        answer = interop.our_client("self", operation, body)
        assert answer.status_code == 200, (operation, answer.text)
        job = interop.our_wait_job(answer.json()["ID"])
        assert job["State"] == "Success", (operation, job)


def test_concurrent_calls_through_itself(interop: Interop) -> None:
    """Three synchronous retrieves at once, each needing a second thread for its inner
    WADO-RS request (8 threads in all): none waits for another to finish."""
    studies = [generated_series(6, size=128) for _ in range(3)]
    interop.stow_to_ours([i for study in studies for i in study])

    def retrieve(study: list[Instance]) -> tuple[int, str]:
        answer = interop.our_client("self", "retrieve", {"Resources": [{"Study": study[0].study}]})
        return answer.status_code, answer.text

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(retrieve, studies))
    assert [status for status, _ in results] == [200, 200, 200], results


def test_delete_through_itself(interop: Interop) -> None:
    instances = generated_series(2)
    interop.stow_to_ours(instances)
    answer = interop.our_client("self", "delete", {
        "Level": "Series", "StudyInstanceUID": instances[0].study,
        "SeriesInstanceUID": instances[0].series})
    assert answer.status_code == 200, answer.text
    assert all(interop.our_file(i).status_code == 404 for i in instances)
