"""Shared fixtures of the malformed-input corpus: a valid model file, and a per-case time limit."""

from __future__ import annotations

import signal

import pytest

from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model

#: Seconds one malformed case may take in-process; nearly every case needs well under a second
#: (the slowest, a few seconds), so running into this means a hang (e.g. a reader looping on a bad
#: header), with room for a heavily loaded machine.
CASE_TIMEOUT_S = 60


class CaseTimeout(Exception):
    """A case ran past :data:`CASE_TIMEOUT_S`."""


@pytest.fixture(autouse=True)
def case_timeout():
    """Fail a case that runs past :data:`CASE_TIMEOUT_S` (SIGALRM; main thread, POSIX only)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise CaseTimeout(f"case ran past {CASE_TIMEOUT_S} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """A valid Efficient ISP model file (random weights)."""
    path = tmp_path_factory.mktemp("model") / "efficient.safetensors"
    save_model(path, build_model("efficient_isp"), name="efficient_isp")
    return path
