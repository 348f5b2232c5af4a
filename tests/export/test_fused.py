"""The fused CPU kernel equals PyTorch eager: known values, image borders, band borders, odd sizes, batches.

Its bf16 variant equals an exact bf16 emulation in PyTorch and stays ≥ 40 dB from fp32 eager.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.export import fused
from unisp.export.fused import FusedISP, bf16_unavailable_reason, fused_forward, load_kernel, supports
from unisp.models.registry import build_model
from unisp.models.tiled import run_tiled
from unisp.raw.frame import RawFrame

#: The issue's tolerance for a fast backend against the torch backend (float32).
TOLERANCE = 1e-5

needs_kernel = pytest.mark.skipif(load_kernel() is None, reason="no C++ compiler: the fused kernel cannot be built here")
needs_bf16 = pytest.mark.skipif(bf16_unavailable_reason() is not None, reason=f"bf16 kernel: {bf16_unavailable_reason()}")
#: Issue 5's parity bound for reduced precision: PSNR against PyTorch fp32, in dB.
BF16_MIN_PSNR_DB = 40.0


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


def psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB, peak 1."""
    return float(-10 * torch.log10((out.double() - ref.double()).square().mean()))


def bf16_emulation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the bf16 kernel computes, in float64: every layer's input and weights rounded to bf16
    (torch rounds to nearest even, as vcvtne2ps2bf16), products and sums exact, bias and activations unrounded."""
    def bf(t: torch.Tensor) -> torch.Tensor:
        return t.float().to(torch.bfloat16).double()

    h = bf(x)
    with torch.no_grad():
        for i, conv in enumerate((model.conv1, model.conv2, model.conv3)):
            h = F.conv2d(h, bf(conv.weight), conv.bias.double(), padding=1)
            h = torch.tanh(h) if i == 0 else h.relu()
            h = bf(h) if i < 2 else h
    return F.pixel_shuffle(h, 2).float()


@needs_bf16
@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (1, 4, 7, 5), (2, 4, 33, 50), (1, 4, 9, 130)])
def test_bf16_equals_its_emulation(name: str, shape: tuple[int, ...]) -> None:
    """The bf16 kernel is exactly bf16 rounding of activations and weights with fp32 accumulation.

    Its fp32 sums differ from the float64 emulation in the last bits; where such a sum lies
    within that of a bf16 rounding boundary, the intermediate rounds the other way (one bf16 ulp,
    2^-8 relative, times a weight below 1: ~1e-3 at most), rarely. So: every value within 2e-3,
    the mean within 1e-5 — while the emulation itself is ~1e-3 from fp32 eager, so a kernel that
    rounded differently (or not at all) fails the mean bound.
    """
    model = random_model(name, seed=sum(shape))
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    out = fused_forward(model, x, band_rows=4, strip_cols=40, precision="bf16")
    assert out.shape == (shape[0], 3, 2 * shape[2], 2 * shape[3])
    emulated = bf16_emulation(model, x)
    torch.testing.assert_close(out, emulated, atol=2e-3, rtol=0)
    assert float((out - emulated).abs().mean()) < 1e-5


@needs_bf16
@pytest.mark.parametrize("band_rows, strip_cols", [(1, 1), (3, 5), (64, 7), (4, 2000)])
def test_bf16_tile_borders(band_rows: int, strip_cols: int) -> None:
    """Tiles and threads do not change the bf16 result: it is the same as one whole-image tile."""
    model = random_model(seed=3)
    x = torch.rand(1, 4, 23, 41, generator=torch.Generator().manual_seed(2))
    whole = fused_forward(model, x, band_rows=23, strip_cols=41, threads=1, precision="bf16")
    for threads in (1, 3):
        out = fused_forward(model, x, band_rows=band_rows, strip_cols=strip_cols, threads=threads, precision="bf16")
        torch.testing.assert_close(out, whole, atol=0, rtol=0)


@needs_bf16
def test_bf16_parity_with_fp32_on_a_photo_like_input() -> None:
    """≥ 40 dB against fp32 eager on a smooth, photo-like frame (clamped, as deployed).

    Why the bound holds: bf16 keeps 8 significant bits, so each operand's rounding error is at
    most 2^-9 relative (RMS ~2^-9/√3). An output sums 108 products per layer; independent errors
    add in quadrature, giving an RMS error near 1e-3 of the output scale (~60 dB), and the two
    earlier layers' errors pass through weights of norm ~1. 40 dB allows 1e-2 RMS: a 10× margin.
    """
    model = random_model(seed=10).eval()
    model.clamp_output = True
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)  # smooth scene, plus sensor-like noise
    x = (base[None, None] * torch.tensor([0.6, 1.0, 1.0, 0.7]).view(1, 4, 1, 1)
         + 0.01 * torch.randn(1, 4, 96, 128, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    out = FusedISP(model, precision="bf16")(x)
    db = psnr(out, model.infer(x))
    assert db >= BF16_MIN_PSNR_DB, f"bf16 parity {db:.1f} dB"


def test_bf16_errors(monkeypatch) -> None:
    """An unknown precision, and bf16 on a CPU whose build has no AVX512-BF16, raise ConfigError saying why."""
    model = build_model("efficient_isp")
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        FusedISP(model, precision="int4")
    with pytest.raises(ConfigError, match="precision must be one of"):
        fused_forward(model, torch.rand(1, 4, 8, 8), precision="fp16")

    class NoBF16:
        @staticmethod
        def unisp_fused_has_bf16() -> int:
            return 0

    monkeypatch.setattr(fused, "load_kernel", lambda: NoBF16())
    with pytest.raises(ConfigError, match="AVX512-BF16"):
        FusedISP(model, precision="bf16")


@needs_kernel
def test_builds_for_a_cpu_without_avx512(monkeypatch, tmp_path) -> None:
    """Built for baseline x86-64 (SSE2: no AVX, no AVX-512), the kernel has no bf16 path and fp32 still equals eager."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("-march=x86-64 is an x86 flag")
    monkeypatch.setattr(fused, "COMPILE_FLAGS", tuple(f.replace("-march=native", "-march=x86-64") for f in fused.COMPILE_FLAGS))
    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    load_kernel.cache_clear()
    try:
        lib = load_kernel()
        assert lib is not None and lib.unisp_fused_vector_width() == 4 and lib.unisp_fused_has_bf16() == 0
        model = random_model(seed=11)
        x = torch.rand(1, 4, 9, 37, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(fused_forward(model, x, band_rows=4, strip_cols=16), eager(model, x), atol=TOLERANCE, rtol=0)
        with pytest.raises(ConfigError, match="AVX512-BF16"):
            fused_forward(model, x, precision="bf16")
    finally:
        load_kernel.cache_clear()


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


def process_with_backends(tmp_path, backends: tuple[str, ...]) -> dict[str, np.ndarray]:
    """16-bit codes `unisp process` writes for one random 10-bit 46×70 frame through each backend (8-px tiles)."""
    import imageio.v3 as iio
    from typer.testing import CliRunner

    from unisp.cli import app
    from unisp.models.checkpoint import save_model

    model_file = tmp_path / "m.safetensors"
    save_model(model_file, random_model(seed=9), name="efficient_isp")
    rng = np.random.default_rng(1)
    np.save(tmp_path / "frame.npy", rng.integers(0, 1024, size=(46, 70), dtype=np.uint16))
    images = {}
    for name in backends:
        out = tmp_path / name
        result = CliRunner().invoke(app, [
            "process", str(tmp_path / "frame.npy"), "--model", str(model_file), "--out", str(out),
            "--depth", "16", "--tile", "8", "--bits", "10", "--backend", name,
        ])
        assert result.exit_code == 0, result.output
        images[name] = iio.imread(out / "frame.png").astype(np.int64)
    return images


@needs_kernel
def test_process_backend_fused(tmp_path) -> None:
    """`unisp process --backend fused` writes the same image as `--backend torch` (16-bit: within one code)."""
    images = process_with_backends(tmp_path, ("torch", "fused"))
    assert images["torch"].shape == (46, 70, 3)
    assert np.abs(images["torch"] - images["fused"]).max() <= 1


@needs_bf16
def test_process_backend_fused_bf16(tmp_path) -> None:
    """`unisp process --backend fused-bf16` stays within bf16 rounding of `--backend torch`.

    bf16 keeps 8 significant bits (relative error ≤ 2⁻⁹ per rounding); through three layers of a
    random 3k-parameter model on [0, 1] outputs that is far above 40 dB, while a wrong tap order or
    a missing layer would be below 20 dB.
    """
    images = {k: v / 65535 for k, v in process_with_backends(tmp_path, ("torch", "fused-bf16")).items()}
    mse = np.mean((images["torch"] - images["fused-bf16"]) ** 2)
    assert mse > 0  # it really ran in bf16
    assert 10 * np.log10(1 / mse) >= 40


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


@needs_bf16
@pytest.mark.skipif(not (RELEASED.is_file() and PHONE_RAW.is_file()), reason="shared released weights / real RAW not here")
def test_bf16_released_weights_on_a_real_phone_raw(tmp_path) -> None:
    """The released ZRR weights on the real vivo X90 frame, clamped as deployed: bf16 ≥ 40 dB from fp32 eager
    (the bound's reasoning: :func:`test_bf16_parity_with_fp32_on_a_photo_like_input`; trained weights and
    saturated real data are the ranges deployment sees)."""
    from unisp.models.checkpoint import import_reference, load_model

    import_reference(RELEASED, tmp_path / "zrr.safetensors")
    model, _ = load_model(tmp_path / "zrr.safetensors")
    model = model.eval()
    planes = np.load(PHONE_RAW).astype(np.float32) / 4095  # (512, 512, 4)
    x = torch.from_numpy(planes).permute(2, 0, 1)[None].contiguous()
    out = fused_forward(model, x, clamp=True, precision="bf16")
    db = psnr(out, eager(model, x, clamp=True))
    assert db >= BF16_MIN_PSNR_DB, f"bf16 parity {db:.1f} dB"
