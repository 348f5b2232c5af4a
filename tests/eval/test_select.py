"""Label-free checkpoint selection (``unisp select``): the distances, the ranking, known answers, errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from unisp.cli import app
from unisp.errors import UnispError
from unisp.eval.select import (
    LOG_FLOOR_FRACTION,
    Candidate,
    find_checkpoints,
    frechet_distance,
    kid,
    lab_pixels,
    luma,
    rank,
    select_checkpoint,
    square_crop,
    structure_similarity,
)
from unisp.fileio import write_image
from unisp.models.checkpoint import save_model
from unisp.models.efficient import EfficientISP
from unisp.models.tiled import run_tiled
from unisp.raw.io import find_raw_files, read_raw
from unisp.synth.bundled import bundled_photos
from unisp.synth.dataset import synthesize_folder

runner = CliRunner()

#: Scale of the hand-made model's first layer: tanh(a·x) ≈ a·x within 1.3 % for a·x ≤ 0.2.
TANH_SCALE = 0.1


def hand_made_isp(gains: tuple[float, float, float] = (1.0, 1.0, 1.0), blur: bool = False) -> EfficientISP:
    """An Efficient ISP set by hand: nearest-neighbour demosaic (G = mean of the two greens) times ``gains``.

    conv1 writes ``a · gain_c · colour_c`` into the four channels ``4c + s`` that PixelShuffle puts
    at the four positions ``s`` of each output 2×2 tile; conv2 multiplies by ``1/a``, conv3 copies.
    With ``blur`` conv1 averages its 3×3 neighbourhood instead (the same colours, less detail).
    """
    model = EfficientISP()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for c, planes in enumerate(((0,), (1, 2), (3,))):
            for s in range(4):
                for plane in planes:
                    weight = TANH_SCALE * gains[c] / len(planes)
                    if blur:
                        model.conv1.weight[4 * c + s, plane] = weight / 9
                    else:
                        model.conv1.weight[4 * c + s, plane, 1, 1] = weight
        for k in range(12):
            model.conv2.weight[k, k, 1, 1] = 1.0 / TANH_SCALE
            model.conv3.weight[k, k, 1, 1] = 1.0
    return model


GOOD = hand_made_isp()
SHIFTED = hand_made_isp(gains=(1.6, 1.0, 0.6))  # a strong warm cast
BLURRED = hand_made_isp(blur=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """RAW files from two bundled photos (validation) and a target set: GOOD's renders of three others.

    The "target look" is by construction the one GOOD produces, on other scenes, so GOOD must rank
    first: SHIFTED has another colour balance, BLURRED the same colours with less detail.
    """
    root = tmp_path_factory.mktemp("select")
    photos = bundled_photos()
    for name, image in photos.items():
        folder = "val_photos" if name in ("chelsea", "coffee") else "target_photos"
        write_image(root / folder / f"{name}.png", image[:, :160, :160])
    synthesize_folder(root / "val_photos", root / "val", seed=0, noise=False, tone_curve=False)
    synthesize_folder(root / "target_photos", root / "target_raw", seed=1, noise=False, tone_curve=False)
    for path in find_raw_files(root / "target_raw" / "raw"):
        write_image(root / "target" / f"{path.stem}.png", run_tiled(GOOD, read_raw(path)), depth=16)
    run = root / "run"
    for step, model in ((100, SHIFTED), (200, GOOD), (300, BLURRED)):
        save_model(run / "checkpoints" / f"step_{step:07d}.safetensors", model, name="efficient_isp")
    # The run's recipe holds the validation RAW files out (data.val_dir), as a training run's would.
    raw = str(root / "val" / "raw")
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"raw_dir": raw, "val_dir": raw}}))
    return root


# ------------------------------------------------------------------ distances: known values


def test_frechet_known_value():
    # x: mean 0, unbiased variance 2; y: mean 3, variance 8 → 9 + 2 + 8 − 2·√16 = 11.
    x, y = torch.tensor([[-1.0], [1.0]]), torch.tensor([[1.0], [5.0]])
    assert frechet_distance(x, y) == pytest.approx(11.0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_frechet_3d_symmetric_and_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64)
    y = torch.randn(400, 3, generator=g, dtype=torch.float64) * 2 + 1
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    # A pure shift of the same samples adds exactly ‖shift‖² (covariances identical).
    assert frechet_distance(x, x + torch.tensor([1.0, 2.0, 0.0])) == pytest.approx(5.0, abs=1e-6)


def test_kid_zero_for_one_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g, dtype=torch.float64)
    y = torch.randn(300, 8, generator=g, dtype=torch.float64)
    same = kid(x, y)
    assert abs(same) < 0.02  # unbiased: 0 in expectation
    assert kid(x, y + 0.5) > kid(x, y + 0.2) > same + 0.05


def test_kid_hand_computed():
    # d = 1, k(a, b) = (ab + 1)^3. x = {0, 1}: k(0,1) = 1; y = {0, 2}: k(0,2) = 1;
    # k(x, y): (1, 1, 1, 27) → mean 7.5. MMD² = 1 + 1 − 2·7.5 = −13.
    assert kid(torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]])) == pytest.approx(-13.0)


def test_distance_errors():
    with pytest.raises(UnispError, match="KID"):
        kid(torch.zeros(1, 3), torch.zeros(4, 3))
    with pytest.raises(UnispError, match="Fréchet"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 2))


def test_shapes_and_grey_luma():
    image = torch.rand(3, 30, 50)
    assert square_crop(image).shape == (3, 224, 224)
    assert lab_pixels([image, torch.rand(3, 300, 200)]).shape == (30 * 50 + 128 * 85, 3)
    grey = torch.full((3, 4, 4), 0.4)
    assert torch.allclose(luma(grey), torch.full((1, 4, 4), 0.4))  # BT.601 weights sum to 1


def test_structure_term_ignores_brightness_and_contrast():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 24, 24, generator=g, dtype=torch.float64)
    # b = αa + β with α > 0: σab = α σa², σa σb = α σa², so the term is exactly 1 at every pixel.
    assert torch.allclose(structure_similarity(a, 0.5 * a + 0.3), torch.ones(2, dtype=torch.float64))
    assert (structure_similarity(a, 1 - a) < -0.9).all()  # anti-correlated
    blurred = torch.nn.functional.avg_pool2d(a, 3, 1, 1, count_include_pad=False)
    assert (structure_similarity(a, blurred) < 0.9).all()  # detail lost


# ------------------------------------------------------------------ ranking


def test_rank_scores_by_log_ratio_to_the_best():
    a = Candidate("a", 1, {"feature": 1.0, "colour": 4.0, "content": 0.5})
    b = Candidate("b", 2, {"feature": 4.0, "colour": 1.0, "content": 0.5})
    c = Candidate("c", 3, {"feature": 2.0, "colour": 2.0, "content": 0.5})
    ranked = rank([a, b, c])
    # feature → log(1, 4, 2), colour → log(4, 1, 2), content equal → 0: every score is log 4.
    assert [x.score for x in ranked] == pytest.approx([math.log(4)] * 3)
    assert [x.name for x in ranked] == ["a", "b", "c"]  # ties keep the input order
    assert b.normalised == pytest.approx({"feature": math.log(4), "colour": 0.0, "content": 0.0})
    ranked = rank([a, b, c], {"feature": 2.0, "colour": 1.0})
    assert [x.name for x in ranked] == ["a", "c", "b"]  # log 4, 3 log 2, 2 log 4
    with pytest.raises(UnispError, match="unknown score term"):
        rank([a], {"sharpness": 1.0})


def test_rank_ignores_units_and_other_checkpoints():
    def fresh(rows):
        return [Candidate(n, i, dict(zip(("feature", "colour", "content"), d, strict=True))) for i, (n, d) in enumerate(rows)]

    rows = [("a", (1.0, 3.0, 0.1)), ("b", (3.0, 1.0, 0.1)), ("c", (1.5, 1.8, 0.1))]
    order = [x.name for x in rank(fresh(rows))]
    assert order == ["c", "a", "b"]  # log 2.7 < log 3 = log 3
    # Rescaling a term (other units) leaves the order alone (min–max normalisation does too) ...
    scaled = [(n, (f * 1000, col / 7, con)) for n, (f, col, con) in rows]
    assert [x.name for x in rank(fresh(scaled))] == order
    # ... and so does another checkpoint. Min–max would reorder: with d the colour range becomes
    # 1–9 and scores a 0.25, c 0.35, b 1.
    extra = [x.name for x in rank(fresh([*rows, ("d", (1.2, 9.0, 0.1))]))]
    assert extra == [*order, "d"]


def test_rank_floors_zero_and_negative_distances():
    # KID's unbiased estimate can be ≤ 0: those count as the floor, 1/1000 of the largest value.
    a = Candidate("a", 1, {"feature": -0.5, "colour": 1.0, "content": 0.1})
    b = Candidate("b", 2, {"feature": 2.0, "colour": 1.0, "content": 0.1})
    c = Candidate("c", 3, {"feature": 0.0, "colour": 1.0, "content": 0.1})
    ranked = rank([a, b, c])
    assert all(math.isfinite(x.score) for x in ranked)
    assert a.normalised["feature"] == c.normalised["feature"] == 0.0
    assert b.normalised["feature"] == pytest.approx(math.log(2.0 / (LOG_FLOOR_FRACTION * 2.0)))
    # A term that is never positive is left out.
    d = Candidate("d", 4, {"feature": -1.0, "colour": 0.0, "content": 0.1})
    e = Candidate("e", 5, {"feature": -2.0, "colour": 0.0, "content": 0.2})
    assert [x.name for x in rank([e, d])] == ["d", "e"] and d.normalised["feature"] == e.normalised["feature"] == 0.0


# ------------------------------------------------------------------ known answers, end to end


def test_good_checkpoint_ranks_first(study):
    ranking = select_checkpoint(study / "run", study / "target")  # the recipe's validation files
    names = [c.name for c in ranking.candidates]
    assert ranking.pick.name == "step_0000200.safetensors", ranking.format_table()
    good, shifted, blurred = (next(c for c in ranking.candidates if c.step == s) for s in (200, 100, 300))
    # Each defect shows in the term made to see it.
    assert shifted.distances["colour"] > 2 * good.distances["colour"]
    assert shifted.distances["feature"] > good.distances["feature"]
    assert blurred.distances["content"] > good.distances["content"] + 0.05
    saved = json.loads((study / "run" / "select.json").read_text())
    assert saved["pick"] == names[0] and [r["name"] for r in saved["ranking"]] == names
    assert len(saved["validation_images"]) == 2 and saved["rgb_images"] == 3


def test_cli_prints_table_and_pick(study, tmp_path):
    out = tmp_path / "ranking.json"
    result = runner.invoke(app, ["select", str(study / "run"), "--rgb", str(study / "target"),
                                 "--data", str(study / "val" / "raw"), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pick: step_0000200.safetensors" in result.output
    assert json.loads(out.read_text())["pick"] == "step_0000200.safetensors"


# ------------------------------------------------------------------ errors


def test_no_checkpoints(tmp_path, study):
    with pytest.raises(UnispError, match="no checkpoints"):
        find_checkpoints(tmp_path)
    result = runner.invoke(app, ["select", str(tmp_path), "--rgb", str(study / "target")])
    assert result.exit_code == 2 and "no checkpoints" in result.output


def test_empty_rgb_dir(tmp_path, study):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["select", str(study / "run"), "--rgb", str(tmp_path / "empty"),
                                 "--data", str(study / "val" / "raw")])
    assert result.exit_code == 2 and "empty" in result.output and "no files with extension" in result.output


def test_run_without_recipe_needs_data(study, tmp_path):
    # Without config.yaml (and without --data) the validation files are unknown.
    save_model(tmp_path / "checkpoints" / "step_0000001.safetensors", GOOD, name="efficient_isp")
    with pytest.raises(UnispError, match="not a run folder"):
        select_checkpoint(tmp_path, study / "target")
