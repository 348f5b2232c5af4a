"""Full-reference image-quality metrics: tensors in, one score per image out.

They sit low in the package (they import only :mod:`unisp.isp`): the losses use SSIM, the
training loop validates with PSNR, export checks parity with PSNR and ΔE2000, and
:mod:`unisp.eval` builds its protocol, tables and report on them.

Protocol: RGB images as ``(B, 3, H, W)`` or ``(3, H, W)`` float tensors in [0, 1], full image
(no border crop), data range 1. Every metric returns one value per image: shape ``(B,)`` for a
batch, a 0-d tensor for a single image. The written protocol is in ``docs/EVAL.md``.

- :func:`psnr`: dB from the MSE over all pixels and channels.
- :func:`ssim`, :func:`ms_ssim`: torchmetrics' functional SSIM / MS-SSIM, 11×11 Gaussian window,
  σ = 1.5, K1 = 0.01, K2 = 0.03, each RGB channel separately, then averaged.
- :func:`delta_e2000`: CIEDE2000 between the two images' CIELAB values, mean over pixels.
- :func:`lpips_alex`: LPIPS v0.1 with the AlexNet trunk (the ``lpips`` package), only when the
  AlexNet ImageNet weights are already on disk (nothing is ever downloaded).

torchmetrics and lpips are imported inside the functions that need them, so importing this
module stays cheap.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from unisp.errors import UnispError
from unisp.isp.lab import srgb_to_lab

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# SSIM / MS-SSIM settings (Wang et al. 2004, "Image quality assessment: from error visibility
# to structural similarity"; Wang, Simoncelli & Bovik 2003, "Multi-scale structural similarity")
# --------------------------------------------------------------------------------------------
#: Standard deviation of the Gaussian SSIM window (Wang et al. 2004, section III-C).
SSIM_SIGMA = 1.5
#: Side of the Gaussian SSIM window in pixels; torchmetrics derives it from σ as
#: ``2·int(3.5σ + 0.5) + 1`` = 11 for σ = 1.5, the 11×11 window of Wang et al. 2004.
SSIM_WINDOW = 11
#: Stabilising constants C1 = (K1·L)², C2 = (K2·L)² with L = data range (Wang et al. 2004, eq. 7, 9).
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Per-scale exponents of MS-SSIM, finest scale first (Wang, Simoncelli & Bovik 2003, section 3.2).
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Smallest image side for which torchmetrics accepts all five MS-SSIM scales: it requires
#: ``side // (scales − 1)² > window − 1``, i.e. ``side // 16 ≥ 11``.
MS_SSIM_FULL_SCALES_MIN_SIDE = 176

# --------------------------------------------------------------------------------------------
# CIEDE2000 (CIE 142-2001; formulas as written in Sharma, Wu & Dalal 2005, "The CIEDE2000
# color-difference formula: implementation notes, supplementary test data, and mathematical
# observations", Color Res. Appl. 30(1), eqs. 1-22)
# --------------------------------------------------------------------------------------------
#: 25⁷, the chroma constant in G (eq. 4) and R_C (eq. 21).
CIEDE2000_CHROMA_POW7 = 25.0**7
#: T (eq. 15): 1 − 0.17 cos(h̄ − 30°) + 0.24 cos(2h̄) + 0.32 cos(3h̄ + 6°) − 0.20 cos(4h̄ − 63°).
CIEDE2000_T_TERMS = ((1, -0.17, -30.0), (2, 0.24, 0.0), (3, 0.32, 6.0), (4, -0.20, -63.0))
#: Δθ = 30° · exp(−((h̄ − 275°) / 25°)²) (eq. 16).
CIEDE2000_ROT_AMPLITUDE = 30.0
CIEDE2000_ROT_CENTRE = 275.0
CIEDE2000_ROT_WIDTH = 25.0
#: S_L = 1 + 0.015 (L̄ − 50)² / √(20 + (L̄ − 50)²) (eq. 18).
CIEDE2000_SL_WEIGHT = 0.015
CIEDE2000_SL_OFFSET = 20.0
CIEDE2000_L_MID = 50.0
#: S_C = 1 + 0.045 C̄' (eq. 19); S_H = 1 + 0.015 C̄' T (eq. 20).
CIEDE2000_SC_WEIGHT = 0.045
CIEDE2000_SH_WEIGHT = 0.015
#: Pixels per band in :func:`delta_e2000` (a memory bound of our own, ~40 float64 planes of this size).
DELTA_E_CHUNK_PIXELS = 1 << 18

# --------------------------------------------------------------------------------------------
# LPIPS (Zhang et al. 2018, "The unreasonable effectiveness of deep features as a perceptual
# metric"; https://github.com/richzhang/PerceptualSimilarity)
# --------------------------------------------------------------------------------------------
#: File name of torchvision's ImageNet AlexNet weights (``AlexNet_Weights.IMAGENET1K_V1``), as
#: torchvision stores it in ``$TORCH_HOME/hub/checkpoints``.
ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
#: Where torchvision downloads that file from (for the message telling the user where to get it).
ALEXNET_WEIGHTS_URL = "https://download.pytorch.org/models/" + ALEXNET_WEIGHTS_FILE
#: LPIPS linear-head version shipped inside the lpips wheel (v0.1 is the package default).
LPIPS_VERSION = "0.1"


def _check_images(pred: torch.Tensor, target: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Validate a pair of images; return them as a float batch and whether the input was unbatched."""
    if pred.shape != target.shape:
        raise UnispError(f"{metric} needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() not in (3, 4) or pred.shape[-3] != 3:
        raise UnispError(f"{metric} needs (B, 3, H, W) or (3, H, W) images, got {tuple(pred.shape)}")
    single = pred.dim() == 3
    dtype = torch.float64 if torch.float64 in (pred.dtype, target.dtype) else torch.float32
    pred, target = pred.to(dtype), target.to(dtype)
    if single:
        pred, target = pred[None], target[None]
    return pred, target, single


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (``inf`` for identical images).

    Example:
        >>> psnr(torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.1))
        tensor(20.)
    """
    if pred.shape != target.shape:
        raise UnispError(f"PSNR needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    diff = (pred.double() - target.double()).pow(2)
    mse = diff.flatten(-3).mean(-1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (torchmetrics, 11×11 Gaussian window, σ 1.5, data range 1).

    SSIM is computed on each RGB channel with reflect padding at the borders (so the SSIM map
    covers the full image) and averaged over channels and pixels.

    Args:
        pred: ``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 1], at least 11 px per side.
        target: same shape as ``pred``.

    Returns:
        ``(B,)`` (or 0-d) SSIM, 1 for identical images.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target, single = _check_images(pred, target, "SSIM")
    _check_window(pred, "SSIM")
    out = structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_WINDOW,
        reduction="none", data_range=1.0, k1=SSIM_K1, k2=SSIM_K2,
    )
    return out[0] if single else out


def _check_window(batch: torch.Tensor, metric: str) -> None:
    if min(batch.shape[-2:]) < SSIM_WINDOW:
        raise UnispError(
            f"{metric} needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} px (its window), "
            f"got {batch.shape[-1]}×{batch.shape[-2]}"
        )


def ms_ssim_scales(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an image of this size: 5, or fewer for small images.

    Five scales need at least :data:`MS_SSIM_FULL_SCALES_MIN_SIDE` px per side (torchmetrics'
    own limit); smaller images get the largest number of scales torchmetrics accepts whose
    coarsest scale is still wider than the window's half-width (reflect padding needs that):
    4 scales from 99 px, 3 from 44 px, 2 from 12 px, 1 (plain SSIM) from 11 px.
    """
    side = min(height, width)
    pad = SSIM_WINDOW // 2
    for n in range(len(MS_SSIM_BETAS), 0, -1):
        fits_torchmetrics = side // max(1, n - 1) ** 2 > SSIM_WINDOW - 1 and side >= 2**n
        if fits_torchmetrics and side // 2 ** (n - 1) > pad:
            return n
    return 0


def ms_ssim(pred: torch.Tensor, target: torch.Tensor, scales: int | None = None) -> torch.Tensor:
    """Multi-scale SSIM per image (torchmetrics, Wang et al. 2003 weights, data range 1).

    Same window and constants as :func:`ssim`; the images are halved with 2×2 average pooling
    between scales. Contrast-structure terms are clipped at 0 before the fractional powers
    (torchmetrics' default ``normalize="relu"``), so strongly anti-correlated images give 0
    instead of NaN.

    Small images: the standard five scales need at least 176 px per side. For smaller images
    ``scales=None`` uses :func:`ms_ssim_scales` (fewer scales) with the first ``n`` weights of
    :data:`MS_SSIM_BETAS` renormalised to sum to 1; such values are not comparable with
    five-scale MS-SSIM, and the evaluation report says when it happened.

    Args:
        pred: ``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 1], at least 11 px per side.
        target: same shape as ``pred``.
        scales: number of scales (1-5); ``None`` picks it from the image size.

    Returns:
        ``(B,)`` (or 0-d) MS-SSIM, 1 for identical images.
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    pred, target, single = _check_images(pred, target, "MS-SSIM")
    _check_window(pred, "MS-SSIM")
    fit = ms_ssim_scales(*pred.shape[-2:])
    n = fit if scales is None else scales
    if not 1 <= n <= len(MS_SSIM_BETAS):
        raise UnispError(f"MS-SSIM scales must be 1 to {len(MS_SSIM_BETAS)}, got {n}")
    if n > fit:
        raise UnispError(
            f"MS-SSIM with {n} scales needs larger images than {pred.shape[-1]}×{pred.shape[-2]} (at most {fit} fit)"
        )
    betas = MS_SSIM_BETAS
    if n < len(MS_SSIM_BETAS):
        total = sum(MS_SSIM_BETAS[:n])
        betas = tuple(b / total for b in MS_SSIM_BETAS[:n])
        log.debug("MS-SSIM on %d×%d px uses %d scales", pred.shape[-1], pred.shape[-2], n)
    out = multiscale_structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_WINDOW,
        reduction="none", data_range=1.0, k1=SSIM_K1, k2=SSIM_K2, betas=betas, normalize="relu",
    )
    return out[0] if single else out


def ciede2000(
    lab1: torch.Tensor, lab2: torch.Tensor, dim: int = -3, k_l: float = 1.0, k_c: float = 1.0, k_h: float = 1.0
) -> torch.Tensor:
    """CIEDE2000 colour difference ΔE00 between CIELAB values, element-wise.

    Follows Sharma, Wu & Dalal (2005), eqs. 1-22, including their conventions for zero chroma
    (hue 0, hue difference 0, mean hue = sum of hues) and the mean hue across the 0°/360° wrap.
    Symmetric in its arguments. Compute in float64 to reproduce the published test data to 1e-4.

    Args:
        lab1: Lab values with L*, a*, b* along ``dim``.
        lab2: same shape as ``lab1``.
        dim: the dimension holding L*, a*, b* (−3 for ``(..., 3, H, W)`` images).
        k_l: lightness parametric factor (1 under reference conditions).
        k_c: chroma parametric factor.
        k_h: hue parametric factor.

    Returns:
        ΔE00 with ``dim`` removed.

    Example:
        >>> ciede2000(torch.tensor([50.0, 2.5, 0.0]), torch.tensor([50.0, 0.0, -2.5]), dim=0)
        tensor(4.3065)
    """
    if lab1.shape != lab2.shape or lab1.shape[dim] != 3:
        raise UnispError(f"CIEDE2000 needs two equal Lab shapes with 3 values on dim {dim}, got "
                         f"{tuple(lab1.shape)} and {tuple(lab2.shape)}")
    l1, a1, b1 = lab1.unbind(dim)
    l2, a2, b2 = lab2.unbind(dim)
    # Eqs. 2-7: chroma, the a* rescaling G, modified chroma C' and hue h' in degrees [0, 360).
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    c7 = c_mean.pow(7)
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + CIEDE2000_CHROMA_POW7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.remainder(torch.rad2deg(torch.atan2(b1, a1p)), 360.0)
    h2p = torch.remainder(torch.rad2deg(torch.atan2(b2, a2p)), 360.0)
    h1p = torch.where(c1p == 0, torch.zeros_like(h1p), h1p)  # atan2(0, 0) is defined as 0 (eq. 7)
    h2p = torch.where(c2p == 0, torch.zeros_like(h2p), h2p)
    chroma_zero = (c1p * c2p) == 0
    # Eqs. 8-11: differences, with the hue difference taken the short way round the circle.
    d_l = l2 - l1
    d_c = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chroma_zero, torch.zeros_like(dh), dh)
    d_h = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh / 2))
    # Eqs. 12-14: means; the mean hue also goes the short way round.
    l_mean = (l1 + l2) / 2
    cp_mean = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = torch.where(
        (h1p - h2p).abs() <= 180, h_sum / 2, torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)
    )
    h_mean = torch.where(chroma_zero, h_sum, h_mean)
    # Eqs. 15-21: weighting functions and the rotation term.
    t = torch.ones_like(h_mean)
    for multiple, weight, shift in CIEDE2000_T_TERMS:
        t = t + weight * torch.cos(torch.deg2rad(multiple * h_mean + shift))
    d_theta = CIEDE2000_ROT_AMPLITUDE * torch.exp(-(((h_mean - CIEDE2000_ROT_CENTRE) / CIEDE2000_ROT_WIDTH) ** 2))
    cp7 = cp_mean.pow(7)
    r_c = 2 * torch.sqrt(cp7 / (cp7 + CIEDE2000_CHROMA_POW7))
    l50 = (l_mean - CIEDE2000_L_MID) ** 2
    s_l = 1 + CIEDE2000_SL_WEIGHT * l50 / torch.sqrt(CIEDE2000_SL_OFFSET + l50)
    s_c = 1 + CIEDE2000_SC_WEIGHT * cp_mean
    s_h = 1 + CIEDE2000_SH_WEIGHT * cp_mean * t
    r_t = -torch.sin(torch.deg2rad(2 * d_theta)) * r_c
    # Eq. 22.
    tl, tc, th = d_l / (k_l * s_l), d_c / (k_c * s_c), d_h / (k_h * s_h)
    return torch.sqrt((tl**2 + tc**2 + th**2 + r_t * tc * th).clamp_min(0.0))


def delta_e2000(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 colour difference per image between two sRGB images.

    Both images go through :func:`srgb_to_lab` (sRGB → linear → XYZ D65 → CIELAB) in float64,
    then :func:`ciede2000` per pixel (k_L = k_C = k_H = 1), averaged over all pixels.

    Args:
        pred: ``(B, 3, H, W)`` or ``(3, H, W)`` sRGB in [0, 1].
        target: same shape as ``pred``.

    Returns:
        ``(B,)`` (or 0-d) mean ΔE00 as float32, 0 for identical images.
    """
    pred, target, single = _check_images(pred, target, "ΔE2000")
    height, width = pred.shape[-2:]
    rows = max(1, DELTA_E_CHUNK_PIXELS // width)
    total = torch.zeros(pred.shape[0], dtype=torch.float64, device=pred.device)
    for top in range(0, height, rows):  # row bands bound the float64 intermediates' memory
        p, t = pred[..., top : top + rows, :].double(), target[..., top : top + rows, :].double()
        total = total + ciede2000(srgb_to_lab(p), srgb_to_lab(t), dim=-3).flatten(-2).sum(-1)
    out = (total / (height * width)).float()
    return out[0] if single else out


def alexnet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet AlexNet weights: ``<torch.hub.get_dir()>/checkpoints/…``.

    ``torch.hub.get_dir()`` is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE


def load_lpips_alex(device: str | torch.device = "cpu") -> torch.nn.Module | None:
    """The LPIPS (v0.1, AlexNet) network, or ``None`` with one logged warning when it cannot be built.

    The AlexNet trunk is loaded from :func:`alexnet_weights_path` only; when that file is
    missing or unreadable this returns ``None`` and logs which file is needed and where to put
    it. The lpips network is built with a random trunk (``pnet_rand=True``, which never
    downloads) and the trunk is then overwritten from the file, so no code path can download
    anything or measure with random weights. The linear heads come from the lpips wheel.

    Args:
        device: where to put the network.

    Returns:
        The network in eval mode without gradients, or ``None``.
    """
    path = alexnet_weights_path()
    if not path.is_file():
        log.warning(
            "LPIPS left out: AlexNet weights %s not found. Put torchvision's %s there "
            "(from %s; the folder follows $TORCH_HOME) to compute LPIPS.",
            path, ALEXNET_WEIGHTS_FILE, ALEXNET_WEIGHTS_URL,
        )
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of a broken or foreign file
        log.warning("LPIPS left out: cannot load %s (%s)", path, e)
        return None
    import lpips

    with warnings.catch_warnings():  # torchvision's deprecation notice for pretrained=False
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", version=LPIPS_VERSION, pretrained=True, pnet_rand=True, verbose=False)
    # lpips splits alexnet.features into slices but keeps each layer's index as its name:
    # "slice2.3.weight" is "features.3.weight" of the torchvision state dict.
    source = {name: "features." + name.split(".", 1)[1] for name in net.net.state_dict()}
    missing = [key for key in source.values() if not isinstance(state, dict) or key not in state]
    if missing:
        log.warning("LPIPS left out: %s is not an AlexNet state dict (no %s)", path, ", ".join(missing[:3]))
        return None
    trunk = {name: state[key] for name, key in source.items()}
    try:
        net.net.load_state_dict(trunk, strict=True)
    except RuntimeError as e:  # tensors of the wrong shape
        log.warning("LPIPS left out: %s does not fit AlexNet (%s)", path, e)
        return None
    return net.eval().requires_grad_(False).to(device)


def lpips_alex(pred: torch.Tensor, target: torch.Tensor, model: torch.nn.Module | None = None) -> torch.Tensor:
    """LPIPS distance per image (v0.1, AlexNet trunk); lower is more similar, 0 for identical images.

    Inputs in [0, 1] are scaled to [−1, 1], the range lpips expects.

    Args:
        pred: ``(B, 3, H, W)`` or ``(3, H, W)`` in [0, 1].
        target: same shape as ``pred``.
        model: a network from :func:`load_lpips_alex`; ``None`` loads one (slow; pass it in loops).

    Returns:
        ``(B,)`` (or 0-d) LPIPS.

    Raises:
        UnispError: when ``model`` is ``None`` and the AlexNet weights are not on disk.
    """
    pred, target, single = _check_images(pred, target, "LPIPS")
    if model is None:
        model = load_lpips_alex(pred.device)
        if model is None:
            raise UnispError(f"{alexnet_weights_path()}: AlexNet weights for LPIPS not found")
    param = next(model.parameters())
    pred = (pred * 2 - 1).to(param)
    target = (target * 2 - 1).to(param)
    with torch.no_grad():
        out = model(pred, target).flatten().float()
    return out[0] if single else out

