"""A sweep's statistics: ``summary.json``, the printed table and a plot per metric.

Metrics are the numeric top-level scalars of each finished trial's
``results.json`` (booleans excluded) except those with one value in every
trial (listed under ``constant``), or the ones chosen with ``--metric`` (a
top-level name, or a dotted path into nested results such as
``summary.iris.qutrit.accuracy.mean``). For
each grid point and metric, over the seeds that finished:
:func:`qsem.stats.seed_statistics` (n, mean, sample standard deviation, 95%
percentile-bootstrap interval of the mean, seeded). For each pair of grid
points and metric, over the seeds both finished (at least two):
:func:`qsem.stats.paired_tests` (mean difference, Wilcoxon signed-rank and
paired t-test p-values). Everything is computed from the run directories, so a
resumed sweep gives the same summary as an uninterrupted one.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qsem.io import atomic_write_bytes, read_json, write_json
from qsem.runner import RESULTS_FILE, ConfigError
from qsem.stats import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    MIN_INTERVAL_N,
    paired_tests,
    seed_statistics,
)

from .spec import Trial

__all__ = [
    "SUMMARY_FILE",
    "format_table",
    "lookup",
    "numeric_scalars",
    "summarise",
    "write_summary",
]

SUMMARY_FILE = "summary.json"
PLOTS_DIR = "plots"
BOOTSTRAP_SEED = 0


def numeric_scalars(results: Mapping[str, Any]) -> dict[str, float]:
    """The top-level int / float values of ``results`` (no booleans, no NaN / inf)."""
    return {
        k: float(v)
        for k, v in results.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def lookup(results: Mapping[str, Any], path: str) -> float | None:
    """The number at a dotted ``path`` into nested results (``summary.iris.qutrit.accuracy.mean``),
    or None where there is no finite number there."""
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, (int, float)) and not isinstance(node, bool) and math.isfinite(node):
        return float(node)
    return None


def _point_name(trial: Trial) -> str:
    return trial.label or "(fixed config)"


#: point name -> seed -> metric -> value
_Values = dict[str, dict[int, dict[str, float]]]


def _read_values(
    trials: Sequence[Trial],
    states: Mapping[tuple[str, int], tuple[str, str | None]],
    root: Path,
    metrics: Sequence[str] | None,
) -> tuple[_Values, dict[str, dict[str, str]]]:
    """The numeric results of every finished trial, and each grid point's settings."""
    values: _Values = {}
    points: dict[str, dict[str, str]] = {}
    for t in trials:
        name = _point_name(t)
        points.setdefault(name, t.point)
        values.setdefault(name, {})
        if states.get(t.key, ("pending", None))[0] != "done":
            continue
        path = root / t.run_dir / RESULTS_FILE
        if path.exists():
            results = read_json(path)
            flat = numeric_scalars(results)
            for m in metrics or ():
                v = lookup(results, m) if m not in flat else None
                if v is not None:
                    flat[m] = v
            values[name][t.seed] = flat
    return values, points


def _choose_metrics(
    values: _Values, metrics: Sequence[str] | None
) -> tuple[list[str], dict[str, float]]:
    """The metrics to summarise, and the results constant over every trial (listed only).

    With ``metrics`` given, those (each must be found when any result is); else every
    numeric result except one with the same value in every trial (a config echo).
    """
    found = sorted({m for per_seed in values.values() for r in per_seed.values() for m in r})
    if metrics:
        unknown = [m for m in metrics if m not in found]
        if unknown and found:
            raise ConfigError(
                f"--metric {unknown[0]!r} is not a numeric result of these trials; "
                f"they have: {', '.join(found)}"
            )
        return [m for m in metrics if m in found], {}
    every = [r for per_seed in values.values() for r in per_seed.values()]
    constant = {
        m: every[0][m]
        for m in found
        if len(every) > 1 and all(m in r and r[m] == every[0][m] for r in every)
    }
    return [m for m in found if m not in constant], constant


def _paired_rows(values: _Values, chosen: Sequence[str]) -> list[dict[str, Any]]:
    """Paired tests of every two points over the seeds both finished (at least two)."""
    paired: list[dict[str, Any]] = []
    for (a, va), (b, vb) in itertools.combinations(values.items(), 2):
        for m in chosen:
            common = sorted(s for s in va if s in vb and m in va[s] and m in vb[s])
            if len(common) < 2:
                continue
            tests = paired_tests([va[s][m] for s in common], [vb[s][m] for s in common])
            paired.append({"metric": m, "a": a, "b": b, "n": len(common), **tests})
    return paired


def _trial_counts(
    trials: Sequence[Trial], states: Mapping[tuple[str, int], tuple[str, str | None]]
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Trials per state (an unrecorded trial is pending), and the failed ones with their error."""
    counts = {s: 0 for s in ("done", "failed", "pending", "running")}
    failures = []
    for t in trials:
        state, error = states.get(t.key, ("pending", None))
        counts[state] = counts.get(state, 0) + 1
        if state == "failed":
            failures.append({"run_dir": t.run_dir, "seed": t.seed, "error": error})
    return counts, failures


def summarise(
    experiment: str,
    trials: Sequence[Trial],
    states: Mapping[tuple[str, int], tuple[str, str | None]],
    root: Path,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The summary of ``trials`` (``states``: key -> (state, error)), read from ``root``."""
    values, points = _read_values(trials, states, root, metrics)
    chosen, constant = _choose_metrics(values, metrics)
    table: list[dict[str, Any]] = []
    for name, per_seed in values.items():
        for m in chosen:
            seeds = sorted(s for s, r in per_seed.items() if m in r)
            stats = seed_statistics([per_seed[s][m] for s in seeds], seed=BOOTSTRAP_SEED)
            table.append({"point": name, "metric": m, **stats})
    counts, failures = _trial_counts(trials, states)
    return {
        "experiment": experiment,
        "trials": {"total": len(trials), **counts},
        "points": points,
        "metrics": chosen,
        "constant": constant,
        "statistics": {
            "std": "sample standard deviation (n - 1)",
            "interval": f"{CONFIDENCE:.0%} percentile bootstrap of the mean",
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
            "bootstrap_seed": BOOTSTRAP_SEED,
            "paired": "seeds both points finished; Wilcoxon signed-rank and paired t-test",
        },
        "table": table,
        "paired": _paired_rows(values, chosen),
        "values": {
            name: {str(s): {m: r[m] for m in chosen if m in r} for s, r in sorted(per_seed.items())}
            for name, per_seed in values.items()
        },
        "failures": failures,
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as fixed-width text: one row per grid point and metric, then the
    paired tests, then the failures."""
    head = ("point", "metric", "n", "mean", "std", "95% CI")
    rows = [
        (
            r["point"],
            r["metric"],
            str(r["n"]),
            _fmt(r["mean"]),
            _fmt(r["std"]),
            "-" if r["ci_low"] is None else f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]",
        )
        for r in summary["table"]
    ]
    lines = _columns(head, rows)
    if any(r["ci_low"] is None and r["n"] for r in summary["table"]):
        lines.append(
            f"(95% CI: percentile bootstrap of the mean; '-' where n < {MIN_INTERVAL_N}: "
            "too few seeds for an interval)"
        )
    if summary["paired"]:
        lines.append("")
        lines += _columns(
            ("metric", "a", "b", "n", "mean(a-b)", "wilcoxon p", "t-test p"),
            [
                (
                    p["metric"],
                    p["a"],
                    p["b"],
                    str(p["n"]),
                    _fmt(p["mean_diff"]),
                    _fmt(p["wilcoxon_p"]),
                    _fmt(p["ttest_p"]),
                )
                for p in summary["paired"]
            ],
        )
    if summary["failures"]:
        lines.append("")
        lines.append(f"{len(summary['failures'])} failed trial(s):")
        lines += [f"  {f['run_dir']}: {f['error']}" for f in summary["failures"]]
    return "\n".join(lines)


def _columns(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def plot_metric(summary: Mapping[str, Any], metric: str) -> Any:
    """One metric: every seed's value (grey dots) and the mean with its bootstrap
    interval (blue bar) at each grid point. A matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    rows = [r for r in summary["table"] if r["metric"] == metric]
    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.6))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        per_seed = summary["values"][r["point"]]
        ys = [v[metric] for v in per_seed.values() if metric in v]
        if ys:
            offsets = [(k - (len(ys) - 1) / 2) * 0.25 / max(1, len(ys)) for k in range(len(ys))]
            ax.scatter([i + o for o in offsets], ys, s=14, color="0.55", zorder=2)
        if r["mean"] is not None:
            low = r["mean"] - r["ci_low"] if r["ci_low"] is not None else 0.0
            high = r["ci_high"] - r["mean"] if r["ci_high"] is not None else 0.0
            ax.errorbar([i + 0.3], [r["mean"]], yerr=[[low], [high]], fmt="o", color="C0",
                        capsize=4, zorder=3)  # fmt: skip
    ax.set_xticks(range(len(rows)), [r["point"] for r in rows], rotation=20, ha="right")
    few = any(r["n"] and r["ci_low"] is None for r in rows)
    what = (
        f"mean and 95% bootstrap CI (blue; none where n < {MIN_INTERVAL_N})"
        if few
        else ("mean and 95% bootstrap CI (blue)")
    )
    ax.set(ylabel=metric, title=f"{metric}: seeds (grey), {what}")
    fig.tight_layout()
    return fig


def write_summary(summary: Mapping[str, Any], root: Path) -> Path:
    """``root/summary.json`` and ``root/plots/METRIC.png``; returns the JSON's path."""
    path = root / SUMMARY_FILE
    write_json(path, dict(summary))
    (root / PLOTS_DIR).mkdir(exist_ok=True)
    for metric in summary["metrics"]:
        fig = plot_metric(summary, metric)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        atomic_write_bytes(root / PLOTS_DIR / f"{_safe(metric)}.png", buffer.getvalue())
    return path
