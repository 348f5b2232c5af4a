"""The values a RAW file is read with besides its own metadata: a sensor's calibration and geometry.

A file may not say what it needs (a headerless dump has no size, no CFA, no levels) or may say
it wrong; these values fill it in or override it. They come from four places, each validated
here by :meth:`RawOptions.from_mapping`, whatever the origin, with errors naming the flag, the
recipe key, the camera file's key or the model file's header field:

- the command line: ``--cfa --black --white --width --height --bits``, marked ``user``;
- a recipe: ``data.cfa`` … ``data.bits``, marked ``user``;
- a camera file (``--camera FILE.yaml``, ``data.camera``; :func:`read_camera_file`): those six
  and ``colour_matrix``, ``wb_gains``, marked ``camera``;
- a model file: its header's ``raw_input``, the values it was trained with, marked as they were then.

Precedence, lowest first: the file's own metadata, a model file's ``raw_input``, a camera file,
the flags (or the recipe's own keys). A value given at one level replaces the same value below
it; ``bits`` given without ``white`` also replaces a lower level's ``white`` (a bit depth sets
the white level, ``2**bits − 1``). A camera file overrides the metadata of every file read with
it, for the values it gives: it is the engineer's calibration of the sensor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from unisp.config import read_config_file
from unisp.errors import ConfigError, RawFormatError
from unisp.raw.bayer import CFA
from unisp.raw.calibration import colour_matrix_problem, wb_gains_problem
from unisp.raw.frame import Source

#: The values, in the order they are listed (in messages, :meth:`RawOptions.to_dict`, logs).
KEYS: tuple[str, ...] = ("cfa", "black", "white", "width", "height", "bits", "colour_matrix", "wb_gains")
#: The values flags and recipe keys give; the colour values come only from a camera file.
FLAG_KEYS: tuple[str, ...] = KEYS[:6]
#: Keys of :meth:`RawOptions.to_dict` besides the values: the camera file's path and the keys it gave.
PROVENANCE_KEYS: tuple[str, ...] = ("camera", "from_camera")
#: Inclusive bounds of the integer values (None: no upper bound). A mosaic of 1 pixel is refused
#: by :class:`~unisp.raw.frame.RawFrame` with the file's name; samples are at most 16 bits (the
#: uint16 mosaic every reader returns).
INTEGER_BOUNDS: dict[str, tuple[int, int | None]] = {"width": (1, None), "height": (1, None), "bits": (1, 16)}
#: The :class:`~unisp.raw.frame.RawFrame` field each calibration value sets (``white`` also from ``bits``).
FRAME_FIELDS: dict[str, str] = {
    "cfa": "cfa", "black": "black_level", "white": "white_level", "colour_matrix": "cam_to_srgb", "wb_gains": "wb_gains",
}


def flag_name(key: str) -> str:
    """How messages name a value given on the command line (or to :func:`unisp.raw.io.read_raw`): ``--bits``."""
    return f"--{key}"


@dataclass(frozen=True)
class RawOptions:
    """Calibration and geometry to read RAW files with; None where not given.

    Build one with :meth:`from_mapping` (or :func:`read_camera_file`, :func:`options_from_flags`),
    which validate; the constructor takes values already parsed.

    Attributes:
        cfa: Bayer pattern.
        black: per-plane black levels in canonical ``(R, Gr, Gb, B)`` order.
        white: white (saturation) level.
        width, height: size in pixels of a headerless file.
        bits: bit depth: the sample size of a headerless file, and the white level ``2**bits − 1``
            when ``white`` is not given.
        colour_matrix: camera → linear sRGB, 3×3 rows (a camera file only).
        wb_gains: white-balance gains ``(R, G, B)`` (a camera file only).
        camera: the camera file the values of ``from_camera`` came from.
        from_camera: the keys whose value came from a camera file (marked :attr:`Source.CAMERA`;
            the others :attr:`Source.USER`).

    Example:
        >>> RawOptions.from_mapping({"cfa": "bggr", "black": 256, "bits": 12}).white_level
        4095.0
    """

    cfa: CFA | None = None
    black: tuple[float, float, float, float] | None = None
    white: float | None = None
    width: int | None = None
    height: int | None = None
    bits: int | None = None
    colour_matrix: tuple[tuple[float, float, float], ...] | None = None
    wb_gains: tuple[float, float, float] | None = None
    camera: str | None = None
    from_camera: frozenset[str] = frozenset()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], name: Callable[[str], str] = flag_name) -> RawOptions:
        """Validated options from plain values: flags, a recipe's keys, a camera file, a header section.

        Args:
            values: any of :data:`KEYS` (None or absent: not given), and the :data:`PROVENANCE_KEYS`
                that :meth:`to_dict` writes. ``black`` is one number, four, or a comma-separated string.
            name: how messages name a key (``--bits``, ``config key 'data.bits'``, ...).

        Raises:
            ConfigError: an unknown key or an invalid value, naming it with ``name``.
        """
        unknown = [key for key in values if key not in KEYS + PROVENANCE_KEYS]
        if unknown:
            raise ConfigError(f"{name(unknown[0])} is not a RAW input value (known: {', '.join(KEYS)})")
        parsed = {key: _PARSERS[key](values[key], name(key)) for key in KEYS if values.get(key) is not None}
        options = cls(**parsed, **_parse_provenance(values, parsed, name))
        options._check_levels(name)
        return options

    def to_dict(self) -> dict[str, Any]:
        """The values given, as JSON data (what a model file's ``raw_input`` holds); :meth:`from_mapping` reads it back."""
        out: dict[str, Any] = {key: _json(getattr(self, key)) for key in self.given()}
        if self.from_camera:
            out["camera"] = self.camera
            out["from_camera"] = [key for key in KEYS if key in self.from_camera]
        return out

    def given(self) -> tuple[str, ...]:
        """The keys of :data:`KEYS` that have a value."""
        return tuple(key for key in KEYS if getattr(self, key) is not None)

    def replaced_by(self, over: RawOptions) -> tuple[str, ...]:
        """The keys given here that ``self.merged(over)`` takes from ``over``: those it gives, and
        ``white`` when it gives ``bits`` without ``white`` (its bit depth sets the white level)."""
        bits_alone = over.bits is not None and over.white is None
        return tuple(k for k in self.given() if getattr(over, k) is not None or (k == "white" and bits_alone))

    def merged(self, over: RawOptions) -> RawOptions:
        """These options with every value ``over`` gives put in their place (see :meth:`replaced_by`)."""
        replaced = set(self.replaced_by(over))
        kept = set(self.given()) - replaced
        values = {key: getattr(self if key in kept else over, key) for key in KEYS}
        from_camera = frozenset(over.from_camera | (self.from_camera - replaced))
        camera = over.camera if over.from_camera else self.camera if from_camera else None
        return RawOptions(**values, camera=camera, from_camera=from_camera)

    def source(self, key: str) -> Source:
        """Where the value of ``key`` came from: :attr:`Source.CAMERA` or :attr:`Source.USER`."""
        return Source.CAMERA if key in self.from_camera else Source.USER

    @property
    def white_level(self) -> float | None:
        """The white level given: ``white``, else ``2**bits − 1`` when ``bits`` is given, else None."""
        if self.white is not None:
            return self.white
        return None if self.bits is None else float(2**self.bits - 1)

    def calibration(self) -> dict[str, tuple[Any, Source]]:
        """The :class:`~unisp.raw.frame.RawFrame` fields these options set: ``{field: (value, source)}``."""
        out = {FRAME_FIELDS[k]: (getattr(self, k), self.source(k)) for k in FRAME_FIELDS if getattr(self, k) is not None}
        if self.white is None and self.bits is not None:
            out["white_level"] = (self.white_level, self.source("bits"))
        return out

    def missing(self, keys: Sequence[str]) -> tuple[str, ...]:
        """Those of ``keys`` not given (``white`` counts as given when ``bits`` is)."""
        return tuple(k for k in keys if getattr(self, k) is None and not (k == "white" and self.bits is not None))

    def describe(self, keys: Sequence[str] | None = None) -> str:
        """One line: ``cfa BGGR, black (256, 256, 256, 256), bits 12 [camera]``, for ``keys`` (default: all given)."""
        parts = []
        for key in self.given() if keys is None else keys:
            mark = " [camera]" if key in self.from_camera else ""
            parts.append(f"{key} {_shown(getattr(self, key))}{mark}")
        return ", ".join(parts) or "nothing"

    def _check_levels(self, name: Callable[[str], str]) -> None:
        """Refuse a white level at or below a black level, when both are given."""
        if self.black is not None and self.white_level is not None and not max(self.black) < self.white_level:
            which = name("white") if self.white is not None else f"{name('bits')} (white {self.white_level:g})"
            levels = ", ".join(f"{b:g}" for b in self.black)
            raise ConfigError(f"{which} must exceed every black level of {name('black')} ({levels})")


def _json(value: Any) -> Any:
    """A parsed value as JSON data: a CFA by name, tuples as lists."""
    if isinstance(value, CFA):
        return value.value
    return [_json(v) for v in value] if isinstance(value, tuple) else value


def _shown(value: Any) -> str:
    """A value as :meth:`RawOptions.describe` prints it: ``BGGR``, ``(256, 256, 256, 256)``, ``12``."""
    if isinstance(value, CFA):
        return value.value
    if isinstance(value, tuple):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------- value parsers


def _real(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return float(value)


def _parse_cfa(value: Any, name: str) -> CFA:
    try:
        return CFA.parse(value)
    except RawFormatError as e:
        raise ConfigError(f"{name}: {e}") from None


def _parse_black(value: Any, name: str) -> tuple[float, float, float, float]:
    """One number, four in ``(R, Gr, Gb, B)`` order, or those as a comma-separated string (``--black 64,60,61,62``)."""
    if isinstance(value, str):
        levels = [_decimal(v) for v in value.split(",")]
    else:
        levels = [_real(v) for v in (list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value])]
    if None in levels:
        raise ConfigError(f"{name} must be one number or four (R, Gr, Gb, B), got {value!r}")
    if len(levels) not in (1, 4):
        raise ConfigError(f"{name} needs 1 or 4 values (R, Gr, Gb, B), got {len(levels)}")
    if not all(math.isfinite(v) and v >= 0 for v in levels):
        raise ConfigError(f"{name} must be finite and ≥ 0, got {value!r}")
    return tuple(levels * 4 if len(levels) == 1 else levels)


def _decimal(text: str) -> float | None:
    """A number written as text (one item of ``--black 64,60,61,62``), else None."""
    try:
        return float(text)
    except ValueError:
        return None


def _parse_white(value: Any, name: str) -> float:
    white = _real(value)
    if white is None or not (math.isfinite(white) and white > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return white


def _integer_parser(key: str) -> Callable[[Any, str], int]:
    low, high = INTEGER_BOUNDS[key]

    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
            limits = f"{low}..{high}" if high is not None else f"≥ {low}"
            raise ConfigError(f"{name} must be an integer {limits}, got {value!r}")
        return int(value)

    return parse


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    """``count`` real numbers from a list or tuple, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    parsed = tuple(_real(v) for v in value)
    return None if None in parsed else parsed


def _parse_colour_matrix(value: Any, name: str) -> tuple[tuple[float, float, float], ...]:
    rows = [_numbers(row, 3) for row in value] if isinstance(value, (list, tuple)) and len(value) == 3 else [None]
    if None in rows:
        raise ConfigError(f"{name} must be 3 rows of 3 numbers (camera RGB → linear sRGB), got {value!r}")
    if problem := colour_matrix_problem(np.array(rows)):
        raise ConfigError(f"{name} cannot be a camera → sRGB matrix: {problem}")
    return tuple(rows)


def _parse_wb_gains(value: Any, name: str) -> tuple[float, float, float]:
    gains = _numbers(value, 3)
    if gains is None:
        raise ConfigError(f"{name} must be 3 numbers (R, G, B), got {value!r}")
    if problem := wb_gains_problem(gains):
        raise ConfigError(f"{name} cannot be white-balance gains: {problem}")
    return gains


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "cfa": _parse_cfa,
    "black": _parse_black,
    "white": _parse_white,
    "width": _integer_parser("width"),
    "height": _integer_parser("height"),
    "bits": _integer_parser("bits"),
    "colour_matrix": _parse_colour_matrix,
    "wb_gains": _parse_wb_gains,
}


def _parse_provenance(values: Mapping[str, Any], parsed: dict[str, Any], name: Callable[[str], str]) -> dict[str, Any]:
    """``camera`` and ``from_camera`` of a :meth:`RawOptions.to_dict`: a path and keys that have a value."""
    camera, keys = values.get("camera"), values.get("from_camera", [])
    if camera is not None and not isinstance(camera, str):
        raise ConfigError(f"{name('camera')} must be a string (the camera file's path), got {camera!r}")
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in parsed for k in keys):
        raise ConfigError(f"{name('from_camera')} must list keys given here ({', '.join(parsed) or 'none'}), got {keys!r}")
    return {"camera": camera if keys else None, "from_camera": frozenset(keys)}


# ------------------------------------------------------------------------------------------ camera files


def read_camera_file(path: str | os.PathLike) -> RawOptions:
    """The values of a per-camera YAML file, each marked as coming from it.

    The file is a mapping of any of :data:`KEYS` (see ``configs/cameras/*.yaml``), read within
    the bounds a recipe is read within (:func:`unisp.config.read_config_file`).

    Raises:
        ConfigError: naming the file, for a file that is missing, too large or not YAML, an unknown
            key, or an invalid value (a colour matrix or gains that cannot be right give the reason).
    """
    path = Path(path)
    data = read_config_file(path, what="camera file")
    unknown = [key for key in data if key not in KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown camera file key {unknown[0]!r} (allowed: {', '.join(KEYS)})")
    options = RawOptions.from_mapping(data, name=lambda key: f"{path}: camera file key {key!r}")
    given = frozenset(options.given())
    return replace(options, camera=str(path) if given else None, from_camera=given)


def options_from_flags(camera: str | os.PathLike | None = None, **flags: Any) -> RawOptions:
    """The command line's values (``cfa=``, ``black=`` …; None: not given) over those of ``--camera FILE``."""
    given = RawOptions.from_mapping(flags)
    return given if camera is None else read_camera_file(camera).merged(given)


__all__ = [
    "FLAG_KEYS",
    "KEYS",
    "RawOptions",
    "flag_name",
    "options_from_flags",
    "read_camera_file",
]
