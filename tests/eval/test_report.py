"""``unisp report``: the SVG charts, the crops, the page of every kind of folder, and the page in Chromium.

The folders are built by hand (a fresh model file, a few logged records, a tiny synthetic set)
so the tests need no training; one test runs a 2-step ``unisp train`` to check the report is
written at its end. The Chromium tests open the written page headless and read the outcome of
its own self-check (``<body data-ok>``); they skip when Chromium is not installed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from unisp.cli import app
from unisp.config import load_config
from unisp.errors import UnispError
from unisp.eval import report as R
from unisp.metrics import psnr
from unisp.eval.plots import line_chart, log_ticks, nice_ticks
from unisp.fileio import read_rgb, write_image
from unisp.models.checkpoint import load_model, save_model
from unisp.models.registry import build_model, model_info
from unisp.models.tiled import run_tiled
from unisp.raw.io import read_raw
from unisp.synth.dataset import synthesize_folder
from unisp.train.config import TrainConfig
from unisp.train.run import RunDir

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")


# ----------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------

def smooth_photo(seed: int, height: int = 64, width: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 5, 5, generator=g) * 0.8 + 0.1
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """``raw/`` (3 noise-free synthetic RAW files, 96×64) and ``rgb/`` (their ground truth)."""
    root = tmp_path_factory.mktemp("report_set")
    for i in range(3):
        write_image(root / "photos" / f"img{i}.png", smooth_photo(i))
    synthesize_folder(root / "photos", root, seed=0, noise=False, bits=10, tone_curve=False)
    return root


def records() -> list[dict]:
    """What a short unpaired run logs, with one NaN (a skipped step) in it."""
    out = [{"step": 0, "val_psnr": 10.0}]
    for step in (10, 20, 30):
        out.append({
            "step": step,
            "loss/content": 1.0 / step if step != 20 else math.nan,
            "loss/total": 2.0 / step,
            "dla_weight/content": 0.5,
            "dla_weight/colour": 0.25,
            "grad_norm/content": 100.0 * step,
            "d/colour/d_real": 0.1 * step,
            "d/colour/d_fake": -0.1 * step,
            "skipped_steps": 1 if step >= 20 else 0,
        })
    out.append({"step": 30, "val_psnr": 12.5})
    return out


def make_run(folder: Path, data: Path, mode: str = "stage1", gt: bool = False) -> Path:
    """A training run folder as unisp.train writes it, with a fresh (untrained) model."""
    overrides = [f"mode={mode}", f"data.raw_dir={data / 'raw'}", "data.val_fraction=0.5", "device=cpu", "steps=30"]
    if gt:
        overrides.append(f"data.val_rgb_dir={data / 'rgb'}")
    config = load_config(TrainConfig, None, overrides)
    run = RunDir(folder)
    run.start(config, "cpu", "unisp train (test)")
    torch.manual_seed(0)
    save_model(folder / "model.safetensors", build_model("efficient_isp"), name="efficient_isp",
               meta={"training": {"mode": mode, "step": 30}})
    lines = [json.dumps(r) for r in records()] + ['{"step": 40, "loss/total"']  # a line cut by a kill
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"steps": 30, "seconds": 1.5, "validation_metric": "val_psnr", "start_validation": {"val_psnr": 10.0},
               "final_validation": {"val_psnr": 12.5}, "final_loss": {"loss/total": 0.0667}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


# ----------------------------------------------------------------------------------------------
# Charts
# ----------------------------------------------------------------------------------------------

def test_nice_ticks_known_values():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.13, 0.97) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(10, 3000) == [0, 1000, 2000, 3000]
    assert nice_ticks(5, 5)[0] < 5 < nice_ticks(5, 5)[-1]  # one value: widened around it
    assert log_ticks(0.003, 40) == [0.001, 0.01, 0.1, 1, 10, 100]
    with pytest.raises(ValueError):
        nice_ticks(0, math.inf)


def test_line_chart_draws_every_series_and_drops_non_finite_points():
    svg = line_chart({"a": [(0, 1.0), (1, 2.0), (2, math.nan)], "b": [(0, 3.0)], "<b>": [(1, 1.0), (2, 1.5)]}, title="T & t")
    tags = Tags(svg)
    assert len(tags.all("svg")) == 1 and tags.all("svg")[0]["data-series"] == "3"
    assert tags.all("svg")[0]["data-points"] == "5"  # the NaN is left out
    assert len(tags.all("polyline")) == 2  # "b" has one point: a dot, no line
    assert "(1 non-finite)" in svg
    assert "&lt;b&gt;" in svg and "<b>" not in svg and "T &amp; t" in svg  # labels are escaped


def test_line_chart_log_axis_and_empty():
    assert "(log y)" in line_chart({"g": [(0, 0.01), (1, 100.0)]}, title="g")  # spans 4 decades: auto log
    assert "(log y)" not in line_chart({"g": [(0, 1.0), (1, 2.0)]}, title="g")
    assert "(log y)" not in line_chart({"g": [(0, -1.0), (1, 100.0)]}, title="g", log_y=True)  # not positive
    empty = line_chart({"g": [(0, math.inf)]}, title="g")
    assert 'data-points="0"' in empty and "no finite values" in empty


def test_curve_groups_follow_the_logged_prefixes():
    groups = R.curve_groups(records())
    assert list(groups) == ["Loss terms", "DLA weights", "Gradient norm per term (before DLA)",
                            "Discriminator outputs: colour", "Validation", "Other logged values"]
    assert groups["DLA weights"] == {"content": [(10, 0.5), (20, 0.5), (30, 0.5)], "colour": [(10, 0.25), (20, 0.25), (30, 0.25)]}
    assert groups["Validation"]["val_psnr"] == [(0, 10.0), (30, 12.5)]
    assert set(groups["Discriminator outputs: colour"]) == {"d_real", "d_fake"}


def test_read_metrics_skips_a_damaged_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss/total": 0.5}\n{"step": 2, "loss/to\n\n')
    assert R.read_metrics(path) == [{"step": 1, "loss/total": 0.5}]


# ----------------------------------------------------------------------------------------------
# Crops
# ----------------------------------------------------------------------------------------------

def test_choose_crop_finds_the_detail():
    image = torch.full((3, 600, 800), 0.5)
    image[:, 301:381, 501:581] = torch.rand(3, 80, 80, generator=torch.Generator().manual_seed(0))
    x, y, w, h = R.choose_crop(image, 256)
    assert (w, h) == (256, 256) and x % 2 == 0 and y % 2 == 0
    assert x <= 501 and x + w >= 581 and y <= 301 and y + h >= 381  # the textured square is inside
    assert R.choose_crop(torch.rand(3, 100, 120), 256) == (0, 0, 120, 100)  # small: the whole image
    x, y, w, h = R.choose_crop(torch.rand(3, 100, 400), 256)
    assert (w, h) == (256, 100) and 0 <= x <= 144


def test_make_crop_set_crops_every_panel_alike():
    ref = torch.randint(0, 256, (3, 300, 500), generator=torch.Generator().manual_seed(1)) / 255  # 8-bit exact
    crops = R.make_crop_set("scene", {"a": ref, "b": 1 - ref}, "a")
    (x, y), (cw, ch) = crops.origin, (256, 256)
    assert crops.panels["a"].shape == (256, 256, 3) and crops.panels["a"].dtype == np.uint8
    assert np.array_equal(crops.panels["b"], 255 - crops.panels["a"])  # the same window of both
    assert crops.thumb.shape == (240, 400, 3)  # 500 wide → 400, aspect kept
    assert crops.box == pytest.approx((x / 500, y / 300, cw / 500, ch / 300))


# ----------------------------------------------------------------------------------------------
# Pages
# ----------------------------------------------------------------------------------------------

def test_training_run_report(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset)
    (run / "export").mkdir()
    (run / "export" / "model.onnx").write_bytes(b"onnx bytes")
    parity = {  # the shape of unisp.export.parity.ParityReport.to_json()
        "file": "model.onnx", "format": "onnx", "precision": "fp32", "required_psnr_db": 60.0,
        "rows": [{"name": "synthetic:astronaut", "psnr_db": 118.2, "max_abs_diff": 1.5e-6},
                 {"name": "synthetic:coffee", "psnr_db": None, "max_abs_diff": 0.0}],
        "extra": {"opset": 18}, "min_psnr_db": 118.2, "passed": True,
    }
    (run / "export" / "model.onnx.parity.json").write_text(json.dumps(parity))
    (run / "export" / "model_int8.tflite").write_bytes(b"tflite")
    path = R.write_report(run)
    assert path == run / "report.html"
    html = path.read_text()
    tags = Tags(html)
    # Nothing external: every image is a PNG data URI, no stylesheet or script is loaded from anywhere.
    images = tags.all("img")
    assert all(a["src"].startswith("data:image/png;base64,") for a in images if "src" in a)
    assert not tags.all("link") and all("src" not in a for a in tags.all("script"))
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    # Two validation images (val_fraction 0.5 of 3), each: thumbnail, 3 panels (classical, model,
    # X̂ for stage 1), and the slider's 2 images.
    assert len([a for a in images if a.get("data-label")]) == 2 * 3
    assert len(images) == 2 * (1 + 3 + 2)
    assert {a["data-label"] for a in images if a.get("data-label")} == {"classical", "model (step 30)", "training target X̂"}
    assert len(tags.all("div", **{"class": "compare"})) == 2
    # Charts: loss, DLA weights, grad norms, validation, other, one discriminator.
    assert len(tags.all("svg", **{"class": "plot"})) == 6
    assert "(1 non-finite)" in html  # the NaN loss
    # Model card: measured parameters and MACs, the exports and their parity.
    info = model_info(load_model(run / "model.safetensors")[0])
    assert f"{info['parameters']:,}" == "3,060" and "3,060" in html and f"{info['mac_per_pixel']:,.1f}" in html
    assert "parity passed" in html and "<td>extra.opset</td><td>18</td>" in html
    assert "<td>synthetic:astronaut</td><td>118.2</td><td>1.5e-06</td>" in html  # per-sample rows as a table
    assert "<td>synthetic:coffee</td><td>inf (identical outputs)</td>" in html
    assert "model_int8.tflite" in html and "model_int8.tflite.parity.json not found" in html
    assert "The images in the crops below against the training target X̂" in html
    assert "10.00 → 12.50" in html  # summary.json's validation


def test_report_scores_against_ground_truth(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset, mode="unpaired", gt=True)
    html = R.write_report(run).read_text()
    assert "against the ground truth" in html and "training target" not in html
    # The table's PSNR of the model on each shown image is the metric on the full output vs the file.
    model, _ = load_model(run / "model.safetensors")
    _, val = load_config(TrainConfig, run / "config.yaml").split_files()
    for f in val:
        value = float(psnr(run_tiled(model, read_raw(f))[None], read_rgb(dataset / "rgb" / f"{f.stem}.png")[None])[0])
        assert f"<td>{f.stem}</td><td>{value:.2f}</td>" in html


def test_report_with_data_and_out(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset)
    out = tmp_path / "elsewhere" / "page.html"
    result = runner.invoke(app, ["report", str(run), "--data", str(dataset), "--out", str(out), "--max-images", "1"])
    assert result.exit_code == 0, result.output
    assert out.exists() and not (run / "report.html").exists()
    tags = Tags(out.read_text())
    labels = {a["data-label"] for a in tags.all("img") if a.get("data-label")}
    assert labels == {"classical", "model (step 30)", "ground truth"}  # --data has raw/ + rgb/
    assert len(tags.all("div", **{"class": "compare"})) == 1


def test_damaged_run_still_gets_a_page(dataset, tmp_path):
    run = make_run(tmp_path / "run", dataset)
    (run / "model.safetensors").unlink()
    (run / "metrics.jsonl").unlink()
    html = R.write_report(run).read_text()
    assert "crops: not shown (no model.safetensors yet" in html
    assert "training curves: not shown (no metrics.jsonl" in html
    assert "<svg" not in html and "10.00 → 12.50" in html


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UnispError, match="not a folder unisp wrote"):
        R.write_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a folder" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["report", str(tmp_path), "--gt", str(tmp_path)])
    assert result.exit_code == 2


def test_eval_save_writes_record_and_report(dataset, tmp_path):
    model = tmp_path / "m.safetensors"
    save_model(model, build_model("efficient_isp"), name="efficient_isp")
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", "--model", str(model), "--data", str(dataset), "--save", str(out),
                                 "--metrics", "psnr,ssim", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "eval.json").read_text())
    assert record["count"] == 3 and record["model"] == str(model.resolve()) and record["layout"] == "auto"
    html = (out / "report.html").read_text()
    for row in record["images"]:
        assert f"<td>{row['name']}</td><td>{row['psnr']:.2f}</td><td>{row['ssim']:.4f}</td>" in html
    labels = {a["data-label"] for a in Tags(html).all("img") if a.get("data-label")}
    assert labels == {"classical", "model (saved output)", "ground truth"}


def make_demo(folder: Path, data: Path, manifest: bool = True) -> Path:
    """The files ``unisp demo`` writes, in miniature; without ``manifest``, as an older demo wrote them."""
    for stage in ("stage1", "stage2"):
        make_run(folder / stage, data)
    shutil.copytree(data / "raw", folder / "data" / "test" / "raw")
    shutil.copytree(data / "rgb", folder / "data" / "test" / "rgb")
    for name in ("classical", "stage1", "stage2"):
        write_image(folder / f"sample_{name}.png", smooth_photo(7, 300, 400))
    means = {"classical (menon)": {"psnr": 25.0, "ssim": 0.9, "delta_e2000": 3.0},
             "stage 2, unpaired (efficient_isp)": {"psnr": 18.25, "ssim": 0.7, "delta_e2000": 9.5}}
    summary = {"held_out": ["img0", "img1", "img2"], "mean": means, "stage1_seconds": 1.0, "stage2_seconds": 2.0}
    if manifest:
        summary["manifest"] = R.DemoManifest(
            facts=[("held-out images", "img0, img1, img2"), ("stage 1", "1.0 s"), ("stage 2", "2.0 s")],
            table="mean", held_out=["img0", "img1", "img2"], held_out_raw="data/test/raw", held_out_truth="data/test/rgb",
            classical="menon", stages={"stage 1": "stage1/model.safetensors", "stage 2": "stage2/model.safetensors"},
            sample_name="bundled frame", samples={k: f"sample_{k}.png" for k in ("classical", "stage1", "stage2")},
        ).to_json()
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_demo_folder_report(dataset, tmp_path):
    html = R.write_report(make_demo(tmp_path / "demo", dataset)).read_text()
    tags = Tags(html)
    labels = [a["data-label"] for a in tags.all("img") if a.get("data-label")]
    # 3 held-out images × (classical, stage 1, stage 2, ground truth) + the real frame's 3 renders.
    assert len(labels) == 3 * 4 + 3
    assert "18.25" in html and "Model card: stage 1" in html and "Model card: stage 2" in html
    assert "Training curves: stage 1" in html and "Training curves: stage 2" in html


def test_an_older_demo_folder_is_a_clear_error(dataset, tmp_path):
    folder = make_demo(tmp_path / "demo", dataset, manifest=False)
    with pytest.raises(UnispError, match=r"summary.json: no 'manifest' \(written by an older unisp demo.*run `unisp demo` again"):
        R.write_report(folder)


def test_demo_report_follows_the_manifest_not_the_layout(dataset, tmp_path):
    folder = make_demo(tmp_path / "demo", dataset)
    (folder / "stage1").rename(folder / "first")
    (folder / "data").rename(folder / "heldout")
    (folder / "sample_stage2.png").unlink()
    summary = json.loads((folder / "summary.json").read_text())
    summary["manifest"].update(stages={"stage 1": "first/model.safetensors", "stage 2": "stage2/model.safetensors"},
                               held_out_raw="heldout/test/raw", held_out_truth="heldout/test/rgb", classical="bilinear",
                               samples={"stage1": "sample_stage1.png", "classical": "sample_classical.png"})
    (folder / "summary.json").write_text(json.dumps(summary))
    html = R.write_report(folder).read_text()
    labels = [a["data-label"] for a in Tags(html).all("img") if a.get("data-label")]
    assert labels.count("classical (bilinear)") == 3 and labels.count("ground truth") == 3 and labels[-2:] == ["stage1", "classical"]
    assert "Training curves: stage 1" in html and "not shown" not in html


def test_a_damaged_demo_manifest_is_a_clear_error(dataset, tmp_path):
    folder = make_demo(tmp_path / "demo", dataset)
    summary = json.loads((folder / "summary.json").read_text())
    del summary["manifest"]["stages"]
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UnispError, match="the manifest lacks stages"):
        R.write_report(folder)


def test_train_writes_the_report_and_a_failed_report_does_not_fail_training(dataset, tmp_path, monkeypatch):
    args = ["train", "mode=stage1", "pixel.l1=1", "losses.dla=false", f"data.raw_dir={dataset / 'raw'}",
            "data.patch=16", "data.samples_per_epoch=8", "batch_size=4", "steps=2", "log_every=1", "val_every=2",
            "ckpt_every=2", "device=cpu", "tensorboard=false"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "report.html").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("simulated report bug")

    monkeypatch.setattr(R, "write_report", broken)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "model.safetensors").exists() and not (tmp_path / "b" / "report.html").exists()


# ----------------------------------------------------------------------------------------------
# In a browser
# ----------------------------------------------------------------------------------------------

def chromium(page: Path, profile: Path, *args: str) -> str:
    """Run headless Chromium on a local page; returns stdout (the DOM with --dump-dom)."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=5000", *args, page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def body_attributes(dom: str) -> dict:
    return Tags(dom).all("body")[0]


@needs_chromium
def test_page_renders_in_chromium(dataset, tmp_path):
    page = R.write_report(make_run(tmp_path / "run", dataset))
    tags = Tags(page.read_text())
    body = body_attributes(chromium(page, tmp_path / "profile", "--dump-dom"))
    # The page's own check: every <img> decoded with naturalWidth > 0, every plot laid out with
    # lines, no script error (see unisp.eval.report_html).
    assert body["data-ok"] == "1", body
    assert body["data-images"] == str(len(tags.all("img"))) and body["data-plots"] == "6"
    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "profile", "--window-size=1400,2000", f"--screenshot={shot}")
    pixels = read_rgb(shot)
    assert pixels.shape == (3, 2000, 1400) and pixels.std() > 0.05  # drawn, not a blank page


@needs_chromium
def test_the_page_check_catches_broken_images_and_script_errors(dataset, tmp_path):
    # The same check must fail when something is wrong, or a passing test would prove nothing.
    page = R.write_report(make_run(tmp_path / "run", dataset))
    html = page.read_text()
    broken = html.replace("<main>", '<main><img alt="broken" src="data:image/png;base64,AAAA">', 1)
    failing = html.replace("</body>", "<script>undefinedFunction();</script></body>", 1)
    for name, text, message in (("broken.html", broken, "image does not render: broken"),
                                ("failing.html", failing, "undefinedFunction is not defined")):
        (tmp_path / name).write_text(text)
        dom = chromium(tmp_path / name, tmp_path / "profile", "--dump-dom")
        assert body_attributes(dom)["data-ok"] == "0" and message in dom, name


def test_missing_ground_truth_is_noted_and_the_image_still_shown(dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    (data / "rgb" / "img1.png").unlink()
    html = R.write_report(make_run(tmp_path / "run", dataset), data=data).read_text()
    assert f"img1.png: no ground truth named img1.* in {data / 'rgb'}" in html
    labels = [a["data-label"] for a in Tags(html).all("img") if a.get("data-label")]
    assert labels.count("ground truth") == 2 and labels.count("classical") == 3  # all 3 images, 2 with truth
