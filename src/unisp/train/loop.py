"""The training loop, for every mode: stage 1, paired, paired without adversarial terms, unpaired.

Read top to bottom: model, data (a sample of the files read and checked), objective (terms and
discriminators), optimisers, and only then the run folder, so that a run that cannot start
leaves nothing behind; then one loop of steps (:func:`train_steps`), over one data loader (built
once, so that its worker processes read each file once per run). A generator step
(:func:`generator_step`) computes the active terms on a batch and combines their gradients
(Dynamic Loss Adaptation, or fixed weights); every ``d_every`` steps the discriminators step on
the same batch (:func:`discriminator_step`). Logging, validation and checkpoints happen every so
many steps; ``--resume`` continues exactly where the last checkpoint left off (weights, optimiser
moments, discriminators, step and data order). What the loop changes, and what a checkpoint saves
of it, is one :class:`~unisp.train.state.TrainState`.

A step whose loss or gradient is NaN/Inf is skipped, and persistent ones roll back to the last
checkpoint with lower learning rates (the loader then starts a new pass there); an output
collapsed to one constant image stops the run (:mod:`unisp.train.guard`). Under ``torchrun``
every rank trains on its shard of each batch and gradients are averaged explicitly
(:mod:`unisp.train.distributed`); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unisp.data.files import pair_by_stem
from unisp.data.patches import EpochItems, FrameCache, RawPatches, check_alignment
from unisp.data.unpaired import RGBPatches, UnpairedPatches
from unisp.errors import ConfigError, UnispError
from unisp.metrics import psnr
from unisp.fileio import list_images, read_rgb, write_text
from unisp.isp.awb import balance_input, input_gains, lacks_input_gains, warn_lacking_gains
from unisp.isp.grading import Grading, fit_grading
from unisp.isp.pipeline import render_frame
from unisp.losses.dla import dla_backward, fixed_weight_backward
from unisp.models.base import Generator, training_forward
from unisp.models.checkpoint import load_model, recorded_options
from unisp.models.registry import build_model, count_parameters
from unisp.raw.frame import RawFrame
from unisp.raw.io import REQUIRED_VALUES, detect_layout, missing_values, read_raw
from unisp.raw.options import RawOptions
from unisp.raw.summary import log_summary
from unisp.train import distributed
from unisp.train.config import PAIRED_MODES, TrainConfig
from unisp.train.guard import NonFiniteGuard, TrainingCollapsed, all_finite, collapse, collapse_message
from unisp.train.memory import check_step_memory
from unisp.train.objective import Objective, active_terms
from unisp.train.run import MODEL_FILE, SUMMARY_FILE, TENSORBOARD_DIR, RunDir
from unisp.train.state import TrainState

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_raw_values(config: TrainConfig, options: RawOptions, train_files: list[Path], val_files: list[Path]) -> None:
    """Refuse RAW files that cannot be read without values the recipe does not give (a headerless
    dump's size, bit depth and CFA; a plain mosaic's CFA and white level), naming the recipe keys,
    before any file is read.

    Raises:
        ConfigError: ``data.raw_dir DIR: headerless files such as a.raw need data.width, …; missing …``.
    """
    data = config.data
    folders = {"raw_dir": train_files, "val_dir": val_files} if data.val_dir else {"raw_dir": train_files + val_files}
    for key, files in folders.items():
        for path in files:
            missing = missing_values(path, options, data.layout)
            if missing:
                raise ConfigError(f"data.{key} {getattr(data, key)}: {_missing_values_message(path, data.layout, missing)}")


def _missing_values_message(path: Path, layout: str, missing: tuple[str, ...]) -> str:
    """``headerless files such as a.raw need data.width, …; missing …``, in the recipe's key names."""
    chosen = detect_layout(path) if layout == "auto" else layout
    needed = ", ".join(f"data.{k}" for k in REQUIRED_VALUES[chosen])
    lacking = ", ".join("data.white (or data.bits)" if k == "white" else f"data.{k}" for k in missing)
    return f"{chosen} files such as {path.name} need {needed}; missing {lacking} (give them in the recipe, or in a camera file: data.camera)"


def check_same_raw_input(options: RawOptions, header: dict[str, Any]) -> None:
    """On ``--resume``: refuse RAW values other than those the run was trained with (its checkpoint's
    ``raw_input``); the recipe's keys cannot change, but its camera file's contents can."""
    if options.to_dict() != header.get("raw_input", {}):
        then = recorded_options("the run's checkpoint", header).describe()
        raise ConfigError(
            f"--resume: the run was trained with RAW values {then}, but its recipe now gives {options.describe()} "
            "(was data.camera edited?); restore them, or start a new run with init=RUN/model.safetensors"
        )


def paired_targets(raw_files: list[Path], rgb_dir: str) -> list[Path]:
    """The RGB file with the same stem as each RAW file in ``rgb_dir`` (any image extension)."""
    pairs, missing = pair_by_stem(raw_files, list_images(rgb_dir))
    if missing:
        raise UnispError(f"{rgb_dir}: no RGB target for {len(missing)} RAW file(s), e.g. {missing[0].name}")
    return [target for _, target in pairs]


def build_dataset(config: TrainConfig, files: list[Path], read: Callable) -> Dataset:
    """Patches for the mode: targets are X̂ or aligned RGB; unpaired adds independent RGB patches."""
    paired = config.mode in PAIRED_MODES
    raw = RawPatches(
        FrameCache(files, read),
        len(files),
        config.data.patch,
        config.data.samples_per_epoch,
        rgb_files=paired_targets(files, config.data.rgb_dir) if paired else None,
        isp=config.target_isp,
        flips=config.data.flips,
        seed=config.seed,
        input_wb=config.data.input_wb,
    )
    if config.mode != "unpaired":
        return raw
    return UnpairedPatches(raw, RGBPatches(list_images(config.data.rgb_dir), config.data.patch, config.data.flips))


#: At most this many training RAW files, and as many RGB photos, are read to fit the ``graded``
#: term's colour grading (a seeded choice when there are more): 64 images hold millions of pixels,
#: far more than the 200,000 the quantiles are estimated from, and reading them stays a few seconds.
GRADING_MAX_FILES = 64


#: RAW files, and as many RGB photos, read before the run folder is created (spread evenly over
#: each sorted list; all of them in a smaller set): a wrong folder (photos given as RAW, mosaics as
#: photos) or a patch larger than the images shows in any of them, while reading every file of a
#: large set would delay each start by minutes. A bad file among the others stops the run when a
#: step draws it, with one line naming it (fix or remove it, then ``--resume``).
PREFLIGHT_FILES = 16


def fit_colour_grading(config: TrainConfig, files: list[Path], read: Callable) -> Grading:
    """The grading of X̂ (of the training RAW files) to the RGB photos: the ``graded`` term's pseudo-target."""
    generator = torch.Generator().manual_seed(config.seed)

    def pick(paths: list[Path]) -> list[Path]:
        order = torch.randperm(len(paths), generator=generator)[:GRADING_MAX_FILES].tolist()
        return [paths[i] for i in sorted(order)]

    renders = (render_frame(read(f), config.target_isp) for f in pick(files))
    photos = (read_rgb(p) for p in pick(list_images(config.data.rgb_dir)))
    grading = fit_grading(renders, photos, pool=config.losses.grading_pool, seed=config.seed)
    log.info("graded term: X̂ graded to the lightness and chroma of %s", config.data.rgb_dir)
    return grading


def load_validation(config: TrainConfig, files: list[Path], read: Callable) -> tuple[list[RawFrame], list[torch.Tensor], str]:
    """Validation frames, their targets and the metric's name.

    Logs what the frames hold (one line for their folder). Ground truth when the recipe has it
    (``val_rgb_dir``, or ``rgb_dir`` in paired modes): ``val_psnr``. Stage 1 is scored against X̂,
    its own target: also ``val_psnr``. Unpaired without ground truth is scored against X̂ as a
    consistency check: ``val_render_psnr``.
    """
    files = files[: config.data.val_max_images]
    frames = [read(f) for f in files]
    log_summary(frames, "validation")
    gt_dir = config.data.val_rgb_dir or (config.data.rgb_dir if config.mode in PAIRED_MODES else "")
    if gt_dir:
        targets = [check_alignment(p, read_rgb(p), f) for p, f in zip(paired_targets(files, gt_dir), frames)]
        return frames, targets, "val_psnr"
    targets = [render_frame(f, config.target_isp) for f in frames]
    return frames, targets, "val_psnr" if config.mode == "stage1" else "val_render_psnr"


@torch.no_grad()
def validate(model: Generator, frames: list[RawFrame], targets: list[torch.Tensor], name: str, device) -> dict[str, float]:
    """Mean PSNR of the model's full-image output (clamped) against the targets; its input
    white-balanced as ``model.input_wb`` says."""
    if not frames:
        return {}
    model.eval()
    planes = [balance_input(f.normalized(), input_gains(f, model.input_wb)) for f in frames]
    scores = [float(psnr(model.infer(p.unsqueeze(0).to(device)).cpu()[0], t)) for p, t in zip(planes, targets)]
    model.train()
    return {name: float(np.mean(scores))}


def warn_set_up_gains(mode: str, frames: list[RawFrame]) -> None:
    """One warning when files read at set-up lack the as-shot white balance ``data.input_wb``
    asks for: training patches of a file without it then go in unbalanced too."""
    lacking = sum(lacks_input_gains(f, mode) for f in frames)
    warn_lacking_gains(lacking, len(frames), "files read at set-up (the training files checked and the validation files)")


def build_start_model(config: TrainConfig) -> tuple[Generator, str]:
    """A fresh model or the one in ``config.init``; returns it and its registry name."""
    if config.init:
        model, header = load_model(config.init)
        if header["model"] != config.model:
            log.warning("init %s holds %s; training that instead of %s", config.init, header["model"], config.model)
        return model.train(), header["model"]
    return build_model(config.model), config.model


class TensorBoard:
    """TensorBoard scalars and image grids in ``RUN/tb``; silent when disabled or not installed."""

    def __init__(self, folder: Path, enabled: bool) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning("tensorboard is not installed: no TensorBoard logs (metrics.jsonl has everything)")
            else:
                self.writer = SummaryWriter(str(folder))

    def scalars(self, step: int, record: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in record.items():
                self.writer.add_scalar(key.replace(".", "/"), value, step)

    def images(self, step: int, batch: dict[str, torch.Tensor], fake: torch.Tensor, count: int = 4) -> None:
        """Rows of (input render or target | output | unrelated real, when there is one)."""
        if self.writer is None:
            return
        from torchvision.utils import make_grid

        columns = [batch["target"][:count], fake.detach()[:count].clamp(0, 1)]
        if "real" in batch:
            columns.append(batch["real"][:count])
        tiles = torch.stack(columns, dim=1).flatten(0, 1).float().cpu()
        self.writer.add_image("reference | output | real", make_grid(tiles, nrow=len(columns)), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def schedule_factor(config: TrainConfig, step: int) -> float:
    """The recipe's ``lr_schedule`` at the step about to be taken (0-based): a factor in (0, 1]."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / config.steps))
    return 1.0


def set_learning_rates(g_opt: torch.optim.Optimizer, d_opts: dict[str, torch.optim.Optimizer], config: TrainConfig, scale: float) -> None:
    """The recipe's learning rates times ``scale`` (the schedule's factor, times the NaN guard's)."""
    for group in g_opt.param_groups:
        group["lr"] = config.lr * scale
    for opt in d_opts.values():
        for group in opt.param_groups:
            group["lr"] = config.d_lr * scale


def load_resume_everywhere(run: RunDir, ctx: distributed.Distributed) -> tuple[Generator, dict[str, Any], dict[str, Any]]:
    """Rank 0 reads the resume state; every rank gets it (an error on rank 0 is raised on every rank)."""
    if not ctx.active:
        return run.load_resume()
    payload: tuple = ()
    if ctx.main:
        try:
            model, header, state = run.load_resume()
            payload = ("ok", model.state_dict(), header, state)
        except UnispError as e:
            payload = ("error", str(e))
    payload = distributed.broadcast_object(payload, ctx)
    if payload[0] == "error":
        raise UnispError(payload[1])
    _, weights, header, state = payload
    model = build_model(header["model"], **header.get("model_kwargs", {}))
    model.load_state_dict(weights)
    return model, header, state


@contextlib.contextmanager
def deterministic_mode(enabled: bool):
    """``torch.use_deterministic_algorithms`` (and no cuDNN autotuning) inside the block, then as before."""
    if not enabled:
        yield
        return
    # cuBLAS needs a fixed workspace to be deterministic (PyTorch's reproducibility notes).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]


def train(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train a generator as the recipe says; under ``torchrun``, data-parallel over every process.

    Everything that can be checked (the recipe, the run folder, the device, the memory a step
    needs, the data, the model and the losses) is checked, and built, before the run folder is
    written: a run that cannot start leaves nothing behind.

    Args:
        config: the recipe.
        out: run folder (default ``config.out``); a new run needs it missing or empty.
        resume: continue the run in ``out`` from its last checkpoint (``config`` may differ from
            the run's only in :data:`unisp.train.run.RESUMABLE_KEYS`).
        overwrite: start a new run in a non-empty ``out``, replacing a previous run's files.
        progress: called after every step with the step number and the step's logged values
            (on rank 0 only).
        command: the command line, recorded in ``run.json``.

    Returns:
        The run summary (also written to ``summary.json``).
    """
    run = RunDir(out or config.out)
    if resume and overwrite:
        raise UnispError("--resume continues a run and --overwrite replaces one: pass only one of them")
    changes = run.resume_changes(config) if resume else {}
    config.check_ready()
    if not resume:  # on every process, before distributed.setup joins them: none has written anything yet
        run.check_new(overwrite)
    ctx, device = distributed.setup(config.device)
    try:
        with deterministic_mode(config.deterministic):
            return _train(config, run, ctx, device, resume, overwrite, progress, command, changes)
    finally:
        distributed.cleanup(ctx)


def _train(
    config: TrainConfig,
    run: RunDir,
    ctx: distributed.Distributed,
    device: torch.device,
    resume: bool,
    overwrite: bool,
    progress: Callable[[int, dict[str, float]], None] | None,
    command: str,
    changes: dict[str, tuple[Any, Any]],
) -> dict[str, Any]:
    """:func:`train` once the processes have joined: set up, open the run folder, loop, summarise."""
    # Model and data: checked (a sample of the files read) before anything is written.
    seed_everything(config.seed)
    options = config.data.raw_options()
    model, name, saved = starting_model(config, run, ctx, options, resume)
    local_batch = distributed.local_batch_size(config.batch_size, ctx)
    # Each GPU holds its own share of the batch; processes on the CPU share the host's memory.
    check_step_memory(config, device, local_batch if device.type == "cuda" else config.batch_size)
    read = functools.partial(read_raw, options=options, layout=config.data.layout)
    train_files, val_files = config.split_files()
    check_raw_values(config, options, train_files, val_files)
    dataset = build_dataset(config, train_files, read)
    checked = dataset.check(PREFLIGHT_FILES)
    log_summary(checked, "training", total=len(train_files))
    val_frames, val_targets, val_name = load_validation(config, val_files, read) if ctx.main else ([], [], "")
    if ctx.main:
        warn_set_up_gains(config.data.input_wb, checked + val_frames)

    # The objective (terms and discriminators) and the optimisers, on every rank as rank 0 has them.
    model.input_wb = config.data.input_wb  # recorded in every model file the run writes
    model = model.to(device).train()
    distributed.broadcast_module_(model, ctx)
    grading = fit_colour_grading(config, train_files, read) if "graded" in active_terms(config) else None
    objective = Objective(config, grading).to(device)
    distributed.broadcast_module_(objective, ctx)  # discriminators (and random test backbones) as rank 0's
    state = TrainState.start(model, objective.discriminators(), config)
    if resume:
        state.resume(saved)
    # Every check has passed and everything is built: only now is the run folder written.
    if ctx.main:
        open_run_folder(run, config, state.step, resume, changes, str(device), command, overwrite)
        if grading is not None:
            run.save_grading(grading.to_dict())
    state.mark_good()

    # The loop, between a validation at step 0 (not on resume) and one at the end.
    board = TensorBoard(run.path / TENSORBOARD_DIR, config.tensorboard and ctx.main)
    score = functools.partial(validate, frames=val_frames, targets=val_targets, name=val_name, device=device)
    start_val = score(state.model) if state.step == 0 else {}
    if start_val:
        log_validation(run, board, 0, start_val)
    training = {"mode": config.mode, "recipe_steps": config.steps, "parameters": count_parameters(state.model)}
    checkpoint = functools.partial(save_checkpoint, run=run, ctx=ctx, name=name, training=training, options=options)
    started = time.perf_counter()
    loader = build_loader(dataset, config, local_batch, ctx)
    last = train_steps(config, ctx, device, state, objective, loader, run, board, score, checkpoint, progress)
    board.close()

    final_val = score(state.model)
    summary = {
        "mode": config.mode,
        "model": name,
        "steps": state.step,
        "device": str(device),
        "processes": ctx.world,
        "seconds": round(time.perf_counter() - started, 2),
        "terms": objective.multipliers,
        "final_loss": {k: v for k, v in last.items() if k.startswith("loss/")},
        "skipped_steps": state.guard.skipped_steps,
        "skipped_d_steps": state.guard.skipped_d_steps,
        "rollbacks": state.guard.rollbacks,
        "validation_metric": val_name,
        "start_validation": start_val,
        "final_validation": final_val,
        "validation_images": len(val_frames),
        "model_file": str(run.path / MODEL_FILE),
    }
    if ctx.main:
        write_text(run.path / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def starting_model(
    config: TrainConfig, run: RunDir, ctx: distributed.Distributed, options: RawOptions, resume: bool
) -> tuple[Generator, str, dict[str, Any]]:
    """The generator to train, its registry name and, on ``--resume``, the run's ``resume.pt``.

    Args:
        config: the recipe.
        run: the run folder.
        ctx: this process's place in the job (rank 0 reads ``resume.pt`` for every rank).
        options: the recipe's RAW values (a resumed run must have been trained with them).
        resume: continue the run in ``run`` (else a fresh model, or the one in ``config.init``).

    Returns:
        ``(model, name, saved)``; ``saved`` is ``{}`` for a new run.
    """
    if not resume:
        model, name = build_start_model(config)
        return model, name, {}
    model, header, saved = load_resume_everywhere(run, ctx)
    check_same_raw_input(options, header)
    return model, header["model"], saved


def build_loader(dataset: Dataset, config: TrainConfig, local_batch: int, ctx: distributed.Distributed) -> DataLoader:
    """The run's one data loader: ``local_batch`` items a step, as a :class:`~unisp.train.distributed.StepSampler` orders them.

    Built once: worker processes, when there are any, live for the whole run with their frame caches.
    """
    steps_per_epoch = config.data.samples_per_epoch // config.batch_size
    return DataLoader(
        EpochItems(dataset),
        batch_size=local_batch,
        sampler=distributed.StepSampler(config.steps, steps_per_epoch, config.batch_size, ctx),
        drop_last=True,
        num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
    )


def loader_pass(loader: DataLoader, step: int) -> Iterator[dict[str, torch.Tensor]]:
    """A new pass of the loader: the batches of steps ``step``, ``step + 1``, … up to the recipe's last.

    Epoch and position follow from the step alone, so a resumed run, and a run rolled back to its
    last checkpoint, see the same batches as an uninterrupted one.
    """
    loader.sampler.start = step
    return iter(loader)


def train_steps(
    config: TrainConfig,
    ctx: distributed.Distributed,
    device: torch.device,
    state: TrainState,
    objective: Objective,
    loader: DataLoader,
    run: RunDir,
    board: TensorBoard,
    score: Callable[[Generator], dict[str, float]],
    checkpoint: Callable[[TrainState], None],
    progress: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, float]:
    """The training loop, from ``state.step`` to ``config.steps``.

    Each step: draw the batch, one generator step, one discriminator step (every ``d_every``), then
    log, validate and checkpoint when due. After ``nan_patience`` bad steps in a row the state rolls
    back to the last checkpoint and the loader starts a new pass from there.

    Args:
        config: the recipe.
        ctx: this process's place in the job (only rank 0 logs, validates and writes).
        device: where the model computes.
        state: the models, optimisers, guard and step (changed in place).
        objective: the loss terms and discriminators.
        loader: the run's data loader (:func:`build_loader`).
        run: the run folder (``metrics.jsonl``).
        board: TensorBoard.
        score: validation scores of a model (:func:`validate` on the run's validation frames).
        checkpoint: saves a checkpoint of the state (:func:`save_checkpoint`).
        progress: called after every step with the step number and its record (on rank 0).

    Returns:
        The last step's record.
    """
    amp = mixed_precision(config, device)
    last: dict[str, float] = {}
    batches = loader_pass(loader, state.step)
    while state.step < config.steps:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        # From the step alone (so a resumed run follows the same rates), lowered by any rollback.
        set_learning_rates(state.g_opt, state.d_opts, config, state.guard.lr_scale * schedule_factor(config, state.step))
        record, fake, dbatch, g_finite = generator_step(state, objective, batch, config, ctx, amp)
        d_record, d_finite = discriminator_step(state, objective, dbatch, config, ctx)
        state.step += 1
        last = record = step_record({**record, **d_record}, state)
        if state.guard.step_done(not (g_finite and d_finite)):
            roll_back(state, run, ctx)
            batches = loader_pass(loader, state.step)  # the restored steps' batches again
            continue
        if ctx.main:
            log_step(run, board, config, state.step, record, batch, fake)
            if due(state.step, config.val_every, config.steps):
                log_validation(run, board, state.step, score(state.model))
        if due(state.step, config.ckpt_every, config.steps):
            checkpoint(state)
        if progress is not None and ctx.main:
            progress(state.step, record)
    return last


def generator_step(
    state: TrainState,
    objective: Objective,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    ctx: distributed.Distributed,
    amp: contextlib.AbstractContextManager,
) -> tuple[dict[str, float], torch.Tensor, Any, bool]:
    """One generator update on the batch: forward, the active terms, their gradients combined by
    Dynamic Loss Adaptation (or fixed weights), and the optimiser's step. A step whose loss or
    gradient is not finite is not taken (counted in ``state.guard.skipped_steps``).

    Args:
        state: the generator, its optimiser, the guard and the (0-based) step.
        objective: the loss terms.
        batch: ``raw`` and ``target`` (and ``real`` in unpaired mode), on the device.
        config: the recipe (``losses.dla``, ``losses.dla_eps``).
        ctx: this process's place in the job (losses and gradients are averaged over the ranks).
        amp: the context the losses are computed in (:func:`mixed_precision`).

    Returns:
        ``(record, fake, dbatch, finite)``: the logged values (``loss/<term>``, ``lr``,
        ``loss/total``, with DLA ``dla_weight/<term>`` and ``grad_norm/<term>``), the generator's
        output, what the discriminators step on (None without adversarial terms), and whether
        the step was taken.
    """
    fake = training_forward(state.model, batch["raw"])
    with amp:
        terms, dbatch = objective.generator_terms(fake, batch, state.step)
    terms = {k: v.float() for k, v in terms.items()}
    state.g_opt.zero_grad(set_to_none=True)
    # Every loss is a mean over the batch: the ranks' average is the global batch's value.
    values = distributed.average_(torch.stack([v.detach() for v in terms.values()]), ctx).tolist()
    record: dict[str, float] = {f"loss/{k}": v for k, v in zip(terms, values)}
    record["lr"] = state.g_opt.param_groups[0]["lr"]
    record["loss/total"] = sum(objective.multipliers[k] * record[f"loss/{k}"] for k in terms)
    finite = math.isfinite(record["loss/total"])
    if finite:
        record.update(generator_backward(state.g_params, fake, terms, objective.multipliers, config, ctx))
        finite = all_finite(p.grad for p in state.g_params)
    if finite:
        state.g_opt.step()
    else:
        state.g_opt.zero_grad(set_to_none=True)
        state.guard.skipped_steps += 1
        log.warning("step %d: NaN/Inf in the generator's loss or gradient; step skipped", state.step + 1)
    return record, fake, dbatch, finite


def generator_backward(
    params: list[torch.nn.Parameter],
    fake: torch.Tensor,
    terms: dict[str, torch.Tensor],
    multipliers: dict[str, float],
    config: TrainConfig,
    ctx: distributed.Distributed,
) -> dict[str, float]:
    """The generator's gradient in ``params[i].grad``, averaged over the ranks: the terms combined
    by Dynamic Loss Adaptation (``losses.dla``) or by their fixed multipliers.

    Args:
        params: the generator's trainable parameters.
        fake: its output on the batch (the terms' graphs lead back through it).
        terms: ``{term: loss}``, each a scalar mean over the local batch.
        multipliers: each term's multiplier (:attr:`Objective.multipliers`).
        config: the recipe (``losses.dla``, ``losses.dla_eps``).
        ctx: this process's place in the job.

    Returns:
        With DLA ``{"dla_weight/<term>", "grad_norm/<term>"}``; else ``{}``.
    """
    if not config.losses.dla:
        fixed_weight_backward(params, fake, terms, multipliers)
        distributed.average_gradients_(params, ctx)
        return {}
    reduce = functools.partial(distributed.average_gradient_lists, ctx=ctx)
    result = dla_backward(params, fake, terms, multipliers, config.losses.dla_eps, reduce)
    weights = {f"dla_weight/{k}": v for k, v in result.weights.items()}
    return {**weights, **{f"grad_norm/{k}": v for k, v in result.norms.items()}}


def discriminator_step(
    state: TrainState, objective: Objective, dbatch: Any, config: TrainConfig, ctx: distributed.Distributed
) -> tuple[dict[str, float], bool]:
    """The discriminators' part of a step: every ``d_every`` steps, one update of each
    (:func:`discriminator_update`) on the features the generator step left (``dbatch``).

    Args:
        state: the discriminators' optimisers, the guard and the (0-based) step.
        objective: the discriminators and their criterion.
        dbatch: what :meth:`Objective.generator_terms` returned for them (None: no adversarial terms).
        config: the recipe (``d_every``, ``d_clip``).
        ctx: this process's place in the job.

    Returns:
        ``(record, finite)``: ``{"d/<disc>/<stat>": value}`` (empty when no update was due) and
        False when an update was skipped for NaN/Inf.
    """
    if dbatch is None or state.step % config.d_every != 0:
        return {}, True
    skipped = state.guard.skipped_d_steps
    record = discriminator_update(objective, dbatch, state.d_opts, config.d_clip, state.guard, ctx, state.step)
    return record, state.guard.skipped_d_steps == skipped


def step_record(record: dict[str, float], state: TrainState) -> dict[str, float]:
    """A step's record as logged: its finite values and the guard's counts of skipped steps."""
    record = {k: v for k, v in record.items() if math.isfinite(v)}
    record["skipped_steps"] = state.guard.skipped_steps
    if state.d_opts:
        record["skipped_d_steps"] = state.guard.skipped_d_steps
    return record


def due(step: int, every: int, steps: int) -> bool:
    """Whether something done every ``every`` steps (and at the last of ``steps``) is due after ``step``."""
    return step % every == 0 or step == steps


def log_step(
    run: RunDir, board: TensorBoard, config: TrainConfig, step: int, record: dict[str, float],
    batch: dict[str, torch.Tensor], fake: torch.Tensor,
) -> None:
    """Rank 0's records of a step: every ``log_every`` steps its record (and the collapse check,
    which raises :class:`TrainingCollapsed`), every ``image_every`` steps TensorBoard images."""
    if due(step, config.log_every, config.steps):
        run.log({"step": step, **record})
        board.scalars(step, record)
        stop_if_collapsed(run, step, fake, batch["target"], config.lr)
    if step % config.image_every == 0:
        board.images(step, batch, fake)


def log_validation(run: RunDir, board: TensorBoard, step: int, scores: dict[str, float]) -> None:
    """Validation scores into ``metrics.jsonl`` and TensorBoard."""
    run.log({"step": step, **scores})
    board.scalars(step, scores)


def roll_back(state: TrainState, run: RunDir, ctx: distributed.Distributed) -> None:
    """Return to the last checkpoint with lower learning rates (:meth:`TrainState.roll_back`) and, on
    rank 0, drop the undone steps' records from ``metrics.jsonl`` and log a ``rollback`` record."""
    state.roll_back()
    if ctx.main:
        run.truncate_metrics(state.step)
        guard = state.guard
        record = {"rollback": guard.rollbacks, "lr_scale": guard.lr_scale, "skipped_steps": guard.skipped_steps}
        run.log({"step": state.step, **record})


def save_checkpoint(
    state: TrainState, run: RunDir, ctx: distributed.Distributed, name: str, training: dict[str, Any], options: RawOptions
) -> None:
    """A checkpoint at ``state.step``: rank 0 writes its files (:meth:`RunDir.save`), and every rank
    keeps it in memory as the last good state a NaN rollback returns to."""
    saved = state.state_dict()
    if ctx.main:
        run.save(state.model, name, state.step, saved, training, options.to_dict())
    state.mark_good(saved)


def mixed_precision(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the losses when ``amp`` is on and the GPU supports it; else a context that does nothing."""
    if config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def open_run_folder(
    run: RunDir, config: TrainConfig, step: int, resume: bool, changes: dict[str, tuple[Any, Any]],
    device: str, command: str, overwrite: bool,
) -> None:
    """Write the run folder (rank 0, once everything is checked and built): continue a resumed run's
    at ``step`` (:func:`continue_run_folder`), or start a new one (:func:`start_run_folder`)."""
    if resume:
        continue_run_folder(run, config, step, changes)
    else:
        start_run_folder(run, config, device, command, overwrite)


def start_run_folder(run: RunDir, config: TrainConfig, device: str, command: str, overwrite: bool) -> None:
    """Create a new run's folder (after removing a previous run's files, with ``overwrite``) and write its recipe."""
    if overwrite:
        run.remove_previous()
    run.start(config, device, command)


def continue_run_folder(run: RunDir, config: TrainConfig, step: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Ready a resumed run's folder: drop what a kill left and the records after ``step``, and
    record the recipe with the ``changes`` the resume applied (each logged)."""
    run.remove_temporaries()
    run.truncate_metrics(step)
    run.save_config(config)
    applied = ", ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in changes.items())
    log.info("resumed %s at step %d%s", run.path, step, f", with {applied}" if applied else "")


def stop_if_collapsed(run: RunDir, step: int, output: torch.Tensor, reference: torch.Tensor, lr: float) -> None:
    """Log a ``collapsed`` record and raise :class:`TrainingCollapsed` when the batch's output is
    one constant image (:func:`unisp.train.guard.collapse`; why the run stops: :mod:`unisp.train.guard`)."""
    stats = collapse(output, reference)
    if stats is not None:
        run.log({"step": step, "collapsed": 1, **stats})
        raise TrainingCollapsed(collapse_message(step, stats, lr))


def discriminator_update(
    objective: Objective,
    dbatch: Any,
    d_opts: dict[str, torch.optim.Optimizer],
    clip: float,
    guard: NonFiniteGuard,
    ctx: distributed.Distributed,
    step: int,
) -> dict[str, float]:
    """One step of every discriminator on the batch's features; a discriminator whose loss or
    gradient is not finite is not updated (counted in ``guard.skipped_d_steps``).

    Returns:
        ``{"d/<disc>/<stat>": value}``, averaged over the processes.
    """
    for opt in d_opts.values():
        opt.zero_grad(set_to_none=True)
    stats = objective.criterion.discriminator_step(dbatch)
    discriminators = objective.discriminators()
    if stats:  # the means of equal shards average to the global batch's
        device = next(next(iter(discriminators.values())).parameters()).device  # NCCL reduces on the GPU
        values = distributed.average_(torch.tensor(list(stats.values()), dtype=torch.float64, device=device), ctx)
        stats = dict(zip(stats, values.tolist()))
    for key, d in discriminators.items():
        params = list(d.parameters())
        distributed.average_gradients_(params, ctx)
        own = [v for k, v in stats.items() if k.startswith(f"{key}/")]
        if all(math.isfinite(v) for v in own) and all_finite(p.grad for p in params):
            torch.nn.utils.clip_grad_norm_(params, clip)
            d_opts[key].step()
        else:
            d_opts[key].zero_grad(set_to_none=True)
            guard.skipped_d_steps += 1
            log.warning("step %d: NaN/Inf in discriminator %s; its update skipped", step + 1, key)
    return {f"d/{k}": v for k, v in stats.items()}
