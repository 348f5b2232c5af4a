"""What the training loop changes step by step: :class:`TrainState`.

One object holds the generator and its optimiser, the discriminators and theirs, the NaN guard,
the step, and the last good state (the last checkpoint, kept in memory for a NaN rollback).
``resume.pt`` holds :meth:`TrainState.state_dict` plus the step and the name of its checkpoint
(:meth:`unisp.train.run.RunDir.save` adds both); the generator's weights are in the checkpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unisp.models.base import Generator
from unisp.train.config import TrainConfig
from unisp.train.guard import NonFiniteGuard, snapshot


@dataclass
class TrainState:
    """The generator, the discriminators, their optimisers, the NaN guard and the step.

    Attributes:
        model: the generator being trained.
        g_params: its trainable parameters (those ``g_opt`` updates).
        g_opt: the generator's optimiser.
        discriminators: ``{name: discriminator}`` of the objective (empty without adversarial terms).
        d_opts: each discriminator's optimiser, by the same names.
        guard: the NaN guard (skipped steps, rollbacks, learning-rate scale).
        step: steps taken so far, which is the 0-based index of the next step.
        last_good: the last checkpoint, in memory (:func:`unisp.train.guard.snapshot`): what a
            NaN rollback returns to.
    """

    model: Generator
    g_params: list[nn.Parameter]
    g_opt: torch.optim.Optimizer
    discriminators: dict[str, nn.Module]
    d_opts: dict[str, torch.optim.Optimizer]
    guard: NonFiniteGuard
    step: int = 0
    last_good: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, model: Generator, discriminators: dict[str, nn.Module], config: TrainConfig) -> TrainState:
        """Step 0: Adam optimisers with the recipe's learning rates and betas, and a fresh NaN guard.

        Args:
            model: the generator, on its device.
            discriminators: the objective's discriminators (:meth:`unisp.train.objective.Objective.discriminators`).
            config: the recipe (``lr``, ``betas``, ``d_lr``, ``d_betas`` and the ``nan_*`` keys).

        Returns:
            The state at step 0.
        """
        g_params = [p for p in model.parameters() if p.requires_grad]
        g_opt = torch.optim.Adam(g_params, lr=config.lr, betas=tuple(config.betas))
        d_betas = tuple(config.d_betas)
        d_opts = {k: torch.optim.Adam(d.parameters(), lr=config.d_lr, betas=d_betas) for k, d in discriminators.items()}
        guard = NonFiniteGuard(config.nan_patience, config.nan_lr_factor, config.nan_max_rollbacks)
        return cls(model, g_params, g_opt, discriminators, d_opts, guard)

    def state_dict(self) -> dict[str, Any]:
        """Everything beyond the generator's weights and the step that ``--resume`` (and a NaN rollback) needs.

        Returns:
            ``{"optimizer", "discriminators", "d_optimizers", "torch_rng", "guard"}``: the keys of
            ``resume.pt`` besides ``step`` and ``checkpoint``, in the order it has always held them.
        """
        return {
            "optimizer": self.g_opt.state_dict(),
            "discriminators": {k: d.state_dict() for k, d in self.discriminators.items()},
            "d_optimizers": {k: o.state_dict() for k, o in self.d_opts.items()},
            "torch_rng": torch.get_rng_state(),
            "guard": self.guard.counters(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the optimisers, the discriminators and the torch RNG of a :meth:`state_dict`.

        The guard's counters are left alone: a rollback keeps counting skipped steps and rollbacks
        (:meth:`resume` restores them from ``resume.pt``).

        Args:
            state: a :meth:`state_dict` (or the ``resume.pt`` that holds one).
        """
        self.g_opt.load_state_dict(state["optimizer"])
        for key, d in self.discriminators.items():
            d.load_state_dict(state["discriminators"][key])
            self.d_opts[key].load_state_dict(state["d_optimizers"][key])
        torch.set_rng_state(state["torch_rng"])

    def resume(self, saved: dict[str, Any]) -> None:
        """Continue a run from its ``resume.pt`` (the generator already holds the checkpoint's weights).

        Args:
            saved: the loaded ``resume.pt`` (:meth:`unisp.train.run.RunDir.load_resume`).
        """
        self.load_state_dict(saved)
        self.guard.restore(saved.get("guard", {}))
        self.step = int(saved["step"])

    def mark_good(self, state: dict[str, Any] | None = None) -> None:
        """Keep a deep copy of the generator and ``state`` at this step as :attr:`last_good`.

        Args:
            state: the :meth:`state_dict` just saved in a checkpoint; taken now when not given.
        """
        self.last_good = snapshot(self.model, self.state_dict() if state is None else state, self.step)

    def roll_back(self) -> None:
        """Return to :attr:`last_good` with the learning rates lowered (:meth:`NonFiniteGuard.rolled_back`).

        Raises:
            TrainingDiverged: no rollback is left.
        """
        self.guard.rolled_back(self.step, self.last_good["step"])
        self.model.load_state_dict(self.last_good["model"])
        self.load_state_dict(copy.deepcopy(self.last_good["state"]))
        self.step = self.last_good["step"]
