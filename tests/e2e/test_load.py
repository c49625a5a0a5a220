"""A bounded mixed load (``bench.load``) on a real gunicorn server: no errors, flat memory.

STOW, QIDO, series metadata and WADO-RS retrieve from several clients at once for about
half a minute. Asserted: not one error (no 5xx, no other unexpected status, no failed
connection), every kind of operation served, the server process tree's RSS at the end
within +30 % or +50 MB (whichever is larger) of its value after the warm-up (a resource
bound, not a timing), and afterwards the index and the storage agree exactly
(``app.consistency.check`` with a grace period of 0: not even an orphan blob).
Throughput and latencies are printed (``-s``), never asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app import build_index, build_storage
from app.consistency import check
from app.settings import load_settings
from bench.load import Load, Options, report_lines
from tests.e2e.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OPTIONS = Options(duration=24, warmup=8, clients=4, prefill=2)
GROWTH_MB, GROWTH_RATIO = 50.0, 0.30


def test_mixed_load_without_errors_in_flat_memory(tmp_path: Path) -> None:
    server = Server(tmp_path, workers=2, threads=2).start()
    try:
        assert server.proc is not None
        results = Load(server.root, OPTIONS, server.proc.pid).run()
        print("\n".join(report_lines(results)))
    finally:
        server.stop()

    operations = results["operations"]
    assert results["errors"] == 0, {k: v["error_samples"] for k, v in operations.items()}
    assert all(op["requests"] > 0 for op in operations.values()), operations
    memory = results["memory"]
    warm, end = memory["after_warmup_rss_mb"], memory["end_rss_mb"]
    assert end <= warm + max(GROWTH_MB, GROWTH_RATIO * warm), memory
    log = server.log()
    assert "Traceback" not in log and "CRITICAL" not in log, log

    settings = load_settings(server.config)
    index = build_index(settings)
    try:
        report = check(build_storage(settings), index, grace=0, sizes=True)
    finally:
        index.close()
    assert report.consistent and report.indexed > 0 and report.recent == [], report.text()
