"""The sRGB transfer curve (IEC 61966-2-1) and its inverse, on tensors of any shape."""

from __future__ import annotations

import torch

#: IEC 61966-2-1 constants: linear segment slope and threshold, power-law exponent and offset.
SRGB_LINEAR_SLOPE = 12.92
SRGB_LINEAR_THRESHOLD = 0.0031308  # linear value where the curve switches to the power law
SRGB_ENCODED_THRESHOLD = 0.04045  # = SRGB_LINEAR_THRESHOLD * SRGB_LINEAR_SLOPE, the same point encoded
SRGB_GAMMA = 2.4
SRGB_OFFSET = 0.055
#: Floor inside the power law so its gradient stays finite at 0.
_EPS = 1e-8


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """Linear light in [0, 1] → sRGB-encoded values. Inputs are clamped to [0, 1] first.

    Example:
        >>> srgb_encode(torch.tensor([0.0, 0.18, 1.0]))
        tensor([0.0000, 0.4614, 1.0000])
    """
    x = linear.clamp(0.0, 1.0)
    power = (1 + SRGB_OFFSET) * x.clamp_min(_EPS).pow(1 / SRGB_GAMMA) - SRGB_OFFSET
    return torch.where(x <= SRGB_LINEAR_THRESHOLD, x * SRGB_LINEAR_SLOPE, power)


def srgb_decode(encoded: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] → linear light; exact inverse of :func:`srgb_encode` on [0, 1]."""
    x = encoded.clamp(0.0, 1.0)
    power = ((x + SRGB_OFFSET) / (1 + SRGB_OFFSET)).pow(SRGB_GAMMA)
    return torch.where(x <= SRGB_ENCODED_THRESHOLD, x / SRGB_LINEAR_SLOPE, power)
