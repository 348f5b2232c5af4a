"""The ``unisp`` command line. Subcommands only parse their arguments and call the library.

Every error a user can cause (a bad file, flag or config) is printed as one line naming what is
wrong and exits with status 2; a run over several files goes on past a bad one and lists the
failures at the end.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated, Optional, get_args

import typer
from rich.console import Console

from unisp.device import check_device_name
from unisp.errors import UnispError
from unisp.export import EXPORT_FORMATS
from unisp.export.graph import LAYOUTS as TENSOR_LAYOUTS
from unisp.export.graph import PACKINGS
from unisp.export.parity import PRECISIONS
from unisp.export.runtimes import ANY_SHAPE
from unisp.export.runtimes import NAMES as RUNTIME_NAMES
from unisp.fileio import IMAGE_FORMATS, IMAGE_SUFFIXES, prepare_output_dir
from unisp.isp.demosaic import DEMOSAIC_METHODS
from unisp.isp.pipeline import ColourMatrixSource, WhiteBalanceMode
from unisp.losses.weights import PROFILES
from unisp.raw.io import LAYOUTS as RAW_LAYOUTS
from unisp.raw.io import expand_inputs

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
# Choice lists: each one is the library's own list, so a flag offers exactly what the library takes
# ----------------------------------------------------------------------------------------------

def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A ``str`` Enum of ``values`` (each member named as its value) for typer to offer as a choice."""
    return Enum(name, [(value, value) for value in values], type=str, module=__name__)


Layout = choices("Layout", RAW_LAYOUTS)
Demosaic = choices("Demosaic", DEMOSAIC_METHODS)
WhiteBalance = choices("WhiteBalance", get_args(WhiteBalanceMode))
ColourMatrix = choices("ColourMatrix", get_args(ColourMatrixSource))
ImageFormat = choices("ImageFormat", IMAGE_FORMATS)
ExportFormat = choices("ExportFormat", EXPORT_FORMATS)
Precision = choices("Precision", PRECISIONS)
Packing = choices("Packing", PACKINGS)
TensorLayout = choices("TensorLayout", TENSOR_LAYOUTS)
Profile = choices("Profile", PROFILES)
# ``--backend``: process takes the runtimes that run tiles of any shape, bench latency every one.
ProcessBackend = choices("ProcessBackend", ANY_SHAPE)
BenchBackend = choices("BenchBackend", RUNTIME_NAMES)


def device_name(value: str) -> str:
    """``--device``'s value, checked as the command line is parsed (:func:`unisp.device.check_device_name`);
    whether this machine has the device is checked when the command uses it."""
    try:
        return check_device_name(value)
    except UnispError as e:
        raise typer.BadParameter(str(e)) from None


DeviceOpt = Annotated[str, typer.Option(parser=device_name, help="auto, cpu or cuda[:N].")]


# ----------------------------------------------------------------------------------------------
# Options shared by every command that reads RAW files
# ----------------------------------------------------------------------------------------------

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

#: The RAW flags in the order commands list them: each one's option and default.
RAW_FLAGS: dict[str, tuple[object, object]] = {
    "layout": (LayoutOpt, Layout.auto),
    "width": (WidthOpt, None),
    "height": (HeightOpt, None),
    "bits": (BitsOpt, None),
    "cfa": (CfaOpt, None),
    "black": (BlackOpt, None),
    "white": (WhiteOpt, None),
    "camera": (CameraOpt, None),
}


@dataclass(frozen=True)
class RawFlags:
    """How to read RAW files, as the command line says (:func:`raw_flags`); a flag the command
    does not offer keeps its default."""

    layout: Layout = Layout.auto
    width: Optional[int] = None
    height: Optional[int] = None
    bits: Optional[int] = None
    cfa: Optional[str] = None
    black: Optional[str] = None
    white: Optional[float] = None
    camera: Optional[Path] = None

    def options(self, model: tuple[Path, dict] | None = None):
        """The flags' RAW values over those of ``--camera FILE`` and, with ``model`` (its path
        and header), over those its model file records (logged in one line)."""
        from unisp.raw.options import options_from_flags

        given = options_from_flags(
            self.camera, cfa=self.cfa, black=self.black, white=self.white, width=self.width, height=self.height, bits=self.bits
        )
        if model is None:
            return given
        from unisp.models.checkpoint import input_options

        return input_options(*model, given)

    def reader(self, options) -> Callable:
        """A ``path -> RawFrame`` function reading in ``--layout`` with ``options`` (:meth:`options`)."""
        from unisp.raw.io import read_raw

        return functools.partial(read_raw, options=options, layout=self.layout.value)


def raw_flags(*names: str) -> Callable[[Callable], Callable]:
    """Give a command the RAW flags ``names`` (all of :data:`RAW_FLAGS` when none are named).

    The command declares one parameter ``raw: RawFlags``; typer sees the flags in its place (the
    wrapper's ``__signature__``, which typer reads), and the command gets them as one :class:`RawFlags`.
    """
    names = names or tuple(RAW_FLAGS)

    def decorate(command: Callable) -> Callable:
        params = []
        for param in signature(command, eval_str=True).parameters.values():
            if param.name != "raw":
                params.append(param)
                continue
            for name in names:
                option, default = RAW_FLAGS[name]
                params.append(Parameter(name, Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=option))

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            raw = RawFlags(**{name: kwargs.pop(name) for name in names})
            return command(*args, raw=raw, **kwargs)

        wrapper.__signature__ = signature(command, eval_str=True).replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


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


def convert_inputs(inputs: list[Path], out: Path, read: Callable, fmt, depth: int, convert: Callable, verb: str) -> None:
    """``render`` and ``process``: each RAW file of ``inputs`` through ``convert(frame, progress)``
    into ``out`` (:func:`unisp.process.convert_files`), then the summary line and the exit status."""
    from unisp.process import convert_files

    files, failures = expand_inputs(inputs)
    with progress_bar() as progress:
        done, failed = convert_files(files, out, read, convert, suffix=IMAGE_SUFFIXES[fmt.value], depth=depth, progress=progress)
    report_failures(done, failures + failed, verb, out)


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------

@app.command()
@user_errors
@raw_flags()
def render(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders of RAW files.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    demosaic: Annotated[Demosaic, typer.Option(help="Demosaicing method (ahd: LibRaw's default method).")] = Demosaic.ahd,
    white_balance: Annotated[WhiteBalance, typer.Option(help="as_shot falls back to gray_world.")] = WhiteBalance.as_shot,
    colour_matrix: Annotated[ColourMatrix, typer.Option("--color-matrix", help="Camera→sRGB matrix source.")] = ColourMatrix.metadata,
    tone_curve: Annotated[bool, typer.Option(help="Apply the smoothstep tone curve last.")] = False,
    depth: Annotated[int, typer.Option(help="Bits per output channel: 8 or 16.")] = 8,
    format: Annotated[ImageFormat, typer.Option("--format", help="Output file format.")] = ImageFormat.png,
    raw: RawFlags = RawFlags(),
) -> None:
    """Render RAW files to sRGB images through the classical ISP pipeline."""
    from unisp.isp.orientation import apply_orientation
    from unisp.isp.pipeline import ISPConfig, render_frame

    check_depth(depth)
    config = ISPConfig(
        demosaic=demosaic.value,
        white_balance=white_balance.value,
        colour_matrix=colour_matrix.value,
        tone_curve=tone_curve,
    )
    read = raw.reader(raw.options())

    def convert(frame, progress):
        return apply_orientation(render_frame(frame, config), frame.orientation)

    convert_inputs(inputs, out, read, format, depth, convert, "rendered")


@app.command()
@user_errors
@raw_flags()
def inspect(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders.", show_default=False)],
    raw: RawFlags = RawFlags(),
) -> None:
    """Print what unisp reads from RAW files: size, CFA, levels, white balance, and where each came from."""
    from unisp.raw.summary import PixelStats

    read = raw.reader(raw.options())
    files, failures = expand_inputs(inputs)
    for path in files:
        try:
            frame = read(path)
        except UnispError as e:
            failures.append((path, str(e)))
            continue
        stats = PixelStats.of(frame)
        means = ", ".join(f"{c} {m:.1f}" for c, m in stats.plane_means.items())
        typer.echo(f"{path}\n  {frame.describe()}\n  plane means: {means}; {stats.clipped_percent:.2f}% at white level")
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
    from unisp.models.checkpoint import load_generator
    from unisp.models.registry import MAC_CONVENTION, model_info

    net, header, _ = load_generator(model)
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
    import shlex

    from unisp.config import load_config
    from unisp.train.config import TrainConfig
    from unisp.train.distributed import is_main_process
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
    if not is_main_process():  # under torchrun, ranks other than 0 train silently and write nothing
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
@raw_flags()
def process(
    inputs: Annotated[list[Path], typer.Argument(help="RAW files or folders of RAW files.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", help="Model file (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    depth: Annotated[int, typer.Option(help="Bits per output channel: 8 or 16.")] = 8,
    format: Annotated[ImageFormat, typer.Option("--format", help="Output file format.")] = ImageFormat.png,
    tile: Annotated[int, typer.Option(help="Tile edge in packed pixels (memory is bounded by it).", min=8)] = 512,
    device: DeviceOpt = "auto",
    backend: Annotated[ProcessBackend, typer.Option(help="What runs the network: torch, onnxruntime (CPU; exported on the fly), fused (CPU kernel, efficient_isp/robust_isp) or fused-bf16 (the same in bfloat16, AVX512-BF16 CPUs).")] = ProcessBackend.torch,
    raw: RawFlags = RawFlags(),
) -> None:
    """Convert RAW files to sRGB with a learned ISP, full resolution, tiled, honouring orientation.

    The RAW values the model was trained with (its file's raw_input) are used unless
    --camera or a flag gives others."""
    from unisp.models.checkpoint import load_model
    from unisp.process import runtime_device, tiled_converter

    check_depth(depth)
    runtime_device(backend.value, device)  # a CPU-only backend with a --device: refused before anything is loaded
    net, header = load_model(model)
    read = raw.reader(raw.options(model=(model, header)))
    with tiled_converter(net, tile=tile, depth=depth, device=device, backend=backend.value) as convert:
        convert_inputs(inputs, out, read, format, depth, convert, "processed")


@app.command()
@user_errors
@raw_flags("bits", "cfa", "black", "white", "camera")
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
    raw: RawFlags = RawFlags(),
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
    options = raw.options(model=(model, header))
    read = raw.reader(options)  # --layout is the graph's tensor layout here: RAW files are read in layout auto
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
@raw_flags()
def evaluate(
    pred: Annotated[Optional[Path], typer.Option(help="Folder of predicted images (compare with --gt).")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Folder of ground-truth images, matched by file stem.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Model file: run it on --data first.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder (raw/+rgb/, huawei_raw/+canon/, mediatek_raw/+fujifilm/).")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated: psnr, ssim, ms_ssim, delta_e2000, lpips_alex.")] = "psnr,ssim,ms_ssim,delta_e2000,lpips_alex",
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Write per-image scores to this CSV file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (protocol, means, per-image, failures) instead of a table.")] = False,
    save: Annotated[Optional[Path], typer.Option(help="With --model: also write the model's outputs (16-bit PNG) here.")] = None,
    device: DeviceOpt = "auto",
    raw: RawFlags = RawFlags(),
) -> None:
    """Score images against ground truth: two folders (--pred --gt), or a model on a dataset (--model --data).

    The model's RAW inputs are read with the values it was trained with (its file's raw_input)
    unless --camera or a flag gives others."""
    import json

    from unisp.eval.evaluate import ALL_METRICS, compare_folders, evaluate_model, format_table, to_json, write_csv
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
    options = raw.options(model=None if loaded is None else (model, loaded[1]))
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
            result = evaluate_model(loaded[0], data, gt, raw.reader(options), chosen, device, save, advance)
    if csv is not None:
        write_csv(result, csv)
    typer.echo(json.dumps(to_json(result), indent=2) if as_json else format_table(result))
    if save is not None and model is not None:  # an output folder: the scores and the report go there too
        from unisp.eval.report import try_write_report, write_eval_record

        write_eval_record(save, to_json(result), model=model, data=data, gt=gt, layout=raw.layout.value, raw_input=options.to_dict())
        _print_report(try_write_report(save))
    if not result.rows:
        raise typer.Exit(EXIT_USER_ERROR)
    if result.failures:  # listed in the table / JSON above
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
@user_errors
@raw_flags("layout", "camera")
def select(
    run_dir: Annotated[Path, typer.Argument(help="Training run folder (RUN/checkpoints/step_N.safetensors).")],
    rgb: Annotated[Path, typer.Option(help="Folder of photos with the target look (e.g. the run's data.rgb_dir).")],
    data: Annotated[Optional[Path], typer.Option(help="RAW files to score on (default: the run's validation split).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the ranking as JSON here (default RUN_DIR/select.json).")] = None,
    max_images: Annotated[int, typer.Option(help="Score on at most this many RAW files.", min=1)] = 8,
    device: DeviceOpt = "auto",
    raw: RawFlags = RawFlags(),
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
    with progress_bar() as progress:
        task = progress.add_task("scoring checkpoints", total=None)
        ranking = select_checkpoint(
            run_dir, rgb, data=data, layout=None if raw.layout == Layout.auto else raw.layout.value,
            options=raw.options(),
            max_images=max_images, device=resolve_device(device), out=out,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    typer.echo(ranking.format_table())


@app.command()
@user_errors
@raw_flags("camera")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A training run, `unisp eval --save` or `unisp demo` folder.", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(help="RAW files to show (a folder, or a dataset root with raw/+rgb/ …) instead of the run's validation images.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth of --data, matched by file stem.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default RUN_DIR/report.html).")] = None,
    max_images: Annotated[int, typer.Option(help="Show crops of at most this many images.", min=1)] = 4,
    raw: RawFlags = RawFlags(),
) -> None:
    """Write one self-contained HTML page: crops side by side, metrics, training curves, model card.

    RAW files are read with the values the model was trained with (its file's raw_input), or
    those of --camera."""
    from unisp.eval.report import write_report
    from unisp.fileio import check_output_file

    if out is not None:
        check_output_file(out, (".html", ".htm"), "--out")
        prepare_output_dir(out.parent)  # an unwritable destination fails before the rendering
    _print_report(write_report(run_dir, data=data, gt=gt, out=out, max_images=max_images, options=raw.options()))


weights_app = typer.Typer(help="The frozen backbones' weight files: check what is present, fetch what is missing.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

ProfileOpt = Annotated[Profile, typer.Option("--profile", help="Backbone profile: paper or lite (random needs no files).")]
WeightsDirOpt = Annotated[Optional[Path], typer.Option("--weights-dir", help="Folder holding the weight files (default: the standard caches).")]


@weights_app.command("check")
@user_errors
def weights_check(profile: ProfileOpt = Profile.paper, weights_dir: WeightsDirOpt = None) -> None:
    """List every weight file a profile needs and whether it is present; exit 1 if any is missing."""
    from unisp.losses.backbones import required_weights

    files = required_weights(profile.value, weights_dir)
    for f in files:
        mark = "ok     " if f.present else "MISSING"
        typer.echo(f"{mark} {f.name:<44} {f.purpose}\n        {f.path}")
    missing = [f for f in files if not f.present]
    if missing:
        typer.echo(f"{len(missing)} of {len(files)} file(s) missing: `unisp weights fetch --profile {profile.value}` where a network exists")
        raise typer.Exit(1)
    typer.echo(f"all {len(files)} file(s) present for profile {profile.value}")


@weights_app.command("fetch")
@user_errors
def weights_fetch(profile: ProfileOpt = Profile.paper, weights_dir: WeightsDirOpt = None) -> None:
    """Download the weight files of a profile into the standard caches or --weights-dir (needs a network)."""
    from unisp.losses.backbones import fetch_weights

    for path in fetch_weights(profile.value, weights_dir):
        typer.echo(f"present {path}")


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
        Optional[list[BenchBackend]], typer.Option("--backend", help="Run only these (repeatable): torch, compile, onnxruntime, tflite, fused, fused-bf16 (AVX512-BF16 CPUs).")
    ] = None,
    allocator: Annotated[
        str, typer.Option(help="keep: glibc keeps freed memory (times the backends, not the OS's page zeroing); default: as it comes.")
    ] = "keep",
) -> None:
    """Time one input through PyTorch (torch), torch.compile, ONNX Runtime, TFLite (XNNPACK) and the fused kernel."""
    from unisp.export.latency import parse_size, run_latency
    from unisp.export.threads import check_threads
    from unisp.models.checkpoint import load_generator

    height, width = parse_size(size)
    check_threads(threads or None, "--threads")
    net, _, path = load_generator(model)
    report = run_latency(
        net, height=height, width=width, repeats=repeats, threads=threads or None,
        backends=[b.value for b in backend] if backend else RUNTIME_NAMES, model_file=path, allocator=allocator,
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
