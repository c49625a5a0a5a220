"""DICOMweb benchmark: STOW-RS, QIDO-RS, metadata and WADO-RS against any DICOMweb root.

Usage::

    python -m bench.dicomweb_bench http://127.0.0.1:8042/dicom-web --pid PID --json out.json
    python -m bench.dicomweb_bench http://127.0.0.1:8043/dicom-web --quick

The dataset is generated in code (deterministic UIDs: reruns produce the same instances),
one instance at a time, and stored once through four STOW phases; the server must start
empty (or use ``--skip-stow`` to re-measure reads on a server already loaded by a previous
run with the same options). It prints numbers; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.client
import io
import json
import os
import platform
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

import numpy as np
import psutil
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root, fixed: same UIDs on every run
DICOM_JSON = "application/dicom+json"
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
TIMEOUT = (10, 900)  # (connect, read) seconds for every request
READ_TIMEOUT = 600.0  # seconds, for http.client (a single number)
MB = 1e6
PHASES = 4  # STOW phases: 1x1, 1xbatch, Nx1, Nxbatch

FAMILIES = "DOE SMITH DOE MARTIN DOE-SMITH NGUYEN DOEBLER GARCIA MUELLER ROSSI".split()
GIVEN = ("JOHN", "JANE", "JOHN^A", "MARY", "PETER^J", "ANNA", "JAMES", "LINDA", "JOHNNY")
STUDY_KINDS = (
    ("CT CHEST W/O CONTRAST", "CHEST"),
    ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
    ("CT HEAD W/O CONTRAST", "HEAD"),
    ("CT CHEST ABDOMEN PELVIS", "CHEST"),
    ("CT ANGIO CHEST", "CHEST"),
)
SERIES_KINDS = ("AXIAL 2.5MM", "AXIAL 1.25MM SOFT TISSUE", "AXIAL 1.25MM LUNG", "CORONAL MPR")
DATE_RANGE = ("20210101", "20221231")  # QIDO StudyDate range case
NAME_QUERY = "DOE*"  # QIDO PatientName wildcard case


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """Dataset shape and measurement effort; ``FULL`` and ``QUICK`` are the presets."""

    studies: int = 40
    series_per_study: int = 3
    instances: int = 2400  # total; the first series of study 0 gets ``big_series`` of them
    big_series: int = 100
    size: int = 512  # rows = columns, 16-bit pixels
    batch: int = 50  # instances per request in the batched STOW phases
    clients: int = 4  # threads in the concurrent STOW phases
    reps: int = 30  # QIDO repetitions per case
    meta_reps: int = 20  # metadata requests per level (cycling over several series/studies)
    wado_studies: int = 10  # distinct studies retrieved with WADO-RS ...
    wado_rounds: int = 3  # ... each this many times
    seed: str = "dicomweb-bench"  # entropy of every UID and of the pixel noise


FULL = Options()
QUICK = Options(
    studies=5,
    series_per_study=1,
    instances=200,
    size=128,
    reps=10,
    meta_reps=6,
    wado_studies=2,
    wado_rounds=1,
)


# --------------------------------------------------------------------------- dataset plan


@dataclass(frozen=True)
class SeriesPlan:
    study: int
    number: int  # 1-based SeriesNumber
    count: int  # instances in the series
    uid: str


@dataclass(frozen=True)
class StudyPlan:
    index: int
    uid: str
    patient_name: str
    patient_id: str
    date: str  # YYYYMMDD
    accession: str
    description: str
    body_part: str
    series: tuple[SeriesPlan, ...]

    @property
    def count(self) -> int:
        return sum(s.count for s in self.series)


@dataclass(frozen=True)
class InstanceRef:
    study: StudyPlan
    series: SeriesPlan
    number: int  # 1-based InstanceNumber


def make_uid(seed: str, *parts: object) -> str:
    """Deterministic UID: same seed and parts give the same UID on every run."""
    # pydicom concatenates entropy sources, so ("1", "11") and ("11", "1") would collide:
    # join with a separator to keep every (study, series, instance) distinct.
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=["/".join([seed, *map(str, parts)])]))


def series_sizes(opts: Options) -> list[list[int]]:
    """Instances per series per study: series 1 of study 0 is the big one, the rest even."""
    total_series = opts.studies * opts.series_per_study
    rest, others = opts.instances - opts.big_series, total_series - 1
    if opts.big_series < 1 or others < 0 or rest < others or (others == 0 and rest):
        raise ValueError(f"cannot lay out {opts.instances} instances with {opts}")
    base, extra = divmod(rest, others) if others else (0, 0)
    flat = [opts.big_series] + [base + (i < extra) for i in range(others)]
    k = opts.series_per_study
    return [flat[i * k : (i + 1) * k] for i in range(opts.studies)]


def study_date(index: int, studies: int) -> str:
    """Dates spread evenly over 2020-2024, with a little deterministic jitter."""
    span = (dt.date(2024, 12, 31) - dt.date(2020, 1, 1)).days
    offset = min(span, index * span // max(studies, 1) + (index * 37) % 11)
    return (dt.date(2020, 1, 1) + dt.timedelta(days=offset)).strftime("%Y%m%d")


def plan_study(opts: Options, index: int, sizes: list[int]) -> StudyPlan:
    """Patient and study attributes of study ``index`` (one distinct patient per study)."""
    uid = make_uid(opts.seed, "study", index)
    series = tuple(
        SeriesPlan(index, n + 1, count, make_uid(opts.seed, "series", index, n))
        for n, count in enumerate(sizes)
    )
    description, body_part = STUDY_KINDS[index % len(STUDY_KINDS)]
    return StudyPlan(
        index=index,
        uid=uid,
        patient_name=f"{FAMILIES[index % len(FAMILIES)]}^{GIVEN[index * 7 % len(GIVEN)]}",
        patient_id=f"BENCH-P{index:05d}",
        date=study_date(index, opts.studies),
        accession=f"BA{zlib.crc32(opts.seed.encode()) % 10000:04d}{index:06d}",
        description=description,
        body_part=body_part,
        series=series,
    )


def plan_dataset(opts: Options) -> list[StudyPlan]:
    """The whole dataset as plans (a few KB); instances are encoded on demand."""
    return [plan_study(opts, i, sizes) for i, sizes in enumerate(series_sizes(opts))]


def iter_instances(studies: Iterable[StudyPlan]) -> Iterator[InstanceRef]:
    for study in studies:
        for series in study.series:
            for number in range(1, series.count + 1):
                yield InstanceRef(study, series, number)


# --------------------------------------------------------------------------- encoding


@functools.lru_cache(maxsize=4)
def noise_pool(size: int, seed: str, planes: int = 8) -> tuple[np.ndarray, ...]:
    """A few planes of uniform noise in [0, 48), reused across instances (cheap per instance)."""
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    return tuple(rng.integers(0, 48, size=(size, size), dtype=np.uint16) for _ in range(planes))


@functools.lru_cache(maxsize=64)
def study_base(size: int, index: int) -> np.ndarray:
    """Smooth 12-bit image per study: gradient + round 'body' + an 'organ' (compressible)."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = 150 * x + 80 * y
    radius = np.hypot(x - 0.5, y - 0.5)
    image += np.where(radius < 0.36 + 0.03 * np.sin(index), 1000, 0)
    image += np.where(np.hypot(x - 0.4, y - 0.45) < 0.08 + 0.01 * (index % 5), 250, 0)
    return image.astype(np.uint16)


def pixel_bytes(ref: InstanceRef, size: int, seed: str) -> bytes:
    """Pixel data of one instance: the study's image plus one of the noise planes."""
    pool = noise_pool(size, seed)
    plane = pool[(ref.series.number * 31 + ref.number) % len(pool)]
    return np.add(study_base(size, ref.study.index), plane, dtype=np.uint16).tobytes()


def file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def set_patient_study(ds: Dataset, study: StudyPlan) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = f"{1940 + study.index % 50}0{1 + study.index % 9}15"
    ds.PatientSex = "MF"[study.index % 2]
    ds.StudyInstanceUID = study.uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + study.index % 10:02d}1530"
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description
    ds.StudyID = str(study.index + 1)
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.InstitutionName = "BENCH GENERAL HOSPITAL"


def set_series_instance(ds: Dataset, ref: InstanceRef, opts: Options) -> None:
    series = ref.series
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = SERIES_KINDS[(series.number - 1) % len(SERIES_KINDS)]
    ds.Modality = "CT"
    ds.Manufacturer = "BENCH"
    ds.BodyPartExamined = ref.study.body_part
    ds.FrameOfReferenceUID = make_uid(opts.seed, "frame", ref.study.index)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = make_uid(opts.seed, "instance", ref.study.index, series.number, ref.number)
    ds.InstanceNumber = ref.number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-250, -250, -1.25 * ref.number]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = -1.25 * ref.number
    ds.SliceThickness = 1.25
    ds.KVP = 120


def set_image(ds: Dataset, size: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [round(500 / size, 4)] * 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400


def encode_header(ref: InstanceRef, opts: Options) -> bytes:
    """Part 10 file up to (and including) the Pixel Data element header; pixels follow."""
    ds = Dataset()
    set_patient_study(ds, ref.study)
    set_series_instance(ds, ref, opts)
    set_image(ds, opts.size)
    ds.file_meta = file_meta(ds.SOPInstanceUID)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    pixel_length = opts.size * opts.size * 2
    return buffer.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_length)


# --------------------------------------------------------------------------- STOW-RS


Part = tuple[InstanceRef, bytes]  # an instance and its encoded header (~1.4 KB)


def encode_parts(refs: list[InstanceRef], opts: Options) -> list[Part]:
    """Encode the headers of a whole phase before it is timed (pydicom needs ~3 ms each:
    timing it would measure the client); pixel data (99% of the bytes) stays lazy."""
    return [(ref, encode_header(ref, opts)) for ref in refs]


class MultipartBody:
    """Streamed multipart/related body with a known length (so no chunked encoding):
    each part's pixel data is only generated while the request is being sent."""

    def __init__(self, parts: list[Part], opts: Options):
        self.parts, self.opts = parts, opts
        self.boundary = uuid.uuid4().hex
        self.part_head = f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        self.tail = f"--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    def __len__(self) -> int:
        pixels = self.opts.size * self.opts.size * 2
        per_part = len(self.part_head) + pixels + 2  # + CRLF after the part
        return len(self.parts) * per_part + sum(len(h) for _, h in self.parts) + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        for ref, header in self.parts:
            yield self.part_head + header
            yield pixel_bytes(ref, self.opts.size, self.opts.seed)
            yield b"\r\n"
        yield self.tail


def stored_count(response: requests.Response, sent: int) -> int:
    """Instances the server reports as stored (ReferencedSOPSequence), or all on 2xx non-JSON."""
    if not response.ok:
        return 0
    try:
        body = response.json()
    except ValueError:
        return sent
    return len(body.get("00081199", {}).get("Value", []))


class StowClient:
    """Sends batches from several threads, one keep-alive session per thread."""

    def __init__(self, root: str, opts: Options):
        self.root, self.opts = root, opts
        self.local = threading.local()
        self.errors: list[str] = []

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def send(self, parts: list[Part]) -> int:
        """POST one batch; return how many instances the server stored."""
        body = MultipartBody(parts, self.opts)
        headers = {"Content-Type": body.content_type, "Accept": DICOM_JSON}
        try:
            response = self.session().post(
                f"{self.root}/studies", data=body, headers=headers, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            self.errors.append(repr(exc))
            return 0
        if not response.ok:
            self.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return stored_count(response, len(parts))


def stow_phase(root: str, opts: Options, studies: list[StudyPlan], clients: int, per_req: int):
    """Store ``studies`` with ``clients`` threads and ``per_req`` instances per request."""
    parts = encode_parts(list(iter_instances(studies)), opts)
    batches = [parts[i : i + per_req] for i in range(0, len(parts), per_req)]
    client = StowClient(root, opts)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        stored = sum(pool.map(client.send, batches))
    seconds = time.perf_counter() - start
    size = opts.size * opts.size * 2 * len(parts)
    return {
        "clients": clients,
        "per_request": per_req,
        "instances": len(parts),
        "stored": stored,
        "requests": len(batches),
        "seconds": round(seconds, 3),
        "instances_per_s": round(len(parts) / seconds, 1),
        "mb_per_s": round(size / MB / seconds, 1),
        "errors": client.errors[:3],
    }


def split_phases(studies: list[StudyPlan]) -> list[list[StudyPlan]]:
    """Contiguous, near-equal chunks of studies, one per STOW phase."""
    bounds = np.linspace(0, len(studies), PHASES + 1).round().astype(int)
    return [studies[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def run_stow(root: str, opts: Options, studies: list[StudyPlan], sampler) -> dict:
    shapes = [(1, 1), (1, opts.batch), (opts.clients, 1), (opts.clients, opts.batch)]
    results = {}
    for (clients, per_req), chunk in zip(shapes, split_phases(studies), strict=True):
        name = f"{clients}x{per_req}"
        os.sync()  # flush earlier writes (previous phase/run) so they are not billed here
        sampler.section(f"stow {name}")
        print(f"  STOW {name}: {sum(s.count for s in chunk)} instances ...", flush=True)
        results[name] = stow_phase(root, opts, chunk, clients, per_req)
    return results


# --------------------------------------------------------------------------- reads


def percentiles(samples_ms: list[float]) -> dict:
    p50, p95 = np.percentile(samples_ms, [50, 95])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "n": len(samples_ms)}


class LeanClient:
    """A keep-alive ``http.client`` connection for the timed reads.

    ``requests`` adds about a millisecond of client-side work per request on this
    machine, as much as a whole metadata answer takes a fast server: the timed reads
    use the standard library's connection so the figures measure the servers, not the
    client library. Only the request and the body transfer are timed; decoding the
    JSON (to count results) happens after the clock stops.
    """

    def __init__(self) -> None:
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        parts = urlsplit(url)
        if self.conn is None:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=READ_TIMEOUT)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.conn, path

    def open(self, url: str, accept: str) -> http.client.HTTPResponse:
        conn, path = self._connection(url)
        try:
            conn.request("GET", path, headers={"Accept": accept})
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            self.close()  # a server closing an idle connection: retry once on a new one
            conn, path = self._connection(url)
            conn.request("GET", path, headers={"Accept": accept})
            response = conn.getresponse()
        if response.status >= 400:
            response.read()
            raise requests.HTTPError(f"{response.status} {response.reason} for url: {url}")
        return response

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def timed_get(session: LeanClient, url: str) -> tuple[float, object]:
    """GET a DICOM JSON resource; return (milliseconds, decoded JSON). Raises on HTTP errors."""
    start = time.perf_counter()
    body = session.open(url, DICOM_JSON).read()
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, json.loads(body) if body else []


def measure(session: LeanClient, urls: list[str], reps: int) -> dict:
    """Time ``reps`` GETs cycling over ``urls`` (after one untimed warm-up of each)."""
    for url in urls:
        timed_get(session, url)
    samples, body = [], None
    for i in range(reps):
        elapsed, body = timed_get(session, urls[i % len(urls)])
        samples.append(elapsed)
    return {**percentiles(samples), "results": len(body) if isinstance(body, list) else None}


def guarded(fn: Callable[[], dict]) -> dict:
    """Run one case; a failing server is reported in the results instead of aborting."""
    try:
        return fn()
    except (requests.RequestException, ValueError) as exc:
        print(f"    ! {exc}", file=sys.stderr)
        return {"error": str(exc)[:300]}


def big_series(studies: list[StudyPlan]) -> SeriesPlan:
    return max((s for st in studies for s in st.series), key=lambda s: s.count)


def qido_cases(root: str, studies: list[StudyPlan]) -> dict[str, tuple[str, int]]:
    """name -> (url, expected number of results).

    Query strings are written as is, not percent-encoded: ``*`` and ``^`` are legal in a
    query, and Orthanc 1.10 does not decode QIDO arguments (``DOE%2A`` matches nothing)."""
    big = big_series(studies)
    low, high = DATE_RANGE
    prefix = NAME_QUERY.rstrip("*")
    return {
        "all_studies_limit100": (f"{root}/studies?limit=100", min(100, len(studies))),
        "patient_name_wildcard": (
            f"{root}/studies?PatientName={NAME_QUERY}",
            sum(s.patient_name.startswith(prefix) for s in studies),
        ),
        "study_date_range": (
            f"{root}/studies?StudyDate={low}-{high}",
            sum(low <= s.date <= high for s in studies),
        ),
        "series_instances_100": (
            f"{root}/studies/{studies[big.study].uid}/series/{big.uid}/instances",
            big.count,
        ),
    }


def run_qido(root: str, opts: Options, studies: list[StudyPlan], sampler) -> dict:
    sampler.section("qido")
    session, results = LeanClient(), {}
    for name, (url, expected) in qido_cases(root, studies).items():
        results[name] = guarded(lambda u=url: measure(session, [u], opts.reps))
        results[name]["expected"] = expected
    return results


def spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them if fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def run_metadata(root: str, opts: Options, studies: list[StudyPlan], sampler) -> dict:
    """Series then study metadata, cycling over up to 10 series / 5 studies (not the big one)."""
    big = big_series(studies)
    series = spread([s for st in studies for s in st.series if s != big], 10)
    series_urls = [f"{root}/studies/{studies[s.study].uid}/series/{s.uid}/metadata" for s in series]
    study_urls = [f"{root}/studies/{st.uid}/metadata" for st in spread(studies[1:], 5)]
    session = LeanClient()
    sampler.section("metadata")
    return {
        "series": guarded(lambda: measure(session, series_urls, opts.meta_reps)),
        "study": guarded(lambda: measure(session, study_urls, max(2, opts.meta_reps // 2))),
    }


def retrieve_study(session: LeanClient, url: str) -> tuple[int, float]:
    """Stream one WADO-RS study retrieval; return (bytes received, seconds)."""
    start, received = time.perf_counter(), 0
    buffer = memoryview(bytearray(1 << 20))
    response = session.open(url, WADO_ACCEPT)
    while count := response.readinto(buffer):
        received += count
    return received, time.perf_counter() - start


def wado_studies(session, root: str, chosen: list[StudyPlan], opts: Options) -> dict:
    """Retrieve each chosen study ``wado_rounds`` times; aggregate MB/s over all of them."""
    received, seconds, pixels = 0, [], 0
    for study in chosen * opts.wado_rounds:
        size, elapsed = retrieve_study(session, f"{root}/studies/{study.uid}")
        received, pixels = received + size, pixels + study.count * opts.size**2 * 2
        seconds.append(elapsed)
    if received < pixels:
        print(f"    ! WADO got {received} bytes, less than the {pixels} of pixels", file=sys.stderr)
    return {
        "retrievals": len(seconds),
        "instances": sum(s.count for s in chosen) * opts.wado_rounds,
        "bytes": received,
        "seconds": round(sum(seconds), 3),
        "mb_per_s": round(received / MB / sum(seconds), 1),
        "p50_study_s": round(float(np.median(seconds)), 3),
    }


def run_wado(root: str, opts: Options, studies: list[StudyPlan], sampler) -> dict:
    """WADO-RS of whole studies of ordinary size (not the one holding the big series)."""
    sampler.section("wado")
    chosen = spread(studies[1:] or studies, opts.wado_studies)
    session = LeanClient()

    def warm_then_measure() -> dict:
        retrieve_study(session, f"{root}/studies/{chosen[0].uid}")  # connection, caches
        return wado_studies(session, root, chosen, opts)

    return {"study": guarded(warm_then_measure)}


# --------------------------------------------------------------------------- memory


@dataclass
class MemorySampler:
    """Samples RSS and PSS of ``pid`` + all its descendants every ``interval`` s.

    RSS of forked workers counts shared pages once per process (an upper bound); PSS
    splits each shared page between the processes sharing it, so the PSS sum is the
    physical memory the whole process tree uses. For a single process both agree."""

    pid: int | None
    interval: float = 0.1
    start_mb: float | None = None
    peak_mb: float = 0.0
    peak_pss_mb: float = 0.0
    peaks: dict[str, float] = field(default_factory=dict)
    current: str = "start"
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> float:
        """Total RSS in MB; vanished processes (worker recycling) are skipped."""
        return self._rss()

    def _rss(self) -> float:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20

    def sample_both(self) -> tuple[float, float]:
        """Total (RSS, PSS) in MB."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0, 0.0
        rss = pss = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except psutil.NoSuchProcess:
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
        return rss / 2**20, pss / 2**20

    def record(self) -> None:
        # PSS needs /proc/<pid>/smaps, which costs the server CPU time: sample it once a
        # second, RSS (cheap) every interval, so the measurement barely disturbs the run.
        self._count = getattr(self, "_count", 0) + 1
        if self._count % 10 == 1:
            value, pss = self.sample_both()
            self.peak_pss_mb = max(self.peak_pss_mb, pss)
        else:
            value = self._rss()
        self.peak_mb = max(self.peak_mb, value)
        self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), value)

    def section(self, name: str) -> None:
        """Attribute the following samples to phase ``name``."""
        self.current = name

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.record()

    def __enter__(self) -> MemorySampler:
        if self.pid is not None:
            self.start_mb = self.sample()
            threading.Thread(target=self.run, daemon=True, name="rss-sampler").start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()

    def report(self) -> dict | None:
        if self.pid is None:
            return None
        return {
            "pid": self.pid,
            "start_mb": round(self.start_mb or 0.0, 1),
            "peak_mb": round(self.peak_mb, 1),
            "peak_pss_mb": round(self.peak_pss_mb, 1),
            "end_mb": round(self.sample(), 1),
            "peak_by_phase_mb": {k: round(v, 1) for k, v in self.peaks.items()},
        }


# --------------------------------------------------------------------------- driver


def existing_studies(root: str) -> int:
    """Number of studies already on the server (fails fast if the root does not answer)."""
    response = requests.get(
        f"{root}/studies?limit=1", headers={"Accept": DICOM_JSON}, timeout=TIMEOUT
    )
    response.raise_for_status()
    return len(response.json()) if response.content else 0


def check_load() -> float:
    """1-minute load average; warn when other work competes with the server for CPU."""
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: the machine is busy, "
            "numbers will be noisy",
            file=sys.stderr,
        )
    return round(load, 2)


def describe(opts: Options, studies: list[StudyPlan]) -> dict:
    count = sum(s.count for s in studies)
    return {
        "studies": len(studies),
        "series": sum(len(s.series) for s in studies),
        "instances": count,
        "largest_series": big_series(studies).count,
        "rows_columns": opts.size,
        "megabytes": round(count * opts.size**2 * 2 / MB, 1),
    }


def run_bench(
    root: str, opts: Options, pid: int | None = None, skip_stow: bool = False, label: str = ""
) -> dict:
    """Run every section against DICOMweb ``root``; return the results as a dict."""
    root = root.rstrip("/")
    studies = plan_dataset(opts)
    if not skip_stow and existing_studies(root):
        raise SystemExit(f"{root} already holds studies: use an empty server or --skip-stow")
    started, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
    results = {"label": label or root, "url": root}
    results["started"] = started.isoformat(timespec="seconds")
    results["options"], results["dataset"] = asdict(opts), describe(opts, studies)
    results["client"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    results["client"]["loadavg_start"] = check_load()
    print(f"dataset: {results['dataset']}", flush=True)
    with MemorySampler(pid) as sampler:
        results["stow"] = {} if skip_stow else run_stow(root, opts, studies, sampler)
        os.sync()
        print("  QIDO ...", flush=True)
        results["qido"] = run_qido(root, opts, studies, sampler)
        print("  metadata ...", flush=True)
        results["metadata"] = run_metadata(root, opts, studies, sampler)
        print("  WADO-RS ...", flush=True)
        results["wado"] = run_wado(root, opts, studies, sampler)
        results["memory"] = sampler.report()
    results["client"]["loadavg_end"] = round(os.getloadavg()[0], 2)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    return results


# --------------------------------------------------------------------------- report


def report_lines(results: dict) -> list[str]:
    """Compact human-readable table of one run."""
    lines = [f"DICOMweb bench: {results['label']} ({results['url']})", f"  {results['dataset']}"]
    for name, r in results["stow"].items():
        bad = "" if r["stored"] == r["instances"] else f"  STORED {r['stored']}/{r['instances']}"
        lines.append(
            f"  STOW {name:<7} {r['instances_per_s']:>9.1f} inst/s "
            f"{r['mb_per_s']:>8.1f} MB/s ({r['instances']} in {r['seconds']}s){bad}"
        )
    for name, r in [
        *results["qido"].items(),
        *(("meta " + k, v) for k, v in results["metadata"].items()),
    ]:
        lines.append(f"  {name:<26} " + latency_cell(r))
    lines.append("  WADO study " + wado_cell(results["wado"]["study"]))
    memory = results["memory"]
    if memory:
        lines.append(
            f"  RSS peak {memory['peak_mb']:.0f} MB (start {memory['start_mb']:.0f} MB, "
            f"end {memory['end_mb']:.0f} MB); PSS peak {memory.get('peak_pss_mb', 0):.0f} MB"
        )
    client = results["client"]
    lines.append(
        f"  total {results['total_seconds']}s; load average {client['loadavg_start']} "
        f"-> {client['loadavg_end']} on {client['cpus']} CPUs"
    )
    return lines


def wado_cell(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    return f"{r['mb_per_s']:.1f} MB/s ({r['bytes'] / MB:.0f} MB in {r['seconds']}s)"


def latency_cell(r: dict) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    expected = r.get("expected")
    check = "" if expected in (None, r["results"]) else f" EXPECTED {expected}"
    return (
        f"p50 {r['p50_ms']:>8.1f} ms  p95 {r['p95_ms']:>8.1f} ms  ({r['results']} results){check}"
    )


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    parser.add_argument("--pid", type=int, help="server master pid: sample RSS of it + children")
    parser.add_argument("--quick", action="store_true", help="small dataset for smoke runs")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--label", help="server name stored in the results, e.g. 'Orthanc 1.10.1'")
    parser.add_argument("--skip-stow", action="store_true", help="data already stored: reads only")
    for name, default in asdict(FULL).items():  # --studies, --size, --reps, ... override presets
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            default=None,
            help=f"default {default} (quick {getattr(QUICK, name)})",
        )
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    """Preset (FULL or QUICK) with the explicitly given options applied on top."""
    preset = QUICK if args.quick else FULL
    given = {k: v for k, v in vars(args).items() if k in asdict(preset) and v is not None}
    return replace(preset, **given)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = run_bench(args.url, options_from(args), args.pid, args.skip_stow, args.label)
    publish(results, report_lines(results), args.json)
    return results


def publish(results: dict, lines: list[str], path: str | None) -> None:
    """Print the report; save the results as JSON when a path is given."""
    print("\n".join(lines))
    if path:
        with open(path, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
        print(f"results written to {path}")


if __name__ == "__main__":
    main()
