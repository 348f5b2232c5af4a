"""Colour branch: blurred images through the frozen colour backbone, and a per-token discriminator.

The paper blurs Ŷ and the unrelated photo Y with a 21×21 Gaussian (σ = 3) so that only colour
and illumination survive, resizes them to 224×224 and passes them through a frozen ViT-B/16; the
196 patch tokens (CLS dropped) go to an MLP discriminator 768 → 512 → 512 → 1 applied to each
token, whose logits are averaged.

Resizing is bilinear without antialiasing. After the blur nothing above the new Nyquist
frequency is left to alias: the σ = 3 Gaussian's response ``exp(−2π²σ²f²)`` is 2e-15 at 0.44
cycles/pixel, the Nyquist frequency after a 256 → 224 reduction, and 2e-4 at 0.22 (512 → 224);
so an antialiasing filter would cost time and change nothing measurable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unisp.losses.adversarial import init_discriminator

#: Hidden width of the per-token MLP discriminator (the paper: 768 → 512 → 512 → 1).
COLOUR_HIDDEN = 512


def gaussian_kernel1d(size: int, sigma: float, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``exp(−x² / 2σ²)`` for ``x = −size//2 … size//2``.

    Args:
        size: number of taps (odd).
        sigma: standard deviation in pixels (> 0).

    Returns:
        ``(size,)``, summing to 1.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {size}")
    if not sigma > 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def gaussian_blur(rgb: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel, reflect padding (the border is not darkened).

    Args:
        rgb: ``(B, C, H, W)``; ``H`` and ``W`` must exceed ``size // 2`` (reflect padding).
        size: kernel side (odd; the paper: 21).
        sigma: standard deviation in pixels (the paper: 3).

    Returns:
        ``(B, C, H, W)`` blurred.

    Example:
        >>> gaussian_kernel1d(5, 1.0)
        tensor([0.0545, 0.2442, 0.4026, 0.2442, 0.0545])
        >>> gaussian_blur(torch.full((1, 3, 8, 8), 0.5), 5, 1.0).unique()  # a flat image stays flat
        tensor([0.5000])
    """
    if rgb.ndim != 4:
        raise ValueError(f"gaussian_blur needs (B, C, H, W), got shape {tuple(rgb.shape)}")
    taps = gaussian_kernel1d(size, sigma, dtype=rgb.dtype, device=rgb.device)
    pad = size // 2
    if pad == 0:
        return rgb
    if min(rgb.shape[-2:]) <= pad:
        raise ValueError(f"gaussian_blur: image {tuple(rgb.shape[-2:])} too small for reflect padding of {pad}")
    channels = rgb.shape[1]
    x = F.pad(rgb, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(x, taps.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def blur_sigma(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`gaussian_blur` with σ ``sigma`` px and a kernel of side 6σ + 1 (rounded to odd), which holds 99.7 % of the mass."""
    return gaussian_blur(rgb, 2 * round(3 * sigma) + 1, sigma)


def colour_features(rgb: torch.Tensor, backbones: nn.Module, blur_size: int, blur_sigma: float) -> torch.Tensor:
    """Colour tokens of an RGB batch: blur, bilinear resize to ``backbones.spec.colour_size``, backbone.

    Args:
        rgb: ``(B, 3, H, W)`` in [0, 1].
        backbones: a :class:`unisp.losses.backbones.FrozenBackbones`.
        blur_size, blur_sigma: the Gaussian blur (the paper: 21, 3).

    Returns:
        ``(B, N, D)`` patch tokens (paper profile: 196 × 768).
    """
    x = gaussian_blur(rgb, blur_size, blur_sigma)
    size = backbones.spec.colour_size
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return backbones.colour_tokens(x)


class ColourDiscriminator(nn.Module):
    """MLP ``dim → hidden → hidden → 1`` (LeakyReLU between) on every token; logits averaged per image.

    Args:
        dim: token width (paper: 768).
        hidden: hidden width (the paper: 512).
        slope: LeakyReLU negative slope (the paper: 0.2).

    The last layer has no bias: the relativistic losses see only ``D(real) − D(fake)`` and the
    penalties only ``∇D``, so a constant added to D's output would never receive a gradient.
    Weights are initialised by :func:`unisp.losses.adversarial.init_discriminator`.
    """

    def __init__(self, dim: int, hidden: int = COLOUR_HIDDEN, slope: float = 0.2) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(slope),
            nn.Linear(hidden, 1, bias=False),  # no bias: see the note in the class docstring
        )
        init_discriminator(self, slope)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Args: tokens ``(B, N, dim)``. Returns: logits ``(B,)`` (mean over the N tokens)."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.dim:
            raise ValueError(f"ColourDiscriminator built for (B, N, {self.dim}) tokens, got {tuple(tokens.shape)}")
        return self.mlp(tokens).squeeze(-1).mean(dim=1)
