"""CFA interpolation (demosaicing): a Bayer mosaic ``(B, 1, H, W)`` → RGB ``(B, 3, H, W)``.

* ``bilinear``: each colour's samples averaged over its nearest neighbours (3×3 kernels).
* ``malvar``: Malvar, He & Cutler, "High-quality linear interpolation for demosaicing of
  Bayer-patterned color images" (ICASSP 2004): bilinear plus a gradient correction from the
  other channels, as four fixed 5×5 linear filters.
* ``menon``: Menon, Andriani & Calvagno, "Demosaicing with directional filtering and a
  posteriori decision" (IEEE TIP 2007), through ``colour_demosaicing``; a NumPy round trip per
  image, so it is **not differentiable** and runs on the CPU.

Both torch methods are plain convolutions, so they are differentiable, batched and run on the
input's device and dtype. Borders use reflect padding (mirror about the edge sample, without
repeating it): it keeps the CFA phase (row ``-1`` mirrors row ``1``, same parity), so a border
pixel is interpolated from samples of the right colour, and a constant-colour image comes back
exactly everywhere. ``colour_demosaicing`` uses SciPy's ``mode="mirror"``, the same padding.
Every method returns the measured samples unchanged.
"""

from __future__ import annotations

import logging
import sys
import unittest.mock
import warnings
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from unisp.errors import ConfigError, RawFormatError
from unisp.raw.bayer import CFA, site_masks

log = logging.getLogger(__name__)

DemosaicMethod = Literal["bilinear", "malvar", "menon"]
#: The methods :func:`demosaic` accepts.
DEMOSAIC_METHODS: tuple[str, ...] = get_args(DemosaicMethod)

#: Bilinear kernel for red and blue (samples on a rectangular grid every other row and column).
BILINEAR_RB = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0
#: Bilinear kernel for green (samples on a quincunx lattice).
BILINEAR_G = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4.0

# Malvar-He-Cutler filters (ICASSP 2004, Fig. 2), applied to the whole mosaic; coefficients ×1/8.
#: Green at a red or blue site.
MALVAR_G_AT_RB = torch.tensor(
    [
        [0.0, 0.0, -1.0, 0.0, 0.0],
        [0.0, 0.0, 2.0, 0.0, 0.0],
        [-1.0, 2.0, 4.0, 2.0, -1.0],
        [0.0, 0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, -1.0, 0.0, 0.0],
    ]
) / 8.0
#: Red (blue) at a green site whose row holds red (blue): the wanted colour is left and right.
MALVAR_AT_G_SAME_ROW = torch.tensor(
    [
        [0.0, 0.0, 0.5, 0.0, 0.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [-1.0, 4.0, 5.0, 4.0, -1.0],
        [0.0, -1.0, 0.0, -1.0, 0.0],
        [0.0, 0.0, 0.5, 0.0, 0.0],
    ]
) / 8.0
#: Red (blue) at a green site whose column holds red (blue): the transpose of the above.
MALVAR_AT_G_SAME_COL = MALVAR_AT_G_SAME_ROW.t().contiguous()
#: Red at a blue site and blue at a red site (the wanted colour is on the diagonals).
MALVAR_AT_OPPOSITE = torch.tensor(
    [
        [0.0, 0.0, -1.5, 0.0, 0.0],
        [0.0, 2.0, 0.0, 2.0, 0.0],
        [-1.5, 0.0, 6.0, 0.0, -1.5],
        [0.0, 2.0, 0.0, 2.0, 0.0],
        [0.0, 0.0, -1.5, 0.0, 0.0],
    ]
) / 8.0


def _check_mosaic(mosaic: torch.Tensor, min_size: int, method: str) -> None:
    if mosaic.ndim != 4 or mosaic.shape[1] != 1:
        raise RawFormatError(f"a mosaic for demosaicing must have shape (B, 1, H, W), got {tuple(mosaic.shape)}")
    h, w = mosaic.shape[-2:]
    if h < min_size or w < min_size:
        raise RawFormatError(f"a {h}×{w} mosaic is too small for {method} demosaicing (needs at least {min_size}×{min_size})")


def _conv(x: torch.Tensor, kernels: list[torch.Tensor]) -> torch.Tensor:
    """Reflect-pad ``(B, 1, H, W)`` and convolve with each kernel → ``(B, len(kernels), H, W)``."""
    pad = kernels[0].shape[-1] // 2
    weight = torch.stack(kernels).unsqueeze(1).to(device=x.device, dtype=x.dtype)
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight)


def demosaic_bilinear(mosaic: torch.Tensor, cfa: CFA | str) -> torch.Tensor:
    """Bilinear demosaicing of ``(B, 1, H, W)`` → ``(B, 3, H, W)``; see :func:`demosaic`."""
    _check_mosaic(mosaic, 2, "bilinear")
    h, w = mosaic.shape[-2:]
    m = site_masks(cfa, h, w, mosaic.device, mosaic.dtype)
    per_colour = torch.stack([m[0], m[1] + m[2], m[3]]).unsqueeze(0)  # (1, 3, H, W)
    sampled = mosaic * per_colour  # each colour's samples, zero elsewhere
    pad = (1, 1, 1, 1)
    kernels = torch.stack([BILINEAR_RB, BILINEAR_G, BILINEAR_RB]).unsqueeze(1).to(mosaic.device, mosaic.dtype)
    return F.conv2d(F.pad(sampled, pad, mode="reflect"), kernels, groups=3)


def demosaic_malvar(mosaic: torch.Tensor, cfa: CFA | str) -> torch.Tensor:
    """Malvar-He-Cutler (2004) demosaicing of ``(B, 1, H, W)`` → ``(B, 3, H, W)``; see :func:`demosaic`."""
    _check_mosaic(mosaic, 3, "malvar")
    h, w = mosaic.shape[-2:]
    r, gr, gb, b = site_masks(cfa, h, w, mosaic.device, mosaic.dtype)
    g_rb, same_row, same_col, opposite = _conv(
        mosaic, [MALVAR_G_AT_RB, MALVAR_AT_G_SAME_ROW, MALVAR_AT_G_SAME_COL, MALVAR_AT_OPPOSITE]
    ).unbind(1)
    x = mosaic[:, 0]
    # Gr shares its row with red (and its column with blue); Gb the other way round.
    red = r * x + gr * same_row + gb * same_col + b * opposite
    green = (gr + gb) * x + (r + b) * g_rb
    blue = b * x + gb * same_row + gr * same_col + r * opposite
    return torch.stack([red, green, blue], dim=1)


def _import_menon():
    """``colour_demosaicing``'s Menon function, imported without side effects on other packages.

    When matplotlib is absent, colour-science warns and puts ``unittest.mock`` stand-ins for
    matplotlib (and cycler, mpl_toolkits) into ``sys.modules``; other packages that probe for
    matplotlib (torchmetrics) then fail. The stand-ins are removed again after the import.
    """
    before = set(sys.modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from colour_demosaicing import demosaicing_CFA_Bayer_Menon2007
    for name in set(sys.modules) - before:
        if isinstance(sys.modules[name], unittest.mock.Mock):
            del sys.modules[name]
    return demosaicing_CFA_Bayer_Menon2007


def demosaic_menon(mosaic: torch.Tensor, cfa: CFA | str, refining_step: bool = True) -> torch.Tensor:
    """Menon et al. (2007) DDFAPD through ``colour_demosaicing``: **not differentiable** (NumPy round trip).

    Returns ``(B, 3, H, W)`` on the input's device and dtype, without gradient history.
    """
    _check_mosaic(mosaic, 2, "menon")
    cfa = CFA.parse(cfa)
    if mosaic.requires_grad:
        log.warning("menon demosaicing is not differentiable: no gradient flows back to the mosaic")
    demosaicing_CFA_Bayer_Menon2007 = _import_menon()

    arrays = mosaic.detach()[:, 0].to("cpu", torch.float64).numpy()
    out = [
        demosaicing_CFA_Bayer_Menon2007(a, pattern=cfa.value, refining_step=refining_step).transpose(2, 0, 1)
        for a in arrays
    ]
    return torch.from_numpy(np.stack(out)).to(device=mosaic.device, dtype=mosaic.dtype)


def demosaic(mosaic: torch.Tensor, cfa: CFA | str, method: DemosaicMethod = "malvar") -> torch.Tensor:
    """Interpolate the two missing colours at every site of a Bayer mosaic.

    Args:
        mosaic: ``(B, 1, H, W)`` floating-point mosaic (linear values, e.g. normalised to [0, 1]).
        cfa: the Bayer pattern of the mosaic's top-left 2×2 tile.
        method: ``"bilinear"``, ``"malvar"`` (both differentiable) or ``"menon"`` (not).

    Returns:
        ``(B, 3, H, W)`` RGB, not clipped (Malvar and Menon can overshoot near edges).

    Example:
        >>> m = torch.full((1, 1, 4, 4), 0.5)
        >>> demosaic(m, "RGGB", "malvar").shape
        torch.Size([1, 3, 4, 4])
    """
    if method == "bilinear":
        return demosaic_bilinear(mosaic, cfa)
    if method == "malvar":
        return demosaic_malvar(mosaic, cfa)
    if method == "menon":
        return demosaic_menon(mosaic, cfa)
    allowed = ", ".join(repr(m) for m in DEMOSAIC_METHODS)
    raise ConfigError(f"unknown demosaicing method {method!r} (allowed: {allowed})")
