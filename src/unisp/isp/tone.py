"""A simple global tone curve: the smoothstep S-curve of Brooks et al. (CVPR 2019), and its inverse.

``tone(x) = 3x² − 2x³`` maps [0, 1] onto itself, lifts mid-tones' contrast and rolls off highlights;
Brooks et al. use it as the tone-mapping step that unprocessing undoes.
"""

from __future__ import annotations

import torch


def tone_curve(x: torch.Tensor) -> torch.Tensor:
    """Smoothstep ``3x² − 2x³`` on values clamped to [0, 1].

    Example:
        >>> tone_curve(torch.tensor([0.0, 0.25, 0.5, 1.0]))
        tensor([0.0000, 0.1562, 0.5000, 1.0000])
        >>> inverse_tone_curve(torch.tensor([0.15625]))
        tensor([0.2500])
    """
    x = x.clamp(0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_tone_curve(y: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`tone_curve` on [0, 1]: ``0.5 − sin(asin(1 − 2y) / 3)``."""
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)

