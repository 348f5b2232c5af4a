"""Colour grading by lightness and chroma quantile matching (unisp.isp.grading)."""

from __future__ import annotations

import pytest
import torch

from unisp.errors import UnispError
from unisp.isp.gamma import srgb_decode, srgb_encode
from unisp.isp.grading import Curve, fit_grading, from_lch, quantile_curve, to_lch
from unisp.isp.lab import lab_to_linear_rgb, linear_rgb_to_lab


def test_lab_round_trip_is_exact():
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(lab_to_linear_rgb(linear_rgb_to_lab(x)), x, atol=1e-12, rtol=0)


def test_lch_round_trip_and_shapes():
    rgb = torch.rand(2, 3, 6, 6, dtype=torch.float64) * 0.9 + 0.05
    lightness, chroma, hue = to_lch(rgb)
    assert lightness.shape == chroma.shape == hue.shape == (2, 6, 6)
    torch.testing.assert_close(from_lch(lightness, chroma, hue), rgb, atol=1e-9, rtol=0)


def test_grey_has_no_chroma_and_known_lightness():
    # sRGB 0.5 is linear 0.2140; L* = 116 · 0.2140^(1/3) − 16 = 53.39 (CIE 15:2004).
    lightness, chroma, _ = to_lch(torch.full((1, 3, 1, 1), 0.5, dtype=torch.float64))
    assert lightness.item() == pytest.approx(53.389, abs=1e-3) and chroma.item() == pytest.approx(0.0, abs=1e-9)


def test_curve_interpolates_and_extends_with_slope_one():
    curve = Curve(torch.tensor([0.0, 10.0, 20.0]), torch.tensor([0.0, 30.0, 40.0]))
    values = torch.tensor([-1.0, 5.0, 10.0, 15.0, 25.0])
    torch.testing.assert_close(curve(values), torch.tensor([-1.0, 15.0, 30.0, 35.0, 45.0]))


def test_quantile_curve_maps_a_distribution_onto_another():
    # Uniform on [0, 1] onto uniform on [2, 4]: the map is y = 2 + 2x.
    g = torch.Generator().manual_seed(0)
    curve = quantile_curve(torch.rand(100_000, generator=g), 2 + 2 * torch.rand(100_000, generator=g))
    torch.testing.assert_close(curve(torch.tensor([0.25, 0.5, 0.75])), torch.tensor([2.5, 3.0, 3.5]), atol=0.02, rtol=0)
    assert bool((curve.xs.diff() >= 0).all() and (curve.ys.diff() >= 0).all())


def test_identical_sets_grade_to_themselves():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 16, 16, generator=g) * 0.8 + 0.1 for _ in range(3)]
    grading = fit_grading(images, images, pool=1)
    batch = torch.stack(images)
    torch.testing.assert_close(grading.apply(batch), batch, atol=2e-3, rtol=0)


def test_grading_saturates_and_keeps_hue():
    # The target set is the source set with its chroma × 1.5 (in CIE LCh; muted colours, so the
    # result stays inside the sRGB gamut): the fitted grading must scale the chroma of a source
    # image by 1.5 and keep its lightness and its hue.
    g = torch.Generator().manual_seed(2)
    sources = [torch.rand(3, 24, 24, generator=g) * 0.2 + 0.4 for _ in range(4)]
    targets = []
    for im in sources:
        lightness, chroma, hue = to_lch(im)
        targets.append(from_lch(lightness, 1.5 * chroma, hue))
    grading = fit_grading(sources, targets, pool=1)
    lightness, chroma, hue = to_lch(sources[0][None])
    l2, c2, h2 = to_lch(grading.apply(sources[0][None]))
    torch.testing.assert_close(l2, lightness, atol=0.5, rtol=0)
    torch.testing.assert_close(c2, 1.5 * chroma, atol=0.5, rtol=0)
    strong = chroma > 5  # hue is undefined near grey
    torch.testing.assert_close(h2[strong], hue[strong], atol=1e-3, rtol=0)


def test_grading_to_dict_holds_both_curves():
    grading = fit_grading([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)], pool=2)
    curves = grading.to_dict()
    assert set(curves) == {"lightness", "chroma"} and all(len(xs) == len(ys) == 257 for xs, ys in curves.values())


def test_grading_errors():
    with pytest.raises(UnispError, match="both sides"):
        fit_grading([], [torch.rand(3, 8, 8)])
    with pytest.raises(UnispError, match="pooling factor"):
        fit_grading([torch.rand(3, 2, 2)], [torch.rand(3, 8, 8)], pool=4)


def test_srgb_helpers_used_by_grading_are_inverse():
    x = torch.linspace(0, 1, 101)
    torch.testing.assert_close(srgb_encode(srgb_decode(x)), x, atol=1e-6, rtol=0)
