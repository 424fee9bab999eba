"""Experiment configuration: typed defaults, layered overrides, clear errors.

An experiment's defaults are a dataclass instance (fields typed with ``bool``,
``int``, ``float``, ``str``, ``list[T]`` / ``tuple[T, ...]``, ``T | None`` or a
nested dataclass) or a nested ``dict`` whose values' types are the expected
types. Layers, later winning:

1. the defaults,
2. a config file (``.json`` or ``.toml``), keys checked against the defaults,
3. ``key=value`` overrides from the command line (dots reach nested keys),
   converted from text to the default's type.

Unknown keys and values of the wrong type raise :class:`ConfigError` naming the
key and what was expected.

>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     seed: int = 0
...     lr: float = 0.1
>>> layered = layer_config(C(), overrides=["lr=0.5", "seed=3"])
>>> layered
{'seed': 3, 'lr': 0.5}
>>> build_config(C(), layered)
C(seed=3, lr=0.5)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from qsem.circuits.errors import MissingDependencyError
from qsem.errors import ConfigError

from .keydocs import KeyDoc, describe_keys

__all__ = [
    "ConfigError",
    "KeyDoc",
    "Leaf",
    "build_config",
    "config_diff",
    "config_schema",
    "defaults_dict",
    "describe_keys",
    "layer_config",
    "load_config_file",
    "parse_override",
    "validate_config",
]


@dataclass(frozen=True)
class Leaf:
    """Expected type of one configuration value.

    ``kind`` is ``bool``, ``int``, ``float``, ``str``, ``list``, ``tuple`` or
    ``object`` (anything JSON holds); ``elem`` is the element type of a sequence.
    """

    kind: type
    optional: bool = False
    elem: Leaf | None = None

    def describe(self) -> str:
        """``"an integer"``, ``"a list of numbers or null"``, ..."""
        one = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
        many = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        if self.kind in (list, tuple):
            inner = many.get(self.elem.kind, "values") if self.elem is not None else "values"
            text = f"a list of {inner}"
        else:
            text = one.get(self.kind, "a JSON value")
        return f"{text} or null" if self.optional else text


Schema = dict[str, Union[Leaf, "Schema"]]


# --------------------------------------------------------------------------
# schema from the defaults
# --------------------------------------------------------------------------


def _leaf_from_hint(hint: Any, key: str) -> Leaf | Schema:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(args) == len(typing.get_args(hint)):
            raise TypeError(f"config field {key!r}: only 'T | None' unions are supported")
        inner = _leaf_from_hint(args[0], key)
        if not isinstance(inner, Leaf):
            raise TypeError(f"config field {key!r}: a nested section cannot be optional")
        return dataclasses.replace(inner, optional=True)
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        elem = _leaf_from_hint(args[0], key) if args else None
        if elem is not None and (not isinstance(elem, Leaf) or elem.kind in (list, tuple)):
            raise TypeError(f"config field {key!r}: lists may only hold plain values")
        return Leaf(tuple if origin is tuple else list, elem=elem)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _schema_of_dataclass(hint, key + ".")
    if hint in (bool, int, float, str):
        return Leaf(hint)
    if hint in (list, tuple):
        return Leaf(hint)
    if hint is Any or hint is object:
        return Leaf(object, optional=True)
    raise TypeError(f"config field {key!r}: unsupported type {hint!r}")


def _schema_of_dataclass(cls: type, prefix: str = "") -> Schema:
    hints = typing.get_type_hints(cls)
    return {
        f.name: _leaf_from_hint(hints[f.name], prefix + f.name) for f in dataclasses.fields(cls)
    }


def _leaf_from_value(value: Any, key: str) -> Leaf | Schema:
    if isinstance(value, Mapping):
        return {
            str(k): _leaf_from_value(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()
        }
    if value is None:
        return Leaf(object, optional=True)
    if isinstance(value, (bool, int, float, str)):
        return Leaf(type(value))
    if isinstance(value, (list, tuple)):
        elem = None
        if value and all(type(v) is type(value[0]) for v in value):
            first = _leaf_from_value(value[0], key)
            elem = first if isinstance(first, Leaf) and first.kind not in (list, tuple) else None
        return Leaf(type(value) if type(value) in (list, tuple) else list, elem=elem)
    raise TypeError(f"config default {key!r}: unsupported type {type(value).__name__}")


def config_schema(defaults: Any) -> Schema:
    """The expected types of every key of ``defaults`` (a dataclass instance or a dict)."""
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        return _schema_of_dataclass(type(defaults))
    if isinstance(defaults, Mapping):
        schema = _leaf_from_value(defaults, "")
        assert isinstance(schema, dict)
        return schema
    raise TypeError(f"config defaults must be a dataclass instance or a dict, got {type(defaults)}")


def defaults_dict(defaults: Any) -> dict[str, Any]:
    """The defaults as a plain nested dict of JSON values (tuples become lists)."""
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        raw: Any = dataclasses.asdict(defaults)
    else:
        raw = copy.deepcopy(dict(defaults))
    return validate_config(raw, config_schema(defaults), "defaults")


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------


def _bad(key: str, leaf: Leaf, value: Any, source: str) -> ConfigError:
    return ConfigError(f"config key '{key}' ({source}): expected {leaf.describe()}, got {value!r}")


def _convert_json(value: Any, leaf: Leaf, key: str, source: str) -> Any:
    """Check / convert a value read from JSON, TOML or a stored config."""
    if value is None:
        if leaf.optional:
            return None
        raise _bad(key, leaf, value, source)
    kind = leaf.kind
    if kind is object:
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _int_in_range(value, key, source)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(value):
                raise ConfigError(f"config key '{key}' ({source}): NaN is not allowed")
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind in (list, tuple) and isinstance(value, (list, tuple)):
        if leaf.elem is None:
            return list(value)
        return [_convert_json(v, leaf.elem, f"{key}[{i}]", source) for i, v in enumerate(value)]
    raise _bad(key, leaf, value, source)


#: Integer config values must satisfy ``|value| < INT_LIMIT`` (what torch, NumPy and a
#: checkpoint hold as int64); ``epochs=99999999999999999999`` is refused, not run.
INT_LIMIT = 2**63


def _int_in_range(value: int, key: str, source: str) -> int:
    if not -INT_LIMIT < value < INT_LIMIT:
        raise ConfigError(
            f"config key '{key}' ({source}): {value} is out of range (integers lie "
            "within ±(2**63 - 1))"
        )
    return value


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert_text(text: str, leaf: Leaf, key: str) -> Any:
    """Convert the text of a ``key=value`` override to the type ``leaf`` expects."""
    source = "command line"
    if leaf.optional and text.strip().lower() in ("none", "null"):
        return None
    kind = leaf.kind
    if kind is object:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    if kind is str:
        return text
    if kind is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise _bad(key, leaf, text, source)
    if kind is int:
        try:
            number = int(text.strip())
        except ValueError:
            raise _bad(key, leaf, text, source) from None
        return _int_in_range(number, key, source)
    if kind is float:
        try:
            value = float(text.strip())
        except ValueError:
            raise _bad(key, leaf, text, source) from None
        if math.isnan(value):
            raise ConfigError(f"config key '{key}' ({source}): NaN is not allowed")
        return value
    # a list: JSON ("[1, 2]") or comma separated ("1,2"; empty text is an empty list)
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            raise _bad(key, leaf, text, source) from None
        return _convert_json(items, leaf, key, source)
    parts = [p.strip() for p in stripped.split(",")] if stripped else []
    if leaf.elem is None:
        return [_convert_text(p, Leaf(object), f"{key}[{i}]") for i, p in enumerate(parts)]
    return [_convert_text(p, leaf.elem, f"{key}[{i}]") for i, p in enumerate(parts)]


def _known(schema: Schema) -> str:
    return ", ".join(sorted(schema)) or "(none)"


def validate_config(config: Any, schema: Schema, source: str, prefix: str = "") -> dict[str, Any]:
    """Check a whole nested config (every key present, known and well typed); returns a copy."""
    if not isinstance(config, Mapping):
        where = f"config section '{prefix.rstrip('.')}'" if prefix else "config"
        raise ConfigError(f"{where} ({source}): expected a table of keys, got {config!r}")
    unknown = [k for k in config if k not in schema]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' ({source}); "
            f"known keys{' in ' + prefix.rstrip('.') if prefix else ''}: {_known(schema)}"
        )
    missing = [k for k in schema if k not in config]
    if missing:
        raise ConfigError(f"config key '{prefix}{missing[0]}' is missing ({source})")
    out: dict[str, Any] = {}
    for k, spec in schema.items():
        if isinstance(spec, dict):
            out[k] = validate_config(config[k], spec, source, f"{prefix}{k}.")
        else:
            out[k] = _convert_json(config[k], spec, prefix + k, source)
    return out


def _merge(
    base: dict[str, Any], update: Mapping[str, Any], schema: Schema, source: str, prefix: str
) -> None:
    for k, v in update.items():
        key = prefix + str(k)
        if k not in schema:
            where = f" in {prefix.rstrip('.')}" if prefix else ""
            raise ConfigError(
                f"unknown config key '{key}' ({source}); known keys{where}: {_known(schema)}"
            )
        spec = schema[k]
        if isinstance(spec, dict):
            if not isinstance(v, Mapping):
                raise ConfigError(
                    f"config key '{key}' ({source}) is a section; give a table of its keys "
                    f"({_known(spec)}), got {v!r}"
                )
            _merge(base[k], v, spec, source, key + ".")
        else:
            base[k] = _convert_json(v, spec, key, source)


def parse_override(item: str) -> tuple[str, str]:
    """Split ``"key=value"``; anything else raises ConfigError."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    return key, value


def _apply_override(config: dict[str, Any], schema: Schema, item: str) -> None:
    key, text = parse_override(item)
    parts = key.split(".")
    node: dict[str, Any] = config
    spec: Schema | Leaf = schema
    for depth, part in enumerate(parts):
        assert isinstance(spec, dict)
        if part not in spec:
            where = f" in {'.'.join(parts[:depth])}" if depth else ""
            raise ConfigError(
                f"unknown config key '{key}' (command line); known keys{where}: {_known(spec)}"
            )
        spec = spec[part]
        if depth < len(parts) - 1:
            if not isinstance(spec, dict):
                raise ConfigError(f"config key '{'.'.join(parts[: depth + 1])}' has no sub-keys")
            node = node[part]
    if isinstance(spec, dict):
        raise ConfigError(
            f"config key '{key}' is a section; set its keys with {key}.KEY=VALUE "
            f"(keys: {_known(spec)})"
        )
    node[parts[-1]] = _convert_text(text, spec, key)


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``.json`` or ``.toml`` config file into a dict (errors name the file)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise ConfigError(
            f"config file {p}: unknown format {suffix or '(no suffix)'!r}; use .json or .toml"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot be read ({exc.strerror or exc})") from None
    if suffix == ".json":
        try:
            loaded = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"config file {p}: not valid JSON ({exc})") from None
    else:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 only
            try:
                import tomli as tomllib
            except ImportError:
                raise MissingDependencyError(
                    f"config file {p}: reading TOML on Python 3.10 needs 'tomli' "
                    "(pip install tomli)"
                ) from None
        try:
            loaded = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {p}: not valid TOML ({exc})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p}: expected a table of keys at the top level")
    return loaded


def layer_config(
    defaults: Any,
    *,
    file: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    seed: int | None = None,
) -> dict[str, Any]:
    """Defaults, then ``file`` (a path or an already loaded mapping), then ``key=value``
    ``overrides``, then ``seed`` (when given); returns the plain nested dict."""
    schema = config_schema(defaults)
    config = defaults_dict(defaults)
    if file is not None:
        loaded = file if isinstance(file, Mapping) else load_config_file(file)
        source = "config file" if isinstance(file, Mapping) else f"config file {file}"
        _merge(config, loaded, schema, source, "")
    for item in overrides:
        _apply_override(config, schema, item)
    if seed is not None:
        if "seed" not in schema:
            raise ConfigError("this experiment has no 'seed' config key")
        _merge(config, {"seed": seed}, schema, "--seed", "")
    return config


def _wants_tuple(hint: Any) -> bool:
    if hint is tuple or typing.get_origin(hint) is tuple:
        return True
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_wants_tuple(a) for a in typing.get_args(hint))
    return False


def _build_dataclass(cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint, v = hints[f.name], values[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            kwargs[f.name] = _build_dataclass(hint, v)
        elif v is not None and _wants_tuple(hint):
            kwargs[f.name] = tuple(v)
        else:
            kwargs[f.name] = copy.deepcopy(v)
    return cls(**kwargs)


def build_config(defaults: Any, config: Mapping[str, Any]) -> Any:
    """The object an experiment's ``run`` receives: a dataclass like ``defaults``
    (its ``__post_init__`` checks run here) or a deep copy of the dict."""
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        return _build_dataclass(type(defaults), config)
    return copy.deepcopy(dict(config))


def config_diff(
    stored: Mapping[str, Any], requested: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Human-readable differences ``key: stored -> requested`` between two configs."""
    out: list[str] = []
    for k in sorted(set(stored) | set(requested)):
        key = prefix + str(k)
        if k not in stored:
            out.append(f"{key}: (absent) -> {requested[k]!r}")
        elif k not in requested:
            out.append(f"{key}: {stored[k]!r} -> (absent)")
        elif isinstance(stored[k], Mapping) and isinstance(requested[k], Mapping):
            out.extend(config_diff(stored[k], requested[k], key + "."))
        elif stored[k] != requested[k] or type(stored[k]) is not type(requested[k]):
            out.append(f"{key}: {stored[k]!r} -> {requested[k]!r}")
    return out
