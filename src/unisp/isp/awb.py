"""AWB: white-balance gains on packed Bayer planes, and the gray-world estimate of them.

Gains are ``(R, G, B)`` multipliers normalised to G = 1, the convention of
:attr:`unisp.raw.frame.RawFrame.wb_gains`; the green gain applies to both ``Gr`` and ``Gb``.

A learned ISP's input may be white-balanced too (``data.input_wb``, :func:`input_gains`): a
generator that sees a few pixels around each output cannot tell a tungsten scene from an orange
wall, but the file's as-shot white balance can.
"""

from __future__ import annotations

import logging
from typing import Literal, get_args

import torch

from unisp.errors import RawFormatError
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: Canonical plane (R, Gr, Gb, B) → index of its gain in an (R, G, B) triple.
PLANE_TO_GAIN: tuple[int, int, int, int] = (0, 1, 1, 2)
#: A 2×2 site with any plane at or above this normalised value is saturated and ignored by gray
#: world: a clipped channel no longer measures the scene's colour (its ratio to the others is wrong).
SATURATION_LEVEL = 0.98
#: Gray-world gains are clamped to [1/MAX_GAIN, MAX_GAIN]: an image dominated by one colour (a
#: blue sky, a red wall) otherwise gets absurd gains. 8× is wider than any daylight/tungsten
#: sensor gain we know of (typical R/B gains lie between 1 and 4).
MAX_GAIN = 8.0
#: Floor on channel means so a black (or fully saturated) image gives finite gains.
_EPS = 1e-6
#: What a learned ISP's packed input is white-balanced with (``data.input_wb``, a model file's
#: ``input_wb``): ``none`` (the paper: the planes as normalised) or ``as_shot`` (the file's as-shot
#: gains normalised to green, planes clipped to [0, 1] after them as a classical pipeline clips).
InputWhiteBalance = Literal["none", "as_shot"]
INPUT_WB_MODES: tuple[str, ...] = get_args(InputWhiteBalance)


def _gains_as_planes(gains: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    gains = torch.as_tensor(gains, dtype=planes.dtype, device=planes.device)
    if gains.ndim == 1:
        gains = gains.unsqueeze(0)
    if gains.ndim != 2 or gains.shape[-1] != 3 or gains.shape[0] not in (1, planes.shape[0]):
        raise RawFormatError(
            f"white-balance gains must have shape (3,) or ({planes.shape[0]}, 3), got {tuple(gains.shape)}"
        )
    return gains[:, list(PLANE_TO_GAIN)].view(gains.shape[0], 4, 1, 1)


def _check_planes(planes: torch.Tensor) -> None:
    if planes.ndim != 4 or planes.shape[1] != 4:
        raise RawFormatError(f"packed planes must have shape (B, 4, h, w), got {tuple(planes.shape)}")


def apply_white_balance(planes: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Multiply each canonical plane by its colour's gain.

    Args:
        planes: ``(B, 4, h, w)`` normalised planes in canonical ``(R, Gr, Gb, B)`` order.
        gains: ``(B, 3)`` or ``(3,)`` ``(R, G, B)`` multipliers.

    Returns:
        ``(B, 4, h, w)`` white-balanced planes (not clipped).

    Example:
        >>> apply_white_balance(torch.ones(1, 4, 1, 1), torch.tensor([2.0, 1.0, 1.5]))[0, :, 0, 0]
        tensor([2.0000, 1.0000, 1.0000, 1.5000])
    """
    _check_planes(planes)
    return planes * _gains_as_planes(gains, planes)


def gray_world_gains(planes: torch.Tensor, saturation: float = SATURATION_LEVEL) -> torch.Tensor:
    """Gray-world white balance: gains that make the mean R, G and B of the image equal.

    Sites (2×2 tiles) with any plane at or above ``saturation`` are left out of the means; if an
    image has no unsaturated site, all of it is used. Gains are clamped to ``[1/MAX_GAIN, MAX_GAIN]``.

    Args:
        planes: ``(B, 4, h, w)`` normalised planes in canonical ``(R, Gr, Gb, B)`` order.
        saturation: normalised level from which a site counts as saturated.

    Returns:
        ``(B, 3)`` gains ``(mean_G / mean_R, 1, mean_G / mean_B)``.

    Example:
        >>> planes = torch.tensor([0.2, 0.4, 0.4, 0.1]).view(1, 4, 1, 1)
        >>> gray_world_gains(planes)
        tensor([[2., 1., 4.]])
    """
    _check_planes(planes)
    valid = (planes < saturation).all(dim=1, keepdim=True).to(planes.dtype)  # (B, 1, h, w)
    none_valid = valid.flatten(1).sum(1) == 0
    valid = torch.where(none_valid.view(-1, 1, 1, 1), torch.ones_like(valid), valid)
    sums = (planes * valid).flatten(2).sum(-1)  # (B, 4)
    means = sums / valid.flatten(1).sum(1, keepdim=True)
    red, green, blue = means[:, 0], 0.5 * (means[:, 1] + means[:, 2]), means[:, 3]
    green = green.clamp_min(_EPS)
    gains = torch.stack([green / red.clamp_min(_EPS), torch.ones_like(green), green / blue.clamp_min(_EPS)], dim=1)
    return gains.clamp(1.0 / MAX_GAIN, MAX_GAIN)


def input_gains(frame: RawFrame, mode: str) -> torch.Tensor:
    """The per-plane gains a learned ISP's input is white-balanced with (``data.input_wb``).

    The illuminant is divided out: :attr:`~unisp.raw.frame.RawFrame.wb_gains` are the multipliers
    that do so (the inverse of the illuminant's colour, like the inverse of a DNG's AsShotNeutral),
    so the planes are *multiplied* by them, normalised to green (a synthetic
    frame's gains hold its digital exposure gain in all three; only their ratios are white balance).

    Args:
        frame: the RAW frame.
        mode: ``"none"`` (gains 1) or ``"as_shot"`` (the frame's; 1 where it has none, see
            :func:`lacks_input_gains`).

    Returns:
        ``(4,)`` float32 gains in canonical ``(R, Gr, Gb, B)`` order: ``(r/g, 1, 1, b/g)``.

    Example:
        >>> import numpy as np
        >>> frame = RawFrame(np.zeros((2, 2), np.uint16), "RGGB", (0, 0, 0, 0), 1023, wb_gains=(2.0, 1.0, 1.5))
        >>> input_gains(frame, "as_shot")
        tensor([2.0000, 1.0000, 1.0000, 1.5000])
    """
    if mode not in INPUT_WB_MODES:
        raise RawFormatError(f"input white balance must be one of {', '.join(INPUT_WB_MODES)}, got {mode!r}")
    if mode == "none" or frame.wb_gains is None:
        return torch.ones(4)
    red, green, blue = frame.wb_gains
    return torch.tensor([red / green, 1.0, 1.0, blue / green])


def balance_input(planes: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Planes times their :func:`input_gains`, clipped to [0, 1].

    Args:
        planes: ``(..., 4, h, w)`` normalised planes in canonical ``(R, Gr, Gb, B)`` order.
        gains: ``(4,)`` per-plane gains.

    Returns:
        The white-balanced planes, of ``planes``' shape, dtype and device.
    """
    gains = gains.to(device=planes.device, dtype=planes.dtype).view(4, 1, 1)
    return (planes * gains).clamp(0.0, 1.0)


def lacks_input_gains(frame: RawFrame, mode: str) -> bool:
    """Whether ``mode`` asks for the as-shot white balance that ``frame`` does not record."""
    return mode == "as_shot" and frame.wb_gains is None


def warn_lacking_gains(lacking: int, total: int, what: str) -> None:
    """Log ONE warning, for a whole run, saying how many of its files lacked the as-shot white
    balance their model's input asks for (:func:`lacks_input_gains`); nothing when none did.

    Args:
        lacking: how many lacked it.
        total: how many files were counted.
        what: what those files were, for the message (``"files processed"``).
    """
    if lacking:
        log.warning(
            "input white balance as_shot: %d of %d %s record no as-shot white balance; "
            "their planes went in unbalanced (gains 1)", lacking, total, what,
        )
