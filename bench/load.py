"""Mixed load on a DICOMweb server: STOW-RS, QIDO-RS, series metadata and WADO-RS at once.

Usage::

    python -m bench.load http://127.0.0.1:8042/dicom-web --pid MASTER_PID [--duration 60]
    python -m bench.load --serve [--workers N] [--threads N]   # a throw-away server

Several client threads (``--clients``, default 8) each pick an operation at random by
weight (``--mix stow=2,qido=4,metadata=2,retrieve=2``) for ``--duration`` seconds (default
60), on one keep-alive connection each. STOW stores one new instance per request (UIDs new
on every run, so the server need not be empty); reads only target series already stored. A
few series are stored first (``--prefill``) so that reads have something to read from the
start. The first ``--warmup`` seconds (default 10) run the same load but are left out of the
numbers; the memory after them is the baseline the end is compared with.

Printed: per operation requests/s, p50/p95/p99 latency and errors (any answer other than
the expected 200, or a failed connection); the RSS and PSS of the server process tree (with
``--pid`` or ``--serve``) every few seconds, and after warm-up / at the end / at the peak.
Nothing here asserts; ``tests/e2e/test_load.py`` runs a bounded load and does.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import psutil
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498.88"  # pydicom's root + ours; a run id follows
DICOM_JSON = "application/dicom+json"
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OPERATIONS = ("stow", "qido", "metadata", "retrieve")
MB = 1 << 20


@dataclass(frozen=True)
class Options:
    duration: float = 60.0  # seconds measured (after the warm-up)
    warmup: float = 10.0  # seconds of load before the measured part
    clients: int = 8
    mix: tuple[tuple[str, int], ...] = (("stow", 2), ("qido", 4), ("metadata", 2),
                                        ("retrieve", 2))
    size: int = 128  # rows = columns of each instance (16-bit): 32 KiB of pixels
    series_size: int = 20  # instances per series before a client starts a new one
    prefill: int = 4  # series stored before the load starts
    sample: float = 1.0  # seconds between memory samples (PSS every 5th)


# --------------------------------------------------------------------------- instances


class Maker:
    """New instances cheaply: one pydicom encoding per series, then the SOPInstanceUID
    (fixed length) patched into copies."""

    def __init__(self, client: int, size: int) -> None:
        self.run = random.randint(10**7, 10**8 - 1)
        self.client, self.size = client, size
        self.count = 0
        self.placeholder = self._sop(10**9 - 1)

    def _sop(self, n: int) -> str:
        return f"{ROOT}.{self.run}.{self.client + 1}{n:09d}"

    def series(self, study: str, series: str) -> bytes:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = self.placeholder
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, self.placeholder
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientName, ds.PatientID = f"LOAD^CLIENT{self.client}", f"LOAD-{self.client}"
        ds.StudyDate, ds.StudyTime, ds.Modality = "20240102", "101500", "CT"
        ds.StudyDescription, ds.SeriesDescription = "Load test", "Axial"
        ds.SeriesNumber, ds.InstanceNumber = 1, 1
        ds.Rows = ds.Columns = self.size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        rng = np.random.default_rng(self.client)
        ds.PixelData = rng.integers(0, 4096, (self.size, self.size), dtype=np.uint16).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    def instance(self, template: bytes) -> tuple[str, bytes]:
        sop = self._sop(self.count)
        self.count += 1
        return sop, template.replace(self.placeholder.encode(), sop.encode())


def stow_body(data: bytes) -> tuple[bytes, str]:
    boundary = "loadBoundary0123456789"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


# --------------------------------------------------------------------------- HTTP


class Connection:
    """One keep-alive ``http.client`` connection; reopened after a failure."""

    def __init__(self, root: str) -> None:
        parts = urlsplit(root)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, int]:
        """(status, body bytes); raises OSError / HTTPException on a failed connection."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            self.conn.request(method, self.path + path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
            return response.status, size
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --------------------------------------------------------------------------- the load


@dataclass
class Stats:
    """One operation's numbers over the measured window."""

    latencies: list[float] = field(default_factory=list)  # seconds, successes and errors
    errors: int = 0
    server_errors: int = 0  # 5xx
    connection_errors: int = 0
    bytes: int = 0
    samples: list[str] = field(default_factory=list)  # a few error descriptions

    def add(self, seconds: float, size: int, error: str | None, status: int = 0) -> None:
        self.latencies.append(seconds)
        self.bytes += size
        if error is not None:
            self.errors += 1
            self.server_errors += status >= 500
            self.connection_errors += status == 0
            if len(self.samples) < 5:
                self.samples.append(error)

    def summary(self, seconds: float) -> dict[str, float | int | list[str]]:
        ms = np.array(self.latencies or [0.0]) * 1000
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return {"requests": len(self.latencies), "per_s": round(len(self.latencies) / seconds, 1),
                "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1),
                "p99_ms": round(float(p99), 1), "errors": self.errors,
                "server_errors": self.server_errors,
                "connection_errors": self.connection_errors,
                "mb_per_s": round(self.bytes / MB / seconds, 1), "error_samples": self.samples}


class Catalog:
    """Series stored so far (the reads' targets): (study, series) in order of completion."""

    def __init__(self) -> None:
        self.series: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, study: str, series: str) -> None:
        with self.lock:
            self.series.append((study, series))

    def pick(self, rng: random.Random) -> tuple[str, str]:
        with self.lock:
            return rng.choice(self.series)


class Client(threading.Thread):
    def __init__(self, number: int, load: Load) -> None:
        super().__init__(daemon=True, name=f"load-{number}")
        self.number, self.load = number, load
        self.rng = random.Random(number)
        self.maker = Maker(number, load.opts.size)
        self.conn = Connection(load.root)
        self.study = self.series = ""
        self.template = b""
        self.in_series = 0

    def run(self) -> None:
        names = [name for name, _ in self.load.opts.mix]
        weights = [weight for _, weight in self.load.opts.mix]
        while not self.load.stop.is_set():
            operation = self.rng.choices(names, weights)[0]
            self.load.record(operation, *self.timed(getattr(self, operation)))
        self.conn.close()

    def timed(self, work: object) -> tuple[float, int, str | None, int]:
        start = time.perf_counter()
        try:
            status, size, expected = work()  # type: ignore[operator]
        except (OSError, http.client.HTTPException) as exc:
            return time.perf_counter() - start, 0, f"{type(exc).__name__}: {exc}", 0
        seconds = time.perf_counter() - start
        return seconds, size, None if status == expected else f"HTTP {status}", status

    def stow(self) -> tuple[int, int, int]:
        if not self.template or self.in_series == self.load.opts.series_size:
            if self.in_series:
                self.load.catalog.add(self.study, self.series)
            if not self.study or self.rng.random() < 0.3:
                self.study = generate_uid(f"{ROOT}.")
            self.series = generate_uid(f"{ROOT}.")
            self.template, self.in_series = self.maker.series(self.study, self.series), 0
        _sop, data = self.maker.instance(self.template)
        body, ctype = stow_body(data)
        status, _ = self.conn.request("POST", "/studies", body,
                                      {"Content-Type": ctype, "Accept": DICOM_JSON})
        self.in_series += status == 200
        return status, len(data), 200

    def qido(self) -> tuple[int, int, int]:
        study, series = self.load.catalog.pick(self.rng)
        path = self.rng.choice([
            "/studies?limit=25", f"/studies?PatientName=LOAD^CLIENT{self.rng.randrange(8)}*",
            f"/studies/{study}/series", f"/studies/{study}/series/{series}/instances",
            "/series?Modality=CT&limit=50&offset=10"])
        return (*self.conn.request("GET", path, headers={"Accept": DICOM_JSON}), 200)

    def metadata(self) -> tuple[int, int, int]:
        study, series = self.load.catalog.pick(self.rng)
        return (*self.conn.request("GET", f"/studies/{study}/series/{series}/metadata",
                                   headers={"Accept": DICOM_JSON}), 200)

    def retrieve(self) -> tuple[int, int, int]:
        study, series = self.load.catalog.pick(self.rng)
        return (*self.conn.request("GET", f"/studies/{study}/series/{series}",
                                   headers={"Accept": WADO_ACCEPT}), 200)


class Memory(threading.Thread):
    """RSS (and every 5th sample PSS) of the server's process tree, every ``interval``."""

    def __init__(self, pid: int | None, interval: float) -> None:
        super().__init__(daemon=True, name="memory")
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, float | None]] = []  # (t, RSS MB, PSS MB)
        self.stop = threading.Event()
        self.started = time.monotonic()

    def measure(self, pss: bool) -> tuple[float, float | None]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0, None
        rss = total_pss = 0
        for proc in procs:
            try:
                if pss:
                    info = proc.memory_full_info()
                    total_pss += getattr(info, "pss", info.rss)
                    rss += info.rss
                else:
                    rss += proc.memory_info().rss
            except psutil.NoSuchProcess:  # a worker restarted
                continue
        return rss / MB, (total_pss / MB if pss else None)

    def run(self) -> None:
        if self.pid is None:
            return
        n = 0
        while not self.stop.is_set():
            rss, pss = self.measure(n % 5 == 0)
            self.samples.append((time.monotonic() - self.started, rss, pss))
            n += 1
            self.stop.wait(self.interval)

    def at(self, t: float) -> float:
        """RSS of the last sample up to ``t`` seconds after the start."""
        before = [rss for when, rss, _ in self.samples if when <= t]
        return before[-1] if before else (self.samples[0][1] if self.samples else 0.0)


class Load:
    def __init__(self, root: str, opts: Options, pid: int | None) -> None:
        self.root, self.opts, self.pid = root.rstrip("/"), opts, pid
        self.catalog = Catalog()
        self.stop = threading.Event()
        self.measuring = False
        self.stats = {name: Stats() for name in OPERATIONS}
        self.lock = threading.Lock()
        self.progress: list[tuple[float, int]] = []  # (t, requests measured so far)

    def record(self, operation: str, seconds: float, size: int, error: str | None,
               status: int) -> None:
        if self.measuring:
            with self.lock:
                self.stats[operation].add(seconds, size, error, status)

    def prefill(self) -> None:
        """``opts.prefill`` series stored before the load (the reads' first targets)."""
        client = Client(99, self)
        for _ in range(self.opts.prefill):
            for _ in range(self.opts.series_size):
                status, _size, _ = client.stow()
                if status != 200:
                    raise SystemExit(f"prefill STOW answered {status}")
            client.in_series = self.opts.series_size
        client.stow()  # completes the last series (and starts another, harmlessly)
        client.conn.close()

    def run(self) -> dict:
        opts = self.opts
        self.prefill()
        memory = Memory(self.pid, opts.sample)
        memory.start()
        clients = [Client(n, self) for n in range(opts.clients)]
        started = time.monotonic()
        for client in clients:
            client.start()
        time.sleep(opts.warmup)
        warm_t = time.monotonic() - memory.started
        self.measuring = True
        measured = time.monotonic()
        while (elapsed := time.monotonic() - measured) < opts.duration:
            time.sleep(min(1.0, opts.duration - elapsed))
            with self.lock:
                self.progress.append((time.monotonic() - measured,
                                      sum(len(s.latencies) for s in self.stats.values())))
        self.measuring = False
        seconds = time.monotonic() - measured
        self.stop.set()
        for client in clients:
            client.join(timeout=130)
        memory.stop.set()
        memory.join(timeout=30)
        return self.results(seconds, time.monotonic() - started, memory, warm_t)

    def results(self, seconds: float, total: float, memory: Memory, warm_t: float) -> dict:
        ops = {name: stats.summary(seconds) for name, stats in self.stats.items()}
        out: dict = {"url": self.root, "options": asdict(self.opts),
                     "measured_seconds": round(seconds, 1), "total_seconds": round(total, 1),
                     "cpus": os.cpu_count(), "loadavg": round(os.getloadavg()[0], 2),
                     "operations": ops,
                     "requests": sum(int(o["requests"]) for o in ops.values()),  # type: ignore[call-overload]
                     "errors": sum(int(o["errors"]) for o in ops.values())}  # type: ignore[call-overload]
        out["per_s"] = round(out["requests"] / seconds, 1)
        if memory.samples:
            rss = [s[1] for s in memory.samples]
            pss = [s[2] for s in memory.samples if s[2] is not None]
            end = float(np.mean(rss[-3:]))
            warm = memory.at(warm_t)
            out["memory"] = {
                "pid": self.pid, "start_rss_mb": round(rss[0], 1),
                "after_warmup_rss_mb": round(warm, 1), "end_rss_mb": round(end, 1),
                "peak_rss_mb": round(max(rss), 1), "growth_mb": round(end - warm, 1),
                "peak_pss_mb": round(max(pss), 1) if pss else None,
                "end_pss_mb": round(pss[-1], 1) if pss else None,
                "timeline": [(round(t, 1), round(r, 1), None if p is None else round(p, 1))
                             for t, r, p in memory.samples],
            }
        return out


# --------------------------------------------------------------------------- report


def report_lines(results: dict) -> list[str]:
    opts = results["options"]
    lines = [f"load: {results['url']}, {opts['clients']} clients, {results['measured_seconds']}"
             f" s measured after {opts['warmup']:.0f} s of warm-up; {results['cpus']} CPUs,"
             f" load average {results['loadavg']}",
             f"  {'operation':<10}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
             f"{'MB/s':>8}{'errors':>8}"]
    for name, r in results["operations"].items():
        lines.append(f"  {name:<10}{r['per_s']:>8.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}"
                     f"{r['p99_ms']:>9.1f}{r['mb_per_s']:>8.1f}{r['errors']:>8}")
        lines += [f"      ! {sample}" for sample in r["error_samples"]]
    lines.append(f"  {'all':<10}{results['per_s']:>8.1f}{'':>35}{results['errors']:>8}")
    memory = results.get("memory")
    if memory:
        lines.append("  server tree memory (MB) over time (from the end of the prefill):")
        lines.append(f"    {'t (s)':>6} {'RSS':>8} {'PSS':>8}")
        with_pss = [sample for sample in memory["timeline"] if sample[2] is not None]
        step = max(1, len(with_pss) // 16)
        for t, rss, pss in with_pss[::step]:
            lines.append(f"    {t:6.1f} {rss:8.1f} {pss:8.1f}")
        lines.append(
            f"  RSS: start {memory['start_rss_mb']}, after warm-up "
            f"{memory['after_warmup_rss_mb']}, end {memory['end_rss_mb']} (growth "
            f"{memory['growth_mb']:+.1f}), peak {memory['peak_rss_mb']}; PSS peak "
            f"{memory['peak_pss_mb']}, end {memory['end_pss_mb']}")
    return lines


# --------------------------------------------------------------------------- a server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_server(workers: int | None = None, threads: int | None = None, *,
                     port: int | None = None, extra: dict[str, Any] | None = None,
                     ) -> Iterator[tuple[str, int]]:
    """``dicomweb-server`` on filesystem + SQLite in a temporary folder: (root URL, pid).
    ``extra``: more configuration (e.g. ``DicomWeb.Servers``)."""
    import requests

    with tempfile.TemporaryDirectory(prefix="dicomweb-load-") as work:
        port = port or free_port()
        config = Path(work) / "config.json"
        config.write_text(json.dumps({"StorageDirectory": f"{work}/storage",
                                      "IndexDirectory": f"{work}/index", "HttpPort": port,
                                      **(extra or {})}))
        args = [sys.executable, "-m", "app.cli", "--config", str(config)]
        args += ["--workers", str(workers)] if workers else []
        args += ["--threads", str(threads)] if threads else []
        with open(Path(work) / "server.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=Path(__file__).resolve().parents[1])
        root = f"http://127.0.0.1:{port}/dicom-web"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{root}/studies?limit=1", timeout=5)
                    break
                except requests.RequestException:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start: see its log") from None
                    time.sleep(0.2)
            yield root, proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- CLI


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    mix = []
    for item in text.split(","):
        name, _, weight = item.partition("=")
        if name not in OPERATIONS or not weight.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: use e.g. stow=2,qido=4,metadata=2,"
                                             "retrieve=2")
        mix.append((name, int(weight)))
    return tuple(mix)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--pid", type=int, help="server master pid: memory of it + children")
    parser.add_argument("--serve", action="store_true",
                        help="start a throw-away server (filesystem + SQLite, temp folder)")
    parser.add_argument("--workers", type=int, help="with --serve: gunicorn workers")
    parser.add_argument("--threads", type=int, help="with --serve: threads per worker")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    defaults = Options()
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--size", type=int, default=defaults.size, help="rows = columns")
    parser.add_argument("--series-size", type=int, default=defaults.series_size)
    parser.add_argument("--prefill", type=int, default=defaults.prefill, help="series")
    parser.add_argument("--mix", type=parse_mix, default=defaults.mix,
                        help="weights, default stow=2,qido=4,metadata=2,retrieve=2")
    args = parser.parse_args(argv)
    if bool(args.url) == args.serve:
        parser.error("give a DICOMweb root URL, or --serve")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    opts = Options(duration=args.duration, warmup=args.warmup, clients=args.clients,
                   mix=args.mix, size=args.size, series_size=args.series_size,
                   prefill=max(1, args.prefill))
    if args.serve:
        with throwaway_server(args.workers, args.threads) as (root, pid):
            results = Load(root, opts, pid).run()
    else:
        results = Load(args.url, opts, args.pid).run()
    print("\n".join(report_lines(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
