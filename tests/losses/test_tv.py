"""Total variation: hand-computed values, gradient, errors."""

from __future__ import annotations

import pytest
import torch

from unisp.losses.tv import total_variation


def test_ramp_gives_sum_of_squared_slopes(device):
    # x[h, w] = a·w + b·h: every horizontal difference is a, every vertical one b, so the two
    # means of squares are a² and b².
    a, b = 0.25, -0.5
    h, w = torch.meshgrid(torch.arange(5.0, device=device), torch.arange(7.0, device=device), indexing="ij")
    image = (a * w + b * h).expand(2, 3, 5, 7)
    assert total_variation(image).item() == pytest.approx(a**2 + b**2)


def test_checkerboard(device):
    # A 0/1 checkerboard: every neighbour differs by ±1 in both directions → 1 + 1.
    h, w = torch.meshgrid(torch.arange(4, device=device), torch.arange(6, device=device), indexing="ij")
    image = ((h + w) % 2).float()[None, None]
    assert total_variation(image).item() == pytest.approx(2.0)


def test_constant_image_is_zero(device):
    assert total_variation(torch.full((1, 3, 4, 4), 0.7, device=device)).item() == 0.0


def test_means_not_sums(device):
    # Top row 0 1 1 1, bottom row 0 0 0 0. Horizontal: one of 6 pairs differs by 1 → 1/6.
    # Vertical: 3 of 4 columns differ by 1 → 3/4.
    image = torch.tensor([[[[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]]], device=device)
    assert total_variation(image).item() == pytest.approx(1 / 6 + 3 / 4)


def test_gradcheck():
    x = torch.rand(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(total_variation, (x,))


@pytest.mark.parametrize("shape", [(3, 4, 4), (1, 3, 1, 5), (1, 3, 5, 1)])
def test_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="total_variation needs"):
        total_variation(torch.zeros(shape))
