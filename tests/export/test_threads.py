"""Thread counts from the user are bounded by the CPUs this process may use (100 000 used to segfault)."""

from __future__ import annotations

import os

import pytest

from unisp.errors import ConfigError
from unisp.export import threads
from unisp.export.fused import FusedISP
from unisp.export.latency import run_latency
from unisp.export.threads import available_cpus, check_threads
from unisp.models.registry import build_model


def test_available_cpus_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cpus() == expected >= 1


def test_check_threads_known_values(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    for ok in (None, 1, 4):
        check_threads(ok)
    with pytest.raises(ConfigError, match=r"^--threads 5: this machine has 4 CPU\(s\) for unisp; use at most 4$"):
        check_threads(5, "--threads")
    with pytest.raises(ConfigError, match=r"^threads must be at least 1, got 0$"):
        check_threads(0)


def test_runtimes_refuse_more_threads_than_cpus():
    too_many = available_cpus() + 1
    with pytest.raises(ConfigError, match=f"threads {too_many}"):
        FusedISP(build_model("efficient_isp"), threads=too_many)
    with pytest.raises(ConfigError, match=f"threads {too_many}"):  # before torch.set_num_threads sees it
        run_latency(build_model("efficient_isp"), height=8, width=8, threads=too_many, backends=["torch"])
