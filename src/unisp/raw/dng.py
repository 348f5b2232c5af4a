"""Writing a Bayer mosaic as a minimal, valid DNG that LibRaw (and so :func:`unisp.raw.io.read_raw`) opens.

One uncompressed 16-bit CFA image in IFD0 with the tags a raw converter needs: the pattern, the
black and white levels, one D65 colour matrix, the as-shot neutral and the orientation. Tag numbers
and types are those of the DNG 1.4 specification (Adobe, 2012) and TIFF/EP (ISO 12234-2).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from unisp.errors import UnispError
from unisp.fileio import write_bytes
from unisp.raw.bayer import CFA

# TIFF field types (TIFF 6.0, section 2).
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10

# Tag numbers (TIFF 6.0, TIFF/EP, DNG 1.4).
TAG_ORIENTATION = 274
TAG_CFA_REPEAT_PATTERN_DIM = 33421
TAG_CFA_PATTERN = 33422
TAG_DNG_VERSION = 50706
TAG_DNG_BACKWARD_VERSION = 50707
TAG_UNIQUE_CAMERA_MODEL = 50708
TAG_CFA_PLANE_COLOR = 50710
TAG_CFA_LAYOUT = 50711
TAG_BLACK_LEVEL_REPEAT_DIM = 50713
TAG_BLACK_LEVEL = 50714
TAG_WHITE_LEVEL = 50717
TAG_COLOR_MATRIX_1 = 50721
TAG_AS_SHOT_NEUTRAL = 50728
TAG_CALIBRATION_ILLUMINANT_1 = 50778

#: PhotometricInterpretation of a colour filter array image (TIFF/EP).
PHOTOMETRIC_CFA = 32803
#: DNGVersion written, and the oldest reader version it needs (DNGBackwardVersion).
DNG_VERSION = (1, 4, 0, 0)
DNG_BACKWARD_VERSION = (1, 1, 0, 0)
#: CalibrationIlluminant code of CIE D65 (EXIF LightSource table).
ILLUMINANT_D65 = 21
#: CFAPattern colour codes (TIFF/EP): 0 red, 1 green, 2 blue.
_CFA_COLOUR_CODE = {"R": 0, "G": 1, "B": 2}
#: Denominator used to store real numbers as (S)RATIONAL; 1e-6 resolution, |value| < 2147.
RATIONAL_DENOMINATOR = 1_000_000

_SOFTWARE = "unisp"


def write_dng(
    path: str | os.PathLike,
    mosaic: np.ndarray,
    cfa: CFA | str,
    *,
    black_level: float | Sequence[float],
    white_level: int,
    as_shot_neutral: Sequence[float] | None = None,
    colour_matrix: np.ndarray | None = None,
    orientation: int = 1,
    camera_model: str = "unisp synthetic",
) -> None:
    """Write ``mosaic`` as a DNG, atomically.

    LibRaw refuses images under 22 pixels on a side, so keep test mosaics at least that large.

    Args:
        path: the ``.dng`` to write.
        mosaic: ``(H, W)`` integer samples in 0..65535 (stored as uint16).
        cfa: the Bayer pattern of the top-left 2×2 tile.
        black_level: one number, or four in canonical ``(R, Gr, Gb, B)`` order (written with a
            2×2 BlackLevelRepeatDim at their tile positions).
        white_level: the saturation value.
        as_shot_neutral: camera ``(R, G, B)`` of a neutral grey under the shot's light (the inverse of
            the white-balance gains), or None.
        colour_matrix: ``3×3`` XYZ → camera matrix for D65 (ColorMatrix1), or None.
        orientation: EXIF orientation code 1..8.
        camera_model: UniqueCameraModel.

    Raises:
        UnispError: a value out of range; OutputError when the file cannot be written.

    Example:
        >>> import tempfile
        >>> from unisp.raw.dng_tags import read_dng_tags
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "flat.dng"
        ...     write_dng(path, np.full((32, 32), 512, np.uint16), "RGGB", black_level=64, white_level=1023)
        ...     tags = read_dng_tags(path)
        >>> tags.white_level, tags.black_level
        ((1023.0,), (64.0,))
    """
    path = Path(path)
    try:
        cfa = CFA.parse(cfa)
    except UnispError as e:
        raise UnispError(f"{path}: {e}") from None
    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2 or mosaic.dtype.kind not in "ui":
        raise UnispError(f"{path}: DNG mosaic must be a 2-D integer array, got {mosaic.dtype} {mosaic.shape}")
    if mosaic.size and (mosaic.min() < 0 or mosaic.max() > 65535):
        raise UnispError(f"{path}: DNG mosaic values must lie in 0..65535")
    if int(orientation) not in range(1, 9):
        raise UnispError(f"{path}: orientation must be an EXIF code 1..8, got {orientation}")
    if float(white_level) != int(white_level) or not 0 < int(white_level) <= 65535:
        raise UnispError(f"{path}: white level must be an integer in 1..65535, got {white_level}")

    tags = [
        (TAG_DNG_VERSION, _BYTE, 4, DNG_VERSION, True),
        (TAG_DNG_BACKWARD_VERSION, _BYTE, 4, DNG_BACKWARD_VERSION, True),
        (TAG_UNIQUE_CAMERA_MODEL, _ASCII, 0, camera_model, True),
        (TAG_CFA_REPEAT_PATTERN_DIM, _SHORT, 2, (2, 2), True),
        (TAG_CFA_PATTERN, _BYTE, 4, tuple(_CFA_COLOUR_CODE[c] for c in cfa.value), True),
        (TAG_CFA_PLANE_COLOR, _BYTE, 3, (0, 1, 2), True),
        (TAG_CFA_LAYOUT, _SHORT, 1, 1, True),  # 1 = rectangular
        *_black_level_tags(path, black_level, cfa),
        (TAG_WHITE_LEVEL, _LONG, 1, int(white_level), True),
        (TAG_ORIENTATION, _SHORT, 1, int(orientation), True),
    ]
    if colour_matrix is not None:
        matrix = np.asarray(colour_matrix, dtype=np.float64)
        if matrix.shape != (3, 3):
            raise UnispError(f"{path}: colour matrix must be 3×3, got {matrix.shape}")
        tags.append((TAG_COLOR_MATRIX_1, _SRATIONAL, 9, _rationals(path, matrix.ravel(), signed=True), True))
        tags.append((TAG_CALIBRATION_ILLUMINANT_1, _SHORT, 1, ILLUMINANT_D65, True))
    if as_shot_neutral is not None:
        neutral = [float(v) for v in as_shot_neutral]
        if len(neutral) != 3 or not all(math.isfinite(v) and v > 0 for v in neutral):
            raise UnispError(f"{path}: as-shot neutral must be 3 positive numbers, got {as_shot_neutral}")
        tags.append((TAG_AS_SHOT_NEUTRAL, _RATIONAL, 3, _rationals(path, neutral, signed=False), True))

    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(mosaic, dtype=np.uint16),
        photometric=PHOTOMETRIC_CFA,
        subfiletype=0,  # NewSubfileType 0: the main (raw) image
        compression=None,
        software=_SOFTWARE,
        metadata=None,
        extratags=tags,
    )
    write_bytes(path, buffer.getvalue())


def _black_level_tags(path: Path, black_level: float | Sequence[float], cfa: CFA) -> list[tuple]:
    """BlackLevel (LONG, or RATIONAL for fractions), per tile position with a 2×2 repeat when 4 values."""
    values = [float(black_level)] if np.isscalar(black_level) else [float(v) for v in black_level]
    if len(values) not in (1, 4) or not all(math.isfinite(v) and v >= 0 for v in values):
        raise UnispError(f"{path}: black level must be 1 or 4 numbers ≥ 0, got {black_level}")
    tags = []
    if len(values) == 4:
        tile = np.zeros((2, 2))
        for (r, c), level in zip(cfa.offsets, values):
            tile[r, c] = level
        values = tile.ravel().tolist()  # row by row, as BlackLevel with BlackLevelRepeatDim (2, 2) is read
        tags.append((TAG_BLACK_LEVEL_REPEAT_DIM, _SHORT, 2, (2, 2), True))
    if all(v == int(v) for v in values):
        tags.append((TAG_BLACK_LEVEL, _LONG, len(values), tuple(int(v) for v in values), True))
    else:
        tags.append((TAG_BLACK_LEVEL, _RATIONAL, len(values), _rationals(path, values, signed=False), True))
    return tags


def _rationals(path: Path, values: Sequence[float], *, signed: bool) -> tuple[int, ...]:
    """Flat (numerator, denominator, ...) pairs with :data:`RATIONAL_DENOMINATOR`."""
    limit = 2**31 - 1 if signed else 2**32 - 1
    out: list[int] = []
    for value in values:
        numerator = round(float(value) * RATIONAL_DENOMINATOR) if math.isfinite(value) else None
        if numerator is None or abs(numerator) > limit or (not signed and numerator < 0):
            raise UnispError(f"{path}: value {value} cannot be stored as a DNG rational")
        out += [numerator, RATIONAL_DENOMINATOR]
    return tuple(out)


__all__ = ["write_dng"]
