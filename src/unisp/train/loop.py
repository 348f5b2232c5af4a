"""The training loop, for every mode: stage 1, paired, paired without adversarial terms, unpaired.

Read top to bottom: model, data (a sample of the files read and checked), objective (terms and
discriminators), optimisers, and only then the run folder, so that a run that cannot start
leaves nothing behind; then one loop of steps, over one data loader (built once, so that its
worker processes read each file once per run). A generator step computes the active terms on a
batch and combines their gradients (Dynamic Loss Adaptation, or fixed weights); every
``d_every`` steps the discriminators step on the same batch. Logging, validation and checkpoints
happen every so many steps; ``--resume`` continues exactly where the last checkpoint left off
(weights, optimiser moments, discriminators, step and data order).

A step whose loss or gradient is NaN/Inf is skipped, and persistent ones roll back to the last
checkpoint with lower learning rates; an output collapsed to one constant image stops the run
(:mod:`unisp.train.guard`). Under ``torchrun`` every rank trains on its shard of each batch and
gradients are averaged explicitly (:mod:`unisp.train.distributed`); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unisp.data.patches import EpochItems, FrameCache, RawPatches, check_alignment
from unisp.data.unpaired import RGBPatches, UnpairedPatches
from unisp.errors import ConfigError, UnispError
from unisp.eval.metrics import psnr
from unisp.fileio import list_images, read_rgb, write_text
from unisp.isp.awb import balance_input, input_gains, lacks_input_gains, warn_lacking_gains
from unisp.isp.grading import Grading, fit_grading
from unisp.isp.pipeline import TRAINING_TARGET, ISPConfig, render_frame
from unisp.losses.dla import dla_backward, fixed_weight_backward
from unisp.models.base import Generator, training_forward
from unisp.models.checkpoint import load_model, recorded_options
from unisp.models.registry import build_model, count_parameters
from unisp.raw.frame import RawFrame
from unisp.raw.io import REQUIRED_VALUES, detect_layout, find_raw_files, missing_values, read_raw
from unisp.raw.options import RawOptions
from unisp.raw.summary import log_summary
from unisp.train import distributed
from unisp.train.config import PAIRED_MODES, TrainConfig
from unisp.train.guard import NonFiniteGuard, TrainingCollapsed, all_finite, collapse, collapse_message, snapshot
from unisp.train.memory import check_step_memory
from unisp.train.objective import Objective, active_terms
from unisp.train.run import MODEL_FILE, SUMMARY_FILE, RunDir

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def target_config(config: TrainConfig) -> ISPConfig:
    """The classical render X̂ (the paper's demosaic + white balance + gamma)."""
    return dataclasses.replace(
        TRAINING_TARGET, demosaic=config.target_demosaic, transfer=config.target_transfer, stretch=config.target_stretch
    )


def split_files(config: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Training and validation RAW files (validation from ``val_dir`` or a seeded share of ``raw_dir``)."""
    files = find_raw_files(config.data.raw_dir)
    if config.data.val_dir:
        return files, find_raw_files(config.data.val_dir)
    n_val = int(round(len(files) * config.data.val_fraction))
    if n_val == 0 or n_val >= len(files):
        return files, []
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(config.seed)).tolist()
    val = sorted(files[i] for i in order[:n_val])
    return [f for f in files if f not in set(val)], val


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
    by_stem = {p.stem: p for p in list_images(rgb_dir)}
    missing = [f.name for f in raw_files if f.stem not in by_stem]
    if missing:
        raise UnispError(f"{rgb_dir}: no RGB target for {len(missing)} RAW file(s), e.g. {missing[0]}")
    return [by_stem[f.stem] for f in raw_files]


def build_dataset(config: TrainConfig, files: list[Path], read: Callable) -> Dataset:
    """Patches for the mode: targets are X̂ or aligned RGB; unpaired adds independent RGB patches."""
    paired = config.mode in PAIRED_MODES
    raw = RawPatches(
        FrameCache(files, read),
        len(files),
        config.data.patch,
        config.data.samples_per_epoch,
        rgb_files=paired_targets(files, config.data.rgb_dir) if paired else None,
        isp=target_config(config),
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

    renders = (render_frame(read(f), target_config(config)) for f in pick(files))
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
    targets = [render_frame(f, target_config(config)) for f in frames]
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
    seed_everything(config.seed)
    options = config.data.raw_options()
    if resume:
        model, header, state = load_resume_everywhere(run, ctx)
        check_same_raw_input(options, header)
        name = header["model"]
    else:
        model, name = build_start_model(config)
        state = {}
    local_batch = distributed.local_batch_size(config.batch_size, ctx)
    # Each GPU holds its own share of the batch; processes on the CPU share the host's memory.
    check_step_memory(config, device, local_batch if device.type == "cuda" else config.batch_size)
    read = functools.partial(read_raw, options=options, layout=config.data.layout)
    train_files, val_files = split_files(config)
    check_raw_values(config, options, train_files, val_files)
    dataset = build_dataset(config, train_files, read)
    checked = dataset.check(PREFLIGHT_FILES)
    log_summary(checked, "training", total=len(train_files))
    val_frames, val_targets, val_name = load_validation(config, val_files, read) if ctx.main else ([], [], "")
    if ctx.main:
        warn_set_up_gains(config.data.input_wb, checked + val_frames)

    model.input_wb = config.data.input_wb  # recorded in every model file the run writes
    model = model.to(device).train()
    distributed.broadcast_module_(model, ctx)
    grading = fit_colour_grading(config, train_files, read) if "graded" in active_terms(config) else None
    objective = Objective(config, grading).to(device)
    distributed.broadcast_module_(objective, ctx)  # discriminators (and random test backbones) as rank 0's
    g_params = [p for p in model.parameters() if p.requires_grad]
    g_opt = torch.optim.Adam(g_params, lr=config.lr, betas=tuple(config.betas))
    discriminators = objective.discriminators()
    d_opts = {k: torch.optim.Adam(d.parameters(), lr=config.d_lr, betas=tuple(config.d_betas)) for k, d in discriminators.items()}
    guard = NonFiniteGuard(config.nan_patience, config.nan_lr_factor, config.nan_max_rollbacks)

    def resume_state() -> dict[str, Any]:
        """Everything beyond the model that ``--resume`` (and a NaN rollback) needs."""
        return {
            "optimizer": g_opt.state_dict(),
            "discriminators": {k: d.state_dict() for k, d in discriminators.items()},
            "d_optimizers": {k: o.state_dict() for k, o in d_opts.items()},
            "torch_rng": torch.get_rng_state(),
            "guard": guard.counters(),
        }

    def restore(state: dict[str, Any]) -> None:
        g_opt.load_state_dict(state["optimizer"])
        for key, d in discriminators.items():
            d.load_state_dict(state["discriminators"][key])
            d_opts[key].load_state_dict(state["d_optimizers"][key])
        torch.set_rng_state(state["torch_rng"])

    step = 0
    if resume:
        restore(state)
        guard.restore(state.get("guard", {}))
        step = int(state["step"])
    # Every check has passed and everything is built: only now is the run folder written.
    if ctx.main:
        if resume:
            continue_run_folder(run, config, step, changes)
        else:
            start_run_folder(run, config, str(device), command, overwrite)
        if grading is not None:
            run.save_grading(grading.to_dict())
    last_good = snapshot(model, resume_state(), step)

    steps_per_epoch = config.data.samples_per_epoch // config.batch_size
    board = TensorBoard(run.path / "tb", config.tensorboard and ctx.main)
    start_val = validate(model, val_frames, val_targets, val_name, device) if step == 0 else {}
    if start_val:
        run.log({"step": 0, **start_val})
        board.scalars(0, start_val)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
        else contextlib.nullcontext()
    )
    training = {"mode": config.mode, "recipe_steps": config.steps, "parameters": count_parameters(model)}
    started = time.perf_counter()
    last: dict[str, float] = {}
    sampler = distributed.StepSampler(config.steps, steps_per_epoch, config.batch_size, ctx)
    # Built once: worker processes, when there are any, live for the whole run with their frame caches.
    loader = DataLoader(
        EpochItems(dataset),
        batch_size=local_batch,
        sampler=sampler,
        drop_last=True,
        num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
    )
    while step < config.steps:
        # Epoch and position follow from the step alone, so a resumed run sees the same batches.
        sampler.start = step
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            # From the step alone (so a resumed run follows the same rates), lowered by any rollback.
            set_learning_rates(g_opt, d_opts, config, guard.lr_scale * schedule_factor(config, step))
            fake = training_forward(model, batch["raw"])
            with amp:
                terms, dbatch = objective.generator_terms(fake, batch, step)
            terms = {k: v.float() for k, v in terms.items()}
            g_opt.zero_grad(set_to_none=True)
            # Every loss is a mean over the batch: the ranks' average is the global batch's value.
            values = distributed.average_(torch.stack([v.detach() for v in terms.values()]), ctx).tolist()
            record: dict[str, float] = {f"loss/{k}": v for k, v in zip(terms, values)}
            record["lr"] = g_opt.param_groups[0]["lr"]
            record["loss/total"] = sum(objective.multipliers[k] * record[f"loss/{k}"] for k in terms)
            bad = not math.isfinite(record["loss/total"])
            if not bad:
                if config.losses.dla:
                    reduce = functools.partial(distributed.average_gradient_lists, ctx=ctx)
                    result = dla_backward(g_params, fake, terms, objective.multipliers, config.losses.dla_eps, reduce)
                    record.update({f"dla_weight/{k}": v for k, v in result.weights.items()})
                    record.update({f"grad_norm/{k}": v for k, v in result.norms.items()})
                else:
                    fixed_weight_backward(g_params, fake, terms, objective.multipliers)
                    distributed.average_gradients_(g_params, ctx)
                bad = not all_finite(p.grad for p in g_params)
            if bad:
                g_opt.zero_grad(set_to_none=True)
                guard.skipped_steps += 1
                log.warning("step %d: NaN/Inf in the generator's loss or gradient; step skipped", step + 1)
            else:
                g_opt.step()
            if dbatch is not None and step % config.d_every == 0:
                d_skipped = guard.skipped_d_steps
                record.update(discriminator_update(objective, dbatch, d_opts, config.d_clip, guard, ctx, step))
                bad = bad or guard.skipped_d_steps > d_skipped
            step += 1
            record = {k: v for k, v in record.items() if math.isfinite(v)}
            record["skipped_steps"] = guard.skipped_steps
            if d_opts:
                record["skipped_d_steps"] = guard.skipped_d_steps
            last = record
            if guard.step_done(bad):
                guard.rolled_back(step, last_good["step"])
                model.load_state_dict(last_good["model"])
                restore(copy.deepcopy(last_good["state"]))
                step = last_good["step"]
                if ctx.main:
                    run.truncate_metrics(step)
                    run.log({"step": step, "rollback": guard.rollbacks, "lr_scale": guard.lr_scale, "skipped_steps": guard.skipped_steps})
                break  # restart the data loader at the restored step
            if ctx.main:
                if step % config.log_every == 0 or step == config.steps:
                    run.log({"step": step, **record})
                    board.scalars(step, record)
                    stop_if_collapsed(run, step, fake, batch["target"], config.lr)
                if step % config.image_every == 0:
                    board.images(step, batch, fake)
                if step % config.val_every == 0 or step == config.steps:
                    scores = validate(model, val_frames, val_targets, val_name, device)
                    run.log({"step": step, **scores})
                    board.scalars(step, scores)
            if step % config.ckpt_every == 0 or step == config.steps:
                state = resume_state()
                if ctx.main:
                    run.save(model, name, step, state, training, options.to_dict())
                last_good = snapshot(model, state, step)
            if progress is not None and ctx.main:
                progress(step, record)
    board.close()

    final_val = validate(model, val_frames, val_targets, val_name, device)
    summary = {
        "mode": config.mode,
        "model": name,
        "steps": step,
        "device": str(device),
        "processes": ctx.world,
        "seconds": round(time.perf_counter() - started, 2),
        "terms": objective.multipliers,
        "final_loss": {k: v for k, v in last.items() if k.startswith("loss/")},
        "skipped_steps": guard.skipped_steps,
        "skipped_d_steps": guard.skipped_d_steps,
        "rollbacks": guard.rollbacks,
        "validation_metric": val_name,
        "start_validation": start_val,
        "final_validation": final_val,
        "validation_images": len(val_frames),
        "model_file": str(run.path / MODEL_FILE),
    }
    if ctx.main:
        write_text(run.path / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


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
