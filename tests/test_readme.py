"""The README's file map lists every module of the package, under its own package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import unisp

README = Path(__file__).resolve().parents[1] / "README.md"
PACKAGE = Path(unisp.__file__).parent


def file_map(text: str) -> dict[str, str]:
    """The ``src/unisp/`` part of the README's "File map" block, as ``{package: its text}``:
    ``""`` for top-level modules, ``"raw"`` for the lines of ``raw/`` (continuation lines belong
    to the package above them)."""
    block = text.split("## File map", 1)[1].split("```", 2)[1]
    sections: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        if line.startswith("src/unisp/"):
            current = ""
            continue
        if current is None or not line.strip():
            continue
        entry = re.match(r"^  (\w+)/\s", line)
        if entry:
            current = entry.group(1)
        elif re.match(r"^  \w+\.py\s", line):
            current = ""
        sections[current] = sections.get(current, "") + line + "\n"
    return sections


def listed(sections: dict[str, str], module: Path) -> bool:
    package = module.parent.relative_to(PACKAGE).as_posix()
    package = "" if package == "." else package
    return re.search(rf"(?<![\w/.]){re.escape(module.name)}\b", sections.get(package, "")) is not None


@pytest.mark.skipif(not README.is_file(), reason="needs the source tree (README.md)")
def test_file_map_lists_every_module():
    sections = file_map(README.read_text(encoding="utf-8"))
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    missing = [str(p.relative_to(PACKAGE)) for p in modules if not listed(sections, p)]
    assert missing == []


def test_file_map_parser_places_modules_by_package():
    text = "## File map\n```\ndocs/\nsrc/unisp/\n  cli.py    the CLI\n  raw/      io.py (readers),\n            dng.py\n  export/   onnx.py\n```\n"
    sections = file_map(text)
    assert listed(sections, PACKAGE / "cli.py")
    assert listed(sections, PACKAGE / "raw" / "dng.py")
    assert not listed(sections, PACKAGE / "export" / "dng.py")  # dng.py is listed under raw/, not export/
    assert not listed(sections, PACKAGE / "raw" / "onnx.py")
