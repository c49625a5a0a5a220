"""The DICOMweb client app (``{root}app/client/index.html``, issue 6 scope 1) in chromium:
``local`` looks studies up on ``remote`` (another server of ours, ``HasDelete``), previews,
retrieves and deletes them; ``down`` (nothing listens there) gives a clear error."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api.data import ct, uid
from tests.browser.conftest import Site
from tests.browser.data import Study, stow, stow_files
from tests.conftest import dicom_bytes

APP = "dicom-web/app/client/index.html"
PAGED = 105  # more than one page of 100


# ------------------------------------------------------------------------------------------
# Helpers


def open_app(page: Any, server: str | None = "remote", app: str = APP) -> None:
    page.goto(app)
    expect(server_select(page)).not_to_have_text("")  # servers?expand answered
    if server:
        server_select(page).select_option(server)


def server_select(page: Any) -> Any:
    return page.get_by_label("Server", exact=True)


def search(page: Any, **fields: str) -> None:
    """Fill the lookup form (labels as keys: patient_name → "Patient name") and search."""
    page.get_by_role("button", name="Reset").click()
    for key, text in fields.items():
        label = {"patient_id": "Patient ID", "study_id": "Study ID"}.get(
            key, key.replace("_", " ").capitalize())
        page.get_by_label(label, exact=True).fill(text)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("study-count")).not_to_have_text(re.compile("Searching|^$"))


def study_rows(page: Any) -> Any:
    return page.locator("#studies tr")


def study_row(page: Any, text: str) -> Any:
    return study_rows(page).filter(has_text=text)


def series_rows(page: Any) -> Any:
    return page.locator("#series tr")


def qido(site: Site, server: Any, path: str) -> list[dict[str, Any]]:
    answer = site.get(server, path, headers={"Accept": "application/dicom+json"})
    assert answer.status_code in (200, 204), answer.text
    return answer.json() if answer.status_code == 200 and answer.content else []


@pytest.fixture(scope="module")
def paged(site: Site) -> Iterator[list[str]]:
    """PAGED tiny studies (one 8×8 instance each) on ``remote`` in one STOW request; their
    patient IDs."""
    tag = uuid.uuid4().hex[:6]
    ids, files = [], []
    for n in range(PAGED):
        patient_id = f"PG-{tag}-{n:03}"
        ds = ct(uid(), uid(), patient=f"PAGED^P{n:03}", patient_id=patient_id, rows=8,
                columns=8, StudyID=f"S{n:03}", date="20240102")
        ids.append(patient_id)
        files.append(dicom_bytes(ds))
    stow_files(site.remote, files)
    yield ids


# ------------------------------------------------------------------------------------------
# Servers and lookup


def test_server_picker_lists_the_servers(page: Any, site: Site) -> None:
    open_app(page, server=None)
    options = server_select(page).locator("option")
    expect(options).to_have_count(2)
    expect(options.filter(has_text="remote")).to_have_text(f"remote — {site.remote.root}/")
    expect(options.filter(has_text="down")).to_contain_text("down — http://127.0.0.1:")
    server_select(page).select_option("remote")
    expect(page.locator("#server-info")).to_contain_text("deleting remote studies is allowed")
    server_select(page).select_option("down")
    expect(page.locator("#server-info")).not_to_contain_text("deleting")
    # The header leads back to the local browser (the server root) and its jobs page.
    expect(page.get_by_role("link", name="Local studies")).to_have_attribute("href", site.base)
    expect(page.get_by_role("link", name="Jobs")).to_have_attribute("href", site.base + "#/jobs")


def test_no_server_configured(page: Any, site: Site) -> None:
    page.route("**/servers?expand", lambda route: route.fulfill(
        status=200, content_type="application/json", body="{}"))
    page.goto(APP)
    expect(page.get_by_text("No DICOMweb server is configured")).to_be_visible()
    expect(page.get_by_text("DicomWeb.Servers")).to_be_visible()
    expect(page.get_by_role("button", name="Search")).to_be_disabled()


def test_lookup_by_each_criterion(page: Any, site: Site, paged: list[str]) -> None:
    gamma, delta = site.remote_studies
    open_app(page)
    cases = [({"patient_name": "gamma"}, gamma),  # fuzzy: word prefix, any case
             ({"patient_id": gamma.patient_id}, gamma),
             ({"accession_number": delta.accession}, delta),
             ({"study_date_from": "2023-03-01", "study_date_to": "2023-03-31"}, delta)]
    for fields, expected in cases:
        search(page, **fields)
        expect(study_rows(page)).to_have_count(1)
        expect(study_rows(page)).to_contain_text(expected.patient_id)
        expect(study_rows(page)).to_contain_text(f"Study of {expected.patient_name}")
        expect(page.get_by_test_id("study-count")).to_have_text("1 study on remote")
    search(page, study_id="S042")
    expect(study_rows(page)).to_have_count(1)
    expect(study_rows(page)).to_contain_text(paged[42])
    search(page, patient_name="NOBODY-AT-ALL")
    expect(page.get_by_test_id("study-count")).to_have_text("No study matches.")
    # Reset empties the form and the results.
    page.get_by_role("button", name="Reset").click()
    expect(page.get_by_label("Patient name")).to_have_value("")
    expect(page.locator("#studies-panel")).to_be_hidden()


def test_lookup_arguments(page: Any, site: Site) -> None:
    """The QIDO-RS arguments the form becomes (remote.js, run in the page)."""
    open_app(page, server=None)
    built = page.evaluate("""async () => {
        const m = await import("./remote.js");
        return {
            ranges: [m.dateRange("2023-03-01", "2023-03-31"), m.dateRange("2023-03-01", ""),
                     m.dateRange("", "2023-03-31"), m.dateRange("2023-03-15", "2023-03-15"),
                     m.dateRange("", "")],
            args: m.studyArguments({patientName: " DOE* ", patientId: "", studyId: "7",
                                    dateFrom: "2024-01-02"}, 200, 100),
        };
    }""")
    assert built["ranges"] == ["20230301-20230331", "20230301-", "-20230331", "20230315", ""]
    assert built["args"] == {"fuzzymatching": "true", "limit": "101", "offset": "200",
                             "includefield": "00081030", "00100010": "DOE*",
                             "00200010": "7", "00080020": "20240102-"}


def test_paging_beyond_100_studies(page: Any, site: Site, paged: list[str]) -> None:
    open_app(page)
    search(page, patient_name="PAGED")
    expect(study_rows(page)).to_have_count(100)
    expect(page.get_by_test_id("study-count")).to_contain_text("Studies 1–100 (more")
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    first = set(study_rows(page).locator("td:nth-child(2)").all_inner_texts())
    page.get_by_role("button", name="Next").click()
    expect(study_rows(page)).to_have_count(PAGED - 100)
    expect(page.get_by_test_id("study-count")).to_have_text(
        f"Studies 101–{PAGED} on remote")
    expect(page.get_by_test_id("page-label")).to_have_text("Page 2")
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    second = set(study_rows(page).locator("td:nth-child(2)").all_inner_texts())
    assert first | second == set(paged) and not first & second
    page.get_by_role("button", name="Previous").click()
    expect(study_rows(page)).to_have_count(100)


# ------------------------------------------------------------------------------------------
# Series, preview, tags


def test_open_series_preview_and_tags(page: Any, site: Site) -> None:
    gamma = site.remote_studies[0]
    open_app(page)
    search(page, patient_id=gamma.patient_id)
    study_row(page, gamma.patient_id).get_by_role("button", name="Open series").click()
    expect(series_rows(page)).to_have_count(2)
    expect(page.locator("#series-title")).to_contain_text("Series of REMOTE, GAMMA")
    first = series_rows(page).filter(has_text="Series 1")
    expect(first).to_contain_text("CT")
    expect(first.locator("td").nth(3)).to_have_text("4")

    first.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    expect(preview).to_contain_text("instance 2 of 4")  # the middle one, by InstanceNumber
    image = preview.get_by_role("img", name="Preview of series 1 (Series 1)")
    assert image.get_attribute("src").startswith("blob:")
    assert distinct_pixels(page, "#preview-image") > 1, "the preview is a blank image"

    study_row(page, gamma.patient_id).get_by_role("button", name="Tags").click()
    dialog = page.get_by_role("dialog", name="Study tags")
    expect(dialog.locator("tr").filter(has_text="PatientName")).to_contain_text("0010,0010")
    expect(dialog.locator("tr").filter(has_text="PatientName")).to_contain_text("REMOTE^GAMMA")
    dialog.get_by_role("button", name="Close").first.click()
    expect(dialog).to_be_hidden()
    first.get_by_role("button", name="Tags").click()
    expect(page.get_by_role("dialog", name="Series tags")).to_contain_text("SeriesDescription")


def distinct_pixels(page: Any, selector: str) -> int:
    """How many different RGBA values the image shows once drawn on a canvas."""
    count: int = page.evaluate(
        """(selector) => {
            const image = document.querySelector(selector);
            const canvas = document.createElement("canvas");
            canvas.width = image.naturalWidth;
            canvas.height = image.naturalHeight;
            const context = canvas.getContext("2d");
            context.drawImage(image, 0, 0);
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            const seen = new Set();
            for (let i = 0; i < data.length; i += 4) {
                seen.add(data.slice(i, i + 4).join(","));
            }
            return seen.size;
        }""", selector)
    return count


def test_preview_failure_is_explained(page: Any, site: Site) -> None:
    """An instance without pixels: the remote cannot render it."""
    study, series = uid(), uid()
    ds = ct(study, series, patient="REMOTE^NOPIXEL", patient_id=f"NP-{uuid.uuid4().hex[:6]}")
    del ds.PixelData
    stow_files(site.remote, [dicom_bytes(ds)])
    open_app(page)
    search(page, patient_id=ds.PatientID)
    study_row(page, ds.PatientID).get_by_role("button", name="Open series").click()
    series_rows(page).get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "The remote server cannot produce a preview of series 1 (Axial)")
    expect(page.get_by_test_id("preview")).to_be_hidden()


# ------------------------------------------------------------------------------------------
# Retrieve


def test_retrieve_study_shows_progress_then_the_study_is_local(page: Any, site: Site) -> None:
    delta = site.remote_studies[1]
    assert qido(site, site.local, f"/studies?StudyInstanceUID={delta.uid}") == []
    open_app(page)
    search(page, patient_id=delta.patient_id)
    study_row(page, delta.patient_id).get_by_role("button", name="Retrieve").click()
    job = page.get_by_test_id("job").filter(has_text="REMOTE, DELTA")
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(job).to_contain_text("Success")
    expect(job).to_contain_text(f"{delta.instances} instances retrieved")
    link = job.get_by_role("link", name="Open in the local browser")
    expect(link).to_have_attribute("href", f"{site.base}#/studies/{delta.uid}")
    found = qido(site, site.local, f"/studies?StudyInstanceUID={delta.uid}")
    assert len(found) == 1 and found[0]["00201208"]["Value"] == [delta.instances]


def test_retrieve_series(page: Any, site: Site) -> None:
    gamma = site.remote_studies[0]
    wanted = list(gamma.series)[1]
    open_app(page)
    search(page, patient_id=gamma.patient_id)
    study_row(page, gamma.patient_id).get_by_role("button", name="Open series").click()
    series_rows(page).filter(has_text="Series 2").get_by_role("button", name="Retrieve").click()
    job = page.get_by_test_id("job").filter(has_text="series 2")
    expect(job).to_contain_text("4 instances retrieved")
    expect(job.get_by_role("link", name="Open in the local browser")).to_have_attribute(
        "href", f"{site.base}#/studies/{gamma.uid}/series/{wanted}")
    local = qido(site, site.local, f"/studies/{gamma.uid}/series")
    assert [s["0020000E"]["Value"][0] for s in local] == [wanted]


# ------------------------------------------------------------------------------------------
# Delete and errors


def test_delete_remote_series_then_study(page: Any, site: Site) -> None:
    doomed = stow(site.remote, Study.make("REMOTE^EPSILON", "RE5", series=2, instances=1))
    second = list(doomed.series)[1]
    open_app(page)
    search(page, patient_id=doomed.patient_id)
    study_row(page, doomed.patient_id).get_by_role("button", name="Open series").click()
    expect(series_rows(page)).to_have_count(2)

    series_rows(page).filter(has_text="Series 1").get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete a remote series")
    expect(confirm).to_contain_text("This cannot be undone")
    confirm.get_by_role("button", name="Delete").click()
    expect(series_rows(page)).to_have_count(1)
    expect(page.get_by_role("status").filter(has_text="was deleted")).to_be_visible()
    remaining = qido(site, site.remote, f"/studies/{doomed.uid}/series")
    assert [s["0020000E"]["Value"][0] for s in remaining] == [second]

    study_row(page, doomed.patient_id).get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete a remote study").get_by_role(
        "button", name="Cancel").click()
    assert qido(site, site.remote, f"/studies?StudyInstanceUID={doomed.uid}") != []
    study_row(page, doomed.patient_id).get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete a remote study").get_by_role(
        "button", name="Delete").click()
    expect(page.get_by_test_id("study-count")).to_have_text("No study matches.")
    assert qido(site, site.remote, f"/studies?StudyInstanceUID={doomed.uid}") == []


def test_unreachable_server_is_explained(page: Any, site: Site) -> None:
    open_app(page, server="down")
    search(page, patient_name="ANY")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text('The lookup failed: The remote server "down" is unreachable')
    expect(alert).to_contain_text('Cannot reach the DICOMweb server "down"')
    expect(alert).to_contain_text("HTTP 502")
    expect(page.locator("#studies-panel")).to_be_hidden()


def test_no_delete_button_without_has_delete(page: Any, site: Site) -> None:
    """The page hides Delete for a server whose HasDelete is "0"."""
    page.route("**/servers?expand", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"remote": {"Url": site.remote.root + "/", "HasDelete": "0"}})))
    gamma = site.remote_studies[0]
    open_app(page)
    search(page, patient_id=gamma.patient_id)
    row = study_row(page, gamma.patient_id)
    expect(row.get_by_role("button", name="Retrieve")).to_be_visible()
    expect(row.get_by_role("button", name="Delete")).to_have_count(0)

