"""Total variation: the paper's smoothness term on the generator output."""

from __future__ import annotations

import torch


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared horizontal difference plus mean squared vertical difference.

    Args:
        image: ``(B, C, H, W)`` with ``H, W ≥ 2``.

    Returns:
        Scalar ``mean((x[..., :, 1:] − x[..., :, :−1])²) + mean((x[..., 1:, :] − x[..., :−1, :])²)``.

    Example:
        >>> total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))
        tensor(1.)
    """
    if image.ndim != 4 or min(image.shape[-2:]) < 2:
        raise ValueError(f"total_variation needs (B, C, H, W) with H, W ≥ 2, got shape {tuple(image.shape)}")
    horizontal = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    vertical = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    return horizontal + vertical
