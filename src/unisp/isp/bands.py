"""Processing an image in overlapping bands of rows, with the same result as one pass.

On a CPU, a pipeline of cheap per-pixel steps over a 12 MP image spends its time moving whole
planes through memory; in bands of a few dozen rows the planes stay in cache. For a step whose
output row depends only on input rows at most ``halo`` away, each band carries ``halo`` extra
rows on either side, which are cut from its output, so the stitched result equals one pass
(unisp's steps pad by reflection, so only the image's own top and bottom border see padding, in
one band as in one pass). Equal up to float rounding: PyTorch's vectorised power functions may
round an element differently by one unit in the last place depending on where it falls in a
SIMD vector, and band edges move that alignment.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def map_row_bands(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int, halo: int, scale: int = 1
) -> torch.Tensor:
    """``fn(x)`` computed on bands of ``rows`` rows of ``x`` (``(..., H, W)``) and stitched along dim −2.

    Args:
        fn: maps ``(..., h, W)`` to ``(..., scale·h, W')``; each output row may depend on input rows
            up to ``halo`` away.
        x: the input.
        rows: rows of ``x`` per band. Keep it even where the rows' parity matters (a Bayer mosaic):
            every band then starts on an even row, provided ``halo`` is even too.
        halo: rows of context added above and below each band.
        scale: output rows per input row (2 for packed Bayer planes → full-resolution RGB).

    Returns:
        ``fn(x)``, from one call when ``x`` has at most ``rows + 2·halo`` rows.

    Example:
        >>> x = torch.arange(12.0).view(1, 6, 2)
        >>> torch.equal(map_row_bands(lambda t: t * 2, x, rows=2, halo=1), x * 2)
        True
    """
    h = x.shape[-2]
    if h <= rows + 2 * halo:
        return fn(x)
    bands = []
    for top in range(0, h, rows):
        lo, hi = max(top - halo, 0), min(top + rows + halo, h)
        start = scale * (top - lo)
        bands.append(fn(x[..., lo:hi, :])[..., start : start + scale * min(rows, h - top), :])
    return torch.cat(bands, dim=-2)
