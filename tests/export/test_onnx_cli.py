"""`unisp export` and `unisp process --backend onnxruntime` end to end, and the tiled ONNX Runtime path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.errors import UnispError
from unisp.export.onnx import OnnxRunner
from unisp.fileio import read_pixels
from unisp.models.checkpoint import save_model
from unisp.models.tiled import run_tiled
from unisp.process import open_runner
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame

#: The issue's tolerance for the onnxruntime backend against the torch backend (float32).
BACKEND_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model_file(isp_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_model(path, isp_model, name="efficient_isp")
    return path


def random_frame(h: int, w: int, cfa: CFA = CFA.RGGB) -> RawFrame:
    mosaic = np.random.default_rng(1).integers(0, 1024, size=(h, w), dtype=np.uint16)
    return RawFrame(mosaic, cfa, (64, 64, 64, 64), 1023)


def test_cli_export_fixed_nhwc_inside_from_a_sample_file(model_file, raw_folder, tmp_path):
    out = tmp_path / "deploy" / "isp.onnx"
    args = ["--shape", "64x96", "--layout", "nhwc", "--packing", "inside", "--sample", str(raw_folder / "img1.png"), "--white", "1000"]
    result = CliRunner().invoke(app, ["export", "--model", str(model_file), "--format", "onnx", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    assert "min PSNR" in result.output and "passed" in result.output  # the table is printed
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 64, 96, 1]
    # --white given, CFA and black read from the synthetic file's sidecar (RGGB, 64).
    sensor = json.loads({p.key: p.value for p in model.metadata_props}["unisp.sensor"])
    assert sensor == {"cfa": "RGGB", "black": [64.0] * 4, "white": 1000.0}
    report = json.loads((tmp_path / "deploy" / "isp.onnx.parity.json").read_text())
    assert report["layout"] == "nhwc" and report["packing"] == "inside" and report["shape"] == "64x96" and report["passed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "64x95"], "even"),
        (["--shape", "big"], "dynamic"),
        (["--precision", "int8"], "--calib"),
        (["--packing", "inside"], "--cfa, --black, --white"),
        (["--packing", "inside", "--cfa", "RGGB", "--black", "1,2"], "--black needs 1 or 4 values"),
        (["--packing", "inside", "--cfa", "XYZW", "--black", "64", "--white", "1023"], "unknown CFA"),
        (["--calib", "/nonexistent/folder"], "not a folder"),
    ],
)
def test_cli_export_errors_are_one_line_exit_2(model_file, tmp_path, args, message):
    out = tmp_path / "x.onnx"
    result = CliRunner().invoke(app, ["export", "--model", str(model_file), "--format", "onnx", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_export_bad_option_values(model_file, tmp_path):
    for args in (["--format", "coreml"], ["--precision", "fp8"], ["--layout", "nwhc"], ["--packing", "both"]):
        base = {"--format": "onnx"}
        base.update(dict(zip(args[::2], args[1::2])))
        flat = [x for kv in base.items() for x in kv]
        result = CliRunner().invoke(app, ["export", "--model", str(model_file), "--out", str(tmp_path / "x.onnx"), *flat])
        assert result.exit_code == 2 and "Invalid value" in result.output


def test_onnxruntime_backend_equals_torch(isp_model):
    # Same tiles, same overlap: ONNX Runtime's output equals PyTorch's within the 1e-5, tiled
    # (tile sizes that do and do not divide the frame) and against one untiled PyTorch pass.
    frame = random_frame(70, 94, CFA.BGGR)
    with torch.no_grad():
        full = isp_model.infer(frame.normalized().unsqueeze(0))[0]
    with open_runner(isp_model, "onnxruntime", threads=1) as runner:
        assert isinstance(runner.run, OnnxRunner) and runner.run.metadata["precision"] == "fp32"
        assert "dynamic shape" in runner.note
        path = Path(runner.run.name)
        assert path.is_file()
        for tile in (8, 13, 64):
            want = run_tiled(isp_model, frame, tile=tile)
            got = run_tiled(isp_model, frame, tile=tile, runner=runner)
            assert got.shape == want.shape == (3, 70, 94)
            assert (got - want).abs().max() <= BACKEND_TOLERANCE
            assert (got - full).abs().max() <= BACKEND_TOLERANCE
    assert not path.exists()  # the temporary export is gone


def test_backend_choice(isp_model):
    # torch runs the model itself: the same output as run_tiled without a runner.
    frame = random_frame(24, 40)
    with open_runner(isp_model, "torch") as runner:
        assert torch.equal(run_tiled(isp_model, frame, tile=8, runner=runner), run_tiled(isp_model, frame, tile=8))
    for name in ("tensorrt", "compile", "tflite"):  # unknown, or built for one fixed shape (not tiles)
        with pytest.raises(UnispError, match="--backend must be one of torch, onnxruntime, fused, fused-bf16"):
            with open_runner(isp_model, name):
                pass


def test_cli_process_backends_agree(model_file, tmp_path):
    frame = random_frame(24, 40)
    frame.mosaic.astype("<u2").tofile(tmp_path / "a.raw")
    flags = ["--width", "40", "--height", "24", "--bits", "10", "--cfa", "RGGB", "--black", "64", "--depth", "16", "--tile", "8"]
    outputs = {}
    for name in ("torch", "onnxruntime"):
        result = CliRunner().invoke(
            app, ["process", str(tmp_path / "a.raw"), "--model", str(model_file), "--out", str(tmp_path / name), "--backend", name, *flags]
        )
        assert result.exit_code == 0, result.output
        outputs[name] = read_pixels(tmp_path / name / "a.png").astype(np.int64)
    # 1e-5 of full scale is 0.66 of a 16-bit step: at most one step apart, where rounding falls differently.
    assert np.abs(outputs["torch"] - outputs["onnxruntime"]).max() <= 1


def test_cli_process_onnxruntime_refuses_cuda(model_file, tmp_path):
    result = CliRunner().invoke(
        app, ["process", str(tmp_path), "--model", str(model_file), "--out", str(tmp_path / "o"), "--backend", "onnxruntime", "--device", "cuda"]
    )
    assert result.exit_code == 2 and "runs on the CPU" in result.output
