"""Choosing a checkpoint without labels: rank a run's checkpoints by a label-free score.

The paper (and its released code) picks the checkpoint with the best PSNR against paired
validation ground truth, which a user with unpaired data does not have. Here every checkpoint
renders the run's validation RAW files and is scored on three distances, none of which needs
ground truth (the protocol is written out in docs/EVAL.md, "Choosing a checkpoint without labels"):

- ``feature``: KID (Bińkowski et al., ICLR 2018: unbiased MMD² with the cubic polynomial kernel)
  between the frozen ``lite`` backbone's colour-branch tokens (Gaussian blur 21×21, σ = 3, as
  the colour discriminator sees them) of the outputs and of the target RGB set;
- ``colour``: the Fréchet distance between Gaussians fitted to the CIELAB pixels of the outputs
  and of the target RGB set (a global cast or a wrong saturation moves it);
- ``content``: ``1 − s``, where ``s`` is SSIM's structure term (the local correlation, Wang et
  al. 2004) between the luma of each output and the luma of the classical render of the same RAW
  file with its own metadata: detail kept or lost, whatever the colours and tone curve.

The score is the weighted sum of the logarithms of the distances, each taken relative to the
best checkpoint's value of that term (lower is better): it ranks by the weighted product of the
distances, so the order does not depend on any term's units or scale, a term that barely changes
barely counts, and adding or removing a checkpoint does not reorder the others (except through
the floor of :data:`LOG_FLOOR_FRACTION`). The score orders
the checkpoints of one run; its values are not comparable between runs.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from unisp.errors import UnispError
from unisp.metrics import SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, srgb_to_lab
from unisp.fileio import list_images, read_rgb, write_text
from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.losses.backbones import FrozenBackbones, build_backbones
from unisp.losses.colour import colour_features, gaussian_blur
from unisp.losses.config import UnpairedLossConfig
from unisp.models.checkpoint import input_options, load_model
from unisp.models.tiled import run_tiled
from unisp.raw.frame import RawFrame
from unisp.raw.options import RawOptions
from unisp.train.run import CHECKPOINTS_DIR, SELECT_FILE

log = logging.getLogger(__name__)

#: Terms of the score, in table order.
TERMS = ("feature", "colour", "content")
#: Default weight of each normalised term: equal, so no term is preferred without evidence.
DEFAULT_WEIGHTS: dict[str, float] = {"feature": 1.0, "colour": 1.0, "content": 1.0}
#: Checkpoint files of a run folder (``unisp.train.run.RunDir.save``): ``step_0001000.safetensors``.
CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)\.safetensors$")
#: Edge of the square crop the colour view reads: the backbones' colour input size (ViT-B/16's 224).
FEATURE_SIZE = 224
#: Blur before the colour view: the paper's colour branch (21×21, σ = 3, the loss config's
#: defaults), which leaves colour and illumination and removes most of a scene's texture.
FEATURE_BLUR_SIZE = UnpairedLossConfig.blur_size
FEATURE_BLUR_SIGMA = UnpairedLossConfig.blur_sigma
#: SSIM's structure-term constant C3 = C2 / 2 (Wang et al. 2004), C2 = (K2 · data range)².
STRUCTURE_C3 = (SSIM_K2 * 1.0) ** 2 / 2
#: KID's polynomial kernel ``k(x, y) = (xᵀy / d + 1)^3`` (Bińkowski et al. 2018, as in their code
#: and in torchmetrics' KernelInceptionDistance defaults: degree 3, γ = 1/d, coef 1).
KID_DEGREE = 3
KID_COEF = 1.0
#: Images are downsampled to at most this many pixels per side before their CIELAB pixels are
#: pooled: the colour statistics of a photo do not need more, and large photos do not outweigh small ones.
LAB_MAX_SIDE = 128
#: Luma weights of Rec. ITU-R BT.601 (Y' from gamma-encoded R'G'B'), the usual choice for SSIM on luma.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: The classical render the content term compares with: the full pipeline with the frame's own
#: metadata (as-shot white balance, colour matrix), Malvar demosaicing, no tone curve.
CONTENT_REFERENCE = ISPConfig(demosaic="malvar", white_balance="as_shot", colour_matrix="metadata", tone_curve=False)
#: Distances are floored at this fraction of the term's largest value over the checkpoints before
#: their logarithm is taken: KID's unbiased estimate can be 0 or negative when two sets match, and
#: the logarithm of such a value would be undefined or dominate the score. A term whose largest
#: value is not positive is left out of the score.
LOG_FLOOR_FRACTION = 1e-3
#: Default number of validation images scored (the training loop's ``data.val_max_images``).
DEFAULT_MAX_IMAGES = 8


# --------------------------------------------------------------------------------------------
# The three distances
# --------------------------------------------------------------------------------------------
def square_crop(image: Tensor, size: int = FEATURE_SIZE) -> Tensor:
    """The centred square of ``(3, H, W)``'s shorter side, resized (antialiased) to ``size``².

    Returns:
        ``(3, size, size)``.
    """
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[None, :, top : top + side, left : left + side].float()
    return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@torch.no_grad()
def colour_view_tokens(backbones: FrozenBackbones, images: Sequence[Tensor]) -> Tensor:
    """The colour-branch tokens of each image's :func:`square_crop`, pooled into one set.

    The crop is blurred as the colour discriminator's input is (:data:`FEATURE_BLUR_SIZE`,
    :data:`FEATURE_BLUR_SIGMA`) before the backbone's colour view.

    Args:
        backbones: frozen networks (:func:`unisp.losses.backbones.build_backbones`).
        images: ``(3, H, W)`` sRGB in [0, 1].

    Returns:
        ``(N · T, D)`` float64 tokens (``T`` tokens of width ``D`` per image; 49 × 320 for ``lite``).
    """
    device = next(backbones.parameters()).device
    tokens = [
        colour_features(square_crop(im)[None].to(device), backbones, FEATURE_BLUR_SIZE, FEATURE_BLUR_SIGMA)[0]
        for im in images
    ]
    return torch.cat(tokens).double().cpu()


def kid(x: Tensor, y: Tensor) -> float:
    """Kernel inception distance: the unbiased estimate of MMD² with a cubic polynomial kernel.

    Args:
        x: ``(m, d)`` samples, m ≥ 2.
        y: ``(n, d)`` samples, n ≥ 2.

    Returns:
        The estimate (0 in expectation for two samples of one distribution; may be slightly negative).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise UnispError(f"KID needs two (n ≥ 2, d) sample sets of equal width, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    d = x.shape[1]

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.T / d + KID_COEF) ** KID_DEGREE

    m, n = len(x), len(y)
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


def lab_pixels(images: Sequence[Tensor], max_side: int = LAB_MAX_SIDE) -> Tensor:
    """CIELAB values of every pixel of the images, each first downsampled to at most ``max_side`` per side.

    Returns:
        ``(P, 3)`` float64 ``(L*, a*, b*)``.
    """
    out = []
    for image in images:
        h, w = image.shape[-2:]
        scale = min(1.0, max_side / max(h, w))
        small = image[None].double()
        if scale < 1.0:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            small = F.interpolate(small, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(srgb_to_lab(small.clamp(0, 1))[0].flatten(1).T)
    return torch.cat(out)


def frechet_distance(x: Tensor, y: Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance between Gaussians fitted to two sample sets.

    ``‖μx − μy‖² + Tr(Σx + Σy − 2 (Σx Σy)^½)``; the trace of the square root is the sum of the
    square roots of the eigenvalues of ``Σx Σy`` (real and ≥ 0 for covariance matrices).

    Args:
        x: ``(m, d)`` samples; y: ``(n, d)`` samples (m, n ≥ 2).

    Returns:
        The distance, ≥ 0 (in the samples' units squared).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise UnispError(f"Fréchet distance needs two (n ≥ 2, d) sample sets of equal width, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    mx, my = x.mean(0), y.mean(0)
    cx, cy = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    eig = torch.linalg.eigvals(cx @ cy).real.clamp_min(0.0)
    value = (mx - my).pow(2).sum() + cx.trace() + cy.trace() - 2 * eig.sqrt().sum()
    return float(value.clamp_min(0.0))


def luma(image: Tensor) -> Tensor:
    """``(..., 3, H, W)`` gamma-encoded RGB → ``(..., 1, H, W)`` BT.601 luma."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device).reshape(3, 1, 1)
    return (image * weights).sum(-3, keepdim=True)


def structure_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Mean of SSIM's structure term ``(σab + C3) / (σa σb + C3)`` over the pixels.

    Local statistics use the protocol's SSIM window (11×11 Gaussian, σ = 1.5, reflect padding),
    so the term is the local correlation of the two images: 1 for ``b = αa + β`` with α > 0,
    whatever the brightness and contrast, lower where detail differs.

    Args:
        a, b: ``(B, C, H, W)`` images of equal shape, at least 11 px per side.

    Returns:
        ``(B,)`` mean over channels and pixels.
    """
    def blur(x: Tensor) -> Tensor:
        return gaussian_blur(x, SSIM_WINDOW, SSIM_SIGMA)

    mu_a, mu_b = blur(a), blur(b)
    var_a = (blur(a * a) - mu_a**2).clamp_min(0.0)
    var_b = (blur(b * b) - mu_b**2).clamp_min(0.0)
    cov = blur(a * b) - mu_a * mu_b
    s = (cov + STRUCTURE_C3) / ((var_a * var_b).sqrt() + STRUCTURE_C3)
    return s.flatten(1).mean(1)


def content_distance(outputs: Sequence[Tensor], renders: Sequence[Tensor]) -> float:
    """Mean over images of ``1 − s`` (:func:`structure_similarity`) between the luma of each output
    and the luma of its classical render."""
    values = [
        1.0 - float(structure_similarity(luma(out.double())[None], luma(ref.double())[None])[0])
        for out, ref in zip(outputs, renders, strict=True)
    ]
    return sum(values) / len(values)


# --------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------
@dataclass
class TargetSet:
    """What the outputs are compared with: the target photos' tokens and CIELAB pixels."""

    tokens: Tensor
    lab: Tensor
    count: int


@dataclass
class Candidate:
    """One checkpoint's distances, normalised terms and score (lower is better)."""

    name: str
    step: int | None
    distances: dict[str, float]
    normalised: dict[str, float] = field(default_factory=dict)
    score: float = float("nan")


@dataclass
class Ranking:
    """Checkpoints best first, the pick, and how they were scored."""

    candidates: list[Candidate]
    weights: dict[str, float]
    images: list[str]
    rgb_count: int
    notes: list[str] = field(default_factory=list)

    @property
    def pick(self) -> Candidate:
        return self.candidates[0]

    def to_json(self) -> dict:
        return {
            "pick": self.pick.name,
            "pick_step": self.pick.step,
            "weights": self.weights,
            "validation_images": self.images,
            "rgb_images": self.rgb_count,
            "notes": self.notes,
            "ranking": [asdict(c) for c in self.candidates],
        }

    def format_table(self) -> str:
        """A ranked plain-text table: rank, checkpoint, the three distances, the score; then the pick."""
        header = ["rank", "checkpoint", "feature (KID)", "colour (Lab FD)", "content (1-s Y)", "score ↓"]
        rows = [
            [str(i + 1), c.name, f"{c.distances['feature']:.5f}", f"{c.distances['colour']:.3f}",
             f"{c.distances['content']:.4f}", f"{c.score:.3f}"]
            for i, c in enumerate(self.candidates)
        ]
        widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
        lines.append(f"pick: {self.pick.name} (score {self.pick.score:.3f}; {len(self.images)} validation "
                     f"image(s) against {self.rgb_count} target photo(s))")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def target_files(rgb_dir: str | Path, max_images: int | None = None) -> list[Path]:
    """The target photos in ``rgb_dir`` (sorted; at most ``max_images``).

    Raises:
        UnispError: the folder is missing or holds no image.
    """
    files = list_images(rgb_dir)[:max_images]
    if not files:
        raise UnispError(f"{rgb_dir}: no RGB images to compare with")
    return files


def load_target_set(files: Sequence[Path], backbones: FrozenBackbones) -> TargetSet:
    """Read the target photos and compute what the score compares with (tokens, CIELAB pixels)."""
    images = [read_rgb(p) for p in files]
    return TargetSet(colour_view_tokens(backbones, images), lab_pixels(images), len(images))


def score_outputs(outputs: Sequence[Tensor], renders: Sequence[Tensor], target: TargetSet,
                  backbones: FrozenBackbones) -> dict[str, float]:
    """The three label-free distances of one set of outputs.

    Args:
        outputs: a checkpoint's ``(3, H, W)`` outputs in [0, 1], one per validation RAW file.
        renders: the classical render of the same files (:data:`CONTENT_REFERENCE`).
        target: the target RGB set (:func:`load_target_set`).
        backbones: the frozen networks the target tokens were computed with.

    Returns:
        ``{"feature": KID, "colour": Lab Fréchet distance, "content": 1 − structure term on luma}``.
    """
    return {
        "feature": kid(colour_view_tokens(backbones, outputs), target.tokens),
        "colour": frechet_distance(lab_pixels(outputs), target.lab),
        "content": content_distance(outputs, renders),
    }


def rank(candidates: list[Candidate], weights: dict[str, float] | None = None) -> list[Candidate]:
    """Score each candidate by ``Σ wₜ · log(dₜ / min dₜ)`` over the terms and sort best first.

    ``normalised[t]`` is ``log(dₜ / min dₜ)``: 0 for the best candidate on that term, and the
    same for any rescaling of the term. Distances are floored at :data:`LOG_FLOOR_FRACTION` of
    the term's largest value; a term whose largest value is not positive contributes 0. Ties keep
    the input order (a stable sort), so among equal scores the earlier checkpoint wins.

    Min–max normalisation (the first version) stretched every term to [0, 1] however little it
    varied, and its order depended on which other checkpoints were scored. In the quality study
    this score's pick is as good or better in every run; how often it is within 0.2 dB of the
    best checkpoint is in docs/RESULTS.md.
    """
    weights = DEFAULT_WEIGHTS if weights is None else weights
    unknown = sorted(set(weights) - set(TERMS))
    if unknown:
        raise UnispError(f"unknown score term(s) {', '.join(unknown)} (terms: {', '.join(TERMS)})")
    if not candidates:
        raise UnispError("nothing to rank")
    for term in TERMS:
        floor = LOG_FLOOR_FRACTION * max(c.distances[term] for c in candidates)
        if floor <= 0:
            for c in candidates:
                c.normalised[term] = 0.0
            continue
        best = max(floor, min(c.distances[term] for c in candidates))
        for c in candidates:
            c.normalised[term] = math.log(max(floor, c.distances[term]) / best)
    for c in candidates:
        c.score = sum(weights.get(t, 0.0) * c.normalised[t] for t in TERMS)
    return sorted(candidates, key=lambda c: c.score)


def find_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``RUN_DIR/checkpoints/step_N.safetensors``, by step.

    Raises:
        UnispError: no such file.
    """
    folder = Path(run_dir) / CHECKPOINTS_DIR
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = CHECKPOINT_PATTERN.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
    if not found:
        raise UnispError(f"{run_dir}: no checkpoints (expected {folder}/step_N.safetensors)")
    return sorted(found)


def validation_frames(run_dir: str | Path, data: str | Path | None, layout: str | None,
                      max_images: int, options: RawOptions | None = None) -> list[RawFrame]:
    """The RAW frames to score on: ``data`` when given, else the run's own validation files.

    The run's validation files are those its training loop held out (its recipe's ``data.val_dir``,
    or the seeded ``data.val_fraction`` share of ``data.raw_dir``), read with its ``data.layout``.
    Every file is read with ``options`` (the run's RAW values: see :func:`select_checkpoint`).
    """
    from unisp.config import load_config
    from unisp.raw.io import find_raw_files, read_raw
    from unisp.raw.summary import log_summary
    from unisp.train.config import TrainConfig
    from unisp.train.run import RunDir

    if data is not None:
        files = find_raw_files(data)
        layout = layout or "auto"
        where = str(data)
    else:
        config = load_config(TrainConfig, RunDir(run_dir).config_path())
        _, files = config.split_files()
        layout = layout or config.data.layout
        where = f"{run_dir}'s validation split"
        if not files:
            raise UnispError(f"{run_dir}: the run held out no validation files; give RAW files with --data DIR")
    files = files[:max_images]
    if not files:
        raise UnispError(f"{where}: no RAW files")
    frames = [read_raw(f, options, layout=layout) for f in files]
    log_summary(frames, "scoring" if data is not None else "scoring the run's validation split")
    return frames


def select_checkpoint(
    run_dir: str | Path,
    rgb_dir: str | Path,
    *,
    data: str | Path | None = None,
    layout: str | None = None,
    options: RawOptions | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_rgb: int | None = None,
    weights: dict[str, float] | None = None,
    profile: str = "lite",
    device: str | torch.device = "cpu",
    out: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Rank a run's checkpoints by the label-free score and write the ranking as JSON.

    Args:
        run_dir: a training run folder (``RUN/checkpoints/step_N.safetensors``).
        rgb_dir: photos with the look the run was trained towards (its ``data.rgb_dir``, or any
            such collection).
        data: RAW files to render instead of the run's validation split.
        layout: how to read them (default: the run's ``data.layout``, or ``auto`` with ``data``).
        options: RAW values over those the run was trained with (its last checkpoint's
            ``raw_input``, which every RAW file is read with otherwise), e.g. a camera file's.
        max_images, max_rgb: at most this many validation RAW files / target photos.
        weights: weight of each term (default :data:`DEFAULT_WEIGHTS`).
        profile: backbone profile of the feature term (``lite``; ``random`` for tests only).
        device: where the models and backbones run.
        out: JSON file (default ``RUN_DIR/select.json``).
        progress: called with ``(done, total)`` after each checkpoint.

    Returns:
        The :class:`Ranking`, best first.

    Raises:
        UnispError: no checkpoints, no RAW files, an empty RGB folder, or an unreadable file.
    """
    for key, value in (("max_images", max_images), ("max_rgb", max_rgb)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UnispError(f"{key} must be a positive integer, got {value!r}")
    checkpoints = find_checkpoints(run_dir)
    last = checkpoints[-1][1]
    last_model, last_header = load_model(last)
    trained = input_options(last, last_header, options or RawOptions())
    frames = validation_frames(run_dir, data, layout, max_images, trained)  # bad input fails before backbones load
    lacking = sum(lacks_input_gains(f, last_model.input_wb) for f in frames)
    warn_lacking_gains(lacking, len(frames), "files scored")
    small = [f.path or "frame" for f in frames if min(f.height, f.width) < SSIM_WINDOW]
    if small:
        raise UnispError(f"{small[0]}: smaller than the {SSIM_WINDOW}-px SSIM window of the content term")
    rgb_files = target_files(rgb_dir, max_rgb)
    backbones = build_backbones(profile).to(device)
    target = load_target_set(rgb_files, backbones)
    renders = [render_frame(f, CONTENT_REFERENCE) for f in frames]
    candidates = []
    for i, (step, path) in enumerate(checkpoints):
        model, _ = load_model(path)
        model = model.to(device).eval()
        outputs = [run_tiled(model, f, device=device) for f in frames]
        distances = score_outputs(outputs, renders, target, backbones)
        candidates.append(Candidate(path.name, step, distances))
        log.debug("%s: %s", path.name, distances)
        if progress is not None:
            progress(i + 1, len(checkpoints))
    notes = []
    if len(candidates) == 1:
        notes.append("one checkpoint: nothing to choose between")
    ranking = Ranking(rank(candidates, weights), dict(weights or DEFAULT_WEIGHTS),
                      [str(f.path) for f in frames], target.count, notes)
    out = Path(run_dir) / SELECT_FILE if out is None else Path(out)
    write_text(out, json.dumps(ranking.to_json(), indent=2) + "\n")
    log.info("wrote %s", out)
    return ranking
