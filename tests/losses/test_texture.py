"""Texture branch: grayscale, feature extraction, and the texture discriminator's shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.losses.texture import (
    REC601_LUMA,
    TEXTURE_CONVS,
    TEXTURE_HIDDEN,
    TextureDiscriminator,
    conv_output_size,
    grayscale,
    texture_features,
)


@pytest.mark.parametrize(
    "rgb, luma",
    [
        ((1.0, 0.0, 0.0), 0.299),  # the Rec. 601 weights themselves
        ((0.0, 1.0, 0.0), 0.587),
        ((0.0, 0.0, 1.0), 0.114),
        ((1.0, 1.0, 1.0), 1.0),  # weights sum to 1: white stays white
        ((0.2, 0.4, 0.6), 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6),
    ],
)
def test_grayscale_values(rgb, luma, device):
    image = torch.tensor(rgb, device=device).view(1, 3, 1, 1).expand(2, 3, 3, 4)
    gray = grayscale(image).cpu()
    assert gray.shape == (2, 3, 3, 4)
    torch.testing.assert_close(gray, torch.full((2, 3, 3, 4), luma))


def test_grayscale_weights_sum_to_one():
    assert sum(REC601_LUMA) == pytest.approx(1.0)


def test_grayscale_gradient():
    x = torch.rand(1, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(grayscale, (x,))
    # d(sum of 3 replicated channels)/dR = 3 · 0.299, and so on.
    (grad,) = torch.autograd.grad(grayscale(x).sum(), x)
    torch.testing.assert_close(grad[0, :, 0, 0], 3 * torch.tensor(REC601_LUMA, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 4, 4), (1, 4, 4, 4), (1, 1, 4, 4)])
def test_grayscale_rejects_non_rgb(shape):
    with pytest.raises(ValueError, match="grayscale needs"):
        grayscale(torch.zeros(shape))


class RecordingTrunk(nn.Module):
    """Stand-in texture trunk: remembers its input, returns (input, 2× input avg-pooled)."""

    def texture_features(self, rgb):
        self.seen = rgb
        return rgb, 2 * F.avg_pool2d(rgb, 2)


def test_texture_features_feeds_grayscale(device):
    trunk = RecordingTrunk()
    rgb = torch.rand(2, 3, 8, 8, device=device)
    low, high = texture_features(rgb, trunk)
    torch.testing.assert_close(trunk.seen.cpu(), grayscale(rgb.cpu()))
    assert low.shape == (2, 3, 8, 8) and high.shape == (2, 3, 4, 4)


@pytest.mark.parametrize("size", [1, 2, 7, 15, 16, 63, 64])
@pytest.mark.parametrize("kernel, stride", [(5, 2), (3, 2), (3, 1)])
def test_conv_output_size_matches_torch(size, kernel, stride):
    conv = nn.Conv2d(1, 1, kernel, stride=stride, padding=kernel // 2)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == conv_output_size(size, kernel, stride)


def test_discriminator_layers_are_the_papers():
    disc = TextureDiscriminator(64, (64, 64))
    convs = [m for m in disc.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (48, 5, 2, 2), (128, 3, 2, 1), (192, 3, 1, 1), (192, 3, 1, 1), (128, 3, 2, 1)
    ]
    assert [m.negative_slope for m in disc.modules() if isinstance(m, nn.LeakyReLU)] == [0.2] * 6
    fcs = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    # 64 → 32 → 16 → 16 → 16 → 8: the first FC reads 128 · 8 · 8 values.
    assert [(f.in_features, f.out_features) for f in fcs] == [(128 * 8 * 8, TEXTURE_HIDDEN), (TEXTURE_HIDDEN, 1)]
    # The relativistic losses and penalties are blind to a constant logit offset: no final bias.
    assert fcs[-1].bias is None
    # He initialisation (unisp.losses.adversarial.init_discriminator): zero biases.
    assert all(torch.count_nonzero(m.bias) == 0 for m in (*convs, fcs[0]))
    assert len(TEXTURE_CONVS) == 5


@pytest.mark.parametrize("channels, size", [(64, (63, 63)), (256, (15, 15)), (24, (7, 9)), (80, (1, 1))])
def test_discriminator_every_layer_exists_at_construction(channels, size, device):
    # Sizes of the paper's maps for a 256 patch (AlexNet relu1 63×63, relu4 15×15) and odd ones.
    disc = TextureDiscriminator(channels, size)
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in disc.parameters())
    n_before = sum(p.numel() for p in disc.parameters())
    out = disc.to(device)(torch.randn(3, channels, *size, device=device)).cpu()
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert sum(p.numel() for p in disc.parameters()) == n_before  # the forward created nothing


def test_discriminator_gradient_reaches_every_parameter_and_input():
    torch.manual_seed(0)
    disc = TextureDiscriminator(8, (16, 16))
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    disc(x).sum().backward()
    assert x.grad.abs().sum() > 0
    # Every tensor gets a non-zero gradient: no layer is dead or detached.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())


def test_discriminator_rejects_other_shapes():
    disc = TextureDiscriminator(8, (16, 16))
    with pytest.raises(ValueError, match=r"built for \(B, 8, 16, 16\)"):
        disc(torch.zeros(1, 8, 15, 16))
    with pytest.raises(ValueError, match="positive"):
        TextureDiscriminator(8, (0, 16))
