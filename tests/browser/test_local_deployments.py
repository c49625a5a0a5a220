"""The local study browser in another deployment shape: DICOMweb under ``/pacs/dicomweb/``
and HTTP Basic authentication on (issue 6, scope 3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.browser.conftest import Site, start_site
from tests.browser.test_local_browser import assert_real_image, rows, search, send

CREDENTIALS = ("alice", "through-the-looking-glass")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    started = start_site(
        tmp_path_factory.mktemp("deployment"),
        local_extra={"DicomWeb": {"Root": "/pacs/dicomweb/"}, "AuthenticationEnabled": True,
                     "RegisteredUsers": {CREDENTIALS[0]: CREDENTIALS[1]}},
        credentials=CREDENTIALS)
    yield started
    started.local.stop()
    started.remote.stop()


def test_without_credentials_the_page_is_refused(browser: Any, site: Site) -> None:
    answer = requests.get(site.base, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(site.base + "app/browser/browser.js", timeout=10).status_code == 401
    # In chromium, a 401 challenge nobody answers ends the navigation with
    # ERR_INVALID_AUTH_CREDENTIALS; wrong credentials get the 401 page.
    context = browser.new_context()
    try:
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            context.new_page().goto(site.base)
    finally:
        context.close()
    context = browser.new_context(http_credentials={"username": "alice", "password": "wrong"})
    try:
        tab = context.new_page()
        response = tab.goto(site.base)
        assert response is not None and response.status == 401
        expect(tab.get_by_text("Local studies")).to_have_count(0)
    finally:
        context.close()


def test_page_works_under_another_root_with_authentication(page: Any, site: Site) -> None:
    alpha = site.local_studies[0]
    page.goto("")
    expect(page.locator('meta[name="dicomweb-root"]')).to_have_attribute(
        "content", "pacs/dicomweb/")
    client = page.get_by_role("link", name="DICOMweb client")
    expect(client).to_have_attribute("href", "pacs/dicomweb/app/client/index.html")
    assert requests.get(site.base + "pacs/dicomweb/app/client/index.html", auth=CREDENTIALS,
                        timeout=10).status_code == 200
    search(page, "local alpha")
    expect(rows(page)).to_have_count(1)
    page.get_by_role("link", name="LOCAL, ALPHA").click()
    assert_real_image(page.locator("tr[data-series] img.thumb").first)
    page.get_by_role("button", name="Send to DICOMweb server…").click()
    send(page, "remote")
    expect(page.get_by_test_id("transfer").first).to_have_attribute("data-state", "Success")
    found = site.get(site.remote, f"/studies?StudyInstanceUID={alpha.uid}").json()
    assert len(found) == 1
    # The local QIDO-RS answers under the configured Root only.
    assert site.get(site.local, f"/studies?StudyInstanceUID={alpha.uid}").json()
    page.get_by_role("link", name="Jobs").click()
    expect(page.locator("tr[data-job]").first).to_have_attribute("data-state", "Success")
