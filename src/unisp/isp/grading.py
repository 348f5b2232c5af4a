"""Colour grading by quantile matching: one image set's lightness and chroma mapped onto another's.

Histogram specification (Gonzalez & Woods, *Digital Image Processing*, "histogram matching") on
two channels of CIE LCh: lightness L* and chroma C* = √(a*² + b*²), each through a monotone
piecewise-linear curve that sends the source set's quantiles to the target set's. Hue is kept.
Unpaired training (:mod:`unisp.train.objective`, the ``graded`` term) uses it to turn the
classical render X̂ of a camera's RAW files into a pseudo-target with the tone and saturation of
a folder of photos: a global map, fitted on whole sets, which cannot follow one scene's palette.

Example:
    >>> dark = [torch.full((3, 8, 8), 0.2)]
    >>> bright = [torch.full((3, 8, 8), 0.6)]
    >>> grading = fit_grading(dark, bright, pool=1)
    >>> round(grading.apply(torch.full((1, 3, 2, 2), 0.2)).mean().item(), 3)
    0.6
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unisp.errors import UnispError
from unisp.isp.gamma import srgb_encode
from unisp.isp.lab import lab_to_linear_rgb, srgb_to_lab

#: Knots of each curve: the 0th, 1/256th, …, 256/256th quantiles.
GRADING_KNOTS = 257
#: Pixels drawn (at random, seeded) from each set to estimate its quantiles.
GRADING_SAMPLES = 200_000


@dataclass
class Curve:
    """A monotone piecewise-linear map through the points ``(xs[i], ys[i])``, slope 1 beyond the ends."""

    xs: torch.Tensor
    ys: torch.Tensor

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        xs, ys = self.xs.to(values), self.ys.to(values)
        flat = values.reshape(-1).contiguous()
        i = torch.searchsorted(xs, flat).clamp(1, len(xs) - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        t = ((flat - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0.0, 1.0)
        inside = y0 + t * (y1 - y0)
        out = torch.where(flat < xs[0], ys[0] + flat - xs[0], torch.where(flat > xs[-1], ys[-1] + flat - xs[-1], inside))
        return out.reshape(values.shape)


@dataclass
class Grading:
    """Lightness and chroma curves (CIE L*, C*); hue is kept. See the module docstring."""

    lightness: Curve
    chroma: Curve

    def apply(self, rgb: torch.Tensor) -> torch.Tensor:
        """Grade sRGB images ``(B, 3, H, W)`` in [0, 1]; the result is clamped to [0, 1]."""
        lightness, chroma, hue = to_lch(rgb)
        lightness, chroma = self.lightness(lightness), self.chroma(chroma).clamp_min(0.0)
        return from_lch(lightness, chroma, hue)

    def to_dict(self) -> dict[str, list[list[float]]]:
        """``{"lightness": [xs, ys], "chroma": [xs, ys]}`` as plain lists (for ``grading.json``)."""
        return {name: [c.xs.tolist(), c.ys.tolist()] for name, c in (("lightness", self.lightness), ("chroma", self.chroma))}


def to_lch(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sRGB ``(..., 3, H, W)`` → CIE L* (0–100), C* and hue angle h (radians), each ``(..., H, W)``."""
    lab = srgb_to_lab(rgb)
    lightness, a, b = lab.unbind(-3)
    return lightness, torch.hypot(a, b), torch.atan2(b, a)


def from_lch(lightness: torch.Tensor, chroma: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_lch`, clamped to [0, 1] (colours outside the sRGB gamut are clipped)."""
    lab = torch.stack([lightness, chroma * torch.cos(hue), chroma * torch.sin(hue)], dim=-3)
    return srgb_encode(lab_to_linear_rgb(lab).clamp(0.0, 1.0))


def quantile_curve(source: torch.Tensor, target: torch.Tensor, knots: int = GRADING_KNOTS) -> Curve:
    """The monotone curve sending the quantiles of ``source`` to those of ``target`` (1-D samples).

    Where the source has a run of equal quantiles (many pixels of one value), the curve steps
    from the first to the last target quantile of the run: its knots stay non-decreasing.
    """
    if source.numel() < 2 or target.numel() < 2:
        raise UnispError("colour grading needs at least two pixels on each side")
    q = torch.linspace(0.0, 1.0, knots, dtype=torch.float64)
    xs = torch.quantile(source.double().flatten(), q)
    ys = torch.quantile(target.double().flatten(), q)
    return Curve(xs.float(), ys.float())


def _pixels(images: Iterable[torch.Tensor], pool: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """L* and C* of up to ``count`` random pixels of the images, each average-pooled by ``pool`` first.

    The images are taken one at a time (an iterator of large renders holds one in memory).
    """
    lightness, chroma = [], []
    for image in images:
        if min(image.shape[-2:]) < pool:
            raise UnispError(f"colour grading: an image of side {min(image.shape[-2:])} px is smaller than the pooling factor {pool}")
        small = F.avg_pool2d(image[None].float(), pool) if pool > 1 else image[None].float()
        l, c, _ = to_lch(small.clamp(0.0, 1.0))
        lightness.append(l.flatten())
        chroma.append(c.flatten())
    if not lightness:
        raise UnispError("colour grading needs images on both sides")
    lightness_all, chroma_all = torch.cat(lightness), torch.cat(chroma)
    if len(lightness_all) > count:
        pick = torch.randperm(len(lightness_all), generator=generator)[:count]
        lightness_all, chroma_all = lightness_all[pick], chroma_all[pick]
    return lightness_all, chroma_all


def fit_grading(
    sources: Iterable[torch.Tensor],
    targets: Iterable[torch.Tensor],
    *,
    pool: int = 4,
    samples: int = GRADING_SAMPLES,
    seed: int = 0,
) -> Grading:
    """Fit the :class:`Grading` that maps the sources' L* and C* distributions onto the targets'.

    Args:
        sources: ``(3, H, W)`` sRGB images in [0, 1] (in training: X̂ of the RAW side).
        targets: ``(3, H, W)`` sRGB images in [0, 1] (the photos with the wanted look).
        pool: average-pooling factor applied to every image first: sensor noise in X̂ would
            otherwise widen its chroma distribution (noise adds chroma) and the curve would
            desaturate to compensate; pooling 4× divides the noise's variance by 16.
        samples: pixels drawn from each side (seeded) to estimate the quantiles.
        seed: seeds that draw.

    Returns:
        The grading; ``Grading.apply`` maps sRGB to sRGB.
    """
    generator = torch.Generator().manual_seed(seed)
    source_l, source_c = _pixels(sources, pool, samples, generator)
    target_l, target_c = _pixels(targets, pool, samples, generator)
    return Grading(quantile_curve(source_l, target_l), quantile_curve(source_c, target_c))
