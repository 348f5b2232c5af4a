"""Outputs that would destroy inputs, output names that collide, and what a folder run's exit status says.

Every command that writes one output per input checks all output paths before it writes the first:
an output that is an input (``render DIR --out DIR`` over 16-bit PNG mosaics, ``eval --save`` into
the ground truth) or two inputs with one output name (``x.dng`` and ``x.DNG``) is one line naming
the files, exit status 2, and every input is left byte for byte as it was. A folder run exits 0 when
every input was converted, 2 when none was (and leaves no empty output folder), 3 when some were.
"""

from __future__ import annotations

import pytest
from fuzz_checks import assert_user_error, files_in, invoke, leftovers
from fuzz_corpus import dng_bytes, mosaic, png_bytes, photo, write

from unisp.cli import EXIT_PARTIAL, EXIT_USER_ERROR
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png


@pytest.fixture
def dataset(tmp_path):
    """``raw/`` (unisp-layout 16-bit PNG mosaics with sidecars) and ``rgb/`` (their ground truth), two of each."""
    for i in range(2):
        frame = RawFrame(mosaic=mosaic((32, 32), seed=i), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
        write_mosaic_png(tmp_path / "set" / "raw" / f"f{i}.png", frame)
        write(tmp_path / "set" / "rgb" / f"f{i}.png", png_bytes(photo(seed=i, size=32)))
    return tmp_path / "set"


def snapshot(folder):
    return {p: p.read_bytes() for p in files_in(folder)}


@pytest.mark.parametrize("command", ["render", "process"])
def test_output_folder_is_the_input_folder(dataset, model_file, command):
    before = snapshot(dataset)
    extra = ["--model", model_file] if command == "process" else []
    result = invoke(command, dataset / "raw", "--out", dataset / "raw", *extra)
    assert_user_error(result, str(dataset / "raw" / "f0.png"))
    assert "overwrite" in result.output
    assert snapshot(dataset) == before


def test_output_folder_is_the_input_folder_another_format_is_fine(dataset):
    result = invoke("render", dataset / "raw", "--out", dataset / "raw", "--format", "tiff")
    assert result.exit_code == 0, result.output
    assert (dataset / "raw" / "f0.tif").is_file() and (dataset / "raw" / "f0.json").is_file()


def test_eval_save_into_the_ground_truth(dataset, model_file):
    """Before the check, predictions replaced the truth and scored 107 dB against themselves."""
    before = snapshot(dataset)
    for save in (dataset / "rgb", dataset / "raw"):
        result = invoke("eval", "--model", model_file, "--data", dataset, "--metrics", "psnr", "--save", save)
        assert_user_error(result, str(save))
    assert snapshot(dataset) == before


@pytest.mark.parametrize("names", [("x.dng", "x.DNG"), ("x.dng", "x.nef", "x.DNG")])
def test_output_name_collision(tmp_path, names):
    for name in names:
        write(tmp_path / "in" / name, dng_bytes())
    result = invoke("render", tmp_path / "in", "--out", tmp_path / "out")
    assert_user_error(result, "x.png")
    assert all(name in result.output for name in names), result.output
    assert files_in(tmp_path / "out") == []


def test_eval_pred_and_gt_the_same_folder(dataset):
    """Every image would be scored against itself (PSNR ∞)."""
    result = invoke("eval", "--pred", dataset / "rgb", "--gt", dataset / "rgb" / ".." / "rgb", "--metrics", "psnr")
    assert_user_error(result, "same folder")


def test_synth_out_over_its_own_photos(dataset):
    before = snapshot(dataset)
    result = invoke("synth", "--rgb", dataset / "rgb", "--out", dataset)
    assert_user_error(result, str(dataset / "rgb"))
    assert snapshot(dataset) == before


# ------------------------------------------------------------------------------------------ exit status


def test_single_file_failure_exits_2_and_leaves_no_folder(tmp_path):
    bad = write(tmp_path / "bad.dng", b"not a dng at all")
    result = invoke("render", bad, "--out", tmp_path / "out")
    assert result.exit_code == EXIT_USER_ERROR, result.output
    assert not (tmp_path / "out").exists()


def test_existing_output_folder_is_kept_when_everything_fails(tmp_path):
    (tmp_path / "out").mkdir()
    result = invoke("render", write(tmp_path / "bad.dng", b"not a dng"), "--out", tmp_path / "out")
    assert result.exit_code == EXIT_USER_ERROR and (tmp_path / "out").is_dir()


@pytest.mark.parametrize("command", ["render", "process"])
def test_partial_folder_run_exits_3(dataset, model_file, command):
    write(dataset / "raw" / "broken.dng", b"not a dng")
    extra = ["--model", model_file] if command == "process" else []
    result = invoke(command, dataset / "raw", "--out", dataset / "out", *extra)
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "broken.dng" in result.output
    assert sorted(p.name for p in files_in(dataset / "out")) == ["f0.png", "f1.png"]


def test_partial_synth_exits_3(tmp_path):
    write(tmp_path / "photos" / "a.png", png_bytes(photo(size=32)))
    write(tmp_path / "photos" / "b.png", b"not a png")
    result = invoke("synth", "--rgb", tmp_path / "photos", "--out", tmp_path / "set")
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "b.png" in result.output
    assert (tmp_path / "set" / "raw" / "a.png").is_file() and leftovers(tmp_path) == []


def test_partial_eval_exits_3(dataset, model_file):
    (dataset / "rgb" / "f1.png").unlink()  # f1 has no ground truth: scored on f0 only
    result = invoke("eval", "--model", model_file, "--data", dataset, "--metrics", "psnr")
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "f1" in result.output


@pytest.mark.parametrize("value", ["0", "-1", "-3"])
def test_select_max_images_must_be_positive(dataset, value):
    """``-1`` used to drop the last image (a negative slice); ``0`` and ``-3`` said "no RAW files"."""
    result = invoke("select", dataset, "--rgb", dataset / "rgb", "--max-images", value)
    assert_user_error(result, "--max-images")


# ------------------------------------------------------------------------------ single output files

SINGLE_OUTPUTS = {
    # The ONNX export used to replace the model it was exported from (and pass its parity check).
    "export-over-its-model": (lambda d, m: ["export", "--model", m, "--format", "onnx", "--out", m], "--out"),
    "export-wrong-suffix": (lambda d, m: ["export", "--model", m, "--format", "tflite", "--out", d / "m.onnx"], ".tflite"),
    "import-reference-over-its-source": (lambda d, m: ["import-reference", m, "--out", m], "--out"),
    # The CSV used to replace a ground-truth PNG.
    "eval-csv-over-truth": (lambda d, m: ["eval", "--pred", d / "rgb", "--gt", d / "rgb", "--metrics", "psnr",
                                          "--csv", d / "rgb" / "f0.png"], "--csv"),
    "select-out-over-a-model": (lambda d, m: ["select", d, "--rgb", d / "rgb", "--out", m], "--out"),
    "report-out-over-a-model": (lambda d, m: ["report", d, "--out", m], "--out"),
}


@pytest.mark.parametrize("case", sorted(SINGLE_OUTPUTS))
def test_single_output_file_never_replaces_an_input(tmp_path, dataset, model_file, case):
    model = tmp_path / "model.safetensors"
    model.write_bytes(model_file.read_bytes())
    before = {**snapshot(dataset), model: model.read_bytes()}
    args, mention = SINGLE_OUTPUTS[case]
    assert_user_error(invoke(*args(dataset, model)), mention)
    assert {**snapshot(dataset), model: model.read_bytes()} == before
