"""Plausibility of the colour calibration a RAW file carries: its camera → sRGB matrix and white balance.

A file can hold a colour matrix or an as-shot white balance that is well-formed (finite numbers of
the right count) and still absurd: a singular matrix, entries of ±2147, a white point far from
neutral, a gain of 1000 on one channel. Applied, such a value turns the whole image one colour
while everything looks in order. The readers check each value with the functions here and, when
one gives a reason, drop the value (the pipeline then uses its documented fallbacks: identity
matrix, gray-world white balance) with a warning that names the file.

The limits were measured over the 796 three-colour XYZ → camera matrices of LibRaw 0.22's built-in
camera table (``adobe_coeff`` in LibRaw's ``src/tables/colordata.cpp``, nearly all from Adobe DNG
Converter; the table rawpy 0.28 bundles), each turned into camera → sRGB as LibRaw does
(:func:`unisp.raw.io.camera_to_srgb_matrix`); each limit leaves a wide margin past the extremes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Largest 2-norm condition number of a camera → sRGB matrix. The table's range is 1.4 .. 9.3
#: (median 2.2); 50 allows five times its worst. A singular matrix (cond = ∞) sends every colour
#: onto a line or plane; a badly conditioned one amplifies noise and clips most colours.
MAX_CCM_CONDITION = 50.0
#: Largest magnitude of one entry. The table's largest is 5.3 (median of the per-matrix maxima 1.7).
MAX_CCM_ENTRY = 16.0
#: Every diagonal entry must exceed this: each sRGB channel grows with its own camera channel. The
#: table's smallest diagonal entry is 0.77 (median 1.4).
MIN_CCM_DIAGONAL = 0.0
#: Bounds on each channel of ``matrix @ (1, 1, 1)``, the sRGB of white-balanced camera white. dcraw,
#: LibRaw and unisp normalise the matrix so that this is exactly (1, 1, 1) (every matrix of the table,
#: and every one a camera file gives through LibRaw); a factor 2 either way allows a hand-written sidecar
#: to be off by a stop, not to tint the whole image.
CCM_WHITE_RANGE = (0.5, 2.0)

#: Bounds on the red and blue white-balance gains relative to green. The table's daylight gains (LibRaw's
#: ``pre_mul``: the inverse of each row sum of XYZ → camera @ sRGB → XYZ) span 0.89 .. 3.95 for red and
#: 0.42 .. 4.6 for blue; tungsten or shade light moves them by up to about 2.5×, which still leaves
#: a margin inside 1/16 .. 16.
WB_GAIN_RANGE = (1 / 16, 16.0)


def colour_matrix_problem(matrix: np.ndarray | Sequence[Sequence[float]]) -> str | None:
    """Why a camera → linear sRGB matrix cannot be right, or None when it is plausible.

    Checks, in order: a finite ``3×3``; no entry above :data:`MAX_CCM_ENTRY`; a condition number
    within :data:`MAX_CCM_CONDITION` (so singular matrices fail); a positive diagonal
    (:data:`MIN_CCM_DIAGONAL`); and camera white mapped into :data:`CCM_WHITE_RANGE`.

    Example:
        >>> colour_matrix_problem(np.eye(3)) is None
        True
        >>> colour_matrix_problem(np.ones((3, 3)))
        'singular (condition number inf, limit 50)'
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        return f"not 3×3 (shape {m.shape})"
    if not np.all(np.isfinite(m)):
        return "not finite (NaN or Inf)"
    peak = float(np.abs(m).max())
    if peak > MAX_CCM_ENTRY:
        return f"an entry of magnitude {peak:g} (limit {MAX_CCM_ENTRY:g})"
    condition = _condition_number(m)
    if not condition <= MAX_CCM_CONDITION:
        kind = "singular" if not np.isfinite(condition) else "badly conditioned"
        return f"{kind} (condition number {condition:.3g}, limit {MAX_CCM_CONDITION:g})"
    diagonal = float(np.diag(m).min())
    if not diagonal > MIN_CCM_DIAGONAL:
        return f"a diagonal entry of {diagonal:.3g} (each must be > {MIN_CCM_DIAGONAL:g})"
    white = m.sum(axis=1)
    low, high = CCM_WHITE_RANGE
    if not np.all((white >= low) & (white <= high)):
        shown = ", ".join(f"{v:.3g}" for v in white)
        return f"camera white maps to sRGB ({shown}), outside {low:g} .. {high:g}"
    return None


def wb_gains_problem(gains: Sequence[float]) -> str | None:
    """Why ``(R, G, B)`` white-balance gains cannot be right, or None when they are plausible.

    The gains must be three finite positive numbers whose red and blue, relative to green, lie in
    :data:`WB_GAIN_RANGE` (only ratios are checked: a frame may fold an exposure gain into all three).

    Example:
        >>> wb_gains_problem((2.0, 1.0, 1.5)) is None
        True
        >>> wb_gains_problem((1000.0, 1.0, 1.0))
        'red/green gain 1e+03 outside 0.0625 .. 16'
    """
    values = [float(g) for g in gains]
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        return f"not three positive numbers ({', '.join(f'{v:g}' for v in values)})"
    low, high = WB_GAIN_RANGE
    for name, value in (("red", values[0]), ("blue", values[2])):
        ratio = value / values[1]
        if not low <= ratio <= high:
            return f"{name}/green gain {ratio:.3g} outside {low:g} .. {high:g}"
    return None


def _condition_number(m: np.ndarray) -> float:
    """The 2-norm condition number, ∞ for a (numerically) singular matrix."""
    singular_values = np.linalg.svd(m, compute_uv=False)
    if singular_values[-1] <= singular_values[0] * np.finfo(np.float64).eps * 3:
        return float("inf")
    return float(singular_values[0] / singular_values[-1])


__all__ = [
    "CCM_WHITE_RANGE",
    "MAX_CCM_CONDITION",
    "MAX_CCM_ENTRY",
    "MIN_CCM_DIAGONAL",
    "WB_GAIN_RANGE",
    "colour_matrix_problem",
    "wb_gains_problem",
]
