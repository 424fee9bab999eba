"""What a report shows, read from a run directory.

A run directory (see :mod:`qsem.runner.core`) is rendered generically:

* summary — ``results["summary"]`` when it is a list of strings (the
  experiment's headline lines), then every top-level scalar of ``results.json``;
* tables — every value of ``results.json`` that is a list of flat dicts (or a
  dict of such lists, titled ``key.sub``), and every dict of scalars; each with
  the meaning of its columns (of its keys, for a dict of scalars) from
  ``results["columns"][title]`` (:data:`COLUMNS_KEY`), listed under the table;
* figures — every ``*.png`` in the run directory and in ``plots/``, captioned
  by its file stem; the one named after the experiment (its overview, e.g.
  ``story.png``) first, the others by path;
* config — ``config.json``, flattened to dotted keys;
* run info — status, seeds, versions, machine and sessions from ``run_info.json``.

Missing files (a failed or interrupted run) leave their part empty; nothing is invented.

>>> flatten({"a": 1, "optim": {"lr": 0.1}})
{'a': 1, 'optim.lr': 0.1}
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsem.circuits.errors import QsemError
from qsem.io import read_json, read_jsonl

__all__ = ["COLUMNS_KEY", "Figure", "RunData", "Table", "flatten", "load_run"]

#: ``results[COLUMNS_KEY] = {table title: {column (or key): meaning}}`` documents the tables.
COLUMNS_KEY = "columns"

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
PLOTS_DIR = "plots"

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Figure:
    """One embedded PNG: caption (file stem), path relative to the run, base64 data."""

    caption: str
    name: str
    data: str


@dataclass(frozen=True)
class Table:
    """A list of flat dicts as rows under the union of their keys (first-seen order)."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    #: meaning of each column (of each row key, for a key / value table), where documented
    docs: dict[str, str] = field(default_factory=dict)

    @property
    def documented(self) -> list[str]:
        """What :attr:`docs` must explain: the columns, or a key / value table's keys."""
        return [r[0] for r in self.rows] if self.columns == ["key", "value"] else self.columns


@dataclass
class RunData:
    """Everything a report shows about one run directory."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    summary_lines: list[str] = field(default_factory=list)
    scalars: dict[str, Scalar] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    last_metrics: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        status = self.info.get("status")
        if isinstance(status, str):
            return status
        return "completed" if self.results else "unknown"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"a.b": leaf}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) and item:
            out.update(flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def cell(value: Any) -> str:
    """A value as table text: numbers to 6 significant digits, the rest as compact JSON."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, separators=(",", ": "), default=str)


def _flat_rows(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(r, dict) and all(_is_scalar(v) for v in r.values()) for r in value)
    )


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return Table(title, columns, [[cell(r.get(c, "")) for c in columns] for r in rows])


def tables_of(results: Mapping[str, Any]) -> list[Table]:
    """Every list of flat dicts in ``results`` (top level, or one dict level down), and
    every top-level dict of scalars (as a key / value table)."""
    out: list[Table] = []
    for key, value in results.items():
        if key == COLUMNS_KEY:
            continue
        if _flat_rows(value):
            out.append(_table(key, value))
        elif isinstance(value, dict) and value and all(_is_scalar(v) for v in value.values()):
            out.append(Table(key, ["key", "value"], [[str(k), cell(v)] for k, v in value.items()]))
        elif isinstance(value, dict):
            out.extend(
                _table(f"{key}.{sub}", rows) for sub, rows in value.items() if _flat_rows(rows)
            )
    docs = results.get(COLUMNS_KEY)
    if isinstance(docs, dict):
        for table in out:
            mine = docs.get(table.title)
            if isinstance(mine, dict):
                known = table.documented
                table.docs.update({str(k): str(v) for k, v in mine.items() if k in known})
    return out


def figures_of(run_dir: Path, overview: str | None = None) -> list[Figure]:
    """Every ``*.png`` of the run directory and ``plots/``, sorted by path, with
    ``<overview>.png`` (the experiment's own overview figure) first."""
    paths = sorted(run_dir.glob("*.png")) + sorted((run_dir / PLOTS_DIR).glob("*.png"))
    paths.sort(key=lambda p: p.name != f"{overview}.png")  # stable: the rest keep their order
    return [
        Figure(
            caption=p.stem,
            name=p.relative_to(run_dir).as_posix(),
            data=base64.b64encode(p.read_bytes()).decode("ascii"),
        )
        for p in paths
        if p.is_file()
    ]


def _read(path: Path, problems: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return read_json(path)
    except QsemError as exc:
        problems.append(str(exc))
        return None


def load_run(run_dir: str | os.PathLike[str]) -> RunData:
    """Read a run directory; a path that is not one raises :class:`QsemError`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise QsemError(f"{path}: not a run directory (it does not exist or is not a directory)")
    if not any((path / n).exists() for n in (CONFIG_FILE, RUN_INFO_FILE, RESULTS_FILE)):
        raise QsemError(
            f"{path}: not a run directory (no {CONFIG_FILE}, {RUN_INFO_FILE} or {RESULTS_FILE})"
        )
    problems: list[str] = []
    config = _read(path / CONFIG_FILE, problems)
    info = _read(path / RUN_INFO_FILE, problems)
    results = _read(path / RESULTS_FILE, problems)
    run = RunData(
        path=path,
        name=path.resolve().name,
        config=config if isinstance(config, dict) else {},
        info=info if isinstance(info, dict) else {},
        results=results if isinstance(results, dict) else {},
        problems=problems,
    )
    summary = run.results.get("summary")
    if isinstance(summary, list) and all(isinstance(s, str) for s in summary):
        run.summary_lines = list(summary)
    run.scalars = {
        k: v for k, v in run.results.items() if _is_scalar(v) and not isinstance(v, dict)
    }
    run.tables = tables_of(run.results)
    experiment = run.info.get("experiment")
    run.figures = figures_of(path, experiment if isinstance(experiment, str) else None)
    if (path / METRICS_FILE).exists():
        try:
            records = read_jsonl(path / METRICS_FILE)
        except QsemError as exc:
            problems.append(str(exc))
            records = []
        if records:
            run.last_metrics = records[-1]
    return run
