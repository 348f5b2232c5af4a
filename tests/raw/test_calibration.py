"""Plausibility checks of colour matrices and white-balance gains: known values either side of each limit."""

from __future__ import annotations

import numpy as np
import pytest

from unisp.raw.calibration import (
    CCM_WHITE_RANGE,
    MAX_CCM_CONDITION,
    MAX_CCM_ENTRY,
    colour_matrix_problem,
    wb_gains_problem,
)
from unisp.raw.io import camera_to_srgb_matrix

#: Adobe's D65 ColorMatrix of the Canon EOS 5D Mark II (LibRaw's table, in units of 1/10000).
CANON_5D_MARK_II = np.array([[4716, 603, -830], [-7798, 15474, 2480], [-1496, 1937, 6651]]) / 10000
#: The same table's Nikon D850 entry: 10405, -3755, -1270 / -5461, 13787, 1793 / -1040, 2015, 6785.
NIKON_D850 = np.array([[10405, -3755, -1270], [-5461, 13787, 1793], [-1040, 2015, 6785]]) / 10000


@pytest.mark.parametrize("xyz_to_camera", [CANON_5D_MARK_II, NIKON_D850], ids=["canon-5d-mark-ii", "nikon-d850"])
def test_real_camera_matrices_pass(xyz_to_camera):
    matrix = camera_to_srgb_matrix(xyz_to_camera)
    assert colour_matrix_problem(matrix) is None
    # Far inside every limit: the table's worst condition number is 9.3, its largest entry 5.3.
    assert np.linalg.cond(matrix) < MAX_CCM_CONDITION / 5 and np.abs(matrix).max() < MAX_CCM_ENTRY / 3


def test_identity_passes():
    assert colour_matrix_problem(np.eye(3)) is None
    assert colour_matrix_problem([[1, 0, 0], [0, 1, 0], [0, 0, 1]]) is None


@pytest.mark.parametrize(
    "matrix, reason",
    [
        (np.ones((3, 3)), "singular (condition number inf, limit 50)"),
        (np.diag([1.0, 1.0, 0.0]), "singular"),
        (np.full((3, 3), np.nan), "not finite (NaN or Inf)"),
        (np.diag([1.0, np.inf, 1.0]), "not finite"),
        (np.array([[2147, -2147, 2147], [-2147, 2147, -2147], [2147, 2147, -2147]]),
         "an entry of magnitude 2147 (limit 16)"),
        (np.diag([16.5, 1, 1]), "an entry of magnitude 16.5"),
        (np.diag([10.0, 1.0, 0.1]), "badly conditioned (condition number 100, limit 50)"),
        (np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]), "a diagonal entry of 0"),  # red and green swapped
        (np.diag([1.0, -1.0, 1.0]), "a diagonal entry of -1"),
        (np.eye(3) * 3, "camera white maps to sRGB (3, 3, 3), outside 0.5 .. 2"),
        (np.eye(3) * 0.4, "outside 0.5 .. 2"),
        (np.eye(2), "not 3×3 (shape (2, 2))"),
    ],
)
def test_implausible_matrices_fail(matrix, reason):
    assert reason in colour_matrix_problem(matrix)


def test_white_range_edges():
    low, high = CCM_WHITE_RANGE
    assert colour_matrix_problem(np.eye(3) * low) is None and colour_matrix_problem(np.eye(3) * high) is None


@pytest.mark.parametrize(
    "gains", [(2.0, 1.0, 1.5), (1.0, 1.0, 1.0), (4.6, 1.0, 0.42), (16.0, 1.0, 1 / 16), (3.0, 2.0, 4.0)]
)
def test_plausible_gains_pass(gains):
    assert wb_gains_problem(gains) is None


@pytest.mark.parametrize(
    "gains, reason",
    [
        ((1000.0, 1.0, 1.0), "red/green gain 1e+03 outside 0.0625 .. 16"),
        ((1.0, 1.0, 0.01), "blue/green gain 0.01 outside"),
        ((2.0, 100.0, 2.0), "red/green gain 0.02 outside"),  # relative to green
        ((0.0, 1.0, 1.0), "not three positive numbers"),
        ((-2.0, 1.0, 1.5), "not three positive numbers"),
        ((float("nan"), 1.0, 1.0), "not three positive numbers"),
        ((2.0, 1.0), "not three positive numbers"),
    ],
)
def test_implausible_gains_fail(gains, reason):
    assert reason in wb_gains_problem(gains)
