"""The paper's released weights (legacy PyTorch state-dict pickles), adapted to canonical input.

The released files (Arhire & Timofte, CVPRW 2025; see ``shared/data/reference_checkpoints/SOURCES.md``)
were trained on packed planes in the reference order ``(B, Gb, R, Gr)``
(:data:`unisp.raw.bayer.REFERENCE_ORDER` as canonical indices), each normalised as
``(x − black_c) / (1023 − black_c)`` — what :meth:`unisp.raw.frame.RawFrame.normalized` computes with
the frame's own black and white levels. So the only change they need is the order of the first
convolution's input channels, which :func:`adapt_reference_state` folds into the weights: at run
time the model takes canonical ``(R, Gr, Gb, B)`` planes directly.

Files are read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers, so loading never runs code from the file.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from unisp.errors import UnispError
from unisp.fileio import read_input_bytes
from unisp.models.base import Generator
from unisp.models.registry import MODEL_FILE_MAX_BYTES, build_model
from unisp.raw.bayer import REFERENCE_INVERSE

logger = logging.getLogger(__name__)

#: White level the reference code normalises by (10-bit ZRR / Fujifilm UltraISP RAW).
REFERENCE_WHITE = 1023
#: File-name fragments of the released files → registry name (a cross-check on the state-dict keys).
_FILE_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("rmfa", "rmfa_tiny"),
    ("robust", "robust_isp"),
    ("efficient", "efficient_isp"),
    ("stage1", "efficient_isp"),
)
#: Keys some training scripts wrap a state dict in.
_WRAPPER_KEYS = ("state_dict", "model", "generator", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a PyTorch state-dict pickle safely (``weights_only=True``; never executes code).

    A state dict wrapped in ``{"state_dict": ...}``-style dicts is unwrapped and a ``module.``
    (DataParallel) prefix removed. Anything else, and a file that is not regular (a FIFO, a device)
    or larger than :data:`~unisp.models.registry.MODEL_FILE_MAX_BYTES`, raises :class:`UnispError`
    naming the file.
    """
    path = Path(path)
    data = read_input_bytes(path, limit=MODEL_FILE_MAX_BYTES, what="PyTorch state dict")
    try:
        obj = _deserialise(path, data)
    except Exception as e:  # unpickling refusals, corrupt zips, truncated files: all a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnispError(f"{path}: not a plain PyTorch state dict ({type(e).__name__}: {first})") from None
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnispError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _deserialise(path: Path, data: bytes) -> Any:
    """What ``torch.load(path, weights_only=True)`` gives for these bytes: like torch.load, a name
    ending in ``.safetensors`` is read as safetensors, anything else is unpickled weights-only."""
    if path.suffix.lower() == ".safetensors":
        return safetensors.torch.load(data)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def infer_reference_model(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]] | None:
    """Registry name and kwargs of the architecture a released state dict belongs to, from its keys and shapes.

    Example:
        >>> infer_reference_model(build_model("rmfa_tiny", num_blocks=3).state_dict())
        ('rmfa_tiny', {'num_blocks': 3, 'width': 16})
        >>> infer_reference_model({"unknown.weight": torch.zeros(1)}) is None
        True
    """
    if "input_module.0.weight" in state:
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"rmfa_blocks\.(\d+)\.", k))}
        width = int(state["input_module.0.weight"].shape[0])
        return "rmfa_tiny", {"num_blocks": len(blocks), "width": width}
    w1, w2 = state.get("conv1.weight"), state.get("conv2.weight")
    if w1 is not None and w2 is not None:
        if tuple(w1.shape) == (12, 4, 3, 3) and tuple(w2.shape) == (12, 12, 3, 3):
            return "efficient_isp", {}
        if tuple(w1.shape) == (16, 4, 3, 3) and tuple(w2.shape) == (4, 16, 3, 3):
            return "robust_isp", {}
    return None


def _name_from_file(path: Path) -> str | None:
    lower = path.name.lower()
    return next((name for frag, name in _FILE_NAME_HINTS if frag in lower), None)


def reference_adaptation(name: str) -> str:
    """Human-readable description of how :func:`adapt_reference_state` changes a model's weights."""
    if name == "rmfa_tiny":
        return (
            "none: the model builds its three-channel split from canonical (R, Gr, Gb, B) planes at the "
            "RGGB positions the reference split of an RGGB mosaic uses, so no weight depends on the packed order"
        )
    return (
        f"conv1.weight[:, {list(REFERENCE_INVERSE)}]: first-convolution input channels reordered from the "
        "reference packed order (B, Gb, R, Gr) to canonical (R, Gr, Gb, B)"
    )


def adapt_reference_state(name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold the reference → canonical packed-order change into a released state dict.

    The reference computes ``sum_j W[:, j] * ref[j]`` with ``ref[j] = canonical[REFERENCE_ORDER[j]]``,
    which is ``sum_c W[:, REFERENCE_INVERSE[c]] * canonical[c]``.

    Args:
        name: registry name of the architecture.
        state: the released state dict (not modified).

    Returns:
        A new state dict for canonical input.
    """
    out = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if name in ("efficient_isp", "robust_isp"):
        out["conv1.weight"] = out["conv1.weight"][:, list(REFERENCE_INVERSE)].contiguous()
    return out


def load_reference(path: str | Path, model_name: str | None = None) -> Generator:
    """Load one of the paper's released ``.pth`` files as a generator taking canonical input.

    Args:
        path: the ``.pth`` state dict.
        model_name: registry name; inferred from the state-dict keys (cross-checked with the file name) when None.

    Returns:
        The generator with adapted weights (see :func:`adapt_reference_state`).
    """
    path = Path(path)
    state = read_state_dict(path)
    inferred = infer_reference_model(state)
    if model_name is None:
        if inferred is None:
            raise UnispError(f"{path}: cannot tell which model these weights belong to; pass the model name")
        model_name, kwargs = inferred
        hint = _name_from_file(path)
        if hint is not None and hint != model_name:
            logger.warning("%s: file name suggests %s but the weights fit %s; using %s", path, hint, model_name, model_name)
    else:
        kwargs = inferred[1] if inferred is not None and inferred[0] == model_name else {}
    model = build_model(model_name, **kwargs)
    try:
        model.load_state_dict(adapt_reference_state(model_name, state), strict=True)
    except (RuntimeError, KeyError) as e:
        detail = " ".join(str(e).split())[:400]
        raise UnispError(f"{path}: weights do not fit model {model_name!r} ({detail})") from None
    logger.info("%s: loaded as %s; %s", path, model_name, reference_adaptation(model_name))
    return model
