"""The fused CPU kernel equals PyTorch eager: known values, image borders, band borders, odd sizes, batches."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unisp.errors import UnispError
from unisp.export import fused
from unisp.export.fused import FusedISP, fused_forward, load_kernel, supports
from unisp.models.registry import build_model
from unisp.process import run_tiled
from unisp.raw.frame import RawFrame

#: The issue's tolerance for a fast backend against the torch backend (float32).
TOLERANCE = 1e-5

needs_kernel = pytest.mark.skipif(load_kernel() is None, reason="no C++ compiler: the fused kernel cannot be built here")


def random_model(name: str = "efficient_isp", seed: int = 0, scale: float = 1.0) -> nn.Module:
    """A generator with random weights and biases; ``scale`` > 1 drives tanh into saturation."""
    torch.manual_seed(seed)
    model = build_model(name).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model


def eager(model: nn.Module, x: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    with torch.no_grad():
        y = model.render(x)
    return y.clamp(0, 1) if clamp else y


@needs_kernel
@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
@pytest.mark.parametrize(
    "shape",
    [
        (1, 4, 1, 1),  # a single packed pixel: every tap but the centre is padding
        (1, 4, 2, 3),
        (1, 4, 7, 5),  # odd, smaller than one vector
        (2, 4, 33, 50),  # a batch, odd height, width not a multiple of the vector width
        (1, 4, 9, 130),  # width just past a 32-pixel block boundary
        (3, 4, 17, 17),
    ],
)
def test_equals_eager(name: str, shape: tuple[int, ...]) -> None:
    model = random_model(name, seed=sum(shape))
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    out = fused_forward(model, x, band_rows=4, strip_cols=40)
    assert out.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(out, eager(model, x), atol=TOLERANCE, rtol=0)


@needs_kernel
@pytest.mark.parametrize("band_rows, strip_cols", [(1, 1), (2, 3), (3, 5), (5, 40), (64, 7), (4, 2000)])
def test_tile_borders(band_rows: int, strip_cols: int) -> None:
    """Rows and columns at the edges of each thread's tile need 3 pixels of context from its neighbours."""
    model = random_model(seed=3)
    x = torch.rand(1, 4, 23, 41, generator=torch.Generator().manual_seed(2))
    for threads in (1, 2, 3):
        out = fused_forward(model, x, band_rows=band_rows, strip_cols=strip_cols, threads=threads)
        torch.testing.assert_close(out, eager(model, x), atol=TOLERANCE, rtol=0)


@needs_kernel
def test_saturated_tanh_and_negative_input() -> None:
    """Large weights push conv1 far into tanh's tails (|x| up to ~100) where the approximation clamps."""
    model = random_model(seed=4, scale=30.0)
    x = torch.rand(1, 4, 12, 20, generator=torch.Generator().manual_seed(3)) * 4 - 2
    with torch.no_grad():
        pre = model.conv1(x)
    assert pre.abs().max() > 20  # the test really reaches the clamped region
    ref = eager(model, x)
    out = fused_forward(model, x)
    torch.testing.assert_close(out, ref, atol=TOLERANCE * max(1.0, float(ref.abs().max())), rtol=0)


@needs_kernel
def test_known_value_single_pixel() -> None:
    """Hand-computed: with only centre taps, one packed pixel, output = relu(w3·relu(w2·tanh(w1·x + b1) + b2) + b3)."""
    model = build_model("efficient_isp").eval()
    with torch.no_grad():
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.weight.zero_()
            conv.bias.zero_()
        model.conv1.weight[:, 0, 1, 1] = 1.0  # every conv1 channel = R
        model.conv2.weight[:, :, 1, 1] = 0.5  # conv2 channel = 0.5 × Σ 12 tanh(R) = 6 tanh(R)
        model.conv3.weight[:, 0, 1, 1] = torch.arange(12, dtype=torch.float32) / 12  # output k = k/12 × 6 tanh(R)
        model.conv3.bias[:] = 0.25
    x = torch.zeros(1, 4, 1, 1)
    x[0, 0] = 0.3
    expected_shuffled = torch.arange(12, dtype=torch.float32) / 12 * 6 * np.tanh(0.3) + 0.25
    expected = expected_shuffled.view(3, 2, 2)  # channel 4c + 2i + j → colour c at (i, j)
    out = fused_forward(model, x)
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)


@needs_kernel
def test_clamp_matches_infer() -> None:
    model = random_model(seed=5, scale=3.0)
    x = torch.rand(2, 4, 10, 14, generator=torch.Generator().manual_seed(4))
    out = fused_forward(model, x, clamp=True)
    torch.testing.assert_close(out, model.infer(x), atol=TOLERANCE, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


@needs_kernel
def test_module_is_a_drop_in_for_tiled_processing() -> None:
    """FusedISP through run_tiled (tiles with halo, as `unisp process --backend fused`) equals the model."""
    model = random_model(seed=6)
    rng = np.random.default_rng(0)
    mosaic = rng.integers(64, 1024, size=(50, 66), dtype=np.uint16)
    frame = RawFrame(mosaic, "RGGB", black_level=(64, 64, 64, 64), white_level=1023)
    ref = run_tiled(model, frame, tile=8)
    out = run_tiled(FusedISP(model), frame, tile=8)
    torch.testing.assert_close(out, ref, atol=TOLERANCE, rtol=0)


def test_errors() -> None:
    with pytest.raises(UnispError, match="efficient_isp and robust_isp"):
        fused_forward(build_model("rmfa_tiny"), torch.rand(1, 4, 8, 8))
    with pytest.raises(UnispError, match="efficient_isp and robust_isp"):
        FusedISP(build_model("rmfa_tiny"))
    model = build_model("efficient_isp")
    with pytest.raises(UnispError, match="expected packed Bayer"):
        fused_forward(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(UnispError, match="float32 CPU"):
        fused_forward(model, torch.rand(1, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(UnispError, match="band_rows and strip_cols"):
        fused_forward(model, torch.rand(1, 4, 8, 8), band_rows=0)
    with pytest.raises(UnispError, match="band_rows and strip_cols"):
        fused_forward(model, torch.rand(1, 4, 8, 8), strip_cols=0)
    assert supports(model) and not supports(nn.Conv2d(4, 12, 3))


def test_falls_back_without_compiler(monkeypatch, tmp_path, caplog) -> None:
    """No compiler: one warning naming the reason, and the module runs the PyTorch model."""
    monkeypatch.setenv("CXX", "no-such-compiler-unisp")
    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    load_kernel.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="unisp.export.fused"):
            module = FusedISP(random_model(seed=7))
            x = torch.rand(1, 4, 6, 6)
            out = module(x)
        assert not module.uses_kernel
        assert "no C++ compiler 'no-such-compiler-unisp'" in caplog.text
        torch.testing.assert_close(out, eager(module.model, x))
        with pytest.raises(UnispError, match="could not be built"):
            fused_forward(module.model, x)
    finally:
        load_kernel.cache_clear()


def test_gradients_use_the_model() -> None:
    """The kernel has no backward: an input needing gradients runs the PyTorch model."""
    model = random_model(seed=8)
    x = torch.rand(1, 4, 5, 5, requires_grad=True)
    FusedISP(model)(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@needs_kernel
def test_kernel_is_cached(monkeypatch, tmp_path) -> None:
    """The compiled library lands in $UNISP_CACHE/kernels and is reused by the next load."""
    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    load_kernel.cache_clear()
    try:
        assert load_kernel() is not None
        (lib,) = (tmp_path / "kernels").glob("fused_isp_*.so")
        stamp = lib.stat().st_mtime_ns
        load_kernel.cache_clear()
        assert load_kernel() is not None
        assert lib.stat().st_mtime_ns == stamp
    finally:
        load_kernel.cache_clear()


@needs_kernel
def test_process_backend_fused(tmp_path) -> None:
    """`unisp process --backend fused` writes the same image as `--backend torch` (16-bit: within one code)."""
    import imageio.v3 as iio
    from typer.testing import CliRunner

    from unisp.cli import app
    from unisp.models.checkpoint import save_model

    model_file = tmp_path / "m.safetensors"
    save_model(model_file, random_model(seed=9), name="efficient_isp")
    rng = np.random.default_rng(1)
    np.save(tmp_path / "frame.npy", rng.integers(0, 1024, size=(46, 70), dtype=np.uint16))
    images = {}
    for name in ("torch", "fused"):
        out = tmp_path / name
        result = CliRunner().invoke(app, [
            "process", str(tmp_path / "frame.npy"), "--model", str(model_file), "--out", str(out),
            "--depth", "16", "--tile", "8", "--bits", "10", "--backend", name,
        ])
        assert result.exit_code == 0, result.output
        images[name] = iio.imread(out / "frame.png").astype(np.int64)
    assert images["torch"].shape == (46, 70, 3)
    assert np.abs(images["torch"] - images["fused"]).max() <= 1


def test_process_backend_fused_refuses_global_models(tmp_path) -> None:
    from typer.testing import CliRunner

    from unisp.cli import app
    from unisp.models.checkpoint import save_model

    model_file = tmp_path / "m.safetensors"
    save_model(model_file, build_model("rmfa_tiny"), name="rmfa_tiny")
    np.save(tmp_path / "frame.npy", np.zeros((16, 16), dtype=np.uint16))
    result = CliRunner().invoke(app, [
        "process", str(tmp_path / "frame.npy"), "--model", str(model_file), "--out", str(tmp_path / "o"),
        "--bits", "10", "--backend", "fused",
    ])
    assert result.exit_code == 2 and "efficient_isp and robust_isp" in result.output


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
RELEASED = SHARED / "reference_checkpoints" / "ZRR" / "Efficient_ISP_unpaired_step_30750.pth"
PHONE_RAW = SHARED / "real_raw" / "rawir_vivo_x90_3_4.npy"


@needs_kernel
@pytest.mark.skipif(not (RELEASED.is_file() and PHONE_RAW.is_file()), reason="shared released weights / real RAW not here")
def test_released_weights_on_a_real_phone_raw(tmp_path) -> None:
    """The paper's released ZRR weights on a real vivo X90 frame: the kernel equals PyTorch within 1e-5.

    Trained weights are larger than random ones (outputs reach ~1.5 before clamping) and real data
    saturates (1 % of samples at 4095), so this exercises the ranges deployment sees. The file holds
    packed (R, Gr, Gb, B) 12-bit planes, black level already subtracted (its SOURCES.md).
    """
    from unisp.models.checkpoint import import_reference, load_model

    import_reference(RELEASED, tmp_path / "zrr.safetensors")
    model, _ = load_model(tmp_path / "zrr.safetensors")
    planes = np.load(PHONE_RAW).astype(np.float32) / 4095  # (512, 512, 4)
    x = torch.from_numpy(planes).permute(2, 0, 1)[None].contiguous()
    torch.testing.assert_close(fused_forward(model.eval(), x), eager(model, x), atol=TOLERANCE, rtol=0)
