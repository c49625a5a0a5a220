"""Compare two DICOMweb bench results side by side (ours vs theirs, e.g. Orthanc).

Usage::

    # compare two result files written by ``bench.dicomweb_bench --json``
    python -m bench.compare ours.json theirs.json

    # run the bench against both servers first (each must start empty), then compare
    python -m bench.compare --ours http://127.0.0.1:8042/dicom-web --ours-pid PID \\
        --start-orthanc [--quick] [--out-dir DIR]
    python -m bench.compare --ours URL --ours-pid PID --theirs URL --theirs-pid PID

Ratios are oriented so that > 1 means ours is better: ours/theirs for throughput,
theirs/ours for latency and memory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import requests

from bench.dicomweb_bench import FULL, QUICK, Options, run_bench
from bench.orthanc import DEFAULT_PORT, start_orthanc

Row = tuple[str, float | None, bool]  # (metric, value, higher is better)


def metric_rows(results: dict) -> list[Row]:
    """Flatten one result file into comparable metrics."""
    rows: list[Row] = []
    for name, r in results.get("stow", {}).items():
        rows.append((f"STOW {name} inst/s", r.get("instances_per_s"), True))
    for name, r in results.get("qido", {}).items():
        rows.append((f"QIDO {name} p50 ms", r.get("p50_ms"), False))
        rows.append((f"QIDO {name} p95 ms", r.get("p95_ms"), False))
    for level, r in results.get("metadata", {}).items():
        rows.append((f"{level} metadata p50 ms", r.get("p50_ms"), False))
    rows.append(("WADO study MB/s", results.get("wado", {}).get("study", {}).get("mb_per_s"), True))
    memory = results.get("memory") or {}
    rows.append(("peak RSS MB", memory.get("peak_mb"), False))
    rows.append(("peak PSS MB", memory.get("peak_pss_mb"), False))
    return rows


def ratio(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """> 1 when ours is better; None when a side is missing or zero."""
    if not ours or not theirs:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def cell(value: float | None, width: int = 10) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width},.1f}"


def comparison_lines(ours: dict, theirs: dict) -> list[str]:
    """Side-by-side table of two result dicts."""
    lines = [
        f"{side}: {r.get('label', '')} ({r['url']})"
        for side, r in (("ours  ", ours), ("theirs", theirs))
    ]
    if ours.get("dataset") != theirs.get("dataset"):
        lines.append(f"WARNING: datasets differ: {ours.get('dataset')} vs {theirs.get('dataset')}")
    lines.append(f"{'metric':<36}{'ours':>10}{'theirs':>10}{'ratio':>8}  (>1: ours better)")
    theirs_rows = {name: value for name, value, _ in metric_rows(theirs)}
    for name, value, higher in metric_rows(ours):
        other = theirs_rows.get(name)
        r = ratio(value, other, higher)
        shown = "-" if r is None else f"{r:.2f}"
        lines.append(f"{name:<36}{cell(value)}{cell(other)}{shown:>8}")
    return lines


def load(path: str | Path) -> dict:
    with open(path) as source:
        return json.load(source)


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {path}")


def run_theirs(args: argparse.Namespace, opts: Options) -> dict:
    """Bench --theirs, or a fresh Orthanc started (and stopped) here."""
    if not args.start_orthanc:
        return run_bench(args.theirs, opts, args.theirs_pid)
    with start_orthanc(args.orthanc_port) as orthanc:
        version = requests.get(orthanc.url + "/system", timeout=10).json()["Version"]
        print(f"started Orthanc {version} pid={orthanc.pid} at {orthanc.dicomweb_url}")
        return run_bench(orthanc.dicomweb_url, opts, orthanc.pid, label=f"Orthanc {version}")


def run_both(args: argparse.Namespace) -> tuple[dict, dict]:
    """Bench ours then theirs, saving both result files in --out-dir."""
    opts = QUICK if args.quick else FULL
    out = Path(args.out_dir)
    print(f"== ours: {args.ours}")
    ours = run_bench(args.ours, opts, args.ours_pid)
    save(ours, out / "ours.json")
    print("== theirs")
    theirs = run_theirs(args, opts)
    save(theirs, out / "theirs.json")
    return ours, theirs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="OURS.json THEIRS.json (compare only)")
    parser.add_argument("--ours", metavar="URL", help="our DICOMweb root: run the bench on it")
    parser.add_argument("--ours-pid", type=int, help="our server's master pid (RSS)")
    parser.add_argument("--theirs", metavar="URL", help="the other DICOMweb root")
    parser.add_argument("--theirs-pid", type=int, help="the other server's pid (RSS)")
    parser.add_argument("--start-orthanc", action="store_true", help="theirs = fresh Orthanc")
    parser.add_argument("--orthanc-port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--quick", action="store_true", help="small dataset (smoke run)")
    parser.add_argument("--out-dir", default="bench/results/latest", help="where to save JSON")
    args = parser.parse_args(argv)
    running = args.ours is not None
    if running == bool(args.files) or (not running and len(args.files) != 2):
        parser.error("give either two JSON files, or --ours URL (and --theirs or --start-orthanc)")
    if running and bool(args.theirs) == args.start_orthanc:
        parser.error("with --ours, give exactly one of --theirs URL or --start-orthanc")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ours, theirs = run_both(args) if args.ours else map(load, args.files)
    print("\n".join(comparison_lines(ours, theirs)))


if __name__ == "__main__":
    main()
