"""The classical ISP: normalised Bayer planes → display sRGB, batched and differentiable.

Stages, in order (the forward direction of Brooks et al.'s unprocessing, CVPR 2019):

1. AWB  white balance on the packed planes (as-shot gains, gray world, or none);
        then, with ``clip``, the planes are clipped to [0, 1] (saturated highlights stay neutral);
2. CFA  unpack to the mosaic of the frame's pattern and demosaic (bilinear / malvar / ahd / menon);
3. CCM  camera RGB → linear sRGB (the frame's matrix, or identity);
4.      clip to [0, 1];
5. GAC  transfer curve: sRGB (IEC 61966-2-1) or a pure power law 1/2.2; with ``stretch``, each
        image's linear RGB is first stretched min–max to [0, 1] (the paper's released loader);
6.      optional smoothstep tone curve, last.

Black-level correction (BLC) comes before :func:`render`: it takes planes already normalised
to [0, 1] (see :func:`unisp.isp.blc.normalize`); :func:`render_frame` does it from a RawFrame.
Tall images go through steps 1–6 in overlapping bands of rows (:data:`RENDER_BAND_ROWS`), with
the same result as one pass; gray-world gains are measured on the whole image first.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn

from unisp.errors import ConfigError
from unisp.isp.awb import apply_white_balance, gray_world_gains
from unisp.isp.blc import normalize
from unisp.isp.bands import map_row_bands
from unisp.isp.ccm import apply_ccm
from unisp.isp.demosaic import DEMOSAIC_REACH, DemosaicMethod, demosaic
from unisp.isp.gamma import srgb_encode
from unisp.isp.tone import tone_curve as smoothstep
from unisp.raw.bayer import CFA, unpack
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

WhiteBalanceMode = Literal["as_shot", "gray_world", "none"]
ColourMatrixSource = Literal["metadata", "identity"]
#: ``srgb``: the IEC 61966-2-1 curve; ``gamma22``: ``x^(1/2.2)``, the curve of the paper's released loader.
TransferCurve = Literal["srgb", "gamma22"]
#: Exponent of the ``gamma22`` transfer curve.
GAMMA_22 = 2.2

#: Choice fields of :class:`ISPConfig` and the type listing their allowed values.
_CHOICES = {"demosaic": DemosaicMethod, "white_balance": WhiteBalanceMode, "colour_matrix": ColourMatrixSource,
            "transfer": TransferCurve}


@dataclass(frozen=True)
class ISPConfig:
    """How :func:`render` turns RAW into sRGB.

    Attributes:
        demosaic: ``"ahd"`` (the default, LibRaw's method: within 0.2 dB of LibRaw on the
            DNGs of benchmarks/libraw_compare.py), ``"bilinear"``, ``"malvar"`` (all three
            differentiable) or ``"menon"`` (not).
        white_balance: ``"as_shot"`` (the frame's gains; gray world when it has none, logged),
            ``"gray_world"`` or ``"none"``.
        colour_matrix: ``"metadata"`` (the frame's camera→sRGB matrix; identity when it has
            none) or ``"identity"``.
        tone_curve: apply the smoothstep S-curve after the transfer curve.
        clip: clip the white-balanced planes to [0, 1] before demosaicing, as Brooks et al.'s
            ``process()`` does, so that clipped highlights stay white through the colour matrix.
            The output is in [0, 1] either way.
        transfer: see :data:`TransferCurve`.
        stretch: stretch each image's linear RGB to [0, 1] by its own minimum and maximum (over
            all channels) before the transfer curve, as the paper's released loader does for X̂.
    """

    demosaic: DemosaicMethod = "ahd"
    white_balance: WhiteBalanceMode = "as_shot"
    colour_matrix: ColourMatrixSource = "metadata"
    tone_curve: bool = False
    clip: bool = True
    transfer: TransferCurve = "srgb"
    stretch: bool = False

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            allowed = get_args(choices)
            value = getattr(self, name)
            if value not in allowed:
                options = ", ".join(repr(a) for a in allowed)
                raise ConfigError(f"ISPConfig.{name} must be one of {options}, got {value!r}")
        for name in ("tone_curve", "clip", "stretch"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ConfigError(f"ISPConfig.{name} must be true or false, got {value!r}")


#: Packed rows (twice as many image rows) per band of :func:`render`. The stages are cheap per
#: pixel and memory-bound on a CPU; in bands the planes stay in cache. 12 MP on 2 cores
#: (2026-11-25, median of 5): Malvar 0.36 s in bands of 32 against 1.13 s in one pass (16: 0.45,
#: 64: 0.45, 128: 0.51 s); AHD, already banded inside, 1.1 s against 1.3 s.
RENDER_BAND_ROWS = 32

#: The content target of training. The paper's target is "demosaic + white balance + gamma" with
#: no colour matrix. Malvar rather than bilinear: it is as differentiable (four fixed 5×5
#: convolutions, a few extra multiply-adds per pixel) and clearly closer to the true image
#: (+5.5 dB on Kodak24 and +2.1 dB on McMaster, docs/ISP.md), with fewer zipper and colour
#: fringes for the generator to learn to imitate.
TRAINING_TARGET = ISPConfig(demosaic="malvar", white_balance="as_shot", colour_matrix="identity", tone_curve=False)


def render(
    planes: torch.Tensor,
    cfa: CFA | str,
    *,
    wb_gains: torch.Tensor | None = None,
    cam_to_srgb: torch.Tensor | None = None,
    config: ISPConfig = ISPConfig(),
) -> torch.Tensor:
    """Render normalised Bayer planes to display sRGB through the classical pipeline.

    Args:
        planes: ``(B, 4, h, w)`` canonical ``(R, Gr, Gb, B)`` planes, black-level corrected and
            normalised to [0, 1].
        cfa: the Bayer pattern of the mosaic the planes came from.
        wb_gains: ``(B, 3)`` or ``(3,)`` as-shot ``(R, G, B)`` gains, or None if unknown.
        cam_to_srgb: ``(B, 3, 3)`` or ``(3, 3)`` camera→linear-sRGB matrices, or None if unknown.
        config: the stages' settings.

    Returns:
        ``(B, 3, 2h, 2w)`` sRGB in [0, 1]; differentiable unless ``config.demosaic == "menon"``.
    """
    if config.white_balance == "gray_world" or (config.white_balance == "as_shot" and wb_gains is None):
        if config.white_balance == "as_shot":
            log.debug("no as-shot white balance given: using gray world")
        wb_gains = gray_world_gains(planes)

    def linear(planes: torch.Tensor) -> torch.Tensor:
        if config.white_balance != "none":
            planes = apply_white_balance(planes, wb_gains)
        if config.clip:
            planes = planes.clamp(0.0, 1.0)
        mosaic = unpack(planes, cfa).unsqueeze(1)
        rgb = demosaic(mosaic, cfa, config.demosaic)
        return rgb if config.colour_matrix != "metadata" else apply_ccm(rgb, cam_to_srgb)

    def stages(planes: torch.Tensor) -> torch.Tensor:
        return encode(linear(planes), config)

    # Every stage but demosaicing is per pixel, so bands of packed rows overlapping by the
    # demosaicer's reach (in packed rows, rounded up) give the one-pass result. The stretch
    # needs each whole image's extremes: the linear image is made first, then stretched and encoded.
    run = linear if config.stretch else stages
    if config.demosaic not in DEMOSAIC_REACH:
        out = run(planes)
    else:
        out = map_row_bands(run, planes, RENDER_BAND_ROWS, math.ceil(DEMOSAIC_REACH[config.demosaic] / 2), scale=2)
    return encode(stretch(out), config) if config.stretch else out


def stretch(rgb: torch.Tensor) -> torch.Tensor:
    """Each image of ``(B, 3, H, W)`` mapped linearly so that its minimum is 0 and its maximum 1.

    An image without range (constant) becomes 0. Over all three channels together, so colours
    keep their ratios to each other's offsets (the paper's released loader: ``(x − min) / (max − min)``).

    Example:
        >>> stretch(torch.tensor([0.2, 0.3, 0.6]).view(1, 3, 1, 1)).flatten()
        tensor([0.0000, 0.2500, 1.0000])
    """
    lo = rgb.amin(dim=(1, 2, 3), keepdim=True)
    hi = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return (rgb - lo) / (hi - lo).clamp_min(torch.finfo(rgb.dtype).tiny)


def encode(rgb: torch.Tensor, config: ISPConfig) -> torch.Tensor:
    """Linear RGB → display values: clip to [0, 1], the transfer curve, the optional tone curve."""
    rgb = rgb.clamp(0.0, 1.0)
    if config.transfer == "srgb":
        out = srgb_encode(rgb)
    else:  # exactly 0 at 0; the clamp keeps the gradient finite there
        out = torch.where(rgb > 0, rgb.clamp_min(1e-12).pow(1 / GAMMA_22), torch.zeros_like(rgb))
    return smoothstep(out) if config.tone_curve else out


def render_frame(frame: RawFrame, config: ISPConfig = ISPConfig(), device: torch.device | str | None = None) -> torch.Tensor:
    """Render one :class:`RawFrame` (black level, white level, gains and matrix from the frame).

    Args:
        frame: the RAW frame.
        config: the stages' settings.
        device: where to compute (default CPU); the result stays there.

    Returns:
        ``(3, H, W)`` float32 sRGB in [0, 1], as stored (EXIF orientation not applied).
    """
    name = f"{frame.path}: " if frame.path else ""
    packed = torch.from_numpy(frame.packed().astype("float32")).to(device).unsqueeze(0)
    planes = normalize(packed, frame.black_level, frame.white_level, clip=True)
    gains = None if frame.wb_gains is None else torch.tensor(frame.wb_gains, dtype=planes.dtype)
    if config.white_balance == "as_shot" and gains is None:
        log.debug("%sno as-shot white balance in the frame: using gray world", name)
        config = dataclasses.replace(config, white_balance="gray_world")
    matrix = None
    if config.colour_matrix == "metadata":
        if frame.cam_to_srgb is None:
            log.debug("%sno colour matrix in the frame: using identity", name)
        else:
            matrix = torch.from_numpy(frame.cam_to_srgb).to(planes.dtype)
    image = render(planes, frame.cfa, wb_gains=gains, cam_to_srgb=matrix, config=config)
    return image[0]


class ClassicalISP(nn.Module):
    """:func:`render` as a module (no parameters), e.g. to compute training targets on the fly.

    Example:
        >>> isp = ClassicalISP(TRAINING_TARGET)
        >>> isp(torch.full((1, 4, 2, 2), 0.18), "RGGB", wb_gains=torch.tensor([1.0, 1.0, 1.0])).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, config: ISPConfig = ISPConfig()) -> None:
        super().__init__()
        self.config = config

    def forward(
        self,
        planes: torch.Tensor,
        cfa: CFA | str,
        wb_gains: torch.Tensor | None = None,
        cam_to_srgb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return render(planes, cfa, wb_gains=wb_gains, cam_to_srgb=cam_to_srgb, config=self.config)

    def extra_repr(self) -> str:
        return repr(self.config)
