"""Well-formed DNGs whose metadata is hostile: values LibRaw reads without complaint that would
render a plausible but wrong image (rotated, one colour, dark, with the wrong black level).

Each case is built from a valid DNG with one tag changed and run through ``render``, ``inspect``
or ``process`` (the checks are in the reader all three share). A case unisp can handle exits 0 with the image it documents (the same pixels as
the valid file, or as the flag that states the fallback) and one warning that names the file; a
case it cannot is one ``error:`` line naming the file (exit status 2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from fuzz_checks import assert_success, assert_user_error, describe, files_in, invoke
from fuzz_corpus import dng_bytes, mosaic, patch_tiff_tags, write

from unisp.fileio import read_pixels
from unisp.raw.dng import (
    PHOTOMETRIC_CFA,
    TAG_AS_SHOT_NEUTRAL,
    TAG_BLACK_LEVEL,
    TAG_BLACK_LEVEL_REPEAT_DIM,
    TAG_CFA_PATTERN,
    TAG_CFA_PLANE_COLOR,
    TAG_CFA_REPEAT_PATTERN_DIM,
    TAG_COLOR_MATRIX_1,
    TAG_DNG_VERSION,
    TAG_ORIENTATION,
    TAG_WHITE_LEVEL,
)
from unisp.raw.dng_tags import TAG_BLACK_LEVEL_DELTA_H, TAG_BLACK_LEVEL_DELTA_V, TAG_COLOR_MATRIX_2
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png

# TIFF field types (TIFF 6.0, section 2).
BYTE, SHORT, LONG, RATIONAL, SRATIONAL, DOUBLE = 1, 3, 4, 5, 10, 12
TAG_DEFAULT_CROP_ORIGIN, TAG_DEFAULT_CROP_SIZE, TAG_CALIBRATION_ILLUMINANT_1 = 50719, 50720, 50778
#: CalibrationIlluminant code of CIE D65 (EXIF LightSource table).
D65 = 21

#: An XYZ → camera matrix of the usual shape (as in tests/raw/test_dng.py).
XYZ_TO_CAM = np.array([[0.9, -0.3, -0.05], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]])
COMMANDS = ("render", "inspect", "process")


def rationals(values, denominator: int = 10_000) -> tuple[int, ...]:
    """Flat (numerator, denominator) pairs."""
    return tuple(x for v in np.ravel(values) for x in (round(float(v) * denominator), denominator))


#: The tags of a valid 24×24 RGGB DNG, 10-bit values, black 64 (code → (type, count, value)).
BASE_TAGS: dict[int, tuple[int, int, object]] = {
    TAG_DNG_VERSION: (BYTE, 4, (1, 4, 0, 0)),
    TAG_CFA_REPEAT_PATTERN_DIM: (SHORT, 2, (2, 2)),
    TAG_CFA_PATTERN: (BYTE, 4, (0, 1, 1, 2)),
    TAG_CFA_PLANE_COLOR: (BYTE, 3, (0, 1, 2)),
    TAG_BLACK_LEVEL: (LONG, 1, 64),
    TAG_WHITE_LEVEL: (LONG, 1, 1023),
    TAG_ORIENTATION: (SHORT, 1, 1),
}


def dng(folder: Path, name: str, tags: dict[int, tuple[int, int, object]] | None = None) -> Path:
    """A DNG of :data:`BASE_TAGS` with ``tags`` (code → (type, count, value)) added or replaced;
    written with tifffile, so any type and count can be given."""
    chosen = {**BASE_TAGS, **(tags or {})}
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    extratags = [(code, kind, count, value, True) for code, (kind, count, value) in sorted(chosen.items())]
    tifffile.imwrite(path, mosaic(), photometric=PHOTOMETRIC_CFA, subfiletype=0, extratags=extratags)
    return path


def black_tags(repeat: tuple[int, int], levels: tuple[int, ...]) -> dict:
    """BlackLevelRepeatDim ``repeat`` and BlackLevel ``levels`` (row by row over the repeat)."""
    return {TAG_BLACK_LEVEL_REPEAT_DIM: (SHORT, 2, repeat), TAG_BLACK_LEVEL: (LONG, len(levels), levels)}


def run(command: str, path: Path, out: Path, model_file: Path, *flags):
    if command == "render":
        return invoke("render", path, "--out", out, *flags)
    if command == "inspect":
        return invoke("inspect", path, *flags)
    return invoke("process", path, "--model", model_file, "--out", out, "--tile", "8", *flags)


def image(command: str, path: Path, out: Path, model_file: Path, *flags) -> np.ndarray:
    """The one image ``command`` writes for ``path`` (asserting success)."""
    result = run(command, path, out, model_file, *flags)
    assert_success(result)
    (written,) = files_in(out)
    return read_pixels(written)


def warnings_in(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("warning:")]


def assert_one_warning(result, path: Path, *words: str) -> None:
    """Exactly one warning line, naming ``path`` and saying ``words``; none from tifffile."""
    lines = warnings_in(result)
    assert len(lines) == 1, describe(result)
    assert str(path) in lines[0] and all(w in lines[0] for w in words), describe(result)
    assert "tifffile" not in result.output and "is not a valid" not in result.output, describe(result)


# ------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("command", ("render", "process"))
@pytest.mark.parametrize("code", [0, 9, 99, 65535])
def test_invalid_orientation_renders_as_stored_with_one_warning(tmp_path, model_file, command, code):
    # LibRaw maps 0 to a 90° turn and 99 to 180°; unisp treats an invalid code as 1 (as stored).
    valid = write(tmp_path / "in" / "valid.dng", dng_bytes())
    path = write(tmp_path / "in" / "turned.dng", patch_tiff_tags(dng_bytes(), {TAG_ORIENTATION: code}))
    expected = image(command, valid, tmp_path / "a", model_file)
    result = run(command, path, tmp_path / "b", model_file)
    assert_success(result)
    np.testing.assert_array_equal(read_pixels(*files_in(tmp_path / "b")), expected)
    assert_one_warning(result, path, f"invalid EXIF orientation {code}", "as stored")


def test_valid_orientation_still_rotates(tmp_path, model_file):
    valid = write(tmp_path / "in" / "valid.dng", dng_bytes())
    turned = write(tmp_path / "in" / "turned.dng", patch_tiff_tags(dng_bytes(), {TAG_ORIENTATION: 6}))
    upright = image("render", valid, tmp_path / "a", model_file)
    np.testing.assert_array_equal(image("render", turned, tmp_path / "b", model_file), np.rot90(upright, -1))


# ------------------------------------------------------------------------------------------ colour matrix

#: ColorMatrix1 values that make LibRaw's camera → sRGB matrix singular or meaningless.
ABSURD_MATRICES = {
    "all-ones": (SRATIONAL, 9, rationals(np.ones((3, 3)))),
    "zero-denominators": (SRATIONAL, 9, tuple(x for v in XYZ_TO_CAM.ravel() for x in (round(v * 10_000), 0))),
    "one-zero-denominator": (SRATIONAL, 9, rationals(XYZ_TO_CAM)[:-1] + (0,)),
    "plus-minus-2147": (SRATIONAL, 9, rationals(np.array([[1, -1, 1], [-1, 1, -1], [1, 1, -1]]) * 2147, 1)),
    "all-zero-but-one": (SRATIONAL, 9, rationals(np.diag([1.0, 0.0, 0.0]))),
    "nan-doubles": (DOUBLE, 9, tuple([float("nan")] * 9)),
}


@pytest.mark.parametrize("case", sorted(ABSURD_MATRICES))
def test_absurd_colour_matrix_falls_back_to_identity(tmp_path, model_file, case):
    path = dng(tmp_path / "in", "m.dng", {TAG_COLOR_MATRIX_1: ABSURD_MATRICES[case]})
    result = run("render", path, tmp_path / "out", model_file)
    assert_success(result)
    assert_one_warning(result, path, "ignoring the colour matrix", "using identity")
    identity = image("render", path, tmp_path / "identity", model_file, "--color-matrix", "identity")
    np.testing.assert_array_equal(read_pixels(*files_in(tmp_path / "out")), identity)

    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert "colour matrix identity [assumed]" in result.output and "matrix known" not in result.output
    assert_one_warning(result, path, "ignoring the colour matrix")
    assert_success(run("process", path, tmp_path / "p", model_file))


def test_valid_colour_matrix_is_kept(tmp_path, model_file):
    path = dng(tmp_path / "in", "m.dng", {TAG_COLOR_MATRIX_1: (SRATIONAL, 9, rationals(XYZ_TO_CAM)),
                                          TAG_CALIBRATION_ILLUMINANT_1: (SHORT, 1, D65)})
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert "colour matrix known [metadata]" in result.output and warnings_in(result) == []
    coloured = image("render", path, tmp_path / "a", model_file)
    identity = image("render", path, tmp_path / "b", model_file, "--color-matrix", "identity")
    assert not np.array_equal(coloured, identity)


def test_zero_denominator_in_colour_matrix_2_drops_the_matrix(tmp_path, model_file):
    # LibRaw combines ColorMatrix1 and 2; a broken one makes the whole matrix untrustworthy.
    path = dng(tmp_path / "in", "m.dng", {TAG_COLOR_MATRIX_1: (SRATIONAL, 9, rationals(XYZ_TO_CAM)),
                                          TAG_COLOR_MATRIX_2: (SRATIONAL, 9, rationals(XYZ_TO_CAM)[:-1] + (0,))})
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert_one_warning(result, path, "ColorMatrix2")
    assert "colour matrix identity [assumed]" in result.output


# ------------------------------------------------------------------------------------------- white level


@pytest.mark.parametrize("stored, bits", [(0, 16), (70_000, 16)])
def test_invalid_white_level_uses_the_dng_default(tmp_path, model_file, stored, bits):
    # LibRaw reads 0 as 65535 and reports it as the file's; unisp says it is the DNG default.
    path = write(tmp_path / "in" / "w.dng", patch_tiff_tags(dng_bytes(), {TAG_WHITE_LEVEL: stored}))
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert "white 65535 [assumed]" in result.output
    assert_one_warning(result, path, f"invalid DNG WhiteLevel {stored}", "DNG default 65535", "--white")
    explicit = image("render", path, tmp_path / "a", model_file, "--white", "65535")
    np.testing.assert_array_equal(image("render", path, tmp_path / "b", model_file), explicit)


@pytest.mark.parametrize("command", COMMANDS)
def test_white_level_below_black_is_refused(tmp_path, model_file, command):
    path = write(tmp_path / "in" / "w.dng", patch_tiff_tags(dng_bytes(), {TAG_WHITE_LEVEL: 10}))
    result = run(command, path, tmp_path / "out", model_file)
    assert_user_error(result, str(path))
    assert "white level 10 must exceed every black level" in result.output


# ------------------------------------------------------------------------------------------- black level

#: A 4×4 BlackLevel that is constant per CFA position: R 10, Gr 20, Gb 30, B 40 (RGGB).
BLACK_4X4_PER_POSITION = (10, 20, 10, 20, 30, 40, 30, 40, 10, 20, 10, 20, 30, 40, 30, 40)


def test_black_level_4x4_constant_per_position_is_exact(tmp_path, model_file):
    # LibRaw collapses it to its minimum (10 everywhere); it reduces exactly to four levels.
    path = dng(tmp_path / "in", "b.dng", black_tags((4, 4), BLACK_4X4_PER_POSITION))
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert "black (10, 20, 30, 40) [metadata]" in result.output and warnings_in(result) == []
    same = dng(tmp_path / "in2", "b.dng", black_tags((2, 2), (10, 20, 30, 40)))
    np.testing.assert_array_equal(image("render", path, tmp_path / "a", model_file),
                                  image("render", same, tmp_path / "b", model_file))


def test_black_level_4x4_varying_uses_the_mean_per_position(tmp_path, model_file):
    # Row-major 10, 20, ..., 160: R sits on rows 0, 2 and columns 0, 2 → (10 + 30 + 90 + 110) / 4 = 60.
    path = dng(tmp_path / "in", "b.dng", black_tags((4, 4), tuple(range(10, 170, 10))))
    result = run("render", path, tmp_path / "out", model_file)
    assert_success(result)
    assert_one_warning(result, path, "varies within a CFA position", "4×4", "(60, 70, 100, 110)")
    explicit = image("render", path, tmp_path / "user", model_file, "--black", "60,70,100,110")
    np.testing.assert_array_equal(read_pixels(*files_in(tmp_path / "out")), explicit)


@pytest.mark.parametrize(
    "deltas, black, warns",
    [
        ((0, 2) * 12, "(64, 66, 64, 66)", False),  # constant per column parity: exact
        (tuple(range(24)), "(75, 76, 75, 76)", True),  # 64 + mean of the even (11) or odd (12) columns
    ],
)
def test_black_level_delta_h(tmp_path, model_file, deltas, black, warns):
    path = dng(tmp_path / "in", "b.dng", {TAG_BLACK_LEVEL_DELTA_H: (SRATIONAL, 24, rationals(deltas, 1))})
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert f"black {black} [metadata]" in result.output
    assert len(warnings_in(result)) == int(warns), describe(result)


#: id → (tags, what the error says).
MALFORMED_BLACK = {
    "count-below-repeat": (black_tags((2, 2), (50,)), "BlackLevel has 1 value(s)"),
    "count-above-repeat": ({TAG_BLACK_LEVEL: (LONG, 4, (10, 20, 30, 40))}, "BlackLevelRepeatDim 1×1 needs 1"),
    "repeat-zero": (black_tags((0, 0), (50,)), "BlackLevelRepeatDim 0×0"),
    "zero-denominator": ({TAG_BLACK_LEVEL: (RATIONAL, 1, (64, 0))}, "not a number"),
    "above-white": ({TAG_BLACK_LEVEL: (LONG, 1, 5000)}, "must exceed every black level"),
    "delta-above-white": ({TAG_BLACK_LEVEL_DELTA_V: (SRATIONAL, 24, rationals([2000] * 24, 1))},
                          "must exceed every black level"),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(MALFORMED_BLACK))
def test_malformed_black_level_is_refused(tmp_path, model_file, command, case):
    # LibRaw reads a BlackLevel whose count does not match its repeat as 0: a wrong image.
    tags, message = MALFORMED_BLACK[case]
    path = dng(tmp_path / "in", "b.dng", tags)
    result = run(command, path, tmp_path / "out", model_file)
    assert_user_error(result, str(path))
    assert message in result.output, describe(result)
    assert files_in(tmp_path / "out") == []


# ------------------------------------------------------------------------------------ as-shot white balance

INVALID_NEUTRALS = {
    "zero": (RATIONAL, 3, rationals((0, 1, 1))),
    "zero-denominators": (RATIONAL, 3, (1, 0, 1, 1, 1, 0)),  # LibRaw would read gains (1, 1, 1)
    "negative": (SRATIONAL, 3, rationals((-0.5, 1, 0.8))),
    "nan": (DOUBLE, 3, (float("nan"), 1.0, 0.8)),
    "gain-100": (RATIONAL, 3, rationals((0.01, 1, 0.8))),  # LibRaw reads a red gain of 100
    "gain-1000": (RATIONAL, 3, rationals((0.001, 1, 0.8))),  # LibRaw drops it silently
}


@pytest.mark.parametrize("case", sorted(INVALID_NEUTRALS))
def test_invalid_as_shot_neutral_means_unknown_white_balance(tmp_path, model_file, case):
    path = dng(tmp_path / "in", "n.dng", {TAG_AS_SHOT_NEUTRAL: INVALID_NEUTRALS[case]})
    result = run("render", path, tmp_path / "out", model_file)
    assert_success(result)
    assert_one_warning(result, path, "white balance")
    # The same image as the file without an AsShotNeutral (as-shot falls back to gray world).
    plain = dng(tmp_path / "plain", "n.dng")
    np.testing.assert_array_equal(read_pixels(*files_in(tmp_path / "out")),
                                  image("render", plain, tmp_path / "plain_out", model_file))
    result = run("inspect", path, tmp_path / "x", model_file)
    assert "wb unknown [assumed]" in result.output, describe(result)


def test_valid_as_shot_neutral_is_kept(tmp_path, model_file):
    path = dng(tmp_path / "in", "n.dng", {TAG_AS_SHOT_NEUTRAL: (RATIONAL, 3, rationals((0.5, 1, 0.8)))})
    result = run("inspect", path, tmp_path / "x", model_file)
    assert "wb (2.000, 1.000, 1.250) [metadata]" in result.output and warnings_in(result) == [], describe(result)


# ------------------------------------------------------------------------------------- crop and CFA repeat


def test_absurd_default_crop_is_ignored(tmp_path, model_file):
    # LibRaw (and so unisp) renders the whole active area and ignores DefaultCrop.
    path = dng(tmp_path / "in", "c.dng", {TAG_DEFAULT_CROP_ORIGIN: (LONG, 2, (1000, 1000)),
                                          TAG_DEFAULT_CROP_SIZE: (LONG, 2, (5000, 5000))})
    plain = dng(tmp_path / "plain", "c.dng")
    np.testing.assert_array_equal(image("render", path, tmp_path / "a", model_file),
                                  image("render", plain, tmp_path / "b", model_file))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "dim, pattern",
    [((3, 3), (0, 1, 2, 1, 2, 0, 2, 0, 1)), ((1, 2), (0, 1)), ((2, 4), (0, 1, 0, 1, 1, 2, 1, 2)), ((2, 2), (0, 1))],
    ids=["3x3", "1x2", "2x4", "2x2-short-pattern"],
)
def test_odd_cfa_repeat_is_refused(tmp_path, model_file, command, dim, pattern):
    path = dng(tmp_path / "in", "r.dng", {TAG_CFA_REPEAT_PATTERN_DIM: (SHORT, 2, dim),
                                          TAG_CFA_PATTERN: (BYTE, len(pattern), pattern)})
    result = run(command, path, tmp_path / "out", model_file)
    assert_user_error(result, str(path))
    assert "unsupported sensor layout" in result.output


def test_zero_cfa_repeat_with_a_bayer_pattern_reads_the_pattern(tmp_path, model_file):
    path = dng(tmp_path / "in", "r.dng", {TAG_CFA_REPEAT_PATTERN_DIM: (SHORT, 2, (0, 0))})
    plain = dng(tmp_path / "plain", "r.dng")
    np.testing.assert_array_equal(image("render", path, tmp_path / "a", model_file),
                                  image("render", plain, tmp_path / "b", model_file))


# ------------------------------------------------------------------------------------------ sidecars


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("cam_to_srgb", [[1, 1, 1], [1, 1, 1], [1, 1, 1]], "ignoring the colour matrix (singular"),
        ("cam_to_srgb", [[2147, -2147, 0], [0, 1, 0], [0, 0, 1]],
         "ignoring the colour matrix (an entry of magnitude 2147"),
        ("wb_gains", [1000.0, 1.0, 1.0], "ignoring the as-shot white balance (red/green gain 1e+03"),
    ],
)
def test_absurd_sidecar_calibration_is_dropped(tmp_path, model_file, key, value, words):
    frame = RawFrame(mosaic=mosaic(), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
    (tmp_path / "in").mkdir()
    path = write_mosaic_png(tmp_path / "in" / "frame.png", frame)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(sidecar.read_text().replace(f'"{key}": null', f'"{key}": {value}'))
    result = run("inspect", path, tmp_path / "x", model_file)
    assert_success(result)
    assert_one_warning(result, sidecar, words)
    assert "[assumed]" in result.output and "matrix known" not in result.output
