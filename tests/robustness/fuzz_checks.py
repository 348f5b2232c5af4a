"""What every malformed case must satisfy: a clear error or a documented success, never a crash."""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from click.testing import CliRunner, Result

from unisp.cli import EXIT_USER_ERROR, app

runner = CliRunner()


@functools.cache
def cli_command():
    """The click command of ``unisp``, built once (typer's CliRunner rebuilds it on every call: most
    of the time of a failing case)."""
    return typer.main.get_command(app)


def invoke(*args) -> Result:
    return runner.invoke(cli_command(), [str(a) for a in args])


def describe(result: Result) -> str:
    return f"exit {result.exit_code}, exception {result.exception!r}\n--- output ---\n{result.output}"


def assert_user_error(result: Result, mention: str) -> None:
    """Exit status 2, no traceback, and one line of output that names ``mention`` (a file or key)."""
    assert result.exit_code == EXIT_USER_ERROR, describe(result)
    assert isinstance(result.exception, SystemExit), describe(result)
    assert "Traceback" not in result.output, describe(result)
    assert any(mention in line for line in result.output.splitlines()), f"no line names {mention!r}\n" + describe(result)


def assert_success(result: Result) -> None:
    assert result.exit_code == 0, describe(result)
    assert "Traceback" not in result.output, describe(result)


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of an interrupted atomic write (``.NAME.*.tmp``) anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(".*.tmp"))


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
