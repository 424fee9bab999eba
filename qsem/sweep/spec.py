"""What a sweep runs: seeds, a grid of config values, and the trials they make.

A sweep of experiment ``E`` with fixed overrides ``O``, grid
``{k_1: [v_11, v_12, ...], k_2: [...]}`` and seeds ``S`` runs one trial per
element of ``(v_1 × v_2 × ...) × S``: the config ``defaults < O < k_1=v_1j, ...``
with ``seed = s``. A trial's identity is ``(config hash, seed)``, where the hash
is the SHA-256 of the canonical JSON of the full config without its seed; its
run directory is ``OUT/k_1=v_1j,k_2=v_2j/seed-s`` (``OUT/seed-s`` without a grid).

>>> parse_seeds("0-2,7")
[0, 1, 2, 7]
>>> parse_grid(["lr=0.01,0.02", "head=qutrit"])
{'lr': ['0.01', '0.02'], 'head': ['qutrit']}
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsem.runner import ConfigError, Experiment
from qsem.runner.config import build_config, layer_config
from qsem.runner.safety import check_seed

__all__ = [
    "MAX_TRIALS",
    "Trial",
    "config_hash",
    "grid_label",
    "make_trials",
    "parse_grid",
    "parse_seeds",
]

_RANGE = re.compile(r"^(\d+)-(\d+)$")
#: A sweep runs at most this many trials (seeds × grid points): each is a run directory
#: and a ledger row, so a typo such as ``--seeds 0-99999999`` is refused before anything
#: is made, instead of filling memory and disk.
MAX_TRIALS = 10_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or a mix (``"0-4,10"``) -> the sorted distinct seeds.

    Seeds are non-negative integers; a repeated seed, an empty range or more than
    :data:`MAX_TRIALS` seeds is an error (the count is checked before any list is made).
    """
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        m = _RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ConfigError(f"--seeds {text!r}: range {part!r} is empty (write LOW-HIGH)")
            _check_count(len(seeds) + hi - lo + 1, f"--seeds {text!r}")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            _check_count(len(seeds) + 1, f"--seeds {text!r}")
            seeds.append(int(part))
        elif part.startswith("-"):
            raise ConfigError(f"--seeds {text!r}: seeds are integers >= 0, got {part!r}")
        else:
            raise ConfigError(
                f"--seeds {text!r}: {part!r} is not a seed or a range; write e.g. 0-9 or 0,3,5"
            )
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise ConfigError(f"--seeds {text!r}: seed {dup} is given twice")
    return sorted(seeds)


def _check_count(n: int, what: str) -> None:
    if n > MAX_TRIALS:
        raise ConfigError(
            f"{what}: {n} trials, more than a sweep runs (at most {MAX_TRIALS}); "
            "split it into several sweeps"
        )


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so list values (``[1,2],[3]``) survive."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["lr=0.01,0.02", "head=qutrit,softmax"]`` -> ``{key: [value text, ...]}``.

    Values are split on commas outside brackets; each key once, each value once.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, rest = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {item!r} is not of the form key=v1,v2,...")
        if key == "seed":
            raise ConfigError("--grid seed=...: give the seeds with --seeds instead")
        if key in grid:
            raise ConfigError(f"--grid key '{key}' is given twice")
        values = _split_values(rest)
        if any(v == "" for v in values):
            raise ConfigError(f"--grid {item!r}: an empty value (check the commas)")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {item!r}: a value is given twice")
        grid[key] = values
    return grid


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of SHA-256 of the canonical JSON of ``config`` minus ``seed``."""
    body = {k: v for k, v in config.items() if k != "seed"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def grid_label(point: Mapping[str, str]) -> str:
    """``{"lr": "0.01", "head": "qutrit"}`` -> ``"lr=0.01,head=qutrit"`` (filesystem safe)."""
    text = ",".join(f"{k}={v}" for k, v in point.items())
    return _UNSAFE.sub("_", text)


@dataclass(frozen=True)
class Trial:
    """One (config, seed) of a sweep.

    Attributes:
        point: the grid assignment ``{key: value text}`` (empty without a grid).
        label: :func:`grid_label` of ``point`` (``""`` without a grid).
        seed: the run's seed.
        overrides: every ``key=value`` the run gets (fixed ones, then the grid's).
        config: the full config as run (seed included), a plain dict.
        config_hash: :func:`config_hash` of ``config``.
        run_dir: the run directory, relative to the sweep directory.
    """

    point: dict[str, str]
    label: str
    seed: int
    overrides: tuple[str, ...]
    config: dict[str, Any]
    config_hash: str
    run_dir: str

    @property
    def key(self) -> tuple[str, int]:
        """The trial's identity: ``(config_hash, seed)``."""
        return (self.config_hash, self.seed)


def make_trials(
    experiment: Experiment,
    seeds: Sequence[int],
    grid: Mapping[str, Sequence[str]],
    fixed: Sequence[str] = (),
) -> list[Trial]:
    """Every trial of the sweep, each config checked against the experiment's schema.

    The checks (unknown key, wrong type, the config's own ``__post_init__``) run
    for every grid point before anything runs; an error names the grid value.

    >>> from qsem.experiments import get_experiment
    >>> ts = make_trials(get_experiment("demo"), [0, 1], {"lr": ["0.1", "0.2"]})
    >>> [t.run_dir for t in ts][:2]
    ['lr=0.1/seed-0', 'lr=0.1/seed-1']
    """
    if not seeds:
        raise ConfigError("--seeds: no seeds given")
    for seed in seeds:
        check_seed(seed, "--seeds")
    for item in fixed:
        try:
            build_config(experiment.defaults, layer_config(experiment.defaults, overrides=[item]))
        except ConfigError as exc:
            raise ConfigError(f"override {item}: {exc}") from None
    keys = list(grid)
    _check_count(len(seeds) * math.prod(len(grid[k]) for k in keys), "--seeds × --grid")
    trials: list[Trial] = []
    seen: dict[str, str] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        overrides = (*fixed, *(f"{k}={v}" for k, v in point.items()))
        label = grid_label(point)
        try:
            base = layer_config(experiment.defaults, overrides=overrides)
            build_config(experiment.defaults, base)
        except ConfigError as exc:
            where = f"--grid {label}" if label else "the fixed overrides"
            raise ConfigError(f"{where}: {exc}") from None
        digest = config_hash(base)
        if digest in seen:
            raise ConfigError(
                f"--grid points {seen[digest]} and {label} give the same config "
                "(a value written two ways?)"
            )
        seen[digest] = label
        for seed in seeds:
            config = layer_config(experiment.defaults, overrides=overrides, seed=int(seed))
            build_config(experiment.defaults, config)
            run_dir = str(Path(label) / f"seed-{seed}") if label else f"seed-{seed}"
            trials.append(Trial(point, label, int(seed), tuple(overrides), config, digest, run_dir))
    return trials
