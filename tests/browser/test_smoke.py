"""The pages load in chromium, with their scripts, under the default Root."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import Site


def test_local_browser_page_loads(page: Any, site: Site) -> None:
    page.goto("")
    page.get_by_text("Local studies").wait_for()


def test_client_app_page_loads(page: Any, site: Site) -> None:
    page.goto("dicom-web/app/client/index.html")
    page.get_by_text("Remote servers").wait_for()
