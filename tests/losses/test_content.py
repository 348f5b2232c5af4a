"""Content loss: luminance only, the reference as a fixed target, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unisp.losses.content import content_loss, content_view
from unisp.losses.texture import grayscale


class Identity(nn.Module):
    """Stand-in backbone whose content features are the image itself (hand-computable losses)."""

    def content_features(self, rgb):
        return rgb


class ConvFeatures(nn.Module):
    """Stand-in backbone: one frozen random convolution with ReLU."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1).to(dtype).requires_grad_(False)

    def content_features(self, rgb):
        return torch.relu(self.conv(rgb))


def solid(r, g, b, size=(2, 3, 4, 4)):
    return torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(size).clone()


def test_hand_computed_value():
    # Identity features: the loss is the mean of (luma(fake) − luma(ref))² over all pixels and
    # the 3 replicated channels. Pure green has luma 0.587, black 0 → 0.587².
    loss = content_loss(solid(0.0, 1.0, 0.0), solid(0.0, 0.0, 0.0), Identity())
    assert loss.item() == pytest.approx(0.587**2)


def test_blind_to_colour_at_equal_luminance():
    # Grey 0.5 and a saturated colour with the same Rec. 601 luma: 0.299·0.8 + 0.587·b + 0.114·0.2 = 0.5.
    g = (0.5 - 0.299 * 0.8 - 0.114 * 0.2) / 0.587
    grey, colourful = solid(0.5, 0.5, 0.5), solid(0.8, g, 0.2)
    assert content_loss(colourful, grey, ConvFeatures()).item() == pytest.approx(0.0, abs=1e-12)
    assert content_loss(solid(0.8, 0.2, 0.2), grey, ConvFeatures()).item() > 1e-4


def test_features_see_replicated_luminance():
    seen = []

    class Recording(Identity):
        def content_features(self, rgb):
            seen.append(rgb)
            return rgb

    fake, ref = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    content_loss(fake, ref, Recording())
    torch.testing.assert_close(seen[0], grayscale(fake))
    torch.testing.assert_close(seen[1], grayscale(ref))
    assert torch.equal(seen[0][:, 0], seen[0][:, 2])


def test_gradient_flows_to_fake_only():
    fake = torch.rand(2, 3, 8, 8, requires_grad=True)
    ref = torch.rand(2, 3, 8, 8, requires_grad=True)
    content_loss(fake, ref, ConvFeatures()).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert ref.grad is None  # the reference is a target


def test_gradcheck():
    backbone = ConvFeatures(torch.float64)
    ref = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    fake = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: content_loss(x, ref, backbone), (fake,))


def test_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="equal shapes"):
        content_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 6), Identity())


def test_pooled_view_known_value():
    # A 2×2 checkerboard of 0 and 1 in every channel has luma 0 and 1; pooled by 2 it is 0.5 everywhere.
    board = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).repeat(2, 2).expand(1, 3, 4, 4)
    view = content_view(board, pool=2)
    assert view.shape == (1, 3, 2, 2)
    torch.testing.assert_close(view, torch.full((1, 3, 2, 2), 0.5))
    assert torch.equal(content_view(board, pool=1), grayscale(board))


def test_pooling_removes_zero_mean_detail():
    # With identity features, a fine ±0.1 pattern on grey costs 0.1² unpooled and nothing once a
    # pooling window covers whole periods of it: the pooled loss compares local means.
    grey = torch.full((1, 3, 8, 8), 0.5)
    pattern = 0.1 * (torch.arange(8).remainder(2) * 2 - 1).float()
    detailed = grey + pattern.view(1, 1, 1, 8)
    assert content_loss(detailed, grey, Identity(), pool=1).item() == pytest.approx(0.01)
    assert content_loss(detailed, grey, Identity(), pool=2).item() == pytest.approx(0.0, abs=1e-12)
    # A change of tone survives pooling unchanged.
    assert content_loss(grey * 0.8, grey, Identity(), pool=4).item() == pytest.approx(0.1**2, rel=1e-5)


def test_pooled_gradcheck():
    backbone = ConvFeatures(torch.float64)
    ref = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    fake = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: content_loss(x, ref, backbone, pool=2), (fake,))


@pytest.mark.parametrize("pool", [0, -1, 1.5, True])
def test_rejects_bad_pool(pool):
    with pytest.raises(ValueError, match="content pooling"):
        content_view(torch.zeros(1, 3, 4, 4), pool)


def test_lab_luma_is_cie_lightness_over_100():
    # The released code's content view: kornia rgb_to_lab, L/100. sRGB 0.5 → L* 53.389 (CIE 15:2004).
    view = content_view(solid(0.5, 0.5, 0.5, size=(1, 3, 2, 2)), luma="lab")
    torch.testing.assert_close(view, torch.full((1, 3, 2, 2), 0.53389), atol=1e-4, rtol=0)
    # Identity features: the loss is the squared difference of the two lightnesses.
    loss = content_loss(solid(1.0, 1.0, 1.0), solid(0.0, 0.0, 0.0), Identity(), luma="lab")
    assert loss.item() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="luma"):
        content_view(solid(0.5, 0.5, 0.5), luma="y")
