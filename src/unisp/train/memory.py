"""Refusing a batch that cannot fit: the memory one training step needs, estimated before it starts.

Without this, ``batch_size=1000`` grows the process until the kernel kills it (at 23 GB on a
24 GB machine), with no message. A step's peak grows linearly with the batch and the patch area:
activations of the generator, kept for the backward pass, and of the frozen backbones and the
discriminators when the paper's terms are on. :func:`step_bytes` is

    batch × 3 channels × 4 bytes (float32) × (patch² × factor + 224² × colour factor),

the second part only with the colour term, whose view is resized to 224² whatever the patch;
factors measured on this project's 2-core CPU machine (peak RSS of 3 steps at three batch sizes
between 4 and 160; the slope over the batch, so the fixed cost of the libraries and models drops
out). A
run whose estimate exceeds the memory available is refused with one line naming the keys to
lower. On CUDA the same estimate is compared with the device's free memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from unisp.errors import ConfigError
from unisp.losses.backbones import COLOUR_SIZE
from unisp.losses.config import TERMS, UNISP_TERMS
from unisp.train.config import TrainConfig
from unisp.train.objective import active_terms

log = logging.getLogger(__name__)

#: Bytes of one float32 sample of the output image.
BYTES_PER_VALUE = 4
#: Channels of the output image.
CHANNELS = 3
#: Peak bytes per output value of a step with pixel terms only (stage 1, L1), by generator:
#: efficient_isp 17.1 at patch 64, 17.6 at 128, 9.0 at 256 (batch 32–160); robust_isp 16.2 and
#: 15.7 at 64 and 128; rmfa_tiny 155 at 64 and 87 at 128. The largest, rounded up: the estimate
#: errs towards refusing a batch that would just fit (2× high for stage 1 at patch 256).
GENERATOR_FACTOR = {"efficient_isp": 18, "robust_isp": 17, "rmfa_tiny": 160}
#: Added when unisp's own terms are on (``graded``, ``texture_swd``): configs/unpaired.yaml with
#: efficient_isp measured 75.5 at patch 64 and 71.7 at 128, less the generator's 18.
UNISP_TERMS_FACTOR = 58
#: Added when any of the paper's terms is on (the content and texture views, the discriminators,
#: R1/R2, DLA's backward pass per term): configs/zrr_unpaired.yaml on the ``lite`` profile with
#: ``d_every=1`` measured 207 MB per sample at patch 64 and 277 MB at 128 (batch 4–16), i.e.
#: 475 per output value less the generator's 18, plus the colour view's share below. The
#: ``paper`` profile's VGG-19 and ViT-B/16 (not installed here) need more: there the estimate is low.
PAPER_TERMS_FACTOR = 460
#: Peak bytes per value of the colour term's view, which is resized to ``COLOUR_SIZE``² whatever
#: the patch: the 184 MB per sample of the measurement above that does not scale with the patch.
COLOUR_VIEW_FACTOR = 310
#: Where Linux says how much memory can be allocated without swapping.
MEMINFO = Path("/proc/meminfo")


def step_bytes(config: TrainConfig, batch: int) -> int:
    """Estimated peak bytes of one training step of ``batch`` patches (see the module docstring).

    Example:
        >>> from unisp.train.config import PixelLossConfig
        >>> step_bytes(TrainConfig(mode="stage1", pixel=PixelLossConfig(l1=1.0)), 32)  # 32 × 3 × 4 × 256² × 18
        452984832
    """
    terms = active_terms(config)
    factor = GENERATOR_FACTOR.get(config.model, max(GENERATOR_FACTOR.values()))
    if terms.keys() & set(UNISP_TERMS):
        factor += UNISP_TERMS_FACTOR
    if terms.keys() & set(TERMS):
        factor += PAPER_TERMS_FACTOR
    values = config.data.patch**2 * factor + ("colour" in terms) * COLOUR_SIZE**2 * COLOUR_VIEW_FACTOR
    return batch * CHANNELS * BYTES_PER_VALUE * values


def available_bytes(device: torch.device) -> int | None:
    """Memory a step can use on ``device``: free CUDA memory, or the host's available memory
    (psutil, else ``MemAvailable`` of /proc/meminfo); None where neither can be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil
    except ImportError:
        return _meminfo_available()
    return int(psutil.virtual_memory().available)


def _meminfo_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes, or None (not Linux, or a kernel before 3.14)."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable" and value.split():
            return int(value.split()[0]) * 1024  # kB
    return None


def check_step_memory(config: TrainConfig, device: torch.device, batch: int) -> None:
    """Raise :class:`ConfigError` when a step of ``batch`` patches needs more memory than ``device`` has free."""
    available = available_bytes(device)
    if available is None:
        log.debug("cannot tell how much memory is available: the batch size is not checked")
        return
    needed = step_bytes(config, batch)
    if needed > available:
        raise ConfigError(
            f"a training step of batch_size={config.batch_size} × data.patch={config.data.patch} needs about "
            f"{needed / 1e9:.1f} GB, more than the {available / 1e9:.1f} GB available on {device}; "
            "lower batch_size or data.patch"
        )
