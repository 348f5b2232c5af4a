"""Every way unisp runs a generator at inference: one registry for ``unisp process --backend`` and
``unisp bench latency --backend``.

A :class:`Runtime` has one name, says whether it takes inputs of any shape (the tiles of
:func:`unisp.models.tiled.run_tiled`, so ``unisp process`` can use it) or is built for one fixed
shape (``unisp bench latency`` only), and builds a :class:`Runner`: a callable on a packed float32
NCHW tensor (NHWC for ``tflite``, its native layout) returning the model's output in the same
layout. In the order they are reported:

* ``torch``: the PyTorch model itself (eager), any shape, any device;
* ``compile``: ``torch.compile`` (inductor), compiled for one fixed shape;
* ``onnxruntime``: an fp32 ONNX export (dynamic shape, or fixed when a shape is given) run by ONNX
  Runtime on the CPU;
* ``tflite``: an fp32 NHWC TFLite export run by the LiteRT interpreter (XNNPACK), fixed shape,
  needs the ``[mobile]`` extra;
* ``fused``: unisp's fused C++ CPU kernel (:mod:`unisp.export.fused`), efficient_isp and robust_isp;
* ``fused-bf16``: the same kernel with bf16 operands and fp32 sums, on CPUs with AVX512-BF16.

A runtime that cannot run here (a package or compiler missing, a model it does not run, a CPU
without the instructions it needs) raises :class:`RuntimeUnavailable` saying why: the benchmark
reports it as a skipped row, ``unisp process`` as its one-line error.

Importing this module is cheap (no torch, no runtime): the command line builds its ``--backend``
choices from :data:`NAMES` and :data:`ANY_SHAPE`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unisp.errors import ConfigError, UnispError

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class RuntimeUnavailable(UnispError):
    """A runtime that cannot run here (or not this model); the message says why."""


@dataclass
class Runner:
    """A runtime built for one model, ready to call.

    Attributes:
        run: called with a packed float32 tensor, NCHW (NHWC when ``nhwc``); returns the output in
            the same layout (a tensor, or an array for runners that return what they are given).
        note: what runs (precision, shape, layout), for reports.
        files: files it wrote into the work folder, with their sizes in bytes.
        nhwc: ``run`` takes and returns NHWC (the caller transposes, outside any timing).
    """

    run: Callable
    note: str
    files: dict[str, int] = field(default_factory=dict)
    nhwc: bool = False

    def __call__(self, x):
        return self.run(x)


#: ``build(model, threads, shape, workdir, fallback) -> Runner`` of one runtime.
Builder = Callable[["nn.Module", "int | None", "tuple[int, int] | None", Path, bool], Runner]


@dataclass(frozen=True)
class Runtime:
    """One way of running a generator.

    Attributes:
        name: the name users give (``--backend``) and reports print.
        any_shape: takes inputs of any shape, built once (usable for ``unisp process``'s tiles);
            False: built for one fixed shape (``shape`` is required).
        precision: ``"fp32"``, or the reduced precision of its arithmetic (its parity with PyTorch is
            then judged by PSNR, not float32 rounding).
        builder: what :func:`build_runner` calls.
        any_device: runs on any torch device (``--device``); False: on the CPU only.
    """

    name: str
    any_shape: bool
    precision: str
    builder: Builder = field(repr=False)
    any_device: bool = False


def _model_name(model: nn.Module) -> str:
    return getattr(model, "name", "") or type(model).__name__


def _torch(model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool) -> Runner:
    import torch

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(inp)

    return Runner(run, "PyTorch eager, NCHW")


def _compile(model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool) -> Runner:
    import torch

    from unisp.models.base import PACKED_CHANNELS

    assert shape is not None  # build_runner checks
    sample = torch.zeros(1, PACKED_CHANNELS, shape[0] // 2, shape[1] // 2)
    try:
        compiled = torch.compile(model, dynamic=False)
        with torch.inference_mode():
            compiled(sample)  # compiles for this shape
    except Exception as e:  # inductor raises many types (no compiler, unsupported platform)
        raise RuntimeUnavailable(
            f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(inp)

    return Runner(run, "inductor, static shape")


def _onnxruntime(model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool) -> Runner:
    try:
        import onnxruntime  # noqa: F401 - OnnxRunner imports it when called; say here that it is missing

        from unisp.export.onnx import OnnxRunner, export_onnx
    except ImportError as e:
        raise RuntimeUnavailable(f"ONNX export unavailable ({e})") from None
    path = export_onnx(model, workdir / "model.onnx", precision="fp32", shape=shape)
    kind = "dynamic shape" if shape is None else "fixed shape"
    log.info("onnxruntime: %s exported to %s (fp32, %s)", _model_name(model), path, kind)
    runner = OnnxRunner(path, threads=threads)
    return Runner(runner, f"fp32, NCHW, {kind}, default session options", {"model.onnx": path.stat().st_size})


def _tflite(model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool) -> Runner:
    hint = "pip install 'unisp[mobile]'"
    try:
        from unisp.export.tflite import TFLiteRunner, export_tflite
    except ImportError as e:
        raise RuntimeUnavailable(f"the [mobile] extra is not installed ({e}); {hint}") from None
    try:
        path = export_tflite(model, workdir / "model.tflite", precision="fp32", shape=shape, packing="outside", layout="nhwc")
    except ImportError as e:  # MissingExtraError is one
        raise RuntimeUnavailable(f"the [mobile] extra is not installed ({e}); {hint}") from None
    runner = TFLiteRunner(path, threads=threads, layout="nhwc")
    return Runner(runner, "fp32, NHWC (the Mobile AI contract), XNNPACK, fixed shape", {"model.tflite": path.stat().st_size}, nhwc=True)


def _fused(
    model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool, precision: str = "fp32"
) -> Runner:
    import torch

    from unisp.export.fused import FusedISP, bf16_unavailable_reason, load_kernel, supports

    if not supports(model):
        raise RuntimeUnavailable(f"the fused kernel runs efficient_isp and robust_isp, not {_model_name(model)}")
    lib = load_kernel()
    if lib is None and (precision == "bf16" or not fallback):
        raise RuntimeUnavailable("the fused kernel could not be compiled (no C++ compiler?)")
    if precision == "bf16" and (reason := bf16_unavailable_reason()) is not None:
        raise RuntimeUnavailable(reason)
    fused = FusedISP(model, threads=threads, precision=precision)

    def run(inp: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fused(inp)

    if precision == "bf16":
        return Runner(run, "C++ kernel, NCHW, bf16 activations and weights (vdpbf16ps), fp32 accumulation")
    if lib is None:  # fallback: FusedISP runs the PyTorch model (load_kernel logged why)
        return Runner(run, "PyTorch fallback (the fused kernel could not be compiled), NCHW")
    return Runner(run, f"C++ kernel, NCHW, {lib.unisp_fused_vector_width() * 32}-bit vectors")


def _fused_bf16(model: nn.Module, threads: int | None, shape: tuple[int, int] | None, workdir: Path, fallback: bool) -> Runner:
    return _fused(model, threads, shape, workdir, fallback, precision="bf16")


#: Every runtime, by name, in the order they are reported (``torch`` first: the others are compared with it).
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime("torch", True, "fp32", _torch, any_device=True),
        Runtime("compile", False, "fp32", _compile),
        Runtime("onnxruntime", True, "fp32", _onnxruntime),
        Runtime("tflite", False, "fp32", _tflite),
        Runtime("fused", True, "fp32", _fused),
        Runtime("fused-bf16", True, "bf16", _fused_bf16),
    )
}
#: Every runtime name, in report order.
NAMES: tuple[str, ...] = tuple(RUNTIMES)
#: The runtimes that take any input shape: what ``unisp process --backend`` accepts.
ANY_SHAPE: tuple[str, ...] = tuple(name for name, r in RUNTIMES.items() if r.any_shape)
#: Runtimes whose arithmetic is not float32 (their parity is judged by PSNR, not float32 rounding).
REDUCED_PRECISION: tuple[str, ...] = tuple(name for name, r in RUNTIMES.items() if r.precision != "fp32")
#: The runtime every other one is compared with.
REFERENCE = "torch"


def get_runtime(name: str) -> Runtime:
    """The :class:`Runtime` called ``name``.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).

    Example:
        >>> [(name, get_runtime(name).any_shape) for name in NAMES]  # doctest: +NORMALIZE_WHITESPACE
        [('torch', True), ('compile', False), ('onnxruntime', True), ('tflite', False), ('fused', True),
         ('fused-bf16', True)]
        >>> get_runtime("eager")
        Traceback (most recent call last):
        ...
        unisp.errors.ConfigError: unknown runtime 'eager' (known: torch, compile, onnxruntime, tflite, fused, fused-bf16)
    """
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ConfigError(f"unknown runtime {name!r} (known: {', '.join(NAMES)})") from None


def build_runner(
    name: str,
    model: nn.Module,
    *,
    threads: int | None = None,
    shape: tuple[int, int] | None = None,
    workdir: str | Path,
    fallback: bool = False,
) -> Runner:
    """Build runtime ``name`` for ``model`` (exports and compilation happen here).

    Args:
        name: one of :data:`NAMES`.
        model: the generator (in eval mode; not modified, but runners built from it follow later
            changes to its weights only for ``torch`` and ``fused``).
        threads: the runtime's CPU threads (``None``: its default; ``torch`` uses torch's setting).
        shape: the full-resolution output ``(H, W)`` (even) to build for: required by the runtimes
            that are not :attr:`Runtime.any_shape`; given to ``onnxruntime``, a fixed-shape export
            instead of a dynamic one; ignored by the others.
        workdir: an existing folder for the files a runtime writes (exports); the caller deletes it.
        fallback: ``fused`` without a C++ compiler runs the PyTorch model (logged once) instead of
            raising, as ``unisp process`` does; the benchmark never times the fallback.

    Returns:
        The :class:`Runner`.

    Raises:
        ConfigError: an unknown name, or no ``shape`` for a fixed-shape runtime.
        RuntimeUnavailable: the runtime cannot run here, or not this model.
    """
    runtime = get_runtime(name)
    if shape is None and not runtime.any_shape:
        raise ConfigError(f"runtime {name} is built for one fixed shape: give its (height, width)")
    return runtime.builder(model, threads, shape, Path(workdir), fallback)
