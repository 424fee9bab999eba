"""Rendering reports: one self-contained HTML file per run, one per comparison.

The HTML has inline CSS, images as base64 ``data:`` URIs, no JavaScript and
no external reference, so it opens offline in any browser and can be mailed
as one file. Files are written atomically (a reader never sees half a report).

>>> from qsem.report import write_report  # doctest: +SKIP
>>> write_report("runs/demo-20260101-120000")  # doctest: +SKIP
PosixPath('runs/demo-20260101-120000/report.html')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import jinja2

from qsem.circuits.errors import QsemError
from qsem.io import atomic_write_text

from .collect import Figure, RunData, Table, cell, flatten, load_run

__all__ = ["REPORT_FILE", "render_comparison", "render_report", "write_comparison", "write_report"]

#: The report's file name inside a run directory.
REPORT_FILE = "report.html"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qsem.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = cell
    env.globals["flatten"] = flatten
    try:
        env.globals["qsem_version"] = metadata.version("qsem")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        env.globals["qsem_version"] = "unknown"
    return env


_SESSION_COLUMNS = ("start_time", "end_time", "wall_time_s", "status", "resumed_from")
_OVERVIEW_KEYS = (
    "experiment", "status", "seed", "start_time", "end_time", "wall_time_s",
    "checkpoint_every", "last_checkpoint", "archived_run", "cwd", "out_dir",
)  # fmt: skip


def render_report(run: RunData) -> str:
    """The HTML of one run's report (sections ``summary``, ``config``, ``figures``,
    ``tables``, ``run-info``)."""
    info = run.info
    overview = {k: info[k] for k in _OVERVIEW_KEYS if k in info}
    if "command" in info:
        overview["command"] = " ".join(str(a) for a in info["command"])
    raw = [s for s in info.get("sessions", []) if isinstance(s, dict)]
    sessions = (
        Table(
            "sessions",
            list(_SESSION_COLUMNS),
            [[cell(s.get(c)) for c in _SESSION_COLUMNS] for s in raw],
        )
        if raw
        else None
    )
    return (
        _env().get_template("report.html.j2").render(run=run, overview=overview, sessions=sessions)
    )


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) atomically and return its path.

    Works on a finished, failed or interrupted run (it shows what exists); a
    directory that is no run raises :class:`~qsem.circuits.errors.QsemError`.
    """
    run = load_run(run_dir)
    target = run.path / REPORT_FILE if out is None else Path(out)
    atomic_write_text(target, render_report(run))
    return target


def _differing(runs: Sequence[RunData]) -> Table:
    flat = [flatten(r.config) for r in runs]
    keys: list[str] = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    missing = object()
    rows = []
    for key in sorted(keys):
        values = [f.get(key, missing) for f in flat]
        shown = ["(absent)" if v is missing else cell(v) for v in values]
        if len(set(shown)) > 1:
            rows.append([key, *shown])
    return Table("config", ["key", *[r.name for r in runs]], rows)


def _metrics(runs: Sequence[RunData]) -> Table:
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k in r.scalars if k not in keys)
    rows = [[k, *[cell(r.scalars[k]) if k in r.scalars else "" for r in runs]] for k in keys]
    return Table("metrics", ["result", *[r.name for r in runs]], rows)


def render_comparison(runs: Sequence[RunData]) -> str:
    """The HTML comparing ``runs`` (sections ``runs``, ``config``, ``metrics``, ``figures``)."""
    run_table = Table(
        "runs",
        ["run", "experiment", "status", "seed", "wall_time_s", "path"],
        [
            [
                r.name,
                cell(r.info.get("experiment", "")),
                r.status,
                cell(r.config.get("seed", "")),
                cell(r.info.get("wall_time_s", "")),
                str(r.path),
            ]
            for r in runs
        ],
    )
    captions: list[str] = []
    for r in runs:
        captions.extend(f.name for f in r.figures if f.name not in captions)
    by_name: list[dict[str, Figure]] = [{f.name: f for f in r.figures} for r in runs]
    figure_rows: list[tuple[str, list[tuple[RunData, Figure | None]]]] = [
        (Path(name).stem, [(r, figs.get(name)) for r, figs in zip(runs, by_name, strict=True)])
        for name in captions
    ]
    context: dict[str, Any] = {
        "runs": runs,
        "run_table": run_table,
        "config_table": _differing(runs),
        "metric_table": _metrics(runs),
        "figure_rows": figure_rows,
    }
    return _env().get_template("compare.html.j2").render(**context)


def write_comparison(
    run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> Path:
    """Write one HTML file comparing the runs in ``run_dirs`` (at least two) to ``out``."""
    if len(run_dirs) < 2:
        raise QsemError(
            f"argument 'DIR': compare needs at least two run directories, got {len(run_dirs)}"
        )
    runs = [load_run(d) for d in run_dirs]
    names = [r.name for r in runs]
    for i, r in enumerate(runs):  # two runs called alike (a/run, b/run): tell them apart
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({r.path.parent.name or r.path})#{i + 1}"
    target = Path(out)
    atomic_write_text(target, render_comparison(runs))
    return target
