"""EXIF orientation applied to rendered images."""

from __future__ import annotations

import pytest
import torch

from unisp.errors import RawFormatError
from unisp.isp.orientation import apply_orientation

# A 2×3 image whose top row is 1 2 3: the rotations below are what EXIF codes 3, 6 and 8 ask for.
IMAGE = torch.tensor([[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    "code, expected",
    [
        (1, [[1, 2, 3], [4, 5, 6]]),
        (3, [[6, 5, 4], [3, 2, 1]]),
        (6, [[4, 1], [5, 2], [6, 3]]),  # 90° clockwise: the left column becomes the top row
        (8, [[3, 6], [2, 5], [1, 4]]),  # 90° counter-clockwise
    ],
)
def test_known_rotations(code, expected):
    assert apply_orientation(IMAGE, code).tolist() == expected


def test_batched_channels_rotate_together():
    x = torch.rand(2, 3, 4, 6)
    out = apply_orientation(x, 6)
    assert out.shape == (2, 3, 6, 4)
    assert torch.equal(apply_orientation(apply_orientation(out, 8), 1), x)


def test_unknown_code():
    with pytest.raises(RawFormatError, match="orientation code 2"):
        apply_orientation(IMAGE, 2)


@pytest.mark.parametrize("code", [1, 3, 6, 8])
def test_numpy_hwc_matches_torch_chw(code):
    chw = torch.arange(2 * 3 * 4).view(2, 3, 4)
    hwc = chw.permute(1, 2, 0).numpy()
    expected = apply_orientation(chw, code).permute(1, 2, 0).numpy()
    assert (apply_orientation(hwc, code, dims=(0, 1)) == expected).all()
