"""Choosing where to compute: the one place that turns a device name into a torch device."""

from __future__ import annotations

import re

import torch

from unisp.errors import UnispError

#: The device names unisp accepts; anything torch knows beyond these (``mps``, ``xpu``, ``meta``)
#: is refused, since no part of unisp is written or tested for it.
DEVICE_NAMES = "auto, cpu, cuda, cuda:N"


def available_devices() -> list[str]:
    """Every device this machine can compute on: ``cpu`` and ``cuda:0`` … ``cuda:N-1``."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given.

    Raises :class:`UnispError` for any other name, and for a CUDA device this machine does not
    have, saying which devices it has.
    """
    devices = available_devices()
    if name == "auto":
        return torch.device("cuda" if len(devices) > 1 else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    found = re.fullmatch(r"cuda(?::(\d+))?", name)
    if found and (len(devices) > 1 if found.group(1) is None else f"cuda:{int(found.group(1))}" in devices):
        return torch.device(name)
    if not found and not _is_torch_device(name):
        raise UnispError(f"unknown device {name!r} (use {DEVICE_NAMES}); this machine has: {', '.join(devices)}")
    if not found:  # mps, xpu, meta: torch knows them, unisp does not run on them
        raise UnispError(f"device {name!r}: unisp runs on the CPU or CUDA only; this machine has: {', '.join(devices)}")
    raise UnispError(f"device {name!r} is not available here; this machine has: {', '.join(devices)}")


def _is_torch_device(name: str) -> bool:
    """Whether torch parses ``name`` as a device (``mps``, ``xpu:1``, ``meta``), available or not."""
    try:
        torch.device(name)
    except (RuntimeError, TypeError):
        return False
    return True
