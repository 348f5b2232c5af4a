"""One-factor ablation: unisp's default unpaired recipe against the paper's, each lever on and off.

From a finished quality study (``benchmarks/quality_study.py --out STUDY``), on one camera and
efficient_isp, from the study's stage-1 model, with the study's data, batch, patch, steps and
seed: the default recipe (``configs/unpaired.yaml``) with each lever set back to the paper's
value, and the paper's recipe (``configs/zrr_unpaired.yaml`` on ``lite``) with each lever set
to the default's. Every run is scored on the study's test images at its last step (PSNR, SSIM,
ΔE2000). It also draws one crop through ground truth, X̂, stage 1, the paper's recipe, the
default recipe and the supervised upper bound, from the study's own runs.

Usage:
    python benchmarks/quality_study.py --out study
    python benchmarks/unpaired_ablation.py --study study --out ablation --figure docs/images/unpaired_recipes.png
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from quality_study import DEFAULT_RECIPE, PAPER_OVERRIDES, PAPER_RECIPE, model_outputs, recipe, run_training, score, test_set
from unisp.config import load_config
from unisp.fileio import write_image, write_text
from unisp.isp.pipeline import TRAINING_TARGET, render_frame
from unisp.train.config import TrainConfig

log = logging.getLogger("unpaired_ablation")

#: Each lever: (name, the default recipe's value(s), the paper's value(s)), as recipe overrides.
LEVERS: tuple[tuple[str, dict, dict], ...] = (
    ("graded term", {"losses.graded": 1.0}, {"losses.graded": 0.0}),
    ("texture_swd term", {"losses.texture_swd": 3.0}, {"losses.texture_swd": 0.0}),
    ("content term", {"losses.content": 0.0}, {"losses.content": 1.0}),
    ("colour discriminator", {"losses.colour": 0.0}, {"losses.colour": 1.0}),
    ("texture discriminators", {"losses.texture_low": 0.0, "losses.texture_high": 0.0},
     {"losses.texture_low": 1.0, "losses.texture_high": 1.0}),
    ("total variation", {"losses.tv": 0.0}, {"losses.tv": 1.0}),
    ("DLA", {"losses.dla": False}, {"losses.dla": True}),
    ("Adam betas", {"betas": [0.9, 0.999]}, {"betas": [0.5, 0.9]}),
)
#: Left of the figure to right, with the run folder (under STUDY/runs/CAMERA/efficient_isp) each comes from.
FIGURE_COLUMNS = (("ground truth", None), ("X̂", None), ("stage 1", "stage1"), ("paper's recipe (unpaired)", "unpaired"),
                  ("unisp default (unpaired)", "unisp"), ("supervised", "supervised"))
#: The figure's crop: this test image, 192 px square from this corner.
FIGURE_IMAGE, FIGURE_CROP, FIGURE_TOP_LEFT = 0, 192, (150, 150)


def study_settings(study: Path, camera: str) -> tuple[dict, Path]:
    """The overrides the study's unpaired runs were made with (data, sizes, seed, validation), and the stage-1 model."""
    runs = study / "runs" / camera / "efficient_isp"
    config = load_config(TrainConfig, runs / "unisp" / "config.yaml")
    common = {
        "model": "efficient_isp", "data.raw_dir": config.data.raw_dir, "data.rgb_dir": config.data.rgb_dir,
        "data.val_dir": config.data.val_dir, "data.val_rgb_dir": config.data.val_rgb_dir,
        "data.val_max_images": config.data.val_max_images, "data.patch": config.data.patch,
        "data.samples_per_epoch": config.data.samples_per_epoch, "batch_size": config.batch_size,
        "steps": config.steps, "ckpt_every": config.steps, "val_every": config.steps, "image_every": config.steps,
        "seed": config.seed, "tensorboard": False, "log_every": 10**6, "init": runs / "stage1" / "model.safetensors",
    }
    return common, runs


def ablate(study: Path, out: Path, camera: str) -> dict:
    common, runs = study_settings(study, camera)
    frames, truths, names = test_set(Path(common["data.val_dir"]).parent)
    rows: dict[str, dict] = {}

    def run(base: str, folder: str, lever: str, change: dict) -> None:
        config = recipe(DEFAULT_RECIPE if base == "default" else PAPER_RECIPE, {**common, **(paper if base == "paper" else {}), **change})
        summary = run_training(config, out / folder)
        name = f"{base}" + (f"; {lever} as the {'paper' if base == 'default' else 'default'}'s: "
                             + ", ".join(f"`{k}={v}`" for k, v in change.items()) if change else "")
        rows[name] = {**score(model_outputs(Path(summary["model_file"]), frames), truths, names), "seconds": summary["seconds"]}
        log.info("%s: %.2f dB", name, rows[name]["means"]["psnr"])

    paper = {**PAPER_OVERRIDES, "mode": "unpaired", "losses.profile": "lite"}
    run("default", "default", "", {})
    for i, (lever, _, paper_value) in enumerate(LEVERS):
        run("default", f"default_{i}", lever, paper_value)
    run("paper", "paper", "", {})
    for i, (lever, default_value, _) in enumerate(LEVERS):
        run("paper", f"paper_{i}", lever, default_value)
    return {"camera": camera, "test_images": names, "rows": rows}


def figure(study: Path, camera: str, path: Path) -> None:
    """The same crop through every column of :data:`FIGURE_COLUMNS`, side by side."""
    runs = study / "runs" / camera / "efficient_isp"
    frames, truths, _ = test_set(study / "data" / f"camera_{camera}" / "test")
    frame, truth = frames[FIGURE_IMAGE], truths[FIGURE_IMAGE]
    size = min(FIGURE_CROP, frame.height, frame.width)
    top, left = (min(corner, side - size) for corner, side in zip(FIGURE_TOP_LEFT, (frame.height, frame.width)))
    images = []
    for title, folder in FIGURE_COLUMNS:
        if title == "ground truth":
            image = truth
        elif folder is None:
            image = render_frame(frame, TRAINING_TARGET)
        else:
            image = model_outputs(runs / folder / "model.safetensors", [frame])[0]
        images += [image[:, top : top + size, left : left + size], torch.ones(3, size, 6)]
    write_image(path, torch.cat(images[:-1], dim=-1), depth=8)


def to_markdown(result: dict) -> str:
    lines = ["| run | PSNR | SSIM | ΔE2000 | training s |", "|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        m = row["means"]
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['delta_e2000']:.2f} | {row['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True, help="a finished quality study folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder (runs, results.md, results.json)")
    parser.add_argument("--camera", default="A", help="the study camera to ablate on")
    parser.add_argument("--figure", type=Path, default=None, help="also write the comparison crop to this PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    if args.figure is not None:
        figure(args.study, args.camera, args.figure)
    result = ablate(args.study, args.out, args.camera)
    result.update({"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {platform.processor()}".strip(),
                   "threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - started, 1)})
    write_text(args.out / "results.json", json.dumps(result, indent=1, default=str) + "\n")
    write_text(args.out / "results.md", to_markdown(result) + "\n")
    log.info("\n%s", to_markdown(result))


if __name__ == "__main__":
    main()
