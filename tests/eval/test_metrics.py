"""Metrics on hand-built cases and published reference data."""

from __future__ import annotations

import math

import pytest
import torch

from unisp.errors import UnispError
from unisp.metrics import (
    CIEDE2000_L_MID,
    MS_SSIM_BETAS,
    SSIM_K1,
    ciede2000,
    delta_e2000,
    ms_ssim,
    ms_ssim_scales,
    psnr,
    srgb_to_lab,
    ssim,
)
from unisp.isp.gamma import srgb_encode


def test_identical_images_are_infinite():
    x = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(x, x)).all()


def test_known_offset(device):
    # A constant offset d gives MSE d², so PSNR = −20·log10(d): d = 0.01 → 40 dB.
    x = torch.rand(3, 16, 16, device=device) * 0.9
    assert math.isclose(float(psnr(x + 0.01, x).cpu()), 40.0, abs_tol=1e-3)


def test_per_image_in_a_batch(device):
    x = torch.zeros(2, 3, 4, 4, device=device)
    y = torch.stack([torch.full((3, 4, 4), 0.1), torch.full((3, 4, 4), 0.01)]).to(device)
    assert torch.allclose(psnr(x, y).cpu().float(), torch.tensor([20.0, 40.0]))


def test_shape_mismatch():
    with pytest.raises(UnispError, match="equal shapes"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))


# --- SSIM / MS-SSIM ------------------------------------------------------------------------------

def _constant(value: float, size: int) -> torch.Tensor:
    return torch.full((3, size, size), value)


@pytest.mark.parametrize("metric", [ssim, ms_ssim])
def test_identical_images_score_one(metric, device):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    out = metric(x, x).cpu()
    assert out.shape == (2,)
    assert torch.allclose(out, torch.ones(2), atol=1e-6)


@pytest.mark.parametrize("metric", [ssim, ms_ssim, delta_e2000])
def test_unbatched_image_gives_a_scalar(metric):
    x = torch.rand(3, 32, 32)
    assert metric(x, x * 0.5).shape == ()


@pytest.mark.parametrize("metric", [ssim, ms_ssim])
def test_similarity_drops_with_noise(metric):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 64, 64, generator=g) * 0.8 + 0.1
    noise = torch.randn(x.shape, generator=g)
    scores = [float(metric(x, (x + s * noise).clamp(0, 1))) for s in (0.0, 0.02, 0.1)]
    assert scores[0] > scores[1] > scores[2]


def test_ssim_of_constant_images_is_the_luminance_term():
    # Flat images have zero variance and covariance, so the contrast-structure term is C2/C2 = 1 and
    # SSIM = (2ab + C1) / (a² + b² + C1) with C1 = (K1·1)²: data range 1, not the images' own range
    # (which would be 0 and give C1 = 0 → exactly 0.8).
    a, b = 0.05, 0.1
    c1 = SSIM_K1**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # 0.801587…
    assert math.isclose(float(ssim(_constant(a, 32), _constant(b, 32))), expected, abs_tol=1e-5)


@pytest.mark.parametrize("size, scales", [(176, 5), (64, 3)])
def test_ms_ssim_of_constant_images(size, scales):
    # Flat images stay flat under 2×2 average pooling, so every scale's contrast term is 1 and
    # MS-SSIM = luminance^β_last, with β the last of the weights used (renormalised below 5 scales:
    # 64 px fits 3 scales, β_last = 0.3001 / (0.0448 + 0.2856 + 0.3001)).
    a, b = 0.05, 0.1
    c1 = SSIM_K1**2
    luminance = (2 * a * b + c1) / (a * a + b * b + c1)
    beta = MS_SSIM_BETAS[scales - 1] / sum(MS_SSIM_BETAS[:scales])
    assert ms_ssim_scales(size, size) == scales
    assert math.isclose(float(ms_ssim(_constant(a, size), _constant(b, size))), luminance**beta, abs_tol=1e-4)


@pytest.mark.parametrize(
    "side, scales", [(176, 5), (175, 4), (99, 4), (98, 3), (44, 3), (43, 2), (12, 2), (11, 1), (10, 0)]
)
def test_ms_ssim_scales_by_size(side, scales):
    # Limits from torchmetrics' check side // (n − 1)² > 10 and reflect padding (coarsest scale > 5 px).
    assert ms_ssim_scales(side, side + 50) == scales
    assert ms_ssim_scales(side + 50, side) == scales


@pytest.mark.parametrize("side", [11, 12, 43, 44, 98, 99, 175, 176])
def test_ms_ssim_runs_at_every_scale_boundary(side):
    x = torch.rand(1, 3, side, side + 1)
    assert torch.isfinite(ms_ssim(x, x * 0.9)).all()


def test_ms_ssim_too_many_scales_for_the_image():
    with pytest.raises(UnispError, match="5 scales needs larger images"):
        ms_ssim(torch.rand(3, 100, 100), torch.rand(3, 100, 100), scales=5)


@pytest.mark.parametrize("metric", [ssim, ms_ssim])
def test_image_smaller_than_the_window(metric):
    with pytest.raises(UnispError, match="at least 11×11"):
        metric(torch.rand(3, 10, 40), torch.rand(3, 10, 40))


@pytest.mark.parametrize("metric", [ssim, ms_ssim, delta_e2000])
def test_bad_shapes(metric):
    with pytest.raises(UnispError, match="equal shapes"):
        metric(torch.rand(3, 16, 16), torch.rand(3, 16, 17))
    with pytest.raises(UnispError, match=r"\(B, 3, H, W\)"):
        metric(torch.rand(4, 16, 16), torch.rand(4, 16, 16))


# --- CIELAB and CIEDE2000 ------------------------------------------------------------------------

#: Sharma, Wu & Dalal (2005), Table 1: L1, a1, b1, L2, a2, b2, ΔE00 (all 34 pairs, 4 decimals).
SHARMA_PAIRS = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_ciede2000_sharma_test_data():
    # The published values are rounded to 4 decimals, so they hold to 5e-5; the pairs sit on the
    # formula's branch points (hue wrap, zero chroma, mean hue at exactly 180° apart).
    data = torch.tensor(SHARMA_PAIRS, dtype=torch.float64)
    expected = data[:, 6]
    assert torch.allclose(ciede2000(data[:, :3], data[:, 3:6], dim=-1), expected, rtol=0, atol=1e-4)
    assert torch.allclose(ciede2000(data[:, 3:6], data[:, :3], dim=-1), expected, rtol=0, atol=1e-4)


def test_ciede2000_matches_colour_science():
    colour = pytest.importorskip("colour")
    g = torch.Generator().manual_seed(2)
    lab1 = torch.rand(500, 3, generator=g, dtype=torch.float64) * torch.tensor([100.0, 200, 200]) - torch.tensor(
        [0.0, 100, 100]
    )
    lab2 = (lab1 + torch.randn(500, 3, generator=g, dtype=torch.float64) * 10).clamp(-100, 100)
    ours = ciede2000(lab1, lab2, dim=-1).numpy()
    theirs = colour.difference.delta_E_CIE2000(lab1.numpy(), lab2.numpy())
    assert abs(ours - theirs).max() < 1e-9


def test_srgb_to_lab_end_points_and_colour_science():
    white, black = srgb_to_lab(torch.ones(3, 1, 1)).flatten(), srgb_to_lab(torch.zeros(3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=1e-4)
    assert torch.allclose(black, torch.zeros(3), atol=1e-6)
    colour = pytest.importorskip("colour")
    rgb = torch.rand(200, 3, dtype=torch.float64)
    ours = srgb_to_lab(rgb[:, :, None, None])[:, :, 0, 0].numpy()
    theirs = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb.numpy()))
    # colour-science derives the matrix and white from the primaries' chromaticities; IEC
    # 61966-2-1 prints them to 4 decimals. That rounding moves a*, b* by < 0.01.
    assert abs(ours - theirs).max() < 0.02


def _grey_of_lightness(lightness: float, size: int = 4) -> torch.Tensor:
    # Inverse of L* = 116·(Y)^(1/3) − 16 for Y above (6/29)³, then sRGB-encode the grey Y.
    y = ((lightness + 16) / 116) ** 3
    return srgb_encode(torch.full((3, size, size), y, dtype=torch.float64))


@pytest.mark.parametrize("l1, l2", [(45.0, 55.0), (50.0, 60.0)])
def test_delta_e_of_a_grey_change(l1, l2):
    # Greys have a* = b* = 0, so ΔE00 = |ΔL| / S_L with S_L = 1 + 0.015 (L̄ − 50)² / √(20 + (L̄ − 50)²):
    # L 45 → 55 has L̄ = 50, S_L = 1, ΔE = 10; L 50 → 60 has S_L = 1 + 0.375 / √45, ΔE = 9.4705….
    l_mean = (l1 + l2) / 2 - CIEDE2000_L_MID
    s_l = 1 + 0.015 * l_mean**2 / math.sqrt(20 + l_mean**2)
    expected = (l2 - l1) / s_l
    out = delta_e2000(_grey_of_lightness(l1), _grey_of_lightness(l2))
    assert math.isclose(float(out), expected, abs_tol=1e-4)


def test_delta_e_identical_is_zero_and_mean_over_pixels(monkeypatch):
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 9, 7, generator=g), torch.rand(2, 3, 9, 7, generator=g)
    assert torch.equal(delta_e2000(x, x), torch.zeros(2))
    per_pixel = ciede2000(srgb_to_lab(x.double()), srgb_to_lab(y.double()))
    expected = per_pixel.flatten(-2).mean(-1).float()
    # Computing in row bands (here 1 row of 7 px per band) must not change the mean.
    monkeypatch.setattr("unisp.metrics.DELTA_E_CHUNK_PIXELS", 5)
    assert torch.allclose(delta_e2000(x, y), expected, rtol=1e-6)
