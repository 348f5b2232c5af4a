"""Reading RAW files of every layout unisp knows into a :class:`~unisp.raw.frame.RawFrame`.

One entry point, :func:`read_raw`, with a ``layout`` that says how the file is stored:

=============  =====================================================================================
``libraw``     any camera RAW LibRaw reads (DNG, CR2, NEF, ARW, RAF Bayer, ORF, RW2, ...) via rawpy
``zrr``        Zurich RAW-to-RGB ``huawei_raw/*.png``: 16-bit RGGB mosaic, 10-bit values
``uispf``      Fujifilm UltraISP ``mediatek_raw/*.png``: 16-bit RGGB mosaic, per-plane black levels
``unisp``      a 16-bit PNG mosaic with a ``NAME.json`` sidecar (what :func:`write_mosaic_png` writes)
``png``        any other one-channel PNG/TIFF mosaic (``--cfa`` and ``--white``/``--bits`` needed)
``npy``        packed ``(H/2, W/2, 4)`` planes or an ``(H, W)`` mosaic saved with ``numpy.save``
``headerless`` ``.raw``/``.bin`` little-endian samples (``--width --height --bits --cfa`` needed)
=============  =====================================================================================

``layout="auto"`` picks one from the extension, the parent folder's name and a sidecar's presence
(see :func:`detect_layout`). Values the file lacks or holds wrong (a headerless dump's size, a
sensor's levels) are given as :class:`~unisp.raw.options.RawOptions`: flags, a recipe's keys, a
camera file, a model file's header. Every frame records in ``frame.sources`` where its CFA, levels,
white balance and colour matrix came from, and one DEBUG line per file says so (``unisp -v``; a
folder read logs one line for the folder: :mod:`unisp.raw.summary`); a value the file
holds but that cannot be right is dropped with a WARNING naming the file (see :func:`read_raw`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import rawpy

from unisp.errors import ConfigError, RawFormatError, UnispError
from unisp.fileio import read_pixels, write_image, write_text
from unisp.raw.bayer import CFA, REFERENCE_INVERSE, from_reference_order, unpack
from unisp.raw.calibration import colour_matrix_problem, wb_gains_problem
from unisp.raw import dng_tags
from unisp.raw.dng_tags import DngTags, read_dng_tags
from unisp.raw.frame import RawFrame, Source
from unisp.raw.options import RawOptions, flag_name

logger = logging.getLogger(__name__)

#: Values accepted for ``read_raw(layout=...)``.
LAYOUTS: tuple[str, ...] = ("auto", "libraw", "zrr", "uispf", "unisp", "png", "npy", "headerless")

#: Orders accepted for the planes of a packed ``.npy``: ours (R, Gr, Gb, B) or the reference (B, Gb, R, Gr).
NPY_ORDERS: tuple[str, ...] = ("canonical", "reference")

#: Linear sRGB (D65) → CIE XYZ, IEC 61966-2-1 primaries; the same numbers as LibRaw's ``xyz_rgb`` table,
#: so that a matrix computed here matches LibRaw's own ``rgb_cam``.
SRGB_TO_XYZ_D65 = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)

#: Zurich RAW-to-RGB (Ignatov et al., 2020): Huawei P20 RGGB mosaics stored as 16-bit PNG with 10-bit
#: values, black level 0 (the dataset code divides by 1023 and subtracts nothing).
ZRR_CFA = CFA.RGGB
ZRR_BLACK_LEVEL = 0.0
ZRR_WHITE_LEVEL = 1023.0
#: Folder names of the Zurich RAW-to-RGB training crops and full-resolution test images.
ZRR_FOLDERS: tuple[str, ...] = ("huawei_raw", "huawei_full_resolution")

#: Fujifilm UltraISP (MAI 2022 challenge): MediaTek RGGB mosaics, 10-bit values in 16-bit PNG.
UISPF_CFA = CFA.RGGB
UISPF_WHITE_LEVEL = 1023.0
#: Black levels as published in the reference code's (B, Gb, R, Gr) packed order.
UISPF_BLACK_LEVEL_REFERENCE: tuple[float, ...] = (62.0, 60.0, 58.0, 61.0)
#: The same black levels in canonical (R, Gr, Gb, B) order: (58, 60, 61, 62).
UISPF_BLACK_LEVEL: tuple[float, ...] = tuple(UISPF_BLACK_LEVEL_REFERENCE[i] for i in REFERENCE_INVERSE)
#: Folder name of the UltraISP RAW images.
UISPF_FOLDERS: tuple[str, ...] = ("mediatek_raw",)

#: White levels tried, smallest first, for an integer ``.npy`` with no --white/--bits (8/10/12/14/16-bit).
NPY_WHITE_LEVELS: tuple[int, ...] = (255, 1023, 4095, 16383, 65535)
#: Full scale a float ``.npy`` in [0, 1] is mapped to.
FLOAT_WHITE_LEVEL = 65535

#: LibRaw ``sizes.flip`` → EXIF orientation (LibRaw maps EXIF 1..8 to flip with "50132467"[code & 7]).
LIBRAW_FLIP_TO_EXIF: dict[int, int] = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
#: EXIF orientations that are pure rotations (the ones a RawFrame carries; mirrored ones are dropped).
ROTATION_ORIENTATIONS: tuple[int, ...] = (1, 3, 6, 8)

#: ``format`` and ``version`` of the sidecar JSON written by :func:`write_mosaic_png`.
SIDECAR_FORMAT = "unisp-raw"
SIDECAR_VERSION = 1
#: Keys the sidecar reserves; ``extra`` may not use them.
SIDECAR_KEYS: tuple[str, ...] = (
    "format", "version", "cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb", "orientation",
    "width", "height",
)

#: Camera RAW extensions handed to LibRaw.
CAMERA_RAW_EXTENSIONS: tuple[str, ...] = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".rwl", ".pef", ".srw", ".3fr", ".fff", ".iiq", ".mos", ".mef", ".mrw", ".erf", ".kdc", ".dcr", ".x3f",
)
#: Image containers that hold a one-channel mosaic.
MOSAIC_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff")
#: Headerless sample dumps.
HEADERLESS_EXTENSIONS: tuple[str, ...] = (".raw", ".bin")
#: The values (keys of :class:`RawOptions`) a file of each layout cannot be read without: a headerless
#: dump holds samples only; a plain PNG/TIFF mosaic its size and samples (``white`` or ``bits``).
REQUIRED_VALUES: dict[str, tuple[str, ...]] = {"headerless": ("width", "height", "bits", "cfa"), "png": ("cfa", "white")}
#: Every extension :func:`find_raw_files` picks up.
RAW_EXTENSIONS: tuple[str, ...] = CAMERA_RAW_EXTENSIONS + MOSAIC_IMAGE_EXTENSIONS + (".npy",) + HEADERLESS_EXTENSIONS

_NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------------------------------- public API


def read_raw(
    path: str | os.PathLike,
    options: RawOptions | None = None,
    *,
    layout: str = "auto",
    cfa: CFA | str | None = None,
    black: float | Sequence[float] | None = None,
    white: float | None = None,
    width: int | None = None,
    height: int | None = None,
    bits: int | None = None,
    npy_order: str = "canonical",
) -> RawFrame:
    """Read one RAW file into a :class:`RawFrame`.

    Args:
        path: the file.
        options: values given by a recipe, a camera file or a model file (see
            :mod:`unisp.raw.options`); they override metadata, and the keyword values below override them.
        layout: one of :data:`LAYOUTS`; ``"auto"`` picks by extension, folder and sidecar.
        cfa: Bayer pattern; overrides metadata (required for ``png`` and ``headerless``).
        black: one number or four in canonical ``(R, Gr, Gb, B)`` order; overrides metadata.
        white: the saturation level; overrides metadata.
        width, height: size in pixels of a headerless file.
        bits: bit depth; sets the white level to ``2**bits - 1`` when ``white`` is not given, and the
            sample size of a headerless file.
        npy_order: plane order of a packed ``.npy``: ``"canonical"`` or ``"reference"``.

    Returns:
        The frame; values given here are marked :attr:`Source.USER` in ``frame.sources``, and those
        of ``options`` as ``options.source(key)`` says (:attr:`Source.CAMERA` for a camera file's).

    Samples above the white level are an error (a wrong bit depth or ``--white``), except against a
    white level LibRaw read from a camera file: cameras often record values past LibRaw's clip
    point, so those are only counted in the log. A float ``.npy`` in [0, 1] is scaled to 0..65535
    first; ``black``/``white`` given for it are in that scale.

    Metadata that is well-formed but cannot be right is never passed on silently. A colour matrix
    or white balance that fails :mod:`unisp.raw.calibration` (any layout), and a DNG's invalid
    Orientation, WhiteLevel, AsShotNeutral or colour tags, are replaced by the documented default
    (identity matrix, unknown white balance, orientation 1, the DNG default white level), marked
    :attr:`Source.ASSUMED`, with a warning naming the file; a DNG black level that cannot be read
    unambiguously is refused (see :mod:`unisp.raw.dng_tags`).

    Raises:
        RawFormatError: a file that is missing, unreadable, of an unsupported kind, or whose values do
            not fit its levels, and missing or invalid flags; the message starts with the file name.
        ConfigError: an unknown ``layout`` or ``npy_order``.
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown RAW layout {layout!r} (allowed: {', '.join(LAYOUTS)})")
    if npy_order not in NPY_ORDERS:
        raise ConfigError(f"unknown npy plane order {npy_order!r} (allowed: {', '.join(NPY_ORDERS)})")
    _check_file(path)
    opts = _with_keywords(path, options, cfa=cfa, black=black, white=white, width=width, height=height, bits=bits)
    chosen = _chosen_layout(path, layout)
    try:
        if chosen == "libraw":
            frame = _read_libraw(path)
        elif chosen == "zrr":
            frame = _read_preset_png(path, ZRR_CFA, (ZRR_BLACK_LEVEL,) * 4, ZRR_WHITE_LEVEL, opts)
        elif chosen == "uispf":
            frame = _read_preset_png(path, UISPF_CFA, UISPF_BLACK_LEVEL, UISPF_WHITE_LEVEL, opts)
        elif chosen == "unisp":
            frame = _read_unisp(path, opts)
        elif chosen == "png":
            frame = _read_plain_image(path, opts)
        elif chosen == "npy":
            frame = _read_npy(path, opts, npy_order)
        else:
            frame = _read_headerless(path, opts)
    except OSError as e:
        raise RawFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    frame = _apply_overrides(frame, opts)
    note = ""
    if chosen == "libraw" and frame.sources.get("white_level") != Source.USER:
        note = _samples_above_white(frame)  # LibRaw's level is a clip point, not a bit depth to check
    else:
        frame.check_white_level()
    logger.debug("%s: %s layout: %s%s", path, chosen, frame.describe(), note)
    return frame


def detect_layout(path: str | os.PathLike) -> str:
    """The layout ``read_raw(layout="auto")`` uses for ``path``.

    ``.npy`` → ``npy``; ``.raw``/``.bin`` → ``headerless``; ``.png``/``.tif``/``.tiff`` → ``unisp`` when
    ``NAME.json`` exists beside it, ``zrr`` in a ``huawei_raw``/``huawei_full_resolution`` folder,
    ``uispf`` in a ``mediatek_raw`` folder, else ``png``; anything else → ``libraw``.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".npy":
        return "npy"
    if ext in HEADERLESS_EXTENSIONS:
        return "headerless"
    if ext in MOSAIC_IMAGE_EXTENSIONS:
        folder = path.parent.name.lower()
        if _sidecar_path(path).is_file():
            return "unisp"
        if folder in ZRR_FOLDERS:
            return "zrr"
        if folder in UISPF_FOLDERS:
            return "uispf"
        return "png"
    return "libraw"


def missing_values(path: str | os.PathLike, options: RawOptions, layout: str = "auto") -> tuple[str, ...]:
    """The values (:data:`REQUIRED_VALUES`) that ``read_raw(path, options, layout=layout)`` needs and ``options`` lacks.

    Example:
        >>> missing_values("a.raw", RawOptions.from_mapping({"cfa": "RGGB", "bits": 10}))
        ('width', 'height')
    """
    return options.missing(REQUIRED_VALUES.get(_chosen_layout(Path(path), layout), ()))


def _chosen_layout(path: Path, layout: str) -> str:
    return detect_layout(path) if layout == "auto" else layout


def find_raw_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted RAW files directly inside ``folder`` (extensions in :data:`RAW_EXTENSIONS`).

    Sidecar ``.json`` files, hidden files (``.name``, including macOS ``._name`` forks) and folders
    are skipped.

    Raises:
        UnispError: ``folder`` is not a folder, or holds no RAW file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UnispError(f"{folder}: not a folder")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in RAW_EXTENSIONS
    )
    if not files:
        raise UnispError(f"{folder}: no RAW files (looked for {', '.join(RAW_EXTENSIONS)})")
    return files


def expand_inputs(inputs: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files given directly plus the RAW files inside given folders (:func:`find_raw_files`).

    Returns:
        ``(files, failures)``: the files in the order given, and ``(path, message)`` for each
        missing path and each folder that is not usable; a run goes on with the files it has.
    """
    files: list[Path] = []
    failures: list[tuple[Path, str]] = []
    for path in inputs:
        if path.is_dir():
            try:
                files.extend(find_raw_files(path))
            except UnispError as e:
                failures.append((path, str(e)))
        elif path.exists():
            files.append(path)
        else:
            failures.append((path, f"{path}: no such file or folder"))
    return files, failures


def write_mosaic_png(path: str | os.PathLike, frame: RawFrame, extra: dict | None = None) -> Path:
    """Write ``frame`` as a 16-bit one-channel PNG plus a ``NAME.json`` sidecar, each atomically.

    ``read_raw`` on the result gives back the same mosaic, CFA, levels, white balance, colour matrix
    and orientation exactly. The PNG is written first and the sidecar last, so a sidecar is never
    left pointing at a missing image.

    Args:
        path: the ``.png`` to write; the sidecar goes to the same stem with ``.json``.
        frame: the frame to store.
        extra: more JSON-serialisable keys for the sidecar (e.g. ``"sensor_model"``); ignored by the reader.

    Returns:
        ``path``, so that ``read_raw(write_mosaic_png(p, frame))`` reads it back.

    Raises:
        UnispError: the name does not end in ``.png``, ``extra`` reuses a reserved key or is not JSON.
        OutputError: the files cannot be written.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UnispError(f"{path}: a unisp mosaic must be written as .png")
    meta: dict = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "cfa": frame.cfa.value,
        "black_level": list(frame.black_level),
        "white_level": frame.white_level,
        "wb_gains": None if frame.wb_gains is None else list(frame.wb_gains),
        "cam_to_srgb": None if frame.cam_to_srgb is None else np.asarray(frame.cam_to_srgb).tolist(),
        "orientation": int(frame.orientation),
        "width": frame.width,
        "height": frame.height,
    }
    for key, value in (extra or {}).items():
        if key in SIDECAR_KEYS:
            raise UnispError(f"{path}: sidecar key {key!r} is reserved")
        meta[key] = value
    try:
        text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise UnispError(f"{path}: sidecar metadata is not JSON-serialisable ({e})") from None
    write_image(path, np.ascontiguousarray(frame.mosaic, dtype=np.uint16))
    write_text(_sidecar_path(path), text)
    return path


def camera_to_srgb_matrix(xyz_to_camera: np.ndarray) -> np.ndarray:
    """Camera RGB → linear sRGB from an XYZ → camera matrix, as dcraw/LibRaw compute ``rgb_cam``.

    ``camera_from_srgb = xyz_to_camera @ SRGB_TO_XYZ_D65`` with each row scaled to sum to 1 (so that
    white-balanced white stays white), then inverted.

    Args:
        xyz_to_camera: ``3×3`` matrix, rows = camera R, G, B.

    Returns:
        ``3×3`` float64 matrix whose rows sum to 1.

    Raises:
        RawFormatError: a row sums to (nearly) zero or the matrix is singular.
    """
    camera_from_srgb = np.asarray(xyz_to_camera, dtype=np.float64) @ SRGB_TO_XYZ_D65
    sums = camera_from_srgb.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums) < 1e-6):
        raise RawFormatError("colour matrix has a row that sums to zero")
    camera_from_srgb = camera_from_srgb / sums
    if abs(np.linalg.det(camera_from_srgb)) < 1e-9:
        raise RawFormatError("colour matrix is singular")
    return np.linalg.inv(camera_from_srgb)


# ---------------------------------------------------------------------------------------- given values


def _with_keywords(path: Path, options: RawOptions | None, **values) -> RawOptions:
    """``options`` with :func:`read_raw`'s keyword values (None: not given) over them, validated;
    an invalid value is a :class:`RawFormatError` naming the file."""
    try:
        keywords = RawOptions.from_mapping(values)
    except ConfigError as e:
        raise RawFormatError(f"{path}: {e}") from None
    return keywords if options is None else options.merged(keywords)


def _apply_overrides(frame: RawFrame, opts: RawOptions) -> RawFrame:
    """Replace the frame's calibration by the values given, each marked with where it came from.

    A new CFA without a new black level moves the per-plane black levels with the pixels they
    belong to (black levels are a property of tile positions, not of colour names).
    """
    given = opts.calibration()
    if not given:
        return frame
    values = {field: value for field, (value, _) in given.items()}
    sources = {field: source for field, (_, source) in given.items()}
    if opts.cfa is not None and opts.black is None and opts.cfa != frame.cfa:
        values["black_level"] = _remap_black(frame.black_level, frame.cfa, opts.cfa)
        sources["black_level"] = frame.sources.get("black_level", Source.ASSUMED)  # moved, not given
    return frame.with_overrides(sources, **values)


def _remap_black(black: Sequence[float], old: CFA, new: CFA) -> tuple[float, ...]:
    by_position = {offset: level for offset, level in zip(old.offsets, black)}
    return tuple(by_position[offset] for offset in new.offsets)


def _samples_above_white(frame: RawFrame) -> str:
    """``""``, or a note on how many samples exceed the white level (they count as saturated)."""
    above = int(np.count_nonzero(frame.mosaic > frame.white_level))
    if not above:
        return ""
    peak = int(frame.mosaic.max())
    return f"; {above} samples above LibRaw's white level {frame.white_level:g} (max {peak}), treated as saturated"


# ---------------------------------------------------------------------------------------------- readers


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise RawFormatError(f"{path}: is a folder, not a RAW file")
    if not path.exists():
        raise RawFormatError(f"{path}: no such file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise RawFormatError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise RawFormatError(f"{path}: empty file (0 bytes)")


def _read_libraw(path: Path) -> RawFrame:
    tags = read_dng_tags(path) if path.suffix.lower() == ".dng" else None
    if tags is not None:
        dng_tags.check_cfa_pattern(path, tags)
    try:
        with rawpy.imread(str(path)) as raw:
            return _frame_from_libraw(path, raw, tags)
    except rawpy.LibRawError as e:
        reason = e.args[0] if e.args else type(e).__name__
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RawFormatError(f"{path}: LibRaw cannot read it ({reason})") from None


def _frame_from_libraw(path: Path, raw: rawpy.RawPy, tags: DngTags | None) -> RawFrame:
    unsupported = f"{path}: unsupported sensor layout"
    if raw.raw_type != rawpy.RawType.Flat:
        raise RawFormatError(
            f"{unsupported}: not a Bayer mosaic (Foveon, linear DNG or sRAW); only Bayer RAW is supported"
        )
    try:
        pattern = raw.raw_pattern
    except NotImplementedError:
        pattern = None
    if pattern is None or pattern.shape != (2, 2):
        kind = "X-Trans" if pattern is not None and pattern.shape == (6, 6) else "non-Bayer"
        raise RawFormatError(f"{unsupported}: {kind} colour filter array; only 2×2 Bayer patterns are supported")
    desc = raw.color_desc.decode("ascii", "replace")
    colours = raw.raw_colors_visible[:2, :2]
    try:
        letters = "".join(desc[int(i)] for i in colours.ravel())
        cfa = CFA(letters)
    except (IndexError, ValueError):
        raise RawFormatError(
            f"{unsupported}: colour filter {desc!r} pattern {colours.tolist()} is not an RGB Bayer pattern"
        ) from None

    mosaic = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    per_colour = raw.black_level_per_channel
    black = tuple(float(per_colour[int(colours[r, c])]) for r, c in cfa.offsets)
    white, white_source = float(raw.white_level), Source.METADATA
    wb = _libraw_wb(raw.camera_whitebalance)
    cam_to_srgb = _libraw_cam_to_srgb(path, raw)
    orientation = _libraw_orientation(path, raw) if tags is None or dng_tags.orientation_is_valid(path, tags) else 1
    if tags is not None:
        black = dng_tags.black_level(path, tags, cfa, mosaic.shape, black)
        white, white_source = dng_tags.white_level(path, tags, white)
        wb = dng_tags.as_shot_neutral(path, tags, wb)
        cam_to_srgb = dng_tags.colour_matrix(path, tags, cam_to_srgb)
    frame = RawFrame(
        mosaic=mosaic,
        cfa=cfa,
        black_level=black,
        white_level=white,
        wb_gains=wb,
        cam_to_srgb=cam_to_srgb,
        orientation=orientation,
        path=path,
        sources=dict(
            cfa=Source.METADATA,
            black_level=Source.METADATA,
            white_level=white_source,
            wb_gains=Source.METADATA if wb is not None else Source.ASSUMED,
            cam_to_srgb=Source.METADATA if cam_to_srgb is not None else Source.ASSUMED,
        ),
    )
    return _drop_implausible_colour(path, frame)


def _libraw_wb(multipliers: Sequence[float]) -> tuple[float, float, float] | None:
    """As-shot ``(R, G, B)`` gains normalised to G = 1; None unless all three are positive."""
    r, g, b = (float(v) for v in multipliers[:3])
    if not all(math.isfinite(v) and v > 0 for v in (r, g, b)):
        return None
    return (r / g, 1.0, b / g)


def _libraw_cam_to_srgb(path: Path, raw: rawpy.RawPy) -> np.ndarray | None:
    """Camera → sRGB from LibRaw's XYZ → camera matrix, else from its ready ``rgb_cam`` (DNG ColorMatrix).

    LibRaw fills ``rgb_xyz_matrix`` from its camera table; for a DNG it only turns the file's
    ColorMatrix into ``color_matrix`` (camera → sRGB, the same formula), so that is the fallback.
    All zeros means no matrix; whether the matrix is plausible is checked by the caller.
    """
    xyz_to_camera = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
    if np.any(xyz_to_camera):
        try:
            return camera_to_srgb_matrix(xyz_to_camera)
        except RawFormatError as e:
            logger.warning("%s: ignoring the colour matrix (%s); using identity", path, e)
            return None
    ready = np.asarray(raw.color_matrix, dtype=np.float64)[:, :3]
    return ready if np.any(ready) else None


def _libraw_orientation(path: Path, raw: rawpy.RawPy) -> int:
    """The EXIF rotation LibRaw read (``sizes.flip``); a mirrored one is dropped with a warning."""
    orientation = LIBRAW_FLIP_TO_EXIF.get(int(raw.sizes.flip), 1)
    if orientation not in ROTATION_ORIENTATIONS:
        logger.warning("%s: mirrored orientation (EXIF %d) unsupported; using the image as stored", path, orientation)
        return 1
    return orientation


def _drop_implausible_colour(name: Path, frame: RawFrame) -> RawFrame:
    """``frame`` without a white balance or colour matrix that cannot be right (see
    :mod:`unisp.raw.calibration`), each dropped with a warning naming ``name`` and marked assumed.

    Rendering then does what it does for a file that has none: gray-world white balance for
    ``as_shot``, the identity matrix (the same image as ``--color-matrix identity``).
    """
    values: dict = {}
    if frame.wb_gains is not None and (problem := wb_gains_problem(frame.wb_gains)):
        logger.warning("%s: ignoring the as-shot white balance (%s); treating it as unknown", name, problem)
        values["wb_gains"] = None
    if frame.cam_to_srgb is not None and (problem := colour_matrix_problem(frame.cam_to_srgb)):
        logger.warning("%s: ignoring the colour matrix (%s); using identity", name, problem)
        values["cam_to_srgb"] = None
    if not values:
        return frame
    return replace(frame, **values, sources={**frame.sources, **{key: Source.ASSUMED for key in values}})


def _read_mosaic_image(path: Path, white: float) -> np.ndarray:
    """A PNG/TIFF's pixels as a 2-D integer mosaic; colour images, decode errors and an 8-bit file
    whose samples could never reach ``white`` (e.g. a 10-bit mosaic saved as 8-bit) raise."""
    try:
        pixels = read_pixels(path)
    except UnispError as e:
        raise RawFormatError(str(e)) from None
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        raise RawFormatError(f"{path}: not a Bayer mosaic ({pixels.shape[-1]} channels)")
    if pixels.ndim != 2:
        raise RawFormatError(f"{path}: not a Bayer mosaic (shape {pixels.shape})")
    if pixels.dtype.kind not in "ui":
        raise RawFormatError(f"{path}: mosaic must hold integers, got {pixels.dtype}")
    if pixels.dtype.itemsize == 1 and white > np.iinfo(np.uint8).max:
        raise RawFormatError(
            f"{path}: 8-bit image, but the white level is {white:g}: the mosaic must be stored with 16 bits "
            "(pass --white/--bits if the file really holds 8-bit samples)"
        )
    return pixels


def _read_preset_png(path: Path, cfa: CFA, black: Sequence[float], white: float, opts: RawOptions) -> RawFrame:
    return RawFrame(
        mosaic=_read_mosaic_image(path, opts.white_level or white),
        cfa=cfa,
        black_level=tuple(black),
        white_level=white,
        path=path,
        sources=dict(
            cfa=Source.PRESET,
            black_level=Source.PRESET,
            white_level=Source.PRESET,
            wb_gains=Source.ASSUMED,
            cam_to_srgb=Source.ASSUMED,
        ),
    )


def _sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _check_sidecar_values(sidecar: Path, meta: dict) -> None:
    """Types a JSON sidecar can get wrong that the frame would otherwise coerce (``"1023"``, ``2.5``)."""

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    black = meta["black_level"]
    if not (isinstance(black, list) and len(black) == 4 and all(number(v) for v in black)):
        raise RawFormatError(f"{sidecar}: invalid value (\"black_level\" must be 4 numbers (R, Gr, Gb, B), got {black!r})")
    if not number(meta["white_level"]):
        raise RawFormatError(f"{sidecar}: invalid value (\"white_level\" must be a number, got {meta['white_level']!r})")
    orientation = meta.get("orientation", 1)
    if isinstance(orientation, bool) or not isinstance(orientation, int) or orientation not in ROTATION_ORIENTATIONS:
        allowed = ", ".join(str(o) for o in ROTATION_ORIENTATIONS)
        raise RawFormatError(f"{sidecar}: invalid value (\"orientation\" must be an EXIF rotation: {allowed}; got {orientation!r})")


def _read_unisp(path: Path, opts: RawOptions) -> RawFrame:
    sidecar = _sidecar_path(path)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RawFormatError(f"{path}: sidecar {sidecar.name} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RawFormatError(f"{sidecar}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise RawFormatError(f"{sidecar}: not a unisp RAW sidecar (\"format\" is not {SIDECAR_FORMAT!r})")
    if meta.get("version") != SIDECAR_VERSION:
        version = meta.get("version")
        raise RawFormatError(f"{sidecar}: unsupported sidecar version {version!r} (expected {SIDECAR_VERSION})")
    missing = [k for k in ("cfa", "black_level", "white_level") if k not in meta]
    if missing:
        raise RawFormatError(f"{sidecar}: missing {', '.join(missing)}")
    _check_sidecar_values(sidecar, meta)
    mosaic = _read_mosaic_image(path, opts.white_level or meta["white_level"])
    size = (meta.get("width"), meta.get("height"))
    if size != (None, None) and size != (mosaic.shape[1], mosaic.shape[0]):
        raise RawFormatError(
            f"{path}: image is {mosaic.shape[1]}×{mosaic.shape[0]} but its sidecar says {size[0]}×{size[1]}"
        )
    try:
        cfa = CFA.parse(meta["cfa"])
        frame = RawFrame(
            mosaic=mosaic,
            cfa=cfa,
            black_level=tuple(meta["black_level"]),
            white_level=meta["white_level"],
            wb_gains=meta.get("wb_gains"),
            cam_to_srgb=meta.get("cam_to_srgb"),
            orientation=meta.get("orientation", 1),
            path=path,
            sources=dict(
                cfa=Source.METADATA,
                black_level=Source.METADATA,
                white_level=Source.METADATA,
                wb_gains=Source.METADATA if meta.get("wb_gains") is not None else Source.ASSUMED,
                cam_to_srgb=Source.METADATA if meta.get("cam_to_srgb") is not None else Source.ASSUMED,
            ),
        )
    except RawFormatError as e:
        message = str(e)
        raise RawFormatError(message if message.startswith(str(path)) else f"{sidecar}: {message}") from None
    except (TypeError, ValueError) as e:
        raise RawFormatError(f"{sidecar}: invalid value ({e})") from None
    return _drop_implausible_colour(sidecar, frame)


def _read_plain_image(path: Path, opts: RawOptions) -> RawFrame:
    missing = opts.missing(REQUIRED_VALUES["png"])
    if missing:
        wanted = " and ".join("--white or --bits" if key == "white" else flag_name(key) for key in missing)
        raise RawFormatError(f"{path}: a plain PNG/TIFF mosaic carries no calibration; pass {wanted}")
    return _frame_from_options(path, _read_mosaic_image(path, opts.white_level), opts)


def _frame_from_options(path: Path, mosaic: np.ndarray, opts: RawOptions) -> RawFrame:
    """A frame whose calibration comes entirely from the options (black 0 when not given); the
    options' colour values are applied afterwards, with the others, by :func:`_apply_overrides`."""
    return RawFrame(
        mosaic=mosaic,
        cfa=opts.cfa,
        black_level=opts.black if opts.black is not None else (0.0,) * 4,
        white_level=opts.white_level,
        path=path,
        sources=dict(
            cfa=opts.source("cfa"),
            black_level=opts.source("black") if opts.black is not None else Source.ASSUMED,
            white_level=opts.calibration()["white_level"][1],
            wb_gains=Source.ASSUMED,
            cam_to_srgb=Source.ASSUMED,
        ),
    )


def _check_npy_header(path: Path) -> None:
    """Refuse a ``.npy`` whose header is unreadable or promises more data than the file holds.

    ``numpy.load`` allocates the array its header describes before reading, so a header claiming a
    huge shape would allocate gigabytes for a file of a few bytes; this check reads only the header.
    """
    with open(path, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise RawFormatError(f"{path}: not a .npy file (wrong magic bytes)")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except (ValueError, EOFError, SyntaxError) as e:
            raise RawFormatError(f"{path}: not a readable .npy array (bad header: {e})") from None
        if dtype.hasobject:
            raise RawFormatError(f"{path}: not a readable .npy array: it holds Python objects (nothing is unpickled)")
        needed = math.prod(shape) * dtype.itemsize
        available = path.stat().st_size - f.tell()
    if needed > available:
        raise RawFormatError(
            f"{path}: not a readable .npy array: truncated, its header says shape {tuple(shape)} of {dtype} "
            f"({needed} bytes) but the file holds {available} bytes of data"
        )


def _read_npy(path: Path, opts: RawOptions, order: str) -> RawFrame:
    _check_npy_header(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as e:
        raise RawFormatError(f"{path}: not a readable .npy array, truncated or holding objects ({e})") from None
    packed = array.ndim == 3 and array.shape[-1] == 4
    if not (packed or array.ndim == 2):
        raise RawFormatError(
            f"{path}: expected packed planes of shape (H/2, W/2, 4) or an (H, W) mosaic, got shape {array.shape}"
        )
    if array.size == 0:
        raise RawFormatError(f"{path}: array is empty (shape {array.shape})")

    if array.dtype.kind == "f":
        if opts.bits is not None:
            raise RawFormatError(f"{path}: --bits has no meaning for a float array (values in [0, 1])")
        if not np.all(np.isfinite(array)):
            raise RawFormatError(f"{path}: array contains NaN or Inf")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise RawFormatError(f"{path}: float values must lie in [0, 1], got {low:g}..{high:g}")
        values = np.rint(array.astype(np.float64) * FLOAT_WHITE_LEVEL).astype(np.uint16)
        white, white_source = float(FLOAT_WHITE_LEVEL), Source.ASSUMED
    elif array.dtype.kind in "ui":
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise RawFormatError(f"{path}: negative values (min {low})")
        if high > 65535:
            raise RawFormatError(f"{path}: values above 65535 (max {high}) do not fit a 16-bit mosaic")
        values = array.astype(np.uint16)
        white, white_source = opts.calibration().get("white_level", (None, None))
        if white is None:
            white, white_source = float(next(w for w in NPY_WHITE_LEVELS if w >= high)), Source.ASSUMED
            logger.debug("%s: no --white/--bits; assuming white level %g from the maximum value %d", path, white, high)
    else:
        raise RawFormatError(f"{path}: unsupported array type {array.dtype} (integers, or floats in [0, 1])")

    cfa = opts.cfa if opts.cfa is not None else CFA.RGGB
    if packed:
        planes = np.moveaxis(values, -1, 0)
        if order == "reference":
            planes = from_reference_order(planes)
        values = unpack(planes, cfa)
    return RawFrame(
        mosaic=values,
        cfa=cfa,
        black_level=opts.black if opts.black is not None else (0.0,) * 4,
        white_level=white,
        path=path,
        sources=dict(
            cfa=opts.source("cfa") if opts.cfa is not None else Source.ASSUMED,
            black_level=opts.source("black") if opts.black is not None else Source.ASSUMED,
            white_level=white_source,
            wb_gains=Source.ASSUMED,
            cam_to_srgb=Source.ASSUMED,
        ),
    )


def _read_headerless(path: Path, opts: RawOptions) -> RawFrame:
    missing = opts.missing(REQUIRED_VALUES["headerless"])
    if missing:
        raise RawFormatError(
            f"{path}: a headerless RAW file needs --width, --height, --bits and --cfa (or --camera FILE); "
            f"missing {', '.join(flag_name(key) for key in missing)} (for a camera RAW file named .raw, pass --layout libraw)"
        )
    dtype = np.dtype("<u2") if opts.bits > 8 else np.dtype("u1")
    expected = opts.width * opts.height * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise RawFormatError(
            f"{path}: file is {actual} bytes but {opts.width}×{opts.height} at {opts.bits} bits "
            f"({dtype.itemsize} byte(s) per sample) needs {expected}"
        )
    mosaic = np.fromfile(path, dtype=dtype).reshape(opts.height, opts.width)
    return _frame_from_options(path, mosaic.astype(np.uint16), opts)


__all__ = [
    "CAMERA_RAW_EXTENSIONS",
    "LAYOUTS",
    "NPY_ORDERS",
    "RAW_EXTENSIONS",
    "REQUIRED_VALUES",
    "SRGB_TO_XYZ_D65",
    "UISPF_BLACK_LEVEL",
    "ZRR_WHITE_LEVEL",
    "camera_to_srgb_matrix",
    "detect_layout",
    "find_raw_files",
    "missing_values",
    "read_raw",
    "write_mosaic_png",
]
