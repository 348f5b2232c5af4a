"""``unisp report``: one self-contained HTML page about a run folder, to judge a model by eye.

:func:`write_report` reads a folder that unisp wrote and writes ``FOLDER/report.html``. It knows
three kinds of folder:

``train``  a training run (``unisp train``; see :mod:`unisp.train.run`): ``config.yaml``,
           ``metrics.jsonl``, ``model.safetensors``, ``summary.json``, ``run.json``.
``eval``   the ``--save`` folder of ``unisp eval --model M --data D``: the model's outputs and
           ``eval.json`` (the scores plus which model, data and ground truth; :func:`write_eval_record`).
``demo``   the output of ``unisp demo``: its ``summary.json`` holds a manifest (:class:`DemoManifest`)
           naming the held-out table, the trained stages' model files, the held-out RAW files with
           their ground truth and the renders of the bundled frame; the report reads only that
           manifest (it does not import the demo). A folder from before the demo wrote one is
           refused, saying to run the demo again.

The page shows, where the folder has them:

- **crops**: for a few images, the same window of the classical render, the model's output and
  the target (ground truth; for stage 1 without it, the classical render the model learns,
  X̂), 1:1 pixels side by side, with a slider that wipes between any two at 2× zoom. The window
  is the one with the most detail (largest mean gradient) in the target, or in the classical render;
- **metrics**: the evaluation's table (``eval.json``, the demo's ``summary.json``), or for a
  training run the shown images scored against their target by the report itself;
- **training curves** from ``metrics.jsonl``: loss terms ``loss/*``, DLA weights
  ``dla_weight/*``, per-term gradient norms ``grad_norm/*``, discriminator outputs ``d/*``,
  validation ``val*``, and any other logged value, one SVG chart per group;
- **model card**: architecture, parameters and MACs (:func:`unisp.models.registry.model_info`),
  provenance from the model file's header, and the exported files (``.onnx``, ``.tflite``) in the
  folder with their parity reports (``<file>.parity.json``).

A section the folder cannot supply (no ground truth, data moved away, no exports) is left out
and the page says why, under "What was read and what was assumed".
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unisp.data.files import index_by_stem
from unisp.errors import UnispError
from unisp.eval.datasets import raw_and_truth_dirs
from unisp.eval.evaluate import FORMATS, HIGHER_IS_BETTER, LABELS, evaluate_images
from unisp.eval.plots import line_chart
from unisp.eval.report_html import CropSet, ExportEntry, ModelCard, Page, Table, render_html
from unisp.fileio import list_images, quantize, read_rgb, write_text
from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.losses.criterion import ADVERSARIAL_TERMS
from unisp.models.checkpoint import input_options, recorded_options
from unisp.raw.frame import RawFrame
from unisp.raw.io import find_raw_files, read_raw
from unisp.raw.options import RawOptions
from unisp.raw.summary import FrameFacts, log_summary
from unisp.train.run import CONFIG_FILE, METRICS_FILE, MODEL_FILE, REPORT_FILE, RUN_INFO_FILE, SUMMARY_FILE

log = logging.getLogger(__name__)

#: What ``unisp eval --save DIR`` writes beside the outputs (read by the report).
EVAL_FILE = "eval.json"
#: Crop edge in output pixels: 256 px at 1:1 shows demosaicing and noise, and four fit across a page.
CROP = 256
#: Width of the whole-frame thumbnail that marks where the crop is (pixels of the PNG).
THUMB_WIDTH = 400
#: Images shown by default (each costs a full-resolution model run and about 0.5 MB of page).
MAX_IMAGES = 4
#: Metrics the report computes itself (LPIPS needs downloaded weights; ``unisp eval`` has it).
REPORT_METRICS = ("psnr", "ssim", "delta_e2000")
#: Extensions of exported models listed in the model card.
EXPORT_SUFFIXES = (".onnx", ".tflite")
#: The parity report an export writes beside its file: ``<file>.parity.json``.
PARITY_SUFFIX = ".parity.json"
#: Groups of training curves: metrics.jsonl key prefix → chart title, in page order.
CURVE_GROUPS = {
    "loss/": "Loss terms",
    "dla_weight/": "DLA weights",
    "grad_norm/": "Gradient norm per term (before DLA)",
    "d/": "Discriminator outputs",
}
#: Keys of metrics.jsonl that are not curves.
NOT_CURVES = ("step", "epoch", "time")
#: Labels of the image panels.
CLASSICAL = "classical"
GROUND_TRUTH = "ground truth"
STAGE1_TARGET = "training target X̂"
#: How the page names each kind of folder.
KIND_NAMES = {"train": "training run", "eval": "evaluation (unisp eval --save)", "demo": "unisp demo"}
#: Errors a damaged or partial folder can raise while one section is gathered: the section is
#: left out with a note and the rest of the page is still written.
SECTION_ERRORS = (UnispError, OSError, ValueError, KeyError, TypeError, RuntimeError)

Render = Callable[[RawFrame], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------

def write_report(
    run_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    gt: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    max_images: int = MAX_IMAGES,
    options: RawOptions | None = None,
) -> Path:
    """Write the report of a training run, ``unisp eval --save`` or ``unisp demo`` folder.

    Args:
        run_dir: the folder.
        data: RAW files to show instead of the folder's own (a folder of RAW files, or a dataset
            root with ``raw/``+``rgb/``, ``huawei_raw/``+``canon/`` or ``mediatek_raw/``+``fujifilm/``).
        gt: ground truth for ``data``, matched by file stem.
        out: the HTML file (default ``run_dir/report.html``).
        max_images: at most this many images get crops.
        options: RAW values over those the RAW files are otherwise read with: the values the
            model was trained with (its file's ``raw_input``), or those ``unisp eval`` recorded.

    Returns:
        The path written (atomically).

    Raises:
        UnispError: ``run_dir`` is not a folder unisp wrote, or ``out`` cannot be written.
    """
    folder = Path(run_dir)
    if max_images < 1:
        raise UnispError(f"max_images must be at least 1, got {max_images}")
    page = build_page(
        folder, data=Path(data) if data else None, gt=Path(gt) if gt else None, max_images=max_images, options=options
    )
    path = Path(out) if out else folder / REPORT_FILE
    write_text(path, render_html(page))
    log.debug("wrote %s", path)
    return path


def try_write_report(run_dir: str | os.PathLike, **kwargs: Any) -> Path | None:
    """:func:`write_report`, but a failure is one warning, not an error (after training, eval, demo)."""
    try:
        return write_report(run_dir, **kwargs)
    except Exception as e:  # any failure: the finished run matters more than its report
        log.warning("report not written for %s: %s", run_dir, " ".join(str(e).split())[:300])
        return None


def write_eval_record(folder: str | os.PathLike, result: dict[str, Any], *, model: str | os.PathLike,
                      data: str | os.PathLike, gt: str | os.PathLike | None, layout: str,
                      raw_input: dict[str, Any] | None = None) -> Path:
    """Write ``folder/eval.json``: an evaluation's JSON (:func:`unisp.eval.evaluate.to_json`) and its inputs.

    Args:
        folder: the ``unisp eval --save`` folder.
        result: ``to_json(EvalResult)``.
        model, data, gt, layout: what ``unisp eval`` was given (paths are stored absolute).
        raw_input: the RAW values the files were read with (:meth:`RawOptions.to_dict`).

    Returns:
        The file written.
    """
    record = {
        "model": str(Path(model).resolve()),
        "data": str(Path(data).resolve()),
        "gt": str(Path(gt).resolve()) if gt else None,
        "layout": layout,
        "raw_input": raw_input or {},
        **result,
    }
    path = Path(folder) / EVAL_FILE
    write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def folder_kind(folder: Path) -> str:
    """``"demo"``, ``"eval"`` or ``"train"``, from the files in ``folder``."""
    if not folder.is_dir():
        raise UnispError(f"{folder}: not a folder")
    if is_demo_folder(folder):
        return "demo"
    if (folder / EVAL_FILE).is_file():
        return "eval"
    if (folder / CONFIG_FILE).is_file() or (folder / METRICS_FILE).is_file():
        return "train"
    raise UnispError(
        f"{folder}: not a folder unisp wrote (a training run has {CONFIG_FILE}, an `unisp eval --save` "
        f"folder {EVAL_FILE}, an `unisp demo` folder {SUMMARY_FILE} with a {MANIFEST_KEY!r} in it)"
    )


def build_page(folder: Path, *, data: Path | None = None, gt: Path | None = None, max_images: int = MAX_IMAGES,
               options: RawOptions | None = None) -> Page:
    """Gather everything the report of ``folder`` shows (see the module docstring)."""
    kind = folder_kind(folder)
    page = Page(title=f"unisp report: {folder.resolve().name}", folder=str(folder.resolve()), kind=KIND_NAMES[kind])
    if data is None and gt is not None:
        raise UnispError("--gt needs --data (the RAW files the ground truth belongs to)")
    gather = {"train": gather_training, "eval": gather_eval, "demo": gather_demo}[kind]
    gather(folder, page, data, gt, max_images, options or RawOptions())
    return page


def _attempt(page: Page, what: str, fn: Callable[[], None]) -> None:
    """Run one section's gathering; a damaged folder leaves the section out with a note."""
    try:
        fn()
    except SECTION_ERRORS as e:
        message = " ".join(str(e).split())[:300] or type(e).__name__
        log.warning("report: %s not shown: %s", what, message)
        page.notes.append(f"{what}: not shown ({message})")


# ----------------------------------------------------------------------------------------------
# The demo's manifest
# ----------------------------------------------------------------------------------------------

#: Key of the demo's ``summary.json`` that holds its :class:`DemoManifest`.
MANIFEST_KEY = "manifest"
#: Version of :class:`DemoManifest`'s JSON (its ``"format"``); a change old readers cannot follow bumps it.
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class DemoManifest:
    """What the report of an ``unisp demo`` folder shows, as the demo wrote it into ``summary.json``.

    The demo owns its folder's layout and writes this (:meth:`to_json`, under :data:`MANIFEST_KEY`);
    the report reads nothing else about that layout. Paths are relative to the folder.

    Attributes:
        facts: ``(label, value)`` lines at the top of the page.
        table: the key of ``summary.json`` that holds the held-out table: method → metric → mean.
        held_out: the held-out images' names (the table's means are over them).
        held_out_raw, held_out_truth: the folders of their RAW files and of their ground truth.
        classical: the demosaicing method of the classical panel in the held-out crops.
        stages: label → model file of each trained stage (its run folder holds ``metrics.jsonl``).
        sample_name: what the bundled real frame is.
        samples: label → the demo's render of that frame; the first one places the crop window.
    """

    facts: list[tuple[str, str]]
    table: str
    held_out: list[str]
    held_out_raw: str
    held_out_truth: str
    classical: str
    stages: dict[str, str]
    sample_name: str
    samples: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The JSON object the demo writes (``"format"`` is :data:`MANIFEST_FORMAT`)."""
        return {"format": MANIFEST_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, record: Any) -> DemoManifest:
        """Read :meth:`to_json`'s object back; :class:`UnispError` says what is missing or wrong."""
        if not isinstance(record, dict):
            raise UnispError(f"{SUMMARY_FILE}: its {MANIFEST_KEY!r} is not a JSON object")
        if record.get("format") != MANIFEST_FORMAT:
            raise UnispError(f"{SUMMARY_FILE}: manifest format {record.get('format')!r}, this unisp reads {MANIFEST_FORMAT}")
        missing = [f.name for f in fields(cls) if f.name not in record]
        if missing:
            raise UnispError(f"{SUMMARY_FILE}: the manifest lacks {', '.join(missing)}")
        try:
            facts = [(str(label), str(value)) for label, value in record["facts"]]
        except (TypeError, ValueError) as e:
            raise UnispError(f"{SUMMARY_FILE}: the manifest's facts are not (label, value) pairs") from e
        return cls(**{**{f.name: record[f.name] for f in fields(cls)}, "facts": facts})


def is_demo_folder(folder: Path) -> bool:
    """Whether ``folder`` is an ``unisp demo`` folder: its summary.json holds a manifest, or (a folder
    from before the demo wrote one) it has the run folders ``stage1/`` and ``stage2/``."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return False
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    if isinstance(summary, dict) and MANIFEST_KEY in summary:
        return True
    return (folder / "stage1").is_dir() and (folder / "stage2").is_dir()


def read_demo_manifest(folder: Path, summary: dict[str, Any]) -> DemoManifest:
    """The manifest in a demo's ``summary.json``.

    Raises:
        UnispError: a folder of a demo from before the demo wrote one (run ``unisp demo`` again), or a damaged one.
    """
    if MANIFEST_KEY not in summary:
        raise UnispError(
            f"{folder / SUMMARY_FILE}: no {MANIFEST_KEY!r} (written by an older unisp demo, which did not say "
            "what its folder holds): run `unisp demo` again"
        )
    return DemoManifest.from_json(summary[MANIFEST_KEY])


# ----------------------------------------------------------------------------------------------
# The three kinds of folder
# ----------------------------------------------------------------------------------------------

def gather_training(folder: Path, page: Page, data: Path | None, gt: Path | None, max_images: int, options: RawOptions) -> None:
    """A training run: facts, crops of validation images, scores, curves, model card; RAW files
    read with the model's ``raw_input`` under ``options``."""
    from unisp.config import load_config
    from unisp.train.config import TrainConfig

    config = None

    def read_config() -> None:
        nonlocal config
        config = load_config(TrainConfig, folder / CONFIG_FILE)

    _attempt(page, "recipe (config.yaml)", read_config)
    _attempt(page, "run information", lambda: page.facts.extend(run_facts(folder, config)))
    model_path = folder / MODEL_FILE

    def crops() -> None:
        if config is None and data is None:
            raise UnispError("no readable config.yaml to find the data in; pass --data DIR")
        if not model_path.is_file():
            raise UnispError(f"no {MODEL_FILE} yet (no checkpoint saved)")
        files, gt_dir, source = training_images(config, data, gt)
        layout = config.data.layout if config is not None and data is None else "auto"
        model, header = _load(model_path)
        read = functools.partial(read_raw, options=input_options(model_path, header, options), layout=layout)
        step = header.get("training", {}).get("step")
        methods: dict[str, Render] = {
            CLASSICAL: classical(config.target_demosaic if config is not None else "malvar"),
            f"model (step {step})" if step is not None else "model": tiled(model),
        }
        if gt_dir is None and config is not None and config.mode == "stage1":
            methods[STAGE1_TARGET] = lambda frame: render_frame(frame, config.target_isp)
        scenes = render_scenes(files[:max_images], gt_dir, read, methods, page, input_wb=model.input_wb)
        target = GROUND_TRUTH if gt_dir is not None else STAGE1_TARGET if STAGE1_TARGET in methods else None
        add_crops(page, "Crops", scenes, target, source)
        if target is not None:
            page.tables.append(score_table(scenes, target))
        else:
            page.notes.append("no ground truth for these images (unpaired run without data.val_rgb_dir): no scores")

    _attempt(page, "training summary", lambda: _summary_table(folder, page))
    _attempt(page, "crops", crops)
    _attempt(page, "training curves", lambda: add_curves(page, "Training curves", folder / METRICS_FILE))
    _attempt(page, "model card", lambda: page.cards.append(model_card(model_path, "Model card", [folder])))


def gather_eval(folder: Path, page: Page, data: Path | None, gt: Path | None, max_images: int, options: RawOptions) -> None:
    """An ``unisp eval --save`` folder: its scores, crops of its outputs, the model card; RAW files
    read with the values the evaluation recorded under ``options``."""
    record = json.loads((folder / EVAL_FILE).read_text(encoding="utf-8"))
    page.facts += [("model", str(record.get("model"))), ("data", str(record.get("data"))),
                   ("ground truth", str(record.get("gt") or "(from the dataset layout)")),
                   ("images scored", str(record.get("count")))]
    _attempt(page, "evaluation table", lambda: page.tables.append(eval_table(record)))

    def crops() -> None:
        raw_dir, gt_dir = data_dirs(data or Path(record["data"]), gt or (None if data else record.get("gt")))
        raws = index_by_stem(find_raw_files(raw_dir))
        saved = index_by_stem(list_images(folder))
        names = [row["name"] for row in record.get("images", []) if row["name"] in raws and row["name"] in saved]
        files = [raws[n] for n in names[:max_images]]
        methods: dict[str, Render] = {
            CLASSICAL: classical("malvar"),
            "model (saved output)": lambda frame: read_rgb(saved[frame.path.stem]),
        }
        name = f"{folder / EVAL_FILE}: raw_input.{{}}".format
        recorded = RawOptions.from_mapping(record.get("raw_input", {}), name=name)
        read = functools.partial(read_raw, options=recorded.merged(options), layout=record.get("layout", "auto"))
        scenes = render_scenes(files, gt_dir, read, methods, page)
        source = f"the outputs unisp eval saved in this folder; RAW files from {raw_dir}" + (f", ground truth {gt_dir}" if gt_dir else "")
        add_crops(page, "Crops", scenes, GROUND_TRUTH if gt_dir is not None else None, source)

    _attempt(page, "crops", crops)
    model = Path(str(record.get("model")))
    _attempt(page, "model card", lambda: page.cards.append(model_card(model, "Model card", [folder, model.parent])))


def gather_demo(folder: Path, page: Page, data: Path | None, gt: Path | None, max_images: int, options: RawOptions) -> None:
    """An ``unisp demo`` folder, as its manifest (:class:`DemoManifest`) describes it: the held-out
    table, crops of the held-out and real frames, each stage's curves and model card (RAW files read
    with ``options``)."""
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    manifest = read_demo_manifest(folder, summary)
    page.facts += manifest.facts
    _attempt(page, "held-out table", lambda: page.tables.append(demo_table(summary[manifest.table], len(manifest.held_out))))
    stages = {name: folder / path for name, path in manifest.stages.items()}

    def held_out() -> None:
        raw_dir, gt_dir = data_dirs(data, gt) if data else (folder / manifest.held_out_raw, folder / manifest.held_out_truth)
        methods: dict[str, Render] = {f"{CLASSICAL} ({manifest.classical})": classical(manifest.classical)}
        models = {name: _load(path)[0] for name, path in stages.items()}
        methods.update({name: tiled(model) for name, model in models.items()})
        read = functools.partial(read_raw, options=options)
        input_wb = "as_shot" if any(m.input_wb == "as_shot" for m in models.values()) else "none"
        scenes = render_scenes(find_raw_files(raw_dir)[:max_images], gt_dir, read, methods, page, input_wb=input_wb)
        target = GROUND_TRUTH if gt_dir is not None else None
        add_crops(page, "Crops: held-out images", scenes, target, f"RAW files from {raw_dir}" + (f", ground truth {gt_dir}" if gt_dir else ""))

    _attempt(page, "held-out crops", held_out)

    def sample() -> None:
        if not manifest.samples:
            raise UnispError("the demo wrote no renders of the bundled frame")
        panels = {label: read_rgb(folder / path) for label, path in manifest.samples.items()}
        page.crops.append((
            "Crops: the bundled real sensor frame",
            f"The renders the demo wrote ({', '.join(manifest.samples.values())}), no ground truth. Neither the "
            "demo's models nor the paper's released ones have seen this sensor.",
            [make_crop_set(manifest.sample_name, panels, next(iter(panels)))],
        ))

    _attempt(page, "bundled-frame crops", sample)
    for name, path in stages.items():
        _attempt(page, f"{name} curves", lambda p=path, n=name: add_curves(page, f"Training curves: {n}", p.parent / METRICS_FILE))
    for name, path in stages.items():
        _attempt(page, f"{name} model card", lambda p=path, n=name: page.cards.append(model_card(p, f"Model card: {n}", [p.parent])))


# ----------------------------------------------------------------------------------------------
# Images: which files, the renders, the crops
# ----------------------------------------------------------------------------------------------

def data_dirs(data: Path, gt: Path | None) -> tuple[Path, Path | None]:
    """``(raw_dir, gt_dir)``: a dataset root or a RAW folder (+ ``gt``); ``gt_dir`` is None without ground truth."""
    try:
        return raw_and_truth_dirs(data, gt)
    except UnispError:
        if Path(data).is_dir():
            return Path(data), None
        raise


def training_images(config: Any, data: Path | None, gt: Path | None) -> tuple[list[Path], Path | None, str]:
    """The RAW files a training run's crops show, their ground-truth folder, and a line saying which they are."""
    from unisp.train.config import PAIRED_MODES

    if data is not None:
        raw_dir, gt_dir = data_dirs(data, gt)
        return find_raw_files(raw_dir), gt_dir, f"from --data {raw_dir}" + (f", ground truth {gt_dir}" if gt_dir else "")
    train_files, val_files = config.split_files()
    gt_name = config.data.val_rgb_dir or (config.data.rgb_dir if config.mode in PAIRED_MODES else "")
    gt_dir = Path(gt_name) if gt_name else None
    if val_files:
        where = config.data.val_dir or f"data.val_fraction of {config.data.raw_dir}"
        return val_files, gt_dir, f"validation images of the run ({where})" + (f", ground truth {gt_dir}" if gt_dir else "")
    rgb = Path(config.data.rgb_dir) if config.mode in PAIRED_MODES else None
    return train_files, rgb, f"training images of the run ({config.data.raw_dir}): it held out no validation images"


def classical(demosaic: str) -> Render:
    """The classical pipeline as ``unisp render`` runs it (as-shot white balance, colour matrix from metadata)."""
    config = ISPConfig(demosaic=demosaic)
    return lambda frame: render_frame(frame, config)


def tiled(model: torch.nn.Module) -> Render:
    """A model run over the full frame (tiled, exact), clamped to [0, 1]."""
    from unisp.models.tiled import run_tiled

    return lambda frame: run_tiled(model, frame)


def render_scenes(
    files: Sequence[Path],
    gt_dir: Path | None,
    read: Callable[[Path], RawFrame],
    methods: dict[str, Render],
    page: Page,
    input_wb: str = "none",
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """Each file (read with ``read``) through each method, plus its ground truth; every image turned upright per the file.

    A file that cannot be read, or whose ground truth is missing or of another size, is noted on
    the page; the ground-truth panel is then left out (the others are kept). What the files read
    hold is logged (one line per folder), and, when a model's input is white-balanced as shot
    (``input_wb``), how many lacked the white balance (one warning).
    """
    truths = index_by_stem(list_images(gt_dir)) if gt_dir is not None else {}
    scenes = []
    read_facts, lacking_gains = [], []
    for path in files:
        try:
            frame = read(path)
            read_facts.append(FrameFacts.of(frame))
            lacking_gains.append(lacks_input_gains(frame, input_wb))
            panels = {label: fn(frame) for label, fn in methods.items()}
        except UnispError as e:
            page.notes.append(f"{path}: not shown ({e})")
            continue
        if gt_dir is not None:
            try:
                panels.update(_ground_truth(path, truths, gt_dir, next(iter(panels.values())).shape))
            except UnispError as e:
                page.notes.append(str(e))
        scenes.append((path.stem, {k: apply_orientation(v, frame.orientation) for k, v in panels.items()}))
    log_summary(read_facts, "report crops")
    warn_lacking_gains(sum(lacking_gains), len(lacking_gains), "files shown in the report")
    return scenes


def _ground_truth(path: Path, truths: dict[str, Path], gt_dir: Path, shape: torch.Size) -> dict[str, torch.Tensor]:
    """``{GROUND_TRUTH: image}`` for the RAW file ``path``; :class:`UnispError` when missing, unreadable or of another size."""
    if path.stem not in truths:
        raise UnispError(f"{path.name}: no ground truth named {path.stem}.* in {gt_dir}")
    truth = read_rgb(truths[path.stem])
    if truth.shape != shape:
        raise UnispError(f"{truths[path.stem]}: size {tuple(truth.shape[1:])} differs from the render's {tuple(shape[1:])}")
    return {GROUND_TRUTH: truth}


def add_crops(
    page: Page, heading: str, scenes: list[tuple[str, dict[str, torch.Tensor]]], target: str | None, source: str
) -> None:
    """Crop every scene at the window with the most detail in ``target`` (or the first panel); ``source`` says which images they are."""
    if not scenes:
        raise UnispError("no image could be rendered")
    crop_sets = [make_crop_set(name, panels, target if target in panels else next(iter(panels))) for name, panels in scenes]
    reference = target if target is not None else "the first panel"
    page.crops.append((
        heading,
        f"Images: {source}. {CROP}×{CROP} px windows at 1:1, placed where {reference} has the most detail (largest mean gradient); "
        f"'{CLASSICAL}' is the classical pipeline with the file's as-shot white balance and colour matrix.",
        crop_sets,
    ))


def choose_crop(image: torch.Tensor, size: int = CROP) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the ``size``×``size`` window with the largest mean gradient magnitude.

    Args:
        image: ``(3, H, W)``.
        size: window edge; a smaller image gives its whole extent. Corners are even (Bayer-aligned).

    Returns:
        The window, inside the image.
    """
    height, width = image.shape[-2:]
    h, w = min(size, height), min(size, width)
    if (h, w) == (height, width) or min(height, width) < 2:
        return 0, 0, width, height
    gray = image.float().mean(0)[None, None]
    detail = (gray[..., 1:, 1:] - gray[..., :-1, 1:]).abs() + (gray[..., 1:, 1:] - gray[..., 1:, :-1]).abs()
    stride = max(2, size // 8)
    energy = F.avg_pool2d(detail, (min(h, detail.shape[-2]), min(w, detail.shape[-1])), stride=stride)[0, 0]
    iy, ix = divmod(int(torch.argmax(energy)), energy.shape[-1])
    y, x = min(iy * stride, height - h), min(ix * stride, width - w)
    return x - x % 2, y - y % 2, w, h


def thumbnail(image: torch.Tensor, width: int = THUMB_WIDTH) -> torch.Tensor:
    """``image`` shrunk (area average) to ``width`` pixels wide, aspect kept; smaller images as they are."""
    height_in, width_in = image.shape[-2:]
    if width_in <= width:
        return image
    height = max(1, round(height_in * width / width_in))
    return F.interpolate(image[None].float(), size=(height, width), mode="area")[0]


def make_crop_set(name: str, panels: dict[str, torch.Tensor], reference: str) -> CropSet:
    """The same window of every panel (chosen on ``panels[reference]``) and a thumbnail of the reference."""
    ref = panels[reference]
    x, y, w, h = choose_crop(ref)
    height, width = ref.shape[-2:]
    return CropSet(
        name=name,
        panels={label: quantize(image[:, y : y + h, x : x + w], 8) for label, image in panels.items()},
        thumb=quantize(thumbnail(ref), 8),
        box=(x / width, y / height, w / width, h / height),
        size=(width, height),
        origin=(x, y),
    )


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------

def _header(metrics: Sequence[str]) -> list[str]:
    return [LABELS[m] + (" ↑" if HIGHER_IS_BETTER[m] else " ↓") for m in metrics]


def _value(metric: str, value: Any) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return FORMATS[metric].format(value)
    return str(value)  # "inf" (identical images), "nan", or missing


def score_table(scenes: list[tuple[str, dict[str, torch.Tensor]]], target: str) -> Table:
    """Every other panel against ``target`` on the full images, per image and on average."""
    scored = [(name, panels) for name, panels in scenes if target in panels]
    if not scored:
        raise UnispError(f"no image has a {target} panel")
    methods = [k for k in scored[0][1] if k != target]
    names = [name for name, _ in scored]
    rows = []
    for method in methods:
        result = evaluate_images([p[method] for _, p in scored], [p[target] for _, p in scored], names, metrics=REPORT_METRICS)
        rows.append([method, f"mean of {len(result.rows)}", *(_value(m, v) for m, v in result.means.items())])
        rows += [["", r.name, *(_value(m, r.scores[m]) for m in result.metrics)] for r in result.rows]
    return Table(
        title=f"The images in the crops below against the {target}",
        header=["method", "image", *_header(REPORT_METRICS)],
        rows=rows,
        note="Computed by the report on the full images (protocol of docs/EVAL.md; LPIPS: see unisp eval).",
    )


def eval_table(record: dict[str, Any]) -> Table:
    """The ``unisp eval`` result: one row per image and the mean."""
    metrics = [m for m in record["metrics"] if m in LABELS]
    rows = [[row["name"], *(_value(m, row.get(m)) for m in metrics)] for row in record.get("images", [])]
    rows.append([f"mean of {record.get('count', len(rows))}", *(_value(m, record["mean"].get(m)) for m in metrics)])
    failures = record.get("failures", [])
    note = f"Protocol: {record.get('protocol', '')}"
    if failures:
        note += f" — {len(failures)} failure(s): " + "; ".join(failures[:5])
    return Table(title="unisp eval: the model against ground truth", header=["image", *_header(metrics)], rows=rows, note=note)


def demo_table(means: dict[str, dict[str, Any]], count: int) -> Table:
    """The demo's held-out table: method → metric → mean over ``count`` images (from ``summary.json``)."""
    metrics = [m for m in LABELS if any(m in v for v in means.values())]
    rows = [[method, *(_value(m, values.get(m)) for m in metrics)] for method, values in means.items()]
    return Table(
        title=f"Held-out images against ground truth (mean of {count})",
        header=["method", *_header(metrics)],
        rows=rows,
        note="From summary.json, as the demo measured it. X̂ is the paper's classical render (the stage-1 "
             "target: no colour matrix); the other classical rows use the full metadata (as-shot white "
             "balance and colour matrix), which a learned ISP never sees.",
    )


def _summary_table(folder: Path, page: Page) -> None:
    path = folder / SUMMARY_FILE
    if not path.is_file():
        page.notes.append(f"no {SUMMARY_FILE}: the run has not finished (or was stopped)")
        return
    summary = json.loads(path.read_text(encoding="utf-8"))
    metric = summary.get("validation_metric", "")
    start, final = summary.get("start_validation") or {}, summary.get("final_validation") or {}
    rows = [["steps", str(summary.get("steps"))], ["seconds", str(summary.get("seconds"))]]
    if metric in final:
        rows.append([f"{metric} (dB) at start → end", f"{start.get(metric, float('nan')):.2f} → {final[metric]:.2f}"])
    rows += [[k, f"{v:.4g}"] for k, v in (summary.get("final_loss") or {}).items() if isinstance(v, (int, float))]
    page.tables.append(Table(
        title="Training summary (summary.json)",
        header=["", "value"],
        rows=rows,
        note=f"{metric} is scored against the classical render X̂ (no ground truth)" if metric == "val_render_psnr" else "",
    ))


# ----------------------------------------------------------------------------------------------
# Curves
# ----------------------------------------------------------------------------------------------

def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``; a damaged line (a killed process) is skipped with a warning."""
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
    if bad:
        log.warning("%s: %d damaged line(s) skipped", path, bad)
    return records


def curve_groups(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Chart title → series label → ``(step, value)`` points, grouped as :data:`CURVE_GROUPS` says.

    Keys starting with ``val`` are "Validation"; other keys with a ``/`` are grouped by their
    prefix (``d/colour/d_real``: by the first two parts, one chart per discriminator), the rest
    under "Other logged values". Non-numeric values are left out.
    """
    groups: dict[str, dict[str, list[tuple[float, float]]]] = {title: {} for title in CURVE_GROUPS.values()}
    groups["Validation"] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in record.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            parts = key.split("/")
            if len(parts) > 2:  # d/colour/d_real: one chart per discriminator
                title, label = f"{CURVE_GROUPS.get(parts[0] + '/', parts[0])}: {parts[1]}", "/".join(parts[2:])
            elif len(parts) == 2:
                title, label = CURVE_GROUPS.get(parts[0] + "/", parts[0]), parts[1]
            else:
                title, label = ("Validation" if key.startswith("val") else "Other logged values"), key
            groups.setdefault(title, {}).setdefault(label, []).append((float(step), float(value)))
    known = list(CURVE_GROUPS.values())

    def rank(title: str) -> int:  # the known groups (with their per-discriminator charts), others, validation, the rest
        if title == "Validation":
            return len(known) + 1
        if title == "Other logged values":
            return len(known) + 2
        return next((i for i, k in enumerate(known) if title.startswith(k)), len(known))

    return {title: groups[title] for title in sorted(groups, key=rank) if groups[title]}


def add_curves(page: Page, heading: str, path: Path) -> None:
    """One chart per group of ``metrics.jsonl``'s values."""
    if not path.is_file():
        raise UnispError(f"no {path.name} in {path.parent}")
    groups = curve_groups(read_metrics(path))
    if not groups:
        raise UnispError(f"{path}: no values logged yet")
    page.charts.append((heading, [line_chart(series, title=title) for title, series in groups.items()]))


# ----------------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------------

def _load(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from unisp.models.checkpoint import load_model

    return load_model(path)


def model_card(path: Path, title: str, export_dirs: Sequence[Path]) -> ModelCard:
    """Architecture, size, cost and provenance of a model file, and the exports beside it."""
    from unisp.models.registry import MAC_CONVENTION, model_info

    model, header = _load(path)
    info = model_info(model)
    kwargs = header.get("model_kwargs") or {}
    training = header.get("training") or {}
    fields = [
        ("file", str(path)),
        ("architecture", header["model"] + (f" {json.dumps(kwargs)}" if kwargs else "")),
        ("parameters", f"{info['parameters']:,}"),
        ("MACs per output pixel", f"{info['mac_per_pixel']:,.1f} (= MMAC per megapixel; {MAC_CONVENTION})"),
        ("input", f"{header.get('packing', '?')}; {header.get('normalisation', '?')}"),
        ("RAW values trained with", recorded_options(path, header).describe() if header.get("raw_input") else "none given (each file's metadata)"),
        ("output", str(header.get("output", "?"))),
        ("training", ", ".join(f"{k} {v}" for k, v in training.items() if v not in (None, "", {})) or "(none recorded)"),
        ("unisp version", str(header.get("unisp_version", "?"))),
        ("size", f"{path.stat().st_size:,} bytes, SHA-256 {hashlib.sha256(path.read_bytes()).hexdigest()}"),
    ]
    return ModelCard(title=title, fields=fields, exports=find_exports(export_dirs))


def find_exports(folders: Sequence[Path]) -> list[ExportEntry]:
    """Exported model files (``.onnx``, ``.tflite``) under ``folders`` and their parity reports."""
    seen: set[Path] = set()
    entries = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXPORT_SUFFIXES and p.is_file()):
            if path.name.startswith(".") or path.resolve() in seen:  # atomic_write's temporary files
                continue
            seen.add(path.resolve())
            parity_path = path.with_name(path.name + PARITY_SUFFIX)
            parity = None
            if parity_path.is_file():
                try:
                    parity = json.loads(parity_path.read_text(encoding="utf-8"))
                except ValueError as e:
                    parity = {"error": f"unreadable parity report ({e})"}
                if not isinstance(parity, dict):
                    parity = {"value": parity}
            entries.append(ExportEntry(path=str(path), size=path.stat().st_size, parity=parity))
    return entries


# ----------------------------------------------------------------------------------------------
# Facts
# ----------------------------------------------------------------------------------------------

def run_facts(folder: Path, config: Any) -> list[tuple[str, str]]:
    """Key facts of a training run: run.json (git, device, command, start) and the recipe's main settings."""
    facts: list[tuple[str, str]] = []
    info_path = folder / RUN_INFO_FILE
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        facts += [(k, str(info[k])) for k in ("started", "command", "device", "git", "unisp_version", "torch_version") if info.get(k)]
    if config is not None:
        discriminators = config.mode in ("unpaired", "paired") and any(getattr(config.losses, t) > 0 for t in ADVERSARIAL_TERMS)
        facts += [
            ("mode", config.mode),
            ("model", config.model + (f" (from {config.init})" if config.init else "")),
            ("steps", f"{config.steps} × batch {config.batch_size} × {config.data.patch}² patches"),
            ("learning rate", f"G {config.lr:g}"
             + (f", D {config.d_lr:g} every {config.d_every} step(s)" if discriminators else "")
             + ("" if config.lr_schedule == "constant" else f"; {config.lr_schedule} schedule")),
            ("RAW", config.data.raw_dir),
        ]
        if config.data.rgb_dir:
            facts.append(("RGB", config.data.rgb_dir))
        if config.mode != "stage1":
            terms = {k: v for k, v in config.losses.multipliers().items() if v > 0}
            facts.append(("loss", ", ".join(f"{k} {v:g}" for k, v in terms.items())
                          + f"; backbones {config.losses.profile}, DLA {'on' if config.losses.dla else 'off'}"))
    return facts
