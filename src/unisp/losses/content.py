"""Content loss: deep features of the output's luminance against those of the reference's.

The paper compares VGG-19 relu5_4 features of the luminance of Ŷ = G(X) and of the classical
render X̂ (replicated to three channels): the loss keeps the structure of the scene and carries
no colour, which the colour discriminator decides. Luminance is, by ``luma`` (the recipe key
``losses.content_luma``), the Rec. 601 luma ``0.299 R + 0.587 G + 0.114 B``
(:data:`unisp.losses.texture.REC601_LUMA`) of the sRGB-encoded values, the same grayscale as the
texture branch (``rec601``), or CIE L*/100 (``lab``), as the paper's released code computes it
(kornia's ``rgb_to_lab``, L divided by 100).

Optionally both luminance images are average-pooled first (``pool``, the recipe key
``losses.content_pool``; the paper: 1, none). X̂ carries the sensor's noise, and deep features
respond to noise far more than to tone: on the demo's held-out images (docs/RESULTS.md) the
denoised stage-1 output is as far from X̂ in EfficientNet-Lite0 features as the ground truth is,
while darkening X̂ by 20 % moves them 20× less. Matching those features then rewards re-creating
noise-like texture at the cost of tone. Pooling averages the noise away before the comparison
(its power falls by the pool area) and keeps the structure the features describe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unisp.isp.lab import srgb_to_lab
from unisp.losses.texture import grayscale


def content_view(rgb: torch.Tensor, pool: int = 1, luma: str = "rec601") -> torch.Tensor:
    """What the content backbone sees of ``rgb`` ``(B, 3, H, W)``: its luminance, average-pooled by ``pool``.

    Args:
        rgb: sRGB in [0, 1].
        pool: average-pooling factor (1: none).
        luma: ``rec601`` (Rec. 601 luma of the sRGB values) or ``lab`` (CIE L*/100).

    Returns:
        ``(B, 3, H // pool, W // pool)`` luminance replicated to three channels (edges that do
        not fill a whole pooling window are dropped, as :func:`torch.nn.functional.avg_pool2d` does).

    Example:
        >>> content_view(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4), pool=2)[0, :, 0, 0]
        tensor([0.2990, 0.2990, 0.2990])
    """
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f"content pooling must be a positive integer, got {pool!r}")
    if luma == "rec601":
        gray = grayscale(rgb)
    elif luma == "lab":
        lightness = srgb_to_lab(rgb)[:, :1] / 100.0  # L* spans 0–100
        gray = lightness.expand(-1, 3, -1, -1)
    else:
        raise ValueError(f"content luma must be 'rec601' or 'lab', got {luma!r}")
    return gray if pool == 1 else F.avg_pool2d(gray, pool)


def content_loss(fake: torch.Tensor, ref: torch.Tensor, backbones: nn.Module, pool: int = 1, luma: str = "rec601") -> torch.Tensor:
    """Mean squared difference of ``backbones.content_features`` on the two (pooled) luminance images.

    The reference is a target: its features are computed without gradient.

    Args:
        fake: generator output ``(B, 3, H, W)`` in [0, 1] (with its graph).
        ref: the classical render X̂ (or an aligned target) ``(B, 3, H, W)``.
        backbones: a :class:`unisp.losses.backbones.FrozenBackbones`.
        pool: average-pooling factor applied to both luminance images first (1: none, the paper).
        luma: see :func:`content_view`.

    Returns:
        Scalar loss (mean over batch, channels and positions).
    """
    if fake.shape != ref.shape:
        raise ValueError(f"content_loss needs equal shapes, got {tuple(fake.shape)} and {tuple(ref.shape)}")
    return content_loss_from_features(backbones.content_features(content_view(fake, pool, luma)), ref, backbones, pool, luma)


def content_loss_from_features(
    features: torch.Tensor, ref: torch.Tensor, backbones: nn.Module, pool: int = 1, luma: str = "rec601"
) -> torch.Tensor:
    """:func:`content_loss` for output features already computed (``content_features(content_view(fake, pool, luma))``).

    The training criterion computes them in one pass with the texture maps when ``pool`` is 1
    (:meth:`unisp.losses.backbones.FrozenBackbones.content_and_texture`).
    """
    with torch.no_grad():
        target = backbones.content_features(content_view(ref, pool, luma))
    dtype = torch.promote_types(features.dtype, torch.float32)  # half-precision features → float32
    return (features.to(dtype) - target.to(dtype)).pow(2).mean()
