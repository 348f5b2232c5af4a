"""Supervised training: stage 1 (reproduce the classical render) and paired (aligned RGB targets).

Read top to bottom: build the data, the model and the optimiser; then one loop of steps with
periodic logging, validation and checkpoints. ``--resume`` continues exactly where the last
checkpoint left off: same weights, optimiser moments, step, and data order.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from unisp.data.patches import FrameCache, RawPatches
from unisp.errors import UnispError
from unisp.eval.metrics import psnr, ssim
from unisp.fileio import read_rgb, write_text
from unisp.isp.pipeline import TRAINING_TARGET, render_frame
from unisp.models.base import Generator
from unisp.models.checkpoint import load_model
from unisp.models.registry import build_model, count_parameters
from unisp.raw.frame import RawFrame
from unisp.raw.io import find_raw_files, read_raw
from unisp.train.config import TrainConfig
from unisp.train.run import MODEL_FILE, SUMMARY_FILE, RunDir

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UnispError(f"config key 'device': unknown device {name!r} (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnispError(f"config key 'device': {name!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def target_config(config: TrainConfig):
    """The classical render used as stage-1 target (the paper's demosaic + white balance + gamma)."""
    import dataclasses

    return dataclasses.replace(TRAINING_TARGET, demosaic=config.target_demosaic)


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


def paired_targets(raw_files: list[Path], rgb_dir: str) -> list[Path]:
    """The RGB file with the same stem as each RAW file in ``rgb_dir`` (any image extension)."""
    from unisp.fileio import list_images

    by_stem = {p.stem: p for p in list_images(rgb_dir)}
    missing = [f.name for f in raw_files if f.stem not in by_stem]
    if missing:
        raise UnispError(f"{rgb_dir}: no RGB target for {len(missing)} RAW file(s), e.g. {missing[0]}")
    return [by_stem[f.stem] for f in raw_files]


def supervised_loss(pred: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """``l1 · |pred − target| + ssim · (1 − SSIM)``, and its terms for the log."""
    terms = {"l1": F.l1_loss(pred, target)}
    if config.loss.ssim > 0:
        terms["ssim"] = 1.0 - ssim(pred, target).mean()
    total = config.loss.l1 * terms["l1"] + config.loss.ssim * terms.get("ssim", 0.0)
    return total, {k: float(v.detach()) for k, v in terms.items()}


@torch.no_grad()
def validate(
    model: Generator,
    frames: list[RawFrame],
    targets: list[torch.Tensor],
    device: torch.device,
) -> dict[str, float]:
    """Mean PSNR/SSIM of the model's full-image output against the targets."""
    model.eval()
    scores: dict[str, list[float]] = {"psnr": [], "ssim": []}
    for frame, target in zip(frames, targets):
        planes = frame.normalized().unsqueeze(0).to(device)
        out = model.infer(planes).cpu()
        scores["psnr"].append(float(psnr(out[0], target)))
        scores["ssim"].append(float(ssim(out, target[None])[0]))
    model.train()
    return {f"val_{k}": float(np.mean(v)) for k, v in scores.items()} if frames else {}


def load_validation(config: TrainConfig, files: list[Path], read: Callable) -> tuple[list[RawFrame], list[torch.Tensor]]:
    files = files[: config.data.val_max_images]
    frames = [read(f) for f in files]
    if config.mode == "paired":
        rgb_dir = config.data.val_rgb_dir or config.data.rgb_dir
        targets = [read_rgb(p) for p in paired_targets(files, rgb_dir)]
    else:
        targets = [render_frame(f, target_config(config)) for f in frames]
    return frames, targets


def build_start_model(config: TrainConfig) -> tuple[Generator, str]:
    """A fresh model or the one in ``config.init``; returns it and its registry name."""
    if config.init:
        model, header = load_model(config.init)
        if header["model"] != config.model:
            log.warning("init %s holds %s; training that instead of %s", config.init, header["model"], config.model)
        return model.train(), header["model"]
    return build_model(config.model), config.model


def train_supervised(
    config: TrainConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train a generator in ``stage1`` or ``paired`` mode.

    Args:
        config: the recipe (``config.mode`` is ``stage1`` or ``paired``).
        out: run folder (default ``config.out``).
        resume: continue the run in ``out`` from its last checkpoint.
        progress: called after every step with the step number and the step's loss terms.
        command: the command line, recorded in ``run.json``.

    Returns:
        The run summary (also written to ``summary.json``).
    """
    config.check_ready()
    run = RunDir(out or config.out)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    read = functools.partial(read_raw, layout=config.data.layout)
    train_files, val_files = split_files(config)
    rgb_files = paired_targets(train_files, config.data.rgb_dir) if config.mode == "paired" else None
    dataset = RawPatches(
        FrameCache(train_files, read),
        len(train_files),
        config.data.patch,
        config.data.samples_per_epoch,
        rgb_files=rgb_files,
        isp=target_config(config),
        flips=config.data.flips,
        seed=config.seed,
    )
    val_frames, val_targets = load_validation(config, val_files, read)

    if resume:
        model, header, state = run.load_resume()
        name = header["model"]
    else:
        model, name = build_start_model(config)
        state = {}
        run.start(config, str(device), command)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas))
    step = 0
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        run.truncate_metrics(step)
        log.info("resumed %s at step %d", run.path, step)

    steps_per_epoch = config.data.samples_per_epoch // config.batch_size
    if steps_per_epoch == 0:
        raise UnispError(f"batch_size {config.batch_size} exceeds data.samples_per_epoch {config.data.samples_per_epoch}")
    start_val = validate(model, val_frames, val_targets, device) if step == 0 else {}
    if start_val:
        run.log({"step": 0, **start_val})
    training = {"mode": config.mode, "recipe_steps": config.steps, "parameters": count_parameters(model)}
    started = time.perf_counter()
    last: dict[str, float] = {}
    while step < config.steps:
        # Epoch and position follow from the step alone, so a resumed run sees the same batches.
        epoch, skip = divmod(step, steps_per_epoch)
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=range(skip * config.batch_size, steps_per_epoch * config.batch_size),
            drop_last=True,
            num_workers=config.data.workers,
        )
        for batch in loader:
            if step >= config.steps:
                break
            raw, target = batch["raw"].to(device), batch["target"].to(device)
            loss, terms = supervised_loss(model(raw), target, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            last = {"loss": float(loss.detach()), **terms}
            if step % config.log_every == 0 or step == config.steps:
                run.log({"step": step, **last})
            if step % config.val_every == 0 or step == config.steps:
                run.log({"step": step, **validate(model, val_frames, val_targets, device)})
            if step % config.ckpt_every == 0 or step == config.steps:
                run.save(model, name, step, {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}, training)
            if progress is not None:
                progress(step, last)

    final_val = validate(model, val_frames, val_targets, device)
    summary = {
        "mode": config.mode,
        "model": name,
        "steps": step,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 2),
        "final_loss": last,
        "start_validation": start_val,
        "final_validation": final_val,
        "validation_images": len(val_frames),
        "model_file": str(run.path / MODEL_FILE),
    }
    write_text(run.path / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary
