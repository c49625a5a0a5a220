"""Consumer images of one frame (PS3.18 §8.3.5.1.3 rendered media types, §9 WADO-URI).

Pipeline: decode one frame → modality LUT (rescale) → VOI (window from the request,
else the file's window, else min/max) → MONOCHROME1 inversion → 8-bit → resize → encode.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_rescale, pixel_array

from app.errors import BadRequest, NotAcceptable

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}


def render(f: BinaryIO, *, frame: int = 1, media_type: str = "image/jpeg",
           window: tuple[float, float] | None = None, quality: int = 90,
           size: tuple[int | None, int | None] = (None, None)) -> bytes:
    """Render ``frame`` (1-based) of the instance in ``f``."""
    ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
    frames = int(ds.get("NumberOfFrames") or 1)
    if "PixelData" not in ds and "FloatPixelData" not in ds and _no_pixels(f):
        raise BadRequest("The instance has no pixel data to render")
    if not 1 <= frame <= frames:
        raise BadRequest(f"Frame {frame} does not exist: the instance has {frames}")
    f.seek(0)
    try:
        arr = pixel_array(f, index=frame - 1)
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise NotAcceptable(f"The pixel data cannot be decoded: {exc}") from None
    image = to_image(arr, ds, window)
    return encode(resize(image, size), media_type, quality)


def _no_pixels(f: BinaryIO) -> bool:
    f.seek(0)
    return "PixelData" not in pydicom.dcmread(f, defer_size=64, force=True)


def to_image(arr: np.ndarray, ds: Dataset, window: tuple[float, float] | None) -> Image.Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        return Image.fromarray(_to_uint8_color(arr), "RGB")
    if arr.ndim == 3:  # color, already RGB (pixel_array converts YBR)
        return Image.fromarray(_to_uint8_color(arr), "RGB")
    values = apply_rescale(arr, ds).astype(np.float64)
    out = voi(values, window or _file_window(ds))
    if photometric == "MONOCHROME1":
        out = 255 - out
    return Image.fromarray(out, "L")


def _file_window(ds: Dataset) -> tuple[float, float] | None:
    try:
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is None or width is None:
            return None
        return _first(center), _first(width)
    except (TypeError, ValueError, IndexError):
        return None


def _first(value: object) -> float:
    """First value of a possibly multi-valued DS."""
    if isinstance(value, pydicom.multival.MultiValue):
        return float(value[0])
    return float(value)  # type: ignore[arg-type]


def voi(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear window, or a min/max stretch without one."""
    if window and window[1] > 0:
        center, width = window
        scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    else:
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _to_uint8_color(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    hi = float(arr.max()) or 1.0
    return np.clip(arr.astype(np.float64) * (255.0 / hi), 0, 255).astype(np.uint8)


def resize(image: Image.Image, size: tuple[int | None, int | None]) -> Image.Image:
    """Fit within rows×columns keeping the aspect ratio."""
    columns, rows = size[1], size[0]
    if not rows and not columns:
        return image
    w, h = image.size
    scale = min((columns or w) / w if columns else 1e9, (rows or h) / h if rows else 1e9)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(new, Image.Resampling.BILINEAR)


def encode(image: Image.Image, media_type: str, quality: int) -> bytes:
    out = io.BytesIO()
    fmt = FORMATS[media_type]
    if fmt == "JPEG":
        image.save(out, fmt, quality=quality)
    else:
        image.save(out, fmt)
    return out.getvalue()
