"""Unpaired sampling: RGB patches drawn independently of the RAW patches, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unisp.data.patches import RawPatches
from unisp.data.unpaired import RGBPatches, UnpairedPatches
from unisp.errors import UnispError
from unisp.fileio import write_image
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame


@pytest.fixture
def photos(tmp_path):
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"p{i}.png")
        write_image(paths[-1], torch.rand(3, 20, 24, generator=g), depth=16)
    return paths


def raw_patches(samples=8, seed=0):
    frame = RawFrame(np.full((20, 20), 300, np.uint16), CFA.RGGB, (0, 0, 0, 0), 1023, wb_gains=(1, 1, 1))
    return RawPatches(lambda i: frame, 1, 8, samples, seed=seed)


def test_rgb_patch_is_a_window_of_a_photo(photos):
    rgb = RGBPatches(photos, 8, flips=False)
    patch = rgb.draw(torch.Generator().manual_seed(5))
    assert patch.shape == (3, 8, 8)
    images = [rgb.image(i) for i in range(3)]
    assert any(
        torch.equal(patch, im[:, y : y + 8, x : x + 8]) for im in images for y in range(13) for x in range(17)
    )


def test_items_are_reproducible_and_sides_independent(photos):
    ds = UnpairedPatches(raw_patches(), RGBPatches(photos, 8))
    a, b = ds[3], ds[3]
    assert torch.equal(a["real"], b["real"]) and torch.equal(a["raw"], b["raw"])
    assert set(a) == {"raw", "target", "real"} and a["real"].shape == a["target"].shape == (3, 8, 8)
    reals = {tuple(ds[i]["real"].flatten()[:4].tolist()) for i in range(8)}
    assert len(reals) > 1  # different items draw different RGB patches
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["real"], a["real"])  # a new epoch draws anew


def test_errors(photos, tmp_path):
    with pytest.raises(UnispError, match="no RGB photos"):
        RGBPatches([], 8)
    with pytest.raises(UnispError, match="must match"):
        UnpairedPatches(raw_patches(), RGBPatches(photos, 16))
    with pytest.raises(UnispError, match="smaller than"):
        RGBPatches(photos, 22).image(0)
