"""One line of documentation per config key, read from the config dataclasses.

The meaning of a config key is the ``#:`` comment on the line(s) directly above
its dataclass field (the Sphinx attribute-comment style); a trailing
``x: int = 1  #: text`` comment works too. A field a subclass redefines without
a comment keeps the meaning its base class gives it. Nested dataclass sections
give dotted keys (``distill.probe_every``). ``qsem run NAME --help`` and the
config reference of the documentation are both built from
:func:`describe_keys`, so neither can drift from the code.

>>> from qsem.experiments.kleene import KleeneConfig
>>> doc = describe_keys(KleeneConfig())[0]
>>> doc.key, doc.type, doc.default, doc.help
('seed', 'int', 0, 'the random seed (data, initialisation and batch order follow it)')
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Leaf, Schema

__all__ = ["KeyDoc", "describe_keys", "field_comments"]


@dataclass(frozen=True)
class KeyDoc:
    """The documentation of one config key.

    Attributes:
        key: dotted name, as ``key=value`` overrides spell it (``distill.tau``).
        type: the expected type, written like a Python annotation
            (``int``, ``float | None``, ``list[str]``, ``any``).
        default: the default value as JSON holds it (tuples become lists).
        help: the one-line meaning (empty when the field has no ``#:`` comment).
    """

    key: str
    type: str
    default: Any
    help: str


def _comment_text(line: str) -> str | None:
    """The text of a ``#:`` comment line, or None when ``line`` is not one."""
    stripped = line.strip()
    if not stripped.startswith("#:"):
        return None
    return stripped[2:].strip()


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """``field name -> #: comment`` for the fields defined in ``cls``'s own body.

    Fields without a comment are absent; a class whose source cannot be read
    (defined in an interactive session) gives an empty dict.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    tree = ast.parse(source)
    body = next(
        (n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__),
        [],
    )
    out: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        row = node.lineno - 2  # the line above the field (0-based)
        while row >= 0 and (text := _comment_text(lines[row])) is not None:
            above.insert(0, text)
            row -= 1
        if not above:
            last = lines[(node.end_lineno or node.lineno) - 1]
            _, sep, trailing = last.partition("#:")
            if sep:
                above = [trailing.strip()]
        text = " ".join(t for t in above if t)
        if text:
            out[node.target.id] = text
    return out


def _field_help(cls: type, name: str) -> str:
    """The ``#:`` comment of field ``name``: from the first class in the MRO that has one."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            text = field_comments(klass).get(name)
            if text:
                return text
    return ""


def _type_text(leaf: Leaf) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "str", object: "any"}
    if leaf.kind in (list, tuple):
        inner = _type_text(leaf.elem) if leaf.elem is not None else "any"
        text = f"list[{inner}]"
    else:
        text = names.get(leaf.kind, leaf.kind.__name__)
    return f"{text} | None" if leaf.optional and text != "any" else text


def _walk_dict(
    schema: Schema, values: Mapping[str, Any], helps: Mapping[str, str], prefix: str
) -> list[KeyDoc]:
    out: list[KeyDoc] = []
    for name, spec in schema.items():
        key = prefix + name
        if isinstance(spec, dict):
            out.extend(_walk_dict(spec, values[name], helps, key + "."))
            continue
        out.append(
            KeyDoc(key=key, type=_type_text(spec), default=values[name], help=helps.get(key, ""))
        )
    return out


def describe_keys(defaults: Any, helps: Mapping[str, str] | None = None) -> list[KeyDoc]:
    """Every leaf key of an experiment's ``defaults``, in field order.

    Args:
        defaults: a config dataclass instance (meanings from its ``#:``
            comments) or a nested dict (meanings only from ``helps``).
        helps: optional ``dotted key -> meaning``; wins over the comments.

    Returns:
        One :class:`KeyDoc` per leaf key (sections are flattened into dotted keys).

    >>> describe_keys({"lr": 0.1, "opt": {"beta": [0.9, 0.99]}}, helps={"lr": "step size"})
    ... # doctest: +NORMALIZE_WHITESPACE
    [KeyDoc(key='lr', type='float', default=0.1, help='step size'),
     KeyDoc(key='opt.beta', type='list[float]', default=[0.9, 0.99], help='')]
    """
    from .config import config_schema, defaults_dict

    schema = config_schema(defaults)
    values = defaults_dict(defaults)
    helps = dict(helps or {})
    if dataclasses.is_dataclass(defaults) and not isinstance(defaults, type):
        return _walk_dataclass(defaults, schema, values, helps, "")
    return _walk_dict(schema, values, helps, "")


def _walk_dataclass(
    obj: Any, schema: Schema, values: Mapping[str, Any], helps: Mapping[str, str], prefix: str
) -> list[KeyDoc]:
    cls = type(obj)
    out: list[KeyDoc] = []
    for name, spec in schema.items():
        key = prefix + name
        if isinstance(spec, dict):
            out.extend(_walk_dataclass(getattr(obj, name), spec, values[name], helps, key + "."))
            continue
        text = helps.get(key) or _field_help(cls, name)
        out.append(KeyDoc(key=key, type=_type_text(spec), default=values[name], help=text))
    return out
