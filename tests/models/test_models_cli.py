"""``unisp info`` and ``unisp import-reference``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from unisp.cli import app

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reference_checkpoints"


@pytest.mark.parametrize("name, params, mmac", [("efficient_isp", "3,060", "756.0"), ("robust_isp", "1,616", "396.0")])
def test_info_known_values(name, params, mmac):
    # Efficient ISP: (4·12·9 + 2·12·12·9) MACs per packed pixel / 4 output pixels = 756 per output pixel.
    # Robust ISP: (4·16·9 + 16·4·9 + 4·12·9) / 4 = 396.
    result = runner.invoke(app, ["info", name])
    assert result.exit_code == 0, result.output
    assert params in result.output and mmac in result.output


def test_info_unknown():
    result = runner.invoke(app, ["info", "resnet"])
    assert result.exit_code == 2 and "neither a model name" in result.output


@pytest.mark.skipif(not SHARED.is_dir(), reason="the paper's released weights (../shared/data) are not here")
def test_import_reference_then_info(tmp_path):
    src = SHARED / "ZRR" / "Efficient_ISP_unpaired_step_30750.pth"
    result = runner.invoke(app, ["import-reference", str(src), "--out", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", str(tmp_path / "m.safetensors")])
    assert result.exit_code == 0 and "Efficient_ISP_unpaired_step_30750" in result.output
