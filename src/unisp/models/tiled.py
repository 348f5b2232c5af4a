"""Full-resolution inference of a generator: a RAW frame through the network, tile by tile.

Tiles overlap by the model's receptive-field radius (``model.receptive_radius``, in packed
pixels), so every output pixel sees exactly the input it would see in one untiled pass and the
tiled result equals the untiled one. A model that pools globally (``receptive_radius = None``,
e.g. RMFA-Net's channel attention) cannot be tiled exactly and runs in one pass. Memory is
bounded by the tile size: the input stays packed uint16, each tile is normalised on the fly,
and the output is quantised into a preallocated integer array as tiles finish.

Tiles run through the model itself or through a ``runner`` with the same contract (ONNX Runtime,
unisp's fused C++ kernel: :mod:`unisp.export.runtimes`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from unisp.errors import UnispError
from unisp.fileio import quantize
from unisp.isp.awb import balance_input, input_gains
from unisp.isp.blc import normalize
from unisp.models.base import check_input_size
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: Default tile edge in packed pixels (512 → 1024×1024 output pixels, about 12 MB of float32 output per tile).
DEFAULT_TILE = 512


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Split ``range(length)`` into consecutive spans of at most ``tile`` (the last may be shorter).

    Example:
        >>> tile_spans(10, 4)
        [(0, 4), (4, 8), (8, 10)]
    """
    return [(start, min(start + tile, length)) for start in range(0, length, tile)]


@torch.inference_mode()
def run_tiled(
    model: nn.Module,
    frame: RawFrame,
    *,
    tile: int = DEFAULT_TILE,
    depth: int | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    runner: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray | torch.Tensor:
    """Run ``model`` over ``frame`` in overlapping tiles.

    Args:
        model: a generator taking ``(1, 4, h, w)`` packed input in [0, 1] and returning ``(1, 3, 2h, 2w)``;
            its ``input_wb`` (``"none"`` when it has none) says how each tile is white-balanced
            after normalisation (:func:`unisp.isp.awb.input_gains`).
        frame: the RAW frame.
        tile: tile edge in packed pixels (the core of each tile; the overlap is added around it).
        depth: 8 or 16 to return an ``(H, W, 3)`` integer image quantised tile by tile (bounded
            memory); ``None`` to return the ``(3, H, W)`` float output clamped to [0, 1].
        device: where the model runs.
        progress: called with 1 after each tile.
        runner: runs each float32 tile instead of ``model`` (e.g. an ONNX Runtime session from
            :mod:`unisp.export.runtimes`); ``model`` still gives the tiling (its receptive radius).

    Returns:
        The full-resolution output, equal to one untiled pass.

    Raises:
        UnispError: a frame smaller than ``model`` takes (see :func:`unisp.models.base.check_input_size`).

    Example:
        >>> import numpy as np
        >>> from unisp.models.registry import build_model
        >>> model = build_model("efficient_isp").eval()
        >>> frame = RawFrame(np.random.default_rng(0).integers(0, 1024, (40, 60), dtype=np.uint16), "RGGB", (64,) * 4, 1023)
        >>> tiled = run_tiled(model, frame, tile=8)  # 20×30 packed pixels in 3×4 tiles with halos
        >>> tiled.shape, bool((tiled - run_tiled(model, frame, tile=64)).abs().max() < 1e-5)
        (torch.Size([3, 40, 60]), True)
    """
    if tile < 1:
        raise UnispError(f"tile size must be positive, got {tile}")
    planes = frame.packed()
    h, w = planes.shape[-2:]
    check_input_size(model, h, w, str(frame.path or "the frame"))
    tile, r = tiling(model, frame, tile)
    dtype = next(model.parameters()).dtype if runner is None else torch.float32
    forward = model if runner is None else runner
    gains = input_gains(frame, getattr(model, "input_wb", "none"))
    if getattr(model, "receptive_radius", None) is None:
        log.warning(
            "%s pools over the whole image: processing %s in one pass (memory not bounded by --tile)",
            getattr(model, "name", type(model).__name__), frame.path or "the frame",
        )
    if depth is None:
        out: np.ndarray | torch.Tensor = torch.empty(3, 2 * h, 2 * w)
    else:
        out = np.empty((2 * h, 2 * w, 3), dtype=np.uint8 if depth == 8 else np.uint16)
    for y0, y1 in tile_spans(h, tile):
        for x0, x1 in tile_spans(w, tile):
            # The tile plus `r` pixels of real context on each side (the model's own padding
            # applies only at the image border, exactly as in an untiled run).
            ya, yb = max(0, y0 - r), min(h, y1 + r)
            xa, xb = max(0, x0 - r), min(w, x1 + r)
            x = torch.from_numpy(planes[None, :, ya:yb, xa:xb].astype(np.float32)).to(device)
            x = balance_input(normalize(x, frame.black_level, frame.white_level), gains).to(dtype)
            y = forward(x)[0]
            # Only the core crosses to the host; with `depth` as integers (quantised on the device).
            core = y[:, 2 * (y0 - ya) : 2 * (y1 - ya), 2 * (x0 - xa) : 2 * (x1 - xa)]
            if depth is None:
                out[:, 2 * y0 : 2 * y1, 2 * x0 : 2 * x1] = core.float().clamp(0.0, 1.0).cpu()
            else:
                out[2 * y0 : 2 * y1, 2 * x0 : 2 * x1] = quantize(core, depth)
            if progress is not None:
                progress(1)
    return out


def tiling(model: nn.Module, frame: RawFrame, tile: int) -> tuple[int, int]:
    """``(tile edge, overlap)`` in packed pixels for ``model`` on ``frame``: one tile for global models."""
    radius = getattr(model, "receptive_radius", None)
    if radius is not None:
        return tile, int(radius)
    return max(frame.height, frame.width) // 2, 0


def count_tiles(model: nn.Module, frame: RawFrame, tile: int = DEFAULT_TILE) -> int:
    """Number of tiles :func:`run_tiled` will run for ``frame``."""
    tile, _ = tiling(model, frame, tile)
    return math.ceil(frame.height / 2 / tile) * math.ceil(frame.width / 2 / tile)
