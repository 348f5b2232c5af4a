"""Tests for unisp.synth.unprocess: each inverse stage, the sensor model and unprocess()."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unisp.errors import ConfigError, UnispError
from unisp.isp.gamma import srgb_encode
from unisp.isp.tone import tone_curve
from unisp.raw.bayer import CFA, pack
from unisp.raw.frame import RawFrame, Source
from unisp.synth.unprocess import (
    SensorModel,
    add_noise,
    apply_ccm,
    default_black_level,
    gamma_expansion,
    inverse_tone,
    mosaic,
    quantize,
    safe_invert_gains,
    unprocess,
    unprocess_rgb,
)

ALL_CFAS = list(CFA)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestInverseCurves:
    def test_inverse_tone_round_trip(self):
        x = torch.linspace(0, 1, 1001, dtype=torch.float64)
        torch.testing.assert_close(tone_curve(inverse_tone(x)), x, atol=1e-12, rtol=0)

    def test_gamma_expansion_round_trip(self):
        x = torch.linspace(0, 1, 1001, dtype=torch.float64)
        torch.testing.assert_close(srgb_encode(gamma_expansion(x)), x, atol=1e-7, rtol=0)

    def test_gamma_expansion_known_value(self):
        # sRGB 0.5 → ((0.5 + 0.055) / 1.055)^2.4 = 0.21404 (IEC 61966-2-1).
        assert float(gamma_expansion(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0.2140411, abs=1e-6)


class TestApplyCCM:
    def test_identity_and_permutation(self):
        x = torch.rand(2, 3, 4, 5, generator=gen(0))
        torch.testing.assert_close(apply_ccm(x, torch.eye(3)), x)
        swap_rg = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
        torch.testing.assert_close(apply_ccm(x, swap_rg), x[:, [1, 0, 2]])

    def test_known_pixel(self):
        # Row i of the matrix dotted with the pixel (1, 2, 3): (1 + 2 + 3, 2·1, −1·1 + 1·3) = (6, 2, 2).
        ccm = torch.tensor([[1.0, 1, 1], [2, 0, 0], [-1, 0, 1]])
        pixel = torch.tensor([1.0, 2, 3]).view(1, 3, 1, 1)
        torch.testing.assert_close(apply_ccm(pixel, ccm).flatten(), torch.tensor([6.0, 2, 2]))

    def test_batched_matrices(self):
        x = torch.rand(2, 3, 4, 4, generator=gen(1))
        ccms = torch.stack([torch.eye(3), 2 * torch.eye(3)])
        out = apply_ccm(x, ccms)
        torch.testing.assert_close(out[0], x[0])
        torch.testing.assert_close(out[1], 2 * x[1])

    def test_unbatched_image(self):
        x = torch.rand(3, 4, 4, generator=gen(2))
        assert apply_ccm(x, torch.eye(3)).shape == (3, 4, 4)

    def test_gradcheck(self):
        x = torch.rand(1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
        m = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(apply_ccm, (x, m))

    def test_bad_shapes(self):
        with pytest.raises(UnispError, match="3, H, W"):
            apply_ccm(torch.zeros(1, 4, 2, 2), torch.eye(3))
        with pytest.raises(UnispError, match="3×3"):
            apply_ccm(torch.zeros(1, 3, 2, 2), torch.eye(4))


class TestSafeInvertGains:
    def test_plain_inverse_below_inflection(self):
        # Mean 0.4 < 0.9: gains (1/red, 1, 1/blue) / rgb = (1/4, 1/2, 1/8) → (0.1, 0.2, 0.05).
        x = torch.full((1, 3, 2, 2), 0.4)
        out = safe_invert_gains(x, rgb_gain=2.0, red_gain=2.0, blue_gain=4.0)
        torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.05]))

    def test_white_stays_white(self):
        # Mean 1: mask = ((1 - 0.9) / 0.1)² = 1, so the gain is max(1, g) = 1 and white is unchanged.
        x = torch.ones(1, 3, 2, 2)
        torch.testing.assert_close(safe_invert_gains(x, 1.25, 2.0, 1.7), x)

    def test_halfway_blend(self):
        # Mean 0.95: mask = (0.05 / 0.1)² = 0.25, gain = 0.25 + 0.75·g for each channel.
        x = torch.full((1, 3, 1, 1), 0.95, dtype=torch.float64)
        g = torch.tensor([1 / 4, 1 / 2, 1 / 8], dtype=torch.float64)
        expected = 0.95 * (0.25 + 0.75 * g)
        torch.testing.assert_close(safe_invert_gains(x, 2.0, 2.0, 4.0).flatten(), expected)

    def test_never_below_plain_inverse(self):
        x = torch.rand(1, 3, 16, 16, generator=gen(0))
        plain = x * torch.tensor([1 / 2.2, 1, 1 / 1.7]).view(1, 3, 1, 1) / 1.3
        assert torch.all(safe_invert_gains(x, 1.3, 2.2, 1.7) >= plain - 1e-7)

    def test_per_image_gains(self):
        x = torch.full((2, 3, 1, 1), 0.5)
        out = safe_invert_gains(x, torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]), torch.tensor([2.0, 4.0]))
        torch.testing.assert_close(out[:, :, 0, 0], torch.tensor([[0.25, 0.5, 0.25], [0.125, 0.25, 0.0625]]))

    def test_gradcheck(self):
        # Means span both sides of the inflection so the blend's gradient is checked too.
        x = (0.5 + 0.5 * torch.rand(1, 3, 4, 4, dtype=torch.float64)).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: safe_invert_gains(t, 1.2, 2.0, 1.6), (x,))


class TestMosaic:
    # Hand-written 2×2 tiles for an image whose R, G, B channels are the constants 1, 2, 3.
    TILES = {
        CFA.RGGB: [[1, 2], [2, 3]],
        CFA.BGGR: [[3, 2], [2, 1]],
        CFA.GRBG: [[2, 1], [3, 2]],
        CFA.GBRG: [[2, 3], [1, 2]],
    }

    @pytest.mark.parametrize("cfa", ALL_CFAS)
    def test_hand_checked_tile(self, cfa):
        rgb = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).expand(1, 3, 4, 6)
        out = mosaic(rgb, cfa)
        assert out.shape == (1, 1, 4, 6)
        expected = torch.tensor(self.TILES[cfa], dtype=torch.float32).repeat(2, 3)
        torch.testing.assert_close(out[0, 0], expected)

    @pytest.mark.parametrize("cfa", ALL_CFAS)
    def test_samples_the_right_channel(self, cfa):
        # Packing the mosaic gives the R plane from the red channel, both greens from green, B from blue.
        rgb = torch.rand(2, 3, 6, 8, generator=gen(0))
        planes = pack(mosaic(rgb, cfa)[:, 0], cfa)
        for plane, channel in zip(range(4), (0, 1, 1, 2)):
            torch.testing.assert_close(planes[:, plane], pack(rgb[:, channel], cfa)[:, plane])

    def test_bad_shape(self):
        with pytest.raises(UnispError, match="B, 3, H, W"):
            mosaic(torch.zeros(3, 4, 4), "RGGB")


class TestQuantize:
    def test_known_values_10_bit(self):
        # black 64, white 1023: x ↦ 64 + 959·x. 0.5 → 543.5, rounded half to even → 544;
        # -1 and 2 are clipped to the ADC's range [0, 1023]; -0.01 → 54.41 → 54 (footroom below black).
        x = torch.tensor([0.0, 1.0, 0.5, -1.0, 2.0, -0.01])
        out = quantize(x, bits=10, black_level=64)
        assert out.dtype == torch.int32
        assert out.tolist() == [64, 1023, 544, 0, 1023, 54]

    def test_known_values_12_bit_custom_white(self):
        # black 256, white 4000: 1 → 4000, 0.25 → 256 + 936 = 1192.
        out = quantize(torch.tensor([0.0, 0.25, 1.0]), bits=12, black_level=256, white_level=4000)
        assert out.tolist() == [256, 1192, 4000]

    def test_shape_kept(self):
        assert quantize(torch.zeros(2, 1, 4, 6), bits=10, black_level=64).shape == (2, 1, 4, 6)

    @pytest.mark.parametrize(
        "bits, black, white, match",
        [(17, 0, None, "between 1 and 16"), (10, 1023, None, "black"), (10, 64, 2000, "white"), (10, -1, None, "black")],
    )
    def test_errors(self, bits, black, white, match):
        with pytest.raises(ConfigError, match=match):
            quantize(torch.zeros(2), bits=bits, black_level=black, white_level=white)


class TestAddNoise:
    def test_zero_levels_is_identity(self):
        x = torch.rand(1, 1, 8, 8, generator=gen(0))
        torch.testing.assert_close(add_noise(x, 0.0, 0.0, gen(1)), x, rtol=0, atol=0)

    def test_variance(self):
        # variance = shot·x + read = 0.01·0.5 + 0.001 = 0.006; the sample variance of 2^16 draws
        # has relative standard error √(2/65536) = 0.55 %, so 4 % is a wide bound.
        x = torch.full((1, 1, 256, 256), 0.5, dtype=torch.float64)
        noise = add_noise(x, 0.01, 0.001, gen(0)) - x
        assert float(noise.var()) == pytest.approx(0.006, rel=0.04)
        assert abs(float(noise.mean())) < 0.001

    def test_per_image_levels(self):
        x = torch.full((2, 1, 128, 128), 0.5, dtype=torch.float64)
        noise = add_noise(x, torch.tensor([0.0, 0.02]), torch.tensor([0.0, 0.0]), gen(0)) - x
        assert float(noise[0].abs().max()) == 0.0
        assert float(noise[1].var()) == pytest.approx(0.01, rel=0.05)

    def test_seeded(self):
        x = torch.rand(1, 1, 8, 8, generator=gen(0))
        torch.testing.assert_close(add_noise(x, 0.01, 1e-4, gen(5)), add_noise(x, 0.01, 1e-4, gen(5)), rtol=0, atol=0)
        assert not torch.equal(add_noise(x, 0.01, 1e-4, gen(5)), add_noise(x, 0.01, 1e-4, gen(6)))


class TestSensorModel:
    def test_defaults(self):
        m = SensorModel()
        assert (m.cfa, m.bits, m.black_level, m.white_level) == (CFA.RGGB, 10, 64, 1023)
        torch.testing.assert_close(m.cam2rgb, torch.eye(3, dtype=torch.float64))

    def test_default_black_level_scales_with_bits(self):
        # 64 at 10 bits keeps 1/16 of the range: 16 at 8 bits, 256 at 12, 1024 at 14, 4096 at 16.
        assert [default_black_level(b) for b in (8, 10, 12, 14, 16)] == [16, 64, 256, 1024, 4096]

    def test_random_inverse_and_gains(self):
        m = SensorModel.random(gen(0))
        torch.testing.assert_close(m.cam2rgb @ m.rgb2cam, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(m.rgb2cam.sum(1), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
        # rgb2cam's rows sum to 1, so cam2rgb's do too (cam2rgb·1 = cam2rgb·(rgb2cam·1) = 1).
        torch.testing.assert_close(m.cam2rgb.sum(1), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
        assert m.wb_gains == pytest.approx((m.rgb_gain * m.red_gain, m.rgb_gain, m.rgb_gain * m.blue_gain))
        assert m.shot_noise > 0 and m.read_noise > 0

    def test_random_noise_flag_keeps_camera(self):
        # The same seed gives the same colours and gains with and without noise.
        noisy, clean = SensorModel.random(gen(3)), SensorModel.random(gen(3), noise=False)
        assert (clean.shot_noise, clean.read_noise) == (0.0, 0.0)
        assert torch.equal(noisy.rgb2cam, clean.rgb2cam)
        assert (noisy.rgb_gain, noisy.red_gain, noisy.blue_gain) == (clean.rgb_gain, clean.red_gain, clean.blue_gain)

    def test_json_round_trip_exact(self):
        m = SensorModel.random(gen(1), cfa="gbrg", bits=12)
        data = json.loads(json.dumps(m.to_dict()))
        back = SensorModel.from_dict(data)
        assert back == m
        assert torch.equal(back.rgb2cam, m.rgb2cam) and torch.equal(back.cam2rgb, m.cam2rgb)
        assert data["cfa"] == "GBRG" and data["black_level"] == 256 and data["white_level"] == 4095

    def test_equality(self):
        assert SensorModel.random(gen(1)) == SensorModel.random(gen(1))
        assert SensorModel.random(gen(1)) != SensorModel.random(gen(2))

    @pytest.mark.parametrize(
        "kwargs, match",
        [
            ({"bits": 7}, "bits must be between 8 and 16"),
            ({"bits": 10.5}, "bits must be an integer"),
            ({"black_level": 1023}, "black"),
            ({"bits": 8, "white_level": 300}, "white"),
            ({"rgb2cam": torch.zeros(3, 3)}, "singular"),
            ({"rgb2cam": torch.eye(4)}, "3×3"),
            ({"red_gain": 0.0}, "red_gain must be a positive"),
            ({"read_noise": -1e-3}, "read_noise must be a non-negative"),
            ({"cfa": "RGBG"}, "unknown CFA"),
        ],
    )
    def test_invalid(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            SensorModel(**kwargs)

    def test_from_dict_keys(self):
        data = SensorModel().to_dict()
        with pytest.raises(ConfigError, match="unknown keys \\['gamma'\\]"):
            SensorModel.from_dict({**data, "gamma": 2.2})
        del data["bits"]
        with pytest.raises(ConfigError, match="missing keys \\['bits'\\]"):
            SensorModel.from_dict(data)
        with pytest.raises(ConfigError, match="mapping"):
            SensorModel.from_dict([1, 2])


class TestUnprocess:
    @pytest.mark.parametrize("cfa", ALL_CFAS)
    def test_frame_fields(self, cfa):
        model = SensorModel.random(gen(0), cfa=cfa)
        frame = unprocess(torch.rand(3, 11, 13, generator=gen(1)), model, gen(2))
        assert isinstance(frame, RawFrame)
        assert frame.mosaic.shape == (10, 12) and frame.mosaic.dtype == np.uint16  # cropped to even
        assert frame.cfa == cfa
        assert frame.black_level == (64.0,) * 4 and frame.white_level == 1023.0
        assert frame.wb_gains == pytest.approx(model.wb_gains)
        np.testing.assert_array_equal(frame.cam_to_srgb, model.cam2rgb.numpy())
        assert all(frame.sources[k] is Source.METADATA for k in ("cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb"))
        frame.check_white_level()  # no count above the white level

    def test_known_counts_identity_camera(self):
        # Identity camera, no tone curve, no noise: counts = round(64 + 959·srgb_decode(v)).
        # sRGB 0 → 64, sRGB 1 → 1023, sRGB 0.5 → 64 + 959·0.2140411 = 269.27 → 269.
        model = SensorModel(tone_curve=False)
        rgb = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1).expand(3, 2, 2).clone()
        frame = unprocess(rgb, model)
        # RGGB: R site (0,0) sees 0, greens see 0.5, the B site (1,1) sees 1.
        np.testing.assert_array_equal(frame.mosaic, [[64, 269], [269, 1023]])

    def test_known_counts_with_gains_and_tone(self):
        # Grey sRGB y = 0.5 through the inverse tone: 0.5 − sin(asin(0)/3) = 0.5; decoded 0.2140411;
        # identity CCM; gains (1/2, 1, 1/4) / 2 → R 0.0535103, G 0.1070206, B 0.0267551;
        # counts 64 + 959·x → 115.32 → 115, 166.63 → 167, 89.66 → 90.
        model = SensorModel(rgb_gain=2.0, red_gain=2.0, blue_gain=4.0)
        frame = unprocess(torch.full((3, 2, 2), 0.5), model)
        np.testing.assert_array_equal(frame.mosaic, [[115, 167], [167, 90]])

    def test_seeded_noise(self):
        model = SensorModel.random(gen(0))
        rgb = torch.rand(3, 16, 16, generator=gen(1))
        a, b, c = (unprocess(rgb, model, gen(s)).mosaic for s in (5, 5, 6))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_noise_free_ignores_generator(self):
        model = SensorModel.random(gen(0), noise=False)
        rgb = torch.rand(3, 8, 8, generator=gen(1))
        np.testing.assert_array_equal(unprocess(rgb, model, gen(5)).mosaic, unprocess(rgb, model).mosaic)

    def test_unprocess_rgb_in_range(self):
        out = unprocess_rgb(torch.rand(2, 3, 8, 8, generator=gen(0)), SensorModel.random(gen(1)))
        assert out.shape == (2, 3, 8, 8) and out.min() >= 0 and out.max() <= 1

    def test_errors(self):
        with pytest.raises(UnispError, match="\\(3, H, W\\)"):
            unprocess(torch.zeros(1, 3, 4, 4), SensorModel())
        with pytest.raises(UnispError, match="smaller than one 2×2"):
            unprocess(torch.zeros(3, 1, 4), SensorModel())
        with pytest.raises(UnispError, match="needs a seeded torch.Generator"):
            unprocess(torch.zeros(3, 4, 4), SensorModel(shot_noise=0.01))


def test_fractional_black_level():
    # A measured black level may be fractional: 63.5 + 959.5·0.5 = 543.25 → 543; whole values stay ints.
    assert quantize(torch.tensor([0.5]), bits=10, black_level=63.5).tolist() == [543]
    assert SensorModel(black_level=63.5).black_level == 63.5
    assert isinstance(SensorModel(black_level=64.0).black_level, int)
    with pytest.raises(ConfigError, match="black_level must be a number"):
        SensorModel(black_level="dark")


def test_add_noise_needs_generator():
    with pytest.raises(UnispError, match="seeded torch.Generator"):
        add_noise(torch.zeros(1, 1, 2, 2), 0.01, 0.001, None)
