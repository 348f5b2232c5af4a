"""Unpaired sampling: each RAW patch is matched with an RGB patch drawn independently.

The model is CycleGAN's unaligned dataset (a random B for every A): the RAW side and the RGB side
may come from different folders, cameras and scenes. Both sides are random but reproducible:
item ``i`` of epoch ``e`` uses generators seeded with ``(seed, e, i)`` (see :class:`RawPatches`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from unisp.data.patches import RawPatches, spread_indices
from unisp.errors import UnispError
from unisp.fileio import read_rgb
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: Salt that makes the RGB side's random stream independent of the RAW side's.
_RGB_STREAM = 0x5247_4221
#: A channel whose mean absolute difference between neighbouring pixels is this many times its
#: difference between pixels two apart, along both axes, alternates with a period of 2 pixels:
#: a Bayer pattern. Measured: the 24 Kodak photos 0.57–0.69 (neighbours are closer than pixels
#: two apart), white noise 1.0, RAW mosaics 3.9–7.6 (synthetic ones and the bundled OpenISP frame,
#: gray), 65 (the OpenISP mosaic with each sample in its own colour channel).
MOSAIC_RATIO = 2.0
#: Edge of the centre crop the pattern is measured on: the pattern is everywhere in a mosaic, and
#: a crop keeps the check at milliseconds for a 24-megapixel photo.
MOSAIC_CHECK_CROP = 512


def period2_ratio(image: torch.Tensor) -> float:
    """How strongly a ``(C, H, W)`` image alternates every other pixel: the largest over channels of
    min(horizontal, vertical) mean |x[i] − x[i+1]| / mean |x[i] − x[i+2]| (see :data:`MOSAIC_RATIO`)."""
    top, left = max(0, (image.shape[-2] - MOSAIC_CHECK_CROP) // 2), max(0, (image.shape[-1] - MOSAIC_CHECK_CROP) // 2)
    crop = image[:, top : top + MOSAIC_CHECK_CROP, left : left + MOSAIC_CHECK_CROP].double()
    ratios = []
    for dim in (-1, -2):
        near = (crop.narrow(dim, 1, crop.shape[dim] - 1) - crop.narrow(dim, 0, crop.shape[dim] - 1)).abs().flatten(1).mean(1)
        far = (crop.narrow(dim, 2, crop.shape[dim] - 2) - crop.narrow(dim, 0, crop.shape[dim] - 2)).abs().flatten(1).mean(1)
        ratios.append(near / far.clamp_min(1e-12))
    return float(torch.minimum(*ratios).max())


def mosaic_signs(image: torch.Tensor) -> str | None:
    """Why an RGB image looks like a RAW mosaic: ``"single-channel"`` (three equal channels, as
    :func:`unisp.fileio.read_rgb` gives a one-channel file), ``"with a 2-pixel Bayer pattern"``, or None."""
    if torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]):
        return "single-channel"
    if period2_ratio(image) > MOSAIC_RATIO:
        return "with a 2-pixel Bayer pattern"
    return None


class RGBPatches:
    """Random ``size × size`` crops (with random flips) of RGB photos, cached in memory.

    Args:
        files: the photos (any format :func:`unisp.fileio.read_rgb` reads).
        size: patch edge in pixels.
        flips: random horizontal and vertical flips.
        capacity: photos kept decoded in memory.
    """

    def __init__(self, files: Sequence[Path], size: int, flips: bool = True, capacity: int = 512) -> None:
        if not files:
            raise UnispError("no RGB photos to draw patches from")
        self.files, self.size, self.flips, self.capacity = list(files), size, flips, capacity
        self._cache: dict[int, torch.Tensor] = {}

    def image(self, index: int) -> torch.Tensor:
        """The ``index``-th photo, decoded once and kept (up to ``capacity``)."""
        image = self._cache.get(index)
        if image is None:
            image = self._read(index)
            if len(self._cache) >= self.capacity:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = image
        return image

    def _read(self, index: int) -> torch.Tensor:
        """The ``index``-th photo; :class:`UnispError` naming it when it is smaller than a patch."""
        image = read_rgb(self.files[index])
        if min(image.shape[-2:]) < self.size:
            raise UnispError(f"{self.files[index]}: {image.shape[-1]}×{image.shape[-2]} is smaller than a {self.size}-pixel patch")
        return image

    def check(self, files: int) -> None:
        """Read up to ``files`` photos spread over the set (each must hold a patch) and warn when
        they look like RAW mosaics rather than rendered photos (:func:`mosaic_signs`). The photos
        are not kept: with data-loader workers, the training process never needs them."""
        looked = spread_indices(len(self.files), files)
        signs = [sign for sign in (mosaic_signs(self._read(i)) for i in looked) if sign]
        if signs:
            kinds = ", ".join(f"{signs.count(kind)} {kind}" for kind in dict.fromkeys(signs))
            log.warning(
                "data.rgb_dir %s: %d of the %d photos looked at look like RAW mosaics, not rendered RGB photos "
                "(%s); the RGB side should hold finished photos", self.files[0].parent, len(signs), len(looked), kinds,
            )

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One random ``(3, size, size)`` patch."""
        image = self.image(int(torch.randint(len(self.files), (1,), generator=generator)))
        h, w = image.shape[-2:]
        top = int(torch.randint(h - self.size + 1, (1,), generator=generator))
        left = int(torch.randint(w - self.size + 1, (1,), generator=generator))
        patch = image[:, top : top + self.size, left : left + self.size]
        if self.flips:
            hflip, vflip = (bool(b) for b in torch.rand(2, generator=generator) < 0.5)
            dims = [d for d, flip in ((-1, hflip), (-2, vflip)) if flip]
            if dims:
                patch = torch.flip(patch, dims)
        return patch.contiguous()


class UnpairedPatches(Dataset):
    """RAW patches (with their classical render, ``target``) and unrelated RGB patches (``real``)."""

    def __init__(self, raw: RawPatches, rgb: RGBPatches) -> None:
        if rgb.size != raw.size:
            raise UnispError(f"RGB patches ({rgb.size}) must match the RAW patches' output size ({raw.size})")
        self.raw, self.rgb = raw, rgb

    def set_epoch(self, epoch: int) -> None:
        self.raw.set_epoch(epoch)

    def check(self, files: int) -> list[RawFrame]:
        """Check both sides before training (:meth:`RawPatches.check`, :meth:`RGBPatches.check`);
        returns the RAW frames read."""
        frames = self.raw.check(files)
        self.rgb.check(files)
        return frames

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.raw[index]
        key = hash((self.raw.seed, self.raw.epoch, index, _RGB_STREAM)) & 0x7FFF_FFFF_FFFF_FFFF
        item["real"] = self.rgb.draw(torch.Generator().manual_seed(key))
        return item
