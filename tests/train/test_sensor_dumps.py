"""Training on headerless sensor dumps (12-bit BGGR, black 256): the recipe's data keys, the model
file's ``raw_input``, and every command that reads RAW files with that model and no flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.eval.report import write_report
from unisp.eval.select import select_checkpoint
from unisp.fileio import read_pixels, write_image
from unisp.models.checkpoint import load_model
from unisp.raw.dng import write_dng

#: The sensor: 12-bit samples, BGGR, black level 256 (white 2^12 − 1), 48×48 dumps.
SENSOR = {"cfa": "BGGR", "black": 256, "bits": 12, "width": 48, "height": 48}
WHITE = 2**12 - 1
#: Two stage-1 steps on 16-pixel patches, a checkpoint at each, one file of three held out.
TINY = ["mode=stage1", "pixel.l1=1", "steps=2", "batch_size=1", "data.patch=16", "tensorboard=false",
        "data.samples_per_epoch=2", "data.val_fraction=0.34", "device=cpu", "ckpt_every=1"]
#: The recipe's keys for the sensor.
SENSOR_KEYS = [f"data.{key}={value}" for key, value in SENSOR.items()]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def sensor_mosaic(seed: int) -> np.ndarray:
    """A blocky scene with a little noise, as 12-bit samples above black 256."""
    g = np.random.default_rng(seed)
    scene = np.kron(g.uniform(0.1, 0.8, (6, 6)), np.ones((8, 8))) + g.normal(0, 0.01, (48, 48))
    return np.clip(np.rint(SENSOR["black"] + scene * (WHITE - SENSOR["black"])), 0, WHITE).astype(np.uint16)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """``raw/`` (three headerless dumps), ``dng/`` (the same mosaics as DNG files with the same CFA
    and levels), ``rgb/`` (photos with the same stems: unpaired photos and eval ground truth)."""
    root = tmp_path_factory.mktemp("dumps")
    (root / "raw").mkdir()
    for i in range(3):
        mosaic = sensor_mosaic(i)
        mosaic.astype("<u2").tofile(root / "raw" / f"f{i}.raw")
        write_dng(root / "dng" / f"f{i}.dng", mosaic, "BGGR", black_level=SENSOR["black"], white_level=WHITE)
        write_image(root / "rgb" / f"f{i}.png", torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(i)))
    return root


@pytest.fixture(scope="module")
def runs(dumps, tmp_path_factory):
    """The same stage-1 run on the dumps (with the recipe's keys) and on the DNG files (no keys)."""
    base = tmp_path_factory.mktemp("runs")
    result = invoke("train", *TINY, f"data.raw_dir={dumps / 'raw'}", *SENSOR_KEYS, f"out={base / 'raw'}")
    assert result.exit_code == 0, result.output
    result = invoke("train", *TINY, f"data.raw_dir={dumps / 'dng'}", f"out={base / 'dng'}")
    assert result.exit_code == 0, result.output
    return base


def process(folder, model, out, *flags) -> dict[str, np.ndarray]:
    result = invoke("process", folder, "--model", model, "--out", out, "--depth", "16", *flags)
    assert result.exit_code == 0, result.output
    return {p.stem: read_pixels(p) for p in sorted(out.iterdir())}


def test_dumps_train_as_the_same_dng_files(runs):
    dump_model, header = load_model(runs / "raw" / "model.safetensors")
    dng_model, dng_header = load_model(runs / "dng" / "model.safetensors")
    assert header["raw_input"] == {"cfa": "BGGR", "black": [256.0] * 4, "width": 48, "height": 48, "bits": 12}
    assert "raw_input" not in dng_header
    for (name, a), b in zip(dump_model.state_dict().items(), dng_model.state_dict().values()):
        assert torch.equal(a, b), name  # the same samples, levels and CFA: the same training
    saved = (runs / "raw" / "config.yaml").read_text()
    assert "cfa: BGGR" in saved and "bits: 12" in saved and "camera: ''" in saved


def test_the_model_processes_its_dumps_with_no_flags(dumps, runs, tmp_path):
    from_dumps = process(dumps / "raw", runs / "raw" / "model.safetensors", tmp_path / "dumps")
    from_dngs = process(dumps / "dng", runs / "dng" / "model.safetensors", tmp_path / "dngs")
    assert list(from_dumps) == ["f0", "f1", "f2"]
    for name, image in from_dumps.items():
        assert image.dtype == np.uint16 and np.array_equal(image, from_dngs[name]), name


def test_flags_override_the_model_file(dumps, runs, tmp_path):
    model = runs / "raw" / "model.safetensors"
    plain = process(dumps / "raw", model, tmp_path / "plain")
    result = invoke("process", dumps / "raw", "--model", model, "--out", tmp_path / "black0", "--depth", "16", "--black", "0")
    assert result.exit_code == 0, result.output
    assert "RAW input values from the model file: cfa BGGR, width 48, height 48, bits 12" in result.output
    assert "the model file's black overridden" in result.output
    assert not np.array_equal(read_pixels(tmp_path / "black0" / "f0.png"), plain["f0"])
    camera = tmp_path / "sensor.yaml"
    camera.write_text("black: 0\n")
    by_camera = process(dumps / "raw", model, tmp_path / "camera", "--camera", camera)
    assert np.array_equal(by_camera["f0"], read_pixels(tmp_path / "black0" / "f0.png"))
    result = invoke("process", dumps / "raw", "--model", model, "--out", tmp_path / "small", "--width", "24")
    assert result.exit_code == 2 and "needs 2304" in result.output  # 24×48 samples of 2 bytes: the wrong size


def test_unpaired_training_on_dumps(dumps, tmp_path):
    result = invoke(
        "train", *TINY, "mode=unpaired", "losses.profile=random", "data.patch=32", f"data.raw_dir={dumps / 'raw'}",
        f"data.rgb_dir={dumps / 'rgb'}", *SENSOR_KEYS, f"out={tmp_path / 'run'}",
    )
    assert result.exit_code == 0, result.output
    _, header = load_model(tmp_path / "run" / "model.safetensors")
    assert header["raw_input"]["cfa"] == "BGGR" and header["training"]["mode"] == "unpaired"


def test_a_camera_file_in_the_recipe_is_recorded_by_value(dumps, tmp_path):
    camera = tmp_path / "sensor.yaml"
    camera.write_text("cfa: BGGR\nbits: 12\nblack: 256\nwidth: 48\nheight: 48\nwb_gains: [2.0, 1.0, 1.5]\n")
    result = invoke("train", *TINY, f"data.raw_dir={dumps / 'raw'}", f"data.camera={camera}", "data.bits=12", f"out={tmp_path / 'run'}")
    assert result.exit_code == 0, result.output
    _, header = load_model(tmp_path / "run" / "model.safetensors")
    section = header["raw_input"]
    assert section["wb_gains"] == [2.0, 1.0, 1.5] and section["camera"] == str(camera)
    assert section["from_camera"] == ["cfa", "black", "width", "height", "wb_gains"]  # bits: the recipe's own
    camera.write_text("cfa: RGGB\n")  # edited after the run started: resuming would read the data otherwise
    result = invoke("train", "--resume", tmp_path / "run", "steps=3")
    assert result.exit_code == 2 and "--resume: the run was trained with RAW values" in result.output


def test_missing_geometry_names_the_keys_before_the_run_folder(dumps, tmp_path):
    result = invoke("train", *TINY, f"data.raw_dir={dumps / 'raw'}", "data.cfa=BGGR", f"out={tmp_path / 'run'}")
    assert result.exit_code == 2
    assert f"data.raw_dir {dumps / 'raw'}: headerless files such as f0.raw need data.width, data.height, data.bits, data.cfa" in result.output
    assert "missing data.width, data.height, data.bits (give them in the recipe, or in a camera file: data.camera)" in result.output
    assert not (tmp_path / "run").exists()
    result = invoke("train", *TINY, f"data.raw_dir={dumps / 'raw'}", "data.bits=20", f"out={tmp_path / 'run'}")
    assert result.exit_code == 2 and "config key 'data.bits' must be an integer 1..16, got 20" in result.output


def test_eval_select_report_and_export_read_the_dumps_with_no_flags(dumps, runs, tmp_path):
    run, model = runs / "raw", runs / "raw" / "model.safetensors"
    result = invoke("eval", "--model", model, "--data", dumps, "--metrics", "psnr", "--save", tmp_path / "eval")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["raw_input"]["cfa"] == "BGGR"
    assert "crops: not shown" not in (tmp_path / "eval" / "report.html").read_text()
    ranking = select_checkpoint(run, dumps / "rgb", profile="random", out=tmp_path / "select.json")
    assert len(ranking.candidates) == 2 and len(ranking.images) == 1
    page = write_report(run, data=dumps / "raw", out=tmp_path / "report.html").read_text()
    assert "not shown" not in page and "RAW values trained with" in page
    out = tmp_path / "inside.onnx"
    result = invoke("export", "--model", model, "--format", "onnx", "--out", out, "--packing", "inside", "--shape", "48x48")
    assert result.exit_code == 0, result.output
    assert "inside packing bakes in BGGR, black (256, 256, 256, 256), white 4095" in result.output
    result = invoke("eval", "--pred", tmp_path / "eval", "--gt", dumps / "rgb", "--cfa", "RGGB")
    assert result.exit_code == 2 and "they go with --model --data, not --pred" in result.output
