"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest
import torch

#: Where device-dependent tests run: always the CPU (CI), and CUDA too where a GPU is present.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a test builds its tensors on; compare results on the CPU (``.cpu()``)."""
    return torch.device(request.param)
