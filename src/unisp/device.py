"""Choosing where to compute: the one place that turns a device name into a torch device."""

from __future__ import annotations

import torch

from unisp.errors import UnispError


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UnispError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnispError(f"device {name!r} requested but CUDA is not available")
    return device
