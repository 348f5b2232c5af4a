"""Learned generators (packed Bayer → sRGB), the paper's released weights, and the model-file format."""

from __future__ import annotations

from unisp.models.base import Generator
from unisp.models.checkpoint import import_reference, load_model, save_model
from unisp.models.efficient import EfficientISP, RobustISP
from unisp.models.reference import adapt_reference_state, load_reference
from unisp.models.registry import MODEL_NAMES, build_model, count_macs, count_parameters, model_info
from unisp.models.rmfa import RMFANet, three_channel_split

__all__ = [
    "MODEL_NAMES",
    "EfficientISP",
    "Generator",
    "RMFANet",
    "RobustISP",
    "adapt_reference_state",
    "build_model",
    "count_macs",
    "count_parameters",
    "import_reference",
    "load_model",
    "load_reference",
    "model_info",
    "save_model",
    "three_channel_split",
]
