"""Row bands: stitched results equal one pass when the halo covers the reach."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from unisp.isp.bands import map_row_bands
from unisp.isp.pipeline import ISPConfig, render

pipeline = importlib.import_module("unisp.isp.pipeline")


def box3(x: torch.Tensor) -> torch.Tensor:
    """3×3 box sum with reflect padding: each output row depends on the rows 1 above and below."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1, divisor_override=1)


@pytest.mark.parametrize("height", [9, 10, 23])
@pytest.mark.parametrize("rows", [2, 3, 4])
def test_bands_equal_one_pass(height, rows):
    x = torch.rand(2, 3, height, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(height))
    assert torch.equal(map_row_bands(box3, x, rows=rows, halo=1), box3(x))


def test_too_small_a_halo_changes_the_result():
    # Negative control: two box filters in a row reach 2 rows; with a halo of 1 the reflect padding
    # at the band cuts leaks into the kept rows.
    x = torch.rand(1, 1, 20, 5, generator=torch.Generator().manual_seed(0))
    twice = lambda t: box3(box3(t))  # noqa: E731
    assert torch.equal(map_row_bands(twice, x, rows=4, halo=2), twice(x))
    assert not torch.equal(map_row_bands(twice, x, rows=4, halo=1), twice(x))


def test_scale_maps_input_rows_to_output_rows():
    # Packed planes → a mosaic twice as tall: band k's output rows are 2× its input rows.
    x = torch.rand(1, 4, 11, 6, generator=torch.Generator().manual_seed(1))
    upsample = lambda t: F.pixel_shuffle(box3(t), 2)  # noqa: E731
    assert torch.equal(map_row_bands(upsample, x, rows=2, halo=1, scale=2), upsample(x))


def test_small_inputs_take_one_call():
    calls = []
    x = torch.rand(1, 1, 6, 4)
    map_row_bands(lambda t: calls.append(t.shape[-2]) or t, x, rows=2, halo=2)
    assert calls == [6]


@pytest.mark.parametrize("method", ["bilinear", "malvar", "ahd"])
@pytest.mark.parametrize("tone", [False, True])
def test_render_in_bands_equals_one_pass(method, tone, monkeypatch):
    # Every stage but demosaicing is per pixel; the bands overlap by the demosaicer's reach, so
    # the render is the same: batch of 2, an odd number of packed rows, per-image gains and
    # matrices, gray world measured on the whole image. Up to one float32 ulp (6e-8 seen with
    # AHD): the vectorised power of the sRGB curve rounds by SIMD position, which bands shift.
    # A wrong halo or gray world measured per band would differ by orders of magnitude more.
    gen = torch.Generator().manual_seed(2)
    planes = torch.rand(2, 4, 27, 9, generator=gen)
    gains = torch.tensor([[2.0, 1.0, 1.5], [1.2, 1.0, 2.5]])
    matrix = torch.eye(3) + 0.1 * torch.randn(2, 3, 3, generator=gen)
    for wb in ("as_shot", "gray_world"):
        config = ISPConfig(demosaic=method, white_balance=wb, tone_curve=tone)
        whole = render(planes, "GRBG", wb_gains=gains, cam_to_srgb=matrix, config=config)
        monkeypatch.setattr(pipeline, "RENDER_BAND_ROWS", 4)
        banded = render(planes, "GRBG", wb_gains=gains, cam_to_srgb=matrix, config=config)
        monkeypatch.undo()
        assert torch.allclose(banded, whole, rtol=0, atol=2.5e-7), wb
