"""Applying the EXIF orientation recorded in a RAW file to a rendered image."""

from __future__ import annotations

import torch

from unisp.errors import RawFormatError

#: EXIF orientation codes unisp honours: 1 as stored, 3 rotated 180°, 6 needs 90° clockwise, 8 needs 90° counter-clockwise.
SUPPORTED_ORIENTATIONS = (1, 3, 6, 8)


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Rotate ``(..., H, W)`` so it displays upright for EXIF ``orientation`` (1, 3, 6 or 8).

    Example:
        >>> apply_orientation(torch.tensor([[1, 2], [3, 4]]), 6)
        tensor([[3, 1],
                [4, 2]])
    """
    if orientation == 1:
        return image
    if orientation == 3:
        return torch.rot90(image, 2, dims=(-2, -1))
    if orientation == 6:  # stored rotated 90° counter-clockwise: turn it clockwise
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    raise RawFormatError(f"unsupported orientation code {orientation} (supported: {SUPPORTED_ORIENTATIONS})")
