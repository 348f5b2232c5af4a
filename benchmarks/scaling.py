"""How cost scales: inference time vs megapixels per backend, training step time vs batch and patch size.

    python benchmarks/scaling.py [--megapixels 0.5,2,8,12] [--backends torch,onnxruntime,fused]
                                 [--batches 4,8,16] [--patches 64,128,256] [--repeats 3] [--threads 0]
                                 [--allocator keep|default] [--skip-training]

Inference: :func:`unisp.export.latency.run_latency` at each size (random packed input, random
efficient_isp weights: the cost does not depend on either), median of ``--repeats`` runs; the
table gives ms, MPix/s and ms per megapixel, so a flat last column means time linear in pixels.

Training: one stage-2 unpaired step of efficient_isp on the ``lite`` backbone profile (the
recipe default: content, colour, two texture terms and TV, Dynamic Loss Adaptation), on random
batches of packed RAW patches, random targets and random "real" photos; the generator step
(forward, the five terms, DLA backward, Adam step) and one discriminator step (relativistic loss
with R1/R2, backward, clipped Adam step) are timed separately, median of ``--repeats`` after one
warm-up step. The recipe runs the discriminators once every ``d_every`` = 10 generator steps, so
the per-step cost is ``G + D / 10``. First batch sizes at a fixed patch (the middle of
``--patches``), then patch sizes at a fixed batch (the middle of ``--batches``).

Prints a header (command, machine, date) and markdown tables for docs/RESULTS.md; the defaults
take about 2–3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time

import torch

from unisp.export.latency import machine_description, parse_size, run_latency
from unisp.losses.config import UnpairedLossConfig
from unisp.losses.dla import dla_backward
from unisp.models.checkpoint import load_generator
from unisp.train.config import DataConfig, TrainConfig
from unisp.train.objective import Objective

#: 4:3 sizes (see unisp.export.latency.parse_size) for the inference sweep.
DEFAULT_MEGAPIXELS = "0.5,2,8,12"
DEFAULT_BACKENDS = "torch,onnxruntime,fused"
#: The training sweep's sizes, modest so the whole script stays within a few minutes on 2 cores.
DEFAULT_BATCHES = "4,8,16"
DEFAULT_PATCHES = "64,128,256"


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def inference_table(megapixels: list[float], backends: list[str], repeats: int, threads: int, allocator: str) -> str:
    model, _, _ = load_generator("efficient_isp")
    lines = [
        "| output | backend | median ms | MPix/s | ms per MP | of sgemm |",
        "|---|---|---|---|---|---|",
    ]
    for mp in megapixels:
        height, width = parse_size(f"{mp}MP")
        report = run_latency(model, height=height, width=width, repeats=repeats, threads=threads, backends=backends,
                             allocator=allocator)
        for row in report.rows:
            if row.skipped:
                lines.append(f"| {width}×{height} | {row.backend} | — | — | — | skipped: {row.note} |")
                continue
            rate = report.gflop / row.median
            lines.append(
                f"| {width}×{height} ({report.megapixels:.1f} MP) | {row.backend} | {row.median * 1e3:.1f} "
                f"| {report.megapixels / row.median:.1f} | {row.median * 1e3 / report.megapixels:.1f} | {rate / report.sgemm:.0%} |"
            )
    return "\n".join(lines)


def train_step_seconds(batch: int, patch: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one generator step and one discriminator step at ``batch × patch²``."""
    config = TrainConfig(mode="unpaired", data=DataConfig(patch=patch), losses=UnpairedLossConfig(profile="lite"), batch_size=batch)
    torch.manual_seed(0)
    model, _, _ = load_generator(config.model)
    model.train()
    objective = Objective(config)
    params = [p for p in model.parameters() if p.requires_grad]
    g_opt = torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas))
    d_opts = {k: torch.optim.Adam(d.parameters(), lr=config.d_lr, betas=tuple(config.d_betas))
              for k, d in objective.discriminators().items()}
    data = {
        "raw": torch.rand(batch, 4, patch // 2, patch // 2),
        "target": torch.rand(batch, 3, patch, patch),
        "real": torch.rand(batch, 3, patch, patch),
    }
    g_times, d_times = [], []
    for i in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        fake = model(data["raw"])
        terms, dbatch = objective.generator_terms(fake, data)
        g_opt.zero_grad(set_to_none=True)
        dla_backward(params, fake, terms, objective.multipliers, config.losses.dla_eps)
        g_opt.step()
        middle = time.perf_counter()
        for opt in d_opts.values():
            opt.zero_grad(set_to_none=True)
        objective.criterion.discriminator_step(dbatch)
        for key, d in objective.discriminators().items():
            torch.nn.utils.clip_grad_norm_(d.parameters(), config.d_clip)
            d_opts[key].step()
        end = time.perf_counter()
        if i:
            g_times.append(middle - start)
            d_times.append(end - middle)
    return statistics.median(g_times), statistics.median(d_times)


def training_table(batches: list[int], patches: list[int], repeats: int) -> str:
    d_every = TrainConfig().d_every
    lines = [
        f"| batch × patch² | G step s | D step s | G + D/{d_every} s | patches/s | RAW MPix/s |",
        "|---|---|---|---|---|---|",
    ]
    fixed_patch, fixed_batch = patches[len(patches) // 2], batches[len(batches) // 2]
    configs = [(b, fixed_patch) for b in batches] + [(fixed_batch, p) for p in patches if p != fixed_patch]
    for batch, patch in configs:
        g, d = train_step_seconds(batch, patch, repeats)
        step = g + d / d_every
        lines.append(
            f"| {batch} × {patch}² | {g:.3f} | {d:.3f} | {step:.3f} | {batch / step:.1f} | {batch * patch * patch / step / 1e6:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", default=DEFAULT_MEGAPIXELS)
    parser.add_argument("--backends", default=DEFAULT_BACKENDS)
    parser.add_argument("--batches", default=DEFAULT_BATCHES)
    parser.add_argument("--patches", default=DEFAULT_PATCHES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--allocator", choices=("keep", "default"), default="keep",
                        help="keep: glibc keeps freed memory (see unisp.export.latency.keep_freed_memory)")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"command: python benchmarks/scaling.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {machine_description()}; {threads} threads")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print()
    megapixels = [float(v) for v in args.megapixels.split(",") if v]
    print(f"allocator: {args.allocator} (see unisp.export.latency.keep_freed_memory)")
    print()
    print(inference_table(megapixels, [b for b in args.backends.split(",") if b], args.repeats, threads, args.allocator))
    if not args.skip_training:
        print()
        print(training_table(ints(args.batches), ints(args.patches), args.repeats))


if __name__ == "__main__":
    main()
