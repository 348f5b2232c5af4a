"""The ``unisp`` command line. Subcommands only parse their arguments and call the library.

Every error a user can cause (a bad file, flag or config) is printed as one line naming what is
wrong and exits with status 2; a run over several files goes on past a bad one and lists the
failures at the end.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from unisp.errors import UnispError

log = logging.getLogger("unisp")
console = Console(stderr=True, soft_wrap=True)  # soft_wrap: an error stays on one line

app = typer.Typer(
    name="unisp",
    help="Tiny learned ISPs (camera RAW → sRGB) trained from unpaired data, and the tools around them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Exit status for every user-caused error (bad input, bad flag, unwritable output), as CLI usage errors.
EXIT_USER_ERROR = 2
#: Exit status of a folder run (render, process, synth, eval) in which some inputs failed and the
#: others were written; a run in which every input failed exits with EXIT_USER_ERROR.
EXIT_PARTIAL = 3


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every file read, and debugging detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
) -> None:
    """Set up logging for every subcommand: by default a line per folder read (not per file) and
    what the command did; each folder is described once per command."""
    from unisp.raw.summary import each_summary_once

    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # Plain lines ("info: ...", "warning: ..."), one per message, never wrapped: easy to read and to grep.
    handler = CurrentStderrHandler()
    handler.setFormatter(LevelFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    ctx.with_resource(each_summary_once())


class CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is when the record is emitted: while a progress
    bar is shown, that is rich's proxy, which prints the line above the bar instead of through it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


class LevelFormatter(logging.Formatter):
    """Lower-case level names."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)


def user_errors(fn: Callable) -> Callable:
    """Turn :class:`UnispError` into one red line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnispError as e:
            console.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


# ----------------------------------------------------------------------------------------------
# Options shared by every command that reads RAW files
# ----------------------------------------------------------------------------------------------

class Layout(str, Enum):
    auto = "auto"
    libraw = "libraw"
    zrr = "zrr"
    uispf = "uispf"
    unisp = "unisp"
    png = "png"
    npy = "npy"
    headerless = "headerless"


WidthOpt = Annotated[Optional[int], typer.Option(help="Headerless files: width in pixels.", min=2)]
HeightOpt = Annotated[Optional[int], typer.Option(help="Headerless files: height in pixels.", min=2)]
BitsOpt = Annotated[Optional[int], typer.Option(help="Bit depth of the samples (sets the white level).", min=1, max=16)]
CfaOpt = Annotated[Optional[str], typer.Option(help="Bayer pattern: RGGB, BGGR, GRBG or GBRG (overrides metadata).")]
BlackOpt = Annotated[
    Optional[str], typer.Option(help="Black level: one value or four in (R, Gr, Gb, B) order, comma-separated.")
]
WhiteOpt = Annotated[Optional[float], typer.Option(help="White (saturation) level, overrides metadata.")]
CameraOpt = Annotated[
    Optional[Path],
    typer.Option(help="Per-camera YAML file (configs/cameras/*.yaml): CFA, bits, levels, size, colour matrix, white balance; over metadata, under the flags."),
]
LayoutOpt = Annotated[Layout, typer.Option(help="How to read the files; auto picks by extension and folder.")]


def raw_options(
    width=None, height=None, bits=None, cfa=None, black=None, white=None, camera=None, model: tuple[Path, dict] | None = None
):
    """The command line's RAW values over those of ``--camera FILE`` and, with ``model`` (its path
    and header), over those its model file records (logged in one line)."""
    from unisp.raw.options import options_from_flags

    given = options_from_flags(camera, cfa=cfa, black=black, white=white, width=width, height=height, bits=bits)
    if model is None:
        return given
    from unisp.models.checkpoint import input_options

    return input_options(*model, given)


def raw_reader(layout: Layout, options) -> Callable:
    """A ``path -> RawFrame`` function reading with ``options`` (:func:`raw_options`)."""
    from unisp.raw.io import read_raw

    return functools.partial(read_raw, options=options, layout=layout.value)


def expand_inputs(inputs: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files given directly plus the RAW files inside given folders; missing paths are failures."""
    from unisp.raw.io import find_raw_files

    files: list[Path] = []
    failures: list[tuple[Path, str]] = []
    for path in inputs:
        if path.is_dir():
            try:
                files.extend(find_raw_files(path))
            except UnispError as e:
                failures.append((path, str(e)))
        elif path.exists():
            files.append(path)
        else:
            failures.append((path, f"{path}: no such file or folder"))
    return files, failures


def prepare_output_dir(out: Path) -> Path:
    """Create ``out`` and check it is writable before any work is done."""
    from unisp.errors import OutputError

    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create output folder ({e.strerror or e})") from None
    probe = out / ".unisp-write-test"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"{out}: output folder is not writable ({e.strerror or e})") from None
    return out


def report_failures(done: int, failures: list[tuple[Path, str]], what: str, out: Path) -> None:
    """Print the summary line of a folder run; exit 2 if nothing was done, 3 if some inputs failed."""
    console.print(f"{what} {done} file(s) into {out}", highlight=False)
    if failures:
        console.print(f"[bold red]{len(failures)} failed:[/]", markup=True)
        for _, message in failures:
            console.print(f"  {message}", highlight=False, markup=False)
        raise typer.Exit(EXIT_PARTIAL if done else EXIT_USER_ERROR)


def progress_bar():
    """Every command's progress display: bars with an ETA on a terminal, plain lines otherwise
    (:func:`unisp.progress.progress_display`)."""
    from unisp.progress import progress_display

    return progress_display(console)


def check_depth(depth: int) -> None:
    if depth not in (8, 16):
        raise UnispError(f"--depth must be 8 or 16, got {depth}")


def convert_files(inputs: list[Path], out: Path, read: Callable, fmt, depth: int, convert: Callable, verb: str) -> None:
    """Read each RAW file, ``convert(frame, progress)`` it to an image, write it to ``out``; then
    log what each folder held (:func:`unisp.raw.summary.log_summary`).

    A file that fails is listed at the end (exit status 2) and the run goes on; nothing is written for it.
    """
    from unisp.fileio import plan_outputs, write_image
    from unisp.raw.summary import FrameFacts, log_summary

    files, failures = expand_inputs(inputs)
    targets = plan_outputs(files, out, ".png" if fmt is ImageFormat.png else ".tif")
    created = not out.exists()
    prepare_output_dir(out)
    done = 0
    read_facts: list[FrameFacts] = []
    with progress_bar() as progress:
        task = progress.add_task("files", total=len(files))
        for path, target in zip(files, targets):
            try:
                frame = read(path)
                read_facts.append(FrameFacts.of(frame))
                write_image(target, convert(frame, progress), depth=depth)
                done += 1
            except UnispError as e:  # a message from deeper down may not say which file it was about
                failures.append((path, str(e) if str(path) in str(e) else f"{path}: {e}"))
            progress.advance(task)
    log_summary(read_facts)
    if created and not done:  # leave no empty folder behind a run that wrote nothing
        with contextlib.suppress(OSError):
            out.rmdir()
    report_failures(done, failures, verb, out)


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------

class Demosaic(str, Enum):
    bilinear = "bilinear"
    malvar = "malvar"
    ahd = "ahd"
    menon = "menon"


class WhiteBalance(str, Enum):
    as_shot = "as_shot"
    gray_world = "gray_world"
    none = "none"


class ColorMatrix(str, Enum):
    metadata = "metadata"
    identity = "identity"


class ImageFormat(str, Enum):
    png = "png"
    tiff = "tiff"


@app.command()
@user_errors
def render(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders of RAW files.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    demosaic: Annotated[Demosaic, typer.Option(help="Demosaicing method (ahd: LibRaw's default method).")] = Demosaic.ahd,
    white_balance: Annotated[WhiteBalance, typer.Option(help="as_shot falls back to gray_world.")] = WhiteBalance.as_shot,
    color_matrix: Annotated[ColorMatrix, typer.Option(help="Camera→sRGB matrix source.")] = ColorMatrix.metadata,
    tone_curve: Annotated[bool, typer.Option(help="Apply the smoothstep tone curve last.")] = False,
    depth: Annotated[int, typer.Option(help="Bits per output channel: 8 or 16.")] = 8,
    format: Annotated[ImageFormat, typer.Option("--format", help="Output file format.")] = ImageFormat.png,
    layout: LayoutOpt = Layout.auto,
    width: WidthOpt = None,
    height: HeightOpt = None,
    bits: BitsOpt = None,
    cfa: CfaOpt = None,
    black: BlackOpt = None,
    white: WhiteOpt = None,
    camera: CameraOpt = None,
) -> None:
    """Render RAW files to sRGB images through the classical ISP pipeline."""
    from unisp.isp.orientation import apply_orientation
    from unisp.isp.pipeline import ISPConfig, render_frame

    check_depth(depth)
    config = ISPConfig(
        demosaic=demosaic.value,
        white_balance=white_balance.value,
        color_matrix=color_matrix.value,
        tone_curve=tone_curve,
    )
    read = raw_reader(layout, raw_options(width, height, bits, cfa, black, white, camera))

    def convert(frame, progress):
        return apply_orientation(render_frame(frame, config), frame.orientation)

    convert_files(inputs, out, read, format, depth, convert, "rendered")


@app.command()
@user_errors
def inspect(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders.", show_default=False)],
    layout: LayoutOpt = Layout.auto,
    width: WidthOpt = None,
    height: HeightOpt = None,
    bits: BitsOpt = None,
    cfa: CfaOpt = None,
    black: BlackOpt = None,
    white: WhiteOpt = None,
    camera: CameraOpt = None,
) -> None:
    """Print what unisp reads from RAW files: size, CFA, levels, white balance, and where each came from."""
    import numpy as np

    read = raw_reader(layout, raw_options(width, height, bits, cfa, black, white, camera))
    files, failures = expand_inputs(inputs)
    for path in files:
        try:
            frame = read(path)
        except UnispError as e:
            failures.append((path, str(e)))
            continue
        planes = frame.packed()
        means = ", ".join(f"{c} {m:.1f}" for c, m in zip(("R", "Gr", "Gb", "B"), planes.reshape(4, -1).mean(1)))
        clipped = float(np.mean(frame.mosaic >= frame.white_level)) * 100
        typer.echo(f"{path}\n  {frame.describe()}\n  plane means: {means}; {clipped:.2f}% at white level")
    if failures:
        for _, message in failures:
            console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
        raise typer.Exit(EXIT_USER_ERROR)


@app.command()
@user_errors
def synth(
    rgb: Annotated[Path, typer.Option(help="Folder of RGB photos to unprocess.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder.")],
    seed: Annotated[int, typer.Option(help="Random seed for the sensor models and noise.")] = 0,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Add shot and read noise.")] = True,
    bits: Annotated[int, typer.Option(help="Sensor bit depth.", min=8, max=16)] = 10,
    cfa: Annotated[str, typer.Option(help="Bayer pattern of the synthetic sensor.")] = "RGGB",
    black: Annotated[Optional[float], typer.Option(help="Black level (default scales 64 at 10 bits).")] = None,
    tone_curve: Annotated[bool, typer.Option("--tone-curve/--no-tone-curve", help="Undo a tone curve.")] = True,
    limit: Annotated[Optional[int], typer.Option(help="Use at most this many photos.", min=1)] = None,
) -> None:
    """Make a synthetic RAW dataset from RGB photos by unprocessing (Brooks et al., CVPR 2019)."""
    from unisp.fileio import list_images, same_file
    from unisp.raw.bayer import CFA
    from unisp.synth.dataset import synthesize_folder

    total = len(list_images(rgb))
    if limit is not None:
        total = min(total, limit)
    for side in ("raw", "rgb"):
        if same_file(out / side, rgb):
            raise UnispError(f"{rgb}: --out {out} would write the dataset's {side}/ files over these photos; choose another --out")
    prepare_output_dir(out)
    with progress_bar() as progress:
        task = progress.add_task("unprocessing", total=total)
        written = synthesize_folder(
            rgb,
            out,
            seed=seed,
            noise=noise,
            bits=bits,
            black_level=black,
            cfa=CFA.parse(cfa).value,
            tone_curve=tone_curve,
            limit=limit,
            progress=lambda n=1: progress.advance(task, n),
        )
    console.print(f"wrote {len(written)} synthetic RAW file(s) with ground truth into {out}", highlight=False)
    if len(written) < total:  # each failure was logged as it happened; none written raises above
        console.print(f"[bold red]{total - len(written)} failed[/] (listed above and in {out / 'dataset.json'})", markup=True)
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
@user_errors
def info(
    model: Annotated[str, typer.Argument(help="A model name (efficient_isp, robust_isp, rmfa_tiny) or a model file.")],
) -> None:
    """Print a generator's parameters and multiply-accumulates per output megapixel."""
    from unisp.models.registry import MAC_CONVENTION, MODEL_NAMES, build_model, model_info

    if model in MODEL_NAMES:
        net, header = build_model(model), {}
    elif not Path(model).exists():  # anything that exists goes to load_model, which says what is wrong with it
        raise UnispError(f"{model}: neither a model name ({', '.join(MODEL_NAMES)}) nor a model file")
    else:
        from unisp.models.checkpoint import load_model

        net, header = load_model(model)
    stats = model_info(net)
    lines = [
        ("model", header.get("model", model)),
        ("parameters", f"{stats['parameters']:,}"),
        ("MMAC / output MP", f"{stats['mmac_per_megapixel']:,.1f} (measured on a {stats['width']}×{stats['height']} output)"),
        ("counting", MAC_CONVENTION),
    ]
    if header:
        lines.insert(1, ("file", str(model)))
        lines += [(key, str(header[key])) for key in ("packing", "normalisation", "input_wb", "training", "raw_input") if header.get(key)]
    for key, value in lines:
        typer.echo(f"{key:<17} {value}")


@app.command("import-reference")
@user_errors
def import_reference(
    src: Annotated[Path, typer.Argument(help="A released .pth state dict of the paper's code.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model file (.safetensors).")],
    model: Annotated[Optional[str], typer.Option(help="efficient_isp, robust_isp or rmfa_tiny (default: inferred).")] = None,
) -> None:
    """Convert the paper's released weights into a unisp model file (channel order adapted in the weights)."""
    from unisp.fileio import check_output_file
    from unisp.models.checkpoint import import_reference as convert

    check_output_file(out, (".safetensors",), "--out", inputs=[src])
    header = convert(src, out, model_name=model)
    console.print(f"wrote {out} ({header['model']}, {header['parameters']:,} parameters)", highlight=False)


@app.command()
@user_errors
def train(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (configs/*.yaml).")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. steps=100 data.raw_dir=DIR.")] = None,
    mode: Annotated[Optional[str], typer.Option(help="Override the recipe's mode: stage1, unpaired, paired or paired_no_adv.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default: the recipe's `out`).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder from its last checkpoint (overrides may change only how long it runs, how often it logs, validates and saves, and where it computes; docs/TRAINING.md lists the keys).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start a new run in a run folder that is not empty: once the new run's checks pass, the previous run's files (recipe, logs, checkpoints, model, report) are removed; other files are left.")] = False,
) -> None:
    """Train a generator from a recipe: stage-1 pretraining, unpaired (the paper), paired, paired_no_adv.

    A new run needs a missing or empty run folder: continue a run with --resume, or replace it
    with --overwrite.
    """
    import os
    import shlex
    import sys

    from unisp.config import load_config
    from unisp.train.config import TrainConfig
    from unisp.train.loop import train as run_training
    from unisp.train.run import RunDir

    overrides = list(overrides or [])
    if mode is not None:
        overrides.append(f"mode={mode}")
    if resume is not None:
        if config is not None:
            raise UnispError("--resume uses the recipe saved in the run folder; do not pass --config")
        if out is not None:
            raise UnispError("--resume continues the run in its own folder; do not pass --out")
        recipe = load_config(TrainConfig, RunDir(resume).config_path(), overrides)
        out = resume
    else:
        recipe = load_config(TrainConfig, config, overrides)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, ranks other than 0 train silently and write nothing
        run_training(recipe, out, resume=resume is not None, overwrite=overwrite)
        return
    with progress_bar() as progress:
        task = progress.add_task(f"training ({recipe.mode})", total=recipe.steps)

        def advance(step: int, terms: dict[str, float]) -> None:
            progress.update(task, completed=step, description=f"training ({recipe.mode}) loss {terms.get('loss/total', 0):.4f}")

        summary = run_training(
            recipe, out, resume=resume is not None, overwrite=overwrite, progress=advance, command=shlex.join(sys.argv)
        )
    start, final, metric = summary["start_validation"], summary["final_validation"], summary["validation_metric"]
    console.print(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s → {summary['model_file']}", highlight=False)
    if final:
        before = f"{start[metric]:.2f} → " if start else ""
        console.print(f"{metric} {before}{final[metric]:.2f} dB", highlight=False)
    from unisp.eval.report import try_write_report

    _print_report(try_write_report(Path(summary["model_file"]).parent))


def _print_report(path: Path | None) -> None:
    """Say where the report went (a failed report has already been logged as a warning)."""
    if path is not None:
        console.print(f"report: {path}", highlight=False)


@app.command()
@user_errors
def process(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders of RAW files.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    depth: Annotated[int, typer.Option(help="Bits per output channel: 8 or 16.")] = 8,
    format: Annotated[ImageFormat, typer.Option("--format", help="Output file format.")] = ImageFormat.png,
    tile: Annotated[int, typer.Option(help="Tile edge in packed pixels (memory is bounded by it).", min=8)] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    backend: Annotated[str, typer.Option(help="What runs the network: torch, onnxruntime (CPU; exported on the fly), fused (CPU kernel, efficient_isp/robust_isp) or fused-bf16 (the same in bfloat16, AVX512-BF16 CPUs).")] = "torch",
    layout: LayoutOpt = Layout.auto,
    width: WidthOpt = None,
    height: HeightOpt = None,
    bits: BitsOpt = None,
    cfa: CfaOpt = None,
    black: BlackOpt = None,
    white: WhiteOpt = None,
    camera: CameraOpt = None,
) -> None:
    """Convert RAW files to sRGB with a learned ISP, full resolution, tiled, honouring orientation.

    The RAW values the model was trained with (its file's raw_input) are used unless
    --camera or a flag gives others."""
    from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
    from unisp.isp.orientation import apply_orientation
    from unisp.models.checkpoint import load_model
    from unisp.process import backend as make_runner, count_tiles, run_tiled
    from unisp.device import resolve_device

    check_depth(depth)
    if backend != "torch" and device not in ("auto", "cpu"):
        raise UnispError(f"--backend {backend} runs on the CPU; drop --device {device}")
    net, header = load_model(model)
    dev = resolve_device(device if backend == "torch" else "cpu")
    net = net.to(dev)
    read = raw_reader(layout, raw_options(width, height, bits, cfa, black, white, camera, model=(model, header)))

    lacking_gains = []  # per file: whether it lacked the as-shot white balance the model's input needs

    with make_runner(net, backend) as runner:

        def convert(frame, progress):
            lacking_gains.append(lacks_input_gains(frame, net.input_wb))
            # The file's tiles: a bar on a terminal, no plain lines (the files' task has them).
            task = progress.add_task(f"  {frame.path.name}", total=count_tiles(net, frame, tile), plain=False)
            image = run_tiled(
                net, frame, tile=tile, depth=depth, device=dev, runner=runner, progress=lambda n: progress.advance(task, n)
            )
            progress.remove_task(task)
            return apply_orientation(image, frame.orientation, dims=(0, 1))

        try:
            convert_files(inputs, out, read, format, depth, convert, "processed")
        finally:
            warn_lacking_gains(sum(lacking_gains), len(lacking_gains), "files processed")


class ExportFormat(str, Enum):
    onnx = "onnx"
    tflite = "tflite"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Packing(str, Enum):
    outside = "outside"
    inside = "inside"


class TensorLayout(str, Enum):
    nchw = "nchw"
    nhwc = "nhwc"


@app.command()
@user_errors
def export(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file (.safetensors).")],
    format: Annotated[ExportFormat, typer.Option("--format", help="onnx (ONNX Runtime) or tflite (LiteRT; needs the mobile extra: pip install unisp\\[mobile]).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (its parity report goes beside it as FILE.parity.json).")],
    precision: Annotated[Precision, typer.Option(help="fp32, fp16 (network body), or int8 (static PTQ; needs --calib).")] = Precision.fp32,
    shape: Annotated[str, typer.Option(help="'dynamic' or a fixed full-resolution HxW, e.g. 3000x4000 (even).")] = "dynamic",
    packing: Annotated[Packing, typer.Option(help="outside: input is packed (R,Gr,Gb,B) planes in [0,1]; inside: the RAW mosaic in sensor units.")] = Packing.outside,
    layout: Annotated[Optional[TensorLayout], typer.Option("--layout", help="Tensor layout of input and output (default: nchw for onnx, nhwc for tflite).")] = None,
    calib: Annotated[Optional[Path], typer.Option(help="Folder of representative RAW files: int8 calibration and parity samples.")] = None,
    sample: Annotated[Optional[Path], typer.Option(help="--packing inside: a RAW file whose metadata gives the CFA and levels to bake in.")] = None,
    bits: BitsOpt = None,
    cfa: CfaOpt = None,
    black: BlackOpt = None,
    white: WhiteOpt = None,
    camera: CameraOpt = None,
) -> None:
    """Export a model to ONNX or TFLite, then check parity with PyTorch (the file is written only if it passes).

    --packing inside bakes in the CFA and levels given (flags, --camera, the model file's
    raw_input), the others read from --sample or the first --calib file."""
    from unisp.export.graph import parse_shape, sensor_calibration
    from unisp.export.parity import format_table, read_report
    from unisp.export.quantize import read_calibration
    from unisp.fileio import check_output_file
    from unisp.models.checkpoint import load_model

    fixed = parse_shape(shape)
    check_output_file(out, (f".{format.value}",), "--out", inputs=[model, *([sample] if sample else [])])
    net, header = load_model(model)
    prepare_output_dir(out.parent)  # an unwritable destination fails before the conversion, not after
    options = raw_options(bits=bits, cfa=cfa, black=black, white=white, camera=camera, model=(model, header))
    read = raw_reader(Layout.auto, options)
    frames = None if calib is None else read_calibration(calib, read)
    sensor = None
    if packing is Packing.outside and sample is not None:
        log.warning("--sample is used only with --packing inside (an outside graph bakes in no levels); ignored")
    if packing is Packing.inside:
        first = read(sample) if sample is not None else frames[0] if frames else None
        sensor = sensor_calibration(cfa=options.cfa, black=options.black, white=options.white_level, sample=first)
    options = dict(precision=precision.value, shape=fixed, packing=packing.value, calib=frames, sensor=sensor)
    if format is ExportFormat.onnx:
        from unisp.export.onnx import export_onnx

        written = export_onnx(net, out, layout=(layout or TensorLayout.nchw).value, **options)
    else:
        try:
            from unisp.export.tflite import export_tflite
        except ImportError as e:
            raise UnispError(f"--format tflite needs the mobile extra (pip install 'unisp[mobile]'): {e}") from None
        written = export_tflite(net, out, layout=(layout or TensorLayout.nhwc).value, **options)
    typer.echo(format_table(read_report(written)))
    console.print(f"wrote {written} and {written.name}.parity.json", highlight=False)


@app.command("eval")
@user_errors
def evaluate(
    pred: Annotated[Optional[Path], typer.Option(help="Folder of predicted images (compare with --gt).")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Folder of ground-truth images, matched by file stem.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model file: run it on --data first.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder (raw/+rgb/, huawei_raw/+canon/, mediatek_raw/+fujifilm/).")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated: psnr, ssim, ms_ssim, delta_e2000, lpips_alex.")] = "psnr,ssim,ms_ssim,delta_e2000,lpips_alex",
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write per-image scores to this CSV file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (protocol, means, per-image, failures) instead of a table.")] = False,
    save: Annotated[Optional[Path], typer.Option(help="With --model: also write the model's outputs (16-bit PNG) here.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    layout: LayoutOpt = Layout.auto,
    width: WidthOpt = None,
    height: HeightOpt = None,
    bits: BitsOpt = None,
    cfa: CfaOpt = None,
    black: BlackOpt = None,
    white: WhiteOpt = None,
    camera: CameraOpt = None,
) -> None:
    """Score images against ground truth: two folders (--pred --gt), or a model on a dataset (--model --data).

    The model's RAW inputs are read with the values it was trained with (its file's raw_input)
    unless --camera or a flag gives others."""
    import json

    from unisp.eval.evaluate import ALL_METRICS, compare_folders, format_table, to_json, write_csv
    from unisp.fileio import check_output_file, same_file

    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
    unknown = [m for m in chosen if m not in ALL_METRICS]
    if unknown or not chosen:
        raise UnispError(f"--metrics: unknown {', '.join(unknown) or '(none given)'} (allowed: {', '.join(ALL_METRICS)})")
    if (pred is None) == (model is None):
        raise UnispError("give either --pred DIR --gt DIR, or --model FILE --data DIR")
    loaded = None
    if model is not None:
        from unisp.models.checkpoint import load_model

        if data is None:
            raise UnispError("--model needs --data DIR")
        loaded = load_model(model)
    options = raw_options(width, height, bits, cfa, black, white, camera, model=None if loaded is None else (model, loaded[1]))
    if pred is not None and options.given():
        raise UnispError("--camera, --cfa, --black, --white, --width, --height and --bits say how to read RAW files: they go with --model --data, not --pred")
    if csv is not None:
        check_output_file(csv, (".csv",), "--csv")
    with progress_bar() as progress:
        task = progress.add_task("evaluating", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if pred is not None:
            if gt is None:
                raise UnispError("--pred needs --gt DIR")
            if same_file(pred, gt):  # every image would score against itself
                raise UnispError(f"--pred {pred} and --gt {gt} are the same folder")
            result = compare_folders(pred, gt, metrics=chosen, progress=advance)
        else:
            result = _evaluate_model(loaded[0], data, gt, raw_reader(layout, options), chosen, device, save, advance)
    if csv is not None:
        write_csv(result, csv)
    typer.echo(json.dumps(to_json(result), indent=2) if as_json else format_table(result))
    if save is not None and model is not None:  # an output folder: the scores and the report go there too
        from unisp.eval.report import try_write_report, write_eval_record

        write_eval_record(save, to_json(result), model=model, data=data, gt=gt, layout=layout.value, raw_input=options.to_dict())
        _print_report(try_write_report(save))
    if not result.rows:
        raise typer.Exit(EXIT_USER_ERROR)
    if result.failures:  # listed in the table / JSON above
        raise typer.Exit(EXIT_PARTIAL)


def _evaluate_model(net, data, gt, read, metrics, device, save, progress):
    """Run a model over a dataset's RAW files (full resolution, each read with ``read``) and score
    against its ground truth; log what the RAW folder held."""
    from unisp.eval.datasets import raw_and_truth_dirs
    from unisp.eval.evaluate import evaluate_images
    from unisp.fileio import list_images, plan_outputs, read_rgb, same_file, write_image
    from unisp.isp.awb import lacks_input_gains, warn_lacking_gains
    from unisp.process import run_tiled
    from unisp.raw.io import find_raw_files
    from unisp.raw.summary import FrameFacts, log_summary
    from unisp.device import resolve_device

    dev = resolve_device(device)
    net = net.to(dev)
    raw_dir, gt_dir = raw_and_truth_dirs(data, gt)
    truths = {p.stem: p for p in list_images(gt_dir)}
    names, failures = [], []
    for path in find_raw_files(raw_dir):
        (names if path.stem in truths else failures).append(path)
    if save is not None:  # predictions written over the ground truth would then be scored against themselves
        for folder, holds in ((raw_dir, "RAW inputs"), (gt_dir, "ground truth")):
            if same_file(Path(save), folder):
                raise UnispError(f"{save}: holds the {holds} of this evaluation; give --save another folder")
        plan_outputs(names, Path(save), ".png", protected=truths.values())

    read_frames, lacking_gains = [], []

    def outputs():
        for name in names:
            frame = read(name)
            read_frames.append(FrameFacts.of(frame))
            lacking_gains.append(lacks_input_gains(frame, net.input_wb))
            image = run_tiled(net, frame, device=dev)
            if save is not None:
                write_image(Path(save) / f"{name.stem}.png", image, depth=16)
            yield image

    result = evaluate_images(
        outputs(), (read_rgb(truths[p.stem]) for p in names), [p.stem for p in names], metrics=metrics, progress=progress
    )
    log_summary(read_frames)
    warn_lacking_gains(sum(lacking_gains), len(lacking_gains), "files evaluated")
    result.failures += [f"{p}: no ground truth named {p.stem}.* in {gt_dir}" for p in failures]
    return result


@app.command()
@user_errors
def select(
    run_dir: Annotated[Path, typer.Argument(help="Training run folder (RUN/checkpoints/step_N.safetensors).")],
    rgb: Annotated[Path, typer.Option(help="Folder of photos with the target look (e.g. the run's data.rgb_dir).")],
    data: Annotated[Optional[Path], typer.Option(help="RAW files to score on (default: the run's validation split).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the ranking as JSON here (default RUN_DIR/select.json).")] = None,
    max_images: Annotated[int, typer.Option(help="Score on at most this many RAW files.", min=1)] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    layout: LayoutOpt = Layout.auto,
    camera: CameraOpt = None,
) -> None:
    """Rank a run's checkpoints without ground truth (feature, colour and content distances) and name the pick.

    RAW files are read with the values the run was trained with (its checkpoints' raw_input),
    or those of --camera."""
    from unisp.device import resolve_device
    from unisp.eval.select import select_checkpoint
    from unisp.fileio import check_output_file

    if out is not None:
        check_output_file(out, (".json",), "--out")
        prepare_output_dir(out.parent)  # an unwritable destination fails before the scoring
    options = raw_options(camera=camera)
    with progress_bar() as progress:
        task = progress.add_task("scoring checkpoints", total=None)
        ranking = select_checkpoint(
            run_dir, rgb, data=data, layout=None if layout == Layout.auto else layout.value,
            options=options,
            max_images=max_images, device=resolve_device(device), out=out,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    typer.echo(ranking.format_table())


@app.command()
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A training run, `unisp eval --save` or `unisp demo` folder.", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(help="RAW files to show (a folder, or a dataset root with raw/+rgb/ …) instead of the run's validation images.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth of --data, matched by file stem.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html).")] = None,
    max_images: Annotated[int, typer.Option(help="Show crops of at most this many images.", min=1)] = 4,
    camera: CameraOpt = None,
) -> None:
    """Write one self-contained HTML page: crops side by side, metrics, training curves, model card.

    RAW files are read with the values the model was trained with (its file's raw_input), or
    those of --camera."""
    from unisp.eval.report import write_report
    from unisp.fileio import check_output_file

    if out is not None:
        check_output_file(out, (".html", ".htm"), "--out")
        prepare_output_dir(out.parent)  # an unwritable destination fails before the rendering
    options = raw_options(camera=camera)
    _print_report(write_report(run_dir, data=data, gt=gt, out=out, max_images=max_images, options=options))


weights_app = typer.Typer(help="The frozen backbones' weight files: check what is present, fetch what is missing.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

ProfileOpt = Annotated[str, typer.Option("--profile", help="Backbone profile: paper or lite (random needs no files).")]
WeightsDirOpt = Annotated[Optional[Path], typer.Option("--weights-dir", help="Folder holding the weight files (default: the standard caches).")]


@weights_app.command("check")
@user_errors
def weights_check(profile: ProfileOpt = "paper", weights_dir: WeightsDirOpt = None) -> None:
    """List every weight file a profile needs and whether it is present; exit 1 if any is missing."""
    from unisp.losses.backbones import required_weights

    files = required_weights(_profile(profile), weights_dir)
    for f in files:
        mark = "ok     " if f.present else "MISSING"
        typer.echo(f"{mark} {f.name:<44} {f.purpose}\n        {f.path}")
    missing = [f for f in files if not f.present]
    if missing:
        typer.echo(f"{len(missing)} of {len(files)} file(s) missing: `unisp weights fetch --profile {profile}` where a network exists")
        raise typer.Exit(1)
    typer.echo(f"all {len(files)} file(s) present for profile {profile}")


@weights_app.command("fetch")
@user_errors
def weights_fetch(profile: ProfileOpt = "paper", weights_dir: WeightsDirOpt = None) -> None:
    """Download the weight files of a profile into the standard caches or --weights-dir (needs a network)."""
    from unisp.losses.backbones import fetch_weights

    for path in fetch_weights(_profile(profile), weights_dir):
        typer.echo(f"present {path}")


def _profile(name: str) -> str:
    if name not in ("paper", "lite", "random"):
        raise UnispError(f"--profile must be paper, lite or random, got {name!r}")
    return name


bench_app = typer.Typer(help="Speed measurements.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("latency")
@user_errors
def bench_latency(
    model: Annotated[str, typer.Option("--model", "-m", help="Model file (.safetensors) or a model name (random weights).")],
    size: Annotated[str, typer.Option(help="Output size: megapixels (12MP, 4:3) or HxW (3000x4000), as export --shape.")] = "12MP",
    repeats: Annotated[int, typer.Option(help="Timed runs per backend (the median is reported).", min=1)] = 5,
    threads: Annotated[int, typer.Option(help="CPU threads for every backend, at most the machine's CPUs (0: torch's default).", min=0)] = 0,
    backend: Annotated[
        Optional[list[str]], typer.Option("--backend", help="Run only these (repeatable): eager, compile, onnxruntime, tflite, fused, fused-bf16 (AVX512-BF16 CPUs).")
    ] = None,
    allocator: Annotated[
        str, typer.Option(help="keep: glibc keeps freed memory (times the backends, not the OS's page zeroing); default: as it comes.")
    ] = "keep",
) -> None:
    """Time one input through PyTorch eager, torch.compile, ONNX Runtime, TFLite (XNNPACK) and the fused kernel."""
    from unisp.export.latency import BACKENDS, load_generator, parse_size, run_latency
    from unisp.export.threads import check_threads

    height, width = parse_size(size)
    check_threads(threads or None, "--threads")
    net, path = load_generator(model)
    report = run_latency(
        net, height=height, width=width, repeats=repeats, threads=threads or None,
        backends=backend or BACKENDS, model_file=path, allocator=allocator,
    )
    typer.echo(report.to_markdown())


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("unisp-demo"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    reference: Annotated[
        Optional[Path], typer.Option(help="One of the paper's released .pth files, to render the sample frame with too.")
    ] = None,
) -> None:
    """Run the main job on the embedded default data, with no download."""
    from unisp.demo import run_demo
    from unisp.progress import stage_reporter

    prepare_output_dir(out)
    with progress_bar() as progress:
        summary = run_demo(out, seed=seed, reference=reference, progress=stage_reporter(progress))
    typer.echo(summary)


def run() -> None:
    """The ``unisp`` console script: :data:`app`, with click's usage errors on one line like ours.

    Without this, a bad flag value (``--demosaic foo``) gets click's usage lines and a boxed
    message instead of the one ``error:`` line every other user error gets.
    """
    from typer.exceptions import TyperException  # the base of click's errors (typer vendors click)

    try:
        code = app(standalone_mode=False)
    except TyperException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        if e.format_message():  # empty when the help was printed instead (``unisp`` alone)
            console.print(f"[bold red]error:[/] {e.format_message()}{hint}", markup=True, highlight=False)
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        console.print("aborted")
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
