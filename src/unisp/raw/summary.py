"""What a folder of RAW files holds, in one line, and which of its files differ from the rest.

:func:`~unisp.raw.io.read_raw` logs each file's calibration at DEBUG (``unisp -v``). Where a
folder is read (a folder run, a training set, a validation split), :func:`log_summary` logs one
INFO line per folder instead: file count, image size, CFA, black and white levels, white balance
and colour matrix, each tagged with where it came from (``[metadata]``, ``[preset]``,
``[camera]``, ``[user]``, ``[assumed]``; one tag closes each run of values from one source)::

    data/train/raw: 9 RAW files, 250×250 RGGB, black 64, white 1023, as-shot white balance, colour matrix [metadata]

and one more line for each file whose calibration differs from that of most of its folder::

    data/train/raw/dark.png: black 60 [user], where 8 other files have black 64 [metadata]

The calibration compared is the CFA, the levels, whether a white balance and a colour matrix are
known, and every value's source; image sizes and white-balance gains (which change from shot to
shot) are not compared. Example:

    >>> from unisp.raw.frame import RawFrame, Source
    >>> import numpy as np
    >>> frame = RawFrame(np.zeros((4, 6), np.uint16), "RGGB", (64,) * 4, 1023, path=Path("raw/a.png"),
    ...                  sources={"cfa": Source.METADATA, "black_level": Source.METADATA, "white_level": Source.METADATA})
    >>> summary_lines([FrameFacts.of(frame)] * 2)
    ['raw: 2 RAW files, 6×4 RGGB, black 64, white 1023 [metadata], white balance unknown, colour matrix identity [assumed]']
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unisp.raw.bayer import CANONICAL_CHANNELS
from unisp.raw.frame import RawFrame, Source

logger = logging.getLogger(__name__)

#: Lines naming files that differ from their folder, at most, before the rest are only counted: a
#: folder of mixed cameras should not print a line per file at the default level (``-v`` does).
MAX_ODD_LINES = 10

#: ``(file, calibration)`` of every frame described in the current :func:`each_summary_once` block
#: (None outside one).
_described: ContextVar[set[tuple] | None] = ContextVar("unisp_described_frames", default=None)


@dataclass(frozen=True)
class FrameFacts:
    """What a summary says about one frame, without its pixels (a folder run keeps one per file).

    Attributes:
        path: the file, if any.
        size: ``(width, height)`` in pixels.
        calibration: ``(text, source)`` of the CFA, black level, white level, white balance and
            colour matrix, in that order (e.g. ``("black 64", "metadata")``).
    """

    path: Path | None
    size: tuple[int, int]
    calibration: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, frame: RawFrame) -> FrameFacts:
        """The facts of ``frame``."""

        def source(key: str) -> str:
            return frame.sources.get(key, Source.ASSUMED).value

        black = frame.black_level
        black_text = f"black {black[0]:g}" if len(set(black)) == 1 else "black (" + ", ".join(f"{b:g}" for b in black) + ")"
        return cls(
            frame.path,
            (frame.width, frame.height),
            (
                (frame.cfa.value, source("cfa")),
                (black_text, source("black_level")),
                (f"white {frame.white_level:g}", source("white_level")),
                ("as-shot white balance" if frame.wb_gains is not None else "white balance unknown", source("wb_gains")),
                ("colour matrix" if frame.cam_to_srgb is not None else "colour matrix identity", source("cam_to_srgb")),
            ),
        )


@dataclass(frozen=True)
class PixelStats:
    """What a frame's samples say about its exposure (``unisp inspect`` prints them).

    Attributes:
        plane_means: mean value of each Bayer plane in sensor units (black level included), keyed
            R, Gr, Gb, B in that order.
        clipped_percent: percentage of the mosaic's samples at or above the white level.
    """

    plane_means: dict[str, float]
    clipped_percent: float

    @classmethod
    def of(cls, frame: RawFrame) -> PixelStats:
        """The statistics of ``frame``'s mosaic.

        Example:
            >>> frame = RawFrame(np.array([[1023, 10], [20, 30]], np.uint16), "RGGB", (0,) * 4, 1023)
            >>> PixelStats.of(frame)
            PixelStats(plane_means={'R': 1023.0, 'Gr': 10.0, 'Gb': 20.0, 'B': 30.0}, clipped_percent=25.0)
        """
        means = frame.packed().reshape(4, -1).mean(1)
        clipped = float(np.mean(frame.mosaic >= frame.white_level)) * 100
        return cls(dict(zip(CANONICAL_CHANNELS, (float(m) for m in means))), clipped)


def tagged(items: Sequence[tuple[str, str]]) -> str:
    """``(text, source)`` pairs as one phrase, each run of values from one source tagged once.

    Example:
        >>> tagged([("RGGB", "preset"), ("black 0", "preset"), ("white 4095", "user")])
        'RGGB, black 0 [preset], white 4095 [user]'
    """
    parts = []
    for i, (text, source) in enumerate(items):
        closes_run = i + 1 == len(items) or items[i + 1][1] != source
        parts.append(f"{text} [{source}]" if closes_run else text)
    return ", ".join(parts)


def summary_lines(facts: Sequence[FrameFacts], total: int | None = None) -> list[str]:
    """The summary of frames read from one folder: its line, then one per file that differs.

    Args:
        facts: the frames' facts (at least one), all from one folder.
        total: how many files the folder holds, when only ``facts`` of them were read.

    Returns:
        ``["FOLDER: N RAW files, SIZE CFA, …", "FILE: what differs, where M other files have …", …]``;
        for a single file, one line naming the file.
    """
    majority, count = _majority(facts)
    if len(facts) == 1 and total is None:
        where, files = _name(facts[0].path), ""
    else:
        read = f" ({len(facts)} read)" if total is not None and total > len(facts) else ""
        number = total if total is not None else len(facts)
        where, files = _folder(facts), f"{number} RAW file{'s' if number != 1 else ''}{read}, "
    lines = [f"{where}: {files}{_sizes(facts)}{tagged(majority)}"]
    odd = [f for f in facts if f.calibration != majority]
    lines += [_difference(f, majority, count) for f in odd[:MAX_ODD_LINES]]
    if len(odd) > MAX_ODD_LINES:
        lines.append(f"{where}: {len(odd) - MAX_ODD_LINES} more files differ from the others (unisp -v describes every file)")
    return lines


def log_summary(frames: Iterable[RawFrame | FrameFacts], label: str = "", total: int | None = None) -> None:
    """Log the :func:`summary_lines` of each folder among ``frames`` at INFO, each line after ``label: ``.

    Inside :func:`each_summary_once`, a folder whose files were all described already, with the
    same calibration, is not described again.

    Args:
        frames: frames (or their :class:`FrameFacts`) in any order; none logs nothing.
        label: what the files are for (``"training"``, ``"validation"``), or ``""``.
        total: with frames from one folder, how many files it holds when only some were read.
    """
    by_folder: dict[Path | None, list[FrameFacts]] = {}
    for frame in frames:
        facts = frame if isinstance(frame, FrameFacts) else FrameFacts.of(frame)
        by_folder.setdefault(None if facts.path is None else facts.path.parent, []).append(facts)
    prefix = f"{label}: " if label else ""
    described = _described.get()
    for facts in by_folder.values():
        frames_read = {(f.path, f.calibration) for f in facts}
        if described is not None:
            if frames_read <= described:
                continue
            described |= frames_read
        for line in summary_lines(facts, total):
            logger.info("%s%s", prefix, line)


@contextlib.contextmanager
def each_summary_once() -> Iterator[None]:
    """Inside the block (and blocks nested in it), :func:`log_summary` describes each file once: a
    command that reads files several times (``unisp demo`` trains twice on one folder, then scores
    the held-out one again; ``unisp train`` shows validation files in its report) says what they
    hold once, while files it had not described yet (a validation split of the training folder)
    get their line."""
    if _described.get() is not None:
        yield
        return
    token = _described.set(set())
    try:
        yield
    finally:
        _described.reset(token)


def _difference(facts: FrameFacts, majority: tuple[tuple[str, str], ...], count: int) -> str:
    """``"FILE: black 60 [user], where 8 other files have black 64 [metadata]"``: the values of
    ``facts`` that differ from the ``majority`` calibration, which ``count`` other files have."""
    differs = [i for i, item in enumerate(facts.calibration) if item != majority[i]]
    others = f"{count} other files have" if count != 1 else "1 other file has"
    its, usual = tagged([facts.calibration[i] for i in differs]), tagged([majority[i] for i in differs])
    return f"{_name(facts.path)}: {its}, where {others} {usual}"


def _majority(facts: Sequence[FrameFacts]) -> tuple[tuple[tuple[str, str], ...], int]:
    """The calibration most of the frames have (the first one seen among equals) and how many have it."""
    return Counter(f.calibration for f in facts).most_common(1)[0]


def _name(path: Path | None) -> str:
    """A frame's file, or ``"frame"`` for one read from no file."""
    return "frame" if path is None else str(path)


def _folder(facts: Sequence[FrameFacts]) -> str:
    """The folder the frames came from (``"frames"`` for frames read from no file)."""
    path = facts[0].path
    return "frames" if path is None else str(path.parent)


def _sizes(facts: Sequence[FrameFacts]) -> str:
    """``"250×250 "`` when every frame has one size, else ``"sizes 248×248 to 6000×4000, "`` (by area)."""
    sizes = sorted({f.size for f in facts}, key=lambda s: (s[0] * s[1], s))
    if len(sizes) == 1:
        return f"{sizes[0][0]}×{sizes[0][1]} "
    return f"sizes {sizes[0][0]}×{sizes[0][1]} to {sizes[-1][0]}×{sizes[-1][1]}, "
