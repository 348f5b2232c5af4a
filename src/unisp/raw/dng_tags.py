"""The DNG tags :func:`unisp.raw.io.read_raw` reads and checks itself instead of trusting LibRaw.

LibRaw decodes every DNG, but turns some malformed tags into plausible values without a word: an
invalid Orientation (0, 99) becomes a 90° or 180° turn, a WhiteLevel of 0 becomes 65535, a
rational with a zero denominator is read as if the denominator were 1, a BlackLevel whose repeat
pattern is larger than 2×2 is collapsed to its minimum, one with too few values becomes 0.
:func:`read_dng_tags` reads those tags with tifffile; each check below takes LibRaw's value and
returns it, or the documented replacement with a warning naming the file, or raises
:class:`~unisp.errors.RawFormatError` (one line naming the file) where nothing sensible can replace it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from unisp.errors import RawFormatError
from unisp.raw.bayer import CFA
from unisp.raw.calibration import wb_gains_problem
from unisp.raw.dng import (
    PHOTOMETRIC_CFA,
    TAG_AS_SHOT_NEUTRAL,
    TAG_BLACK_LEVEL,
    TAG_BLACK_LEVEL_REPEAT_DIM,
    TAG_CFA_PATTERN,
    TAG_CFA_PLANE_COLOR,
    TAG_COLOR_MATRIX_1,
    TAG_ORIENTATION,
    TAG_WHITE_LEVEL,
)
from unisp.raw.frame import EXIF_ORIENTATIONS, Source

logger = logging.getLogger(__name__)

# Tags only read (DNG 1.4 specification).
TAG_BLACK_LEVEL_DELTA_H = 50715
TAG_BLACK_LEVEL_DELTA_V = 50716
TAG_COLOR_MATRIX_2 = 50722
TAG_CAMERA_CALIBRATION_1 = 50723
TAG_CAMERA_CALIBRATION_2 = 50724
TAG_ANALOG_BALANCE = 50727

#: The tags LibRaw combines into a DNG's camera → sRGB matrix, by name (for messages).
COLOUR_MATRIX_TAGS: dict[int, str] = {
    TAG_COLOR_MATRIX_1: "ColorMatrix1",
    TAG_COLOR_MATRIX_2: "ColorMatrix2",
    TAG_CAMERA_CALIBRATION_1: "CameraCalibration1",
    TAG_CAMERA_CALIBRATION_2: "CameraCalibration2",
    TAG_ANALOG_BALANCE: "AnalogBalance",
}
#: Colour planes of a DNG without a CFAPlaneColor tag (the DNG specification's default: R, G, B).
DEFAULT_CFA_PLANES = 3
#: TIFF field types holding a numerator/denominator pair per value: RATIONAL and SRATIONAL.
_RATIONAL_TYPES = (5, 10)
#: BlackLevelRepeatDim rows and columns LibRaw reduces exactly to per-channel levels (it collapses a
#: larger repeat to its minimum, so :func:`black_level` computes those itself).
LIBRAW_EXACT_BLACK_REPEAT = 2


# ----------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DngTags:
    """The tags of one DNG that the reader checks; numbers are floats, a rational ``n/0`` is NaN.

    Attributes:
        orientations: every Orientation tag in the file (any IFD), as stored.
        cfa_patterns: for each IFD with a CFAPattern, its colour codes and its number of colour planes.
        bits_per_sample: BitsPerSample of the raw (CFA) image.
        white_level: WhiteLevel of the raw image, or None when absent.
        black_repeat: BlackLevelRepeatDim ``(rows, cols)`` of the raw image (the default is 1×1).
        black_level: BlackLevel of the raw image, row by row over the repeat (default: 0).
        black_delta_h: BlackLevelDeltaH, one value per column (empty when absent).
        black_delta_v: BlackLevelDeltaV, one value per row (empty when absent).
        colour: the colour-matrix tags present (see :data:`COLOUR_MATRIX_TAGS`), by name.
        as_shot_neutral: AsShotNeutral, or None when absent.
    """

    orientations: tuple[float, ...] = ()
    cfa_patterns: tuple[tuple[tuple[int, ...], int], ...] = ()
    bits_per_sample: int = 16
    white_level: tuple[float, ...] | None = None
    black_repeat: tuple[float, ...] = (1.0, 1.0)
    black_level: tuple[float, ...] = (0.0,)
    black_delta_h: tuple[float, ...] = ()
    black_delta_v: tuple[float, ...] = ()
    colour: dict[str, tuple[float, ...]] = field(default_factory=dict)
    as_shot_neutral: tuple[float, ...] | None = None


def read_dng_tags(path: Path) -> DngTags | None:
    """The checked tags of the DNG at ``path``, or None when tifffile cannot parse it (LibRaw,
    which reads it next, then reports why).

    tifffile's own log messages (e.g. "0 is not a valid ORIENTATION", which names no file) are
    dropped while reading: the reader reports what matters, naming the file.

    Example:
        >>> import tempfile
        >>> from unisp.raw.dng import write_dng
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "a.dng"
        ...     write_dng(path, np.zeros((32, 32), np.uint16), "RGGB", black_level=64, white_level=1023, orientation=6)
        ...     tags = read_dng_tags(path)
        >>> tags.orientations, tags.cfa_patterns  # CFAPattern codes: 0 red, 1 green, 2 blue
        ((6.0,), (((0, 1, 1, 2), 3),))
        >>> read_dng_tags(Path(folder) / "gone.dng") is None
        True
    """
    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
            pages = [p for top in tif.pages for p in (top, *(top.pages or ()))]
            return _collect(pages)
    except Exception:  # noqa: BLE001 - any parse failure is LibRaw's to report, with its reason
        return None


def _collect(pages: list) -> DngTags:
    """:class:`DngTags` from tifffile pages: IFD0 (``pages[0]``) holds the colour tags, the raw
    image's IFD the level tags (the largest CFA image, the main one first, as LibRaw picks it)."""
    cfa_pages = [p for p in pages if p.photometric == PHOTOMETRIC_CFA]
    raw = max(cfa_pages, key=lambda p: (p.subfiletype == 0, p.imagewidth * p.imagelength), default=pages[0])
    first = pages[0]
    colour = {name: _numbers(first, code) for code, name in COLOUR_MATRIX_TAGS.items() if code in first.tags}
    black_level = _numbers(raw, TAG_BLACK_LEVEL)
    return DngTags(
        orientations=tuple(_first(_numbers(p, TAG_ORIENTATION)) for p in pages if TAG_ORIENTATION in p.tags),
        cfa_patterns=tuple(
            (tuple(bytes(p.tags[TAG_CFA_PATTERN].value)), _plane_count(p)) for p in pages if TAG_CFA_PATTERN in p.tags
        ),
        bits_per_sample=int(raw.bitspersample),
        white_level=_numbers(raw, TAG_WHITE_LEVEL),
        black_repeat=_numbers(raw, TAG_BLACK_LEVEL_REPEAT_DIM) or (1.0, 1.0),
        black_level=black_level if black_level is not None else (0.0,),
        black_delta_h=_numbers(raw, TAG_BLACK_LEVEL_DELTA_H) or (),
        black_delta_v=_numbers(raw, TAG_BLACK_LEVEL_DELTA_V) or (),
        colour=colour,
        as_shot_neutral=_numbers(first, TAG_AS_SHOT_NEUTRAL),
    )


def _first(values: tuple[float, ...]) -> float:
    """The first value of a tag, NaN when it holds none."""
    return values[0] if values else math.nan


def _plane_count(page) -> int:
    if TAG_CFA_PLANE_COLOR in page.tags:
        return len(page.tags[TAG_CFA_PLANE_COLOR].value)
    return DEFAULT_CFA_PLANES


def _numbers(page, code: int) -> tuple[float, ...] | None:
    """A tag's values as floats, or None when absent.

    A rational with a zero denominator is NaN, and so is a tag that holds no numbers (e.g. text):
    the checks then see an invalid value rather than a missing one.
    """
    if code not in page.tags:
        return None
    tag = page.tags[code]
    try:
        values = tuple(tag.value)
    except TypeError:
        values = (tag.value,)
    try:
        if int(tag.dtype) in _RATIONAL_TYPES:
            return tuple(n / d if d else math.nan for n, d in zip(values[0::2], values[1::2]))
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return (math.nan,)


class _DropAll(logging.Filter):
    """A logging filter that drops every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _tifffile_quiet() -> Iterator[None]:
    """Drop tifffile's log records for the duration (a filter on its logger, removed afterwards)."""
    quiet = _DropAll()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addFilter(quiet)
    try:
        yield
    finally:
        tiff_logger.removeFilter(quiet)


# ------------------------------------------------------------------------------------------------ checks


def check_cfa_pattern(path: Path, tags: DngTags) -> None:
    """Refuse a DNG whose CFAPattern names a colour plane the file does not have.

    LibRaw looks such a colour up in a table it leaves uninitialised for that index (``tab`` in its
    ``parse_tiff_ifd``), so the CFA it returns depends on what the stack held before: a pattern
    (0, 1, 1, 7) read as an invalid RGGR when read alone, and once, inside the whole test suite,
    as RGGB. The tags themselves are checked instead.
    """
    for colours, n_planes in tags.cfa_patterns:
        if any(c >= n_planes for c in colours):
            raise RawFormatError(
                f"{path}: unsupported sensor layout: colour filter pattern {colours} "
                f"names a colour plane the file does not have ({n_planes} planes)"
            )


def orientation_is_valid(path: Path, tags: DngTags) -> bool:
    """True when every Orientation tag is an EXIF code 1..8; else a warning, and the caller uses
    the image as stored (orientation 1) instead of LibRaw's reading.

    LibRaw maps any value through ``"50132467"[value & 7]``, so 0 would turn the image by 90°, 99 by
    180° and 65535 would read as a mirroring.
    """
    invalid = [value for value in tags.orientations if value not in EXIF_ORIENTATIONS]
    if invalid:
        logger.warning("%s: invalid EXIF orientation %g (valid: 1..8); using the image as stored", path, invalid[0])
    return not invalid


def white_level(path: Path, tags: DngTags, white: float) -> tuple[float, Source]:
    """The white level and its source: LibRaw's, unless the WhiteLevel tag is invalid.

    A WhiteLevel outside ``1 .. 2**BitsPerSample - 1`` (LibRaw reads 0 as 65535, and clips larger
    values) is replaced, with a warning, by the DNG specification's default for a missing one,
    ``2**BitsPerSample - 1``, marked assumed. A level at or below the black level is refused by
    :class:`RawFrame`.
    """
    default = float(2**tags.bits_per_sample - 1)
    stored = math.nan if tags.white_level is None else tags.white_level[0]
    if tags.white_level is None or 0 < stored <= default:
        return white, Source.METADATA
    logger.warning(
        "%s: invalid DNG WhiteLevel %g (must be 1..%d for %d-bit samples); using the DNG default %d "
        "(pass --white if the image looks dark)",
        path, stored, default, tags.bits_per_sample, default,
    )
    return default, Source.ASSUMED


def black_level(path: Path, tags: DngTags, cfa: CFA, shape: tuple[int, int], black: tuple) -> tuple:
    """Per-plane black levels: LibRaw's where it reads them exactly, else computed from the tags.

    LibRaw reduces a BlackLevelRepeatDim up to 2×2 exactly but collapses a larger repeat (e.g. 4×4)
    to its minimum, and adds the mean of BlackLevelDeltaH/V to every plane. For those the level of
    each CFA position is computed here; when it varies within a position (a repeat that is not
    constant per position, or deltas that differ between rows or columns of one position) its mean
    is used, with a warning.

    Raises:
        RawFormatError: a BlackLevelRepeatDim that is not two positive integers, a BlackLevel whose
            count does not match it, or a level that is not a finite number.
    """
    rows, cols = _black_repeat(path, tags)
    deltas = tags.black_delta_h + tags.black_delta_v
    if not all(math.isfinite(v) for v in tags.black_level + deltas):
        raise RawFormatError(f"{path}: invalid DNG black level: a BlackLevel or BlackLevelDelta value is not a number")
    if rows <= LIBRAW_EXACT_BLACK_REPEAT and cols <= LIBRAW_EXACT_BLACK_REPEAT and not any(deltas):
        return black
    levels, exact = _black_per_cfa_position(tags, rows, cols, cfa, shape)
    if not exact:
        logger.warning(
            "%s: the DNG black level varies within a CFA position (BlackLevelRepeatDim %d×%d%s); "
            "using its mean per position (%s)",
            path, rows, cols, ", BlackLevelDeltaH/V" if any(deltas) else "", ", ".join(f"{v:g}" for v in levels),
        )
    return levels


def _black_repeat(path: Path, tags: DngTags) -> tuple[int, int]:
    """BlackLevelRepeatDim ``(rows, cols)``, checked against the count of BlackLevel values (LibRaw
    reads a BlackLevel of another count as 0, or as its first value)."""
    repeat = tags.black_repeat
    if len(repeat) != 2 or not all(math.isfinite(v) and v == int(v) and v >= 1 for v in repeat):
        shown = "×".join(f"{v:g}" for v in repeat)
        raise RawFormatError(f"{path}: invalid DNG BlackLevelRepeatDim {shown} (must be two positive integers)")
    rows, cols = int(repeat[0]), int(repeat[1])
    if len(tags.black_level) != rows * cols:
        raise RawFormatError(
            f"{path}: invalid DNG black level: BlackLevel has {len(tags.black_level)} value(s) but "
            f"BlackLevelRepeatDim {rows}×{cols} needs {rows * cols}"
        )
    return rows, cols


def _black_per_cfa_position(
    tags: DngTags, rows: int, cols: int, cfa: CFA, shape: tuple[int, int]
) -> tuple[tuple[float, ...], bool]:
    """The mean black level of each CFA position (canonical R, Gr, Gb, B order) over a ``shape``
    image, and whether it is the same at every pixel of each position.

    The level at pixel ``(y, x)`` is ``BlackLevel[y % rows][x % cols] + DeltaH[x] + DeltaV[y]``; a
    position's pixels are those with ``(y % 2, x % 2)`` equal to its tile offset.
    """
    pattern = np.asarray(tags.black_level, dtype=np.float64).reshape(rows, cols)
    delta_h = np.asarray(tags.black_delta_h, dtype=np.float64)
    delta_v = np.asarray(tags.black_delta_v, dtype=np.float64)
    height, width = shape
    levels, exact = [], True
    for dy, dx in cfa.offsets:
        weights = np.outer(
            np.bincount(np.arange(dy, height, 2) % rows, minlength=rows),
            np.bincount(np.arange(dx, width, 2) % cols, minlength=cols),
        )
        used = pattern[weights > 0]
        h, v = delta_h[dx:width:2], delta_v[dy:height:2]
        levels.append(float((pattern * weights).sum() / weights.sum() + _mean(h) + _mean(v)))
        exact = exact and all(values.size == 0 or np.ptp(values) == 0 for values in (used, h, v))
    return tuple(levels), exact


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


def as_shot_neutral(path: Path, tags: DngTags, wb: tuple | None) -> tuple | None:
    """``wb``, or None with a warning when AsShotNeutral is not three positive numbers or gives
    implausible gains (see :func:`~unisp.raw.calibration.wb_gains_problem`).

    LibRaw reads a zero denominator as 1, so (1/0, 1/1, 1/0) would become gains (1, 1, 1); a tiny
    value it drops without a word.
    """
    neutral = tags.as_shot_neutral
    if neutral is None:
        return wb
    if len(neutral) == 3 and all(math.isfinite(v) and v > 0 for v in neutral):
        problem = wb_gains_problem([1 / v for v in neutral])
    else:
        problem = "not three positive numbers"
    if problem is None:
        return wb
    shown = ", ".join(f"{v:g}" for v in neutral)
    logger.warning("%s: ignoring the DNG AsShotNeutral (%s): %s; treating the white balance as unknown",
                   path, shown, problem)
    return None


def colour_matrix(path: Path, tags: DngTags, cam_to_srgb: np.ndarray | None) -> np.ndarray | None:
    """``cam_to_srgb``, or None with a warning when a colour tag LibRaw builds it from holds a
    zero denominator (LibRaw reads it as 1, mixing scales) or no numbers (which LibRaw may skip)."""
    broken = [name for name, values in tags.colour.items() if not all(math.isfinite(v) for v in values)]
    if not broken:
        return cam_to_srgb
    logger.warning("%s: ignoring the colour matrix (%s: zero denominator or not a number); using identity",
                   path, ", ".join(broken))
    return None


__all__ = [
    "COLOUR_MATRIX_TAGS",
    "DngTags",
    "as_shot_neutral",
    "black_level",
    "check_cfa_pattern",
    "colour_matrix",
    "orientation_is_valid",
    "read_dng_tags",
    "white_level",
]
