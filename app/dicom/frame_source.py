"""One stored instance's frames for the routes that need pixels rather than bytes:
frames in another syntax, rendered images and thumbnails.

A frame is read with ranged reads at the byte ranges recorded at ingest
(:mod:`app.dicom.frames`), so one frame of a large multi-frame instance costs its
header and its own bytes, on a filesystem as on S3. Without recorded ranges
(deflated, 1-bit, encapsulated without offsets) the frame is decoded from the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import numpy as np
from pydicom.dataset import Dataset

from app.dicom import pixels
from app.dicom.transcode import LITTLE_ENDIAN_TARGETS, native_frame_syntax_ok
from app.errors import NotFound
from backends.base import StorageArea, StoredInstance


class FrameSource:
    """One instance's frames: counted from the index when their byte ranges were recorded,
    from the header otherwise; the header is read at most once, and only when needed."""

    def __init__(self, storage: StorageArea, inst: StoredInstance) -> None:
        self.storage, self.inst = storage, inst
        self._header: Dataset | None = None

    def header(self) -> Dataset:
        """The attributes before the pixel data: with recorded ranges, one ranged read
        ending where frame 1 starts (a single GET on S3, nothing past the header)."""
        if self._header is None:
            if self.inst.frames:
                end = self.inst.frames[0][0][0]
                head = self.storage.read_range(self.inst.storage_key, 0, end)
                self._header = pixels.header_of(io.BytesIO(head))
            else:
                with self.storage.open(self.inst.storage_key) as f:
                    self._header = pixels.header_of(f)
        return self._header

    def count(self) -> int:
        if self.inst.frames:
            return len(self.inst.frames)
        header = self.header()  # read up to the pixel data, which it leaves out
        if "Rows" not in header or "Columns" not in header:
            raise NotFound(f"Instance {self.inst.sop_uid} has no pixel data")
        try:
            return max(1, int(header.get("NumberOfFrames") or 1))
        except (TypeError, ValueError):
            return 1

    def can_produce(self, source: str, target: str) -> bool:
        if native_frame_syntax_ok(source, target):
            return True
        if not self.inst.frames:  # decoded from the whole file: native little endian only
            return target in LITTLE_ENDIAN_TARGETS and pixels.can_decode(source)
        return pixels.frame_convertible(self.header(), source, target)

    def convert(self, number: int, target: str) -> bytes:
        """Frame ``number`` (1-based) in ``target``."""
        if not self.inst.frames:
            with self.storage.open(self.inst.storage_key) as f:
                arr = pixels.decode_frame_from_file(f, number - 1)
            return pixels.native_bytes(arr, self.header())
        return pixels.convert_frame(self.header(), self.stored(number),
                                    self.inst.transfer_syntax, target)

    def stored(self, number: int) -> bytes:
        """Frame ``number`` as stored (its fragments' values joined when encapsulated)."""
        return b"".join(read_ranges(self.storage, self.inst.storage_key,
                                    self.inst.frames[number - 1]))

    def decoded(self, number: int) -> np.ndarray:
        """Frame ``number`` (1-based) decoded, as pydicom's ``pixel_array`` gives it."""
        if number > self.count():
            raise NotFound(f"Frame {number} does not exist: the instance has {self.count()}")
        if not self.inst.frames:
            with self.storage.open(self.inst.storage_key) as f:
                return pixels.decode_frame_from_file(f, number - 1)
        return pixels.decode_frame(self.header(), self.stored(number), self.inst.transfer_syntax)




def read_ranges(storage: StorageArea, key: str,
                ranges: Iterable[tuple[int, int]]) -> Iterator[bytes]:
    for offset, length in ranges:
        yield storage.read_range(key, offset, length)
