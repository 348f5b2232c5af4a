"""The typed config loader: YAML + dotted overrides → validated dataclasses, errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from unisp.config import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_VALUES,
    apply_overrides,
    load_config,
    parse_override,
    to_dict,
)
from unisp.errors import ConfigError


@dataclass
class Inner:
    method: Literal["bilinear", "malvar"] = "malvar"
    size: int = 3


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    lr: float = 1e-3
    name: str = "run"


def test_defaults_without_file():
    assert load_config(Outer) == Outer()


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  size: 5\nlr: 0.01\n")
    config = load_config(Outer, path, ["inner.method=bilinear", "name=x"])
    assert config == Outer(inner=Inner(method="bilinear", size=5), lr=0.01, name="x")


def test_override_values_are_yaml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("flag=true") == (["flag"], True)
    assert parse_override("xs=[1, 2]") == (["xs"], [1, 2])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


def test_round_trip_through_dict():
    config = Outer(inner=Inner(size=7))
    assert load_config(Outer, None, [f"inner.size={config.inner.size}"]) == config
    assert to_dict(config) == {"inner": {"method": "malvar", "size": 7}, "lr": 0.001, "name": "run"}


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["inner.method=menon"], r"'inner.method'.*'bilinear' or 'malvar'"),
        (["inner.nope=1"], r"unknown config key 'inner.nope' \(allowed here: method, size\)"),
        (["lr=fast"], r"'lr'.*valid number"),
        (["inner.size=2.5"], r"'inner.size'"),
        (["noequals"], r"key=value"),
        (["name.sub=1"], r"'name'.*valid string"),
        (["lr=1", "lr.x=2"], r"'lr.x'.*not a section"),
    ],
)
def test_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, None, overrides)


@pytest.mark.parametrize(
    "text, match",
    [("inner: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "mapping"), ("lr: {a: 1}\n", "'lr'")],
)
def test_bad_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_nesting_is_bounded(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("lr: " + "[" * (MAX_CONFIG_DEPTH + 1) + "]" * (MAX_CONFIG_DEPTH + 1) + "\n")
    with pytest.raises(ConfigError, match="deep.yaml: nested too deeply"):
        load_config(Outer, path)
    path.write_text("lr: " + "[" * 20000 + "]" * 20000 + "\n")  # beyond Python's recursion limit
    with pytest.raises(ConfigError, match="deep.yaml: nested too deeply"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="override 'lr': nested too deeply"):
        load_config(Outer, None, ["lr=" + "[" * 20000 + "]" * 20000])


def test_aliases_cannot_multiply_a_file(tmp_path):
    path = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [" + ", ".join(["1"] * 10) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"bomb.yaml: more than {MAX_CONFIG_VALUES:,} values"):
        load_config(Outer, path)


def test_only_small_regular_files_are_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("lr: 1\n" + "#" * MAX_CONFIG_BYTES + "\n")
    with pytest.raises(ConfigError, match="big.yaml: .* bytes, more than a config file can be"):
        load_config(Outer, big)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(Outer, tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="latin1.yaml: not valid YAML \\(not UTF-8"):
        load_config(Outer, tmp_path / "latin1.yaml")
