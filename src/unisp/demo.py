"""``unisp demo``: the main job on the embedded default data, with no download.

1. Data: the 24 Kodak photographs that ship with unisp (``assets/kodak``, 250×250), split by
   position into three disjoint groups (:func:`split_photos`): the RAW side, unprocessed into
   noisy 10-bit RAW by one synthetic camera (:data:`DEMO_CAMERA`: one colour matrix and noise
   level; exposure and white balance drawn per shot, as a phone's are, and recorded in each
   file); held-out photos, unprocessed the same way and scored against their ground truth; and
   the unrelated "good photos" of unpaired training (other scenes).
2. Stage 1: the Efficient ISP learns the classical render of the training RAW (no RGB needed).
3. Stage 2: unpaired training from the stage-1 model with unisp's default recipe
   (``configs/unpaired.yaml``, docs/TRAINING.md).
4. The held-out photos against their ground truth: the paper's classical render X̂ (demosaic +
   as-shot white balance + sRGB curve, the stage-1 target), the classical pipeline with the full
   metadata (as-shot white balance and colour matrix; three demosaicing methods), stage 1 and
   stage 2.
5. The bundled real sensor frame through the classical pipeline and the trained models.

It writes a side-by-side comparison per held-out image, the renders of the real frame, a
summary (Markdown and JSON) and the visual report ``report.html`` (:mod:`unisp.eval.report`). The
report learns the folder's layout only from the manifest in ``summary.json``
(:class:`unisp.eval.report.DemoManifest`), so the demo may change its layout without the report.
The recipe of stage 2 is ``configs/unpaired.yaml`` (a copy ships in the package as
``unisp/assets/unpaired.yaml``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from unisp.config import load_config
from unisp.eval.evaluate import EvalResult, evaluate_images
from unisp.eval.report import MANIFEST_KEY, DemoManifest, try_write_report
from unisp.fileio import list_images, read_rgb, write_bytes, write_image, write_text
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import TRAINING_TARGET, ISPConfig, render_frame
from unisp.models.tiled import run_tiled
from unisp.raw.io import find_raw_files, read_raw
from unisp.raw.summary import log_summary
from unisp.synth.camera import preset_ccm
from unisp.synth.unprocess import SensorModel
from unisp.train.run import MODEL_FILE, SUMMARY_FILE

if TYPE_CHECKING:
    from unisp.train.config import TrainConfig

log = logging.getLogger(__name__)

#: The bundled real frame (see src/unisp/assets/SOURCES.md).
SAMPLE_RAW = "openisp_1920x1080_rggb10.png"
#: What that frame is, as the report names it.
SAMPLE_NAME = "bundled frame (fast-openISP, 1920×1080 RGGB 10-bit)"
#: The stage-2 recipe inside the package (identical to configs/unpaired.yaml; a test checks).
DEMO_RECIPE = "unpaired.yaml"
#: The packaged photos (the Kodak PhotoCD set, 250×250; assets/SOURCES.md) ...
PHOTOS = "kodak"
#: ... of which every TEST_EVERY-th (sorted by name) is held out with its ground truth; the others
#: alternate between the RAW side and the RGB side: 9 RAW, 9 RGB, 6 held out.
TEST_EVERY = 4
#: The demo's one camera: the colour matrix of Brooks et al.'s Huawei Nexus 6P (a phone), 10 bits,
#: shot noise 0.004 (a phone at a moderate ISO: the upper third of Brooks et al.'s log-uniform range,
#: 1e-4 to 1.2e-2; at 0.0011, their range's geometric middle, the classical render is nearly clean and
#: the demo's 400-step stage 1 ends 1.8 dB below it, see docs/RESULTS.md) with read noise from their
#: line log(read) = 2.18 · log(shot) + 1.20, and the photos' tone curve
#: inverted; each shot draws its own exposure and white balance (``synthesize_folder(shot_gains=True)``),
#: recorded in its file.
DEMO_CAMERA = SensorModel(bits=10, rgb2cam=preset_ccm("huawei_nexus_6p"), shot_noise=4e-3, read_noise=1.97e-5, tone_curve=True)
#: Demosaicing methods of the classical rows, cheapest first.
DEMO_METHODS = ("bilinear", "malvar", "ahd", "menon")
#: Row name of the paper's classical render X̂ (demosaic + white balance + gamma; the stage-1 target).
XHAT_ROW = f"classical X̂ ({TRAINING_TARGET.demosaic}, no colour matrix)"
#: Row names of the two trained stages.
STAGE1_ROW = "stage 1 (efficient_isp)"
STAGE2_ROW = "stage 2, unpaired (efficient_isp)"
#: The rows shown in each side-by-side image of ``compare/``, after the ground truth.
COMPARE_ROWS = (f"classical ({DEMO_METHODS[-1]})", STAGE1_ROW, STAGE2_ROW)
#: Key of ``summary.json`` holding the held-out table: row → metric → mean.
TABLE_KEY = "mean"
#: Metrics of the summary table (LPIPS needs downloaded weights; see docs/EVAL.md).
DEMO_METRICS = ("psnr", "ssim", "delta_e2000")
#: Environment variable that moves the cache of generated demo inputs (default ~/.cache/unisp).
CACHE_ENV = "UNISP_CACHE"

#: ``progress(stage, done, total)``: how far a stage of the demo is (see :func:`run_demo`).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoSettings:
    """Lengths of the demo's two training stages (the stage-2 recipe is otherwise configs/unpaired.yaml).

    Attributes:
        stage1_steps, stage1_lr, stage1_patch: stage 1 (a higher learning rate than the paper's
            5e-4 because the run is about 50× shorter).
        stage2_steps: stage 2; ``None`` keeps the recipe's.
        batch_size: patches per step in both stages; ``None`` keeps the recipe's.
        overrides: more ``key=value`` recipe overrides for both stages (a benchmark's variant,
            e.g. ``("data.input_wb=as_shot",)``).
    """

    stage1_steps: int = 400
    stage1_lr: float = 3e-3
    stage1_patch: int = 96
    stage2_steps: int | None = None
    batch_size: int | None = None
    overrides: tuple[str, ...] = ()


@dataclass
class Stage:
    """One stage's count of work done, reported through ``progress`` (nothing without one)."""

    progress: Progress | None
    name: str
    total: int
    done: int = 0

    def advance(self, count: int = 1) -> None:
        """``count`` more units done."""
        self.set(self.done + count)

    def set(self, done: int) -> None:
        """``done`` units done in all."""
        self.done = done
        if self.progress is not None:
            self.progress(self.name, done, self.total)


def cache_dir() -> Path:
    """Where generated demo inputs live: ``$UNISP_CACHE`` or ``~/.cache/unisp``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "unisp"


def asset(name: str) -> Path:
    """Path of a file shipped in ``unisp/assets``."""
    return Path(str(resources.files("unisp") / "assets" / name))


def split_photos() -> dict[str, list[Path]]:
    """``{"raw", "test", "rgb"}`` → the packaged photos of each group (disjoint; see :data:`TEST_EVERY`)."""
    photos = list_images(asset(PHOTOS))
    test = photos[TEST_EVERY - 1 :: TEST_EVERY]
    rest = [p for p in photos if p not in test]
    return {"raw": rest[0::2], "test": test, "rgb": rest[1::2]}


def demo_photos() -> tuple[Path, Path, Path]:
    """``(raw side, held out, rgb side)`` photo folders, copied from the package into the cache at first use."""
    root = cache_dir() / "demo-photos-v2"  # v2: the Kodak split (the first demo used scikit-image's photos)
    folders = {side: root / side for side in ("raw", "test", "rgb")}
    for side, paths in split_photos().items():
        for path in paths:
            if not (folders[side] / path.name).is_file():
                write_bytes(folders[side] / path.name, path.read_bytes())
    return folders["raw"], folders["test"], folders["rgb"]


def side_by_side(images: list[torch.Tensor], gap: int = 8) -> torch.Tensor:
    """Concatenate ``(3, H, W)`` images horizontally with white gaps."""
    height = max(im.shape[-2] for im in images)
    parts = []
    for im in images:
        pad = torch.ones(3, height, im.shape[-1])
        pad[:, : im.shape[-2]] = im
        parts += [pad, torch.ones(3, height, gap)]
    return torch.cat(parts[:-1], dim=-1)


def table(rows: dict[str, EvalResult]) -> list[str]:
    """Markdown rows: one line per method with its mean metrics."""
    lines = ["| method | PSNR dB ↑ | SSIM ↑ | ΔE2000 ↓ |", "|---|---|---|---|"]
    for name, result in rows.items():
        m = result.means
        lines.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {m['delta_e2000']:.2f} |")
    return lines


@dataclass(frozen=True)
class DemoData:
    """Where the demo's training and held-out data are (:func:`make_data`)."""

    train_raw: Path  #: the synthetic RAW of the RAW side
    test_raw: Path  #: the held-out synthetic RAW ...
    test_rgb: Path  #: ... and its ground truth (the photos they were made from)
    rgb: Path  #: the unrelated photos of unpaired training


@dataclass(frozen=True)
class TrainedStage:
    """One finished training stage (:func:`train_stage`)."""

    recipe: TrainConfig  #: the recipe it ran
    summary: dict[str, Any]  #: what :func:`unisp.train.loop.train` returned
    seconds: float  #: wall time, reading the recipe included
    model: Path  #: its model file


@dataclass(frozen=True)
class HeldOut:
    """The held-out photos rendered by every row of the table and scored (:func:`evaluate_held_out`)."""

    names: list[str]  #: the photos, by file stem
    truths: list[torch.Tensor]  #: their ground truth, in that order
    outputs: dict[str, list[torch.Tensor]]  #: row → its render of each photo
    results: dict[str, EvalResult]  #: row → its scores against the ground truth


def load_reference_model(reference: Path | None) -> torch.nn.Module | None:
    """One of the paper's released models (``--reference``), or ``None`` without one."""
    if reference is None:
        return None
    from unisp.models.reference import load_reference

    return load_reference(reference).eval()


def make_data(folder: Path, seed: int, progress: Progress | None) -> DemoData:
    """Unprocess the RAW side (``folder/train``) and the held-out photos (``folder/test``, with their
    ground truth) into noisy RAW of :data:`DEMO_CAMERA`; the unpaired photos stay in the cache."""
    from unisp.synth.dataset import synthesize_folder

    raw_side, held_out, rgb = demo_photos()
    making = Stage(progress, "making synthetic RAW", len(list_images(raw_side)) + len(list_images(held_out)))
    synthesize_folder(raw_side, folder / "train", seed=seed, camera=DEMO_CAMERA, shot_gains=True, progress=making.advance)
    synthesize_folder(held_out, folder / "test", seed=seed + 1, camera=DEMO_CAMERA, shot_gains=True, progress=making.advance)
    return DemoData(train_raw=folder / "train" / "raw", test_raw=folder / "test" / "raw", test_rgb=folder / "test" / "rgb", rgb=rgb)


def recipe_overrides(data: DemoData, seed: int, settings: DemoSettings) -> list[str]:
    """The ``key=value`` overrides both stages share: the data, the seed, the batch size, ``settings.overrides``."""
    common = [
        f"data.raw_dir={data.train_raw}",
        f"data.val_dir={data.test_raw}",
        f"data.val_rgb_dir={data.test_rgb}",
        f"data.rgb_dir={data.rgb}",
        f"seed={seed}",
        "tensorboard=false",
    ]
    if settings.batch_size is not None:
        common.append(f"batch_size={settings.batch_size}")
    return [*common, *settings.overrides]


def stage1_overrides(settings: DemoSettings) -> list[str]:
    """Stage 1 on the stage-2 recipe: learn the classical render by L1, no DLA, the demo's short schedule."""
    steps = settings.stage1_steps
    return [
        "mode=stage1",
        "pixel.l1=1",
        "losses.dla=false",
        f"steps={steps}",
        f"lr={settings.stage1_lr}",
        f"data.patch={settings.stage1_patch}",
        f"val_every={steps}",
        f"ckpt_every={steps}",
    ]


def stage2_overrides(init: Path, settings: DemoSettings) -> list[str]:
    """Stage 2: the recipe as it is, from the stage-1 model ``init`` (and ``settings.stage2_steps`` long if given)."""
    overrides = [f"init={init}"]
    if settings.stage2_steps is not None:
        steps = settings.stage2_steps
        overrides += [f"steps={steps}", f"val_every={steps}", f"ckpt_every={steps}"]
    return overrides


def train_stage(run: Path, overrides: list[str], name: str, progress: Progress | None) -> TrainedStage:
    """Train the packaged recipe (:data:`DEMO_RECIPE`) with ``overrides`` into the run folder ``run``, timed.

    An earlier run in ``run`` is replaced: a demo run again replaces its own runs.
    """
    from unisp.train.config import TrainConfig
    from unisp.train.loop import train

    t0 = time.perf_counter()
    recipe = load_config(TrainConfig, asset(DEMO_RECIPE), overrides)
    stage = Stage(progress, name, recipe.steps)
    summary = train(recipe, run, overwrite=True, progress=lambda step, _: stage.set(step))
    return TrainedStage(recipe=recipe, summary=summary, seconds=time.perf_counter() - t0, model=run / MODEL_FILE)


def evaluate_held_out(data: DemoData, learned: dict[str, torch.nn.Module], progress: Progress | None) -> HeldOut:
    """Render the held-out RAW with the classical rows (X̂, then :data:`DEMO_METHODS` with full
    metadata) and the ``learned`` models (row → model), and score each against ground truth."""
    test_files = find_raw_files(data.test_raw)
    names = [f.stem for f in test_files]
    frames = [read_raw(f) for f in test_files]
    log_summary(frames, "held-out")
    truths = [read_rgb(data.test_rgb / f"{n}.png") for n in names]
    classical = {XHAT_ROW: TRAINING_TARGET, **{f"classical ({m})": ISPConfig(demosaic=m) for m in DEMO_METHODS}}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in [*classical, *learned]}
    scoring = Stage(progress, "evaluating on the held-out photos", len(frames))
    for fr in frames:
        for name, config in classical.items():
            outputs[name].append(render_frame(fr, config))
        for name, model in learned.items():
            outputs[name].append(run_tiled(model, fr))
        scoring.advance()
    results = {k: evaluate_images(v, truths, names, metrics=DEMO_METRICS) for k, v in outputs.items()}
    return HeldOut(names=names, truths=truths, outputs=outputs, results=results)


def write_compare(folder: Path, held: HeldOut) -> None:
    """Write one side-by-side image per held-out photo into ``folder`` (ground truth, then :data:`COMPARE_ROWS`)."""
    for i, name in enumerate(held.names):
        write_image(folder / f"{name}.png", side_by_side([held.truths[i], *(held.outputs[k][i] for k in COMPARE_ROWS)]))


def render_bundled_frame(out: Path, models: dict[str, torch.nn.Module], progress: Progress | None) -> dict[str, str]:
    """Render the bundled real frame (:data:`SAMPLE_RAW`) classically and with each model (key → model)
    into ``out/sample_<key>.png``, turned upright; returns key → file name, the classical render first."""
    sample = read_raw(asset(SAMPLE_RAW))
    log_summary([sample], "bundled frame")
    rendering = Stage(progress, "rendering the bundled frame", 1 + len(models))
    renders = {"classical": render_frame(sample, ISPConfig())}  # `unisp render`'s defaults
    rendering.advance()
    for key, model in models.items():
        renders[key] = run_tiled(model, sample)
        rendering.advance()
    for key, image in renders.items():
        write_image(out / f"sample_{key}.png", apply_orientation(image, sample.orientation))
    return {key: f"sample_{key}.png" for key in renders}


def summary_markdown(first: TrainedStage, second: TrainedStage, held: HeldOut, samples: dict[str, str], seconds: float) -> str:
    """``summary.md``: what the demo did, the held-out table and where the images are (``seconds``: the whole run)."""
    device = second.summary["device"]
    split = split_photos()
    lines = [
        "# unisp demo",
        "",
        f"The 24 Kodak photographs shipped with unisp (250×250), in three disjoint groups: "
        f"{len(split['raw'])} become noisy 10-bit RAW from one synthetic camera (Brooks et al. unprocessing; "
        f"the Nexus 6P colour matrix, exposure and white balance per shot), {len(split['test'])} more are held out "
        f"with their ground truth, and {len(split['rgb'])} others are the unrelated photos of unpaired training.",
        "",
        f"- stage 1: efficient_isp learns the classical render (demosaic + white balance + sRGB curve), "
        f"{first.recipe.steps} steps of {first.recipe.batch_size} × {first.recipe.data.patch}² RAW patches, "
        f"{first.seconds:.0f} s on {device}.",
        "- stage 2: unpaired, unisp's default recipe (configs/unpaired.yaml: "
        + ", ".join(f"{k} {v:g}" for k, v in second.summary["terms"].items())
        + f"), {second.recipe.steps} steps of {second.recipe.batch_size} × {second.recipe.data.patch}² "
        f"patches, {second.seconds:.0f} s on {device}.",
        "",
        "Held-out photos against ground truth (RGB, [0, 1], full image, data range 1; mean over "
        f"{len(held.names)} images). X̂ is the paper's classical render and the stage-1 target (demosaic, "
        "as-shot white balance, sRGB curve); the other classical rows add the file's colour matrix: "
        "full metadata, which a learned ISP never sees:",
        "",
        *table(held.results),
        "",
        "Side by side in `compare/`: ground truth, " + ", ".join(COMPARE_ROWS) + ".",
        "",
        "Bundled real sensor frame (fast-openISP test image, 1920×1080 RGGB, 10-bit): "
        + ", ".join(f"`{name}`" for name in samples.values())
        + ". A learned ISP is specific to the camera it was trained on: neither the demo's models "
        "(a synthetic sensor) nor the paper's released models (Zurich RAW-to-RGB's Huawei P20, "
        "Fujifilm UltraISP's MediaTek sensor) have seen this sensor's colour response.",
        "",
        f"Total time {seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def summary_record(
    out: Path, data: DemoData, stages: tuple[TrainedStage, TrainedStage], held: HeldOut, samples: dict[str, str]
) -> dict[str, Any]:
    """``summary.json``: the held-out table (:data:`TABLE_KEY`), the stages' times, and the manifest
    the report reads (:class:`unisp.eval.report.DemoManifest`; paths relative to ``out``)."""
    first, second = stages

    def relative(path: Path) -> str:
        return path.relative_to(out).as_posix()

    manifest = DemoManifest(
        facts=[("held-out images", ", ".join(held.names)), ("stage 1", f"{round(first.seconds, 1)} s"),
               ("stage 2", f"{round(second.seconds, 1)} s")],
        table=TABLE_KEY,
        held_out=held.names,
        held_out_raw=relative(data.test_raw),
        held_out_truth=relative(data.test_rgb),
        classical=DEMO_METHODS[-1],
        stages={"stage 1": relative(first.model), "stage 2": relative(second.model)},
        sample_name=SAMPLE_NAME,
        samples={key: samples[key] for key in sorted(samples, key=lambda k: (k != "classical", k))},  # classical first
    )
    return {
        "held_out": held.names,
        TABLE_KEY: {name: result.means for name, result in held.results.items()},
        "stage1_seconds": round(first.seconds, 1),
        "stage2_seconds": round(second.seconds, 1),
        "sample_renders": sorted(samples),
        MANIFEST_KEY: manifest.to_json(),
    }


def run_demo(
    out: Path,
    seed: int = 0,
    reference: Path | None = None,
    settings: DemoSettings = DemoSettings(),
    progress: Progress | None = None,
) -> str:
    """Run the demo into ``out`` and return the summary as Markdown.

    ``progress(stage, done, total)`` is called as each stage goes: making the synthetic RAW
    (photos), stage 1 and stage 2 (training steps), scoring the held-out photos and rendering the
    bundled frame (images).
    """
    from unisp.models.checkpoint import load_model

    out = Path(out)
    started = time.perf_counter()
    reference_model = load_reference_model(reference)  # a bad file is reported now, not after minutes of training
    data = make_data(out / "data", seed, progress)
    common = recipe_overrides(data, seed, settings)
    first = train_stage(out / "stage1", [*common, *stage1_overrides(settings)], "stage 1: learning the classical render", progress)
    second = train_stage(out / "stage2", [*common, *stage2_overrides(first.model, settings)], "stage 2: unpaired training", progress)
    stage1, stage2 = load_model(first.model)[0], load_model(second.model)[0]
    held = evaluate_held_out(data, {STAGE1_ROW: stage1, STAGE2_ROW: stage2}, progress)
    write_compare(out / "compare", held)
    models = {"stage1": stage1, "stage2": stage2, **({"reference": reference_model} if reference_model is not None else {})}
    samples = render_bundled_frame(out, models, progress)
    summary = summary_markdown(first, second, held, samples, time.perf_counter() - started)
    write_text(out / "summary.md", summary)
    record = summary_record(out, data, (first, second), held, samples)
    write_text(out / SUMMARY_FILE, json.dumps(record, indent=2) + "\n")
    report = try_write_report(out)  # a failed report is one warning: the results above are written
    if report is not None:
        log.info("report: %s", report)
    return summary
