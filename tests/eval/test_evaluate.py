"""Evaluation of image pairs and folders: pairing, failures, means, CSV/JSON/table output."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch

from unisp.errors import UnispError
from unisp.eval.evaluate import (
    EvalResult,
    compare_folders,
    evaluate_images,
    format_table,
    to_json,
    write_csv,
)
from unisp.fileio import write_image

FAST = ("psnr", "ssim")


@pytest.fixture(autouse=True)
def no_alexnet(tmp_path, monkeypatch):
    """No LPIPS weights anywhere: TORCH_HOME is an empty folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _grey(level: int, height: int = 24, width: int = 24) -> np.ndarray:
    return np.full((height, width, 3), level, dtype=np.uint8)


@pytest.fixture
def folders(tmp_path):
    """pred/ and gt/ with two good pairs, one of each missing partner and a size mismatch."""
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_image(gt / "a.png", _grey(100))
    write_image(pred / "a.png", _grey(110))  # 10 codes off: PSNR = −20·log10(10/255) = 28.13 dB
    write_image(gt / "b.png", _grey(100))
    write_image(pred / "b.png", _grey(105))  # 5 codes off: 34.15 dB
    write_image(pred / "only_pred.png", _grey(0))
    write_image(gt / "only_gt.png", _grey(0))
    write_image(pred / "size.png", _grey(0, 24, 30))
    write_image(gt / "size.png", _grey(0, 24, 24))
    return pred, gt


def test_compare_folders_pairs_by_stem(folders):
    pred, gt = folders
    calls = []
    result = compare_folders(pred, gt, metrics=FAST, progress=lambda done, total: calls.append((done, total)))
    assert [r.name for r in result.rows] == ["a", "b"]
    assert math.isclose(result.rows[0].scores["psnr"], -20 * math.log10(10 / 255), abs_tol=1e-3)
    assert math.isclose(result.rows[1].scores["psnr"], -20 * math.log10(5 / 255), abs_tol=1e-3)
    # The mean PSNR is the mean of per-image dB (31.14), not the dB of the pooled MSE (30.12).
    assert math.isclose(result.means["psnr"], (28.1308 + 34.1514) / 2, abs_tol=1e-3)
    assert calls == [(1, 3), (2, 3), (3, 3)]  # a, b, size: the stems present in both folders
    assert len(result.failures) == 3
    joined = "\n".join(result.failures)
    assert f"{pred / 'only_pred.png'}: no ground truth" in joined
    assert f"{gt / 'only_gt.png'}: no prediction" in joined
    assert f"{pred / 'size.png'} (30×24) and {gt / 'size.png'} (24×24): sizes differ" in joined


def test_compare_folders_unreadable_and_duplicate_files(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_image(gt / "a.png", _grey(100))
    write_image(pred / "a.png", _grey(100))
    write_image(pred / "a.tif", _grey(100))  # same stem as a.png: the second one is left out
    (pred / "bad.png").write_bytes(b"not a png")
    write_image(gt / "bad.png", _grey(100))
    result = compare_folders(pred, gt, metrics=FAST)
    assert [r.name for r in result.rows] == ["a"]
    assert any("a.tif: same stem as a.png" in f for f in result.failures)
    assert any(f.startswith(f"{pred / 'bad.png'}: cannot decode") for f in result.failures)


def test_compare_folders_missing_folder(tmp_path):
    with pytest.raises(UnispError, match="not a folder"):
        compare_folders(tmp_path / "nope", tmp_path, metrics=FAST)


def test_default_metrics_leave_lpips_out_with_one_warning(folders, caplog):
    pred, gt = folders
    with caplog.at_level(logging.WARNING):
        result = compare_folders(pred, gt)
    assert result.metrics == ("psnr", "ssim", "ms_ssim", "delta_e2000")
    assert [r.getMessage() for r in caplog.records if "LPIPS" in r.getMessage()].__len__() == 1
    assert "LPIPS left out" in result.protocol
    # 24 px images fit only 2 MS-SSIM scales, and the protocol says so.
    assert "MS-SSIM on 2 scales" in result.protocol and "a, b" in result.protocol


def test_identical_images_and_generators():
    g = torch.Generator().manual_seed(5)
    images = [torch.rand(3, 16, 20, generator=g) for _ in range(2)]
    result = evaluate_images(iter(images), (x.clone() for x in images), ["x", "y"], metrics=("psnr", "delta_e2000"))
    assert [r.scores["psnr"] for r in result.rows] == [math.inf, math.inf]
    assert result.means == {"psnr": math.inf, "delta_e2000": 0.0}


def test_bad_pairs_become_failures_and_the_rest_go_on():
    ok = torch.rand(3, 16, 16)
    preds = [torch.rand(3, 8, 8), ok, torch.full((3, 16, 16), math.nan), torch.rand(3, 16, 16)]
    targets = [torch.rand(3, 8, 8), ok, torch.rand(3, 16, 16), torch.rand(3, 16, 17)]
    result = evaluate_images(preds, targets, ["tiny", "ok", "nan", "size"], metrics=FAST)
    assert [r.name for r in result.rows] == ["ok"]
    assert result.failures[0].startswith("tiny: SSIM needs images of at least 11×11")
    assert result.failures[1] == "nan: image contains NaN or Inf"
    assert result.failures[2] == "size: sizes differ: 16×16 and 17×16"


def test_inputs_are_clamped():
    # Out-of-range predictions are measured as the clamped image a file would hold.
    target = torch.full((3, 16, 16), 1.0)
    result = evaluate_images([target + 0.5], [target], ["over"], metrics=("psnr",))
    assert result.rows[0].scores["psnr"] == math.inf


def test_evaluate_images_argument_errors():
    x = torch.rand(3, 16, 16)
    with pytest.raises(UnispError, match="unknown metric fid"):
        evaluate_images([x], [x], ["a"], metrics=("psnr", "fid"))
    with pytest.raises(UnispError, match="fewer predictions"):
        evaluate_images([x], [x, x], ["a", "b"], metrics=FAST)
    with pytest.raises(UnispError, match="more images"):
        evaluate_images([x, x], [x, x], ["a"], metrics=FAST)


def test_means_of_nothing_are_nan():
    result = evaluate_images([], [], [], metrics=FAST)
    assert all(math.isnan(v) for v in result.means.values())


def _result() -> EvalResult:
    target = torch.full((3, 16, 16), 0.5)
    return evaluate_images(
        [target, target + 0.01, torch.rand(3, 4, 4)], [target, target, torch.rand(3, 4, 4)], ["same", "off", "tiny"],
        metrics=FAST,
    )


def test_csv_contents(tmp_path):
    result = _result()
    write_csv(result, tmp_path / "out" / "scores.csv")
    with open(tmp_path / "out" / "scores.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "psnr", "ssim"]
    assert [r[0] for r in rows[1:]] == ["same", "off"]
    assert float(rows[1][1]) == math.inf
    assert float(rows[2][1]) == result.rows[1].scores["psnr"]  # full precision round trip
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic write left no temporary file


def test_json_contents():
    result = _result()
    data = json.loads(json.dumps(to_json(result), allow_nan=False))
    assert data["metrics"] == ["psnr", "ssim"]
    assert data["count"] == 2
    assert data["mean"]["psnr"] == "inf"  # one identical pair makes the mean PSNR infinite
    assert data["images"][0] == {"name": "same", "psnr": "inf", "ssim": pytest.approx(1.0, abs=1e-6)}
    assert math.isclose(data["images"][1]["psnr"], 40.0, abs_tol=1e-2)  # offset 0.01 → 40 dB
    assert data["failures"] == [f for f in result.failures] and data["failures"][0].startswith("tiny:")
    assert data["protocol"].startswith("RGB, [0, 1]")


def test_table_contents():
    table = format_table(_result())
    lines = table.splitlines()
    assert lines[0].split() == ["image", "PSNR", "dB", "↑", "SSIM", "↑"]
    assert lines[2].split()[:2] == ["same", "inf"]
    assert lines[3].split()[:2] == ["off", "40.00"]
    assert "mean of 2" in table and "1 failure:" in table and "  tiny: SSIM" in table
    assert lines[-1].startswith("protocol: RGB")
    assert "same" not in format_table(_result(), per_image=False)
