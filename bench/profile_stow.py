"""In-process STOW-RS cost per instance: ``python -m bench.profile_stow [--count N] [--top K]``.

Stores ``--count`` CT instances (512×512 16-bit, explicit VR little endian, ~30 elements,
like the benchmark's) one per request through the Flask test client, into a fresh
temporary storage folder and index. No network and no gunicorn: what remains is the
server's own work per instance (multipart reading, spooling, parsing, DICOM JSON, the
durable blob write and the index transaction).

Two passes over distinct instances (each SOP Instance UID is stored once):

1. timed without a profiler: the wall-clock ms per instance to compare before/after;
2. under ``cProfile`` (inflates Python-heavy code), printing the ``--top`` functions by
   cumulative time and by own time: where the remaining time goes.

Run from the repository root. The test helpers (``tests/``) build the instances.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app import create_app
from tests.api.data import ct_bytes, uid
from tests.conftest import make_settings, stow_body


def _bodies(count: int, size: int) -> list[tuple[bytes, str]]:
    """``count`` single-instance STOW bodies of one new series."""
    study, series = uid(), uid()
    files = [ct_bytes(study, series, number=i, rows=size, columns=size) for i in range(count)]
    return [stow_body([f]) for f in files]


def _poster(root: Path) -> Callable[[list[tuple[bytes, str]]], None]:
    client = create_app(make_settings(root)).test_client()

    def post_all(bodies: list[tuple[bytes, str]]) -> None:
        for body, content_type in bodies:
            response = client.post("/dicom-web/studies", data=body,
                                   headers={"Content-Type": content_type})
            assert response.status_code == 200, response.data
    return post_all


def _ms_per_instance(run: Callable[[], None], count: int) -> tuple[float, float]:
    """Wall-clock and CPU (this process) ms per instance; the gap is mostly fsync waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return ((time.perf_counter() - wall) * 1000 / count,
            (time.process_time() - cpu) * 1000 / count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="instances per pass")
    parser.add_argument("--size", type=int, default=512, help="rows and columns")
    parser.add_argument("--top", type=int, default=30, help="profile lines to print")
    args = parser.parse_args(argv)
    post_all = _poster(Path(tempfile.mkdtemp(prefix="profile-stow-")))
    post_all(_bodies(5, args.size))  # warm-up: imports, schema, first folders

    timed = _bodies(args.count, args.size)
    plain = _ms_per_instance(lambda: post_all(timed), args.count)
    profiled_bodies = _bodies(args.count, args.size)
    profiler = cProfile.Profile()
    profiled, _ = _ms_per_instance(
        lambda: profiler.runcall(post_all, profiled_bodies), args.count)

    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())
    print(f"ms per instance: {plain[0]:.2f} wall, {plain[1]:.2f} CPU (no profiler);"
          f" {profiled:.2f} wall under cProfile")


if __name__ == "__main__":
    main()
