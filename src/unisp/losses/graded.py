"""The ``graded`` term: L1 between the blurred output and the blurred graded classical render.

The classical render X̂ of the RAW patch (demosaic, white balance, transfer curve) is graded to the
lightness and chroma distributions of the RGB photos (:mod:`unisp.isp.grading`, one global map
fitted on both whole sets before training), and the output is pulled towards it. Both are
blurred first: X̂ carries the sensor's noise, which the generator should not copy; only tone,
colour and structure down to the blur's scale are asked for. Not the paper's: unisp's own term
(docs/TRAINING.md, "unisp's default unpaired recipe").
"""

from __future__ import annotations

import torch

from unisp.losses.colour import blur_sigma


def graded_loss(fake: torch.Tensor, graded: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean absolute difference of ``fake`` and ``graded`` ``(B, 3, H, W)``, both blurred with σ ``sigma``.

    Example:
        >>> graded_loss(torch.full((1, 3, 16, 16), 0.5), torch.full((1, 3, 16, 16), 0.25), 1.0)
        tensor(0.2500)
    """
    if fake.shape != graded.shape:
        raise ValueError(f"graded_loss needs equal shapes, got {tuple(fake.shape)} and {tuple(graded.shape)}")
    return (blur_sigma(fake, sigma) - blur_sigma(graded.to(fake.dtype), sigma)).abs().mean()
