"""Where a dataset folder keeps its RAW inputs and their ground truth, for ``unisp eval --data``."""

from __future__ import annotations

from pathlib import Path

from unisp.errors import UnispError

#: (RAW sub-folder, ground-truth sub-folder) of the layouts unisp knows:
#: unisp synth; Zurich RAW-to-RGB (Huawei P20 RAW, Canon 5D Mark IV photos); Fujifilm UltraISP.
DATASET_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("raw", "rgb"),
    ("huawei_raw", "canon"),
    ("mediatek_raw", "fujifilm"),
)


def raw_and_truth_dirs(data: str | Path, gt: str | Path | None = None) -> tuple[Path, Path]:
    """``(raw_dir, gt_dir)`` of a dataset folder; ``gt`` overrides the ground-truth folder.

    ``data`` may be the dataset root (holding one of :data:`DATASET_LAYOUTS`) or, with ``gt``
    given, the RAW folder itself.
    """
    data = Path(data)
    if not data.is_dir():
        raise UnispError(f"{data}: not a folder")
    for raw_name, gt_name in DATASET_LAYOUTS:
        if (data / raw_name).is_dir() and (gt is not None or (data / gt_name).is_dir()):
            return data / raw_name, Path(gt) if gt is not None else data / gt_name
    if gt is not None:
        return data, Path(gt)
    known = ", ".join(f"{r}/ + {g}/" for r, g in DATASET_LAYOUTS)
    raise UnispError(f"{data}: no RAW/ground-truth sub-folders ({known}); pass --gt DIR")
