"""Content loss: luminance only, the reference as a fixed target, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unisp.losses.content import content_loss
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
