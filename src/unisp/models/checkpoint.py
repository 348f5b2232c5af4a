"""unisp model files: one ``.safetensors`` file, weights plus a JSON header.

The header (safetensors metadata key ``"unisp"``) says everything needed to use the weights:
the architecture (name and kwargs), the input packing and normalisation, output handling, a
training summary and the unisp version. Loading parses only JSON and raw tensor bytes — never
a pickle — so a model file cannot run code. Legacy ``.pth`` weights are converted once with
:func:`import_reference` (``unisp import-reference``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from unisp import __version__
from unisp.errors import UnispError
from unisp.fileio import write_bytes
from unisp.models.base import Generator
from unisp.models.reference import REFERENCE_WHITE, load_reference, reference_adaptation
from unisp.models.registry import MODEL_NAMES, build_model, count_parameters

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
#: First bytes of a pickle (protocol ≥ 2) and of a zip archive (torch.save's default format).
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")
#: safetensors files start with an 8-byte little-endian header length, then the JSON header.
_LENGTH_BYTES = 8


def save_model(path: str | Path, model: Generator, *, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` as a unisp ``.safetensors`` model file, atomically.

    Args:
        path: output file (``.safetensors``).
        model: the generator.
        name: its registry name (checked against the weights).
        meta: extra header fields, JSON-serialisable: e.g. ``{"training": {...summary...}}``;
            may override ``normalisation``/``black_white``/``clamp_at_inference``/``training``
            but not the architecture fields.

    Returns:
        The header written.
    """
    path = Path(path)
    meta = dict(meta or {})
    clash = [k for k in meta if k in _RESERVED]
    if clash:
        raise UnispError(f"{path}: meta may not set reserved header fields {clash}")
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
        ``(model, header)``: the generator in eval mode and the parsed JSON header.

    Raises:
        UnispError: naming the file, for a ``.pth`` pickle (convert it with ``unisp import-reference``),
        a missing, truncated or corrupt file, a missing header, or weights that do not fit.
    """
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnispError(_pickle_message(path))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UnispError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.startswith(_PICKLE_MAGIC):
        raise UnispError(_pickle_message(path))
    header = _parse_header(path, data)
    try:
        state = safetensors.torch.load(data)
    except Exception as e:  # safetensors raises its own error type for every malformed file
        raise UnispError(f"{path}: corrupt safetensors file ({' '.join(str(e).split())[:200]})") from None
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise UnispError(f"{path}: weights contain NaN or Inf ({', '.join(sorted(bad))}); the model is unusable")
    try:
        model = build_model(header["model"], **header.get("model_kwargs", {}))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, UnispError, TypeError) as e:
        raise UnispError(f"{path}: weights do not fit model {header['model']!r} ({' '.join(str(e).split())[:400]})") from None
    return model.eval(), header


def _pickle_message(path: Path) -> str:
    return (
        f"{path}: looks like a PyTorch pickle; unisp loads only .safetensors model files "
        f"(pickles can run code). Convert it once with `unisp import-reference {path} OUT.safetensors`"
    )


def _parse_header(path: Path, data: bytes) -> dict[str, Any]:
    """The unisp JSON header from the raw bytes of a safetensors file (validating the framing)."""
    bad = f"{path}: not a safetensors model file or truncated"
    if len(data) < _LENGTH_BYTES + 2:
        raise UnispError(bad)
    n = int.from_bytes(data[:_LENGTH_BYTES], "little")
    if n > len(data) - _LENGTH_BYTES or data[_LENGTH_BYTES : _LENGTH_BYTES + 1] != b"{":
        raise UnispError(bad)
    try:
        raw = json.loads(data[_LENGTH_BYTES : _LENGTH_BYTES + n])
        header = json.loads(raw["__metadata__"][HEADER_KEY])
    except (ValueError, KeyError, TypeError):
        raise UnispError(f"{path}: safetensors file without a unisp model header (not written by unisp)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME or "model" not in header:
        raise UnispError(f"{path}: unisp header lacks format/model fields")
    version = header.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise UnispError(f"{path}: unisp header field format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise UnispError(
            f"{path}: model file format {header['format_version']} is newer than this unisp supports "
            f"({FORMAT_VERSION}); upgrade unisp"
        )
    return header


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
            "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "reference_packing": "(B, Gb, R, Gr) (see unisp.raw.bayer.REFERENCE_ORDER)",
            "reference_normalisation": f"per-channel (x − black_c)/({REFERENCE_WHITE} − black_c)",
        },
        "channel_adaptation": reference_adaptation(model.name),
    }
    return save_model(out, model, name=model.name, meta=meta)

