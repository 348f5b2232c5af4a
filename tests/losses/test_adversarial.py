"""Relativistic pairing losses and the R1 / R2 gradient penalties."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unisp.losses.adversarial import (
    discriminator_loss,
    discriminator_objective,
    generator_loss,
    gradient_penalty,
    init_discriminator,
)


@pytest.mark.parametrize(
    "d_fake, d_real, expected",
    [
        (0.0, 0.0, math.log(2)),  # softplus(0) = log 2: D cannot tell them apart
        (1.0, 0.0, math.log1p(math.exp(-1))),  # fake judged more real: small loss
        (0.0, 1.0, math.log1p(math.exp(1))),  # fake judged less real: large loss
        (3.5, 3.5, math.log(2)),  # only the difference counts
    ],
)
def test_generator_loss_values(d_fake, d_real, expected):
    loss = generator_loss(torch.tensor([d_fake, d_fake]), torch.tensor([d_real, d_real]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pairs_elementwise_then_averages():
    # softplus(−(f − r)) per pair: pairs (1 − 0) and (0 − 1) → (log(1 + e⁻¹) + log(1 + e)) / 2.
    loss = generator_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2)


def test_discriminator_loss_is_the_mirror():
    # softplus(−(D(real) − D(fake))): the generator's formula with the roles of real and fake swapped.
    a, b = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(discriminator_loss(d_real=a, d_fake=b), generator_loss(d_fake=a, d_real=b))
    # Generator and discriminator pull the difference in opposite directions.
    fake = torch.zeros(3, requires_grad=True)
    real = torch.ones(3)
    (g_grad,) = torch.autograd.grad(generator_loss(fake, real), fake)
    (d_grad,) = torch.autograd.grad(discriminator_loss(real, fake), fake)
    assert (g_grad < 0).all() and (d_grad > 0).all()


def test_penalty_of_a_linear_discriminator():
    # D(x) = w·x has ∇D = w for every sample, so γ/2 · E‖∇D‖² = γ/2 · ‖w‖² = 10/2 · (1 + 4 + 4) = 45.
    w = torch.tensor([1.0, -2.0, 2.0])
    x = torch.randn(4, 3, requires_grad=True)
    assert gradient_penalty(x @ w, x, 10.0).item() == pytest.approx(45.0)


def test_penalty_is_per_sample_squared_norm_mean():
    # D(x) = Σ x²: ∇D = 2x, penalty = γ/2 · mean_b ‖2 x_b‖² = γ/2 · 4 · mean_b Σ x_b².
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    expected = 0.5 * 7.0 * 4 * x.detach().pow(2).flatten(1).sum(1).mean()
    torch.testing.assert_close(gradient_penalty(x.pow(2).flatten(1).sum(1), x, 7.0), expected)


def test_penalty_is_differentiable_wrt_discriminator():
    # The penalty trains D: for D(x) = w·x its gradient wrt w is γ·w.
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    x = torch.randn(5, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(gradient_penalty(x @ w, x, 10.0), w)
    torch.testing.assert_close(grad, 10.0 * w.detach())


def test_zero_gamma_is_exactly_zero():
    x = torch.randn(2, 3, requires_grad=True)
    assert gradient_penalty(x.sum(1), x, 0.0).item() == 0.0


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([[1.0], [-2.0], [2.0]]))

    def forward(self, x):
        return (x @ self.w).squeeze(-1)


def test_objective_total_and_stats():
    disc = Linear()
    real, fake = torch.randn(4, 3), torch.randn(4, 3)
    out = discriminator_objective(disc, real, fake, r1_gamma=10.0, r2_gamma=4.0)
    # Linear D: R1 = 10/2 · 9 = 45, R2 = 4/2 · 9 = 18.
    assert out["r1"].item() == pytest.approx(45.0) and out["r2"].item() == pytest.approx(18.0)
    d_real, d_fake = disc(real), disc(fake)
    assert out["loss"].item() == pytest.approx(discriminator_loss(d_real, d_fake).item())
    assert out["d_real"].item() == pytest.approx(d_real.mean().item())
    assert out["total"].item() == pytest.approx(out["loss"].item() + 63.0)
    out["total"].backward()
    assert disc.w.grad is not None


def test_objective_detaches_features_from_generator():
    gen = nn.Linear(3, 3)
    fake = gen(torch.randn(4, 3))
    out = discriminator_objective(Linear(), torch.randn(4, 3), fake, 10.0, 10.0)
    out["total"].backward()
    assert gen.weight.grad is None


def test_objective_is_float32_under_autocast():
    # Half-precision features (as saved from an autocast forward) give float32 penalties, and the
    # same numbers as float32 features, because autocast is switched off inside.
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1), nn.Flatten(0))
    real, fake = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = discriminator_objective(disc, real, fake, 10.0, 10.0)
    plain = discriminator_objective(disc, real.float(), fake.float(), 10.0, 10.0)
    assert all(v.dtype == torch.float32 for v in out.values())
    for key in ("loss", "r1", "r2", "d_real", "d_fake"):
        assert out[key].item() == plain[key].item()


def test_objective_needs_pairs():
    with pytest.raises(ValueError, match="as many real as fake"):
        discriminator_objective(Linear(), torch.randn(4, 3), torch.randn(3, 3), 10.0, 10.0)


def test_he_initialisation_keeps_the_scale():
    # Weights N(0, gain²/fan_in) with the LeakyReLU gain √(2 / (1 + 0.2²)), last layer gain 1,
    # zero biases: a deep stack's logits then vary with the input at the input's own scale.
    torch.manual_seed(0)
    layers = [nn.Linear(256, 256) for _ in range(6)] + [nn.Linear(256, 1)]
    stack = nn.Sequential(*[m for layer in layers[:-1] for m in (layer, nn.LeakyReLU(0.2))], layers[-1])
    init_discriminator(stack, 0.2)
    gain = math.sqrt(2 / (1 + 0.2**2))
    for layer in layers[:-1]:
        assert layer.weight.std().item() == pytest.approx(gain / 16, rel=0.02)
        assert torch.count_nonzero(layer.bias) == 0
    assert layers[-1].weight.std().item() == pytest.approx(1 / 16, rel=0.2)
    logits = stack(torch.randn(512, 256))
    assert 0.3 < logits.std().item() < 3.0
    # PyTorch's default initialisation of the same stack: the logits hardly move with the input.
    default = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(256, 256), nn.LeakyReLU(0.2))], nn.Linear(256, 1))
    assert default(torch.randn(512, 256)).std().item() < 0.03
