"""The learned ISP's input white balance (``data.input_wb``): the gains, by hand, and the warning."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from unisp.errors import RawFormatError
from unisp.isp.awb import balance_input, input_gains, lacks_input_gains, warn_lacking_gains
from unisp.raw.frame import RawFrame


def frame(wb_gains=None, value: int = 600) -> RawFrame:
    """A flat 4×4 RGGB frame, black 0, white 1000."""
    return RawFrame(np.full((4, 4), value, np.uint16), "RGGB", (0.0,) * 4, 1000, wb_gains=wb_gains)


def test_as_shot_gains_are_the_frames_normalised_to_green():
    assert torch.equal(input_gains(frame((2.0, 1.0, 1.5)), "as_shot"), torch.tensor([2.0, 1.0, 1.0, 1.5]))
    # A synthetic frame's gains hold its exposure gain in all three: only the ratios count.
    assert torch.allclose(input_gains(frame((4.0, 2.0, 3.0)), "as_shot"), torch.tensor([2.0, 1.0, 1.0, 1.5]))


def test_balanced_planes_are_multiplied_then_clipped():
    f = frame((2.0, 1.0, 1.5))  # every plane 0.6
    planes = balance_input(f.normalized(), input_gains(f, "as_shot"))
    assert torch.allclose(planes[:, 0, 0], torch.tensor([1.0, 0.6, 0.6, 0.9]))  # R 1.2 clipped to 1


def test_none_and_frames_without_white_balance_get_ones():
    assert torch.equal(input_gains(frame((2.0, 1.0, 1.5)), "none"), torch.ones(4))
    assert torch.equal(input_gains(frame(), "as_shot"), torch.ones(4))
    assert lacks_input_gains(frame(), "as_shot") and not lacks_input_gains(frame(), "none")
    assert not lacks_input_gains(frame((2.0, 1.0, 1.5)), "as_shot")


def test_an_unknown_mode_is_refused():
    with pytest.raises(RawFormatError, match="as_shot"):
        input_gains(frame(), "gray_world")


def test_one_warning_says_how_many_files_lacked_it(caplog):
    with caplog.at_level(logging.WARNING, logger="unisp.isp.awb"):
        warn_lacking_gains(0, 5, "files processed")
        assert not caplog.records
        warn_lacking_gains(2, 5, "files processed")
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "input white balance as_shot: 2 of 5 files processed record no as-shot white balance"
    ]
