"""The one in-memory RAW frame type every reader returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from unisp.errors import RawFormatError
from unisp.raw.bayer import CFA, pack


#: Valid EXIF orientation codes (1 = as stored, 3 = 180°, 6 = 90° CW, 8 = 90° CCW; 2, 4, 5, 7 mirrored).
EXIF_ORIENTATIONS: tuple[int, ...] = tuple(range(1, 9))


class Source(str, Enum):
    """Where a frame's calibration value came from (logged so a user can see what was assumed)."""

    METADATA = "metadata"  # read from the file itself (EXIF/DNG/LibRaw, or a sidecar JSON we wrote)
    PRESET = "preset"  # a dataset preset (ZRR, Fujifilm UltraISP)
    CAMERA = "camera"  # a per-camera YAML file (--camera, data.camera): the engineer's calibration, over metadata
    USER = "user"  # given on the command line or in a recipe (or so recorded in a model file's header)
    ASSUMED = "assumed"  # nothing usable said (missing, or invalid and dropped with a warning): a documented default


@dataclass
class RawFrame:
    """A Bayer mosaic with the calibration needed to render it.

    Attributes:
        mosaic: ``(H, W)`` uint16 sensor values, H and W even.
        cfa: the Bayer pattern of ``mosaic``'s top-left 2×2 tile.
        black_level: per-plane black levels in canonical ``(R, Gr, Gb, B)`` order.
        white_level: the saturation value (same units as ``mosaic``).
        wb_gains: as-shot white-balance multipliers ``(R, G, B)``, if known. Camera files give them
            normalised to G = 1; synthetic frames include the digital exposure gain in all three.
        cam_to_srgb: ``3×3`` matrix from white-balanced camera RGB to linear sRGB, if known
            (rows sum to 1, so white stays white).
        orientation: EXIF orientation code (1 = as stored; 3 = 180°; 6 = 90° CW; 8 = 90° CCW).
        path: the file it was read from, if any.
        sources: for each calibration field, where its value came from (see :class:`Source`).

    Example:
        >>> frame = RawFrame(np.full((4, 6), 543, np.uint16), "RGGB", (64,) * 4, 1023)
        >>> frame.packed().shape
        (4, 2, 3)
        >>> round(frame.normalized()[0, 0, 0].item(), 4)  # (543 - 64) / (1023 - 64)
        0.4995
    """

    mosaic: np.ndarray
    cfa: CFA
    black_level: tuple[float, float, float, float]
    white_level: float
    wb_gains: tuple[float, float, float] | None = None
    cam_to_srgb: np.ndarray | None = None
    orientation: int = 1
    path: Path | None = None
    sources: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = f"{self.path}: " if self.path else ""
        if self.orientation not in EXIF_ORIENTATIONS:
            raise RawFormatError(f"{name}EXIF orientation must be 1..8, got {self.orientation!r}")
        self.orientation = int(self.orientation)
        if self.mosaic.ndim != 2:
            raise RawFormatError(f"{name}a Bayer mosaic must be 2-D, got shape {self.mosaic.shape}")
        h, w = self.mosaic.shape
        if h < 2 or w < 2:
            raise RawFormatError(f"{name}mosaic of {h}×{w} is smaller than one 2×2 CFA tile")
        if h % 2 or w % 2:
            self.mosaic = self.mosaic[: h - h % 2, : w - w % 2]
        if self.mosaic.dtype != np.uint16:
            if not np.issubdtype(self.mosaic.dtype, np.integer):
                raise RawFormatError(f"{name}mosaic must hold integers, got {self.mosaic.dtype}")
            if self.mosaic.size and (self.mosaic.min() < 0 or self.mosaic.max() > 65535):
                raise RawFormatError(f"{name}mosaic values outside 0..65535")
            self.mosaic = self.mosaic.astype(np.uint16)
        self.cfa = CFA.parse(self.cfa)
        if len(self.black_level) != 4:
            raise RawFormatError(f"{name}black_level needs 4 values (R, Gr, Gb, B), got {self.black_level}")
        self.black_level = tuple(float(b) for b in self.black_level)
        self.white_level = float(self.white_level)
        if not all(np.isfinite(b) and b >= 0 for b in self.black_level) or not np.isfinite(self.white_level):
            raise RawFormatError(
                f"{name}levels must be finite and black ≥ 0, got black {self.black_level}, white {self.white_level}"
            )
        if not max(self.black_level) < self.white_level:
            raise RawFormatError(
                f"{name}white level {self.white_level:g} must exceed every black level {self.black_level}"
            )
        if self.wb_gains is not None:
            gains = tuple(float(g) for g in self.wb_gains)
            if len(gains) != 3 or not all(np.isfinite(g) and g > 0 for g in gains):
                raise RawFormatError(f"{name}white-balance gains must be 3 positive numbers, got {self.wb_gains}")
            self.wb_gains = gains
        if self.cam_to_srgb is not None:
            self.cam_to_srgb = np.asarray(self.cam_to_srgb, dtype=np.float64)
            if self.cam_to_srgb.shape != (3, 3) or not np.all(np.isfinite(self.cam_to_srgb)):
                raise RawFormatError(f"{name}camera→sRGB matrix must be a finite 3×3, got {self.cam_to_srgb.shape}")

    @property
    def height(self) -> int:
        return int(self.mosaic.shape[0])

    @property
    def width(self) -> int:
        return int(self.mosaic.shape[1])

    def check_white_level(self) -> None:
        """Raise if any sample exceeds the white level (usually a wrong --white or bit depth)."""
        peak = int(self.mosaic.max())
        if peak > self.white_level:
            name = f"{self.path}: " if self.path else ""
            raise RawFormatError(
                f"{name}values above the white level (max {peak} > white {self.white_level:g}); "
                "check the bit depth or pass --white"
            )

    def packed(self) -> np.ndarray:
        """``(4, H/2, W/2)`` uint16 planes in canonical ``(R, Gr, Gb, B)`` order."""
        return pack(self.mosaic, self.cfa)

    def normalized(self, clip: bool = True) -> torch.Tensor:
        """``(4, H/2, W/2)`` float32 tensor ``(x - black_c) / (white - black_c)``, clipped to [0, 1] by default."""
        planes = torch.from_numpy(self.packed().astype(np.float32))
        black = torch.tensor(self.black_level, dtype=torch.float32).view(4, 1, 1)
        out = (planes - black) / (self.white_level - black)
        return out.clamp(0.0, 1.0) if clip else out

    def with_overrides(self, sources: Mapping[str, Source] | None = None, **values) -> RawFrame:
        """A copy with some calibration fields replaced (None: kept), each marked as coming from
        ``sources[field]``, :attr:`Source.USER` when ``sources`` does not say."""
        values = {k: v for k, v in values.items() if v is not None}
        marks = {key: (sources or {}).get(key, Source.USER) for key in values}
        return replace(self, sources={**self.sources, **marks}, **values)

    def describe(self) -> str:
        """One line saying what the frame holds and where each calibration value came from."""
        def src(key: str) -> str:
            return self.sources.get(key, Source.ASSUMED).value

        wb = "unknown" if self.wb_gains is None else "(" + ", ".join(f"{g:.3f}" for g in self.wb_gains) + ")"
        black = ", ".join(f"{b:g}" for b in self.black_level)
        return (
            f"{self.width}×{self.height} {self.cfa.value} [{src('cfa')}], black ({black}) [{src('black_level')}], "
            f"white {self.white_level:g} [{src('white_level')}], wb {wb} [{src('wb_gains')}], "
            f"colour matrix {'known' if self.cam_to_srgb is not None else 'identity'} [{src('cam_to_srgb')}]"
        )
