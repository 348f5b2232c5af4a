"""Relativistic pairing GAN losses with R1 and R2 gradient penalties.

The paper pairs every fake sample with a real one (the relativistic pairing GAN of Jolicoeur-
Martineau 2019, "The relativistic discriminator", as used by R3GAN, Huang et al. 2024):

- generator:     ``softplus(−(D(fake) − D(real))).mean()``
- discriminator: ``softplus(−(D(real) − D(fake))).mean()``
- R1 = γ₁/2 · E‖∇ D(real)‖², R2 = γ₂/2 · E‖∇ D(fake)‖², gradients taken with respect to the
  discriminator's input features (Mescheder et al. 2018, "Which training methods for GANs do
  actually converge?"), squared norm summed over each sample's features, mean over the batch.

Discriminators are He-initialised (:func:`init_discriminator`). The discriminator side always
runs in float32 with autocast off: the penalties' double backward is fragile in half precision,
and the discriminators are small next to the frozen backbones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def init_discriminator(module: nn.Module, slope: float) -> None:
    """He initialisation for a LeakyReLU discriminator: the layer outputs keep the input's scale.

    Every convolution and linear layer gets ``N(0, gain² / fan_in)`` weights and zero biases,
    with the LeakyReLU gain ``√(2 / (1 + slope²))`` (He et al. 2015, "Delving deep into
    rectifiers") except the last layer, which has no activation after it (gain 1). PyTorch's
    default (weights of standard deviation ``1/√(3·fan_in)``, random biases) divides the
    signal's standard deviation by about 2.4 per layer (variance × 1/3 from the weights, × 0.52
    through LeakyReLU 0.2), so at initialisation the logits hardly depend on the input and,
    under the relativistic loss, which only sees ``D(real) − D(fake)``, the hidden biases get
    almost no gradient. The paper does not say which initialisation it used.

    Args:
        module: the discriminator; its ``nn.Linear``/``nn.Conv2d`` layers are initialised in place.
        slope: the negative slope of its LeakyReLUs.
    """
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        nn.init.kaiming_normal_(layer.weight, a=slope, nonlinearity="linear" if last else "leaky_relu")
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is in a half-precision type (float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def generator_loss(d_fake: torch.Tensor, d_real: torch.Tensor) -> torch.Tensor:
    """Relativistic generator loss ``softplus(−(D(fake) − D(real))).mean()``.

    Args:
        d_fake: logits ``(B,)`` of the fake samples (with the generator's graph).
        d_real: logits ``(B,)`` of the real samples paired with them.

    Returns:
        Scalar loss.

    Example:
        >>> generator_loss(torch.zeros(2), torch.zeros(2))  # D cannot tell them apart: log 2
        tensor(0.6931)
    """
    return F.softplus(-(_wide(d_fake) - _wide(d_real))).mean()


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Relativistic discriminator loss ``softplus(−(D(real) − D(fake))).mean()`` (the mirror of :func:`generator_loss`)."""
    return F.softplus(-(_wide(d_real) - _wide(d_fake))).mean()


def gradient_penalty(logits: torch.Tensor, inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """Zero-centred gradient penalty ``γ/2 · E_batch ‖∇_inputs D‖²`` (R1 on real inputs, R2 on fake).

    The discriminator treats samples independently, so the gradient of ``logits.sum()`` gives
    every sample's own gradient. The graph is kept (``create_graph``) so the penalty trains D.

    Args:
        logits: ``(B,)`` discriminator outputs computed from ``inputs``.
        inputs: the features ``(B, ...)`` that required grad when ``logits`` were computed.
        gamma: γ (the paper: 10); 0 gives an exact zero without a backward pass.

    Returns:
        Scalar penalty.
    """
    if gamma == 0:
        return logits.new_zeros(())
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return 0.5 * gamma * _wide(grad).pow(2).flatten(1).sum(dim=1).mean()


def discriminator_objective(
    disc: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    r1_gamma: float,
    r2_gamma: float,
) -> dict[str, torch.Tensor]:
    """One discriminator's relativistic loss plus R1 and R2, in float32 (at least) with autocast off.

    Args:
        disc: the discriminator, features ``(B, ...)`` → logits ``(B,)``.
        real: real-image features ``(B, ...)`` (detached here).
        fake: fake-image features ``(B, ...)`` (detached here: nothing reaches the generator).
        r1_gamma, r2_gamma: penalty weights (the paper: 10, 10).

    Returns:
        ``{"total", "loss", "r1", "r2", "d_real", "d_fake"}``: ``total = loss + r1 + r2`` (with
        graph, to call ``backward`` on); the others are detached scalars for logging
        (``d_real``/``d_fake`` the mean logits).
    """
    if real.shape[0] != fake.shape[0]:
        raise ValueError(f"relativistic pairing needs as many real as fake samples, got {real.shape[0]} and {fake.shape[0]}")
    real = _wide(real.detach()).requires_grad_(True)
    fake = _wide(fake.detach()).requires_grad_(True)
    with torch.autocast(device_type=real.device.type, enabled=False):
        d_real = _wide(disc(real))
        d_fake = _wide(disc(fake))
        loss = discriminator_loss(d_real, d_fake)
        r1 = gradient_penalty(d_real, real, r1_gamma)
        r2 = gradient_penalty(d_fake, fake, r2_gamma)
    return {
        "total": loss + r1 + r2,
        "loss": loss.detach(),
        "r1": r1.detach(),
        "r2": r2.detach(),
        "d_real": d_real.detach().mean(),
        "d_fake": d_fake.detach().mean(),
    }
