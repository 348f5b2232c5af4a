"""The classical ISP, one module per stage: BLC, AWB, CFA (demosaic), CCM, GAC (gamma), tone."""

from unisp.isp.awb import apply_white_balance, gray_world_gains
from unisp.isp.blc import normalize
from unisp.isp.ccm import apply_ccm
from unisp.isp.demosaic import DEMOSAIC_METHODS, demosaic
from unisp.isp.gamma import srgb_decode, srgb_encode
from unisp.isp.orientation import apply_orientation
from unisp.isp.pipeline import TRAINING_TARGET, ClassicalISP, ISPConfig, render, render_frame
from unisp.isp.tone import inverse_tone_curve, tone_curve

__all__ = [
    "DEMOSAIC_METHODS",
    "TRAINING_TARGET",
    "ClassicalISP",
    "ISPConfig",
    "apply_ccm",
    "apply_orientation",
    "apply_white_balance",
    "demosaic",
    "gray_world_gains",
    "inverse_tone_curve",
    "normalize",
    "render",
    "render_frame",
    "srgb_decode",
    "srgb_encode",
    "tone_curve",
]
