"""TFLite / LiteRT export (fp32, fp16, int8; fixed shape) and a LiteRT interpreter runner.

The file comes from litert-torch (``torch.export`` → StableHLO → the LiteRT converter), with no
TensorFlow installed: the ``[mobile]`` extra (``pip install 'unisp[mobile]'``) brings litert-torch,
the LiteRT interpreter (``ai-edge-litert``) and the AI Edge Quantizer. The graph is an
:class:`~unisp.export.graph.ExportGraph`, NHWC by default: the Mobile AI challenge contract, float32
``[1, H/2, W/2, 4]`` packed Bayer in [0, 1] (canonical ``(R, Gr, Gb, B)`` order) → float32
``[1, H, W, 3]`` sRGB in [0, 1]; with ``packing="inside"``, ``[1, H, W, 1]`` RAW mosaic in sensor
units, packed and normalised in the graph.

Shapes: **fixed only**. litert-torch 0.10 lowers the pixel shuffle's reshapes, ``clamp`` and
strided slices through its JAX bridge, which cannot take symbolic sizes (``torch.export`` dynamic
dims fail there); rewriting the pixel shuffle as a transposed convolution converts, but freezes
the output shape, so only XNNPACK would run other sizes and the reference kernels refuse them.
Phone latency benchmarks use fixed-shape files anyway; export one per resolution, or an ONNX
file for a dynamic shape.

Precisions:

* ``fp32``: as trained.
* ``fp16``: weights stored as float16 with DEQUANTIZE ops in front of their consumers (LiteRT's
  float16 scheme, via the AI Edge Quantizer's ``FLOAT_CASTING``); the GPU delegate and XNNPACK on
  ARMv8.2+ then compute in float16, other CPUs dequantise to float32 once at load. Input and
  output stay float32.
* ``int8``: static post-training quantisation of the network body with the AI Edge Quantizer:
  int8 weights per output channel, int8 activations with ranges calibrated on crops of ``calib``
  RAW files, int8 kernels from the first activation on. The first convolution (the one that reads
  sensor values) and its activation stay float32, like everything outside the generator (in-graph
  packing, black-level normalisation, the input and output clamps): quantising the sensor signal
  to 8 bits before any processing is what costs accuracy (with the paper's ZRR Efficient ISP on
  the real 12-bit vivo X90 frame, 27.2 dB parity with it quantised, 42.9 dB without; that
  convolution is 14% of the MACs). The file takes and returns float32.

Every export ends with a parity check against PyTorch (:mod:`unisp.export.parity`); the file and
its ``<file>.parity.json`` are written only if it passes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unisp import __version__
from unisp.errors import ConfigError, UnispError
from unisp.export.graph import LAYOUTS, ExportGraph, SensorCalibration, check_input, check_input_wb, check_model_shape
from unisp.export.parity import fit, verify_and_write
from unisp.export.threads import check_threads
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: How to get the runtimes this module needs.
MOBILE_HINT = "pip install 'unisp[mobile]' (litert-torch, ai-edge-litert, ai-edge-quantizer)"
#: The modules of the ``[mobile]`` extra this module uses.
MOBILE_MODULES: tuple[str, ...] = ("litert_torch", "ai_edge_litert.interpreter", "ai_edge_quantizer")
#: Signature key and input name litert-torch gives a module converted with one positional input.
SIGNATURE_KEY = "serving_default"
INPUT_KEY = "args_0"
#: Name of the flatbuffer metadata entry holding unisp's JSON description of the contract.
METADATA_NAME = "unisp"
#: Tensors produced inside ``ExportGraph.model``: litert-torch names each tensor after the module
#: path that produced it (``...ExportGraph/...EfficientISP_model/...Conv2d_conv1;2``). int8
#: quantises exactly these; the float32 prefix and suffix (packing, normalisation, clamps) do not match.
BODY_TENSORS = r".*_model/.*"
#: Full-resolution edge of the square graph that int8 calibration runs (the calibration crops of
#: :func:`unisp.export.quantize.calibration_crops` are 128 packed pixels). Activation ranges do not
#: depend on the image size, and the tensor names are the same at every size, so ranges measured
#: here quantise a file of any fixed shape without calibrating at, say, 12 MP.
CALIB_SIZE = 256
#: Environment variable litert-torch reads to print its conversion progress (off during export).
PROGRESS_ENV = "LITERT_TORCH_SHOW_PROGRESS"
#: What the fp16 and int8 files are (recorded in their parity reports).
FP16_SCHEME = (
    "weights float16 (AI Edge Quantizer FLOAT_CASTING, DEQUANTIZE ops at load); input, output and "
    "activations float32 in the file. This parity ran on a CPU that dequantises the weights to "
    "float32, so it measures weight rounding; a GPU delegate or XNNPACK on ARMv8.2+ also computes in float16"
)
INT8_SCHEME = (
    "AI Edge Quantizer static PTQ: int8 weights per output channel (symmetric), int8 activations, "
    "min/max calibration, from the first activation's output on; the first convolution and its "
    "activation, packing, normalisation, clamps and the model's input and output stay float32"
)
#: Ops that may follow the first convolution as its activation (kept float32 with it).
ACTIVATION_OPS: tuple[str, ...] = (
    "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "HARD_SWISH", "LEAKY_RELU", "PRELU",
)
DYNAMIC_UNSUPPORTED = (
    "TFLite export needs a fixed --shape HxW: litert-torch 0.10 cannot convert this network with "
    "dynamic height and width (its JAX bridge, which lowers pixel shuffle, clamp and strided "
    "slices, needs static sizes). Export one file per resolution (what phone latency benchmarks "
    "use), or --format onnx for a dynamic-shape file"
)


class MissingExtraError(UnispError, ImportError):
    """The ``[mobile]`` extra is not installed (a :class:`UnispError` for the CLI, an ImportError for callers that skip)."""


def require_mobile() -> None:
    """Raise :class:`MissingExtraError` unless litert-torch, the LiteRT interpreter and the quantizer import."""
    try:
        for module in MOBILE_MODULES:
            importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"TFLite export and inference need the [mobile] extra ({e}): {MOBILE_HINT}") from None


def export_tflite(
    model: nn.Module,
    out: str | Path,
    *,
    precision: str = "fp32",
    shape: tuple[int, int] | None = None,
    packing: str = "outside",
    layout: str = "nhwc",
    calib: str | Path | Sequence[RawFrame] | None = None,
    sensor: SensorCalibration | None = None,
) -> Path:
    """Export a generator to a ``.tflite`` file, and prove parity with PyTorch in the LiteRT interpreter.

    Args:
        model: a generator (packed ``(N, 4, h, w)`` in [0, 1] → ``(N, 3, 2h, 2w)``).
        out: the ``.tflite`` file to write.
        precision: ``fp32``, ``fp16`` or ``int8`` (needs ``calib``).
        shape: full-resolution ``(H, W)``, both even. Required: see :data:`DYNAMIC_UNSUPPORTED`.
        packing: ``outside`` (input: packed planes in [0, 1]) or ``inside`` (input: the RAW mosaic in
            sensor units; the CFA and levels are baked in, from ``sensor`` or the first calibration file).
        layout: ``nhwc`` (the Mobile AI contract, LiteRT's native layout) or ``nchw``.
        calib: a folder of RAW files (or frames already read): int8 calibration data, and parity
            samples (centre crops of the first files) instead of synthetic ones.
        sensor: the constants an ``inside`` graph bakes in.

    Returns:
        ``out``. ``<out>.parity.json`` is written beside it.

    Raises:
        MissingExtraError: the ``[mobile]`` extra is not installed.
        ConfigError: an invalid option (unknown precision, no or odd shape, int8 without ``calib`` ...).
        ParityError: the file misses its parity threshold; nothing is written.
    """
    from unisp.export.quantize import calibration_crops, export_inputs

    out = Path(out)
    if shape is None:
        raise ConfigError(DYNAMIC_UNSUPPORTED)
    check_model_shape(model, shape)
    check_input_wb(model, packing, precision, "tflite")
    require_mobile()
    frames, sensor = export_inputs(precision, calib, packing, sensor)
    reference = ExportGraph(model, packing, layout, sensor=sensor)
    data = to_tflite(reference, shape)
    extra: dict[str, Any] = {"converter": _versions()}
    if precision == "fp16":
        data = fp16_weights(data)
        extra["fp16"] = FP16_SCHEME
    elif precision == "int8":
        data = quantize_int8(data, reference, calibration_crops(frames))
        extra["quantisation"] = INT8_SCHEME
        extra["calibration"] = f"{len(frames)} file(s), crops via unisp.export.quantize.calibration_crops"
    shape_text = f"{shape[0]}x{shape[1]}"
    data = set_metadata(
        data,
        input=reference.describe_input(), output=reference.describe_output(), packing=packing, layout=layout,
        input_wb=reference.input_wb,
        precision=precision, shape=shape_text, model=getattr(model, "name", ""), unisp_version=__version__,
        **({"sensor": {"cfa": sensor.cfa.value, "black": sensor.black, "white": sensor.white}} if packing == "inside" else {}),
    )
    runner = TFLiteRunner(data, layout=layout)
    return verify_and_write(
        runner, reference, data, out, frames, shape,
        format="tflite", precision=precision, shape=shape_text, runtime=runner.runtime, extra=extra,
    )


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence litert-torch's progress lines and INFO logs, Python warnings and progress bars for a while.

    litert-torch and JAX log every lowering at INFO on the root logger, so the root logger is held
    at WARNING meanwhile. Only Python-level output: the converter's C++ log lines (absl) still reach stderr.
    """
    before = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "n"
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if before is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = before


def to_tflite(graph: ExportGraph, shape: tuple[int, int]) -> bytes:
    """Convert ``graph`` with litert-torch for a fixed full-resolution ``(H, W)``; returns the flatbuffer."""
    import litert_torch

    example = torch.zeros(graph.input_shape(*shape))
    with quiet():
        try:
            return bytes(litert_torch.convert(graph.eval(), (example,)).model_content())
        except Exception as e:  # noqa: BLE001 - the converter raises many types; say which model failed
            name = getattr(graph.model, "name", "the model")
            raise UnispError(f"litert-torch conversion failed for {name}: {' '.join(str(e).split())[:300]}") from None


def fp16_weights(data: bytes) -> bytes:
    """Store every float32 weight of a TFLite model as float16 (see :data:`FP16_SCHEME`)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(data)
    q.add_weight_only_config(
        regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    with quiet():
        return bytes(q.quantize(enable_progress_report=False).quantized_model)


def quantize_int8(data: bytes, graph: ExportGraph, crops: Sequence[torch.Tensor]) -> bytes:
    """Quantise the body of a float32 TFLite export of ``graph`` to int8 (see :data:`INT8_SCHEME`).

    Args:
        data: the float32 flatbuffer, any fixed shape.
        graph: the :class:`ExportGraph` it was converted from (converted again at :data:`CALIB_SIZE` to calibrate).
        crops: packed calibration crops ``(1, 4, h, w)`` in [0, 1]; each is fitted to
            :data:`CALIB_SIZE` / 2 packed pixels (mirrored where smaller).

    Returns:
        The quantised flatbuffer: float32 input and output, int8 network body after the first convolution.

    Raises:
        UnispError: no crops, or the quantizer could not quantise the body.
    """
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    if not crops:
        raise UnispError("int8 quantisation needs at least one calibration crop")
    edge = CALIB_SIZE // 2
    inputs = [{INPUT_KEY: graph.to_graph_input(fit(c[0], edge, edge)[None]).numpy()} for c in crops]

    float_head = first_conv_tensors(data)

    def body_quantizer(model: bytes) -> Any:
        q = quantizer.Quantizer(model)
        q.add_static_config(
            regex=BODY_TENSORS, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            activation_num_bits=8, weight_num_bits=8,
        )
        for name in float_head:  # later recipe entries win: these ops stay float32
            q.update_quantization_recipe(  # an op's scope is its output names, each followed by ";"
                regex=f"^{re.escape(name)};$", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=AlgorithmName.NO_QUANTIZE,
            )
        return q

    with quiet():
        try:
            ranges = body_quantizer(to_tflite(graph, (CALIB_SIZE, CALIB_SIZE))).calibrate({SIGNATURE_KEY: inputs})
            quantized = bytes(body_quantizer(data).quantize(ranges, enable_progress_report=False).quantized_model)
        except (ValueError, RuntimeError) as e:  # e.g. ranges missing for a tensor of the target graph
            raise UnispError(f"int8 quantisation failed: {' '.join(str(e).split())[:300]}") from None
    _check_int8(quantized)
    return quantized


def first_conv_tensors(data: bytes) -> list[str]:
    """Output tensor names of the generator's first convolution and of the activation right after it.

    Args:
        data: a float32 TFLite flatbuffer converted from an :class:`ExportGraph`.

    Returns:
        One or two names (one when the activation is fused into the convolution).

    Raises:
        UnispError: no convolution inside the generator.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = model.subgraphs[0]
    op_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}

    def kind(op: Any) -> str:
        return op_names.get(flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex]), "")

    def name(index: int) -> str:
        return _text(graph.tensors[index].name)

    ops = list(graph.operators)
    for i, op in enumerate(ops):
        if kind(op) in ("CONV_2D", "DEPTHWISE_CONV_2D") and re.search(BODY_TENSORS, name(op.outputs[0])):
            names = [name(op.outputs[0])]
            after = ops[i + 1] if i + 1 < len(ops) else None
            if after is not None and kind(after) in ACTIVATION_OPS and list(after.inputs)[:1] == [op.outputs[0]]:
                names.append(name(after.outputs[0]))
            return names
    raise UnispError("int8 quantisation: no convolution found inside the generator")


def _check_int8(data: bytes) -> None:
    """Raise unless the body is int8 and the model's input and output are float32."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    io_types = [d["dtype"] for d in interpreter.get_input_details() + interpreter.get_output_details()]
    if any(t != np.float32 for t in io_types):
        raise UnispError(f"int8 quantisation changed the model's input/output types to {io_types}; expected float32")
    if not any(d["dtype"] == np.int8 for d in interpreter.get_tensor_details()):
        raise UnispError(
            f"int8 quantisation quantised nothing: no tensor name matched {BODY_TENSORS!r} "
            "(has litert-torch changed how it names tensors?)"
        )


def _text(name: str | bytes | None) -> str:
    """A flatbuffer string field (the object API gives bytes) as text."""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else (name or "")


def set_metadata(data: bytes, **fields: Any) -> bytes:
    """Add (or replace) the ``unisp`` metadata entry of a TFLite flatbuffer: ``fields`` as JSON."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    entries = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME]
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(json.dumps(fields, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = entries + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(data: bytes) -> dict[str, Any]:
    """The ``unisp`` metadata entry of a TFLite flatbuffer (``{}`` for files unisp did not write)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for entry in model.metadata or []:
        if _text(entry.name) == METADATA_NAME:
            raw = model.buffers[entry.buffer].data
            try:
                return json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))
            except ValueError:
                return {}
    return {}


class TFLiteRunner:
    """Runs a ``.tflite`` file in the LiteRT interpreter on the CPU (XNNPACK delegate, LiteRT's default).

    Args:
        source: the ``.tflite`` file (or its bytes).
        threads: interpreter threads (``None``: LiteRT's default).
        layout: layout of the tensors the caller passes and gets back. ``nchw`` (default) takes
            ``(N, C, h, w)`` like the PyTorch model and transposes to and from the file's layout;
            ``nhwc`` takes the file's own NHWC contract unchanged. A file without unisp metadata
            is taken to be NHWC.

    Calling it with a torch tensor or a NumPy array returns the output of the same kind. For files
    unisp wrote, the input is checked against the contract recorded in the file first.

    Example:
        >>> runner = TFLiteRunner("isp.tflite", threads=2)         # doctest: +SKIP
        >>> rgb = runner(torch.rand(1, 4, 256, 256))  # (1, 3, 512, 512)  # doctest: +SKIP
    """

    def __init__(self, source: str | Path | bytes, threads: int | None = None, *, layout: str = "nchw") -> None:
        require_mobile()
        from importlib.metadata import version

        from ai_edge_litert.interpreter import Interpreter

        check_threads(threads)
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.name = "<bytes>" if isinstance(source, bytes) else str(source)
        try:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
        except OSError as e:
            raise UnispError(f"{self.name}: cannot read ({e.strerror or e})") from None
        try:
            self.metadata = read_metadata(data)
            with quiet():
                self.interpreter = Interpreter(model_content=data, num_threads=threads)
                self.interpreter.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the flatbuffer reader and interpreter raise many types
            raise UnispError(f"{self.name}: cannot load TFLite model ({' '.join(str(e).split())[:300]})") from None
        (inp,), (out,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.input_index, self.output_index = inp["index"], out["index"]
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self.layout = layout
        self.file_layout = self.metadata.get("layout", "nhwc")
        self.runtime = f"ai-edge-litert {version('ai-edge-litert')} interpreter, XNNPACK, {threads or 'default'} threads"

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Args: the input (float, in ``layout``). Returns: the output in ``layout``, a torch tensor for torch input."""
        is_torch = isinstance(x, torch.Tensor)
        array = x.detach().cpu().numpy() if is_torch else np.asarray(x)
        if array.ndim != 4:
            raise UnispError(f"{self.name}: expected a 4-D input, got shape {tuple(array.shape)}")
        transpose = self.layout != self.file_layout
        if transpose:
            array = array.transpose((0, 2, 3, 1) if self.layout == "nchw" else (0, 3, 1, 2))
        if "packing" in self.metadata:
            check_input(array.shape, self.metadata["packing"], self.file_layout)
        if tuple(array.shape) != self.input_shape:
            raise UnispError(
                f"{self.name}: this fixed-shape file takes input {list(self.input_shape)} ({self.file_layout}), "
                f"got {list(array.shape)}"
            )
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(array, dtype=np.float32))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output_index)
        if transpose:
            y = np.ascontiguousarray(y.transpose((0, 3, 1, 2) if self.layout == "nchw" else (0, 2, 3, 1)))
        return torch.from_numpy(y) if is_torch else y
