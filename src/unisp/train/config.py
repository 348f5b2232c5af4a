"""The training recipe: one typed dataclass, loaded from ``configs/*.yaml`` plus ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from unisp.data.files import split_files
from unisp.errors import ConfigError
from unisp.isp.awb import InputWhiteBalance
from unisp.isp.demosaic import DemosaicMethod
from unisp.isp.pipeline import TRAINING_TARGET, ISPConfig, TransferCurve
from unisp.losses.config import UnpairedLossConfig
from unisp.models.registry import MODEL_NAMES
from unisp.raw.options import FLAG_KEYS, RawOptions, read_camera_file

#: stage1: reproduce the classical render X̂ (the paper's pretraining);
#: unpaired: the paper's loss with an unrelated RGB set (content against X̂);
#: paired: the paper's paired row, its released training with ``shuffled = False``: content still
#: against X̂, the aligned photos become the discriminators' real images (and the reference of
#: any pixel terms: supervised training is ``paired`` with pixel terms only);
#: paired_no_adv: the paper's row without adversarial terms: content against X̂ + total variation
#: (and any pixel terms against the aligned photos).
Mode = Literal["stage1", "unpaired", "paired", "paired_no_adv"]
#: What the paper's content term compares with: ``render`` (X̂, the paper in every mode) or
#: ``aligned`` (the aligned photo; paired modes only, unisp's behaviour before 2026-12-06).
ContentReference = Literal["render", "aligned"]
#: How every learning rate changes over a run: ``constant`` (the paper's) or ``cosine`` (a half
#: cosine from the recipe's rate at the first step to zero after the last, for short runs whose
#: last checkpoint should not be taken mid-oscillation).
LrSchedule = Literal["constant", "cosine"]
#: Modes whose training data has aligned RGB targets.
PAIRED_MODES = ("paired", "paired_no_adv")
#: The seeds ``torch.manual_seed`` takes: [-2**63, 2**64).
SEED_RANGE = (-(2**63), 2**64)
#: The values of :data:`unisp.raw.io.LAYOUTS`.
Layout = Literal["auto", "libraw", "zrr", "uispf", "unisp", "png", "npy", "headerless"]


@dataclass
class DataConfig:
    """Where the training images are and how patches are drawn.

    Attributes:
        raw_dir: folder of RAW files (any layout :func:`unisp.raw.io.read_raw` reads).
        rgb_dir: paired modes: RGB targets aligned pixel for pixel with the RAW files, matched by
            file stem; unpaired mode: a folder of unrelated RGB photos (other scenes, other cameras).
        layout: how to read the RAW files (``auto`` picks by extension and folder name).
        val_dir: RAW files held out for validation (full images); empty → ``val_fraction`` of raw_dir.
        val_rgb_dir: ground truth of the validation RAW files, when there is any (paired
            modes default to ``rgb_dir``); without it, unpaired runs are scored against the classical
            render (content consistency), logged as ``val_render_psnr``.
        val_fraction: share of ``raw_dir`` held out for validation when no ``val_dir`` is given.
        patch: patch edge in mosaic pixels (the paper trains on 256×256 RAW patches).
        flips: random Bayer-safe flips.
        samples_per_epoch: patches drawn per pass over the data loader.
        workers: data-loader worker processes (0 = in the training process).
        val_max_images: at most this many validation images are scored.
        cfa, black, white, width, height, bits: the sensor's values, as the flags of the same names
            (``--cfa`` …): Bayer pattern, black level (one value or four in ``(R, Gr, Gb, B)`` order),
            white level, a headerless file's size, bit depth (sets the white level when ``white`` is
            not given); they override the files' metadata and the camera file. None: not given.
        camera: a per-camera YAML file (``configs/cameras/*.yaml``) whose values are used under
            the keys above; empty = none.
        input_wb: what the generator's input is white-balanced with: ``none`` (the paper: the
            normalised planes) or ``as_shot`` (each file's as-shot gains normalised to green, then
            clipped to [0, 1]; :func:`unisp.isp.awb.input_gains`). Recorded in the model files
            (``input_wb``) and applied by every command that loads them.

    Every RAW file of the run (training, validation, ``unisp select`` and ``unisp report``) is read
    with these values; the model files record them (their header's ``raw_input``).
    """

    raw_dir: str = ""
    rgb_dir: str = ""  # paired modes: aligned targets (same stems); unpaired: any unrelated RGB photos
    layout: Layout = "auto"
    val_dir: str = ""
    val_rgb_dir: str = ""
    val_fraction: float = 0.1
    patch: int = 256
    flips: bool = True
    samples_per_epoch: int = 3200
    workers: int = 0
    val_max_images: int = 8
    cfa: Optional[str] = None
    black: Union[float, list[float], None] = None
    white: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    bits: Optional[int] = None
    camera: str = ""
    input_wb: InputWhiteBalance = "none"

    def recipe_options(self) -> RawOptions:
        """The RAW values the recipe's own keys give (``data.cfa`` … ``data.bits``), validated.

        Raises:
            ConfigError: an invalid value, naming its key.
        """
        values = {key: getattr(self, key) for key in FLAG_KEYS}
        return RawOptions.from_mapping(values, name=lambda key: f"config key 'data.{key}'")

    def raw_options(self) -> RawOptions:
        """The values every RAW file of the run is read with: the camera file's (``data.camera``),
        with the recipe's own keys in their place.

        Raises:
            ConfigError: an invalid value, or a camera file that cannot be read, naming the key.
        """
        if not self.camera:
            return self.recipe_options()
        try:
            camera = read_camera_file(self.camera)
        except ConfigError as e:
            raise ConfigError(f"config key 'data.camera': {e}") from None
        return camera.merged(self.recipe_options())


@dataclass
class PixelLossConfig:
    """Pixel terms against the reference (X̂ in stage1/unpaired, the target in paired modes).

    ``l1 · |Ŷ − ref|`` and ``ssim · (1 − SSIM(Ŷ, ref))``; a zero multiplier leaves the term out.
    Stage 1 uses these alone; the paper's stage-2 losses are in ``losses``.
    """

    l1: float = 0.0
    ssim: float = 0.0


@dataclass
class TrainConfig:
    """A training run.

    Attributes:
        mode: see :data:`Mode`.
        model: generator name (``efficient_isp``, ``robust_isp``, ``rmfa_tiny``).
        init: model file (.safetensors) to start from; empty = random initialisation.
        target_demosaic: demosaicing of the classical render X̂, the stage-1 target and the content
            reference (white balance as shot, no colour matrix, a transfer curve: the paper's
            "demosaic + WB + gamma"; the released loader uses Menon).
        target_transfer: X̂'s transfer curve (``srgb``; the released loader: ``gamma22``).
        target_stretch: stretch each X̂ min–max before the transfer curve, as the released loader
            does per image (here per rendered patch).
        content_reference: see :data:`ContentReference`.
        steps: optimiser steps.
        batch_size: patches per step (the paper: 32).
        pixel: L1/SSIM terms (stage 1, or supervised training on aligned pairs).
        losses: the paper's terms (content, colour, two texture, TV), backbones and DLA.
        lr, betas: the generator's Adam (the paper: 5e-4, (0.5, 0.9)).
        lr_schedule: see :data:`LrSchedule`; applies to the generator and the discriminators.
        d_lr, d_betas, d_clip: each discriminator's Adam and gradient-norm clip (the paper: 1e-5,
            (0.5, 0.9), 1).
        d_every: the discriminators step once every this many generator steps, on the same batch
            (the paper: 10).
        amp: bfloat16 autocast for the frozen backbones on CUDA (ignored on CPU).
        seed: seeds initialisation, data order and patches.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
        log_every, val_every, ckpt_every, image_every: in steps (image grids go to TensorBoard).
        tensorboard: write TensorBoard logs into the run folder's ``tb/``.
        out: run folder (created; the recipe, git hash, logs and checkpoints go there).
        deterministic: ``torch.use_deterministic_algorithms`` for the run (and cuDNN autotuning
            off), so that a run, and a resumed run, repeat bit for bit on the same machine.
        nan_patience: a step whose loss or gradient is NaN/Inf is skipped (and counted); after
            this many consecutive skipped steps training rolls back to the last checkpoint.
        nan_lr_factor: every learning rate is multiplied by this at a rollback.
        nan_max_rollbacks: give up (an error) after this many rollbacks.
    """

    mode: Mode = "unpaired"
    model: str = "efficient_isp"
    init: str = ""
    target_demosaic: DemosaicMethod = "malvar"
    target_transfer: TransferCurve = "srgb"
    target_stretch: bool = False
    content_reference: ContentReference = "render"
    data: DataConfig = field(default_factory=DataConfig)
    pixel: PixelLossConfig = field(default_factory=PixelLossConfig)
    losses: UnpairedLossConfig = field(default_factory=UnpairedLossConfig)
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.9)
    lr_schedule: LrSchedule = "constant"
    d_lr: float = 1e-5
    d_betas: tuple[float, float] = (0.5, 0.9)
    d_every: int = 10
    d_clip: float = 1.0
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    log_every: int = 50
    val_every: int = 500
    ckpt_every: int = 500
    image_every: int = 500
    tensorboard: bool = True
    out: str = "runs/train"
    deterministic: bool = False
    nan_patience: int = 5  # a handful of bad batches in a row means the weights, not the data, went wrong
    nan_lr_factor: float = 0.5  # halve the learning rates at each rollback
    nan_max_rollbacks: int = 3

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"config key 'model' must be one of {', '.join(MODEL_NAMES)}, got {self.model!r}")
        for key in ("steps", "batch_size", "log_every", "val_every", "ckpt_every", "image_every", "d_every", "nan_patience"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be at least 1, got {getattr(self, key)}")
        for key in ("lr", "d_lr", "d_clip"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r} must be positive, got {getattr(self, key)}")
        if not 0 < self.nan_lr_factor < 1:
            raise ConfigError(f"config key 'nan_lr_factor' must be in (0, 1), got {self.nan_lr_factor}")
        if self.nan_max_rollbacks < 0:
            raise ConfigError(f"config key 'nan_max_rollbacks' must be ≥ 0, got {self.nan_max_rollbacks}")
        for key in ("l1", "ssim"):
            if getattr(self.pixel, key) < 0:
                raise ConfigError(f"config key 'pixel.{key}' must be ≥ 0, got {getattr(self.pixel, key)}")
        if not 0 <= self.data.val_fraction < 1:
            raise ConfigError(f"config key 'data.val_fraction' must be in [0, 1), got {self.data.val_fraction}")
        for key in ("betas", "d_betas"):
            for i, beta in enumerate(getattr(self, key)):
                if not 0 <= beta < 1:  # Adam's moment decay rates (torch.optim.Adam refuses others)
                    raise ConfigError(f"config key '{key}[{i}]' must be in [0, 1), got {beta}")
        for key in ("workers", "val_max_images"):
            if getattr(self.data, key) < 0:
                raise ConfigError(f"config key 'data.{key}' must be ≥ 0, got {getattr(self.data, key)}")
        if self.data.samples_per_epoch < self.batch_size:
            raise ConfigError(
                f"config key 'data.samples_per_epoch' ({self.data.samples_per_epoch}) must be at least "
                f"'batch_size' ({self.batch_size}): an epoch holds whole batches"
            )
        if not SEED_RANGE[0] <= self.seed < SEED_RANGE[1]:
            raise ConfigError(f"config key 'seed' must be in [-2**63, 2**64) (torch's seeds), got {self.seed}")
        if self.content_reference == "aligned" and self.mode not in PAIRED_MODES:
            raise ConfigError(f"config key 'content_reference' can be 'aligned' only in paired modes, not in {self.mode}")
        if self.data.patch < 8 or self.data.patch % 2:
            raise ConfigError(f"config key 'data.patch' must be an even number ≥ 8, got {self.data.patch}")
        self.data.recipe_options()  # data.cfa … data.bits, each checked as its flag is

    @property
    def target_isp(self) -> ISPConfig:
        """The classical render X̂ (the paper's demosaic + white balance + gamma): the stage-1 target
        and the content reference, from ``target_demosaic``, ``target_transfer`` and ``target_stretch``."""
        return dataclasses.replace(
            TRAINING_TARGET, demosaic=self.target_demosaic, transfer=self.target_transfer, stretch=self.target_stretch
        )

    def split_files(self) -> tuple[list[Path], list[Path]]:
        """The run's training and validation RAW files (:func:`unisp.data.files.split_files` of ``data.*`` and ``seed``)."""
        return split_files(self.data.raw_dir, self.data.val_dir, self.data.val_fraction, self.seed)

    def check_ready(self) -> None:
        """Raise :class:`ConfigError` for settings a run needs but defaults cannot give."""
        if not self.data.raw_dir:
            raise ConfigError("config key 'data.raw_dir' is required (a folder of RAW files)")
        if self.mode in PAIRED_MODES and not self.data.rgb_dir:
            raise ConfigError(f"config key 'data.rgb_dir' is required in {self.mode} mode (aligned RGB targets)")
        if self.mode == "unpaired" and not self.data.rgb_dir:
            raise ConfigError("config key 'data.rgb_dir' is required in unpaired mode (a folder of RGB photos)")
