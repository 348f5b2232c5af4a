"""The paper's stage-2 losses: frozen backbones, content / colour / texture / TV terms, the
discriminators with their relativistic GAN losses, and Dynamic Loss Adaptation."""

from __future__ import annotations

from unisp.losses.adversarial import (
    discriminator_loss,
    discriminator_objective,
    generator_loss,
    gradient_penalty,
    init_discriminator,
)
from unisp.losses.backbones import BackboneSpec, FrozenBackbones, MissingWeightsError, build_backbones
from unisp.losses.colour import ColourDiscriminator, colour_features, gaussian_blur, gaussian_kernel1d
from unisp.losses.config import TERMS, UnpairedLossConfig
from unisp.losses.content import content_loss
from unisp.losses.criterion import ADVERSARIAL_TERMS, DiscriminatorBatch, UnpairedCriterion
from unisp.losses.dla import DLAResult, dla_backward, fixed_weight_backward, reference_dla_backward
from unisp.losses.texture import TextureDiscriminator, grayscale, texture_features
from unisp.losses.tv import total_variation
from unisp.losses.weights import WeightFile, fetch_weights, required_weights

__all__ = [
    "ADVERSARIAL_TERMS",
    "TERMS",
    "BackboneSpec",
    "ColourDiscriminator",
    "DLAResult",
    "DiscriminatorBatch",
    "FrozenBackbones",
    "MissingWeightsError",
    "TextureDiscriminator",
    "UnpairedCriterion",
    "UnpairedLossConfig",
    "WeightFile",
    "build_backbones",
    "colour_features",
    "content_loss",
    "discriminator_loss",
    "discriminator_objective",
    "dla_backward",
    "fetch_weights",
    "fixed_weight_backward",
    "gaussian_blur",
    "gaussian_kernel1d",
    "generator_loss",
    "gradient_penalty",
    "grayscale",
    "init_discriminator",
    "reference_dla_backward",
    "required_weights",
    "texture_features",
    "total_variation",
]
