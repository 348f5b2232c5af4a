"""Demosaicing accuracy of unisp's three methods on Kodak24 and McMaster.

Protocol (the usual one in demosaicing papers): each 8-bit sRGB image is taken as it is, mosaicked
in RGGB, demosaiced, clipped to [0, 1] and rounded to 8 bits; CPSNR (one PSNR over all three
channels, peak 255) is computed per image, on the full image and with a 10-pixel border left
out, and averaged over the images of each dataset. For comparison with pytorch-debayer's table,
the mean of the three per-channel PSNRs (full image) is reported too.

Usage:
    python benchmarks/demosaic_accuracy.py [--data ../shared/data] [--out results.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from unisp.fileio import list_images, read_rgb, write_text
from unisp.isp.demosaic import DEMOSAIC_METHODS, demosaic
from unisp.raw.bayer import colour_masks

log = logging.getLogger("demosaic_accuracy")

#: Dataset folders under --data, in report order.
DATASETS = ("kodak24", "mcmaster")
#: Pattern the images are mosaicked in (the protocol's usual choice).
PATTERN = "RGGB"
#: Pixels left out at each side for the "border excluded" figure: implementations differ most at the
#: border (padding conventions), so many papers score the interior only.
BORDER = 10
#: Quantisation of the demosaiced result before scoring: 8-bit, like the ground truth.
LEVELS = 255.0
#: Default data folder: ``shared/data`` beside the repository root.
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def cpsnr(pred: torch.Tensor, target: torch.Tensor, border: int = 0) -> float:
    """CPSNR in dB of ``(3, H, W)`` images in [0, 1] on the 8-bit scale, ``border`` pixels left out per side."""
    if border:
        pred, target = pred[:, border:-border, border:-border], target[:, border:-border, border:-border]
    mse = ((pred - target) * LEVELS).double().pow(2).mean()
    return float(10 * torch.log10(LEVELS**2 / mse))


def channel_mean_psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over R, G, B of each channel's PSNR in dB (pytorch-debayer's "PSNR (dB)" column)."""
    mse = ((pred - target) * LEVELS).double().pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(LEVELS**2 / mse)).mean())


def mosaic_rgb(image: torch.Tensor, pattern: str = PATTERN) -> torch.Tensor:
    """``(3, H, W)`` RGB → ``(1, 1, H, W)`` Bayer mosaic keeping one colour per pixel."""
    masks = colour_masks(pattern, image.shape[-2], image.shape[-1], dtype=image.dtype)
    return (image * masks).sum(0)[None, None]


def evaluate(data: Path) -> dict:
    """Per-image and mean CPSNR for every dataset and method."""
    results: dict = {}
    for dataset in DATASETS:
        files = list_images(data / dataset)
        per_method: dict = {m: {"full": [], "border": [], "channel_mean": [], "seconds": 0.0} for m in DEMOSAIC_METHODS}
        for path in files:
            truth = read_rgb(path).double()
            mosaic = mosaic_rgb(truth)
            for method in DEMOSAIC_METHODS:
                started = time.perf_counter()
                out = demosaic(mosaic, PATTERN, method)[0]
                per_method[method]["seconds"] += time.perf_counter() - started
                out = torch.round(out.clamp(0.0, 1.0) * LEVELS) / LEVELS
                per_method[method]["full"].append(cpsnr(out, truth))
                per_method[method]["border"].append(cpsnr(out, truth, BORDER))
                per_method[method]["channel_mean"].append(channel_mean_psnr(out, truth))
        for method, r in per_method.items():
            r["mean_full"] = sum(r["full"]) / len(r["full"])
            r["mean_border"] = sum(r["border"]) / len(r["border"])
            r["mean_channel_mean"] = sum(r["channel_mean"]) / len(r["channel_mean"])
            r["images"] = [p.name for p in files]
            log.info("%s %s: %.2f dB full, %.2f dB border %d excluded (%.1f s)", dataset, method,
                     r["mean_full"], r["mean_border"], BORDER, r["seconds"])
        results[dataset] = per_method
    return results


def to_markdown(results: dict) -> str:
    """The mean CPSNR table as Markdown."""
    lines = [
        f"| dataset | method | CPSNR full (dB) | CPSNR, {BORDER}-px border excluded (dB) | mean channel PSNR, full (dB) | images |",
        "|---|---|---|---|---|---|",
    ]
    for dataset, per_method in results.items():
        for method, r in per_method.items():
            lines.append(
                f"| {dataset} | {method} | {r['mean_full']:.2f} | {r['mean_border']:.2f} "
                f"| {r['mean_channel_mean']:.2f} | {len(r['full'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding kodak24/ and mcmaster/")
    parser.add_argument("--out", type=Path, help="write the table (.md) or all numbers (.json) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("torch %s, %d threads, %s", torch.__version__, torch.get_num_threads(), platform.processor() or platform.machine())
    results = evaluate(args.data)
    table = to_markdown(results)
    log.info("\n%s", table)
    if args.out is not None:
        write_text(args.out, json.dumps(results, indent=1) if args.out.suffix == ".json" else table)


if __name__ == "__main__":
    main()
