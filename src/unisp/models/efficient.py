"""The paper's Efficient ISP and the "Robust ISP" baseline: three 3×3 convolutions and a pixel shuffle.

Both follow "Learned Lightweight Smartphone ISP with Unpaired Data" (Arhire & Timofte, CVPRW 2025):
conv → tanh → conv → ReLU → conv → ReLU → depth-to-space ×2. The 12 channels of the last
convolution are 3 colours × the 4 positions of each 2×2 output tile.
"""

from __future__ import annotations

import torch
from torch import nn

from unisp.models.base import PACKED_CHANNELS, Generator

#: Output colours × 2×2 tile positions produced by the last convolution before the pixel shuffle.
SHUFFLE_CHANNELS = 3 * 4
#: The packed input is at half resolution; depth-to-space restores full resolution.
UPSCALE = 2
#: Initial bias of the last convolution: mid-range of sRGB, so that every output channel starts
#: in the active region of the final ReLU. With PyTorch's default bias init (±1/√108 ≈ ±0.096)
#: 13 of seeds 0–19 started efficient_isp, and 19 robust_isp, with an output channel whose input
#: to the ReLU is negative everywhere (tests/models: test_every_output_channel_starts_alive); the
#: ReLU then passes it no gradient and that colour at that 2×2 tile position stays black for good. Seen in the demo's stage 1 (seed 1: 18.5 dB, the blue of one tile position
#: dead). Stage 1 of the demo over seeds 0–5 (2026-11-25): default init 18.53–22.46 dB (mean
#: 21.61); 0.5: 21.79–22.87 dB (mean 22.28); 0.25: 21.22–23.08 (mean 22.06).
OUTPUT_BIAS_INIT = 0.5


class ThreeConvISP(Generator):
    """conv(4→c1) + tanh, conv(c1→c2) + ReLU, conv(c2→12) + ReLU, all 3×3 pad 1; PixelShuffle(2).

    PyTorch's default initialisation, except the last bias (:data:`OUTPUT_BIAS_INIT`).

    Attribute names ``conv1``/``conv2``/``conv3`` match the paper's released state dicts.

    Args:
        width1: output channels of ``conv1``.
        width2: output channels of ``conv2``.
        clamp_output: see :class:`Generator`.
    """

    def __init__(self, width1: int, width2: int, clamp_output: bool = False) -> None:
        super().__init__(clamp_output)
        self.conv1 = nn.Conv2d(PACKED_CHANNELS, width1, kernel_size=3, padding=1)
        self.act1 = nn.Tanh()
        self.conv2 = nn.Conv2d(width1, width2, kernel_size=3, padding=1)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width2, SHUFFLE_CHANNELS, kernel_size=3, padding=1)
        nn.init.constant_(self.conv3.bias, OUTPUT_BIAS_INIT)
        self.act3 = nn.ReLU()
        self.shuffle = nn.PixelShuffle(UPSCALE)

    def render(self, packed: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(packed))
        x = self.act2(self.conv2(x))
        x = self.act3(self.conv3(x))
        return self.shuffle(x)


class EfficientISP(ThreeConvISP):
    """The paper's generator: widths 12, 12 — 3,060 parameters, 756 MAC per output pixel.

    Example:
        >>> model = EfficientISP()
        >>> model(torch.rand(1, 4, 8, 8)).shape  # packed (R, Gr, Gb, B) planes → full-resolution RGB
        torch.Size([1, 3, 16, 16])
        >>> sum(p.numel() for p in model.parameters())
        3060
    """

    name = "efficient_isp"
    receptive_radius = 3  # three 3×3 convolutions at packed resolution

    def __init__(self, clamp_output: bool = False) -> None:
        super().__init__(12, 12, clamp_output)


class RobustISP(ThreeConvISP):
    """The paper's "Robust ISP" baseline: widths 16, 4 — 1,616 parameters."""

    name = "robust_isp"
    receptive_radius = 3  # three 3×3 convolutions at packed resolution

    def __init__(self, clamp_output: bool = False) -> None:
        super().__init__(16, 4, clamp_output)
