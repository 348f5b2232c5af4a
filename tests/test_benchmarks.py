"""The quality study and the LibRaw comparison run end to end at their smallest sizes.

They run on photo folders written here (crops of the photos scikit-image ships, named as
Kodak24 / McMaster files), so they need neither ``../shared`` nor a download. What is checked is
the scripts' wiring — rows, splits, the label-free pick, the tables — not their figures, which
need the real data and the sizes documented in docs/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import torch

from unisp.config import load_config
from unisp.errors import UnispError
from unisp.eval.evaluate import evaluate_images
from unisp.fileio import read_rgb, write_image
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.losses.config import TERMS
from unisp.losses.content import content_view
from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model
from unisp.raw.io import read_raw
from unisp.synth.bundled import bundled_photos
from unisp.synth.dataset import synthesize_folder
from unisp.train.config import TrainConfig

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: Photos per dataset folder: with the study's TEST_EVERY = 5, one of each six is held out.
PHOTOS_PER_DATASET = 6
CROP = 128


@pytest.fixture
def scripts(monkeypatch):
    """The two benchmark modules, imported from benchmarks/ as the scripts import each other."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("quality_study"), importlib.import_module("libraw_compare")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``kodak24/`` and ``mcmaster/`` with six distinct 128² crops each."""
    root = tmp_path_factory.mktemp("photos")
    photos = list(bundled_photos().values())
    for d, dataset in enumerate(("kodak24", "mcmaster")):
        for i in range(PHOTOS_PER_DATASET):
            photo = photos[(i + d) % len(photos)]
            top, left = 40 * (i // len(photos)) + 64 * d, 40 * (i // len(photos))
            write_image(root / dataset / f"{i:02d}.png", photo[:, top : top + CROP, left : left + CROP])
    return root


def test_split_is_disjoint_and_holds_out_every_fifth(scripts, data):
    study, _ = scripts
    split = study.split_photos(data)
    names = {side: {(p.parent.name, p.name) for p in paths} for side, paths in split.items()}
    assert not (names["test"] & names["raw"]) and not (names["test"] & names["rgb"]) and not (names["raw"] & names["rgb"])
    assert sorted(names["test"]) == [("kodak24", "04.png"), ("mcmaster", "04.png")]  # index 4 of 0..5 in each
    assert len(names["raw"]) + len(names["rgb"]) == 2 * (PHOTOS_PER_DATASET - 1)


def test_quality_study_tiny(scripts, data, tmp_path):
    study, _ = scripts
    study.main(["--tiny", "--data", str(data), "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["cameras"]) == set(study.CAMERAS)
    rows = results["cameras"]["A"]["rows"]
    assert list(rows) == ["classical_xhat", "classical", "classical_ahd", "stage1", "paired", "paired_no_adv", "unpaired",
                          "unpaired_pick", "unisp", "unisp_pick", "supervised"]
    assert set(rows["unisp_pick"]) == set(study.GENERATORS) and set(rows["classical"]) == {"any"}
    assert set(results["cameras"]["B"]["rows"]["unisp"]) == {"efficient_isp"}
    for run in study.SELECTED_RUNS:
        for gen, selection in results["cameras"]["A"]["selection"][run].items():
            assert selection["gap_db"] >= 0 and selection["oracle_psnr"] == max(selection["checkpoint_psnr"].values())
            # The pick row is the picked checkpoint, scored in full.
            assert rows[f"{run}_pick"][gen]["means"]["psnr"] == pytest.approx(selection["pick_psnr"], abs=1e-4)
    table = (tmp_path / "results.md").read_text()
    assert "| classical X̂ (stage-1 target) | — |" in table and "pick − X̂" in table and "supervised − X̂" in table
    # The paper's rows run its released recipe (on the study's backbones and data) ...
    runs = tmp_path / "runs" / "A" / "efficient_isp"
    paper = load_config(TrainConfig, runs / "paired" / "config.yaml")
    assert (paper.mode, paper.lr, paper.d_lr, paper.d_every, paper.losses.tv, paper.losses.r1_gamma) == ("paired", 5e-4, 1e-5, 10, 1.0, 1000.0)
    assert Path(paper.data.rgb_dir) == tmp_path / "data" / "camera_A" / "raw" / "rgb"
    # ... and the unisp row the default recipe, on the unrelated RGB side.
    default = load_config(TrainConfig, runs / "unisp" / "config.yaml")
    assert default.losses.graded > 0 and default.losses.texture_swd > 0 and Path(default.data.rgb_dir) == tmp_path / "data" / "photos" / "rgb"
    # The upper-bound row is pixel-supervised on camera A's aligned photos, from the stage-1 model.
    supervised = load_config(TrainConfig, runs / "supervised" / "config.yaml")
    assert supervised.mode == "paired" and supervised.pixel.l1 > 0 and not any(getattr(supervised.losses, t) for t in TERMS)
    assert Path(supervised.init) == runs / "stage1" / "model.safetensors"
    assert Path(supervised.data.rgb_dir) == tmp_path / "data" / "camera_A" / "raw" / "rgb"
    # A second run reuses every finished training run (no new training, same scores) ...
    study.main(["--tiny", "--data", str(data), "--out", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text())["cameras"]["A"]["rows"] == rows
    # --generators and --runs narrow the study to the named generators (on both cameras) and runs.
    study.main(["--tiny", "--data", str(data), "--out", str(tmp_path), "--generators", "efficient_isp", "--runs", "unisp"])
    narrowed = json.loads((tmp_path / "results.json").read_text())["cameras"]
    assert list(narrowed["A"]["rows"]) == ["classical_xhat", "classical", "classical_ahd", "stage1", "unisp", "unisp_pick"]
    assert set(narrowed["A"]["rows"]["unisp"]) == set(narrowed["B"]["rows"]["unisp"]) == {"efficient_isp"}
    assert narrowed["A"]["rows"]["unisp"]["efficient_isp"] == rows["unisp"]["efficient_isp"]
    assert "| efficient_isp | " in (tmp_path / "results.md").read_text()  # the target table, "—" for the runs left out
    # ... but not runs of another recipe: another training seed into the same folder is refused.
    with pytest.raises(UnispError, match="differs in seed"):
        study.main(["--tiny", "--data", str(data), "--out", str(tmp_path), "--seed", "1"])


def test_libraw_compare_with_trained_models(scripts, data, tmp_path, monkeypatch):
    study, libraw = scripts
    monkeypatch.setattr(libraw, "TRAIN_STEPS", {"stage1": 2, "stage2": 2})
    monkeypatch.setattr(libraw, "TRAIN_BATCH", 2)
    monkeypatch.setattr(libraw, "TRAIN_PATCH", 32)
    libraw.main(["--data", str(data), "--train", str(tmp_path / "train"), "--out", str(tmp_path / "out"),
                 "--keep-dngs", str(tmp_path / "dngs")])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    # Only the held-out photos are scored once models are trained on the others.
    assert results["images"] == [f"{p.parent.name}_{p.stem}" for p in study.split_photos(data)["test"]]
    assert set(results["rows"]) == {
        "unisp classical (bilinear)", "unisp classical (malvar)", "unisp classical (ahd)", "unisp classical (menon)",
        "LibRaw postprocess (AHD)", "LibRaw postprocess (AHD, file's white level)",
        "model stage 1", "model paired", "model unisp",
    }
    # Noise-free colorimetric DNGs: only demosaicing and 10-bit quantisation separate a correct
    # render from the photo, so both classical renders score far above the same render without
    # white balance (the negative control: the DNG's R and B gains are 2.15 and 1.7).
    unbalanced = [render_frame(read_raw(tmp_path / "dngs" / f"{name}.dng"), ISPConfig(white_balance="none"))
                  for name in results["images"]]
    truths = [read_rgb(data / name.split("_")[0] / f"{name.split('_')[1]}.png") for name in results["images"]]
    control = evaluate_images(unbalanced, truths, results["images"], metrics=("psnr",)).means["psnr"]
    for row in ("unisp classical (malvar)", "unisp classical (ahd)", "LibRaw postprocess (AHD, file's white level)"):
        assert results["rows"][row]["means"]["psnr"] > control + 10
    assert "PSNR − LibRaw" in (tmp_path / "out" / "results.md").read_text()


class _IdentityContent:
    """Stand-in backbones whose content features are the view itself."""

    def content_features(self, rgb):
        return rgb


def test_content_noise_relative_distance_known_value(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    content_noise = importlib.import_module("content_noise")
    ref = torch.full((1, 3, 8, 8), 0.25)
    # Identity features of a uniform luminance: (2·0.25 − 0.25)² / 0.25² = 1; pooling keeps a uniform image.
    for pool in (1, 2, 4):
        assert content_noise.relative_distance(_IdentityContent(), ref * 2, content_view(ref, pool), pool) == pytest.approx(1.0)


def test_content_noise_on_a_demo_folder(monkeypatch, tmp_path, capsys):
    # The script's wiring on a folder laid out as `unisp demo --out` writes it (two small
    # held-out photos, an untrained stage-1 model), with random backbones: every row and column.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    content_noise = importlib.import_module("content_noise")
    photos = tmp_path / "photos"
    for name, photo in list(bundled_photos().items())[:2]:
        write_image(photos / f"{name}.png", photo[:, :64, :64])
    synthesize_folder(photos, tmp_path / "demo" / "data" / "test", tone_curve=False)
    torch.manual_seed(0)
    save_model(tmp_path / "demo" / "stage1" / "model.safetensors", build_model("efficient_isp"), name="efficient_isp")
    content_noise.main(["--demo", str(tmp_path / "demo"), "--profile", "random", "--pools", "1,2"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0] == "| y | full resolution | pooled 2× |"
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert set(rows) == {"ground truth", "stage 1", "stage 1 × 0.8", "stage 1, 5×5 box blur", "X̂ × 0.8"}
    assert all(float(v) > 0 for line in rows.values() for v in line.strip(" |").split(" | ")[1:])


def test_process_device_wiring_on_the_cpu(monkeypatch, capsys):
    # `--device cpu` runs the accelerator script's every row against itself: the device rows must
    # then agree with the CPU reference exactly (same arithmetic, same tiles' cores).
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    process_device = importlib.import_module("process_device")
    process_device.main(["--device", "cpu", "--size", "64x96", "--tiles", "8,16", "--repeats", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 1 + 2 * 2 + len(process_device.MODEL_DTYPES)
    assert sum("| float32 |" in r and "| max abs diff 0.0e+00 |" in r for r in rows) == 2
    assert sum("| 0 of 18432 values differ |" in r for r in rows) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_process_device_without_cuda_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    process_device = importlib.import_module("process_device")
    with pytest.raises(SystemExit) as exit_info:
        process_device.main(["--size", "64x96"])
    assert exit_info.value.code == 2
    assert "device 'cuda' is not available here" in capsys.readouterr().err


def test_unpaired_ablation_on_a_tiny_study(scripts, data, tmp_path, monkeypatch):
    study, _ = scripts
    monkeypatch.setattr(study, "GENERATORS", ("efficient_isp",))
    monkeypatch.setitem(study.SIZES, "tiny", dataclasses.replace(study.SIZES["tiny"], generators=("efficient_isp",), second_camera=()))
    study.main(["--tiny", "--data", str(data), "--out", str(tmp_path / "study")])
    ablation = importlib.import_module("unpaired_ablation")
    ablation.main(["--study", str(tmp_path / "study"), "--out", str(tmp_path / "ablation"), "--figure", str(tmp_path / "fig.png")])
    result = json.loads((tmp_path / "ablation" / "results.json").read_text())
    rows = list(result["rows"])
    # The default, each lever set to the paper's; the paper, each lever set to the default's.
    assert rows[0] == "default" and rows[len(ablation.LEVERS) + 1] == "paper"
    assert len(rows) == 2 * (len(ablation.LEVERS) + 1)
    # Each run is the recipe it names, from the study's stage-1 model and with its data.
    runs = tmp_path / "ablation"
    graded_off = load_config(TrainConfig, runs / "default_0" / "config.yaml")
    assert graded_off.losses.graded == 0 and graded_off.losses.texture_swd > 0
    paper_dla_off = load_config(TrainConfig, runs / "paper_6" / "config.yaml")
    assert not paper_dla_off.losses.dla and paper_dla_off.losses.colour == 1 and paper_dla_off.d_lr == 1e-5
    assert Path(paper_dla_off.init) == tmp_path / "study" / "runs" / "A" / "efficient_isp" / "stage1" / "model.safetensors"
    # The figure: six crops side by side, 6-px gaps (the tiny study's 96-px photos give 96-px crops).
    assert read_rgb(tmp_path / "fig.png").shape == (3, 96, 6 * 96 + 5 * 6)
