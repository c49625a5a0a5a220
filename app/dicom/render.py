"""Consumer images of one frame: WADO-RS /rendered and /thumbnail (PS3.18 §8.3.5.1.3),
WADO-URI (PS3.18 §9.5).

Pipeline for one decoded frame (``to_display``), then geometry and encoding (``render_frame``):

* grayscale: Modality LUT (PS3.3 C.11.1; per-frame or shared Pixel Value Transformation,
  C.7.6.16.2.9) → VOI (the request's window, else the file's window, else its VOI LUT
  Sequence, else the frame's min/max; per-frame or shared Frame VOI LUT, C.7.6.16.2.10)
  with the PS3.3 C.11.2.1.2 window functions → MONOCHROME1 inversion → 8 bits;
* colour: RGB (pydicom already turned YBR into RGB) scaled to 8 bits by Bits Stored;
  PALETTE COLOR through its lookup tables (C.7.6.3.1.5);
* geometry: WADO-URI region, or the WADO-RS viewport crop and flips, then scaling to fit
  the viewport (or rows × columns) keeping the aspect ratio;
* encoding: JPEG (with quality), PNG, GIF.

Everything here is pure: no Flask, no storage. Bad parameters raise ``BadRequest``;
pixel data that cannot be shown raises ``NotAcceptable``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi

from app.errors import BadRequest, NotAcceptable

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
DEFAULT_QUALITY = 90
# Largest viewport / rows / columns accepted: a bound on the memory one request may ask for
# (PS3.18 §8.3.5.1.3 lets the origin server reject viewport dimensions it does not support).
MAX_SIZE = 8192
# PS3.18 §8.3.5.2: "If no viewport parameter is provided the origin server will determine
# the size of the thumbnail."
THUMBNAIL_SIZE = 128
# Integer frames whose value range is at most this wide go through a lookup table built
# once per frame (modality + VOI computed for each possible value, not for each pixel).
_TABLE_SPAN = 1 << 20
# PS3.3 C.11.2.1.3 VOI LUT Function values, and their PS3.18 §8.3.5.1.4 spellings.
WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
_QUERY_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_UINT = re.compile(r"\d+")


@dataclass(frozen=True)
class Window:
    """A VOI window in modality units (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: str = "LINEAR"  # LINEAR | LINEAR_EXACT | SIGMOID


@dataclass(frozen=True)
class Viewport:
    """PS3.18 §8.3.5.1.3 ``viewport=vw,vh[,sx,sy,sw,sh]``; None means "not given"."""

    width: int | None
    height: int | None
    sx: float | None = None
    sy: float | None = None
    sw: float | None = None
    sh: float | None = None


@dataclass(frozen=True)
class RenderParams:
    media_type: str = "image/jpeg"  # image/jpeg | image/png | image/gif
    quality: int = DEFAULT_QUALITY
    window: Window | None = None
    viewport: Viewport | None = None
    region: tuple[float, float, float, float] | None = None  # WADO-URI x1,y1,x2,y2 in 0..1
    rows: int | None = None  # WADO-URI
    columns: int | None = None  # WADO-URI


# --------------------------------------------------------------------------- #
# Query parameters
# --------------------------------------------------------------------------- #


def parse_rendered_params(args: Mapping[str, str], media_type: str, *,
                          thumbnail: bool = False) -> RenderParams:
    """WADO-RS rendered query parameters (PS3.18 §8.3.5.1); annotation, charset and
    iccprofile are accepted and ignored.

    With ``thumbnail`` (PS3.18 §8.3.5.2) only ``viewport=vw,vh`` applies: quality and
    window are ignored, and the size defaults to ``THUMBNAIL_SIZE`` square.
    """
    _check_media_type(media_type)
    viewport = _viewport(args.get("viewport"), thumbnail)
    if thumbnail:
        return RenderParams(media_type, viewport=viewport or Viewport(THUMBNAIL_SIZE,
                                                                      THUMBNAIL_SIZE))
    return RenderParams(media_type, quality=_quality(args.get("quality"), "quality"),
                        window=_query_window(args.get("window")), viewport=viewport)


def parse_wado_uri_params(args: Mapping[str, str], media_type: str) -> RenderParams:
    """WADO-URI rendering parameters (PS3.18 §9.5.1.2): rows, columns, region,
    windowCenter/windowWidth and imageQuality. Other parameters are the caller's."""
    _check_media_type(media_type)
    center, width = args.get("windowCenter"), args.get("windowWidth")
    if (center is None) != (width is None):
        # §9.5.2.2: only one of the two is a 400.
        raise BadRequest("WADO-URI: windowCenter and windowWidth must be given together")
    window = None
    if center is not None and width is not None:
        window = Window(_decimal(center, "WADO-URI: windowCenter"),
                        _decimal(width, "WADO-URI: windowWidth"))
        _check_width(window, "WADO-URI: windowWidth")
    return RenderParams(
        media_type,
        quality=_quality(args.get("imageQuality"), "WADO-URI: imageQuality"),
        window=window,
        region=_region(args.get("region")),
        rows=_size(args.get("rows"), "WADO-URI: rows"),
        columns=_size(args.get("columns"), "WADO-URI: columns"),
    )


def _check_media_type(media_type: str) -> None:
    if media_type not in FORMATS:
        raise NotAcceptable(f"Cannot render to {media_type!r}: "
                            "image/jpeg, image/png or image/gif only")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _decimal(value: str, name: str) -> float:
    """A finite decimal number (DICOM DS syntax, exponent allowed)."""
    text = value.strip()
    if not _DECIMAL.fullmatch(text) or not math.isfinite(number := float(text)):
        raise BadRequest(f"{name} must be a decimal number, not {_shown(value)}")
    return number


def _quality(value: str | None, name: str) -> int:
    """PS3.18 §8.3.5.1.2: an integer from 1 to 100, else 400."""
    if value is None:
        return DEFAULT_QUALITY
    text = value.strip()
    if not _UINT.fullmatch(text) or not 1 <= int(text) <= 100:
        raise BadRequest(f"{name} must be an integer from 1 to 100, not {_shown(value)}")
    return int(text)


def _size(value: str | None, name: str) -> int | None:
    """A positive pixel count (PS3.18 §8.3.5.1.3 vw/vh, §9.5.1.2.4 rows/columns)."""
    if value is None:
        return None
    text = value.strip()
    if not _UINT.fullmatch(text) or not 1 <= int(text) <= MAX_SIZE:
        raise BadRequest(f"{name} must be an integer from 1 to {MAX_SIZE}, "
                         f"not {_shown(value)}")
    return int(text)


def _query_window(value: str | None) -> Window | None:
    """PS3.18 §8.3.5.1.4 ``window=center,width,function``: all three are required."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 3:
        raise BadRequest("window must be center,width,function with function one of "
                         f"linear, linear-exact or sigmoid, not {_shown(value)}")
    function = _QUERY_FUNCTIONS.get(parts[2].strip().lower().replace("_", "-"))
    if function is None:
        raise BadRequest("window function must be linear, linear-exact or sigmoid, "
                         f"not {_shown(parts[2])}")
    window = Window(_decimal(parts[0], "window center"), _decimal(parts[1], "window width"),
                    function)
    _check_width(window, "window width")
    return window


def _check_width(window: Window, name: str) -> None:
    """PS3.3 C.11.2.1.2.1: LINEAR needs width >= 1; C.11.2.1.3: the others width > 0."""
    if not _valid_width(window):
        least = "at least 1" if window.function == "LINEAR" else "greater than 0"
        raise BadRequest(f"{name} must be {least} for the {window.function} function, "
                         f"not {window.width:g}")


def _valid_width(window: Window) -> bool:
    return window.width >= 1 if window.function == "LINEAR" else window.width > 0


def _viewport(value: str | None, thumbnail: bool) -> Viewport | None:
    """PS3.18 §8.3.5.1.3 ``viewport=vw,vh[,[sx],[sy],[sw],[sh]]``.

    Elided values keep their commas; trailing ones may be dropped. A thumbnail takes vw,vh
    only. As an extension, one of vw and vh may be empty: the image is then scaled by the
    other alone.
    """
    if value is None:
        return None
    fields = [field.strip() for field in value.split(",")]
    if not 2 <= len(fields) <= (2 if thumbnail else 6):
        expected = "vw,vh" if thumbnail else "vw,vh[,sx,sy,sw,sh]"
        raise BadRequest(f"viewport must be {expected}, not {_shown(value)}")
    width = _size(fields[0] or None, "viewport width (vw)")
    height = _size(fields[1] or None, "viewport height (vh)")
    if width is None and height is None:
        raise BadRequest("viewport needs a width (vw) or a height (vh)")
    names = ("sx", "sy", "sw", "sh")
    source = [_decimal(f, f"viewport {n}") if f else None
              for f, n in zip(fields[2:] + [""] * (6 - len(fields)), names, strict=True)]
    for number, name in zip(source[2:], names[2:], strict=True):
        if number == 0:
            raise BadRequest(f"viewport {name} must not be 0")
    return Viewport(width, height, *source)


def _region(value: str | None) -> tuple[float, float, float, float] | None:
    """PS3.18 §9.5.1.2.5 ``region=xmin,ymin,xmax,ymax``, 0 <= min < max <= 1."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise BadRequest(f"WADO-URI: region must be xmin,ymin,xmax,ymax, not {_shown(value)}")
    x1, y1, x2, y2 = (_decimal(p, "WADO-URI: region") for p in parts)
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise BadRequest("WADO-URI: region must satisfy 0 <= xmin < xmax <= 1 and "
                         f"0 <= ymin < ymax <= 1, not {_shown(value)}")
    return x1, y1, x2, y2


# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #


def render_frame(arr: np.ndarray, header: Dataset, frame_index: int,
                 params: RenderParams) -> bytes:
    """Encoded image of one decoded frame (``frame_index`` 0-based, for functional groups)."""
    image = Image.fromarray(to_display(arr, header, frame_index, params.window))
    return encode(apply_geometry(image, params), params.media_type, params.quality)


def to_display(arr: np.ndarray, header: Dataset, frame_index: int,
               window: Window | None) -> np.ndarray:
    """The 8-bit image before geometry: uint8 (rows, cols) or (rows, cols, 3).

    ``window`` (the request's) applies to grayscale only; PS3.18 §8.3.5.1.4 windowing
    is a VOI transformation, which colour images do not have.
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    photometric = str(header.get("PhotometricInterpretation", "")).strip().upper()
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return _rgb(arr[:, :, :3], header)  # YBR_* arrive already converted to RGB
    if arr.ndim != 2:
        raise NotAcceptable(f"Cannot render pixel data of shape {arr.shape}")
    if photometric == "PALETTE COLOR":
        return _palette(arr, header)
    return _grayscale(arr, header, frame_index, window, photometric == "MONOCHROME1")


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """0..255 floats to uint8, rounding halves up; NaN (from float pixel data) gives 0."""
    out = np.floor(np.nan_to_num(values, nan=0.0) + 0.5)
    return np.clip(out, 0, 255).astype(np.uint8)


# --- colour ------------------------------------------------------------------ #


def _rgb(arr: np.ndarray, header: Dataset) -> np.ndarray:
    """RGB samples to 8 bits by Bits Stored (PS3.3 C.7.6.3.1.1); floats by min/max."""
    if arr.dtype.kind == "f":
        return _to_uint8(_stretch(arr.astype(np.float64)))
    bits = _int(header.get("BitsStored"), arr.dtype.itemsize * 8)
    if arr.dtype == np.uint8 and bits == 8:
        return np.ascontiguousarray(arr)
    top = float(2 ** max(1, bits) - 1)
    return _to_uint8(arr.astype(np.float64) * (255.0 / top))


def _palette(arr: np.ndarray, header: Dataset) -> np.ndarray:
    """PALETTE COLOR (PS3.3 C.7.6.3.1.5): each stored value through the three LUTs.

    The tables are read once (pydicom handles plain and segmented LUTs, C.7.9) and then
    indexed; values outside the table take its first or last entry (C.7.6.3.1.5).
    """
    try:
        entries, first, _ = (int(v) for v in header.RedPaletteColorLookupTableDescriptor)
        entries = entries or 65536
        table = apply_color_lut(np.arange(first, first + entries), header)[:, :3]
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise NotAcceptable(f"The palette colour lookup tables are unusable: {exc}") from None
    index = np.clip(arr.astype(np.int64) - first, 0, entries - 1)
    return _palette_to_8bit(table)[index]


def _palette_to_8bit(table: np.ndarray) -> np.ndarray:
    """16-bit entries keep their high byte (exact for both v*256 and v*257 encodings of
    8-bit colours); 16-bit tables whose values all fit in 8 bits are taken as 8-bit."""
    if table.dtype == np.uint8 or int(table.max()) <= 255:
        return table.astype(np.uint8)
    return (table >> 8).astype(np.uint8)


# --- grayscale --------------------------------------------------------------- #


def _grayscale(arr: np.ndarray, header: Dataset, frame_index: int, window: Window | None,
               inverted: bool) -> np.ndarray:
    """Modality → VOI → (MONOCHROME1) inversion; via a per-value table for integer frames."""
    if arr.dtype.kind == "f":
        out = _float_gray(arr, header, frame_index, window)
    elif arr.size and int(arr.max()) - int(arr.min()) < _TABLE_SPAN:
        low = int(arr.min())
        domain = np.arange(low, int(arr.max()) + 1, dtype=np.int64)
        table = _gray_values(domain, header, frame_index, window)
        index = arr.astype(np.int32 if arr.dtype.itemsize <= 2 else np.int64)
        index -= low
        out = table[index]
    else:
        out = _gray_values(arr.astype(np.int64), header, frame_index, window)
    # PS3.3 C.7.6.3.1.2: MONOCHROME1 shows the minimum value as white.
    return 255 - out if inverted else out


def _gray_values(stored: np.ndarray, header: Dataset, frame_index: int,
                 window: Window | None) -> np.ndarray:
    values = _modality(stored, header, frame_index)
    chosen = window or _file_window(header, frame_index)
    if chosen is not None:
        return _to_uint8(apply_window(values, chosen))
    lut = _voi_lut(values, header, frame_index)
    return _to_uint8(lut if lut is not None else _stretch(values))


def _float_gray(arr: np.ndarray, header: Dataset, frame_index: int,
                window: Window | None) -> np.ndarray:
    """Float / Double Float Pixel Data (PS3.3 C.7.6.24) have no Modality LUT and no integer
    VOI LUT: a window (the request's, else the file's) or min/max of the finite values."""
    values = np.where(np.isfinite(arr), arr, np.nan).astype(np.float64)
    chosen = window or _file_window(header, frame_index)
    return _to_uint8(apply_window(values, chosen) if chosen else _stretch(values))


def _stretch(values: np.ndarray) -> np.ndarray:
    """Default VOI when the file has none: the frame's min..max onto 0..255."""
    finite = values[np.isfinite(values)]
    if not finite.size or finite.max() == finite.min():
        return np.zeros(values.shape, dtype=np.float64)
    low, high = float(finite.min()), float(finite.max())
    return (values - low) * (255.0 / (high - low))


def apply_window(x: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 window functions onto 0..255 (ymin = 0, ymax = 255), as floats.

    LINEAR (C.11.2.1.2.1): x <= c - 0.5 - (w-1)/2 → ymin; x > c - 0.5 + (w-1)/2 → ymax;
    else ((x - (c - 0.5)) / (w-1) + 0.5) * (ymax - ymin) + ymin.
    LINEAR_EXACT (C.11.2.1.3.2): x <= c - w/2 → ymin; x > c + w/2 → ymax;
    else ((x - c) / w + 0.5) * (ymax - ymin) + ymin.
    SIGMOID (C.11.2.1.3.1): (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin.
    The linear formulas reach ymin/ymax exactly at their thresholds, so clipping them is
    the piecewise definition; w = 1 (LINEAR) is the step at c - 0.5.
    """
    c, w = window.center, window.width
    x = np.asarray(x, dtype=np.float64)
    if window.function == "SIGMOID":
        with np.errstate(over="ignore"):
            return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        return np.clip(((x - c) / w + 0.5) * 255.0, 0.0, 255.0)
    if w == 1:
        return np.where(x > c - 0.5, 255.0, 0.0)
    return np.clip(((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0, 0.0, 255.0)


def _functional_item(header: Dataset, frame_index: int, keyword: str) -> Dataset | None:
    """The frame's item of a functional group macro (PS3.3 C.7.6.16.2): per-frame first,
    then shared. None when neither has it."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame_index),
                          ("SharedFunctionalGroupsSequence", 0)):
        seq = header.get(groups)
        if seq and 0 <= index < len(seq):
            inner = seq[index].get(keyword)
            if inner:
                return inner[0]
    return None


def _with_encoding(source: Dataset, header: Dataset) -> Dataset:
    """A functional-group item with the file's byte order, which pydicom needs to read
    OW LUT Data and which nested items do not carry."""
    if source is header:
        return source
    ds = Dataset(source)
    if hasattr(header, "file_meta"):
        ds.file_meta = header.file_meta
    ds.set_original_encoding(*header.original_encoding)
    return ds


def _modality(stored: np.ndarray, header: Dataset, frame_index: int) -> np.ndarray:
    """Modality LUT (PS3.3 C.11.1): the LUT sequence, else Rescale Slope/Intercept; from
    the frame's Pixel Value Transformation (C.7.6.16.2.9) before the top level."""
    source = _functional_item(header, frame_index, "PixelValueTransformationSequence")
    if source is None or ("RescaleSlope" not in source and "ModalityLUTSequence" not in source):
        source = header
    if source.get("ModalityLUTSequence"):
        try:
            return apply_modality_lut(stored, _with_encoding(source, header)).astype(np.float64)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            pass  # an unreadable LUT: the stored values, as if there were none
    slope = _float(source.get("RescaleSlope"), 1.0) or 1.0
    intercept = _float(source.get("RescaleIntercept"), 0.0)
    return stored.astype(np.float64) * slope + intercept


def _file_window(header: Dataset, frame_index: int) -> Window | None:
    """The first Window Center/Width (PS3.3 C.11.2.1.2) of the frame's Frame VOI LUT
    (C.7.6.16.2.10), else of the top level, with its VOI LUT Function."""
    item = _functional_item(header, frame_index, "FrameVOILUTSequence")
    for source in (item, header):
        if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
            continue
        center = _float(_first(source.get("WindowCenter")), None)
        width = _float(_first(source.get("WindowWidth")), None)
        function = str(source.get("VOILUTFunction") or "LINEAR").strip().upper()
        if center is None or width is None:
            continue
        window = Window(center, width, function if function in WINDOW_FUNCTIONS else "LINEAR")
        if _valid_width(window):
            return window
    return None


def _voi_lut(values: np.ndarray, header: Dataset, frame_index: int) -> np.ndarray | None:
    """The first VOI LUT of the frame's Frame VOI LUT, else of the top level (PS3.3
    C.11.2.1.1), on 0..255; None when there is none or it is unreadable."""
    item = _functional_item(header, frame_index, "FrameVOILUTSequence")
    source = item if item is not None and item.get("VOILUTSequence") else header
    if not source.get("VOILUTSequence"):
        return None
    try:
        entries, first, bits = (int(v) for v in source.VOILUTSequence[0].LUTDescriptor)
        entries = entries or 65536
        table = apply_voi(np.arange(first, first + entries), _with_encoding(source, header))
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, NotImplementedError):
        return None
    index = np.clip(np.floor(values + 0.5) - first, 0, entries - 1).astype(np.int64)
    return table[index].astype(np.float64) * (255.0 / _lut_top(table, bits))


def _lut_top(table: np.ndarray, bits: int) -> float:
    """The value a VOI LUT uses for white: 2^bits - 1 (C.11.2.1.1), except that 16-bit
    tables are often filled to fewer bits (e.g. 12); their real depth is used then."""
    if bits <= 8:
        return 255.0
    return float(2 ** max(8, int(table.max()).bit_length()) - 1)


def _first(value: object) -> object:
    """First value of a possibly multi-valued DS."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def _float(value: object, default: float | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------- #
# Geometry
# --------------------------------------------------------------------------- #


def apply_geometry(image: Image.Image, params: RenderParams) -> Image.Image:
    """WADO-URI region, then the viewport crop/flips and scaling, then WADO-URI rows ×
    columns (PS3.18 §9.5.2: region before viewport)."""
    if params.region is not None:
        image = _crop_region(image, params.region)
    if params.viewport is not None:
        image = _viewport_crop(image, params.viewport)
        image = _resize(image, fitted_size(image.size, params.viewport.width,
                                           params.viewport.height))
    if params.rows or params.columns:
        image = _resize(image, fitted_size(image.size, params.columns, params.rows))
    return image


def _crop_region(image: Image.Image, region: tuple[float, float, float, float]) -> Image.Image:
    """PS3.18 §9.5.1.2.5: a region in 0..1 coordinates of the image matrix."""
    w, h = image.size
    x1, y1, x2, y2 = region
    left, top = min(round(x1 * w), w - 1), min(round(y1 * h), h - 1)
    return image.crop((left, top, max(left + 1, round(x2 * w)), max(top + 1, round(y2 * h))))


def _viewport_crop(image: Image.Image, vp: Viewport) -> Image.Image:
    """PS3.18 §8.3.5.1.3: |sx|,|sy| top-left (default 0), |sw|,|sh| size (default to the
    right/bottom edge) in source pixels; a negative sw/sh flips. Clipped to the image."""
    w, h = image.size
    sx, sy = abs(vp.sx or 0.0), abs(vp.sy or 0.0)
    sw = abs(vp.sw) if vp.sw is not None else w - sx
    sh = abs(vp.sh) if vp.sh is not None else h - sy
    box = (round(sx), round(sy), min(w, round(sx + sw)), min(h, round(sy + sh)))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise BadRequest(f"viewport source region {sx:g},{sy:g},{sw:g},{sh:g} lies outside "
                         f"the {w}x{h} image")
    if box != (0, 0, w, h):
        image = image.crop(box)
    if vp.sw is not None and vp.sw < 0:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if vp.sh is not None and vp.sh < 0:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return image


def fitted_size(size: tuple[int, int], width: int | None,
                height: int | None) -> tuple[int, int]:
    """The largest size within width × height with the aspect ratio of ``size``.

    PS3.18 §8.3.5.1.3 (and §9.5.1.2.4 for rows/columns): the content is scaled "until
    either the rendered content width or height is the same as the viewport width or
    height, whichever avoids truncation" - so the output is the fitted size, never
    letterboxed to the full viewport (512×256 in a 256×256 viewport gives 256×128), and
    a small image is scaled up. A missing width or height does not constrain.
    """
    w, h = size
    scales = [limit / extent for limit, extent in ((width, w), (height, h)) if limit]
    if not scales:
        return size
    scale = min(scales)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Lanczos; ``reducing_gap`` first box-reduces by an integer factor for large
    downscales (thumbnails of big images), which is fast and visually equivalent."""
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


# --------------------------------------------------------------------------- #
# Encoding
# --------------------------------------------------------------------------- #


def encode(image: Image.Image, media_type: str, quality: int) -> bytes:
    """JPEG at ``quality`` (PS3.18 §8.3.5.1.2: only lossy types use it), PNG, or GIF
    (colour quantized to a 256-entry adaptive palette; grayscale is exact)."""
    _check_media_type(media_type)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    out = io.BytesIO()
    fmt = FORMATS[media_type]
    if fmt == "JPEG":
        image.save(out, fmt, quality=quality)
    elif fmt == "GIF" and image.mode == "RGB":
        image.quantize(256).save(out, fmt)
    else:
        image.save(out, fmt)
    return out.getvalue()
