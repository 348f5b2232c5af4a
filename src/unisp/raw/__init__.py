"""The RAW input layer: Bayer patterns and packing, the RawFrame type, readers and the values they are
given (flags, recipes, camera files), and a DNG writer."""

from __future__ import annotations

from unisp.raw.bayer import (
    CANONICAL_CHANNELS,
    CFA,
    REFERENCE_INVERSE,
    REFERENCE_ORDER,
    colour_masks,
    crop_to_even,
    from_reference_order,
    pack,
    site_masks,
    to_reference_order,
    unpack,
)
from unisp.raw.calibration import colour_matrix_problem, wb_gains_problem
from unisp.raw.dng import write_dng
from unisp.raw.frame import EXIF_ORIENTATIONS, RawFrame, Source
from unisp.raw.io import (
    LAYOUTS,
    NPY_ORDERS,
    RAW_EXTENSIONS,
    SRGB_TO_XYZ_D65,
    camera_to_srgb_matrix,
    detect_layout,
    find_raw_files,
    missing_values,
    read_raw,
    write_mosaic_png,
)
from unisp.raw.options import RawOptions, options_from_flags, read_camera_file

__all__ = [
    "CANONICAL_CHANNELS",
    "CFA",
    "EXIF_ORIENTATIONS",
    "LAYOUTS",
    "NPY_ORDERS",
    "RAW_EXTENSIONS",
    "REFERENCE_INVERSE",
    "REFERENCE_ORDER",
    "SRGB_TO_XYZ_D65",
    "RawFrame",
    "RawOptions",
    "Source",
    "camera_to_srgb_matrix",
    "colour_masks",
    "colour_matrix_problem",
    "crop_to_even",
    "detect_layout",
    "find_raw_files",
    "from_reference_order",
    "missing_values",
    "options_from_flags",
    "pack",
    "read_camera_file",
    "read_raw",
    "site_masks",
    "to_reference_order",
    "unpack",
    "wb_gains_problem",
    "write_dng",
    "write_mosaic_png",
]
