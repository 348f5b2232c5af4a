"""write_dng → LibRaw → read_raw gives back the mosaic and every calibration value written."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from unisp.errors import UnispError
from unisp.raw.bayer import CFA
from unisp.raw.calibration import colour_matrix_problem
from unisp.raw.dng import write_dng
from unisp.raw.frame import Source
from unisp.raw.io import camera_to_srgb_matrix, read_raw

# An XYZ → camera matrix of the usual shape (strong diagonal, negative off-diagonals; rows sum > 0).
XYZ_TO_CAM = np.array([[0.9, -0.3, -0.05], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]])
# LibRaw needs at least 22 pixels a side; 24×32 is the smallest even size it opens.
SHAPE = (24, 32)


def mosaic(seed: int = 0, high: int = 4096) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=SHAPE, dtype=np.uint16)


@pytest.mark.parametrize("cfa", list(CFA))
@pytest.mark.parametrize("layout", ["libraw", "auto"])
def test_round_trip_through_libraw(tmp_path, cfa, layout):
    data = np.maximum(mosaic(), 40)  # at or above every black level
    black = (10, 20, 30, 40)  # distinct per plane, so a mix-up of planes cannot pass
    path = tmp_path / "shot.dng"
    write_dng(path, data, cfa, black_level=black, white_level=4095, as_shot_neutral=(0.5, 1.0, 0.8),
              colour_matrix=XYZ_TO_CAM)
    frame = read_raw(path, layout=layout)

    np.testing.assert_array_equal(frame.mosaic, data)
    assert frame.cfa is cfa
    assert frame.black_level == (10.0, 20.0, 30.0, 40.0)
    assert frame.white_level == 4095.0
    # White-balance gains are the inverse of the neutral, normalised to green: (1/0.5, 1, 1/0.8).
    assert frame.wb_gains == pytest.approx((2.0, 1.0, 1.25), rel=1e-6)
    # LibRaw turns ColorMatrix1 into camera → sRGB with the same formula (its rgb_cam); the rationals
    # hold 6 decimals and LibRaw works in float32, hence the tolerance.
    np.testing.assert_allclose(frame.cam_to_srgb, camera_to_srgb_matrix(XYZ_TO_CAM), atol=1e-4)
    np.testing.assert_allclose(frame.cam_to_srgb.sum(axis=1), 1.0, atol=1e-4)
    assert frame.orientation == 1 and frame.path == path
    assert set(frame.sources.values()) == {Source.METADATA}


@pytest.mark.parametrize("code", [1, 3, 6, 8])
def test_orientation_round_trip(tmp_path, code):
    # LibRaw stores EXIF 3/6/8 as flip 3/6/5; read_raw maps them back.
    path = tmp_path / "o.dng"
    write_dng(path, mosaic(), "RGGB", black_level=0, white_level=4095, orientation=code)
    assert read_raw(path).orientation == code


def test_mirrored_orientation_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "m.dng"
    write_dng(path, mosaic(), "RGGB", black_level=0, white_level=4095, orientation=2)
    with caplog.at_level(logging.WARNING, logger="unisp.raw.io"):
        assert read_raw(path).orientation == 1
    assert "mirrored orientation" in caplog.text


def test_without_neutral_or_matrix(tmp_path):
    path = tmp_path / "plain.dng"
    write_dng(path, mosaic(high=1024), "GRBG", black_level=64, white_level=1023)
    frame = read_raw(path)
    assert frame.black_level == (64.0,) * 4 and frame.white_level == 1023.0
    assert frame.wb_gains is None and frame.cam_to_srgb is None
    assert frame.sources["wb_gains"] is Source.ASSUMED and frame.sources["cam_to_srgb"] is Source.ASSUMED


def test_camera_table_matrix_is_used(tmp_path):
    # A DNG naming a camera LibRaw knows gets LibRaw's XYZ → camera matrix from its table (Adobe's
    # D65 ColorMatrix for the Canon EOS 5D Mark II: 4716 603 -830 / -7798 15474 2480 / -1496 1937 6651,
    # in units of 1/10000) even without a ColorMatrix tag.
    path = tmp_path / "canon.dng"
    model = "Canon EOS 5D Mark II"
    tifffile.imwrite(
        path, mosaic(), photometric=32803, subfiletype=0,
        extratags=[(271, 2, 0, "Canon", True), (272, 2, 0, model, True), (50706, 1, 4, (1, 4, 0, 0), True),
                   (50708, 2, 0, model, True), (33421, 3, 2, (2, 2), True), (33422, 1, 4, (0, 1, 1, 2), True)],
    )
    adobe = np.array([[4716, 603, -830], [-7798, 15474, 2480], [-1496, 1937, 6651]]) / 10000
    frame = read_raw(path)
    np.testing.assert_allclose(frame.cam_to_srgb, camera_to_srgb_matrix(adobe), atol=1e-5)
    assert frame.sources["cam_to_srgb"] is Source.METADATA
    assert frame.wb_gains is None  # no AsShotNeutral: LibRaw reports (0, 1, 0), which is not a white balance


@pytest.mark.parametrize(
    "make, model",
    [("Canon", "Canon EOS 5D Mark II"), ("NIKON CORPORATION", "NIKON D850"), ("SONY", "ILCE-7M3"),
     ("FUJIFILM", "X100V"), ("Panasonic", "DC-GH5"), ("OLYMPUS CORPORATION", "E-M1MarkII")],
)
def test_real_camera_matrices_pass_the_plausibility_check(tmp_path, caplog, make, model):
    # LibRaw's table matrices (Adobe's) of six makers: none may be mistaken for an absurd one.
    path = tmp_path / "cam.dng"
    tifffile.imwrite(
        path, mosaic(), photometric=32803, subfiletype=0,
        extratags=[(271, 2, 0, make, True), (272, 2, 0, model, True), (50706, 1, 4, (1, 4, 0, 0), True),
                   (50708, 2, 0, model, True), (33421, 3, 2, (2, 2), True), (33422, 1, 4, (0, 1, 1, 2), True)],
    )
    with caplog.at_level(logging.WARNING, logger="unisp.raw.io"):
        frame = read_raw(path)
    assert frame.cam_to_srgb is not None and frame.sources["cam_to_srgb"] is Source.METADATA
    assert colour_matrix_problem(frame.cam_to_srgb) is None and caplog.text == ""


def test_written_dng_keeps_its_calibration_without_warnings(tmp_path, caplog):
    path = tmp_path / "w.dng"
    write_dng(path, mosaic(), "RGGB", black_level=(10, 20, 30, 40), white_level=4095, as_shot_neutral=(0.5, 1, 0.8),
              colour_matrix=XYZ_TO_CAM, orientation=8)
    with caplog.at_level(logging.WARNING):
        frame = read_raw(path)
    assert caplog.text == ""
    assert frame.orientation == 8 and frame.white_level == 4095 and frame.black_level == (10, 20, 30, 40)
    assert set(frame.sources.values()) == {Source.METADATA}


@pytest.mark.parametrize("planes", [None, (0, 1, 2)])
def test_cfa_pattern_naming_a_missing_colour_plane_is_refused(tmp_path, planes):
    # Colour 7 does not exist in an R, G, B file. LibRaw reads it through an uninitialised table
    # and may return any pattern, a valid one included; the reader checks the tags itself.
    path = tmp_path / "bad.dng"
    extratags = [(50706, 1, 4, (1, 4, 0, 0), True), (33421, 3, 2, (2, 2), True), (33422, 1, 4, (0, 1, 1, 7), True)]
    if planes is not None:
        extratags.append((50710, 1, 3, planes, True))
    tifffile.imwrite(path, mosaic(), photometric=32803, subfiletype=0, extratags=extratags)
    with pytest.raises(UnispError, match=r"bad\.dng: unsupported sensor layout: colour filter pattern \(0, 1, 1, 7\) names a colour plane the file does not have \(3 planes\)"):
        read_raw(path)


def test_tags_written(tmp_path):
    path = tmp_path / "t.dng"
    write_dng(path, mosaic(), "GBRG", black_level=(1, 2, 3, 4), white_level=4095, as_shot_neutral=(0.5, 1, 0.8),
              colour_matrix=XYZ_TO_CAM, orientation=6, camera_model="test cam")
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        value = {t.code: t.value for t in tags.values()}
        dtype = {t.code: int(t.dtype) for t in tags.values()}
    assert value[262] == 32803 and value[259] == 1  # CFA photometric, uncompressed
    assert tuple(value[50706]) == (1, 4, 0, 0) and value[50708] == "test cam"
    assert tuple(value[33421]) == (2, 2) and bytes(value[33422]) == bytes([1, 2, 0, 1])  # G B / R G
    # Per-plane black levels at their tile positions: GBRG has Gb (3) top-left, B (4), R (1), Gr (2).
    assert tuple(value[50713]) == (2, 2) and tuple(value[50714]) == (3, 4, 1, 2)
    assert value[50717] == 4095 and value[274] == 6 and value[50778] == 21
    assert dtype[50721] == 10 and dtype[50728] == 5  # ColorMatrix1 SRATIONAL, AsShotNeutral RATIONAL
    assert value[50721][:2] == (900000, 1000000)


def test_fractional_black_is_a_rational(tmp_path):
    path = tmp_path / "f.dng"
    write_dng(path, mosaic(), "RGGB", black_level=64.5, white_level=4095)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[50714]
        dtype, value = int(tag.dtype), tuple(tag.value)
    assert dtype == 5 and value == (64500000, 1000000)  # RATIONAL 64.5


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mosaic=np.zeros((4, 4, 3), np.uint16)), "2-D integer array"),
        (dict(mosaic=np.zeros((4, 4), np.float32)), "2-D integer array"),
        (dict(mosaic=np.full((4, 4), 70000)), "0..65535"),
        (dict(black_level=(1, 2)), "1 or 4 numbers"),
        (dict(black_level=-1), "1 or 4 numbers"),
        (dict(white_level=1023.5), "integer in 1..65535"),
        (dict(orientation=0), "EXIF code 1..8"),
        (dict(as_shot_neutral=(1, 0, 1)), "3 positive numbers"),
        (dict(colour_matrix=np.eye(4)), "must be 3×3"),
        (dict(colour_matrix=np.full((3, 3), 1e6)), "cannot be stored as a DNG rational"),
        (dict(cfa="RGBW"), "unknown CFA"),
    ],
)
def test_write_errors(tmp_path, kw, match):
    args = dict(mosaic=np.zeros((4, 4), np.uint16), cfa="RGGB", black_level=0, white_level=1023)
    args.update(kw)
    path = tmp_path / "bad.dng"
    with pytest.raises(UnispError, match=match):
        write_dng(path, args.pop("mosaic"), args.pop("cfa"), **args)
    assert not path.exists()
