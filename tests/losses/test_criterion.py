"""UnpairedCriterion: the generator terms, the discriminators' construction and training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.config import from_dict
from unisp.errors import ConfigError
from unisp.losses.adversarial import generator_loss
from unisp.losses.backbones import BackboneSpec, FrozenBackbones, build_backbones
from unisp.losses.colour import ColourDiscriminator
from unisp.losses.config import TERMS, UnpairedLossConfig
from unisp.losses.content import content_loss
from unisp.losses.criterion import ADVERSARIAL_TERMS, D_STATS, DiscriminatorBatch, UnpairedCriterion
from unisp.losses.dla import dla_backward, fixed_weight_backward
from unisp.losses.texture import TextureDiscriminator
from unisp.losses.tv import total_variation

#: Paper optimiser of each discriminator: Adam lr 1e-5, betas (0.5, 0.9), gradient clipping 1.
D_LR, D_BETAS, D_CLIP = 1e-5, (0.5, 0.9), 1.0
PATCH = 32
#: Scale of the stand-in's features: the lite backbone's texture maps have a standard deviation
#: of about 7 to 9 on Kodak photos, far above what small random convolutions give.
FEATURE_GAIN = 8.0


class TinyBackbones(FrozenBackbones):
    """Frozen random convolutions with the three views of a profile, at a fraction of the cost."""

    def __init__(self) -> None:
        spec = BackboneSpec(content_channels=4, colour_dim=6, colour_size=16, texture_channels=(5, 7))
        super().__init__("random", spec, random_init=True)
        torch.manual_seed(0)
        self.content = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.colour = nn.Conv2d(3, 6, 4, stride=4)  # 16 × 16 → 16 tokens
        self.low = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.high = nn.Conv2d(5, 7, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def content_features(self, rgb):
        return F.relu(self.content(rgb))

    def colour_tokens(self, rgb):
        assert rgb.shape[-2:] == (16, 16)
        return FEATURE_GAIN * self.colour(rgb).flatten(2).transpose(1, 2)

    def texture_features(self, rgb):
        low = FEATURE_GAIN * F.leaky_relu(self.low(rgb), 0.2)
        return low, FEATURE_GAIN * F.leaky_relu(self.high(low), 0.2)


class TinyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(4, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return torch.sigmoid(self.shuffle(self.conv(x)))


def images(batch=4, seed=2):
    """(raw, classical render, unrelated real RGB): a darker render and brighter textured photos."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(batch, 4, PATCH // 2, PATCH // 2, generator=g)
    ref = F.interpolate(raw[:, :3], scale_factor=2.0, mode="bilinear")
    real = (0.5 + 0.5 * torch.rand(batch, 3, PATCH, PATCH, generator=g)).clamp(0, 1)
    return raw, ref, real


@pytest.fixture
def criterion():
    return UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(), patch=PATCH)


def test_discriminators_sized_for_the_patch(criterion):
    discs = criterion.discriminators()
    assert list(discs) == list(ADVERSARIAL_TERMS)
    assert isinstance(discs["colour"], ColourDiscriminator) and discs["colour"].dim == 6
    # Tiny texture trunk: 32 → 16 (low, 5 channels) → 8 (high, 7 channels).
    assert isinstance(discs["texture_low"], TextureDiscriminator)
    assert (discs["texture_low"].in_channels, discs["texture_low"].in_size) == (5, (16, 16))
    assert (discs["texture_high"].in_channels, discs["texture_high"].in_size) == (7, (8, 8))
    # Every layer exists before any optimiser is built: no lazy parameters, and nothing is
    # created by a forward pass.
    params = [p for d in discs.values() for p in d.parameters()]
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in params)
    raw, ref, real = images()
    criterion.generator_terms(TinyGenerator()(raw), ref, real)
    assert len([p for d in discs.values() for p in d.parameters()]) == len(params)


def test_backbones_are_not_trainable(criterion):
    trainable = {id(p) for d in criterion.discriminators().values() for p in d.parameters()}
    assert all(not p.requires_grad for p in criterion.backbones.parameters())
    assert {id(p) for p in criterion.parameters() if p.requires_grad} == trainable


def test_terms_keys_and_values(criterion):
    raw, ref, real = images()
    fake = TinyGenerator()(raw)
    terms, batch = criterion.generator_terms(fake, ref, real)
    assert tuple(terms) == TERMS
    assert all(t.ndim == 0 and torch.isfinite(t) and t.requires_grad for t in terms.values())
    torch.testing.assert_close(terms["content"], content_loss(fake, ref, criterion.backbones))
    torch.testing.assert_close(terms["tv"], total_variation(fake))
    # Each adversarial term is the relativistic G loss on the saved features.
    for name in ADVERSARIAL_TERMS:
        disc = criterion.discriminators()[name]
        expected = generator_loss(disc(batch.fake[name]), disc(batch.real[name]))
        torch.testing.assert_close(terms[name], expected)
    # Every term reaches the generator output.
    for name, term in terms.items():
        (grad,) = torch.autograd.grad(term, fake, retain_graph=True)
        assert grad.abs().sum() > 0, name


def test_batch_features_are_detached(criterion):
    raw, ref, real = images()
    fake = TinyGenerator()(raw)
    _, batch = criterion.generator_terms(fake, ref, real)
    assert isinstance(batch, DiscriminatorBatch)
    assert set(batch.real) == set(batch.fake) == set(ADVERSARIAL_TERMS)
    assert not any(f.requires_grad for f in (*batch.real.values(), *batch.fake.values()))
    assert batch.fake["colour"].shape == (4, 16, 6)
    assert batch.fake["texture_low"].shape == (4, 5, 16, 16)


def test_not_adversarial_gives_content_and_tv_only():
    criterion = UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(), patch=PATCH, adversarial=False)
    assert criterion.discriminators() == {}
    raw, ref, real = images()
    terms, batch = criterion.generator_terms(TinyGenerator()(raw), ref, real)
    assert tuple(terms) == ("content", "tv")
    assert batch.real == {} and batch.fake == {}
    assert criterion.discriminator_step(batch) == {}


def test_generator_step_gives_no_gradient_to_discriminators(criterion):
    gen = TinyGenerator()
    raw, ref, real = images()
    fake = gen(raw)
    terms, _ = criterion.generator_terms(fake, ref, real)
    dla_backward(list(gen.parameters()), fake, terms, {}, 1e-8)
    assert all(p.grad is not None for p in gen.parameters())
    assert all(p.grad is None for d in criterion.discriminators().values() for p in d.parameters())


def test_discriminator_step_trains_every_parameter(criterion):
    # The paper's D optimiser and clipping; after one step every discriminator tensor has moved
    # (the released code's lazily created first FC layer would not have).
    gen = TinyGenerator()
    raw, ref, real = images()
    fake = gen(raw)
    _, batch = criterion.generator_terms(fake, ref, real)
    discs = criterion.discriminators()
    opts = {k: torch.optim.Adam(d.parameters(), lr=D_LR, betas=D_BETAS) for k, d in discs.items()}
    before = {k: [p.detach().clone() for p in d.parameters()] for k, d in discs.items()}
    for opt in opts.values():
        opt.zero_grad(set_to_none=True)
    stats = criterion.discriminator_step(batch)
    for key, d in discs.items():
        torch.nn.utils.clip_grad_norm_(d.parameters(), D_CLIP)
        opts[key].step()
    for key, d in discs.items():
        for (name, p), old in zip(d.named_parameters(), before[key]):
            assert not torch.equal(p, old), f"{key}.{name} did not change"
    assert all(p.grad is None for p in gen.parameters())  # features were detached
    assert set(stats) == {f"{k}/{s}" for k in ADVERSARIAL_TERMS for s in D_STATS}
    assert all(isinstance(v, float) and v == v for v in stats.values())
    assert all(stats[f"{k}/r1"] > 0 and stats[f"{k}/r2"] > 0 for k in ADVERSARIAL_TERMS)


def test_discriminator_step_learns_to_separate():
    # A few D steps at a larger learning rate on a fixed batch: D(real) − D(fake) grows and the
    # relativistic D loss falls below its chance value log 2.
    criterion = UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(), patch=PATCH)
    raw, ref, real = images()
    _, batch = criterion.generator_terms(TinyGenerator()(raw), ref, real)
    disc = criterion.discriminators()["texture_low"]
    opt = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=D_BETAS)
    first = None
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        stats = criterion.discriminator_step(batch)
        opt.step()
        first = first if first is not None else stats
    assert stats["texture_low/loss"] < first["texture_low/loss"]
    assert stats["texture_low/d_real"] - stats["texture_low/d_fake"] > first["texture_low/d_real"] - first["texture_low/d_fake"]


def test_autocast_forward_and_float32_step(criterion):
    raw, ref, real = images()
    fake = TinyGenerator()(raw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms, batch = criterion.generator_terms(fake, ref, real)
    assert all(torch.isfinite(t) for t in terms.values())
    plain = criterion.discriminator_step(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = criterion.discriminator_step(batch)
    assert auto == plain  # the D step switches autocast off: same numbers


def test_rejects_other_patch_sizes(criterion):
    raw, ref, real = images()
    with pytest.raises(ValueError, match="32 px patches"):
        criterion.generator_terms(TinyGenerator()(raw), ref, real[..., :30, :30])


def test_patch_too_small_for_the_blur():
    with pytest.raises(ConfigError, match="losses.blur_size"):
        UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(), patch=10)
    # Without the colour branch the blur does not matter.
    assert UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(), patch=10, adversarial=False).discriminators() == {}


@pytest.mark.parametrize("adversarial", [True, False])
def test_pooled_content_term(adversarial):
    # With content_pool the content term is the pooled content loss, in both branches, and the
    # texture maps keep the full resolution.
    config = UnpairedLossConfig(content_pool=2)
    criterion = UnpairedCriterion(TinyBackbones(), config, patch=PATCH, adversarial=adversarial)
    raw, ref, real = images()
    fake = TinyGenerator()(raw)
    terms, batch = criterion.generator_terms(fake, ref, real)
    torch.testing.assert_close(terms["content"], content_loss(fake, ref, criterion.backbones, pool=2))
    assert not torch.allclose(terms["content"], content_loss(fake, ref, criterion.backbones))
    if adversarial:
        assert batch.fake["texture_low"].shape == (4, 5, 16, 16)
    (grad,) = torch.autograd.grad(terms["content"], fake)
    assert grad.abs().sum() > 0


def test_patch_smaller_than_the_content_pool():
    with pytest.raises(ConfigError, match="losses.content_pool"):
        UnpairedCriterion(TinyBackbones(), UnpairedLossConfig(content_pool=64), patch=PATCH, adversarial=False)


def test_random_profile_end_to_end():
    # The real FrozenBackbones (lite architecture, random weights): one generator step with DLA
    # and the fixed-weight sum, and one discriminator step.
    criterion = UnpairedCriterion(build_backbones("random"), UnpairedLossConfig(), patch=PATCH)
    low, high = criterion.discriminators()["texture_low"], criterion.discriminators()["texture_high"]
    assert (low.in_channels, low.in_size) == (24, (8, 8))  # stride 4
    assert (high.in_channels, high.in_size) == (80, (2, 2))  # stride 16
    gen = TinyGenerator()
    raw, ref, real = images(batch=2)
    fake = gen(raw)
    terms, batch = criterion.generator_terms(fake, ref, real)
    assert tuple(terms) == TERMS and all(torch.isfinite(t) for t in terms.values())
    result = dla_backward(list(gen.parameters()), fake, terms, {}, 1e-8)
    assert all(n > 0 for n in result.norms.values())
    grads = [p.grad.clone() for p in gen.parameters()]
    gen.zero_grad(set_to_none=True)
    fake = gen(raw)
    terms, batch = criterion.generator_terms(fake, ref, real)
    fixed_weight_backward(list(gen.parameters()), fake, terms, {})
    assert all(torch.isfinite(g).all() for g in grads) and all(torch.isfinite(p.grad).all() for p in gen.parameters())
    stats = criterion.discriminator_step(batch)
    assert all(v == v for v in stats.values())


def test_config_defaults_are_the_papers():
    config = UnpairedLossConfig()
    assert (config.blur_size, config.blur_sigma, config.r1_gamma, config.r2_gamma, config.leaky_slope) == (21, 3.0, 1000.0, 1000.0, 0.2)
    assert config.dla and config.profile == "lite" and config.content_pool == 1
    # unisp's own terms are off: the defaults train the paper's loss.
    assert config.multipliers() == {**dict.fromkeys(TERMS, 1.0), "graded": 0.0, "texture_swd": 0.0}
    assert TERMS == ("content", "colour", "texture_low", "texture_high", "tv")
    # The released code's penalty: 100 × (γ/2)·E‖∇D‖² with γ = 10.
    assert config.r1_gamma / 2 == 100 * 10 / 2


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("blur_size", 20, "blur_size' must be an odd positive integer"),
        ("blur_size", 0, "blur_size' must be an odd positive integer"),
        ("blur_sigma", 0.0, "blur_sigma' must be a finite number > 0"),
        ("dla_eps", -1e-8, "dla_eps' must be a finite number > 0"),
        ("colour", -1.0, "colour' must be a finite number ≥ 0"),
        ("tv", float("nan"), "tv' must be a finite number ≥ 0"),
        ("r1_gamma", -10.0, "r1_gamma' must be a finite number ≥ 0"),
        ("leaky_slope", 1.5, "leaky_slope' must be below 1"),
        ("profile", "vgg", "profile' must be one of paper, lite, random"),
        ("content_pool", 0, "content_pool' must be a positive integer"),
        ("content_pool", 2.0, "content_pool' must be a positive integer"),
    ],
)
def test_config_validation_names_the_key(key, value, match):
    with pytest.raises(ConfigError, match=f"config key 'losses.{match}"):
        UnpairedLossConfig(**{key: value})


def test_config_through_the_recipe_loader():
    # The typed loader (YAML + overrides) reports the same error, naming the key.
    with pytest.raises(ConfigError, match="losses.blur_size"):
        from_dict(UnpairedLossConfig, {"blur_size": 4})
    assert from_dict(UnpairedLossConfig, {"colour": 0.5}).colour == 0.5
