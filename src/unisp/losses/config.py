"""The stage-2 loss settings: backbones, per-term multipliers, DLA, blur and GAN penalties.

Defaults are the paper's ("Learned Lightweight Smartphone ISP with Unpaired Data", Arhire &
Timofte, CVPRW 2025) as its released code computes them: a 21×21 Gaussian blur with σ = 3 before
the colour discriminator, R1 and R2 penalties of 500·E‖∇D‖² (:data:`RELEASED_GAMMA`), LeakyReLU
slope 0.2 in the discriminators, every paper term's multiplier 1 after Dynamic Loss Adaptation,
unisp's own terms off. The default backbone profile is ``lite`` (installs offline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from unisp.errors import ConfigError
from unisp.losses.weights import PROFILES, Profile

#: The generator terms of the paper, in logging order: content (VGG relu5_4 of the luminance),
#: colour (adversarial on blurred ViT tokens), texture_low / texture_high (adversarial on the
#: AlexNet relu1 / relu4 maps of the grayscale image) and total variation.
TERMS: tuple[str, ...] = ("content", "colour", "texture_low", "texture_high", "tv")
#: unisp's own terms (not the paper's; docs/TRAINING.md), which need neither backbones nor
#: discriminators: ``graded`` (L1 to the classical render graded to the RGB set's lightness and
#: chroma, both blurred) and ``texture_swd`` (sliced Wasserstein distance between high-pass patches
#: of the output and of the RGB photos).
UNISP_TERMS: tuple[str, ...] = ("graded", "texture_swd")
#: How the content view turns RGB into one channel: ``rec601`` (0.299R + 0.587G + 0.114B on the
#: sRGB values) or ``lab`` (CIE L*/100, as the paper's released code computes it with kornia's
#: ``rgb_to_lab``); replicated to three channels either way.
ContentLuma = Literal["rec601", "lab"]

#: γ of the R1 and R2 penalties γ/2 · E‖∇D‖² that reproduces the released code (commit 0944b44,
#: ``losses/gan_loss.py``, ``compute_discriminator_loss``): it multiplies each zero-centred
#: penalty by 100, then adds (γ/2)·(r1 + r2) with the paper's γ = 10, i.e. 500·E‖∇D‖² per sample,
#: which is γ/2 with γ = 1000 here.
RELEASED_GAMMA = 1000.0

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
        r1_gamma: γ of the R1 penalty γ/2 · E‖∇D‖² on real features (:data:`RELEASED_GAMMA`;
            the paper's text says 10, its code weighs the penalty 100 times more).
        r2_gamma: the same on fake features.
        leaky_slope: negative slope of the discriminators' LeakyReLUs (the paper: 0.2).
        content_luma: see :data:`ContentLuma` (the paper's released code: ``lab``).
        graded: multiplier of unisp's ``graded`` term (0: off, the paper).
        graded_blur: σ in pixels of the Gaussian blur applied to the output and to the graded
            render before their L1 distance: the render carries the sensor's noise, which the
            generator should not copy; the finest scale is left to ``texture_swd``.
        grading_pool: average pooling of X̂ and of the photos before the grading curves are
            fitted (:func:`unisp.isp.grading.fit_grading`).
        texture_swd: multiplier of unisp's ``texture_swd`` term (0: off, the paper).
        swd_sigma: σ of the blur whose difference from the image is the high pass the texture
            term compares.
        swd_patch: side of the high-pass windows compared (odd).
        swd_samples: windows drawn from each side per step.
        swd_directions: random projections per step.

    Example:
        >>> config = UnpairedLossConfig()
        >>> config.blur_size, config.blur_sigma, config.dla
        (21, 3.0, True)
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
    r1_gamma: float = RELEASED_GAMMA
    r2_gamma: float = RELEASED_GAMMA
    leaky_slope: float = 0.2
    content_luma: ContentLuma = "rec601"
    graded: float = 0.0
    graded_blur: float = 3.0
    grading_pool: int = 4
    texture_swd: float = 0.0
    swd_sigma: float = 2.0
    swd_patch: int = 5
    swd_samples: int = 4096
    swd_directions: int = 64

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            _fail("profile", f"must be one of {', '.join(PROFILES)}", self.profile)
        for key in (*TERMS, *UNISP_TERMS, "r1_gamma", "r2_gamma", "leaky_slope", "graded_blur"):
            value = getattr(self, key)
            if not _finite_number(value) or value < 0:
                _fail(key, "must be a finite number ≥ 0", value)
        for key in ("dla_eps", "blur_sigma", "swd_sigma"):
            value = getattr(self, key)
            if not _finite_number(value) or value <= 0:
                _fail(key, "must be a finite number > 0", value)
        if isinstance(self.blur_size, bool) or not isinstance(self.blur_size, int) or self.blur_size < 1 or self.blur_size % 2 == 0:
            _fail("blur_size", "must be an odd positive integer", self.blur_size)
        for key in ("content_pool", "grading_pool", "swd_samples", "swd_directions"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _fail(key, "must be a positive integer", value)
        if isinstance(self.swd_patch, bool) or not isinstance(self.swd_patch, int) or self.swd_patch < 1 or self.swd_patch % 2 == 0:
            _fail("swd_patch", "must be an odd positive integer", self.swd_patch)
        if self.leaky_slope >= 1:
            _fail("leaky_slope", "must be below 1", self.leaky_slope)

    def multipliers(self) -> dict[str, float]:
        """``{term: multiplier}`` for every name in :data:`TERMS` and :data:`UNISP_TERMS`."""
        return {name: float(getattr(self, name)) for name in (*TERMS, *UNISP_TERMS)}


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fail(key: str, what: str, value: object) -> None:
    raise ConfigError(f"config key '{CONFIG_SECTION}.{key}' {what}, got {value!r}")
