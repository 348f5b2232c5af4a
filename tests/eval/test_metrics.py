"""Metrics on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch

from unisp.errors import UnispError
from unisp.eval.metrics import psnr


def test_identical_images_are_infinite():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()


def test_known_offset():
    # A constant offset d gives MSE d², so PSNR = −20·log10(d): d = 0.01 → 40 dB.
    x = torch.rand(3, 16, 16) * 0.9
    assert math.isclose(float(psnr(x + 0.01, x)), 40.0, abs_tol=1e-3)


def test_per_image_in_a_batch():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)])
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 40.0]))


def test_shape_mismatch():
    with pytest.raises(UnispError, match="equal shapes"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
