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

from unisp.errors import ConfigError

T = TypeVar("T")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → ``(["a", "b"], 3)``; the value is parsed as YAML (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value (e.g. isp.demosaic=menon)")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
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


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML file (or its defaults when ``path`` is None) plus overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror or e})") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
        data = loaded
    data = apply_overrides(data, overrides or [])
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path is not None else str(e)) from None


def to_dict(config: Any) -> dict:
    """A dataclass config as plain JSON/YAML-safe data."""
    return pydantic.TypeAdapter(type(config)).dump_python(config, mode="json")
