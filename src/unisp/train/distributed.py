"""Data-parallel training over ``torch.distributed``, launched by ``torchrun`` (nanoGPT style).

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them training runs in one
process and every function here is a no-op. With them, each rank:

- computes on ``cuda:LOCAL_RANK`` with the NCCL backend, or on the CPU with gloo;
- takes its own shard of every global batch: rank ``r`` of ``W`` gets items ``r, r + W, …`` of
  the batch's indices, and an index fixes both its RAW patch and its unrelated RGB patch (see
  :class:`unisp.data.patches.RawPatches`), so both sets are sharded and the union over ranks is
  exactly the single-process batch;
- averages every gradient explicitly. unisp assembles gradients by hand (Dynamic Loss
  Adaptation combines per-term gradients in :mod:`unisp.losses.dla`; the discriminators' R1/R2
  penalties differentiate twice), and ``DistributedDataParallel``'s reduction hooks fire only on
  a plain ``.backward()``, so the module wrapper would reduce nothing here. Instead the per-term
  generator gradients are averaged *before* DLA normalises them (the weights
  ``1 / ‖∇Lᵢ‖`` are then those of the global batch, as in one process), and each discriminator's
  gradient is averaged before clipping. Every loss is a mean over equal shards, so the average of
  the ranks' gradients is the gradient of the global batch;
- starts from rank 0's parameters (broadcast), and only rank 0 writes files and logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from unisp.device import resolve_device
from unisp.errors import ConfigError, UnispError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a ``torchrun`` job (one process: rank 0 of 1).

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this node (its GPU index).
        owns_group: this process created the process group (and destroys it in :func:`cleanup`).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def is_main_process() -> bool:
    """Whether this process shows progress and writes files: rank 0 of a ``torchrun`` job, or a
    process ``torchrun`` did not launch (no ``RANK``). Read from the environment, so it holds
    before :func:`setup` joins the job."""
    return os.environ.get("RANK", "0") == "0"


def setup(device: str) -> tuple[Distributed, torch.device]:
    """Join the ``torchrun`` job described by the environment, if any.

    Args:
        device: the recipe's device (``auto``, ``cpu``, ``cuda``, ``cuda:N``); under ``torchrun`` a
            CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns:
        ``(context, device)``. The backend is NCCL when the device is CUDA, gloo otherwise.
    """
    resolved = resolve_device(device)
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return Distributed(), resolved
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend)
        except Exception as e:  # rendezvous and backend errors come in many types
            raise UnispError(f"rank {rank}: cannot join the {backend} process group ({' '.join(str(e).split())[:200]})") from None
    if rank == 0:
        log.info("distributed training: %d processes, backend %s", world, dist.get_backend())
    else:  # only rank 0 logs what it reads and does; the others still warn
        logging.getLogger("unisp").setLevel(logging.WARNING)
    return Distributed(rank, world, local_rank, owns), resolved


def cleanup(ctx: Distributed) -> None:
    """Leave the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(batch_size: int, ctx: Distributed) -> int:
    """Patches per rank for a global batch of ``batch_size`` (which must split evenly)."""
    if batch_size % ctx.world:
        raise ConfigError(f"config key 'batch_size' ({batch_size}) must be a multiple of the {ctx.world} processes")
    return batch_size // ctx.world


def shard_indices(first_step: int, last_step: int, batch_size: int, ctx: Distributed) -> list[int]:
    """Dataset indices this rank reads for global steps ``first_step … last_step - 1`` of an epoch.

    Step ``s`` of one process reads indices ``s·B … s·B + B − 1``; rank ``r`` of ``W`` reads
    ``s·B + r, s·B + r + W, …`` of them, so the ranks' shards together are that same batch.
    """
    return [s * batch_size + j for s in range(first_step, last_step) for j in range(ctx.rank, batch_size, ctx.world)]


class StepSampler(Sampler):
    """``(epoch, index)`` of every item this rank reads from global step :attr:`start` to ``steps``.

    Global step ``s`` is step ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch`` and reads
    the indices :func:`shard_indices` gives it, so the data follow from the step alone: a resumed
    run (``start`` = its checkpoint's step) reads what the uninterrupted run read. The training
    loop builds its data loader once, over this sampler and
    :class:`~unisp.data.patches.EpochItems`, and sets :attr:`start` before each pass (the first,
    and one after each rollback).
    """

    def __init__(self, steps: int, steps_per_epoch: int, batch_size: int, ctx: Distributed) -> None:
        self.steps, self.steps_per_epoch, self.batch_size, self.ctx = steps, steps_per_epoch, batch_size, ctx
        self.start = 0

    def __iter__(self):
        for step in range(self.start, self.steps):
            epoch, position = divmod(step, self.steps_per_epoch)
            for index in shard_indices(position, position + 1, self.batch_size, self.ctx):
                yield epoch, index


def average_(tensor: torch.Tensor, ctx: Distributed) -> torch.Tensor:
    """Average ``tensor`` over the ranks, in place (returned for convenience)."""
    if ctx.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(ctx.world)
    return tensor


def average_gradient_lists(grads: Sequence[Sequence[torch.Tensor]], ctx: Distributed) -> list[list[torch.Tensor]]:
    """Average several gradient lists (one per loss term) over the ranks with one collective call."""
    if not ctx.active or not grads:
        return [list(g) for g in grads]
    flat = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in grads])
    average_(flat, ctx)
    out = []
    for row, g in zip(flat, grads):
        sizes = [t.numel() for t in g]
        out.append([piece.view_as(t) for piece, t in zip(row.split(sizes), g)])
    return out


def average_gradients_(params: Sequence[torch.Tensor], ctx: Distributed) -> None:
    """Average ``p.grad`` of ``params`` over the ranks in place (a missing gradient counts as zero)."""
    if not ctx.active:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    (averaged,) = average_gradient_lists([[p.grad for p in params]], ctx)
    for p, g in zip(params, averaged):
        p.grad.copy_(g)


def broadcast_module_(module: nn.Module, ctx: Distributed) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if ctx.active:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def broadcast_object(obj: Any, ctx: Distributed) -> Any:
    """Rank 0's ``obj`` on every rank (pickled between our own processes, never read from a file)."""
    if not ctx.active:
        return obj
    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
