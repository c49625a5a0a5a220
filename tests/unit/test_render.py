"""Unit tests for app.dicom.render: the consumer-image pipeline (PS3.3 C.11, PS3.18 §8.3.5.1,
§9.5.1.2), checked pixel by pixel against numpy references written here from the standard."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from app.dicom import pixels, render
from app.dicom.render import (
    RenderParams,
    Viewport,
    Window,
    encode,
    parse_rendered_params,
    parse_wado_uri_params,
    render_frame,
    to_display,
)
from app.errors import BadRequest, NotAcceptable

RAMP = np.arange(-1024, 3072, dtype=np.int16).reshape(64, 64)  # every value once


# --------------------------------------------------------------------------- #
# References: PS3.3 formulas written out branch by branch, ymin = 0, ymax = 255
# --------------------------------------------------------------------------- #


def round_half_up(y: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(y, dtype=np.float64) + 0.5).astype(np.uint8)


def ref_linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1."""
    x = np.asarray(x, dtype=np.float64)
    below = x <= c - 0.5 - (w - 1) / 2
    above = x > c - 0.5 + (w - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    return round_half_up(np.select([below, above], [0.0, 255.0], inside))


def ref_linear_exact(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.2."""
    x = np.asarray(x, dtype=np.float64)
    inside = ((x - c) / w + 0.5) * 255
    return round_half_up(np.select([x <= c - w / 2, x > c + w / 2], [0.0, 255.0], inside))


def ref_sigmoid(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.3.1."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return round_half_up(255 / (1 + np.exp(-4 * (x - c) / w)))


def ref_minmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return round_half_up((x - x.min()) / (x.max() - x.min()) * 255)


REFERENCES: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "LINEAR": ref_linear, "LINEAR_EXACT": ref_linear_exact, "SIGMOID": ref_sigmoid}


def gray(photometric: str = "MONOCHROME2", **attrs: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def item(**attrs: object) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def lut_item(descriptor: list[int], data: list[int], **attrs: object) -> Dataset:
    ds = item(LUTDescriptor=descriptor, **attrs)
    ds.add_new(0x00283006, "US", data)  # LUT Data
    return ds


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def position_image(rows: int = 16, cols: int = 16) -> np.ndarray:
    """RGB where red is the column and green the row: where a pixel came from."""
    arr = np.zeros((rows, cols, 3), np.uint8)
    arr[..., 0] = np.arange(cols)[None, :]
    arr[..., 1] = np.arange(rows)[:, None]
    return arr


RGB = gray("RGB", SamplesPerPixel=3, BitsStored=8)


def png(arr: np.ndarray, header: Dataset, **params: object) -> np.ndarray:
    out = render_frame(arr, header, 0, RenderParams("image/png", **params))  # type: ignore[arg-type]
    return np.asarray(decode(out))


# --------------------------------------------------------------------------- #
# Window functions (PS3.3 C.11.2.1.2 / C.11.2.1.3)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("center,width", [(40, 400), (-600, 1500), (1000.5, 2), (0, 4096),
                                          (3000, 10), (-1024, 1.5)])
def test_window_functions_match_the_standard(function: str, center: float,
                                             width: float) -> None:
    out = to_display(RAMP, gray(), 0, Window(center, width, function))
    assert out.dtype == np.uint8 and out.shape == RAMP.shape
    np.testing.assert_array_equal(out, REFERENCES[function](RAMP, center, width))


def test_linear_edges() -> None:
    """c=40, w=400: x <= -160 is black, x > 239 white, 39.5 is the mid-point."""
    x = np.array([[-161, -160, -159, 39, 40, 238, 239, 240]], np.int16)
    out = to_display(x, gray(), 0, Window(40, 400))
    expected = [0, 0, round(((-159 - 39.5) / 399 + 0.5) * 255), 127, 128,
                round(((238 - 39.5) / 399 + 0.5) * 255), 255, 255]
    assert out[0].tolist() == expected


def test_linear_width_one_is_a_step_at_center_minus_half() -> None:
    x = np.array([[-1, 0, 1, 2]], np.int16)
    assert to_display(x, gray(), 0, Window(0.5, 1))[0].tolist() == [0, 0, 255, 255]
    assert to_display(x, gray(), 0, Window(1, 1))[0].tolist() == [0, 0, 255, 255]


def test_linear_exact_edges() -> None:
    """c=0, w=100: x <= -50 black, x > 50 white, exactly 127.5 at the centre (rounds up)."""
    x = np.array([[-51, -50, -49, 0, 49, 50, 51]], np.int16)
    out = to_display(x, gray(), 0, Window(0, 100, "LINEAR_EXACT"))
    assert out[0].tolist() == [0, 0, 3, 128, 252, 255, 255]


def test_sigmoid_values() -> None:
    x = np.array([[-10_000, 0, 40, 10_000]], np.int16)
    out = to_display(x, gray(), 0, Window(40, 80, "SIGMOID"))
    assert out[0].tolist() == [0, round(255 / (1 + np.exp(2))), 128, 255]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_on_fractional_values(function: str) -> None:
    x = np.linspace(-300.0, 300.0, 1201)
    got = render.apply_window(x, Window(12.25, 150.5, function))
    expected = REFERENCES[function](x, 12.25, 150.5)
    np.testing.assert_array_equal(round_half_up(got), expected)


def test_table_path_equals_direct_path() -> None:
    """Integer frames go through a per-value table; wide ranges are computed per pixel."""
    header = gray(RescaleSlope=0.5, RescaleIntercept=-7)
    narrow = to_display(RAMP, header, 0, Window(100, 700))
    np.testing.assert_array_equal(narrow, ref_linear(RAMP * 0.5 - 7, 100, 700))
    wide = np.array([[0, 1 << 21, 1 << 22, 3_000_000]], np.int32)
    out = to_display(wide, header, 0, Window(1 << 20, 1 << 21, "LINEAR_EXACT"))
    np.testing.assert_array_equal(out, ref_linear_exact(wide * 0.5 - 7, 1 << 20, 1 << 21))


# --------------------------------------------------------------------------- #
# Modality LUT and VOI sources
# --------------------------------------------------------------------------- #


def test_rescale_slope_intercept_before_window() -> None:
    stored = np.arange(0, 4096, dtype=np.uint16).reshape(64, 64)
    header = gray(RescaleSlope="2", RescaleIntercept="-1024")
    out = to_display(stored, header, 0, Window(40, 400))
    np.testing.assert_array_equal(out, ref_linear(stored * 2.0 - 1024, 40, 400))


def test_file_window_first_value_and_function() -> None:
    header = gray(WindowCenter=[40, 400], WindowWidth=[400, 2000])
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None), ref_linear(RAMP, 40, 400))
    header.VOILUTFunction = "SIGMOID"
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None), ref_sigmoid(RAMP, 40, 400))
    header.VOILUTFunction = "LINEAR_EXACT"
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None),
                                  ref_linear_exact(RAMP, 40, 400))


def test_request_window_overrides_file_window() -> None:
    header = gray(WindowCenter=40, WindowWidth=400, VOILUTFunction="SIGMOID")
    out = to_display(RAMP, header, 0, Window(1000, 2000, "LINEAR"))
    np.testing.assert_array_equal(out, ref_linear(RAMP, 1000, 2000))


def test_unusable_file_window_falls_back_to_min_max() -> None:
    header = gray(WindowCenter=40, WindowWidth=0)
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None), ref_minmax(RAMP))


def enhanced(frames: list[tuple[float, float, float, float]], *,
             shared: Dataset | None = None, **top: object) -> Dataset:
    """Philips-style enhanced multi-frame: (slope, intercept, center, width) per frame."""
    header = gray(NumberOfFrames=len(frames), **top)
    header.PerFrameFunctionalGroupsSequence = [
        item(PixelValueTransformationSequence=[item(RescaleSlope=s, RescaleIntercept=i,
                                                    RescaleType="US")],
             FrameVOILUTSequence=[item(WindowCenter=c, WindowWidth=w)])
        for s, i, c, w in frames]
    if shared is not None:
        header.SharedFunctionalGroupsSequence = [shared]
    return header


def test_per_frame_functional_groups() -> None:
    frames = [(1.0, 0.0, 100.0, 200.0), (2.5, -100.0, 1500.0, 3000.0), (0.25, 10.0, 0.0, 50.0)]
    # Top-level values (as Philips also writes) lose to the frame's functional groups.
    header = enhanced(frames, RescaleSlope=9, RescaleIntercept=9, WindowCenter=9,
                      WindowWidth=9)
    stored = np.arange(0, 4096, dtype=np.uint16).reshape(64, 64)
    for index, (slope, intercept, center, width) in enumerate(frames):
        out = to_display(stored, header, index, None)
        np.testing.assert_array_equal(out, ref_linear(stored * slope + intercept, center, width))


def test_shared_functional_groups() -> None:
    shared = item(PixelValueTransformationSequence=[item(RescaleSlope=3, RescaleIntercept=5)],
                  FrameVOILUTSequence=[item(WindowCenter=2000, WindowWidth=1000,
                                            VOILUTFunction="LINEAR_EXACT")])
    header = gray(NumberOfFrames=2, SharedFunctionalGroupsSequence=[shared])
    header.PerFrameFunctionalGroupsSequence = [item(), item(
        FrameVOILUTSequence=[item(WindowCenter=500, WindowWidth=100)])]
    stored = np.arange(0, 1024, dtype=np.uint16).reshape(32, 32)
    np.testing.assert_array_equal(to_display(stored, header, 0, None),
                                  ref_linear_exact(stored * 3 + 5, 2000, 1000))
    np.testing.assert_array_equal(to_display(stored, header, 1, None),
                                  ref_linear(stored * 3 + 5, 500, 100))


def test_voi_lut_sequence_16_bit_table_filled_to_12_bits() -> None:
    data = list(range(0, 4096, 8))  # 512 entries, 0..4088: a 12-bit table in 16-bit entries
    header = gray(VOILUTSequence=[lut_item([512, 50, 16], data)])
    stored = np.arange(0, 640, dtype=np.uint16).reshape(20, 32)
    expected = round_half_up(np.asarray(data)[np.clip(stored.astype(int) - 50, 0, 511)]
                             * 255 / 4095)
    np.testing.assert_array_equal(to_display(stored, header, 0, None), expected)


def test_voi_lut_sequence_8_bit_after_rescale() -> None:
    data = [min(255, 3 * i) for i in range(100)]
    header = gray(RescaleSlope=1, RescaleIntercept=-20,
                  VOILUTSequence=[lut_item([100, -10, 8], data), lut_item([2, 0, 8], [0, 0])])
    stored = np.arange(0, 150, dtype=np.int16).reshape(10, 15)
    expected = np.asarray(data)[np.clip(stored.astype(int) - 20 + 10, 0, 99)].astype(np.uint8)
    np.testing.assert_array_equal(to_display(stored, header, 0, None), expected)


def test_per_frame_voi_lut_with_ow_data_in_the_file_byte_order() -> None:
    """A VOI LUT inside the Frame VOI LUT functional group, its LUT Data as OW bytes."""
    data = np.asarray([0, 100, 200, 255], np.uint16)
    lut = item(LUTDescriptor=[4, 0, 8])
    lut.add_new(0x00283006, "OW", data.astype(">u2").tobytes())
    header = gray(NumberOfFrames=2, PerFrameFunctionalGroupsSequence=[
        item(), item(FrameVOILUTSequence=[item(VOILUTSequence=[lut])])])
    header.set_original_encoding(False, False)  # big endian
    stored = np.array([[0, 1, 2, 3, 9]], np.uint16)
    assert to_display(stored, header, 1, None).tolist() == [[0, 100, 200, 255, 255]]
    assert to_display(stored, header, 0, None).tolist() == [[0, 28, 57, 85, 255]]  # min/max


def test_window_wins_over_voi_lut() -> None:
    header = gray(WindowCenter=100, WindowWidth=50,
                  VOILUTSequence=[lut_item([2, 0, 8], [255, 255])])
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None), ref_linear(RAMP, 100, 50))


def test_modality_lut_sequence() -> None:
    data = [int(np.sqrt(i) * 64) for i in range(4096)]
    header = gray(ModalityLUTSequence=[lut_item([4096, 0, 16], data, ModalityLUTType="US")])
    stored = np.arange(0, 4096, dtype=np.uint16).reshape(64, 64)
    out = to_display(stored, header, 0, Window(2048, 4096))
    np.testing.assert_array_equal(out, ref_linear(np.asarray(data)[stored], 2048, 4096))


def test_min_max_default() -> None:
    rng = np.random.default_rng(7)
    stored = rng.integers(-500, 1500, size=(40, 50), dtype=np.int16)
    out = to_display(stored, gray(RescaleSlope=2, RescaleIntercept=100), 0, None)
    np.testing.assert_array_equal(out, ref_minmax(stored))
    assert out.min() == 0 and out.max() == 255


def test_constant_frame_is_black() -> None:
    assert not to_display(np.full((4, 4), 7, np.uint16), gray(), 0, None).any()


def test_float_pixel_data_min_max_and_nan() -> None:
    values = np.linspace(-1.5, 2.5, 64).reshape(8, 8)
    values[0, 0] = np.nan
    out = to_display(values.astype(np.float32), gray(RescaleSlope=100), 0, None)
    finite = values[1:, :].astype(np.float32).astype(np.float64)
    low, high = np.nanmin(values.astype(np.float32)), np.nanmax(values.astype(np.float32))
    np.testing.assert_array_equal(out[1:], round_half_up((finite - low) / (high - low) * 255))
    assert out[0, 0] == 0


def test_monochrome1_is_inverted() -> None:
    header = gray("MONOCHROME1", WindowCenter=40, WindowWidth=400)
    np.testing.assert_array_equal(to_display(RAMP, header, 0, None),
                                  255 - ref_linear(RAMP, 40, 400))
    np.testing.assert_array_equal(to_display(RAMP, gray("MONOCHROME1"), 0, None),
                                  255 - ref_minmax(RAMP))


# --------------------------------------------------------------------------- #
# Colour
# --------------------------------------------------------------------------- #


def palette(bits: int, tables: list[list[int]], first: int) -> Dataset:
    header = gray("PALETTE COLOR", BitsAllocated=8, BitsStored=8)
    for colour, values in zip(("Red", "Green", "Blue"), tables, strict=True):
        setattr(header, f"{colour}PaletteColorLookupTableDescriptor", [len(values), first, bits])
        data = np.asarray(values, "<u2" if bits == 16 else "u1").tobytes()
        setattr(header, f"{colour}PaletteColorLookupTableData", data)
    return header


def test_palette_16_bit_entries_exact() -> None:
    header = palette(16, [[0, 0x8000, 0xFF00, 0xFFFF], [0xFFFF, 0, 0x1234, 0x0101],
                          [0x0100, 0x0200, 0x0300, 0x0400]], first=10)
    arr = np.array([[5, 10, 11], [12, 13, 200]], np.uint8)  # below and above the table too
    out = to_display(arr, header, 0, Window(0, 10))  # a window does not apply to colour
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out.tolist() == [[[0, 255, 1], [0, 255, 1], [128, 0, 2]],
                            [[255, 18, 3], [255, 1, 4], [255, 1, 4]]]


def test_palette_8_bit_entries_and_8_bit_values_in_16_bit_entries() -> None:
    tables = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    arr = np.array([[0, 1, 2, 3]], np.uint8)
    expected = [[[10, 40, 70], [20, 50, 80], [30, 60, 90], [30, 60, 90]]]
    assert to_display(arr, palette(8, tables, first=0), 0, None).tolist() == expected
    assert to_display(arr, palette(16, tables, first=0), 0, None).tolist() == expected


def test_rgb_8_bit_as_is_and_ybr_already_converted() -> None:
    arr = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_display(arr, RGB, 0, Window(0, 1)), arr)
    ybr = gray("YBR_FULL_422", SamplesPerPixel=3, BitsStored=8)
    np.testing.assert_array_equal(to_display(arr, ybr, 0, None), arr)


@pytest.mark.parametrize("bits", [16, 12, 10])
def test_rgb_16_bit_scaled_by_bits_stored(bits: int) -> None:
    arr = np.random.default_rng(bits).integers(0, 2**bits, (7, 9, 3), dtype=np.uint16)
    header = gray("RGB", SamplesPerPixel=3, BitsAllocated=16, BitsStored=bits)
    expected = round_half_up(arr * 255.0 / (2**bits - 1))
    np.testing.assert_array_equal(to_display(arr, header, 0, None), expected)


def test_unrenderable_shape() -> None:
    with pytest.raises(NotAcceptable):
        to_display(np.zeros((2, 3, 4, 5), np.uint8), gray(), 0, None)


def test_palette_without_tables_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptable):
        to_display(np.zeros((2, 2), np.uint8), gray("PALETTE COLOR"), 0, None)


# --------------------------------------------------------------------------- #
# Geometry (PS3.18 §8.3.5.1.3 viewport, §9.5.1.2 region / rows / columns)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("viewport,size", [
    (Viewport(256, 256), (256, 128)),    # fitted, not letterboxed
    (Viewport(1024, 1024), (1024, 512)),  # scaled up to fit
    (Viewport(100, 300), (100, 50)),
    (Viewport(None, 128), (256, 128)),   # only one constraint
    (Viewport(128, None), (128, 64)),
    (Viewport(512, 256), (512, 256)),
])
def test_viewport_fits_keeping_aspect_ratio(viewport: Viewport, size: tuple[int, int]) -> None:
    arr = np.zeros((256, 512), np.uint8)
    out = decode(render_frame(arr, gray(), 0, RenderParams("image/png", viewport=viewport)))
    assert out.size == size


def test_viewport_crop_exact_pixels() -> None:
    out = png(position_image(), RGB, viewport=Viewport(4, 4, 2, 3, 4, 4))
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[..., 0], np.tile(np.arange(2, 6), (4, 1)))
    np.testing.assert_array_equal(out[..., 1], np.tile(np.arange(3, 7)[:, None], (1, 4)))


def test_viewport_flips() -> None:
    arr = position_image()
    horizontal = png(arr, RGB, viewport=Viewport(16, 16, 0, 0, -16, 16))
    np.testing.assert_array_equal(horizontal, arr[:, ::-1])
    vertical = png(arr, RGB, viewport=Viewport(16, 16, None, None, None, -16))
    np.testing.assert_array_equal(vertical, arr[::-1])
    both = png(arr, RGB, viewport=Viewport(4, 4, 8, 8, -4, -4))
    np.testing.assert_array_equal(both, arr[8:12, 8:12][::-1, ::-1])


def test_viewport_source_defaults() -> None:
    arr = position_image()
    np.testing.assert_array_equal(png(arr, RGB, viewport=Viewport(8, 8, None, None, 8, 8)),
                                  arr[:8, :8])
    np.testing.assert_array_equal(png(arr, RGB, viewport=Viewport(12, 12, 4, 4)), arr[4:, 4:])
    # Negative sx/sy: their absolute values are the corner (PS3.18 §8.3.5.1.3).
    np.testing.assert_array_equal(png(arr, RGB, viewport=Viewport(2, 2, -3, -5, 2, 2)),
                                  arr[5:7, 3:5])


def test_viewport_region_clipped_or_outside() -> None:
    out = png(position_image(), RGB, viewport=Viewport(4, 4, 12, 12, 10, 10))
    np.testing.assert_array_equal(out, position_image()[12:, 12:])
    with pytest.raises(BadRequest, match="viewport"):
        png(position_image(), RGB, viewport=Viewport(4, 4, 20, 0, 4, 4))


def test_viewport_resampling_keeps_a_smooth_ramp() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    out = png(ramp, gray(), viewport=Viewport(128, 128))
    assert out.shape == (32, 128)
    assert np.abs(out.astype(int) - ramp[:32, ::2].astype(int)).mean() < 2


def test_wado_uri_region_then_rows_columns() -> None:
    arr = position_image()
    out = png(arr, RGB, region=(0.25, 0.5, 0.75, 1.0))
    np.testing.assert_array_equal(out, arr[8:16, 4:12])
    big = np.zeros((256, 512), np.uint8)
    assert decode(render_frame(big, gray(), 0, RenderParams("image/png", rows=64, columns=64))
                  ).size == (64, 32)
    assert decode(render_frame(big, gray(), 0, RenderParams("image/png", rows=64))
                  ).size == (128, 64)
    assert decode(render_frame(big, gray(), 0, RenderParams("image/png", columns=64))
                  ).size == (64, 32)
    assert decode(render_frame(big, gray(), 0, RenderParams(
        "image/png", region=(0, 0, 0.5, 1), rows=128, columns=1000))).size == (128, 128)


def test_fitted_size() -> None:
    assert render.fitted_size((512, 256), 256, 256) == (256, 128)
    assert render.fitted_size((512, 256), None, None) == (512, 256)
    assert render.fitted_size((3, 1000), 100, 100) == (1, 100)


# --------------------------------------------------------------------------- #
# Encoders
# --------------------------------------------------------------------------- #


def smooth_rgb() -> np.ndarray:
    y, x = np.mgrid[0:64, 0:96]
    return np.stack([x * 2, y * 3, (x + y)], axis=-1).astype(np.uint8)


def test_png_is_lossless() -> None:
    display = to_display(RAMP, gray(), 0, Window(1000, 3000))
    np.testing.assert_array_equal(np.asarray(decode(encode(Image.fromarray(display),
                                                              "image/png", 90))), display)
    rgb = smooth_rgb()
    np.testing.assert_array_equal(png(rgb, RGB), rgb)


def test_jpeg_close_and_quality_matters() -> None:
    display = to_display(RAMP, gray(), 0, Window(1000, 4096))
    high = render_frame(RAMP, gray(), 0, RenderParams(window=Window(1000, 4096), quality=95))
    low = render_frame(RAMP, gray(), 0, RenderParams(window=Window(1000, 4096), quality=5))
    assert high[:2] == b"\xff\xd8" and len(low) < len(high)
    decoded = np.asarray(decode(high))
    assert decoded.shape == display.shape
    assert np.abs(decoded.astype(int) - display.astype(int)).mean() < 2
    colour = np.asarray(decode(render_frame(smooth_rgb(), RGB, 0, RenderParams(quality=95))))
    assert np.abs(colour.astype(int) - smooth_rgb().astype(int)).mean() < 3


def test_gif() -> None:
    display = to_display(RAMP, gray(), 0, None)
    out = decode(render_frame(RAMP, gray(), 0, RenderParams("image/gif")))
    assert out.format == "GIF" and out.size == (64, 64)
    np.testing.assert_array_equal(np.asarray(out.convert("L")), display)
    colour = decode(render_frame(smooth_rgb(), RGB, 0, RenderParams(
        "image/gif", viewport=Viewport(48, 48))))
    assert colour.format == "GIF" and colour.size == (48, 32)
    small = np.asarray(Image.fromarray(smooth_rgb()).resize((48, 32), Image.Resampling.LANCZOS))
    assert np.abs(np.asarray(colour.convert("RGB")).astype(int) - small.astype(int)).mean() < 6


def test_encode_unknown_media_type() -> None:
    with pytest.raises(NotAcceptable):
        encode(Image.new("L", (2, 2)), "image/webp", 90)


# --------------------------------------------------------------------------- #
# Query parameters
# --------------------------------------------------------------------------- #


def test_rendered_params_defaults() -> None:
    assert parse_rendered_params({}, "image/png") == RenderParams("image/png")
    assert parse_rendered_params({"annotation": "patient", "charset": "utf-8",
                                  "iccprofile": "srgb"}, "image/jpeg") == RenderParams()


@pytest.mark.parametrize("args,expected", [
    ({"quality": "1"}, RenderParams(quality=1)),
    ({"quality": "100"}, RenderParams(quality=100)),
    ({"window": "40,400,linear"}, RenderParams(window=Window(40, 400))),
    ({"window": "-600.5,1500,LINEAR-EXACT"},
     RenderParams(window=Window(-600.5, 1500, "LINEAR_EXACT"))),
    ({"window": "1e3,2E2,Sigmoid"}, RenderParams(window=Window(1000, 200, "SIGMOID"))),
    ({"window": "0,0.5,sigmoid"}, RenderParams(window=Window(0, 0.5, "SIGMOID"))),
    ({"viewport": "512,256"}, RenderParams(viewport=Viewport(512, 256))),
    ({"viewport": "512,512,,,512,512"},
     RenderParams(viewport=Viewport(512, 512, None, None, 512, 512))),
    ({"viewport": "100,100,10.5,20,-30,-40"},
     RenderParams(viewport=Viewport(100, 100, 10.5, 20, -30, -40))),
    ({"viewport": "100,100,10,20"}, RenderParams(viewport=Viewport(100, 100, 10, 20))),
    ({"viewport": "128,"}, RenderParams(viewport=Viewport(128, None))),
    ({"viewport": ",128"}, RenderParams(viewport=Viewport(None, 128))),
])
def test_rendered_params_valid(args: dict[str, str], expected: RenderParams) -> None:
    assert parse_rendered_params(args, "image/jpeg") == expected


@pytest.mark.parametrize("args,name", [
    ({"quality": "0"}, "quality"),
    ({"quality": "101"}, "quality"),
    ({"quality": "ninety"}, "quality"),
    ({"quality": ""}, "quality"),
    ({"quality": "9.5"}, "quality"),
    ({"window": "40,400"}, "window"),
    ({"window": "40,400,linear,x"}, "window"),
    ({"window": "40,400,gamma"}, "window function"),
    ({"window": "abc,400,linear"}, "window center"),
    ({"window": "40,nan,linear"}, "window width"),
    ({"window": "40,0.5,linear"}, "window width"),
    ({"window": "40,0,sigmoid"}, "window width"),
    ({"window": "40,-3,linear-exact"}, "window width"),
    ({"viewport": "512"}, "viewport"),
    ({"viewport": "1,2,3,4,5,6,7"}, "viewport"),
    ({"viewport": "0,256"}, "viewport width"),
    ({"viewport": "256,-1"}, "viewport height"),
    ({"viewport": "256,2.5"}, "viewport height"),
    ({"viewport": "99999,256"}, "viewport width"),
    ({"viewport": ","}, "viewport"),
    ({"viewport": "256,256,a"}, "viewport sx"),
    ({"viewport": "256,256,0,0,0,10"}, "viewport sw"),
    ({"viewport": "256,256,0,0,10,0"}, "viewport sh"),
])
def test_rendered_params_errors(args: dict[str, str], name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_rendered_params(args, "image/jpeg")
    assert caught.value.message.startswith(name)


def test_rendered_params_unknown_media_type() -> None:
    with pytest.raises(NotAcceptable):
        parse_rendered_params({}, "image/webp")


def test_thumbnail_params() -> None:
    default = parse_rendered_params({"quality": "5", "window": "bad"}, "image/jpeg",
                                    thumbnail=True)
    assert default == RenderParams(viewport=Viewport(render.THUMBNAIL_SIZE,
                                                     render.THUMBNAIL_SIZE))
    assert parse_rendered_params({"viewport": "64,32"}, "image/gif", thumbnail=True) == \
        RenderParams("image/gif", viewport=Viewport(64, 32))
    with pytest.raises(BadRequest, match="viewport must be vw,vh"):
        parse_rendered_params({"viewport": "64,64,0,0,10,10"}, "image/jpeg", thumbnail=True)


@pytest.mark.parametrize("args,expected", [
    ({}, RenderParams()),
    ({"rows": "64", "columns": "128"}, RenderParams(rows=64, columns=128)),
    ({"rows": "64"}, RenderParams(rows=64)),
    ({"windowCenter": "40", "windowWidth": "400.5"},
     RenderParams(window=Window(40, 400.5))),
    ({"imageQuality": "55"}, RenderParams(quality=55)),
    ({"region": "0,0.25,1,0.75"}, RenderParams(region=(0, 0.25, 1, 0.75))),
    ({"frameNumber": "2", "contentType": "image/jpeg", "annotation": "patient"},
     RenderParams()),
])
def test_wado_uri_params_valid(args: dict[str, str], expected: RenderParams) -> None:
    assert parse_wado_uri_params(args, "image/jpeg") == expected


@pytest.mark.parametrize("args,name", [
    ({"rows": "0"}, "rows"),
    ({"rows": "-5"}, "rows"),
    ({"columns": "abc"}, "columns"),
    ({"windowCenter": "40"}, "windowCenter and windowWidth"),
    ({"windowWidth": "400"}, "windowCenter and windowWidth"),
    ({"windowCenter": "x", "windowWidth": "400"}, "windowCenter"),
    ({"windowCenter": "40", "windowWidth": "0.5"}, "windowWidth"),
    ({"imageQuality": "0"}, "imageQuality"),
    ({"imageQuality": "best"}, "imageQuality"),
    ({"region": "0,0,1"}, "region"),
    ({"region": "0.5,0,0.5,1"}, "region"),
    ({"region": "0,0.6,1,0.4"}, "region"),
    ({"region": "-0.1,0,1,1"}, "region"),
    ({"region": "0,0,1.5,1"}, "region"),
    ({"region": "a,0,1,1"}, "region"),
])
def test_wado_uri_params_errors(args: dict[str, str], name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_wado_uri_params(args, "image/jpeg")
    assert caught.value.message.startswith(f"WADO-URI: {name}")


# --------------------------------------------------------------------------- #
# pydicom's bundled files
# --------------------------------------------------------------------------- #


def load(name: str) -> tuple[np.ndarray, Dataset]:
    with open(get_testdata_file(name), "rb") as f:  # bundled: no download
        header = pixels.header_of(f)
        return pixels.decode_frame_from_file(f, 0), header


def test_ct_small_min_max_reference() -> None:
    arr, header = load("CT_small.dcm")
    assert "WindowCenter" not in header
    expected = ref_minmax(arr * float(header.RescaleSlope) + float(header.RescaleIntercept))
    np.testing.assert_array_equal(to_display(arr, header, 0, None), expected)


def test_mr_small_file_window_reference() -> None:
    arr, header = load("MR_small.dcm")
    expected = ref_linear(arr, float(header.WindowCenter), float(header.WindowWidth))
    np.testing.assert_array_equal(to_display(arr, header, 0, None), expected)
    header.PhotometricInterpretation = "MONOCHROME1"
    np.testing.assert_array_equal(to_display(arr, header, 0, None), 255 - expected)


def test_palette_file_reference() -> None:
    arr, header = load("examples_palette.dcm")
    expected = (apply_color_lut(arr, header) >> 8).astype(np.uint8)
    np.testing.assert_array_equal(to_display(arr, header, 0, None), expected)


def test_16_bit_rgb_file_reference() -> None:
    arr, header = load("SC_rgb_rle_16bit.dcm")
    np.testing.assert_array_equal(to_display(arr, header, 0, None),
                                  round_half_up(arr * 255.0 / 65535))


@pytest.mark.parametrize("name,size,mode", [
    ("CT_small.dcm", (128, 128), "L"),
    ("MR_small.dcm", (64, 64), "L"),
    ("examples_palette.dcm", (800, 350), "RGB"),
    ("SC_rgb_rle_16bit.dcm", (100, 100), "RGB"),
    ("examples_rgb_color.dcm", (320, 240), "RGB"),
    ("examples_ybr_color.dcm", (320, 240), "RGB"),
    ("SC_ybr_full_422_uncompressed.dcm", (100, 100), "RGB"),
    ("liver_1frame.dcm", (512, 512), "L"),
    ("JPEG2000.dcm", (256, 1024), "L"),
    ("rtdose.dcm", (10, 10), "L"),
])
def test_bundled_files_render(name: str, size: tuple[int, int], mode: str) -> None:
    arr, header = load(name)
    image = decode(render_frame(arr, header, 0, RenderParams("image/png")))
    assert image.size == size and image.mode == mode
    assert np.asarray(image).std() > 0
    thumb = decode(render_frame(arr, header, 0, RenderParams(viewport=Viewport(64, 64))))
    assert thumb.format == "JPEG" and max(thumb.size) == 64
