"""Keeping NaN and Inf out of the weights: skip bad steps, count them, roll back when they persist.

A step whose loss or gradient is not finite never reaches the optimiser: it is skipped and
counted. A few bad batches are survivable; many in a row mean the weights themselves went wrong,
so after ``nan_patience`` consecutive bad steps training returns to the last good state (the last
checkpoint, kept in memory exactly as it was saved) with every learning rate multiplied by
``nan_lr_factor``. After ``nan_max_rollbacks`` rollbacks it gives up with an error.

A run can also fail without a single NaN: a learning rate far too high (``lr=1e10``) drives the
generator to one constant image (black, behind its final ReLU) in a few steps. :func:`collapse`
finds that at every logged step; the loop then stops with :class:`TrainingCollapsed`, because a
constant output passes no gradient (the probe's ``lr=1e10`` run logged a gradient norm of exactly
0 from then on): the run cannot come back, and going on would only end, with exit status 0, in a
black model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from unisp.errors import UnispError

log = logging.getLogger(__name__)


class TrainingDiverged(UnispError):
    """Training keeps producing NaN/Inf after every allowed rollback."""


class TrainingCollapsed(UnispError):
    """The generator's output became one constant image while its reference is not constant."""


#: An output whose standard deviation over a batch (every pixel and channel, values clamped to
#: [0, 1]) is below this is constant: it varies by less than one 8-bit code value (1/255), so it
#: saves as one flat colour. A reference must vary by at least as much for a collapse to count.
COLLAPSE_STD = 1 / 255


def collapse(output: torch.Tensor, reference: torch.Tensor) -> dict[str, float] | None:
    """``{"output_std", "output_mean", "reference_std"}`` when ``output`` is constant and ``reference``
    is not (see :data:`COLLAPSE_STD`); None otherwise (NaN compares as not collapsed)."""
    output = output.detach().float().clamp(0, 1)
    output_std, reference_std = float(output.std()), float(reference.detach().float().std())
    if not (output_std < COLLAPSE_STD <= reference_std):
        return None
    return {"output_std": output_std, "output_mean": float(output.mean()), "reference_std": reference_std}


def collapse_message(step: int, stats: dict[str, float], lr: float) -> str:
    """The error line of :class:`TrainingCollapsed`."""
    return (
        f"training collapsed at step {step}: the generator's output is one constant image (mean "
        f"{stats['output_mean']:.3f}, standard deviation {stats['output_std']:.2g} < {COLLAPSE_STD:.2g} over the "
        f"batch, against {stats['reference_std']:.2g} for its reference) and passes no gradient, so the run "
        f"stopped; lower lr (it is {lr:g}) and start again (checkpoints saved since the last logged step may be collapsed too)"
    )


def all_finite(tensors: Iterable[torch.Tensor | None]) -> bool:
    """True when every element of every (non-None) tensor is finite; one device synchronisation.

    Example:
        >>> all_finite([torch.ones(2), None])
        True
        >>> all_finite([torch.ones(2), torch.tensor([1.0, float("nan")])])
        False
    """
    flags = [torch.isfinite(t).all() for t in tensors if t is not None]
    return bool(torch.stack(flags).all()) if flags else True


@dataclass
class NonFiniteGuard:
    """Counters of skipped steps and rollbacks, saved in ``resume.pt``.

    Attributes:
        patience: consecutive bad steps that trigger a rollback.
        factor: learning-rate multiplier applied at each rollback.
        max_rollbacks: rollbacks allowed before :class:`TrainingDiverged`.
        skipped_steps: generator steps skipped so far (logged as ``skipped_steps``).
        skipped_d_steps: discriminator updates skipped so far (logged as ``skipped_d_steps``).
        consecutive: bad steps since the last good one.
        rollbacks: rollbacks so far.
        lr_scale: product of the factors of every rollback (the learning rates are the recipe's
            times this).
    """

    patience: int
    factor: float
    max_rollbacks: int
    skipped_steps: int = 0
    skipped_d_steps: int = 0
    consecutive: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0

    def counters(self) -> dict[str, Any]:
        """What goes into the resume state."""
        return {k: v for k, v in asdict(self).items() if k not in ("patience", "factor", "max_rollbacks")}

    def restore(self, counters: dict[str, Any]) -> None:
        for key, value in counters.items():
            setattr(self, key, type(getattr(self, key))(value))

    def step_done(self, bad: bool) -> bool:
        """Record the outcome of a step; True when it is time to roll back."""
        self.consecutive = self.consecutive + 1 if bad else 0
        return self.consecutive >= self.patience

    def rolled_back(self, step: int, to_step: int) -> None:
        """Count a rollback from ``step`` to ``to_step`` and lower the learning rates (raises when out of rollbacks)."""
        if self.rollbacks >= self.max_rollbacks:
            raise TrainingDiverged(
                f"training diverged: {self.consecutive} consecutive steps with NaN/Inf at step {step} after "
                f"{self.rollbacks} rollback(s) (nan_max_rollbacks); lower lr or check the data"
            )
        self.rollbacks += 1
        self.consecutive = 0
        self.lr_scale *= self.factor
        log.warning(
            "%d consecutive steps with NaN/Inf loss or gradient at step %d: rolling back to step %d "
            "with learning rates × %g (rollback %d of at most %d)",
            self.patience, step, to_step, self.lr_scale, self.rollbacks, self.max_rollbacks,
        )


def snapshot(model: torch.nn.Module, state: dict[str, Any], step: int) -> dict[str, Any]:
    """A deep copy of what a checkpoint holds (optimiser moments change in place, so copy them)."""
    return copy.deepcopy({"model": model.state_dict(), "state": state, "step": step})
