"""Dynamic Loss Adaptation: unit-norm contributions, the efficient scheme equals the released
code's scheme, fixed weights equal the plain sum, degenerate terms, and pass counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.losses.dla import DLAResult, dla_backward, fixed_weight_backward, reference_dla_backward
from unisp.losses.tv import total_variation

NAMES = ("content", "colour", "texture_low", "texture_high", "tv")


def frozen(module: nn.Module) -> nn.Module:
    return module.requires_grad_(False)


class Case(nn.Module):
    """A random generator conv, random frozen "backbone" convs, trainable "discriminators", 5 terms.

    The two texture terms share one trunk forward (as the real texture backbone does); the
    backbone outputs count their backward passes.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.gen = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 12, 3, padding=1), nn.PixelShuffle(2))
        self.content_net = frozen(nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.ReLU()))
        self.colour_net = frozen(nn.Conv2d(3, 4, 4, stride=4))
        self.trunk_low = frozen(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.1)))
        self.trunk_high = frozen(nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.LeakyReLU(0.1)))
        self.d_colour = nn.Linear(4, 1)
        self.d_low = nn.Conv2d(4, 1, 3)
        self.d_high = nn.Conv2d(6, 1, 3)
        self.to(dtype)
        self.raw = torch.rand(2, 4, 6, 6, dtype=dtype)
        self.ref = torch.rand(2, 3, 12, 12, dtype=dtype)
        self.real = torch.rand(2, 3, 12, 12, dtype=dtype)
        self.passes = {name: 0 for name in ("content", "colour", "texture_low", "texture_high")}

    def params(self) -> list[torch.Tensor]:
        return list(self.gen.parameters())

    def _count(self, name: str, t: torch.Tensor) -> torch.Tensor:
        def hook(grad):
            self.passes[name] += 1

        t.register_hook(hook)
        return t

    def terms(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.gen(self.raw)
        content = self._count("content", self.content_net(out))
        colour = self._count("colour", self.colour_net(out)).flatten(2).transpose(1, 2)
        low = self._count("texture_low", self.trunk_low(out))
        high = self._count("texture_high", self.trunk_high(low))
        with torch.no_grad():
            target = self.content_net(self.ref)
            real_low = self.trunk_low(self.real)
            real_colour = self.colour_net(self.real).flatten(2).transpose(1, 2)
        terms = {
            "content": F.mse_loss(content, target),
            "colour": F.softplus(-(self.d_colour(colour).mean((1, 2)) - self.d_colour(real_colour).mean((1, 2)))).mean(),
            "texture_low": F.softplus(-(self.d_low(low) - self.d_low(real_low))).mean(),
            "texture_high": 100.0 * self.d_high(high).mean(),  # a large-scale term
            "tv": 1e-3 * total_variation(out),  # a small-scale term
        }
        return out, terms


def term_gradients(case: Case) -> dict[str, list[torch.Tensor]]:
    """Ground truth: ∇θ Lᵢ of every term by its own autograd.grad."""
    out, terms = case.terms()
    return {n: list(torch.autograd.grad(terms[n], case.params(), retain_graph=True)) for n in NAMES}


def global_norm(grads) -> float:
    return math.sqrt(sum(g.double().pow(2).sum().item() for g in grads))


def run(case: Case, scheme, multipliers=None, eps=1e-8):
    for p in case.params():
        p.grad = None
    out, terms = case.terms()
    if scheme is fixed_weight_backward:
        result = scheme(case.params(), out, terms, multipliers or {})
    else:
        result = scheme(case.params(), out, terms, multipliers or {}, eps)
    return result, [p.grad.clone() for p in case.params()]


@pytest.mark.parametrize("scheme", [dla_backward, reference_dla_backward])
@pytest.mark.parametrize("name", NAMES)
def test_each_term_contributes_unit_norm(scheme, name):
    # With one term, the written gradient is ∇L / (‖∇L‖ + ε): norm ‖∇L‖ / (‖∇L‖ + ε), which is 1
    # but for ε (visible for the small tv term, whose norm is about 1e-3).
    case = Case()
    truth = global_norm(term_gradients(case)[name])
    for p in case.params():
        p.grad = None
    out, terms = case.terms()
    scheme(case.params(), out, {name: terms[name]}, {}, 1e-8)
    assert global_norm(p.grad for p in case.params()) == pytest.approx(truth / (truth + 1e-8), rel=1e-6)
    assert truth / (truth + 1e-8) == pytest.approx(1.0, abs=1e-4)


def test_multiplier_scales_the_unit_contribution():
    case = Case()
    out, terms = case.terms()
    dla_backward(case.params(), out, {"content": terms["content"]}, {"content": 3.0}, 1e-8)
    assert global_norm(p.grad for p in case.params()) == pytest.approx(3.0, rel=1e-6)


def test_norms_and_weights_are_reported():
    case = Case()
    truth = {n: global_norm(g) for n, g in term_gradients(case).items()}
    # The terms' scales differ by orders of magnitude: that is what DLA removes.
    assert max(truth.values()) / min(truth.values()) > 100
    result, _ = run(case, dla_backward)
    assert isinstance(result, DLAResult) and list(result.norms) == list(NAMES)
    for n in NAMES:
        assert result.norms[n] == pytest.approx(truth[n], rel=1e-5)
        assert result.weights[n] == pytest.approx(1 / (truth[n] + 1e-8), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_efficient_equals_reference_and_truth(dtype):
    case = Case(dtype)
    multipliers = {"content": 1.0, "colour": 0.5, "texture_low": 2.0, "texture_high": 1.0}  # tv missing → 1
    truth_grads = term_gradients(case)
    truth = [
        sum((multipliers.get(n, 1.0) / (global_norm(truth_grads[n]) + 1e-8)) * truth_grads[n][j] for n in NAMES)
        for j in range(len(case.params()))
    ]
    fast, fast_grads = run(case, dla_backward, multipliers)
    ref, ref_grads = run(case, reference_dla_backward, multipliers)
    for a, b, t in zip(fast_grads, ref_grads, truth):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        torch.testing.assert_close(a, t.to(dtype), atol=1e-5, rtol=0)
    for n in NAMES:
        assert fast.norms[n] == pytest.approx(ref.norms[n], rel=1e-5)


def test_fixed_weight_is_the_plain_sum():
    case = Case()
    multipliers = {"content": 2.0, "tv": 10.0}
    out, terms = case.terms()
    expected = torch.autograd.grad(sum(multipliers.get(n, 1.0) * terms[n] for n in NAMES), case.params())
    result, grads = run(case, fixed_weight_backward, multipliers)
    assert result is None
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("scheme", [dla_backward, reference_dla_backward, fixed_weight_backward])
def test_only_params_get_gradients_and_they_accumulate(scheme):
    # Like backward(): gradients add to what .grad held; the discriminators in the graph get none.
    case = Case()
    _, once = run(case, scheme)
    for p in case.params():
        p.grad = torch.ones_like(p)
    out, terms = case.terms()
    if scheme is fixed_weight_backward:
        scheme(case.params(), out, terms, {})
    else:
        scheme(case.params(), out, terms, {}, 1e-8)
    for p, g in zip(case.params(), once):
        torch.testing.assert_close(p.grad, g + 1)
    assert all(p.grad is None for d in (case.d_colour, case.d_low, case.d_high) for p in d.parameters())


@pytest.mark.parametrize("scheme", [dla_backward, reference_dla_backward])
def test_degenerate_terms_get_weight_one_over_eps_and_no_nan(scheme):
    case = Case()
    for p in case.params():
        p.grad = None
    out, terms = case.terms()
    stray = torch.ones(3, requires_grad=True)  # a leaf outside the generator
    degenerate = {
        "content": terms["content"],
        "constant": torch.tensor(2.0),  # no graph at all
        "elsewhere": (stray * 2).sum(),  # a graph that never reaches the output
        "flat": 0.0 * out.sum(),  # reaches the output, zero gradient
    }
    result = scheme(case.params(), out, degenerate, {}, 1e-8)
    for n in ("constant", "elsewhere", "flat"):
        assert result.norms[n] == 0.0 and result.weights[n] == pytest.approx(1e8)
    # Only the content term contributes, with unit norm.
    assert global_norm(p.grad for p in case.params()) == pytest.approx(1.0, abs=1e-6)
    assert all(torch.isfinite(p.grad).all() for p in case.params())


def test_no_terms_writes_nothing():
    case = Case()
    out, _ = case.terms()
    assert dla_backward(case.params(), out, {}, {}, 1e-8) == DLAResult({}, {})
    assert all(p.grad is None for p in case.params())


def test_efficient_scheme_traverses_each_backbone_once():
    # Counted by hooks on each backbone's output, which fire once per backward pass through it.
    # Efficient: one pass per term; the texture_low map is crossed by both texture terms (the
    # high map is computed from it). The released scheme: one pass per term, then all again for
    # the total (texture_low: its own, texture_high's, the total's). Fixed weights: one pass.
    case = Case()
    run(case, dla_backward)
    assert case.passes == {"content": 1, "colour": 1, "texture_low": 2, "texture_high": 1}
    case.passes = dict.fromkeys(case.passes, 0)
    run(case, reference_dla_backward)
    assert case.passes == {"content": 2, "colour": 2, "texture_low": 3, "texture_high": 2}
    case.passes = dict.fromkeys(case.passes, 0)
    run(case, fixed_weight_backward)
    assert case.passes == {"content": 1, "colour": 1, "texture_low": 1, "texture_high": 1}
