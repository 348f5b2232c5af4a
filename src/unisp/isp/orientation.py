"""Applying the EXIF orientation recorded in a RAW file to a rendered image."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from unisp.errors import RawFormatError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: EXIF orientation codes unisp honours: 1 as stored, 3 rotated 180°, 6 needs 90° clockwise, 8 needs 90° counter-clockwise.
SUPPORTED_ORIENTATIONS = (1, 3, 6, 8)


#: Quarter turns counter-clockwise (numpy/torch ``rot90`` convention) that make each code upright.
_QUARTER_TURNS = {1: 0, 3: 2, 6: -1, 8: 1}


def apply_orientation(image: Array, orientation: int, dims: tuple[int, int] = (-2, -1)) -> Array:
    """Rotate ``image`` so it displays upright for EXIF ``orientation`` (1, 3, 6 or 8).

    Works on torch tensors and NumPy arrays; ``dims`` are the (row, column) axes, ``(-2, -1)``
    for ``(..., H, W)`` tensors and ``(0, 1)`` for ``(H, W, C)`` arrays. Code 6 means the stored
    image must be turned 90° clockwise, 8 counter-clockwise, 3 by 180°.

    Example:
        >>> apply_orientation(torch.tensor([[1, 2], [3, 4]]), 6)
        tensor([[3, 1],
                [4, 2]])
    """
    if orientation not in _QUARTER_TURNS:
        raise RawFormatError(f"unsupported orientation code {orientation} (supported: {SUPPORTED_ORIENTATIONS})")
    turns = _QUARTER_TURNS[orientation]
    if turns == 0:
        return image
    if isinstance(image, torch.Tensor):
        return torch.rot90(image, turns, dims=dims)
    return np.ascontiguousarray(np.rot90(image, turns, axes=dims))
