"""Writing files safely (temporary file, fsync, rename) and reading/writing RGB images.

Every output unisp writes goes through :func:`atomic_write`, so a killed process or a full disk
never leaves a truncated file where a good one was, nor a partial new file.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, get_args

import imageio.v3 as iio
import imagecodecs
import numpy as np
import tifffile
import torch

from unisp.errors import OutputError, UnispError

#: Image file extensions unisp reads as RGB photos.
RGB_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Formats unisp writes output images in (``render``/``process --format``), and each one's suffix.
ImageFormat = Literal["png", "tiff"]
IMAGE_FORMATS: tuple[str, ...] = get_args(ImageFormat)
IMAGE_SUFFIXES: dict[str, str] = {"png": ".png", "tiff": ".tif"}


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[io.BufferedWriter]:
    """Open ``path`` for binary writing through a temporary file in the same folder.

    On success the data is flushed, fsynced and renamed over ``path``, and the folder is fsynced
    so that the rename itself survives a power cut; on any error the
    temporary file is removed and ``path`` is left as it was. Errors from the file system
    (missing folder, no permission, disk full) become :class:`OutputError` naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        os.chmod(tmp, _new_file_mode())  # mkstemp makes 0o600; outputs get what open() would give
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _kill_before_rename_hook(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        _remove_quietly(tmp)
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _new_file_mode() -> int:
    """The permissions ``open()`` gives a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the folder's entry list is synced too); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Test hook (documented in tests/train/test_reliability.py): ``NAME:N`` makes the process SIGKILL
#: itself while writing the N-th file called NAME, after the temporary file is complete and
#: before it is renamed, to test that a kill mid-save loses nothing. Unset in normal use.
KILL_HOOK_ENV = "UNISP_TEST_KILL_BEFORE_RENAME"
_kill_hook_counts: dict[str, int] = {}


def _kill_before_rename_hook(path: Path) -> None:
    spec = os.environ.get(KILL_HOOK_ENV)
    if not spec:
        return
    name, _, nth = spec.rpartition(":")
    if path.name != name:
        return
    _kill_hook_counts[name] = _kill_hook_counts.get(name, 0) + 1
    if _kill_hook_counts[name] == int(nth):
        os.kill(os.getpid(), signal.SIGKILL)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def quantize(image: torch.Tensor | np.ndarray, depth: int = 8) -> np.ndarray:
    """``(3, H, W)`` float image → ``(H, W, 3)`` uint8/uint16: clamp to [0, 1], scale, round half to even.

    A tensor on an accelerator is quantised there (:func:`quantize_tensor`), so it crosses to the
    host as 8- or 16-bit integers, a quarter or half of its float32 bytes. On the CPU NumPy is
    faster (12 MP: 0.08 s against 0.3 s for torch's permute-and-round on 2 cores).

    Example:
        >>> q = quantize(torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(3, 2, 2))
        >>> q.shape, q.dtype, q[0, 0]  # 0.5 × 255 = 127.5 rounds half to even
        ((2, 2, 3), dtype('uint8'), array([  0, 128, 255], dtype=uint8))
    """
    peak = _peak(depth)
    if isinstance(image, torch.Tensor):
        if image.device.type != "cpu":
            return quantize_tensor(image, depth)
        image = image.detach().float().numpy()
    if _channels_first(image):
        image = np.moveaxis(image, 0, -1)
    out = np.rint(np.clip(image, 0.0, 1.0) * peak)
    return out.astype(np.uint8 if depth == 8 else np.uint16)


def quantize_tensor(image: torch.Tensor, depth: int = 8) -> np.ndarray:
    """:func:`quantize` computed by torch on the tensor's own device (``torch.round`` is half to even, as ``np.rint``)."""
    peak = _peak(depth)
    image = image.detach().float()
    if _channels_first(image):
        image = image.permute(1, 2, 0)
    out = torch.round(image.clamp(0.0, 1.0) * peak).to(torch.uint8 if depth == 8 else torch.uint16)
    return out.contiguous().cpu().numpy()


def _peak(depth: int) -> int:
    """The largest code of an 8- or 16-bit image."""
    if depth not in (8, 16):
        raise UnispError(f"bit depth must be 8 or 16, got {depth}")
    return 255 if depth == 8 else 65535


def _channels_first(image: torch.Tensor | np.ndarray) -> bool:
    """Whether a 3-D image is ``(C, H, W)`` with 1 or 3 channels (rather than ``(H, W, C)``)."""
    return image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3)


def write_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray, depth: int = 8) -> None:
    """Write a ``(3, H, W)`` float image in [0, 1] (or an ``(H, W, C)`` integer array) as PNG or TIFF, atomically.

    The format follows the extension (``.png``, ``.tif``/``.tiff``). Float input is clamped and
    quantised with :func:`quantize`; integer input is written as it is.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".png", ".tif", ".tiff"):
        raise UnispError(f"{path}: output format must be .png or .tif/.tiff")
    pixels = image if isinstance(image, np.ndarray) and image.dtype.kind in "ui" else quantize(image, depth)
    write_bytes(path, encode_image(pixels, ext))


def encode_image(pixels: np.ndarray, ext: str) -> bytes:
    """Encode an ``(H, W)`` or ``(H, W, C)`` uint8/uint16 array as PNG or TIFF bytes (16-bit kept)."""
    if ext == ".png":
        return bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels)))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    return buffer.getvalue()


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Read an image file's pixels as they are stored (16-bit PNG and TIFF keep their depth).

    Raises :class:`UnispError` naming the file when it cannot be decoded.
    """
    path = Path(path)
    ext = path.suffix.lower()
    try:
        if path.stat().st_size == 0:
            raise UnispError(f"{path}: empty file (0 bytes)")
        if ext == ".png":
            data = path.read_bytes()
            check_png_size(path, data)
            return np.asarray(imagecodecs.png_decode(data))
        if ext in (".tif", ".tiff"):
            return np.asarray(tifffile.imread(path))
        return np.asarray(iio.imread(path))
    except UnispError:
        raise
    except OSError as e:
        raise UnispError(f"{path}: cannot read ({_one_line(e.strerror or e)})") from None
    except Exception as e:  # decoders raise many types for corrupt files
        raise UnispError(f"{path}: cannot decode as an image ({_one_line(e)})") from None


def read_input_bytes(path: str | os.PathLike, *, limit: int, what: str) -> bytes:
    """The bytes of an input file that must be a regular file of at most ``limit`` bytes.

    A FIFO would block the read forever and ``/dev/zero`` would fill memory, so anything but a
    regular file is refused before it is opened, and so is a file larger than ``limit`` (a recipe
    or a model header is never that big). Raises :class:`UnispError` naming the file and ``what``
    it should have been (``"recipe"``, ``"model file"``).
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UnispError(f"{path}: no such file") from None
    except OSError as e:
        raise UnispError(f"{path}: cannot read ({_one_line(e.strerror or e)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnispError(f"{path}: is a folder, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise UnispError(f"{path}: not a regular file (a device, FIFO or socket), not a {what}")
    if info.st_size > limit:
        raise UnispError(f"{path}: {info.st_size:,} bytes, more than a {what} can be ({limit:,} bytes at most)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UnispError(f"{path}: cannot read ({_one_line(e.strerror or e)})") from None
    if len(data) > limit:  # grew while we looked
        raise UnispError(f"{path}: more than a {what} can be ({limit:,} bytes at most)")
    return data


#: Most that deflate (PNG's compression) can expand its input: 258-byte matches coded in about 2
#: bits give a ratio of about 1032:1 (zlib's technical notes), so pixel data larger than this many
#: times a PNG's compressed IDAT bytes cannot be in the file.
MAX_DEFLATE_RATIO = 1032
#: Channels of each PNG colour type (PNG specification, IHDR): gray, RGB, palette, gray+alpha, RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png_size(path: Path, data: bytes) -> None:
    """Refuse a PNG whose header claims more pixel data than its compressed data can hold.

    A truncated or forged PNG can claim 65535×65535 pixels in a few hundred bytes; decoding it
    would allocate the whole image first (imagecodecs then keeps those gigabytes of address space
    after the error). The check reads only the chunk headers; a file it cannot parse is left to
    the decoder, which reports it.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return
    offset, header, compressed = len(_PNG_SIGNATURE), None, 0
    while offset + 8 <= len(data):
        length, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if kind == b"IHDR" and length >= 10:
            header = data[offset + 8 : offset + 18]
        elif kind == b"IDAT":
            compressed += min(length, len(data) - offset - 8)
        elif kind == b"IEND":
            break
        offset += 12 + length
    if header is None or header[9] not in PNG_CHANNELS:
        return
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    pixel_bytes = width * height * PNG_CHANNELS[header[9]] * header[8] // 8
    if pixel_bytes > MAX_DEFLATE_RATIO * max(compressed, 1):
        raise UnispError(
            f"{path}: truncated or corrupt PNG: its header says {width}×{height}, more pixels than its "
            f"{compressed:,} bytes of image data can hold"
        )


#: Longest decoder message quoted in an error line (some decoders explain themselves at length).
_MAX_REASON_CHARS = 200


def _one_line(reason: object) -> str:
    """A decoder's error message on one line, shortened."""
    text = " ".join(str(reason).split())
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def read_rgb(path: str | os.PathLike) -> torch.Tensor:
    """Read an RGB photo as a ``(3, H, W)`` float32 tensor in [0, 1].

    8- and 16-bit files are scaled by their own maximum code value; grayscale (with or without
    alpha) is replicated to three channels and an alpha channel is dropped (not composited).
    CMYK images and files that cannot be decoded raise :class:`UnispError`.
    """
    path = Path(path)
    pixels = read_pixels(path)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise UnispError(f"{path}: expected an RGB image, got shape {pixels.shape}")
    if pixels.shape[-1] == 4 and _is_cmyk(path):
        raise UnispError(f"{path}: CMYK image; convert it to RGB first (unisp does not guess a CMYK→RGB conversion)")
    if pixels.shape[-1] <= 2:  # gray, or gray + alpha
        pixels = np.repeat(pixels[..., :1], 3, axis=-1)
    pixels = pixels[..., :3]
    if pixels.dtype == np.bool_:  # a 1-bit image (TIFF, BMP): True is white
        pixels, scale = pixels.astype(np.uint8), 1.0
    elif pixels.dtype == np.uint8:
        scale = 255.0
    elif pixels.dtype == np.uint16:
        scale = 65535.0
    elif pixels.dtype.kind == "f":
        scale = 1.0
    else:
        raise UnispError(f"{path}: unsupported pixel type {pixels.dtype}")
    out = torch.from_numpy(np.ascontiguousarray(pixels).astype(np.float32) / scale).permute(2, 0, 1)
    if not torch.isfinite(out).all():
        raise UnispError(f"{path}: image contains NaN or Inf")
    return out.clamp(0.0, 1.0).contiguous()


def _is_cmyk(path: Path) -> bool:
    """Whether a four-channel image file stores CMYK (TIFF PhotometricInterpretation 5, or a CMYK JPEG)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                return tif.pages[0].photometric == tifffile.PHOTOMETRIC.SEPARATED
        from PIL import Image

        with Image.open(path) as image:
            return image.mode == "CMYK"
    except Exception:  # the pixels were decoded already; a header the sniffers cannot read is not CMYK
        return False


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (links followed; either may not exist yet)."""
    return _identity(a) == _identity(b)


def _identity(path: Path) -> tuple:
    """What makes two paths the same file: device and inode where it exists, else its resolved path."""
    try:
        info = path.stat()
    except OSError:
        return ("path", path.resolve())
    return ("inode", info.st_dev, info.st_ino)


def check_output_file(path: Path, suffixes: tuple[str, ...], flag: str, inputs: Iterable[Path] = ()) -> Path:
    """Refuse an output file whose extension is not one of ``suffixes`` or that is one of ``inputs``.

    The extension rule keeps a mistyped path from replacing a file of another kind (an ONNX
    export written over its own ``.safetensors`` model, a CSV over a ground-truth PNG).
    """
    if path.suffix.lower() not in suffixes:
        raise UnispError(f"{flag} {path}: expected a file ending in {' or '.join(suffixes)}")
    if any(same_file(path, p) for p in inputs):
        raise UnispError(f"{flag} {path}: is an input of this command; writing there would overwrite it")
    return path


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` and check it is writable before any work is done.

    Raises:
        OutputError: ``out`` is a file, cannot be created, or is not writable.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create output folder ({e.strerror or e})") from None
    probe = out / ".unisp-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{out}: output folder is not writable ({e.strerror or e})") from None
    return out


def plan_outputs(sources: list[Path], out: Path, suffix: str, protected: Iterable[Path] = ()) -> list[Path]:
    """The output file ``out/STEM{suffix}`` of each source, checked before anything is written.

    Raises :class:`UnispError` naming the files when an output would overwrite a source or a
    ``protected`` file (ground truth, a sidecar), or when two sources would be written to the
    same output (``x.dng`` and ``x.nef``; names are compared case-insensitively, as macOS and
    Windows file systems do, so ``x.DNG`` collides too).
    """
    outputs = [out / f"{source.stem}{suffix}" for source in sources]
    inputs = {_identity(p): p for p in (*sources, *protected)}
    for output in outputs:
        clash = inputs.get(_identity(output))
        if clash is not None:
            what = "an input" if clash in sources else f"the input {clash}"
            raise UnispError(f"{output}: is {what}; writing an output there would overwrite it: write to another folder")
    by_name: dict[str, list[Path]] = {}
    for source, output in zip(sources, outputs):
        by_name.setdefault(output.name.casefold(), []).append(source)
    for name, group in by_name.items():
        if len(group) > 1:
            listed = ", ".join(str(p) for p in group)
            raise UnispError(f"{listed}: would all be written to {out / group[0].stem}{suffix}; convert them into separate folders")
    return outputs


def list_images(folder: str | os.PathLike, extensions: tuple[str, ...] = RGB_EXTENSIONS) -> list[Path]:
    """Sorted files in ``folder`` (not recursive) whose extension is one of ``extensions``.

    Hidden files (``.name``, including the ``._name`` resource forks macOS leaves on shared drives)
    are skipped, as :func:`unisp.raw.io.find_raw_files` skips them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UnispError(f"{folder}: not a folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions
    )
    if not files:
        raise UnispError(f"{folder}: no files with extension {', '.join(extensions)}")
    return files
