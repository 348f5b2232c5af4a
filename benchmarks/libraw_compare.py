"""The classical render against LibRaw's ``postprocess()`` (and trained models), on DNGs with ground truth.

Each Kodak24 / McMaster photo is unprocessed through a purely colorimetric camera (a colour
matrix and white-balance gains; no noise, no tone curve, no brightening gain) into a 10-bit
mosaic, written as a DNG with full metadata (:func:`unisp.raw.dng.write_dng`: black and white
levels, ColorMatrix1 for D65, AsShotNeutral). The same DNG is then rendered by

- unisp's classical pipeline, read back through LibRaw like any camera file (``unisp render``'s
  settings: as-shot white balance, the file's colour matrix, sRGB curve; AHD, and the other
  demosaicing methods for reference);
- LibRaw's ``postprocess()`` (rawpy): camera white balance, sRGB output, AHD, no auto-brightening,
  the sRGB curve (gamma 2.4, toe slope 12.92), 16-bit output; once with LibRaw's default white
  level heuristic and once with the file's white level (see :data:`LIBRAW_ROWS`);
- each model given with ``--model`` (full resolution, tiled);
- with ``--train DIR``, models trained on this camera's DNGs (efficient_isp: stage 1, then paired
  and unpaired from it; the quality study's recipes and photo split, see :func:`train_models`).
  The training photos are then left out of the comparison, which scores only the held-out ones.

and every output is scored against the photo (PSNR, and ΔE2000) by the protocol of docs/EVAL.md.
Target: the classical render within 0.5 dB of LibRaw; the trained models above both.

Usage:
    python benchmarks/libraw_compare.py [--data ../shared/data] [--model M.safetensors ...] [--limit N] [--out DIR]
    python benchmarks/libraw_compare.py --train libraw-train --out libraw-trained   # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import rawpy
import torch
from quality_study import split_photos, train_chain

from unisp.eval.evaluate import evaluate_images
from unisp.fileio import list_images, read_rgb, write_image, write_text
from unisp.isp.demosaic import DEMOSAIC_METHODS
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.models.checkpoint import load_model
from unisp.models.tiled import run_tiled
from unisp.raw.bayer import crop_to_even
from unisp.raw.dng import write_dng
from unisp.raw.io import SRGB_TO_XYZ_D65, read_raw
from unisp.synth.camera import preset_ccm
from unisp.synth.unprocess import SensorModel, unprocess

log = logging.getLogger("libraw_compare")

#: Default data folder: ``shared/data`` beside the repository root.
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DATASETS = ("kodak24", "mcmaster")
#: The camera: Brooks et al.'s Sony A7R colour matrix (unisp.synth.camera), white-balance gains in
#: the middle of their ranges (red 1.9–2.4, blue 1.5–1.9), no brightening (so LibRaw, which
#: normalises AsShotNeutral to green = 1, needs no exposure correction), no noise, no tone curve.
CAMERA_MATRIX = "sony_a7r"
RED_GAIN, BLUE_GAIN = 2.15, 1.7
BITS = 10
METRICS = ("psnr", "delta_e2000")
#: LibRaw's sRGB transfer curve: rawpy's ``gamma=(power, toe slope)``; (2.4, 12.92) is IEC 61966-2-1.
SRGB_GAMMA = (2.4, 12.92)
#: LibRaw's 16-bit output range.
LIBRAW_MAX = 65535.0
#: The two LibRaw rows, by their ``adjust_maximum_thr``. LibRaw's default (0.75) takes the data
#: maximum as the white level whenever it lies between 75 % and 100 % of the file's WhiteLevel, a
#: heuristic for cameras whose real saturation sits below the recorded one; on these exact DNGs it
#: brightens every photo whose brightest sample is in that range (kodim01: maximum 798 of 1023,
#: 22.8 dB instead of 27.8). With 0 LibRaw honours the file's white level, as unisp does.
LIBRAW_DEFAULT = "LibRaw postprocess (AHD)"
LIBRAW_WHITE = "LibRaw postprocess (AHD, file's white level)"
LIBRAW_ROWS = {LIBRAW_DEFAULT: 0.75, LIBRAW_WHITE: 0.0}
#: ``--train``: stage-1 and stage-2 lengths (the quality study's --quick stage 1; stage 2 300
#: steps), batch 8 × 128² as configs/unpaired.yaml, and the stage-2 runs trained: the paper's
#: paired row and unisp's default unpaired recipe (:func:`quality_study.train_chain`).
TRAIN_STEPS = {"stage1": 800, "stage2": 300}
TRAIN_BATCH, TRAIN_PATCH = 8, 128
TRAIN_MODES = ("paired", "unisp")


def camera() -> SensorModel:
    """The purely colorimetric camera described above."""
    return SensorModel(bits=BITS, rgb2cam=preset_ccm(CAMERA_MATRIX), rgb_gain=1.0, red_gain=RED_GAIN, blue_gain=BLUE_GAIN,
                       shot_noise=0.0, read_noise=0.0, tone_curve=False)


def write_synthetic_dng(photo: torch.Tensor, path: Path, model: SensorModel) -> None:
    """Unprocess ``photo`` with ``model`` and write it as a DNG with full metadata.

    ColorMatrix1 is the XYZ → (white-balanced) camera matrix ``rgb2cam · (sRGB → XYZ)⁻¹``, with
    the sRGB → XYZ matrix the reader uses (unisp.raw.io), so that reading it back gives
    ``cam2rgb``; the white-balance gains go into AsShotNeutral (their inverse), as a camera
    records them.
    """
    frame = unprocess(photo, model)
    xyz_to_camera = model.rgb2cam.numpy() @ np.linalg.inv(np.asarray(SRGB_TO_XYZ_D65))
    neutral = [1.0 / model.red_gain, 1.0, 1.0 / model.blue_gain]
    write_dng(path, frame.mosaic, frame.cfa, black_level=frame.black_level[0], white_level=int(frame.white_level),
              as_shot_neutral=neutral, colour_matrix=xyz_to_camera)


def libraw_render(path: Path, adjust_maximum_thr: float) -> torch.Tensor:
    """LibRaw's ``postprocess()`` of ``path``: ``(3, H, W)`` float in [0, 1]; see :data:`LIBRAW_ROWS`."""
    with rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, use_camera_wb=True, use_auto_wb=False,
            output_color=rawpy.ColorSpace.sRGB, no_auto_bright=True, gamma=SRGB_GAMMA, output_bps=16,
            adjust_maximum_thr=adjust_maximum_thr,
        )
    return torch.from_numpy(rgb.astype(np.float32) / LIBRAW_MAX).permute(2, 0, 1)


def train_models(data: Path, work: Path) -> dict[str, Path]:
    """Train efficient_isp on this camera's DNGs; return ``{row name: model file}``.

    The photos are split as in the quality study (:func:`quality_study.split_photos`): the RAW
    side becomes DNGs (with their photos as the paired targets), the disjoint RGB side is the
    unrelated look of the unpaired run, and the test photos are left for :func:`compare`. Stage 1
    (configs/stage1.yaml) learns the classical render of the DNGs; the paper's paired row and
    unisp's unpaired recipe start from it. A finished run in ``work`` is reused.
    """
    split = split_photos(data)
    sensor = camera()
    for path in split["raw"]:
        truth = crop_to_even(read_rgb(path))
        stem = f"{path.parent.name}_{path.stem}"
        write_synthetic_dng(truth, work / "raw" / f"{stem}.dng", sensor)
        write_image(work / "rgb" / f"{stem}.png", truth)
    for path in split["rgb"]:
        write_image(work / "rgb_side" / f"{path.parent.name}_{path.stem}.png", read_rgb(path))
    common = {"model": "efficient_isp", "data.raw_dir": work / "raw", "batch_size": TRAIN_BATCH, "data.patch": TRAIN_PATCH,
              "data.samples_per_epoch": TRAIN_BATCH * 100, "tensorboard": False, "log_every": 10**6,
              "losses.profile": "lite"}
    s1, s2 = TRAIN_STEPS["stage1"], TRAIN_STEPS["stage2"]
    runs = work / "runs"
    train_chain(runs, common, {"steps": s1, "ckpt_every": s1, "val_every": s1},
                {"steps": s2, "ckpt_every": s2, "val_every": s2, "image_every": s2},
                {"aligned": work / "rgb", "unrelated": work / "rgb_side"}, TRAIN_MODES)
    return {"stage 1": runs / "stage1" / "model.safetensors", **{m: runs / m / "model.safetensors" for m in TRAIN_MODES}}


def compare(models: dict[str, Path], photos: list[Path], work: Path) -> dict:
    sensor = camera()
    nets = {name: load_model(m)[0].eval() for name, m in models.items()}
    rows: dict[str, list[torch.Tensor]] = {}
    truths, names, seconds = [], [], {}

    def add(row: str, image: torch.Tensor, started: float) -> None:
        rows.setdefault(row, []).append(image)
        seconds[row] = seconds.get(row, 0.0) + time.perf_counter() - started

    for photo_path in photos:
        truth = crop_to_even(read_rgb(photo_path))
        dng = work / f"{photo_path.parent.name}_{photo_path.stem}.dng"
        write_synthetic_dng(truth, dng, sensor)
        frame = read_raw(dng)
        for method in DEMOSAIC_METHODS:
            t = time.perf_counter()
            add(f"unisp classical ({method})", render_frame(frame, ISPConfig(demosaic=method)), t)
        for row, threshold in LIBRAW_ROWS.items():
            t = time.perf_counter()
            add(row, libraw_render(dng, threshold), t)
        for name, net in nets.items():
            t = time.perf_counter()
            add(f"model {name}", run_tiled(net, frame), t)
        truths.append(truth)
        names.append(dng.stem)
        log.info("%s", dng.name)
    results = {}
    for row, images in rows.items():
        result = evaluate_images(images, truths, names, metrics=METRICS)
        results[row] = {
            "means": result.means,
            "per_dataset_psnr": {d: float(np.mean([r.scores["psnr"] for r in result.rows if r.name.startswith(d)]))
                                 for d in DATASETS},
            "failures": result.failures,
            "seconds": round(seconds[row], 2),
        }
    return {"images": names, "camera": sensor.to_dict(), "rows": results}


def to_markdown(results: dict) -> str:
    libraw, white = (results["rows"][row]["means"]["psnr"] for row in (LIBRAW_DEFAULT, LIBRAW_WHITE))
    lines = ["| render | PSNR (dB) | Kodak24 | McMaster | ΔE2000 | PSNR − LibRaw (dB) "
             "| PSNR − LibRaw, file's white level (dB) |", "|---|---|---|---|---|---|---|"]
    for row, r in results["rows"].items():
        m, d = r["means"], r["per_dataset_psnr"]
        lines.append(f"| {row} | {m['psnr']:.2f} | {d['kodak24']:.2f} | {d['mcmaster']:.2f} | "
                     f"{m['delta_e2000']:.2f} | {m['psnr'] - libraw:+.2f} | {m['psnr'] - white:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding kodak24/ and mcmaster/")
    parser.add_argument("--model", type=Path, action="append", default=[], help="a model file to compare (repeatable)")
    parser.add_argument("--limit", type=int, help="at most this many photos per dataset")
    parser.add_argument("--out", type=Path, help="write results.md and results.json here")
    parser.add_argument("--keep-dngs", type=Path, help="write the DNGs into this folder (default: a temporary one)")
    parser.add_argument("--train", type=Path, metavar="DIR",
                        help="train models on this camera here (reused when there) and score the held-out photos only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("rawpy %s, LibRaw %s", rawpy.__version__, rawpy.libraw_version)
    models = {m.name: m for m in args.model}
    if args.train is not None:
        models.update(train_models(args.data, args.train))
        photos = split_photos(args.data)["test"]
    else:
        photos = [p for d in DATASETS for p in list_images(args.data / d)]
    photos = [p for d in DATASETS for p in [q for q in photos if q.parent.name == d][: args.limit]]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep_dngs or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = compare(models, photos, work)
    results.update({"rawpy": rawpy.__version__, "libraw": ".".join(map(str, rawpy.libraw_version)),
                    "date": time.strftime("%Y-%m-%d")})
    table = to_markdown(results)
    log.info("\n%s", table)
    if args.out is not None:
        write_text(args.out / "results.md", table)
        write_text(args.out / "results.json", json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
