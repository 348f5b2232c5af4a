"""``data.input_wb=as_shot``: the training patches, the model file's record, ``process`` with no
flag, the ONNX file's second input, validation of the recipe key and the header field, and a
model trained without it left unbalanced."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.config import load_config
from unisp.data.patches import FrameCache, RawPatches
from unisp.errors import ConfigError, UnispError
from unisp.fileio import read_pixels
from unisp.isp.awb import balance_input, input_gains
from unisp.models.checkpoint import HEADER_KEY, load_model, save_model
from unisp.models.registry import build_model
from unisp.raw.dng import write_dng
from unisp.raw.io import read_raw
from unisp.train.config import TrainConfig

#: 10-bit RGGB DNGs, black 64.
BLACK, WHITE = 64, 1023
#: As-shot neutrals of the files (None: the file records none): gains (2, 1, 1.25) and (1.25, 1, 2).
NEUTRALS = {"a": (0.5, 1.0, 0.8), "b": (0.8, 1.0, 0.5), "c": None}
#: Two stage-1 steps on 16-pixel patches, one file of three held out (a few seconds on a CPU).
TINY = ["mode=stage1", "pixel.l1=1", "steps=2", "batch_size=1", "data.patch=16", "tensorboard=false",
        "data.samples_per_epoch=2", "data.val_fraction=0.34", "device=cpu", "losses.profile=random"]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dngs(tmp_path_factory):
    """Three blocky 48×48 DNGs; ``c`` records no white balance."""
    root = tmp_path_factory.mktemp("dngs")
    for i, (name, neutral) in enumerate(NEUTRALS.items()):
        g = np.random.default_rng(i)
        scene = np.kron(g.uniform(0.05, 0.9, (6, 6)), np.ones((8, 8)))
        mosaic = np.rint(BLACK + scene * (WHITE - BLACK)).astype(np.uint16)
        write_dng(root / f"{name}.dng", mosaic, "RGGB", black_level=BLACK, white_level=WHITE, as_shot_neutral=neutral)
    return root


@pytest.fixture(scope="module")
def model_file(dngs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = invoke("train", *TINY, f"data.raw_dir={dngs}", "data.input_wb=as_shot", f"out={out}")
    assert result.exit_code == 0, result.output
    # One warning at set-up (the report written after training says its own for the files it shows).
    assert result.output.count("files read at set-up") == 1 and "1 of 3 files read at set-up" in result.output
    return out / "model.safetensors"


def test_training_patches_are_balanced_and_their_target_is_not(dngs):
    frames = FrameCache([dngs / "a.dng"], read_raw)
    plain, balanced = (RawPatches(frames, 1, 16, 1, input_wb=mode)[0] for mode in ("none", "as_shot"))
    gains = torch.tensor([2.0, 1.0, 1.0, 1.25]).view(4, 1, 1)  # a.dng: neutral (0.5, 1, 0.8)
    assert torch.allclose(balanced["raw"], (plain["raw"] * gains).clamp(0, 1))
    assert torch.equal(balanced["target"], plain["target"])


def by_hand(model, path, mode: str) -> torch.Tensor:
    """The generator on the file's planes white-balanced as ``mode`` says, clamped."""
    frame = read_raw(path)
    planes = balance_input(frame.normalized(), input_gains(frame, mode))
    return model.infer(planes[None])[0]


def processed(path, model_file, out) -> tuple[torch.Tensor, str]:
    """``unisp process``'s 16-bit output of one file as a ``(3, H, W)`` float tensor, and what it printed."""
    result = invoke("process", path, "--model", model_file, "--out", out, "--depth", "16")
    assert result.exit_code == 0, result.output
    image = torch.from_numpy(read_pixels(out / f"{'c' if path.is_dir() else path.stem}.png").astype(np.float32) / 65535).permute(2, 0, 1)
    return image, result.output


def test_training_records_as_shot_and_process_applies_it(dngs, model_file, tmp_path):
    model, header = load_model(model_file)
    assert header["input_wb"] == "as_shot" and model.input_wb == "as_shot"
    for name in ("a", "b"):
        expected = by_hand(model, dngs / f"{name}.dng", "as_shot")
        assert not torch.allclose(expected, by_hand(model, dngs / f"{name}.dng", "none"), atol=1e-3)
        image, output = processed(dngs / f"{name}.dng", model_file, tmp_path / name)
        assert torch.allclose(image, expected, atol=2 / 65535) and "record no as-shot" not in output


def test_a_file_without_white_balance_goes_in_unbalanced_with_one_warning(dngs, model_file, tmp_path):
    model, _ = load_model(model_file)
    image, output = processed(dngs, model_file, tmp_path / "all")  # the folder: a, b and c
    assert torch.allclose(image, by_hand(model, dngs / "c.dng", "none"), atol=2 / 65535)
    assert output.count("record no as-shot white balance") == 1 and "1 of 3 files processed" in output


def test_a_model_without_input_wb_is_not_balanced(dngs, tmp_path):
    model = build_model("efficient_isp")
    header = save_model(tmp_path / "plain.safetensors", model, name="efficient_isp")
    assert "input_wb" not in header
    loaded, _ = load_model(tmp_path / "plain.safetensors")
    assert loaded.input_wb == "none"
    expected = by_hand(loaded, dngs / "a.dng", "none")
    image, _ = processed(dngs / "a.dng", tmp_path / "plain.safetensors", tmp_path / "out")
    assert torch.allclose(image, expected, atol=2 / 65535)


def test_a_bad_header_value_is_refused_naming_the_field(model_file, tmp_path):
    tensors = safetensors.torch.load_file(model_file)
    header = json.loads(safetensors.safe_open(model_file, "pt").metadata()[HEADER_KEY])
    header["input_wb"] = "gray_world"
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(tensors, bad, metadata={"format": "unisp-model", HEADER_KEY: json.dumps(header)})
    with pytest.raises(UnispError, match="header field input_wb must be one of none, as_shot, got 'gray_world'"):
        load_model(bad)


def test_a_bad_recipe_value_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="data.input_wb"):
        load_config(TrainConfig, None, ["data.input_wb=grey"])


def test_onnx_inside_takes_the_gains_as_a_second_input(dngs, model_file, tmp_path):
    from unisp.export.onnx import OnnxRunner
    from unisp.models.tiled import run_tiled

    out = tmp_path / "m.onnx"
    result = invoke("export", "--model", model_file, "--format", "onnx", "--packing", "inside",
                    "--sample", dngs / "a.dng", "--out", out)
    assert result.exit_code == 0, result.output
    runner = OnnxRunner(out)
    assert runner.input_names == ["raw", "wb_gains"] and runner.metadata["input_wb"] == "as_shot"
    model, _ = load_model(model_file)
    for name in ("a", "b"):  # the phone's AWB result goes in as given: (R, G, B) multipliers
        frame = read_raw(dngs / f"{name}.dng")
        mosaic = torch.from_numpy(frame.mosaic.astype(np.float32))[None, None]
        got = runner(mosaic, torch.tensor([frame.wb_gains]) * 3.0)  # normalised to green in the graph
        assert torch.allclose(got[0], run_tiled(model, frame), atol=1e-5)


def test_int8_export_of_an_as_shot_model_is_refused(dngs, model_file, tmp_path):
    result = invoke("export", "--model", model_file, "--format", "onnx", "--precision", "int8",
                    "--calib", dngs, "--out", tmp_path / "m.onnx")
    assert result.exit_code != 0 and "not yet supported" in result.output
