"""The unisp model file: safetensors round trip, header, and refusing pickles and broken files."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import safetensors.torch
import torch

from unisp import __version__
from unisp.errors import UnispError
from unisp.models import MODEL_NAMES, build_model, import_reference, load_model, load_reference, save_model

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CHECKPOINTS = DATA / "reference_checkpoints"


def _randomised(name: str, **kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_identical_outputs_and_header(name, tmp_path):
    model = _randomised(name)
    path = tmp_path / "model.safetensors"
    written = save_model(path, model, name=name, meta={"training": {"steps": 10, "loss": 0.5}})
    loaded, header = load_model(path)
    assert header == written
    assert type(loaded) is type(model) and not loaded.training
    x = torch.rand(2, 4, 5, 6)
    assert torch.equal(loaded(x), model(x))
    assert header["model"] == name
    assert header["training"] == {"steps": 10, "loss": 0.5}
    assert header["packing"] == "canonical RGGB-relative (R, Gr, Gb, B)"
    assert header["normalisation"] == "per-channel (x − black_c)/(white − black_c)"
    assert header["clamp_at_inference"] is True
    assert header["unisp_version"] == __version__
    assert header["parameters"] == sum(p.numel() for p in model.parameters())


def test_model_kwargs_round_trip(tmp_path):
    model = _randomised("rmfa_tiny", num_blocks=1, width=8, fill=0.5)
    path = tmp_path / "small.safetensors"
    save_model(path, model, name="rmfa_tiny", meta={})
    loaded, header = load_model(path)
    assert header["model_kwargs"] == {"num_blocks": 1, "width": 8, "fill": 0.5}
    assert torch.equal(loaded(torch.ones(1, 4, 4, 4)), model(torch.ones(1, 4, 4, 4)))


def test_save_checks_name_and_reserved_fields(tmp_path):
    model = build_model("efficient_isp")
    with pytest.raises(UnispError, match="weights do not fit model 'robust_isp'"):
        save_model(tmp_path / "a.safetensors", model, name="robust_isp", meta={})
    with pytest.raises(UnispError, match="unknown model name 'pynet'"):
        save_model(tmp_path / "a.safetensors", model, name="pynet", meta={})
    with pytest.raises(UnispError, match=r"reserved header fields \['model'\]"):
        save_model(tmp_path / "a.safetensors", model, name="efficient_isp", meta={"model": "x"})
    with pytest.raises(UnispError, match="not JSON-serialisable"):
        save_model(tmp_path / "a.safetensors", model, name="efficient_isp", meta={"training": {"t": object()}})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_pth_refused_by_name(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(build_model("efficient_isp").state_dict(), path)
    with pytest.raises(UnispError, match=r"weights\.pth: .*unisp import-reference"):
        load_model(path)


class _Payload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_malicious_pickle_refused(suffix, tmp_path):
    control = tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(_Payload(f"touch {control}")))
    assert control.exists()  # the payload is live: a plain unpickle runs it
    marker = tmp_path / "MARKER"
    raw = tmp_path / f"evil_raw{suffix}"
    raw.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    zipped = tmp_path / f"evil_zip{suffix}"
    torch.save({"w": _Payload(f"touch {marker}")}, zipped)
    for path in (raw, zipped):
        with pytest.raises(UnispError, match=rf"{path.name}: looks like a PyTorch pickle"):
            load_model(path)
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path):
    good = tmp_path / "good.safetensors"
    save_model(good, _randomised("efficient_isp"), name="efficient_isp", meta={})
    data = good.read_bytes()
    for cut in (4, 40, len(data) - 100):  # inside the length, inside the JSON header, inside the tensors
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(UnispError, match=rf"cut{cut}\.safetensors: (not a safetensors model file or truncated|corrupt)"):
            load_model(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"hello world, not a model")
    with pytest.raises(UnispError, match="garbage.safetensors: not a safetensors model file"):
        load_model(garbage)
    with pytest.raises(UnispError, match="absent.safetensors: no such file"):
        load_model(tmp_path / "absent.safetensors")


def test_missing_keys_and_foreign_files(tmp_path):
    model = build_model("efficient_isp")
    header = save_model(tmp_path / "ok.safetensors", model, name="efficient_isp", meta={})
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "conv3.bias"}
    partial = tmp_path / "partial.safetensors"
    partial.write_bytes(safetensors.torch.save(state, metadata={"unisp": json.dumps(header)}))
    with pytest.raises(UnispError, match=r"partial\.safetensors: weights do not fit .*conv3\.bias"):
        load_model(partial)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(safetensors.torch.save(model.state_dict()))
    with pytest.raises(UnispError, match="foreign.safetensors: safetensors file without a unisp model header"):
        load_model(foreign)
    newer = tmp_path / "newer.safetensors"
    newer.write_bytes(
        safetensors.torch.save(model.state_dict(), metadata={"unisp": json.dumps({**header, "format_version": 99})})
    )
    with pytest.raises(UnispError, match="newer.safetensors: model file format 99 is newer"):
        load_model(newer)


def test_import_reference_synthetic(tmp_path):
    torch.manual_seed(0)
    reference = build_model("robust_isp")
    src = tmp_path / "Robust_unpaired_step_123.pth"
    torch.save(reference.state_dict(), src)
    header = import_reference(src, tmp_path / "robust.safetensors")
    loaded, read = load_model(tmp_path / "robust.safetensors")
    assert read == header
    assert header["source"]["file"] == str(src)
    assert len(header["source"]["sha256"]) == 64
    assert header["channel_adaptation"].startswith("conv1.weight[:, [2, 1, 3, 0]]")
    assert header["training"]["step"] == 123
    x = torch.rand(1, 4, 4, 6)
    assert torch.equal(loaded(x), load_reference(src)(x))


@pytest.mark.skipif(not CHECKPOINTS.is_dir(), reason="shared reference checkpoints not available")
def test_import_released_rmfa(tmp_path):
    src = CHECKPOINTS / "Fujifilm" / "RMFA_TINY_unpaired_step_48270.pth"
    header = import_reference(src, tmp_path / "rmfa.safetensors")
    loaded, _ = load_model(tmp_path / "rmfa.safetensors")
    assert header["model"] == "rmfa_tiny" and header["parameters"] == 29223
    assert header["channel_adaptation"].startswith("none")
    x = torch.rand(1, 4, 4, 4)
    assert torch.equal(loaded(x), load_reference(src).eval()(x))
