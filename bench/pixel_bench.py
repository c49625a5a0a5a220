"""Pixel-data benchmark: WADO-RS frames, rendered/thumbnail and transcoding, any DICOMweb root.

Usage::

    python -m bench.pixel_bench http://127.0.0.1:8042/dicom-web --pid PID --json out.json
    python -m bench.pixel_bench http://127.0.0.1:8043/dicom-web --quick --skip-stow
    python -m bench.pixel_bench --compare ours.json theirs.json

The dataset is generated in code with deterministic UIDs (they depend on ``--seed``,
``--size``, ``--frames`` and ``--series-instances``): one study holding a large
multi-frame instance stored three ways (native, RLE Lossless, JPEG-LS lossless) and a
series of single-frame CT instances stored twice (native, RLE). Instances the server
already holds are not sent again (``--skip-stow`` sends nothing), so a rerun measures
the same data. It prints numbers and ratios; nothing here asserts on timings, and a
route that answers an error is reported (status and body) instead of stopping the run.
"""

from __future__ import annotations

import argparse
import email.message
import http.client
import io
import json
import os
import platform
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pydicom
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    RLELossless,
)

from bench import dicomweb_bench as base
from bench.dicomweb_bench import (
    MB,
    TIMEOUT,
    InstanceRef,
    LeanClient,
    MemorySampler,
    SeriesPlan,
    StudyPlan,
    check_load,
    make_uid,
    noise_pool,
    percentiles,
    publish,
    set_image,
    set_patient_study,
    set_series_instance,
    study_base,
    timed_get,
)

# Frames "as stored" (PS3.18 §8.7.3.5: ``*`` = the stored transfer syntax), written as in
# the standard's examples; a frame request without Accept means Explicit VR Little Endian.
FRAMES_AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DICOM_TS = 'multipart/related; type="application/dicom"; transfer-syntax={}'
THUMBNAIL_QUERY = "?viewport=128,128"
UNSUPPORTED = (404, 405, 501)  # what a server without the route answers (thumbnail)

# name -> transfer syntax of the stored copies (the JPEG-LS one is optional: --no-jpegls)
MULTIFRAME = {"native": ExplicitVRLittleEndian, "rle": RLELossless, "jpegls": JPEGLSLossless}
SINGLE = {"native": ExplicitVRLittleEndian, "rle": RLELossless}
# transcoding cases: (stored copy of the series, requested transfer syntax, label)
TRANSCODE_CASES = (
    ("native", "*", "native as stored"),
    ("native", RLELossless, "native -> RLE"),
    ("native", JPEGLSLossless, "native -> JPEG-LS lossless"),
    ("native", JPEG2000Lossless, "native -> JPEG 2000 lossless"),
    ("rle", "*", "RLE as stored"),
    ("rle", ExplicitVRLittleEndian, "RLE -> explicit VR LE"),
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """Dataset shape and measurement effort; ``FULL`` and ``QUICK`` are the presets."""

    size: int = 512  # rows = columns, 16-bit (12 bits stored)
    frames: int = 200  # frames of the multi-frame instance (200 x 512 x 512 x 2 = 105 MB)
    series_instances: int = 50  # single-frame instances in the transcoding/rendered series
    reps: int = 100  # timed frame requests per case, sequential (and again, concurrent)
    render_reps: int = 40  # timed rendered/thumbnail requests per case (idem)
    rounds: int = 3  # sequential series retrievals per transcoding case
    clients: int = 4  # threads of the concurrent runs
    case_seconds: float = 60.0  # a timed run stops early past this (slow route, busy box)
    jpegls: bool = True  # also store a JPEG-LS lossless copy of the multi-frame
    seed: str = "pixel-bench"


FULL = Options()
QUICK = Options(frames=24, series_instances=10, reps=15, render_reps=10, rounds=1, case_seconds=3.0)


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Plan:
    """UIDs of everything stored; they depend only on the options that shape the data."""

    study: StudyPlan
    multiframe: dict[str, SeriesPlan]  # copy name -> its one-instance series
    single: dict[str, SeriesPlan]  # copy name -> series of ``series_instances``
    opts: Options

    @property
    def key(self) -> str:
        o = self.opts
        return f"{o.seed}/{o.size}/{o.frames}/{o.series_instances}"

    def base_options(self) -> base.Options:
        """dicomweb_bench options whose seed gives this plan's instance UIDs."""
        return base.Options(size=self.opts.size, seed=self.key)

    def sop_uid(self, series: SeriesPlan, number: int = 1) -> str:
        """The SOP Instance UID ``set_series_instance`` gives instance ``number``."""
        return make_uid(self.key, "instance", 0, series.number, number)

    def instance_url(self, root: str, series: SeriesPlan, number: int = 1) -> str:
        return (
            f"{root}/studies/{self.study.uid}/series/{series.uid}"
            f"/instances/{self.sop_uid(series, number)}"
        )

    def series_url(self, root: str, series: SeriesPlan) -> str:
        return f"{root}/studies/{self.study.uid}/series/{series.uid}"

    def all_sops(self) -> dict[str, tuple[SeriesPlan, int]]:
        everything = [*self.multiframe.values(), *self.single.values()]
        return {self.sop_uid(s, n): (s, n) for s in everything for n in range(1, s.count + 1)}


def plan(opts: Options) -> Plan:
    key = f"{opts.seed}/{opts.size}/{opts.frames}/{opts.series_instances}"
    names = [n for n in MULTIFRAME if opts.jpegls or n != "jpegls"]
    multiframe = {
        name: SeriesPlan(0, 1 + i, 1, make_uid(key, "series", "mf", name))
        for i, name in enumerate(names)
    }
    single = {
        name: SeriesPlan(0, 10 + i, opts.series_instances, make_uid(key, "series", "sf", name))
        for i, name in enumerate(SINGLE)
    }
    study = StudyPlan(
        index=0,
        uid=make_uid(key, "study"),
        patient_name="PIXEL^BENCH",
        patient_id="BENCH-PIXELS",
        date="20240315",
        accession=f"PX{zlib.crc32(key.encode()) % 10**8:08d}",
        description="CT PIXEL BENCH",
        body_part="CHEST",
        series=(*multiframe.values(), *single.values()),
    )
    return Plan(study, multiframe, single, opts)


def frame_array(opts: Options, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) of the volume: one of 16 smooth 'slices' + a noise plane.

    The same noise as dicomweb_bench (uniform in [0, 48) over a 12-bit image): RLE
    compresses it about 1.9:1 and JPEG-LS about 2.6:1, like real CT."""
    pool = noise_pool(opts.size, opts.seed)
    return np.add(study_base(opts.size, index % 16), pool[index * 3 % len(pool)], dtype=np.uint16)


def frame_bytes(opts: Options, index: int) -> bytes:
    return frame_array(opts, index).tobytes()


def compress(ds: Dataset, syntax: str, pixels: np.ndarray) -> None:
    """Encode in place; RLE with pylibjpeg-rle when present (8x faster than pydicom's)."""
    if syntax == ExplicitVRLittleEndian:
        ds.PixelData = pixels.tobytes()
        return
    if syntax == RLELossless:
        try:
            ds.compress(syntax, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
            return
        except (RuntimeError, ValueError):
            pass
    ds.compress(syntax, pixels, generate_instance_uid=False)


def part10(ds: Dataset, syntax: str, pixels: np.ndarray) -> bytes:
    """``ds`` with ``pixels`` encoded in ``syntax``, as a Part 10 file."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    compress(ds, syntax, pixels)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def instance_dataset(p: Plan, series: SeriesPlan, number: int, description: str) -> Dataset:
    ds = Dataset()
    set_patient_study(ds, p.study)
    set_series_instance(ds, InstanceRef(p.study, series, number), p.base_options())
    set_image(ds, p.opts.size)
    ds.SeriesDescription = description
    return ds


def encode_multiframe(p: Plan, name: str) -> bytes:
    """The multi-frame instance as a Part 10 file (Multi-frame Grayscale Word SC)."""
    ds = instance_dataset(p, p.multiframe[name], 1, f"MULTIFRAME {name.upper()}")
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    for keyword in ("ImagePositionPatient", "SliceLocation", "KVP"):
        delattr(ds, keyword)
    ds.NumberOfFrames = p.opts.frames
    ds.FrameIncrementPointer = 0x00182002  # Frame Label Vector
    ds.FrameLabelVector = [f"F{i + 1}" for i in range(p.opts.frames)]
    volume = np.stack([frame_array(p.opts, i) for i in range(p.opts.frames)])
    return part10(ds, MULTIFRAME[name], volume)


def encode_single(p: Plan, name: str, number: int) -> bytes:
    """Single-frame CT instance ``number`` of the series ``name`` (pixels = frame number-1)."""
    ds = instance_dataset(p, p.single[name], number, f"AXIAL {name.upper()}")
    return part10(ds, SINGLE[name], frame_array(p.opts, number - 1))


# --------------------------------------------------------------------------- STOW-RS


def stow(root: str, files: list[bytes]) -> dict:
    """One STOW-RS request; return counts, time and the error body if any."""
    boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body = b"".join(head + f + b"\r\n" for f in files) + f"--{boundary}--\r\n".encode()
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": base.DICOM_JSON,
    }
    start = time.perf_counter()
    try:
        response = requests.post(f"{root}/studies", data=body, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        return {"instances": len(files), "stored": 0, "error": repr(exc)[:300]}
    seconds = time.perf_counter() - start
    result = {
        "instances": len(files),
        "stored": base.stored_count(response, len(files)),
        "megabytes": round(len(body) / MB, 1),
        "seconds": round(seconds, 3),
        "mb_per_s": round(len(body) / MB / seconds, 1),
    }
    if not response.ok or result["stored"] != len(files):
        result["error"] = f"HTTP {response.status_code}: {response.text[:300]}"
    return result


def stored_sops(root: str, study_uid: str) -> set[str]:
    """SOP Instance UIDs of the study already on the server (QIDO-RS)."""
    try:
        _, body = timed_get(LeanClient(), f"{root}/studies/{study_uid}/instances")
    except requests.HTTPError as exc:
        if str(exc).startswith("404"):
            return set()
        raise
    return {item["00080018"]["Value"][0] for item in body or []}


def run_stow(root: str, p: Plan, skip: bool) -> dict:
    """Store what the server lacks: each multi-frame copy, then each series in one request."""
    present = stored_sops(root, p.study.uid)
    missing = set(p.all_sops()) - present
    if skip:
        if missing:
            print(f"  ! --skip-stow: {len(missing)} instances missing", file=sys.stderr)
        return {"skipped": True, "missing": len(missing)}
    results = {}
    for name, series in p.multiframe.items():
        if p.sop_uid(series) not in missing:
            results[f"multiframe {name}"] = {"already_stored": True}
            continue
        print(f"  STOW multi-frame {name} ({p.opts.frames} frames) ...", flush=True)
        results[f"multiframe {name}"] = stow(root, [encode_multiframe(p, name)])
    for name, series in p.single.items():
        numbers = [n for n in range(1, series.count + 1) if p.sop_uid(series, n) in missing]
        if not numbers:
            results[f"series {name}"] = {"already_stored": True}
            continue
        print(f"  STOW series {name} ({len(numbers)} instances) ...", flush=True)
        results[f"series {name}"] = stow(root, [encode_single(p, name, n) for n in numbers])
    still_missing = len(set(p.all_sops()) - stored_sops(root, p.study.uid))
    if still_missing:
        print(f"  ! {still_missing} instances missing after STOW", file=sys.stderr)
    results["missing_after"] = still_missing
    return results


# --------------------------------------------------------------------------- HTTP


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    ms: float


class PixelClient(LeanClient):
    """LeanClient (one keep-alive http.client connection) that can send no Accept at all
    and hands back error statuses and bodies instead of raising."""

    def fetch(self, url: str, accept: str | None) -> Reply:
        headers = {} if accept is None else {"Accept": accept}
        start = time.perf_counter()
        conn, path = self._connection(url)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()  # a server closing an idle connection: retry once on a new one
            conn, path = self._connection(url)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        return Reply(response.status, response.getheader("Content-Type", ""), body, elapsed)


def error_text(reply: Reply) -> str:
    body = " ".join(reply.body[:600].decode("utf-8", "replace").split())  # one line
    return f"HTTP {reply.status}: {body[:300]}"


def content_param(content_type: str, name: str) -> str | None:
    message = email.message.Message()
    message["Content-Type"] = content_type
    value = message.get_param(name)
    return value if isinstance(value, str) else None


def split_multipart(reply: Reply) -> list[tuple[dict[str, str], bytes]]:
    """(headers, payload) of each part of a multipart/related answer."""
    boundary = content_param(reply.content_type, "boundary")
    if not boundary:
        return []
    parts = []
    for chunk in reply.body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").strip().splitlines():
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, payload.removesuffix(b"\r\n")))
    return parts


def timed_run(urls: list[str], accept: str | None, clients: int, budget: float) -> dict:
    """GET ``urls`` with ``clients`` threads (own connection each), split round-robin.

    A client stops past ``budget`` seconds (after 3 requests) or at its first error."""
    samples: list[float] = []
    received, errors = [0], []
    lock = threading.Lock()
    deadline = time.perf_counter() + budget

    def worker(chunk: list[str]) -> None:
        client = PixelClient()
        try:
            for i, url in enumerate(chunk):
                if i >= 3 and time.perf_counter() > deadline:
                    break
                reply = client.fetch(url, accept)
                if reply.status != 200:
                    errors.append(error_text(reply))
                    break
                with lock:
                    samples.append(reply.ms)
                    received[0] += len(reply.body)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc)[:300])
        finally:
            client.close()

    start = time.perf_counter()
    if clients == 1:
        worker(urls)
    else:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(worker, [urls[i::clients] for i in range(clients)]))
    wall = time.perf_counter() - start
    result = percentiles(samples) if samples else {"n": 0}
    result.update(
        clients=clients,
        seconds=round(wall, 3),
        per_s=round(len(samples) / wall, 1),
        mb_per_s=round(received[0] / MB / wall, 1),
    )
    if errors:
        result["errors"] = len(errors)
        result["first_error"] = errors[0]
    return result


def run_case(
    urls: list[str],
    accept: str | None,
    opts: Options,
    reps: int,
    check: Callable[[Reply], dict],
    optional: bool = False,
    concurrent_reps: int | None = None,
) -> dict:
    """One untimed request (warm-up, checked by ``check``), then ``reps`` requests
    sequentially and ``concurrent_reps`` (default ``reps``) spread over ``opts.clients``
    threads.

    ``urls[0]`` is the warm-up, then the sequential run, then the concurrent one
    (cycling over ``urls`` when it is shorter). An error status of the warm-up ends the
    case (``optional``: a 404/405/501 is recorded as unsupported)."""
    try:
        first = PixelClient().fetch(urls[0], accept)
    except (OSError, http.client.HTTPException) as exc:
        return {"error": repr(exc)[:300]}
    if first.status != 200:
        result = {"status": first.status, "error": error_text(first)}
        if optional and first.status in UNSUPPORTED:
            result["unsupported"] = True
        print(f"    ! {result['error'][:200]}", file=sys.stderr)
        return result
    try:
        response = check(first)
    except Exception as exc:  # noqa: BLE001 - a check must never stop the bench
        response = {"check_error": repr(exc)[:300]}
    together = reps if concurrent_reps is None else concurrent_reps
    cycle = [urls[(1 + i) % len(urls)] for i in range(reps + together)]
    return {
        "response": response,
        "sequential": timed_run(cycle[:reps], accept, 1, opts.case_seconds),
        "concurrent": timed_run(cycle[reps:], accept, opts.clients, opts.case_seconds),
    }


# --------------------------------------------------------------------------- 1. frames


def check_frames(opts: Options, frame: int) -> Callable[[Reply], dict]:
    """Describe a frames answer; compare native payloads with the frame that was sent."""
    expected = frame_bytes(opts, frame - 1)

    def check(reply: Reply) -> dict:
        parts = split_multipart(reply)
        info: dict = {"content_type": reply.content_type, "bytes": len(reply.body)}
        info["parts"] = len(parts)
        if parts:
            headers, payload = parts[0]
            info["part_type"] = headers.get("content-type")
            info["payload_bytes"] = len(payload)
            info["compression"] = round(len(expected) / max(len(payload), 1), 2)
            info["pixels_match"] = payload == expected if len(payload) == len(expected) else None
        return info

    return check


def run_frames(root: str, p: Plan, sampler: MemorySampler) -> dict:
    """Random single frames of each multi-frame copy, as stored and as explicit VR LE."""
    sampler.section("frames")
    opts, results = p.opts, {}
    for name, series in p.multiframe.items():
        for mode, accept in (("as_stored", FRAMES_AS_STORED), ("default", None)):
            rng = np.random.default_rng(zlib.crc32(f"{p.key}/{name}/{mode}".encode()))
            numbers = [int(n) for n in rng.integers(1, opts.frames + 1, 2 * opts.reps + 1)]
            url = p.instance_url(root, series)
            urls = [f"{url}/frames/{n}" for n in numbers]
            print(f"  frames {name} {mode} ...", flush=True)
            case = run_case(urls, accept, opts, opts.reps, check_frames(opts, numbers[0]))
            results[f"{name} {mode}"] = case
    return results


# --------------------------------------------------------------------------- 2. rendered


MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG"}


def check_image(media_type: str) -> Callable[[Reply], dict]:
    def check(reply: Reply) -> dict:
        info = {"content_type": reply.content_type, "bytes": len(reply.body)}
        info["magic_ok"] = reply.body.startswith(MAGIC[media_type])
        try:
            from PIL import Image

            with Image.open(io.BytesIO(reply.body)) as image:
                info["image"] = f"{image.width}x{image.height} {image.mode}"
        except Exception as exc:  # noqa: BLE001 - Pillow missing or not an image
            info["image"] = f"? {exc!r}"[:100]
        return info

    return check


def run_rendered(root: str, p: Plan, sampler: MemorySampler) -> dict:
    sampler.section("rendered")
    opts, reps = p.opts, p.opts.render_reps
    native, rle = p.single["native"], p.single["rle"]
    instances = [p.instance_url(root, native, n) for n in range(1, native.count + 1)]
    rle_instances = [p.instance_url(root, rle, n) for n in range(1, rle.count + 1)]
    rng = np.random.default_rng(zlib.crc32(f"{p.key}/rendered".encode()))
    numbers = [int(n) for n in rng.integers(1, opts.frames + 1, 2 * reps + 1)]

    def frames(name: str) -> list[str]:
        url = p.instance_url(root, p.multiframe[name])
        return [f"{url}/frames/{n}/rendered" for n in numbers]

    cases = {
        "instance jpeg": ([u + "/rendered" for u in instances], "image/jpeg"),
        "instance png": ([u + "/rendered" for u in instances], "image/png"),
        "instance jpeg (RLE)": ([u + "/rendered" for u in rle_instances], "image/jpeg"),
        "frame jpeg (native MF)": (frames("native"), "image/jpeg"),
        "frame jpeg (RLE MF)": (frames("rle"), "image/jpeg"),
        "thumbnail 128 jpeg": (
            [u + "/thumbnail" + THUMBNAIL_QUERY for u in instances],
            "image/jpeg",
        ),
    }
    results = {}
    for name, (urls, media) in cases.items():
        print(f"  {name} ...", flush=True)
        optional = name.startswith("thumbnail")
        results[name] = run_case(urls, media, opts, reps, check_image(media), optional)
    return results


# --------------------------------------------------------------------------- 3. transcoding


def check_series(p: Plan, requested: str, stored: str) -> Callable[[Reply], dict]:
    """Parts, transfer syntax of the first part and whether its pixels are the sent ones."""
    wanted = stored if requested == "*" else requested

    def check(reply: Reply) -> dict:
        parts = split_multipart(reply)
        info: dict = {"content_type": reply.content_type, "bytes": len(reply.body)}
        info["parts"] = len(parts)
        if not parts:
            return info
        ds = pydicom.dcmread(io.BytesIO(parts[0][1]))
        info["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
        info["syntax_ok"] = info["transfer_syntax"] == wanted
        expected = frame_array(p.opts, int(ds.InstanceNumber) - 1)
        try:
            info["lossless_ok"] = bool(np.array_equal(ds.pixel_array, expected))
        except Exception as exc:  # noqa: BLE001 - no decoder for what the server sent
            info["lossless_ok"] = f"? {exc!r}"[:200]
        return info

    return check


def run_transcode(root: str, p: Plan, sampler: MemorySampler) -> dict:
    """Whole-series WADO-RS asking for one transfer syntax: instances/s and output MB/s."""
    opts, results = p.opts, {}
    for copy, syntax, label in TRANSCODE_CASES:
        sampler.section(f"transcode {label}")
        series = p.single[copy]
        print(f"  series {label} ...", flush=True)
        url = p.series_url(root, series)
        check = check_series(p, syntax, SINGLE[copy])
        # warm-up + ``rounds`` sequential retrievals + one per client at the same time
        accept = DICOM_TS.format(syntax)
        case = run_case([url], accept, opts, opts.rounds, check, concurrent_reps=opts.clients)
        for run in ("sequential", "concurrent"):
            if run in case:
                rate = case[run]["n"] * series.count / case[run]["seconds"]
                case[run]["instances_per_s"] = round(rate, 1)
        results[label] = case
    return results


# --------------------------------------------------------------------------- driver


def describe(p: Plan) -> dict:
    o = p.opts
    frame = o.size * o.size * 2
    return {
        "study": p.study.uid,
        "multiframe": {name: p.sop_uid(s) for name, s in p.multiframe.items()},
        "frames": o.frames,
        "rows_columns": o.size,
        "multiframe_megabytes": round(o.frames * frame / MB, 1),
        "series_instances": o.series_instances,
        "series_megabytes": round(o.series_instances * frame / MB, 1),
    }


def run_bench(
    root: str, opts: Options, pid: int | None = None, skip_stow: bool = False, label: str = ""
) -> dict:
    root = root.rstrip("/")
    p = plan(opts)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter()
    results: dict = {"label": label or root, "url": root, "started": started}
    results["options"], results["dataset"] = asdict(opts), describe(p)
    results["client"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    results["client"]["loadavg_start"] = check_load()
    print(f"dataset: {results['dataset']}", flush=True)
    with MemorySampler(pid) as sampler:
        sampler.section("stow")
        results["stow"] = run_stow(root, p, skip_stow)
        os.sync()
        results["frames"] = run_frames(root, p, sampler)
        results["rendered"] = run_rendered(root, p, sampler)
        results["transcode"] = run_transcode(root, p, sampler)
        results["memory"] = sampler.report()
    results["client"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    return results


# --------------------------------------------------------------------------- report


def failure(case: dict) -> str | None:
    if case.get("unsupported"):
        return f"unsupported ({case['error'][:120]})"
    if "error" in case:
        return "ERROR " + case["error"][:200]
    return None


def latency(run: dict, unit: str) -> str:
    if not run.get("n"):
        return f"no answer ({run.get('first_error', '?')[:80]})"
    text = f"p50 {run['p50_ms']:>7.1f} p95 {run['p95_ms']:>7.1f} ms {run['per_s']:>7.1f} {unit}"
    return text + (f" [{run['errors']} err]" if run.get("errors") else "")


def frame_note(r: dict) -> str:
    note = f"{r.get('part_type')} {r.get('payload_bytes')} B"
    if r.get("pixels_match") is False:
        note += " PIXELS DIFFER"
    return note


def report_lines(results: dict) -> list[str]:
    d = results["dataset"]
    lines = [
        f"pixel bench: {results['label']} ({results['url']})",
        f"  multi-frame {d['frames']} x {d['rows_columns']}^2 ({d['multiframe_megabytes']} MB "
        f"native, copies {', '.join(d['multiframe'])}); series {d['series_instances']} "
        f"instances ({d['series_megabytes']} MB native)",
    ]
    missing = results["stow"].get("missing_after") or results["stow"].get("missing")
    if missing:
        lines.append(f"  WARNING: {missing} instances of the dataset are not on the server")
    for name, r in results["stow"].items():
        if isinstance(r, dict) and "seconds" in r:
            lines.append(
                f"  STOW {name:<18} {r['mb_per_s']:>7.1f} MB/s ({r['megabytes']} MB in "
                f"{r['seconds']}s){' ' + r['error'] if 'error' in r else ''}"
            )
        elif isinstance(r, dict) and "error" in r:
            lines.append(f"  STOW {name:<18} ERROR {r['error']}")
    sections = (("frames", "fr/s", frame_note), ("rendered", "img/s", image_note))
    for section, unit, note in sections:
        lines.append(f"  {section}: sequential | {results['options']['clients']} clients")
        for name, case in results[section].items():
            bad = failure(case)
            if bad:
                lines.append(f"    {name:<24} {bad}")
                continue
            lines.append(
                f"    {name:<24} {latency(case['sequential'], unit)} | "
                f"{latency(case['concurrent'], unit)}  [{note(case['response'])}]"
            )
    lines.append("  transcoding (series retrieve): sequential | concurrent")
    for name, case in results["transcode"].items():
        bad = failure(case)
        if bad:
            lines.append(f"    {name:<28} {bad}")
            continue
        cells = []
        for run in ("sequential", "concurrent"):
            r = case[run]
            cell = f"{r['instances_per_s']:>7.1f} inst/s {r['mb_per_s']:>7.1f} MB/s"
            if r.get("errors"):
                cell += f" [{r['errors']} of {r['n'] + r['errors']} failed: {r['first_error']}]"
            cells.append(cell)
        lines.append(f"    {name:<28} {' | '.join(cells)}  [{series_note(case['response'])}]")
    memory = results["memory"]
    if memory:
        lines.append(
            f"  RSS peak {memory['peak_mb']:.0f} MB (start {memory['start_mb']:.0f} MB); "
            f"PSS peak {memory['peak_pss_mb']:.0f} MB; by phase {memory['peak_by_phase_mb']}"
        )
    lines.append(
        f"  total {results['total_seconds']}s; load average "
        f"{results['client']['loadavg_start']} -> {results['client']['loadavg_end']}"
    )
    return lines


def image_note(r: dict) -> str:
    return f"{r.get('content_type')} {r.get('image')} {r.get('bytes')} B" + (
        "" if r.get("magic_ok") else " BAD MAGIC"
    )


def series_note(r: dict) -> str:
    note = f"{r.get('parts')} parts, ts {r.get('transfer_syntax')}"
    if r.get("syntax_ok") is False:
        note += " NOT AS ASKED"
    if r.get("lossless_ok") is not True:
        note += f" pixels: {r.get('lossless_ok')}"
    return note


# --------------------------------------------------------------------------- compare


Value = float | str | None  # a number, "unsupp."/"HTTP 500" for a failed case, None if absent


def metric_rows(results: dict) -> list[tuple[str, Value, bool]]:
    """(metric, value, higher is better); a failed case gives its status as a string."""
    rows: list[tuple[str, Value, bool]] = []

    def get(case: dict, run: str, key: str) -> Value:
        if case.get("unsupported"):
            return "unsupp."
        if "error" in case:
            return f"HTTP {case['status']}" if "status" in case else "error"
        if case.get(run, {}).get("errors"):
            return f"{case[run]['errors']} err"  # a rate over the survivors would mislead
        return case.get(run, {}).get(key) or None

    for section, unit in (("frames", "fr/s"), ("rendered", "img/s")):
        for name, case in results.get(section, {}).items():
            rows.append((f"{section} {name} p50 ms", get(case, "sequential", "p50_ms"), False))
            rows.append((f"{section} {name} p95 ms", get(case, "sequential", "p95_ms"), False))
            rows.append((f"{section} {name} {unit}", get(case, "sequential", "per_s"), True))
            rows.append((f"{section} {name} 4x {unit}", get(case, "concurrent", "per_s"), True))
    for name, case in results.get("transcode", {}).items():
        rows.append((f"series {name} inst/s", get(case, "sequential", "instances_per_s"), True))
        rows.append((f"series {name} MB/s", get(case, "sequential", "mb_per_s"), True))
        rows.append((f"series {name} 4x MB/s", get(case, "concurrent", "mb_per_s"), True))
    memory = results.get("memory") or {}
    rows.append(("peak RSS MB", memory.get("peak_mb"), False))
    rows.append(("peak PSS MB", memory.get("peak_pss_mb"), False))
    return rows


def comparison_lines(ours: dict, theirs: dict) -> list[str]:
    """Side-by-side table of two result files; ratio > 1 means ours is better."""
    from bench.compare import cell, ratio

    def shown(value: Value) -> str:
        return f"{value:>10}" if isinstance(value, str) else cell(value)

    def number(value: Value) -> float | None:
        return None if isinstance(value, str) else value

    lines = [
        f"ours:   {ours['label']} ({ours['url']})",
        f"theirs: {theirs['label']} ({theirs['url']})",
    ]
    if ours.get("options") != theirs.get("options"):
        lines.append("WARNING: options differ")
    lines.append(f"{'metric':<46}{'ours':>10}{'theirs':>10}{'ratio':>8}  (>1: ours better)")
    other = {name: value for name, value, _ in metric_rows(theirs)}
    for name, value, higher in metric_rows(ours):
        r = ratio(number(value), number(other.get(name)), higher)
        text = "-" if r is None else f"{r:.2f}"
        lines.append(f"{name:<46}{shown(value)}{shown(other.get(name))}{text:>8}")
    return lines


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "url", nargs="?", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web"
    )
    parser.add_argument("--pid", type=int, help="server master pid: sample RSS/PSS of its tree")
    parser.add_argument("--quick", action="store_true", help="small dataset, < 1 minute")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--label", help="server name stored in the results")
    parser.add_argument("--skip-stow", action="store_true", help="store nothing (data present)")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("OURS", "THEIRS"),
        help="print two result files side by side (no run)",
    )
    parser.add_argument("--no-jpegls", action="store_true", help="no JPEG-LS multi-frame copy")
    for f in fields(Options):
        if f.type in ("bool", bool):
            continue
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=None,
            help=f"default {f.default} (quick {getattr(QUICK, f.name)})",
        )
    args = parser.parse_args(argv)
    if bool(args.url) == bool(args.compare):
        parser.error("give either a DICOMweb root URL or --compare OURS.json THEIRS.json")
    return args


def options_from(args: argparse.Namespace) -> Options:
    preset = QUICK if args.quick else FULL
    given = {k: v for k, v in vars(args).items() if k in asdict(preset) and v is not None}
    if args.no_jpegls:
        given["jpegls"] = False
    return replace(preset, **given)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.compare:
        ours, theirs = (json.load(open(path)) for path in args.compare)
        print("\n".join(comparison_lines(ours, theirs)))
        return None
    results = run_bench(args.url, options_from(args), args.pid, args.skip_stow, args.label)
    publish(results, report_lines(results), args.json)
    return results


if __name__ == "__main__":
    main()
