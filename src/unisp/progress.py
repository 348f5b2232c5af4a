"""Progress of long commands: a bar with an ETA on a terminal, a few plain lines anywhere else.

Every command that takes a while (``train``, ``demo``, ``render``, ``process``, ``synth``,
``eval``, ``select``) shows its progress through :func:`progress_display`. On a terminal each
task is a rich bar (done/total, time elapsed, time left), cleared when the command ends. When
stderr is a file or a pipe, a bar would only print its last state, so each task prints a plain
line instead each time another tenth of it is done, and at least every :data:`PLAIN_INTERVAL_S`
seconds, once it has run for :data:`PLAIN_QUIET_S` seconds::

    training (stage1) loss 0.0412: 120/400 (30%), 38 s elapsed, about 1 min 29 s left

Both offer the calls the commands make (``add_task``, ``advance``, ``update``, ``remove_task``,
as :class:`rich.progress.Progress` names them). A task added with ``plain=False`` (a detail, such
as the tiles of the file being converted) is a bar on a terminal and prints no lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

#: Plain lines are printed as a task crosses each 1/PLAIN_STEPS of its total: a line per tenth.
PLAIN_STEPS = 10
#: ... or, between those, when a task has gone this long without a line (a task with no total,
#: or a long one: a line a minute keeps a day-long training to about 1,400 lines).
PLAIN_INTERVAL_S = 60.0
#: A task prints nothing during its first seconds: a command that is over in a moment (a few
#: small files) needs no progress report in its log.
PLAIN_QUIET_S = 5.0
#: Seconds in a minute and in an hour, for :func:`duration`.
MINUTE, HOUR = 60, 3600


def progress_display(console: Console) -> Progress | PlainProgress:
    """Rich bars when ``console`` writes to a terminal, :class:`PlainProgress` lines otherwise.

    Use it as a context manager around the work: ``with progress_display(console) as progress:``.
    """
    if console.is_terminal:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=console,
            transient=True,
        )
    return PlainProgress(console)


def stage_reporter(progress: Progress | PlainProgress) -> Callable[[str, int, int | None], None]:
    """``report(stage, done, total)`` for library code that reports several stages by name
    (:func:`unisp.demo.run_demo`): one task per stage, added when the stage first reports."""
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return report


def duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 05 s"`` or ``"2 h 07 min"``.

    Example:
        >>> duration(45), duration(185), duration(7620)
        ('45 s', '3 min 05 s', '2 h 07 min')
    """
    seconds = int(round(seconds))
    if seconds < MINUTE:
        return f"{seconds} s"
    if seconds < HOUR:
        return f"{seconds // MINUTE} min {seconds % MINUTE:02d} s"
    return f"{seconds // HOUR} h {seconds % HOUR // MINUTE:02d} min"


@dataclass
class _Task:
    """One task's state, and when and at which step its last line was printed."""

    description: str
    total: float | None
    plain: bool
    started: float
    completed: float = 0
    printed_at: float = 0.0
    printed_step: int = 0


class PlainProgress:
    """Progress as occasional plain lines on ``console`` (see the module docstring for when).

    Args:
        console: where the lines go.
        clock: seconds from some fixed point (``time.monotonic``; tests pass their own).
    """

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.clock = console, clock
        self.tasks: dict[int, _Task] = {}
        self._next_id = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, plain: bool = True) -> int:
        """Start a task; ``plain=False`` keeps it out of the lines."""
        now = self.clock()
        self._next_id += 1
        self.tasks[self._next_id] = _Task(description, total, plain, started=now, printed_at=now)
        return self._next_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Count ``advance`` more units done."""
        self.update(task_id, completed=self.tasks[task_id].completed + advance)

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               description: str | None = None) -> None:
        """Set what is given, then print a line if one is due."""
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        self._report(task)

    def remove_task(self, task_id: int) -> None:
        """Forget a finished task."""
        del self.tasks[task_id]

    def _report(self, task: _Task) -> None:
        """Print ``task``'s line when it crossed another step or went quiet for too long."""
        now = self.clock()
        if not task.plain or now - task.started < PLAIN_QUIET_S:
            return
        step = int(task.completed * PLAIN_STEPS // task.total) if task.total else task.printed_step
        if step > task.printed_step or now - task.printed_at >= PLAIN_INTERVAL_S:
            task.printed_step, task.printed_at = step, now
            self.console.print(self._line(task, now - task.started), highlight=False, markup=False)

    @staticmethod
    def _line(task: _Task, elapsed: float) -> str:
        """``"DESCRIPTION: 120/400 (30%), 38 s elapsed, about 1 min 29 s left"``."""
        if not task.total:
            return f"{task.description}: {task.completed:g} done, {duration(elapsed)} elapsed"
        line = f"{task.description}: {task.completed:g}/{task.total:g} ({100 * task.completed / task.total:.0f}%), {duration(elapsed)} elapsed"
        if 0 < task.completed < task.total:
            line += f", about {duration(elapsed * (task.total - task.completed) / task.completed)} left"
        return line
