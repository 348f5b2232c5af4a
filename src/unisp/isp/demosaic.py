"""CFA interpolation (demosaicing): a Bayer mosaic ``(B, 1, H, W)`` → RGB ``(B, 3, H, W)``.

* ``bilinear``: each colour's samples averaged over its nearest neighbours (3×3 kernels).
* ``malvar``: Malvar, He & Cutler, "High-quality linear interpolation for demosaicing of
  Bayer-patterned color images" (ICASSP 2004): bilinear plus a gradient correction from the
  other channels, as four fixed 5×5 linear filters.
* ``ahd``: Hirakawa & Parks, "Adaptive homogeneity-directed demosaicing algorithm" (IEEE TIP
  2005), the steps of LibRaw's ``ahd_interpolate`` (the AHD of ``rawpy``'s ``postprocess()``):
  green interpolated along rows and along columns, red and blue from colour differences with
  each green, and per pixel the direction whose CIELAB neighbourhood is more homogeneous.
* ``menon``: Menon, Andriani & Calvagno, "Demosaicing with directional filtering and a
  posteriori decision" (IEEE TIP 2007), through ``colour_demosaicing``; a NumPy round trip per
  image, so it is **not differentiable** and runs on the CPU.

The torch methods are batched and run on the input's device and dtype. Bilinear and Malvar are
plain convolutions; AHD's per-pixel choice of direction is piecewise constant, so its gradient
flows through the chosen interpolation (as through a max). Borders use reflect padding (mirror
about the edge sample, without repeating it): it keeps the CFA phase (row ``-1`` mirrors row
``1``, same parity), so a border pixel is interpolated from samples of the right colour, and a
constant-colour image comes back exactly everywhere. ``colour_demosaicing`` uses SciPy's ``mode="mirror"``, the same padding.
Every method returns the measured samples unchanged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
import unittest.mock
import warnings
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from unisp.errors import ConfigError, RawFormatError
from unisp.isp.bands import map_row_bands
from unisp.isp.lab import linear_rgb_to_lab
from unisp.raw.bayer import CFA, site_masks

log = logging.getLogger(__name__)

DemosaicMethod = Literal["bilinear", "malvar", "ahd", "menon"]
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


def _neighbours(t: torch.Tensor, pad: int) -> Callable[[int, int], torch.Tensor]:
    """``at(dy, dx)``: ``t`` shifted so that ``at(dy, dx)[..., y, x] == t[..., y + dy, x + dx]``.

    Outside the image the values are reflect-padded, which keeps the CFA phase (see the module
    docstring); ``|dy|, |dx| <= pad``.
    """
    padded = F.pad(t, (pad, pad, pad, pad), mode="reflect")
    h, w = t.shape[-2:]
    return lambda dy, dx: padded[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


#: AHD's two interpolation directions as (dy, dx) steps: along rows, along columns.
AHD_DIRECTIONS = ((0, 1), (1, 0))


def _ahd_candidates(x: torch.Tensor, masks: torch.Tensor) -> list[torch.Tensor]:
    """The row-wise and the column-wise full-colour interpolations of ``(B, 1, H, W)`` → 2 × ``(B, 3, H, W)``."""
    r, gr, gb, b = masks
    green_site = gr + gb
    at = _neighbours(x, 2)
    candidates = []
    for dy, dx in AHD_DIRECTIONS:
        # Green at red and blue sites along one direction: the two green neighbours' mean plus a
        # second-difference correction from the centre colour, clipped to the two neighbours'
        # range (LibRaw: ahd_interpolate_green_h_and_v, ULIM).
        before, after = at(-dy, -dx), at(dy, dx)
        estimate = (2 * (before + x + after) - at(-2 * dy, -2 * dx) - at(2 * dy, 2 * dx)) / 4
        estimate = torch.minimum(torch.maximum(estimate, torch.minimum(before, after)), torch.maximum(before, after))
        green = green_site * x + (1 - green_site) * estimate
        # Red and blue: this green plus the neighbours' mean colour difference (colour − green) —
        # from the row neighbours, the column neighbours or the four diagonal ones (LibRaw:
        # ahd_interpolate_r_and_b_in_rgb_and_convert_to_cielab). Zero at green sites.
        diff = _neighbours(x - green, 1)
        row = green + (diff(0, -1) + diff(0, 1)) / 2
        col = green + (diff(-1, 0) + diff(1, 0)) / 2
        diagonal = green + (diff(-1, -1) + diff(-1, 1) + diff(1, -1) + diff(1, 1)) / 4
        # Gr shares its row with red (and its column with blue); Gb the other way round.
        red = r * x + gr * row + gb * col + b * diagonal
        blue = b * x + gb * row + gr * col + r * diagonal
        candidates.append(torch.cat([red, green, blue], dim=1))
    return candidates


def _pair_distances(lab: torch.Tensor, dim: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """L* distance and squared a*b* distance to the previous and to the next neighbour along ``dim`` (negative).

    Each pair's distance is computed once and serves both pixels. Reflect padding makes the
    missing neighbour at either border the one on the other side, so the border pixel reuses
    its only pair.
    """
    d = lab.diff(dim=dim)
    pairs = torch.stack([d[:, 0].abs(), d[:, 1].square() + d[:, 2].square()], dim=1)  # (L*, a*b*²) per pair
    n = pairs.shape[dim]
    previous = torch.cat([pairs.narrow(dim, 0, 1), pairs], dim=dim)  # pixel i: pair (i − 1, i)
    following = torch.cat([pairs, pairs.narrow(dim, n - 1, 1)], dim=dim)  # pixel i: pair (i, i + 1)
    return previous.unbind(1), following.unbind(1)


def _ahd_homogeneity(candidates: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per pixel, each candidate's count of 3×3-neighbourhood CIELAB neighbours within the adaptive ε.

    For each candidate and each of the 4 neighbours: the L* distance and the squared a*b*
    distance. The thresholds are those of the edge: the smaller of the row-wise candidate's
    largest row-neighbour distance and the column-wise candidate's largest column-neighbour
    distance. A neighbour is homogeneous when both distances are within them; the counts are
    summed over the 3×3 window (LibRaw: ahd_interpolate_build_homogeneity_map and
    ahd_interpolate_combine_homogeneous_pixels).
    """
    distances = []  # per candidate: (left, right, up, down), each (L* distance, a*b* distance²)
    for rgb in candidates:
        lab = linear_rgb_to_lab(rgb)
        distances.append(_pair_distances(lab, -1) + _pair_distances(lab, -2))
    (left, right, _, _), (_, _, up, down) = distances
    l_eps = torch.minimum(torch.maximum(left[0], right[0]), torch.maximum(up[0], down[0]))
    ab_eps = torch.minimum(torch.maximum(left[1], right[1]), torch.maximum(up[1], down[1]))
    scores = []
    for per_neighbour in distances:
        count = sum(((dl <= l_eps) & (dab <= ab_eps)).to(l_eps.dtype) for dl, dab in per_neighbour)
        window = F.pad(count.unsqueeze(1), (1, 1, 1, 1), mode="reflect")
        scores.append(F.avg_pool2d(window, 3, stride=1, divisor_override=1))
    return scores


#: How many mosaic rows away an output pixel's inputs lie, per torch method (Menon's NumPy
#: implementation is not banded): bilinear's 3×3 and Malvar's 5×5 kernels; AHD's green ±2, colour
#: differences ±1, CIELAB neighbours ±1 and 3×3 window ±1.
DEMOSAIC_REACH = {"bilinear": 1, "malvar": 2, "ahd": 5}
#: AHD's bands overlap by its reach rounded up to even, so that every band starts on the
#: mosaic's CFA phase.
AHD_HALO = DEMOSAIC_REACH["ahd"] + DEMOSAIC_REACH["ahd"] % 2
#: Rows per band. AHD keeps about 30 planes alive; in bands of 64 rows a 4000-pixel-wide image's
#: planes stay in cache: on a 2-core CPU a 12 MP mosaic took 0.87 s instead of 6.4 s in one pass,
#: with 0.5 instead of 1.8 GB above the input (measured 2026-11-25; docs/ISP.md).
AHD_BAND_ROWS = 64


def _ahd(mosaic: torch.Tensor, cfa: CFA | str) -> torch.Tensor:
    h, w = mosaic.shape[-2:]
    masks = site_masks(cfa, h, w, mosaic.device, mosaic.dtype)
    along_rows, along_cols = _ahd_candidates(mosaic, masks)
    with torch.no_grad():  # the choice is piecewise constant: no gradient through it
        row_score, col_score = _ahd_homogeneity([along_rows.detach(), along_cols.detach()])
    mean = (along_rows + along_cols) / 2
    return torch.where(row_score > col_score, along_rows, torch.where(col_score > row_score, along_cols, mean))


def demosaic_ahd(mosaic: torch.Tensor, cfa: CFA | str) -> torch.Tensor:
    """AHD demosaicing (Hirakawa & Parks 2005, as LibRaw) of ``(B, 1, H, W)`` → ``(B, 3, H, W)``.

    Two full-colour candidates, interpolated along rows and along columns; each pixel takes the
    candidate whose 3×3 neighbourhood is more homogeneous in CIELAB, or their mean on a tie.
    Tall mosaics are processed in overlapping bands of rows (:data:`AHD_BAND_ROWS`,
    :func:`unisp.isp.bands.map_row_bands`), with the same result as one pass.

    Differences from LibRaw: floating point instead of 16-bit integers (no rounding, no clipping
    to the 16-bit range); CIELAB from the sRGB primaries (LibRaw uses the camera's matrix: this
    function sees only the white-balanced mosaic; the test compares distances against thresholds
    taken from the same pixel, so the primaries only shift where ties fall); reflect-padded
    borders instead of LibRaw's separate border interpolation of the outer 5 pixels.
    """
    _check_mosaic(mosaic, 3, "ahd")
    return map_row_bands(lambda band: _ahd(band, cfa), mosaic, AHD_BAND_ROWS, AHD_HALO)


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
        method: ``"bilinear"``, ``"malvar"``, ``"ahd"`` (all three differentiable) or ``"menon"`` (not).

    Returns:
        ``(B, 3, H, W)`` RGB, not clipped (Malvar, AHD and Menon can overshoot near edges).

    Example:
        >>> m = torch.full((1, 1, 4, 4), 0.5)
        >>> demosaic(m, "RGGB", "malvar").shape
        torch.Size([1, 3, 4, 4])
    """
    if method == "bilinear":
        return demosaic_bilinear(mosaic, cfa)
    if method == "malvar":
        return demosaic_malvar(mosaic, cfa)
    if method == "ahd":
        return demosaic_ahd(mosaic, cfa)
    if method == "menon":
        return demosaic_menon(mosaic, cfa)
    allowed = ", ".join(repr(m) for m in DEMOSAIC_METHODS)
    raise ConfigError(f"unknown demosaicing method {method!r} (allowed: {allowed})")
