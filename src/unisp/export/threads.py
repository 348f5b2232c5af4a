"""How many CPU threads a backend may be asked for: at most one per CPU this process may run on.

Asking OpenMP, ONNX Runtime, LiteRT or the fused kernel for far more threads than the machine has
only slows them down, and past some thousands it crashes the process (``torch.set_num_threads``
with 100 000 threads ends in a segmentation fault), so a thread count from the user is checked here
before any runtime sees it.
"""

from __future__ import annotations

import os

from unisp.errors import ConfigError


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_threads(threads: int | None, what: str = "threads") -> None:
    """Refuse a thread count below 1 or above :func:`available_cpus` (``None``: the runtime's default).

    Args:
        threads: the count asked for.
        what: the flag or argument it came from, named in the message (e.g. ``"--threads"``).

    Raises:
        ConfigError: naming ``what`` and, for too many, how many CPUs the machine has.

    Example:
        >>> check_threads(None)
        >>> check_threads(1)
        >>> check_threads(0, "--threads")
        Traceback (most recent call last):
            ...
        unisp.errors.ConfigError: --threads must be at least 1, got 0
    """
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"{what} must be at least 1, got {threads}")
    cpus = available_cpus()
    if threads > cpus:
        raise ConfigError(f"{what} {threads}: this machine has {cpus} CPU(s) for unisp; use at most {cpus}")
