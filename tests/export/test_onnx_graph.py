"""ExportGraph (the exported module's input contracts), --shape parsing, the baked-in sensor constants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unisp.errors import ConfigError, UnispError
from unisp.export.graph import ExportGraph, SensorCalibration, check_input, parse_shape, sensor_calibration
from unisp.isp.blc import normalize
from unisp.raw.bayer import CFA, pack
from unisp.raw.frame import RawFrame, Source

SENSOR = SensorCalibration("RGGB", (60, 61, 62, 63), 1023)


@pytest.fixture
def model(isp_model):
    return isp_model


@pytest.mark.parametrize(
    "packing, layout, shape_in, shape_out",
    [
        ("outside", "nchw", (2, 4, 6, 10), (2, 3, 12, 20)),
        ("outside", "nhwc", (2, 6, 10, 4), (2, 12, 20, 3)),
        ("inside", "nchw", (2, 1, 12, 20), (2, 3, 12, 20)),
        ("inside", "nhwc", (2, 12, 20, 1), (2, 12, 20, 3)),
    ],
)
def test_shapes(model, packing, layout, shape_in, shape_out):
    graph = ExportGraph(model, packing, layout, sensor=SENSOR)
    y = graph(torch.rand(shape_in) * 1023)
    assert y.shape == shape_out and y.dtype == torch.float32
    assert 0 <= float(y.min()) and float(y.max()) <= 1  # clamped like inference
    assert graph.input_shape(12, 20, batch=2) == shape_in


def test_outside_nchw_is_the_clamped_model(model):
    x = torch.rand(1, 4, 8, 12)
    with torch.no_grad():
        assert torch.equal(ExportGraph(model)(x), model(x).clamp(0, 1))


@pytest.mark.parametrize("cfa", list(CFA))
def test_inside_packing_equals_unisp_packing_and_normalisation(model, cfa):
    # The graph's own packing and black-level normalisation must give what unisp's reader path gives:
    # pack() then normalize() with the same levels, for every CFA phase.
    sensor = SensorCalibration(cfa, (60, 61, 62, 63), 1023)
    mosaic = torch.from_numpy(np.random.default_rng(0).integers(0, 1024, size=(16, 24)).astype(np.float32))
    packed = normalize(pack(mosaic, cfa)[None], sensor.black, sensor.white)
    inside = ExportGraph(model, "inside", "nhwc", sensor=sensor)(mosaic[None, :, :, None])
    outside = ExportGraph(model, "outside", "nhwc")(packed.permute(0, 2, 3, 1))
    # float32 convolutions over differently strided memory round differently (~1e-6); a wrong
    # plane order or level would be off by ~0.1.
    assert (inside - outside).abs().max() <= 1e-5


def test_to_graph_input_known_values(model):
    # RGGB, black 64 for R and 0 for the rest, white 1024: packed value 0.5 is sensor value 544 for R.
    sensor = SensorCalibration("RGGB", (64, 0, 0, 0), 1024)
    graph = ExportGraph(model, "inside", "nchw", sensor=sensor)
    packed = torch.tensor([0.5, 0.25, 0.0, 1.0]).view(1, 4, 1, 1)
    assert graph.to_graph_input(packed).tolist() == [[[[544.0, 256.0], [0.0, 1024.0]]]]


@pytest.mark.parametrize("packing", ["outside", "inside"])
def test_to_graph_input_round_trips_through_the_graph(model, packing):
    graph = ExportGraph(model, packing, "nhwc", sensor=SENSOR)
    packed = torch.rand(1, 4, 6, 8)
    with torch.no_grad():
        want = model(packed).clamp(0, 1)
        got = graph.from_graph_output(graph(graph.to_graph_input(packed)))
    assert (got - want).abs().max() <= 1e-5  # float32 rounding only (see above)


def test_fp16_body_keeps_float32_io_and_does_not_touch_the_model(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = ExportGraph(model, compute_dtype=torch.float16)
    assert next(graph.model.parameters()).dtype == torch.float16
    assert graph(torch.rand(1, 4, 4, 4)).dtype == torch.float32
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items())


def test_graph_errors(model):
    with pytest.raises(ConfigError, match="sensor"):
        ExportGraph(model, "inside")
    with pytest.raises(ConfigError, match="packing"):
        ExportGraph(model, "sideways")
    with pytest.raises(ConfigError, match="layout"):
        ExportGraph(model, layout="nwhc")
    with pytest.raises(ConfigError, match="dtype"):
        ExportGraph(model, compute_dtype=torch.int8)
    with pytest.raises(UnispError, match="packed Bayer"):
        ExportGraph(model).to_graph_input(torch.rand(1, 3, 4, 4))


def test_check_input():
    check_input((1, 4, 3, 5), "outside", "nchw")  # packed planes may have any size
    with pytest.raises(UnispError, match="even"):
        check_input((1, 7, 8, 1), "inside", "nhwc")
    with pytest.raises(UnispError, match="C = 4"):
        check_input((1, 3, 8, 8), "outside", "nchw")
    with pytest.raises(UnispError, match="C = 1"):
        check_input((8, 8), "inside", "nchw")


def test_parse_shape():
    assert parse_shape("dynamic") == parse_shape(None) is None
    assert parse_shape("3000x4000") == (3000, 4000)
    assert parse_shape(" 6×8 ") == (6, 8)
    for bad, message in [("abc", "dynamic"), ("10x10x10", "dynamic"), ("3x4", "even"), ("0x4", "at least 2"), ("-2x4", "at least 2"), ("60000x60000", "200 MP limit")]:
        with pytest.raises(ConfigError, match=message):
            parse_shape(bad)


def test_sensor_calibration_sources(caplog):
    frame = RawFrame(
        np.zeros((4, 4), np.uint16), CFA.GRBG, (10, 11, 12, 13), 4095,
        path=None, sources={"cfa": Source.METADATA, "white_level": Source.METADATA},
    )
    with caplog.at_level("INFO"):
        s = sensor_calibration(black=64, sample=frame)
    assert (s.cfa, s.black, s.white) == (CFA.GRBG, (64.0,) * 4, 4095.0)
    assert "given: black" in s.source and "cfa [metadata]" in s.source and "white [metadata]" in s.source
    assert "GRBG, black (64, 64, 64, 64), white 4095" in caplog.text
    assert sensor_calibration(cfa="bggr", black=(1, 2, 3, 4), white=255).source == "given: cfa, black, white"
    with pytest.raises(ConfigError, match="--white"):
        sensor_calibration(cfa="RGGB", black=0)
    for bad in [(0, 0, 0, 1023), (-1, 0, 0, 0), (float("nan"),) * 4]:
        with pytest.raises(ConfigError, match="black < white"):
            SensorCalibration("RGGB", bad, 1023)
    with pytest.raises(ConfigError, match="black < white"):
        SensorCalibration("RGGB", (0,) * 4, float("inf"))
    with pytest.raises(ConfigError, match="4 values"):
        SensorCalibration("RGGB", (0, 0), 1023)
    with pytest.raises(UnispError, match="CFA"):
        SensorCalibration("RGBW", (0,) * 4, 1023)
