"""Colour filter arrays, packing a Bayer mosaic into four planes and back.

The package's canonical packed order is ``(R, Gr, Gb, B)`` for every CFA pattern, where
``Gr`` is the green pixel that shares a row with red and ``Gb`` the green pixel that shares
a row with blue. For an RGGB mosaic this is ``(raw[0::2, 0::2], raw[0::2, 1::2],
raw[1::2, 0::2], raw[1::2, 1::2])``.

Zurich RAW-to-RGB, PyNET, the Mobile AI challenges and the paper's released weights use a
different order, which their code names ``(B, Gb, R, Gr)`` but which, on an RGGB mosaic, is
``(raw[1::2, 1::2], raw[0::2, 1::2], raw[0::2, 0::2], raw[1::2, 0::2])``: their "Gb" is the
green on the red row (our ``Gr``) and their "Gr" the green on the blue row (our ``Gb``).
:data:`REFERENCE_ORDER` holds that order as indices into the canonical one, so that
``packed[REFERENCE_ORDER]`` converts canonical → reference and
``packed[REFERENCE_INVERSE]`` converts back.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

import numpy as np
import torch

from unisp.errors import RawFormatError

Array = TypeVar("Array", np.ndarray, torch.Tensor)

#: Names of the packed planes in canonical order.
CANONICAL_CHANNELS: tuple[str, ...] = ("R", "Gr", "Gb", "B")

#: Canonical indices of the reference (ZRR / PyNET / MAI / paper) packed order.
REFERENCE_ORDER: tuple[int, ...] = (3, 1, 0, 2)
#: Inverse permutation of :data:`REFERENCE_ORDER` (reference → canonical).
REFERENCE_INVERSE: tuple[int, ...] = tuple(int(i) for i in np.argsort(REFERENCE_ORDER))


class CFA(str, Enum):
    """The four Bayer patterns, named by the colours of the top-left 2×2 block read row by row."""

    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"

    @classmethod
    def parse(cls, value: str | CFA) -> CFA:
        """Parse a pattern name case-insensitively; unknown names raise :class:`RawFormatError`."""
        if isinstance(value, CFA):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            allowed = ", ".join(c.value for c in cls)
            raise RawFormatError(f"unknown CFA pattern {value!r} (allowed: {allowed})") from None

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """(row, col) offset inside the 2×2 tile of R, Gr, Gb, B (canonical order)."""
        return _OFFSETS[self]

    def colour_index(self) -> np.ndarray:
        """2×2 array with 0 (red), 1 (green) or 2 (blue) at each tile position."""
        idx = np.zeros((2, 2), dtype=np.int64)
        for colour, (r, c) in zip((0, 1, 1, 2), self.offsets):
            idx[r, c] = colour
        return idx


_OFFSETS: dict[CFA, tuple[tuple[int, int], ...]] = {
    #            R        Gr       Gb       B
    CFA.RGGB: ((0, 0), (0, 1), (1, 0), (1, 1)),
    CFA.BGGR: ((1, 1), (1, 0), (0, 1), (0, 0)),
    CFA.GRBG: ((0, 1), (0, 0), (1, 1), (1, 0)),
    CFA.GBRG: ((1, 0), (1, 1), (0, 0), (0, 1)),
}


def crop_to_even(mosaic: Array) -> Array:
    """Crop the last two dimensions to even sizes by dropping the last row/column (keeps the CFA phase)."""
    h, w = mosaic.shape[-2:]
    return mosaic[..., : h - h % 2, : w - w % 2]


def _stack(planes: list, like: Array, dim: int) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.stack(planes, dim=dim)
    return np.stack(planes, axis=dim)


def pack(mosaic: Array, cfa: CFA | str) -> Array:
    """Pack a Bayer mosaic ``(..., H, W)`` into ``(..., 4, H/2, W/2)`` canonical ``(R, Gr, Gb, B)`` planes.

    Odd heights or widths are cropped to even first. Works on NumPy arrays and torch tensors alike.

    Example:
        >>> m = np.arange(16).reshape(4, 4)
        >>> pack(m, "RGGB")[:, 0, 0]
        array([0, 1, 4, 5])
    """
    cfa = CFA.parse(cfa)
    if mosaic.ndim < 2:
        raise RawFormatError(f"a Bayer mosaic needs at least 2 dimensions, got shape {tuple(mosaic.shape)}")
    mosaic = crop_to_even(mosaic)
    if mosaic.shape[-1] == 0 or mosaic.shape[-2] == 0:
        raise RawFormatError(f"mosaic of shape {tuple(mosaic.shape)} is smaller than one 2×2 CFA tile")
    planes = [mosaic[..., r::2, c::2] for r, c in cfa.offsets]
    return _stack(planes, mosaic, dim=mosaic.ndim - 2)


def unpack(packed: Array, cfa: CFA | str) -> Array:
    """Inverse of :func:`pack`: ``(..., 4, h, w)`` canonical planes → ``(..., 2h, 2w)`` mosaic."""
    cfa = CFA.parse(cfa)
    if packed.ndim < 3 or packed.shape[-3] != 4:
        raise RawFormatError(f"packed Bayer data must have shape (..., 4, h, w), got {tuple(packed.shape)}")
    *lead, _, h, w = packed.shape
    if isinstance(packed, torch.Tensor):
        out = packed.new_empty((*lead, 2 * h, 2 * w))
    else:
        out = np.empty((*lead, 2 * h, 2 * w), dtype=packed.dtype)
    for i, (r, c) in enumerate(cfa.offsets):
        out[..., r::2, c::2] = packed[..., i, :, :]
    return out


def to_reference_order(packed: Array) -> Array:
    """Canonical ``(R, Gr, Gb, B)`` planes ``(..., 4, h, w)`` → the reference ``(B, Gb, R, Gr)`` order."""
    return packed[..., list(REFERENCE_ORDER), :, :]


def from_reference_order(packed: Array) -> Array:
    """Reference ``(B, Gb, R, Gr)`` planes → canonical ``(R, Gr, Gb, B)``; exact inverse of :func:`to_reference_order`."""
    return packed[..., list(REFERENCE_INVERSE), :, :]


def site_masks(cfa: CFA | str, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(4, H, W)`` masks that are 1 at the R, Gr, Gb and B sites (canonical order) of ``cfa``."""
    cfa = CFA.parse(cfa)
    eye = torch.eye(4, device=device, dtype=dtype)[:, :, None, None]
    tiles = eye.expand(4, 4, (height + 1) // 2, (width + 1) // 2)
    return unpack(tiles, cfa)[:, :height, :width]


def colour_masks(cfa: CFA | str, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(3, H, W)`` masks that are 1 where the mosaic samples red, green and blue respectively."""
    r, gr, gb, b = site_masks(cfa, height, width, device, dtype)
    return torch.stack([r, gr + gb, b])
