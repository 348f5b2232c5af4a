"""Training patches from RAW collections: Bayer-safe random crops and flips.

A crop that starts at an even row and column keeps the mosaic's CFA phase. A flip does not: a
horizontally flipped RGGB mosaic reads GRBG. Following Liu et al. ("Learning raw image denoising
with Bayer pattern unification and Bayer preserving augmentation", CVPRW 2019), we crop a region
one pixel larger on each side, flip it, and drop the outermost row/column on each side: the
remaining patch starts on the same CFA phase as the original.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from unisp.errors import UnispError
from unisp.fileio import read_rgb
from unisp.isp.awb import balance_input, input_gains
from unisp.isp.blc import normalize
from unisp.isp.pipeline import TRAINING_TARGET, ISPConfig, render
from unisp.raw.bayer import pack
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)


def bayer_safe_crop(
    image: torch.Tensor | np.ndarray, top: int, left: int, size: int, hflip: bool, vflip: bool
) -> torch.Tensor | np.ndarray:
    """Crop ``size × size`` at even ``(top, left)`` from ``(..., H, W)``, optionally flipped, keeping the CFA phase.

    The region ``[top, top + size + 2) × [left, left + size + 2)`` must lie inside the image. Without
    flips the patch is its top-left ``size × size``; with a flip along an axis, the region is
    flipped and its first and last rows (or columns) are dropped. Apply the same call to a mosaic
    and to an RGB image aligned with it and they stay aligned.
    """
    if top % 2 or left % 2 or size % 2:
        raise UnispError(f"Bayer-safe crops need even offsets and size, got top={top} left={left} size={size}")
    region = image[..., top : top + size + 2, left : left + size + 2]
    flip = torch.flip if isinstance(image, torch.Tensor) else (lambda a, dims: np.flip(a, axis=dims))
    rows = slice(1, size + 1) if vflip else slice(0, size)
    cols = slice(1, size + 1) if hflip else slice(0, size)
    if vflip:
        region = flip(region, dims=(-2,))
    if hflip:
        region = flip(region, dims=(-1,))
    return region[..., rows, cols]


class RawPatches(Dataset):
    """Random patches of a RAW collection with their training target.

    Each item is a dict with ``raw``: ``(4, size/2, size/2)`` canonical planes normalised to [0, 1],
    ``target``: ``(3, size, size)`` sRGB in [0, 1], the classical render X̂ of the same patch (the
    stage-1 target and the paper's content reference; no RGB needed) and, when ``rgb_files`` are
    given, ``aligned``: the aligned crop of the paired RGB image.

    Items are random but reproducible: item ``i`` of epoch ``e`` is drawn from a generator seeded
    with ``(seed, e, i)``, so resuming or changing the number of workers does not change the data.

    Args:
        frames: a callable returning the i-th :class:`RawFrame` (e.g. a cached reader), and its length.
        count: how many RAW files there are.
        size: patch edge in mosaic pixels (even).
        samples: items per epoch.
        rgb_files: paired targets, aligned pixel for pixel with the mosaics, or None.
        isp: the classical render X̂.
        flips: random Bayer-safe horizontal and vertical flips.
        seed: base seed.
        input_wb: what ``raw`` is white-balanced with (:func:`unisp.isp.awb.input_gains`); the
            target is rendered from the unbalanced planes, as ever.
    """

    def __init__(
        self,
        frames: Callable[[int], RawFrame],
        count: int,
        size: int,
        samples: int,
        *,
        rgb_files: Sequence[Path] | None = None,
        isp: ISPConfig = TRAINING_TARGET,
        flips: bool = True,
        seed: int = 0,
        input_wb: str = "none",
    ) -> None:
        if size < 2 or size % 2:
            raise UnispError(f"patch size must be a positive even number, got {size}")
        if count < 1:
            raise UnispError("no RAW files to draw patches from")
        if rgb_files is not None and len(rgb_files) != count:
            raise UnispError(f"{len(rgb_files)} RGB targets for {count} RAW files")
        self.frames, self.count, self.size, self.samples = frames, count, size, samples
        self.rgb_files, self.isp, self.flips, self.seed = rgb_files, isp, flips, seed
        self.input_wb = input_wb
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of patches for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples

    def check(self, files: int) -> list[RawFrame]:
        """Read up to ``files`` RAW files (and their aligned targets), spread over the set, and check
        that a patch fits each: the errors a training step would raise, raised before training.

        Returns:
            The frames read (to say what the set holds).
        """
        frames = []
        for i in spread_indices(self.count, files):
            frames.append(self._frame(i))
            if self.rgb_files is not None:
                check_alignment(self.rgb_files[i], read_rgb(self.rgb_files[i]), frames[-1])
        return frames

    def _frame(self, index: int) -> RawFrame:
        """The ``index``-th frame; :class:`UnispError` naming it when it is too small for a patch."""
        frame = self.frames(index)
        need = self.size + 2
        if frame.height < need or frame.width < need:
            raise UnispError(f"{frame.path}: {frame.width}×{frame.height} is smaller than a {need}-pixel patch region")
        return frame

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
        i = int(torch.randint(self.count, (1,), generator=g))
        frame = self._frame(i)
        need = self.size + 2
        top = 2 * int(torch.randint((frame.height - need) // 2 + 1, (1,), generator=g))
        left = 2 * int(torch.randint((frame.width - need) // 2 + 1, (1,), generator=g))
        hflip, vflip = (bool(b) for b in torch.rand(2, generator=g) < 0.5) if self.flips else (False, False)
        mosaic = bayer_safe_crop(frame.mosaic, top, left, self.size, hflip, vflip)
        planes = torch.from_numpy(pack(np.ascontiguousarray(mosaic), frame.cfa).astype(np.float32))
        planes = normalize(planes[None], frame.black_level, frame.white_level)
        gains = None if frame.wb_gains is None else torch.tensor(frame.wb_gains)
        matrix = None if frame.cam_to_srgb is None else torch.from_numpy(frame.cam_to_srgb).float()
        raw = balance_input(planes[0], input_gains(frame, self.input_wb))
        item = {"raw": raw, "target": render(planes, frame.cfa, wb_gains=gains, cam_to_srgb=matrix, config=self.isp)[0]}
        if self.rgb_files is not None:
            rgb = check_alignment(self.rgb_files[i], read_rgb(self.rgb_files[i]), frame)
            item["aligned"] = bayer_safe_crop(rgb, top, left, self.size, hflip, vflip).contiguous()
        return item


class EpochItems(Dataset):
    """A dataset with ``set_epoch`` (:class:`RawPatches`, :class:`~unisp.data.unpaired.UnpairedPatches`)
    indexed by ``(epoch, index)`` pairs.

    Each item sets its epoch before it is drawn, in whichever process draws it: a data loader's
    worker processes hold copies of the dataset (kept for the whole run when persistent), which a
    ``set_epoch`` in the training process would not reach.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def check_alignment(path: Path, rgb: torch.Tensor, frame: RawFrame) -> torch.Tensor:
    """``rgb`` (read from ``path``) when it has the size of its RAW ``frame``; else :class:`UnispError` naming it."""
    if rgb.shape[-2:] != (frame.height, frame.width):
        raise UnispError(f"{path}: {rgb.shape[-1]}×{rgb.shape[-2]} does not match its RAW {frame.width}×{frame.height}")
    return rgb


def spread_indices(count: int, most: int) -> list[int]:
    """Up to ``most`` of ``range(count)``, spread evenly from the first to the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(most - 1, 1)) for i in range(most)})


class FrameCache:
    """Read RAW files on demand through ``read``, keeping up to ``capacity`` frames in memory."""

    def __init__(self, files: Sequence[Path], read: Callable[[Path], RawFrame], capacity: int = 256) -> None:
        self.files, self.read, self.capacity = list(files), read, capacity
        self._frames: dict[int, RawFrame] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __call__(self, index: int) -> RawFrame:
        frame = self._frames.get(index)
        if frame is None:
            frame = self.read(self.files[index])
            if len(self._frames) >= self.capacity:
                self._frames.pop(next(iter(self._frames)))
            self._frames[index] = frame
        return frame
