"""The web pages' HTTP side (app/web.py): the pages, their files, the Root written into
the local browser page, paths that would leave the web folder."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from app import create_app
from tests.conftest import make_settings

WEB = Path(__file__).resolve().parents[2] / "app" / "web"


def test_local_browser_page_knows_the_dicomweb_root(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert '<meta name="dicomweb-root" content="dicom-web/">' in text
    assert '"dicom-web/app/client/index.html"' in text
    assert "{{" not in text


def test_another_root_is_written_escaped(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, DicomWeb={"Root": '/a"b<c>/'}))
    text = app.test_client().get("/").get_data(as_text=True)
    app.extensions["dicomweb"].index.close()
    assert '<meta name="dicomweb-root" content="a&quot;b&lt;c&gt;/">' in text


def test_page_files_are_served_with_their_types(client: FlaskClient) -> None:
    for url, mimetype, source in (
            ("/app/browser/browser.js", "text/javascript", "browser/browser.js"),
            ("/app/common/style.css", "text/css", "common/style.css"),
            ("/dicom-web/app/client/index.html", "text/html", "client/index.html"),
            ("/dicom-web/app/client/client.js", "text/javascript", "client/client.js"),
            ("/dicom-web/app/common/common.js", "text/javascript", "common/common.js")):
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert answer.mimetype == mimetype, url
        assert answer.get_data() == (WEB / source).read_bytes(), url
        assert answer.cache_control.max_age == 60


def test_paths_outside_the_web_folders_are_not_served(client: FlaskClient) -> None:
    for url in ("/app/common/../../web.py", "/app/common/%2e%2e/%2e%2e/web.py",
                "/app/client/client.js",  # the client app lives under the DICOMweb Root
                "/dicom-web/app/browser/browser.js", "/app/settings/x", "/app/common/nope.js"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert answer.is_json, url
