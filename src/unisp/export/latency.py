"""Latency of one generator on one input through every CPU backend, next to the machine's sgemm rate.

The same packed input runs through every runtime of :mod:`unisp.export.runtimes`: PyTorch
(``torch``, eager), ``torch.compile``, ONNX Runtime, the TFLite interpreter (XNNPACK) and the
fused C++ kernel (:mod:`unisp.export.fused`, in fp32 and, on CPUs with AVX512-BF16, as
``fused-bf16`` with bf16 operands and fp32 accumulation). Each backend is built for the input's
shape first (export, compilation; not timed), warmed up, then timed ``repeats`` times; the median
is reported as milliseconds, output megapixels per second and achieved GFLOP/s. FLOPs count
2 per multiply-accumulate, with MACs from :func:`unisp.models.registry.model_info` (convolution
weight × input products only). The machine's single-precision matrix-multiply rate is measured
in the same run (median of ``torch.mm`` on two large float32 matrices, same thread count), and
every backend's GFLOP/s is also given as a fraction of it: how close a backend gets to the rate
the machine sustains on the friendliest fp32 workload there is.

Every output is compared with torch's (largest absolute difference and PSNR, peak 1), so a fast
row is also a correct one. Backends that cannot run here (no compiler for ``torch.compile`` or the fused kernel,
ONNX Runtime or the ``[mobile]`` extra not installed: :class:`unisp.export.runtimes.RuntimeUnavailable`)
get a row saying why.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.export.graph import check_model_shape, check_shape
from unisp.export.runtimes import NAMES, REFERENCE, RuntimeUnavailable, build_runner
from unisp.export.threads import check_threads
from unisp.models.base import PACKED_CHANNELS
from unisp.models.registry import MAC_CONVENTION, model_info

log = logging.getLogger(__name__)

#: ``--size`` default: the issue's 12-megapixel frame (4000 × 3000).
DEFAULT_SIZE = "12MP"
#: Aspect ratio (width : height) of a size given in megapixels: the 4:3 of phone and compact sensors.
MEGAPIXEL_ASPECT = (4, 3)
#: Edge of the square float32 matrices whose product measures the sgemm rate: 17 GFLOP per
#: product, large enough for MKL to run at its asymptotic rate (1024 and 4096 gave the same
#: single-thread rate on the 2-core development machine), small enough for a few repeats to take ~1 s.
SGEMM_SIZE = 2048
#: FLOPs per multiply-accumulate (one multiply, one add), the usual convention for GFLOP/s.
FLOP_PER_MAC = 2
#: Seed of the synthetic input; the timing does not depend on the pixel values (no branches on data).
INPUT_SEED = 0
#: ``allocator`` choices of :func:`run_latency`.
ALLOCATORS = ("keep", "default")
#: glibc ``mallopt`` parameters (``malloc.h``) and the values ``allocator="keep"`` sets: serve every
#: allocation from the heap (no per-block mmap) and never trim the heap back to the OS.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_MMAP_MAX = 0
KEEP_TRIM_THRESHOLD = 2**31 - 1

_SIZE_MP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*mp\s*$", re.IGNORECASE)
_SIZE_HXW = re.compile(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$", re.IGNORECASE)


def parse_size(text: str) -> tuple[int, int]:
    """An output size as ``(height, width)`` in full-resolution pixels, both even.

    Args:
        text: ``"12MP"`` (megapixels, 4:3 landscape, each side rounded to a multiple of 2; 12MP is
            exactly 3000 × 4000) or ``"HxW"`` such as ``"3000x4000"`` (height first, as ``unisp
            export --shape``).

    Returns:
        ``(height, width)``.

    Raises:
        ConfigError: unparseable, zero, odd, too small (a Bayer image is at least 2 × 2) or above
            :data:`unisp.export.graph.MAX_MEGAPIXELS`.
    """
    if m := _SIZE_HXW.match(text):
        height, width = int(m.group(1)), int(m.group(2))
    elif m := _SIZE_MP.match(text):
        pixels = float(m.group(1)) * 1e6
        aw, ah = MEGAPIXEL_ASPECT
        unit = math.sqrt(pixels / (aw * ah))
        width, height = 2 * round(aw * unit / 2), 2 * round(ah * unit / 2)
    else:
        raise ConfigError(f"size {text!r}: expected megapixels like 12MP or HxW like 3000x4000")
    try:
        check_shape((height, width))
    except ConfigError as e:
        raise ConfigError(f"size {text!r}: {e}") from None
    return height, width


def keep_freed_memory() -> str:
    """Tell glibc to keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves blocks above 32 MB with a fresh ``mmap`` and unmaps them when freed, so
    every 12 MP run page-faults its 144 MB output (and eager its intermediates) in afresh: about
    70 ms of a 165 ms single-core fused run on the development machine, time spent by the OS
    zeroing pages, not by the backend. Keeping freed memory, as PyTorch's caching allocator does on
    CUDA and ONNX Runtime's arena does for itself, times the backends' own work. Process-wide and
    not undone.

    Returns:
        What was done, for the report.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        if libc.mallopt(M_MMAP_MAX, KEEP_MMAP_MAX) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD):
            return "glibc keeping freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2³¹−1)"
        return "mallopt refused: allocator unchanged"
    except (OSError, AttributeError):
        return "not glibc: allocator unchanged"


def measure_sgemm(repeats: int = 5, size: int = SGEMM_SIZE) -> list[float]:
    """The machine's single-precision matrix-multiply rate, one GFLOP/s figure per timed product.

    Args:
        repeats: timed products (after one untimed warm-up).
        size: edge of the square float32 matrices (``2 size³`` FLOP per product).

    Returns:
        GFLOP/s of each product (take the median).
    """
    gen = torch.Generator().manual_seed(INPUT_SEED)
    a = torch.rand(size, size, generator=gen)
    b = torch.rand(size, size, generator=gen)
    c = torch.empty(size, size)
    torch.mm(a, b, out=c)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(FLOP_PER_MAC * size**3 / (time.perf_counter() - start) / 1e9)
    return rates


@dataclass
class BackendTiming:
    """One backend's row.

    Attributes:
        backend: one of :data:`unisp.export.runtimes.NAMES`.
        seconds: wall time of each timed run.
        max_abs_diff: largest absolute difference of its output from torch's (None: not compared).
        psnr_db: PSNR of its output against torch's, peak 1 (None: not compared; inf: identical).
        note: what ran (settings) or, for a skipped backend, why it was skipped.
        skipped: the backend did not run.
    """

    backend: str
    seconds: list[float] = field(default_factory=list)
    max_abs_diff: float | None = None
    note: str = ""
    psnr_db: float | None = None
    skipped: bool = False

    @property
    def median(self) -> float:
        """Median seconds per run."""
        return statistics.median(self.seconds)


@dataclass
class LatencyReport:
    """Everything :func:`run_latency` measured; :meth:`to_markdown` prints it."""

    model: str
    parameters: int
    mac_per_pixel: float
    height: int
    width: int
    threads: int
    repeats: int
    sgemm_gflops: list[float]
    rows: list[BackendTiming]
    files: dict[str, int] = field(default_factory=dict)
    input_note: str = ""
    sgemm_size: int = SGEMM_SIZE
    allocator: str = "default"

    @property
    def megapixels(self) -> float:
        """Output megapixels per run."""
        return self.height * self.width / 1e6

    @property
    def gflop(self) -> float:
        """GFLOP per run (2 per MAC)."""
        return FLOP_PER_MAC * self.mac_per_pixel * self.height * self.width / 1e9

    @property
    def sgemm(self) -> float:
        """Median measured sgemm GFLOP/s."""
        return statistics.median(self.sgemm_gflops)

    def to_markdown(self) -> str:
        """Header lines and a markdown table, one row per backend."""
        lines = [
            f"model: {self.model}, {self.parameters:,} parameters, {self.mac_per_pixel:,.0f} MAC per output pixel "
            f"({self.mac_per_pixel * self.height * self.width / 1e9:.2f} GMAC = {self.gflop:.2f} GFLOP per run)",
            f"MACs: {MAC_CONVENTION}; GFLOP/s counts {FLOP_PER_MAC} FLOP per MAC",
            f"input: {self.input_note or 'packed Bayer'}; output {self.width}×{self.height} ({self.megapixels:.2f} MP)",
            f"threads: {self.threads}; median of {self.repeats} timed runs after warm-up; allocator: {self.allocator}",
            f"sgemm (torch.mm, {self.sgemm_size}² float32, median of {len(self.sgemm_gflops)}): {self.sgemm:.1f} GFLOP/s",
        ]
        if self.files:
            lines.append("files: " + ", ".join(f"{name} {size / 1024:,.1f} KiB" for name, size in self.files.items()))
        lines += [
            "",
            "| backend | median ms | MPix/s | GFLOP/s | of sgemm | vs torch: max abs diff, PSNR | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            if row.skipped:
                lines.append(f"| {row.backend} | — | — | — | — | — | skipped: {row.note} |")
                continue
            rate = self.gflop / row.median
            parts = [f"{row.max_abs_diff:.1e}"] if row.max_abs_diff is not None else []
            parts += [f"{row.psnr_db:.1f} dB"] if row.psnr_db is not None else []
            diff = ", ".join(parts) or "—"
            lines.append(
                f"| {row.backend} | {row.median * 1e3:.1f} | {self.megapixels / row.median:.1f} | {rate:.1f} "
                f"| {rate / self.sgemm:.0%} | {diff} | {row.note} |"
            )
        return "\n".join(lines)


def _as_tensor(out) -> torch.Tensor:
    """A backend's output as a float32 NCHW tensor (runners may return numpy arrays)."""
    return torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).float()


def time_backend(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor | None,
    *,
    repeats: int,
    warmup: int,
    threads: int,
    workdir: Path,
) -> tuple[BackendTiming, dict[str, int], torch.Tensor | None]:
    """Build one backend for ``x``'s shape, warm it up, time it.

    Returns:
        ``(row, files it wrote with their sizes, its output of the warm-up run or None when skipped)``.
    """
    try:
        built = build_runner(name, model, threads=threads, shape=(2 * x.shape[-2], 2 * x.shape[-1]), workdir=workdir)
    except RuntimeUnavailable as e:
        log.info("%s skipped: %s", name, e)
        return BackendTiming(name, note=str(e), skipped=True), {}, None
    inp = x.permute(0, 2, 3, 1).contiguous() if built.nhwc else x
    out = _as_tensor(built.run(inp))
    if built.nhwc:
        out = out.permute(0, 3, 1, 2)
    for _ in range(max(0, warmup - 1)):
        built.run(inp)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        built.run(inp)
        seconds.append(time.perf_counter() - start)
    if reference is not None and out.shape != reference.shape:
        raise UnispError(f"{name}: output shape {tuple(out.shape)} differs from {REFERENCE}'s {tuple(reference.shape)}")
    diff = None if reference is None else float((out - reference).abs().max())
    psnr_db = None if reference is None else _psnr(out, reference)
    log.info("%s: median %.1f ms over %d runs", name, statistics.median(seconds) * 1e3, repeats)
    return BackendTiming(name, seconds, diff, built.note, psnr_db=psnr_db), built.files, out


def _psnr(out: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of ``out`` against ``reference``, peak 1 (both clamped to [0, 1]); inf when equal."""
    mse = float((out.double() - reference.double()).square().mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def run_latency(
    model: nn.Module,
    *,
    height: int,
    width: int,
    repeats: int = 5,
    warmup: int = 1,
    backends: Sequence[str] = NAMES,
    threads: int | None = None,
    packed: torch.Tensor | None = None,
    input_note: str = "",
    model_file: Path | None = None,
    sgemm_size: int = SGEMM_SIZE,
    allocator: str = "keep",
) -> LatencyReport:
    """Time ``model`` on one ``height × width`` output through each of ``backends``.

    Args:
        model: a generator (not modified; every backend runs a copy whose output is clamped to [0, 1]).
        height, width: output size (even); the input is ``(1, 4, height/2, width/2)``.
        repeats: timed runs per backend (the median is reported).
        warmup: untimed runs first (at least one: its output is compared with torch's).
        backends: a subset of :data:`unisp.export.runtimes.NAMES`.
        threads: CPU threads for every backend and the sgemm, at most the machine's CPUs (default:
            torch's current setting).
        packed: the input to use (default: uniform random in [0, 1], seeded).
        input_note: how the input was made, for the report.
        model_file: the model's file, whose size is reported.
        sgemm_size: edge of the matrices that measure the sgemm rate.
        allocator: ``"keep"``: :func:`keep_freed_memory` first (process-wide); ``"default"``:
            glibc as it comes (every large output page-faulted in afresh).

    Returns:
        The :class:`LatencyReport`.
    """
    unknown = [b for b in backends if b not in NAMES]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)} (known: {', '.join(NAMES)})")
    if repeats < 1 or warmup < 1:
        raise ConfigError(f"repeats and warmup must be at least 1, got {repeats} and {warmup}")
    check_model_shape(model, (height, width), "size")
    check_threads(threads)
    if allocator not in ALLOCATORS:
        raise ConfigError(f"allocator must be one of {', '.join(ALLOCATORS)}, got {allocator!r}")
    allocator_note = keep_freed_memory() if allocator == "keep" else "glibc default (large blocks mmapped afresh)"
    previous_threads = torch.get_num_threads()
    threads = threads or previous_threads
    torch.set_num_threads(threads)
    try:
        # Every backend computes what a deployed model does: output clamped to [0, 1] (the
        # exported graphs clamp too), so their outputs are comparable element by element.
        model = copy.deepcopy(model).eval()
        model.clamp_output = True
        if packed is None:
            gen = torch.Generator().manual_seed(INPUT_SEED)
            packed = torch.rand(1, PACKED_CHANNELS, height // 2, width // 2, generator=gen)
            input_note = input_note or "uniform random packed Bayer in [0, 1]"
        if tuple(packed.shape[-2:]) != (height // 2, width // 2):
            raise ConfigError(f"input {tuple(packed.shape)} does not match the {width}×{height} output")
        info = model_info(model, height=min(height, 64), width=min(width, 64))
        files = {model_file.name: model_file.stat().st_size} if model_file is not None else {}
        sgemm = measure_sgemm(repeats, sgemm_size)
        rows: list[BackendTiming] = []
        reference = None
        with tempfile.TemporaryDirectory(prefix="unisp-bench-") as tmp:
            for name in (b for b in NAMES if b in backends):  # torch first: the others are compared with it
                row, written, out = time_backend(
                    name, model, packed, reference, repeats=repeats, warmup=warmup, threads=threads, workdir=Path(tmp)
                )
                if name == REFERENCE:
                    reference = out
                rows.append(row)
                files.update(written)
        return LatencyReport(
            model=info["name"],
            parameters=info["parameters"],
            mac_per_pixel=info["mac_per_pixel"],
            height=height,
            width=width,
            threads=threads,
            repeats=repeats,
            sgemm_gflops=sgemm,
            rows=rows,
            files=files,
            input_note=input_note,
            sgemm_size=sgemm_size,
            allocator=allocator_note,
        )
    finally:
        torch.set_num_threads(previous_threads)


def machine_description() -> str:
    """One line naming the CPU, core count and software versions (for benchmark headers)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, Python {platform.python_version()}"
