"""``unisp process``: RAW frames through a learned ISP into images, on a chosen backend.

The tiling itself is :func:`unisp.models.tiled.run_tiled`; tiles run through a runtime of
:mod:`unisp.export.runtimes` that takes any input shape (:data:`unisp.export.runtimes.ANY_SHAPE`):
PyTorch (``torch``, on any device) or, on the CPU, ONNX Runtime (``onnxruntime``: a temporary
dynamic-shape fp32 ONNX export, checked for parity and deleted afterwards) or unisp's fused C++
kernel (``fused``, ``fused-bf16``). The same tiles and overlap run through each; fp32 outputs are
equal within 1e-5.

:func:`tiled_converter` is the library side of the command: given a loaded model it yields the
``convert(frame, progress)`` that :func:`convert_files` (the file loop ``unisp render`` shares)
calls for each RAW frame it reads.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.export.runtimes import ANY_SHAPE, Runner, build_runner, get_runtime
from unisp.fileio import plan_outputs, prepare_output_dir, write_image
from unisp.models.tiled import DEFAULT_TILE, count_tiles, run_tiled
from unisp.raw.frame import RawFrame
from unisp.raw.summary import FrameFacts, log_summary

log = logging.getLogger(__name__)

#: What ``unisp process --backend`` accepts: the runtimes that take any tile shape.
BACKENDS: tuple[str, ...] = ANY_SHAPE


def runtime_device(backend: str = "torch", device: str = "auto") -> str:
    """The device name the network runs on with ``backend``: ``device`` for a runtime that runs on
    any device (torch), ``"cpu"`` for the others.

    Args:
        backend: one of :data:`BACKENDS`.
        device: ``--device`` (``auto``, ``cpu``, ``cuda[:N]``).

    Raises:
        ConfigError: a runtime that is not one of :data:`BACKENDS`.
        UnispError: a CPU-only runtime with a device other than ``auto`` or ``cpu``.

    Example:
        >>> runtime_device("torch", "cuda:1"), runtime_device("fused", "auto")
        ('cuda:1', 'cpu')
        >>> runtime_device("onnxruntime", "cuda")
        Traceback (most recent call last):
        ...
        unisp.errors.UnispError: --backend onnxruntime runs on the CPU; drop --device cuda
    """
    if backend not in BACKENDS:  # the others are built for one fixed shape, not for tiles
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if get_runtime(backend).any_device:
        return device
    if device not in ("auto", "cpu"):
        raise UnispError(f"--backend {backend} runs on the CPU; drop --device {device}")
    return "cpu"


@contextlib.contextmanager
def open_runner(model: nn.Module, backend: str = "torch", threads: int | None = None) -> Iterator[Runner]:
    """The ``runner`` for :func:`run_tiled` of a ``--backend``, built for ``model``.

    Files a runtime writes (the onnxruntime export) go to a temporary folder deleted afterwards.
    ``fused`` without a C++ compiler runs the PyTorch model (logged once); ``fused-bf16`` has no
    fallback.

    Args:
        model: the generator, on the device it runs on.
        backend: one of :data:`BACKENDS`.
        threads: the runtime's CPU threads (``None``: its default).

    Yields:
        The :class:`unisp.export.runtimes.Runner`.

    Raises:
        ConfigError: a name not in :data:`BACKENDS`.
        RuntimeUnavailable: the runtime cannot run here, or not this model (saying why).
    """
    runtime_device(backend)
    with tempfile.TemporaryDirectory(prefix="unisp-process-") as folder:
        yield build_runner(backend, model, threads=threads, workdir=folder, fallback=True)


@contextlib.contextmanager
def tiled_converter(
    model: nn.Module,
    *,
    tile: int = DEFAULT_TILE,
    depth: int = 8,
    device: str = "auto",
    backend: str = "torch",
    threads: int | None = None,
) -> Iterator[Callable[[RawFrame, Any], np.ndarray]]:
    """What ``unisp process`` does to each RAW frame, for a loaded model.

    The model is moved to its device and the backend built (an export, for onnxruntime) once, on
    entry; at exit one warning counts the frames that lacked the as-shot white balance the model's
    input needs (:func:`unisp.isp.awb.warn_lacking_gains`).

    Args:
        model: the generator (its ``input_wb`` says how tiles are white-balanced).
        tile: tile edge in packed pixels.
        depth: bits per output channel, 8 or 16.
        device: ``auto``, ``cpu`` or ``cuda[:N]``; only ``auto`` or ``cpu`` with a CPU-only backend.
        backend: one of :data:`BACKENDS`.
        threads: the backend's CPU threads (``None``: its default).

    Yields:
        ``convert(frame, progress)``: the frame at full resolution as an ``(H, W, 3)`` integer
        image, rotated per its orientation. ``progress`` (a :func:`unisp.progress.progress_display`,
        or None) gets a task counting the frame's tiles, removed when the frame is done.

    Raises:
        UnispError: a bad backend or device, or a backend that cannot run here (saying why).
    """
    from unisp.device import resolve_device
    from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
    from unisp.isp.orientation import apply_orientation

    dev = resolve_device(runtime_device(backend, device))
    model = model.to(dev)
    lacking_gains: list[bool] = []  # per frame: whether it lacked the as-shot white balance the model's input needs

    with open_runner(model, backend, threads) as runner:

        def convert(frame: RawFrame, progress: Any = None) -> np.ndarray:
            lacking_gains.append(lacks_input_gains(frame, model.input_wb))
            advance = None
            if progress is not None:
                # The frame's tiles: a bar on a terminal, no plain lines (the files' task has them).
                name = frame.path.name if frame.path is not None else "frame"
                task = progress.add_task(f"  {name}", total=count_tiles(model, frame, tile), plain=False)
                advance = lambda n: progress.advance(task, n)  # noqa: E731
            image = run_tiled(model, frame, tile=tile, depth=depth, device=dev, runner=runner.run, progress=advance)
            if progress is not None:
                progress.remove_task(task)
            return apply_orientation(image, frame.orientation, dims=(0, 1))

        try:
            yield convert
        finally:
            warn_lacking_gains(sum(lacking_gains), len(lacking_gains), "files processed")


def convert_files(
    files: Sequence[Path],
    out: Path,
    read: Callable[[Path], RawFrame],
    convert: Callable[[RawFrame, Any], np.ndarray],
    *,
    suffix: str = ".png",
    depth: int = 8,
    progress: Any = None,
) -> tuple[int, list[tuple[Path, str]]]:
    """Read each RAW file, ``convert(frame, progress)`` it to an image and write it to ``out/STEM{suffix}``.

    Every output path is checked before the first write (:func:`unisp.fileio.plan_outputs`: no
    output overwrites an input, no two inputs share an output). A file that fails is listed and the
    run goes on; nothing is written for it. What the files held is logged (one line per folder), and
    an output folder this call created is removed again when nothing was written into it.

    Args:
        files: RAW files.
        out: the output folder (created).
        read: reads one RAW file.
        convert: the frame as an ``(H, W, 3)`` image (``progress`` is passed on to it).
        suffix: the output extension (``.png``, ``.tif``).
        depth: bits per channel written, 8 or 16.
        progress: a :func:`unisp.progress.progress_display` (one task counting the files), or None.

    Returns:
        ``(files written, [(file, one-line message)] for each that failed)``.
    """
    targets = plan_outputs(list(files), out, suffix)
    created = not out.exists()
    prepare_output_dir(out)
    done, failures, read_facts = 0, [], []
    task = progress.add_task("files", total=len(files)) if progress is not None else None
    for path, target in zip(files, targets):
        try:
            frame = read(path)
            read_facts.append(FrameFacts.of(frame))
            write_image(target, convert(frame, progress), depth=depth)
            done += 1
        except UnispError as e:  # a message from deeper down may not say which file it was about
            failures.append((path, str(e) if str(path) in str(e) else f"{path}: {e}"))
        if progress is not None:
            progress.advance(task)
    log_summary(read_facts)
    if created and not done:  # leave no empty folder behind a run that wrote nothing
        with contextlib.suppress(OSError):
            out.rmdir()
    return done, failures
