"""Demosaicing: shapes, exact reconstructions, agreement with colour_demosaicing and LibRaw, gradients."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from unisp.errors import ConfigError, RawFormatError
from unisp.fileio import read_rgb
from unisp.isp.demosaic import DEMOSAIC_METHODS, demosaic
from unisp.isp.lab import SRGB_TO_XYZ
from unisp.raw.bayer import CFA, colour_masks, site_masks
from unisp.raw.dng import write_dng

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PATTERNS = [c.value for c in CFA]
# The module itself (``unisp.isp`` exports the function ``demosaic`` under the same name).
demosaic_module = importlib.import_module("unisp.isp.demosaic")
TORCH_METHODS = ["bilinear", "malvar", "ahd"]


def mosaic_of(image: torch.Tensor, cfa: str) -> torch.Tensor:
    """``(3, H, W)`` → ``(1, 1, H, W)`` keeping the colour ``cfa`` samples at each pixel."""
    masks = colour_masks(cfa, image.shape[-2], image.shape[-1], dtype=image.dtype)
    return (image * masks).sum(0)[None, None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).pow(2).mean()))


@pytest.mark.parametrize("method", DEMOSAIC_METHODS)
@pytest.mark.parametrize("cfa", PATTERNS)
def test_shapes_and_dtype(method, cfa):
    mosaic = torch.rand(2, 1, 8, 6, dtype=torch.float64)
    out = demosaic(mosaic, cfa, method)
    assert out.shape == (2, 3, 8, 6)
    assert out.dtype == torch.float64


@pytest.mark.parametrize("method", TORCH_METHODS)
@pytest.mark.parametrize("cfa", PATTERNS)
def test_constant_colour_is_exact_everywhere(method, cfa, device):
    # Every kernel's weights on each colour sum to 1 (Malvar's gradient terms sum to 0), and reflect
    # padding keeps the CFA phase, so a flat colour comes back exactly, borders included. Dyadic
    # values and kernel weights make the float64 arithmetic exact, hence torch.equal.
    image = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64).view(3, 1, 1).expand(3, 6, 8)
    out = demosaic(mosaic_of(image, cfa).to(device), cfa, method)[0].cpu()
    assert torch.equal(out, image)


@pytest.mark.parametrize("method, margin", [("bilinear", 1), ("malvar", 2)])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_linear_ramp_is_exact_in_the_interior(method, margin, cfa):
    # Averages of samples placed symmetrically about a site reproduce any affine function, and
    # Malvar's corrections are second differences, which vanish on it. At the border the
    # reflected ramp is V-shaped, so only pixels `margin` (the kernel radius) inside are exact.
    y, x = torch.meshgrid(torch.arange(10.0), torch.arange(12.0), indexing="ij")
    image = torch.stack([0.5 + y / 64 + x / 32, 0.25 + y / 16 - x / 64, 0.125 + x / 16]).double()
    out = demosaic(mosaic_of(image, cfa), cfa, method)[0]
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    assert torch.equal(out[inner], image[inner])
    if method == "bilinear":
        assert not torch.equal(out, image)  # the border is not exact: the test looks at the right region


@pytest.mark.parametrize("method", DEMOSAIC_METHODS)
@pytest.mark.parametrize("cfa", ["RGGB", "GBRG"])
def test_measured_samples_are_kept(method, cfa):
    mosaic = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    out = demosaic(mosaic, cfa, method)
    masks = colour_masks(cfa, 8, 8, dtype=torch.float64)
    assert torch.allclose((out[0] * masks).sum(0), mosaic[0, 0], atol=1e-12)


@pytest.mark.parametrize("method, reference", [("bilinear", "bilinear"), ("malvar", "Malvar2004")])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_interior_matches_colour_demosaicing(method, reference, cfa):
    # colour_demosaicing is an independent implementation of the same filters; it pads borders
    # differently (scipy's default half-sample reflection, which breaks the CFA phase), so only
    # the interior beyond the 5×5 kernel radius is compared.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour_demosaicing

    ref_fn = getattr(colour_demosaicing, f"demosaicing_CFA_Bayer_{reference}")
    mosaic = torch.rand(1, 1, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.from_numpy(ref_fn(mosaic[0, 0].numpy(), cfa)).permute(2, 0, 1)
    out = demosaic(mosaic, cfa, method)[0]
    assert torch.allclose(out[:, 2:-2, 2:-2], expected[:, 2:-2, 2:-2], atol=1e-12)


def test_malvar_beats_bilinear_on_a_real_photo():
    # Bilinear interpolates each colour from its own sparse samples, so every edge loses the
    # missing channels' detail; Malvar adds the local gradient of the channel measured at the
    # site, using the strong correlation of the colour channels' detail in natural photos. On
    # Kodak24 Malvar wins on every image, by 4.5 to 6.7 dB (docs/ISP.md); on this 256×256 crop of
    # kodim19 (fence and grass texture) by 5.3 dB, so a 3 dB margin is safe.
    path = DATA / "kodak24" / "kodim19.png"
    if not path.is_file():
        pytest.skip("shared data (kodak24) not available")
    truth = read_rgb(path)[:, :256, :256].double()
    mosaic = mosaic_of(truth, "RGGB")
    bilinear = demosaic(mosaic, "RGGB", "bilinear")[0].clamp(0, 1)
    malvar = demosaic(mosaic, "RGGB", "malvar")[0].clamp(0, 1)
    assert psnr(malvar, truth) > psnr(bilinear, truth) + 3.0


@pytest.mark.parametrize("cfa", PATTERNS)
def test_menon_runs_and_is_close_on_a_smooth_image(cfa):
    # A smooth image (affine plus one small x·y term) holds almost no detail to lose: every
    # sound demosaicer reproduces it away from the border; Menon's filters and refining step reach
    # about 6 pixels, so the interior beyond that is compared.
    y, x = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    image = torch.stack([0.2 + 0.5 * x * y, 0.3 + 0.2 * y, 0.6 - 0.3 * x]).double()
    mosaic = mosaic_of(image, cfa).requires_grad_(True)
    out = demosaic(mosaic, cfa, "menon")
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.float64
    assert not out.requires_grad  # the NumPy round trip cuts the graph (documented)
    assert torch.allclose(out[0, :, 6:-6, 6:-6], image[:, 6:-6, 6:-6], atol=1e-5)


def rows_of_one_colour(height: int, width: int, transpose: bool = False, ramp: float = 0.0) -> torch.Tensor:
    """``(3, H, W)``: random brightness per row, fixed colour differences, optionally a ramp along rows.

    Along a row every channel is the same constant (or affine) function, so interpolating along
    rows is exact; across rows the green changes at random, so any filter that mixes rows
    (Malvar, AHD's column-wise candidate) is not.
    """
    g = 0.2 + 0.5 * torch.rand(height, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = g + ramp * torch.arange(width, dtype=torch.float64) / width
    image = torch.stack([g + 0.125, g, g - 0.0625])
    return image.transpose(-1, -2).contiguous() if transpose else image


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_ahd_picks_the_direction_along_the_edges(cfa, transpose):
    # Green interpolated along the rows is exact (its second-difference correction vanishes on an
    # affine row); red and blue follow from constant colour differences, also exact. The
    # column-wise candidate is wrong, so the homogeneity test must pick the row-wise one at every
    # pixel, borders included. Transposed, the same holds for columns.
    image = rows_of_one_colour(16, 20, transpose)
    mosaic = mosaic_of(image, cfa)
    assert torch.allclose(demosaic(mosaic, cfa, "ahd")[0], image, atol=1e-12)
    assert (demosaic(mosaic, cfa, "malvar")[0] - image).abs().max() > 0.05  # control: a fixed filter is not exact


def test_ahd_gradient():
    # The per-pixel choice is piecewise constant; on this image it is the row-wise candidate
    # everywhere, with a clear margin, so finite differences do not cross a decision boundary.
    # The ramp keeps each interpolated green strictly between its two row neighbours, away from
    # the kink of the estimate's clip.
    mosaic = mosaic_of(rows_of_one_colour(6, 8, ramp=0.125), "GRBG").requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: demosaic(m, "GRBG", "ahd"), (mosaic,))


@pytest.mark.parametrize("height", [37, 40])
def test_ahd_bands_give_the_same_result_as_one_pass(height, monkeypatch):
    # An output pixel depends on mosaic rows up to 5 away; bands overlap by AHD_HALO = 6 rows and
    # start on even rows (the CFA phase), so banding changes nothing. Exactly, here: AHD's output
    # is sums of inputs; its CIELAB powers (which may round by SIMD position) only decide, and no
    # decision on this data sits within a rounding of its threshold.
    mosaic = torch.rand(2, 1, height, 30, generator=torch.Generator().manual_seed(3))
    whole = demosaic(mosaic, "GBRG", "ahd")
    monkeypatch.setattr(demosaic_module, "AHD_BAND_ROWS", 8)
    assert torch.equal(demosaic(mosaic, "GBRG", "ahd"), whole)


def test_ahd_matches_libraw(tmp_path):
    # LibRaw's AHD (rawpy's postprocess with AHD, camera-space output, no white balance, linear)
    # on a DNG of a linearised 256×256 kodim19 crop. The DNG's colour matrix makes the camera
    # sRGB, so LibRaw's CIELAB uses the primaries ours does. Measured: 61 dB between the two in
    # the interior (Malvar against LibRaw: 37 dB); what is left is LibRaw's 16-bit rounding and
    # its separate border handling, which the 6-pixel crop leaves out.
    rawpy = pytest.importorskip("rawpy")
    path = DATA / "kodak24" / "kodim19.png"
    if not path.is_file():
        pytest.skip("shared data (kodak24) not available")
    linear = read_rgb(path)[:, :256, :256].double() ** 2.2
    samples = np.round(mosaic_of(linear, "RGGB")[0, 0].numpy() * 65535).astype(np.uint16)
    dng = tmp_path / "kodim19.dng"
    write_dng(dng, samples, "RGGB", black_level=0, white_level=65535, as_shot_neutral=[1, 1, 1],
              colour_matrix=np.linalg.inv(np.array(SRGB_TO_XYZ)))
    with rawpy.imread(str(dng)) as raw:
        out = raw.postprocess(demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, output_color=rawpy.ColorSpace.raw,
                              gamma=(1, 1), no_auto_bright=True, user_wb=[1, 1, 1, 1], output_bps=16, user_flip=0)
    libraw = torch.from_numpy(out.astype(np.float64) / 65535).permute(2, 0, 1)
    mosaic = torch.from_numpy(samples.astype(np.float64) / 65535)[None, None]
    inner = (slice(None), slice(6, -6), slice(6, -6))
    ahd = demosaic(mosaic, "RGGB", "ahd")[0].clamp(0, 1)
    malvar = demosaic(mosaic, "RGGB", "malvar")[0].clamp(0, 1)
    assert psnr(ahd[inner], libraw[inner]) > 50
    assert psnr(malvar[inner], libraw[inner]) < 45  # control: a different method is far from LibRaw


def test_site_masks_follow_the_pattern():
    masks = site_masks("GBRG", 2, 2)
    # GBRG: G B / R G — R at (1, 0), Gr (green on the red row) at (1, 1), Gb at (0, 0), B at (0, 1).
    assert masks[:, 1, 0].tolist() == [1, 0, 0, 0]
    assert masks[:, 1, 1].tolist() == [0, 1, 0, 0]
    assert masks[:, 0, 0].tolist() == [0, 0, 1, 0]
    assert masks[:, 0, 1].tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize("method, cfa", [("bilinear", "RGGB"), ("malvar", "GBRG")])
def test_gradcheck(method, cfa):
    mosaic = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: demosaic(m, cfa, method), (mosaic,))


def test_unknown_method():
    with pytest.raises(ConfigError, match=r"'nearest'.*'bilinear', 'malvar', 'ahd', 'menon'"):
        demosaic(torch.zeros(1, 1, 4, 4), "RGGB", "nearest")


@pytest.mark.parametrize(
    "shape, match",
    [((1, 4, 4), r"\(B, 1, H, W\)"), ((1, 3, 4, 4), r"\(B, 1, H, W\)"), ((1, 1, 2, 2), "too small for malvar")],
)
def test_bad_mosaic_shapes(shape, match):
    with pytest.raises(RawFormatError, match=match):
        demosaic(torch.zeros(shape), "RGGB", "malvar")


def test_menon_import_leaves_no_mock_modules():
    # colour-science puts unittest.mock stand-ins for matplotlib into sys.modules when matplotlib is
    # absent; torchmetrics imported afterwards then failed. A fresh interpreter shows the real order.
    import subprocess
    import sys

    code = (
        "import sys, unittest.mock, torch\n"
        "from unisp.isp.demosaic import demosaic\n"
        "demosaic(torch.rand(1, 1, 8, 8), 'RGGB', 'menon')\n"
        "assert not [k for k, v in sys.modules.items() if isinstance(v, unittest.mock.Mock)]\n"
        "import torchmetrics.functional.image\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
