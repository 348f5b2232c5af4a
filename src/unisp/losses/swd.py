"""Sliced Wasserstein distances between sets of vectors, and the texture term built on them.

The sliced Wasserstein distance (Rabin et al., "Wasserstein barycenter and its application to
texture mixing", SSVM 2011; Deshpande et al., CVPR 2018) projects two equally sized sets of
vectors on random unit directions; in one dimension the optimal transport pairs the sorted
values, so the distance is the mean absolute difference of the sorted projections. It compares
whole distributions without a discriminator, gives a useful gradient from the first step, and
costs a sort.

``texture_swd`` compares what clean photos look like at the finest scale with what the generator
makes: small patches of the high-pass CIELAB image (the image minus its Gaussian blur). Sensor
noise, which the generator copies from its RAW input and the classical render X̂, widens the
distribution of those patches (chroma noise most); photos' patches are mostly flat with a few
edges. Matching the two pushes the generator to remove noise and keep edges, which neither the
paper's content term against the noisy X̂ nor a pixel term against it can ask for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unisp.isp.lab import srgb_to_lab
from unisp.losses.colour import blur_sigma

#: CIELAB channels are divided by these before the texture term: L* spans 0–100 and a*, b* about
#: ±110 on sRGB colours, so the three have comparable ranges (the issue's prototype: L/100, a/110, b/110).
LAB_SCALE = (100.0, 110.0, 110.0)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between two sets of ``N`` vectors.

    Args:
        x: ``(N, D)`` samples (with graph).
        y: ``(N, D)`` samples of the other distribution.
        directions: ``(D, K)`` unit directions to project on.

    Returns:
        Scalar: the mean over directions and ranks of ``|sort(x·d) − sort(y·d)|``.

    Example:
        >>> d = torch.eye(2)
        >>> sliced_wasserstein(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([[2.0, 1.0], [0.0, 0.0]]), d)
        tensor(0.2500)
    """
    if x.ndim != 2 or x.shape != y.shape or directions.shape[0] != x.shape[1]:
        raise ValueError(f"sliced_wasserstein needs x, y (N, D) and directions (D, K), got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(directions.shape)}")
    px = (x @ directions).sort(dim=0).values
    py = (y @ directions).sort(dim=0).values
    return (px - py).abs().mean()


def random_directions(dim: int, count: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """``(dim, count)`` directions drawn uniformly on the unit sphere (normalised Gaussians)."""
    d = torch.randn(dim, count, generator=generator, dtype=torch.float32)
    return (d / d.norm(dim=0, keepdim=True).clamp_min(1e-12)).to(device)


def highpass_patches(rgb: torch.Tensor, sigma: float, patch: int) -> torch.Tensor:
    """Every ``patch × patch`` window (stride 2) of the high-pass scaled CIELAB image, as rows.

    Args:
        rgb: ``(B, 3, H, W)`` sRGB in [0, 1].
        sigma: the high pass is the image minus its Gaussian blur of this σ (:func:`blur_sigma`).
        patch: window side.

    Returns:
        ``(B · windows, 3 · patch²)``.
    """
    lab = srgb_to_lab(rgb)
    lab = lab / torch.tensor(LAB_SCALE, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    high = lab - blur_sigma(lab, sigma)
    windows = F.unfold(high, patch, stride=2)  # (B, 3·patch², L)
    return windows.transpose(1, 2).reshape(-1, windows.shape[1])


def texture_swd(
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    sigma: float,
    patch: int,
    samples: int,
    directions: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sliced Wasserstein distance between high-pass CIELAB patches of ``fake`` and of ``real``.

    Args:
        fake: generator output ``(B, 3, H, W)`` in [0, 1] (with graph).
        real: photos ``(B', 3, H', W')`` (no gradient is taken through them).
        sigma, patch: see :func:`highpass_patches`.
        samples: windows drawn (with replacement) from each side.
        directions: random projections.
        generator: draws the windows and the directions (seeded per step by the caller, so a
            resumed run, and every process of a distributed one, draw the same).

    Returns:
        Scalar loss.
    """
    x = highpass_patches(fake, sigma, patch)
    with torch.no_grad():
        y = highpass_patches(real, sigma, patch)
    ix = torch.randint(len(x), (samples,), generator=generator).to(x.device)
    iy = torch.randint(len(y), (samples,), generator=generator).to(y.device)
    d = random_directions(x.shape[1], directions, generator, x.device).to(x.dtype)
    return sliced_wasserstein(x[ix], y[iy].to(x.dtype), d)
