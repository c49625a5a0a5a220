"""The DICOMweb client app in another deployment: under ``DicomWeb.Root`` ``/pacs/dicomweb/``
with authentication on (issue 6 scope 3). The page uses relative URLs only, so it must work
there unchanged, with the browser's credentials, and be refused without them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from bench.orthanc import start_orthanc
from tests.browser.conftest import Site, start_site
from tests.browser.data import Study
from tests.browser.test_client_app import (
    distinct_pixels,
    open_app,
    qido,
    search,
    series_rows,
    study_row,
)
from tests.interop.conftest import require_orthanc
from tests.s3server import free_port

CREDENTIALS = ("bob", "pw-" + uuid.uuid4().hex[:8])
APP = "pacs/dicomweb/app/client/index.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``local`` under /pacs/dicomweb/ with authentication; it also knows itself as
    ``self`` without credentials (a remote that refuses us)."""
    user, password = CREDENTIALS
    started = start_site(tmp_path_factory.mktemp("deployment"),
                         local_extra={"DicomWeb": {"Root": "/pacs/dicomweb/"},
                                      "AuthenticationEnabled": True,
                                      "RegisteredUsers": {user: password}},
                         credentials=CREDENTIALS)
    try:
        answer = requests.put(started.local.root + "/servers/self",
                              json={"Url": started.local.root + "/"}, auth=CREDENTIALS,
                              timeout=30)
        assert answer.status_code == 200, answer.text
        yield started
    finally:
        started.local.stop()
        started.remote.stop()


def test_lookup_preview_and_retrieve_with_authentication(page: Any, site: Site) -> None:
    gamma = site.remote_studies[0]
    open_app(page, app=APP)
    expect(page.get_by_role("link", name="Local studies")).to_have_attribute("href", site.base)
    search(page, patient_id=gamma.patient_id)
    row = study_row(page, gamma.patient_id)
    row.get_by_role("button", name="Open series").click()
    series_rows(page).filter(has_text="Series 2").get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview")).to_contain_text("instance 2 of 4")
    assert distinct_pixels(page, "#preview-image") > 1, "the preview is a blank image"

    row.get_by_role("button", name="Retrieve").click()
    job = page.get_by_test_id("job")
    expect(job).to_contain_text(f"{gamma.instances} instances retrieved")
    expect(job.get_by_role("link", name="Open in the local browser")).to_have_attribute(
        "href", f"{site.base}#/studies/{gamma.uid}")
    assert len(qido(site, site.local, f"/studies?StudyInstanceUID={gamma.uid}")) == 1


def test_refused_without_credentials(browser: Any, site: Site) -> None:
    context = browser.new_context(base_url=site.base)
    try:
        tab = context.new_page()
        # Headless chromium cannot ask for a password: the 401 challenge ends navigation.
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            tab.goto(APP)
        expect(tab.get_by_text("Remote servers")).to_have_count(0)
    finally:
        context.close()
    for path in ("/app/client/index.html", "/app/client/client.js", "/servers?expand"):
        assert requests.get(site.local.root + path, timeout=30).status_code == 401, path


def test_remote_refusing_our_credentials_is_explained(page: Any, site: Site) -> None:
    open_app(page, server="self", app=APP)
    search(page, patient_name="ANY")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text('The remote server "self" refused our credentials')
    expect(alert).to_contain_text("check the Username/Password")


# ------------------------------------------------------------------------------------------
# Real Orthanc (Debian's orthanc + orthanc-dicomweb) as the remote


@pytest.fixture(scope="module")
def orthanc(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    """Orthanc known to ``local`` as ``orthanc`` (HasDelete), holding one study."""
    workdir = tmp_path_factory.mktemp("orthanc")
    require_orthanc(workdir)
    process = start_orthanc(free_port(), workdir / "orthanc")
    try:
        study = Study.make("ORTHANC^ZETA", "OZ6", series=2, instances=3)
        for files in study.series.values():
            for _, data in files:
                answer = requests.post(process.url + "/instances", data=data, timeout=30)
                assert answer.status_code == 200, answer.text
        answer = requests.put(site.local.root + "/servers/orthanc", auth=CREDENTIALS,
                              json={"Url": process.dicomweb_url + "/", "HasDelete": True},
                              timeout=30)
        assert answer.status_code == 200, answer.text
        yield study
    finally:
        process.stop()


def test_orthanc_as_the_remote(page: Any, site: Site, orthanc: Study) -> None:
    """Orthanc's QIDO-RS (includefield list, fuzzymatching, limit/offset), /rendered and
    WADO-RS serve the app as well as ours."""
    open_app(page, server="orthanc", app=APP)
    # Not a wildcard: Orthanc 1.10 matches nothing for a percent-encoded "*" (%2A), which
    # every client that encodes the query sends (ours, and Orthanc's own).
    search(page, patient_id=orthanc.patient_id)
    row = study_row(page, orthanc.patient_id)
    expect(row).to_contain_text("Study of ORTHANC^ZETA")
    row.get_by_role("button", name="Open series").click()
    expect(series_rows(page)).to_have_count(2)
    first = series_rows(page).filter(has_text="Series 1")
    expect(first.locator("td").nth(3)).to_have_text("3")
    first.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preview")).to_contain_text("instance 2 of 3")
    assert distinct_pixels(page, "#preview-image") > 1, "the preview is a blank image"

    first.get_by_role("button", name="Retrieve").click()
    expect(page.get_by_test_id("job")).to_contain_text("3 instances retrieved")
    local = qido(site, site.local, f"/studies/{orthanc.uid}/series")
    assert [s["0020000E"]["Value"][0] for s in local] == [list(orthanc.series)[0]]

    # Orthanc's DICOMweb server has no DELETE (its HasDelete is for other servers): the
    # page says what the remote answered and keeps the series.
    series_rows(page).filter(has_text="Series 2").get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete a remote series").get_by_role(
        "button", name="Delete").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(
        'The series cannot be deleted: The remote server "orthanc" answered an error')
    expect(alert).to_contain_text("answered HTTP 405")
    expect(series_rows(page)).to_have_count(2)
