"""DICOMweb client retrieve throughput: ours pulling from Orthanc vs Orthanc pulling from ours.

Run by hand (prints numbers, asserts nothing)::

    python -m bench.client_bench [--instances 60] [--size 512] [--rounds 3] [--json out.json]

Starts a throw-away Orthanc 1.10 + DICOMweb plugin (``bench.orthanc``) and our server
(``dicomweb-server``, gunicorn, defaults) on loopback, each listing the other in
``DicomWeb.Servers``. One series of ``--instances`` CT instances (``--size``² 16-bit,
explicit VR little endian; about 0.5 MB each at 512) is generated in memory, then, per
round:

- ``ours ← Orthanc``: ``POST /dicom-web/servers/orthanc/retrieve`` on our server
  (synchronous: our client GETs the series with ``transfer-syntax=*`` and stores each part);
- the series is deleted from Orthanc;
- ``Orthanc ← ours``: ``POST /dicom-web/servers/ours/retrieve`` on Orthanc (its client GETs
  the series from our server and stores it);
- the series is deleted from our server.

Each direction is timed end to end (request sent → answer received); MB/s counts the DICOM
files' bytes. The RSS of our server's process tree (master + workers) and of Orthanc is
sampled every 100 ms during each direction (RSS counts pages the forked workers share once
per worker: an upper bound; the PSS of our tree right after our client's retrieve is printed
too). Ratios are > 1 when ours is better. Orthanc runs a synchronous job through its jobs
engine, which adds up to ~0.5 s per call: use a large series (``--instances 300``) to
compare transfer rates rather than that latency.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from bench.dicomweb_bench import MemorySampler, file_meta, noise_pool, study_base
from bench.load import free_port, throwaway_server
from bench.orthanc import OrthancProcess, start_orthanc

PREFIX = "1.2.826.0.1.3680043.10.543.77."
TIMEOUT = 600


def make_series(count: int, size: int) -> tuple[str, str, str, list[bytes]]:
    """(PatientID, StudyInstanceUID, SeriesInstanceUID, files) of one new CT series."""
    patient, study, series = "CLIENT-BENCH", generate_uid(PREFIX), generate_uid(PREFIX)
    noise, base = noise_pool(size, "client-bench"), study_base(size, 0)
    files = []
    for number in range(1, count + 1):
        sop = generate_uid(PREFIX)
        ds = Dataset()
        ds.file_meta = file_meta(sop)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName, ds.PatientID = "BENCH^CLIENT", patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20240101", "CT", 1, number
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.add(base, noise[number % len(noise)], dtype=np.uint16).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return patient, study, series, files


def timed_retrieve(url: str, body: dict, samplers: list[MemorySampler], count: int,
                   auth: tuple[str, str] | None = None) -> tuple[float, dict[str, float]]:
    """Seconds of one synchronous retrieve call of ``count`` instances, and each sampler's
    peak RSS (MB) during it (key: pid) and PSS right after it (key: ``pss-{pid}``)."""
    for sampler in samplers:
        sampler.peak_mb = 0.0
        sampler.record()
    start = time.perf_counter()
    answer = requests.post(url, json=body, auth=auth, timeout=TIMEOUT)
    seconds = time.perf_counter() - start
    if answer.status_code != 200:
        raise SystemExit(f"{url}: HTTP {answer.status_code} {answer.text[:500]}")
    received = answer.json().get("ReceivedInstancesCount")
    if received != str(count):
        raise SystemExit(f"{url}: received {received} instances, not {count}")
    peaks = {}
    for sampler in samplers:
        sampler.record()
        peaks[str(sampler.pid)] = sampler.peak_mb
        peaks[f"pss-{sampler.pid}"] = sampler.sample_both()[1]
    return seconds, peaks


def run(opts: argparse.Namespace) -> dict:
    patient, study, series, files = make_series(opts.instances, opts.size)
    megabytes = sum(map(len, files)) / 1e6
    body = {"Resources": [{"Study": study, "Series": series}]}
    with tempfile.TemporaryDirectory(prefix="client-bench-") as work:
        orthanc_port, our_port = free_port(), free_port()
        ours_root = f"http://127.0.0.1:{our_port}/dicom-web/"
        with start_orthanc(orthanc_port, Path(work) / "orthanc", extra={
                "DicomWeb": {"Servers": {"ours": [ours_root]}}}) as orthanc, \
                throwaway_server(port=our_port, extra={"DicomWeb": {"Servers": {
                    "orthanc": [f"http://127.0.0.1:{orthanc_port}/dicom-web/"]}}}) as (root, pid), \
                MemorySampler(pid) as ours_mem, MemorySampler(orthanc.pid) as orthanc_mem:
            upload(orthanc, files)
            rounds = []
            for _ in range(opts.rounds):
                pull, pull_peaks = timed_retrieve(f"{root}/servers/orthanc/retrieve", body,
                                                  [ours_mem, orthanc_mem], opts.instances)
                delete_orthanc_series(orthanc, patient, study, series)
                push, push_peaks = timed_retrieve(f"{orthanc.dicomweb_url}/servers/ours/retrieve",
                                                  body, [ours_mem, orthanc_mem], opts.instances,
                                                  orthanc.auth)
                gone = requests.delete(f"{root}/studies/{study}/series/{series}", timeout=60)
                gone.raise_for_status()
                rounds.append({"ours_pull_s": pull, "orthanc_pull_s": push,
                               "ours_rss_as_client_mb": pull_peaks[str(pid)],
                               "ours_rss_as_server_mb": push_peaks[str(pid)],
                               "ours_pss_after_client_mb": pull_peaks[f"pss-{pid}"],
                               "orthanc_rss_as_server_mb": pull_peaks[str(orthanc.pid)],
                               "orthanc_rss_as_client_mb": push_peaks[str(orthanc.pid)]})
    return summarize(opts, megabytes, rounds)


def upload(orthanc: OrthancProcess, files: list[bytes]) -> None:
    for data in files:
        answer = requests.post(orthanc.url + "/instances", data=data, auth=orthanc.auth,
                               timeout=60)
        answer.raise_for_status()


def delete_orthanc_series(orthanc: OrthancProcess, patient: str, study: str,
                          series: str) -> None:
    from app.dicom.identifiers import orthanc_ids

    series_id = orthanc_ids(patient, study, series, "")[2]
    answer = requests.delete(f"{orthanc.url}/series/{series_id}", auth=orthanc.auth, timeout=60)
    answer.raise_for_status()


def summarize(opts: argparse.Namespace, megabytes: float, rounds: list[dict]) -> dict:
    def best(key: str) -> float:
        return min(r[key] for r in rounds)

    def peak(key: str) -> float:
        return max(r[key] for r in rounds)

    ours_s, theirs_s = best("ours_pull_s"), best("orthanc_pull_s")
    return {
        "instances": opts.instances, "size": opts.size, "megabytes": round(megabytes, 1),
        "rounds": rounds, "load_average": os.getloadavg()[0],
        "ours_from_orthanc": {"seconds": ours_s, "mb_per_s": megabytes / ours_s,
                              "instances_per_s": opts.instances / ours_s,
                              "median_s": statistics.median(r["ours_pull_s"] for r in rounds)},
        "orthanc_from_ours": {"seconds": theirs_s, "mb_per_s": megabytes / theirs_s,
                              "instances_per_s": opts.instances / theirs_s,
                              "median_s": statistics.median(r["orthanc_pull_s"] for r in rounds)},
        "throughput_ratio": theirs_s / ours_s,
        "ours_pss_after_client_mb": peak("ours_pss_after_client_mb"),
        "ours_peak_rss_mb": {"as_client": peak("ours_rss_as_client_mb"),
                             "as_server": peak("ours_rss_as_server_mb")},
        "orthanc_peak_rss_mb": {"as_client": peak("orthanc_rss_as_client_mb"),
                                "as_server": peak("orthanc_rss_as_server_mb")},
    }


def print_report(result: dict) -> None:
    print(f"one series: {result['instances']} instances, {result['size']}² 16-bit, "
          f"{result['megabytes']} MB; best of {len(result['rounds'])} rounds "
          f"(load average {result['load_average']:.1f})")
    for label, key in (("ours    ← Orthanc (our client)     ", "ours_from_orthanc"),
                       ("Orthanc ← ours    (Orthanc's client)", "orthanc_from_ours")):
        r = result[key]
        print(f"  {label}: {r['mb_per_s']:7.1f} MB/s  {r['instances_per_s']:7.1f} inst/s  "
              f"({r['seconds']:.2f} s, median {r['median_s']:.2f} s)")
    ours, theirs = result["ours_peak_rss_mb"], result["orthanc_peak_rss_mb"]
    print(f"  throughput ratio (ours/Orthanc as client): {result['throughput_ratio']:.2f}")
    ratio = theirs["as_client"] / ours["as_client"]
    print(f"  peak RSS as client: ours {ours['as_client']:.0f} MB (master + workers), "
          f"Orthanc {theirs['as_client']:.0f} MB; ratio {ratio:.2f} "
          f"(ours PSS after: {result['ours_pss_after_client_mb']:.0f} MB)")
    print(f"  peak RSS as server: ours {ours['as_server']:.0f} MB, "
          f"Orthanc {theirs['as_server']:.0f} MB")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=60, help="series size (60)")
    parser.add_argument("--size", type=int, default=512, help="rows = columns (512)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (3; best kept)")
    parser.add_argument("--json", help="also write the numbers to this file")
    opts = parser.parse_args(argv)
    result = run(opts)
    print_report(result)
    if opts.json:
        Path(opts.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
