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
summary (Markdown and JSON) and the visual report ``report.html`` (:mod:`unisp.eval.report`).
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

import torch

from unisp.config import load_config
from unisp.eval.evaluate import EvalResult, evaluate_images
from unisp.fileio import list_images, read_rgb, write_bytes, write_image, write_text
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import TRAINING_TARGET, ISPConfig, render_frame
from unisp.process import run_tiled
from unisp.raw.io import find_raw_files, read_raw
from unisp.raw.summary import log_summary
from unisp.synth.camera import preset_ccm
from unisp.synth.unprocess import SensorModel

log = logging.getLogger(__name__)

#: The bundled real frame (see src/unisp/assets/SOURCES.md).
SAMPLE_RAW = "openisp_1920x1080_rggb10.png"
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
    from unisp.eval.report import try_write_report
    from unisp.models.checkpoint import load_model
    from unisp.synth.dataset import synthesize_folder
    from unisp.train.config import TrainConfig
    from unisp.train.loop import train

    out = Path(out)
    started = time.perf_counter()
    reference_model = None
    if reference is not None:  # a bad file is reported now, not after minutes of training
        from unisp.models.reference import load_reference

        reference_model = load_reference(reference).eval()

    # 1. Data.
    raw_side, held_out, rgb = demo_photos()
    data = out / "data"
    making = Stage(progress, "making synthetic RAW", len(list_images(raw_side)) + len(list_images(held_out)))
    synthesize_folder(raw_side, data / "train", seed=seed, camera=DEMO_CAMERA, shot_gains=True, progress=making.advance)
    synthesize_folder(held_out, data / "test", seed=seed + 1, camera=DEMO_CAMERA, shot_gains=True, progress=making.advance)
    common = [
        f"data.raw_dir={data / 'train' / 'raw'}",
        f"data.val_dir={data / 'test' / 'raw'}",
        f"data.val_rgb_dir={data / 'test' / 'rgb'}",
        f"data.rgb_dir={rgb}",
        f"seed={seed}",
        "tensorboard=false",
    ]
    if settings.batch_size is not None:
        common.append(f"batch_size={settings.batch_size}")
    common += settings.overrides

    # 2. Stage 1.
    t0 = time.perf_counter()
    stage1_recipe = load_config(
        TrainConfig,
        asset(DEMO_RECIPE),
        [
            *common,
            "mode=stage1",
            "pixel.l1=1",
            "losses.dla=false",
            f"steps={settings.stage1_steps}",
            f"lr={settings.stage1_lr}",
            f"data.patch={settings.stage1_patch}",
            f"val_every={settings.stage1_steps}",
            f"ckpt_every={settings.stage1_steps}",
        ],
    )
    first = Stage(progress, "stage 1: learning the classical render", stage1_recipe.steps)
    # overwrite: a demo run again replaces its own runs.
    train(stage1_recipe, out / "stage1", overwrite=True, progress=lambda step, _: first.set(step))
    stage1_seconds = time.perf_counter() - t0

    # 3. Stage 2: unpaired, from the stage-1 model.
    t0 = time.perf_counter()
    overrides = [*common, f"init={out / 'stage1' / 'model.safetensors'}"]
    if settings.stage2_steps is not None:
        overrides += [f"steps={settings.stage2_steps}", f"val_every={settings.stage2_steps}", f"ckpt_every={settings.stage2_steps}"]
    stage2_recipe = load_config(TrainConfig, asset(DEMO_RECIPE), overrides)
    second = Stage(progress, "stage 2: unpaired training", stage2_recipe.steps)
    stage2_summary = train(stage2_recipe, out / "stage2", overwrite=True, progress=lambda step, _: second.set(step))
    stage2_seconds = time.perf_counter() - t0

    # 4. Held-out photos against ground truth.
    stage1, _ = load_model(out / "stage1" / "model.safetensors")
    stage2, _ = load_model(out / "stage2" / "model.safetensors")
    test_files = find_raw_files(data / "test" / "raw")
    names = [f.stem for f in test_files]
    frames = [read_raw(f) for f in test_files]
    log_summary(frames, "held-out")
    truths = [read_rgb(data / "test" / "rgb" / f"{n}.png") for n in names]
    classical = {XHAT_ROW: TRAINING_TARGET, **{f"classical ({m})": ISPConfig(demosaic=m) for m in DEMO_METHODS}}
    learned = {"stage 1 (efficient_isp)": stage1, "stage 2, unpaired (efficient_isp)": stage2}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in [*classical, *learned]}
    scoring = Stage(progress, "evaluating on the held-out photos", len(frames))
    for fr in frames:
        for name, config in classical.items():
            outputs[name].append(render_frame(fr, config))
        for name, model in learned.items():
            outputs[name].append(run_tiled(model, fr))
        scoring.advance()
    results = {k: evaluate_images(v, truths, names, metrics=DEMO_METRICS) for k, v in outputs.items()}
    shown = ("classical (menon)", "stage 1 (efficient_isp)", "stage 2, unpaired (efficient_isp)")
    for i, name in enumerate(names):
        write_image(out / "compare" / f"{name}.png", side_by_side([truths[i], *(outputs[k][i] for k in shown)]))

    # 5. The bundled real frame.
    sample = read_raw(asset(SAMPLE_RAW))
    log_summary([sample], "bundled frame")
    models = {"stage1": stage1, "stage2": stage2, **({"reference": reference_model} if reference_model is not None else {})}
    rendering = Stage(progress, "rendering the bundled frame", 1 + len(models))
    renders = {"classical": render_frame(sample, ISPConfig())}  # `unisp render`'s defaults
    rendering.advance()
    for key, model in models.items():
        renders[key] = run_tiled(model, sample)
        rendering.advance()
    for key, image in renders.items():
        write_image(out / f"sample_{key}.png", apply_orientation(image, sample.orientation))

    device = stage2_summary["device"]
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
        f"{stage1_recipe.steps} steps of {stage1_recipe.batch_size} × {stage1_recipe.data.patch}² RAW patches, "
        f"{stage1_seconds:.0f} s on {device}.",
        f"- stage 2: unpaired, unisp's default recipe (configs/unpaired.yaml: "
        + ", ".join(f"{k} {v:g}" for k, v in stage2_summary["terms"].items())
        + f"), {stage2_recipe.steps} steps of {stage2_recipe.batch_size} × {stage2_recipe.data.patch}² "
        f"patches, {stage2_seconds:.0f} s on {device}.",
        "",
        "Held-out photos against ground truth (RGB, [0, 1], full image, data range 1; mean over "
        f"{len(names)} images). X̂ is the paper's classical render and the stage-1 target (demosaic, "
        "as-shot white balance, sRGB curve); the other classical rows add the file's colour matrix: "
        "full metadata, which a learned ISP never sees:",
        "",
        *table(results),
        "",
        "Side by side in `compare/`: ground truth, " + ", ".join(shown) + ".",
        "",
        "Bundled real sensor frame (fast-openISP test image, 1920×1080 RGGB, 10-bit): "
        + ", ".join(f"`sample_{k}.png`" for k in renders)
        + ". A learned ISP is specific to the camera it was trained on: neither the demo's models "
        "(a synthetic sensor) nor the paper's released models (Zurich RAW-to-RGB's Huawei P20, "
        "Fujifilm UltraISP's MediaTek sensor) have seen this sensor's colour response.",
        "",
        f"Total time {time.perf_counter() - started:.0f} s.",
    ]
    summary = "\n".join(lines) + "\n"
    write_text(out / "summary.md", summary)
    record = {
        "held_out": names,
        "mean": {name: result.means for name, result in results.items()},
        "stage1_seconds": round(stage1_seconds, 1),
        "stage2_seconds": round(stage2_seconds, 1),
        "sample_renders": sorted(renders),
    }
    write_text(out / "summary.json", json.dumps(record, indent=2) + "\n")
    report = try_write_report(out)  # a failed report is one warning: the results above are written
    if report is not None:
        log.info("report: %s", report)
    return summary
