"""``unisp process``'s tiled inference on an accelerator: end to end, the model alone, and against the CPU.

    python benchmarks/process_device.py [--size 12MP] [--device cuda] [--tiles 512,1024,2048]
                                        [--repeats 4] [--model efficient_isp|M.safetensors]

A synthetic 10-bit RGGB frame (``benchmarks/latency.py``'s, written as a DNG and read back by
unisp) goes through :func:`unisp.models.tiled.run_tiled` on the CPU (the reference) and on
``--device`` for each tile edge, as float output (``depth=None``) and as 8-bit output (what
``unisp process`` writes by default). Reported: the median wall time after one warm-up
(synchronised), MPix/s, the largest float difference from the CPU run, how many 8-bit values
differ from the CPU run's (float rounding can move a value that sits at a rounding half), and
the model alone on the whole frame already on the device (float32 and bfloat16), which bounds
what tiling and the host copies leave. ``--device cpu`` runs the same wiring on the CPU.

The timing does not depend on the weights (default: a randomly initialised efficient_isp).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latency import BLACK, WHITE, synthetic_mosaic
from unisp.device import resolve_device
from unisp.errors import UnispError
from unisp.export.latency import machine_description, parse_size
from unisp.models.checkpoint import load_generator
from unisp.models.tiled import run_tiled
from unisp.raw.bayer import CFA
from unisp.raw.dng import write_dng
from unisp.raw.io import read_raw

DEFAULT_TILES = "512,1024,2048"
#: Precisions of the model-alone rows.
MODEL_DTYPES = (torch.float32, torch.bfloat16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="12MP", help="output size: 12MP or HxW")
    parser.add_argument("--device", default="cuda", help="cuda[:N] (or cpu, to check the wiring)")
    parser.add_argument("--tiles", default=DEFAULT_TILES, help="comma-separated tile edges in packed pixels")
    parser.add_argument("--repeats", type=int, default=4, help="runs per row; the first is a warm-up")
    parser.add_argument("--model", default="efficient_isp", help="model name (random weights) or model file")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the first run is a warm-up)")
    try:
        device = resolve_device(args.device)
        height, width = parse_size(args.size)
    except UnispError as e:
        parser.error(str(e))
    mp = height * width / 1e6
    torch.manual_seed(0)
    model, _, _ = load_generator(args.model)
    model.eval()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def median_seconds(fn) -> tuple[float, object]:
        times, result = [], None
        for _ in range(args.repeats):
            sync()
            t0 = time.perf_counter()
            result = fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:]), result

    with tempfile.TemporaryDirectory(prefix="unisp-process-device-") as tmp:
        dng = Path(tmp) / "frame.dng"
        write_dng(dng, synthetic_mosaic(height, width), CFA.RGGB, black_level=BLACK, white_level=WHITE,
                  as_shot_neutral=(0.5, 1.0, 0.6), colour_matrix=np.eye(3))
        frame = read_raw(dng)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    print(f"command: python benchmarks/{Path(__file__).name} {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"machine: {machine_description()}; device {device} ({where})")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {width}×{height} frame")
    print()
    cpu_float = run_tiled(model, frame)
    cpu_8bit = run_tiled(model, frame, depth=8)
    cpu_s, _ = median_seconds(lambda: run_tiled(model, frame, depth=8))
    print("| run | tile | output | median ms | MPix/s | against the CPU run |")
    print("|---|---|---|---|---|---|")
    print(f"| CPU ({torch.get_num_threads()} threads) | 512 | 8-bit | {cpu_s * 1e3:.0f} | {mp / cpu_s:.0f} | — |")
    on_device = model.to(device)
    for tile in (int(t) for t in args.tiles.split(",") if t):
        seconds, out = median_seconds(lambda: run_tiled(on_device, frame, tile=tile, device=device))
        diff = (out - cpu_float).abs().max().item()
        print(f"| {device} | {tile} | float32 | {seconds * 1e3:.0f} | {mp / seconds:.0f} | max abs diff {diff:.1e} |")
        seconds, out = median_seconds(lambda: run_tiled(on_device, frame, tile=tile, depth=8, device=device))
        changed = int(np.count_nonzero(out != cpu_8bit))
        print(f"| {device} | {tile} | 8-bit | {seconds * 1e3:.0f} | {mp / seconds:.0f} | {changed} of {out.size} values differ |")
    packed = frame.normalized()[None].to(device)
    with torch.inference_mode():
        for dtype in MODEL_DTYPES:
            alone = on_device.to(dtype)
            x = packed.to(dtype)
            seconds, _ = median_seconds(lambda: alone(x))
            print(f"| {device}, model alone, {str(dtype).removeprefix('torch.')} | whole frame | on the device "
                  f"| {seconds * 1e3:.1f} | {mp / seconds:.0f} | — |")


if __name__ == "__main__":
    main()
