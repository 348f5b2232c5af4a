"""Bayer-safe crops and flips, and the patch dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unisp.data.patches import FrameCache, RawPatches, bayer_safe_crop
from unisp.errors import UnispError
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame


@pytest.mark.parametrize("cfa", list(CFA))
@pytest.mark.parametrize("hflip, vflip", [(False, False), (True, False), (False, True), (True, True)])
def test_crop_keeps_the_cfa_phase(cfa, hflip, vflip):
    # A mosaic of colour indices: a patch that keeps the phase shows the pattern's own 2×2 tile top-left.
    mosaic = np.tile(cfa.colour_index(), (6, 7))
    patch = bayer_safe_crop(mosaic, 2, 4, 6, hflip, vflip)
    assert patch.shape == (6, 6)
    assert (patch == np.tile(cfa.colour_index(), (3, 3))).all()


def test_flip_is_a_mirror_of_the_region():
    # The region is rows 0..5, cols 0..5 (size 4 + 2); a horizontal flip keeps columns 4..1 in reverse.
    image = torch.arange(36).view(6, 6)
    patch = bayer_safe_crop(image, 0, 0, 4, True, False)
    assert patch[0].tolist() == [4, 3, 2, 1]
    assert bayer_safe_crop(image, 0, 0, 4, False, False)[0].tolist() == [0, 1, 2, 3]


def test_rgb_and_mosaic_stay_aligned():
    rgb = torch.rand(3, 12, 12)
    mosaic = rgb[1]  # stands for a mosaic aligned with the RGB image
    a = bayer_safe_crop(rgb, 2, 2, 8, True, True)
    b = bayer_safe_crop(mosaic, 2, 2, 8, True, True)
    assert torch.equal(a[1], b)


def test_odd_offsets_are_refused():
    with pytest.raises(UnispError, match="even"):
        bayer_safe_crop(np.zeros((10, 10)), 1, 0, 4, False, False)


def flat_frame(value: int, size: int = 20, cfa: str = "RGGB") -> RawFrame:
    return RawFrame(np.full((size, size), value, np.uint16), CFA.parse(cfa), (64, 64, 64, 64), 1023, wb_gains=(1, 1, 1))


def test_patches_shapes_and_determinism():
    frames = [flat_frame(500), flat_frame(700)]
    ds = RawPatches(lambda i: frames[i], 2, 8, samples=5, seed=3)
    item = ds[0]
    assert item["raw"].shape == (4, 4, 4) and item["target"].shape == (3, 8, 8)
    assert torch.equal(ds[0]["raw"], item["raw"])  # the same index gives the same patch
    # A flat frame normalises to (v - 64) / (1023 - 64) in every plane.
    assert torch.allclose(item["raw"], torch.full_like(item["raw"], (float(item["raw"][0, 0, 0]))))
    value = float(item["raw"][0, 0, 0])
    assert min(abs(value - 436 / 959), abs(value - 636 / 959)) < 1e-6


def test_stage1_target_is_the_classical_render_of_a_grey_patch():
    # Grey with unit gains and no colour matrix: every output channel is srgb_encode(x).
    from unisp.isp.gamma import srgb_encode

    ds = RawPatches(lambda i: flat_frame(543), 1, 8, samples=1, flips=False)
    x = torch.tensor((543 - 64) / 959)
    assert torch.allclose(ds[0]["target"], srgb_encode(x).expand(3, 8, 8), atol=1e-6)


def test_paired_targets_follow_the_crop(tmp_path):
    from unisp.fileio import write_image

    rgb = torch.rand(3, 20, 20)
    write_image(tmp_path / "a.png", rgb, depth=16)
    ds = RawPatches(lambda i: flat_frame(500), 1, 8, samples=4, rgb_files=[tmp_path / "a.png"], seed=1)
    item = ds[2]
    # X̂ is rendered as without RGB files (the paper's content reference in paired modes) ...
    assert torch.equal(item["target"], RawPatches(lambda i: flat_frame(500), 1, 8, samples=4, seed=1)[2]["target"])
    target = item["aligned"]  # ... and the aligned crop comes beside it
    # The target is an 8×8 window of the RGB image (possibly mirrored): each row must be found in it.
    full = torch.round(rgb * 65535)
    t = torch.round(target * 65535)
    found = any(
        torch.equal(t, torch.flip(full[:, y : y + 8, x : x + 8], dims)) for y in range(13) for x in range(13)
        for dims in ((), (-1,), (-2,), (-2, -1))
    )
    assert found


def test_errors():
    with pytest.raises(UnispError, match="even"):
        RawPatches(lambda i: flat_frame(1), 1, 7, samples=1)
    with pytest.raises(UnispError, match="smaller than"):
        RawPatches(lambda i: flat_frame(1, size=8), 1, 8, samples=1)[0]
    with pytest.raises(UnispError, match="RGB targets"):
        RawPatches(lambda i: flat_frame(1), 2, 8, samples=1, rgb_files=[])


def test_frame_cache_reads_once_and_evicts():
    reads = []

    def read(path):
        reads.append(path)
        return flat_frame(1)

    cache = FrameCache(["a", "b", "c"], read, capacity=2)
    cache(0), cache(0), cache(1), cache(2), cache(0)
    assert reads == ["a", "b", "c", "a"]
    assert len(cache) == 3
