"""Malformed RGB photos, recipes and model files through every command that reads them.

RGB photos go through ``synth --rgb`` and both sides of ``eval --pred/--gt``; recipes and
overrides through ``train``; model files through ``info``, ``process``, ``eval --model`` and
``train init=``; released-weight files through ``import-reference`` and ``demo --reference``.
Each case must end in a one-line error naming the file or key (exit status 2) or, for the
images unisp documents as readable, in success; never a traceback, and never a partial output.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzz_checks import assert_success, assert_user_error, files_in, invoke, leftovers
from fuzz_corpus import (
    CONFIG_CORPUS,
    MODEL_CORPUS,
    OVERRIDE_CORPUS,
    PHOTO,
    REFERENCE_CORPUS,
    RGB_CORPUS,
    RGB_VALID,
    malicious_pickle,
    mosaic,
    png_bytes,
    photo,
    write,
)

from unisp.fileio import read_pixels, read_rgb
from unisp.raw.frame import RawFrame
from unisp.raw.io import read_raw, write_mosaic_png

#: Recipe overrides that make a training run as small as one can be (stage 1: no backbones needed).
TINY_STAGE1 = ["mode=stage1", "pixel.l1=1", "steps=1", "batch_size=1", "data.patch=16", "tensorboard=false",
               "data.samples_per_epoch=1", "data.val_fraction=0"]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    """Two valid 32×32 sidecar mosaics."""
    folder = tmp_path_factory.mktemp("raw")
    for i in range(2):
        frame = RawFrame(mosaic=mosaic((32, 32), seed=i), cfa="RGGB", black_level=(64,) * 4, white_level=1023)
        write_mosaic_png(folder / f"f{i}.png", frame)
    return folder


# ------------------------------------------------------------------------------------------------ RGB


@pytest.mark.parametrize("case", sorted(RGB_CORPUS))
def test_rgb_synth(tmp_path, case):
    name, data = RGB_CORPUS[case]
    source = write(tmp_path / "photos" / name, data())
    out = tmp_path / "out"
    result = invoke("synth", "--rgb", source.parent, "--out", out, "--no-noise")
    if case in RGB_VALID:
        assert_success(result)
        assert read_rgb(out / "rgb" / "img.png").shape == (3, PHOTO, PHOTO)
        assert read_raw(out / "raw" / "img.png").mosaic.shape == (PHOTO, PHOTO)
        return
    assert_user_error(result, str(source))
    assert files_in(out) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("side", ["pred", "gt"])
@pytest.mark.parametrize("case", sorted(RGB_CORPUS))
def test_rgb_eval(tmp_path, case, side):
    name, data = RGB_CORPUS[case]
    bad = write(tmp_path / side / name, data())
    other = "gt" if side == "pred" else "pred"
    size = 1 if case == "tiny-1x1" else PHOTO
    write(tmp_path / other / "img.png", png_bytes(photo(seed=7, size=size)))
    result = invoke("eval", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "--metrics", "psnr,ssim", "--csv",
                    tmp_path / "scores.csv")
    if case in RGB_VALID:
        assert_success(result)
        assert "mean of 1" in result.output
        return
    # A 1×1 pair is read, then refused by SSIM (11×11 window): the failure line names the image.
    assert_user_error(result, "img:" if case == "tiny-1x1" else str(bad))
    assert "mean of 0" in result.output


def test_grayscale_photo_becomes_three_equal_channels(tmp_path):
    # The documented conversion, checked on values: gray and gray+alpha replicate the gray channel.
    gray = photo(2)
    path = write(tmp_path / "g.png", png_bytes(gray))
    rgb = read_rgb(path)
    expected = np.repeat(gray[..., :1], 3, axis=-1).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(rgb.numpy(), expected, atol=1e-7)


def test_bilevel_image_maps_true_to_white(tmp_path):
    from PIL import Image

    bits = np.array([[0, 255], [255, 0]], np.uint8)
    path = tmp_path / "b.tif"
    Image.fromarray(bits).convert("1").save(path)
    assert read_pixels(path).dtype == np.bool_
    np.testing.assert_array_equal(read_rgb(path)[0].numpy(), bits / 255.0)


def test_unpaired_training_refuses_bad_photos(tmp_path, raw_dir):
    # Training reads its RGB photos lazily: a bad one stops the run at once, naming it.
    bad = write(tmp_path / "rgb" / "a.tif", RGB_CORPUS["cmyk-tiff"][1]())
    result = invoke("train", *TINY_STAGE1, "mode=unpaired", "losses.profile=random", f"data.raw_dir={raw_dir}",
                    f"data.rgb_dir={bad.parent}", f"out={tmp_path / 'run'}")
    assert_user_error(result, str(bad))
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("case", sorted(CONFIG_CORPUS))
def test_recipe(tmp_path, raw_dir, case):
    text, mentions = CONFIG_CORPUS[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(text if isinstance(text, bytes) else text.replace("RAW", str(raw_dir)).encode())
    run = tmp_path / "run"
    result = invoke("train", "--config", recipe, f"out={run}")
    assert_user_error(result, mentions[0])
    for mention in mentions[1:]:  # the allowed values of a choice, or the key's neighbours
        assert mention in result.output, result.output
    assert files_in(run) == [], "a refused recipe started a run"


@pytest.mark.parametrize("case", sorted(OVERRIDE_CORPUS))
def test_override(tmp_path, raw_dir, case):
    overrides, mentions = OVERRIDE_CORPUS[case]
    run = tmp_path / "run"
    result = invoke("train", *overrides, f"data.raw_dir={raw_dir}", f"out={run}")
    assert_user_error(result, mentions[0])
    for mention in mentions[1:]:
        assert mention in result.output, result.output
    assert files_in(run) == []


def test_recipe_missing_and_folder(tmp_path):
    assert_user_error(invoke("train", "--config", tmp_path / "none.yaml"), "none.yaml")
    assert_user_error(invoke("train", "--config", tmp_path), str(tmp_path))


# ----------------------------------------------------------------------------------------- model files


MODEL_COMMANDS = ("info", "process", "eval", "train-init")


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("case", sorted(MODEL_CORPUS))
def test_model_file(tmp_path, raw_dir, case, command):
    name, data = MODEL_CORPUS[case]
    model = write(tmp_path / name, data())
    out = tmp_path / "out"
    args = {
        "info": ["info", model],
        "process": ["process", raw_dir, "--model", model, "--out", out],
        "eval": ["eval", "--model", model, "--data", raw_dir, "--gt", raw_dir, "--save", out],
        "train-init": ["train", *TINY_STAGE1, f"init={model}", f"data.raw_dir={raw_dir}", f"out={out}"],
    }[command]
    assert_user_error(invoke(*args), str(model))
    assert files_in(out) == [] and leftovers(tmp_path) == []


def test_model_missing_or_folder(tmp_path, raw_dir):
    (tmp_path / "dir.safetensors").mkdir()
    for model in (tmp_path / "none.safetensors", tmp_path / "dir.safetensors"):
        assert_user_error(invoke("process", raw_dir, "--model", model, "--out", tmp_path / "out"), str(model))
        assert_user_error(invoke("eval", "--model", model, "--data", raw_dir, "--gt", raw_dir), str(model))
    assert_user_error(invoke("info", tmp_path / "none.safetensors"), "none.safetensors")
    assert_user_error(invoke("info", "resnet"), "efficient_isp")


# ---------------------------------------------------------------------------------- released weights


@pytest.mark.parametrize("command", ["import-reference", "demo"])
@pytest.mark.parametrize("case", sorted(REFERENCE_CORPUS) + ["malicious-pickle", "missing", "folder"])
def test_reference_file(tmp_path, case, command):
    marker = tmp_path / "pwned"
    if case == "malicious-pickle":
        src = write(tmp_path / "isp.pth", malicious_pickle(marker))
    elif case == "missing":
        src = tmp_path / "isp.pth"
    elif case == "folder":
        src = tmp_path / "isp.pth"
        src.mkdir()
    else:
        name, data = REFERENCE_CORPUS[case]
        src = write(tmp_path / name, data())
    out = tmp_path / "out"
    if command == "import-reference":
        result = invoke("import-reference", src, "--out", out / "m.safetensors")
    else:  # the demo checks --reference before its minutes of work
        result = invoke("demo", "--out", out, "--reference", src)
    assert_user_error(result, str(src))
    assert not marker.exists(), "the pickle was executed"
    assert files_in(out) == [] and leftovers(tmp_path) == []


def test_import_reference_unknown_model_name(tmp_path):
    src = write(tmp_path / "isp.pth", REFERENCE_CORPUS["wrong-shapes"][1]())
    result = invoke("import-reference", src, "--out", tmp_path / "m.safetensors", "--model", "resnet")
    assert_user_error(result, "resnet")
    assert "efficient_isp" in result.output
