"""Import layering: a lower layer of unisp never imports a higher one.

Data flows one way (``../shared/STYLE.md``): RAW file → frame → packed tensor → generator →
losses → optimiser → checkpoint → export / report. Each module's imports (top-level, inside
functions and under ``TYPE_CHECKING`` alike) are read from its source with :mod:`ast`, so nothing
is imported to check them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import unisp

#: The layers from the bottom up; a module may import its own layer and any below it.
#: Top-level utility modules (errors, file I/O, recipes, devices, progress) are the ground floor.
#: ``metrics`` (PSNR, SSIM, ΔE2000, LPIPS) sits just above ``isp``: the losses use SSIM, the loop
#: validates with PSNR and export checks parity with them, so they cannot live in ``eval``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "fileio", "config", "device", "progress"),
    ("raw",),
    ("isp",),
    ("metrics",),
    ("synth",),
    ("data",),
    ("models",),
    ("losses",),
    ("train",),
    ("eval",),
    ("export",),
    ("process", "demo"),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
LAYER_NAMES = {rank: "/".join(n or "unisp" for n in names) for rank, names in enumerate(LAYERS)}
PACKAGE = Path(unisp.__file__).parent


def module_name(path: Path, root: Path) -> str:
    """``unisp.eval.report`` for ``root/eval/report.py``, ``unisp.eval`` for ``root/eval/__init__.py``."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((root.name, *parts))


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every ``unisp`` module ``path`` imports (``from unisp.x import y`` counts as ``unisp.x``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            if node.module is None:  # `from . import x`: x is a module
                found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m == root.name or m.startswith(root.name + ".")}


def layer_of(module: str) -> str:
    """The layer key of a module: ``eval`` for ``unisp.eval.report``, ``""`` for ``unisp`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(root: Path) -> list[str]:
    """One line per import of a higher layer, and per module in no layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        if layer_of(name) not in RANK:
            problems.append(f"{name}: in no layer (add it to LAYERS in tests/test_layering.py)")
            continue
        own = RANK[layer_of(name)]
        for target in sorted(imported_modules(path, root)):
            rank = RANK.get(layer_of(target))
            if rank is not None and rank > own:
                problems.append(f"{name} imports {target}: {LAYER_NAMES[own]} is below {LAYER_NAMES[rank]}")
    return problems


def test_no_lower_layer_imports_a_higher_one():
    assert violations(PACKAGE) == []


def test_every_layer_exists():
    """Each name in LAYERS is a module or package of unisp (a renamed one must be renamed here)."""
    for name in RANK:
        if name:
            assert (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir(), name


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_checker_finds_an_upward_import(tmp_path):
    root = _tree(tmp_path / "unisp", {
        "__init__.py": "",
        "raw/__init__.py": "",
        "raw/io.py": "def f():\n    from unisp.train.loop import train\n",
        "train/__init__.py": "",
        "train/loop.py": "from unisp.raw.io import f\n",
    })
    assert violations(root) == ["unisp.raw.io imports unisp.train.loop: raw is below train"]


def test_checker_resolves_relative_imports(tmp_path):
    root = _tree(tmp_path / "unisp", {
        "__init__.py": "",
        "models/__init__.py": "",
        "models/base.py": "from ..eval import report\nfrom . import registry\n",
        "models/registry.py": "",
        "eval/__init__.py": "",
        "eval/report.py": "",
    })
    assert violations(root) == [
        "unisp.models.base imports unisp.eval: models is below eval",
    ]


def test_checker_names_a_module_in_no_layer(tmp_path):
    root = _tree(tmp_path / "unisp", {"__init__.py": "", "extras.py": "import unisp\n"})
    assert violations(root) == ["unisp.extras: in no layer (add it to LAYERS in tests/test_layering.py)"]


@pytest.mark.parametrize("module, layer", [("unisp", ""), ("unisp.cli", "cli"), ("unisp.eval.report", "eval")])
def test_layer_of(module, layer):
    assert layer_of(module) == layer
