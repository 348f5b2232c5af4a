"""Model files and model flags that used to crash, hang or pass silently, through the CLI.

* a real model whose safetensors header length starts with byte 0x80 (as a pickle does);
* every architecture argument and header field with a wrong type, NaN, a huge value or deep nesting;
* a FIFO, ``/dev/zero`` or an oversized file where a model file goes;
* a 2×2 mosaic (one CFA tile) with a generator that pools (rmfa_tiny) in process, export and bench;
* more ``--threads`` than the machine has.

Each must end in one ``error:`` line naming the file or flag (exit status 2) or in a documented success.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import yaml
from fuzz_checks import assert_success, assert_user_error, describe, files_in, invoke, leftovers
from fuzz_corpus import _with_header, model_bytes, mosaic, photo, png_bytes, write

from unisp.config import to_dict
from unisp.export.threads import available_cpus
from unisp.models.checkpoint import MAX_HEADER_BYTES, MAX_HEADER_DEPTH, save_model, sniff
from unisp.models.registry import MODEL_FILE_MAX_BYTES, build_model
from unisp.raw.frame import RawFrame
from unisp.raw.io import write_mosaic_png
from unisp.train.config import TrainConfig

#: Nesting of the deep headers: far past Python's recursion limit (1000), as a probe found them.
DEEP = 100_000


def frame(size: int, seed: int = 0) -> RawFrame:
    return RawFrame(mosaic=mosaic((size, size), seed=seed), cfa="RGGB", black_level=(64,) * 4, white_level=1023)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    """One valid 32×32 sidecar mosaic."""
    folder = tmp_path_factory.mktemp("raw")
    write_mosaic_png(folder / "f0.png", frame(32))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A model file of each architecture (random weights), by name."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name in ("efficient_isp", "robust_isp", "rmfa_tiny"):
        paths[name] = folder / f"{name}.safetensors"
        save_model(paths[name], build_model(name), name=name)
    return paths


def assert_names(result, *mentions: str) -> None:
    """A user error whose one line names every one of ``mentions`` (the file and the key)."""
    assert_user_error(result, mentions[0])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and all(m in lines[0] for m in mentions), result.output


# ------------------------------------------------------------------ a header length whose first byte is 0x80


def model_with_header_length(length: int, folder: Path) -> bytes:
    """A real efficient_isp model file whose safetensors header is ``length`` bytes (meta padded to fit)."""
    for pad in range(512):
        path = folder / "padded.safetensors"
        save_model(path, build_model("efficient_isp"), name="efficient_isp", meta={"training": {"note": "x" * pad}})
        data = path.read_bytes()
        if int.from_bytes(data[:8], "little") == length:
            return data
    raise AssertionError(f"no padding gives a {length}-byte header")


@pytest.fixture(scope="module")
def pickle_like_model(tmp_path_factory):
    """A model file opening with 0x80 0x04, the first bytes of a protocol-4 pickle (header of 0x480 bytes)."""
    folder = tmp_path_factory.mktemp("pickle_like")
    data = model_with_header_length(0x480, folder)
    assert data[:2] == b"\x80\x04" and sniff(data) == "safetensors"
    return write(folder / "step_0000001.safetensors", data)


@pytest.mark.parametrize("command", ["info", "process"])
def test_header_length_starting_with_0x80_loads(tmp_path, raw_dir, pickle_like_model, command):
    if command == "info":
        result = invoke("info", pickle_like_model)
        assert_success(result)
        assert "efficient_isp" in result.output
    else:
        assert_success(invoke("process", raw_dir, "--model", pickle_like_model, "--out", tmp_path / "out"))
        assert [p.name for p in files_in(tmp_path / "out")] == ["f0.png"]


def test_select_with_header_length_starting_with_0x80(tmp_path, pickle_like_model):
    raw, rgb, run = tmp_path / "raw", tmp_path / "rgb", tmp_path / "run"
    for i in range(2):
        write_mosaic_png(raw / f"f{i}.png", frame(32, seed=i))
        write(rgb / f"f{i}.png", png_bytes(photo(seed=i)))
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(pickle_like_model, run / "checkpoints" / pickle_like_model.name)
    config = to_dict(TrainConfig(mode="stage1", steps=1))
    config["data"]["raw_dir"] = str(raw)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = invoke("select", run, "--rgb", rgb, "--data", raw, "--out", tmp_path / "s.json", "--device", "cpu")
    assert_success(result)
    assert json.loads((tmp_path / "s.json").read_text())["pick"] == "step_0000001.safetensors"


# ------------------------------------------------------------------ header fields: types, bounds, nesting


@functools.cache
def rmfa_state() -> dict:
    return build_model("rmfa_tiny").state_dict()


def rmfa_kwargs(**kwargs):
    """An rmfa_tiny model file (tiny's weights) whose ``model_kwargs`` were changed to ``kwargs``."""
    tiny = {"num_blocks": 2, "width": 16, "fill": 1.0}
    return _with_header(lambda h: h.update(model="rmfa_tiny", model_kwargs={**tiny, **kwargs}), state=rmfa_state())


def deep_training() -> bytes:
    """A model file whose unisp header nests ``training`` :data:`DEEP` levels deep (json.dumps cannot write it)."""
    data = model_bytes()
    metadata = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    header = {**json.loads(metadata["unisp"]), "training": "DEEP"}
    metadata["unisp"] = json.dumps(header).replace('"DEEP"', "[" * DEEP + "]" * DEEP)
    return safetensors.torch.save(safetensors.torch.load(data), metadata=metadata)


def deep_safetensors_header() -> bytes:
    """A model file whose safetensors header itself (around the unisp header) nests :data:`DEEP` levels deep."""
    data = model_bytes()
    n = int.from_bytes(data[:8], "little")
    body = data[8 : 8 + n].rstrip()[:-1] + b', "deep": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    return len(body).to_bytes(8, "little") + body + data[8 + n :]


def nested(levels: int):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


#: id → (file bytes builder, the key the error must name). Each through ``process`` and ``info``.
HEADER_CASES = {
    "fill-nan": (rmfa_kwargs(fill=float("nan")), "fill"),
    "fill-inf": (rmfa_kwargs(fill=float("inf")), "fill"),
    "fill-1e308": (rmfa_kwargs(fill=1e308), "fill"),
    "fill-negative": (rmfa_kwargs(fill=-0.5), "fill"),
    "fill-text": (rmfa_kwargs(fill="1.0"), "fill"),
    "num-blocks-3000000": (rmfa_kwargs(num_blocks=3_000_000), "num_blocks"),
    "num-blocks-negative": (rmfa_kwargs(num_blocks=-1), "num_blocks"),
    "num-blocks-fraction": (rmfa_kwargs(num_blocks=2.5), "num_blocks"),
    "num-blocks-bool": (rmfa_kwargs(num_blocks=True), "num_blocks"),
    "width-odd": (rmfa_kwargs(width=15), "width"),
    "width-huge": (rmfa_kwargs(width=10**400), "width"),
    "width-zero": (rmfa_kwargs(width=0), "width"),
    "width-list": (rmfa_kwargs(width=[16]), "width"),
    "kwargs-text": (_with_header(lambda h: h.update(model_kwargs="num_blocks=2")), "model_kwargs"),
    "kwargs-unknown": (_with_header(lambda h: h.update(model_kwargs={"num_blocks": 2})), "num_blocks"),
    "training-list": (_with_header(lambda h: h.update(training=[1, 2])), "training"),
    "packing-number": (_with_header(lambda h: h.update(packing=4)), "packing"),
    "parameters-text": (_with_header(lambda h: h.update(parameters="3060")), "parameters"),
    "clamp-text": (_with_header(lambda h: h.update(clamp_at_inference="yes")), "clamp_at_inference"),
    "format-version-nan": (_with_header(lambda h: h.update(format_version=float("nan"))), "format_version"),
    "nested-past-bound": (_with_header(lambda h: h.update(training={"x": nested(MAX_HEADER_DEPTH + 5)})), "nested"),
    "nested-100000-unisp-header": (deep_training, "nested"),
    "nested-100000-safetensors-header": (deep_safetensors_header, "nested"),
    "header-past-bound": (_with_header(lambda h: h.update(training={"note": "x" * MAX_HEADER_BYTES})), "header"),
}


@pytest.mark.parametrize("command", ["process", "info"])
@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_header_field(tmp_path, raw_dir, case, command):
    build, key = HEADER_CASES[case]
    model = write(tmp_path / "m.safetensors", build())
    out = tmp_path / "out"
    args = ["info", model] if command == "info" else ["process", raw_dir, "--model", model, "--out", out]
    assert_names(invoke(*args), str(model), key)
    assert files_in(out) == [] and leftovers(tmp_path) == []


def test_largest_architecture_loads(tmp_path, raw_dir):
    # The bounds themselves are accepted: rmfa_tiny at 16 blocks of width 64 and fill 0.
    model = tmp_path / "largest.safetensors"
    save_model(model, build_model("rmfa_tiny", num_blocks=16, width=64, fill=0.0), name="rmfa_tiny")
    assert_success(invoke("info", model))


# ------------------------------------------------------------------ not a regular file, or too large


def fifo(folder: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = folder / "pipe.safetensors"
    os.mkfifo(path)
    return path


def dev_zero(_folder: Path) -> Path:
    path = Path("/dev/zero")
    if not path.exists():
        pytest.skip("no /dev/zero on this platform")
    return path


def oversized(folder: Path) -> Path:
    """A sparse file one byte over the model-file bound (takes no disk space)."""
    path = folder / "huge.safetensors"
    with open(path, "wb") as f:
        f.truncate(MODEL_FILE_MAX_BYTES + 1)
    return path


SPECIAL_FILES = {"fifo": fifo, "dev-zero": dev_zero, "oversized": oversized}

MODEL_COMMANDS = {
    "info": lambda m, d, o: ["info", m],
    "process": lambda m, d, o: ["process", d, "--model", m, "--out", o],
    "export": lambda m, d, o: ["export", "--model", m, "--format", "onnx", "--out", o / "m.onnx"],
    "bench": lambda m, d, o: ["bench", "latency", "--model", m, "--size", "8x8", "--repeats", "1", "--backend", "torch"],
    "import-reference": lambda m, d, o: ["import-reference", m, "--out", o / "m.safetensors"],
}


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES))
def test_model_not_a_regular_file(tmp_path, raw_dir, kind, command):
    model = SPECIAL_FILES[kind](tmp_path)
    out = tmp_path / "out"
    mention = "more than" if kind == "oversized" else "not a regular file"
    assert_names(invoke(*MODEL_COMMANDS[command](model, raw_dir, out)), str(model), mention)
    assert files_in(out) == []


# ------------------------------------------------------------------ a 2×2 mosaic (one CFA tile)


def test_process_folder_starting_with_a_2x2_mosaic(tmp_path, models):
    # rmfa_tiny pools twice by 2: the one-tile file is listed as a failure, the next one is processed.
    raw = tmp_path / "raw"
    write_mosaic_png(raw / "a_tiny.png", frame(2))
    write_mosaic_png(raw / "b_fine.png", frame(32))
    out = tmp_path / "out"
    result = invoke("process", raw, "--model", models["rmfa_tiny"], "--out", out)
    assert isinstance(result.exception, SystemExit) and result.exit_code != 0, describe(result)
    assert "Traceback" not in result.output, describe(result)
    failure = [line for line in result.output.splitlines() if str(raw / "a_tiny.png") in line and "smaller" in line]
    assert len(failure) == 1 and "2×2" in failure[0] and "4×4" in failure[0], describe(result)
    assert [p.name for p in files_in(out)] == ["b_fine.png"]


@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
def test_process_2x2_mosaic_with_convolution_only_models(tmp_path, models, name):
    write_mosaic_png(tmp_path / "raw" / "tiny.png", frame(2))
    assert_success(invoke("process", tmp_path / "raw", "--model", models[name], "--out", tmp_path / "out"))
    assert [p.name for p in files_in(tmp_path / "out")] == ["tiny.png"]


def test_export_2x2_shape_of_a_pooling_model(tmp_path, models):
    out = tmp_path / "out"
    result = invoke("export", "--model", models["rmfa_tiny"], "--format", "onnx", "--shape", "2x2", "--out", out / "m.onnx")
    assert_names(result, "2x2", "rmfa_tiny", "4×4")
    assert files_in(out) == []


def test_bench_2x2_size_of_a_pooling_model():
    assert_names(invoke("bench", "latency", "--model", "rmfa_tiny", "--size", "2x2", "--repeats", "1"), "2x2", "rmfa_tiny")


def test_bench_smallest_size_of_a_pooling_model():
    result = invoke("bench", "latency", "--model", "rmfa_tiny", "--size", "4x4", "--repeats", "1", "--backend", "torch")
    assert_success(result)


# ------------------------------------------------------------------ threads


def test_bench_more_threads_than_cpus():
    cpus = available_cpus()
    result = invoke("bench", "latency", "--model", "efficient_isp", "--size", "8x8", "--threads", 100_000)
    assert_names(result, "--threads", f"{cpus} CPU")
