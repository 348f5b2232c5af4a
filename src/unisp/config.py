"""Typed configuration: YAML files and ``key=value`` overrides validated into dataclasses.

Every config in unisp is a (possibly nested) dataclass. :func:`load_config` reads a YAML file,
applies dotted overrides such as ``isp.demosaic=menon``, rejects unknown keys and checks every
value's type with pydantic, so a mistake is reported as one line naming the key and, where the
type is a choice, the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from unisp.errors import ConfigError, UnispError
from unisp.fileio import read_input_bytes

T = TypeVar("T")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → ``(["a", "b"], 3)``; the value is parsed as YAML (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. isp.demosaic=menon)")
    where = f"override {key.strip()!r}"
    try:
        parsed = safe_load_yaml(value, where) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    check_shape(parsed, where)
    return key.strip().split("."), parsed


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of ``data`` with each ``dotted.key=value`` override set."""
    data = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key {'.'.join(path)!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _deep_copy(data: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def check_keys(cls: type, data: dict, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for any key in ``data`` that is not a field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in names:
            allowed = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key {name!r} (allowed here: {allowed})")
        sub = hints.get(key)
        if isinstance(sub, type) and dataclasses.is_dataclass(sub) and isinstance(value, dict):
            check_keys(sub, value, prefix=f"{name}.")


def check_finite(data: Any, prefix: str = "") -> None:
    """Raise :class:`ConfigError` for a NaN or infinite number anywhere in ``data`` (YAML's ``.nan``,
    ``.inf``): no setting of unisp means anything with one, and ``lr <= 0`` style checks let NaN through."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        name = f"{prefix}{key}" if isinstance(data, dict) else f"{prefix.rstrip('.')}[{key}]"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key {name!r} must be a finite number, got {value}")
        check_finite(value, f"{name}.")


def from_dict(cls: type[T], data: dict) -> T:
    """Validate ``data`` into dataclass ``cls``; errors name the key and what was expected."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(data).__name__}")
    check_keys(cls, data)
    check_finite(data)
    try:
        return pydantic.TypeAdapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"config key {key!r}: {err['msg']} (got {err.get('input')!r})") from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # raised by a dataclass's own __post_init__ checks
        raise ConfigError(str(e)) from None


#: Largest config file read, in bytes: the shipped recipes are about 2 KB, so 1 MB is room for any
#: recipe a person writes, and a wrong ``--config`` (a model file, an image, ``/dev/zero``) is
#: refused before it is read into memory and parsed.
MAX_CONFIG_BYTES = 1_000_000
#: Deepest nesting of sections and lists a config may have: recipes nest two levels (``losses.*``,
#: ``data.*``, ``betas: [...]``); 32 leaves room and keeps every walk over the data shallow.
MAX_CONFIG_DEPTH = 32
#: Most values (keys, list items) a config may hold once YAML aliases are expanded: a recipe has
#: about 100; a few aliases of aliases (a "billion laughs" document) would otherwise make the
#: checks walk billions of values.
MAX_CONFIG_VALUES = 100_000


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (or its defaults when ``path`` is None) plus overrides."""
    data = read_config_file(Path(path)) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def read_config_file(path: Path, what: str = "config file") -> dict:
    """The mapping in YAML file ``path``; every problem is one :class:`ConfigError` naming the file.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read (a FIFO would block, a device
    would never end), and the document must fit :data:`MAX_CONFIG_DEPTH` and :data:`MAX_CONFIG_VALUES`.
    ``what`` names the kind of file in messages (a recipe's ``"config file"``, a ``"camera file"``).
    """
    try:
        raw = read_input_bytes(path, limit=MAX_CONFIG_BYTES, what=what)
    except UnispError as e:
        raise ConfigError(str(e)) from None
    try:
        loaded = parse_yaml(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid YAML (not UTF-8 text: {e.reason} at byte {e.start})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys to values")
    return loaded


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML, within the config limits; errors name ``where`` (a file)."""
    try:
        data = safe_load_yaml(text, where)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from None
    check_shape(data, where)
    return data


def safe_load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load``, with a document nested beyond Python's recursion limit as a :class:`ConfigError`."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply for a config (at most {MAX_CONFIG_DEPTH} levels)") from None


def check_shape(data: Any, where: str) -> None:
    """Raise :class:`ConfigError` when ``data`` nests deeper than :data:`MAX_CONFIG_DEPTH` or holds more
    than :data:`MAX_CONFIG_VALUES` values (aliases counted each time they are used); walked without recursion."""
    pending, count = [(data, 0)], 0
    while pending:
        node, depth = pending.pop()
        count += 1
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where}: nested too deeply for a config (at most {MAX_CONFIG_DEPTH} levels)")
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{where}: more than {MAX_CONFIG_VALUES:,} values, too many for a config (YAML aliases?)")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children)


def to_dict(config: Any) -> dict:
    """A dataclass config as plain JSON/YAML-safe data."""
    return pydantic.TypeAdapter(type(config)).dump_python(config, mode="json")
