"""Stage-1 and paired training on a tiny synthetic set: the loss falls, the model improves, resume is exact."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from unisp.cli import app
from unisp.config import load_config
from unisp.errors import ConfigError, UnispError
from unisp.models.checkpoint import load_model
from unisp.train.config import TrainConfig
from unisp.train.run import RunDir
from unisp.train.loop import schedule_factor, train


def recipe(tiny_set, **overrides) -> TrainConfig:
    base = [
        "mode=stage1",
        "pixel.l1=1",
        "losses.dla=false",
        f"data.raw_dir={tiny_set / 'raw'}",
        "data.patch=16",
        "data.samples_per_epoch=64",
        "data.val_fraction=0.34",  # 2 of 6 images held out
        "batch_size=8",
        "lr=0.005",
        "steps=120",
        "log_every=10",
        "val_every=60",
        "ckpt_every=60",
        "device=cpu",
    ]
    return load_config(TrainConfig, None, base + [f"{k}={v}" for k, v in overrides.items()])


def test_stage1_learns_the_classical_render(tiny_set, tmp_path):
    summary = train(recipe(tiny_set), tmp_path / "run")
    # Validation is against the classical render of held-out images, so a better PSNR than at
    # step 0 means the generator learned to demosaic/white-balance/gamma like the classical ISP.
    start, final = summary["start_validation"]["val_psnr"], summary["final_validation"]["val_psnr"]
    assert summary["validation_images"] == 2
    assert final > start + 3.0, (start, final)
    losses = [r["loss/total"] for r in RunDir(tmp_path / "run").metrics() if "loss/total" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    model, header = load_model(tmp_path / "run" / "model.safetensors")
    assert header["model"] == "efficient_isp" and header["training"]["step"] == 120
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["steps"] == 120 and saved["data"]["patch"] == 16
    assert json.loads((tmp_path / "run" / "run.json").read_text())["git"]


def test_paired_mode_learns_the_ground_truth(tiny_set, tmp_path):
    # Supervised training on aligned pairs (L1 + SSIM only): the paper's terms switched off.
    off = {f"losses.{t}": 0 for t in ("content", "colour", "texture_low", "texture_high", "tv")}
    config = recipe(tiny_set, mode="paired", **{"data.rgb_dir": tiny_set / "rgb", "pixel.ssim": 0.2, **off})
    summary = train(config, tmp_path / "run")
    assert summary["final_validation"]["val_psnr"] > summary["start_validation"]["val_psnr"] + 3.0


def test_stage2_can_start_from_a_checkpoint(tiny_set, tmp_path):
    first = train(recipe(tiny_set, steps=60), tmp_path / "a")
    second = train(recipe(tiny_set, steps=10, init=tmp_path / "a" / "model.safetensors"), tmp_path / "b")
    # Starting from the trained model, step 0 already scores what the first run ended with.
    assert second["start_validation"]["val_psnr"] == pytest.approx(first["final_validation"]["val_psnr"], abs=1e-4)


def test_resume_is_exact(tiny_set, tmp_path):
    train(recipe(tiny_set, steps=100, ckpt_every=50), tmp_path / "full")
    train(recipe(tiny_set, steps=50, ckpt_every=50), tmp_path / "part")
    # Continue the 50-step run to 100 steps: same weights, optimiser state and data as the full run.
    (tmp_path / "part" / "config.yaml").write_text((tmp_path / "full" / "config.yaml").read_text())
    config = load_config(TrainConfig, tmp_path / "part" / "config.yaml")
    resumed = train(config, tmp_path / "part", resume=True)
    assert resumed["steps"] == 100
    a, _ = load_model(tmp_path / "full" / "model.safetensors")
    b, _ = load_model(tmp_path / "part" / "model.safetensors")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    losses = lambda run: [r["loss/total"] for r in RunDir(tmp_path / run).metrics() if "loss/total" in r]
    assert losses("full") == losses("part")


def test_schedule_factor_known_values():
    cosine = TrainConfig(lr_schedule="cosine", steps=10)
    assert schedule_factor(cosine, 0) == 1.0  # the recipe's rate at the first step
    assert schedule_factor(cosine, 5) == pytest.approx(0.5)  # half way down the half cosine
    assert schedule_factor(cosine, 9) == pytest.approx(0.5 * (1 + math.cos(0.9 * math.pi)))  # last step, near 0
    assert all(schedule_factor(TrainConfig(steps=10), step) == 1.0 for step in range(10))  # constant: the paper's


class Interrupted(Exception):
    pass


def test_cosine_schedule_is_followed_and_resumed_exactly(tiny_set, tmp_path):
    config = recipe(tiny_set, steps=20, ckpt_every=10, log_every=1, val_every=20, lr_schedule="cosine")
    train(config, tmp_path / "full")
    lrs = [r["lr"] for r in RunDir(tmp_path / "full").metrics() if "lr" in r]
    assert lrs == pytest.approx([0.005 * schedule_factor(config, step) for step in range(20)])

    def stop_at_10(step, record):
        if step == 10:  # after step 10's checkpoint
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, tmp_path / "part", progress=stop_at_10)
    train(config, tmp_path / "part", resume=True)  # the rates follow from the step: the same schedule
    a, _ = load_model(tmp_path / "full" / "model.safetensors")
    b, _ = load_model(tmp_path / "part" / "model.safetensors")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_config_errors(tiny_set):
    with pytest.raises(ConfigError, match="data.raw_dir"):
        train(TrainConfig())
    with pytest.raises(ConfigError, match="data.rgb_dir"):
        train(recipe(tiny_set, mode="paired"))
    with pytest.raises(ConfigError, match="'mode'"):
        recipe(tiny_set, mode="unknown")
    with pytest.raises(ConfigError, match="'data.patch'"):
        recipe(tiny_set, **{"data.patch": 7})
    with pytest.raises(ConfigError, match="'lr_schedule'"):
        recipe(tiny_set, lr_schedule="linear")


def test_patch_larger_than_images(tiny_set, tmp_path):
    with pytest.raises(UnispError, match="smaller than"):
        train(recipe(tiny_set, **{"data.patch": 64}), tmp_path / "run")


def test_cli_train_and_resume(tiny_set, tmp_path):
    runner = CliRunner()
    args = [f"data.raw_dir={tiny_set / 'raw'}", "data.patch=16", "tensorboard=false", "data.samples_per_epoch=16", "batch_size=8",
            "steps=4", "ckpt_every=2", "val_every=2", "device=cpu"]
    result = runner.invoke(app, ["train", "--config", "configs/stage1.yaml", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "step_0000004.safetensors").exists()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "run"), "steps=6"])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "run" / "model.safetensors")[1]["training"]["step"] == 6
    result = runner.invoke(app, ["train", "--config", "configs/stage1.yaml", "nonsense.key=1"])
    assert result.exit_code == 2 and "nonsense" in result.output
