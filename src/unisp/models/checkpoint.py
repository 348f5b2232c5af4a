"""unisp model files: one ``.safetensors`` file, weights plus a JSON header.

The header (safetensors metadata key ``"unisp"``) says everything needed to use the weights:
the architecture (name and kwargs), the input packing and normalisation, output handling, a
training summary, the unisp version and, for a model trained with RAW values given (``data.cfa``,
``data.camera`` …), those values (``raw_input``, read back by :func:`input_options`). Loading parses only JSON and raw tensor bytes — never
a pickle — so a model file cannot run code. Legacy ``.pth`` weights are converted once with
:func:`import_reference` (``unisp import-reference``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import reprlib
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from unisp import __version__
from unisp.errors import ConfigError, UnispError
from unisp.fileio import read_input_bytes, write_bytes
from unisp.isp.awb import INPUT_WB_MODES
from unisp.models.base import Generator
from unisp.models.reference import REFERENCE_WHITE, load_reference, reference_adaptation
from unisp.models.registry import MODEL_FILE_MAX_BYTES, MODEL_NAMES, build_model, count_parameters
from unisp.raw.options import RawOptions

log = logging.getLogger(__name__)

#: Safetensors metadata key holding the JSON header.
HEADER_KEY = "unisp"
#: ``format`` field of every header; bump ``FORMAT_VERSION`` on incompatible changes.
FORMAT_NAME = "unisp-model"
FORMAT_VERSION = 1
#: What every generator takes and gives (recorded so a file is usable without reading the code).
PACKING = "canonical RGGB-relative (R, Gr, Gb, B)"
NORMALISATION = "per-channel (x − black_c)/(white − black_c)"
BLACK_WHITE = "black level subtracted per packed plane, divided by (white − black_c), clipped to [0, 1]"
OUTPUT = "sRGB (B, 3, H, W), H and W twice the packed size"
#: Header fields save_model sets itself; ``meta`` may not override them.
_RESERVED = ("format", "format_version", "model", "model_kwargs", "packing", "parameters", "unisp_version")
#: Extensions of PyTorch pickles (refused by load_model).
_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".pickle")
#: A pickle of protocol 2 or later opens with the PROTO opcode and its protocol number (2 to
#: ``pickle.HIGHEST_PROTOCOL``, 5); torch.save's default format is a zip archive (a local file header).
_PICKLE_PROTO = 0x80
_PICKLE_PROTOCOLS = range(2, 6)
_ZIP_MAGIC = b"PK\x03\x04"
#: safetensors files start with an 8-byte little-endian header length, then the JSON header.
_LENGTH_BYTES = 8
#: Longest JSON header read. unisp writes about 1 KB: the tensor index (~100 bytes a tensor) and a
#: training summary of a few hundred bytes; the largest network build_model accepts has 246 tensors
#: (a 28 KB header). 1 MiB leaves room for a long ``meta`` and stops a header that claims gigabytes.
MAX_HEADER_BYTES = 2**20
#: Deepest nesting of JSON objects and arrays in a header. unisp's go 3 deep (the tensor index:
#: name → entry → shape; a header's ``training`` summary: header → training → values); 32 leaves
#: room for a nested ``meta`` and keeps every later reader (json.dumps, str) far from Python's recursion limit.
MAX_HEADER_DEPTH = 32
#: Types of the header fields unisp reads besides ``model`` (checked against the registry),
#: ``format`` and ``format_version``; other fields ``meta`` added are kept as they are.
_FIELD_TYPES: dict[str, type] = {
    "model_kwargs": dict,
    "packing": str,
    "normalisation": str,
    "black_white": str,
    "output": str,
    "clamp_at_inference": bool,
    "training": dict,
    "unisp_version": str,
    "parameters": int,
    "source": dict,
    "channel_adaptation": str,
    "raw_input": dict,
    "input_wb": str,
}
#: How messages name the JSON types of :data:`_FIELD_TYPES`.
_TYPE_NAMES: dict[type, str] = {dict: "an object", str: "a string", bool: "true or false", int: "an integer"}


def save_model(path: str | Path, model: Generator, *, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` as a unisp ``.safetensors`` model file, atomically.

    Args:
        path: output file (``.safetensors``).
        model: the generator.
        name: its registry name (checked against the weights).
        meta: extra header fields, JSON-serialisable: e.g. ``{"training": {...summary...}}``, or
            ``{"raw_input": options.to_dict()}`` (validated here as on loading, see
            :func:`recorded_options`); ``model.input_wb`` is recorded as ``input_wb`` when not
            ``"none"``; may override ``normalisation``/``black_white``/
            ``clamp_at_inference``/``training`` but not the architecture fields.

    Returns:
        The header written.

    Example:
        >>> import tempfile
        >>> model = build_model("efficient_isp")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     header = save_model(Path(folder) / "isp.safetensors", model, name="efficient_isp")
        ...     loaded, _ = load_model(Path(folder) / "isp.safetensors")
        >>> type(loaded).__name__, torch.equal(loaded.conv1.weight, model.conv1.weight)
        ('EfficientISP', True)
    """
    path = Path(path)
    meta = dict(meta or {})
    clash = [k for k in meta if k in _RESERVED]
    if clash:
        raise UnispError(f"{path}: meta may not set reserved header fields {clash}")
    recorded_options(path, meta)
    input_wb = getattr(model, "input_wb", "none")
    if input_wb != "none":  # absent means "none": files from before input_wb read the same
        meta.setdefault("input_wb", input_wb)
    recorded_input_wb(path, meta)
    kwargs = dict(getattr(model, "model_kwargs", {}))
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _check_fits(path, name, kwargs, state)
    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": name,
        "model_kwargs": kwargs,
        "packing": PACKING,
        "normalisation": NORMALISATION,
        "black_white": BLACK_WHITE,
        "output": OUTPUT,
        "clamp_at_inference": True,
        "training": {},
        "unisp_version": __version__,
        "parameters": count_parameters(model),
    }
    header.update(meta)
    try:
        text = json.dumps(header, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise UnispError(f"{path}: model header is not JSON-serialisable ({e})") from None
    data = safetensors.torch.save(state, metadata={"format": FORMAT_NAME, HEADER_KEY: text})
    write_bytes(path, data)
    return json.loads(text)


def _check_fits(path: Path, name: str, kwargs: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    if name not in MODEL_NAMES:
        raise UnispError(f"{path}: unknown model name {name!r} (known: {', '.join(MODEL_NAMES)})")
    try:
        build_model(name, **kwargs).load_state_dict(state, strict=True)
    except (RuntimeError, UnispError) as e:
        raise UnispError(f"{path}: weights do not fit model {name!r} ({' '.join(str(e).split())[:400]})") from None


def load_model(path: str | Path) -> tuple[Generator, dict[str, Any]]:
    """Read a unisp model file without unpickling anything.

    Args:
        path: a ``.safetensors`` file written by :func:`save_model`.

    Returns:
        ``(model, header)``: the generator in eval mode, its ``input_wb`` set from the header
        (``"none"`` when absent), and the parsed JSON header.

    Raises:
        UnispError: naming the file, for a ``.pth`` pickle (convert it with ``unisp import-reference``),
        a missing, non-regular (FIFO, device), oversized, truncated or corrupt file, a missing or
        malformed header, an architecture argument of the wrong type or out of range (naming the
        key), or weights that do not fit.
    """
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnispError(_pickle_message(path))
    data = read_input_bytes(path, limit=MODEL_FILE_MAX_BYTES, what="model file")
    kind = sniff(data)
    if kind in ("pickle", "zip"):
        raise UnispError(_pickle_message(path))
    if kind != "safetensors":
        raise UnispError(f"{path}: not a safetensors model file or truncated")
    header = _parse_header(path, data)
    try:
        model = build_model(header["model"], **header.get("model_kwargs", {}))
    except UnispError as e:
        raise UnispError(f"{path}: {e}") from None
    state = _read_weights(path, data)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UnispError(f"{path}: weights do not fit model {header['model']!r} ({' '.join(str(e).split())[:400]})") from None
    model.input_wb = recorded_input_wb(path, header)
    return model.eval(), header


def load_generator(spec: str | Path) -> tuple[Generator, dict[str, Any], Path | None]:
    """A generator from a model name (freshly initialised, random weights) or a model file.

    Args:
        spec: one of :data:`unisp.models.registry.MODEL_NAMES`, or a file for :func:`load_model`.

    Returns:
        ``(model, header, file)``: for a name, the model as :func:`build_model` gives it, ``{}`` and
        None; for a file, what :func:`load_model` returns and the file's path.

    Raises:
        UnispError: neither a model name nor an existing path (the message lists the names), or
            whatever :func:`load_model` finds wrong with the file.
    """
    if str(spec) in MODEL_NAMES:
        return build_model(str(spec)), {}, None
    path = Path(spec)
    if not path.exists():  # anything that exists goes to load_model, which says what is wrong with it
        raise UnispError(f"{spec}: neither a model name ({', '.join(MODEL_NAMES)}) nor a model file")
    model, header = load_model(path)
    return model, header, path


def sniff(data: bytes) -> str:
    """What a model file's bytes hold: ``"safetensors"``, ``"pickle"``, ``"zip"`` or ``"unknown"``.

    safetensors is recognised by its structure (a header length that fits the file, a header that
    opens with ``{``) and checked first: its 8-byte little-endian header length starts with 0x80 for
    one header length in 32 (lengths are multiples of 8), and a header of 640, 896, 1,152 or 1,408
    bytes (the size unisp writes) begins exactly like a pickle of protocol 2 to 5. A pickle's next
    bytes (opcodes) never make a header length that fits the file.
    """
    if len(data) >= _LENGTH_BYTES + 2:
        n = int.from_bytes(data[:_LENGTH_BYTES], "little")
        if 2 <= n <= len(data) - _LENGTH_BYTES and data[_LENGTH_BYTES] == ord("{"):
            return "safetensors"
    if data.startswith(_ZIP_MAGIC):
        return "zip"
    if len(data) >= 2 and data[0] == _PICKLE_PROTO and data[1] in _PICKLE_PROTOCOLS:
        return "pickle"
    return "unknown"


def _read_weights(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, refusing a corrupt file and NaN or Inf weights."""
    try:
        state = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise UnispError(f"{path}: corrupt safetensors file ({' '.join(str(e).split())[:200]})") from None
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise UnispError(f"{path}: weights contain NaN or Inf ({', '.join(sorted(bad))}); the model is unusable")
    return state


def _pickle_message(path: Path) -> str:
    return (
        f"{path}: looks like a PyTorch pickle; unisp loads only .safetensors model files "
        f"(pickles can run code). Convert it once with `unisp import-reference {path} OUT.safetensors`"
    )


def _parse_header(path: Path, data: bytes) -> dict[str, Any]:
    """The unisp JSON header of a safetensors file (:func:`sniff` has checked the framing), validated."""
    n = int.from_bytes(data[:_LENGTH_BYTES], "little")
    if n > MAX_HEADER_BYTES:
        raise UnispError(f"{path}: safetensors header of {n:,} bytes, more than a model file has ({MAX_HEADER_BYTES:,} at most)")
    text = _metadata_text(_parse_json(path, data[_LENGTH_BYTES : _LENGTH_BYTES + n]))
    if text is None:
        raise UnispError(_no_header(path))
    header = _parse_json(path, text)
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME or "model" not in header:
        raise UnispError(f"{path}: unisp header lacks format/model fields")
    _check_version(path, header.get("format_version", 0))
    _check_field_types(path, header)
    recorded_options(path, header)
    recorded_input_wb(path, header)
    return header


def _no_header(path: Path) -> str:
    return f"{path}: safetensors file without a unisp model header (not written by unisp)"


def _parse_json(path: Path, text: str | bytes) -> Any:
    """Parsed JSON text of a header, nested at most :data:`MAX_HEADER_DEPTH` deep.

    Raises:
        UnispError: naming the file, for text that is not JSON or nests deeper.
    """
    too_deep = f"{path}: model header nested deeper than {MAX_HEADER_DEPTH} levels"
    try:
        value = json.loads(text)
    except ValueError:
        raise UnispError(_no_header(path)) from None
    except RecursionError:  # the decoder recurses once per level: thousands of levels exhaust the stack
        raise UnispError(too_deep) from None
    if _nesting_depth(value) > MAX_HEADER_DEPTH:
        raise UnispError(too_deep)
    return value


def _nesting_depth(value: Any) -> int:
    """How many levels of JSON objects and arrays ``value`` holds (0 for a scalar), counted without recursion."""
    depth, level = 0, [value]
    while level := [v for v in level if isinstance(v, (dict, list))]:
        depth += 1
        level = [child for v in level for child in (v.values() if isinstance(v, dict) else v)]
    return depth


def _metadata_text(raw: Any) -> str | None:
    """The unisp header's JSON text in a parsed safetensors header, or None where there is none."""
    metadata = raw.get("__metadata__") if isinstance(raw, dict) else None
    text = metadata.get(HEADER_KEY) if isinstance(metadata, dict) else None
    return text if isinstance(text, str) else None


def _check_version(path: Path, version: object) -> None:
    """Refuse a ``format_version`` that is not an integer, or is newer than :data:`FORMAT_VERSION`."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise UnispError(f"{path}: unisp header field format_version must be an integer, got {reprlib.repr(version)}")
    if version > FORMAT_VERSION:
        raise UnispError(
            f"{path}: model file format {version} is newer than this unisp supports ({FORMAT_VERSION}); upgrade unisp"
        )


def _check_field_types(path: Path, header: dict[str, Any]) -> None:
    """Refuse a header field of :data:`_FIELD_TYPES` that has another type, naming the key."""
    for key, kind in _FIELD_TYPES.items():
        value = header.get(key)
        if key in header and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise UnispError(f"{path}: unisp header field {key} must be {_TYPE_NAMES[kind]}, got {reprlib.repr(value)}")


def recorded_options(path: str | Path, header: dict[str, Any]) -> RawOptions:
    """The RAW values a model file's ``raw_input`` section records (nothing set when it has none).

    Raises:
        UnispError: naming the file and the field, for a value :class:`RawOptions` refuses.
    """
    try:
        return RawOptions.from_mapping(header.get("raw_input", {}), name=lambda key: f"unisp header field raw_input.{key}")
    except ConfigError as e:
        raise UnispError(f"{path}: {e}") from None


def recorded_input_wb(path: str | Path, header: dict[str, Any]) -> str:
    """What a model file says its input is white-balanced with (``input_wb``; ``"none"`` when absent).

    Raises:
        UnispError: naming the file and the field, for a value not in :data:`~unisp.isp.awb.INPUT_WB_MODES`.
    """
    mode = header.get("input_wb", "none")
    if mode not in INPUT_WB_MODES:
        raise UnispError(
            f"{path}: unisp header field input_wb must be one of {', '.join(INPUT_WB_MODES)}, got {reprlib.repr(mode)}"
        )
    return mode


def input_options(path: str | Path, header: dict[str, Any], given: RawOptions) -> RawOptions:
    """The values to read a model's RAW input with: its file's ``raw_input`` (what it was trained
    with), with every value ``given`` (a camera file, flags) gives in its place.

    One INFO line says which values came from the model file and which ``given`` overrode.
    """
    recorded = recorded_options(path, header)
    replaced = recorded.replaced_by(given)
    kept = [key for key in recorded.given() if key not in replaced]
    parts = [f"from the model file: {recorded.describe(kept)}"] if kept else []
    if replaced:
        parts.append(f"the model file's {', '.join(replaced)} overridden")
    if parts:
        log.info("%s: RAW input values %s", path, "; ".join(parts))
    return recorded.merged(given)


def import_reference(src: str | Path, out: str | Path, model_name: str | None = None) -> dict[str, Any]:
    """Convert one of the paper's released ``.pth`` files into a unisp model file.

    Args:
        src: the released state-dict pickle (read with ``weights_only=True``).
        out: the ``.safetensors`` file to write.
        model_name: registry name; inferred from the weights when None.

    Returns:
        The header written (records the source file, its SHA-256 and the channel-order adaptation).
    """
    src = Path(src)
    model = load_reference(src, model_name)
    source = read_input_bytes(src, limit=MODEL_FILE_MAX_BYTES, what="PyTorch state dict")
    step = re.search(r"step_(\d+)", src.stem)
    meta = {
        "training": {
            "origin": "released reference weights (Arhire & Timofte, CVPRW 2025)",
            "dataset": src.parent.name,
            "run": src.stem,
            "step": int(step.group(1)) if step else None,
        },
        "source": {
            "file": str(src),
            "sha256": hashlib.sha256(source).hexdigest(),
            "reference_packing": "(B, Gb, R, Gr) (see unisp.raw.bayer.REFERENCE_ORDER)",
            "reference_normalisation": f"per-channel (x − black_c)/({REFERENCE_WHITE} − black_c)",
        },
        "channel_adaptation": reference_adaptation(model.name),
    }
    return save_model(out, model, name=model.name, meta=meta)

