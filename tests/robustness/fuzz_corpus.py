"""A corpus of malformed inputs, generated into a folder at test time (no binary files are committed).

Each builder writes one bad (or merely unusual) input into a folder and returns its path; the
tests in this folder run every input through every command that reads that kind of input. The
builders start from a valid file of the kind (a DNG from :func:`unisp.raw.dng.write_dng`, a
sidecar mosaic from :func:`unisp.raw.io.write_mosaic_png`, a model from
:func:`unisp.models.checkpoint.save_model`, ...) and break one thing, so that each case tests the
check it names and nothing else.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import struct
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import safetensors.torch
import tifffile
import torch
from PIL import Image

from unisp.models.checkpoint import save_model
from unisp.models.registry import build_model
from unisp.raw.dng import write_dng
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png

#: Edge of the valid test mosaics: LibRaw refuses images under 22 pixels on a side (see write_dng).
EDGE = 24
#: Width and height written into headers that claim a huge image (4.3 G samples, 8.6 GB at 16 bits):
#: reading such a header must fail before anything of that size is allocated.
HUGE = 65535
#: The same for .npy shapes, which are not limited to 16-bit fields (10^10 samples, 20 GB).
HUGE_NPY = 100_000
#: Headless-sensor flags for the valid 24×24 10-bit headerless file.
HEADERLESS_FLAGS = ["--width", str(EDGE), "--height", str(EDGE), "--bits", "10", "--cfa", "RGGB"]


def mosaic(shape=(EDGE, EDGE), high=1024, seed=0, dtype=np.uint16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape).astype(dtype)


def png_bytes(pixels: np.ndarray) -> bytes:
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


# ----------------------------------------------------------------------------------------------- TIFF/DNG


@functools.cache
def dng_bytes() -> bytes:
    """A valid DNG (24×24 RGGB, 10-bit values) as bytes."""
    with tempfile.TemporaryDirectory(prefix="unisp-malformed-") as folder:
        path = Path(folder) / "valid.dng"
        write_dng(path, mosaic(), "RGGB", black_level=64, white_level=1023)
        return path.read_bytes()


def patch_tiff_tags(data: bytes, values: dict[int, int | tuple[int, ...]]) -> bytes:
    """Overwrite the values of tags in IFD0 of a little-endian TIFF (inline SHORT/LONG/BYTE values only)."""
    out = bytearray(data)
    assert out[:2] == b"II", "little-endian TIFF expected"
    (ifd,) = struct.unpack_from("<I", out, 4)
    (count,) = struct.unpack_from("<H", out, ifd)
    sizes = {1: 1, 3: 2, 4: 4}
    formats = {1: "B", 3: "H", 4: "I"}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind, n = struct.unpack_from("<HHI", out, entry)
        if tag not in values:
            continue
        new = values[tag] if isinstance(values[tag], tuple) else (values[tag],)
        assert len(new) == n and sizes[kind] * n <= 4, f"tag {tag} is not inline"
        struct.pack_into(f"<{n}{formats[kind]}", out, entry + 8, *new)
    return bytes(out)


TAG_WIDTH, TAG_HEIGHT, TAG_BITS, TAG_CFA_PATTERN = 256, 257, 258, 33422


def tiff_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, **kwargs)
    return buffer.getvalue()


def png_with_size(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A PNG whose IHDR claims ``width×height`` but that holds the data of a 2×2 image."""
    data = bytearray(png_bytes(np.zeros((2, 2), np.uint16 if bit_depth == 16 else np.uint8)))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))  # the IHDR chunk's CRC
    return bytes(data)


# ------------------------------------------------------------------------------------------------ .npy


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_with_header(shape: tuple[int, ...], dtype: str = "<u2", payload: bytes = b"\0" * 64) -> bytes:
    """A .npy file whose header claims ``shape`` but that holds only ``payload``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


# --------------------------------------------------------------------------------------- RAW file corpus

#: Each entry: id → builder(folder) -> (path, extra CLI flags). The file goes into ``folder`` (or a
#: sub-folder that selects a layout, e.g. ``huawei_raw/`` for Zurich RAW-to-RGB).
RawBuilder = Callable[[Path], tuple[Path, list[str]]]


def _file(name: str, data: Callable[[], bytes], flags: list[str] | None = None) -> RawBuilder:
    def build(folder: Path) -> tuple[Path, list[str]]:
        return write(folder / name, data()), list(flags or [])

    return build


def _sidecar(meta_edit: Callable[[dict], object] | None, pixels: np.ndarray | None = None, raw_text: str | bytes | None = None) -> RawBuilder:
    """A unisp mosaic PNG with a sidecar changed by ``meta_edit`` (or replaced by ``raw_text``), and
    its image replaced by ``pixels`` when given."""

    def build(folder: Path) -> tuple[Path, list[str]]:
        folder.mkdir(parents=True, exist_ok=True)
        frame = RawFrame(mosaic=mosaic(), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
        path = write_mosaic_png(folder / "frame.png", frame)
        sidecar = path.with_suffix(".json")
        if raw_text is not None:
            sidecar.write_bytes(raw_text if isinstance(raw_text, bytes) else raw_text.encode())
        else:
            meta = json.loads(sidecar.read_text())
            edited = meta_edit(meta)
            sidecar.write_text(json.dumps(meta if edited is None else edited))
        if pixels is not None:
            path.write_bytes(png_bytes(pixels))
        return path, []

    return build


def _set(**values) -> Callable[[dict], None]:
    return lambda meta: meta.update(values)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda meta: meta.pop(key)


def raw_corpus() -> dict[str, RawBuilder]:
    """Malformed RAW files of every layout (id → builder)."""
    hl = HEADERLESS_FLAGS
    png10 = ["--cfa", "RGGB", "--bits", "10"]
    valid_dng = dng_bytes
    cases: dict[str, RawBuilder] = {
        # DNG / TIFF read by LibRaw.
        "dng-zero-byte": _file("a.dng", lambda: b""),
        "dng-truncated-half": _file("a.dng", lambda: truncated(valid_dng())),
        "dng-truncated-header": _file("a.dng", lambda: valid_dng()[:8]),
        "dng-truncated-in-ifd": _file("a.dng", lambda: truncated(valid_dng(), 0.02)),
        "dng-png-magic": _file("a.dng", lambda: png_bytes(mosaic())),
        "dng-random-bytes": _file("a.dng", lambda: np.random.default_rng(1).bytes(4096)),
        "dng-text": _file("a.dng", lambda: b"this is not a raw file\n" * 20),
        "dng-huge-dimensions": _file(
            "a.dng", lambda: patch_tiff_tags(valid_dng(), {TAG_WIDTH: HUGE, TAG_HEIGHT: HUGE})
        ),
        "dng-1x1-header": _file("a.dng", lambda: patch_tiff_tags(valid_dng(), {TAG_WIDTH: 1, TAG_HEIGHT: 1})),
        "dng-8-bit-header": _file("a.dng", lambda: patch_tiff_tags(valid_dng(), {TAG_BITS: 8})),
        "dng-cfa-all-red": _file("a.dng", lambda: patch_tiff_tags(valid_dng(), {TAG_CFA_PATTERN: (0, 0, 0, 0)})),
        "dng-cfa-bad-colour": _file("a.dng", lambda: patch_tiff_tags(valid_dng(), {TAG_CFA_PATTERN: (0, 1, 1, 7)})),
        "nef-tiff-rgb": _file("a.nef", lambda: tiff_bytes(mosaic((EDGE, EDGE, 3)), photometric="rgb")),
        "cr2-zero-byte": _file("a.cr2", lambda: b""),
        "arw-truncated": _file("a.arw", lambda: truncated(valid_dng(), 0.3)),
        # Plain PNG/TIFF mosaics (no sidecar, no dataset folder: --cfa and --bits needed).
        "png-zero-byte": _file("a.png", lambda: b"", png10),
        "png-truncated": _file("a.png", lambda: truncated(png_bytes(mosaic())), png10),
        "png-wrong-magic": _file("a.png", lambda: b"GIF89a" + b"\0" * 200, png10),
        "png-no-flags": _file("a.png", lambda: png_bytes(mosaic())),
        "png-rgb-not-mosaic": _file("a.png", lambda: png_bytes(mosaic((EDGE, EDGE, 3))), png10),
        "png-8bit-for-10bit": _file("a.png", lambda: png_bytes(mosaic(high=256, dtype=np.uint8)), png10),
        "png-values-above-bits": _file("a.png", lambda: png_bytes(mosaic(high=4096)), png10),
        "png-1x1": _file("a.png", lambda: png_bytes(np.zeros((1, 1), np.uint16)), png10),
        "png-1xN": _file("a.png", lambda: png_bytes(np.zeros((1, EDGE), np.uint16)), png10),
        "png-huge-dimensions": _file("a.png", lambda: png_with_size(HUGE * 16, HUGE * 16), png10),
        "png-huge-under-libpng-limit": _file("a.png", lambda: png_with_size(HUGE, HUGE), png10),
        "png-cfa-unknown": _file("a.png", lambda: png_bytes(mosaic()), ["--cfa", "RGBG", "--bits", "10"]),
        "png-cfa-too-long": _file("a.png", lambda: png_bytes(mosaic()), ["--cfa", "RGGBR", "--bits", "10"]),
        "png-cfa-empty": _file("a.png", lambda: png_bytes(mosaic()), ["--cfa", "", "--bits", "10"]),
        "tif-zero-byte": _file("a.tif", lambda: b"", png10),
        "tif-truncated": _file("a.tif", lambda: truncated(tiff_bytes(mosaic())), png10),
        "tif-float-mosaic": _file("a.tif", lambda: tiff_bytes(np.full((EDGE, EDGE), np.nan, np.float32)), png10),
        "tif-huge-dimensions": _file(
            "a.tif", lambda: patch_tiff_tags(tiff_bytes(mosaic()), {TAG_WIDTH: HUGE, TAG_HEIGHT: HUGE}), png10
        ),
        # Zurich RAW-to-RGB and UltraISP presets (found by folder name).
        "zrr-zero-byte": _file("huawei_raw/0.png", lambda: b""),
        "zrr-truncated": _file("huawei_raw/0.png", lambda: truncated(png_bytes(mosaic()))),
        "zrr-wrong-magic": _file("huawei_raw/0.png", lambda: b"\x89PNX" + png_bytes(mosaic())[4:]),
        "zrr-8-bit": _file("huawei_raw/0.png", lambda: png_bytes(mosaic(high=256, dtype=np.uint8))),
        "zrr-above-10-bits": _file("huawei_raw/0.png", lambda: png_bytes(mosaic(high=65536))),
        "zrr-rgb": _file("huawei_raw/0.png", lambda: png_bytes(mosaic((EDGE, EDGE, 3)))),
        "zrr-gray-alpha": _file("huawei_raw/0.png", lambda: png_bytes(mosaic((EDGE, EDGE, 2)))),
        "zrr-1x1": _file("huawei_raw/0.png", lambda: png_bytes(np.zeros((1, 1), np.uint16))),
        "zrr-huge-dimensions": _file("huawei_raw/0.png", lambda: png_with_size(HUGE * 16, HUGE * 16)),
        "zrr-text": _file("huawei_raw/0.png", lambda: b"not a png"),
        "uispf-zero-byte": _file("mediatek_raw/0.png", lambda: b""),
        "uispf-truncated": _file("mediatek_raw/0.png", lambda: truncated(png_bytes(mosaic()), 0.7)),
        "uispf-8-bit": _file("mediatek_raw/0.png", lambda: png_bytes(mosaic(high=256, dtype=np.uint8))),
        "uispf-rgba": _file("mediatek_raw/0.png", lambda: png_bytes(mosaic((EDGE, EDGE, 4)))),
        "uispf-1x1": _file("mediatek_raw/0.png", lambda: png_bytes(np.full((1, 1), 100, np.uint16))),
        "uispf-cfa-override-bad": _file("mediatek_raw/0.png", lambda: png_bytes(mosaic()), ["--cfa", "GGRB"]),
        # unisp PNG + JSON sidecar.
        "sidecar-not-json": _sidecar(None, raw_text="{not json"),
        "sidecar-empty": _sidecar(None, raw_text=""),
        "sidecar-binary": _sidecar(None, raw_text=b"\x00\x01\x02\xff\xfe"),
        "sidecar-list": _sidecar(None, raw_text="[1, 2, 3]"),
        "sidecar-wrong-format": _sidecar(_set(format="other")),
        "sidecar-future-version": _sidecar(_set(version=99)),
        "sidecar-no-cfa": _sidecar(_drop("cfa")),
        "sidecar-no-white": _sidecar(_drop("white_level")),
        "sidecar-cfa-unknown": _sidecar(_set(cfa="RGBG")),
        "sidecar-cfa-number": _sidecar(_set(cfa=5)),
        "sidecar-cfa-null": _sidecar(_set(cfa=None)),
        "sidecar-black-3-values": _sidecar(_set(black_level=[64, 64, 64])),
        "sidecar-black-strings": _sidecar(_set(black_level=["a", "b", "c", "d"])),
        "sidecar-black-number": _sidecar(_set(black_level=64)),
        "sidecar-black-negative": _sidecar(_set(black_level=[-1, 0, 0, 0])),
        "sidecar-black-nan": _sidecar(None, raw_text=json.dumps(
            {"format": "unisp-raw", "version": 1, "cfa": "RGGB", "black_level": [0, 0, 0, 0], "white_level": 1023}
        ).replace("[0, 0, 0, 0]", "[NaN, 0, 0, 0]")),
        "sidecar-white-string": _sidecar(_set(white_level="1023")),
        "sidecar-white-zero": _sidecar(_set(white_level=0)),
        "sidecar-white-below-black": _sidecar(_set(white_level=32)),
        "sidecar-white-infinite": _sidecar(None, raw_text=json.dumps(
            {"format": "unisp-raw", "version": 1, "cfa": "RGGB", "black_level": [0, 0, 0, 0], "white_level": 1}
        ).replace('"white_level": 1', '"white_level": Infinity')),
        "sidecar-white-below-data": _sidecar(_set(white_level=100)),
        "sidecar-wb-two-values": _sidecar(_set(wb_gains=[2.0, 1.0])),
        "sidecar-wb-negative": _sidecar(_set(wb_gains=[2.0, -1.0, 1.5])),
        "sidecar-wb-strings": _sidecar(_set(wb_gains="warm")),
        "sidecar-matrix-2x2": _sidecar(_set(cam_to_srgb=[[1, 0], [0, 1]])),
        "sidecar-matrix-ragged": _sidecar(_set(cam_to_srgb=[[1, 0, 0], [0, 1], [0, 0, 1]])),
        "sidecar-orientation-9": _sidecar(_set(orientation=9)),
        "sidecar-orientation-string": _sidecar(_set(orientation="left")),
        "sidecar-orientation-float": _sidecar(_set(orientation=2.5)),
        "sidecar-orientation-mirrored": _sidecar(_set(orientation=2)),
        "sidecar-size-mismatch": _sidecar(_set(width=EDGE * 2)),
        "sidecar-huge-size": _sidecar(_set(width=10**12, height=10**12)),
        "sidecar-image-truncated": _sidecar_image_truncated(),
        "sidecar-image-8-bit": _sidecar(lambda meta: None, pixels=mosaic(high=256, dtype=np.uint8)),
        "sidecar-image-rgb": _sidecar(lambda meta: None, pixels=mosaic((EDGE, EDGE, 3))),
        # .npy: packed (H/2, W/2, 4) or 2-D mosaics.
        "npy-zero-byte": _file("a.npy", lambda: b""),
        "npy-wrong-magic": _file("a.npy", lambda: b"\x93NUMPZ" + npy_bytes(mosaic())[6:]),
        "npy-text": _file("a.npy", lambda: b"0 1 2 3\n4 5 6 7\n"),
        "npy-truncated-header": _file("a.npy", lambda: npy_bytes(mosaic())[:20]),
        "npy-truncated-data": _file("a.npy", lambda: truncated(npy_bytes(mosaic()), 0.6)),
        "npy-huge-header": _file("a.npy", lambda: npy_with_header((HUGE_NPY, HUGE_NPY))),
        "npy-huge-packed-header": _file("a.npy", lambda: npy_with_header((HUGE_NPY, HUGE_NPY, 4))),
        "npy-header-garbage": _file("a.npy", lambda: np.lib.format.magic(1, 0) + b"\x10\x00{'descr': 5}      \n"),
        "npy-object-pickle": _file("a.npy", lambda: npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True)),
        "npy-nan": _file("a.npy", lambda: npy_bytes(np.where(mosaic() > 500, np.nan, 0.5).astype(np.float32))),
        "npy-inf": _file("a.npy", lambda: npy_bytes(np.full((EDGE, EDGE), np.inf, np.float32))),
        "npy-minus-inf-packed": _file("a.npy", lambda: npy_bytes(np.full((8, 8, 4), -np.inf, np.float64))),
        "npy-float-above-one": _file("a.npy", lambda: npy_bytes(np.full((EDGE, EDGE), 2.0, np.float32))),
        "npy-float-negative": _file("a.npy", lambda: npy_bytes(np.full((EDGE, EDGE), -0.5, np.float32))),
        "npy-float-with-bits": _file("a.npy", lambda: npy_bytes(np.full((EDGE, EDGE), 0.5, np.float32)), ["--bits", "10"]),
        "npy-negative-int": _file("a.npy", lambda: npy_bytes(-mosaic(dtype=np.int32) - 1)),
        "npy-int64-above-16-bit": _file("a.npy", lambda: npy_bytes(mosaic(dtype=np.int64) + 70000)),
        "npy-3-channels": _file("a.npy", lambda: npy_bytes(mosaic((8, 8, 3)))),
        "npy-channels-first": _file("a.npy", lambda: npy_bytes(mosaic((4, 8, 8)))),
        "npy-1d": _file("a.npy", lambda: npy_bytes(mosaic((64,)))),
        "npy-4d": _file("a.npy", lambda: npy_bytes(mosaic((1, 8, 8, 4)))),
        "npy-scalar": _file("a.npy", lambda: npy_bytes(np.array(5, np.uint16))),
        "npy-empty": _file("a.npy", lambda: npy_bytes(np.zeros((0, 0), np.uint16))),
        "npy-1x1": _file("a.npy", lambda: npy_bytes(np.zeros((1, 1), np.uint16))),
        "npy-1x1-packed": _file("a.npy", lambda: npy_bytes(np.zeros((1, 1, 4), np.uint16))),
        "npy-complex": _file("a.npy", lambda: npy_bytes(np.zeros((8, 8), np.complex64))),
        "npy-bool": _file("a.npy", lambda: npy_bytes(np.zeros((8, 8), bool))),
        "npy-structured": _file("a.npy", lambda: npy_bytes(np.zeros((8, 8), dtype=[("a", "<u2"), ("b", "<u2")]))),
        "npy-datetime": _file("a.npy", lambda: npy_bytes(np.zeros((8, 8), dtype="datetime64[s]"))),
        "npy-string": _file("a.npy", lambda: npy_bytes(np.full((8, 8), "x"))),
        "npy-cfa-unknown": _file("a.npy", lambda: npy_bytes(mosaic()), ["--cfa", "XYZW"]),
        # Headerless dumps (geometry from flags).
        "raw-zero-byte": _file("a.raw", lambda: b"", hl),
        "raw-no-flags": _file("a.raw", lambda: mosaic().astype("<u2").tobytes()),
        "raw-size-mismatch": _file("a.raw", lambda: mosaic().astype("<u2").tobytes()[:-2], hl),
        "raw-8-bit-for-10-bit": _file("a.raw", lambda: mosaic(high=256, dtype=np.uint8).tobytes(), hl),
        "raw-values-above-bits": _file("a.raw", lambda: mosaic(high=65536).astype("<u2").tobytes(), hl),
        "raw-huge-geometry": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), [
            "--width", str(HUGE * 16), "--height", str(HUGE * 16), "--bits", "10", "--cfa", "RGGB"]),
        "raw-cfa-unknown": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl[:-1] + ["RGB"]),
        "raw-cfa-lowercase-ok": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl[:-1] + ["bggr"]),
        "raw-black-text": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--black", "low"]),
        "raw-black-3-values": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--black", "1,2,3"]),
        "raw-black-negative": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--black", "-5"]),
        "raw-black-nan": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--black", "nan"]),
        "raw-black-above-white": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--black", "2000"]),
        "raw-white-zero": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--white", "0"]),
        "raw-white-nan": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--white", "nan"]),
        "raw-white-inf": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--white", "inf"]),
        "raw-odd-size": _file("a.raw", lambda: mosaic((5, 7)).astype("<u2").tobytes(), [
            "--width", "7", "--height", "5", "--bits", "10", "--cfa", "RGGB"]),
        "raw-2x2": _file("a.raw", lambda: mosaic((2, 2)).astype("<u2").tobytes(), [
            "--width", "2", "--height", "2", "--bits", "10", "--cfa", "GRBG"]),
        "bin-1-pixel-wide": _file("a.bin", lambda: mosaic((EDGE, 1)).astype("<u2").tobytes(), [
            "--width", "1", "--height", str(EDGE), "--bits", "10", "--cfa", "RGGB"]),
        "raw-bits-17": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl[:5] + ["17"] + hl[6:]),
        "raw-layout-unknown": _file("a.raw", lambda: mosaic().astype("<u2").tobytes(), hl + ["--layout", "jpeg"]),
        "raw-is-folder": _folder_named("a.raw"),
        "raw-missing": lambda folder: (folder / "missing.dng", []),
    }
    return cases


def _sidecar_image_truncated() -> RawBuilder:
    def build(folder: Path) -> tuple[Path, list[str]]:
        path, flags = _sidecar(lambda meta: None)(folder)
        path.write_bytes(truncated(path.read_bytes()))
        return path, flags

    return build


def _folder_named(name: str) -> RawBuilder:
    def build(folder: Path) -> tuple[Path, list[str]]:
        path = folder / name
        path.mkdir(parents=True)
        return path, []

    return build


#: RAW cases that are valid input, unusual but documented, and the commands that must succeed on them
#: (any other command must fail with a one-line error naming the file).
RAW_VALID: dict[str, tuple[str, ...]] = {
    "raw-cfa-lowercase-ok": ("render", "inspect", "process"),  # CFA names are case-insensitive
    "raw-odd-size": ("render", "inspect", "process"),  # the last row/column is dropped (whole 2×2 tiles)
    # One 2×2 tile: the learned ISP runs on one packed pixel; AHD (the render default) needs 3×3 and refuses.
    "raw-2x2": ("inspect", "process"),
    "npy-1x1-packed": ("inspect", "process"),
    # A DNG is decoded as its header says (LibRaw); an 8-bit DNG is legal, so a wrong BitsPerSample
    # cannot be told from a real 8-bit file.
    "dng-8-bit-header": ("render", "inspect", "process"),
}

#: What the error of a case must name when it is not the file: the flag that was wrong.
RAW_MENTION: dict[str, str] = {
    "png-cfa-unknown": "--cfa",
    "png-cfa-too-long": "--cfa",
    "png-cfa-empty": "--cfa",
    "npy-cfa-unknown": "--cfa",
    "raw-cfa-unknown": "--cfa",
    "uispf-cfa-override-bad": "--cfa",
    "raw-black-text": "--black",
    "raw-black-3-values": "--black",
    "raw-black-negative": "--black",
    "raw-black-nan": "--black",
    "raw-black-above-white": "--black",
    "raw-white-zero": "--white",
    "raw-white-nan": "--white",
    "raw-white-inf": "--white",
    "raw-bits-17": "--bits",
    "raw-layout-unknown": "--layout",
    "bin-1-pixel-wide": "--width",
}


# ---------------------------------------------------------------------------------------- RGB photo corpus

#: Edge of the RGB test photos (large enough for SSIM's 11×11 window and a few 8×8 training patches).
PHOTO = 32


def photo(channels: int = 3, dtype=np.uint8, seed: int = 0, size: int = PHOTO) -> np.ndarray:
    high = np.iinfo(dtype).max + 1 if np.issubdtype(dtype, np.integer) else 1
    rng = np.random.default_rng(seed)
    shape = (size, size) if channels == 1 else (size, size, channels)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, high, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype)


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _rgb_pil(mode: str) -> Image.Image:
    return Image.fromarray(photo()).convert(mode)


#: id → (file name, bytes builder). Cases in :data:`RGB_VALID` are images unisp reads (with the
#: conversion said there); every other case must be refused naming the file.
RGB_CORPUS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "gray-8": ("img.png", lambda: png_bytes(photo(1))),
    "gray-16": ("img.png", lambda: png_bytes(photo(1, np.uint16))),
    "gray-alpha-8": ("img.png", lambda: png_bytes(photo(2))),
    "gray-alpha-16": ("img.png", lambda: png_bytes(photo(2, np.uint16))),
    "rgba-8": ("img.png", lambda: png_bytes(photo(4))),
    "rgb-16": ("img.png", lambda: png_bytes(photo(3, np.uint16))),
    "rgba-16-tiff": ("img.tif", lambda: tiff_bytes(photo(4, np.uint16), photometric="rgb", extrasamples=[2])),
    "palette": ("img.png", lambda: pil_bytes(_rgb_pil("P"), "PNG")),
    "palette-transparency": ("img.png", lambda: pil_bytes(_rgb_pil("P"), "PNG", transparency=0)),
    "bilevel-png": ("img.png", lambda: pil_bytes(_rgb_pil("1"), "PNG")),
    "bilevel-tiff": ("img.tif", lambda: pil_bytes(_rgb_pil("1"), "TIFF")),
    "bilevel-bmp": ("img.bmp", lambda: pil_bytes(_rgb_pil("1"), "BMP")),
    "jpeg": ("img.jpg", lambda: pil_bytes(_rgb_pil("RGB"), "JPEG")),
    "jpeg-gray": ("img.jpeg", lambda: pil_bytes(_rgb_pil("L"), "JPEG")),
    "webp": ("img.webp", lambda: pil_bytes(_rgb_pil("RGB"), "WEBP", lossless=True)),
    "float-tiff": ("img.tif", lambda: tiff_bytes(photo(3, np.float32), photometric="rgb")),
    "extension-upper-case": ("img.PNG", lambda: png_bytes(photo())),
    "cmyk-tiff": ("img.tif", lambda: pil_bytes(_rgb_pil("CMYK"), "TIFF")),
    "cmyk-jpeg": ("img.jpg", lambda: pil_bytes(_rgb_pil("CMYK"), "JPEG")),
    "float-tiff-nan": ("img.tif", lambda: tiff_bytes(np.full((PHOTO, PHOTO, 3), np.nan, np.float32), photometric="rgb")),
    "int32-tiff": ("img.tif", lambda: tiff_bytes(photo(3, np.int32), photometric="rgb")),
    "five-channel-tiff": ("img.tif", lambda: tiff_bytes(photo(5), planarconfig="contig", photometric="minisblack")),
    "volume-tiff": ("img.tif", lambda: tiff_bytes(np.stack([photo(3), photo(3)]), photometric="rgb")),
    "text-as-png": ("img.png", lambda: b"<html>not an image</html>\n"),
    "zero-byte-png": ("img.png", lambda: b""),
    "zero-byte-jpeg": ("img.jpg", lambda: b""),
    "truncated-png": ("img.png", lambda: truncated(png_bytes(photo()))),
    "truncated-jpeg": ("img.jpg", lambda: truncated(pil_bytes(_rgb_pil("RGB"), "JPEG"))),
    "png-named-jpeg": ("img.jpg", lambda: png_bytes(photo())),
    "huge-dimensions-png": ("img.png", lambda: png_with_size(HUGE, HUGE, bit_depth=8)),
    "tiny-1x1": ("img.png", lambda: png_bytes(photo(size=1))),
}

#: Images read as RGB: gray (with or without alpha) and palettes become three equal or looked-up
#: channels, alpha is dropped, 1-bit images map True to white, 16-bit and float keep their precision.
RGB_VALID = {
    "gray-8", "gray-16", "gray-alpha-8", "gray-alpha-16", "rgba-8", "rgb-16", "rgba-16-tiff", "palette",
    "palette-transparency", "bilevel-png", "bilevel-tiff", "bilevel-bmp", "jpeg", "jpeg-gray", "webp", "float-tiff",
    "extension-upper-case",
    "png-named-jpeg",  # decoders go by the file's content, not its name
}


# ------------------------------------------------------------------------------------------- config corpus

#: id → (YAML text of a recipe file, what the error must name). Each must be refused before any
#: training starts, in one line naming the key (and, for a choice, the allowed values).
CONFIG_CORPUS: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "empty-file": ("", ("data.raw_dir",)),
    "only-comment": ("# nothing here\n", ("data.raw_dir",)),
    "binary": (b"\x00\xff\xfe\x00garbage", ("not valid YAML",)),
    "syntax-unclosed-bracket": ("steps: [1, 2\n", ("not valid YAML",)),
    "syntax-bad-indent": ("data:\n  raw_dir: x\n rgb_dir: y\n", ("not valid YAML",)),
    "syntax-tab-indent": ("data:\n\traw_dir: x\n", ("not valid YAML",)),
    "top-level-list": ("- steps: 1\n", ("mapping",)),
    "top-level-scalar": ("hello\n", ("mapping",)),
    "unknown-key": ("stepz: 10\n", ("'stepz'", "steps")),
    "unknown-nested-key": ("data:\n  raw_dirs: x\n", ("'data.raw_dirs'", "raw_dir")),
    "unknown-loss-key": ("losses:\n  colour_weight: 2\n", ("'losses.colour_weight'", "colour")),
    "section-is-scalar": ("data: 5\n", ("'data'",)),
    "section-is-list": ("losses: [1, 2]\n", ("'losses'",)),
    "steps-string": ("steps: many\n", ("'steps'",)),
    "steps-float": ("steps: 10.5\n", ("'steps'",)),
    "steps-zero": ("steps: 0\n", ("'steps'",)),
    "steps-negative": ("steps: -5\n", ("'steps'",)),
    "steps-null": ("steps: null\n", ("'steps'",)),
    "steps-list": ("steps: [1]\n", ("'steps'",)),
    "lr-zero": ("lr: 0\n", ("'lr'",)),
    "lr-string": ("lr: fast\n", ("'lr'",)),
    "lr-nan": ("lr: .nan\n", ("'lr'",)),
    "lr-inf": ("lr: .inf\n", ("'lr'",)),
    "betas-one-value": ("betas: [0.5]\n", ("'betas.1'",)),
    "betas-strings": ("betas: [a, b]\n", ("'betas.0'",)),
    "betas-nan": ("betas: [.nan, 0.9]\n", ("'betas[0]'",)),
    "mode-unknown": ("mode: supervised\n", ("'mode'", "'stage1'", "'paired_no_adv'")),
    "mode-number": ("mode: 3\n", ("'mode'", "'unpaired'")),
    "layout-unknown": ("data:\n  layout: jpeg\n", ("'data.layout'", "'headerless'")),
    "demosaic-unknown": ("target_demosaic: vng\n", ("'target_demosaic'", "'menon'")),
    "profile-unknown": ("losses:\n  profile: vgg\n", ("'losses.profile'", "'lite'")),
    "patch-odd": ("data:\n  patch: 31\n", ("'data.patch'",)),
    "patch-tiny": ("data:\n  patch: 2\n", ("'data.patch'",)),
    "val-fraction-one": ("data:\n  val_fraction: 1.0\n", ("'data.val_fraction'",)),
    "flips-string": ("data:\n  flips: sometimes\n", ("'data.flips'",)),
    "pixel-negative": ("pixel:\n  l1: -1\n", ("'pixel.l1'",)),
    "model-unknown": ("mode: stage1\nmodel: resnet\ndata:\n  raw_dir: RAW\n", ("resnet", "efficient_isp")),
    "raw-dir-missing": ("mode: stage1\npixel:\n  l1: 1\ndata:\n  raw_dir: /nonexistent/raw\n", ("/nonexistent/raw",)),
    "rgb-dir-missing": ("data:\n  raw_dir: RAW\n  rgb_dir: /nonexistent/rgb\n", ("/nonexistent/rgb",)),
    "init-missing": ("mode: stage1\ninit: /nonexistent/model.safetensors\ndata:\n  raw_dir: RAW\n", ("/nonexistent/model.safetensors",)),
    "yaml-anchor-bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", ("'a'",)),
    "duplicate-section-type": ("pixel: {l1: one}\n", ("'pixel.l1'",)),
}

#: id → (key=value overrides, what the error must name).
OVERRIDE_CORPUS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "no-equals": (["steps"], ("'steps'", "key=value")),
    "empty-key": (["=5"], ("key=value",)),
    "unknown-key": (["stepz=10"], ("'stepz'",)),
    "unknown-nested": (["data.rawdir=x"], ("'data.rawdir'",)),
    "into-scalar": (["steps.x=1"], ("'steps'",)),
    "nan": (["d_lr=.nan"], ("'d_lr'", "finite")),
    "section-replaced": (["data=5"], ("'data'",)),
    "bad-enum": (["mode=gan"], ("'mode'", "'paired'")),
    "bad-type": (["batch_size=big"], ("'batch_size'",)),
    "bad-nested-enum": (["losses.profile=imagenet"], ("'losses.profile'", "'paper'")),
    "mode-flag-unknown": (["--mode", "gan"], ("'mode'", "'stage1'")),
}


# -------------------------------------------------------------------------------------------- model corpus


@functools.cache
def model_bytes() -> bytes:
    """A valid unisp model file (Efficient ISP, random weights)."""
    with tempfile.TemporaryDirectory(prefix="unisp-malformed-") as folder:
        path = Path(folder) / "m.safetensors"
        save_model(path, build_model("efficient_isp"), name="efficient_isp")
        return path.read_bytes()


def _with_header(edit: Callable[[dict], None], state: dict[str, torch.Tensor] | None = None) -> Callable[[], bytes]:
    """A model file whose unisp JSON header (and optionally its tensors) were changed."""

    def build() -> bytes:
        data = model_bytes()
        n = int.from_bytes(data[:8], "little")
        header = json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["unisp"])
        edit(header)
        tensors = state if state is not None else safetensors.torch.load(data)
        return safetensors.torch.save(tensors, metadata={"format": "unisp-model", "unisp": json.dumps(header)})

    return build


def _nan_weights() -> dict[str, torch.Tensor]:
    state = build_model("efficient_isp").state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    return state


def _torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class _Exploit:
    """Unpickling this runs ``os.system``: a loader that unpickles would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps({"conv1.weight": _Exploit(marker)}, protocol=2)


#: id → (file name, bytes builder) of broken model files (``unisp info/process/eval --model``, ``init=``).
MODEL_CORPUS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "zero-byte": ("m.safetensors", lambda: b""),
    "truncated-half": ("m.safetensors", lambda: truncated(model_bytes())),
    "truncated-in-header": ("m.safetensors", lambda: model_bytes()[:40]),
    "length-only": ("m.safetensors", lambda: model_bytes()[:8]),
    "random-bytes": ("m.safetensors", lambda: np.random.default_rng(2).bytes(2048)),
    "text": ("m.safetensors", lambda: b"efficient_isp\n"),
    "header-length-huge": ("m.safetensors", lambda: (2**63).to_bytes(8, "little") + model_bytes()[8:]),
    "header-not-json": ("m.safetensors", lambda: (20).to_bytes(8, "little") + b"{this is not json!!}" + b"\0" * 64),
    "plain-safetensors": ("m.safetensors", lambda: safetensors.torch.save(build_model("efficient_isp").state_dict())),
    "model-unknown": ("m.safetensors", _with_header(lambda h: h.update(model="resnet50"))),
    "model-number": ("m.safetensors", _with_header(lambda h: h.update(model=5))),
    "model-list": ("m.safetensors", _with_header(lambda h: h.update(model=["efficient_isp"]))),
    "kwargs-list": ("m.safetensors", _with_header(lambda h: h.update(model_kwargs=[1, 2]))),
    "kwargs-unknown": ("m.safetensors", _with_header(lambda h: h.update(model_kwargs={"bogus": 1}))),
    "format-version-text": ("m.safetensors", _with_header(lambda h: h.update(format_version="one"))),
    "format-version-future": ("m.safetensors", _with_header(lambda h: h.update(format_version=99))),
    "format-wrong": ("m.safetensors", _with_header(lambda h: h.update(format="onnx"))),
    "header-is-list": ("m.safetensors", _with_header(lambda h: (h.clear(), h.update({"0": 1})))),
    "weights-wrong-model": ("m.safetensors", _with_header(lambda h: h.update(model="robust_isp"))),
    "weights-missing-tensor": ("m.safetensors", _with_header(
        lambda h: None, state={k: v for k, v in build_model("efficient_isp").state_dict().items() if k != "conv1.bias"})),
    "weights-nan": ("m.safetensors", _with_header(lambda h: None, state=_nan_weights())),
    "torch-zip-pickle": ("m.safetensors", lambda: _torch_save(build_model("efficient_isp").state_dict())),
    "pth-extension": ("m.pth", lambda: _torch_save(build_model("efficient_isp").state_dict())),
}

#: id → (file name, bytes builder) of broken released-weight files (``unisp import-reference``,
#: ``unisp demo --reference``). ``malicious-pickle`` is built by the test (it needs a marker path).
REFERENCE_CORPUS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "zero-byte": ("isp.pth", lambda: b""),
    "random-bytes": ("isp.pth", lambda: np.random.default_rng(3).bytes(4096)),
    "text": ("isp.pth", lambda: b"weights\n"),
    "truncated-zip": ("isp.pth", lambda: truncated(_torch_save({"conv1.weight": torch.zeros(12, 4, 3, 3)}))),
    "list-not-dict": ("isp.pth", lambda: _torch_save([torch.zeros(3)])),
    "dict-of-strings": ("isp.pth", lambda: _torch_save({"conv1.weight": "x"})),
    "empty-dict": ("isp.pth", lambda: _torch_save({})),
    "unknown-keys": ("isp.pth", lambda: _torch_save({"encoder.weight": torch.zeros(3, 3)})),
    "wrong-shapes": ("isp.pth", lambda: _torch_save(
        {"conv1.weight": torch.zeros(12, 4, 5, 5), "conv1.bias": torch.zeros(12),
         "conv2.weight": torch.zeros(12, 12, 3, 3), "conv2.bias": torch.zeros(12),
         "conv3.weight": torch.zeros(12, 12, 3, 3), "conv3.bias": torch.zeros(12)})),
    "safetensors-given": ("isp.pth", model_bytes),
}
