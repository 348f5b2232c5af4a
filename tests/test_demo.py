"""``unisp demo`` end to end, shortened: every output is written and the summary is consistent."""

from __future__ import annotations

import json

from unisp.demo import DemoSettings, run_demo
from unisp.fileio import read_rgb


def test_demo_writes_its_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISP_CACHE", str(tmp_path / "cache"))
    summary = run_demo(tmp_path / "out", settings=DemoSettings(steps=20, batch_size=4, patch=32))
    out = tmp_path / "out"
    record = json.loads((out / "summary.json").read_text())
    assert len(record["held_out"]) == 2
    assert set(record["mean"]) == {"classical (bilinear)", "classical (malvar)", "classical (menon)", "stage-1 efficient_isp"}
    assert record["sample_renders"] == ["classical", "stage1"]
    assert read_rgb(out / "sample_classical.png").shape == (3, 1080, 1920)
    for name in record["held_out"]:
        assert (out / "compare" / f"{name}.png").exists()
    assert (out / "stage1" / "model.safetensors").exists()
    assert "| classical (menon) |" in summary and (out / "summary.md").read_text() == summary
