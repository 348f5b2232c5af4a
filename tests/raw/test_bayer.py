"""CFA patterns, packing to canonical (R, Gr, Gb, B) planes and back, the reference-order adapters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unisp.errors import RawFormatError
from unisp.raw.bayer import (
    CFA,
    REFERENCE_INVERSE,
    REFERENCE_ORDER,
    colour_masks,
    crop_to_even,
    from_reference_order,
    pack,
    to_reference_order,
    unpack,
)

ALL_CFAS = list(CFA)

# The 4×4 mosaic 0..15 (row by row) packed by hand: the pattern name read over the top-left block
# [[0, 1], [4, 5]] says where R, the green on R's row (Gr), the green on B's row (Gb) and B sit.
HAND_PLANES = {
    CFA.RGGB: [[[0, 2], [8, 10]], [[1, 3], [9, 11]], [[4, 6], [12, 14]], [[5, 7], [13, 15]]],
    CFA.BGGR: [[[5, 7], [13, 15]], [[4, 6], [12, 14]], [[1, 3], [9, 11]], [[0, 2], [8, 10]]],
    CFA.GRBG: [[[1, 3], [9, 11]], [[0, 2], [8, 10]], [[5, 7], [13, 15]], [[4, 6], [12, 14]]],
    CFA.GBRG: [[[4, 6], [12, 14]], [[5, 7], [13, 15]], [[0, 2], [8, 10]], [[1, 3], [9, 11]]],
}


@pytest.mark.parametrize("cfa", ALL_CFAS)
def test_pack_hand_computed(cfa):
    mosaic = np.arange(16).reshape(4, 4)
    assert pack(mosaic, cfa).tolist() == HAND_PLANES[cfa]


@pytest.mark.parametrize("cfa", ALL_CFAS)
def test_pack_torch_matches_numpy(cfa):
    mosaic = np.arange(48).reshape(6, 8)
    assert torch.equal(pack(torch.from_numpy(mosaic), cfa), torch.from_numpy(pack(mosaic, cfa)))


@pytest.mark.parametrize("cfa", ALL_CFAS)
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_unpack_pack_exact_inverse_numpy(cfa, lead):
    mosaic = np.random.default_rng(0).integers(0, 65536, size=(*lead, 6, 10), dtype=np.uint16)
    packed = pack(mosaic, cfa)
    assert packed.shape == (*lead, 4, 3, 5)
    restored = unpack(packed, cfa)
    assert restored.dtype == np.uint16
    np.testing.assert_array_equal(restored, mosaic)
    np.testing.assert_array_equal(pack(restored, cfa), packed)


@pytest.mark.parametrize("cfa", ALL_CFAS)
@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_unpack_pack_exact_inverse_torch(cfa, lead):
    mosaic = torch.rand(*lead, 8, 6, generator=torch.Generator().manual_seed(1))
    packed = pack(mosaic, cfa)
    assert packed.shape == (*lead, 4, 4, 3)
    assert torch.equal(unpack(packed, cfa), mosaic)


@pytest.mark.parametrize("cfa", ALL_CFAS)
def test_each_plane_holds_one_colour(cfa):
    # Paint each site with its colour index (0 R, 1 G, 2 B): the packed planes must be constant R, G, G, B.
    masks = colour_masks(cfa, 6, 8)
    index = (masks * torch.tensor([0.0, 1.0, 2.0]).view(3, 1, 1)).sum(0)
    planes = pack(index, cfa)
    for plane, colour in zip(planes, (0, 1, 1, 2)):
        assert torch.all(plane == colour)


@pytest.mark.parametrize("cfa", ALL_CFAS)
def test_green_planes_share_rows_with_red_and_blue(cfa):
    # Gr is on red's row, Gb on blue's row: that is what the names mean.
    (rr, _), (gr_row, _), (gb_row, _), (br, _) = cfa.offsets
    assert gr_row == rr and gb_row == br and rr != br


def test_odd_sizes_are_cropped_keeping_phase():
    mosaic = np.arange(35).reshape(5, 7)
    packed = pack(mosaic, "RGGB")
    assert packed.shape == (4, 2, 3)
    # The last row and column are dropped; the top-left red stays at (0, 0).
    np.testing.assert_array_equal(unpack(packed, "RGGB"), mosaic[:4, :6])
    assert crop_to_even(torch.zeros(2, 5, 7)).shape == (2, 4, 6)


def test_reference_order_exact_mapping():
    # RGGB [[0, 1], [4, 5]]: R=0, Gr=1 (red row), Gb=4 (blue row), B=5. The reference order
    # (B, "Gb", R, "Gr") names the red-row green "Gb", so it reads (5, 1, 0, 4).
    packed = pack(np.array([[0, 1], [4, 5]]), "RGGB")
    assert packed[:, 0, 0].tolist() == [0, 1, 4, 5]
    assert to_reference_order(packed)[:, 0, 0].tolist() == [5, 1, 0, 4]
    assert REFERENCE_ORDER == (3, 1, 0, 2) and REFERENCE_INVERSE == (2, 1, 3, 0)


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)])
def test_reference_order_round_trip(lead):
    packed = torch.rand(*lead, 4, 3, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(from_reference_order(to_reference_order(packed)), packed)
    assert torch.equal(to_reference_order(from_reference_order(packed)), packed)
    arr = packed.numpy()
    np.testing.assert_array_equal(from_reference_order(to_reference_order(arr)), arr)


@pytest.mark.parametrize("cfa", ALL_CFAS)
def test_colour_masks(cfa):
    masks = colour_masks(cfa, 5, 7, dtype=torch.float64)
    assert masks.shape == (3, 5, 7) and masks.dtype == torch.float64
    assert torch.all(masks.sum(0) == 1)  # exactly one colour per site
    tile = masks[:, :2, :2].argmax(0).numpy()
    np.testing.assert_array_equal(tile, cfa.colour_index())
    # Per full 2×2 tile: one red, two greens, one blue.
    assert masks[:, :4, :6].sum((1, 2)).tolist() == [6, 12, 6]


def test_colour_index_hand_computed():
    assert CFA.GRBG.colour_index().tolist() == [[1, 0], [2, 1]]
    assert CFA.BGGR.colour_index().tolist() == [[2, 1], [1, 0]]


def test_cfa_parse():
    assert CFA.parse(" bggr ") is CFA.BGGR
    assert CFA.parse(CFA.GBRG) is CFA.GBRG
    with pytest.raises(RawFormatError, match="unknown CFA pattern 'RGBW'"):
        CFA.parse("RGBW")


def test_pack_errors():
    with pytest.raises(RawFormatError, match="at least 2 dimensions"):
        pack(np.zeros(4), "RGGB")
    with pytest.raises(RawFormatError, match="smaller than one 2×2"):
        pack(np.zeros((1, 5)), "RGGB")
    with pytest.raises(RawFormatError, match="unknown CFA"):
        pack(np.zeros((2, 2)), "XYZW")


def test_unpack_errors():
    with pytest.raises(RawFormatError, match=r"\(\.\.\., 4, h, w\)"):
        unpack(np.zeros((3, 2, 2)), "RGGB")
    with pytest.raises(RawFormatError, match=r"\(\.\.\., 4, h, w\)"):
        unpack(np.zeros((4, 2)), "RGGB")


def test_pack_unpack_gradients():
    # pack/unpack only move values: their Jacobians are permutations, checked numerically.
    x = torch.rand(1, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: pack(m, "GRBG"), (x,))
    p = torch.rand(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: unpack(q, "GBRG"), (p,))
