"""QIDO latency at scale, measured on the ``Index`` directly (run by hand; not a test).

Fills an index with synthetic instances, then prints p50/p95 of ``index.search`` for the
QIDO cases of the HTTP benchmark. Queries are built by the application's own parser
(:func:`app.dicom.query.parse_qido`), so they are exactly what a QIDO-RS request passes to the
index; over HTTP, add about 1 ms (routing, JSON encoding, the socket).

    python -m bench.qido_scale sqlite /tmp/qido-sqlite --fresh
    createdb -h 127.0.0.1 -U postgres qido_scale
    python -m bench.qido_scale postgres "host=127.0.0.1 user=postgres dbname=qido_scale" --fresh

The default dataset is 2,000 studies x 5 series x 10 instances = 100,000 instances, stored
with ``add_instance`` (the STOW path, one transaction per instance) by ``--workers``
processes; the fill time is that ingest rate. Records come from the contract tests' builder
(:func:`tests.contract.records.make_record`) with realistic attributes, and their metadata is
padded with a typical CT header (about 3 KB of DICOM JSON per instance). One patient per
study, names from a list where ``DOE*`` matches about 6 % of the studies, study dates over
2020-2024, modalities CT 50 % / MR 30 % / CR 10 % / US 10 %.

After the fill, PostgreSQL gets ``VACUUM ANALYZE`` (what autovacuum does in production
shortly after a bulk load); SQLite is left as the application leaves it (no ANALYZE).
``--fresh`` deletes the SQLite file, or DROPs the index tables of the PostgreSQL database.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.dicom.query import parse_qido
from backends.base import Index, InstanceRecord, Level, Query
from tests.contract import records
from tests.contract.records import element, make_record, tag_vr

# The builder looks every keyword up in pydicom's dictionary; cached, a record costs ~0.2 ms.
records.tag_vr = functools.lru_cache(maxsize=None)(records.tag_vr)

UID_ROOT = "1.2.826.0.1.3680043.8.498.77."
FAMILIES = ("SMITH JOHNSON WILLIAMS BROWN JONES GARCIA MILLER DAVIS RODRIGUEZ MARTINEZ"
            " HERNANDEZ LOPEZ GONZALEZ WILSON ANDERSON THOMAS TAYLOR MOORE JACKSON MARTIN LEE"
            " PEREZ THOMPSON WHITE HARRIS SANCHEZ CLARK RAMIREZ LEWIS ROBINSON WALKER YOUNG"
            " ALLEN KING WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON BAKER HALL"
            " MUELLER ROSSI DOE DOE-SMITH DOEBLER").split()
GIVEN = ("JOHN", "JANE", "MARY", "PETER^J", "ANNA", "JAMES", "LINDA", "JOHNNY", "ROBERT")
MODALITIES = (("CT", "1.2.840.10008.5.1.4.1.1.2", 512), ("CT", "1.2.840.10008.5.1.4.1.1.2", 512),
              ("CT", "1.2.840.10008.5.1.4.1.1.2", 512), ("CT", "1.2.840.10008.5.1.4.1.1.2", 512),
              ("CT", "1.2.840.10008.5.1.4.1.1.2", 512), ("MR", "1.2.840.10008.5.1.4.1.1.4", 256),
              ("MR", "1.2.840.10008.5.1.4.1.1.4", 256), ("MR", "1.2.840.10008.5.1.4.1.1.4", 256),
              ("CR", "1.2.840.10008.5.1.4.1.1.1", 2048), ("US", "1.2.840.10008.5.1.4.1.1.6.1", 600))
BODY_PARTS = ("CHEST", "ABDOMEN", "HEAD", "PELVIS", "SPINE", "KNEE")
# A typical CT header beyond the indexed attributes: only in the metadata text.
PADDING = {
    "Manufacturer": "ACME Medical", "ManufacturerModelName": "Scanner 9000",
    "StationName": "CT01", "SoftwareVersions": "VA20A", "DeviceSerialNumber": "123456",
    "InstitutionAddress": "1 Hospital Road, Springfield", "OperatorsName": "Tech^Terry",
    "ProtocolName": "ROUTINE", "ScanOptions": "HELICAL_CT", "KVP": "120",
    "SliceThickness": "2.5", "SpacingBetweenSlices": "2.5", "DataCollectionDiameter": "500",
    "ReconstructionDiameter": "360", "DistanceSourceToDetector": "1040",
    "DistanceSourceToPatient": "570", "GantryDetectorTilt": "0", "TableHeight": "160",
    "RotationDirection": "CW", "ExposureTime": "500", "XRayTubeCurrent": "250",
    "Exposure": "125", "FilterType": "BODY FILTER", "GeneratorPower": "30",
    "FocalSpots": "1.2", "ConvolutionKernel": "STANDARD", "PatientPosition": "HFS",
    "ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "FrameOfReferenceUID": UID_ROOT + "9.1",
    "PositionReferenceIndicator": "SN", "SliceLocation": "-120.5",
    "SamplesPerPixel": 1, "PhotometricInterpretation": "MONOCHROME2",
    "PixelSpacing": "0.703125\\0.703125", "BitsStored": 12, "HighBit": 11,
    "PixelRepresentation": 1, "WindowCenter": "40\\400", "WindowWidth": "400\\1500",
    "RescaleIntercept": "-1024", "RescaleSlope": "1", "RescaleType": "HU",
    "LossyImageCompression": "00", "PatientAge": "054Y", "PatientWeight": "80",
    "AdditionalPatientHistory": "Follow-up after treatment; compare with prior study",
    "RequestedProcedureDescription": "CT CHEST ABDOMEN PELVIS W CONTRAST",
}


def _padding_json() -> str:
    """:data:`PADDING` (plus a pixel data BulkDataURI) as DICOM JSON members."""
    elements = {tag_vr(keyword)[0]: element(keyword, value) for keyword, value in PADDING.items()}
    elements["7FE00010"] = {"vr": "OW", "BulkDataURI": "%BASE%/bulk/7FE00010"}
    return json.dumps(elements)


_PADDING_JSON = _padding_json()


# --------------------------------------------------------------------------- dataset


def study_uid(study: int) -> str:
    return f"{UID_ROOT}{study + 1}"


def series_uid(study: int, series: int) -> str:
    return f"{study_uid(study)}.{series + 1}"


def study_records(study: int, series_count: int, per_series: int,
                  seed: int) -> Iterator[InstanceRecord]:
    """The instances of one study, deterministic for a seed."""
    rng = random.Random(seed * 1_000_003 + study)
    modality, sop_class, rows = rng.choice(MODALITIES)
    day = rng.randrange(5 * 365)
    date = time.strftime("%Y%m%d", time.gmtime(1577836800 + day * 86400))  # from 2020-01-01
    hour = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    part = rng.choice(BODY_PARTS)
    study_attrs = {
        "PatientName": f"{rng.choice(FAMILIES)}^{rng.choice(GIVEN)}",
        "PatientID": f"PID{study:07d}", "PatientBirthDate": f"19{rng.randrange(30, 99)}0101",
        "PatientSex": rng.choice("MF"), "StudyDate": date, "StudyTime": hour,
        "AccessionNumber": f"ACC{study:08d}", "StudyID": str(study),
        "StudyDescription": f"{modality} {part}", "ReferringPhysicianName": "Referrer^Rita",
        "InstitutionName": rng.choice(("General Hospital", "City Clinic", "Imaging Center")),
    }
    for se in range(series_count):
        for number in range(per_series):
            record = make_record(
                study_uid(study), series_uid(study, se), f"{series_uid(study, se)}.{number + 1}",
                size=rows * rows * 2 + 2000, frames=(((2000, rows * rows * 2),),),
                Modality=modality, SOPClassUID=sop_class, SeriesNumber=se + 1,
                SeriesDescription=f"{part} series {se + 1}", SeriesDate=date, SeriesTime=hour,
                BodyPartExamined=part, InstanceNumber=number + 1, Rows=rows, Columns=rows,
                BitsAllocated=16, ContentDate=date, ContentTime=hour,
                ImageType="ORIGINAL\\PRIMARY\\AXIAL", AcquisitionDate=date,
                AcquisitionTime=hour, **study_attrs)
            metadata = record.metadata[:-1] + ", " + _PADDING_JSON[1:]
            yield InstanceRecord(**{**record.__dict__, "metadata": metadata})


# --------------------------------------------------------------------------- index and fill


def open_index(args: argparse.Namespace) -> Index:
    if args.backend == "sqlite":
        from backends.index_sqlite import SqliteIndex

        Path(args.target).mkdir(parents=True, exist_ok=True)
        return SqliteIndex(Path(args.target) / "index.sqlite")
    from backends.index_postgres import PostgresIndex

    return PostgresIndex(args.target)


def reset(args: argparse.Namespace) -> None:
    """``--fresh``: start from an empty index."""
    if args.backend == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            (Path(args.target) / f"index.sqlite{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(args.target, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS instances, series, studies, schema_version")


def _fill_worker(args: argparse.Namespace, worker: int, spent: Any) -> None:
    """One process's studies; adds the seconds spent in ``add_instance`` to ``spent``."""
    index = open_index(args)
    seconds = 0.0
    for study in range(worker, args.studies, args.workers):
        for record in study_records(study, args.series, args.instances, args.seed):
            started = time.perf_counter()
            index.add_instance(record)
            seconds += time.perf_counter() - started
    index.close()
    with spent.get_lock():
        spent.value += seconds


def fill(args: argparse.Namespace) -> float:
    """Store the dataset with ``args.workers`` processes; the seconds it took."""
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    spent = context.Value("d", 0.0)
    workers = [context.Process(target=_fill_worker, args=(args, w, spent))
               for w in range(args.workers)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    if any(process.exitcode for process in workers):
        raise SystemExit("a fill worker failed")
    elapsed = time.perf_counter() - started
    total = args.studies * args.series * args.instances
    print(f"fill: {total} instances in {elapsed:.1f} s ({total / elapsed:.0f}/s) by"
          f" {args.workers} processes; add_instance took {spent.value / total * 1000:.2f} ms"
          " on average (the rest is building the records)")
    if args.backend == "postgres":
        import psycopg

        with psycopg.connect(args.target, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return elapsed


# --------------------------------------------------------------------------- queries


def cases(args: argparse.Namespace) -> dict[str, Callable[[random.Random], Query]]:
    """QIDO cases: name -> a query (some pick a random study/series for each repetition)."""

    def qido(level: Level, *params: tuple[str, str], **path: str) -> Query:
        return parse_qido(level, params, **path).query

    def series(rng: random.Random) -> Query:
        st = rng.randrange(args.studies)
        return qido(Level.INSTANCE, study_uid=study_uid(st),
                    series_uid=series_uid(st, rng.randrange(args.series)))

    return {
        "studies?limit=100": lambda rng: qido(Level.STUDY, ("limit", "100")),
        "studies?PatientName=DOE*&limit=100": lambda rng: qido(
            Level.STUDY, ("PatientName", "DOE*"), ("limit", "100")),
        "studies?StudyDate=20210101-20221231": lambda rng: qido(
            Level.STUDY, ("StudyDate", "20210101-20221231")),
        "studies?ModalitiesInStudy=MR&limit=100": lambda rng: qido(
            Level.STUDY, ("ModalitiesInStudy", "MR"), ("limit", "100")),
        "studies/{st}/series/{se}/instances": series,
        "studies?StudyInstanceUID={st}": lambda rng: qido(
            Level.STUDY, ("StudyInstanceUID", study_uid(rng.randrange(args.studies)))),
    }


def measure(index: Index, make: Callable[[random.Random], Query],
            reps: int) -> tuple[float, float, int]:
    """p50 and p95 in ms over ``reps`` searches (after 3 warm-ups), and the last count."""
    rng = random.Random(7)
    for _ in range(3):
        index.search(make(rng))
    times, count = [], 0
    for _ in range(reps):
        query = make(rng)
        started = time.perf_counter()
        count = len(index.search(query))
        times.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
    return statistics.median(times), p95, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=("sqlite", "postgres"))
    parser.add_argument("target", help="SQLite: a directory; PostgreSQL: a conninfo / URI")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--series", type=int, default=5, help="series per study")
    parser.add_argument("--instances", type=int, default=10, help="instances per series")
    parser.add_argument("--workers", type=int, default=4, help="processes filling the index")
    parser.add_argument("--reps", type=int, default=50, help="searches per case")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="empty the index first")
    parser.add_argument("--skip-fill", action="store_true", help="measure an index filled before")
    args = parser.parse_args(argv)
    total = args.studies * args.series * args.instances
    if args.fresh:
        reset(args)
    if not args.skip_fill:
        fill(args)
    index = open_index(args)
    print(f"{args.backend}, {total} instances; ms per index.search (HTTP adds ~1 ms)")
    print(f"{'case':42} {'p50':>8} {'p95':>8} {'results':>8}")
    for name, make in cases(args).items():
        p50, p95, count = measure(index, make, args.reps)
        print(f"{name:42} {p50:8.2f} {p95:8.2f} {count:8d}")
    index.close()


if __name__ == "__main__":
    main()
