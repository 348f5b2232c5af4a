"""Linear RGB ↔ CIELAB (IEC 61966-2-1:1999 primaries, CIE 15:2004 formulas), on tensors.

sRGB-encoded values go through :func:`srgb_to_lab` (decode, then :func:`linear_rgb_to_lab`). Used
by the ΔE2000 metric (:mod:`unisp.metrics`), by AHD demosaicing's homogeneity test
(:mod:`unisp.isp.demosaic`, on linear values), by colour grading (:mod:`unisp.isp.grading`, both
directions) and by the CIELAB views of the training losses (:mod:`unisp.losses.content`,
:mod:`unisp.losses.swd`).
"""

from __future__ import annotations

import torch

from unisp.errors import UnispError
from unisp.isp.gamma import srgb_decode

#: Linear sRGB → CIE XYZ (D65), the matrix printed in IEC 61966-2-1:1999, eq. (F.7).
SRGB_TO_XYZ = (
    (0.4124, 0.3576, 0.1805),
    (0.2126, 0.7152, 0.0722),
    (0.0193, 0.1192, 0.9505),
)
#: Reference white for CIELAB: XYZ of sRGB white (1, 1, 1), i.e. the row sums of
#: :data:`SRGB_TO_XYZ` = D65 as IEC 61966-2-1 gives it (0.9505, 1.0000, 1.0890). Using the row
#: sums makes every neutral grey land exactly on a* = b* = 0.
D65_WHITE_XYZ = tuple(sum(row) for row in SRGB_TO_XYZ)
#: CIE 15:2004, eq. 8.4-8.6: f(t) = t^(1/3) above (6/29)³, else t / (3·(6/29)²) + 4/29.
LAB_DELTA = 6.0 / 29.0
LAB_L_SCALE = 116.0  # L* = 116·f(Y/Yn) − 16
LAB_L_OFFSET = 16.0
LAB_A_SCALE = 500.0  # a* = 500·(f(X/Xn) − f(Y/Yn))
LAB_B_SCALE = 200.0  # b* = 200·(f(Y/Yn) − f(Z/Zn))


def linear_rgb_to_lab(linear: torch.Tensor) -> torch.Tensor:
    """Linear sRGB-primaries RGB ``(..., 3, H, W)`` → CIELAB (D65 white), channels on dim −3.

    Values outside [0, 1] are not clamped: below (6/29)³ the CIE function is linear, so negative
    values (demosaicing overshoot) map to finite L*.

    Example:
        >>> linear_rgb_to_lab(torch.ones(3, 1, 1)).flatten()
        tensor([100.,   0.,   0.])
    """
    matrix = torch.tensor(SRGB_TO_XYZ, dtype=linear.dtype, device=linear.device)
    white = torch.tensor(D65_WHITE_XYZ, dtype=linear.dtype, device=linear.device)
    xyz = torch.einsum("ij,...jhw->...ihw", matrix, linear) / white[:, None, None]
    threshold = LAB_DELTA**3
    f = torch.where(
        xyz > threshold,
        xyz.clamp_min(threshold).pow(1.0 / 3.0),
        xyz / (3 * LAB_DELTA**2) + 4.0 / 29.0,
    )
    fx, fy, fz = f.unbind(-3)
    lightness = LAB_L_SCALE * fy - LAB_L_OFFSET
    return torch.stack([lightness, LAB_A_SCALE * (fx - fy), LAB_B_SCALE * (fy - fz)], dim=-3)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65 white) ``(..., 3, H, W)`` → linear sRGB-primaries RGB: the inverse of :func:`linear_rgb_to_lab`.

    Colours outside the sRGB gamut come back outside [0, 1] (not clamped).

    Example:
        >>> lab_to_linear_rgb(torch.tensor([100.0, 0.0, 0.0]).view(3, 1, 1)).flatten()
        tensor([1.0000, 1.0000, 1.0000])
    """
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + LAB_L_OFFSET) / LAB_L_SCALE
    f = torch.stack([fy + a / LAB_A_SCALE, fy, fy - b / LAB_B_SCALE], dim=-3)
    # The inverse of f: t³ above 6/29, else 3·(6/29)²·(t − 4/29) (CIE 15:2004).
    xyz = torch.where(f > LAB_DELTA, f.pow(3), 3 * LAB_DELTA**2 * (f - 4.0 / 29.0))
    white = torch.tensor(D65_WHITE_XYZ, dtype=lab.dtype, device=lab.device)
    inverse = torch.linalg.inv(torch.tensor(SRGB_TO_XYZ, dtype=torch.float64)).to(lab.dtype).to(lab.device)
    return torch.einsum("ij,...jhw->...ihw", inverse, xyz * white[:, None, None])


def srgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded RGB in [0, 1] → CIELAB (D65 white), channels on dim −3.

    Pipeline: sRGB decode (IEC 61966-2-1, :func:`unisp.isp.gamma.srgb_decode`, which clamps to
    [0, 1]) → :func:`unisp.isp.lab.linear_rgb_to_lab` (XYZ with the IEC 61966-2-1 primaries,
    CIELAB relative to D65, CIE 15:2004).

    Args:
        image: ``(..., 3, H, W)`` sRGB values.

    Returns:
        ``(..., 3, H, W)`` with L* in [0, 100] and a*, b* on dim −3.

    Example:
        >>> srgb_to_lab(torch.ones(3, 1, 1)).flatten()
        tensor([100.,   0.,   0.])
    """
    if image.dim() < 3 or image.shape[-3] != 3:
        raise UnispError(f"sRGB → Lab needs (..., 3, H, W) images, got {tuple(image.shape)}")
    return linear_rgb_to_lab(srgb_decode(image))
