"""The runtime registry (:mod:`unisp.export.runtimes`) that `unisp process` and `unisp bench latency` share.

Checked for every runtime at once: each name is listed once, the shape-free ones are exactly what
`process --backend` accepts, every runner that can run here equals the model, and one that
cannot raises :class:`RuntimeUnavailable` saying why (a skipped row in the benchmark, a one-line
error in `process`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unisp import cli
from unisp import process as process_module
from unisp.errors import ConfigError, UnispError
from unisp.export import fused
from unisp.export.fused import load_kernel
from unisp.export.latency import run_latency
from unisp.export.runtimes import (
    ANY_SHAPE,
    NAMES,
    REDUCED_PRECISION,
    REFERENCE,
    RUNTIMES,
    Runner,
    RuntimeUnavailable,
    build_runner,
    get_runtime,
)
from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model

#: The existing tests' tolerance for an fp32 backend against PyTorch (test_fused, test_onnx_cli).
TOLERANCE = 1e-5
#: ... and for bf16 against fp32 PyTorch (test_fused's BF16_MIN_PSNR_DB).
BF16_MIN_PSNR_DB = 40.0
#: Runtimes a test may build in a second or two (torch.compile and the TFLite conversion take tens of seconds).
QUICK = ("torch", "onnxruntime", "fused", "fused-bf16")


@pytest.fixture(scope="module")
def model():
    """Weights far from the initialisation, so a wrong tap or layer would show; output clamped to
    [0, 1] as deployed (the exported graphs clamp too, so every runtime computes the same)."""
    torch.manual_seed(0)
    net = build_model("efficient_isp").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    net.clamp_output = True
    return net


def plain(output: str) -> str:
    """A command's output on one line: the parser's boxed, wrapped message unwrapped."""
    return " ".join(output.replace("│", " ").split())


def test_every_runtime_is_listed_once() -> None:
    assert NAMES == ("torch", "compile", "onnxruntime", "tflite", "fused", "fused-bf16")
    assert len(set(NAMES)) == len(NAMES) == len(RUNTIMES)
    assert all(RUNTIMES[name].name == name for name in NAMES)
    assert NAMES[0] == REFERENCE == "torch"  # reported first: the others are compared with it
    assert "eager" not in NAMES  # one name per runtime: PyTorch is torch everywhere
    assert REDUCED_PRECISION == ("fused-bf16",)
    for name in NAMES:
        assert get_runtime(name) is RUNTIMES[name]
    with pytest.raises(ConfigError, match="unknown runtime 'eager'.*torch, compile, onnxruntime, tflite, fused, fused-bf16"):
        get_runtime("eager")


def test_shape_free_runtimes_are_what_process_accepts() -> None:
    assert ANY_SHAPE == ("torch", "onnxruntime", "fused", "fused-bf16")
    assert {name for name, r in RUNTIMES.items() if not r.any_shape} == {"compile", "tflite"}
    assert process_module.BACKENDS == ANY_SHAPE
    assert tuple(choice.value for choice in cli.ProcessBackend) == ANY_SHAPE
    assert tuple(choice.value for choice in cli.BenchBackend) == NAMES
    # Only torch runs on another device than the CPU.
    assert [name for name, r in RUNTIMES.items() if r.any_device] == ["torch"]


@pytest.mark.parametrize("name", ["compile", "tflite", "eager"])
def test_process_parser_refuses_the_others(tmp_path, name: str) -> None:
    result = CliRunner().invoke(cli.app, ["process", str(tmp_path), "-m", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "o"), "--backend", name])
    assert result.exit_code == 2
    assert f"'{name}' is not one of 'torch', 'onnxruntime', 'fused', 'fused-bf16'" in plain(result.output)


def test_bench_parser_takes_every_runtime_and_nothing_else() -> None:
    result = CliRunner().invoke(cli.app, ["bench", "latency", "--model", "efficient_isp", "--backend", "eager"])
    assert result.exit_code == 2
    assert "'eager' is not one of 'torch', 'compile', 'onnxruntime', 'tflite', 'fused', 'fused-bf16'" in plain(result.output)


def build_or_skip(name: str, net, tmp_path: Path, **kwargs) -> Runner:
    try:
        return build_runner(name, net, threads=1, workdir=tmp_path, **kwargs)
    except RuntimeUnavailable as e:
        pytest.skip(f"{name} cannot run here: {e}")


@pytest.mark.parametrize("shape", [None, (10, 14)], ids=["any-shape", "fixed-shape"])
@pytest.mark.parametrize("name", QUICK)
def test_runner_equals_the_model(model, tmp_path, name: str, shape) -> None:
    x = torch.rand(1, 4, 5, 7, generator=torch.Generator().manual_seed(1))
    runner = build_or_skip(name, model, tmp_path, shape=shape)
    assert isinstance(runner, Runner) and runner.note and not runner.nhwc
    with torch.inference_mode():
        want = model(x)
    out = runner(x)
    got = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
    assert got.shape == want.shape == (1, 3, 10, 14)
    if name in REDUCED_PRECISION:
        mse = float((got.clamp(0, 1).double() - want.clamp(0, 1).double()).square().mean())
        assert mse == 0 or -10 * np.log10(mse) >= BF16_MIN_PSNR_DB
    else:
        assert float((got - want).abs().max()) <= TOLERANCE
    for file, size in runner.files.items():  # what it wrote is in the work folder, with its size
        assert (tmp_path / file).stat().st_size == size


def test_fixed_shape_runtimes_need_a_shape(model, tmp_path) -> None:
    for name in NAMES:
        if not RUNTIMES[name].any_shape:
            with pytest.raises(ConfigError, match=f"runtime {name} is built for one fixed shape"):
                build_runner(name, model, workdir=tmp_path)


def test_unavailable_runtime_says_why(model, tmp_path, monkeypatch) -> None:
    with pytest.raises(RuntimeUnavailable, match="the fused kernel runs efficient_isp and robust_isp, not rmfa_tiny"):
        build_runner("fused", build_model("rmfa_tiny"), workdir=tmp_path)
    monkeypatch.setitem(sys.modules, "unisp.export.tflite", None)  # the [mobile] extra missing
    with pytest.raises(RuntimeUnavailable, match=r"the \[mobile\] extra is not installed .*pip install 'unisp\[mobile\]'"):
        build_runner("tflite", model, shape=(8, 8), workdir=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(RuntimeUnavailable, match="ONNX export unavailable"):
        build_runner("onnxruntime", model, workdir=tmp_path)
    assert issubclass(RuntimeUnavailable, UnispError)  # the command line's one-line error


def test_fused_without_a_compiler(model, tmp_path, monkeypatch) -> None:
    """Unavailable for the benchmark (it never times the fallback); `process` falls back to PyTorch."""
    monkeypatch.setenv("CXX", "no-such-compiler-unisp")
    monkeypatch.setenv(fused.CACHE_ENV, str(tmp_path))
    load_kernel.cache_clear()
    try:
        for name in ("fused", "fused-bf16"):
            with pytest.raises(RuntimeUnavailable, match="could not be compiled"):
                build_runner(name, model, workdir=tmp_path)
        with pytest.raises(RuntimeUnavailable, match="could not be compiled"):  # bf16 has no fallback
            build_runner("fused-bf16", model, workdir=tmp_path, fallback=True)
        runner = build_runner("fused", model, workdir=tmp_path, fallback=True)
        assert "fallback" in runner.note
        x = torch.rand(1, 4, 6, 6)
        with torch.inference_mode():
            torch.testing.assert_close(runner(x), model(x), atol=TOLERANCE, rtol=0)
    finally:
        load_kernel.cache_clear()


def test_bench_skips_and_process_refuses_an_unavailable_runtime(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    report = run_latency(build_model("efficient_isp"), height=8, width=8, repeats=1, backends=["torch", "onnxruntime"],
                         threads=1, sgemm_size=64, allocator="default")
    (ort,) = [row for row in report.rows if row.backend == "onnxruntime"]
    assert ort.skipped and ort.note.startswith("ONNX export unavailable")
    assert "| onnxruntime | — | — | — | — | — | skipped: ONNX export unavailable" in report.to_markdown()

    model_file = tmp_path / "m.safetensors"
    save_model(model_file, build_model("efficient_isp"), name="efficient_isp")
    np.save(tmp_path / "frame.npy", np.zeros((16, 16), dtype=np.uint16))
    result = CliRunner().invoke(cli.app, [
        "process", str(tmp_path / "frame.npy"), "--model", str(model_file), "--out", str(tmp_path / "o"),
        "--bits", "10", "--backend", "onnxruntime",
    ])
    assert result.exit_code == 2 and "error: ONNX export unavailable" in result.output
    assert "Traceback" not in result.output
