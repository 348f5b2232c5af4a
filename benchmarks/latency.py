"""12 MP RAW → sRGB latency per backend, next to the machine's sgemm rate and LibRaw's AHD render.

    python benchmarks/latency.py [--size 12MP] [--model efficient_isp|M.safetensors] [--repeats 5]
                                 [--threads 0] [--libraw-repeats 3] [--no-int8] [--allocator keep|default]

A synthetic RAW frame (a photo that ships with scikit-image, resized to the requested size,
linearised and mosaicked to 10-bit RGGB with black level 64) is written as a DNG with
:func:`unisp.raw.dng.write_dng` and read back with unisp's reader. The learned ISP's packed input
comes from that read, and the same DNG is rendered by LibRaw (``rawpy.postprocess()``, AHD
demosaicing, its default), so both sides start from the same file:

* every backend of :func:`unisp.export.latency.run_latency` (:mod:`unisp.export.runtimes`: PyTorch
  as ``torch``, torch.compile, ONNX Runtime, TFLite with XNNPACK when the ``[mobile]`` extra is
  installed, the fused C++ kernel in fp32 and, on CPUs with AVX512-BF16, in bf16 with its PSNR
  against torch fp32):
  median ms, MPix/s, GFLOP/s (2 FLOP per MAC) and that rate as a fraction of the sgemm rate
  measured in the same run;
* an int8 ONNX export calibrated on the DNG itself (``--no-int8`` leaves it out): its latency in
  ONNX Runtime and its parity PSNR against PyTorch fp32 (from the export's parity report);
* LibRaw: ``rawpy.imread`` + ``postprocess()`` per megapixel, unisp's own read + pack +
  normalise of the DNG (the learned ISP's input side), and unisp's classical render of it
  (``unisp render``'s defaults, AHD);
* the issue's goals at 12 MP, each marked met or not.

The timing does not depend on the weights; the default model is a randomly initialised
efficient_isp (pass a model file to time your own). Prints a header (command, machine, date)
and markdown tables for docs/RESULTS.md. At 12 MP on 2 cores it takes about 2–3 minutes
(torch.compile's first compilation is ~30 s of it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rawpy
import torch
import torch.nn.functional as F
from skimage import data as skdata

from unisp.export.latency import DEFAULT_SIZE, machine_description, parse_size, run_latency
from unisp.export.runtimes import NAMES as BACKENDS
from unisp.export.runtimes import REDUCED_PRECISION
from unisp.isp.pipeline import render_frame
from unisp.models.checkpoint import load_generator
from unisp.raw.bayer import CFA
from unisp.raw.dng import write_dng
from unisp.raw.io import read_raw

#: Issue 5's goals at 12 MP on 2 cores.
GOAL_FRACTION_OF_SGEMM = 0.80  # fp32 ≥ 80 % of the measured sgemm rate
GOAL_REDUCED_MPIX_S = 120.0  # int8 or bf16 ≥ 120 MPix/s ...
GOAL_REDUCED_PSNR_DB = 40.0  # ... at parity ≥ 40 dB
GOAL_VS_LIBRAW = 5.0  # ≥ 5× faster per megapixel than LibRaw's AHD
#: Synthetic sensor: 10 bits, black 64 (a typical phone sensor's levels).
WHITE, BLACK = 1023, 64
#: sRGB decoding exponent used to linearise the photo (the usual 2.2 approximation; exactness is irrelevant here).
GAMMA = 2.2


def synthetic_mosaic(height: int, width: int) -> np.ndarray:
    """A 10-bit RGGB mosaic of scikit-image's ``chelsea`` photo resized to ``height × width``."""
    photo = torch.from_numpy(skdata.chelsea().astype(np.float32) / 255).permute(2, 0, 1)[None]
    linear = F.interpolate(photo, size=(height, width), mode="bilinear", align_corners=False)[0].clamp(0, 1) ** GAMMA
    mosaic = torch.empty(height, width)
    mosaic[0::2, 0::2] = linear[0, 0::2, 0::2]  # R
    mosaic[0::2, 1::2] = linear[1, 0::2, 1::2]  # Gr
    mosaic[1::2, 0::2] = linear[1, 1::2, 0::2]  # Gb
    mosaic[1::2, 1::2] = linear[2, 1::2, 1::2]  # B
    return (BLACK + mosaic.numpy() * (WHITE - BLACK)).round().astype(np.uint16)


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default=DEFAULT_SIZE, help="output size: 12MP or HxW")
    parser.add_argument("--model", default="efficient_isp", help="model name (random weights) or model file")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per backend")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--libraw-repeats", type=int, default=3)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated subset of " + ",".join(BACKENDS))
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 ONNX export and its row")
    parser.add_argument("--allocator", choices=("keep", "default"), default="keep",
                        help="keep: glibc keeps freed memory (see unisp.export.latency.keep_freed_memory)")
    args = parser.parse_args()
    height, width = parse_size(args.size)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    model, _, model_file = load_generator(args.model)
    mp = height * width / 1e6

    print(f"command: python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:])}")
    print(f"machine: {machine_description()}; {threads} threads")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print()

    with tempfile.TemporaryDirectory(prefix="unisp-latency-") as tmp:
        dng = Path(tmp) / "calib" / "frame.dng"
        dng.parent.mkdir()
        write_dng(dng, synthetic_mosaic(height, width), CFA.RGGB, black_level=BLACK, white_level=WHITE,
                  as_shot_neutral=(0.5, 1.0, 0.6), colour_matrix=np.eye(3))

        def unisp_read():
            return read_raw(dng).normalized()[None]

        read_s = median_seconds(unisp_read, args.libraw_repeats)
        packed = unisp_read()

        def libraw_render():
            with rawpy.imread(str(dng)) as raw:
                return raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)

        libraw_s = median_seconds(libraw_render, args.libraw_repeats)
        classical_s = median_seconds(lambda: render_frame(read_raw(dng)), args.libraw_repeats)

        report = run_latency(
            model, height=height, width=width, repeats=args.repeats, threads=threads, packed=packed,
            input_note=f"the DNG read back by unisp ({width}×{height} 10-bit RGGB, synthetic)",
            backends=[b for b in args.backends.split(",") if b], model_file=model_file, allocator=args.allocator,
        )
        int8 = None if args.no_int8 else time_int8(model, dng.parent, packed, (height, width), threads, args.repeats, Path(tmp))

    print(report.to_markdown())
    print()
    if int8 is not None:
        seconds, psnr_db, size = int8
        rate = report.gflop / seconds
        print("| backend | median ms | MPix/s | GFLOP/s | of sgemm | parity vs PyTorch fp32 | file |")
        print("|---|---|---|---|---|---|---|")
        print(f"| onnxruntime int8 (QDQ, calibrated on the DNG) | {seconds * 1e3:.1f} | {mp / seconds:.1f} | {rate:.1f} "
              f"| {rate / report.sgemm:.0%} | {psnr_db:.1f} dB min PSNR | {size / 1024:.1f} KiB |")
        print()
    print(f"LibRaw {'.'.join(map(str, rawpy.libraw_version))} AHD (rawpy.imread + postprocess, 8-bit sRGB): {libraw_s * 1e3:.0f} ms "
          f"= {libraw_s * 1e3 / mp:.1f} ms per MP (median of {args.libraw_repeats})")
    print(f"unisp read + pack + normalise of the same DNG: {read_s * 1e3:.0f} ms = {read_s * 1e3 / mp:.1f} ms per MP")
    print(f"unisp classical render of the same DNG (read + `unisp render`'s defaults: AHD, as-shot white balance, "
          f"the file's matrix, sRGB curve; float32): {classical_s * 1e3:.0f} ms = {classical_s * 1e3 / mp:.1f} ms per MP")
    print()
    print(goals(report, int8, libraw_s, mp))


def time_int8(model, calib_dir: Path, packed: torch.Tensor, shape: tuple[int, int], threads: int, repeats: int,
              tmp: Path) -> tuple[float, float, int] | None:
    """``(median seconds, min parity PSNR dB, file bytes)`` of an int8 ONNX export, or None if it cannot be made."""
    try:
        from unisp.export.onnx import OnnxRunner, export_onnx
    except ImportError as e:
        print(f"int8 row skipped: ONNX export unavailable ({e})")
        return None
    path = export_onnx(model, tmp / "model_int8.onnx", precision="int8", shape=shape, calib=calib_dir)
    parity = json.loads(Path(f"{path}.parity.json").read_text())
    runner = OnnxRunner(path, threads=threads)
    runner(packed)
    return median_seconds(lambda: runner(packed), repeats), float(parity["min_psnr_db"]), path.stat().st_size


def goals(report, int8, libraw_s: float, mp: float) -> str:
    """The issue's goals as a markdown table, each measured value against its threshold."""
    ran = [r for r in report.rows if not r.skipped]
    best = min((r for r in ran if r.backend not in REDUCED_PRECISION), key=lambda r: r.median)
    best_rate = report.gflop / best.median
    lines = ["| goal (issue 5) | measured | met |", "|---|---|---|"]
    lines.append(
        f"| fp32 ≥ {GOAL_FRACTION_OF_SGEMM:.0%} of the sgemm rate ({report.sgemm:.0f} GFLOP/s) | "
        f"{best.backend}: {best_rate:.0f} GFLOP/s = {best_rate / report.sgemm:.0%} | "
        f"{'yes' if best_rate >= GOAL_FRACTION_OF_SGEMM * report.sgemm else 'no'} |"
    )
    # For comparison in the same cell: the fastest fp32 backend, whose parity is float32 rounding.
    fp32 = f"(fp32 {best.backend}: {mp / best.median:.0f} MPix/s, max abs diff {best.max_abs_diff or 0:.0e})"
    # Reduced-precision candidates: (label, seconds, parity PSNR dB) of the int8 export and the bf16 kernel.
    reduced = [("onnxruntime int8", int8[0], int8[1])] if int8 is not None else []
    reduced += [(r.backend, r.median, r.psnr_db) for r in ran if r.backend in REDUCED_PRECISION and r.psnr_db is not None]
    goal = f"| int8 or bf16 ≥ {GOAL_REDUCED_MPIX_S:.0f} MPix/s at parity ≥ {GOAL_REDUCED_PSNR_DB:.0f} dB |"
    if reduced:
        met = any(mp / sec >= GOAL_REDUCED_MPIX_S and db >= GOAL_REDUCED_PSNR_DB for _, sec, db in reduced)
        measured = "; ".join(f"{label}: {mp / sec:.0f} MPix/s at {db:.1f} dB" for label, sec, db in reduced)
        lines.append(f"{goal} {measured} {fp32} | {'yes' if met else 'no'} |")
    else:
        lines.append(f"{goal} not measured {fp32} | — |")
    libraw_per_mp = libraw_s / mp
    best_per_mp = best.median / mp
    lines.append(
        f"| ≥ {GOAL_VS_LIBRAW:.0f}× faster per MP than LibRaw AHD ({libraw_per_mp * 1e3:.1f} ms/MP) | "
        f"{best.backend}: {best_per_mp * 1e3:.2f} ms/MP = {libraw_per_mp / best_per_mp:.1f}× | "
        f"{'yes' if libraw_per_mp / best_per_mp >= GOAL_VS_LIBRAW else 'no'} |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
