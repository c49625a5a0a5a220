"""Browser tests: Playwright drives Debian's chromium (``/usr/bin/chromium``, never a
downloaded browser) against live gunicorn servers.

Two servers per module: ``local`` (the one whose pages are tested) knows ``remote`` (another
of ours, ``HasDelete``) and ``down`` (a port nothing listens on) as DICOMweb servers. Both are
seeded with studies (``tests/browser/data.py``). Every test leaves a screenshot of its page in
``test-artifacts/browser/`` (``$TEST_ARTIFACTS`` overrides the folder), passed or failed.

Under CI (``CI`` set) a missing chromium or Playwright fails the tests; elsewhere they skip
with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.data import Study, stow
from tests.e2e.server import Server
from tests.s3server import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))
TIMEOUT_MS = 20_000


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required under CI: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session."""
    if not Path(CHROMIUM).exists():
        _missing(f"no chromium at {CHROMIUM} (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Site:
    """The servers of a browser test module and what they hold."""

    local: Server
    remote: Server
    local_studies: list[Study] = field(default_factory=list)
    remote_studies: list[Study] = field(default_factory=list)
    credentials: tuple[str, str] | None = None

    @property
    def base(self) -> str:
        """The server root URL of ``local`` (its browser page), with a trailing slash (from
        the port: ``local.root`` may be under another DicomWeb Root)."""
        return f"http://127.0.0.1:{self.local.port}/"

    def get(self, server: Server, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(server.root + path, auth=self.credentials, timeout=30, **kwargs)


def start_site(workdir: Path, local_extra: dict[str, Any] | None = None,
               credentials: tuple[str, str] | None = None) -> Site:
    """Start ``remote`` then ``local`` (knowing ``remote`` and ``down``); seed both."""
    for name in ("remote", "local"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    remote = Server(workdir / "remote", workers=1, threads=4)
    remote.start()
    servers = {"remote": {"Url": remote.root + "/", "HasDelete": True},
               "down": [f"http://127.0.0.1:{free_port()}/dicom-web/"]}
    extra: dict[str, Any] = {"DicomWeb": {"Servers": servers}, "HttpTimeout": 10}
    for key, value in (local_extra or {}).items():
        if key == "DicomWeb":
            extra["DicomWeb"] = {**extra["DicomWeb"], **value}
        else:
            extra[key] = value
    local = Server(workdir / "local", workers=2, threads=4, extra=extra)
    if extra["DicomWeb"].get("Root"):
        # Server assumes /dicom-web; its start-up poll takes any answer (a 401 too) as "up".
        local.root = f"http://127.0.0.1:{local.port}/{extra['DicomWeb']['Root'].strip('/')}"
    try:
        local.start()
    except BaseException:
        remote.stop()
        raise
    site = Site(local, remote, credentials=credentials)
    site.local_studies = [stow(local, Study.make("LOCAL^ALPHA", "LA1", series=2, instances=3),
                               credentials),
                          stow(local, Study.make("LOCAL^BETA", "LB2", series=1, instances=2),
                               credentials)]
    site.remote_studies = [stow(remote, Study.make("REMOTE^GAMMA", "RG3", series=2,
                                                   instances=4)),
                           stow(remote, Study.make("REMOTE^DELTA", "RD4", series=1,
                                                   instances=2, date="20230315"))]
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    started = start_site(tmp_path_factory.mktemp("browser"))
    yield started
    started.local.stop()
    started.remote.stop()


@pytest.fixture
def page(browser: Any, site: Site, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context on ``local`` (credentials when the site has them); a
    screenshot of the page is saved when the test ends."""
    options: dict[str, Any] = {"base_url": site.base, "viewport": {"width": 1280, "height": 900}}
    if site.credentials:
        user, password = site.credentials
        options["http_credentials"] = {"username": user, "password": password}
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    ARTIFACTS.joinpath("browser").mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    try:
        tab.screenshot(path=str(ARTIFACTS / "browser" / f"{name}.png"), full_page=True)
    finally:
        context.close()
    # An uncaught JavaScript error fails the test that caused it.
    assert not errors, f"JavaScript errors on the page: {errors}"
