"""The training recipe: one typed dataclass, loaded from ``configs/*.yaml`` plus ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from unisp.errors import ConfigError
from unisp.isp.demosaic import DemosaicMethod

Mode = Literal["stage1", "paired"]
#: The values of :data:`unisp.raw.io.LAYOUTS`.
Layout = Literal["auto", "libraw", "zrr", "uispf", "unisp", "png", "npy", "headerless"]


@dataclass
class DataConfig:
    """Where the training images are and how patches are drawn.

    Attributes:
        raw_dir: folder of RAW files (any layout :func:`unisp.raw.io.read_raw` reads).
        rgb_dir: paired mode: folder of RGB targets aligned pixel for pixel with the RAW files,
            matched by file stem.
        layout: how to read the RAW files (``auto`` picks by extension and folder name).
        val_dir: RAW files held out for validation (full images); empty → ``val_fraction`` of raw_dir.
        val_rgb_dir: paired targets of ``val_dir``.
        val_fraction: share of ``raw_dir`` held out for validation when no ``val_dir`` is given.
        patch: patch edge in mosaic pixels (the paper trains on 256×256 RAW patches).
        flips: random Bayer-safe flips.
        samples_per_epoch: patches drawn per pass over the data loader.
        workers: data-loader worker processes (0 = in the training process).
        val_max_images: at most this many validation images are scored.
    """

    raw_dir: str = ""
    rgb_dir: str = ""
    layout: Layout = "auto"
    val_dir: str = ""
    val_rgb_dir: str = ""
    val_fraction: float = 0.1
    patch: int = 256
    flips: bool = True
    samples_per_epoch: int = 3200
    workers: int = 0
    val_max_images: int = 8


@dataclass
class LossConfig:
    """Supervised loss ``l1 · L1 + ssim · (1 − SSIM)`` (paired mode: the paper's supervised baseline)."""

    l1: float = 1.0
    ssim: float = 0.0


@dataclass
class TrainConfig:
    """A training run.

    Attributes:
        mode: ``stage1`` — learn to reproduce the classical render of the RAW input (the paper's
            demosaicing pretraining, no RGB needed); ``paired`` — learn aligned RGB targets.
        model: generator name (``efficient_isp``, ``robust_isp``, ``rmfa_tiny``).
        init: model file (.safetensors) to start from; empty = random initialisation.
        target_demosaic: demosaicing of the classical render used as stage-1 target
            (white balance as shot, no colour matrix, sRGB curve: the paper's "demosaic + WB + gamma").
        steps: optimiser steps.
        batch_size: patches per step (the paper: 32).
        lr, betas: Adam settings (the paper's generator optimiser: 5e-4, (0.5, 0.9)).
        seed: seeds initialisation, data order and patches.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        log_every, val_every, ckpt_every: in steps.
        out: run folder (created; the recipe, git hash, logs and checkpoints go there).
    """

    mode: Mode = "stage1"
    model: str = "efficient_isp"
    init: str = ""
    target_demosaic: DemosaicMethod = "malvar"
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.9)
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    val_every: int = 500
    ckpt_every: int = 500
    out: str = "runs/stage1"

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "val_every", "ckpt_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"config key 'lr' must be positive, got {self.lr}")
        if not 0 <= self.data.val_fraction < 1:
            raise ConfigError(f"config key 'data.val_fraction' must be in [0, 1), got {self.data.val_fraction}")
        if self.data.patch < 8 or self.data.patch % 2:
            raise ConfigError(f"config key 'data.patch' must be an even number ≥ 8, got {self.data.patch}")

    def check_ready(self) -> None:
        """Raise :class:`ConfigError` for settings a run needs but defaults cannot give."""
        if not self.data.raw_dir:
            raise ConfigError("config key 'data.raw_dir' is required (a folder of RAW files)")
        if self.mode == "paired" and not self.data.rgb_dir:
            raise ConfigError("config key 'data.rgb_dir' is required in paired mode (aligned RGB targets)")
