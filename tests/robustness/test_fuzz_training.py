"""``unisp train`` with inputs that used to go wrong quietly: every case ends in one clear line.

A run that cannot start (a bad value, data that does not fit, a device this machine lacks, a batch
that cannot fit in memory) is refused before its run folder is created; a non-empty run folder is
not trained into without ``--resume`` or ``--overwrite``; a resume that would change what is
trained is refused; a run whose output collapses to one constant image stops; RGB photos that look
like RAW mosaics are warned about. Training runs are tiny (32×32 mosaics, 16-pixel patches, a step
or two), a second or two each.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
import torch
import yaml
from fuzz_checks import assert_success, assert_user_error, files_in, invoke
from fuzz_corpus import mosaic, png_bytes, photo, write

from unisp.config import MAX_CONFIG_DEPTH
from unisp.data.unpaired import MOSAIC_RATIO, mosaic_signs, period2_ratio
from unisp.device import available_devices, resolve_device
from unisp.errors import UnispError
from unisp.fileio import read_rgb
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png
from unisp.train import memory
from unisp.train.config import DataConfig, PixelLossConfig, TrainConfig
from unisp.train.guard import COLLAPSE_STD, collapse

#: One stage-1 step on the tiny set, no validation, no TensorBoard.
TINY = ["mode=stage1", "pixel.l1=1", "steps=1", "batch_size=1", "data.patch=16", "tensorboard=false",
        "data.samples_per_epoch=2", "data.val_fraction=0", "device=cpu"]
#: Unpaired mode with a pixel term only: the RGB side is read (and checked), no backbone is built.
UNPAIRED = ["mode=unpaired", *(f"losses.{t}=0" for t in ("content", "colour", "texture_low", "texture_high", "tv"))]


def smooth_mosaic(size: int = 32) -> np.ndarray:
    """An RGGB mosaic (10-bit) of a smooth colour gradient, as a camera records a plain scene."""
    y, x = np.mgrid[0:size, 0:size] / size
    planes = {"R": 200 + 300 * x, "G": 500 + 200 * y, "B": 150 + 100 * (x + y)}
    out = np.empty((size, size))
    out[0::2, 0::2], out[1::2, 1::2] = planes["R"][0::2, 0::2], planes["B"][1::2, 1::2]
    out[0::2, 1::2], out[1::2, 0::2] = planes["G"][0::2, 1::2], planes["G"][1::2, 0::2]
    return out.astype(np.uint16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``raw`` (two 32×32 RAW mosaics), ``rgb`` (photos), ``mono`` (one-channel 16-bit mosaics) and
    ``cfa`` (RGB images in which each pixel holds only its Bayer colour)."""
    root = tmp_path_factory.mktemp("train_data")
    for i in range(2):
        frame = RawFrame(mosaic=mosaic((32, 32), seed=i), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
        write_mosaic_png(root / "raw" / f"f{i}.png", frame)
        write(root / "rgb" / f"f{i}.png", png_bytes(photo(seed=i)))
        write(root / "mono" / f"m{i}.png", png_bytes(mosaic((32, 32), seed=i) * 64))
        cfa = smooth_mosaic()
        coloured = np.zeros((32, 32, 3), np.uint16)
        coloured[0::2, 0::2, 0], coloured[1::2, 1::2, 2] = cfa[0::2, 0::2], cfa[1::2, 1::2]
        coloured[0::2, 1::2, 1], coloured[1::2, 0::2, 1] = cfa[0::2, 1::2], cfa[1::2, 0::2]
        write(root / "cfa" / f"c{i}.png", png_bytes(coloured * 64))
    return root


def train_args(data, out, *extra) -> list[str]:
    return ["train", *TINY, f"data.raw_dir={data / 'raw'}", f"out={out}", *extra]


def snapshot(folder) -> dict:
    return {p: p.read_bytes() for p in files_in(folder)}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data):
    """A run of 2 steps with a checkpoint at each (copied by tests that change it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    assert_success(invoke(*train_args(data, run, "steps=2", "ckpt_every=1", "log_every=1")))
    return run


def copy_run(run, base):
    shutil.copytree(run, base / "run")
    return base / "run"


# ----------------------------------------------------------------------------- the run folder


def test_a_finished_run_is_not_trained_over(tmp_path, data, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    result = invoke(*train_args(data, run))
    assert_user_error(result, str(run))
    assert "--resume" in result.output and "--overwrite" in result.output
    assert snapshot(run) == before


def test_a_folder_with_other_files_is_not_trained_into(tmp_path, data):
    folder = tmp_path / "notes"
    write(folder / "notes.txt", b"mine\n")
    assert_user_error(invoke(*train_args(data, folder)), str(folder))
    assert [p.name for p in files_in(folder)] == ["notes.txt"]


def test_overwrite_replaces_the_previous_run_and_keeps_other_files(tmp_path, data, finished_run):
    run = copy_run(finished_run, tmp_path)
    write(run / "notes.txt", b"mine\n")
    assert_success(invoke(*train_args(data, run, "--overwrite", "seed=1")))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000001.safetensors"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"] for r in records} == {1}, "records of the previous run were kept"
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 1
    assert (run / "notes.txt").read_bytes() == b"mine\n"


def test_overwrite_that_fails_its_checks_leaves_the_previous_run(tmp_path, data, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    assert_user_error(invoke(*train_args(data, run, "--overwrite", "data.patch=64")), "smaller than")
    assert snapshot(run) == before


def test_resume_and_overwrite_together_are_refused(tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    assert_user_error(invoke("train", "--resume", run, "--overwrite"), "--overwrite")
    assert_user_error(invoke("train", "--resume", run, "--out", tmp_path / "other"), "--out")
    assert snapshot(run) == before and not (tmp_path / "other").exists()


# ----------------------------------------------------------------- runs that cannot start


SETUP_FAILURES = {
    "patch-larger-than-images": (["data.patch=64"], "f0.png"),
    "photos-as-raw": (["data.raw_dir={rgb}"], "f0.png"),
    "betas-above-1": (["betas=[1.5, 0.9]"], "'betas[0]'"),
    "d-betas-negative": (["d_betas=[0.5, -0.1]"], "'d_betas[1]'"),
    "workers-negative": (["data.workers=-1"], "'data.workers'"),
    "val-max-images-negative": (["data.val_max_images=-1"], "'data.val_max_images'"),
    "batch-above-epoch": (["batch_size=4", "data.samples_per_epoch=2"], "'data.samples_per_epoch'"),
    "unknown-model": (["model=resnet"], "'model'"),
    "seed-too-large": (["seed=36893488147419103232"], "'seed'"),
    "batch-beyond-memory": (["batch_size=100000", "data.samples_per_epoch=100000", "data.patch=256"], "batch_size=100000"),
    "device-mps": (["device=mps"], "'mps'"),
    "device-meta": (["device=meta"], "'meta'"),
    "device-xpu": (["device=xpu"], "'xpu'"),
    "device-garbage": (["device=gpu0"], "'gpu0'"),
    "device-missing-cuda": (["device=cuda:99"], "'cuda:99'"),
}


@pytest.mark.parametrize("case", sorted(SETUP_FAILURES))
def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, data, case):
    overrides, mention = SETUP_FAILURES[case]
    run = tmp_path / "run"
    result = invoke(*train_args(data, run, *(o.format(rgb=data / "rgb") for o in overrides)))
    assert_user_error(result, mention)
    assert not run.exists(), f"left {files_in(run)}"
    result = invoke("train", "--resume", run)  # and there is nothing to resume
    assert_user_error(result, str(run))


def test_devices_are_named_with_what_this_machine_has():
    has = re.escape(", ".join(available_devices()))  # "cpu" here, "cpu, cuda:0" on a GPU machine
    with pytest.raises(UnispError, match=rf"device 'mps': unisp runs on the CPU or CUDA only; this machine has: {has}$"):
        resolve_device("mps")
    with pytest.raises(UnispError, match=rf"unknown device 'gpu0' \(use auto, cpu, cuda, cuda:N\); this machine has: {has}$"):
        resolve_device("gpu0")
    with pytest.raises(UnispError, match=rf"device 'cuda:99' is not available here; this machine has: {has}$"):
        resolve_device("cuda:99")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_memory_estimate_names_the_keys(monkeypatch):
    config = TrainConfig(batch_size=32, data=DataConfig(patch=256))
    needed = memory.step_bytes(config, 32)  # the default recipe: the paper's terms, colour included
    per_sample = 256**2 * (memory.GENERATOR_FACTOR["efficient_isp"] + memory.PAPER_TERMS_FACTOR) + 224**2 * memory.COLOUR_VIEW_FACTOR
    assert needed == 32 * 3 * 4 * per_sample
    stage1 = TrainConfig(mode="stage1", pixel=PixelLossConfig(l1=1), batch_size=32, data=DataConfig(patch=256))
    assert memory.step_bytes(stage1, 32) == 32 * 3 * 4 * 256**2 * memory.GENERATOR_FACTOR["efficient_isp"]
    monkeypatch.setattr(memory, "available_bytes", lambda device: needed - 1)
    with pytest.raises(UnispError, match=r"batch_size=32 × data.patch=256 needs about .* GB.*lower batch_size or data.patch"):
        memory.check_step_memory(config, torch.device("cpu"), 32)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # nothing to compare with: not checked
    memory.check_step_memory(config, torch.device("cpu"), 32)


def test_meminfo_is_read_without_psutil(tmp_path, monkeypatch):
    meminfo = write(tmp_path / "meminfo", b"MemTotal:       24000000 kB\nMemAvailable:   12345678 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory._meminfo_available() == 12345678 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    assert memory._meminfo_available() is None


# ------------------------------------------------------------------------------- recipe files


@pytest.mark.parametrize("kind", ["deep", "alias-bomb", "fifo", "dev-zero", "binary", "folder"])
def test_recipe_files_that_cannot_be_recipes(tmp_path, kind):
    path = tmp_path / "recipe.yaml"
    if kind == "deep":
        path.write_text("steps: " + "[" * 20000 + "]" * 20000 + "\n")
    elif kind == "alias-bomb":  # 10^6 values from 60 written
        lines = ["a0: &a0 [" + ", ".join(["1"] * 10) + "]"]
        lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    elif kind == "dev-zero":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero here")
        path = "/dev/zero"
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00steps: 1\n")
    else:
        path.mkdir()
    out = tmp_path / "run"
    assert_user_error(invoke("train", "--config", path, f"out={out}"), str(path))
    assert not out.exists()


def test_deep_override_is_one_line(tmp_path):
    nested = "[" * (MAX_CONFIG_DEPTH + 2) + "]" * (MAX_CONFIG_DEPTH + 2)
    assert_user_error(invoke("train", f"steps={nested}", f"out={tmp_path / 'run'}"), "'steps'")


@pytest.mark.parametrize("name", ["resume.pt", "metrics.jsonl"])
def test_resume_files_that_are_fifos(tmp_path, finished_run, name):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    run = copy_run(finished_run, tmp_path)
    (run / name).unlink()
    os.mkfifo(run / name)
    assert_user_error(invoke("train", "--resume", run, "steps=3"), name)


# -------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize(("override", "key"), [
    ("model=robust_isp", "'model'"),
    ("data.patch=8", "'data.patch'"),
    ("data.raw_dir=/elsewhere", "'data.raw_dir'"),
    ("lr=0.1", "'lr'"),
    ("out=/elsewhere", "'out'"),
])
def test_resume_refuses_to_change_what_is_trained(tmp_path, finished_run, override, key):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(run)
    result = invoke("train", "--resume", run, override)
    assert_user_error(result, key)
    assert "init=" in result.output
    assert snapshot(run) == before


def test_resume_applies_and_records_the_changes_it_may_make(tmp_path, data, finished_run):
    run = copy_run(finished_run, tmp_path)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    # Passing the run's own value again is no change.
    result = invoke("train", "--resume", run, "steps=3", "log_every=3", f"data.raw_dir={saved['data']['raw_dir']}")
    assert_success(result)
    assert "at step 2, with log_every 1 → 3, steps 2 → 3" in result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["steps"], config["log_every"]) == (3, 3)


# --------------------------------------------------------------------------- collapse, mosaics


def test_a_collapsed_output_stops_the_run(tmp_path, data):
    run = tmp_path / "run"
    result = invoke(*train_args(data, run, "lr=1e10", "steps=4", "log_every=1", "batch_size=2"))
    assert_user_error(result, "training collapsed at step")
    assert "lower lr" in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["collapsed"] == 1 and records[-1]["output_std"] < COLLAPSE_STD
    assert not (run / "summary.json").exists()


def test_collapse_needs_a_constant_output_and_a_varying_reference():
    varying = torch.rand(2, 3, 8, 8)
    assert collapse(torch.zeros(2, 3, 8, 8), varying)["output_std"] == 0
    assert collapse(torch.full((2, 3, 8, 8), 5.0), varying)["output_mean"] == 1  # saturated white: clamped
    assert collapse(varying, varying) is None
    assert collapse(torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.5)) is None  # a flat reference: no verdict
    assert collapse(torch.full((2, 3, 8, 8), float("nan")), varying) is None  # the NaN guard's business


@pytest.mark.parametrize(("folder", "sign"), [("mono", "2 single-channel"), ("cfa", "2 with a 2-pixel Bayer pattern")])
def test_mosaics_given_as_rgb_photos_are_warned_about(tmp_path, data, folder, sign):
    result = invoke(*train_args(data, tmp_path / "run", *UNPAIRED, f"data.rgb_dir={data / folder}"))
    assert_success(result)
    warning = [line for line in result.output.splitlines() if "look like RAW mosaics" in line]
    assert warning and str(data / folder) in warning[0] and "2 of the 2 photos" in warning[0] and sign in warning[0]


def test_photos_are_not_taken_for_mosaics(tmp_path, data):
    result = invoke(*train_args(data, tmp_path / "run", *UNPAIRED, f"data.rgb_dir={data / 'rgb'}"))
    assert_success(result)
    assert "mosaic" not in result.output


def test_period2_ratio_separates_photos_from_mosaics(data):
    kodak = read_rgb(sorted((_assets() / "kodak").iterdir(), key=lambda p: p.name)[0])
    assert period2_ratio(kodak) < MOSAIC_RATIO / 2 and mosaic_signs(kodak) is None
    cfa = read_rgb(data / "cfa" / "c0.png")
    assert period2_ratio(cfa) > MOSAIC_RATIO * 2


def _assets():
    from importlib.resources import files

    return files("unisp") / "assets"
