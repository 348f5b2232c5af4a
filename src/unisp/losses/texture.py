"""Texture branch: grayscale images through the frozen texture trunk, and its two discriminators.

The paper feeds the grayscale output Ŷ and the unrelated photo Y to the AlexNet trunk that
LPIPS-Alex uses and gives the relu1 map (64 channels) and the relu4 map (256 channels) — the
maps LPIPS's lin0 and lin3 heads read — each to its own convolutional discriminator. Removing
colour leaves the discriminators only texture and noise to judge.

Unlike the released code, whose first fully connected layer is created lazily on the first
forward (after the optimiser was built, so it is never trained), :class:`TextureDiscriminator`
computes its flattened size from ``in_size`` at construction: every layer exists, and is
trained, from the start.
"""

from __future__ import annotations

import torch
from torch import nn

from unisp.losses.adversarial import init_discriminator

#: ITU-R BT.601 luma weights for R, G and B (the grayscale of the paper's texture branch, and
#: the luminance of its content loss): Y = 0.299 R + 0.587 G + 0.114 B.
REC601_LUMA = (0.299, 0.587, 0.114)

#: The texture discriminator's convolutions as (out channels, kernel, stride): the paper's
#: 5×5/2 → 48, 3×3/2 → 128, 3×3 → 192, 3×3 → 192, 3×3/2 → 128 (DPED's discriminator shape).
TEXTURE_CONVS: tuple[tuple[int, int, int], ...] = ((48, 5, 2), (128, 3, 2), (192, 3, 1), (192, 3, 1), (128, 3, 2))
#: Width of the hidden fully connected layer (the paper: 1024).
TEXTURE_HIDDEN = 1024


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of an RGB batch, replicated to three channels.

    Args:
        rgb: ``(B, 3, H, W)``.

    Returns:
        ``(B, 3, H, W)``, every channel ``0.299 R + 0.587 G + 0.114 B`` (see :data:`REC601_LUMA`).

    Example:
        >>> grayscale(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)).flatten()
        tensor([0.2990, 0.2990, 0.2990])
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"grayscale needs (B, 3, H, W) RGB, got shape {tuple(rgb.shape)}")
    weights = torch.tensor(REC601_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    luma = (rgb * weights).sum(dim=1, keepdim=True)
    return luma.expand(-1, 3, -1, -1)


def texture_features(rgb: torch.Tensor, backbones: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The two texture maps of an RGB batch: :func:`grayscale`, then ``backbones.texture_features``.

    Args:
        rgb: ``(B, 3, H, W)`` in [0, 1].
        backbones: a :class:`unisp.losses.backbones.FrozenBackbones`.

    Returns:
        ``(low, high)`` feature maps (paper profile: AlexNet relu1 and relu4).
    """
    return backbones.texture_features(grayscale(rgb))


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Output length of a convolution with 'same'-style padding ``kernel // 2``: ``⌊(n + 2p − k) / s⌋ + 1``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class TextureDiscriminator(nn.Module):
    """Convolutional discriminator on one texture feature map → one logit per image.

    Five convolutions (:data:`TEXTURE_CONVS`, padding ``k // 2`` so a stride-2 layer gives
    ``⌈n / 2⌉``; each followed by LeakyReLU), flatten, fully connected → 1024, LeakyReLU, fully
    connected → 1. The flattened size follows from ``in_size`` and is fixed at construction.

    The last layer has no bias: the relativistic losses see only ``D(real) − D(fake)`` and the
    penalties only ``∇D``, so a constant added to D's output would never receive a gradient.
    Weights are initialised by :func:`unisp.losses.adversarial.init_discriminator`.

    Args:
        in_channels: channels of the feature map (paper: 64 for relu1, 256 for relu4).
        in_size: ``(height, width)`` of the feature map this discriminator will see.
        slope: LeakyReLU negative slope (the paper: 0.2).
    """

    def __init__(self, in_channels: int, in_size: tuple[int, int], slope: float = 0.2) -> None:
        super().__init__()
        height, width = (int(s) for s in in_size)
        if in_channels < 1 or height < 1 or width < 1:
            raise ValueError(f"TextureDiscriminator needs a positive channel count and size, got {in_channels}, {in_size}")
        self.in_channels = in_channels
        self.in_size = (height, width)
        layers: list[nn.Module] = []
        channels = in_channels
        for out_channels, kernel, stride in TEXTURE_CONVS:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=kernel // 2), nn.LeakyReLU(slope)]
            channels = out_channels
            height, width = conv_output_size(height, kernel, stride), conv_output_size(width, kernel, stride)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * height * width, TEXTURE_HIDDEN),
            nn.LeakyReLU(slope),
            nn.Linear(TEXTURE_HIDDEN, 1, bias=False),  # no bias: see the note in the class docstring
        )
        init_discriminator(self, slope)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features ``(B, in_channels, *in_size)``. Returns: logits ``(B,)``."""
        if features.ndim != 4 or features.shape[1] != self.in_channels or tuple(features.shape[-2:]) != self.in_size:
            raise ValueError(
                f"TextureDiscriminator built for (B, {self.in_channels}, {self.in_size[0]}, {self.in_size[1]}), "
                f"got {tuple(features.shape)}"
            )
        return self.head(self.features(features)).squeeze(1)
