"""The classical pipeline: hand-computed renders, every CFA pattern, config validation, gradients."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from unisp.config import load_config
from unisp.errors import ConfigError
from unisp.isp.gamma import srgb_encode
from unisp.isp.pipeline import TRAINING_TARGET, ClassicalISP, ISPConfig, render, render_frame
from unisp.raw.bayer import CFA
from unisp.raw.frame import RawFrame

PATTERNS = [c.value for c in CFA]
BLACK, WHITE = 64, 1023
GAINS = (2.0, 1.0, 1.5)


def srgb(x: float) -> float:
    """IEC 61966-2-1 encoding written out, independent of unisp.isp.gamma."""
    return 12.92 * x if x <= 0.0031308 else 1.055 * x ** (1 / 2.4) - 0.055


def mosaic_scene(scene: np.ndarray, cfa: str) -> np.ndarray:
    """``(3, H, W)`` integer scene → ``(H, W)`` uint16 mosaic sampling ``cfa``'s colour at each pixel."""
    idx = CFA.parse(cfa).colour_index()
    h, w = scene.shape[1:]
    colour = np.tile(idx, (h // 2, w // 2))
    return np.take_along_axis(scene, colour[None], axis=0)[0].astype(np.uint16)


@pytest.mark.parametrize("method", ["bilinear", "malvar", "ahd", "menon"])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_flat_grey_frame_hand_computed(cfa, method):
    # Every sample 300: normalised (300 - 64) / (1023 - 64) = 236/959 in each plane. Gains (2, 1, 1.5)
    # give linear RGB (472, 236, 354)/959 = (0.49218, 0.24609, 0.36913) everywhere (a flat colour
    # demosaics exactly, see test_demosaic); no matrix in the frame → identity; sRGB encoding gives
    # (0.73018, 0.53322, 0.64149). The same for every CFA pattern, borders included.
    frame = RawFrame(np.full((6, 8), 300, np.uint16), cfa, (BLACK,) * 4, WHITE, wb_gains=GAINS)
    out = render_frame(frame, ISPConfig(demosaic=method))
    expected = torch.tensor([srgb(472 / 959), srgb(236 / 959), srgb(354 / 959)])
    assert expected.tolist() == pytest.approx([0.73018, 0.53322, 0.64149], abs=1e-5)
    assert out.shape == (3, 6, 8) and out.dtype == torch.float32
    assert torch.allclose(out, expected.view(3, 1, 1).expand(3, 6, 8), atol=1e-6)


@pytest.mark.parametrize("method, margin", [("bilinear", 2), ("malvar", 2), ("ahd", 3)])
def test_same_scene_in_every_pattern_renders_the_same(method, margin):
    # An affine scene (integer raw values, slopes differing per colour) is reproduced exactly by
    # bilinear and Malvar away from the 2-px border, and by AHD (both of its candidates are exact
    # on it) away from the 3-px border (green ±2, then colour differences ±1), whatever the
    # pattern, so the four renders agree with each other and with the scene rendered directly:
    # srgb(gains · (scene − black) / (white − black)).
    y, x = np.mgrid[0:12, 0:12]
    scene = np.stack([100 + 8 * y + 6 * x, 200 + 10 * y - 4 * x, 150 + 3 * y + 9 * x])
    truth = torch.from_numpy((scene - BLACK) / (WHITE - BLACK) * np.array(GAINS)[:, None, None]).float()
    expected = srgb_encode(truth)[:, margin:-margin, margin:-margin]
    config = ISPConfig(demosaic=method, colour_matrix="identity")
    for cfa in PATTERNS:
        frame = RawFrame(mosaic_scene(scene, cfa), cfa, (BLACK,) * 4, WHITE, wb_gains=GAINS)
        out = render_frame(frame, config)[:, margin:-margin, margin:-margin]
        assert torch.allclose(out, expected, atol=1e-5), cfa
    # Reading the RGGB mosaic as BGGR swaps red and blue sites: the render must differ clearly.
    wrong = RawFrame(mosaic_scene(scene, "RGGB"), "BGGR", (BLACK,) * 4, WHITE, wb_gains=GAINS)
    assert (render_frame(wrong, config)[:, margin:-margin, margin:-margin] - expected).abs().max() > 0.05


def test_clip_keeps_saturated_highlights_white():
    # A fully saturated frame: gains make the planes (2, 1, 1.5). Clipped to 1 before demosaicing,
    # the matrix (rows sum to 1) maps (1, 1, 1) to white. Unclipped, its green row gives
    # -0.4·2 + 1.7·1 - 0.3·1.5 = 0.45 < 1: a magenta highlight.
    matrix = np.array([[1.6, -0.4, -0.2], [-0.4, 1.7, -0.3], [0.0, -0.5, 1.5]])
    frame = RawFrame(np.full((4, 4), WHITE, np.uint16), "RGGB", (BLACK,) * 4, WHITE, GAINS, cam_to_srgb=matrix)
    assert torch.allclose(render_frame(frame), torch.ones(3, 4, 4), atol=1e-6)
    unclipped = render_frame(frame, ISPConfig(clip=False))
    assert torch.allclose(unclipped[1], torch.full((4, 4), srgb(0.45)), atol=1e-5)


def test_metadata_matrix_is_used():
    # A matrix that swaps red and blue: with colour_matrix="metadata" the channels come out swapped
    # relative to "identity".
    swap = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    rng = np.random.default_rng(1)
    frame = RawFrame(rng.integers(BLACK, 600, (8, 8)).astype(np.uint16), "RGGB", (BLACK,) * 4, WHITE, GAINS, swap)
    with_matrix = render_frame(frame, ISPConfig(colour_matrix="metadata"))
    without = render_frame(frame, ISPConfig(colour_matrix="identity"))
    assert torch.allclose(with_matrix, without[[2, 1, 0]])


def test_as_shot_falls_back_to_gray_world(caplog):
    rng = np.random.default_rng(2)
    frame = RawFrame(rng.integers(BLACK, 800, (8, 8)).astype(np.uint16), "GRBG", (BLACK,) * 4, WHITE, path=Path("x.raw"))
    with caplog.at_level(logging.DEBUG, logger="unisp.isp.pipeline"):  # per frame: -v only
        as_shot = render_frame(frame, ISPConfig(white_balance="as_shot"))
    assert "x.raw: no as-shot white balance" in caplog.text and "gray world" in caplog.text
    assert torch.equal(as_shot, render_frame(frame, ISPConfig(white_balance="gray_world")))
    assert not torch.equal(as_shot, render_frame(frame, ISPConfig(white_balance="none")))


@pytest.mark.parametrize("method", ["bilinear", "malvar", "ahd", "menon"])
@pytest.mark.parametrize("tone", [False, True])
def test_render_shape_range_dtype(method, tone):
    planes = torch.rand(2, 4, 4, 5, dtype=torch.float64)
    out = render(planes, "GBRG", wb_gains=torch.tensor([[2.0, 1.0, 1.5], [1.2, 1.0, 2.5]]), config=ISPConfig(demosaic=method, tone_curve=tone))
    assert out.shape == (2, 3, 8, 10) and out.dtype == torch.float64
    assert out.min() >= 0 and out.max() <= 1


def test_tone_curve_is_last():
    # tone_curve=True must equal smoothstep applied to the tone_curve=False output.
    planes = torch.rand(1, 4, 3, 3)
    plain = render(planes, "RGGB", wb_gains=torch.ones(3))
    toned = render(planes, "RGGB", wb_gains=torch.ones(3), config=ISPConfig(tone_curve=True))
    assert torch.allclose(toned, 3 * plain**2 - 2 * plain**3, atol=1e-6)


def test_module_equals_function():
    planes = torch.rand(2, 4, 3, 3)
    gains = torch.tensor([1.5, 1.0, 2.0])
    isp = ClassicalISP(TRAINING_TARGET)
    assert torch.equal(isp(planes, "BGGR", gains), render(planes, "BGGR", wb_gains=gains, config=TRAINING_TARGET))
    assert list(isp.parameters()) == []


@pytest.mark.parametrize(
    "config",
    [
        ISPConfig(demosaic="bilinear", tone_curve=True),
        ISPConfig(demosaic="malvar"),
        ISPConfig(demosaic="malvar", white_balance="gray_world"),
    ],
)
def test_gradcheck_render(config):
    # Values in [0.2, 0.4] with gains ≤ 1.2 and a near-identity matrix keep every clamp inactive
    # and sRGB on its power branch, where the pipeline is smooth.
    gen = torch.Generator().manual_seed(0)
    planes = (0.2 + 0.2 * torch.rand(1, 4, 2, 2, dtype=torch.float64, generator=gen)).requires_grad_(True)
    gains = torch.tensor([1.2, 1.0, 1.1], dtype=torch.float64, requires_grad=True)
    matrix = (0.9 * torch.eye(3, dtype=torch.float64) + 0.05).requires_grad_(True)

    def fn(p, g, m):
        return render(p, "GRBG", wb_gains=g, cam_to_srgb=m, config=config)

    # fast_mode checks the Jacobian along random directions: the same test, a fraction of the time.
    assert torch.autograd.gradcheck(fn, (planes, gains, matrix), fast_mode=True)


def test_training_target_is_the_papers_content_target():
    # "demosaic + white balance + gamma": no colour matrix, no tone curve, differentiable demosaic.
    assert TRAINING_TARGET.colour_matrix == "identity" and not TRAINING_TARGET.tone_curve
    assert TRAINING_TARGET.white_balance == "as_shot" and TRAINING_TARGET.demosaic in ("bilinear", "malvar")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("demosaic", "vng", r"ISPConfig\.demosaic must be one of 'bilinear', 'malvar', 'ahd', 'menon', got 'vng'"),
        ("white_balance", "auto", r"ISPConfig\.white_balance must be one of 'as_shot', 'gray_world', 'none'"),
        ("colour_matrix", None, r"ISPConfig\.colour_matrix must be one of 'metadata', 'identity', got None"),
        ("tone_curve", "yes", r"ISPConfig\.tone_curve must be true or false"),
        ("clip", 1, r"ISPConfig\.clip must be true or false"),
    ],
)
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ISPConfig(**{field: value})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(TRAINING_TARGET, field, value)


def test_config_through_the_yaml_loader(tmp_path):
    path = tmp_path / "isp.yaml"
    path.write_text("demosaic: menon\ntone_curve: true\n")
    assert load_config(ISPConfig, path) == ISPConfig(demosaic="menon", tone_curve=True)
    with pytest.raises(ConfigError, match="demosaic"):
        load_config(ISPConfig, path, ["demosaic=nearest"])


def test_gamma22_transfer_and_stretch_hand_computed():
    # The paper's released loader: linear RGB stretched min–max per image, then x^(1/2.2).
    # Flat colour (472, 236, 354)/959 as in test_flat_grey_frame_hand_computed, plus one darker
    # sample: after demosaicing the image spans [lo, hi]; stretching maps hi → 1, lo → 0.
    frame = RawFrame(np.full((6, 8), 300, np.uint16), "RGGB", (BLACK,) * 4, WHITE, wb_gains=GAINS)
    plain = render_frame(frame, ISPConfig(demosaic="bilinear", colour_matrix="identity", transfer="gamma22"))
    expected = torch.tensor([472 / 959, 236 / 959, 354 / 959]) ** (1 / 2.2)
    torch.testing.assert_close(plain, expected.view(3, 1, 1).expand(3, 6, 8), atol=1e-6, rtol=0)
    stretched = render_frame(frame, ISPConfig(demosaic="bilinear", colour_matrix="identity", transfer="gamma22", stretch=True))
    # Linear (0.49218, 0.24609, 0.36913): stretched to (1, 0, 0.5), then ^(1/2.2).
    torch.testing.assert_close(stretched[:, 0, 0], torch.tensor([1.0, 0.0, 0.5 ** (1 / 2.2)]), atol=1e-5, rtol=0)


def test_stretch_uses_each_whole_image_across_bands():
    # Taller than one band of rows: the extremes are the whole image's, so banding changes nothing.
    g = torch.Generator().manual_seed(0)
    planes = torch.rand(2, 4, 80, 12, generator=g) * 0.5
    config = ISPConfig(demosaic="malvar", colour_matrix="identity", stretch=True)
    out = render(planes, "RGGB", wb_gains=torch.ones(3), config=config)
    for image in out:
        assert image.min().item() == pytest.approx(0.0, abs=1e-6) and image.max().item() == pytest.approx(1.0, abs=1e-6)
    # Each image of the batch by its own extremes: a brighter copy stretches to the same picture.
    both = render(torch.stack([planes[0], planes[0] * 1.5]), "RGGB", wb_gains=torch.ones(3), config=dataclasses.replace(config, clip=False))
    torch.testing.assert_close(both[0], both[1], atol=1e-5, rtol=0)
