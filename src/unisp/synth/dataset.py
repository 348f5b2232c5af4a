"""Turn a folder of RGB photos into a synthetic RAW dataset (mosaics + sidecars + ground truth).

Layout written under ``out_dir``::

    raw/NAME.png    16-bit one-channel mosaic (sensor counts), with raw/NAME.json, its sidecar
                    (unisp.raw.io format), holding also "sensor_model" and "source"
    rgb/NAME.png    the photo that was unprocessed: the source cropped to even size, 8-bit
    dataset.json    what was made and how (format "unisp-synth")

Each photo's camera and noise come from a generator seeded by ``(seed, index)`` only, so an image's
result does not depend on which others are processed, nor in what order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from unisp.errors import ConfigError, UnispError
from unisp.fileio import list_images, quantize, read_rgb, write_image, write_text
from unisp.raw.bayer import CFA, crop_to_even
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png
from unisp.synth.camera import random_gains
from unisp.synth.unprocess import SensorModel, default_black_level, unprocess

logger = logging.getLogger(__name__)

#: ``dataset.json``'s format name and version.
DATASET_FORMAT = "unisp-synth"
DATASET_VERSION = 1


def image_generator(seed: int, index: int) -> torch.Generator:
    """A generator seeded from ``(seed, index)`` alone (NumPy's SeedSequence mixes the pair).

    Args:
        seed: the dataset seed (≥ 0).
        index: the photo's position in the sorted source list (≥ 0).
    """
    if seed < 0 or index < 0:
        raise ConfigError(f"seed and index must be non-negative, got seed {seed}, index {index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def synthesize_image(
    rgb: torch.Tensor,
    generator: torch.Generator,
    *,
    noise: bool = True,
    bits: int = 10,
    black_level: float | None = None,
    cfa: CFA | str = CFA.RGGB,
    tone_curve: bool = True,
) -> tuple[RawFrame, SensorModel]:
    """Sample a camera from ``generator`` and unprocess one photo with it.

    Args:
        rgb: ``(3, H, W)`` sRGB in [0, 1].
        generator: the seeded source of the camera and, after it, of the noise.
        noise, bits, black_level, cfa, tone_curve: as :meth:`SensorModel.random`.

    Returns:
        ``(frame, model)``.

    Example:
        >>> frame, model = synthesize_image(torch.full((3, 8, 8), 0.5), torch.Generator().manual_seed(0))
        >>> frame.mosaic.shape, frame.mosaic.dtype, frame.white_level, frame.black_level
        ((8, 8), dtype('uint16'), 1023.0, (64.0, 64.0, 64.0, 64.0))
    """
    model = SensorModel.random(
        generator, cfa=cfa, bits=bits, black_level=black_level, noise=noise, tone_curve=tone_curve
    )
    return unprocess(rgb, model, generator), model


def _output_names(paths: list[Path]) -> list[str]:
    """File stems, made unique by appending the extension where two sources share a stem."""
    counts = Counter(p.stem for p in paths)
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in paths]


def synthesize_folder(
    rgb_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    noise: bool = True,
    bits: int = 10,
    black_level: float | None = None,
    cfa: CFA | str = CFA.RGGB,
    tone_curve: bool = True,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
    camera: SensorModel | None = None,
    shot_gains: bool = False,
) -> list[Path]:
    """Unprocess every RGB photo in ``rgb_dir`` into a synthetic RAW dataset under ``out_dir``.

    Photos that cannot be read are skipped with a logged error and listed under ``"failed"`` in
    ``dataset.json``. Every file is written atomically; existing files of the same name are replaced.

    Args:
        rgb_dir: folder of photos (see :func:`unisp.fileio.list_images`), processed in sorted order.
        out_dir: output folder (created).
        seed: dataset seed; photo ``i`` uses :func:`image_generator` ``(seed, i)``.
        noise: add Brooks et al.'s shot and read noise.
        bits: sensor bit depth (8 to 16).
        black_level: sensor black level; default :func:`~unisp.synth.unprocess.default_black_level` (64 at 10 bits).
        cfa: Bayer pattern.
        tone_curve: invert the smoothstep tone curve (set False for photos without one).
        limit: process only the first ``limit`` photos.
        progress: called with 1 after each photo (for a progress bar).
        camera: one fixed camera for every photo (its noise still drawn per photo from
            :func:`image_generator`), instead of a random camera per photo; it then sets the CFA,
            bit depth, black level, tone curve and noise, and ``cfa``/``bits``/``black_level``/
            ``tone_curve``/``noise`` are ignored.
        shot_gains: with ``camera``, each photo draws its own exposure and white-balance gains
            (:func:`unisp.synth.camera.random_gains`, Brooks et al.'s ranges), recorded in its
            metadata, as a phone's auto-exposure and auto white balance set them per shot; the
            colour matrix, noise levels and sensor stay the camera's.

    Returns:
        Paths of the written mosaics ``out_dir/raw/NAME.png``.

    Raises:
        UnispError: no photos in ``rgb_dir``, or none could be processed.
        ConfigError: invalid ``bits``, ``black_level``, ``cfa`` or ``limit``.
    """
    rgb_dir, out_dir = Path(rgb_dir), Path(out_dir)
    if camera is not None:
        cfa, bits, black_level, tone_curve, noise = (
            camera.cfa, camera.bits, camera.black_level, camera.tone_curve, camera.has_noise
        )
    # Validate the settings before any work (the model normalises the CFA name and black level).
    settings = SensorModel(
        cfa=cfa, bits=bits, black_level=default_black_level(bits) if black_level is None else black_level
    )
    cfa, black = settings.cfa, settings.black_level
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    sources = list_images(rgb_dir)[:limit]
    names = _output_names(sources)

    written: list[Path] = []
    entries: list[dict[str, str]] = []
    failed: list[dict[str, str]] = []
    for index, (source, name) in enumerate(zip(sources, names)):
        try:
            rgb = read_rgb(source)
            if rgb.shape[-2] < 2 or rgb.shape[-1] < 2:
                raise UnispError(f"{source}: image of {rgb.shape[-1]}×{rgb.shape[-2]} is smaller than 2×2")
        except UnispError as e:
            logger.error("skipping %s", e)
            failed.append({"source": source.name, "error": str(e)})
        else:
            # Unprocess the 8-bit ground truth itself, so rgb/NAME.png is exactly the photo behind the RAW.
            truth = quantize(crop_to_even(rgb), depth=8)
            rgb8 = torch.from_numpy(truth.astype(np.float32) / 255.0).permute(2, 0, 1)
            if camera is None:
                frame, model = synthesize_image(
                    rgb8, image_generator(seed, index),
                    noise=noise, bits=bits, black_level=black, cfa=cfa, tone_curve=tone_curve,
                )
            else:
                generator = image_generator(seed, index)
                model = camera
                if shot_gains:
                    gains = random_gains(generator)
                    model = dataclasses.replace(camera, rgb_gain=gains.rgb_gain, red_gain=gains.red_gain, blue_gain=gains.blue_gain)
                frame = unprocess(rgb8, model, generator)
            raw_path = out_dir / "raw" / f"{name}.png"
            write_mosaic_png(raw_path, frame, extra={"sensor_model": model.to_dict(), "source": source.name})
            write_image(out_dir / "rgb" / f"{name}.png", truth)
            written.append(raw_path)
            entries.append({"source": source.name, "raw": f"raw/{name}.png", "rgb": f"rgb/{name}.png"})
            logger.debug("%s → %s", source, raw_path)
        if progress is not None:
            progress(1)

    if not written:
        raise UnispError(f"{rgb_dir}: none of the {len(sources)} images could be read")
    record = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "seed": seed,
        "noise": noise,
        "bits": bits,
        "black_level": black,
        "cfa": cfa.value,
        "tone_curve": tone_curve,
        "count": len(written),
        "source": str(rgb_dir.resolve()),
        "files": entries,
        "failed": failed,
    }
    write_text(out_dir / "dataset.json", json.dumps(record, indent=2) + "\n")
    # DEBUG: `unisp synth` prints its own result line, and the demo shows this as a progress stage.
    logger.debug("wrote %d synthetic RAW frames to %s (%d skipped)", len(written), out_dir, len(failed))
    return written
