"""Render the real RAW samples in ``../shared/data/real_raw`` with the classical pipeline and trained models, side by side.

The two samples (see that folder's SOURCES.md) carry no white balance and no colour matrix, so
the classical render uses gray-world white balance and the identity matrix (logged as assumed);
a learned model needs neither. Each figure is one row of panels, classical first, then each
``--model`` in the order given, every panel labelled and downscaled to ``--panel-width``.

Usage:
    python benchmarks/real_raw.py --model runs/unpaired/model.safetensors [--model M2 ...] [--out docs/images]
"""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from unisp.fileio import quantize, write_bytes
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.models.checkpoint import load_model
from unisp.models.tiled import run_tiled
from unisp.raw.frame import RawFrame
from unisp.raw.io import read_raw

log = logging.getLogger("real_raw")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "real_raw"
#: How to read each sample, from its SOURCES.md entry.
SAMPLES = {
    # vivo X90 (RAWIR): packed (512, 512, 4) [R, Gr, Gb, B], 12-bit, already black-corrected.
    "rawir_vivo_x90_3_4.npy": {"layout": "npy", "cfa": "RGGB", "black": 0.0, "white": 4095.0},
    # fast-openISP test frame: headerless little-endian uint16, 1920×1080, 10-bit RGGB, black 0.
    "fast_openisp_test_1920x1080_10bit_rggb.raw": {
        "layout": "headerless", "width": 1920, "height": 1080, "bits": 10, "cfa": "RGGB", "black": 0.0,
    },
}
#: The classical panel: ``unisp render``'s defaults (AHD, as-shot white balance falling back to
#: gray world, the file's colour matrix falling back to identity, no tone curve).
CLASSICAL = ISPConfig()
#: Label strip: height in pixels and colours.
LABEL_HEIGHT = 18
LABEL_BACKGROUND = (0, 0, 0)
LABEL_TEXT = (255, 255, 255)


def panel(image: torch.Tensor, width: int, label: str) -> np.ndarray:
    """``(3, H, W)`` in [0, 1] → an 8-bit ``(h + LABEL_HEIGHT, width, 3)`` panel with ``label`` above it."""
    h, w = image.shape[-2:]
    if w > width:
        image = F.interpolate(image[None], size=(round(h * width / w), width), mode="bilinear",
                              antialias=True, align_corners=False)[0]
    pixels = quantize(image.clamp(0, 1), depth=8)
    canvas = Image.new("RGB", (pixels.shape[1], pixels.shape[0] + LABEL_HEIGHT), LABEL_BACKGROUND)
    canvas.paste(Image.fromarray(pixels), (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((4, 3), label, fill=LABEL_TEXT)
    return np.asarray(canvas)


def renders(frame: RawFrame, models: list[Path]) -> list[tuple[str, torch.Tensor]]:
    """(label, image) of the classical render and of each model, orientation applied."""
    out = [(f"classical ({CLASSICAL.demosaic.upper()}, gray world, no colour matrix)", render_frame(frame, CLASSICAL))]
    for path in models:
        model, header = load_model(path)
        out.append((f"{header['model']} ({path.stem})", run_tiled(model.eval(), frame)))
    return [(label, apply_orientation(image, frame.orientation)) for label, image in out]


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in panels]
    return np.concatenate(padded, axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real_raw folder")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model file (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNG figures")
    parser.add_argument("--panel-width", type=int, default=640, help="width of each panel in pixels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, options in SAMPLES.items():
        path = args.data / name
        if not path.exists():
            log.warning("%s: missing, skipped", path)
            continue
        frame = read_raw(path, **options)
        figure = side_by_side([panel(image, args.panel_width, label) for label, image in renders(frame, args.model)])
        buffer = io.BytesIO()
        Image.fromarray(figure).save(buffer, format="PNG", optimize=True)
        out = args.out / f"real_raw_{path.stem}.png"
        write_bytes(out, buffer.getvalue())
        log.info("wrote %s (%d×%d)", out, figure.shape[1], figure.shape[0])


if __name__ == "__main__":
    main()
