"""A tiny synthetic RAW set with ground truth, shared by the training tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unisp.fileio import write_image
from unisp.synth.dataset import synthesize_folder


def smooth_photo(seed: int, size: int = 48) -> torch.Tensor:
    """A smooth colour image (bilinearly upsampled 6×6 noise): easy to learn, but not constant."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 6, generator=g) * 0.8 + 0.1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """``{root}/raw`` (6 noise-free 48×48 synthetic RAW files) and ``{root}/rgb`` (their ground truth)."""
    root = tmp_path_factory.mktemp("tiny_set")
    for i in range(6):
        write_image(root / "photos" / f"img{i}.png", smooth_photo(i))
    synthesize_folder(root / "photos", root, seed=0, noise=False, bits=10, tone_curve=False)
    return root
