"""A few malformed cases through the real ``unisp`` process, and the memory a huge header costs.

The in-process cases (CliRunner) cannot see what reaches the terminal: these run ``python -m
unisp.cli`` and check its stderr holds one error line and no traceback. The memory test reads files
whose headers claim multi-gigabyte images in a fresh interpreter and checks its peak resident
memory did not grow by anything near that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from fuzz_corpus import MODEL_CORPUS, raw_corpus, write

#: Seconds one unisp process may take (start-up imports torch: a few seconds on a loaded machine).
PROCESS_TIMEOUT_S = 120
#: Peak-memory growth allowed while reading all huge-header files; each claims 8 GB or more. The
#: peak counts memory that was touched (an untouched reservation costs nothing and is not seen), so
#: this catches a reader that fills or copies a buffer of the claimed size.
MAX_GROWTH_MB = 256


def run_unisp(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "unisp.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, cwd=cwd, env=env)


@pytest.mark.parametrize("case", ["raw-file", "model-file"])
def test_real_process_prints_one_line_and_no_traceback(tmp_path, case):
    if case == "raw-file":
        bad, _ = raw_corpus()["dng-truncated-in-ifd"](tmp_path / "in")
        args = ["render", bad, "--out", tmp_path / "out"]
    else:
        name, data = MODEL_CORPUS["torch-zip-pickle"]
        bad = write(tmp_path / name, data())
        args = ["info", bad]
    result = run_unisp(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if str(bad) in line]
    assert errors, result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("args", "message"), [
    (["render", "x.dng", "--out", "o", "--demosaic", "foo"], "Invalid value for '--demosaic'"),
    (["export", "--model", "m", "--format", "onnx", "--out", "x", "--layout", "jpeg"], "Invalid value for '--layout'"),
    (["render"], "Missing argument"),
    (["render", "x.dng", "--bogus"], "No such option: --bogus"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line(tmp_path, args, message):
    """Bad flags and values (click's own errors) get the one ``error:`` line every other error gets."""
    result = run_unisp(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert lines[0].endswith(" -h')")  # names the help of the command at fault


def test_help_and_bare_command(tmp_path):
    assert run_unisp("render", "-h", cwd=tmp_path).returncode == 0
    bare = run_unisp(cwd=tmp_path)  # click prints the help and exits 2, with no error line
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr and "error:" not in bare.stderr


HUGE_CASES = ("npy-huge-header", "npy-huge-packed-header", "png-huge-under-libpng-limit", "tif-huge-dimensions",
              "dng-huge-dimensions", "zrr-huge-dimensions", "sidecar-huge-size")


def test_huge_headers_allocate_nothing_of_their_size(tmp_path):
    corpus = raw_corpus()
    cases = {}
    for case in HUGE_CASES:
        path, flags = corpus[case](tmp_path / case)
        cases[case] = [str(path), *flags]
    valid, flags = corpus["raw-cfa-lowercase-ok"](tmp_path / "valid")
    script = textwrap.dedent(f"""
        import json, resource
        from typer.testing import CliRunner
        from unisp.cli import app
        runner = CliRunner()
        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        warm = runner.invoke(app, ["inspect", {str(valid)!r}, *{flags!r}])
        report = {{"baseline": peak_mb(), "warm_exit": warm.exit_code, "cases": {{}}}}
        for case, args in {json.dumps(cases)}.items():
            result = runner.invoke(app, ["inspect", *args])
            report["cases"][case] = [result.exit_code, peak_mb()]
        print(json.dumps(report))
    """)
    if sys.platform != "linux":
        pytest.skip("ru_maxrss is in kB on Linux only")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["warm_exit"] == 0
    for case, (exit_code, peak) in report["cases"].items():
        assert exit_code == 2, case
        assert peak - report["baseline"] < MAX_GROWTH_MB, f"{case}: peak memory grew {peak - report['baseline']:.0f} MB"
