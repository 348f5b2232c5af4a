"""Full-reference evaluation of image pairs: per-image scores, means, failures and the protocol.

:func:`evaluate_images` is the core (pairs of tensors in, :class:`EvalResult` out); it takes
iterables, so a caller that renders images one at a time (``unisp eval --model``) never holds a
whole folder in memory. :func:`compare_folders` pairs two folders' images by file stem and feeds
them to the same core. A bad pair (missing partner, unreadable file, size mismatch, image too
small for a metric) becomes one failure line and the run goes on.

The protocol is written out in ``docs/EVAL.md``; :attr:`EvalResult.protocol` repeats it in one
line, plus notes on anything that deviated from it in this run (LPIPS left out, MS-SSIM on fewer
scales).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from unisp.data.files import index_by_stem, pair_by_stem
from unisp.device import resolve_device
from unisp.errors import UnispError
from unisp import metrics as M
from unisp.eval.datasets import raw_and_truth_dirs
from unisp.fileio import list_images, plan_outputs, read_rgb, same_file, write_image, write_text
from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
from unisp.isp.lab import D65_WHITE_XYZ
from unisp.models.tiled import run_tiled
from unisp.raw.frame import RawFrame
from unisp.raw.io import find_raw_files
from unisp.raw.summary import FrameFacts, log_summary

log = logging.getLogger(__name__)

#: Every metric this module knows, in report order.
ALL_METRICS = ("psnr", "ssim", "ms_ssim", "delta_e2000", "lpips_alex")
#: What ``unisp eval`` computes unless told otherwise (LPIPS drops out by itself without weights).
DEFAULT_METRICS = ALL_METRICS
#: Direction of each metric, for the table header.
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "delta_e2000": False, "lpips_alex": False}
#: Column titles and number formats of :func:`format_table`.
LABELS = {"psnr": "PSNR dB", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "delta_e2000": "ΔE2000", "lpips_alex": "LPIPS"}
FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "ms_ssim": "{:.4f}", "delta_e2000": "{:.3f}", "lpips_alex": "{:.4f}"}

#: ``progress(done, total)`` is called after each pair.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageScores:
    """One evaluated image pair: its name and one value per metric."""

    name: str
    scores: dict[str, float]


@dataclass
class EvalResult:
    """Per-image scores, their means, the protocol they were measured under and the failures.

    Attributes:
        metrics: metrics actually computed, in report order (LPIPS is absent when it was left out).
        rows: one :class:`ImageScores` per evaluated pair, in input order.
        failures: one line per pair that could not be evaluated (it is in no row and no mean).
        notes: deviations from the standard protocol in this run (also at the end of ``protocol``).
        protocol: the measurement protocol in one line.
    """

    metrics: tuple[str, ...]
    rows: list[ImageScores] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    protocol: str = ""

    @property
    def means(self) -> dict[str, float]:
        """Unweighted mean over images of each metric's per-image value (NaN when no rows).

        PSNR's mean is the mean of per-image dB values, not the dB of a pooled MSE; one identical
        pair (PSNR = inf) makes it inf.
        """
        n = len(self.rows)
        return {m: math.fsum(r.scores[m] for r in self.rows) / n if n else math.nan for m in self.metrics}


def protocol_text(metrics: Sequence[str], notes: Sequence[str] = ()) -> str:
    """The measurement protocol for ``metrics`` in one line, followed by ``notes``."""
    parts = [
        "RGB, [0, 1] (inputs clamped), full image (no crop), data_range 1, one value per image; "
        "means are unweighted means over images of the per-image values (PSNR: mean of per-image dB)"
    ]
    if "psnr" in metrics:
        parts.append("PSNR: 10·log10(1 / MSE), MSE over all pixels and the 3 channels")
    if "ssim" in metrics or "ms_ssim" in metrics:
        parts.append(
            f"SSIM: torchmetrics {_version('torchmetrics')}, {M.SSIM_WINDOW}×{M.SSIM_WINDOW} Gaussian "
            f"σ={M.SSIM_SIGMA}, K1={M.SSIM_K1}, K2={M.SSIM_K2}, each RGB channel, reflect-padded borders, "
            "averaged over channels and pixels"
        )
    if "ms_ssim" in metrics:
        parts.append(
            f"MS-SSIM: same window, {len(M.MS_SSIM_BETAS)} scales (2×2 average pooling), weights "
            f"{', '.join(map(str, M.MS_SSIM_BETAS))}, contrast terms clipped at 0; fewer scales "
            f"(weights renormalised) on images under {M.MS_SSIM_FULL_SCALES_MIN_SIDE} px per side"
        )
    if "delta_e2000" in metrics:
        parts.append(
            "ΔE2000: sRGB (IEC 61966-2-1) → linear → XYZ (D65) → CIELAB (white "
            f"{', '.join(f'{v:.4f}' for v in D65_WHITE_XYZ)}) → CIEDE2000 (kL=kC=kH=1), mean over pixels"
        )
    if "lpips_alex" in metrics:
        parts.append(
            f"LPIPS: lpips {_version('lpips')} v{M.LPIPS_VERSION}, AlexNet trunk ({M.ALEXNET_WEIGHTS_FILE}), "
            "inputs scaled to [−1, 1], spatial mean"
        )
    return "; ".join([*parts, *notes])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(not installed)"


class _Accumulator:
    """Scores pairs one at a time; builds the :class:`EvalResult` at the end."""

    def __init__(self, metrics: Sequence[str], device: str | torch.device | None) -> None:
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown or not metrics:
            given = ", ".join(unknown) or "(none given)"
            raise UnispError(f"unknown metric {given}; choose from {', '.join(ALL_METRICS)}")
        self.metrics = tuple(m for m in ALL_METRICS if m in metrics)
        self.device = device
        self.rows: list[ImageScores] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.small: dict[int, list[str]] = {}
        self.lpips_model: torch.nn.Module | None = None

    def add(self, name: str, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Score one pair, or record why it cannot be scored."""
        try:
            self.rows.append(ImageScores(name, self._score(name, pred, target)))
        except UnispError as e:
            self.failures.append(f"{name}: {e}")

    def _score(self, name: str, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        if pred.shape != target.shape:
            raise UnispError(f"sizes differ: {_size(pred)} and {_size(target)}")
        if pred.dim() != 3 or pred.shape[0] != 3:
            raise UnispError(f"expected (3, H, W) images, got {tuple(pred.shape)}")
        if not (torch.isfinite(pred).all() and torch.isfinite(target).all()):
            raise UnispError("image contains NaN or Inf")
        device = self.device if self.device is not None else pred.device
        pred = pred.to(device).clamp(0.0, 1.0)[None]
        target = target.to(device).clamp(0.0, 1.0)[None]
        if "lpips_alex" in self.metrics and self.lpips_model is None:
            self._load_lpips(device)
        scores: dict[str, float] = {}
        for m in self.metrics:
            if m == "lpips_alex":
                value = M.lpips_alex(pred, target, self.lpips_model)
            else:
                value = getattr(M, m)(pred, target)
            scores[m] = float(value[0])
        if "ms_ssim" in self.metrics:
            n = M.ms_ssim_scales(*pred.shape[-2:])
            if n < len(M.MS_SSIM_BETAS):
                self.small.setdefault(n, []).append(name)
        return scores

    def _load_lpips(self, device: str | torch.device) -> None:
        self.lpips_model = M.load_lpips_alex(device)
        if self.lpips_model is None:  # load_lpips_alex has logged the one warning saying why
            self.metrics = tuple(m for m in self.metrics if m != "lpips_alex")
            self.notes.append(f"LPIPS left out: AlexNet weights not found or unusable at {M.alexnet_weights_path()}")

    def result(self) -> EvalResult:
        notes = list(self.notes)
        for n, names in sorted(self.small.items()):
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            notes.append(
                f"MS-SSIM on {n} scale{'s' if n > 1 else ''} (not comparable with {len(M.MS_SSIM_BETAS)}-scale "
                f"values) for {len(names)} image{'s' if len(names) > 1 else ''} under "
                f"{M.MS_SSIM_FULL_SCALES_MIN_SIDE} px per side: {shown}"
            )
        return EvalResult(self.metrics, self.rows, self.failures, notes, protocol_text(self.metrics, notes))


def _size(image: torch.Tensor) -> str:
    return f"{image.shape[-1]}×{image.shape[-2]}" if image.dim() >= 2 else str(tuple(image.shape))


def evaluate_images(
    preds: Iterable[torch.Tensor],
    targets: Iterable[torch.Tensor],
    names: Sequence[str],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: Progress | None = None,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Score image pairs: ``preds[i]`` against ``targets[i]``, reported as ``names[i]``.

    Images are ``(3, H, W)`` float tensors in [0, 1] (a ``(B, 3, H, W)`` tensor also works, as
    an iterable of images); pairs may differ in size from each other. ``preds`` and ``targets``
    may be generators, consumed one pair at a time. A pair that cannot be scored (sizes differ,
    NaN, too small for SSIM) becomes a failure line; the others go on.

    Args:
        preds: predicted images.
        targets: reference images, as many as ``preds``.
        names: one name per pair.
        metrics: any of :data:`ALL_METRICS`; LPIPS is dropped (with one warning) without weights.
        progress: called as ``progress(done, len(names))`` after each pair.
        device: where to compute; ``None`` keeps each image where it is.

    Returns:
        The :class:`EvalResult`.
    """
    acc = _Accumulator(metrics, device)
    pred_iter, target_iter = iter(preds), iter(targets)
    for done, name in enumerate(names, 1):
        pred, target = next(pred_iter, None), next(target_iter, None)
        if pred is None or target is None:
            raise UnispError(f"fewer {'predictions' if pred is None else 'targets'} than the {len(names)} names")
        acc.add(name, pred, target)
        if progress is not None:
            progress(done, len(names))
    if next(pred_iter, None) is not None or next(target_iter, None) is not None:
        raise UnispError(f"more images than the {len(names)} names")
    return acc.result()


def compare_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    progress: Progress | None = None,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """Score every image in ``pred_dir`` against the image with the same stem in ``gt_dir``.

    Files are read with :func:`unisp.fileio.read_rgb` (8/16-bit PNG, TIFF, JPEG…). An image
    without a partner, a second file with the same stem, an unreadable file and a pair whose
    sizes differ each become one failure line naming the file(s); the rest are scored.

    Args:
        pred_dir: folder of predicted images.
        gt_dir: folder of ground-truth images.
        metrics: any of :data:`ALL_METRICS`.
        progress: called as ``progress(done, total)`` after each matched pair.
        device: where to compute.

    Returns:
        The :class:`EvalResult`; rows are named by stem, in sorted order.

    Raises:
        UnispError: when a folder is missing or holds no images.
    """
    failures: list[str] = []
    preds = index_by_stem(list_images(pred_dir), failures)
    gts = index_by_stem(list_images(gt_dir), failures)
    for stem in sorted(preds.keys() - gts.keys()):
        failures.append(f"{preds[stem]}: no ground truth named {stem}.* in {gt_dir}")
    for stem in sorted(gts.keys() - preds.keys()):
        failures.append(f"{gts[stem]}: no prediction named {stem}.* in {pred_dir}")
    stems = sorted(preds.keys() & gts.keys())
    acc = _Accumulator(metrics, device)
    for done, stem in enumerate(stems, 1):
        try:
            pred, gt = read_rgb(preds[stem]), read_rgb(gts[stem])
        except UnispError as e:
            failures.append(str(e))
        else:
            if pred.shape != gt.shape:
                failures.append(f"{preds[stem]} ({_size(pred)}) and {gts[stem]} ({_size(gt)}): sizes differ")
            else:
                acc.add(stem, pred, gt)
        if progress is not None:
            progress(done, len(stems))
    result = acc.result()
    result.failures = failures + result.failures
    return result


def evaluate_model(
    model: torch.nn.Module,
    data: str | os.PathLike,
    gt: str | os.PathLike | None,
    read: Callable[[Path], RawFrame],
    metrics: Sequence[str] = DEFAULT_METRICS,
    device: str = "auto",
    save: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """A model over a dataset's RAW files at full resolution (:func:`unisp.models.tiled.run_tiled`),
    scored against the ground truth of the same stem (``unisp eval --model --data``).

    Args:
        model: the generator.
        data: a dataset folder (``raw/`` + ``rgb/``, or a known layout: :func:`unisp.eval.datasets.raw_and_truth_dirs`).
        gt: the ground-truth folder, when ``data`` is a folder of RAW files.
        read: reads one RAW file (with the values the model was trained with).
        metrics: as :func:`evaluate_images`.
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        save: a folder to write each output into (16-bit PNG, named by stem); never the RAW or ground-truth folder.
        progress: as :func:`evaluate_images`.

    Returns:
        The scores; RAW files without ground truth are failure lines. What the RAW folder held is
        logged (one line), and for an ``as_shot`` model how many files lacked white balance.
    """
    dev = resolve_device(device)
    model = model.to(dev)
    raw_dir, gt_dir = raw_and_truth_dirs(data, gt)
    truths = list_images(gt_dir)
    pairs, unmatched = pair_by_stem(find_raw_files(raw_dir), truths)
    if save is not None:  # predictions written over the ground truth would then be scored against themselves
        for folder, holds in ((raw_dir, "RAW inputs"), (gt_dir, "ground truth")):
            if same_file(Path(save), folder):
                raise UnispError(f"{save}: holds the {holds} of this evaluation; give --save another folder")
        plan_outputs([raw for raw, _ in pairs], Path(save), ".png", protected=truths)

    read_frames, lacking_gains = [], []

    def outputs() -> Iterator[torch.Tensor]:
        for path, _ in pairs:
            frame = read(path)
            read_frames.append(FrameFacts.of(frame))
            lacking_gains.append(lacks_input_gains(frame, model.input_wb))
            image = run_tiled(model, frame, device=dev)
            if save is not None:
                write_image(Path(save) / f"{path.stem}.png", image, depth=16)
            yield image

    result = evaluate_images(
        outputs(), (read_rgb(truth) for _, truth in pairs), [raw.stem for raw, _ in pairs], metrics=metrics, progress=progress
    )
    log_summary(read_frames)
    warn_lacking_gains(sum(lacking_gains), len(lacking_gains), "files evaluated")
    result.failures += [f"{p}: no ground truth named {p.stem}.* in {gt_dir}" for p in unmatched]
    return result


def _number(value: float) -> float | str:
    """A JSON-safe number: finite floats as they are, ±inf and NaN as the strings "inf", "-inf", "nan"."""
    return value if math.isfinite(value) else str(value)


def to_json(result: EvalResult) -> dict:
    """The result as a JSON-safe dict (non-finite values such as PSNR = inf become strings).

    Keys: ``protocol``, ``notes``, ``metrics``, ``count``, ``mean``, ``images`` (one dict per row
    with ``name`` and each metric) and ``failures``.
    """
    return {
        "protocol": result.protocol,
        "notes": list(result.notes),
        "metrics": list(result.metrics),
        "count": len(result.rows),
        "mean": {m: _number(v) for m, v in result.means.items()},
        "images": [{"name": r.name, **{m: _number(r.scores[m]) for m in result.metrics}} for r in result.rows],
        "failures": list(result.failures),
    }


def write_csv(result: EvalResult, path: str | os.PathLike) -> None:
    """Write one CSV row per image (``name`` then each metric, full precision), atomically.

    Means, failures and the protocol are not in the CSV; they are in :func:`to_json`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", *result.metrics])
    for row in result.rows:
        writer.writerow([row.name, *(repr(row.scores[m]) for m in result.metrics)])
    write_text(path, buffer.getvalue())


def format_table(result: EvalResult, per_image: bool = True) -> str:
    """A plain-text table: one line per image (unless ``per_image`` is False), the means, the
    failures and the protocol. Arrows in the header say which direction is better.
    """
    header = ["image", *(LABELS[m] + (" ↑" if HIGHER_IS_BETTER[m] else " ↓") for m in result.metrics)]
    rows = result.rows if per_image else []
    lines = [[r.name, *(FORMATS[m].format(r.scores[m]) for m in result.metrics)] for r in rows]
    means = result.means
    mean_line = [f"mean of {len(result.rows)}", *(FORMATS[m].format(means[m]) for m in result.metrics)]
    widths = [max(len(row[i]) for row in [header, *lines, mean_line]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]).rstrip()

    rule = "-" * len(fmt(header))
    out = [fmt(header), rule, *map(fmt, lines)]
    if lines:
        out.append(rule)
    out.append(fmt(mean_line))
    if result.failures:
        out += ["", f"{len(result.failures)} failure{'s' if len(result.failures) > 1 else ''}:"]
        out += [f"  {f}" for f in result.failures]
    out += ["", f"protocol: {result.protocol}"]
    return "\n".join(out)
