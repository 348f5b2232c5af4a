"""``unisp demo``: the main job on the embedded default data, with no download.

For now it (1) renders the bundled real sensor frame through the classical pipeline, and (2)
builds a small synthetic RAW set from the photographs scikit-image ships, renders it with each
demosaicing method and measures each render against the ground truth. It writes PNGs, a
side-by-side comparison per image and a summary table (Markdown and JSON).
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import torch

from unisp.errors import UnispError
from unisp.eval.metrics import psnr
from unisp.fileio import read_rgb, write_image, write_text
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.raw.io import find_raw_files, read_raw

#: The bundled real frame (see src/unisp/assets/SOURCES.md).
SAMPLE_RAW = "openisp_1920x1080_rggb10.png"
#: Demosaicing methods compared in the demo, cheapest first.
DEMO_METHODS = ("bilinear", "malvar", "menon")
#: How many bundled photos become synthetic RAW (all of them are small, about 512×512).
DEMO_PHOTOS = 6
#: Environment variable that moves the cache of generated demo inputs (default ~/.cache/unisp).
CACHE_ENV = "UNISP_CACHE"


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


def run_demo(out: Path, seed: int = 0, console=None) -> str:
    """Run the demo into ``out`` and return the summary as Markdown."""
    from unisp.synth.dataset import synthesize_folder

    out = Path(out)
    started = time.perf_counter()
    lines = ["# unisp demo", ""]

    # 1. The bundled real frame through the classical pipeline.
    sample = read_raw(sample_raw_path())
    config = ISPConfig(demosaic="malvar")
    t0 = time.perf_counter()
    image = apply_orientation(render_frame(sample, config), sample.orientation)
    seconds = time.perf_counter() - t0
    write_image(out / "sample_classical.png", image)
    lines += [
        "## Bundled real sensor frame (fast-openISP test image)",
        "",
        f"- read: {sample.describe()}",
        f"- classical render ({config.demosaic} demosaic, as-shot white balance, sRGB curve): "
        f"`sample_classical.png`, {sample.width * sample.height / 1e6:.1f} MP in {seconds:.2f} s",
        "",
    ]

    # 2. Synthetic RAW with ground truth, rendered with each demosaicing method.
    photos = bundled_photo_dir()
    data = out / "synthetic"
    synthesize_folder(photos, data, seed=seed, noise=True, bits=10, limit=DEMO_PHOTOS)
    rows: dict[str, list[float]] = {m: [] for m in DEMO_METHODS}
    names = []
    for path in find_raw_files(data / "raw"):
        truth = read_rgb(data / "rgb" / f"{path.stem}.png")
        frame = read_raw(path)
        renders = []
        for method in DEMO_METHODS:
            rendered = render_frame(frame, ISPConfig(demosaic=method, tone_curve=True))
            if rendered.shape != truth.shape:
                raise UnispError(f"{path}: render {tuple(rendered.shape)} does not match truth {tuple(truth.shape)}")
            rows[method].append(float(psnr(rendered, truth)))
            renders.append(rendered)
        write_image(out / "compare" / f"{path.stem}.png", side_by_side([truth, *renders]))
        names.append(path.stem)
    if not names:
        raise UnispError(f"{data}: the demo made no synthetic RAW files")

    lines += [
        f"## Synthetic RAW from {len(names)} bundled photos (Brooks et al. unprocessing, 10-bit, with noise)",
        "",
        "PSNR (dB) of the classical render against the source photo; RGB, [0, 1], full image.",
        "Side-by-side images in `compare/`: ground truth, then " + ", ".join(DEMO_METHODS) + ".",
        "",
        "| image | " + " | ".join(DEMO_METHODS) + " |",
        "|---|" + "---|" * len(DEMO_METHODS),
    ]
    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(f"{rows[m][i]:.2f}" for m in DEMO_METHODS) + " |")
    means = {m: sum(v) / len(v) for m, v in rows.items()}
    lines.append("| **mean** | " + " | ".join(f"**{means[m]:.2f}**" for m in DEMO_METHODS) + " |")
    lines += ["", f"Total time {time.perf_counter() - started:.1f} s."]

    summary = "\n".join(lines) + "\n"
    write_text(out / "summary.md", summary)
    record = {"images": names, "psnr": rows, "mean_psnr": means, "sample": sample.describe()}
    write_text(out / "summary.json", json.dumps(record, indent=2) + "\n")
    return summary
