"""Full-reference image-quality metrics.

Protocol: RGB images as ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors in [0, 1], full image
(no border crop), data range 1.
"""

from __future__ import annotations

import torch

from unisp.errors import UnispError


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (``inf`` for identical images).

    Example:
        >>> psnr(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.1))
        tensor(20.)
    """
    if pred.shape != target.shape:
        raise UnispError(f"PSNR needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    diff = (pred.double() - target.double()).pow(2)
    mse = diff.flatten(-3).mean(-1)
    return (10 * torch.log10(data_range**2 / mse)).float()
