"""`unisp bench latency`: size parsing, the report's arithmetic, every backend's row, errors."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.errors import ConfigError, UnispError
from unisp.export.fused import load_kernel
from unisp.export.latency import (
    FLOP_PER_MAC,
    BackendTiming,
    LatencyReport,
    measure_sgemm,
    parse_size,
    run_latency,
)
from unisp.export.runtimes import NAMES
from unisp.models.checkpoint import load_generator, save_model
from unisp.models.registry import build_model

#: Backends a test may run in a few seconds: torch.compile's first compilation takes ~30 s on 2 cores.
FAST_BACKENDS = tuple(b for b in NAMES if b != "compile")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12MP", (3000, 4000)),  # the 12 MP frame is exactly 4000 × 3000
        ("12mp", (3000, 4000)),
        (" 48MP ", (6000, 8000)),
        ("3000x4000", (3000, 4000)),  # height first, as export --shape
        ("48X64", (48, 64)),
        ("480×640", (480, 640)),
        ("0.000048MP", (6, 8)),  # 48 pixels at 4:3
    ],
)
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "12", "MP", "12 MB", "4000*3000", "-4x4", "0x4", "3x4", "4000x3001", "0MP", "abcx3", "20000x20000"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="size"):
        parse_size(text)


def test_sgemm_rate_is_positive() -> None:
    rates = measure_sgemm(repeats=2, size=64)
    assert len(rates) == 2 and all(r > 0 for r in rates)


def test_report_arithmetic() -> None:
    """Known values: 756 MAC/pixel on 4000×3000 is 9.072 GMAC = 18.144 GFLOP; at 0.1 s that is 181.44 GFLOP/s, 120 MPix/s."""
    report = LatencyReport(
        model="efficient_isp", parameters=3060, mac_per_pixel=756, height=3000, width=4000, threads=2, repeats=3,
        sgemm_gflops=[100.0, 181.44, 500.0], rows=[BackendTiming("fused", [0.1, 0.09, 0.5], 1e-7, "kernel")],
    )
    assert report.gflop == pytest.approx(FLOP_PER_MAC * 756 * 12e6 / 1e9) == pytest.approx(18.144)
    assert report.sgemm == 181.44
    text = report.to_markdown()
    assert "| fused | 100.0 | 120.0 | 181.4 | 100% | 1.0e-07 | kernel |" in text
    assert "3,060 parameters" in text and "756 MAC per output pixel" in text


def test_run_latency_rows() -> None:
    """Every backend's output is compared with torch's (TFLite, slow to convert, is covered by the CLI test)."""
    model = build_model("efficient_isp")
    backends = ("fused", "onnxruntime", "torch")  # reported in the registry's order, torch first
    report = run_latency(model, height=32, width=48, repeats=2, backends=backends, threads=1, sgemm_size=256, allocator="default")
    assert [r.backend for r in report.rows] == ["torch", "onnxruntime", "fused"]
    assert report.mac_per_pixel == 756 and report.parameters == 3060
    for row in report.rows:
        if row.skipped:
            assert row.note  # a stated reason
            continue
        assert len(row.seconds) == 2 and all(s > 0 for s in row.seconds)
        if row.backend != "torch":
            assert row.max_abs_diff is not None and row.max_abs_diff < 1e-5, row
    ran = {r.backend for r in report.rows if not r.skipped}
    assert "torch" in ran
    assert ("fused" in ran) == (load_kernel() is not None)  # fused skips only without a compiler
    assert model.clamp_output is False  # the caller's model is not modified


def test_run_latency_errors() -> None:
    model = build_model("efficient_isp")
    with pytest.raises(ConfigError, match="unknown backend"):
        run_latency(model, height=8, width=8, backends=["torch", "tensorrt"])
    with pytest.raises(ConfigError, match="even"):
        run_latency(model, height=7, width=8)
    with pytest.raises(ConfigError, match="at least 1"):
        run_latency(model, height=8, width=8, repeats=0)
    with pytest.raises(ConfigError, match="allocator"):
        run_latency(model, height=8, width=8, allocator="jemalloc")
    with pytest.raises(ConfigError, match="does not match"):
        run_latency(model, height=8, width=8, packed=torch.rand(1, 4, 3, 4), backends=["torch"])


def test_load_generator(tmp_path) -> None:
    model, header, path = load_generator("robust_isp")
    assert path is None and header == {} and model.name == "robust_isp"
    file = tmp_path / "m.safetensors"
    save_model(file, build_model("efficient_isp"), name="efficient_isp")
    model, header, path = load_generator(str(file))
    assert path == file and model.name == "efficient_isp" and header["model"] == "efficient_isp"
    with pytest.raises(UnispError, match="neither a model name"):
        load_generator(str(tmp_path / "missing.safetensors"))


def test_cli_prints_every_row(tmp_path) -> None:
    file = tmp_path / "m.safetensors"
    save_model(file, build_model("efficient_isp"), name="efficient_isp")
    args = ["bench", "latency", "--model", str(file), "--size", "48x64", "--repeats", "2", "--threads", "1", "--allocator", "default"]
    for backend in FAST_BACKENDS:
        args += ["--backend", backend]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    for backend in FAST_BACKENDS:
        assert re.search(rf"^\| {backend} \|", out, re.MULTILINE), backend
    assert "3,060 parameters" in out and "756 MAC per output pixel" in out
    assert "output 64×48 (0.00 MP)" in out and "allocator: glibc default" in out
    assert re.search(r"sgemm \(torch\.mm, \d+² float32, median of 2\): [\d.]+ GFLOP/s", out)
    assert "m.safetensors" in out and "KiB" in out  # file sizes
    assert "| vs torch: max abs diff, PSNR |" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "12"], "size '12'"),
        (["--size", "3x3"], "must be even"),
        # refused by the parser, which lists the registry's names
        (["--backend", "tensorrt"], "'tensorrt' is not one of 'torch', 'compile', 'onnxruntime', 'tflite', 'fused', 'fused-bf16'"),
        (["--backend", "eager"], "'eager' is not one of"),  # the old name of torch
        (["--allocator", "jemalloc"], "allocator must be one of keep, default"),
    ],
)
def test_cli_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "latency", "--model", "efficient_isp", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())  # the parser's message is boxed and wrapped


def test_cli_missing_model(tmp_path) -> None:
    result = CliRunner().invoke(app, ["bench", "latency", "--model", str(tmp_path / "nope.safetensors")])
    assert result.exit_code == 2 and "neither a model name" in result.output
