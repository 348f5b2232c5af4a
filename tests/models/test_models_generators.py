"""Generators: shapes, sizes, gradients, export-friendly ops, the RMFA three-channel split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.models import MODEL_NAMES, build_model, count_parameters, model_info, three_channel_split
from unisp.models.base import training_forward
from unisp.models.rmfa import ToneMappingModule
from unisp.raw.bayer import pack

#: Module types that map to plain ONNX / TFLite ops.
ALLOWED_MODULES = (
    nn.Conv2d,
    nn.PixelShuffle,
    nn.Tanh,
    nn.ReLU,
    nn.Sigmoid,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.Sequential,
    nn.ModuleList,
)
#: ATen ops torch.export may record: convolution, depth-to-space, pointwise activations, pooling,
#: bilinear resize and add/sub/mul/concat/slice, channel mean/max and a constant plane.
ALLOWED_OPS = {
    "aten.conv2d.default",
    "aten.pixel_shuffle.default",
    "aten.tanh.default",
    "aten.relu.default",
    "aten.sigmoid.default",
    "aten.avg_pool2d.default",
    "aten.adaptive_avg_pool2d.default",
    "aten.adaptive_max_pool2d.default",
    "aten.upsample_bilinear2d.vec",
    "aten.add.Tensor",
    "aten.sub.Tensor",
    "aten.mul.Tensor",
    "aten.cat.default",
    "aten.slice.Tensor",
    "aten.mean.dim",
    "aten.amax.default",
    "aten.full_like.default",
    "<built-in function getitem>",
}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("h, w", [(4, 6), (5, 7), (2, 2)])
def test_output_shape(name, h, w, device):
    torch.manual_seed(0)
    model = build_model(name).to(device)
    out = model(torch.rand(2, 4, h, w, device=device)).cpu()
    assert out.shape == (2, 3, 2 * h, 2 * w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("efficient_isp", 3060),  # 4·12·9+12 + 12·12·9+12 + 12·12·9+12
        ("robust_isp", 1616),  # 4·16·9+16 + 16·4·9+4 + 4·12·9+12
        ("rmfa_tiny", 29223),  # sum of the released RMFA_TINY state dict's tensor sizes
    ],
)
def test_parameter_counts(name, expected):
    assert count_parameters(build_model(name)) == expected


@pytest.mark.parametrize(
    "name, mac_per_pixel",
    [
        # (4·12·9 + 12·12·9·2) MACs per packed pixel / 4 output pixels = 756.
        ("efficient_isp", 756.0),
        # (4·16·9 + 16·4·9 + 4·12·9) / 4 = 396.
        ("robust_isp", 396.0),
    ],
)
def test_mac_counter_known_values(name, mac_per_pixel):
    info = model_info(name, height=64, width=96)
    assert info["mac_per_pixel"] == mac_per_pixel
    assert info["mmac_per_megapixel"] == mac_per_pixel
    assert info["macs"] == mac_per_pixel * 64 * 96
    assert info["parameters"] == count_parameters(build_model(name))


def test_mac_counter_rmfa_hand_count():
    # Per full-resolution pixel (width 16, 2 blocks): input convs 3·16·9 + 16·16·9; per block
    # 1×1 16→8 (128) + 3×3 16→8 (1152) + pyramid convs at 1/4 and 1/16 resolution (2304/4 + 2·2304/16)
    # + fusion 32·16·9 (4608) + 7×7 spatial gate 2·49; output 16·3·9. The channel-attention MLP
    # adds 2·(16·1 + 1·16) = 64 MACs per block on 1×1 pooled maps, once per image.
    per_block = 128 + 1152 + 2304 // 4 + 2 * 2304 // 16 + 4608 + 98
    per_pixel = 432 + 2304 + 2 * per_block + 432
    info = model_info("rmfa_tiny", height=32, width=32)
    assert info["macs"] == per_pixel * 32 * 32 + 2 * 64


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name)
    out = model(torch.rand(2, 4, 8, 8))
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_training_forward_is_the_forward_pass(name):
    # Channels-last input changes only the memory layout the convolutions work in: the output
    # (made contiguous again) and the parameter gradients equal the plain pass's up to float
    # rounding; float64 keeps that rounding far below the tolerance.
    torch.manual_seed(0)
    model = build_model(name).double()
    x = torch.rand(3, 4, 10, 12, dtype=torch.float64)
    cotangent = torch.randn(3, 3, 20, 24, dtype=torch.float64)
    plain = model(x)
    fast = training_forward(model, x)
    assert fast.is_contiguous() and fast.shape == plain.shape
    assert torch.allclose(fast, plain, atol=1e-12)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(plain, params, cotangent), torch.autograd.grad(fast, params, cotangent)):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradcheck_input(name):
    torch.manual_seed(0)
    model = build_model(name).double()
    x = torch.rand(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_only_export_friendly_modules(name):
    for mname, module in build_model(name).named_modules():
        if isinstance(module, ALLOWED_MODULES):
            continue
        # Our own containers may only group allowed modules: no parameters of their own.
        assert type(module).__module__.startswith("unisp.models"), f"{mname}: {type(module).__name__}"
        assert not list(module.parameters(recurse=False)), mname


def test_only_export_friendly_ops():
    # RMFA-Net is the one generator with functional ops (the module walk covers the others).
    program = torch.export.export(build_model("rmfa_tiny").eval(), (torch.rand(1, 4, 4, 4),))
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS


@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
def test_no_clamp_in_training_forward_but_in_infer(name):
    model = build_model(name)
    with torch.no_grad():
        model.conv3.weight.zero_()
        model.conv3.bias.fill_(5.0)  # every output value is exactly 5 before any clamp
    x = torch.rand(1, 4, 3, 3)
    assert torch.equal(model(x), torch.full((1, 3, 6, 6), 5.0))
    assert torch.equal(model.infer(x), torch.ones(1, 3, 6, 6))
    model.clamp_output = True
    assert model(x).max() == 1.0


def test_infer_accepts_single_frame_and_checks_shape():
    model = build_model("efficient_isp")
    assert model.infer(torch.rand(4, 3, 5)).shape == (3, 6, 10)
    with pytest.raises(UnispError, match=r"expected packed Bayer \(B, 4, h, w\)"):
        model.infer(torch.rand(1, 3, 4, 4))


def test_unknown_model_and_bad_kwargs():
    with pytest.raises(ConfigError, match="unknown model 'pynet'"):
        build_model("pynet")
    with pytest.raises(ConfigError, match="bad arguments"):
        build_model("efficient_isp", width=3)


def test_model_info_rejects_odd_size():
    with pytest.raises(ConfigError, match="even output size"):
        model_info("efficient_isp", height=63, width=64)


def test_three_channel_split_matches_rggb_construction():
    # The RMFA-Net split of an RGGB mosaic: R image = red samples at (0,0), G image = greens at
    # (0,1) and (1,0), B image = blue at (1,1), 1 everywhere else. Built from canonical packed planes.
    torch.manual_seed(0)
    mosaic = torch.rand(6, 8)
    expected = torch.ones(3, 6, 8)
    expected[0, 0::2, 0::2] = mosaic[0::2, 0::2]
    expected[1, 0::2, 1::2] = mosaic[0::2, 1::2]
    expected[1, 1::2, 0::2] = mosaic[1::2, 0::2]
    expected[2, 1::2, 1::2] = mosaic[1::2, 1::2]
    assert torch.equal(three_channel_split(pack(mosaic, "RGGB")[None])[0], expected)


def test_three_channel_split_fill_value():
    out = three_channel_split(torch.zeros(1, 4, 1, 1), fill=0.25)
    assert out[0].tolist() == [[[0.0, 0.25], [0.25, 0.25]], [[0.25, 0.0], [0.0, 0.25]], [[0.25, 0.25], [0.25, 0.0]]]


def test_tone_mapping_equals_x2_upsampling_when_sizes_divide():
    # The reference upsamples by a fixed factor 2; resizing to the finer level's size is the same
    # operation whenever that size is exactly twice the coarser one.
    torch.manual_seed(0)
    module = ToneMappingModule(4)
    x = torch.rand(1, 4, 8, 12)
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    x1 = module.level1(x)
    x3 = module.level3(module.level2(x1))
    expected = x - up(up(x3) + x1)
    assert torch.equal(module(x), expected)
    assert module(torch.rand(1, 4, 10, 14)).shape == (1, 4, 10, 14)  # 10/2 = 5 does not halve evenly


def test_rmfa_kwargs_round_trip():
    model = build_model("rmfa_tiny", num_blocks=1, width=8)
    assert model.model_kwargs == {"num_blocks": 1, "width": 8, "fill": 1.0}
    assert len(model.rmfa_blocks) == 1
    # The round trip: a model built from model_kwargs takes this one's weights (a strict load: the
    # same layers and shapes) and computes the same function, so the MSE of the two is exactly 0.
    rebuilt = build_model("rmfa_tiny", **model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 4, 4, 4)
    out = model(x)
    assert F.mse_loss(rebuilt(x), out).item() == 0.0
    # The output module ends in a sigmoid, so every value lies strictly inside (0, 1) and the MSE
    # against black does too (a NaN from a broken forward fails both comparisons).
    assert 0.0 < F.mse_loss(out, torch.zeros(1, 3, 8, 8)).item() < 1.0


@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
def test_every_output_channel_starts_alive(name):
    # The last ReLU passes no gradient to a channel that is negative everywhere, so such a channel
    # would stay black for good. With PyTorch's default bias init, 13 of these 20 seeds start
    # efficient_isp with at least one such channel and 19 robust_isp (measured on this input,
    # before the change); the mid-range output bias leaves none.
    x = torch.rand(4, 4, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5
    for seed in range(20):
        torch.manual_seed(seed)
        model = build_model(name)
        with torch.no_grad():
            pre = model.conv3(model.act2(model.conv2(model.act1(model.conv1(x)))))
        assert (pre.amax(dim=(0, 2, 3)) > 0).all(), seed
