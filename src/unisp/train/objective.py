"""What a training mode optimises: the active generator terms, their multipliers, and the discriminators.

Every generator term has a multiplier; a zero multiplier leaves it out. The mode decides the
reference the content and pixel terms compare with (the classical render X̂ in ``stage1`` and
``unpaired``; the aligned target in the paired modes), where the discriminators' "real" images
come from (unrelated RGB photos, or the aligned targets), and whether there are discriminators at
all (not in ``stage1`` or ``paired_no_adv``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from unisp.errors import ConfigError
from unisp.eval.metrics import ssim
from unisp.losses.backbones import build_backbones
from unisp.losses.config import TERMS
from unisp.losses.criterion import ADVERSARIAL_TERMS, UnpairedCriterion
from unisp.train.config import TrainConfig

log = logging.getLogger(__name__)

#: Pixel terms (see :class:`unisp.train.config.PixelLossConfig`).
PIXEL_TERMS = ("l1", "ssim")


def active_terms(config: TrainConfig) -> dict[str, float]:
    """``{term: multiplier}`` of every term this recipe optimises (non-zero multipliers only)."""
    terms = {name: getattr(config.pixel, name) for name in PIXEL_TERMS if getattr(config.pixel, name) > 0}
    if config.mode != "stage1":
        for name in TERMS:
            multiplier = getattr(config.losses, name)
            if multiplier > 0 and (config.mode != "paired_no_adv" or name not in ADVERSARIAL_TERMS):
                terms[name] = multiplier
    if not terms:
        raise ConfigError(
            f"no loss term is active in {config.mode} mode: set pixel.l1/pixel.ssim"
            + ("" if config.mode == "stage1" else " or losses.content/colour/texture_low/texture_high/tv")
            + " above 0"
        )
    return terms


class Objective(nn.Module):
    """The generator terms of a recipe and, when adversarial terms are active, the discriminators."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.multipliers = active_terms(config)
        self.criterion = None
        paper_terms = [t for t in self.multipliers if t in TERMS]
        if paper_terms:
            losses = config.losses
            backbones = build_backbones(losses.profile, weights_dir=losses.weights_dir or None)
            adversarial = any(t in ADVERSARIAL_TERMS for t in paper_terms)
            self.criterion = UnpairedCriterion(backbones, losses, patch=config.data.patch, adversarial=adversarial)
        log.info("generator terms (multiplier): %s", ", ".join(f"{k} ({v:g})" for k, v in self.multipliers.items()))

    def discriminators(self) -> dict[str, nn.Module]:
        return {} if self.criterion is None else self.criterion.discriminators()

    def generator_terms(self, fake: torch.Tensor, batch: dict[str, torch.Tensor]):
        """``(terms, discriminator batch or None)`` for output ``fake`` on ``batch``.

        ``batch["target"]`` is the reference (X̂ or the aligned target); ``batch["real"]`` the
        discriminators' real images (unpaired), else the target itself (paired).
        """
        ref = batch["target"]
        terms: dict[str, torch.Tensor] = {}
        if "l1" in self.multipliers:
            terms["l1"] = F.l1_loss(fake, ref)
        if "ssim" in self.multipliers:
            terms["ssim"] = 1.0 - ssim(fake, ref).mean()
        dbatch = None
        if self.criterion is not None:
            paper, dbatch = self.criterion.generator_terms(fake, ref, batch.get("real", ref))
            terms.update({k: v for k, v in paper.items() if k in self.multipliers})
        return terms, dbatch
