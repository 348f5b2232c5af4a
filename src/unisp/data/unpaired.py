"""Unpaired sampling: each RAW patch is matched with an RGB patch drawn independently.

The model is CycleGAN's unaligned dataset (a random B for every A): the RAW side and the RGB side
may come from different folders, cameras and scenes. Both sides are random but reproducible:
item ``i`` of epoch ``e`` uses generators seeded with ``(seed, e, i)`` (see :class:`RawPatches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from unisp.data.patches import RawPatches
from unisp.errors import UnispError
from unisp.fileio import read_rgb

#: Salt that makes the RGB side's random stream independent of the RAW side's.
_RGB_STREAM = 0x5247_4221


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
        image = self._cache.get(index)
        if image is None:
            image = read_rgb(self.files[index])
            if min(image.shape[-2:]) < self.size:
                raise UnispError(
                    f"{self.files[index]}: {image.shape[-1]}×{image.shape[-2]} is smaller than a {self.size}-pixel patch"
                )
            if len(self._cache) >= self.capacity:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = image
        return image

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

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.raw[index]
        key = hash((self.raw.seed, self.raw.epoch, index, _RGB_STREAM)) & 0x7FFF_FFFF_FFFF_FFFF
        item["real"] = self.rgb.draw(torch.Generator().manual_seed(key))
        return item
