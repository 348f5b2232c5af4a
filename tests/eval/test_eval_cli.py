"""``unisp eval``: folders against folders, and a model run over a dataset."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.eval.datasets import raw_and_truth_dirs
from unisp.errors import UnispError
from unisp.fileio import write_image
from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model
from unisp.synth.dataset import synthesize_folder

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


@pytest.fixture
def folders(tmp_path):
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        image = torch.rand(3, 32, 32, generator=g) * 0.9
        write_image(tmp_path / "gt" / f"{name}.png", image, depth=16)
        # A constant offset of 4/65535·… is not exact in 16 bits; 0.05 is: PSNR = 20·log10(1/0.05) ≈ 26.02 dB.
        write_image(tmp_path / "pred" / f"{name}.png", image + 0.05, depth=16)
    return tmp_path


def test_folders_json(folders):
    result = invoke("--pred", folders / "pred", "--gt", folders / "gt", "--metrics", "psnr,ssim", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["count"] == 2 and data["metrics"] == ["psnr", "ssim"]
    assert data["mean"]["psnr"] == pytest.approx(20 * math.log10(1 / 0.05), abs=0.01)
    assert "data_range 1" in data["protocol"]


def test_folders_table_and_csv(folders):
    result = invoke("--pred", folders / "pred", "--gt", folders / "gt", "--metrics", "psnr", "--csv", folders / "s.csv")
    assert result.exit_code == 0, result.output
    assert "mean of 2" in result.output and "protocol:" in result.output
    assert (folders / "s.csv").read_text().splitlines()[0] == "name,psnr"


def test_model_on_a_synthetic_dataset(tmp_path):
    g = torch.Generator().manual_seed(1)
    for i in range(2):
        write_image(tmp_path / "photos" / f"p{i}.png", torch.rand(3, 24, 32, generator=g))
    synthesize_folder(tmp_path / "photos", tmp_path / "set", noise=False)
    save_model(tmp_path / "m.safetensors", build_model("efficient_isp"), name="efficient_isp")
    result = invoke("--model", tmp_path / "m.safetensors", "--data", tmp_path / "set", "--metrics", "psnr,delta_e2000",
                    "--json", "--save", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["images"]] == ["p0", "p1"]
    assert (tmp_path / "out" / "p0.png").exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["--metrics", "psnr,fid"], "unknown fid"),
        ([], "either --pred"),
        (["--pred", "x"], "--pred needs --gt"),
        (["--model", "m.safetensors"], "--model needs --data"),
    ],
)
def test_usage_errors(args, match):
    result = invoke(*args)
    assert result.exit_code == 2 and match in result.output


def test_dataset_layouts(tmp_path):
    (tmp_path / "huawei_raw").mkdir()
    (tmp_path / "canon").mkdir()
    assert raw_and_truth_dirs(tmp_path) == (tmp_path / "huawei_raw", tmp_path / "canon")
    assert raw_and_truth_dirs(tmp_path / "huawei_raw", tmp_path / "x") == (tmp_path / "huawei_raw", tmp_path / "x")
    with pytest.raises(UnispError, match="pass --gt"):
        raw_and_truth_dirs(tmp_path / "canon")
