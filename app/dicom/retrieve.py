"""WADO-RS retrieval (PS3.18 §10.4): locate, decide, then stream.

Every 404/406 decision is taken here, before the blueprint starts a response;
the part generators returned afterwards only move bytes.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator

from app.dicom import dicomjson, multipart, negotiation
from app.dicom.frame_source import FrameSource, read_ranges
from app.dicom.transcode import (
    can_transcode,
    native_frame_syntax_ok,
    transcode,
)
from app.errors import BadRequest, NotAcceptable, NotFound
from backends.base import Constraint, Index, Level, Match, Query, StorageArea, StoredInstance

PartStream = Iterable[tuple[dict[str, str], Iterable[bytes]]]


def locate(index: Index, study: str, series: str | None = None,
           sop: str | None = None) -> list[StoredInstance]:
    """Instances of a study/series/instance, or 404 naming what is missing."""
    found = index.instances(study, series, sop)
    if not found:
        what = ("instance" if sop else "series" if series else "study")
        raise NotFound(f"Accessing an inexistent {what}")
    return found


def dicom_parts(storage: StorageArea, instances: list[StoredInstance],
                target: str) -> PartStream:
    """One ``application/dicom`` part per instance; 406 before any byte if one cannot
    be produced in ``target`` (``*`` keeps the stored bytes)."""
    for inst in instances:
        if not can_transcode(inst.transfer_syntax, target):
            raise NotAcceptable(
                f"Instance {inst.sop_uid} is stored as {inst.transfer_syntax} and cannot be "
                f"converted to {target}; ask for transfer-syntax=* to get it as stored")
    if all(target in ("*", inst.transfer_syntax) for inst in instances):
        # As stored: sizes are known, bodies stay lazy (a blob is opened when reached).
        return primed_parts([
            ({"Content-Type": f"application/dicom; transfer-syntax={inst.transfer_syntax}",
              "Content-Length": str(inst.size)}, storage.iter_chunks(inst.storage_key))
            for inst in instances])
    return primed_parts(_dicom_part_stream(storage, instances, target))


def _dicom_part_stream(storage: StorageArea, instances: list[StoredInstance],
                       target: str) -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
    for inst in instances:
        if target in ("*", inst.transfer_syntax):
            ts = inst.transfer_syntax
            yield ({"Content-Type": f"application/dicom; transfer-syntax={ts}",
                    "Content-Length": str(inst.size)}, storage.iter_chunks(inst.storage_key))
        else:
            with storage.open(inst.storage_key) as f:
                data, used = transcode(f, target)
            # An instance the target cannot hold (16-bit pixels in JPEG baseline) goes in
            # Explicit VR Little Endian, and its part says so (PS3.18 §8.7.3.5.2).
            yield ({"Content-Type": f"application/dicom; transfer-syntax={used}",
                    "Content-Length": str(len(data))}, [data])


def primed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pull the first chunk now (errors surface before the response starts), then stream."""
    iterator = iter(chunks)
    first = next(iterator, b"")
    return itertools.chain((first,), iterator)


def primed_parts(parts: PartStream) -> PartStream:
    """The first part's first chunk read now, the rest left lazy: an unreachable storage
    is a 503 before the response starts, not an answer cut after its headers. A list
    stays a list (its known lengths give the response a Content-Length)."""
    if isinstance(parts, list):
        if parts:
            head, body = parts[0]
            parts[0] = (head, primed(body))
        return parts
    iterator = iter(parts)
    first = next(iterator, None)
    if first is None:
        return iterator
    return itertools.chain(((first[0], primed(first[1])),), iterator)


def metadata_json(index: Index, base: str, study: str, series: str | None = None,
                  sop: str | None = None, mode: str = "Full",
                  extrapolated: Iterable[str] = ()) -> str:
    """The metadata array as JSON text, built from what ingest stored (no file read)."""
    if mode == "Full" or sop is not None:
        texts = index.metadata(study, series, sop)
        if not texts:
            raise NotFound("Accessing an inexistent " + ("instance" if sop else
                                                         "series" if series else "study"))
        return dicomjson.rebase("[" + ",".join(texts) + "]", base)
    # Extrapolated values come from stored metadata: their BulkDataURIs are relative too.
    answer = _main_tags_metadata(index, study, series, mode, tuple(extrapolated))
    return dicomjson.rebase(dicomjson.json_dumps(answer), base)


def _main_tags_metadata(index: Index, study: str, series: str | None, mode: str,
                        extrapolated: tuple[str, ...]) -> list[dict]:
    """MainDicomTags / Extrapolate modes (reference §4.4): index attributes per instance,
    plus, for Extrapolate, the most frequent value of each extra tag over 3 instances."""
    constraints = [Constraint(Level.STUDY, "StudyInstanceUID", "0020000D", "UI",
                              Match.SINGLE, (study,))]
    if series:
        constraints.append(Constraint(Level.SERIES, "SeriesInstanceUID", "0020000E", "UI",
                                      Match.SINGLE, (series,)))
    results = index.search(Query(Level.INSTANCE, tuple(constraints), case_sensitive=True))
    if not results:
        raise NotFound("Accessing an inexistent " + ("series" if series else "study"))
    extra = _extrapolate(index, study, series, extrapolated) if mode == "Extrapolate" else {}
    out = []
    for r in results:
        merged = {**r.study, **r.series, **r.instance, **extra}
        out.append(dict(sorted(merged.items())))
    return out


def _extrapolate(index: Index, study: str, series: str | None,
                 tags: tuple[str, ...]) -> dict:
    if not tags:
        return {}
    samples = [json.loads(t) for t in index.metadata(study, series)[:3]]
    extra = {}
    for tag in tags:
        values = Counter(json.dumps(s[tag], sort_keys=True) for s in samples if tag in s)
        if values:
            extra[tag] = json.loads(values.most_common(1)[0][0])
    return extra


def metadata_xml_parts(json_text: str) -> PartStream:
    """``multipart/related; type="application/dicom+xml"``: one part per instance."""
    for obj in json.loads(json_text):
        body = dicomjson.json_to_xml(obj)
        yield ({"Content-Type": "application/dicom+xml",
                "Content-Length": str(len(body))}, [body])


def parse_frame_list(text: str) -> list[int]:
    """``1,2,5`` (also ``%2C``): 1-based, duplicates kept in order (PS3.18 §8.3.5.1)."""
    items = text.lower().replace("%2c", ",").split(",")
    try:
        frames = [int(i) for i in items]
    except ValueError:
        raise BadRequest(f"Invalid frame list {text!r}: expected 1-based integers") from None
    if any(n < 1 for n in frames):
        raise BadRequest(f"Invalid frame list {text!r}: frame numbers start at 1")
    return frames


def frame_parts(storage: StorageArea, inst: StoredInstance, numbers: list[int] | None,
                accept: str | None, location: str) -> tuple[str, PartStream]:
    """Frames (``None``: all of them) in the negotiated media type and syntax (PS3.18
    §10.4.1.1.3, table 8.7.3-5).

    As stored (or native little endian either way): ranged reads of the offsets recorded
    at ingest, no decoding. Otherwise one frame at a time is read the same way, decoded and
    encoded in the target syntax; the header is then read once for the pixel attributes.
    """
    source = FrameSource(storage, inst)
    count = source.count()
    if numbers is None:  # the all-frames route: 1..N
        numbers = list(range(1, count + 1))
    for n in numbers:
        if n > count:
            raise NotFound(f"Frame {n} does not exist: the instance has {count}")
    media, ts = negotiation.negotiate_frames(accept, inst.transfer_syntax,
                                             can_produce=source.can_produce)
    part_type = f"{media}; transfer-syntax={ts}"
    if inst.frames and native_frame_syntax_ok(inst.transfer_syntax, ts):
        return part_type, _frame_stream(storage, inst, numbers, part_type, location)
    return part_type, primed_parts(_converted_stream(source, numbers, ts, part_type, location))


def _converted_stream(source: FrameSource, numbers: list[int], target: str, part_type: str,
                      location: str) -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
    for n in numbers:
        data = source.convert(n, target)
        yield ({"Content-Type": part_type, "Content-Length": str(len(data)),
                "Content-Location": f"{location}/frames/{n}"}, [data])


def _frame_stream(storage: StorageArea, inst: StoredInstance, numbers: list[int],
                  part_type: str, location: str) -> PartStream:
    """Lazy parts with known lengths: each frame is read when the response reaches it
    (the first one now, see :func:`primed_parts`)."""
    return primed_parts([
        ({"Content-Type": part_type,
          "Content-Length": str(sum(length for _, length in inst.frames[n - 1])),
          "Content-Location": f"{location}/frames/{n}"},
         read_ranges(storage, inst.storage_key, inst.frames[n - 1]))
        for n in numbers])


__all__ = ["dicom_parts", "frame_parts", "locate", "metadata_json", "metadata_xml_parts",
           "multipart", "parse_frame_list"]
