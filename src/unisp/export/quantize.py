"""int8 post-training quantisation: calibration crops from a folder of RAW files, ONNX Runtime static PTQ.

Calibration data is what the deployed model will see: packed crops of real RAW files, each
normalised with its own black and white levels (read with :func:`unisp.raw.io.read_raw`), then
converted to the exported graph's input contract. The ONNX file is quantised by ONNX Runtime
(:func:`onnxruntime.quantization.quantize_static`) in QDQ form: int8 weights, per output channel
and symmetric; uint8 activations with ranges from the calibration set's minima and maxima.
Everything up to the first convolution and its activation (layout transpose, in-graph packing,
black-level normalisation, conv1 + tanh) stays float32: quantising sensor values to 8 bits would
discard their low bits (see :func:`float_prefix`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from unisp.errors import ConfigError, RawFormatError, UnispError
from unisp.export.graph import ExportGraph, SensorCalibration, sensor_calibration
from unisp.export.parity import PRECISIONS
from unisp.raw.frame import RawFrame

log = logging.getLogger(__name__)

#: Calibration crop edge in packed pixels (256×256 output pixels): several times the network's
#: receptive field, small enough that the calibrator's stored activations stay in tens of MB.
CALIB_CROP = 128
#: Crops taken from each calibration file (at random positions, seeded).
CALIB_CROPS_PER_FILE = 4
#: At most this many calibration files are read (more adds time, rarely range information).
CALIB_MAX_FILES = 16
#: Seed of the crop positions, so a calibration is reproducible.
CALIB_SEED = 0
#: How the int8 file is quantised (recorded in its parity report).
INT8_SCHEME = (
    "ONNX Runtime static PTQ, QDQ: int8 weights per output channel (symmetric), uint8 activations, "
    "MinMax calibration; packing, normalisation and the first Conv + activation stay float32"
)
#: Activations that follow the first convolution (kept float32 with it).
FIRST_ACTIVATIONS = ("Tanh", "Relu")


def read_calibration(
    folder: str | Path, read: Callable[[Path], RawFrame] | None = None, limit: int = CALIB_MAX_FILES
) -> list[RawFrame]:
    """Read the RAW files of a calibration folder (sorted, at most ``limit``).

    Args:
        folder: the ``--calib`` folder.
        read: ``path → RawFrame`` (default :func:`unisp.raw.io.read_raw` with automatic layout).
        limit: the most files to read.

    Returns:
        The frames that could be read (what they hold is logged in one line); an unreadable file
        is logged and skipped.

    Raises:
        ConfigError: a folder that does not exist or holds no readable RAW file.
    """
    from unisp.raw.io import find_raw_files, read_raw
    from unisp.raw.summary import log_summary

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--calib {folder}: not a folder")
    read = read or read_raw
    frames = []
    for path in find_raw_files(folder)[:limit]:
        try:
            frames.append(read(path))
        except RawFormatError as e:
            log.warning("calibration: skipping %s", e)
    if not frames:
        raise ConfigError(f"--calib {folder}: no readable RAW file")
    log_summary(frames, "calibration")
    return frames


def export_inputs(
    precision: str, calib: str | Path | Sequence[RawFrame] | None, packing: str, sensor: SensorCalibration | None
) -> tuple[list[RawFrame] | None, SensorCalibration | None]:
    """Check an export's precision against its calibration data and read that data.

    Args:
        precision: ``fp32``, ``fp16`` or ``int8`` (needs ``calib``).
        calib: a folder of RAW files, frames already read, or ``None``.
        packing: ``outside`` or ``inside`` (an inside graph needs sensor constants).
        sensor: the constants an inside graph bakes in; ``None``: from the first calibration file.

    Returns:
        The calibration frames (or ``None``) and the sensor constants (``None`` for outside packing
        without ``sensor``).

    Raises:
        ConfigError: an unknown precision, or int8 without ``calib``.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "int8" and calib is None:
        raise ConfigError("int8 export needs a folder of representative RAW files to calibrate on (--calib DIR)")
    frames = None if calib is None else read_calibration(calib) if isinstance(calib, (str, Path)) else list(calib)
    if packing == "inside" and sensor is None:
        sensor = sensor_calibration(sample=frames[0] if frames else None)
    return frames, sensor


def calibration_crops(
    frames: Sequence[RawFrame], size: int = CALIB_CROP, per_frame: int = CALIB_CROPS_PER_FILE, seed: int = CALIB_SEED
) -> list[torch.Tensor]:
    """Random ``(1, 4, size, size)`` packed crops in [0, 1] (smaller frames give one whole-frame crop)."""
    rng = np.random.default_rng(seed)
    crops = []
    for frame in frames:
        planes = frame.normalized()
        h, w = planes.shape[-2:]
        ch, cw = min(size, h), min(size, w)
        for _ in range(per_frame if (ch, cw) != (h, w) else 1):
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crops.append(planes[None, :, top : top + ch, left : left + cw].contiguous())
    return crops


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, name: str, inputs: Sequence[np.ndarray]) -> None:
        self.name, self.inputs = name, iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.inputs, None)
        return None if x is None else {self.name: x}


def float_prefix(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes up to the first Conv and its activation (they stay float32).

    The first convolution reads the sensor's low bits: quantised, it costs the paper's ZRR model
    15 dB of parity on the real vivo X90 frame (27 against 43 dB in the TFLite export, which
    keeps it float the same way) for 14% of the MACs. Nodes are named first if unnamed.
    """
    nodes = model.graph.node
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    for i, node in enumerate(nodes):
        if node.op_type == "Conv":
            end = i + 2 if i + 1 < len(nodes) and nodes[i + 1].op_type in FIRST_ACTIVATIONS else i + 1
            return [n.name for n in nodes[:end]]
    raise UnispError("int8 quantisation: the graph has no convolution")


def quantize_int8(model: onnx.ModelProto, graph: ExportGraph, crops: Sequence[torch.Tensor], workdir: Path) -> onnx.ModelProto:
    """Statically quantise a float32 ONNX export of ``graph`` with calibration ``crops``.

    Args:
        model: the float32 file (dynamic or fixed shape matching the crops).
        graph: the graph it was exported from (converts the packed crops to its input contract).
        crops: canonical packed calibration inputs ``(1, 4, h, w)`` in [0, 1].
        workdir: a scratch folder (ONNX Runtime's quantiser works on files).

    Returns:
        The quantised model.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not crops:
        raise ConfigError("int8 quantisation needs calibration data (--calib DIR)")
    exclude = float_prefix(model)
    src, prepared, dst = workdir / "float.onnx", workdir / "prepared.onnx", workdir / "int8.onnx"
    onnx.save(model, src)
    # Shape inference only (no graph rewriting); it also marks the file as pre-processed.
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True, skip_optimization=True)
    inputs = [graph.to_graph_input(c).numpy() for c in crops]
    quantize_static(
        str(prepared),
        str(dst),
        _Reader(graph.input_name, inputs),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=exclude,
    )
    log.info("int8: calibrated on %d crops; float32 kept for %s", len(crops), ", ".join(exclude) or "nothing")
    return onnx.load(dst)

