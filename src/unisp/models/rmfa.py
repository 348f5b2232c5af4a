"""RMFA-Net (Li, Hou & Jia, "RMFA-Net: A Neural ISP for Real RAW to RGB Image Reconstruction", arXiv 2406.11469).

The network works at full resolution on a "three-channel split" of the mosaic: an R image that
holds the red samples, a G image with both greens and a B image with the blue samples, each with
a constant at the positions its colour does not sample. :class:`RMFANet` builds that split from
canonical packed planes itself, so it takes the same ``(B, 4, h, w)`` input as the other
generators. Layout, as the paper describes it and the released "RMFA tiny" weights fix it:

* input module: conv 3→w, conv w→w (both 3×3), tanh;
* ``num_blocks`` RMFA blocks, each
  - texture module: [conv 1×1 w→w/2 + ReLU (high frequency), conv 3×3 w→w/2 + ReLU (low frequency)], concatenated;
  - Retinex tone-mapping module: illumination estimated on a 2-level pyramid
    (avg-pool 2 → conv + ReLU = x1; avg-pool 2 → conv + ReLU = x2; conv + ReLU = x3;
    illumination = up(up(x3) + x1)), reflectance = input − illumination;
  - fusion: concat(texture, reflectance) → conv 3×3 2w→w + ReLU;
  - channel attention (shared 1×1 MLP w→w/16→w on global avg- and max-pooled features, summed,
    sigmoid gate) then spatial attention (channel mean and max → conv 7×7 2→1, sigmoid gate);
  - residual: block input added back;
* output module: conv 3×3 w→3, sigmoid.

Upsampling is bilinear (align_corners=False) to the exact size of the finer level, which equals a ×2
upsample whenever sizes divide evenly and also handles sizes that do not.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unisp.models.base import TILE, Generator, KwargRange

#: Value at the mosaic positions a colour plane does not sample. The paper's released code builds
#: the split with ``ones_like`` and writes the samples in, so the released weights expect 1.
SPLIT_FILL = 1.0
#: Channel-attention bottleneck ratio (RMFA-Net / CBAM default; width 16 → 1 hidden channel).
CHANNEL_REDUCTION = 16
#: Spatial-attention kernel size (CBAM default, as in RMFA-Net).
SPATIAL_KERNEL = 7
#: RMFA-Net tiny: 2 blocks of width 16 (arXiv 2406.11469; the released RMFA_TINY weights).
TINY_BLOCKS = 2
TINY_WIDTH = 16
#: The tone-mapping pyramid average-pools the full-resolution features this many times, by
#: :data:`POOL_FACTOR` each time; every level must keep at least one pixel.
PYRAMID_POOLS = 2
POOL_FACTOR = 2
#: Fewest and most blocks a model file may ask for. 0 leaves the input and output modules (an
#: ablation); 16 is 8× RMFA-Net tiny's 2. Blocks run one after another, so they cost time, not
#: memory; the bound keeps a header from building millions of modules.
MIN_BLOCKS = 0
MAX_BLOCKS = 16
#: Widest feature maps a model file may ask for: 4× RMFA-Net tiny's 16. The network runs at full
#: resolution in one pass (its channel attention pools over the whole image, so it is not tiled):
#: each feature map of a 12 MP frame takes width × 48 MB, 3 GB at 64.
MAX_WIDTH = 64
#: The texture module splits the features into two halves (1×1 and 3×3 branches) and concatenates
#: them, so the width is even, and at least 2 for the halves to hold a channel.
WIDTH_MULTIPLE = 2
MIN_WIDTH = 2
#: Range of ``fill``: a value the normalised input itself can hold (the released weights use 1).
MIN_FILL = 0.0
MAX_FILL = 1.0


def three_channel_split(packed: torch.Tensor, fill: float = SPLIT_FILL) -> torch.Tensor:
    """Canonical planes ``(B, 4, h, w)`` → full-resolution ``(B, 3, 2h, 2w)`` R/G/B split images.

    Samples sit where an RGGB mosaic has them (R at (0, 0), Gr at (0, 1), Gb at (1, 0), B at (1, 1)
    of each 2×2 tile); every other position holds ``fill``. Built with concat and depth-to-space only.

    Args:
        packed: canonical ``(R, Gr, Gb, B)`` planes.
        fill: value at positions a colour does not sample.

    Returns:
        ``(B, 3, 2h, 2w)`` tensor.
    """
    r, gr, gb, b = packed[:, 0:1], packed[:, 1:2], packed[:, 2:3], packed[:, 3:4]
    f = torch.full_like(r, fill)
    # pixel_shuffle maps channel 4c + 2i + j to colour c at tile position (i, j).
    tiles = torch.cat([r, f, f, f, f, gr, gb, f, f, f, f, b], dim=1)
    return F.pixel_shuffle(tiles, 2)


class TextureModule(nn.Module):
    """Parallel 1×1 (high-frequency) and 3×3 (low-frequency) conv + ReLU branches, concatenated."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.high_freq = nn.Sequential(nn.Conv2d(width, width // 2, kernel_size=1), nn.ReLU())
        self.low_freq = nn.Sequential(nn.Conv2d(width, width // 2, kernel_size=3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.high_freq(x), self.low_freq(x)], dim=1)


class ToneMappingModule(nn.Module):
    """Retinex tone mapping: subtract a pyramid estimate of the illumination (returns the reflectance)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.level1 = nn.Sequential(nn.AvgPool2d(POOL_FACTOR), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.level2 = nn.Sequential(nn.AvgPool2d(POOL_FACTOR), nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.level3 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.level1(x)
        x3 = self.level3(self.level2(x1))
        coarse = _upsample(x3, x1) + x1
        return x - _upsample(coarse, x)


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ChannelAttention(nn.Module):
    """Gate channels by sigmoid(MLP(avg-pool(x)) + MLP(max-pool(x))), the MLP shared."""

    def __init__(self, width: int) -> None:
        super().__init__()
        hidden = max(1, width // CHANNEL_REDUCTION)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(width, hidden, kernel_size=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(hidden, width, kernel_size=1, bias=False),
        )
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(self.avg_pool(x)) + self.fc(self.max_pool(x)))


class SpatialAttention(nn.Module):
    """Gate pixels by sigmoid(conv7×7([channel mean, channel max]))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(stats))


class RMFABlock(nn.Module):
    """Texture + tone-mapping branches, fused, channel then spatial attention, plus the block input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.texture_module = TextureModule(width)
        self.tone_mapping = ToneMappingModule(width)
        self.fusion = nn.Sequential(nn.Conv2d(2 * width, width, kernel_size=3, padding=1), nn.ReLU())
        self.channel_attention = ChannelAttention(width)
        self.spatial_attention = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fusion(torch.cat([self.texture_module(x), self.tone_mapping(x)], dim=1))
        return self.spatial_attention(self.channel_attention(fused)) + x


class RMFANet(Generator):
    """RMFA-Net on packed input; defaults give RMFA-Net tiny (2 blocks, width 16, 29,223 parameters).

    Full-resolution height and width must be at least 4 (two 2× pooling levels; see
    :attr:`min_packed_size`).

    Args:
        num_blocks: number of RMFA blocks, :data:`MIN_BLOCKS` to :data:`MAX_BLOCKS`.
        width: feature channels, even, :data:`MIN_WIDTH` to :data:`MAX_WIDTH`.
        fill: value of the three-channel split at unsampled positions (see :data:`SPLIT_FILL`),
            :data:`MIN_FILL` to :data:`MAX_FILL`.
        clamp_output: see :class:`Generator`.

    Example:
        >>> model = RMFANet()
        >>> model(torch.rand(1, 4, 4, 4)).shape
        torch.Size([1, 3, 8, 8])
        >>> sum(p.numel() for p in model.parameters())
        29223
    """

    name = "rmfa_tiny"
    receptive_radius = None  # channel attention pools over the whole image
    kwarg_ranges = {
        "num_blocks": KwargRange(int, MIN_BLOCKS, MAX_BLOCKS),
        "width": KwargRange(int, MIN_WIDTH, MAX_WIDTH, multiple=WIDTH_MULTIPLE),
        "fill": KwargRange(float, MIN_FILL, MAX_FILL),
    }

    def __init__(
        self,
        num_blocks: int = TINY_BLOCKS,
        width: int = TINY_WIDTH,
        fill: float = SPLIT_FILL,
        clamp_output: bool = False,
    ) -> None:
        super().__init__(clamp_output)
        self.num_blocks, self.width, self.fill = int(num_blocks), int(width), float(fill)
        self.input_module = nn.Sequential(
            nn.Conv2d(3, width, kernel_size=3, padding=1),
            nn.Conv2d(width, width, kernel_size=3, padding=1),
            nn.Tanh(),
        )
        self.rmfa_blocks = nn.ModuleList(RMFABlock(width) for _ in range(num_blocks))
        self.output_module = nn.Sequential(nn.Conv2d(width, 3, kernel_size=3, padding=1), nn.Sigmoid())

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {"num_blocks": self.num_blocks, "width": self.width, "fill": self.fill}

    @property
    def min_packed_size(self) -> int:
        """Packed side whose full-resolution features survive every pool of the tone-mapping pyramid (2); 1 without blocks."""
        if not self.num_blocks:
            return 1
        return math.ceil(POOL_FACTOR**PYRAMID_POOLS / TILE)

    def render(self, packed: torch.Tensor) -> torch.Tensor:
        x = self.input_module(three_channel_split(packed, self.fill))
        for block in self.rmfa_blocks:
            x = block(x)
        return self.output_module(x)
