"""ONNX export → reload → parity, for each precision, dynamic and fixed shape, both packings and layouts."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from unisp.errors import ConfigError, UnispError
from unisp.export import parity
from unisp.export.graph import ExportGraph, SensorCalibration
from unisp.export.onnx import OnnxRunner, export_onnx
from unisp.export.parity import ParityError, read_report
from unisp.export.quantize import calibration_crops, float_prefix, read_calibration

SENSOR = SensorCalibration("GRBG", (60, 61, 62, 63), 1023)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


@pytest.fixture(scope="module")
def fp32_dynamic(isp_model, tmp_path_factory):
    return export_onnx(isp_model, tmp_path_factory.mktemp("onnx") / "isp.onnx")


def test_fp32_dynamic_file(fp32_dynamic):
    model = onnx.load(fp32_dynamic)
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)  # self-contained
    assert [i.name for i in model.graph.input] == ["packed"] and [o.name for o in model.graph.output] == ["rgb"]
    in_dims, out_dims = dims(model.graph.input[0]), dims(model.graph.output[0])
    assert in_dims[:2] == [1, 4] and all(isinstance(d, str) for d in in_dims[2:])  # named dynamic axes
    assert out_dims[:2] == [1, 3] and all(isinstance(d, str) for d in out_dims[2:])
    meta = metadata(model)
    assert meta["unisp.packing"] == "outside" and meta["unisp.precision"] == "fp32" and meta["unisp.model"] == "efficient_isp"
    assert meta["unisp.shape"] == "dynamic" and "(R, Gr, Gb, B)" in meta["unisp.input"]


def test_fp32_dynamic_runs_any_size_like_torch(isp_model, fp32_dynamic):
    runner = OnnxRunner(fp32_dynamic, threads=1)
    for h, w in [(5, 7), (16, 24)]:  # packed sizes need not be even
        x = torch.rand(1, 4, h, w)
        with torch.no_grad():
            want = isp_model(x).clamp(0, 1)
        got = runner(x)
        assert isinstance(got, torch.Tensor) and got.shape == (1, 3, 2 * h, 2 * w)
        assert (got - want).abs().max() <= 1e-5
    assert isinstance(runner(np.zeros((1, 4, 3, 3), np.float64)), np.ndarray)  # numpy in, numpy out


def test_fp32_parity_report(fp32_dynamic):
    data = read_report(fp32_dynamic)
    assert data["passed"] and data["precision"] == "fp32" and data["required_psnr_db"] == parity.FP32_MIN_PSNR_DB
    assert data["min_psnr_db"] is None or data["min_psnr_db"] >= 60
    assert [r["name"] for r in data["rows"]] == [f"synthetic:{p}" for p in parity.SYNTHETIC_PHOTOS]
    assert [(r["height"], r["width"]) for r in data["rows"]] == [(2 * h, 2 * w) for h, w in parity.DYNAMIC_SAMPLE_SIZES]
    assert data["runtime"].startswith("onnxruntime")


def test_runner_errors(fp32_dynamic, tmp_path):
    runner = OnnxRunner(fp32_dynamic)
    with pytest.raises(UnispError, match="C = 4"):
        runner(torch.rand(1, 3, 8, 8))
    with pytest.raises(ConfigError, match="threads"):
        OnnxRunner(fp32_dynamic, threads=0)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UnispError, match="bad.onnx: cannot load ONNX model"):
        OnnxRunner(bad)


def test_fp32_fixed_inside_nhwc(isp_model, tmp_path):
    out = export_onnx(isp_model, tmp_path / "raw.onnx", shape=(32, 48), packing="inside", layout="nhwc", sensor=SENSOR)
    model = onnx.load(out)
    assert dims(model.graph.input[0]) == [1, 32, 48, 1] and dims(model.graph.output[0]) == [1, 32, 48, 3]
    meta = metadata(model)
    assert json.loads(meta["unisp.sensor"]) == {"cfa": "GRBG", "black": [60.0, 61.0, 62.0, 63.0], "white": 1023.0}
    assert read_report(out)["passed"] and read_report(out)["shape"] == "32x48"
    # The file does the packing and normalisation: feed it a mosaic in sensor units.
    graph = ExportGraph(isp_model, "inside", "nhwc", sensor=SENSOR)
    mosaic = torch.rand(1, 32, 48, 1) * 1023
    runner = OnnxRunner(out)
    with torch.no_grad():
        assert (runner(mosaic) - graph(mosaic)).abs().max() <= 1e-5
    with pytest.raises(UnispError, match="cannot run this input"):
        runner(torch.rand(1, 30, 48, 1))
    with pytest.raises(UnispError, match="even"):
        runner(torch.rand(1, 31, 48, 1))


def test_fp16_dynamic_inside_nchw(isp_model, tmp_path):
    out = export_onnx(isp_model, tmp_path / "half.onnx", precision="fp16", packing="inside", sensor=SENSOR)
    model = onnx.load(out)
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert {k: v for k, v in types.items() if k.startswith("model.")} == {
        f"model.conv{i}.{p}": onnx.TensorProto.FLOAT16 for i in (1, 2, 3) for p in ("weight", "bias")
    }
    assert types["black"] == types["span"] == onnx.TensorProto.FLOAT  # normalisation stays float32
    for value in (model.graph.input[0], model.graph.output[0]):  # float32 in and out
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(model.graph.input[0])[:2] == [1, 1]
    data = read_report(out)
    assert data["passed"] and data["required_psnr_db"] == parity.FP16_MIN_PSNR_DB and data["min_psnr_db"] >= 45


def test_int8_fixed_inside_nhwc_with_calibration(isp_model, raw_folder, tmp_path, caplog):
    with caplog.at_level("INFO"):
        out = export_onnx(isp_model, tmp_path / "q.onnx", precision="int8", shape=(64, 96), packing="inside",
                          layout="nhwc", calib=raw_folder)
    model = onnx.load(out)
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert dims(model.graph.input[0]) == [1, 64, 96, 1]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # The levels were read from the first calibration file's sidecar: RGGB, black 64, white 1023.
    assert json.loads(metadata(model)["unisp.sensor"]) == {"cfa": "RGGB", "black": [64.0] * 4, "white": 1023.0}
    assert "read from" in caplog.text and "cfa [metadata]" in caplog.text
    data = read_report(out)
    assert data["required_psnr_db"] is None and data["passed"]
    assert data["sample_source"].startswith("centre crops") and [r["name"] for r in data["rows"]] == ["img0.png", "img1.png", "img2.png"]
    assert "QDQ" in data["extra"]["quantisation"]
    # int8 is lossy but not broken: far from 60 dB, far above noise (a wrong scale would give < 20 dB).
    assert 25 < data["min_psnr_db"] < 60 and data["mean_delta_e2000"] < 5


def test_float_prefix_is_what_int8_keeps_in_float(isp_model):
    from unisp.export.onnx import to_onnx

    inside = to_onnx(ExportGraph(isp_model, "inside", "nhwc", sensor=SENSOR), None)
    kept = [n.op_type for n in inside.graph.node if n.name in float_prefix(inside)]
    # Layout, packing and black-level normalisation (its clamp included), then the first Conv + Tanh;
    # the next node is the second Conv, the first one quantised.
    assert {"Transpose", "Slice", "Concat", "Sub", "Div", "Clip", "Conv", "Tanh"} >= set(kept)
    assert {"Concat", "Div", "Clip"} <= set(kept) and kept[-2:] == ["Conv", "Tanh"]
    assert inside.graph.node[len(kept)].op_type == "Conv"


def test_calibration_crops(raw_folder):
    frames = read_calibration(raw_folder)
    crops = calibration_crops(frames, size=16, per_frame=2)
    assert len(crops) == 6 and all(c.shape == (1, 4, 16, 16) for c in crops)
    assert all(0 <= float(c.min()) and float(c.max()) <= 1 for c in crops)
    again = calibration_crops(frames, size=16, per_frame=2)
    assert all(torch.equal(a, b) for a, b in zip(crops, again))  # seeded
    assert [c.shape for c in calibration_crops(frames, size=1000)] == [(1, 4, 48, 64)] * 3  # whole frames


def test_export_errors(isp_model, tmp_path, raw_folder):
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match="--calib"):
        export_onnx(isp_model, out, precision="int8")
    with pytest.raises(ConfigError, match="precision"):
        export_onnx(isp_model, out, precision="fp8")
    with pytest.raises(ConfigError, match="even"):
        export_onnx(isp_model, out, shape=(31, 48))
    with pytest.raises(ConfigError, match="--cfa, --black, --white"):
        export_onnx(isp_model, out, packing="inside")
    with pytest.raises(ConfigError, match="not a folder"):
        export_onnx(isp_model, out, precision="int8", calib=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnispError, match="empty"):
        export_onnx(isp_model, out, precision="int8", calib=tmp_path / "empty")
    assert not out.exists()


def test_parity_failure_leaves_no_file(isp_model, tmp_path, monkeypatch, caplog):
    # An impossible threshold makes the (good) fp32 file fail parity: nothing may be left behind.
    monkeypatch.setitem(parity.MIN_PSNR_DB, "fp32", 1000.0)
    out = tmp_path / "isp.onnx"
    with pytest.raises(ParityError, match=r"isp\.onnx: onnx fp32 export misses parity .* dB PSNR on synthetic:\w+, 1000 dB required"):
        export_onnx(isp_model, out)
    assert list(tmp_path.iterdir()) == []
    assert "FAILED" in caplog.text  # the table was shown
