"""The fast CPU path: the three convolutions of the Efficient ISP fused tile by tile in one C++ kernel.

PyTorch eager runs the network layer by layer: each convolution writes its 12-channel
intermediate (48 bytes per packed pixel, 144 MB at 12 MP) to memory and the next one reads it
back, so on a CPU the network is limited by memory traffic, not arithmetic. The kernel in
``fused_kernel.cpp`` instead cuts the image into tiles (64 packed rows × 508 columns, with a
3-pixel halo) and walks down each tile keeping only three rows of the input and of each
intermediate (about 185 kB, inside a core's L2 cache), writing the pixel-shuffled sRGB output
directly. Its inner loop holds 12 output channels × 2 vectors of pixels in registers, so each
input load feeds 12 fused multiply-adds. Threads take tiles one at a time.

The kernel is compiled at first use with the system C++ compiler (``g++ -O3 -march=native``;
about 1 s) and cached under ``$UNISP_CACHE/kernels`` (default ``~/.cache/unisp/kernels``), keyed
by the source, compiler and CPU. When no compiler is available or the build fails,
:class:`FusedISP` logs one line saying so and runs the PyTorch model instead.

The result equals the PyTorch model to float32 rounding (summation order differs; tanh is a
vectorised exp-based approximation with absolute error below 1e-7): within 1e-5, tested.

``precision="bf16"`` runs a variant for CPUs with AVX512-BF16 (Intel Cooper Lake / Sapphire Rapids
and later, AMD Zen 4 and later): each layer's input is rounded to bfloat16 (8 significant bits),
weights too, and ``vdpbf16ps`` multiplies pairs of input channels into float32 accumulators, half
the multiply-add instructions of fp32; bias, tanh, ReLU and the output stay float32. Its output
differs from the fp32 model by the bf16 rounding (relative 2^-9 per operand), 60 dB PSNR on the
released ZRR weights and a real phone frame, tested ≥ 40 dB. It is never chosen silently: CPUs without AVX512-BF16 get a
:class:`~unisp.errors.ConfigError` saying so, and the fp32 kernel works as before on every CPU.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import nn

from unisp.errors import ConfigError, UnispError
from unisp.export.threads import check_threads
from unisp.models.base import PACKED_CHANNELS
from unisp.models.efficient import SHUFFLE_CHANNELS, ThreeConvISP

log = logging.getLogger(__name__)

#: The kernel's source, shipped next to this module.
KERNEL_SOURCE = Path(__file__).with_name("fused_kernel.cpp")
#: Environment variable naming unisp's cache folder (the same one ``unisp demo`` uses).
CACHE_ENV = "UNISP_CACHE"
#: C++ compiler to use: ``$CXX`` when set, else ``g++``.
COMPILER_ENV = "CXX"
DEFAULT_COMPILER = "g++"
#: -march=native: the vector width (AVX-512/AVX2) of the machine it runs on; -pthread for the band threads.
COMPILE_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")
#: Seconds a compilation may take before it counts as failed (it takes about 1 s).
COMPILE_TIMEOUT_S = 120
#: (conv1, conv2) widths the kernel is instantiated for: efficient_isp (12, 12) and robust_isp (16, 4).
SUPPORTED_WIDTHS = ((12, 12), (16, 4))
#: Packed rows of a unit of work handed to a thread. A band of B rows recomputes 2 conv1 rows and
#: 1 conv2 row above and below it: (4 × 432 + 2 × 1296) / (3024 B) ≈ 1.4 / B extra MACs, 2.2 % at
#: 64 rows, and a 512-row tile of `unisp process` still splits into 8 × (columns / 508) units.
DEFAULT_BAND_ROWS = 64
#: Packed columns of a unit of work: conv1 then computes 508 + 4 halo = 512 columns, a whole number
#: of 32- and 8-pixel vector blocks (no wasted lanes), and the three-row rings of input, conv1 and
#: conv2 (28 channels × 3 rows × ~550 columns × 4 bytes ≈ 185 kB) stay in a core's L2 cache
#: whatever the image width.
DEFAULT_STRIP_COLS = 508
#: ``precision`` choices: float32 everywhere, or bf16 operands with float32 accumulation (AVX512-BF16 only).
PRECISIONS = ("fp32", "bf16")


def kernel_cache_dir() -> Path:
    """Where compiled kernels live: ``$UNISP_CACHE/kernels`` or ``~/.cache/unisp/kernels``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "unisp") / "kernels"


def _cpu_signature() -> str:
    """The CPU's model name and feature flags (what -march=native compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _compile(compiler: str, source: Path, target: Path) -> None:
    """Build ``source`` into the shared library ``target`` (written under a temporary name, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [compiler, *COMPILE_FLAGS, "-o", tmp, str(source)],
            check=True, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
        )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=None)
def load_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, built at first use; ``None`` (with a logged reason) when it cannot be built.

    Returns:
        The loaded library, or None.
    """
    compiler = os.environ.get(COMPILER_ENV) or DEFAULT_COMPILER
    if shutil.which(compiler) is None:
        log.warning("fused CPU kernel unavailable: no C++ compiler %r on PATH; using PyTorch eager", compiler)
        return None
    source = KERNEL_SOURCE.read_bytes()
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("fused CPU kernel unavailable: %s --version failed (%s); using PyTorch eager", compiler, e)
        return None
    key = hashlib.sha256(b"\0".join([source, version.encode(), _cpu_signature().encode(), " ".join(COMPILE_FLAGS).encode()]))
    target = kernel_cache_dir() / f"fused_isp_{key.hexdigest()[:16]}.so"
    if not target.is_file():
        log.info("compiling the fused CPU kernel with %s into %s", compiler, target)
        try:
            _compile(compiler, KERNEL_SOURCE, target)
        except subprocess.CalledProcessError as e:
            detail = (e.stderr or "").strip().splitlines()
            log.warning("fused CPU kernel unavailable: %s failed (%s); using PyTorch eager",
                        compiler, detail[-1] if detail else f"exit {e.returncode}")
            return None
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("fused CPU kernel unavailable: cannot build into %s (%s); using PyTorch eager", target.parent, e)
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as e:  # e.g. a cache on a noexec mount
        log.warning("fused CPU kernel unavailable: cannot load %s (%s); using PyTorch eager", target, e)
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    lib.unisp_fused_forward.restype = integer
    lib.unisp_fused_forward.argtypes = [pointer, pointer, *[integer] * 5, *[pointer] * 6, *[integer] * 4]
    lib.unisp_fused_forward_bf16.restype = integer
    lib.unisp_fused_forward_bf16.argtypes = lib.unisp_fused_forward.argtypes
    lib.unisp_fused_vector_width.restype = integer
    lib.unisp_fused_has_bf16.restype = integer
    log.debug("fused CPU kernel %s (%d floats per vector)", target, lib.unisp_fused_vector_width())
    return lib


def check_precision(precision: str) -> None:
    """Raise :class:`ConfigError` (saying why) unless ``precision`` can run on this machine.

    Args:
        precision: one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"fused kernel: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and (reason := bf16_unavailable_reason()) is not None:
        raise ConfigError(reason)


def bf16_unavailable_reason() -> str | None:
    """Why ``precision="bf16"`` cannot run here, or None when it can.

    Returns:
        A one-line reason (no compiled kernel, or a CPU/compiler without AVX512-BF16), or None.
    """
    lib = load_kernel()
    if lib is None:
        return "the fused CPU kernel could not be built (see the warning above)"
    if not lib.unisp_fused_has_bf16():
        return ("bf16 needs a CPU with AVX512-BF16 (vdpbf16ps; /proc/cpuinfo flag avx512_bf16) and a compiler "
                "that targets it with -march=native; this machine's build has none: use precision fp32")
    return None


def supports(model: nn.Module) -> bool:
    """Whether ``model`` is a three-convolution ISP the kernel is built for (efficient_isp, robust_isp)."""
    return isinstance(model, ThreeConvISP) and (model.conv1.out_channels, model.conv2.out_channels) in SUPPORTED_WIDTHS


def _taps_last(conv: nn.Conv2d) -> torch.Tensor:
    """Weights ``[out, in, 3, 3]`` → contiguous float32 ``[in, 3, 3, out]`` (the kernel's order)."""
    return conv.weight.detach().to("cpu", torch.float32).permute(1, 2, 3, 0).contiguous()


def _bf16_pairs(conv: nn.Conv2d) -> torch.Tensor:
    """Weights ``[out, in, 3, 3]`` → bf16 pairs of input channels ``[in / 2, 3, 3, out]``, one int32 each.

    Input channel 2p is the low half of each 32-bit pair, 2p + 1 the high half (little-endian
    memory order, the order ``vdpbf16ps`` multiplies them with the activations' pairs); rounding
    to bf16 is torch's, to nearest even, as the kernel's for activations.
    """
    w = _taps_last(conv)  # [in, 3, 3, out]
    cin = w.shape[0]
    pairs = w.reshape(cin // 2, 2, 3, 3, -1).permute(0, 2, 3, 4, 1).contiguous()  # [in/2, 3, 3, out, 2]
    return pairs.to(torch.bfloat16).view(torch.int32).squeeze(-1).contiguous()


def fused_forward(
    model: ThreeConvISP,
    packed: torch.Tensor,
    *,
    clamp: bool = False,
    threads: int | None = None,
    band_rows: int = DEFAULT_BAND_ROWS,
    strip_cols: int = DEFAULT_STRIP_COLS,
    precision: str = "fp32",
) -> torch.Tensor:
    """``model.render(packed)`` (optionally clamped to [0, 1]) computed by the fused kernel.

    Args:
        model: an efficient_isp or robust_isp (see :func:`supports`).
        packed: ``(N, 4, h, w)`` float32 CPU tensor of packed Bayer planes in [0, 1].
        clamp: clamp the output to [0, 1] (as ``Generator.infer``).
        threads: worker threads (default ``torch.get_num_threads()``).
        band_rows: packed rows per unit of work.
        strip_cols: packed columns per unit of work.
        precision: ``"fp32"`` or ``"bf16"`` (bf16 operands, float32 accumulation; AVX512-BF16 CPUs).

    Returns:
        ``(N, 3, 2h, 2w)`` float32.

    Raises:
        ConfigError: an unknown precision, or bf16 on a CPU without AVX512-BF16.
        UnispError: an unsupported model or input, or no compiled kernel.
    """
    check_precision(precision)
    if not supports(model):
        raise UnispError(f"the fused kernel runs efficient_isp and robust_isp, not {type(model).__name__}")
    if packed.ndim != 4 or packed.shape[1] != PACKED_CHANNELS:
        raise UnispError(f"fused kernel: expected packed Bayer (N, 4, h, w), got shape {tuple(packed.shape)}")
    if packed.device.type != "cpu" or packed.dtype != torch.float32:
        raise UnispError(f"fused kernel: needs a float32 CPU tensor, got {packed.dtype} on {packed.device}")
    if band_rows < 1 or strip_cols < 1:
        raise UnispError(f"fused kernel: band_rows and strip_cols must be positive, got {band_rows}, {strip_cols}")
    lib = load_kernel()
    if lib is None:
        raise UnispError("the fused CPU kernel could not be built (see the warning above)")
    n, _, h, w = packed.shape
    x = packed.contiguous()
    out = torch.empty(n, SHUFFLE_CHANNELS // 4, 2 * h, 2 * w, dtype=torch.float32)
    if x.numel() == 0:
        return out
    weights = []
    for conv in (model.conv1, model.conv2, model.conv3):
        taps = _bf16_pairs(conv) if precision == "bf16" else _taps_last(conv)
        weights += [taps, conv.bias.detach().to("cpu", torch.float32).contiguous()]
    forward = lib.unisp_fused_forward_bf16 if precision == "bf16" else lib.unisp_fused_forward
    status = forward(
        x.data_ptr(), out.data_ptr(), n, h, w, model.conv1.out_channels, model.conv2.out_channels,
        *[t.data_ptr() for t in weights], int(clamp), threads or torch.get_num_threads(), band_rows, strip_cols,
    )
    if status != 0:
        raise UnispError(f"fused kernel: not built for widths {model.conv1.out_channels}, {model.conv2.out_channels}")
    return out


class FusedISP(nn.Module):
    """A three-convolution generator run by the fused CPU kernel; a drop-in for the model at inference.

    Falls back to the model itself (logged once, by :func:`load_kernel`) when the kernel cannot be
    built, and for inputs the kernel does not take (not float32 CPU, or gradients needed).

    Args:
        model: an efficient_isp or robust_isp.
        threads: worker threads (default ``torch.get_num_threads()`` at each call).
        precision: ``"fp32"`` (default) or ``"bf16"``. bf16 has no fallback: it raises at construction
            where it cannot run, rather than silently giving fp32 (or eager) timings and results.

    Raises:
        UnispError: a model the kernel does not run.
        ConfigError: an unknown precision, or bf16 where AVX512-BF16 is unavailable.
    """

    def __init__(self, model: ThreeConvISP, threads: int | None = None, precision: str = "fp32") -> None:
        super().__init__()
        if not supports(model):
            raise UnispError(
                f"--backend fused runs efficient_isp and robust_isp, not {getattr(model, 'name', '') or type(model).__name__}"
            )
        check_precision(precision)
        check_threads(threads)
        self.model = model
        self.threads = threads
        self.precision = precision
        self.name = model.name
        self.receptive_radius = model.receptive_radius

    @property
    def uses_kernel(self) -> bool:
        """Whether calls run the compiled kernel (False: the PyTorch fallback)."""
        return load_kernel() is not None

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """Args: packed ``(N, 4, h, w)``. Returns: ``(N, 3, 2h, 2w)``, as the model's ``forward``."""
        kernel_ok = packed.device.type == "cpu" and packed.dtype == torch.float32
        if not kernel_ok or (torch.is_grad_enabled() and packed.requires_grad) or not self.uses_kernel:
            return self.model(packed)
        return fused_forward(self.model, packed, clamp=self.model.clamp_output, threads=self.threads,
                             precision=self.precision)
