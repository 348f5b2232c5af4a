"""The contract every generator follows: packed Bayer in, sRGB out."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unisp.errors import UnispError

#: Number of packed Bayer planes a generator takes, in canonical ``(R, Gr, Gb, B)`` order.
PACKED_CHANNELS = 4


class Generator(nn.Module):
    """Base class: ``(B, 4, h, w)`` packed Bayer in [0, 1] → ``(B, 3, 2h, 2w)`` sRGB.

    Subclasses implement :meth:`render` with export-friendly ops only and never clamp there, so
    training sees the raw output. ``forward`` clamps to [0, 1] only when ``clamp_output`` is set
    (for export); :meth:`infer` always clamps.

    Attributes:
        name: the registry name (see :mod:`unisp.models.registry`).
        clamp_output: clamp ``forward``'s output to [0, 1] (off for training).
    """

    name: str = ""
    #: Packed pixels of context each output pixel depends on, on each side; ``None`` when the
    #: network pools globally (its output then depends on the whole image and cannot be tiled exactly).
    receptive_radius: int | None = None

    def __init__(self, clamp_output: bool = False) -> None:
        super().__init__()
        self.clamp_output = clamp_output

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture with ``build_model(name, **kwargs)``."""
        return {}

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
