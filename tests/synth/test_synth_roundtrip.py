"""Unprocess → classical ISP round trips: the synthetic camera is undone by the ISP that reads its metadata.

Two effects limit how well a rendered synthetic RAW matches its source photo:

* the sensor model: 10-bit quantisation, clipping of colours outside the camera's range, and
  Brooks et al.'s highlight-preserving gain inversion (not exactly invertible near white). These are
  small: ~50 dB and more on real photos (measured 50.3–56.6 dB on Kodak24).
* demosaicing: the mosaic keeps one colour in three, and no classical method recovers a full-detail
  photo's aliased high frequencies (measured on Kodak24 with this sensor model: Menon 28.0–39.6 dB,
  mean 34.9; Malvar 23.4–36.0 dB, mean 31.1).

So the sensor model's exactness is tested on real photos with every stage except the mosaic, and the
full RAW file through ``render_frame`` on band-limited photos, where demosaicing is near-exact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from unisp.fileio import read_rgb
from unisp.isp.awb import apply_white_balance
from unisp.isp.blc import normalize
from unisp.isp.ccm import apply_ccm
from unisp.isp.gamma import srgb_encode
from unisp.isp.pipeline import ISPConfig, render_frame
from unisp.isp.tone import tone_curve
from unisp.raw.bayer import CFA
from unisp.synth.bundled import bundled_photos
from unisp.synth.dataset import image_generator, synthesize_image
from unisp.synth.unprocess import SensorModel, quantize, unprocess_rgb

logger = logging.getLogger(__name__)

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
KODAK = SHARED_DATA / "kodak24"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(((a.double() - b.double()) ** 2).mean()))


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(3, H, W)`` image with reflected borders."""
    radius = int(3 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    taps = (taps / taps.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.pad(image[None], (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, taps, groups=3)
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, taps.transpose(-1, -2), groups=3)[0]


def render_without_mosaic(rgb: torch.Tensor, model: SensorModel, gains: tuple | None = None) -> torch.Tensor:
    """Unprocess, quantise, and render back with the ISP's own stages, skipping only the mosaic/demosaic.

    The camera RGB is given to the ISP's plane-wise stages as full-resolution ``(R, G, G, B)``
    "planes", so each stage (BLC, white balance with the frame's gains, clip, CCM, sRGB curve, tone)
    runs exactly as in :func:`unisp.isp.pipeline.render`. ``gains`` replaces ``model.wb_gains``.
    """
    camera = unprocess_rgb(rgb[None], model)
    counts = quantize(camera, model.bits, model.black_level, model.white_level)[:, [0, 1, 1, 2]]
    planes = normalize(counts, model.black_level, model.white_level)
    planes = apply_white_balance(planes, torch.tensor(gains or model.wb_gains)).clamp(0.0, 1.0)
    linear = apply_ccm(planes[:, [0, 1, 3]], model.cam2rgb).clamp(0.0, 1.0)
    return tone_curve(srgb_encode(linear))[0]


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    return bundled_photos()


class TestSensorModelInvertible:
    """Every stage but the mosaic: only quantisation and clipping separate the result from the photo."""

    # 40 dB: 10-bit quantisation gives ~50–57 dB (half a code over 959, amplified at most ~3× by the
    # white-balance gains and the sRGB curve's slope in the shadows); near-white highlights, where
    # the safe gain inversion is approximate, and out-of-gamut colours clipped in the camera space
    # cost little on natural photos. A wrong convention (gains without the exposure gain, matrix
    # transposed or not inverted) drops the PSNR to ~15–25 dB.
    BOUND_DB = 40.0

    def test_bundled_photos(self, photos):
        for index, (name, rgb) in enumerate(photos.items()):
            rgb = rgb[:, :256, :256]  # a crop keeps the test fast; the full photos give 49.3–55.7 dB
            model = SensorModel.random(image_generator(0, index), noise=False)
            value = psnr(render_without_mosaic(rgb, model), rgb)
            assert value >= self.BOUND_DB, f"{name}: {value:.1f} dB"

    def test_kodak(self):
        # The CFA plays no part without the mosaic, so one pattern covers them all.
        if not KODAK.is_dir():
            pytest.skip("shared Kodak24 data not available")
        for index in (1, 13, 20):  # kodim20 has large clipped highlights (sky, aircraft)
            rgb = read_rgb(KODAK / f"kodim{index:02d}.png")
            model = SensorModel.random(image_generator(0, index), noise=False)
            value = psnr(render_without_mosaic(rgb, model), rgb)
            assert value >= self.BOUND_DB, f"kodim{index:02d}: {value:.1f} dB"

    def test_g_normalised_gains_fail(self, photos):
        # The bound can fail: rendering with the gains normalised to G = 1 (the exposure gain
        # dropped) leaves the photo 1/rgb_gain ≈ 20 % too dark, far below it.
        rgb = photos["coffee"]
        model = SensorModel.random(image_generator(0, 0), noise=False)
        normalised = tuple(g / model.rgb_gain for g in model.wb_gains)
        assert psnr(render_without_mosaic(rgb, model, gains=normalised), rgb) < 30.0


class TestFullRoundTrip:
    """The RAW frame itself, rendered by ``render_frame`` from its own metadata."""

    # A Gaussian blur with σ = 2 px attenuates frequency f (cycles/pixel) by exp(−2π²σ²f²): by
    # 0.007 (−43 dB) at f = 1/4, where the CFA's red/blue sampling aliases colour differences, and
    # far more towards Nyquist. Such an image is band-limited enough for Malvar's and Menon's
    # interpolation to be near-exact, leaving the sensor model's ~50 dB; measured 44.6–50.8 dB on
    # 256×256 crops of the five bundled photos (Malvar and Menon alike). Unblurred: 28.9–37.3 dB.
    BOUND_DB = 40.0

    @pytest.mark.parametrize("method", ["malvar", "menon"])
    @pytest.mark.parametrize("name", ["astronaut", "chelsea"])
    def test_band_limited(self, photos, method, name):
        rgb = gaussian_blur(photos[name][:, :256, :256], sigma=2.0)
        rgb = torch.round(rgb * 255) / 255  # an 8-bit photo, as a real source would be
        frame, _ = synthesize_image(rgb, image_generator(0, 0), noise=False)
        out = render_frame(frame, ISPConfig(demosaic=method, tone_curve=True))
        assert out.shape == rgb.shape
        value = psnr(out, rgb)
        assert value >= self.BOUND_DB, f"{name} {method}: {value:.1f} dB"

    @pytest.mark.parametrize("cfa", list(CFA))
    def test_band_limited_every_cfa(self, photos, cfa):
        rgb = torch.round(gaussian_blur(photos["coffee"][:, :128, :192], sigma=2.0) * 255) / 255
        frame, _ = synthesize_image(rgb, image_generator(0, 3), noise=False, cfa=cfa)
        value = psnr(render_frame(frame, ISPConfig(demosaic="malvar", tone_curve=True)), rgb)
        assert value >= self.BOUND_DB, f"{cfa.value}: {value:.1f} dB"

    def test_kodak_reported(self, record_property):
        # Not the 40 dB target (demosaicing full-detail photos cannot reach it, see the module
        # docstring): the measured values are logged and recorded; the 25 dB floor only catches a
        # broken convention, which gives ~10–20 dB.
        if not KODAK.is_dir():
            pytest.skip("shared Kodak24 data not available")
        for index in (5, 23):
            rgb = read_rgb(KODAK / f"kodim{index:02d}.png")
            frame, _ = synthesize_image(rgb, image_generator(0, index), noise=False)
            for method in ("malvar", "menon"):
                value = psnr(render_frame(frame, ISPConfig(demosaic=method, tone_curve=True)), rgb)
                logger.info("kodim%02d %s: %.2f dB", index, method, value)
                record_property(f"kodim{index:02d}_{method}_psnr_db", round(value, 2))
                assert value >= 25.0
