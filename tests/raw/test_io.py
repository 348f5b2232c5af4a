"""read_raw for every layout, the unisp sidecar round trip, find_raw_files, and every error case."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from unisp.errors import ConfigError, RawFormatError, UnispError
from unisp.raw.bayer import CFA, REFERENCE_ORDER, pack, to_reference_order, unpack
from unisp.raw.dng import write_dng
from unisp.raw.frame import RawFrame, Source
from unisp.raw.io import (
    SRGB_TO_XYZ_D65,
    camera_to_srgb_matrix,
    detect_layout,
    find_raw_files,
    read_raw,
    write_mosaic_png,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HEADERLESS = dict(width=8, height=6, bits=10, cfa="RGGB")


def rng_mosaic(shape=(6, 8), high=1024, seed=0, dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape).astype(dtype)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imagecodecs.png_encode(pixels))
    return path


def write_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def write_headerless(path: Path, mosaic: np.ndarray) -> Path:
    mosaic.astype("<u2" if mosaic.dtype.itemsize == 2 else "u1").tofile(path)
    return path


# ------------------------------------------------------------------------------------------ dataset presets


@pytest.mark.parametrize("folder", ["huawei_raw", "huawei_full_resolution"])
def test_zrr_png(tmp_path, folder):
    mosaic = rng_mosaic()
    path = write_png(tmp_path / folder / "7.png", mosaic)
    frame = read_raw(path)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    # ZRR: RGGB, 10-bit values, black 0 (the dataset code divides by 1023).
    assert frame.cfa is CFA.RGGB and frame.black_level == (0.0,) * 4 and frame.white_level == 1023.0
    assert frame.sources["cfa"] is Source.PRESET and frame.sources["white_level"] is Source.PRESET
    assert frame.wb_gains is None and frame.sources["wb_gains"] is Source.ASSUMED


def test_zrr_values_above_10_bits(tmp_path):
    path = write_png(tmp_path / "huawei_raw" / "0.png", np.full((4, 4), 1024, np.uint16))
    with pytest.raises(RawFormatError, match=r"0\.png: values above the white level \(max 1024 > white 1023\)"):
        read_raw(path)


def test_uispf_black_levels_follow_the_reference_description(tmp_path):
    # The published levels 62/60/58/61 are for (B, Gb, R, Gr) where "Gb" = raw[0::2, 1::2] and
    # "Gr" = raw[1::2, 0::2]. A mosaic holding exactly those values at those sites is pure black.
    mosaic = np.zeros((4, 6), np.uint16)
    mosaic[1::2, 1::2], mosaic[0::2, 1::2], mosaic[0::2, 0::2], mosaic[1::2, 0::2] = 62, 60, 58, 61
    path = write_png(tmp_path / "mediatek_raw" / "1.png", mosaic)
    frame = read_raw(path)
    assert frame.cfa is CFA.RGGB and frame.white_level == 1023.0
    assert frame.black_level == (58.0, 60.0, 61.0, 62.0)
    assert tuple(np.array(frame.black_level)[list(REFERENCE_ORDER)]) == (62, 60, 58, 61)
    assert float(frame.normalized().abs().max()) == 0.0
    assert frame.sources["black_level"] is Source.PRESET


def test_user_overrides_on_a_preset(tmp_path, caplog):
    path = write_png(tmp_path / "huawei_raw" / "0.png", rng_mosaic(high=4096))
    with caplog.at_level(logging.DEBUG, logger="unisp.raw.io"):
        frame = read_raw(path, black=16, white=4095)
    assert frame.black_level == (16.0,) * 4 and frame.white_level == 4095.0
    assert frame.sources["black_level"] is Source.USER and frame.sources["white_level"] is Source.USER
    assert frame.sources["cfa"] is Source.PRESET
    assert "(16, 16, 16, 16) [user]" in caplog.text and "white 4095 [user]" in caplog.text


def test_cfa_override_moves_black_levels_with_their_pixels(tmp_path):
    # UltraISP blacks by tile position: (0,0) 58, (0,1) 60, (1,0) 61, (1,1) 62. Read as BGGR, R sits at
    # (1,1), Gr at (1,0), Gb at (0,1) and B at (0,0).
    path = write_png(tmp_path / "mediatek_raw" / "1.png", np.full((4, 4), 100, np.uint16))
    frame = read_raw(path, cfa="bggr")
    assert frame.cfa is CFA.BGGR and frame.black_level == (62.0, 61.0, 60.0, 58.0)
    assert frame.sources["cfa"] is Source.USER and frame.sources["black_level"] is Source.PRESET


def test_one_debug_line_per_file_and_nothing_at_info(tmp_path, caplog):
    # A folder's reads are summarised by unisp.raw.summary; each file's own line is for -v.
    path = write_png(tmp_path / "huawei_raw" / "0.png", rng_mosaic())
    with caplog.at_level(logging.DEBUG, logger="unisp.raw.io"):
        read_raw(path)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "zrr layout" in caplog.records[0].getMessage() and "RGGB [preset]" in caplog.records[0].getMessage()


# ------------------------------------------------------------------------------------------------- unisp


def test_unisp_sidecar_round_trip(tmp_path):
    cam = np.array([[1.7, -0.5, -0.2], [-0.25, 1.5, -0.25], [0.0, -0.6, 1.6]])
    frame = RawFrame(mosaic=rng_mosaic(high=4096), cfa="GBRG", black_level=(64, 64.5, 63, 65), white_level=4095,
                     wb_gains=(2.1, 1.0, 1.7), cam_to_srgb=cam, orientation=6)
    path = write_mosaic_png(tmp_path / "raw" / "a.png", frame, extra={"sensor_model": {"gain": 1.5}, "source": "x"})
    assert path == tmp_path / "raw" / "a.png"
    back = read_raw(path)
    np.testing.assert_array_equal(back.mosaic, frame.mosaic)
    assert back.cfa is CFA.GBRG and back.black_level == frame.black_level and back.white_level == 4095.0
    assert back.wb_gains == frame.wb_gains and back.orientation == 6
    np.testing.assert_array_equal(back.cam_to_srgb, cam)  # JSON keeps float64 exactly
    assert set(back.sources.values()) == {Source.METADATA}
    # The PNG is a 16-bit one-channel image; the sidecar keeps the extra keys.
    assert imagecodecs.png_decode(path.read_bytes()).dtype == np.uint16
    meta = json.loads((tmp_path / "raw" / "a.json").read_text())
    assert meta["format"] == "unisp-raw" and meta["version"] == 1 and meta["sensor_model"] == {"gain": 1.5}


def test_unisp_unknown_calibration_round_trips_as_assumed(tmp_path):
    frame = RawFrame(mosaic=rng_mosaic(), cfa="RGGB", black_level=(0,) * 4, white_level=1023)
    back = read_raw(write_mosaic_png(tmp_path / "b.png", frame))
    assert back.wb_gains is None and back.cam_to_srgb is None
    assert back.sources["wb_gains"] is Source.ASSUMED and back.sources["cfa"] is Source.METADATA


@pytest.mark.parametrize(
    "name, extra, match",
    [
        ("a.tif", None, "must be written as .png"),
        ("a.png", {"cfa": "BGGR"}, "'cfa' is reserved"),
        ("a.png", {"x": object()}, "not JSON-serialisable"),
    ],
)
def test_write_mosaic_png_errors(tmp_path, name, extra, match):
    frame = RawFrame(mosaic=rng_mosaic(), cfa="RGGB", black_level=(0,) * 4, white_level=1023)
    with pytest.raises(UnispError, match=match):
        write_mosaic_png(tmp_path / name, frame, extra=extra)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    "sidecar, match",
    [
        ("{not json", "a.json: not valid JSON"),
        ('{"format": "other"}', "not a unisp RAW sidecar"),
        ('{"format": "unisp-raw", "version": 2}', "unsupported sidecar version 2"),
        ('{"format": "unisp-raw", "version": 1, "cfa": "RGGB"}', "missing black_level, white_level"),
        ('{"format": "unisp-raw", "version": 1, "cfa": "RGBW", "black_level": [0,0,0,0], "white_level": 1023}',
         "a.json: unknown CFA pattern 'RGBW'"),
        ('{"format": "unisp-raw", "version": 1, "cfa": "RGGB", "black_level": [0,0,0,0], "white_level": 1023,'
         ' "width": 10, "height": 6}', "image is 8×6 but its sidecar says 10×6"),
        ('{"format": "unisp-raw", "version": 1, "cfa": "RGGB", "black_level": [0,0,0,0], "white_level": "x"}',
         "a.json: invalid value"),
    ],
)
def test_bad_sidecars(tmp_path, sidecar, match):
    path = write_png(tmp_path / "a.png", rng_mosaic())
    (tmp_path / "a.json").write_text(sidecar)
    with pytest.raises(RawFormatError, match=match):
        read_raw(path)


# --------------------------------------------------------------------------------------- plain PNG / TIFF


def test_plain_png_needs_flags(tmp_path):
    path = write_png(tmp_path / "m.png", rng_mosaic())
    with pytest.raises(RawFormatError, match=r"m\.png: .*pass --cfa and --white or --bits"):
        read_raw(path)
    with pytest.raises(RawFormatError, match=r"pass --white or --bits$"):
        read_raw(path, cfa="RGGB")
    with pytest.raises(RawFormatError, match=r"pass --cfa$"):
        read_raw(path, bits=10)


def test_plain_png_with_flags(tmp_path):
    mosaic = rng_mosaic()
    frame = read_raw(write_png(tmp_path / "m.png", mosaic), cfa="GRBG", bits=10)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    assert frame.cfa is CFA.GRBG and frame.white_level == 1023.0 and frame.black_level == (0.0,) * 4
    assert frame.sources["cfa"] is Source.USER and frame.sources["white_level"] is Source.USER
    assert frame.sources["black_level"] is Source.ASSUMED


def test_plain_8bit_png_and_tiff(tmp_path):
    mosaic8 = rng_mosaic(high=256, dtype=np.uint8)
    frame = read_raw(write_png(tmp_path / "m8.png", mosaic8), cfa="RGGB", white=255)
    assert frame.mosaic.dtype == np.uint16
    np.testing.assert_array_equal(frame.mosaic, mosaic8)
    mosaic = rng_mosaic(high=4096)
    tifffile.imwrite(tmp_path / "m.tif", mosaic)
    np.testing.assert_array_equal(read_raw(tmp_path / "m.tif", cfa="RGGB", bits=12).mosaic, mosaic)


def test_colour_png_is_not_a_mosaic(tmp_path):
    path = write_png(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(RawFormatError, match=r"rgb\.png: not a Bayer mosaic \(3 channels\)"):
        read_raw(path, cfa="RGGB", bits=8)
    zrr = write_png(tmp_path / "huawei_raw" / "rgb.png", np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(RawFormatError, match=r"not a Bayer mosaic \(3 channels\)"):
        read_raw(zrr)


def test_corrupt_png(tmp_path):
    path = tmp_path / "huawei_raw" / "bad.png"
    path.parent.mkdir()
    path.write_bytes(b"this is not a png")
    with pytest.raises(RawFormatError, match=r"bad\.png: cannot decode"):
        read_raw(path)


# --------------------------------------------------------------------------------------------------- npy


@pytest.mark.parametrize("cfa", list(CFA))
def test_npy_packed_both_orders(tmp_path, cfa):
    mosaic = rng_mosaic(high=4096)
    canonical = np.moveaxis(pack(mosaic, cfa), 0, -1)  # (H/2, W/2, 4) in (R, Gr, Gb, B)
    reference = np.moveaxis(to_reference_order(pack(mosaic, cfa)), 0, -1)  # (B, Gb, R, Gr)
    a = read_raw(write_npy(tmp_path / "c.npy", canonical), cfa=cfa)
    b = read_raw(write_npy(tmp_path / "r.npy", reference), cfa=cfa, npy_order="reference")
    np.testing.assert_array_equal(a.mosaic, mosaic)
    np.testing.assert_array_equal(b.mosaic, mosaic)
    assert a.cfa is cfa and a.sources["cfa"] is Source.USER


def test_npy_default_cfa_and_2d_mosaic(tmp_path):
    mosaic = rng_mosaic(high=4096)
    packed = read_raw(write_npy(tmp_path / "p.npy", np.moveaxis(pack(mosaic, "RGGB"), 0, -1)))
    assert packed.cfa is CFA.RGGB and packed.sources["cfa"] is Source.ASSUMED
    np.testing.assert_array_equal(packed.mosaic, mosaic)
    flat = read_raw(write_npy(tmp_path / "m.npy", mosaic.astype(np.int32)), cfa="BGGR")
    np.testing.assert_array_equal(flat.mosaic, mosaic)


@pytest.mark.parametrize("peak, white", [(200, 255), (255, 255), (256, 1023), (1023, 1023), (1024, 4095),
                                         (5000, 16383), (20000, 65535)])
def test_npy_white_level_guess(tmp_path, peak, white):
    # The smallest of 8/10/12/14/16-bit full scale that holds the maximum.
    array = np.zeros((4, 4), np.uint16)
    array[0, 0] = peak
    frame = read_raw(write_npy(tmp_path / "w.npy", array))
    assert frame.white_level == white and frame.sources["white_level"] is Source.ASSUMED


def test_npy_white_from_user(tmp_path):
    path = write_npy(tmp_path / "w.npy", np.full((4, 4), 100, np.uint16))
    assert read_raw(path, bits=12).white_level == 4095.0
    frame = read_raw(path, white=1000, black=(1, 2, 3, 4))
    assert frame.white_level == 1000.0 and frame.black_level == (1.0, 2.0, 3.0, 4.0)
    assert frame.sources["white_level"] is Source.USER and frame.sources["black_level"] is Source.USER


def test_npy_float(tmp_path):
    # [0, 1] floats scale to 0..65535 with round-half-even: 0.5 * 65535 = 32767.5 → 32768.
    array = np.array([[0.0, 0.5], [0.25, 1.0]], np.float32)
    frame = read_raw(write_npy(tmp_path / "f.npy", array))
    assert frame.mosaic.tolist() == [[0, 32768], [16384, 65535]]
    assert frame.white_level == 65535.0 and frame.sources["white_level"] is Source.ASSUMED


@pytest.mark.parametrize(
    "array, kw, match",
    [
        (np.array([[0.0, np.nan], [0.0, 0.0]]), {}, "NaN or Inf"),
        (np.array([[0.0, np.inf], [0.0, 0.0]]), {}, "NaN or Inf"),
        (np.array([[0.0, -0.1], [0.0, 0.0]]), {}, r"must lie in \[0, 1\]"),
        (np.array([[0.0, 1.5], [0.0, 0.0]]), {}, r"must lie in \[0, 1\]"),
        (np.zeros((2, 2)), {"bits": 10}, "--bits has no meaning"),
        (np.array([[0, -3], [0, 0]], np.int16), {}, r"negative values \(min -3\)"),
        (np.array([[0, 70000], [0, 0]], np.int32), {}, "above 65535"),
        (np.zeros((4, 2, 2), np.uint16), {}, r"got shape \(4, 2, 2\)"),
        (np.zeros((2, 2, 3), np.uint16), {}, r"got shape \(2, 2, 3\)"),
        (np.zeros(8, np.uint16), {}, r"got shape \(8,\)"),
        (np.zeros((0, 4), np.uint16), {}, "empty"),
        (np.zeros((2, 2), bool), {}, "unsupported array type bool"),
        (np.zeros((2, 2), np.complex64), {}, "unsupported array type complex64"),
        (np.full((2, 2), 2000, np.uint16), {"bits": 10}, "values above the white level"),
    ],
)
def test_npy_errors(tmp_path, array, kw, match):
    with pytest.raises(RawFormatError, match=match):
        read_raw(write_npy(tmp_path / "bad.npy", array), **kw)


def test_npy_not_an_array_file(tmp_path):
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(RawFormatError, match="wrong magic bytes"):
        read_raw(tmp_path / "text.npy")
    good = io.BytesIO()
    np.save(good, np.zeros((64, 64), np.uint16))
    (tmp_path / "short.npy").write_bytes(good.getvalue()[:500])
    with pytest.raises(RawFormatError, match=r"short\.npy: not a readable \.npy array"):
        read_raw(tmp_path / "short.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RawFormatError, match=r"obj\.npy: not a readable \.npy array"):
        read_raw(tmp_path / "obj.npy")


# -------------------------------------------------------------------------------------------- headerless


@pytest.mark.parametrize("ext", [".raw", ".bin"])
def test_headerless(tmp_path, ext):
    mosaic = rng_mosaic()
    frame = read_raw(write_headerless(tmp_path / f"a{ext}", mosaic), **HEADERLESS)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    assert frame.white_level == 1023.0 and frame.black_level == (0.0,) * 4
    assert frame.sources["white_level"] is Source.USER and frame.sources["black_level"] is Source.ASSUMED


def test_headerless_8bit_and_explicit_white(tmp_path):
    mosaic = rng_mosaic(high=200, dtype=np.uint8)
    path = write_headerless(tmp_path / "a.raw", mosaic)  # one byte per sample: 48 bytes for 8×6
    frame = read_raw(path, width=8, height=6, bits=8, cfa="BGGR", white=250)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    assert frame.cfa is CFA.BGGR and frame.white_level == 250.0


def test_headerless_wrong_size(tmp_path):
    path = write_headerless(tmp_path / "a.raw", rng_mosaic())
    with pytest.raises(RawFormatError, match=r"a\.raw: file is 96 bytes but 10×6 at 10 bits .* needs 120"):
        read_raw(path, **{**HEADERLESS, "width": 10})


def test_headerless_missing_flags(tmp_path):
    path = write_headerless(tmp_path / "a.raw", rng_mosaic())
    with pytest.raises(RawFormatError, match=r"missing --width, --bits, --cfa"):
        read_raw(path, height=6)


def test_headerless_above_white(tmp_path):
    path = write_headerless(tmp_path / "a.raw", np.full((6, 8), 2000, np.uint16))
    with pytest.raises(RawFormatError, match=r"above the white level .*check the bit depth or pass --white"):
        read_raw(path, **HEADERLESS)


# ------------------------------------------------------------------------------------------------ LibRaw


def test_libraw_garbage(tmp_path):
    for name in ("x.dng", "x.CR2"):
        (tmp_path / name).write_bytes(b"not a raw file at all" * 10)
        with pytest.raises(RawFormatError, match=rf"{name}: LibRaw cannot read it \(Unsupported file format"):
            read_raw(tmp_path / name)


def test_libraw_truncated(tmp_path):
    path = tmp_path / "t.dng"
    write_dng(path, rng_mosaic((32, 32), 4096), "RGGB", black_level=0, white_level=4095)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RawFormatError, match=r"t\.dng: LibRaw cannot read it \(Input/output error\)"):
        read_raw(path)


def test_libraw_linear_dng_is_unsupported(tmp_path):
    # A linear (already demosaiced) DNG: PhotometricInterpretation 34892, three samples per pixel.
    path = tmp_path / "linear.dng"
    tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint16), photometric=34892, subfiletype=0,
                     extratags=[(50706, 1, 4, (1, 4, 0, 0), True), (50708, 2, 0, "x", True)])
    with pytest.raises(RawFormatError, match=r"linear\.dng: unsupported sensor layout: not a Bayer mosaic"):
        read_raw(path)


def test_libraw_xtrans_is_unsupported(tmp_path):
    # A 6×6 CFA (the Fujifilm X-Trans layout) written as a DNG.
    xtrans = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1,
              1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]
    path = tmp_path / "xt.dng"
    tifffile.imwrite(path, np.zeros((36, 36), np.uint16), photometric=32803, subfiletype=0,
                     extratags=[(50706, 1, 4, (1, 4, 0, 0), True), (50708, 2, 0, "x", True),
                                (33421, 3, 2, (6, 6), True), (33422, 1, 36, xtrans, True)])
    with pytest.raises(RawFormatError, match=r"xt\.dng: unsupported sensor layout: X-Trans"):
        read_raw(path)


def test_libraw_white_level_is_a_clip_point(tmp_path, caplog):
    # Camera files often hold samples above LibRaw's white level; they are saturated, not an error...
    data = rng_mosaic((24, 32), 1024)
    data[0, 0] = 4000
    path = tmp_path / "hot.dng"
    write_dng(path, data, "RGGB", black_level=0, white_level=1023)
    with caplog.at_level(logging.DEBUG, logger="unisp.raw.io"):
        assert read_raw(path).mosaic[0, 0] == 4000
    assert "1 samples above LibRaw's white level 1023" in caplog.text
    # ...but a white level the user gives is checked.
    with pytest.raises(RawFormatError, match="above the white level"):
        read_raw(path, white=1023)


def test_camera_to_srgb_matrix_known_values():
    # A camera whose primaries are sRGB's: XYZ → camera is the inverse of sRGB → XYZ, so camera = sRGB.
    np.testing.assert_allclose(camera_to_srgb_matrix(np.linalg.inv(SRGB_TO_XYZ_D65)), np.eye(3), atol=1e-12)
    # Per-channel sensitivities (a diagonal gain) are removed by the row normalisation.
    scaled = np.diag([2.0, 1.0, 0.5]) @ np.linalg.inv(SRGB_TO_XYZ_D65)
    np.testing.assert_allclose(camera_to_srgb_matrix(scaled), np.eye(3), atol=1e-12)
    with pytest.raises(RawFormatError, match="sums to zero"):
        camera_to_srgb_matrix(np.zeros((3, 3)))
    with pytest.raises(RawFormatError, match="singular"):
        camera_to_srgb_matrix(np.linalg.inv(SRGB_TO_XYZ_D65)[[0, 0, 2]])


# ------------------------------------------------------------------------------------------ common errors


def test_missing_folder_and_empty_files(tmp_path):
    with pytest.raises(RawFormatError, match=r"nothing\.dng: no such file"):
        read_raw(tmp_path / "nothing.dng")
    with pytest.raises(RawFormatError, match="is a folder, not a RAW file"):
        read_raw(tmp_path)
    (tmp_path / "zero.raw").write_bytes(b"")
    with pytest.raises(RawFormatError, match=r"zero\.raw: empty file \(0 bytes\)"):
        read_raw(tmp_path / "zero.raw", **HEADERLESS)


@pytest.mark.parametrize(
    "kw, error, match",
    [
        ({"layout": "jpeg"}, ConfigError, "unknown RAW layout 'jpeg'"),
        ({"npy_order": "bgr"}, ConfigError, "unknown npy plane order 'bgr'"),
        ({"cfa": "RGBW"}, RawFormatError, r"a\.raw: --cfa: unknown CFA pattern 'RGBW'"),
        ({"black": (1, 2)}, RawFormatError, r"a\.raw: --black needs 1 or 4 values"),
        ({"black": -1}, RawFormatError, "finite and ≥ 0"),
        ({"black": "x"}, RawFormatError, "--black must be one number or four"),
        ({"white": 0}, RawFormatError, "--white must be a positive number"),
        ({"white": 100, "black": 100}, RawFormatError, "must exceed every black level"),
        ({"bits": 17}, RawFormatError, r"--bits must be an integer 1\.\.16"),
        ({"width": 0}, RawFormatError, "--width must be an integer"),
        ({"height": 2.5}, RawFormatError, "--height must be an integer"),
    ],
)
def test_bad_arguments(tmp_path, kw, error, match):
    path = write_headerless(tmp_path / "a.raw", rng_mosaic())
    with pytest.raises(error, match=match):
        read_raw(path, **{**HEADERLESS, **kw})


# ------------------------------------------------------------------------------------- layout and folders


@pytest.mark.parametrize(
    "relative, layout",
    [
        ("x.npy", "npy"),
        ("x.RAW", "headerless"),
        ("x.bin", "headerless"),
        ("x.png", "png"),
        ("x.tiff", "png"),
        ("huawei_raw/x.png", "zrr"),
        ("Huawei_Full_Resolution/x.png", "zrr"),
        ("mediatek_raw/x.png", "uispf"),
        ("x.dng", "libraw"),
        ("x.NEF", "libraw"),
        ("x.weird", "libraw"),
    ],
)
def test_detect_layout(tmp_path, relative, layout):
    assert detect_layout(tmp_path / relative) == layout


def test_detect_layout_sidecar_wins(tmp_path):
    write_png(tmp_path / "huawei_raw" / "x.png", rng_mosaic())
    (tmp_path / "huawei_raw" / "x.json").write_text("{}")
    assert detect_layout(tmp_path / "huawei_raw" / "x.png") == "unisp"


def test_find_raw_files(tmp_path):
    for name in ("b.dng", "a.png", "a.json", "c.NPY", "d.raw", "notes.txt", ".hidden.dng", "._b.dng", "e.CR2"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.dng").mkdir()
    assert [p.name for p in find_raw_files(tmp_path)] == ["a.png", "b.dng", "c.NPY", "d.raw", "e.CR2"]


def test_find_raw_files_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "only.json").write_text("{}")
    with pytest.raises(UnispError, match=r"empty: no RAW files"):
        find_raw_files(tmp_path / "empty")
    with pytest.raises(UnispError, match="not a folder"):
        find_raw_files(tmp_path / "missing")


# ------------------------------------------------------------------------------------- real shared data


def shared_file(name: str) -> Path:
    path = SHARED_DATA / "real_raw" / name
    if not path.is_file():
        pytest.skip(f"shared data not present: {path}")
    return path


def test_real_vivo_x90_npy():
    # SOURCES.md: (512, 512, 4) uint16 (R, Gr, Gb, B), 12-bit, black-corrected, 1.1% saturated at 4095,
    # channel means 667 / 752 / 752 / 309.
    frame = read_raw(shared_file("rawir_vivo_x90_3_4.npy"))
    assert (frame.height, frame.width) == (1024, 1024) and frame.cfa is CFA.RGGB
    assert frame.white_level == 4095.0 and frame.sources["white_level"] is Source.ASSUMED
    means = frame.packed().reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(means, [667, 752, 752, 309], atol=1.0)
    raw = np.load(shared_file("rawir_vivo_x90_3_4.npy"))
    np.testing.assert_array_equal(frame.packed(), np.moveaxis(raw, -1, 0))


def test_real_fast_openisp_raw():
    # SOURCES.md: headerless little-endian uint16, 1080 × 1920, 10-bit (max 1020), RGGB, plane means
    # R 320, Gr 480, Gb 481, B 443.
    frame = read_raw(shared_file("fast_openisp_test_1920x1080_10bit_rggb.raw"), width=1920, height=1080, bits=10,
                     cfa="RGGB")
    assert (frame.width, frame.height) == (1920, 1080) and int(frame.mosaic.max()) <= 1023
    means = frame.packed().reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(means, [320, 480, 481, 443], atol=1.0)
    np.testing.assert_array_equal(unpack(frame.packed(), "RGGB"), frame.mosaic)
