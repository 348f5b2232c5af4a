"""Which files a run uses: stem pairing and the training/validation split (unisp.data.files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unisp.data.files import index_by_stem, pair_by_stem, split_files
from unisp.errors import UnispError
from unisp.isp.pipeline import TRAINING_TARGET
from unisp.train.config import TrainConfig


def _touch(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return sorted(folder / n for n in names)


def test_index_by_stem_keeps_the_first_and_names_the_rest():
    left_out: list[str] = []
    index = index_by_stem([Path("x/a.png"), Path("x/b.tif"), Path("x/a.jpg")], left_out)
    assert index == {"a": Path("x/a.png"), "b": Path("x/b.tif")}
    assert left_out == ["x/a.jpg: same stem as a.png, left out"]


def test_index_by_stem_without_a_list_is_silent():
    assert index_by_stem([Path("a.png"), Path("a.jpg")]) == {"a": Path("a.png")}


def test_pair_by_stem_keeps_the_order_of_files_and_lists_the_unmatched():
    files = [Path("raw/c.dng"), Path("raw/a.dng"), Path("raw/b.npy")]
    pairs, unmatched = pair_by_stem(files, [Path("gt/a.png"), Path("gt/c.tif"), Path("gt/z.png")])
    assert pairs == [(Path("raw/c.dng"), Path("gt/c.tif")), (Path("raw/a.dng"), Path("gt/a.png"))]
    assert unmatched == [Path("raw/b.npy")]


def test_pair_by_stem_of_nothing():
    assert pair_by_stem([], [Path("a.png")]) == ([], [])


def test_split_holds_out_a_seeded_share(tmp_path):
    files = _touch(tmp_path / "raw", [f"{i:02d}.npy" for i in range(10)])
    train, val = split_files(tmp_path / "raw", None, 0.3, seed=0)
    assert len(val) == 3 and len(train) == 7
    assert sorted(train + val) == files and not set(train) & set(val)
    assert val == sorted(val) and train == sorted(train)
    assert split_files(tmp_path / "raw", "", 0.3, seed=0) == (train, val)  # the same seed, the same files
    assert split_files(tmp_path / "raw", None, 0.3, seed=1)[1] != val  # 120 possible 3-subsets: seed 1 differs


@pytest.mark.parametrize("fraction", [0.0, 0.04, 0.999])
def test_split_holds_out_nothing_when_the_share_rounds_to_none_or_all(tmp_path, fraction):
    files = _touch(tmp_path / "raw", [f"{i}.npy" for i in range(10)])  # 0.04 × 10 → 0, 0.999 × 10 → 10
    assert split_files(tmp_path / "raw", None, fraction, seed=0) == (files, [])


def test_split_takes_a_validation_folder_whole(tmp_path):
    train = _touch(tmp_path / "raw", ["a.npy", "b.npy"])
    val = _touch(tmp_path / "val", ["c.npy"])
    assert split_files(tmp_path / "raw", tmp_path / "val", 0.5, seed=0) == (train, val)


def test_split_of_a_folder_without_raw_files(tmp_path):
    _touch(tmp_path / "raw", ["notes.txt"])
    with pytest.raises(UnispError, match="no RAW files"):
        split_files(tmp_path / "raw", None, 0.1, seed=0)


def test_recipe_gives_its_split_and_its_render_target(tmp_path):
    _touch(tmp_path / "raw", [f"{i}.npy" for i in range(4)])
    config = TrainConfig(seed=3, target_demosaic="bilinear", target_transfer="gamma22", target_stretch=True)
    config.data.raw_dir, config.data.val_fraction = str(tmp_path / "raw"), 0.5
    assert config.split_files() == split_files(tmp_path / "raw", "", 0.5, seed=3)
    target = config.target_isp
    assert (target.demosaic, target.transfer, target.stretch) == ("bilinear", "gamma22", True)
    # everything else is the paper's X̂: white balance as shot, no colour matrix, no tone curve
    assert (target.white_balance, target.tone_curve) == (TRAINING_TARGET.white_balance, TRAINING_TARGET.tone_curve)
