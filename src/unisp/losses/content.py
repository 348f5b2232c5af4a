"""Content loss: deep features of the output's luminance against those of the reference's.

The paper compares VGG-19 relu5_4 features of the luminance of Ŷ = G(X) and of the classical
render X̂ (replicated to three channels): the loss keeps the structure of the scene and carries
no colour, which the colour discriminator decides. Luminance here is the Rec. 601 luma
``0.299 R + 0.587 G + 0.114 B`` (:data:`unisp.losses.texture.REC601_LUMA`), the same grayscale
as the texture branch, applied to the sRGB-encoded values as they are.
"""

from __future__ import annotations

import torch
from torch import nn

from unisp.losses.texture import grayscale


def content_loss(fake: torch.Tensor, ref: torch.Tensor, backbones: nn.Module) -> torch.Tensor:
    """Mean squared difference of ``backbones.content_features`` on the two luminance images.

    The reference is a target: its features are computed without gradient.

    Args:
        fake: generator output ``(B, 3, H, W)`` in [0, 1] (with its graph).
        ref: the classical render X̂ (or an aligned target) ``(B, 3, H, W)``.
        backbones: a :class:`unisp.losses.backbones.FrozenBackbones`.

    Returns:
        Scalar loss (mean over batch, channels and positions).
    """
    if fake.shape != ref.shape:
        raise ValueError(f"content_loss needs equal shapes, got {tuple(fake.shape)} and {tuple(ref.shape)}")
    return content_loss_from_features(backbones.content_features(grayscale(fake)), ref, backbones)


def content_loss_from_features(features: torch.Tensor, ref: torch.Tensor, backbones: nn.Module) -> torch.Tensor:
    """:func:`content_loss` for output features already computed (``content_features(grayscale(fake))``).

    The training criterion computes them in one pass with the texture maps
    (:meth:`unisp.losses.backbones.FrozenBackbones.content_and_texture`).
    """
    with torch.no_grad():
        target = backbones.content_features(grayscale(ref))
    dtype = torch.promote_types(features.dtype, torch.float32)  # half-precision features → float32
    return (features.to(dtype) - target.to(dtype)).pow(2).mean()
