"""The module that gets exported: a generator plus its input contract (packing, normalisation, layout).

A unisp generator takes canonical packed Bayer planes ``(N, 4, h, w)`` normalised to [0, 1]. A
deployed file may instead take what a phone's camera stack has at hand, so :class:`ExportGraph`
wraps the generator in one of four input contracts:

============  ======  ================================  ==========================
packing       layout  input                             output
============  ======  ================================  ==========================
``outside``   nchw    ``(N, 4, H/2, W/2)`` in [0, 1]    ``(N, 3, H, W)`` in [0, 1]
``outside``   nhwc    ``(N, H/2, W/2, 4)`` in [0, 1]    ``(N, H, W, 3)`` in [0, 1]
``inside``    nchw    ``(N, 1, H, W)`` sensor values    ``(N, 3, H, W)`` in [0, 1]
``inside``    nhwc    ``(N, H, W, 1)`` sensor values    ``(N, H, W, 3)`` in [0, 1]
============  ======  ================================  ==========================

Packed planes are in canonical ``(R, Gr, Gb, B)`` order (``Gr`` shares a row with red); the
``nhwc`` outside contract is the Mobile AI challenge's ``[1, H/2, W/2, 4]``, but in that canonical
order. With ``packing="inside"`` the graph takes the RAW mosaic as float sensor values (H, W even)
and itself packs it for the baked-in CFA pattern, subtracts the baked-in per-plane black levels
and divides by ``white − black_c``: the same formula as :func:`unisp.isp.blc.normalize`. Inputs
are clamped to [0, 1] after normalisation (as :func:`unisp.models.tiled.run_tiled` does) and outputs
to [0, 1] (as inference always does).

A model trained with ``data.input_wb=as_shot`` takes planes white-balanced by the file's as-shot
gains (:func:`unisp.isp.awb.input_gains`). With ``inside`` packing its graph has a second input,
``wb_gains`` ``(N, 3)``: the as-shot ``(R, G, B)`` multipliers (a phone's AWB result, unisp's
``RawFrame.wb_gains``); the graph normalises them to green and applies them after the black/white
normalisation and clipping, then clips again. With ``outside`` packing the caller white-balances
the planes (and clips them) before feeding them; the graph is the plain generator.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.isp.awb import PLANE_TO_GAIN
from unisp.models.base import check_input_size
from unisp.raw.bayer import CFA, unpack
from unisp.raw.frame import RawFrame, Source

log = logging.getLogger(__name__)

#: The input contracts: where Bayer packing happens, and the tensor layout of input and output.
PACKINGS: tuple[str, ...] = ("outside", "inside")
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc")
#: Arithmetic the network body may run in (the normalisation always runs in float32).
COMPUTE_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16)
#: Name of the as-shot gains input of an ``inside`` graph of an ``as_shot`` model.
GAINS_NAME = "wb_gains"


def check_input_wb(model: nn.Module, packing: str, precision: str, format: str) -> None:
    """Refuse the exports of a model with a white-balanced input (``input_wb`` as_shot) not yet supported:
    int8 (its calibration crops are not balanced) and a TFLite file with ``inside`` packing (two inputs).

    Raises:
        ConfigError: one line naming what is not yet supported.
    """
    mode = getattr(model, "input_wb", "none")
    if mode == "none":
        return
    if precision == "int8":
        raise ConfigError(f"int8 export of a model whose input is white-balanced (input_wb {mode}) is not yet supported")
    if format == "tflite" and packing == "inside":
        raise ConfigError(
            f"TFLite export with --packing inside of a model whose input is white-balanced (input_wb {mode}) is not "
            "yet supported; use --packing outside (the caller white-balances the planes) or --format onnx"
        )


@dataclass(frozen=True)
class SensorCalibration:
    """The constants an ``inside``-packing graph bakes in.

    Attributes:
        cfa: Bayer pattern of the mosaic the graph will receive.
        black: per-plane black levels in canonical ``(R, Gr, Gb, B)`` order, sensor units.
        white: white (saturation) level, sensor units.
        source: where the values came from, for the log and the file's metadata
            (e.g. ``"--black/--white/--cfa"`` or ``"metadata of FILE"``).
    """

    cfa: CFA
    black: tuple[float, float, float, float]
    white: float
    source: str = "given"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cfa", CFA.parse(self.cfa))
        black = tuple(float(b) for b in self.black)
        if len(black) != 4:
            raise ConfigError(f"black level needs 4 values (R, Gr, Gb, B), got {len(black)}")
        object.__setattr__(self, "black", black)
        object.__setattr__(self, "white", float(self.white))
        if not (math.isfinite(self.white) and all(0 <= b < self.white for b in black)):
            raise ConfigError(f"need 0 ≤ black < white, got black {black}, white {self.white:g}")

    def describe(self) -> str:
        black = ", ".join(f"{b:g}" for b in self.black)
        return f"{self.cfa.value}, black ({black}), white {self.white:g} [{self.source}]"


def sensor_calibration(
    *,
    cfa: CFA | str | None = None,
    black: float | tuple[float, ...] | None = None,
    white: float | None = None,
    sample: RawFrame | None = None,
) -> SensorCalibration:
    """The constants to bake into an ``inside`` graph: given values first, the rest from a sample frame.

    Args:
        cfa: Bayer pattern given by the user (``--cfa``).
        black: one black level or four in ``(R, Gr, Gb, B)`` order (``--black``).
        white: white level (``--white``).
        sample: a RAW frame whose metadata supplies whatever was not given.

    Returns:
        The calibration; its ``source`` says which values were given and which read, and the same is logged.

    Raises:
        ConfigError: a value neither given nor available from a sample.
    """
    given = {"cfa": cfa, "black": black, "white": white}
    missing = [k for k, v in given.items() if v is None]
    if missing and sample is None:
        raise ConfigError(
            f"--packing inside bakes the sensor's CFA, black and white levels into the graph: give "
            f"{', '.join('--' + k for k in missing)}, or a RAW file to read them from (--sample FILE or --calib DIR)"
        )
    if isinstance(black, (int, float)):
        black = (float(black),) * 4
    values = {
        "cfa": cfa if cfa is not None else sample.cfa,
        "black": black if black is not None else sample.black_level,
        "white": white if white is not None else sample.white_level,
    }
    parts = []
    if len(missing) < 3:
        parts.append("given: " + ", ".join(k for k, v in given.items() if v is not None))
    if missing:
        # The frame's own record of where each value came from (metadata, preset, user flag, assumed).
        field = {"cfa": "cfa", "black": "black_level", "white": "white_level"}
        origins = ", ".join(f"{k} [{sample.sources.get(field[k], Source.ASSUMED).value}]" for k in missing)
        parts.append(f"read from {sample.path or 'the sample frame'}: {origins}")
    calibration = SensorCalibration(values["cfa"], values["black"], values["white"], source="; ".join(parts))
    log.info("inside packing bakes in %s", calibration.describe())
    return calibration


class ExportGraph(nn.Module):
    """A generator wrapped in a deployable input contract (see the module docstring).

    Args:
        model: a generator: packed ``(N, 4, h, w)`` in [0, 1] → ``(N, 3, 2h, 2w)``. It is copied,
            never modified.
        packing: ``"outside"`` (the input is packed planes in [0, 1]) or ``"inside"`` (the input is
            the RAW mosaic in sensor units; needs ``sensor``).
        layout: ``"nchw"`` or ``"nhwc"``, for input and output alike.
        sensor: the CFA and levels an ``inside`` graph bakes in.
        compute_dtype: dtype of the network body (``torch.float16`` for an fp16 export); input,
            output and normalisation stay float32.

    An ``inside`` graph of a model whose ``input_wb`` is ``as_shot`` takes a second input, the
    ``(N, 3)`` as-shot gains (:attr:`takes_gains`; see the module docstring).

    Example:
        >>> from unisp.models.registry import build_model
        >>> graph = ExportGraph(build_model("efficient_isp"), layout="nhwc")
        >>> graph(torch.rand(1, 8, 8, 4)).shape
        torch.Size([1, 16, 16, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        packing: str = "outside",
        layout: str = "nchw",
        *,
        sensor: SensorCalibration | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if packing not in PACKINGS:
            raise ConfigError(f"packing must be one of {', '.join(PACKINGS)}, got {packing!r}")
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"compute dtype must be float32 or float16, got {compute_dtype}")
        if packing == "inside" and sensor is None:
            raise ConfigError("packing='inside' needs the sensor's CFA, black and white levels (sensor=...)")
        self.packing, self.layout, self.sensor, self.compute_dtype = packing, layout, sensor, compute_dtype
        self.input_wb = getattr(model, "input_wb", "none")
        #: Whether the graph takes the as-shot gains as a second input (and white-balances its input).
        self.takes_gains = packing == "inside" and self.input_wb == "as_shot"
        self.model = copy.deepcopy(model).to(device="cpu", dtype=compute_dtype).eval()
        self.model.requires_grad_(False)
        if sensor is not None and packing == "inside":
            black = torch.tensor(sensor.black, dtype=torch.float32).view(1, 4, 1, 1)
            self.register_buffer("black", black)
            self.register_buffer("span", sensor.white - black)
            self.offsets = sensor.cfa.offsets

    def forward(self, x: torch.Tensor, gains: torch.Tensor | None = None) -> torch.Tensor:
        """Args: the input of this graph's contract, and with :attr:`takes_gains` the ``(N, 3)``
        as-shot ``(R, G, B)`` gains. Returns: sRGB in [0, 1] in this graph's layout."""
        if self.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)
        if self.packing == "inside":
            x = torch.cat([x[:, :, r::2, c::2] for r, c in self.offsets], dim=1)
            x = (x - self.black) / self.span
        x = x.clamp(0.0, 1.0)
        if self.takes_gains:
            if gains is None:
                raise UnispError(f"this graph white-balances its input: give the as-shot gains ({GAINS_NAME}, (N, 3))")
            per_plane = (gains / gains[:, 1:2])[:, list(PLANE_TO_GAIN)]  # (R, G, B) → (R/G, 1, 1, B/G)
            x = (x * per_plane[:, :, None, None]).clamp(0.0, 1.0)
        x = x.to(self.compute_dtype)
        y = self.model(x).to(torch.float32).clamp(0.0, 1.0)
        return y.permute(0, 2, 3, 1) if self.layout == "nhwc" else y

    @property
    def input_name(self) -> str:
        return "raw" if self.packing == "inside" else "packed"

    output_name = "rgb"

    @property
    def input_names(self) -> list[str]:
        """The graph's input names: the image's, then with :attr:`takes_gains` :data:`GAINS_NAME`."""
        return [self.input_name, GAINS_NAME] if self.takes_gains else [self.input_name]

    def example_inputs(self, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """Zero image input for a full-resolution ``height × width`` (and unit gains when it takes them)."""
        image = torch.zeros(self.input_shape(height, width))
        return (image, torch.ones(1, 3)) if self.takes_gains else (image,)

    def input_shape(self, height: int | str = "H", width: int | str = "W", batch: int | str = 1) -> tuple:
        """The input shape for a full-resolution ``height × width`` image (symbolic names allowed)."""
        if self.packing == "inside":
            spatial, channels = (height, width), 1
        else:
            spatial = tuple(s // 2 if isinstance(s, int) else f"{s}/2" for s in (height, width))
            channels = 4
        return (batch, channels, *spatial) if self.layout == "nchw" else (batch, *spatial, channels)

    def describe_input(self) -> str:
        """One line stating the input contract (stored in exported files' metadata)."""
        shape = "[" + ", ".join(str(s) for s in self.input_shape(batch="N")) + "]"
        if self.takes_gains:
            return (
                f"RAW mosaic {shape} float32 in sensor units, and {GAINS_NAME} [N, 3] float32: the as-shot (R, G, B) "
                f"white-balance multipliers, applied after normalisation; baked in: {self.sensor.describe()}"
            )
        if self.packing == "inside":
            return f"RAW mosaic {shape} float32 in sensor units; baked in: {self.sensor.describe()}"
        if self.input_wb == "as_shot":
            return (
                f"packed Bayer (R, Gr, Gb, B) {shape} float32 in [0, 1], white-balanced by the as-shot gains "
                "normalised to green (R × r/g, B × b/g) and clipped to [0, 1] by the caller"
            )
        return f"packed Bayer (R, Gr, Gb, B) {shape} float32 in [0, 1]"

    def describe_output(self) -> str:
        shape = "[N, 3, H, W]" if self.layout == "nchw" else "[N, H, W, 3]"
        return f"sRGB {shape} float32 in [0, 1]"

    def to_graph_input(self, packed: torch.Tensor) -> torch.Tensor:
        """Canonical packed planes ``(N, 4, h, w)`` in [0, 1] → this graph's input.

        For ``inside`` packing this is the exact inverse of the in-graph normalisation and packing:
        ``unpack(packed · (white − black_c) + black_c)`` (float sensor values, not rounded).
        """
        if packed.ndim != 4 or packed.shape[1] != 4:
            raise UnispError(f"expected packed Bayer (N, 4, h, w), got shape {tuple(packed.shape)}")
        x = packed.float()
        if self.packing == "inside":
            x = unpack(x * self.span + self.black, self.sensor.cfa).unsqueeze(1)
        return x.permute(0, 2, 3, 1).contiguous() if self.layout == "nhwc" else x

    def from_graph_output(self, y: torch.Tensor) -> torch.Tensor:
        """This graph's output → ``(N, 3, H, W)``."""
        return y.permute(0, 3, 1, 2) if self.layout == "nhwc" else y


def check_input(shape: tuple[int, ...] | torch.Size, packing: str, layout: str) -> None:
    """Raise :class:`UnispError` if ``shape`` does not fit the ``packing``/``layout`` input contract."""
    channels = 1 if packing == "inside" else 4
    ok = len(shape) == 4 and shape[1 if layout == "nchw" else 3] == channels
    if not ok:
        want = "(N, C, h, w)" if layout == "nchw" else "(N, h, w, C)"
        raise UnispError(f"{packing}-packed {layout} input must be {want} with C = {channels}, got {tuple(shape)}")
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    if packing == "inside" and (h % 2 or w % 2):
        raise UnispError(f"a RAW mosaic input needs even height and width (whole 2×2 CFA tiles), got {h}×{w}")
    if h < 1 or w < 1:
        raise UnispError(f"input of {h}×{w} pixels is empty")



def parse_shape(text: str | None) -> tuple[int, int] | None:
    """``--shape``: ``"dynamic"`` (or ``None``) → ``None``; ``"3000x4000"`` → ``(3000, 4000)``, full-resolution H×W.

    Raises:
        ConfigError: anything else, a size below 2 or an odd size (a RAW mosaic is whole 2×2 CFA tiles).
    """
    if text is None or text.strip().lower() == "dynamic":
        return None
    parts = text.strip().lower().replace("×", "x").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--shape must be 'dynamic' or HxW in full-resolution pixels (e.g. 3000x4000), got {text!r}") from None
    check_shape((height, width))
    return height, width


#: Largest shape accepted for exports and benchmarks: the largest phone sensors are 200 MP; beyond
#: that a typo (60000x60000) would only allocate tens of GB before failing.
MAX_MEGAPIXELS = 200


def check_shape(shape: tuple[int, int]) -> None:
    """Raise :class:`ConfigError` unless ``shape`` is a full-resolution ``(H, W)`` of even sizes ≥ 2, at most :data:`MAX_MEGAPIXELS`."""
    height, width = shape
    if height < 2 or width < 2:
        raise ConfigError(f"shape {height}x{width}: height and width must be at least 2")
    if height * width > MAX_MEGAPIXELS * 1e6:
        raise ConfigError(f"shape {height}x{width}: {height * width / 1e6:.0f} MP is above the {MAX_MEGAPIXELS} MP limit")
    if height % 2 or width % 2:
        raise ConfigError(f"shape {height}x{width}: height and width must be even (whole 2×2 Bayer tiles)")


def check_model_shape(model: nn.Module, shape: tuple[int, int], what: str = "shape") -> None:
    """:func:`check_shape`, and that ``model`` takes an input that small (``what`` names the flag in the message)."""
    check_shape(shape)
    height, width = shape
    check_input_size(model, height // 2, width // 2, f"{what} {height}x{width}")
