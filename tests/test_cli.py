"""The command line end to end: outputs written, bad input reported in one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.fileio import read_pixels, read_rgb, write_image

runner = CliRunner()

HEADERLESS = ["--width", "8", "--height", "6", "--bits", "10", "--cfa", "RGGB"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def write_headerless(path, value_range=(0, 1024), shape=(6, 8), seed=0):
    mosaic = np.random.default_rng(seed).integers(*value_range, size=shape, dtype=np.uint16)
    mosaic.astype("<u2").tofile(path)
    return mosaic


def test_render_headerless_file(tmp_path):
    write_headerless(tmp_path / "a.raw")
    result = invoke("render", tmp_path / "a.raw", "--out", tmp_path / "out", *HEADERLESS)
    assert result.exit_code == 0, result.output
    pixels = read_pixels(tmp_path / "out" / "a.png")
    assert pixels.shape == (6, 8, 3) and pixels.dtype == np.uint8


def test_render_16bit_tiff(tmp_path):
    write_headerless(tmp_path / "a.raw")
    result = invoke("render", tmp_path / "a.raw", "-o", tmp_path / "out", *HEADERLESS, "--depth", "16", "--format", "tiff")
    assert result.exit_code == 0, result.output
    assert read_pixels(tmp_path / "out" / "a.tif").dtype == np.uint16


def test_folder_run_goes_on_past_a_bad_file(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_headerless(src / "good.raw")
    (src / "short.raw").write_bytes(b"\0" * 10)  # truncated: 96 bytes expected
    result = invoke("render", src, "--out", tmp_path / "out", *HEADERLESS)
    assert result.exit_code == 3  # some files converted, some failed
    assert (tmp_path / "out" / "good.png").exists()
    assert not (tmp_path / "out" / "short.png").exists()
    assert "1 failed" in result.output and "short.raw" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--cfa", "RGBW"], "unknown CFA pattern 'RGBW'"),
        (["--cfa", "RGGB", "--black", "1,2"], "--black needs 1 or 4 values"),
        (["--cfa", "RGGB", "--depth", "12"], "--depth must be 8 or 16"),
    ],
)
def test_bad_flags(tmp_path, flags, match):
    write_headerless(tmp_path / "a.raw")
    size = ["--width", "8", "--height", "6", "--bits", "10"]
    result = invoke("render", tmp_path / "a.raw", "--out", tmp_path / "out", *size, *flags)
    assert result.exit_code == 2
    assert match in result.output
    assert not (tmp_path / "out" / "a.png").exists()


def test_values_above_white_level(tmp_path):
    write_headerless(tmp_path / "a.raw", value_range=(1024, 4096))
    result = invoke("render", tmp_path / "a.raw", "--out", tmp_path / "out", *HEADERLESS)
    assert result.exit_code == 2
    assert "above the white level" in result.output


def test_missing_headerless_flags(tmp_path):
    write_headerless(tmp_path / "a.raw")
    result = invoke("render", tmp_path / "a.raw", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "--width" in result.output


def test_unwritable_output(tmp_path):
    write_headerless(tmp_path / "a.raw")
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = invoke("render", tmp_path / "a.raw", "--out", tmp_path / "blocker", *HEADERLESS)
    assert result.exit_code == 2
    assert "blocker" in result.output


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("render", tmp_path / "empty", tmp_path / "nothing.dng", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "empty" in result.output and "nothing.dng" in result.output


def test_inspect_says_where_values_came_from(tmp_path):
    write_headerless(tmp_path / "a.raw")
    result = invoke("inspect", tmp_path / "a.raw", *HEADERLESS, "--black", "16")
    assert result.exit_code == 0, result.output
    assert "RGGB [user]" in result.output and "(16, 16, 16, 16) [user]" in result.output


def test_synth_then_render(tmp_path):
    photos = tmp_path / "photos"
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        write_image(photos / f"p{i}.png", torch.rand(3, 12, 16, generator=g))
    result = invoke("synth", "--rgb", photos, "--out", tmp_path / "set", "--seed", "3", "--no-noise")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "set" / "dataset.json").read_text())
    assert meta["count"] == 2 and meta["seed"] == 3 and meta["noise"] is False
    result = invoke("render", tmp_path / "set" / "raw", "--out", tmp_path / "renders")
    assert result.exit_code == 0, result.output
    assert read_rgb(tmp_path / "renders" / "p0.png").shape == (3, 12, 16)


def test_synth_empty_folder(tmp_path):
    (tmp_path / "none").mkdir()
    result = invoke("synth", "--rgb", tmp_path / "none", "--out", tmp_path / "set")
    assert result.exit_code == 2 and "no files" in result.output


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("render", "inspect", "synth", "demo"):
        assert command in result.output


def test_render_over_a_folder_says_what_it_holds_in_one_line(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_headerless(src / f"{i}.raw", seed=i)
    result = invoke("render", src, "--out", tmp_path / "out", *HEADERLESS, "--black", "16")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"info: {src}: 3 RAW files, 8×6 RGGB, black 16, white 1023 [user], white balance unknown, colour matrix identity [assumed]",
        f"rendered 3 file(s) into {tmp_path / 'out'}",
    ]
    # -v: each file's own line too (the reader's, at DEBUG).
    result = invoke("-v", "render", src, "--out", tmp_path / "out2", *HEADERLESS, "--black", "16")
    assert result.exit_code == 0, result.output
    per_file = [line for line in result.output.splitlines() if "headerless layout" in line]
    assert [line.split(":")[:2] for line in per_file] == [["debug", f" {src / f'{i}.raw'}"] for i in range(3)]
