"""What a training mode optimises: the active generator terms, their multipliers, and the discriminators.

Every generator term has a multiplier; a zero multiplier leaves it out. Each batch holds the RAW
planes, ``target`` (the classical render X̂ of the same patch), and, by mode, ``aligned`` (the
aligned photo, paired modes) or ``real`` (an unrelated photo, unpaired). The references:

- pixel terms (``pixel.l1``, ``pixel.ssim``): the aligned photo in paired modes (supervised
  training), X̂ otherwise;
- the paper's content term: X̂ in every mode, as the released code does (its paired training is
  the unpaired one with ``shuffled = False``: only the discriminators' real images change), or
  the aligned photo with ``content_reference: aligned``;
- the discriminators' and ``texture_swd``'s real images: the unrelated photo (unpaired) or the
  aligned one (paired);
- ``graded``: X̂ graded to the RGB photos' lightness and chroma (:mod:`unisp.isp.grading`).

There are no discriminators in ``stage1`` and ``paired_no_adv``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from unisp.errors import ConfigError
from unisp.metrics import ssim
from unisp.isp.grading import Grading
from unisp.losses.backbones import build_backbones
from unisp.losses.config import TERMS, UNISP_TERMS
from unisp.losses.criterion import ADVERSARIAL_TERMS, UnpairedCriterion
from unisp.losses.graded import graded_loss
from unisp.losses.swd import texture_swd
from unisp.train.config import TrainConfig

log = logging.getLogger(__name__)

#: Pixel terms (see :class:`unisp.train.config.PixelLossConfig`).
PIXEL_TERMS = ("l1", "ssim")
#: Salt of the per-step random stream of the sliced Wasserstein term (windows and directions).
_SWD_STREAM = 0x5357_4400


def active_terms(config: TrainConfig) -> dict[str, float]:
    """``{term: multiplier}`` of every term this recipe optimises (non-zero multipliers only)."""
    terms = {name: getattr(config.pixel, name) for name in PIXEL_TERMS if getattr(config.pixel, name) > 0}
    if config.mode != "stage1":
        for name in (*TERMS, *UNISP_TERMS):
            multiplier = getattr(config.losses, name)
            if multiplier > 0 and (config.mode != "paired_no_adv" or name not in ADVERSARIAL_TERMS):
                terms[name] = multiplier
    if not terms:
        raise ConfigError(
            f"no loss term is active in {config.mode} mode: set pixel.l1/pixel.ssim"
            + ("" if config.mode == "stage1" else " or losses." + "/".join((*TERMS, *UNISP_TERMS)))
            + " above 0"
        )
    return terms


def swd_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of the sliced Wasserstein term at ``step``: the same on every process and on resume."""
    return torch.Generator().manual_seed(hash((seed, step, _SWD_STREAM)) & 0x7FFF_FFFF_FFFF_FFFF)


class Objective(nn.Module):
    """The generator terms of a recipe and, when adversarial terms are active, the discriminators.

    Args:
        config: the recipe.
        grading: the fitted grading of X̂ to the RGB photos; needed when ``graded`` is active.
    """

    def __init__(self, config: TrainConfig, grading: Grading | None = None) -> None:
        super().__init__()
        self.multipliers = active_terms(config)
        if "graded" in self.multipliers and grading is None:
            raise ConfigError("the graded term needs a grading fitted to the RGB photos")
        self.grading = grading
        self.losses = config.losses
        self.content_reference = config.content_reference
        self.seed = config.seed
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

    def generator_terms(self, fake: torch.Tensor, batch: dict[str, torch.Tensor], step: int = 0):
        """``(terms, discriminator batch or None)`` for output ``fake`` on ``batch`` at ``step``."""
        xhat, aligned = batch["target"], batch.get("aligned")
        pixel_ref = xhat if aligned is None else aligned
        content_ref = aligned if self.content_reference == "aligned" else xhat
        real = batch.get("real", aligned)
        terms: dict[str, torch.Tensor] = {}
        if "l1" in self.multipliers:
            terms["l1"] = F.l1_loss(fake, pixel_ref)
        if "ssim" in self.multipliers:
            terms["ssim"] = 1.0 - ssim(fake, pixel_ref).mean()
        dbatch = None
        if self.criterion is not None:
            paper, dbatch = self.criterion.generator_terms(fake, content_ref, real)
            terms.update({k: v for k, v in paper.items() if k in self.multipliers})
        if "graded" in self.multipliers:
            with torch.no_grad():
                graded = self.grading.apply(xhat.float())
            terms["graded"] = graded_loss(fake, graded, self.losses.graded_blur)
        if "texture_swd" in self.multipliers:
            losses = self.losses
            terms["texture_swd"] = texture_swd(
                fake, real, sigma=losses.swd_sigma, patch=losses.swd_patch, samples=losses.swd_samples,
                directions=losses.swd_directions, generator=swd_generator(self.seed, step),
            )
        return terms, dbatch
