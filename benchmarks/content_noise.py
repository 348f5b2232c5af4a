"""What the content loss measures: feature distance to X̂ of the ground truth, a denoised render and edits of it.

    python benchmarks/content_noise.py --demo DEMO_DIR [--model NAME=FILE ...] [--pools 1,2,4] [--profile lite]

``DEMO_DIR`` is a ``unisp demo --out`` folder: its held-out RAW quarters (``data/test/raw``),
their ground truth (``data/test/rgb``) and its stage-1 model. For each test image it renders the
paper's X̂ (:data:`unisp.isp.pipeline.TRAINING_TARGET`) and scores, at every pooling factor of
``losses.content_pool``, the relative content-feature distance
``mean((f(y) − f(X̂))²) / mean(f(X̂)²)``, f the profile's content view of the (pooled) luminance,
for: the ground truth; the stage-1 output (which has learnt X̂ and denoises it); the stage-1
output darkened by 20 %, and blurred by a 5×5 box; X̂ darkened by 20 %; and each ``--model``.
A content loss that keeps structure and tone should put the denoised output close to X̂ and
the edits far; prints a markdown table (mean over the test images) for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from unisp.export.latency import machine_description
from unisp.fileio import read_rgb
from unisp.isp.pipeline import TRAINING_TARGET, render_frame
from unisp.losses.backbones import build_backbones
from unisp.losses.content import content_view
from unisp.models.checkpoint import load_model
from unisp.models.tiled import run_tiled
from unisp.raw.io import find_raw_files, read_raw

#: Exposure change and blur of the edited renders: a visible tone change and a visible loss of detail.
DARKEN = 0.8
BLUR = 5


def relative_distance(backbones: torch.nn.Module, y: torch.Tensor, ref_features: torch.Tensor, pool: int) -> float:
    """``mean((f(y) − f_ref)²) / mean(f_ref²)`` for the content view of ``y`` ``(1, 3, H, W)``."""
    features = backbones.content_features(content_view(y, pool))
    return ((features - ref_features).pow(2).mean() / ref_features.pow(2).mean()).item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="a `unisp demo --out` folder")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE", help="another model to score")
    parser.add_argument("--pools", default="1,2,4", help="comma-separated losses.content_pool values")
    parser.add_argument("--profile", default="lite", choices=("lite", "paper", "random"), help="backbones of the content view (random: tests only)")
    args = parser.parse_args(argv)
    pools = [int(p) for p in args.pools.split(",")]
    models = {"stage 1": args.demo / "stage1" / "model.safetensors"}
    models.update(dict(spec.split("=", 1) for spec in args.model))
    generators = {name: load_model(path)[0].eval() for name, path in models.items()}
    backbones = build_backbones(args.profile)

    rows: dict[str, list[list[float]]] = {}
    files = find_raw_files(args.demo / "data" / "test" / "raw")
    with torch.no_grad():
        for path in files:
            frame = read_raw(path)
            xhat = render_frame(frame, TRAINING_TARGET).clamp(0, 1).unsqueeze(0)
            outputs = {name: torch.as_tensor(run_tiled(g, frame)).clamp(0, 1).unsqueeze(0) for name, g in generators.items()}
            candidates = {"ground truth": read_rgb(args.demo / "data" / "test" / "rgb" / f"{path.stem}.png").unsqueeze(0)}
            candidates.update(outputs)
            stage1 = outputs["stage 1"]
            candidates[f"stage 1 × {DARKEN}"] = stage1 * DARKEN
            candidates[f"stage 1, {BLUR}×{BLUR} box blur"] = F.avg_pool2d(stage1, BLUR, 1, BLUR // 2, count_include_pad=False)
            candidates[f"X̂ × {DARKEN}"] = xhat * DARKEN
            for pool in pools:
                ref = backbones.content_features(content_view(xhat, pool))
                for name, y in candidates.items():
                    rows.setdefault(name, [[] for _ in pools])[pools.index(pool)].append(relative_distance(backbones, y, ref, pool))

    print(f"`{shlex.join(['python', *sys.argv])}`  ")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine_description()}, {args.profile} content view, {len(files)} images\n")
    print("| y | " + " | ".join("full resolution" if p == 1 else f"pooled {p}×" for p in pools) + " |")
    print("|---|" + "---|" * len(pools))
    for name, per_pool in rows.items():
        print(f"| {name} | " + " | ".join(f"{sum(v) / len(v):.3f}" for v in per_pool) + " |")


if __name__ == "__main__":
    main()
