"""Choosing where to compute: the one place that turns a device name into a torch device."""

from __future__ import annotations

import re

import torch

from unisp.errors import UnispError

#: The device names unisp accepts; anything torch knows beyond these (``mps``, ``xpu``, ``meta``)
#: is refused, since no part of unisp is written or tested for it.
DEVICE_NAMES = "auto, cpu, cuda, cuda:N"
#: ``cuda`` or ``cuda:N`` (N in group 1).
_CUDA_NAME = r"cuda(?::(\d+))?"


def available_devices() -> list[str]:
    """Every device this machine can compute on: ``cpu`` and ``cuda:0`` … ``cuda:N-1``."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`UnispError` for any other name, and for a CUDA device this machine does not
    have, saying which devices it has.
    """
    check_device_name(name)
    devices = available_devices()
    if name == "auto":
        return torch.device("cuda" if len(devices) > 1 else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    found = re.fullmatch(_CUDA_NAME, name)
    if found and (len(devices) > 1 if found.group(1) is None else f"cuda:{int(found.group(1))}" in devices):
        return torch.device(name)
    raise UnispError(f"device {name!r} is not available here; this machine has: {', '.join(devices)}")


def check_device_name(name: str) -> str:
    """``name`` if it is a device name unisp accepts (``auto``, ``cpu``, ``cuda``, ``cuda:N``),
    whether or not this machine has that device; the command line checks ``--device`` with it.

    Raises:
        UnispError: any other name, saying which devices this machine has (as :func:`resolve_device`).
    """
    if name in ("auto", "cpu") or re.fullmatch(_CUDA_NAME, name):
        return name
    devices = ", ".join(available_devices())
    if not _is_torch_device(name):
        raise UnispError(f"unknown device {name!r} (use {DEVICE_NAMES}); this machine has: {devices}")
    # mps, xpu, meta: torch knows them, unisp does not run on them
    raise UnispError(f"device {name!r}: unisp runs on the CPU or CUDA only; this machine has: {devices}")


def _is_torch_device(name: str) -> bool:
    """Whether torch parses ``name`` as a device (``mps``, ``xpu:1``, ``meta``), available or not."""
    try:
        torch.device(name)
    except (RuntimeError, TypeError):
        return False
    return True
