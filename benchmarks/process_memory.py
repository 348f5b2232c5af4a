"""Peak memory of ``unisp process`` on a 48-megapixel RAW, and tiled output against an untiled run.

    python benchmarks/process_memory.py [--megapixels 48] [--tile 512] [--out docs/RESULTS.md]

Writes a random-content 10-bit headerless RAW (8000×6000 for 48 MP), a model file, runs
``unisp process`` in a child process and reads its peak resident memory (ru_maxrss); then
checks the written image against one untiled pass of the same model.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unisp.fileio import quantize, read_pixels
from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame

#: Target of the generators issue: a 48 MP RAW under 1.5 GB peak resident memory.
LIMIT_GB = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=48.0)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--skip-untiled", action="store_true", help="skip the (memory-hungry) untiled comparison")
    args = parser.parse_args()

    width = int(round(math.sqrt(args.megapixels * 1e6 * 4 / 3) / 2)) * 2
    height = int(round(width * 3 / 4 / 2)) * 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        mosaic = rng.integers(0, 1024, size=(height, width), dtype=np.uint16)
        mosaic.astype("<u2").tofile(tmp / "big.raw")
        torch.manual_seed(0)
        model = build_model("efficient_isp").eval()
        save_model(tmp / "m.safetensors", model, name="efficient_isp")
        cmd = [
            sys.executable, "-m", "unisp.cli", "-q", "process", str(tmp / "big.raw"), "--model", str(tmp / "m.safetensors"),
            "--out", str(tmp / "out"), "--width", str(width), "--height", str(height), "--bits", "10",
            "--cfa", "RGGB", "--tile", str(args.tile), "--device", "cpu",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - t0
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2  # Linux: KiB
        print(f"{width}×{height} ({width * height / 1e6:.1f} MP), tile {args.tile}: "
              f"peak RSS {peak_gb:.2f} GB (limit {LIMIT_GB} GB), {seconds:.1f} s wall incl. start-up and PNG encoding")
        if not args.skip_untiled:
            written = read_pixels(tmp / "out" / "big.png")
            frame = RawFrame(mosaic, CFA.RGGB, (0, 0, 0, 0), 1023)
            with torch.inference_mode():
                untiled = quantize(model.infer(frame.normalized().unsqueeze(0))[0], 8)
            diff = np.abs(written.astype(np.int32) - untiled.astype(np.int32))
            print(f"tiled vs untiled (8-bit codes): max |diff| {diff.max()}, differing pixels {np.count_nonzero(diff)}")
        print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
