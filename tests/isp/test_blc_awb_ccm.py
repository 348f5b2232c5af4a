"""BLC, AWB and CCM stages: hand-computed values, batching, consistency with RawFrame, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unisp.errors import RawFormatError
from unisp.isp.awb import MAX_GAIN, apply_white_balance, gray_world_gains
from unisp.isp.blc import normalize
from unisp.isp.ccm import apply_ccm
from unisp.raw.frame import RawFrame


# --- BLC ---------------------------------------------------------------------------------------


def test_normalize_known_values(device):
    # (543.5 - 64) / (1023 - 64) = 479.5 / 959 = 0.5; 64 → 0; 1023 → 1.
    planes = torch.tensor([543.5, 64.0, 1023.0, 0.0], device=device).view(1, 4, 1, 1)
    assert normalize(planes, 64, 1023).cpu().flatten().tolist() == [0.5, 0.0, 1.0, 0.0]
    assert normalize(planes, 64, 1023, clip=False)[0, 3, 0, 0].item() == pytest.approx(-64 / 959)


def test_normalize_per_plane_and_per_image_levels():
    planes = torch.full((2, 4, 1, 1), 200.0)
    black = torch.tensor([[0.0, 100.0, 150.0, 200.0], [100.0, 100.0, 100.0, 100.0]])
    out = normalize(planes, black, torch.tensor([400.0, 300.0]))
    # (200 - b) / (W - b): image 0 with W = 400, image 1 with W = 300.
    assert out[0].flatten().tolist() == pytest.approx([0.5, 1 / 3, 50 / 250, 0.0])
    assert out[1].flatten().tolist() == pytest.approx([0.5] * 4)


def test_normalize_matches_rawframe():
    rng = np.random.default_rng(0)
    frame = RawFrame(rng.integers(0, 1024, (6, 8)).astype(np.uint16), "GBRG", (60, 62, 64, 66), 1023)
    packed = torch.from_numpy(frame.packed().astype(np.int32)).unsqueeze(0)
    out = normalize(packed, frame.black_level, frame.white_level)
    assert out.dtype == torch.float32
    assert torch.allclose(out[0], frame.normalized(), atol=1e-7)


@pytest.mark.parametrize(
    "black, white, match",
    [((1, 2, 3), 10, "black level of shape"), (64, 64, "must exceed"), (0, torch.ones(3), "white level of shape")],
)
def test_normalize_errors(black, white, match):
    with pytest.raises(RawFormatError, match=match):
        normalize(torch.zeros(2, 4, 1, 1), black, white)


# --- AWB ---------------------------------------------------------------------------------------


def test_white_balance_known_values_and_batch(device):
    planes = torch.ones(2, 4, 1, 1, device=device)
    gains = torch.tensor([[2.0, 1.0, 1.5], [1.0, 0.5, 3.0]], device=device)
    out = apply_white_balance(planes, gains).cpu()
    # R gets the red gain, both greens the green gain, B the blue gain.
    assert out[0].flatten().tolist() == [2.0, 1.0, 1.0, 1.5]
    assert out[1].flatten().tolist() == [1.0, 0.5, 0.5, 3.0]
    assert torch.equal(apply_white_balance(planes, (2.0, 1.0, 1.5)).cpu(), out[:1].expand(2, 4, 1, 1))


def test_gray_world_known_values():
    # Means R = 0.2, G = (0.3 + 0.5) / 2 = 0.4, B = 0.1 → gains (0.4/0.2, 1, 0.4/0.1) = (2, 1, 4).
    planes = torch.tensor([0.2, 0.3, 0.5, 0.1]).view(1, 4, 1, 1).expand(1, 4, 3, 3)
    assert gray_world_gains(planes).tolist() == [pytest.approx([2.0, 1.0, 4.0])]


def test_gray_world_ignores_saturated_sites():
    # The left half is a grey cast (0.1, 0.2, 0.2, 0.4) → gains (2, 1, 0.5); the right half has a
    # clipped green, whose colour ratios say nothing about the light, and must be ignored.
    planes = torch.empty(1, 4, 2, 4)
    planes[:, :, :, :2] = torch.tensor([0.1, 0.2, 0.2, 0.4]).view(1, 4, 1, 1)
    planes[:, :, :, 2:] = torch.tensor([0.5, 1.0, 1.0, 0.1]).view(1, 4, 1, 1)
    assert gray_world_gains(planes).tolist() == [pytest.approx([2.0, 1.0, 0.5])]


def test_gray_world_degenerate_images():
    # All saturated: every site is used (all ones → gains 1). No red at all: clamped to MAX_GAIN.
    assert gray_world_gains(torch.ones(1, 4, 2, 2)).tolist() == [[1.0, 1.0, 1.0]]
    no_red = torch.tensor([0.0, 0.5, 0.5, 0.5]).view(1, 4, 1, 1)
    assert gray_world_gains(no_red).tolist() == [[MAX_GAIN, 1.0, 1.0]]


def test_gray_world_is_per_image():
    planes = torch.stack([torch.full((4, 2, 2), 0.3), torch.tensor([0.1, 0.4, 0.4, 0.2]).view(4, 1, 1).expand(4, 2, 2)])
    assert gray_world_gains(planes).tolist() == [pytest.approx([1.0, 1.0, 1.0]), pytest.approx([4.0, 1.0, 2.0])]


def test_white_balance_bad_gains():
    with pytest.raises(RawFormatError, match="gains must have shape"):
        apply_white_balance(torch.ones(2, 4, 1, 1), torch.ones(3, 3))


# --- CCM ---------------------------------------------------------------------------------------


def test_ccm_identity():
    rgb = torch.rand(2, 3, 4, 5)
    assert apply_ccm(rgb, None) is rgb
    assert torch.equal(apply_ccm(rgb, torch.eye(3)), rgb)


def test_ccm_hand_computed(device):
    # [[1, 2, 0], [0, 1, 0], [0.5, 0, 1]] @ (0.1, 0.2, 0.3) = (0.1 + 0.4, 0.2, 0.05 + 0.3) = (0.5, 0.2, 0.35).
    matrix = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64, device=device)
    rgb = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, device=device).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = apply_ccm(rgb, matrix).cpu()
    assert torch.allclose(out, torch.tensor([0.5, 0.2, 0.35], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 2, 2))


def test_ccm_per_image_matrices():
    rgb = torch.rand(2, 3, 2, 2)
    matrices = torch.stack([torch.eye(3), 2 * torch.eye(3)])
    out = apply_ccm(rgb, matrices)
    assert torch.equal(out[0], rgb[0]) and torch.equal(out[1], 2 * rgb[1])


def test_ccm_bad_matrix():
    with pytest.raises(RawFormatError, match="colour matrix must have shape"):
        apply_ccm(torch.rand(2, 3, 2, 2), torch.eye(4))
