"""Tests for unisp.synth.camera: Brooks et al.'s random colour matrices, gains and noise levels."""

from __future__ import annotations

import math

import pytest
import torch

from unisp.errors import UnispError
from unisp.synth import camera
from unisp.synth.camera import (
    BLUE_GAIN_RANGE,
    RED_GAIN_RANGE,
    SHOT_NOISE_RANGE,
    XYZ_TO_CAMERA,
    preset_ccm,
    random_ccm,
    random_gains,
    random_noise_levels,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestMatrices:
    def test_four_cameras(self):
        assert len(XYZ_TO_CAMERA) == 4
        assert camera.xyz_to_camera_matrices().shape == (4, 3, 3)

    def test_sony_a7r_matches_adobe_coefficients(self):
        # dcraw's adobe_coeff for "Sony ILCE-7R" is {4913,-541,-202,-6130,13513,2906,-1564,2151,7183} / 10000.
        expected = torch.tensor([4913, -541, -202, -6130, 13513, 2906, -1564, 2151, 7183], dtype=torch.float64)
        got = torch.tensor(XYZ_TO_CAMERA["sony_a7r"], dtype=torch.float64).flatten()
        torch.testing.assert_close(got, expected / 10000, rtol=0, atol=1e-12)

    def test_srgb_white_is_d65(self):
        # sRGB white (1, 1, 1) maps to the D65 white point, XYZ ≈ (0.9505, 1.0000, 1.0888).
        white = torch.tensor(camera.SRGB_TO_XYZ_D65, dtype=torch.float64).sum(dim=1)
        torch.testing.assert_close(white, torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64), atol=1e-4, rtol=0)


class TestRandomCCM:
    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    def test_shape_rows_and_inverse(self, seed):
        rgb2cam = random_ccm(gen(seed))
        assert rgb2cam.shape == (3, 3) and rgb2cam.dtype == torch.float64
        # Rows sum to 1: white (1, 1, 1) stays white, i.e. the camera is white-balanced for D65.
        torch.testing.assert_close(rgb2cam.sum(dim=1), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
        cam2rgb = torch.linalg.inv(rgb2cam)
        torch.testing.assert_close(cam2rgb @ rgb2cam, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)

    def test_diagonally_dominant(self):
        # All four cameras' sRGB→camera matrices are dominated by their diagonal (each camera
        # channel mostly sees its own sRGB primary), so every convex combination is too.
        for seed in range(20):
            m = random_ccm(gen(seed))
            assert torch.all(m.diagonal() > 0.5)

    def test_within_the_four_cameras(self):
        # Row i of the result is Σ_k w_k·r_k / Σ_k w_k·s_k (r_k the camera's un-normalised row, s_k
        # its sum), i.e. the convex combination with weights w_k·s_k / Σ w·s of the cameras'
        # normalised rows r_k / s_k. So when every s_k > 0 each entry lies between the four cameras'.
        srgb2xyz = torch.tensor(camera.SRGB_TO_XYZ_D65, dtype=torch.float64)
        per_camera = camera.xyz_to_camera_matrices() @ srgb2xyz
        assert torch.all(per_camera.sum(dim=-1) > 0)
        per_camera = per_camera / per_camera.sum(dim=-1, keepdim=True)
        low, high = per_camera.amin(0), per_camera.amax(0)
        for seed in range(20):
            m = random_ccm(gen(seed))
            assert torch.all(m >= low - 1e-12) and torch.all(m <= high + 1e-12)

    def test_seeded(self):
        torch.testing.assert_close(random_ccm(gen(7)), random_ccm(gen(7)), rtol=0, atol=0)
        assert not torch.equal(random_ccm(gen(7)), random_ccm(gen(8)))


class TestRandomGains:
    def test_ranges_and_distribution(self):
        g = gen(0)
        draws = [random_gains(g) for _ in range(2000)]
        red = torch.tensor([d.red_gain for d in draws])
        blue = torch.tensor([d.blue_gain for d in draws])
        inverse = torch.tensor([1.0 / d.rgb_gain for d in draws])
        assert red.min() >= RED_GAIN_RANGE[0] and red.max() <= RED_GAIN_RANGE[1]
        assert blue.min() >= BLUE_GAIN_RANGE[0] and blue.max() <= BLUE_GAIN_RANGE[1]
        # Uniform draws cover their range: 2000 draws leave no gap wider than 2 % at either end.
        assert red.min() < 1.91 and red.max() > 2.39
        # 1 / rgb_gain ~ N(0.8, 0.1): with 2000 draws the mean's standard error is 0.0022 and the
        # std's 0.0016, so these bounds are ~4.5 standard errors wide.
        assert abs(float(inverse.mean()) - 0.8) < 0.01
        assert abs(float(inverse.std()) - 0.1) < 0.008

    def test_seeded(self):
        assert random_gains(gen(3)) == random_gains(gen(3))
        assert random_gains(gen(3)) != random_gains(gen(4))


class TestRandomNoiseLevels:
    def test_ranges_and_relation(self):
        g = gen(0)
        draws = [random_noise_levels(g) for _ in range(2000)]
        shot = torch.tensor([d.shot for d in draws], dtype=torch.float64)
        read = torch.tensor([d.read for d in draws], dtype=torch.float64)
        assert shot.min() >= SHOT_NOISE_RANGE[0] and shot.max() <= SHOT_NOISE_RANGE[1]
        # log(shot) is uniform: its mean is the midpoint of log(1e-4) and log(0.012) = -6.82.
        mid = (math.log(SHOT_NOISE_RANGE[0]) + math.log(SHOT_NOISE_RANGE[1])) / 2
        assert abs(float(shot.log().mean()) - mid) < 0.1
        # The residual of log(read) about Brooks' line 2.18·log(shot) + 1.20 is N(0, 0.26).
        residual = read.log() - (2.18 * shot.log() + 1.20)
        assert abs(float(residual.mean())) < 0.03
        assert abs(float(residual.std()) - 0.26) < 0.02

    def test_seeded(self):
        assert random_noise_levels(gen(3)) == random_noise_levels(gen(3))
        assert random_noise_levels(gen(3)) != random_noise_levels(gen(4))


def test_global_random_state_untouched():
    # Sampling draws only from the given generator: the global torch RNG state is unchanged.
    before = torch.get_rng_state()
    g = gen(0)
    random_ccm(g), random_gains(g), random_noise_levels(g)
    assert torch.equal(before, torch.get_rng_state())


def test_preset_ccm():
    """One camera alone: rows sum to 1 (white stays white), and an unknown name is refused."""
    for name in XYZ_TO_CAMERA:
        ccm = preset_ccm(name)
        assert ccm.shape == (3, 3) and torch.allclose(ccm.sum(-1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(UnispError, match="unknown camera"):  # a ConfigError
        preset_ccm("leica_m3")
