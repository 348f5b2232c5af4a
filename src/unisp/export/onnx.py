"""ONNX export (fp32, fp16, int8; dynamic or fixed shape) and an ONNX Runtime runner.

The file comes from ``torch.onnx.export`` with the ``torch.export``-based ("dynamo") exporter,
the default since PyTorch 2.9 (the TorchScript exporter is deprecated): for these networks it
emits a clean graph of ~20 nodes (Slice/Concat/Sub/Div for in-graph packing, Conv, Tanh, Relu,
DepthToSpace, Clip) that passes ``onnx.checker`` with ``full_check``. Weights are stored inside
the one file (no external data). Dynamic files name their spatial axes; fixed files have every
dimension set, which is what phone latency benchmarks use.

Precisions:

* ``fp32``: as trained.
* ``fp16``: the network body (weights and activations) in float16; the input, the in-graph
  normalisation and the output stay float32, with Cast nodes at the boundary, so callers feed and
  read float32 and 14-bit sensor values are not rounded before black-level subtraction.
  (ONNX Runtime's x86 CPU provider has no float16 convolution and runs such a file in float32,
  so on this runtime the fp16 parity measures the rounding of the weights only.)
* ``int8``: static post-training quantisation calibrated on ``calib`` RAW files
  (:mod:`unisp.export.quantize`).

Every export ends with a parity check against PyTorch (:mod:`unisp.export.parity`); the file and
its ``<file>.parity.json`` are written only if it passes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unisp import __version__
from unisp.errors import UnispError
from unisp.export.graph import ExportGraph, SensorCalibration, check_input, check_input_wb, check_model_shape
from unisp.export.parity import verify_and_write
from unisp.export.threads import check_threads
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: ONNX opset: the lowest the torch.export-based exporter emits (18); ONNX Runtime reads it from 1.14 on.
ONNX_OPSET = 18
#: Full-resolution size of the example input traced for a dynamic-shape export (any even size ≥ 8 works;
#: torch.export would specialise sizes 0 and 1).
TRACE_SIZE = (16, 24)
#: Prefix of the metadata keys unisp writes into the file (``onnx.ModelProto.metadata_props``).
META_PREFIX = "unisp."
#: The only execution provider used (the CPU build ships with onnxruntime's default wheel).
PROVIDER = "CPUExecutionProvider"
#: Loggers of the exporter's graph optimiser (onnxscript, onnx-ir), silenced below WARNING during export.
EXPORTER_LOGGERS: tuple[str, ...] = ("onnxscript", "onnx_ir", "torch.onnx", "torch.export")


def export_onnx(
    model: nn.Module,
    out: str | Path,
    *,
    precision: str = "fp32",
    shape: tuple[int, int] | None = None,
    packing: str = "outside",
    layout: str = "nchw",
    calib: str | Path | Sequence[RawFrame] | None = None,
    sensor: SensorCalibration | None = None,
) -> Path:
    """Export a generator to one self-contained ONNX file, check it, and prove parity with PyTorch.

    Args:
        model: a generator (packed ``(N, 4, h, w)`` in [0, 1] → ``(N, 3, 2h, 2w)``).
        out: the ``.onnx`` file to write.
        precision: ``fp32``, ``fp16`` or ``int8`` (needs ``calib``).
        shape: full-resolution ``(H, W)`` (even) for a fixed-shape file; ``None`` for dynamic H and W.
        packing: ``outside`` (input: packed planes in [0, 1]) or ``inside`` (input: the RAW mosaic in
            sensor units; the CFA and levels are baked in, from ``sensor`` or the first calibration file).
        layout: ``nchw`` or ``nhwc`` for input and output.
        calib: a folder of RAW files (or frames already read): int8 calibration data, and parity samples
            (centre crops of the first files) instead of synthetic ones.
        sensor: the constants an ``inside`` graph bakes in.

    Returns:
        ``out``. ``<out>.parity.json`` is written beside it.

    Raises:
        ConfigError: an invalid option (unknown precision, odd shape, int8 without ``calib`` ...).
        ParityError: the exported file misses its parity threshold; nothing is written.
    """
    from unisp.export.quantize import INT8_SCHEME, calibration_crops, export_inputs, quantize_int8

    out = Path(out)
    check_input_wb(model, packing, precision, "onnx")
    frames, sensor = export_inputs(precision, calib, packing, sensor)
    if shape is not None:
        check_model_shape(model, shape)
    reference = ExportGraph(model, packing, layout, sensor=sensor)
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="unisp-onnx-") as workdir:
        if precision == "int8":
            proto = to_onnx(reference, None)
            proto = quantize_int8(proto, reference, calibration_crops(frames), Path(workdir))
            if shape is not None:
                proto = fix_shape(proto, reference, shape)
            extra["quantisation"] = INT8_SCHEME
            extra["calibration"] = f"{len(frames)} file(s), crops via unisp.export.quantize.calibration_crops"
        else:
            dtype = torch.float16 if precision == "fp16" else torch.float32
            proto = to_onnx(ExportGraph(model, packing, layout, sensor=sensor, compute_dtype=dtype), shape)
            if precision == "fp16":
                extra["fp16"] = "network body float16; input, normalisation and output float32"
    shape_text = "dynamic" if shape is None else f"{shape[0]}x{shape[1]}"
    set_metadata(proto, reference, precision=precision, shape=shape_text, model=getattr(model, "name", ""))
    check(proto, out)
    data = proto.SerializeToString()
    runner = OnnxRunner(data)
    return verify_and_write(
        runner, reference, data, out, frames, shape,
        format="onnx", precision=precision, shape=shape_text, runtime=runner.runtime, extra=extra,
    )


def to_onnx(graph: ExportGraph, shape: tuple[int, int] | None) -> Any:
    """``graph`` as an ``onnx.ModelProto``: fixed input shape for ``shape``, else dynamic height and width
    (a second input, the as-shot gains, has the fixed shape ``(1, 3)``)."""
    height, width = shape or TRACE_SIZE
    example = graph.example_inputs(height, width)
    dynamic = None
    if shape is None:
        h_axis, w_axis = (2, 3) if graph.layout == "nchw" else (1, 2)
        h, w = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
        if graph.packing == "inside":  # the mosaic is whole 2×2 tiles: declare its sizes even
            h, w = 2 * h, 2 * w
        dynamic = {"x": {h_axis: h, w_axis: w}, **({"gains": None} if graph.takes_gains else {})}
    with warnings.catch_warnings(), quiet_loggers(EXPORTER_LOGGERS):
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        try:
            program = torch.onnx.export(
                graph.eval(), example, None, dynamo=True, opset_version=ONNX_OPSET, external_data=False,
                input_names=graph.input_names, output_names=[graph.output_name], dynamic_shapes=dynamic,
                verbose=False,
            )
        except Exception as e:  # noqa: BLE001 - the exporter raises many types; say which model failed
            raise UnispError(f"torch.onnx.export failed for {getattr(graph.model, 'name', 'the model')}: {e}") from None
    return program.model_proto


@contextlib.contextmanager
def quiet_loggers(names: Sequence[str], level: int = logging.WARNING) -> Iterator[None]:
    """Raise the level of the named loggers for a while (the exporter's optimiser logs every pass at INFO)."""
    loggers = [logging.getLogger(name) for name in names]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, before):
            logger.setLevel(old)


def fix_shape(proto: Any, graph: ExportGraph, shape: tuple[int, int]) -> Any:
    """Set every input and output dimension of a dynamic-shape model to ``shape`` and re-infer shapes."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    out_shape = (1, 3, *shape) if graph.layout == "nchw" else (1, *shape, 3)
    proto = update_inputs_outputs_dims(
        proto, {graph.input_name: list(graph.input_shape(*shape))}, {graph.output_name: list(out_shape)}
    )
    del proto.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def set_metadata(proto: Any, graph: ExportGraph, **fields: str) -> None:
    """Record the input contract and provenance in the file (``unisp.*`` metadata properties)."""
    values = {
        "input": graph.describe_input(),
        "output": graph.describe_output(),
        "packing": graph.packing,
        "layout": graph.layout,
        "input_wb": graph.input_wb,
        "unisp_version": __version__,
        **fields,
    }
    if graph.packing == "inside":
        values["sensor"] = json.dumps(
            {"cfa": graph.sensor.cfa.value, "black": graph.sensor.black, "white": graph.sensor.white}
        )
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, str(value)
    proto.producer_name = "unisp"


def check(proto: Any, out: Path) -> None:
    """Run onnx's checker (full check, with shape inference) on ``proto``; a failure is a UnispError."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise UnispError(f"{out}: exported graph fails onnx.checker ({' '.join(str(e).split())[:300]})") from None


class OnnxRunner:
    """Runs an ONNX file with ONNX Runtime on the CPU.

    Args:
        source: the ``.onnx`` file (or its bytes).
        threads: intra-op threads (``None``: ONNX Runtime's default, one per physical core).

    Calling it with a torch tensor or a NumPy array in the file's input contract (and, for a file
    with a second input, the ``(N, 3)`` as-shot gains) returns the output of the same kind. For files unisp wrote, the input is checked against the contract recorded
    in the file (rank, channels, even mosaic sizes) first, with a one-line error.

    Example:
        >>> runner = OnnxRunner("isp.onnx", threads=2)            # doctest: +SKIP
        >>> rgb = runner(torch.rand(1, 4, 256, 256))               # doctest: +SKIP
    """

    def __init__(self, source: str | Path | bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        check_threads(threads)
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: ONNX Runtime's warnings go to stderr unasked
        name = "<bytes>" if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(
                source if isinstance(source, bytes) else str(source), options, providers=[PROVIDER]
            )
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise UnispError(f"{name}: cannot load ONNX model ({' '.join(str(e).split())[:300]})") from None
        self.name = name
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]
        self.metadata = {
            k[len(META_PREFIX) :]: v
            for k, v in self.session.get_modelmeta().custom_metadata_map.items()
            if k.startswith(META_PREFIX)
        }
        self.runtime = f"onnxruntime {ort.__version__} {PROVIDER}"

    def __call__(self, x: torch.Tensor | np.ndarray, gains: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | np.ndarray:
        """Args: the input (float), and the as-shot gains for a file that takes them. Returns: the
        output, a torch tensor for torch input, else an array."""
        is_torch = isinstance(x, torch.Tensor)
        array = x.detach().cpu().numpy() if is_torch else np.asarray(x)
        if "packing" in self.metadata:
            check_input(array.shape, self.metadata["packing"], self.metadata["layout"])
        feeds = {self.input_name: np.ascontiguousarray(array, dtype=np.float32)}
        if (gains is None) != (len(self.input_names) == 1):
            raise UnispError(f"{self.name}: takes the inputs {', '.join(self.input_names)}")
        if gains is not None:
            gains = gains.detach().cpu().numpy() if isinstance(gains, torch.Tensor) else np.asarray(gains)
            feeds[self.input_names[1]] = np.ascontiguousarray(gains, dtype=np.float32)
        try:
            (y,) = self.session.run(None, feeds)
        except Exception as e:  # noqa: BLE001 - e.g. a shape a fixed-shape file does not take
            raise UnispError(f"{self.name}: ONNX Runtime cannot run this input ({' '.join(str(e).split())[:300]})") from None
        return torch.from_numpy(y) if is_torch else y

