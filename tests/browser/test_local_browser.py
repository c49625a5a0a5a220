"""The local study browser at the server root (issue 6, scope 2), driven in chromium:
search and paging, series and instance previews, send to a DICOMweb server (a STOW job),
delete, upload, jobs."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import Site
from tests.browser.data import Study, stow

PAGED = 30  # studies named PAGED^...: two pages of 25


@pytest.fixture(scope="module")
def paged(site: Site) -> list[Study]:
    """Enough tiny studies to need a second page."""
    return [stow(site.local, Study.make(f"PAGED^P{n:02d}", f"PG{n}", instances=1))
            for n in range(PAGED)]


def search(page: Any, name: str) -> None:
    page.get_by_label("Patient name").fill(name)
    page.get_by_role("button", name="Search").click()


def rows(page: Any) -> Any:
    return page.locator("tr[data-study]")


PIXELS_JS = """img => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) seen.add(data[i]);
  return {width: img.naturalWidth, height: img.naturalHeight, values: seen.size};
}"""


def assert_real_image(image: Any) -> None:
    """Loaded (naturalWidth > 0) and not blank: more than a handful of grey levels."""
    image.wait_for()
    image.page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                 arg=image.element_handle())
    pixels = image.evaluate(PIXELS_JS)
    assert pixels["width"] > 0 and pixels["height"] > 0
    assert pixels["values"] > 4, pixels


def test_search_by_patient_name(page: Any, site: Site) -> None:
    alpha, beta = site.local_studies
    page.goto("")
    expect(page.get_by_role("link", name="Studies")).to_have_attribute("aria-current", "page")
    search(page, "local^alp")  # fuzzy: each word a prefix, any case
    expect(rows(page)).to_have_count(1)
    row = rows(page).first
    expect(row).to_have_attribute("data-study", alpha.uid)
    expect(row).to_contain_text(alpha.patient_id)
    expect(row).to_contain_text("2 / 6")  # series / instances
    expect(page.locator(f'tr[data-study="{beta.uid}"]')).to_have_count(0)
    search(page, "LOCAL*")  # wildcards work too
    expect(rows(page)).to_have_count(2)
    page.get_by_label("Patient ID").fill(beta.patient_id)
    page.get_by_role("button", name="Search").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-study", beta.uid)
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Accession number").fill(alpha.accession)
    page.get_by_role("button", name="Search").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-study", alpha.uid)
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Study date from").fill("2024-01-01")
    page.get_by_label("Study date to").fill("2024-01-31")
    page.get_by_label("Modality").select_option("CT")
    search(page, "local")
    expect(rows(page)).to_have_count(2)
    page.get_by_label("Study date from").fill("2024-02-01")
    page.get_by_label("Study date to").fill("")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("No study matches")).to_be_visible()
    page.get_by_role("button", name="Clear").click()
    search(page, "nobody")
    expect(page.get_by_text("No study matches")).to_be_visible()


def test_paging(page: Any, site: Site, paged: list[Study]) -> None:
    page.goto("")
    search(page, "paged")
    showing = page.get_by_test_id("showing")
    expect(showing).to_have_text("Showing 1–25")
    expect(rows(page)).to_have_count(25)
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    first_page = set(rows(page).evaluate_all("rs => rs.map(r => r.dataset.study)"))
    page.get_by_role("button", name="Next").click()
    expect(showing).to_have_text(f"Showing 26–{PAGED}")
    expect(rows(page)).to_have_count(PAGED - 25)
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    second_page = set(rows(page).evaluate_all("rs => rs.map(r => r.dataset.study)"))
    assert not first_page & second_page
    assert first_page | second_page == {study.uid for study in paged}
    page.get_by_role("button", name="Previous").click()
    expect(showing).to_have_text("Showing 1–25")


def test_series_thumbnails_instances_and_preview(page: Any, site: Site) -> None:
    alpha = site.local_studies[0]
    page.goto("")
    page.get_by_role("link", name="LOCAL, ALPHA").click()
    expect(page).to_have_url(re.compile(f"#/studies/{re.escape(alpha.uid)}$"))
    facts = page.locator("dl.facts")
    expect(facts.locator("dt", has_text="Patient ID").locator("+ dd")).to_have_text(
        alpha.patient_id)
    expect(facts).to_contain_text("2 / 6")
    series_rows = page.locator("tr[data-series]")
    expect(series_rows).to_have_count(2)
    for n in range(2):
        assert_real_image(series_rows.nth(n).locator("img.thumb"))
    expect(series_rows.first).to_contain_text("Series 1")
    series_rows.first.get_by_role("link", name="Open").click()
    instances = page.get_by_test_id("instances").locator("figure.thumb")
    expect(instances).to_have_count(3)
    assert_real_image(instances.first.locator("img"))
    expect(instances.first).to_contain_text("#1")
    instances.nth(1).click()
    dialog = page.get_by_role("dialog", name="Instance 2")
    assert_real_image(dialog.locator("img.preview"))
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)
    # The tags viewer lists the study's attributes from QIDO-RS includefield=all.
    page.get_by_role("button", name="Show tags").click()
    tags = page.get_by_role("dialog", name="Attributes of the study")
    expect(tags.locator("tr", has_text="PatientName")).to_contain_text("LOCAL^ALPHA")
    expect(tags.locator("tr", has_text="StudyInstanceUID")).to_contain_text(alpha.uid)


def send(page: Any, server: str) -> None:
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("DICOMweb server").select_option(server)
    dialog.get_by_role("button", name="Send", exact=True).click()


def test_send_study_to_remote_then_jobs(page: Any, site: Site) -> None:
    alpha = site.local_studies[0]
    before = site.get(site.remote, f"/studies?StudyInstanceUID={alpha.uid}")
    assert before.status_code == 204 or before.json() == []  # not there yet
    page.goto(f"#/studies/{alpha.uid}")
    page.get_by_role("button", name="Send to DICOMweb server…").click()
    send(page, "remote")
    transfer = page.get_by_test_id("transfer").first
    expect(transfer).to_have_attribute("data-state", "Success")
    expect(transfer.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(transfer).to_contain_text("Success")
    expect(page.locator(".message.success")).to_contain_text(
        "Sent the study of LOCAL, ALPHA (2024-01-02) to remote: 6 instance(s).")
    found = site.get(site.remote, f"/studies?StudyInstanceUID={alpha.uid}").json()
    assert [study["00201208"]["Value"][0] for study in found] == [6]
    # The jobs view lists the send job, finished.
    page.get_by_role("link", name="Jobs").click()
    job = page.locator("tr[data-job]", has_text="DicomWebStowClient").first
    expect(job).to_have_attribute("data-state", "Success")
    expect(job).to_contain_text("to remote, 6 instance(s)")
    expect(job.get_by_role("button")).to_have_count(0)  # nothing to do on a finished job


def test_send_to_unreachable_server_shows_the_error(page: Any, site: Site) -> None:
    beta = site.local_studies[1]
    page.goto("")
    page.locator(f'tr[data-study="{beta.uid}"]').get_by_role("button", name="Send…").click()
    send(page, "down")
    expect(page.get_by_test_id("transfer").first).to_have_attribute("data-state", "Failure")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Sending the study of LOCAL, BETA (2024-01-02) to down failed")
    expect(alert).to_contain_text('"down"')  # the details name the unreachable server
    # The jobs view shows the failure and offers to resubmit.
    page.goto("#/jobs")
    job = page.locator('tr[data-job][data-state="Failure"]').first
    expect(job).to_contain_text("DicomWebStowClient")
    expect(job.get_by_role("button", name="Resubmit")).to_be_visible()


def test_delete_study(page: Any, site: Site) -> None:
    doomed = stow(site.local, Study.make("DOOMED^STUDY", "DS1", instances=1))
    page.goto("")
    search(page, "doomed")
    expect(rows(page)).to_have_count(1)
    rows(page).first.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("cannot be undone")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No study matches")).to_be_visible()
    expect(page.locator(".message.success")).to_contain_text("Deleted the study of DOOMED, STUDY")
    answer = site.get(site.local, f"/studies?StudyInstanceUID={doomed.uid}")
    assert answer.status_code == 204 or answer.json() == []


def test_upload_two_files(page: Any, site: Site) -> None:
    study = Study.make("UPLOADED^TWO", "UP2", instances=2)
    files = [{"name": f"image{n}.dcm", "mimeType": "application/dicom", "buffer": data}
             for n, (_, data) in enumerate(next(iter(study.series.values())))]
    page.goto("")
    page.get_by_role("link", name="Upload").click()
    page.locator("#upload-files").set_input_files(files)
    outcome = page.get_by_test_id("upload-outcome")
    expect(outcome).to_contain_text("Stored 2 of 2 file(s).")
    found = site.get(site.local, f"/studies?StudyInstanceUID={study.uid}").json()
    assert found[0]["00201208"]["Value"] == [2]
    outcome.get_by_role("link", name=study.uid).click()
    expect(page.locator("#study-title")).to_have_text("Study of UPLOADED^TWO")
    expect(page.locator("tr[data-series]")).to_have_count(1)


def test_upload_non_dicom_file_is_reported(page: Any, site: Site) -> None:
    page.goto("#/upload")
    page.locator("#upload-files").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a DICOM file"})
    outcome = page.get_by_test_id("upload-outcome")
    expect(outcome.locator(".message.error")).to_contain_text("1 of 1 file(s) could not be stored")
    expect(outcome).to_contain_text("not a DICOM file?")


def test_upload_a_zip_archive_beside_a_dicom_file(page: Any, site: Site) -> None:
    """A ZIP (recognised by its signature, whatever its name) goes whole to POST /instances;
    the DICOM file chosen with it goes by STOW-RS: one outcome each."""
    loose, zipped = Study.make("LOOSE^ONE", "LO1", instances=1), Study.make("ZIPPED^TWO", "ZP2")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, (_, data) in enumerate(next(iter(zipped.series.values()))):
            archive.writestr(f"EXPORT/SERIES/IM{n}", data)
        archive.writestr("EXPORT/README.txt", "skipped: not DICOM")
    page.goto("#/upload")
    page.locator("#upload-files").set_input_files([
        {"name": "loose.dcm", "mimeType": "application/dicom",
         "buffer": next(iter(loose.series.values()))[0][1]},
        {"name": "export", "mimeType": "application/octet-stream", "buffer": out.getvalue()}])
    outcomes = page.get_by_test_id("upload-outcome")
    expect(outcomes).to_have_count(2)
    expect(outcomes.nth(0)).to_contain_text("Stored 1 of 1 file(s).")
    expect(outcomes.nth(1)).to_contain_text("Stored 2 instance(s) of 1 study(ies) from export.")
    for study in (loose, zipped):
        found = site.get(site.local, f"/studies?StudyInstanceUID={study.uid}").json()
        assert found[0]["00201208"]["Value"] == [study.instances]
    page.locator("#upload-files").set_input_files(
        {"name": "again.zip", "mimeType": "application/zip", "buffer": out.getvalue()})
    expect(outcomes).to_have_count(1)
    expect(outcomes.locator(".message.info")).to_contain_text("2 of them were already stored")


def test_jobs_view_controls_a_running_job(page: Any, site: Site, paged: list[Study]) -> None:
    """Pause, cancel and resubmit from the jobs view, which refreshes by itself."""
    started = requests.post(  # Debug: 100 ms per instance, time enough to act on it
        site.local.root + "/servers/remote/stow",
        json={"Resources": [study.orthanc_id for study in paged], "Asynchronous": True,
              "Debug": True}, auth=site.credentials, timeout=30)
    assert started.status_code == 200, started.text
    page.goto("#/jobs")
    job = page.locator(f'tr[data-job="{started.json()["ID"]}"]')
    expect(job).to_have_attribute("data-state", re.compile("Pending|Running"))
    job.get_by_role("button", name="Pause").click()
    expect(job).to_have_attribute("data-state", "Paused")
    expect(job.get_by_role("button", name="Resume")).to_be_visible()
    job.get_by_role("button", name="Cancel").click()
    expect(job).to_have_attribute("data-state", "Failure")
    expect(job).to_contain_text("canceled")
    job.get_by_role("button", name="Resubmit").click()
    expect(job).to_have_attribute("data-state", "Success", timeout=30_000)  # no reload
    expect(job).to_contain_text(f"to remote, {PAGED} instance(s)")
