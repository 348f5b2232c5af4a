"""Tests for unisp.synth.bundled: scikit-image's shipped colour photos and their export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from unisp.fileio import read_pixels
from unisp.synth.bundled import BUNDLED_PHOTOS, bundled_photos, export_bundled


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    return bundled_photos()


def test_photos(photos):
    assert list(photos) == list(BUNDLED_PHOTOS)
    assert len(photos) >= 4
    for name, photo in photos.items():
        assert photo.dtype == torch.float32 and photo.ndim == 3 and photo.shape[0] == 3, name
        assert photo.shape[1] >= 256 and photo.shape[2] >= 256, name
        assert 0.0 <= float(photo.min()) and float(photo.max()) <= 1.0, name
        # A colour photograph, not a grey image stored as RGB: channels differ somewhere.
        assert float((photo[0] - photo[2]).abs().max()) > 0.1, name


def test_known_sizes(photos):
    # Sizes documented by scikit-image (height, width): astronaut 512×512, chelsea 300×451, coffee 400×600.
    assert photos["astronaut"].shape[1:] == (512, 512)
    assert photos["chelsea"].shape[1:] == (300, 451)
    assert photos["coffee"].shape[1:] == (400, 600)


def test_export_is_exact_and_even(photos, tmp_path):
    paths = export_bundled(tmp_path / "demo")
    assert [p.name for p in paths] == [f"{n}.png" for n in BUNDLED_PHOTOS]
    for path, (name, photo) in zip(paths, photos.items()):
        pixels = read_pixels(path)
        h, w = photo.shape[1] // 2 * 2, photo.shape[2] // 2 * 2
        assert pixels.shape == (h, w, 3) and pixels.dtype == np.uint8
        # The photos are 8-bit values / 255, so writing them back as 8-bit PNG is lossless.
        expected = np.rint(photo[:, :h, :w].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)
    assert not list((tmp_path / "demo").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_loads_offline(tmp_path):
    # In a fresh interpreter with an empty download cache and every socket connection refused,
    # all bundled photos still load: none of them is fetched on demand by pooch.
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network disabled by test')\n"
        "socket.socket.connect = refuse\n"
        "from unisp.synth.bundled import bundled_photos\n"
        "print(len(bundled_photos()))\n"
    )
    env = {"SKIMAGE_DATADIR": str(tmp_path / "empty_cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(BUNDLED_PHOTOS))
