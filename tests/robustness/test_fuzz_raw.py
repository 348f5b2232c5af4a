"""Every malformed RAW file of the corpus through every command that reads RAW files.

``render``, ``inspect`` and ``process`` each get every case of :func:`fuzz_corpus.raw_corpus`: a bad
file is one line naming it and exit status 2, a valid unusual one is converted; nothing crashes,
hangs (see ``conftest.case_timeout``) or leaves a partial file in the output folder.
"""

from __future__ import annotations

import pytest
from fuzz_checks import assert_success, assert_user_error, files_in, invoke, leftovers
from fuzz_corpus import RAW_MENTION, RAW_VALID, raw_corpus

from unisp.fileio import read_pixels

CORPUS = raw_corpus()
COMMANDS = ("render", "inspect", "process")


def command_line(command: str, path, flags, out, model_file) -> list:
    if command == "render":
        return ["render", path, "--out", out, *flags]
    if command == "inspect":
        return ["inspect", path, *flags]
    return ["process", path, "--model", model_file, "--out", out, "--tile", "8", *flags]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_raw_case(tmp_path, model_file, command, case):
    path, flags = CORPUS[case](tmp_path / "in")
    out = tmp_path / "out"
    result = invoke(*command_line(command, path, flags, out, model_file))
    if command in RAW_VALID.get(case, ()):
        assert_success(result)
        if command != "inspect":
            (image,) = files_in(out)
            assert read_pixels(image).ndim == 3
        return
    # The file, or its sidecar (same path, .json) when that is what is wrong.
    assert_user_error(result, RAW_MENTION.get(case, f"{path.with_suffix('')}."))
    assert files_in(out) == [], "a failed file left output behind"
    assert leftovers(tmp_path) == []


#: The fused backend reads RAW files through the same reader: a sample of cases suffices. (The
#: onnxruntime backend too, but it exports the model before reading: ~10 s a case, left out here.)
BACKEND_CASES = ("npy-huge-header", "zrr-8-bit", "dng-truncated-half", "raw-2x2", "raw-odd-size")


@pytest.mark.parametrize("case", BACKEND_CASES)
def test_raw_case_fused_backend(tmp_path, model_file, case):
    path, flags = CORPUS[case](tmp_path / "in")
    out = tmp_path / "out"
    result = invoke(*command_line("process", path, flags, out, model_file), "--backend", "fused")
    if "process" in RAW_VALID.get(case, ()):
        assert_success(result)
        assert len(files_in(out)) == 1
        return
    assert_user_error(result, str(path))
    assert files_in(out) == [] and leftovers(tmp_path) == []
