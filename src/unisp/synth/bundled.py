"""Colour photographs that ship inside scikit-image's wheel, for a demo that needs no download.

scikit-image fetches some of its sample images with ``pooch`` on first use (e.g. ``skin``, ``lily``,
``eagle``); those are excluded. The list below holds only colour photographs whose files are in the
installed package itself, checked with the network disabled and an empty download cache
(scikit-image 0.26). Left out though available offline: ``cat`` (the same photo as ``chelsea``),
``colorwheel`` and ``logo`` (graphics), ``hubble_deep_field`` (telescope), ``retina`` and
``immunohistochemistry`` (medical/microscopy), and the grayscale images.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from unisp.errors import UnispError
from unisp.fileio import write_image
from unisp.raw.bayer import crop_to_even

logger = logging.getLogger(__name__)

#: Our name → the ``skimage.data`` function that loads the photo (all shipped in the wheel).
BUNDLED_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut",  # 512×512, Eileen Collins; NASA, public domain
    "chelsea": "chelsea",  # 451×300, a cat; CC0, Stéfan van der Walt
    "coffee": "coffee",  # 600×400, a coffee cup; CC0, Rachel Michetti
    "rocket": "rocket",  # 640×427, DSCOVR launch on a Falcon 9; SpaceX, public domain
    "motorcycle": "stereo_motorcycle",  # 741×500, left view of a Middlebury 2014 stereo pair
}


def _load(function_name: str) -> np.ndarray:
    import skimage.data  # imported here: scikit-image is slow to import and only the demo needs it

    image = getattr(skimage.data, function_name)()
    if isinstance(image, tuple):  # stereo_motorcycle returns (left, right, disparity)
        image = image[0]
    return np.asarray(image)


def bundled_photos() -> dict[str, torch.Tensor]:
    """The photos of :data:`BUNDLED_PHOTOS`, loaded from the installed scikit-image.

    Returns:
        name → ``(3, H, W)`` float32 sRGB tensor in [0, 1] (8-bit values / 255), as
        :func:`unisp.fileio.read_rgb` returns; sizes as shipped (not cropped).

    Example:
        >>> sorted(BUNDLED_PHOTOS)  # the keys it returns (loading all five takes 0.4 s)
        ['astronaut', 'chelsea', 'coffee', 'motorcycle', 'rocket']
    """
    photos = {}
    for name, function_name in BUNDLED_PHOTOS.items():
        try:
            pixels = _load(function_name)
        except Exception as e:  # noqa: BLE001 - a broken or changed scikit-image install
            raise UnispError(f"scikit-image sample {function_name!r} cannot be loaded ({e})") from None
        if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise UnispError(f"scikit-image sample {function_name!r} is not an 8-bit RGB photo")
        photos[name] = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return photos


def export_bundled(out_dir: str | os.PathLike) -> list[Path]:
    """Write every bundled photo as ``out_dir/NAME.png`` (8-bit, cropped to even size), atomically.

    Returns:
        The written paths, in :data:`BUNDLED_PHOTOS` order.
    """
    out_dir = Path(out_dir)
    paths = []
    for name, photo in bundled_photos().items():
        path = out_dir / f"{name}.png"
        write_image(path, crop_to_even(photo), depth=8)
        logger.info("wrote %s", path)
        paths.append(path)
    return paths
