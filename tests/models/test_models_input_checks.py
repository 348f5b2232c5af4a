"""Known answers for what a model file and an input must be: file signatures, argument ranges, smallest inputs."""

from __future__ import annotations

import pickle

import pytest
import torch

from unisp.errors import ConfigError, UnispError
from unisp.models import build_model, load_model, save_model
from unisp.models.base import KwargRange, check_input_size
from unisp.models.checkpoint import MAX_HEADER_BYTES, sniff
from unisp.models.registry import MODEL_FILE_MAX_BYTES
from unisp.models.rmfa import MAX_BLOCKS, MAX_WIDTH

# ------------------------------------------------------------------ file signatures


def safetensors_framing(length: int) -> bytes:
    """The smallest bytes with safetensors structure: a ``length``-byte header that opens with ``{``."""
    return length.to_bytes(8, "little") + b"{" + b" " * (length - 1)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_of_protocol_2_to_5(protocol):
    assert sniff(pickle.dumps({"w": 1}, protocol=protocol)) == "pickle"


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"PK\x03\x04" + b"\0" * 26, "zip"),
        (pickle.dumps({}, protocol=0), "unknown"),  # b"(dp0\n." : no PROTO opcode
        (pickle.dumps({}, protocol=1), "unknown"),
        (b"\x80\x06" + b"\0" * 16, "unknown"),  # no such protocol
        (b"\x80", "unknown"),
        (b"", "unknown"),
        (safetensors_framing(0x480), "safetensors"),  # opens with 0x80 0x04, as a protocol-4 pickle does
        (safetensors_framing(0x480)[:-1], "pickle"),  # the same bytes one short: the header no longer fits
        (safetensors_framing(0x88), "safetensors"),
        ((0x480).to_bytes(8, "little") + b"[" + b" " * 0x47F, "pickle"),  # a header that is not an object
        ((2**63).to_bytes(8, "little") + b"{}", "unknown"),
    ],
)
def test_sniff_known_bytes(data, kind):
    assert sniff(data) == kind


@pytest.mark.parametrize("length", [0x480, 0x580])
def test_model_whose_header_length_starts_with_0x80_loads(tmp_path, length):
    # One header length in 32 starts with 0x80; 0x480 and 0x580 begin like protocol-4 and -5 pickles.
    path = tmp_path / "m.safetensors"
    for pad in range(512):
        header = save_model(path, build_model("efficient_isp"), name="efficient_isp", meta={"training": {"note": "x" * pad}})
        if int.from_bytes(path.read_bytes()[:8], "little") == length:
            break
    data = path.read_bytes()
    assert data[0] == 0x80 and data[1] == length >> 8
    model, read = load_model(path)
    assert read == header and model.name == "efficient_isp"


# ------------------------------------------------------------------ architecture arguments


def test_int_range_known_values():
    width = KwargRange(int, 2, 64, multiple=2)
    assert [width.fits(v) for v in (2, 16, 64)] == [True, True, True]
    assert [width.fits(v) for v in (0, 3, 66, 2**70, True, 16.0, "16", None)] == [False] * 8
    assert width.describe() == "an integer from 2 to 64, a multiple of 2"


def test_float_range_known_values():
    fill = KwargRange(float, 0.0, 1.0)
    assert [fill.fits(v) for v in (0, 0.5, 1)] == [True, True, True]
    assert [fill.fits(v) for v in (float("nan"), float("inf"), -1e-9, 1e308, 10**400, False, "0.5")] == [False] * 7
    assert fill.check("fill", 1) == 1.0 and isinstance(fill.check("fill", 1), float)
    with pytest.raises(ConfigError, match=r"^model_kwargs\.fill must be a finite number from 0 to 1, got nan$"):
        fill.check("fill", float("nan"))


def test_build_model_names_the_key():
    with pytest.raises(ConfigError, match=r"model 'rmfa_tiny': model_kwargs\.num_blocks must be an integer from 0 to 16, got 3000000"):
        build_model("rmfa_tiny", num_blocks=3_000_000)
    with pytest.raises(ConfigError, match=r"unknown model_kwargs \['depth'\] \(rmfa_tiny takes num_blocks, width, fill\)"):
        build_model("rmfa_tiny", depth=2)


def test_largest_architecture_fits_the_file_bounds(tmp_path):
    # The model-file bound has room for the largest network build_model accepts, even in float64.
    largest = build_model("rmfa_tiny", num_blocks=MAX_BLOCKS, width=MAX_WIDTH)
    assert sum(p.numel() for p in largest.parameters()) == 3_332_131
    path = tmp_path / "largest.safetensors"
    save_model(path, largest, name="rmfa_tiny")
    data = path.read_bytes()
    assert 2 * len(data) < MODEL_FILE_MAX_BYTES / 2
    assert int.from_bytes(data[:8], "little") < MAX_HEADER_BYTES / 10


# ------------------------------------------------------------------ smallest input


@pytest.mark.parametrize(
    "name, kwargs, smallest",
    [("efficient_isp", {}, 1), ("robust_isp", {}, 1), ("rmfa_tiny", {}, 2), ("rmfa_tiny", {"num_blocks": 0}, 1)],
)
def test_min_packed_size_is_what_the_network_takes(name, kwargs, smallest):
    model = build_model(name, **kwargs).eval()
    assert model.min_packed_size == smallest
    assert model.infer(torch.rand(1, 4, smallest, smallest + 3)).shape == (1, 3, 2 * smallest, 2 * smallest + 6)
    if smallest > 1:  # one packed pixel less on either side and the network itself fails
        for shape in ((smallest - 1, smallest), (smallest, smallest - 1)):
            with pytest.raises(RuntimeError):
                model.infer(torch.rand(1, 4, *shape))


def test_check_input_size_message():
    model = build_model("rmfa_tiny")
    check_input_size(model, 2, 2, "ok.png")
    with pytest.raises(UnispError, match=r"^tiny\.png: a 2×4 mosaic is smaller than rmfa_tiny takes \(at least 4×4 pixels\)$"):
        check_input_size(model, 1, 2, "tiny.png")
    check_input_size(build_model("efficient_isp"), 1, 1, "one-tile.png")
    check_input_size(torch.nn.Identity(), 1, 1, "any module without a minimum")
