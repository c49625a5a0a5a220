"""Rendered and thumbnail resources of WADO-RS (PS3.18 §8.3.5 rendered media types and
query parameters, §10.4 retrieve transaction): which instance, which frame, and the bytes.

One frame is decoded from its own bytes, read with ranged reads at the offsets recorded at
ingest: rendering a frame of a 500-frame instance reads its header and that frame, never the
whole file, on a filesystem as on S3. Video instances answer the video bitstream, an
encapsulated PDF the document (``/rendered``) or an icon (``/thumbnail``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw

from app.dicom import bulkdata
from app.dicom.frame_source import FrameSource
from app.dicom.negotiation import media_type_for_syntax
from app.dicom.render import THUMBNAIL_SIZE, RenderParams, encode, render_frame
from app.errors import NotAcceptable, NotFound
from backends.base import StorageArea, StoredInstance

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
ENCAPSULATED_DOCUMENT = "00420011"


@dataclass(frozen=True)
class Answer:
    """What a rendered route sends: a media type, its length and its body chunks."""

    media_type: str
    length: int
    body: Iterable[bytes]


def representative(instances: list[StoredInstance]) -> StoredInstance:
    """The instance a study or series is rendered with: the middle one by InstanceNumber
    (``instances`` come sorted by series, then InstanceNumber) of the first series holding
    images. Orthanc takes an arbitrary instance, often the first slice of a CT, a poor
    preview; the middle slice shows the anatomy."""
    by_series: dict[str, list[StoredInstance]] = {}
    for inst in instances:
        by_series.setdefault(inst.series_uid, []).append(inst)
    for members in by_series.values():
        images = [i for i in members if i.frames or is_video(i)]
        if images:
            return images[(len(images) - 1) // 2]
    return instances[(len(instances) - 1) // 2]


def is_video(inst: StoredInstance) -> bool:
    return media_type_for_syntax(inst.transfer_syntax).startswith("video/")


def is_pdf(inst: StoredInstance) -> bool:
    return inst.sop_class_uid == ENCAPSULATED_PDF


def rendered(storage: StorageArea, inst: StoredInstance, frame: int,
             params: RenderParams, *, thumbnail: bool = False) -> Answer:
    """The answer of ``/rendered`` or ``/thumbnail`` for one frame (1-based) of ``inst``."""
    if is_pdf(inst):
        return icon("PDF", params) if thumbnail else _document(storage, inst)
    if is_video(inst):
        return icon("VIDEO", params) if thumbnail else _video(storage, inst)
    source = FrameSource(storage, inst)
    arr = source.decoded(frame)
    data = render_frame(arr, source.header(), frame - 1, params)
    return Answer(params.media_type, len(data), [data])


def _document(storage: StorageArea, inst: StoredInstance) -> Answer:
    """Encapsulated PDF (PS3.3 A.45): the document itself, streamed from its byte range."""
    try:
        ((head, body),) = list(bulkdata.bulk_parts(storage, inst, ENCAPSULATED_DOCUMENT))
    except NotFound:
        raise NotAcceptable("The encapsulated document has no content") from None
    return Answer("application/pdf", int(head["Content-Length"]), body)


def _video(storage: StorageArea, inst: StoredInstance) -> Answer:
    """MPEG-2/MPEG-4/HEVC (PS3.5 §8.2.5-8.2.8): the bitstream is the pixel data fragments."""
    if not inst.frames:
        raise NotAcceptable("The video stream of this instance cannot be located")
    ranges = [r for frame in inst.frames for r in frame]
    return Answer(media_type_for_syntax(inst.transfer_syntax), sum(n for _, n in ranges),
                  _read(storage, inst.storage_key, ranges))


def _read(storage: StorageArea, key: str, ranges: list[tuple[int, int]]) -> Iterator[bytes]:
    for offset, length in ranges:
        yield from bulkdata.read_chunks(storage, key, offset, length)


def icon(label: str, params: RenderParams) -> Answer:
    data = _icon(label, params.media_type)
    return Answer(params.media_type, len(data), [data])


@cache
def _icon(label: str, media_type: str) -> bytes:
    """A plain document/video icon: a thumbnail for what has no image to shrink."""
    image = Image.new("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE), (40, 40, 40))
    draw = ImageDraw.Draw(image)
    draw.rectangle((24, 12, 104, 116), outline=(220, 220, 220), width=3)
    draw.text((64, 64), label, fill=(220, 220, 220), anchor="mm")
    return encode(image, media_type, 90)
