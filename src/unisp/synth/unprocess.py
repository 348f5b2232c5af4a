"""Unprocessing (Brooks et al., CVPR 2019): an sRGB photo → the RAW mosaic a camera could have recorded.

Each step inverts one stage of a simple camera pipeline, in reverse order::

    sRGB photo ─ inverse tone ─ sRGB decode ─ sRGB→camera CCM ─ inverse gains ─ clip ─ mosaic ─ noise ─ quantise

The camera is described by a :class:`SensorModel` (sampled at random by :meth:`SensorModel.random`), and
:func:`unprocess` returns a :class:`~unisp.raw.frame.RawFrame` whose metadata is what that camera would
record, so that the classical ISP (white balance → demosaic → CCM → sRGB encode → tone) renders it back.

Differences from Brooks et al.'s code: gamma is the exact sRGB curve (``unisp.isp.gamma``), not a 2.2 power,
so it is the exact inverse of what our ISP applies; the mosaic is quantised to integer sensor counts over
a black pedestal (Brooks keep floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unisp.errors import ConfigError, UnispError
from unisp.isp.gamma import srgb_decode
from unisp.isp.tone import inverse_tone_curve
from unisp.raw.bayer import CFA, colour_masks, crop_to_even
from unisp.raw.frame import RawFrame, Source
from unisp.synth.camera import random_ccm, random_gains, random_noise_levels

#: Brooks et al.'s ``safe_invert_gains``: above this mean linear level the inverse gains fade
#: (quadratically) to 1, so that saturated highlights stay saturated instead of turning grey.
SAFE_GAIN_INFLECTION = 0.9

#: Black level of a 10-bit sensor: 64 codes (1/16 of the range) is the pedestal of common Sony
#: smartphone/embedded sensors in RAW10 mode, e.g. libcamera's Raspberry Pi tuning files for
#: IMX219/IMX477 give 4096 on their 16-bit scale = 64 at 10 bits. Scaled by 2^(bits − 10) for
#: other depths (256 at 12 bits, 1024 at 14), keeping the same fraction of the range.
DEFAULT_BLACK_LEVEL_10BIT = 64
#: Sensor bit depths a synthetic RAW may use (the mosaic is stored in a 16-bit PNG).
MIN_BITS = 8
MAX_BITS = 16

#: Keys of :meth:`SensorModel.to_dict`, in order.
_FIELDS = (
    "cfa", "bits", "black_level", "white_level", "rgb2cam", "cam2rgb",
    "rgb_gain", "red_gain", "blue_gain", "shot_noise", "read_noise", "tone_curve",
)


def default_black_level(bits: int) -> int:
    """:data:`DEFAULT_BLACK_LEVEL_10BIT` scaled to ``bits`` (64 at 10 bits, 256 at 12, 16 at 8)."""
    return int(round(DEFAULT_BLACK_LEVEL_10BIT * 2.0 ** (bits - 10)))


def inverse_tone(image: torch.Tensor) -> torch.Tensor:
    """Undo the smoothstep tone curve (exact inverse of :func:`unisp.isp.tone.tone_curve` on [0, 1])."""
    return inverse_tone_curve(image)


def gamma_expansion(image: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values → linear light (exact inverse of :func:`unisp.isp.gamma.srgb_encode`)."""
    return srgb_decode(image)


def apply_ccm(image: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel's colour by a 3×3 matrix: ``out[i] = Σ_j ccm[i, j] · image[j]``.

    Args:
        image: ``(..., 3, H, W)`` colour image.
        ccm: ``(3, 3)`` or ``(B, 3, 3)`` matrix (one per image of a ``(B, 3, H, W)`` batch).

    Returns:
        Tensor of ``image``'s shape and dtype.
    """
    if image.ndim < 3 or image.shape[-3] != 3:
        raise UnispError(f"apply_ccm needs a (..., 3, H, W) image, got shape {tuple(image.shape)}")
    if ccm.shape[-2:] != (3, 3):
        raise UnispError(f"a colour matrix must be 3×3, got shape {tuple(ccm.shape)}")
    return torch.einsum("...ij,...jhw->...ihw", ccm.to(image), image)


def _per_image(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``(B,)`` per-image parameter as a tensor of ``like``'s dtype and device."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def safe_invert_gains(
    image: torch.Tensor,
    rgb_gain: float | torch.Tensor,
    red_gain: float | torch.Tensor,
    blue_gain: float | torch.Tensor,
) -> torch.Tensor:
    """Divide out brightening and white-balance gains, keeping highlights saturated (Brooks et al.).

    The plain inverse multiplies by ``(1/red, 1, 1/blue) / rgb_gain``; pixels whose mean exceeds
    :data:`SAFE_GAIN_INFLECTION` are blended towards gain 1 (never below the plain inverse), so
    clipped whites in the photo stay at the sensor's clipping point rather than becoming a
    coloured grey that a real sensor could not produce.

    Args:
        image: ``(..., 3, H, W)`` linear camera RGB in [0, 1].
        rgb_gain, red_gain, blue_gain: scalars or ``(B,)`` tensors (one per image of a batch).

    Returns:
        Tensor of ``image``'s shape.
    """
    rgb, red, blue = (_per_image(g, image) for g in (rgb_gain, red_gain, blue_gain))
    gains = torch.stack(torch.broadcast_tensors(1.0 / red, torch.ones_like(red), 1.0 / blue), dim=-1)
    gains = (gains / rgb.unsqueeze(-1)).unsqueeze(-1).unsqueeze(-1)  # (..., 3, 1, 1)
    gray = image.mean(dim=-3, keepdim=True)
    mask = ((gray - SAFE_GAIN_INFLECTION).clamp_min(0.0) / (1.0 - SAFE_GAIN_INFLECTION)) ** 2
    safe_gains = torch.maximum(mask + (1.0 - mask) * gains, gains)
    return image * safe_gains


def mosaic(rgb: torch.Tensor, cfa: CFA | str) -> torch.Tensor:
    """Sample a full-colour image through a Bayer colour filter array.

    Args:
        rgb: ``(B, 3, H, W)`` image.
        cfa: the pattern of the mosaic's top-left 2×2 tile.

    Returns:
        ``(B, 1, H, W)`` mosaic holding, at each site, the channel the CFA samples there.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise UnispError(f"mosaic needs a (B, 3, H, W) image, got shape {tuple(rgb.shape)}")
    masks = colour_masks(cfa, rgb.shape[-2], rgb.shape[-1], device=rgb.device, dtype=rgb.dtype)
    return (rgb * masks).sum(dim=1, keepdim=True)


def add_noise(
    image: torch.Tensor,
    shot_noise: float | torch.Tensor,
    read_noise: float | torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Add heteroscedastic Gaussian noise of variance ``shot · x + read`` (Brooks et al.'s sensor model).

    Args:
        image: ``(B, C, H, W)`` normalised signal ``x`` (0 = black, 1 = white level).
        shot_noise, read_noise: variances as scalars or ``(B,)`` tensors.
        generator: the seeded source of randomness (required: global random state is never used).

    Returns:
        The noisy signal (not clipped: a real sensor records values below black).
    """
    if not isinstance(generator, torch.Generator):
        raise UnispError("add_noise needs a seeded torch.Generator")
    shot, read = (_per_image(v, image) for v in (shot_noise, read_noise))
    if shot.ndim == 1:  # one level per image of the batch
        shot = shot.reshape(-1, *([1] * (image.ndim - 1)))
    if read.ndim == 1:
        read = read.reshape(-1, *([1] * (image.ndim - 1)))
    variance = (image.clamp_min(0.0) * shot + read).clamp_min(0.0)
    noise = torch.randn(image.shape, generator=generator, dtype=image.dtype, device=image.device)
    return image + noise * variance.sqrt()


def quantize(
    mosaic: torch.Tensor, bits: int, black_level: float, white_level: float | None = None
) -> torch.Tensor:
    """Normalised signal → integer sensor counts ``round(black + x · (white − black))``.

    ``x = 0`` maps to the black level and ``x = 1`` to the white level (``2^bits − 1`` unless given);
    the result is clipped to the ADC's range ``[0, 2^bits − 1]``, so noise may go below black
    down to 0, as in a real sensor's footroom. Rounds half to even.

    Args:
        mosaic: any-shape normalised signal (1 = white).
        bits: ADC bit depth, 1 to 16.
        black_level: count recorded for no light (may be fractional, as a measured mean black is).
        white_level: count recorded at saturation (default ``2^bits − 1``).

    Returns:
        ``torch.int32`` tensor of ``mosaic``'s shape.

    Example:
        >>> quantize(torch.tensor([0.0, 1.0]), bits=10, black_level=64)
        tensor([  64, 1023], dtype=torch.int32)
    """
    if not 1 <= int(bits) <= 16:
        raise ConfigError(f"bit depth must be between 1 and 16, got {bits}")
    peak = 2 ** int(bits) - 1
    white = peak if white_level is None else white_level
    if not 0 <= black_level < white <= peak:
        raise ConfigError(f"need 0 ≤ black ({black_level}) < white ({white}) ≤ {peak} for {bits}-bit data")
    counts = torch.round(black_level + mosaic.double() * (white - black_level))
    return counts.clamp(0, peak).to(torch.int32)


def _number(value: Any, name: str) -> int | float:
    """A finite number, as an int when it is whole (so JSON shows 64, not 64.0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"sensor model: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"sensor model: {name} must be finite, got {value!r}")
    return int(number) if number.is_integer() else number


def _matrix(value: Any, name: str) -> torch.Tensor:
    try:
        m = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"sensor model: {name} must be a 3×3 matrix of numbers") from None
    if m.shape != (3, 3) or not torch.isfinite(m).all():
        raise ConfigError(f"sensor model: {name} must be a finite 3×3 matrix, got shape {tuple(m.shape)}")
    return m


@dataclass(eq=False)
class SensorModel:
    """A synthetic camera: the parameters :func:`unprocess` inverts and stores.

    Attributes:
        cfa: Bayer pattern of the mosaic.
        bits: ADC bit depth (8 to 16).
        black_level: count for no light (the same for all four CFA channels); an int when whole.
        white_level: count at saturation; ``None`` means ``2^bits − 1``.
        rgb2cam: ``3×3`` linear sRGB → white-balanced camera RGB (rows sum to 1).
        cam2rgb: its inverse (the matrix a camera records as camera → sRGB); computed if ``None``.
        rgb_gain: digital brightening (exposure) gain the camera's processing applies.
        red_gain, blue_gain: white-balance gains (green 1) before brightening.
        shot_noise, read_noise: noise variances for a signal normalised to [0, 1]; 0 = noise-free.
        tone_curve: whether the photo went through the smoothstep tone curve (and so is inverted).
    """

    cfa: CFA | str = CFA.RGGB
    bits: int = 10
    black_level: float = DEFAULT_BLACK_LEVEL_10BIT
    white_level: int | None = None
    rgb2cam: torch.Tensor = field(default_factory=lambda: torch.eye(3, dtype=torch.float64))
    cam2rgb: torch.Tensor | None = None
    rgb_gain: float = 1.0
    red_gain: float = 1.0
    blue_gain: float = 1.0
    shot_noise: float = 0.0
    read_noise: float = 0.0
    tone_curve: bool = True

    def __post_init__(self) -> None:
        try:
            self.cfa = CFA.parse(self.cfa)
        except UnispError as e:
            raise ConfigError(f"sensor model: {e}") from None
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise ConfigError(f"sensor model: bits must be an integer, got {self.bits!r}")
        self.bits = int(self.bits)
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ConfigError(f"sensor model: bits must be between {MIN_BITS} and {MAX_BITS}, got {self.bits}")
        peak = 2**self.bits - 1
        self.white_level = peak if self.white_level is None else int(self.white_level)
        self.black_level = _number(self.black_level, "black_level")
        if not 0 <= self.black_level < self.white_level <= peak:
            raise ConfigError(
                f"sensor model: need 0 ≤ black ({self.black_level}) < white ({self.white_level}) ≤ {peak}"
            )
        self.rgb2cam = _matrix(self.rgb2cam, "rgb2cam")
        if abs(float(torch.linalg.det(self.rgb2cam))) < 1e-9:
            raise ConfigError("sensor model: rgb2cam is singular")
        self.cam2rgb = torch.linalg.inv(self.rgb2cam) if self.cam2rgb is None else _matrix(self.cam2rgb, "cam2rgb")
        for name in ("rgb_gain", "red_gain", "blue_gain"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"sensor model: {name} must be a positive number, got {value}")
            setattr(self, name, value)
        for name in ("shot_noise", "read_noise"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"sensor model: {name} must be a non-negative number, got {value}")
            setattr(self, name, value)
        self.tone_curve = bool(self.tone_curve)

    @classmethod
    def random(
        cls,
        generator: torch.Generator,
        *,
        cfa: CFA | str = CFA.RGGB,
        bits: int = 10,
        black_level: float | None = None,
        noise: bool = True,
        tone_curve: bool = True,
    ) -> SensorModel:
        """Sample a camera from Brooks et al.'s distributions (:mod:`unisp.synth.camera`).

        The colour matrix, gains and noise levels are always drawn, in that order, so a seed gives
        the same colours with ``noise=False`` as with ``noise=True`` (the levels are then set to 0).

        Args:
            generator: the seeded source of randomness.
            cfa, bits, tone_curve: fixed sensor properties.
            black_level: default :func:`default_black_level` of ``bits``.
            noise: whether the camera adds shot and read noise.
        """
        rgb2cam = random_ccm(generator)
        gains = random_gains(generator)
        levels = random_noise_levels(generator)
        return cls(
            cfa=cfa,
            bits=bits,
            black_level=default_black_level(bits) if black_level is None else black_level,
            rgb2cam=rgb2cam,
            rgb_gain=gains.rgb_gain,
            red_gain=gains.red_gain,
            blue_gain=gains.blue_gain,
            shot_noise=levels.shot if noise else 0.0,
            read_noise=levels.read if noise else 0.0,
            tone_curve=tone_curve,
        )

    @property
    def wb_gains(self) -> tuple[float, float, float]:
        """``(R, G, B)`` gains an ISP multiplies the raw by: white balance times brightening.

        They include ``rgb_gain``, so green is ``rgb_gain``, not 1: rendering with them brings the
        photo's brightness back, as a camera's digital gain would.
        """
        return (self.rgb_gain * self.red_gain, self.rgb_gain, self.rgb_gain * self.blue_gain)

    @property
    def has_noise(self) -> bool:
        return self.shot_noise > 0 or self.read_noise > 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (only str, int, float, bool and lists) that :meth:`from_dict` reads back exactly."""
        return {
            "cfa": self.cfa.value,
            "bits": self.bits,
            "black_level": self.black_level,
            "white_level": self.white_level,
            "rgb2cam": self.rgb2cam.tolist(),
            "cam2rgb": self.cam2rgb.tolist(),
            "rgb_gain": self.rgb_gain,
            "red_gain": self.red_gain,
            "blue_gain": self.blue_gain,
            "shot_noise": self.shot_noise,
            "read_noise": self.read_noise,
            "tone_curve": self.tone_curve,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorModel:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"sensor model must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        missing = [k for k in _FIELDS if k not in data]
        if unknown or missing:
            raise ConfigError(f"sensor model: unknown keys {unknown}, missing keys {missing}")
        return cls(**data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SensorModel):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def unprocess_rgb(rgb: torch.Tensor, model: SensorModel) -> torch.Tensor:
    """sRGB photos → the linear camera RGB the sensor saw (all steps before mosaicking).

    Args:
        rgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        model: the camera.

    Returns:
        ``(B, 3, H, W)`` raw camera RGB in [0, 1] (1 = white level), before white balance.
    """
    image = rgb.clamp(0.0, 1.0)
    if model.tone_curve:
        image = inverse_tone(image)
    image = gamma_expansion(image)
    image = apply_ccm(image, model.rgb2cam)
    image = safe_invert_gains(image, model.rgb_gain, model.red_gain, model.blue_gain)
    return image.clamp(0.0, 1.0)


def unprocess(rgb: torch.Tensor, model: SensorModel, generator: torch.Generator | None = None) -> RawFrame:
    """Turn an sRGB photo into the RAW frame ``model``'s camera would have recorded.

    Odd heights or widths are cropped to even first (dropping the last row/column).

    Args:
        rgb: ``(3, H, W)`` sRGB in [0, 1].
        model: the camera.
        generator: the seeded source of the noise (needed only when ``model`` has noise).

    Returns:
        A :class:`RawFrame` with the quantised mosaic and what a camera records: black and white
        levels, ``wb_gains = model.wb_gains`` (brightening included, so not normalised to G = 1)
        and ``cam_to_srgb = model.cam2rgb``; all marked as coming from metadata.
    """
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise UnispError(f"unprocess needs a (3, H, W) sRGB image, got shape {tuple(rgb.shape)}")
    if rgb.shape[1] < 2 or rgb.shape[2] < 2:
        raise UnispError(f"image of {rgb.shape[2]}×{rgb.shape[1]} is smaller than one 2×2 CFA tile")
    if model.has_noise and generator is None:
        raise UnispError("unprocess: a noisy sensor model needs a seeded torch.Generator")
    rgb = crop_to_even(rgb.float())
    signal = mosaic(unprocess_rgb(rgb[None], model), model.cfa)
    if model.has_noise:
        signal = add_noise(signal, model.shot_noise, model.read_noise, generator)
    counts = quantize(signal, model.bits, model.black_level, model.white_level)
    metadata = ("cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb")
    return RawFrame(
        mosaic=counts[0, 0].numpy().astype(np.uint16),
        cfa=model.cfa,
        black_level=(float(model.black_level),) * 4,
        white_level=float(model.white_level),
        wb_gains=model.wb_gains,
        cam_to_srgb=model.cam2rgb.numpy().copy(),
        sources={key: Source.METADATA for key in metadata},
    )
