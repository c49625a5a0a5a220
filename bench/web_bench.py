"""How fast the web pages answer a user, in Debian's chromium (run by hand).

Starts a throw-away ``dicomweb-server`` that lists itself as the DICOMweb server "self",
stores ``--studies`` small studies (3 series × 3 instances of 64×64, one STOW request per
50 studies) and times, over ``--reps`` fresh page loads each:

- local study browser (``/``): navigation → the first 25 studies listed; Next → the
  next 25; open a study → its series thumbnails all loaded;
- DICOMweb client app: Search on "self" → the first 100 studies listed; Next → the
  next page; Preview of a series (QIDO + ``/rendered`` through ``/get``) → image shown;
- the bytes of HTML, JavaScript and CSS a first visit of each page downloads.

Prints p50 / p95 in ms. Nothing here asserts; numbers depend on the machine.

    python -m bench.web_bench [--studies 500] [--reps 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from bench.dicomweb_bench import publish
from bench.load import free_port, throwaway_server
from tests.browser.data import Study

CHROMIUM = "/usr/bin/chromium"


def seed(root: str, studies: int) -> None:
    """``studies`` studies of 3 series × 3 instances, 50 studies per STOW request."""
    for start in range(0, studies, 50):
        boundary = uuid.uuid4().hex
        parts = []
        for number in range(start, min(start + 50, studies)):
            study = Study.make(f"BENCH^P{number:05d}", f"B{number}", series=3, instances=3)
            parts += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                      + data + b"\r\n" for files in study.series.values() for _, data in files]
        answer = requests.post(
            f"{root}/studies", data=b"".join(parts) + f"--{boundary}--".encode(), timeout=300,
            headers={"Content-Type": "multipart/related; type=\"application/dicom\"; "
                                     f"boundary={boundary}"})
        answer.raise_for_status()


@contextmanager
def stopwatch(samples: list[float]) -> Iterator[None]:
    """Append the milliseconds the block took to ``samples``."""
    start = time.perf_counter()
    yield
    samples.append((time.perf_counter() - start) * 1000)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


NEXT_PAGE_SHOWN = ("t => { const r = document.querySelector('table tbody tr');"
                   " return r !== null && r.innerText !== t; }")
THUMBNAILS_LOADED = ("() => { const i = [...document.querySelectorAll('img')];"
                     " return i.length >= 3 && i.every(x => x.complete && x.naturalWidth > 0); }")
AN_IMAGE_SHOWN = ("() => [...document.querySelectorAll('img')]"
                  ".some(x => x.complete && x.naturalWidth > 0)")


def local_browser(browser: Any, base: str, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"local: list 25 studies": [], "local: next page": [],
                                   "local: open study, thumbnails loaded": []}
    for _ in range(reps):
        context = browser.new_context(base_url=base)
        page = context.new_page()
        rows = page.locator("table tbody tr")
        with stopwatch(out["local: list 25 studies"]):
            page.goto("")
            rows.nth(24).wait_for()
        first = rows.first.inner_text()
        with stopwatch(out["local: next page"]):
            page.get_by_role("button", name="Next").click()
            page.wait_for_function(NEXT_PAGE_SHOWN, arg=first)
        with stopwatch(out["local: open study, thumbnails loaded"]):
            rows.first.get_by_role("link", name="Open", exact=True).click()
            page.wait_for_function(THUMBNAILS_LOADED)
        context.close()
    return out


def client_app(browser: Any, base: str, reps: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"client: search, 100 studies listed": [],
                                   "client: next page": [], "client: series preview shown": []}
    for _ in range(reps):
        context = browser.new_context(base_url=base)
        page = context.new_page()
        page.goto("dicom-web/app/client/index.html")
        page.get_by_label("Server", exact=True).select_option("self")
        rows = page.locator("table tbody tr")
        with stopwatch(out["client: search, 100 studies listed"]):
            page.get_by_role("button", name="Search").click()
            rows.nth(99).wait_for()
        first = rows.first.inner_text()
        with stopwatch(out["client: next page"]):
            page.get_by_role("button", name="Next").click()
            page.wait_for_function(NEXT_PAGE_SHOWN, arg=first)
        rows.first.get_by_role("button", name="Open series").click()
        preview = page.get_by_role("button", name="Preview").first
        preview.wait_for()
        with stopwatch(out["client: series preview shown"]):
            preview.click()
            page.wait_for_function(AN_IMAGE_SHOWN)
        context.close()
    return out


def asset_bytes(browser: Any, base: str, path: str) -> int:
    """Bytes of the HTML, scripts and style sheets a first visit downloads."""
    context = browser.new_context(base_url=base)
    page = context.new_page()
    sizes: list[int] = []

    def count(response: Any) -> None:
        if response.request.resource_type in ("document", "script", "stylesheet"):
            sizes.append(len(response.body()))

    page.on("response", count)
    page.goto(path, wait_until="networkidle")
    context.close()
    return sum(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--json")
    opts = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    self_url = f"http://127.0.0.1:{port}/dicom-web/"
    with throwaway_server(port=port, extra={"DicomWeb": {"Servers": {"self": [self_url]}}}) \
            as (root, _pid), sync_playwright() as playwright:
        seed(root, opts.studies)
        base = root.rsplit("/dicom-web", 1)[0] + "/"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        timings = {**local_browser(browser, base, opts.reps),
                   **client_app(browser, base, opts.reps)}
        sizes = {"local browser": asset_bytes(browser, base, ""),
                 "client app": asset_bytes(browser, base, "dicom-web/app/client/index.html")}
        browser.close()
    results = {"studies": opts.studies, "reps": opts.reps,
               "timings_ms": {k: summary(v) for k, v in timings.items()},
               "first_visit_bytes": sizes}
    lines = [f"web pages, {opts.studies} studies, {opts.reps} page loads each (ms)"]
    lines += [f"  {name:<38} p50 {s['p50']:7.1f}   p95 {s['p95']:7.1f}"
              for name, s in results["timings_ms"].items()]
    lines += [f"  first visit, {name}: {size / 1024:.1f} KiB (HTML + JS + CSS)"
              for name, size in sizes.items()]
    publish(results, lines, opts.json)


if __name__ == "__main__":
    main()
