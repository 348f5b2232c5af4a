"""Bad folders, bad output locations, bad flags and damaged run folders, through every command.

Every command that takes a folder gets an empty one, one without usable files, a missing one and
a regular file in its place; every command that writes gets an output path it cannot create;
``train --resume``, ``report`` and ``select`` get damaged run folders; ``export`` and
``bench latency`` get broken models and impossible sizes. All must end in one clear line (exit
status 2) naming the path or flag, with no traceback and no partial file.
"""

from __future__ import annotations

import io
import os
import shutil

import pytest
import torch
import yaml
from fuzz_checks import assert_success, assert_user_error, files_in, invoke, leftovers
from fuzz_corpus import MODEL_CORPUS, mosaic, png_bytes, photo, write

from unisp.config import to_dict
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png
from unisp.train.config import TrainConfig

TINY_STAGE1 = ["mode=stage1", "pixel.l1=1", "steps=1", "batch_size=1", "data.patch=16", "tensorboard=false",
               "data.samples_per_epoch=1", "data.val_fraction=0"]


@pytest.fixture(scope="module")
def good(tmp_path_factory, model_file):
    """Valid inputs to pair a bad one with: RAW files, photos and a run folder with one checkpoint."""
    root = tmp_path_factory.mktemp("good")
    for i in range(2):
        frame = RawFrame(mosaic=mosaic((32, 32), seed=i), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
        write_mosaic_png(root / "raw" / f"f{i}.png", frame)
        write(root / "rgb" / f"f{i}.png", png_bytes(photo(seed=i)))
    shutil.copytree(root / "rgb", root / "rgb2")  # predictions to score against rgb/ (not the same folder)
    (root / "run" / "checkpoints").mkdir(parents=True)
    shutil.copy(model_file, root / "run" / "checkpoints" / "step_0000001.safetensors")
    shutil.copy(model_file, root / "run" / "model.safetensors")
    config = to_dict(TrainConfig(mode="stage1", steps=2))
    config["data"]["raw_dir"] = str(root / "raw")
    (root / "run" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


# ------------------------------------------------------------------------------------------- folders


def make_folder(kind: str, base):
    """A folder argument of the given kind: empty, holding nothing usable, missing, or a file."""
    path = base / "bad_dir"
    if kind == "empty":
        path.mkdir()
    elif kind == "no-usable-files":
        path.mkdir()
        (path / "README.txt").write_text("photos go here\n")
        (path / ".hidden.png").write_bytes(png_bytes(photo()))  # hidden files are skipped
        (path / "sub.png").mkdir()  # a folder with an image's name
    elif kind == "a-file":
        path.write_text("not a folder\n")
    return path


FOLDER_KINDS = ("empty", "no-usable-files", "missing", "a-file")
FOLDER_COMMANDS = {
    "render": lambda d, g, m, o: ["render", d, "--out", o],
    "inspect": lambda d, g, m, o: ["inspect", d],
    "process": lambda d, g, m, o: ["process", d, "--model", m, "--out", o],
    "synth": lambda d, g, m, o: ["synth", "--rgb", d, "--out", o],
    "eval-pred": lambda d, g, m, o: ["eval", "--pred", d, "--gt", g / "rgb"],
    "eval-gt": lambda d, g, m, o: ["eval", "--pred", g / "rgb", "--gt", d],
    "eval-data": lambda d, g, m, o: ["eval", "--model", m, "--data", d],
    "train-raw": lambda d, g, m, o: ["train", *TINY_STAGE1, f"data.raw_dir={d}", f"out={o}"],
    "train-rgb": lambda d, g, m, o: ["train", *TINY_STAGE1, "mode=unpaired", f"data.raw_dir={g / 'raw'}",
                                     f"data.rgb_dir={d}", f"out={o}"],
    "train-val": lambda d, g, m, o: ["train", *TINY_STAGE1, f"data.raw_dir={g / 'raw'}", f"data.val_dir={d}", f"out={o}"],
    "select-rgb": lambda d, g, m, o: ["select", g / "run", "--rgb", d, "--data", g / "raw", "--out", o / "s.json"],
    "select-data": lambda d, g, m, o: ["select", g / "run", "--rgb", g / "rgb", "--data", d, "--out", o / "s.json"],
    "export-calib": lambda d, g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                        "--precision", "int8", "--calib", d],
}


@pytest.mark.parametrize("command", sorted(FOLDER_COMMANDS))
@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_bad_folder(tmp_path, good, model_file, kind, command):
    folder = make_folder(kind, tmp_path)
    out = tmp_path / "out"
    result = invoke(*FOLDER_COMMANDS[command](folder, good, model_file, out))
    assert_user_error(result, str(folder))
    assert [p for p in files_in(out) if p.name not in ("config.yaml", "run.json")] == []
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------- output paths


OUTPUT_COMMANDS = {
    "render": lambda g, m, o: ["render", g / "raw", "--out", o],
    "process": lambda g, m, o: ["process", g / "raw", "--model", m, "--out", o],
    "synth": lambda g, m, o: ["synth", "--rgb", g / "rgb", "--out", o],
    "import-reference": lambda g, m, o: ["import-reference", m, "--out", o / "m.safetensors"],
    "eval-csv": lambda g, m, o: ["eval", "--pred", g / "rgb2", "--gt", g / "rgb", "--metrics", "psnr", "--csv", o / "s.csv"],
    "eval-save": lambda g, m, o: ["eval", "--model", m, "--data", g / "raw", "--gt", g / "rgb", "--metrics", "psnr",
                                  "--save", o],
    "train": lambda g, m, o: ["train", *TINY_STAGE1, f"data.raw_dir={g / 'raw'}", f"out={o}"],
    "demo": lambda g, m, o: ["demo", "--out", o],
    "export": lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx"],
    "select": lambda g, m, o: ["select", g / "run", "--rgb", g / "rgb", "--data", g / "raw", "--out", o / "s.json"],
    "report": lambda g, m, o: ["report", g / "run", "--out", o / "r.html"],
}


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_output_under_a_file(tmp_path, good, model_file, command):
    # The output folder's place is taken by a regular file: nothing can be created there.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be\n")
    result = invoke(*OUTPUT_COMMANDS[command](good, model_file, blocker))
    assert_user_error(result, str(blocker))
    assert blocker.read_text() == "a file where a folder should be\n"
    assert leftovers(tmp_path) == [] and leftovers(good) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
@pytest.mark.parametrize("command", ["render", "process", "synth", "eval-csv", "train"])
def test_output_folder_not_writable(tmp_path, good, model_file, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = invoke(*OUTPUT_COMMANDS[command](good, model_file, locked / "out"))
    finally:
        locked.chmod(0o700)
    assert_user_error(result, str(locked))
    assert files_in(locked) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_inputs(tmp_path, good, model_file):
    raw = write(tmp_path / "raw" / "a.npy", b"\x93NUMPY")
    photo_file = write(tmp_path / "rgb" / "a.png", png_bytes(photo()))
    model = write(tmp_path / "m.safetensors", model_file.read_bytes())
    for path in (raw, photo_file, model):
        path.chmod(0)
    assert_user_error(invoke("inspect", raw), str(raw))
    assert_user_error(invoke("synth", "--rgb", photo_file.parent, "--out", tmp_path / "o"), str(photo_file))
    assert_user_error(invoke("info", model), str(model))


# ----------------------------------------------------------------------------------------- bad flags


FLAG_CASES = {
    "render-depth-12": (lambda g, m, o: ["render", g / "raw", "--out", o, "--depth", "12"], "--depth"),
    "render-demosaic": (lambda g, m, o: ["render", g / "raw", "--out", o, "--demosaic", "vng"], "--demosaic"),
    "render-format": (lambda g, m, o: ["render", g / "raw", "--out", o, "--format", "jpeg"], "--format"),
    "process-depth-12": (lambda g, m, o: ["process", g / "raw", "--model", m, "--out", o, "--depth", "12"], "--depth"),
    "process-tile-0": (lambda g, m, o: ["process", g / "raw", "--model", m, "--out", o, "--tile", "0"], "--tile"),
    "process-backend": (lambda g, m, o: ["process", g / "raw", "--model", m, "--out", o, "--backend", "tensorrt"],
                        "--backend"),
    "process-device": (lambda g, m, o: ["process", g / "raw", "--model", m, "--out", o, "--device", "tpu"], "tpu"),
    "synth-bits-4": (lambda g, m, o: ["synth", "--rgb", g / "rgb", "--out", o, "--bits", "4"], "--bits"),
    "synth-cfa": (lambda g, m, o: ["synth", "--rgb", g / "rgb", "--out", o, "--cfa", "RGBW"], "RGBW"),
    "synth-black-above-white": (lambda g, m, o: ["synth", "--rgb", g / "rgb", "--out", o, "--black", "5000"], "5000"),
    "synth-limit-0": (lambda g, m, o: ["synth", "--rgb", g / "rgb", "--out", o, "--limit", "0"], "--limit"),
    "eval-metrics": (lambda g, m, o: ["eval", "--pred", g / "rgb", "--gt", g / "rgb", "--metrics", "fid"], "fid"),
    "eval-metrics-empty": (lambda g, m, o: ["eval", "--pred", g / "rgb", "--gt", g / "rgb", "--metrics", ","], "--metrics"),
    "eval-nothing": (lambda g, m, o: ["eval"], "--pred"),
    "eval-both": (lambda g, m, o: ["eval", "--pred", g / "rgb", "--model", m], "--pred"),
    "eval-pred-only": (lambda g, m, o: ["eval", "--pred", g / "rgb"], "--gt"),
    "eval-model-only": (lambda g, m, o: ["eval", "--model", m], "--data"),
    "import-model-name": (lambda g, m, o: ["import-reference", m, "--out", o / "m.safetensors", "--model", "vgg"], "vgg"),
    "weights-profile": (lambda g, m, o: ["weights", "check", "--profile", "imagenet"], "imagenet"),
    "weights-fetch-profile": (lambda g, m, o: ["weights", "fetch", "--profile", "imagenet"], "imagenet"),
    "train-resume-and-config": (lambda g, m, o: ["train", "--resume", g / "run", "--config", g / "x.yaml"], "--resume"),
    "export-format": (lambda g, m, o: ["export", "--model", m, "--format", "coreml", "--out", o / "m"], "--format"),
    "export-shape-text": (lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                           "--shape", "big"], "--shape"),
    "export-shape-odd": (lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                          "--shape", "301x400"], "301"),
    "export-shape-zero": (lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                           "--shape", "0x0"], "0x0"),
    "export-int8-no-calib": (lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                              "--precision", "int8"], "--calib"),
    "export-sample-missing": (lambda g, m, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx",
                                               "--packing", "inside", "--sample", o / "none.dng"], "none.dng"),
    "bench-size-text": (lambda g, m, o: ["bench", "latency", "--model", m, "--size", "huge"], "huge"),
    "bench-size-odd": (lambda g, m, o: ["bench", "latency", "--model", m, "--size", "301x3"], "301x3"),
    "bench-backend": (lambda g, m, o: ["bench", "latency", "--model", m, "--size", "8x8", "--backend", "cuda-graph"],
                      "cuda-graph"),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flag(tmp_path, good, model_file, case):
    args, mention = FLAG_CASES[case]
    out = tmp_path / "out"
    assert_user_error(invoke(*args(good, model_file, out)), mention)
    assert files_in(out) == [] and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- models for export/bench

EXPORT_MODELS = ("zero-byte", "truncated-half", "pth-extension", "weights-nan", "model-unknown", "plain-safetensors")


@pytest.mark.parametrize("command", ["export", "bench"])
@pytest.mark.parametrize("case", EXPORT_MODELS)
def test_bad_model_export_and_bench(tmp_path, case, command):
    name, data = MODEL_CORPUS[case]
    model = write(tmp_path / name, data())
    out = tmp_path / "out"
    if command == "export":
        result = invoke("export", "--model", model, "--format", "onnx", "--out", out / "m.onnx")
    else:
        result = invoke("bench", "latency", "--model", model, "--size", "8x8", "--repeats", "1", "--backend", "torch")
    assert_user_error(result, str(model))
    assert files_in(out) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["zero-byte", "truncated", "wrong-magic"])
def test_bad_sample_and_calibration_raw(tmp_path, model_file, case):
    data = {"zero-byte": b"", "truncated": b"II*\x00\x08\x00", "wrong-magic": b"GIF89a" + b"\0" * 64}[case]
    bad = write(tmp_path / "calib" / "a.dng", data)
    out = tmp_path / "out"
    result = invoke("export", "--model", model_file, "--format", "onnx", "--out", out / "m.onnx",
                    "--packing", "inside", "--sample", bad)
    assert_user_error(result, str(bad))
    result = invoke("export", "--model", model_file, "--format", "onnx", "--out", out / "m.onnx",
                    "--precision", "int8", "--calib", bad.parent)
    assert_user_error(result, str(bad))
    assert files_in(out) == [] and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------ damaged runs


def damaged_run(kind: str, base, good):
    """A run folder damaged in one way (a copy of the good one, or built from scratch)."""
    run = base / "run"
    shutil.copytree(good / "run", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    if kind == "no-config":
        (run / "config.yaml").unlink()
    elif kind == "config-not-yaml":
        (run / "config.yaml").write_text("mode: [stage1\n")
    elif kind == "config-unknown-key":
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "extra": 1}))
    elif kind == "no-resume-file":
        pass
    elif kind == "resume-zero-byte":
        (run / "resume.pt").write_bytes(b"")
    elif kind == "resume-garbage":
        (run / "resume.pt").write_bytes(b"\x80\x02garbage")
    elif kind == "resume-without-checkpoint":
        (run / "resume.pt").write_bytes(_torch_bytes({"step": 1}))
    elif kind == "resume-names-missing-checkpoint":
        (run / "resume.pt").write_bytes(_torch_bytes({"step": 1, "checkpoint": "step_0000099.safetensors"}))
    elif kind == "checkpoint-corrupt":
        (run / "checkpoints" / "step_0000001.safetensors").write_bytes(b"\x00" * 16)
    return run


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


RUN_KINDS = ("no-config", "config-not-yaml", "config-unknown-key", "no-resume-file", "resume-zero-byte", "resume-garbage",
             "resume-without-checkpoint", "resume-names-missing-checkpoint")


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_resume_damaged_run(tmp_path, good, kind):
    run = damaged_run(kind, tmp_path, good)
    before = {p: p.read_bytes() for p in files_in(run)}
    result = invoke("train", "--resume", run)
    assert_user_error(result, str(run))
    assert {p: p.read_bytes() for p in files_in(run)} == before, "a refused resume changed the run folder"


def test_resume_missing_folder(tmp_path):
    assert_user_error(invoke("train", "--resume", tmp_path / "none"), str(tmp_path / "none"))


def test_select_corrupt_checkpoint(tmp_path, good):
    run = damaged_run("checkpoint-corrupt", tmp_path, good)
    result = invoke("select", run, "--rgb", good / "rgb", "--data", good / "raw", "--out", tmp_path / "s.json")
    assert_user_error(result, "step_0000001.safetensors")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("kind", ["no-config", "config-not-yaml", "checkpoint-corrupt"])
def test_report_damaged_run(tmp_path, good, kind):
    # The report shows what it can: a damaged part is left out with a warning naming it.
    run = damaged_run(kind, tmp_path, good)
    result = invoke("report", run, "--out", tmp_path / "r.html")
    if result.exit_code == 0:
        assert_success(result)
        assert (tmp_path / "r.html").stat().st_size > 0
    else:
        assert_user_error(result, str(run))
    assert leftovers(tmp_path) == []
