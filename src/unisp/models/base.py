"""The contract every generator follows: packed Bayer in, sRGB out."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from unisp.errors import ConfigError, UnispError

#: Number of packed Bayer planes a generator takes, in canonical ``(R, Gr, Gb, B)`` order.
PACKED_CHANNELS = 4
#: Full-resolution pixels per packed pixel along each side (one 2×2 CFA tile per packed pixel).
TILE = 2


@dataclass(frozen=True)
class KwargRange:
    """The type and closed range of one architecture argument (``model_kwargs`` of a model file).

    Attributes:
        kind: ``int`` or ``float``; an integer is accepted for a float, a bool for neither.
        low: smallest value allowed.
        high: largest value allowed.
        multiple: an integer argument must be a multiple of this.
    """

    kind: type
    low: float
    high: float
    multiple: int = 1

    def describe(self) -> str:
        """What the argument must be, e.g. ``"an integer from 2 to 64, a multiple of 2"``."""
        if self.kind is int:
            multiple = f", a multiple of {self.multiple}" if self.multiple > 1 else ""
            return f"an integer from {self.low:g} to {self.high:g}{multiple}"
        return f"a finite number from {self.low:g} to {self.high:g}"

    def check(self, key: str, value: object) -> int | float:
        """``value`` as ``kind`` if it has the type and lies in range; else :class:`ConfigError` naming ``key``."""
        if not self.fits(value):
            raise ConfigError(f"model_kwargs.{key} must be {self.describe()}, got {reprlib.repr(value)}")
        return self.kind(value)

    def fits(self, value: object) -> bool:
        """Whether ``value`` has the type and lies in range (NaN and ±inf fail the range comparison)."""
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        return self.low <= value <= self.high and (self.kind is not int or value % self.multiple == 0)


class Generator(nn.Module):
    """Base class: ``(B, 4, h, w)`` packed Bayer in [0, 1] → ``(B, 3, 2h, 2w)`` sRGB.

    Subclasses implement :meth:`render` with export-friendly ops only and never clamp there, so
    training sees the raw output. ``forward`` clamps to [0, 1] only when ``clamp_output`` is set
    (for export); :meth:`infer` always clamps.

    Attributes:
        name: the registry name (see :mod:`unisp.models.registry`).
        clamp_output: clamp ``forward``'s output to [0, 1] (off for training).
        input_wb: what its input is white-balanced with before it (``data.input_wb``, a model
            file's ``input_wb``; :func:`unisp.isp.awb.input_gains`): ``"none"`` or ``"as_shot"``.
            :func:`unisp.models.tiled.run_tiled` applies it; ``forward`` takes planes already balanced.
    """

    name: str = ""
    #: The paper's input: planes as normalised (a model file without ``input_wb`` has this).
    input_wb: str = "none"
    #: Packed pixels of context each output pixel depends on, on each side; ``None`` when the
    #: network pools globally (its output then depends on the whole image and cannot be tiled exactly).
    receptive_radius: int | None = None
    #: Architecture arguments :func:`~unisp.models.registry.build_model` accepts, with their ranges
    #: (checked before anything is allocated: a model file's header cannot ask for a huge network).
    kwarg_ranges: ClassVar[dict[str, KwargRange]] = {}

    def __init__(self, clamp_output: bool = False) -> None:
        super().__init__()
        self.clamp_output = clamp_output

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture with ``build_model(name, **kwargs)``."""
        return {}

    @classmethod
    def check_kwargs(cls, kwargs: dict[str, object]) -> dict[str, int | float]:
        """The architecture arguments, type-checked and range-checked against :attr:`kwarg_ranges`.

        Raises:
            ConfigError: naming the key, for an unknown key, a wrong type or a value out of range.
        """
        unknown = sorted(str(k) for k in kwargs if k not in cls.kwarg_ranges)
        if unknown:
            takes = ", ".join(cls.kwarg_ranges) or "none"
            raise ConfigError(f"bad arguments: unknown model_kwargs {unknown} ({cls.name} takes {takes})")
        return {key: cls.kwarg_ranges[key].check(key, value) for key, value in kwargs.items()}

    @property
    def min_packed_size(self) -> int:
        """Smallest packed height and width this generator takes: 1 (one 2×2 CFA tile) unless it pools."""
        return 1

    def render(self, packed: torch.Tensor) -> torch.Tensor:
        """The network itself, without clamping."""
        raise NotImplementedError

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """Args: packed ``(B, 4, h, w)``. Returns: ``(B, 3, 2h, 2w)`` sRGB (clamped if ``clamp_output``)."""
        out = self.render(packed)
        return out.clamp(0.0, 1.0) if self.clamp_output else out

    @torch.no_grad()
    def infer(self, packed: torch.Tensor) -> torch.Tensor:
        """Inference: no gradients, output clamped to [0, 1].

        Args:
            packed: ``(B, 4, h, w)`` or ``(4, h, w)`` canonical planes normalised to [0, 1].

        Returns:
            ``(B, 3, 2h, 2w)`` (or ``(3, 2h, 2w)``) sRGB in [0, 1].
        """
        single = packed.ndim == 3
        if single:
            packed = packed.unsqueeze(0)
        if packed.ndim != 4 or packed.shape[1] != PACKED_CHANNELS:
            raise UnispError(f"{self.name}: expected packed Bayer (B, 4, h, w), got shape {tuple(packed.shape)}")
        out = self.render(packed).clamp(0.0, 1.0)
        return out[0] if single else out


def check_input_size(model: nn.Module, height: int, width: int, what: str) -> None:
    """Refuse a packed ``height × width`` input smaller than ``model`` takes (:attr:`Generator.min_packed_size`).

    Args:
        model: a generator (a module without ``min_packed_size`` takes any size).
        height: packed height (half the mosaic's).
        width: packed width.
        what: the file or flag the size comes from, named in the message.

    Raises:
        UnispError: ``what``, the size in mosaic pixels and the smallest the model takes.

    Example:
        >>> from unisp.models.registry import build_model
        >>> check_input_size(build_model("rmfa_tiny"), 2, 2, "a.dng")
        >>> check_input_size(build_model("rmfa_tiny"), 1, 1, "a.dng")
        Traceback (most recent call last):
            ...
        unisp.errors.UnispError: a.dng: a 2×2 mosaic is smaller than rmfa_tiny takes (at least 4×4 pixels)
    """
    smallest = getattr(model, "min_packed_size", 1)
    if min(height, width) < smallest:
        name = getattr(model, "name", "") or type(model).__name__
        side = TILE * smallest
        raise UnispError(
            f"{what}: a {TILE * height}×{TILE * width} mosaic is smaller than {name} takes "
            f"(at least {side}×{side} pixels)"
        )


def training_forward(model: nn.Module, packed: torch.Tensor) -> torch.Tensor:
    """``model(packed)`` as training runs it: on the CPU through a channels-last copy of the input.

    PyTorch's CPU convolutions with a handful of channels are much faster channels-last, above
    all in the backward pass, which Dynamic Loss Adaptation runs once per term: efficient_isp,
    batch 32 × 128² packed, 2 cores, 0.05–0.07 s per backward pass against 0.10–0.19 s
    (2026-11-25, docs/RESULTS.md). The output is made contiguous again for the losses; the values
    are the same up to float rounding. ``model`` may be wrapped (DistributedDataParallel): it is
    only called. On CUDA nothing changes (not measured there).
    """
    if packed.device.type != "cpu":
        return model(packed)
    return model(packed.contiguous(memory_format=torch.channels_last)).contiguous()
