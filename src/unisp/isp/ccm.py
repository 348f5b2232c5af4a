"""CCM: the colour-correction matrix from white-balanced camera RGB to linear sRGB."""

from __future__ import annotations

import torch

from unisp.errors import RawFormatError


def apply_ccm(rgb: torch.Tensor, matrix: torch.Tensor | None) -> torch.Tensor:
    """Multiply every pixel's RGB vector by a 3×3 matrix: ``out[c] = sum_k matrix[c, k] * rgb[k]``.

    Args:
        rgb: ``(B, 3, H, W)`` linear camera RGB (white-balanced).
        matrix: ``(B, 3, 3)`` or ``(3, 3)`` camera→sRGB matrices, or None when unknown: the
            identity, camera RGB taken as linear sRGB (the input is returned as it is).

    Returns:
        ``(B, 3, H, W)`` linear sRGB, not clipped.

    Example:
        >>> apply_ccm(torch.ones(1, 3, 1, 1), torch.eye(3) * 2)[0, :, 0, 0]
        tensor([2., 2., 2.])
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise RawFormatError(f"RGB images must have shape (B, 3, H, W), got {tuple(rgb.shape)}")
    if matrix is None:
        return rgb
    matrix = torch.as_tensor(matrix, dtype=rgb.dtype, device=rgb.device)
    if matrix.ndim == 2:
        matrix = matrix.unsqueeze(0)
    if matrix.ndim != 3 or matrix.shape[-2:] != (3, 3) or matrix.shape[0] not in (1, rgb.shape[0]):
        raise RawFormatError(f"colour matrix must have shape (3, 3) or ({rgb.shape[0]}, 3, 3), got {tuple(matrix.shape)}")
    return torch.einsum("bck,bkhw->bchw", matrix.expand(rgb.shape[0], 3, 3), rgb)
