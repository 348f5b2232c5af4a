"""The command line's choice lists are the library's own, and its shared options parse as one.

Every ``--flag`` with a fixed set of values offers exactly what the library module that owns the
concept accepts (so neither can drift from the other); ``--device`` is checked while parsing with
:mod:`unisp.device`'s message; the RAW flags reach each command as one :class:`RawFlags`.
"""

from __future__ import annotations

import functools
from typing import get_args

import pytest
import typer
from click.testing import CliRunner

from unisp import cli
from unisp.device import check_device_name
from unisp.errors import UnispError
from unisp.export import EXPORT_FORMATS
from unisp.export.graph import LAYOUTS as TENSOR_LAYOUTS
from unisp.export.graph import PACKINGS
from unisp.export.parity import PRECISIONS
from unisp.fileio import IMAGE_FORMATS, IMAGE_SUFFIXES
from unisp.isp.demosaic import DEMOSAIC_METHODS
from unisp.isp.pipeline import ColourMatrixSource, WhiteBalanceMode
from unisp.losses.backbones import PROFILES
from unisp.raw.io import LAYOUTS as RAW_LAYOUTS

runner = CliRunner()


@functools.cache
def command():
    return typer.main.get_command(cli.app)


def invoke(*args):
    return runner.invoke(command(), [str(a) for a in args])


CHOICES = {
    "Layout": (cli.Layout, RAW_LAYOUTS),
    "Demosaic": (cli.Demosaic, DEMOSAIC_METHODS),
    "WhiteBalance": (cli.WhiteBalance, get_args(WhiteBalanceMode)),
    "ColourMatrix": (cli.ColourMatrix, get_args(ColourMatrixSource)),
    "ImageFormat": (cli.ImageFormat, IMAGE_FORMATS),
    "ExportFormat": (cli.ExportFormat, EXPORT_FORMATS),
    "Precision": (cli.Precision, PRECISIONS),
    "Packing": (cli.Packing, PACKINGS),
    "TensorLayout": (cli.TensorLayout, TENSOR_LAYOUTS),
    "Profile": (cli.Profile, PROFILES),
}


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_choice_list_is_the_librarys(name):
    enum, library = CHOICES[name]
    assert tuple(member.value for member in enum) == tuple(library)
    assert all(member.name == member.value for member in enum)


def test_every_image_format_has_a_suffix():
    assert set(IMAGE_SUFFIXES) == set(IMAGE_FORMATS)


def one_line(output: str) -> str:
    """click's usage error as one line: rich's box and wrapping taken out."""
    return " ".join(output.replace("│", " ").split())


@pytest.mark.parametrize("args, flag, library", [
    (["render", "x", "-o", "o"], "--demosaic", DEMOSAIC_METHODS),
    (["render", "x", "-o", "o"], "--layout", RAW_LAYOUTS),
    (["process", "x", "-m", "m", "-o", "o"], "--format", IMAGE_FORMATS),
    (["export", "-m", "m", "--format", "onnx", "-o", "o"], "--precision", PRECISIONS),
    (["export", "-m", "m", "--format", "onnx", "-o", "o"], "--layout", TENSOR_LAYOUTS),
    (["weights", "check"], "--profile", PROFILES),
])
def test_flags_offer_the_librarys_values(args, flag, library):
    """What click offers, and says in its error, is the library's list."""
    result = invoke(*args, flag, "nope")
    assert result.exit_code == 2
    assert "'nope' is not one of " + ", ".join(f"'{v}'" for v in library) + "." in one_line(result.output)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:7"])
def test_device_names_accepted_whether_present_or_not(name):
    assert check_device_name(name) == name


@pytest.mark.parametrize("command_args", [["process", "x", "--model", "m", "--out", "o"], ["eval", "--pred", "a", "--gt", "b"],
                                          ["select", "run", "--rgb", "rgb"]])
@pytest.mark.parametrize("name, message", [("tpu", "unknown device 'tpu' (use auto, cpu, cuda, cuda:N)"),
                                           ("mps", "device 'mps': unisp runs on the CPU or CUDA only")])
def test_bad_device_refused_while_parsing(command_args, name, message):
    with pytest.raises(UnispError) as raised:
        check_device_name(name)
    assert str(raised.value).startswith(message)
    result = invoke(*command_args, "--device", name)
    assert result.exit_code == 2
    assert str(raised.value) in one_line(result.output)


def test_bad_profile_is_a_usage_error():
    result = invoke("weights", "check", "--profile", "imagenet")
    assert result.exit_code == 2 and "imagenet" in result.output


RAW_FLAG_NAMES = {
    "render": list(cli.RAW_FLAGS), "inspect": list(cli.RAW_FLAGS), "process": list(cli.RAW_FLAGS),
    "eval": list(cli.RAW_FLAGS), "export": ["bits", "cfa", "black", "white", "camera"],
    "select": ["layout", "camera"], "report": ["camera"],
}


@pytest.mark.parametrize("name", sorted(RAW_FLAG_NAMES))
def test_raw_flags_are_one_parameter_with_the_same_options(name):
    params = {p.name: p for p in command().commands[name].params}
    raw_like = [n for n in cli.RAW_FLAGS if n in params and not (name == "export" and n == "layout")]
    assert raw_like == RAW_FLAG_NAMES[name]
    assert all(params[n].default in (None, cli.Layout.auto, "auto") for n in raw_like)
    assert "raw" not in params


def test_raw_flags_reach_the_command_as_one_object():
    seen = {}

    @cli.raw_flags("layout", "cfa", "camera")
    def fake(inputs: list, raw: cli.RawFlags = cli.RawFlags()) -> None:
        seen["raw"] = raw

    assert list(fake.__signature__.parameters) == ["inputs", "layout", "cfa", "camera"]
    fake(["a"], layout=cli.Layout.npy, cfa="BGGR", camera=None)
    assert seen["raw"] == cli.RawFlags(layout=cli.Layout.npy, cfa="BGGR")
