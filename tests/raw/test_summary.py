"""Folder summaries: one line per folder, one more per file whose calibration differs, each file once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from unisp.raw.frame import RawFrame, Source
from unisp.raw.summary import MAX_ODD_LINES, FrameFacts, each_summary_once, log_summary, summary_lines, tagged

#: Every calibration value read from the file, as a synthetic unisp mosaic has them.
FROM_FILE = {key: Source.METADATA for key in ("cfa", "black_level", "white_level", "wb_gains", "cam_to_srgb")}


def frame(name: str, black=(64,) * 4, sources=FROM_FILE, size=(24, 32), wb=(2.0, 1.0, 1.5)) -> RawFrame:
    """A frame of ``syn/raw/NAME`` with a colour matrix, a white balance and white level 1023."""
    return RawFrame(np.zeros(size, np.uint16), "RGGB", black, 1023, wb_gains=wb, cam_to_srgb=np.eye(3),
                    path=Path("syn/raw") / name, sources=dict(sources))


def facts(frames) -> list[FrameFacts]:
    return [FrameFacts.of(f) for f in frames]


def test_identical_frames_are_one_line_with_count_size_and_levels():
    # White-balance gains differ from shot to shot: not a difference worth a line.
    frames = [frame(f"{i}.png", wb=(2.0 + i, 1.0, 1.5)) for i in range(9)]
    assert summary_lines(facts(frames)) == [
        "syn/raw: 9 RAW files, 32×24 RGGB, black 64, white 1023, as-shot white balance, colour matrix [metadata]"
    ]


def test_a_file_with_another_black_level_gets_a_line_naming_it():
    frames = [frame(f"{i}.png") for i in range(9)]
    frames[4] = frame("4.png", black=(60, 61, 62, 63), sources={**FROM_FILE, "black_level": Source.USER})
    lines = summary_lines(facts(frames))
    assert lines[0].startswith("syn/raw: 9 RAW files, 32×24 RGGB, black 64, white 1023")
    assert lines[1:] == ["syn/raw/4.png: black (60, 61, 62, 63) [user], where 8 other files have black 64 [metadata]"]


def test_sources_are_tagged_once_per_run_of_values():
    assert tagged([("RGGB", "preset"), ("black 0", "preset"), ("white 4095", "user"), ("x", "preset")]) == (
        "RGGB, black 0 [preset], white 4095 [user], x [preset]"
    )
    nothing_known = {"cfa": Source.USER, "black_level": Source.ASSUMED, "white_level": Source.USER}
    plain = RawFrame(np.zeros((6, 8), np.uint16), "RGGB", (0,) * 4, 1023, path=Path("d/a.raw"), sources=nothing_known)
    assert summary_lines(facts([plain])) == [
        "d/a.raw: 8×6 RGGB [user], black 0 [assumed], white 1023 [user], white balance unknown, colour matrix identity [assumed]"
    ]


def test_sizes_and_a_sample_of_a_larger_folder():
    frames = [frame("a.png", size=(24, 32)), frame("b.png", size=(48, 64)), frame("c.png", size=(24, 32))]
    line = summary_lines(facts(frames), total=120)[0]
    assert line.startswith("syn/raw: 120 RAW files (3 read), sizes 32×24 to 64×48, RGGB, black 64")


def test_files_that_differ_are_named_up_to_a_bound():
    odd = {**FROM_FILE, "white_level": Source.ASSUMED}
    frames = [frame(f"{i:02d}.png") for i in range(20)] + [frame(f"x{i:02d}.png", sources=odd) for i in range(15)]
    lines = summary_lines(facts(frames))
    assert len(lines) == 1 + MAX_ODD_LINES + 1
    assert lines[1] == "syn/raw/x00.png: white 1023 [assumed], where 20 other files have white 1023 [metadata]"
    assert lines[-1] == "syn/raw: 5 more files differ from the others (unisp -v describes every file)"


def test_log_summary_groups_by_folder_and_describes_each_file_once_inside_a_block(caplog):
    elsewhere = RawFrame(np.zeros((4, 4), np.uint16), "BGGR", (0,) * 4, 255, path=Path("other/z.png"))
    frames = [frame("a.png"), elsewhere, frame("b.png")]
    with caplog.at_level(logging.INFO, logger="unisp.raw.summary"):
        log_summary(frames, "training")
        assert [r.getMessage().split(":")[:2] for r in caplog.records] == [["training", " syn/raw"], ["training", " other/z.png"]]
        caplog.clear()
        with each_summary_once():
            log_summary(frames[:2], "training")
            log_summary(frames[2:], "validation")  # another file of syn/raw: described
            log_summary(frames, "report")  # every file described already, as read then
            log_summary([frame("a.png", black=(60,) * 4)], "again")  # read with another black level
        assert [r.getMessage() for r in caplog.records] == [
            "training: syn/raw/a.png: 32×24 RGGB, black 64, white 1023, as-shot white balance, colour matrix [metadata]",
            "training: other/z.png: 4×4 BGGR, black 0, white 255, white balance unknown, colour matrix identity [assumed]",
            "validation: syn/raw/b.png: 32×24 RGGB, black 64, white 1023, as-shot white balance, colour matrix [metadata]",
            "again: syn/raw/a.png: 32×24 RGGB, black 60, white 1023, as-shot white balance, colour matrix [metadata]",
        ]
