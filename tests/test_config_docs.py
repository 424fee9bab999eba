"""Config-key documentation: ``describe_keys`` reads the ``#:`` comments, and every key
of every registered experiment has a meaning."""

from __future__ import annotations

import doctest
from dataclasses import dataclass, field

import pytest

import qsem.runner.keydocs
from qsem.experiments import EXPERIMENTS
from qsem.runner.config import KeyDoc, defaults_dict, describe_keys


@dataclass(frozen=True)
class _Inner:
    #: probe every this many steps
    probe_every: int = 10
    #: first line of a meaning
    #: and its second line
    tau: float = 2.0
    names: tuple[str, ...] = ("a", "b")  #: a trailing comment
    undocumented: bool = False


@dataclass(frozen=True)
class _Outer:
    #: the seed
    seed: int = 0
    # a plain comment is not a meaning
    lr: float | None = None
    #: the nested section (sections are not keys)
    inner: _Inner = field(default_factory=lambda: _Inner(probe_every=3))
    #: a list
    widths: list[int] = field(default_factory=lambda: [4, 8])


@dataclass(frozen=True)
class _Child(_Outer):
    seed: int = 7  # redefined without a comment: keeps the base meaning
    #: a new key of the child
    extra: str = "x"


def test_describe_keys_reads_comments_types_and_nested_defaults() -> None:
    docs = describe_keys(_Outer())
    assert [d.key for d in docs] == [
        "seed",
        "lr",
        "inner.probe_every",
        "inner.tau",
        "inner.names",
        "inner.undocumented",
        "widths",
    ]
    by = {d.key: d for d in docs}
    assert by["seed"] == KeyDoc("seed", "int", 0, "the seed")
    assert by["lr"] == KeyDoc("lr", "float | None", None, "")
    # the instance's nested default (3), not the nested class's default (10)
    assert by["inner.probe_every"] == KeyDoc(
        "inner.probe_every", "int", 3, "probe every this many steps"
    )
    assert by["inner.tau"].help == "first line of a meaning and its second line"
    assert by["inner.names"] == KeyDoc("inner.names", "list[str]", ["a", "b"], "a trailing comment")
    assert by["inner.undocumented"].help == ""
    assert by["widths"] == KeyDoc("widths", "list[int]", [4, 8], "a list")


def test_describe_keys_inherits_meanings_and_adds_new_fields() -> None:
    by = {d.key: d for d in describe_keys(_Child())}
    assert by["seed"] == KeyDoc("seed", "int", 7, "the seed")
    assert by["extra"] == KeyDoc("extra", "str", "x", "a new key of the child")
    assert by["inner.tau"].default == 2.0


def test_describe_keys_on_a_dict_takes_meanings_from_helps() -> None:
    defaults = {"seed": 1, "opt": {"lr": 0.5, "betas": [0.9, 0.99]}, "note": None}
    docs = describe_keys(defaults, helps={"opt.lr": "step size"})
    assert docs == [
        KeyDoc("seed", "int", 1, ""),
        KeyDoc("opt.lr", "float", 0.5, "step size"),
        KeyDoc("opt.betas", "list[float]", [0.9, 0.99], ""),
        KeyDoc("note", "any", None, ""),
    ]


def test_keydocs_doctests() -> None:
    result = doctest.testmod(qsem.runner.keydocs, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2 and result.failed == 0


def _flat(tree: dict[str, object], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in tree.items():
        out.extend(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k])
    return out


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_key_has_a_meaning(name: str) -> None:
    defaults = EXPERIMENTS[name].defaults
    docs = describe_keys(defaults)
    # every key a config file or override can set is described, once, in order
    assert [d.key for d in docs] == _flat(defaults_dict(defaults))
    missing = [d.key for d in docs if not d.help.strip()]
    assert not missing, f"experiment {name!r}: config keys without a '#:' meaning: {missing}"
