"""TFLite/LiteRT export: convert → reload in the LiteRT interpreter → parity, per precision and packing.

Skipped, with the reason, where the ``[mobile]`` extra (litert-torch, ai-edge-litert,
ai-edge-quantizer) is not installed. The exports are 64×96 fixed-shape files so the whole file
stays within seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="the [mobile] extra (litert-torch) is not installed: pip install -e '.[mobile]'")
pytest.importorskip("ai_edge_litert", reason="the [mobile] extra (ai-edge-litert) is not installed: pip install -e '.[mobile]'")
pytest.importorskip("ai_edge_quantizer", reason="the [mobile] extra (ai-edge-quantizer) is not installed: pip install -e '.[mobile]'")

from unisp.errors import ConfigError, UnispError  # noqa: E402
from unisp.metrics import psnr  # noqa: E402
from unisp.export import parity  # noqa: E402
from unisp.export.graph import ExportGraph, SensorCalibration  # noqa: E402
from unisp.export.tflite import (  # noqa: E402
    BODY_TENSORS,
    DYNAMIC_UNSUPPORTED,
    MissingExtraError,
    TFLiteRunner,
    export_tflite,
    read_metadata,
    require_mobile,
)

SHAPE = (64, 96)
SENSOR = SensorCalibration("GRBG", (60, 61, 62, 63), 1023)


@pytest.fixture(scope="module")
def fp32_outside(isp_model, tmp_path_factory):
    return export_tflite(isp_model, tmp_path_factory.mktemp("tfl") / "isp.tflite", shape=SHAPE)


def _report(path):
    return json.loads(parity.report_path(path).read_text())


def _ops(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    return interpreter, [op["op_name"] for op in interpreter._get_ops_details()]


def test_fp32_outside_mobile_ai_contract(isp_model, fp32_outside):
    # The Mobile AI contract: float32 [1, H/2, W/2, 4] in, float32 [1, H, W, 3] out.
    interpreter, ops = _ops(fp32_outside)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 32, 48, 4] and inp["dtype"] == np.float32
    assert list(out["shape"]) == [1, 64, 96, 3] and out["dtype"] == np.float32
    assert "CONV_2D" in ops and "TANH" in ops
    report = _report(fp32_outside)
    assert report["format"] == "tflite" and report["layout"] == "nhwc" and report["shape"] == "64x96"
    assert report["passed"] and report["min_psnr_db"] >= parity.FP32_MIN_PSNR_DB
    assert read_metadata(fp32_outside.read_bytes())["packing"] == "outside"


def test_runner_layouts_match_pytorch(isp_model, fp32_outside):
    x = torch.rand(1, 4, 32, 48)
    want = isp_model.infer(x)
    nchw = TFLiteRunner(fp32_outside, threads=1)(x)  # default: NCHW in and out, transposed
    assert nchw.shape == (1, 3, 64, 96) and isinstance(nchw, torch.Tensor)
    assert (nchw - want).abs().max() < 1e-5
    nhwc = TFLiteRunner(fp32_outside, layout="nhwc")(x.permute(0, 2, 3, 1).numpy())
    assert isinstance(nhwc, np.ndarray) and nhwc.shape == (1, 64, 96, 3)
    assert np.abs(nhwc - want.permute(0, 2, 3, 1).numpy()).max() < 1e-5


def test_runner_errors(fp32_outside, tmp_path):
    runner = TFLiteRunner(fp32_outside)
    with pytest.raises(UnispError, match="fixed-shape file takes input"):
        runner(torch.rand(1, 4, 16, 16))
    with pytest.raises(UnispError, match="C = 4"):
        runner(torch.rand(1, 3, 32, 48))
    with pytest.raises(ConfigError, match="threads"):
        TFLiteRunner(fp32_outside, threads=0)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(UnispError, match="cannot load TFLite model"):
        TFLiteRunner(bad)


def test_fp16_inside_takes_the_raw_mosaic(isp_model, tmp_path):
    path = export_tflite(isp_model, tmp_path / "isp16.tflite", precision="fp16", shape=SHAPE, packing="inside", sensor=SENSOR)
    interpreter, ops = _ops(path)
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 64, 96, 1]
    assert list(interpreter.get_output_details()[0]["shape"]) == [1, 64, 96, 3]
    weights = [d for d in interpreter.get_tensor_details() if d["dtype"] == np.float16]
    assert weights and "DEQUANTIZE" in ops  # weights stored as float16, dequantised for the float kernels
    report = _report(path)
    assert report["passed"] and report["min_psnr_db"] >= parity.FP16_MIN_PSNR_DB
    # The baked-in sensor constants are recorded in the file, and the graph packs exactly as PyTorch does.
    assert read_metadata(path.read_bytes())["sensor"] == {"cfa": "GRBG", "black": [60, 61, 62, 63], "white": 1023}
    graph = ExportGraph(isp_model, "inside", "nhwc", sensor=SENSOR)
    mosaic = graph.to_graph_input(torch.rand(1, 4, 32, 48))
    got = TFLiteRunner(path, layout="nhwc")(mosaic)
    assert psnr(got.double(), graph(mosaic).double()).min() >= parity.FP16_MIN_PSNR_DB


def test_int8_body_with_float_first_conv_and_io(isp_model, raw_folder, tmp_path):
    path = export_tflite(isp_model, tmp_path / "isp8.tflite", precision="int8", shape=SHAPE, packing="inside", calib=raw_folder)
    interpreter, ops = _ops(path)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32  # a phone app still feeds float sensor values
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    dtypes = {d["name"].rsplit("/", 1)[-1]: d["dtype"] for d in interpreter.get_tensor_details()}
    # The first convolution reads sensor values and stays float32; the rest of the body runs int8.
    assert dtypes["torch.nn.modules.conv.Conv2d_conv1;2"] == np.float32
    assert dtypes["torch.nn.modules.conv.Conv2d_conv2;1"] == np.int8
    assert dtypes["torch.nn.modules.conv.Conv2d_conv3;1"] == np.int8
    assert "QUANTIZE" in ops and "DEQUANTIZE" in ops
    report = _report(path)
    assert report["required_psnr_db"] is None and report["passed"]  # int8 is reported, not held to a threshold
    assert "int8" in report["extra"]["quantisation"] and report["sample_source"].startswith("centre crops")
    # Reported numbers are real measurements: 8-bit activations cost accuracy but keep the picture.
    assert 25.0 < report["min_psnr_db"] < parity.FP32_MIN_PSNR_DB
    assert report["mean_delta_e2000"] > 0


def test_dynamic_shape_is_refused_with_the_reason(isp_model, tmp_path):
    with pytest.raises(ConfigError, match="fixed --shape") as info:
        export_tflite(isp_model, tmp_path / "dyn.tflite", shape=None)
    assert str(info.value) == DYNAMIC_UNSUPPORTED and not (tmp_path / "dyn.tflite").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"precision": "bf16"}, "precision must be one of"),
        ({"precision": "int8"}, "--calib"),
        ({"shape": (63, 96)}, "even"),
        ({"layout": "chw"}, "layout must be one of"),
    ],
)
def test_bad_options(isp_model, tmp_path, kwargs, match):
    kwargs = {"shape": SHAPE, **kwargs}
    with pytest.raises(ConfigError, match=match):
        export_tflite(isp_model, tmp_path / "x.tflite", **kwargs)
    assert not (tmp_path / "x.tflite").exists()


def test_parity_failure_writes_nothing(isp_model, tmp_path, monkeypatch):
    monkeypatch.setitem(parity.MIN_PSNR_DB, "fp32", 1000.0)  # unreachable: fp32 parity here is ~160 dB, not ∞
    with pytest.raises(parity.ParityError, match="1000 dB required"):
        export_tflite(isp_model, tmp_path / "x.tflite", shape=SHAPE)
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_is_one_line_and_an_import_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "litert_torch", None)
    with pytest.raises(MissingExtraError, match=r"unisp\[mobile\]") as info:
        require_mobile()
    assert isinstance(info.value, ImportError) and isinstance(info.value, UnispError)


def test_body_regex_names_only_generator_tensors():
    import re

    assert re.fullmatch(BODY_TENSORS, "unisp.export.graph.ExportGraph/unisp.models.efficient.EfficientISP_model/c;2")
    assert not re.fullmatch(BODY_TENSORS, "unisp.export.graph.ExportGraph;9")  # packing/normalisation stay float
