"""Scoring detectors against ground-truth transitions over many seeds (``emergence-cmsp``).

A *run* is one seed's signal ``s_t`` (step ``t = 0..n``) with its transition
starts. Online detectors (:class:`~qsem.emergence.Detector`) are fed
``(t, s_t)`` for ``t = 1..n`` (``s_0`` is undefined); offline change-point
methods see the whole signal. Scores are pooled over runs: the counts of
:func:`~qsem.emergence.score_events` (matched transitions, events, false alarms,
lags) are summed, then ``recall = matched / transitions``,
``precision = matched / events``, ``F1``, false alarms per 1000 steps of all
runs, and the median / 90th percentile of all lags.

Hyper-parameters are chosen by :func:`tune` on *other* runs (seeds that are
not scored): the grid point with the best pooled F1 (ties: smaller median lag).

>>> import numpy as np
>>> merge_starts([300, 350, 420, 3000], gap=200)
[300, 3000]
>>> runs = [Run(np.r_[np.zeros(50), np.ones(50)], [49])]
>>> pooled_score([[50]], runs, max_lag=10)["recall"]
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsem.circuits.errors import arg_error

from .detectors import Detector
from .scoring import score_events

__all__ = ["Run", "merge_starts", "online_events", "pooled_score", "tune"]


def merge_starts(starts: Sequence[int], gap: int) -> list[int]:
    """Sorted ``starts`` with every start within ``gap`` steps of the previous kept one dropped.

    Transitions that begin together cannot be told apart by one probe-wide
    signal; each group counts as one transition starting at its first start.
    """
    out: list[int] = []
    for s in sorted(int(x) for x in starts):
        if not out or s - out[-1] > gap:
            out.append(s)
    return out


@dataclass
class Run:
    """One seed: ``signal`` ``(n + 1,)`` (or ``(n + 1, ...)`` values for the detector),
    the transition ``starts`` and, optionally, their ``ends`` and the length ``steps``."""

    signal: Any
    starts: list[int]
    ends: list[int] = field(default_factory=list)
    #: the run's length in steps when the signal is logged every k steps (default len - 1)
    steps: int | None = None

    @property
    def n_steps(self) -> int:
        return len(self.signal) - 1 if self.steps is None else self.steps


def online_events(detector: Detector, values: Any, first: int = 1) -> list[int]:
    """Steps at which ``detector`` fires when fed ``(t, values[t])`` for ``t >= first``."""
    detector.reset()
    return [t for t in range(first, len(values)) if detector.update(t, values[t]) is not None]


def pooled_score(
    events: Sequence[Sequence[int]], runs: Sequence[Run], *, max_lag: int, before: int = 0
) -> dict[str, Any]:
    """Scores of ``events[i]`` against ``runs[i]``, pooled over the runs (module doc)."""
    if len(events) != len(runs):
        raise arg_error("events", f"need one list per run ({len(runs)}), got {len(events)}")
    matched = n_ev = fa = n_tr = steps = 0
    lags: list[int] = []
    per_run = []
    for ev, run in zip(events, runs, strict=True):
        r = score_events(list(ev), run.starts, max(run.n_steps, 1), max_lag=max_lag, before=before)
        matched += r["n_matched"]
        n_ev += r["n_events"]
        fa += r["false_alarms"]
        n_tr += r["n_transitions"]
        steps += max(run.n_steps, 1)
        lags += r["lags"]
        per_run.append(
            {
                "events": list(map(int, ev)),
                "detected": r["detected"],
                "lags": r["lags"],
                "false_alarms": r["false_alarms"],
            }
        )
    recall = matched / n_tr if n_tr else math.nan
    precision = matched / n_ev if n_ev else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "recall": recall,
        "precision": precision,
        "f1": f1 if n_tr else math.nan,
        "false_alarms_per_1000": 1000.0 * fa / steps,
        "false_alarms": fa,
        "median_lag": float(np.median(lags)) if lags else math.nan,
        "p90_lag": float(np.percentile(lags, 90)) if lags else math.nan,
        "n_events": n_ev,
        "n_transitions": n_tr,
        "n_matched": matched,
        "per_run": per_run,
    }


def tune(
    detect: Callable[[dict[str, Any], Run], list[int]],
    grid: Sequence[dict[str, Any]],
    runs: Sequence[Run],
    *,
    max_lag: int,
    before: int = 0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The grid point of best pooled F1 on ``runs`` (ties: smaller median lag), and every score.

    ``detect(params, run)`` returns the event steps of the detector built with
    ``params`` on ``run``.
    """
    if not grid:
        raise arg_error("grid", "give at least one setting")
    table = []
    for params in grid:
        s = pooled_score([detect(params, r) for r in runs], runs, max_lag=max_lag, before=before)
        table.append(
            {
                "params": dict(params),
                "f1": s["f1"],
                "recall": s["recall"],
                "false_alarms_per_1000": s["false_alarms_per_1000"],
                "median_lag": s["median_lag"],
            }
        )

    def key(row: dict[str, Any]) -> tuple[float, float]:
        f1 = row["f1"] if math.isfinite(row["f1"]) else -1.0
        lag = row["median_lag"] if math.isfinite(row["median_lag"]) else math.inf
        return (-f1, lag)

    best = min(table, key=key)
    return dict(best["params"]), table
