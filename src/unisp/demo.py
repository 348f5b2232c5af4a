"""``unisp demo``: the main job on the embedded default data, with no download.

1. Build a small synthetic RAW set (with ground truth) from the photographs scikit-image ships.
2. Stage 1: train the paper's Efficient ISP for a few hundred steps to reproduce the classical
   render of the training RAW files (no RGB targets needed).
3. Score the held-out images against their ground truth: the classical pipeline with each
   demosaicing method, and the stage-1 model.
4. Render the bundled real sensor frame with the classical pipeline, the stage-1 model and,
   when ``--reference`` names one of the paper's released weight files, the paper's model.

It writes PNGs, a side-by-side comparison per held-out image and a summary (Markdown and JSON).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from unisp.config import load_config
from unisp.errors import UnispError
from unisp.eval.evaluate import EvalResult, evaluate_images
from unisp.fileio import read_rgb, write_image, write_text
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.process import run_tiled
from unisp.raw.io import find_raw_files, read_raw

log = logging.getLogger(__name__)

#: The bundled real frame (see src/unisp/assets/SOURCES.md).
SAMPLE_RAW = "openisp_1920x1080_rggb10.png"
#: Demosaicing methods of the classical rows, cheapest first.
DEMO_METHODS = ("bilinear", "malvar", "menon")
#: Metrics of the summary table (LPIPS needs downloaded weights; see docs/EVAL.md).
DEMO_METRICS = ("psnr", "ssim", "delta_e2000")
#: Environment variable that moves the cache of generated demo inputs (default ~/.cache/unisp).
CACHE_ENV = "UNISP_CACHE"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo: small enough for a laptop CPU in about a minute.

    Attributes:
        held_out: bundled photos kept out of training, scored against their ground truth.
        steps, batch_size, patch, lr: the stage-1 run (patch in RAW pixels). A higher learning
            rate than the paper's 5e-4 because the run is 100× shorter.
    """

    held_out: int = 2
    steps: int = 400
    batch_size: int = 16
    patch: int = 96
    lr: float = 3e-3


def cache_dir() -> Path:
    """Where generated demo inputs live: ``$UNISP_CACHE`` or ``~/.cache/unisp``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "unisp"


def sample_raw_path() -> Path:
    """Path of the bundled real RAW frame inside the installed package."""
    return Path(str(resources.files("unisp") / "assets" / SAMPLE_RAW))


def bundled_photo_dir() -> Path:
    """The bundled photographs as PNGs, generated at first use into the cache folder."""
    from unisp.synth.bundled import export_bundled

    folder = cache_dir() / "bundled-photos"
    if not folder.is_dir() or not any(folder.glob("*.png")):
        export_bundled(folder)
    return folder


def side_by_side(images: list[torch.Tensor], gap: int = 8) -> torch.Tensor:
    """Concatenate ``(3, H, W)`` images horizontally with white gaps."""
    height = max(im.shape[-2] for im in images)
    parts = []
    for im in images:
        pad = torch.ones(3, height, im.shape[-1])
        pad[:, : im.shape[-2]] = im
        parts += [pad, torch.ones(3, height, gap)]
    return torch.cat(parts[:-1], dim=-1)


def score(outputs: list[torch.Tensor], truths: list[torch.Tensor], names: list[str]) -> EvalResult:
    return evaluate_images(outputs, truths, names, metrics=DEMO_METRICS)


def table(rows: dict[str, EvalResult]) -> list[str]:
    """Markdown rows: one line per method with its mean metrics."""
    head = "| method | PSNR dB ↑ | SSIM ↑ | ΔE2000 ↓ |"
    lines = [head, "|---|---|---|---|"]
    for name, result in rows.items():
        m = result.means
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['delta_e2000']:.2f} |")
    return lines


def run_demo(out: Path, seed: int = 0, reference: Path | None = None, settings: DemoSettings = DemoSettings()) -> str:
    """Run the demo into ``out`` and return the summary as Markdown."""
    from unisp.models.checkpoint import load_model
    from unisp.synth.dataset import synthesize_folder
    from unisp.train.config import TrainConfig
    from unisp.train.supervised import split_files, train_supervised

    out = Path(out)
    started = time.perf_counter()

    # 1. Synthetic RAW with ground truth (noise on: a realistic sensor, not a clean one).
    data = out / "synthetic"
    synthesize_folder(bundled_photo_dir(), data, seed=seed, noise=True, bits=10, tone_curve=False)
    files = find_raw_files(data / "raw")
    if len(files) <= settings.held_out:
        raise UnispError(f"{data}: {len(files)} synthetic RAW files, need more than {settings.held_out}")

    # 2. Stage 1 on the other files (the held-out files are its validation split).
    t0 = time.perf_counter()
    recipe = load_config(
        TrainConfig,
        None,
        [
            "mode=stage1",
            f"data.raw_dir={data / 'raw'}",
            f"data.val_fraction={settings.held_out / len(files)}",
            f"data.patch={settings.patch}",
            f"data.samples_per_epoch={settings.batch_size * 50}",
            f"batch_size={settings.batch_size}",
            f"steps={settings.steps}",
            f"lr={settings.lr}",
            f"val_every={settings.steps}",
            f"ckpt_every={settings.steps}",
            f"seed={seed}",
        ],
    )
    _, held_out = split_files(recipe)
    train_supervised(recipe, out / "stage1")
    train_seconds = time.perf_counter() - t0
    stage1, _ = load_model(out / "stage1" / "model.safetensors")

    # 3. Held-out images against their ground truth.
    names = [f.stem for f in held_out]
    frames = [read_raw(f) for f in held_out]
    truths = [read_rgb(data / "rgb" / f"{n}.png") for n in names]
    outputs = {f"classical ({m})": [render_frame(fr, ISPConfig(demosaic=m)) for fr in frames] for m in DEMO_METHODS}
    outputs["stage-1 efficient_isp"] = [run_tiled(stage1, fr) for fr in frames]
    results = {name: score(images, truths, names) for name, images in outputs.items()}
    for i, name in enumerate(names):
        write_image(out / "compare" / f"{name}.png", side_by_side([truths[i], *(v[i] for v in outputs.values())]))

    # 4. The bundled real frame.
    sample = read_raw(sample_raw_path())
    renders = {"classical": render_frame(sample, ISPConfig(demosaic="malvar")), "stage1": run_tiled(stage1, sample)}
    if reference is not None:
        from unisp.models.reference import load_reference

        renders["reference"] = run_tiled(load_reference(reference).eval(), sample)
    for key, image in renders.items():
        write_image(out / f"sample_{key}.png", apply_orientation(image, sample.orientation))

    lines = [
        "# unisp demo",
        "",
        f"Synthetic 10-bit RAW with shot/read noise from {len(files)} photos scikit-image ships "
        f"(Brooks et al. unprocessing); {len(files) - settings.held_out} for training, "
        f"{settings.held_out} held out: {', '.join(names)}.",
        "",
        f"Stage 1 (the paper's demosaicing pretraining): efficient_isp, {settings.steps} steps of "
        f"{settings.batch_size} × {settings.patch}² RAW patches, {train_seconds:.0f} s on "
        f"{recipe.device if recipe.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')}. "
        "It learns the classical render without a colour matrix (demosaic + white balance + sRGB curve), "
        "so against the ground truth it should sit below the full classical pipeline: stage 2 "
        "(unpaired training) is what learns colour.",
        "",
        "Held-out images against ground truth (RGB, [0, 1], full image, data range 1; mean over images):",
        "",
        *table(results),
        "",
        "Side by side in `compare/`: ground truth, " + ", ".join(outputs) + ".",
        "",
        "Bundled real sensor frame (fast-openISP test image, 1920×1080 RGGB, 10-bit): "
        + ", ".join(f"`sample_{k}.png`" for k in renders)
        + ". A learned ISP is specific to the camera it was trained on: neither the stage-1 model "
        "(synthetic sensors) nor the paper's released models (Zurich RAW-to-RGB's Huawei P20, "
        "Fujifilm UltraISP's MediaTek sensor) have seen this sensor's colour response.",
        "",
        f"Total time {time.perf_counter() - started:.0f} s.",
    ]
    summary = "\n".join(lines) + "\n"
    write_text(out / "summary.md", summary)
    record = {
        "held_out": names,
        "mean": {name: result.means for name, result in results.items()},
        "stage1_seconds": round(train_seconds, 1),
        "sample_renders": sorted(renders),
    }
    write_text(out / "summary.json", json.dumps(record, indent=2) + "\n")
    return summary
