"""The paper's stage-2 objective: content, colour, two texture terms and TV, plus the discriminators.

:class:`UnpairedCriterion` computes the generator terms of one batch (what DLA or the plain sum
then backpropagates) and, from the features it saved, the discriminators' step. Real-image
features are computed once, without gradient; fake-image features with gradient for the
generator terms and detached for the discriminators.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from unisp.errors import ConfigError
from unisp.losses.adversarial import discriminator_objective, generator_loss
from unisp.losses.colour import ColourDiscriminator, colour_features
from unisp.losses.config import TERMS, UnpairedLossConfig
from unisp.losses.content import content_loss_from_features, content_view
from unisp.losses.texture import TextureDiscriminator, grayscale, texture_features
from unisp.losses.tv import total_variation

log = logging.getLogger(__name__)

#: The terms judged by a discriminator, one discriminator each (the keys of ``discriminators()``).
ADVERSARIAL_TERMS: tuple[str, ...] = ("colour", "texture_low", "texture_high")
#: The numbers :meth:`UnpairedCriterion.discriminator_step` returns for each discriminator.
D_STATS: tuple[str, ...] = ("loss", "d_real", "d_fake", "r1", "r2")


@dataclass
class DiscriminatorBatch:
    """Detached features of one batch for the discriminator step, keyed like :data:`ADVERSARIAL_TERMS`.

    Attributes:
        real: features of the real (unrelated) images.
        fake: features of the generator output (no graph back to the generator).
    """

    real: dict[str, torch.Tensor] = field(default_factory=dict)
    fake: dict[str, torch.Tensor] = field(default_factory=dict)


class UnpairedCriterion(nn.Module):
    """Generator terms and discriminators of the paper's unpaired training, for one patch size.

    The backbones are a frozen submodule (they follow ``.to()``; their weights are in this
    module's ``state_dict``, so checkpoint the discriminators through :meth:`discriminators`).
    Every discriminator layer exists after construction, before any optimiser is made.

    Args:
        backbones: a :class:`unisp.losses.backbones.FrozenBackbones`.
        config: blur, penalty and slope settings (multipliers and DLA are applied by the caller).
        patch: edge of the RGB patches (generator output and real images) it will see.
        adversarial: build the discriminators and compute the adversarial terms; ``False``
            (the paper's paired_no_adv row) gives only ``content`` and ``tv``.
    """

    def __init__(self, backbones: nn.Module, config: UnpairedLossConfig, patch: int, adversarial: bool = True) -> None:
        super().__init__()
        if patch < 1:
            raise ConfigError(f"UnpairedCriterion needs a positive patch size, got {patch}")
        if patch < config.content_pool:
            raise ConfigError(
                f"{patch} px patches are smaller than the content view's pooling window "
                f"(config key 'losses.content_pool' = {config.content_pool})"
            )
        if adversarial and patch <= config.blur_size // 2:
            raise ConfigError(
                f"{patch} px patches are too small for the colour branch's {config.blur_size}×{config.blur_size} blur "
                f"(config key 'losses.blur_size'): patches must exceed {config.blur_size // 2} px"
            )
        self.backbones = backbones
        self.config = config
        self.patch = patch
        self.adversarial = adversarial
        self.discs = nn.ModuleDict()
        if adversarial:
            device, dtype = _placement(backbones)
            with torch.no_grad():
                low, high = backbones.texture_features(torch.zeros(1, 3, patch, patch, device=device, dtype=dtype))
            slope = config.leaky_slope
            self.discs["colour"] = ColourDiscriminator(backbones.spec.colour_dim, slope=slope)
            self.discs["texture_low"] = TextureDiscriminator(low.shape[1], tuple(low.shape[-2:]), slope=slope)
            self.discs["texture_high"] = TextureDiscriminator(high.shape[1], tuple(high.shape[-2:]), slope=slope)
            self.discs.to(device)
            log.debug(
                "discriminators for %d px patches: texture maps %s and %s, colour tokens of width %d",
                patch, tuple(low.shape[1:]), tuple(high.shape[1:]), backbones.spec.colour_dim,
            )

    def discriminators(self) -> dict[str, nn.Module]:
        """``{"colour", "texture_low", "texture_high"}`` → discriminator (empty when not adversarial)."""
        return dict(self.discs.items())

    def discriminator_features(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """What each discriminator sees of ``rgb`` ``(B, 3, patch, patch)``: colour tokens and the two texture maps."""
        low, high = texture_features(rgb, self.backbones)
        colour = colour_features(rgb, self.backbones, self.config.blur_size, self.config.blur_sigma)
        return {"colour": colour, "texture_low": low, "texture_high": high}

    def generator_terms(
        self, fake: torch.Tensor, content_ref: torch.Tensor, real: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], DiscriminatorBatch]:
        """The generator's scalar terms and the features for the discriminator step.

        Args:
            fake: generator output Ŷ ``(B, 3, patch, patch)``, with its graph.
            content_ref: the classical render X̂ (or the aligned target in paired modes), like ``fake``.
            real: unrelated real RGB images ``(B, 3, patch, patch)`` (ignored when not adversarial).

        Returns:
            ``(terms, batch)``: ``terms`` maps every name of :data:`TERMS` (only ``content`` and
            ``tv`` when not adversarial) to a scalar with graph; ``batch`` holds detached real
            and fake features (empty when not adversarial).
        """
        if fake.shape != content_ref.shape:
            raise ValueError(f"fake and content_ref need equal shapes, got {tuple(fake.shape)} and {tuple(content_ref.shape)}")
        pool, luma = self.config.content_pool, self.config.content_luma
        batch = DiscriminatorBatch()
        if not self.adversarial:
            content = self.backbones.content_features(content_view(fake, pool, luma))
            return {"content": content_loss_from_features(content, content_ref, self.backbones, pool, luma), "tv": total_variation(fake)}, batch
        expected = (fake.shape[0], 3, self.patch, self.patch)
        if tuple(fake.shape) != expected or tuple(real.shape) != expected:
            raise ValueError(
                f"UnpairedCriterion built for {self.patch} px patches needs fake and real of shape {expected}, "
                f"got {tuple(fake.shape)} and {tuple(real.shape)}"
            )
        gray = grayscale(fake)
        if pool == 1 and luma == "rec601":
            # The content and texture views see the same grayscale image: one pass where they share layers.
            content, low, high = self.backbones.content_and_texture(gray)
        else:
            content = self.backbones.content_features(content_view(fake, pool, luma))
            low, high = self.backbones.texture_features(gray)
        terms = {"content": content_loss_from_features(content, content_ref, self.backbones, pool, luma), "tv": total_variation(fake)}
        fake_features = {
            "colour": colour_features(fake, self.backbones, self.config.blur_size, self.config.blur_sigma),
            "texture_low": low,
            "texture_high": high,
        }
        with torch.no_grad():
            batch.real = self.discriminator_features(real)
        for name in ADVERSARIAL_TERMS:
            disc = self.discs[name]
            with torch.no_grad():
                d_real = disc(batch.real[name])
            terms[name] = generator_loss(disc(fake_features[name]), d_real)
        batch.fake = {name: f.detach() for name, f in fake_features.items()}
        return {name: terms[name] for name in TERMS if name in terms}, batch

    def discriminator_step(self, batch: DiscriminatorBatch) -> dict[str, float]:
        """Relativistic loss + R1 + R2 of each discriminator, backpropagated into its ``.grad``.

        Runs in float32 with autocast off. The caller zeroes the gradients before, and clips and
        steps each discriminator's optimiser after.

        Args:
            batch: the features :meth:`generator_terms` returned.

        Returns:
            ``{"<disc>/<stat>": value}`` for every discriminator and every stat of :data:`D_STATS`
            (relativistic loss, mean real and fake logits, R1, R2).
        """
        stats: dict[str, torch.Tensor] = {}
        for name, disc in self.discs.items():
            out = discriminator_objective(
                disc, batch.real[name], batch.fake[name], self.config.r1_gamma, self.config.r2_gamma
            )
            out["total"].backward(inputs=list(disc.parameters()))
            stats.update({f"{name}/{key}": out[key] for key in D_STATS})
        if not stats:
            return {}
        return dict(zip(stats, torch.stack(list(stats.values())).tolist()))


def _placement(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the first parameter or buffer of ``module`` (CPU, float32 by default)."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    if tensor is None:
        return torch.device("cpu"), torch.float32
    return tensor.device, tensor.dtype if tensor.is_floating_point() else torch.float32
