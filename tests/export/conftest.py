"""Shared by the export tests: a generator with weights large enough to matter, and a tiny RAW folder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unisp.fileio import write_image
from unisp.models.registry import build_model
from unisp.synth.dataset import synthesize_folder


@pytest.fixture(scope="session")
def isp_model():
    """The Efficient ISP with random weights ×3: far from identity, so a wrong packing or normalisation shows."""
    torch.manual_seed(0)
    model = build_model("efficient_isp").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.fixture(scope="session")
def raw_folder(tmp_path_factory):
    """Three noisy synthetic 10-bit RAW files (96×128, RGGB, black 64) with sidecars: a calibration folder."""
    root = tmp_path_factory.mktemp("export_raw")
    for i in range(3):
        g = torch.Generator().manual_seed(i)
        photo = F.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(96, 128), mode="bilinear", align_corners=False)[0]
        write_image(root / "photos" / f"img{i}.png", photo)
    synthesize_folder(root / "photos", root, seed=0, noise=True, bits=10, tone_curve=False)
    return root / "raw"
