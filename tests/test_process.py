"""Full-resolution inference: tiled equals untiled, quantisation, the CLI end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.fileio import quantize, read_pixels
from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model
from unisp.models.tiled import count_tiles, run_tiled, tile_spans
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame


def random_frame(h: int = 70, w: int = 94, seed: int = 0, orientation: int = 1) -> RawFrame:
    mosaic = np.random.default_rng(seed).integers(64, 1024, size=(h, w), dtype=np.uint16)
    return RawFrame(mosaic, CFA.RGGB, (64, 64, 64, 64), 1023, orientation=orientation)


def trained_like(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(name).eval()
    with torch.no_grad():  # larger weights than the initialisation, so tiles' borders would show
        for p in model.parameters():
            p.mul_(3.0)
    return model


def test_tile_spans():
    assert tile_spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert tile_spans(3, 8) == [(0, 3)]


@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
@pytest.mark.parametrize("tile", [5, 8, 16])
def test_tiled_equals_untiled(name, tile):
    # In float64 the only possible difference is a wrong overlap, which would show as errors of
    # order 0.1 at tile seams; rounding alone stays far below 1e-6.
    model, frame = trained_like(name).double(), random_frame()
    full = model.infer(frame.normalized().unsqueeze(0).double())[0]
    tiled = run_tiled(model, frame, tile=tile)
    assert tiled.shape == full.shape == (3, 70, 94)
    assert (tiled - full).abs().max() <= 1e-6


def test_tiled_equals_untiled_float32():
    # float32: convolution kernels sum in a size-dependent order, so equal inputs can differ by a
    # few float32 ulps (~1e-6 at these magnitudes); a seam error would be orders of magnitude larger.
    model, frame = trained_like("efficient_isp"), random_frame()
    full = model.infer(frame.normalized().unsqueeze(0))[0]
    assert (run_tiled(model, frame, tile=8) - full).abs().max() <= 1e-5


def test_too_small_overlap_would_show():
    # The test above can fail: with the overlap removed, seams differ by far more than 1e-6.
    model, frame = trained_like("efficient_isp").double(), random_frame()
    full = model.infer(frame.normalized().unsqueeze(0).double())[0]
    model.receptive_radius = 1
    assert (run_tiled(model, frame, tile=8) - full).abs().max() > 1e-3


def test_global_model_runs_in_one_pass():
    model, frame = trained_like("rmfa_tiny"), random_frame(40, 48)
    assert count_tiles(model, frame, tile=8) == 1
    full = model.infer(frame.normalized().unsqueeze(0))[0]
    assert (run_tiled(model, frame, tile=8) - full).abs().max() <= 1e-6


@pytest.mark.parametrize("depth", [8, 16])
def test_quantised_output_matches_float(depth):
    model, frame = trained_like("efficient_isp"), random_frame()
    as_float = run_tiled(model, frame, tile=16)
    as_int = run_tiled(model, frame, tile=16, depth=depth)
    assert as_int.dtype == (np.uint8 if depth == 8 else np.uint16) and as_int.shape == (70, 94, 3)
    assert (as_int == quantize(as_float, depth)).all()


def test_progress_counts_tiles():
    model, frame = trained_like("efficient_isp"), random_frame()
    calls = []
    run_tiled(model, frame, tile=16, progress=calls.append)
    assert len(calls) == count_tiles(model, frame, 16) == 3 * 3  # 35×47 packed → 3×3 tiles of 16


def test_process_cli_writes_the_model_output_with_orientation(tmp_path):
    model = trained_like("efficient_isp")
    save_model(tmp_path / "m.safetensors", model, name="efficient_isp")
    frame = random_frame(12, 16)
    frame.mosaic.astype("<u2").tofile(tmp_path / "a.raw")
    flags = ["--width", "16", "--height", "12", "--bits", "10", "--cfa", "RGGB", "--black", "64"]
    result = CliRunner().invoke(
        app, ["process", str(tmp_path / "a.raw"), "--model", str(tmp_path / "m.safetensors"), "--out", str(tmp_path / "o"), "--depth", "16", *flags]
    )
    assert result.exit_code == 0, result.output
    written = read_pixels(tmp_path / "o" / "a.png")
    expected = quantize(model.infer(frame.normalized().unsqueeze(0))[0], 16)
    assert (written == expected).all()


def test_process_cli_refuses_a_pickle(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "m.pth")
    result = CliRunner().invoke(app, ["process", str(tmp_path), "--model", str(tmp_path / "m.pth"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "import-reference" in result.output
