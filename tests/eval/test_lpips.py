"""LPIPS: computed only from AlexNet weights already on disk, never downloaded, never random."""

from __future__ import annotations

import logging

import pytest
import torch

from unisp.errors import UnispError
from unisp.metrics import ALEXNET_WEIGHTS_FILE, alexnet_weights_path, load_lpips_alex, lpips_alex


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and a download function that fails the test if anything calls it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_download(*args, **kwargs):
        raise AssertionError("LPIPS tried to download weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def _write_alexnet_features(path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-style AlexNet state dict (features only, random values) at ``path``."""
    import torchvision

    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_weights_path_follows_torch_home(torch_home):
    assert alexnet_weights_path() == torch_home / "hub" / "checkpoints" / ALEXNET_WEIGHTS_FILE


def test_missing_weights_give_one_warning_and_no_model(torch_home, caplog):
    with caplog.at_level(logging.WARNING, logger="unisp.metrics"):
        assert load_lpips_alex() is None
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert str(alexnet_weights_path()) in message and "not found" in message


def test_direct_call_without_weights_raises(torch_home):
    with pytest.raises(UnispError, match=ALEXNET_WEIGHTS_FILE):
        lpips_alex(torch.rand(3, 32, 32), torch.rand(3, 32, 32))


def test_a_file_that_is_not_alexnet_is_refused(torch_home, caplog):
    alexnet_weights_path().parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(2)}, alexnet_weights_path())
    with caplog.at_level(logging.WARNING, logger="unisp.metrics"):
        assert load_lpips_alex() is None
    assert "not an AlexNet state dict" in caplog.text


def test_trunk_comes_from_the_file(torch_home):
    # The trunk must hold exactly the file's tensors (here random ones written by the test),
    # never lpips' own random initialisation.
    state = _write_alexnet_features(alexnet_weights_path(), seed=4)
    model = load_lpips_alex()
    assert model is not None
    trunk = model.net.state_dict()  # lpips names layer i of alexnet.features "slice<k>.<i>"
    assert torch.equal(trunk["slice1.0.weight"], state["features.0.weight"])
    assert torch.equal(trunk["slice5.10.bias"], state["features.10.bias"])
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.equal(lpips_alex(x, x, model), torch.zeros(2))
    distance = lpips_alex(x, y, model)
    assert distance.shape == (2,) and (distance > 0).all()
    # LPIPS sees [−1, 1]: [0, 1] inputs scaled by hand give the same value from the raw network.
    assert torch.allclose(model(x * 2 - 1, y * 2 - 1).flatten(), distance)
