"""The web pages (issue 6): the local study browser at the server root and the DICOMweb
client app at ``{root}app/client/index.html`` (Orthanc's path, reference §1.3, §8).

Static files shipped in ``app/web/`` (plain HTML, CSS and JavaScript: nothing to build,
nothing fetched from the internet). Pages use relative URLs only, so they work behind a
reverse proxy path (``PublicRoot``) and under any ``DicomWeb.Root``; the one thing a page
cannot guess, where the DICOMweb root is relative to it, is written into the browser page's
``<meta name="dicomweb-root">``. Authentication is the application's (``app/security.py``):
the browser asks for credentials once and sends them with every request of the page.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from app.services import services

blueprint = Blueprint("web", __name__)  # at the server root
client_blueprint = Blueprint("web_client", __name__)  # under the DICOMweb Root

WEB = Path(__file__).parent / "web"
CACHE_SECONDS = 60  # short: a new release's pages are picked up within a minute


@blueprint.get("/")
def local_browser() -> Response:
    """The local study browser, told where the DICOMweb root is (relative to ``/``)."""
    root = services().settings.DicomWeb.root.lstrip("/")
    page = _browser_page().replace("{{DICOMWEB_ROOT}}", html.escape(root, quote=True))
    return Response(page, content_type="text/html; charset=utf-8",
                    headers={"Cache-Control": f"max-age={CACHE_SECONDS}"})


@blueprint.get("/app/<any(browser, common):folder>/<path:name>")
@client_blueprint.get("/app/<any(client, common):folder>/<path:name>")
def asset(folder: str, name: str) -> Response:
    """A page's own files and the shared ones (``send_from_directory`` refuses paths that
    leave the folder)."""
    return send_from_directory(WEB / folder, name, max_age=CACHE_SECONDS)


@cache
def _browser_page() -> str:
    """The page's template, read once per process (it ships with the package)."""
    return (WEB / "browser" / "index.html").read_text(encoding="utf-8")
