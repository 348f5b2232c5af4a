"""Progress display: bars on a terminal; off a terminal, a bounded number of plain lines."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from unisp.progress import PLAIN_INTERVAL_S, PLAIN_QUIET_S, PLAIN_STEPS, PlainProgress, duration, progress_display, stage_reporter


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plain(clock: Clock) -> tuple[PlainProgress, io.StringIO]:
    out = io.StringIO()
    return PlainProgress(Console(file=out, width=200), clock=clock), out


def test_terminal_gets_bars_and_a_file_gets_plain_lines():
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=True)), Progress)
    assert isinstance(progress_display(Console(file=io.StringIO(), force_terminal=False)), PlainProgress)


def test_a_long_task_prints_one_line_per_tenth_with_elapsed_time_and_eta():
    clock = Clock()
    progress, out = plain(clock)
    task = progress.add_task("training", total=1000)
    for _ in range(1000):  # a step every 0.1 s: 100 s in all, well past the quiet start
        clock.now += 0.1
        progress.advance(task)
    lines = out.getvalue().splitlines()
    assert len(lines) == PLAIN_STEPS
    assert lines[0] == "training: 100/1000 (10%), 10 s elapsed, about 1 min 30 s left"
    assert lines[-1] == "training: 1000/1000 (100%), 1 min 40 s elapsed"


def test_lines_stay_bounded_whatever_the_number_of_updates():
    clock = Clock()
    progress, out = plain(clock)
    task = progress.add_task("files", total=10**6)
    clock.now = PLAIN_QUIET_S
    for done in range(1, 10**5 + 1):  # 10% of the task, in a frozen instant: one line
        progress.update(task, completed=done)
    assert len(out.getvalue().splitlines()) == 1
    clock.now += PLAIN_INTERVAL_S  # a slow stretch: one line a minute
    progress.advance(task)
    progress.advance(task)
    assert len(out.getvalue().splitlines()) == 2


def test_quick_tasks_details_and_open_ended_tasks():
    clock = Clock()
    progress, out = plain(clock)
    quick = progress.add_task("files", total=3)
    for _ in range(3):
        progress.advance(quick)  # over in an instant: nothing to report
    tiles = progress.add_task("  a.dng", total=10, plain=False)
    clock.now += 2 * PLAIN_INTERVAL_S
    progress.advance(tiles, 10)  # a detail: a bar on a terminal only
    assert out.getvalue() == ""
    scoring = progress.add_task("scoring", total=None)
    clock.now += PLAIN_INTERVAL_S
    progress.update(scoring, completed=2)
    assert out.getvalue() == "scoring: 2 done, 1 min 00 s elapsed\n"


def test_stage_reporter_adds_a_task_per_stage():
    clock = Clock()
    progress, out = plain(clock)
    report = stage_reporter(progress)
    report("stage 1", 0, 4)
    clock.now = PLAIN_QUIET_S
    report("stage 1", 4, 4)
    report("stage 2", 1, 2)
    assert list(t.description for t in progress.tasks.values()) == ["stage 1", "stage 2"]
    assert out.getvalue().splitlines() == ["stage 1: 4/4 (100%), 5 s elapsed"]


def test_duration():
    assert [duration(s) for s in (4.6, 65, 3600 + 7 * 60 + 20)] == ["5 s", "1 min 05 s", "1 h 07 min"]
