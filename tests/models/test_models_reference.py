"""The paper's released weights: NumPy parity of the documented forward pass, order adaptation, safe loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from unisp.errors import UnispError
from unisp.models import adapt_reference_state, build_model, count_parameters, load_reference
from unisp.models.reference import read_state_dict
from unisp.raw.bayer import REFERENCE_ORDER, from_reference_order, to_reference_order

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CHECKPOINTS = DATA / "reference_checkpoints"

needs_data = pytest.mark.skipif(not CHECKPOINTS.is_dir(), reason="shared reference checkpoints not available")


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero padding 1, written out over the nine 3×3 window offsets."""
    c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    windows = np.stack([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1)
    return np.einsum("chwk,ock->ohw", windows, weight.reshape(weight.shape[0], c, 9)) + bias[:, None, None]


def _depth_to_space(x: np.ndarray) -> np.ndarray:
    """(3·4, h, w) → (3, 2h, 2w): channel 4c + 2i + j goes to colour c at tile position (i, j)."""
    _, h, w = x.shape
    return x.reshape(3, 2, 2, h, w).transpose(0, 3, 1, 4, 2).reshape(3, 2 * h, 2 * w)


def _documented_forward(state: dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    """The forward pass SOURCES.md documents: conv+tanh, conv+ReLU, conv+ReLU, pixel shuffle ×2."""
    p = {k: v.double().numpy() for k, v in state.items()}
    x = np.tanh(_conv3x3(x, p["conv1.weight"], p["conv1.bias"]))
    x = np.maximum(_conv3x3(x, p["conv2.weight"], p["conv2.bias"]), 0)
    x = np.maximum(_conv3x3(x, p["conv3.weight"], p["conv3.bias"]), 0)
    return _depth_to_space(x)


@needs_data
@pytest.mark.parametrize(
    "relpath",
    [
        "ZRR/Efficient_ISP_paired_step_195100.pth",
        "Fujifilm/Efficient_ISP_unpaired_step_27220.pth",
        "Fujifilm/Robust_paired_step_31560.pth",
    ],
)
def test_reference_parity_with_numpy(relpath):
    # The released weights applied, as documented, to reference-order (B, Gb, R, Gr) planes must
    # equal our adapted model applied to the same planes in canonical order.
    path = CHECKPOINTS / relpath
    state = read_state_dict(path)
    rng = np.random.default_rng(0)
    x_ref = rng.random((4, 6, 10))
    expected = _documented_forward(state, x_ref)
    model = load_reference(path)
    x_can = from_reference_order(torch.from_numpy(x_ref).float())
    ours = model(x_can[None])[0].detach().double().numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    # The adaptation is a real change: the unadapted weights on canonical input disagree.
    plain = build_model(model.name)
    plain.load_state_dict(state)
    assert not np.allclose(plain(x_can[None])[0].detach().double().numpy(), expected, atol=1e-3)


@needs_data
def test_rmfa_tiny_loads_strict_and_runs():
    path = CHECKPOINTS / "Fujifilm" / "RMFA_TINY_paired_step_31690.pth"
    state = read_state_dict(path)
    model = load_reference(path)  # load_state_dict(strict=True) inside
    assert model.name == "rmfa_tiny"
    assert model.model_kwargs == {"num_blocks": 2, "width": 16, "fill": 1.0}
    assert count_parameters(model) == sum(v.numel() for v in state.values()) == 29223
    # Keys map one to one and the weights are the released ones (the split needs no reordering).
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    out = model.infer(torch.rand(1, 4, 6, 10, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 3, 12, 20)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@needs_data
def test_stage1_checkpoint_is_efficient_isp():
    assert load_reference(CHECKPOINTS / "stage1_pretrained_20000.pth").name == "efficient_isp"


@pytest.mark.parametrize("name", ["efficient_isp", "robust_isp"])
def test_adaptation_folds_reference_order_into_first_conv(name, tmp_path):
    # Synthetic released file: any weights, saved as a plain state dict like the paper's.
    torch.manual_seed(0)
    reference = build_model(name)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = load_reference(path)
    x = torch.rand(2, 4, 5, 7)
    assert torch.allclose(model(x), reference(to_reference_order(x)), atol=1e-6)
    # Only conv1.weight changes, by a pure permutation of its input channels.
    adapted = adapt_reference_state(name, reference.state_dict())
    assert torch.equal(adapted["conv1.weight"][:, list(REFERENCE_ORDER)], reference.conv1.weight)
    assert all(torch.equal(adapted[k], v) for k, v in reference.state_dict().items() if k != "conv1.weight")


def test_name_given_explicitly_must_fit(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(build_model("robust_isp").state_dict(), path)
    with pytest.raises(UnispError, match=r"weights\.pth: weights do not fit model 'efficient_isp'"):
        load_reference(path, "efficient_isp")


def test_unknown_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UnispError, match="other.pth: cannot tell which model"):
        load_reference(path)


def test_wrapped_state_dict_and_module_prefix(tmp_path):
    state = build_model("efficient_isp").state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "step": 3}, path)
    assert load_reference(path).name == "efficient_isp"


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(UnispError, match="list.pth: expected a dict of tensors"):
        load_reference(path)
    with pytest.raises(UnispError, match="missing.pth: no such file"):
        load_reference(tmp_path / "missing.pth")


class _Payload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_never_runs(tmp_path):
    control = tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(_Payload(f"touch {control}")))
    assert control.exists()  # the payload is live: a plain unpickle runs it
    marker = tmp_path / "MARKER"
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(pickle.dumps({"conv1.weight": _Payload(f"touch {marker}")}, protocol=2))
    zipped = tmp_path / "evil_zip.pth"
    torch.save({"conv1.weight": _Payload(f"touch {marker}")}, zipped)
    for path in (raw, zipped):
        with pytest.raises(UnispError, match=f"{path.name}: not a plain PyTorch state dict"):
            load_reference(path)
    assert not marker.exists()
