"""The stage-2 loss settings: backbones, per-term multipliers, DLA, blur and GAN penalties.

Defaults are the paper's ("Learned Lightweight Smartphone ISP with Unpaired Data", Arhire &
Timofte, CVPRW 2025): a 21×21 Gaussian blur with σ = 3 before the colour discriminator, R1 and
R2 penalties with γ = 10, LeakyReLU slope 0.2 in the discriminators, every term multiplier 1
after Dynamic Loss Adaptation. The default backbone profile is ``lite`` (installs offline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unisp.errors import ConfigError
from unisp.losses.weights import PROFILES, Profile

#: The generator terms of the paper, in logging order: content (VGG relu5_4 of the luminance),
#: colour (adversarial on blurred ViT tokens), texture_low / texture_high (adversarial on the
#: AlexNet relu1 / relu4 maps of the grayscale image) and total variation.
TERMS: tuple[str, ...] = ("content", "colour", "texture_low", "texture_high", "tv")

#: Prefix of every key in error messages: the section of the training recipe holding this config.
CONFIG_SECTION = "losses"


@dataclass
class UnpairedLossConfig:
    """Settings of :class:`unisp.losses.criterion.UnpairedCriterion` and of DLA.

    Attributes:
        profile: frozen backbones (``paper``: VGG-19 / ViT-B/16 / AlexNet; ``lite``:
            EfficientNet-Lite0; ``random``: random weights, tests only).
        weights_dir: folder with the backbone weight files (empty: the standard caches).
        content, colour, texture_low, texture_high, tv: per-term multipliers, applied after the
            DLA normalisation (or as fixed weights when ``dla`` is off); 0 leaves a term out.
        dla: Dynamic Loss Adaptation (each term's generator gradient scaled to unit norm).
        dla_eps: ε in the DLA weight ``1 / (‖∇θ L‖ + ε)``.
        content_pool: average-pooling factor of both luminance images before the content
            backbone (the paper: 1, none; see :mod:`unisp.losses.content` for why a short run on
            noisy RAW may want more).
        blur_size: side of the Gaussian blur before the colour branch (odd; the paper: 21).
        blur_sigma: its standard deviation in pixels (the paper: 3).
        r1_gamma: γ of the R1 penalty on real features (the paper: 10).
        r2_gamma: γ of the R2 penalty on fake features (the paper: 10).
        leaky_slope: negative slope of the discriminators' LeakyReLUs (the paper: 0.2).
    """

    profile: Profile = "lite"
    weights_dir: str = ""
    content: float = 1.0
    colour: float = 1.0
    texture_low: float = 1.0
    texture_high: float = 1.0
    tv: float = 1.0
    dla: bool = True
    dla_eps: float = 1e-8
    content_pool: int = 1
    blur_size: int = 21
    blur_sigma: float = 3.0
    r1_gamma: float = 10.0
    r2_gamma: float = 10.0
    leaky_slope: float = 0.2

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            _fail("profile", f"must be one of {', '.join(PROFILES)}", self.profile)
        for key in (*TERMS, "r1_gamma", "r2_gamma", "leaky_slope"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                _fail(key, "must be a finite number ≥ 0", value)
        for key in ("dla_eps", "blur_sigma"):
            value = getattr(self, key)
            if not _finite_number(value) or value <= 0:
                _fail(key, "must be a finite number > 0", value)
        if isinstance(self.blur_size, bool) or not isinstance(self.blur_size, int) or self.blur_size < 1 or self.blur_size % 2 == 0:
            _fail("blur_size", "must be an odd positive integer", self.blur_size)
        if isinstance(self.content_pool, bool) or not isinstance(self.content_pool, int) or self.content_pool < 1:
            _fail("content_pool", "must be a positive integer", self.content_pool)
        if self.leaky_slope >= 1:
            _fail("leaky_slope", "must be below 1", self.leaky_slope)

    def multipliers(self) -> dict[str, float]:
        """``{term: multiplier}`` for every name in :data:`TERMS`."""
        return {name: float(getattr(self, name)) for name in TERMS}


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fail(key: str, what: str, value: object) -> None:
    raise ConfigError(f"config key '{CONFIG_SECTION}.{key}' {what}, got {value!r}")
