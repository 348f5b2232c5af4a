"""Generators by name, and their size: parameters and multiply-accumulates per output pixel."""

from __future__ import annotations

import reprlib
from typing import Any

import torch
from torch import nn

from unisp.errors import ConfigError
from unisp.models.base import PACKED_CHANNELS, Generator
from unisp.models.efficient import EfficientISP, RobustISP
from unisp.models.rmfa import RMFANet

_REGISTRY: dict[str, type[Generator]] = {
    EfficientISP.name: EfficientISP,
    RobustISP.name: RobustISP,
    RMFANet.name: RMFANet,
}

#: Names :func:`build_model` accepts.
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)

#: How :func:`model_info` counts: one MAC per weight × input product of every Conv2d/Linear.
MAC_CONVENTION = (
    "multiply-accumulates of Conv2d/Linear layers only (weight x input products); bias adds, "
    "activations, pooling, resampling and element-wise ops not counted"
)
#: Default output size :func:`model_info` measures at (multiple of 4, so every pyramid level divides evenly).
INFO_SIZE = 256
#: Largest model file (or released ``.pth``) unisp reads. Ours are 13 KB (efficient_isp) to 120 KB
#: (rmfa_tiny); the largest network :func:`build_model` accepts (rmfa_tiny at its bounds: 16 blocks
#: of width 64, 3.3 M parameters) is 13 MB in float32, 27 MB in float64. 64 MiB leaves room above
#: that and still refuses /dev/zero or a mistaken multi-GB file before it is read.
MODEL_FILE_MAX_BYTES = 64 * 2**20


def build_model(name: str, **kwargs: Any) -> Generator:
    """A freshly initialised generator.

    Args:
        name: one of :data:`MODEL_NAMES`.
        **kwargs: architecture arguments of that generator (e.g. ``num_blocks`` for ``rmfa_tiny``),
            checked against its :attr:`~unisp.models.base.Generator.kwarg_ranges` before anything is built.

    Returns:
        The :class:`Generator`, in training mode.

    Raises:
        ConfigError: an unknown name, or an argument that is unknown, of the wrong type or out of range.

    Example:
        >>> model = build_model("rmfa_tiny")
        >>> count_parameters(model), model.training
        (29223, True)
    """
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(f"unknown model {reprlib.repr(name)} (known: {', '.join(MODEL_NAMES)})")
    try:
        checked = cls.check_kwargs(kwargs)
    except ConfigError as e:
        raise ConfigError(f"model {name!r}: {e}") from None
    return cls(**checked)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``sample``, per :data:`MAC_CONVENTION`.

    Counted from forward hooks on every ``nn.Conv2d`` and ``nn.Linear``: a convolution costs
    ``output elements × in_channels/groups × kernel area``.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return total


def model_info(model_or_name: nn.Module | str, *, height: int = INFO_SIZE, width: int = INFO_SIZE) -> dict[str, Any]:
    """Parameters and MACs of a generator, measured on one ``height × width`` output.

    Args:
        model_or_name: a generator, or a name for :func:`build_model`.
        height: output (full-resolution) height; even.
        width: output width; even.

    Returns:
        ``{"name", "parameters", "height", "width", "macs", "mac_per_pixel",
        "mmac_per_megapixel", "convention"}``; ``macs`` is for the whole sample, MAC per output
        pixel and MMAC per output megapixel are the same number.
    """
    if height % 2 or width % 2 or height < 2 or width < 2:
        raise ConfigError(f"model_info needs an even output size, got {height}×{width}")
    model = build_model(model_or_name) if isinstance(model_or_name, str) else model_or_name
    param = next(model.parameters(), None)
    sample = torch.zeros(
        1,
        PACKED_CHANNELS,
        height // 2,
        width // 2,
        dtype=param.dtype if param is not None else torch.float32,
        device=param.device if param is not None else None,
    )
    macs = count_macs(model, sample)
    per_pixel = macs / (height * width)
    return {
        "name": getattr(model, "name", "") or type(model).__name__,
        "parameters": count_parameters(model),
        "height": height,
        "width": width,
        "macs": macs,
        "mac_per_pixel": per_pixel,
        "mmac_per_megapixel": per_pixel,
        "convention": MAC_CONVENTION,
    }
