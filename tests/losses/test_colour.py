"""Colour branch: Gaussian blur, resize to the backbone's size, the per-token discriminator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from unisp.losses.backbones import BackboneSpec
from unisp.losses.colour import COLOUR_HIDDEN, ColourDiscriminator, colour_features, gaussian_blur, gaussian_kernel1d


def test_kernel_values():
    taps = gaussian_kernel1d(21, 3.0, dtype=torch.float64)
    assert taps.shape == (21,)
    assert taps.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(taps, taps.flip(0))
    # Closed form: exp(−x²/2σ²) / Σ, here the centre tap and the one at x = 3 (= σ: ratio e^(−1/2)).
    norm = sum(math.exp(-(x**2) / 18) for x in range(-10, 11))
    assert taps[10].item() == pytest.approx(1 / norm)
    assert (taps[13] / taps[10]).item() == pytest.approx(math.exp(-0.5))


@pytest.mark.parametrize("size, sigma", [(21, 3.0), (5, 1.0), (7, 0.8)])
def test_blur_matches_torchvision(size, sigma, device):
    # torchvision's gaussian_blur uses the same sampled, normalised kernel and reflect padding.
    image = torch.rand(2, 3, 24, 30)
    ours = gaussian_blur(image.to(device), size, sigma).cpu()
    torch.testing.assert_close(ours, TF.gaussian_blur(image, [size, size], [sigma, sigma]), atol=1e-6, rtol=1e-5)


def test_blur_is_the_2d_kernel(device):
    # An impulse far from the border comes back as the outer product of the 1-D taps.
    image = torch.zeros(1, 1, 21, 21, device=device)
    image[0, 0, 10, 10] = 1.0
    taps = gaussian_kernel1d(9, 2.0)
    out = gaussian_blur(image, 9, 2.0).cpu()
    torch.testing.assert_close(out[0, 0, 6:15, 6:15], torch.outer(taps, taps))


def test_blur_keeps_constant_image_and_border(device):
    # Reflect padding: a constant image stays constant up to its edges (zero padding would darken them).
    image = torch.full((1, 3, 12, 16), 0.6, device=device)
    torch.testing.assert_close(gaussian_blur(image, 21, 3.0).cpu(), image.cpu())


def test_blur_gradcheck():
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gaussian_blur(t, 5, 1.0), (x,))


def test_blur_errors():
    with pytest.raises(ValueError, match="odd"):
        gaussian_blur(torch.zeros(1, 3, 30, 30), 20, 3.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(torch.zeros(1, 3, 30, 30), 21, 0.0)
    with pytest.raises(ValueError, match="too small"):
        gaussian_blur(torch.zeros(1, 3, 10, 30), 21, 3.0)


class RecordingTokens(nn.Module):
    """Stand-in colour backbone: records its input; tokens = 4×4 average-pooled pixels."""

    spec = BackboneSpec(content_channels=1, colour_dim=3, colour_size=16, texture_channels=(1, 1))

    def colour_tokens(self, rgb):
        self.seen = rgb
        return F.avg_pool2d(rgb, 4).flatten(2).transpose(1, 2)


@pytest.mark.parametrize("patch", [12, 16, 40])
def test_colour_features_blur_then_resize(patch):
    backbone = RecordingTokens()
    rgb = torch.rand(2, 3, patch, patch)
    tokens = colour_features(rgb, backbone, 5, 1.0)
    blurred = gaussian_blur(rgb, 5, 1.0)
    expected = blurred if patch == 16 else F.interpolate(blurred, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(backbone.seen, expected)
    assert tokens.shape == (2, 16, 3)


def test_colour_features_keep_mean_colour(device):
    # Blur and bilinear resize preserve a constant colour, so every token is that colour.
    rgb = torch.tensor([0.9, 0.3, 0.1], device=device).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    tokens = colour_features(rgb, RecordingTokens(), 21, 3.0).cpu()
    torch.testing.assert_close(tokens, torch.tensor([0.9, 0.3, 0.1]).expand(1, 16, 3))


def test_discriminator_shape_and_size():
    disc = ColourDiscriminator(768)
    # 768→512→512→1 (the last without bias: the relativistic losses cannot see a constant offset).
    assert sum(p.numel() for p in disc.parameters()) == 768 * 512 + 512 + 512 * 512 + 512 + 512
    assert COLOUR_HIDDEN == 512
    assert disc(torch.randn(3, 196, 768)).shape == (3,)


def test_discriminator_averages_per_token_logits(device):
    torch.manual_seed(0)
    disc = ColourDiscriminator(6, hidden=8).to(device)
    tokens = torch.randn(2, 5, 6).to(device)
    per_token = torch.stack([disc.mlp(tokens[:, i]) for i in range(5)], dim=1).squeeze(-1)
    torch.testing.assert_close(disc(tokens).cpu(), per_token.mean(dim=1).cpu())
    # Hence the order of the tokens does not matter.
    torch.testing.assert_close(disc(tokens[:, torch.randperm(5)]).cpu(), disc(tokens).cpu())


def test_discriminator_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"\(B, N, 6\)"):
        ColourDiscriminator(6)(torch.zeros(1, 4, 5))
