"""Sliced Wasserstein distances, the texture term and the graded term (unisp.losses.swd, unisp.losses.graded)."""

from __future__ import annotations

import pytest
import torch

from unisp.losses.graded import graded_loss
from unisp.losses.swd import highpass_patches, random_directions, sliced_wasserstein, texture_swd


def test_sliced_wasserstein_known_values():
    d = torch.eye(2)
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    # Sorting pairs the values whatever the order: a permutation of x is at distance 0.
    assert sliced_wasserstein(x, x.flip(0), d).item() == 0.0
    # A shift by (3, 0) moves every projection on the first axis by 3, none on the second.
    assert sliced_wasserstein(x, x + torch.tensor([3.0, 0.0]), d).item() == pytest.approx(1.5)


def test_sliced_wasserstein_shapes_are_checked():
    with pytest.raises(ValueError, match="directions"):
        sliced_wasserstein(torch.zeros(4, 3), torch.zeros(5, 3), torch.eye(3))


def test_random_directions_are_unit_and_seeded():
    a = random_directions(75, 16, torch.Generator().manual_seed(3))
    b = random_directions(75, 16, torch.Generator().manual_seed(3))
    assert a.shape == (75, 16) and torch.equal(a, b)
    torch.testing.assert_close(a.norm(dim=0), torch.ones(16))


def test_highpass_patches_of_a_flat_image_are_zero():
    rows = highpass_patches(torch.full((2, 3, 16, 16), 0.4), sigma=1.0, patch=5)
    assert rows.shape == (2 * 36, 75)  # (16 − 5) // 2 + 1 = 6 windows per side
    assert rows.abs().max().item() < 1e-4


def test_texture_swd_sees_noise():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g), size=32, mode="bilinear")
    noisy = (smooth + 0.05 * torch.randn(smooth.shape, generator=g)).clamp(0, 1)

    def loss(a, b):
        return texture_swd(a, b, sigma=2.0, patch=5, samples=2048, directions=32, generator=torch.Generator().manual_seed(1))

    # Two samples of the same windows differ only by sampling; noise widens every projection.
    assert loss(noisy, smooth).item() > 10 * loss(smooth, smooth.flip(-1)).item()


def test_texture_swd_gradient_reduces_noise():
    g = torch.Generator().manual_seed(0)
    clean = torch.full((2, 3, 32, 32), 0.5)
    fake = (clean + 0.05 * torch.randn(clean.shape, generator=g)).requires_grad_(True)
    value = texture_swd(fake, clean, sigma=2.0, patch=3, samples=1024, directions=16, generator=torch.Generator().manual_seed(2))
    value.backward()
    assert torch.isfinite(fake.grad).all()
    # A small step against the gradient moves the output towards the flat photos: less high-frequency energy.
    step = (fake - 20.0 * fake.grad).detach()
    assert (step - 0.5).abs().mean() < (fake.detach() - 0.5).abs().mean()


def test_texture_swd_gradcheck():
    g = torch.Generator().manual_seed(5)
    fake = (torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64) * 0.6 + 0.2).requires_grad_(True)
    real = torch.rand(1, 3, 12, 12, generator=g, dtype=torch.float64) * 0.6 + 0.2

    def f(x):
        return texture_swd(x, real, sigma=1.0, patch=3, samples=64, directions=4, generator=torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(f, (fake,), eps=1e-6, atol=1e-5)


def test_graded_loss_known_value_and_gradient():
    fake = torch.full((1, 3, 16, 16), 0.5, requires_grad=True)
    value = graded_loss(fake, torch.full((1, 3, 16, 16), 0.25), 1.0)
    assert value.item() == pytest.approx(0.25)
    value.backward()
    # d/dx mean |blur(x) − c| where blur(x) > c everywhere: the blur's weights, which sum to 1 for
    # every output pixel, times 1/N; away from the reflected border each input pixel gets 1/N.
    n = 3 * 16 * 16
    assert fake.grad.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(fake.grad[..., 4:-4, 4:-4], torch.full((1, 3, 8, 8), 1 / n))


def test_graded_loss_ignores_noise_finer_than_its_blur():
    g = torch.Generator().manual_seed(0)
    target = torch.full((1, 3, 64, 64), 0.5)
    noisy = target + 0.1 * torch.randn(target.shape, generator=g)
    # A Gaussian of σ px averages white noise over an area 4πσ²: its standard deviation falls by
    # 2√π·σ ≈ 10.6 at σ = 3 (a little less at the reflected border).
    assert graded_loss(noisy, target, 3.0).item() < 0.15 * (noisy - target).abs().mean().item()
    with pytest.raises(ValueError, match="equal shapes"):
        graded_loss(target, target[..., :32], 1.0)
