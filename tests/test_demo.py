"""``unisp demo`` end to end (shortened), and the recipes in configs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unisp.config import load_config
from unisp.demo import XHAT_ROW, DemoSettings, asset, run_demo
from unisp.fileio import read_rgb
from unisp.raw.io import find_raw_files
from unisp.train.config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_writes_its_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISP_CACHE", str(tmp_path / "cache"))
    settings = DemoSettings(stage1_steps=4, stage1_patch=32, stage2_steps=2, batch_size=2)
    summary = run_demo(tmp_path / "out", settings=settings)
    out = tmp_path / "out"
    record = json.loads((out / "summary.json").read_text())
    assert record["held_out"] == ["kodim04", "kodim08", "kodim12", "kodim16", "kodim20", "kodim24"]
    assert set(record["mean"]) == {
        XHAT_ROW, "classical (bilinear)", "classical (malvar)", "classical (ahd)", "classical (menon)",
        "stage 1 (efficient_isp)", "stage 2, unpaired (efficient_isp)",
    }
    assert record["sample_renders"] == ["classical", "stage1", "stage2"]
    assert read_rgb(out / "sample_stage2.png").shape == (3, 1080, 1920)
    for name in record["held_out"]:
        assert (out / "compare" / f"{name}.png").exists()
    assert "| stage 2, unpaired (efficient_isp) |" in summary and (out / "summary.md").read_text() == summary
    assert "Model card: stage 2" in (out / "report.html").read_text()  # the visual report (tests/eval/test_report.py)
    # The report reads the folder through the manifest the demo wrote (unisp.eval.report.DemoManifest).
    manifest = record["manifest"]
    assert manifest["stages"] == {"stage 1": "stage1/model.safetensors", "stage 2": "stage2/model.safetensors"}
    assert all((out / path).is_file() for path in [*manifest["stages"].values(), *manifest["samples"].values()])
    assert [p.stem for p in find_raw_files(out / manifest["held_out_raw"])] == manifest["held_out"] == record["held_out"]
    assert all((out / manifest["held_out_truth"] / f"{name}.png").is_file() for name in manifest["held_out"])
    assert "not shown" not in (out / "report.html").read_text()  # every section of the report found what it reads


def test_demo_photo_groups_are_disjoint():
    from unisp.demo import split_photos

    groups = {side: {p.name for p in paths} for side, paths in split_photos().items()}
    assert [len(groups[s]) for s in ("raw", "test", "rgb")] == [9, 6, 9]
    assert not (groups["raw"] & groups["test"]) and not (groups["raw"] & groups["rgb"]) and not (groups["test"] & groups["rgb"])


def test_packaged_demo_recipe_is_configs_unpaired_yaml():
    assert asset("unpaired.yaml").read_text() == (CONFIGS / "unpaired.yaml").read_text()


@pytest.mark.parametrize("name", ["stage1", "paired", "zrr_unpaired", "uispf_unpaired", "unpaired"])
def test_recipes_load(name):
    path = CONFIGS / f"{name}.yaml"
    config = load_config(TrainConfig, path)
    # Every value the recipe sets reaches the config unchanged, top-level keys and one level of
    # sections (data.*, pixel.*, losses.*): what runs is the recipe, not a default it fell back to.
    # (batch_size ≥ 1 alone held for any recipe: the loader already refuses anything else.)
    def same(got, want):
        return (list(got) if isinstance(got, tuple) else got) == want  # YAML lists, dataclass tuples

    for key, value in yaml.safe_load(path.read_text()).items():
        if isinstance(value, dict):
            for sub, sub_value in value.items():
                assert same(getattr(getattr(config, key), sub), sub_value), f"{key}.{sub}"
        else:
            assert same(getattr(config, key), value), key
