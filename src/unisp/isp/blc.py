"""BLC: black-level correction and normalisation of packed Bayer planes to [0, 1].

``(x - black_c) / (white - black_c)`` per canonical plane ``c`` in ``(R, Gr, Gb, B)``, the same
formula as :meth:`unisp.raw.frame.RawFrame.normalized`, batched and on any device.
"""

from __future__ import annotations

import torch

from unisp.errors import RawFormatError


def _per_plane(value: torch.Tensor | float | tuple | list, like: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar, ``(4,)``, ``(B,)`` (white only) or ``(B, 4)`` value as a ``(B or 1, 4 or 1, 1, 1)`` tensor."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    batch = like.shape[0]
    if t.ndim == 0:
        return t.view(1, 1, 1, 1)
    if t.ndim == 1 and t.shape[0] == 4 and name == "black":
        return t.view(1, 4, 1, 1)
    if t.ndim == 1 and t.shape[0] == batch and name == "white":
        return t.view(batch, 1, 1, 1)
    if t.ndim == 2 and t.shape == (batch, 4):
        return t.view(batch, 4, 1, 1)
    raise RawFormatError(
        f"{name} level of shape {tuple(t.shape)} does not fit planes of shape {tuple(like.shape)} "
        f"(expected a number, {'(4,)' if name == 'black' else f'({batch},)'} or ({batch}, 4))"
    )


def normalize(
    planes: torch.Tensor,
    black: torch.Tensor | float | tuple | list,
    white: torch.Tensor | float | tuple | list,
    clip: bool = True,
) -> torch.Tensor:
    """Subtract the black level and scale so that the white level maps to 1.

    Args:
        planes: ``(B, 4, h, w)`` raw sensor values in canonical ``(R, Gr, Gb, B)`` order (any dtype).
        black: black level: a number, ``(4,)`` per plane, or ``(B, 4)`` per image and plane.
        white: white (saturation) level: a number, ``(B,)`` or ``(B, 4)``.
        clip: clamp the result to [0, 1] (values below black are noise, above white are clipped anyway).

    Returns:
        ``(B, 4, h, w)`` floating-point tensor (float32 for integer input, else the input dtype).

    Example:
        >>> normalize(torch.full((1, 4, 1, 1), 543.5), 64, 1023)[0, :, 0, 0]
        tensor([0.5000, 0.5000, 0.5000, 0.5000])
    """
    if planes.ndim != 4 or planes.shape[1] != 4:
        raise RawFormatError(f"packed planes must have shape (B, 4, h, w), got {tuple(planes.shape)}")
    if not planes.is_floating_point():
        planes = planes.to(torch.float32)
    b = _per_plane(black, planes, "black")
    w = _per_plane(white, planes, "white")
    if torch.any(w <= b):
        raise RawFormatError("white level must exceed every black level")
    out = (planes - b) / (w - b)
    return out.clamp(0.0, 1.0) if clip else out
