"""Which files a run or an evaluation uses: RAW files paired with images by stem, and the
training/validation split.

A RAW file and its ground truth share a file stem (``a.dng`` ↔ ``a.png``), whatever the
extensions: the convention of the Zurich RAW-to-RGB and Fujifilm UltraISP datasets, of
``unisp synth`` (``raw/a.dng`` ↔ ``rgb/a.png``) and of ``unisp eval --save``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from unisp.raw.io import find_raw_files


def index_by_stem(paths: Iterable[Path], duplicates: list[str] | None = None) -> dict[str, Path]:
    """``paths`` by file stem; the first file with a stem wins.

    Args:
        paths: files (in the order that decides which of two files with one stem is kept).
        duplicates: when given, one line is appended for each file left out because its stem was taken.

    Returns:
        ``{stem: path}``.

    Example:
        >>> left_out = []
        >>> index_by_stem([Path("a.jpg"), Path("a.png"), Path("b.png")], left_out)
        {'a': PosixPath('a.jpg'), 'b': PosixPath('b.png')}
        >>> left_out
        ['a.png: same stem as a.jpg, left out']
    """
    out: dict[str, Path] = {}
    for path in paths:
        if path.stem not in out:
            out[path.stem] = path
        elif duplicates is not None:
            duplicates.append(f"{path}: same stem as {out[path.stem].name}, left out")
    return out


def pair_by_stem(files: Sequence[Path], candidates: Iterable[Path]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Each of ``files`` with the candidate of the same stem.

    Args:
        files: e.g. RAW files, in the order the pairs are returned.
        candidates: e.g. the ground-truth images of a folder (the first with a stem is taken).

    Returns:
        ``(pairs, unmatched)``: ``(file, candidate)`` for each file that has one, and the files that have none.

    Example:
        >>> pair_by_stem([Path("raw/a.dng"), Path("raw/c.dng")], [Path("rgb/a.png"), Path("rgb/b.png")])
        ([(PosixPath('raw/a.dng'), PosixPath('rgb/a.png'))], [PosixPath('raw/c.dng')])
    """
    by_stem = index_by_stem(candidates)
    pairs = [(f, by_stem[f.stem]) for f in files if f.stem in by_stem]
    return pairs, [f for f in files if f.stem not in by_stem]


def split_files(raw_dir: str | Path, val_dir: str | Path | None, val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Training and validation RAW files: all of ``val_dir``, or a seeded share of ``raw_dir``.

    Args:
        raw_dir: the training RAW folder (``data.raw_dir``).
        val_dir: a separate validation folder (``data.val_dir``); empty or ``None`` to hold out a share of ``raw_dir``.
        val_fraction: the share of ``raw_dir`` held out (``data.val_fraction``), rounded to whole files;
            none is held out when that rounds to 0 or to every file.
        seed: the run's seed (``seed``): the same seed holds out the same files.

    Returns:
        ``(training files, validation files)``, each sorted.
    """
    files = find_raw_files(raw_dir)
    if val_dir:
        return files, find_raw_files(val_dir)
    n_val = int(round(len(files) * val_fraction))
    if n_val == 0 or n_val >= len(files):
        return files, []
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(files[i] for i in order[:n_val])
    return [f for f in files if f not in set(val)], val
