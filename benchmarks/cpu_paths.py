"""Ways to run efficient_isp fast on a CPU core: why unisp's fast path is a fused C++ kernel.

    python benchmarks/cpu_paths.py [--size 1600x1200] [--repeats 5]

One thread, so the figures are per core and, measured as process CPU time (``time.process_time``),
little disturbed by other processes on a shared machine. Candidates, all on the same input:

* PyTorch eager, NCHW (the default), and channels_last (oneDNN's blocked convolutions);
* PyTorch eager on square tiles with a 3-pixel halo (tile edges 32–256): small tiles keep the
  12-channel intermediates in cache but pay Python and dispatch overhead per tile;
* ONNX Runtime with its default graph optimisations (which include the NCHWc layout transform)
  and with ``ORT_ENABLE_EXTENDED`` (without it);
* the fused kernel of :mod:`unisp.export.fused`.

Prints the command, machine, date and a markdown table (ms, GFLOP/s at 2 FLOP per MAC, and the
single-thread sgemm rate for reference). Takes under a minute.
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

import torch

from unisp.export.fused import fused_forward
from unisp.export.latency import FLOP_PER_MAC, SGEMM_SIZE, keep_freed_memory, machine_description, parse_size
from unisp.models.registry import build_model, model_info

#: The halo a tile needs: three 3×3 convolutions at packed resolution.
HALO = 3
TILE_EDGES = (32, 64, 128, 256)


def cpu_seconds(fn, repeats: int) -> float:
    """Median process CPU seconds of ``fn()`` after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def tiled(model, x: torch.Tensor, tile: int) -> torch.Tensor:
    """``model.render(x)`` computed tile by tile, each tile with ``HALO`` packed pixels of context."""
    _, _, h, w = x.shape
    out = torch.empty(x.shape[0], 3, 2 * h, 2 * w)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(h, y0 + tile), min(w, x0 + tile)
            ya, xa = max(0, y0 - HALO), max(0, x0 - HALO)
            y = model.render(x[:, :, ya : min(h, y1 + HALO), xa : min(w, x1 + HALO)])
            out[:, :, 2 * y0 : 2 * y1, 2 * x0 : 2 * x1] = y[:, :, 2 * (y0 - ya) : 2 * (y1 - ya), 2 * (x0 - xa) : 2 * (x1 - xa)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1200x1600", help="output size: 2MP or HxW")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    allocator = keep_freed_memory()  # time the paths, not the OS zeroing fresh pages for each output
    height, width = parse_size(args.size)
    model = build_model("efficient_isp").eval()
    x = torch.rand(1, 4, height // 2, width // 2, generator=torch.Generator().manual_seed(0))
    gflop = FLOP_PER_MAC * model_info(model)["mac_per_pixel"] * height * width / 1e9

    results: dict[str, float] = {}
    with torch.inference_mode():
        results["PyTorch eager, NCHW"] = cpu_seconds(lambda: model.render(x), args.repeats)
        last = build_model("efficient_isp").eval().to(memory_format=torch.channels_last)
        last.load_state_dict(model.state_dict())
        x_last = x.contiguous(memory_format=torch.channels_last)
        results["PyTorch eager, channels_last"] = cpu_seconds(lambda: last.render(x_last), args.repeats)
        for edge in TILE_EDGES:
            results[f"PyTorch eager, {edge}² tiles + halo"] = cpu_seconds(lambda: tiled(model, x, edge), args.repeats)
        results["fused kernel"] = cpu_seconds(lambda: fused_forward(model, x, threads=1), args.repeats)
    results.update(onnxruntime_rows(model, x, (height, width), args.repeats))

    a, b = torch.rand(SGEMM_SIZE, SGEMM_SIZE), torch.rand(SGEMM_SIZE, SGEMM_SIZE)
    sgemm = FLOP_PER_MAC * SGEMM_SIZE**3 / cpu_seconds(lambda: torch.mm(a, b), args.repeats) / 1e9

    print(f"command: python benchmarks/cpu_paths.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {machine_description()}; 1 thread, process CPU time; {allocator}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"efficient_isp, {width}×{height} output ({gflop:.2f} GFLOP); sgemm ({SGEMM_SIZE}² torch.mm, 1 thread): {sgemm:.1f} GFLOP/s")
    print()
    print("| path | CPU ms | GFLOP/s | of sgemm |")
    print("|---|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds * 1e3:.1f} | {gflop / seconds:.1f} | {gflop / seconds / sgemm:.0%} |")


def onnxruntime_rows(model, x: torch.Tensor, shape: tuple[int, int], repeats: int) -> dict[str, float]:
    """CPU seconds of ONNX Runtime at two graph-optimisation levels (empty when it is not installed)."""
    try:
        import onnxruntime as ort

        from unisp.export.onnx import export_onnx
    except ImportError as e:
        print(f"ONNX Runtime rows skipped ({e})")
        return {}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", shape=shape)
        array = x.numpy()
        for label, level in (
            ("ONNX Runtime, default optimisations (NCHWc)", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
            ("ONNX Runtime, ORT_ENABLE_EXTENDED (no layout transform)", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        ):
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.graph_optimization_level = level
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            rows[label] = cpu_seconds(lambda: session.run(None, {name: array}), repeats)
    return rows


if __name__ == "__main__":
    main()
