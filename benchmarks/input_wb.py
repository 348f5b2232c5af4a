"""The learned ISP's input white-balanced by the file's as-shot gains (``data.input_wb``) or not.

    python benchmarks/input_wb.py --out bench-input-wb [--seeds 0,1]

For each seed, ``unisp demo``'s data and training (:func:`unisp.demo.run_demo`: one synthetic
camera whose exposure and white balance vary per shot, colour matrix and tone fixed; 9 RAW, 6
held-out and 9 RGB Kodak photos; stage 1, then the default unpaired recipe) run twice, with
``data.input_wb=none`` (the paper) and ``data.input_wb=as_shot``, in both stages. Each run is
scored on the held-out photos against their ground truth: the classical render X̂, stage 1 and
stage 2 (PSNR, SSIM, ΔE2000; X̂ does not depend on the setting, it is listed as the reference). Writes
``OUT/results.json`` and prints a Markdown table for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

from unisp.demo import XHAT_ROW, DemoSettings, run_demo
from unisp.export.latency import machine_description
from unisp.fileio import write_text

#: The settings of ``data.input_wb`` compared.
MODES = ("none", "as_shot")
#: The table's rows: its name → the row of the demo's ``summary.json`` (see :func:`unisp.demo.run_demo`).
ROWS = {"X̂": XHAT_ROW, "stage 1": "stage 1 (efficient_isp)", "stage 2": "stage 2, unpaired (efficient_isp)"}


def run_pair(out: Path, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """``{mode: {row: means}}`` of the demo run with each input white balance, for one seed."""
    results = {}
    for mode in MODES:
        folder = out / f"seed{seed}" / mode
        t0 = time.perf_counter()
        run_demo(folder, seed=seed, settings=DemoSettings(overrides=(f"data.input_wb={mode}",)))
        means = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["mean"]
        results[mode] = {row: means[key] for row, key in ROWS.items()}
        print(f"seed {seed}, input_wb {mode}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return results


#: The table's metrics, each with both settings side by side: name → (key in the demo's summary, decimals).
METRICS = {"PSNR dB": ("psnr", 2), "SSIM": ("ssim", 3), "ΔE2000": ("delta_e2000", 2)}


def cells(results: list[dict], name: str) -> list[str]:
    """Each metric with each setting, of row ``name``: the mean over ``results``, formatted."""
    return [
        f"{sum(r[mode][name][key] for r in results) / len(results):.{decimals}f}"
        for key, decimals in METRICS.values() for mode in MODES
    ]


def table(runs: dict[int, dict]) -> list[str]:
    """Markdown rows: each seed and row with each setting, then the mean over seeds."""
    header = [f"{metric}, {mode}" for metric in METRICS for mode in MODES]
    lines = ["| seed | method | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
    groups = [(str(seed), [result]) for seed, result in runs.items()]
    if len(runs) > 1:
        groups.append(("mean", list(runs.values())))
    for label, results in groups:
        for name in ROWS:
            lines.append(f"| {label} | {name} | " + " | ".join(cells(results, name)) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (the demo runs, results.json)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds of the demo's data and training")
    args = parser.parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    runs = {seed: run_pair(args.out, seed) for seed in (int(s) for s in args.seeds.split(","))}
    record = {"command": shlex.join(["python", *sys.argv]), "date": f"{started:%Y-%m-%d %H:%M} UTC",
              "machine": machine_description(), "runs": {str(k): v for k, v in runs.items()}}
    write_text(args.out / "results.json", json.dumps(record, indent=1) + "\n")
    print(f"`{record['command']}`  ")
    print(f"{record['date']}, {record['machine']}\n")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
