"""Random camera parameters for unprocessing: colour matrices, gains and noise levels.

The distributions are those of Brooks et al., "Unprocessing Images for Learned Raw Denoising"
(CVPR 2019), as written in their released code: ``unprocessing/unprocess.py`` in
github.com/google-research/google-research (functions ``random_ccm``, ``random_gains`` and
``random_noise_levels``). Every sampler takes an explicit, seeded :class:`torch.Generator`; none
touches global random state, so a given seed always gives the same camera.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from unisp.errors import ConfigError

#: XYZ → camera matrices of the four cameras of the Darmstadt Noise Dataset (Plötz & Roth, CVPR 2017),
#: between which Brooks et al. interpolate (the ``xyz2cams`` list in their ``random_ccm``, same order).
#: Three are Adobe's (dcraw ``adobe_coeff``) XYZ→camera matrices divided by 10 000:
#: "Sony ILCE-7R", "Olympus E-M10" (shared with E-P5/E-PL6) and "Sony DSC-RX100M4". The first is
#: not in dcraw's table; its entries are exact multiples of 1/128, as in a DNG ``ColorMatrix`` tag,
#: and it is, by elimination, the DND's fourth camera, the Huawei Nexus 6P.
XYZ_TO_CAMERA: dict[str, tuple[tuple[float, float, float], ...]] = {
    "huawei_nexus_6p": (
        (1.0234, -0.2969, -0.2266),
        (-0.5625, 1.6328, -0.0469),
        (-0.0703, 0.2188, 0.6406),
    ),
    "sony_a7r": (
        (0.4913, -0.0541, -0.0202),
        (-0.6130, 1.3513, 0.2906),
        (-0.1564, 0.2151, 0.7183),
    ),
    "olympus_e_m10": (
        (0.8380, -0.2630, -0.0639),
        (-0.2887, 1.0725, 0.2496),
        (-0.0627, 0.1427, 0.5438),
    ),
    "sony_rx100_iv": (
        (0.6596, -0.2079, -0.0562),
        (-0.4782, 1.3016, 0.1933),
        (-0.0970, 0.1581, 0.5181),
    ),
}

#: Linear sRGB → CIE XYZ for the D65 white point (IEC 61966-2-1; the 7-digit form from
#: Lindbloom's tables, which Brooks et al. also use).
SRGB_TO_XYZ_D65: tuple[tuple[float, float, float], ...] = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)

#: Brooks et al.: the digital brightening gain is ``1 / N(0.8, 0.1)`` (the unprocessed image is
#: made ~20 % darker than the photo, as an auto-exposure that leaves headroom would).
RGB_GAIN_INVERSE_MEAN = 0.8
RGB_GAIN_INVERSE_STD = 0.1
#: Floor on the normal draw above, 7 standard deviations below the mean (probability ~1e-12), so
#: the gain stays positive and finite; Brooks et al. have no guard.
RGB_GAIN_INVERSE_MIN = 0.1
#: Brooks et al.: white-balance gains, uniform in these ranges (green gain is 1).
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)

#: Brooks et al.: shot-noise level (variance per unit signal, signal normalised to [0, 1]) is
#: log-uniform in this range.
SHOT_NOISE_RANGE = (0.0001, 0.012)
#: Brooks et al.: ``log(read) = 2.18 · log(shot) + 1.20 + N(0, 0.26)``, a line fitted to the
#: Darmstadt cameras' calibrated noise levels.
READ_NOISE_SLOPE = 2.18
READ_NOISE_INTERCEPT = 1.20
READ_NOISE_LOG_STD = 0.26


class Gains(NamedTuple):
    """Brightening and white-balance gains a camera's processing applies (green gain = ``rgb_gain``)."""

    rgb_gain: float
    red_gain: float
    blue_gain: float


class NoiseLevels(NamedTuple):
    """Heteroscedastic Gaussian noise: variance = ``shot · x + read`` for a normalised signal ``x``."""

    shot: float
    read: float


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    u = torch.rand((), generator=generator, dtype=torch.float64)
    return float(low + (high - low) * u)


def _normal(generator: torch.Generator, mean: float, std: float) -> float:
    return float(mean + std * torch.randn((), generator=generator, dtype=torch.float64))


def xyz_to_camera_matrices() -> torch.Tensor:
    """``(4, 3, 3)`` float64 stack of :data:`XYZ_TO_CAMERA`, in its order."""
    return torch.tensor(list(XYZ_TO_CAMERA.values()), dtype=torch.float64)


def random_ccm(generator: torch.Generator) -> torch.Tensor:
    """A random sRGB → camera matrix (Brooks et al.).

    A random convex combination of :data:`XYZ_TO_CAMERA` (weights uniform in [0, 1), normalised),
    times :data:`SRGB_TO_XYZ_D65`, with each row divided by its sum so that white (1, 1, 1) maps to
    white, i.e. the camera is white-balanced for D65.

    Args:
        generator: the seeded source of randomness.

    Returns:
        ``(3, 3)`` float64 ``rgb2cam``, rows summing to 1.
    """
    xyz2cams = xyz_to_camera_matrices()
    weights = torch.rand(len(xyz2cams), 1, 1, generator=generator, dtype=torch.float64)
    weights = weights + torch.finfo(torch.float64).tiny  # an all-zero draw cannot divide by zero
    xyz2cam = (weights * xyz2cams).sum(0) / weights.sum()
    rgb2cam = xyz2cam @ torch.tensor(SRGB_TO_XYZ_D65, dtype=torch.float64)
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def preset_ccm(name: str) -> torch.Tensor:
    """The sRGB → camera matrix of one of the four cameras of :data:`XYZ_TO_CAMERA` alone.

    As :func:`random_ccm` with all the weight on that camera: its XYZ → camera matrix times
    :data:`SRGB_TO_XYZ_D65`, each row divided by its sum (white-balanced for D65).

    Args:
        name: a key of :data:`XYZ_TO_CAMERA`.

    Returns:
        ``(3, 3)`` float64 ``rgb2cam``, rows summing to 1.

    Raises:
        ConfigError: an unknown camera name.
    """
    if name not in XYZ_TO_CAMERA:
        raise ConfigError(f"unknown camera {name!r} (choose one of {', '.join(XYZ_TO_CAMERA)})")
    rgb2cam = torch.tensor(XYZ_TO_CAMERA[name], dtype=torch.float64) @ torch.tensor(SRGB_TO_XYZ_D65, dtype=torch.float64)
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def random_gains(generator: torch.Generator) -> Gains:
    """Random brightening and white-balance gains in Brooks et al.'s ranges.

    Args:
        generator: the seeded source of randomness.

    Returns:
        ``Gains(rgb_gain = 1 / N(0.8, 0.1), red_gain ∈ U(1.9, 2.4), blue_gain ∈ U(1.5, 1.9))``.

    Example:
        >>> gains = random_gains(torch.Generator().manual_seed(0))
        >>> round(gains.rgb_gain, 3), round(gains.red_gain, 3), round(gains.blue_gain, 3)
        (1.048, 2.13, 1.868)
    """
    inverse = _normal(generator, RGB_GAIN_INVERSE_MEAN, RGB_GAIN_INVERSE_STD)
    rgb_gain = 1.0 / max(inverse, RGB_GAIN_INVERSE_MIN)
    red_gain = _uniform(generator, *RED_GAIN_RANGE)
    blue_gain = _uniform(generator, *BLUE_GAIN_RANGE)
    return Gains(rgb_gain, red_gain, blue_gain)


def random_noise_levels(generator: torch.Generator) -> NoiseLevels:
    """Random shot and read noise levels (Brooks et al.): log-uniform shot noise, log-linear read noise.

    Args:
        generator: the seeded source of randomness.

    Returns:
        ``NoiseLevels(shot, read)``, variances for a signal normalised to [0, 1].
    """
    log_shot = _uniform(generator, math.log(SHOT_NOISE_RANGE[0]), math.log(SHOT_NOISE_RANGE[1]))
    log_read = READ_NOISE_SLOPE * log_shot + READ_NOISE_INTERCEPT + _normal(generator, 0.0, READ_NOISE_LOG_STD)
    return NoiseLevels(math.exp(log_shot), math.exp(log_read))
