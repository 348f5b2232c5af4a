"""The parity check: known PSNR values, thresholds, the report file, the samples it runs on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from unisp.errors import UnispError
from unisp.export import parity
from unisp.export.graph import ExportGraph, SensorCalibration
from unisp.export.parity import (
    ParityError,
    Sample,
    check_parity,
    fit,
    format_table,
    frame_samples,
    measure_parity,
    read_report,
    report_path,
    synthetic_samples,
    write_report,
)
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame

META = dict(file="isp.onnx", format="onnx", shape="dynamic", runtime="test", sample_source="test")


@pytest.fixture
def samples():
    g = torch.Generator().manual_seed(0)
    return [Sample("a", torch.rand(1, 4, 8, 12, generator=g)), Sample("b", torch.rand(1, 4, 6, 6, generator=g))]


def test_identical_outputs_are_infinite_psnr_and_null_in_json(isp_model, samples):
    graph = ExportGraph(isp_model)
    report = measure_parity(graph, graph, samples, precision="fp32", **META)
    assert report.passed and math.isinf(report.min_psnr_db) and report.mean_delta_e2000 == 0
    data = report.to_json()
    assert data["min_psnr_db"] is None and data["rows"][0]["psnr_db"] is None and data["passed"] is True
    json.dumps(data, allow_nan=False)  # strict JSON: no Infinity


def test_known_psnr_and_threshold_failure(isp_model, samples):
    # An output off by exactly 0.01 everywhere has PSNR 10·log10(1 / 0.01²) = 40 dB: below fp32's 60
    # and fp16's 45, so both fail; int8 has no threshold and passes.
    graph = ExportGraph(isp_model)

    def off(x):
        return graph(x) + 0.01

    for precision in ("fp32", "fp16"):
        report = measure_parity(off, graph, samples, precision=precision, **META)
        assert [round(r.psnr_db, 3) for r in report.rows] == [40.0, 40.0]
        assert [round(r.max_abs_diff, 6) for r in report.rows] == [0.01, 0.01]
        with pytest.raises(ParityError, match=rf"40\.00 dB PSNR on a, {parity.MIN_PSNR_DB[precision]:g} dB required"):
            check_parity(report)
    report = measure_parity(off, graph, samples, precision="int8", **META)
    assert report.passed and report.required_psnr_db is None and report.mean_delta_e2000 > 0
    check_parity(report)


def test_thresholds_are_the_issues():
    assert parity.MIN_PSNR_DB == {"fp32": 60.0, "fp16": 45.0, "int8": None}


def test_nhwc_inside_graph_is_compared_in_its_own_contract(isp_model, samples):
    graph = ExportGraph(isp_model, "inside", "nhwc", sensor=SensorCalibration("GBRG", (64,) * 4, 1023))
    seen = []

    def run(x):
        seen.append(tuple(x.shape))
        return graph(x)

    report = measure_parity(run, graph, samples, precision="fp32", **META)
    assert seen == [(1, 16, 24, 1), (1, 12, 12, 1)]
    assert [(r.height, r.width) for r in report.rows] == [(16, 24), (12, 12)]


def test_measure_parity_errors(isp_model, samples):
    graph = ExportGraph(isp_model)
    with pytest.raises(UnispError, match="at least one sample"):
        measure_parity(graph, graph, [], precision="fp32", **META)
    with pytest.raises(UnispError, match="float32 graph"):
        measure_parity(graph, ExportGraph(isp_model, compute_dtype=torch.float16), samples, precision="fp16", **META)
    with pytest.raises(UnispError, match="returned shape"):
        measure_parity(lambda x: graph(x)[..., :-2], graph, samples, precision="fp32", **META)


def test_report_file_round_trip_and_table(isp_model, samples, tmp_path):
    graph = ExportGraph(isp_model)
    report = measure_parity(lambda x: graph(x) + 0.01, graph, samples, precision="int8", extra={"note": "x"}, **META)
    exported = tmp_path / "isp.onnx"
    path = write_report(report, exported)
    assert path == report_path(exported) == tmp_path / "isp.onnx.parity.json"
    data = read_report(exported)
    assert data == json.loads(json.dumps(report.to_json()))
    assert data["packing"] == "outside" and data["extra"] == {"note": "x"} and data["reference"].startswith("PyTorch")
    table = format_table(data)
    assert "a " in table and "40.00" in table and "reported only" in table and "passed" in table
    with pytest.raises(UnispError, match="cannot read the parity report"):
        read_report(tmp_path / "missing.onnx")


def test_fit_crops_centre_and_mirrors():
    x = torch.arange(24.0).view(1, 4, 6)
    assert fit(x, 2, 2).tolist() == [[[8.0, 9.0], [14.0, 15.0]]]  # rows 1-2, columns 2-3 of 4×6
    # Symmetric padding repeats the edge: row order 0 0 1 2 3 3 for height 6.
    grown = fit(x, 6, 6)
    assert grown.shape == (1, 6, 6) and grown[0, :, 0].tolist() == [0.0, 0.0, 6.0, 12.0, 18.0, 18.0]


def test_synthetic_samples():
    dynamic = synthetic_samples()
    assert [s.packed.shape[-2:] for s in dynamic] == [torch.Size(s) for s in parity.DYNAMIC_SAMPLE_SIZES]
    assert [s.name for s in dynamic] == [f"synthetic:{p}" for p in parity.SYNTHETIC_PHOTOS]
    for s in dynamic:  # normalised RAW: in [0, 1], not constant, not all clipped
        assert 0 <= float(s.packed.min()) and float(s.packed.max()) <= 1 and 0.02 < float(s.packed.mean()) < 0.9
    fixed = synthetic_samples((1200, 800), count=2)  # larger than the photos: mirrored out
    assert [tuple(s.packed.shape) for s in fixed] == [(1, 4, 600, 400)] * 2


def test_frame_samples(tmp_path):
    mosaic = np.full((20, 30), 543, np.uint16)  # (543 − 63) / (1023 − 63) = 0.5 exactly
    frame = RawFrame(mosaic, CFA.RGGB, (63,) * 4, 1023, path=tmp_path / "shot.dng")
    (sample,) = frame_samples([frame], shape=(8, 12))
    assert sample.name == "shot.dng" and sample.packed.shape == (1, 4, 4, 6)
    assert torch.all(sample.packed == 0.5)
