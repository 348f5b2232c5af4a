"""RAW values given besides a file's metadata (unisp.raw.options): parsing, precedence, camera files,
the recipe's data keys and the model file's ``raw_input`` header section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
from typer.testing import CliRunner

from unisp.cli import app
from unisp.config import load_config
from unisp.errors import ConfigError, RawFormatError, UnispError
from unisp.models import build_model, load_model, save_model
from unisp.models.checkpoint import input_options, recorded_options
from unisp.raw.bayer import CFA
from unisp.raw.frame import Source
from unisp.raw.io import missing_values, read_raw
from unisp.raw.options import RawOptions, options_from_flags, read_camera_file
from unisp.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "unisp" / "assets" / "openisp_1920x1080_rggb10.png"
SAMPLE_CAMERA = ROOT / "configs" / "cameras" / "openisp_rggb10.yaml"
#: A camera file with every key.
CAMERA_TEXT = """
cfa: BGGR
bits: 12
width: 8
height: 6
black: [256, 257, 258, 259]
wb_gains: [2.0, 1.0, 1.5]
colour_matrix: [[1.5, -0.3, -0.2], [-0.2, 1.4, -0.2], [0.0, -0.5, 1.5]]
"""


def write_camera(tmp_path, text: str = CAMERA_TEXT) -> Path:
    path = tmp_path / "sensor.yaml"
    path.write_text(text)
    return path


def write_dump(path: Path, shape=(6, 8), low=300, high=4000, seed=0) -> np.ndarray:
    mosaic = np.random.default_rng(seed).integers(low, high, size=shape, dtype=np.uint16)
    mosaic.astype("<u2").tofile(path)
    return mosaic


# ---------------------------------------------------------------------------------------- known values


def test_values_are_parsed_and_white_follows_bits():
    options = RawOptions.from_mapping({"cfa": "bggr", "black": "64,60,61,62", "bits": 12, "width": 8})
    assert options.cfa is CFA.BGGR and options.black == (64.0, 60.0, 61.0, 62.0)
    assert options.white is None and options.white_level == 4095.0
    assert options.given() == ("cfa", "black", "width", "bits")
    assert RawOptions.from_mapping({"black": 64}).black == (64.0,) * 4
    assert RawOptions.from_mapping({"bits": 10, "white": 1000}).white_level == 1000.0
    assert RawOptions.from_mapping({"cfa": None}) == RawOptions()  # None: not given
    assert RawOptions().describe() == "nothing"


def test_to_dict_round_trip_is_exact(tmp_path):
    options = read_camera_file(write_camera(tmp_path)).merged(RawOptions.from_mapping({"cfa": "RGGB"}))
    data = options.to_dict()
    assert data["cfa"] == "RGGB" and data["black"] == [256.0, 257.0, 258.0, 259.0] and data["bits"] == 12
    assert data["from_camera"] == ["black", "width", "height", "bits", "colour_matrix", "wb_gains"]
    assert data["camera"] == str(tmp_path / "sensor.yaml")
    back = RawOptions.from_mapping(json.loads(json.dumps(data)))
    assert back == options and back.to_dict() == data
    assert RawOptions().to_dict() == {}


def test_calibration_names_frame_fields_and_sources(tmp_path):
    options = read_camera_file(write_camera(tmp_path)).merged(RawOptions.from_mapping({"white": 4000}))
    calibration = options.calibration()
    assert calibration["white_level"] == (4000.0, Source.USER)
    assert calibration["cfa"] == (CFA.BGGR, Source.CAMERA)
    assert calibration["wb_gains"] == ((2.0, 1.0, 1.5), Source.CAMERA)
    assert set(calibration) == {"cfa", "black_level", "white_level", "cam_to_srgb", "wb_gains"}


# ------------------------------------------------------------------------------------------ precedence


def test_a_higher_level_replaces_values_and_their_source(tmp_path):
    camera = read_camera_file(write_camera(tmp_path))
    merged = camera.merged(RawOptions.from_mapping({"cfa": "GRBG", "width": 16}))
    assert merged.cfa is CFA.GRBG and merged.source("cfa") is Source.USER
    assert merged.width == 16 and merged.height == 6 and merged.source("height") is Source.CAMERA
    assert merged.from_camera == {"black", "height", "bits", "colour_matrix", "wb_gains"}
    flags = RawOptions.from_mapping({k: v for k, v in camera.to_dict().items() if k not in ("camera", "from_camera")})
    assert camera.merged(flags).from_camera == frozenset() and camera.merged(flags).camera is None


def test_bits_alone_replaces_a_lower_white_level():
    low = RawOptions.from_mapping({"white": 1000, "bits": 10})
    assert low.replaced_by(RawOptions.from_mapping({"bits": 12})) == ("white", "bits")
    assert low.merged(RawOptions.from_mapping({"bits": 12})).white_level == 4095.0
    assert low.merged(RawOptions.from_mapping({"white": 900})).white_level == 900.0
    assert low.merged(RawOptions.from_mapping({"cfa": "RGGB"})).white_level == 1000.0


def test_flags_override_a_camera_file(tmp_path):
    options = options_from_flags(write_camera(tmp_path), cfa="RGGB", black="16", white=None)
    assert options.cfa is CFA.RGGB and options.black == (16.0,) * 4 and options.bits == 12
    assert options.source("cfa") is Source.USER and options.source("bits") is Source.CAMERA
    assert options_from_flags(None, cfa=None) == RawOptions()


def test_read_raw_marks_camera_values_and_flags_win(tmp_path):
    mosaic = write_dump(tmp_path / "a.raw")
    frame = read_raw(tmp_path / "a.raw", read_camera_file(write_camera(tmp_path)))
    assert np.array_equal(frame.mosaic, mosaic)
    assert frame.cfa is CFA.BGGR and frame.black_level == (256.0, 257.0, 258.0, 259.0) and frame.white_level == 4095.0
    assert frame.wb_gains == (2.0, 1.0, 1.5) and frame.cam_to_srgb[0, 0] == 1.5
    assert {frame.sources[k] for k in ("cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb")} == {Source.CAMERA}
    over = read_raw(tmp_path / "a.raw", read_camera_file(tmp_path / "sensor.yaml"), cfa="RGGB", white=4000)
    assert over.cfa is CFA.RGGB and over.sources["cfa"] is Source.USER
    assert over.white_level == 4000.0 and over.sources["white_level"] is Source.USER
    assert over.sources["black_level"] is Source.CAMERA


def test_missing_values_by_layout():
    assert missing_values("a.raw", RawOptions()) == ("width", "height", "bits", "cfa")
    assert missing_values("a.bin", RawOptions.from_mapping({"cfa": "RGGB", "bits": 10, "width": 8, "height": 6})) == ()
    assert missing_values("a.png", RawOptions.from_mapping({"bits": 10})) == ("cfa",)
    assert missing_values("a.dng", RawOptions()) == ()
    assert missing_values("a.npy", RawOptions(), layout="headerless") == ("width", "height", "bits", "cfa")


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "values, match",
    [
        ({"bits": 17}, r"--bits must be an integer 1\.\.16, got 17"),
        ({"width": 0}, r"--width must be an integer ≥ 1, got 0"),
        ({"height": True}, "--height must be an integer"),
        ({"cfa": "RGBW"}, "--cfa: unknown CFA pattern 'RGBW'"),
        ({"black": [1, 2]}, r"--black needs 1 or 4 values \(R, Gr, Gb, B\), got 2"),
        ({"black": "64,x"}, "--black must be one number or four"),
        ({"black": -1}, "--black must be finite and ≥ 0"),
        ({"white": 0}, "--white must be a positive number, got 0"),
        ({"white": 100, "black": 100}, r"--white must exceed every black level of --black \(100, 100, 100, 100\)"),
        ({"bits": 8, "black": 300}, r"--bits \(white 255\) must exceed every black level of --black"),
        ({"colour_matrix": [[1, 0, 0], [0, 1, 0]]}, "--colour_matrix must be 3 rows of 3 numbers"),
        ({"colour_matrix": [[1, 1, 1]] * 3}, "--colour_matrix cannot be a camera → sRGB matrix: singular"),
        ({"wb_gains": [1000, 1, 1]}, "--wb_gains cannot be white-balance gains: red/green gain 1e\\+03"),
        ({"wb_gains": [1, 1]}, r"--wb_gains must be 3 numbers \(R, G, B\)"),
        ({"iso": 100}, "--iso is not a RAW input value"),
        ({"cfa": "RGGB", "from_camera": ["bits"]}, "--from_camera must list keys given here"),
    ],
)
def test_invalid_values_name_the_key(values, match):
    with pytest.raises(ConfigError, match=match):
        RawOptions.from_mapping(values)


def test_read_raw_errors_name_the_file(tmp_path):
    write_dump(tmp_path / "a.raw")
    with pytest.raises(RawFormatError, match=r"a\.raw: --bits must be an integer"):
        read_raw(tmp_path / "a.raw", bits=20)
    with pytest.raises(RawFormatError, match=r"a\.raw: a headerless RAW file needs .* \(or --camera FILE\); missing --width"):
        read_raw(tmp_path / "a.raw", RawOptions.from_mapping({"cfa": "RGGB", "bits": 12, "height": 6}))


@pytest.mark.parametrize(
    "text, match",
    [
        ("cfa: RGGB\niso: 100\n", r"sensor\.yaml: unknown camera file key 'iso' \(allowed: cfa, black"),
        ("bits: 20\n", r"sensor\.yaml: camera file key 'bits' must be an integer 1\.\.16, got 20"),
        ("colour_matrix: [[1, 1, 1], [1, 1, 1], [1, 1, 1]]\n", r"sensor\.yaml: camera file key 'colour_matrix' cannot be .*singular"),
        ("wb_gains: [1, 1, 100]\n", r"sensor\.yaml: camera file key 'wb_gains' cannot be .*blue/green gain 100"),
        ("- RGGB\n", r"sensor\.yaml: a camera file must be a mapping"),
        ("cfa: [RGGB\n", r"sensor\.yaml: not valid YAML"),
        ("camera: other.yaml\n", "unknown camera file key 'camera'"),
    ],
)
def test_bad_camera_files_are_refused(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        read_camera_file(write_camera(tmp_path, text))


def test_missing_camera_file(tmp_path):
    with pytest.raises(ConfigError, match=r"absent\.yaml: no such file"):
        read_camera_file(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="is a folder, not a camera file"):
        read_camera_file(tmp_path)


# ------------------------------------------------------------------------------------- the sample file


def test_sample_camera_file_gives_the_sample_metadata():
    by_metadata = read_raw(SAMPLE)
    by_camera = read_raw(SAMPLE, read_camera_file(SAMPLE_CAMERA))
    assert np.array_equal(by_camera.mosaic, by_metadata.mosaic)
    for field in ("cfa", "black_level", "white_level", "wb_gains"):
        assert getattr(by_camera, field) == getattr(by_metadata, field), field
        assert by_metadata.sources[field] is Source.METADATA and by_camera.sources[field] is Source.CAMERA
    assert by_metadata.cam_to_srgb is None  # identity, as the camera file's matrix
    assert np.array_equal(by_camera.cam_to_srgb, np.eye(3))
    camera = read_camera_file(SAMPLE_CAMERA)
    assert (camera.width, camera.height, camera.bits) == (by_metadata.width, by_metadata.height, 10)


def test_inspect_marks_camera_values():
    result = CliRunner().invoke(app, ["inspect", str(SAMPLE), "--camera", str(SAMPLE_CAMERA), "--white", "1020"])
    assert result.exit_code == 0, result.output
    assert "RGGB [camera]" in result.output and "black (0, 0, 0, 0) [camera]" in result.output
    assert "wb (1.816, 1.000, 1.250) [camera]" in result.output and "white 1020 [user]" in result.output


def test_render_with_a_camera_file_reads_a_headerless_dump(tmp_path):
    write_dump(tmp_path / "a.raw")
    camera = write_camera(tmp_path)
    result = CliRunner().invoke(app, ["render", str(tmp_path / "a.raw"), "--out", str(tmp_path / "out"), "--camera", str(camera)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.png").is_file()
    bad = write_camera(tmp_path, "bits: 99\n")
    result = CliRunner().invoke(app, ["render", str(tmp_path / "a.raw"), "--out", str(tmp_path / "o2"), "--camera", str(bad)])
    assert result.exit_code == 2 and "camera file key 'bits' must be an integer" in result.output


# ---------------------------------------------------------------------------------- the recipe's keys


def test_recipe_keys_are_validated_at_load():
    config = load_config(TrainConfig, None, ["data.cfa=bggr", "data.black=[256, 256, 257, 257]", "data.bits=12"])
    assert config.data.recipe_options() == RawOptions.from_mapping({"cfa": "BGGR", "black": [256, 256, 257, 257], "bits": 12})
    for override, match in [
        ("data.bits=17", r"config key 'data\.bits' must be an integer 1\.\.16, got 17"),
        ("data.black=[1, 2]", r"config key 'data\.black' needs 1 or 4 values"),
        ("data.cfa=XYZW", r"config key 'data\.cfa': unknown CFA pattern 'XYZW'"),
        ("data.width=0", r"config key 'data\.width' must be an integer ≥ 1"),
        ("data.colour_matrix=1", r"unknown config key 'data\.colour_matrix'"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_config(TrainConfig, None, [override])


def test_recipe_camera_file_is_under_the_recipe_keys(tmp_path):
    camera = write_camera(tmp_path)
    config = load_config(TrainConfig, None, [f"data.camera={camera}", "data.cfa=RGGB"])
    options = config.data.raw_options()
    assert options.cfa is CFA.RGGB and options.source("cfa") is Source.USER and options.source("bits") is Source.CAMERA
    missing = load_config(TrainConfig, None, [f"data.camera={tmp_path / 'absent.yaml'}"])
    with pytest.raises(ConfigError, match=r"config key 'data\.camera': .*absent\.yaml: no such file"):
        missing.data.raw_options()


# --------------------------------------------------------------------------- the model file's section


def test_header_section_round_trip(tmp_path, caplog):
    options = read_camera_file(write_camera(tmp_path)).merged(RawOptions.from_mapping({"cfa": "RGGB"}))
    path = tmp_path / "m.safetensors"
    save_model(path, build_model("efficient_isp"), name="efficient_isp", meta={"raw_input": options.to_dict()})
    _, header = load_model(path)
    assert header["raw_input"] == json.loads(json.dumps(options.to_dict()))
    assert recorded_options(path, header) == options
    with caplog.at_level("INFO", logger="unisp.models.checkpoint"):
        used = input_options(path, header, RawOptions.from_mapping({"bits": 10}))
    assert used.bits == 10 and used.white_level == 1023.0 and used.cfa is CFA.RGGB
    assert "m.safetensors: RAW input values from the model file: cfa RGGB, black (256, 257, 258, 259) [camera]" in caplog.text
    assert "the model file's bits overridden" in caplog.text
    _, plain = load_model(_saved(tmp_path / "plain.safetensors", {}))
    assert "raw_input" not in plain and recorded_options("plain", plain) == RawOptions()


def _saved(path: Path, meta: dict) -> Path:
    save_model(path, build_model("efficient_isp"), name="efficient_isp", meta=meta)
    return path


@pytest.mark.parametrize(
    "section, match",
    [
        ({"bits": 99}, r"unisp header field raw_input\.bits must be an integer 1\.\.16, got 99"),
        ({"cfa": "RGBW"}, r"unisp header field raw_input\.cfa: unknown CFA pattern"),
        ({"exposure": 1}, r"unisp header field raw_input\.exposure is not a RAW input value"),
        ({"wb_gains": [1, 1, 1000]}, r"unisp header field raw_input\.wb_gains cannot be white-balance gains"),
        ({"cfa": "RGGB", "from_camera": ["black"]}, r"unisp header field raw_input\.from_camera must list keys"),
        ("BGGR", r"unisp header field raw_input must be an object"),
    ],
)
def test_invalid_header_section_is_refused_on_load(tmp_path, section, match):
    model = build_model("efficient_isp")
    header = save_model(tmp_path / "ok.safetensors", model, name="efficient_isp", meta={})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(safetensors.torch.save(model.state_dict(), metadata={"unisp": json.dumps({**header, "raw_input": section})}))
    with pytest.raises(UnispError, match=rf"bad\.safetensors: {match}"):
        load_model(bad)


def test_save_refuses_an_invalid_section(tmp_path):
    with pytest.raises(UnispError, match=r"m\.safetensors: unisp header field raw_input\.bits"):
        _saved(tmp_path / "m.safetensors", {"raw_input": {"bits": 0}})
    assert not (tmp_path / "m.safetensors").exists()
