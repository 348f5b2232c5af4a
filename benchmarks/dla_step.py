"""Cost of one stage-2 generator step: efficient DLA vs the plain fixed-weight sum vs the released DLA scheme.

    python benchmarks/dla_step.py [--profile lite|random|paper] [--batch 32] [--patch 256]
                                  [--repeats 5] [--warmup 2] [--device auto] [--amp]
                                  [--threads N] [--allocator keep|default]

One step = generator forward on a random packed RAW batch, the five generator terms of
:class:`unisp.losses.criterion.UnpairedCriterion` (real-image features included), and the
backward pass of the scheme into the generator's ``.grad``; the discriminator step and the
optimiser step are the same for every scheme and left out. All schemes run on the same
backbones, criterion, generator (``efficient_isp``) and batch; they are interleaved round-robin
and the median over ``--repeats`` runs (after ``--warmup`` untimed rounds) is reported, for
the whole step and for its backward part alone, in wall-clock seconds and, on the CPU, in
process CPU seconds too (less disturbed by other processes on a shared machine; with
``--threads 1`` it is the single-core cost). ``paper`` uses random-initialised weights
(``build_backbones("paper", random_init=True)``): the cost does not depend on the weights.

On the CPU, glibc's allocator hands large freed blocks back to the operating system, so each
step page-faults its temporaries in afresh; that costs a scheme in proportion to how many
separate backward passes it makes, not to its arithmetic (here it slowed the DLA step's backward
by about 40 %). ``--allocator keep`` (the default) tells glibc to keep freed memory
(``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, 2³¹ − 1)``), as PyTorch's caching allocator does on CUDA;
``--allocator default`` measures glibc as it comes.

The issue's targets: DLA ≤ 1.10 × the plain step and ≤ 0.6 × the released scheme, at batch 32
with 256 × 256 RAW patches (256 × 256 RGB output).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import platform
import statistics
import time

import torch

from unisp.losses.backbones import build_backbones
from unisp.losses.config import UnpairedLossConfig
from unisp.losses.criterion import UnpairedCriterion
from unisp.losses.dla import dla_backward, fixed_weight_backward, reference_dla_backward
from unisp.models.base import training_forward
from unisp.models.registry import build_model

#: The issue's targets for the efficient scheme's step time.
TARGET_VS_PLAIN = 1.10
TARGET_VS_REFERENCE = 0.6
#: DLA ε (the recipe default).
EPS = UnpairedLossConfig().dla_eps

#: glibc ``mallopt`` parameters (``malloc.h``) and the values ``--allocator keep`` sets: serve
#: every allocation from the heap (no per-block mmap) and never trim the heap back to the OS.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_MMAP_MAX = 0
KEEP_TRIM_THRESHOLD = 2**31 - 1

SCHEMES = {
    "plain": lambda params, out, terms: fixed_weight_backward(params, out, terms, {}),
    "dla": lambda params, out, terms: dla_backward(params, out, terms, {}, EPS),
    "reference": lambda params, out, terms: reference_dla_backward(params, out, terms, {}, EPS),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("lite", "random", "paper"), default="lite")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patch", type=int, default=256, help="RAW patch edge = RGB output edge (even)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast around the losses on CUDA (as training)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--allocator", choices=("keep", "default"), default="keep",
                        help="CPU: keep freed memory in glibc's heap (keep) or not (default); see above")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    allocator = "glibc default"
    if args.allocator == "keep":
        try:
            libc = ctypes.CDLL("libc.so.6")
            if libc.mallopt(M_MMAP_MAX, KEEP_MMAP_MAX) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD):
                allocator = "glibc keeping freed memory"
        except OSError:
            allocator = "not glibc: allocator unchanged"
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.patch % 2 or args.patch < 32:
        parser.error("--patch must be even and at least 32")

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(args.seed)
    backbones = build_backbones(args.profile, random_init=args.profile == "paper")
    criterion = UnpairedCriterion(backbones, UnpairedLossConfig(profile=args.profile), patch=args.patch).to(device)
    gen = build_model("efficient_isp").to(device).train()
    params = [p for p in gen.parameters() if p.requires_grad]
    raw = torch.rand(args.batch, 4, args.patch // 2, args.patch // 2, device=device)
    ref = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    real = torch.rand(args.batch, 3, args.patch, args.patch, device=device)
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if args.amp and device.type == "cuda"
           else contextlib.nullcontext())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(name: str) -> tuple[tuple[float, float, float, float], list[torch.Tensor]]:
        """(step wall, backward wall, step CPU, backward CPU) seconds, and the gradient."""
        gen.zero_grad(set_to_none=True)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        fake = training_forward(gen, raw)
        with amp:
            terms, _ = criterion.generator_terms(fake, ref, real)
        terms = {k: v.float() for k, v in terms.items()}
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        SCHEMES[name](params, fake, terms)
        sync()
        t2, c2 = time.perf_counter(), time.process_time()
        return (t2 - t0, t2 - t1, c2 - c0, c2 - c1), [p.grad.detach().clone() for p in params]

    # Same gradient from both DLA schemes (float32 rounding only).
    _, fast = step("dla")
    _, slow = step("reference")
    max_diff = max((a - b).abs().max().item() for a, b in zip(fast, slow))

    times: dict[str, list[tuple[float, ...]]] = {name: [] for name in SCHEMES}
    peak: dict[str, float] = {}
    for round_ in range(args.warmup + args.repeats):
        for name in SCHEMES:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            measured, _ = step(name)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) / 2**30
            if round_ >= args.warmup:
                times[name].append(measured)

    # med[name] = (step wall, backward wall, step CPU, backward CPU)
    med = {name: tuple(statistics.median(col) for col in zip(*v)) for name, v in times.items()}
    cpu = device.type == "cpu"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"profile {backbones.description}, batch {args.batch}, {args.patch}×{args.patch} RAW patches, "
          f"{device.type}{' + bf16 autocast' if args.amp and device.type == 'cuda' else ''} ({where}), "
          f"torch {torch.__version__}, {allocator}; median of {args.repeats} after {args.warmup} warm-up rounds")
    print(f"{'scheme':<10} {'step s':>8} {'backward s':>11}" + ("  step CPU s  backward CPU s" if cpu else "")
          + ("  peak GiB" if peak else ""))
    for name, m in med.items():
        print(f"{name:<10} {m[0]:8.3f} {m[1]:11.3f}" + (f"  {m[2]:10.3f}  {m[3]:14.3f}" if cpu else "")
              + (f"  {peak[name]:8.2f}" if peak else ""))
    clocks = [("wall", 0)] + ([("CPU", 2)] if cpu else [])
    for label, i in clocks:
        vs_plain = med["dla"][i] / med["plain"][i]
        vs_ref = med["dla"][i] / med["reference"][i]
        print(f"{label:>4}: DLA / plain = {vs_plain:.3f} (target ≤ {TARGET_VS_PLAIN}: "
              f"{'met' if vs_plain <= TARGET_VS_PLAIN else 'MISSED'}), DLA / reference = {vs_ref:.3f} "
              f"(target ≤ {TARGET_VS_REFERENCE}: {'met' if vs_ref <= TARGET_VS_REFERENCE else 'MISSED'}); "
              f"backward only: {med['dla'][i + 1] / med['plain'][i + 1]:.3f} and {med['dla'][i + 1] / med['reference'][i + 1]:.3f}")
    print(f"max |DLA grad − reference DLA grad| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
