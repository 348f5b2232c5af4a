"""Tests for unisp.synth.dataset: a folder of photos → synthetic RAW files, sidecars and ground truth."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from unisp.errors import ConfigError, UnispError
from unisp.fileio import read_pixels, read_rgb, write_image
from unisp.raw.frame import Source
from unisp.raw.io import read_raw
from unisp.synth.dataset import image_generator, synthesize_folder, synthesize_image
from unisp.synth.unprocess import SensorModel


def make_sources(folder: Path) -> dict[str, np.ndarray]:
    """Two tiny 8-bit photos, one of odd size (cropped to even on output)."""
    rng = np.random.default_rng(0)
    images = {"a.png": rng.integers(0, 256, (9, 12, 3), dtype=np.uint8), "b.png": rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)}
    for name, pixels in images.items():
        write_image(folder / name, pixels)
    return images


@pytest.fixture
def sources(tmp_path) -> Path:
    folder = tmp_path / "photos"
    make_sources(folder)
    return folder


def test_end_to_end(sources, tmp_path):
    out = tmp_path / "synth"
    calls = []
    written = synthesize_folder(sources, out, seed=3, progress=calls.append)
    assert written == [out / "raw" / "a.png", out / "raw" / "b.png"]
    assert calls == [1, 1]
    for name, (h, w) in (("a", (8, 12)), ("b", (8, 10))):
        frame = read_raw(out / "raw" / f"{name}.png")
        assert frame.mosaic.shape == (h, w) and frame.mosaic.dtype == np.uint16
        for key in ("cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb"):
            assert frame.sources[key] is Source.METADATA, key
        sidecar = json.loads((out / "raw" / f"{name}.json").read_text())
        assert sidecar["source"] == f"{name}.png"
        model = SensorModel.from_dict(sidecar["sensor_model"])
        # The frame's metadata is what the model says a camera records.
        assert frame.wb_gains == pytest.approx(model.wb_gains, rel=1e-12)
        np.testing.assert_array_equal(frame.cam_to_srgb, model.cam2rgb.numpy())
        assert frame.black_level == (64.0,) * 4 and frame.white_level == 1023.0
        assert model.shot_noise > 0  # noise is on by default
        # Ground truth: the 8-bit source cropped to even size, byte for byte.
        truth = read_pixels(out / "rgb" / f"{name}.png")
        source = read_pixels(sources / f"{name}.png")
        np.testing.assert_array_equal(truth, source[:h, :w])
    record = json.loads((out / "dataset.json").read_text())
    assert record["format"] == "unisp-synth" and record["version"] == 1
    assert (record["seed"], record["noise"], record["bits"], record["cfa"], record["count"]) == (3, True, 10, "RGGB", 2)
    assert record["black_level"] == 64 and record["tone_curve"] is True
    assert record["source"] == str(sources.resolve())
    assert record["files"] == [
        {"source": "a.png", "raw": "raw/a.png", "rgb": "rgb/a.png"},
        {"source": "b.png", "raw": "raw/b.png", "rgb": "rgb/b.png"},
    ]
    assert record["failed"] == []
    assert not list(out.rglob(".*.tmp"))  # atomic writes leave no temporary files


def test_seeded_files(sources, tmp_path):
    def contents(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((out / "raw").iterdir())}

    synthesize_folder(sources, tmp_path / "one", seed=5)
    synthesize_folder(sources, tmp_path / "two", seed=5)
    synthesize_folder(sources, tmp_path / "three", seed=6)
    assert contents(tmp_path / "one") == contents(tmp_path / "two")
    one, three = contents(tmp_path / "one"), contents(tmp_path / "three")
    assert one["a.png"] != three["a.png"] and one["a.json"] != three["a.json"]


def test_per_image_seed_independent_of_order(sources, tmp_path):
    # Photo 1 synthesised on its own, before photo 0 and with a fresh generator, matches the folder
    # run: its camera and noise depend only on (seed, index).
    alone_b, model_b = synthesize_image(read_rgb(sources / "b.png"), image_generator(9, 1))
    alone_a, model_a = synthesize_image(read_rgb(sources / "a.png"), image_generator(9, 0))
    synthesize_folder(sources, tmp_path / "out", seed=9)
    for name, frame, model in (("a", alone_a, model_a), ("b", alone_b, model_b)):
        np.testing.assert_array_equal(read_raw(tmp_path / "out" / "raw" / f"{name}.png").mosaic, frame.mosaic)
        sidecar = json.loads((tmp_path / "out" / "raw" / f"{name}.json").read_text())
        assert SensorModel.from_dict(sidecar["sensor_model"]) == model
    # limit=1 processes photo 0 only, with the same result.
    synthesize_folder(sources, tmp_path / "first", seed=9, limit=1)
    assert sorted(p.name for p in (tmp_path / "first" / "raw").iterdir()) == ["a.json", "a.png"]
    np.testing.assert_array_equal(read_raw(tmp_path / "first" / "raw" / "a.png").mosaic, alone_a.mosaic)


def test_image_generator():
    draw = lambda s, i: torch.rand(4, generator=image_generator(s, i))  # noqa: E731
    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(0, 2))
    assert not torch.equal(draw(0, 1), draw(1, 0))  # (seed, index) pairs are not summed
    assert not torch.equal(draw(0, 1), draw(1, 1))
    with pytest.raises(ConfigError, match="non-negative"):
        image_generator(-1, 0)


def test_options(sources, tmp_path):
    out = tmp_path / "out"
    synthesize_folder(sources, out, noise=False, bits=12, cfa="bggr", tone_curve=False)
    frame = read_raw(out / "raw" / "a.png")
    # 12-bit default black level: 64 · 2^(12 − 10) = 256, white 2^12 − 1.
    assert frame.black_level == (256.0,) * 4 and frame.white_level == 4095.0
    assert frame.cfa.value == "BGGR"
    model = SensorModel.from_dict(json.loads((out / "raw" / "a.json").read_text())["sensor_model"])
    assert (model.shot_noise, model.read_noise, model.tone_curve, model.bits) == (0.0, 0.0, False, 12)
    record = json.loads((out / "dataset.json").read_text())
    assert (record["noise"], record["bits"], record["black_level"], record["cfa"]) == (False, 12, 256, "BGGR")
    synthesize_folder(sources, tmp_path / "black", black_level=10)
    assert read_raw(tmp_path / "black" / "raw" / "a.png").black_level == (10.0,) * 4


def test_bad_image_skipped_and_listed(sources, tmp_path, caplog):
    (sources / "broken.png").write_bytes(b"not a png at all")
    calls = []
    with caplog.at_level(logging.ERROR, logger="unisp.synth.dataset"):
        written = synthesize_folder(sources, tmp_path / "out", progress=calls.append)
    assert [p.name for p in written] == ["a.png", "b.png"]
    assert calls == [1, 1, 1]
    assert "broken.png" in caplog.text
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert record["count"] == 2
    assert [f["source"] for f in record["failed"]] == ["broken.png"]
    assert "broken.png" in record["failed"][0]["error"]
    assert not (tmp_path / "out" / "raw" / "broken.png").exists()
    # The good photos keep their indices (broken.png sorts last), so they match a clean folder's run.
    make_sources(tmp_path / "clean")
    synthesize_folder(tmp_path / "clean", tmp_path / "again")
    for name in ("a", "b"):
        np.testing.assert_array_equal(
            read_raw(tmp_path / "out" / "raw" / f"{name}.png").mosaic,
            read_raw(tmp_path / "again" / "raw" / f"{name}.png").mosaic,
        )


def test_duplicate_stems(tmp_path):
    folder = tmp_path / "photos"
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    write_image(folder / "x.png", pixels)
    write_image(folder / "x.tif", pixels)
    written = synthesize_folder(folder, tmp_path / "out", noise=False)
    assert [p.name for p in written] == ["x_png.png", "x_tif.png"]


def test_nothing_readable(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bad.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(UnispError, match="none of the 1 images could be read"):
        synthesize_folder(folder, tmp_path / "out")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnispError, match="no files with extension"):
        synthesize_folder(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UnispError, match="not a folder"):
        synthesize_folder(tmp_path / "missing", tmp_path / "out")


@pytest.mark.parametrize(
    "kwargs, match",
    [({"bits": 20}, "bits must be between"), ({"black_level": 2000}, "black"), ({"limit": 0}, "limit"), ({"cfa": "XYZW"}, "CFA")],
)
def test_invalid_options(sources, tmp_path, kwargs, match):
    with pytest.raises(UnispError, match=match):
        synthesize_folder(sources, tmp_path / "out", **kwargs)


def test_fixed_camera(sources, tmp_path):
    """``camera=``: every photo through the same sensor model; the noise still differs per photo."""
    camera = SensorModel(bits=12, black_level=200, rgb_gain=1.25, red_gain=2.0, blue_gain=1.7,
                         shot_noise=0.001, read_noise=1e-5, tone_curve=False)
    out = tmp_path / "synth"
    synthesize_folder(sources, out, seed=0, camera=camera, bits=10, noise=False)  # camera wins
    models = [SensorModel.from_dict(json.loads((out / "raw" / f"{n}.json").read_text())["sensor_model"]) for n in "ab"]
    assert models == [camera, camera]
    record = json.loads((out / "dataset.json").read_text())
    assert (record["bits"], record["black_level"], record["noise"], record["tone_curve"]) == (12, 200, True, False)
    assert read_raw(out / "raw" / "a.png").white_level == 4095


def test_fixed_camera_with_shot_gains(sources, tmp_path):
    """``shot_gains``: one camera's matrix and noise, each photo's own exposure and white balance, recorded."""
    camera = SensorModel(bits=10, rgb_gain=1.0, red_gain=2.0, blue_gain=1.7, shot_noise=0.001, read_noise=1e-5)
    out = tmp_path / "synth"
    synthesize_folder(sources, out, seed=0, camera=camera, shot_gains=True)
    models = [SensorModel.from_dict(json.loads((out / "raw" / f"{n}.json").read_text())["sensor_model"]) for n in "ab"]
    for model in models:
        assert torch.equal(model.rgb2cam, camera.rgb2cam) and (model.shot_noise, model.read_noise) == (0.001, 1e-5)
        assert 1.9 <= model.red_gain <= 2.4 and 1.5 <= model.blue_gain <= 1.9  # Brooks et al.'s ranges
    assert models[0].red_gain != models[1].red_gain and models[0].rgb_gain != models[1].rgb_gain
    # The file records the shot's white balance: red over green is the drawn red gain.
    frame = read_raw(out / "raw" / "a.png")
    assert frame.wb_gains[0] / frame.wb_gains[1] == pytest.approx(models[0].red_gain, rel=1e-6)
