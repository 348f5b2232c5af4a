"""Atomic writes and RGB image I/O."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from unisp.errors import OutputError, UnispError
from unisp.fileio import (
    MAX_DEFLATE_RATIO,
    atomic_write,
    check_png_size,
    list_images,
    quantize,
    quantize_tensor,
    read_rgb,
    write_bytes,
    write_image,
    write_text,
)


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "f.txt"
    write_text(path, "good")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"partial")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "good"
    assert os.listdir(tmp_path) == ["f.txt"]  # no temporary file left behind


def test_unwritable_folder_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        write_text(blocker / "sub" / "out.txt", "x")


def test_quantize_known_values():
    image = torch.tensor([0.0, 0.5, 1.0, 1.5, -0.2]).view(1, 1, 5).expand(3, 1, 5)
    # 0.5 * 255 = 127.5 rounds half to even → 128; out-of-range values are clamped.
    assert quantize(image, 8)[0, :, 0].tolist() == [0, 128, 255, 255, 0]
    assert quantize(image, 16)[0, :, 0].tolist() == [0, 32768, 65535, 65535, 0]
    with pytest.raises(UnispError, match="8 or 16"):
        quantize(image, 12)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("shape", [(3, 5, 7), (5, 7, 3), (1, 4, 6)])
def test_quantize_tensor_equals_numpy_path(depth, shape):
    # The device path (used for CUDA tensors) must give the host path's integers exactly: both
    # clamp and scale in float32 and round half to even; values at (k + 0.5) / peak probe the halves.
    g = torch.Generator().manual_seed(depth)
    image = torch.rand(shape, generator=g) * 1.4 - 0.2
    peak = 255 if depth == 8 else 65535
    image.view(-1)[:8] = (torch.arange(8) + 0.5) / peak
    got = quantize_tensor(image, depth)
    expected = quantize(image.numpy(), depth)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected)
    with pytest.raises(UnispError, match="8 or 16"):
        quantize_tensor(image, 10)


@pytest.mark.parametrize("ext, depth, tol", [(".png", 8, 0.5 / 255), (".png", 16, 0.5 / 65535), (".tif", 16, 0.5 / 65535)])
def test_image_round_trip(tmp_path, ext, depth, tol):
    image = torch.rand(3, 7, 9, generator=torch.Generator().manual_seed(0))
    write_image(tmp_path / f"x{ext}", image, depth=depth)
    back = read_rgb(tmp_path / f"x{ext}")
    assert back.shape == (3, 7, 9)
    assert (back - image).abs().max() <= tol + 1e-7


def test_read_rgb_grayscale_and_alpha(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_image(tmp_path / "g.png", gray[..., None].repeat(1, -1))
    assert torch.equal(read_rgb(tmp_path / "g.png")[0], read_rgb(tmp_path / "g.png")[2])
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    write_image(tmp_path / "a.png", rgba)
    assert read_rgb(tmp_path / "a.png").shape == (3, 2, 2)


def test_read_rgb_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UnispError, match="bad.png"):
        read_rgb(tmp_path / "bad.png")
    with pytest.raises(UnispError, match="no files"):
        list_images(tmp_path / "..", extensions=(".nothing",))
    with pytest.raises(UnispError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_atomic_write_gives_the_umask_mode(tmp_path):
    # mkstemp creates 0o600 files; an output must get the mode a plain open() would give it.
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def _png(width: int, height: int, idat: bytes) -> bytes:
    """A PNG of only a signature, an 8-bit RGB IHDR of ``width × height`` and one IDAT chunk (CRCs zeroed)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = lambda kind, data: len(data).to_bytes(4, "big") + kind + data + b"\0" * 4  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_png_claiming_more_pixels_than_deflate_can_hold_is_refused(tmp_path):
    """65535² RGB pixels (12.9 GB) cannot come from 100 bytes: deflate expands at most 1032×. Decoding it
    would allocate the image first (and imagecodecs keeps that address space after its error)."""
    path = tmp_path / "forged.png"
    with pytest.raises(UnispError, match=r"forged.png: truncated or corrupt PNG: its header says 65535×65535"):
        check_png_size(path, _png(65535, 65535, b"\0" * 100))


def test_png_size_check_bound_is_exact():
    """One row of W RGB pixels is 3·W bytes; 3 compressed bytes hold at most 3·1032: W = 1032 passes, 1033 fails."""
    check_png_size(None, _png(MAX_DEFLATE_RATIO, 1, b"\0" * 3))
    with pytest.raises(UnispError):
        check_png_size(None, _png(MAX_DEFLATE_RATIO + 1, 1, b"\0" * 3))


def test_highly_compressed_valid_png_reads(tmp_path):
    """An all-black 2000×2000 photo compresses about 1000:1, close to the bound, and still reads."""
    path = tmp_path / "black.png"
    write_image(path, np.zeros((2000, 2000, 3), np.uint8))
    assert read_rgb(path).shape == (3, 2000, 2000)
