"""RawFrame: validation, normalisation, overrides and the one-line description."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unisp.errors import RawFormatError
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame, Source


def make_frame(**kw) -> RawFrame:
    values = dict(mosaic=np.zeros((4, 6), dtype=np.uint16), cfa="RGGB", black_level=(0, 0, 0, 0), white_level=1023)
    values.update(kw)
    return RawFrame(**values)


def test_fields_are_normalised():
    frame = make_frame(
        mosaic=np.ones((5, 7), dtype=np.int32), cfa="gbrg", black_level=[1, 2, 3, 4], wb_gains=[2, 1, 1.5]
    )
    assert frame.mosaic.shape == (4, 6) and frame.mosaic.dtype == np.uint16  # odd sizes cropped, cast to uint16
    assert (frame.height, frame.width) == (4, 6)
    assert frame.cfa is CFA.GBRG
    assert frame.black_level == (1.0, 2.0, 3.0, 4.0) and frame.white_level == 1023.0
    assert frame.wb_gains == (2.0, 1.0, 1.5)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(mosaic=np.zeros((2, 2, 2), np.uint16)), "must be 2-D"),
        (dict(mosaic=np.zeros((1, 8), np.uint16)), "smaller than one 2×2"),
        (dict(mosaic=np.zeros((4, 4), np.float32)), "must hold integers"),
        (dict(mosaic=np.full((4, 4), 70000, np.int64)), "outside 0..65535"),
        (dict(mosaic=np.full((4, 4), -1, np.int64)), "outside 0..65535"),
        (dict(cfa="RGBW"), "unknown CFA pattern"),
        (dict(black_level=(0, 0, 0)), "needs 4 values"),
        (dict(black_level=(-1, 0, 0, 0)), "black ≥ 0"),
        (dict(black_level=(float("nan"),) * 4), "finite"),
        (dict(black_level=(64,) * 4, white_level=64), "must exceed every black level"),
        (dict(wb_gains=(1, 0, 1)), "3 positive numbers"),
        (dict(wb_gains=(1, 1)), "3 positive numbers"),
        (dict(cam_to_srgb=np.eye(2)), "finite 3×3"),
        (dict(cam_to_srgb=np.full((3, 3), np.inf)), "finite 3×3"),
        (dict(orientation=9), "orientation must be 1..8"),
    ],
)
def test_validation_errors(kw, match):
    with pytest.raises(RawFormatError, match=match):
        make_frame(**kw)


def test_errors_name_the_file():
    with pytest.raises(RawFormatError, match=r"^shot\.dng: white level"):
        make_frame(black_level=(64,) * 4, white_level=64, path=Path("shot.dng"))


def test_normalized_known_values():
    # RGGB tile [[R, Gr], [Gb, B]] = [[64, 1023], [543, 2000]], black 64, white 1023, so (x - 64) / 959:
    # R 0, Gr 1, Gb 479/959, B 1936/959 clipped to 1.
    frame = make_frame(mosaic=np.array([[64, 1023], [543, 2000]], np.uint16), black_level=(64,) * 4)
    expected = torch.tensor([0.0, 1.0, 479 / 959, 1.0]).view(4, 1, 1)
    out = frame.normalized()
    assert out.shape == (4, 1, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected)
    assert frame.normalized(clip=False)[3].item() == pytest.approx(1936 / 959)


def test_normalized_uses_per_plane_black():
    # BGGR: canonical planes are R=(1,1), Gr=(1,0), Gb=(0,1), B=(0,0); each holds black+100 of its own plane.
    black = (10, 20, 30, 40)
    mosaic = np.array([[40 + 100, 30 + 100], [20 + 100, 10 + 100]], np.uint16)
    frame = make_frame(mosaic=mosaic, cfa="BGGR", black_level=black, white_level=1010)
    expected = torch.tensor([100 / 1000, 100 / 990, 100 / 980, 100 / 970]).view(4, 1, 1)
    torch.testing.assert_close(frame.normalized(), expected)


def test_packed_is_canonical():
    frame = make_frame(mosaic=np.array([[0, 1], [4, 5]], np.uint16), cfa="GRBG")
    assert frame.packed()[:, 0, 0].tolist() == [1, 0, 5, 4]  # R at (0,1), Gr (0,0), Gb (1,1), B (1,0)


def test_with_overrides_marks_user():
    frame = make_frame(sources={"cfa": Source.METADATA, "black_level": Source.METADATA, "white_level": Source.PRESET})
    out = frame.with_overrides(white_level=4095, black_level=None, cfa="BGGR")
    assert out.white_level == 4095.0 and out.cfa is CFA.BGGR
    assert out.sources == {"cfa": Source.USER, "black_level": Source.METADATA, "white_level": Source.USER}
    assert frame.sources["white_level"] is Source.PRESET and frame.white_level == 1023.0  # original untouched


def test_with_overrides_validates():
    with pytest.raises(RawFormatError, match="must exceed"):
        make_frame().with_overrides(white_level=0)


def test_check_white_level():
    make_frame(mosaic=np.full((2, 2), 1023, np.uint16)).check_white_level()  # equal to white is fine
    with pytest.raises(RawFormatError, match=r"max 1024 > white 1023.*--white"):
        make_frame(mosaic=np.full((2, 2), 1024, np.uint16)).check_white_level()


def test_describe_says_where_values_came_from():
    frame = make_frame(wb_gains=(2, 1, 1.5), sources={"cfa": Source.USER, "wb_gains": Source.METADATA})
    text = frame.describe()
    assert text.startswith("6×4 RGGB [user]")
    assert "wb (2.000, 1.000, 1.500) [metadata]" in text
    assert "white 1023 [assumed]" in text and "colour matrix identity [assumed]" in text
