"""E_pot as a forecaster, leave-one-family-out (``qsem run emergence-transfer``).

For every tuning family T, E_pot's trailing window is the one of
``cfg.epot_windows`` with the best pooled AUROC on T's *tuning* seeds; with it,
the AUROC of "a transition starts within ``cfg.horizon`` steps"
(:func:`qsem.emergence.epot_auroc`, steps inside transitions dropped) is
measured on the scored seeds of every other family with transitions. Two
variants: E_pot of the pooled Δφ (``cfg.signal``, θ = NCI = 0: a classical
model), and the per-task one — E_pot of each task's Δφ (``cfg.task_signal``),
the largest over the tasks at each step. A third forecaster, not E_pot, is
scored the same way: :func:`entropy_drop`, the largest fall of a task's output
entropy below its own warm-up median (its warm-up, ``<= task_warmup`` steps,
chosen like E_pot's window). A fourth, :data:`OWN`, asks the per-task question:
one series per (run, task), E_pot of that task's Δφ, labelled by that task's
own transition (start, learned) — "task c starts its drop within ``horizon``
steps" — pooled over runs and tasks; its window is chosen on the tuning
family's AUROC after the warm-up (the figure the target is read on), the
others' on the all-steps AUROC. Every AUROC labels each run on its own steps
(:func:`~._emergence_cmsp_detectors.pooled_labels`); ``positives`` counts the
positive steps it rests on. ``skip`` > 0 scores only steps
``>= skip`` (``cfg.task_warmup``): at the start of training Δφ rises from 0
for every run, and a first transition that starts within ``horizon`` steps of
the start makes those steps positives that any rising series ranks high; both
AUROCs are reported (transitions starting before ``skip`` then count from
``skip``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qsem.emergence.benchmark import Run

from ._emergence_cmsp_detectors import epot_series, pooled_auroc, positives
from ._emergence_cmsp_report import _fmt

__all__ = ["DROP", "OWN", "TARGET_AUROC", "entropy_drop", "epot_lofo", "epot_table"]

#: issue 20's target for every family
TARGET_AUROC = 0.8
#: the variant that is not E_pot: the largest fall of a task's output entropy below its warm-up
DROP = "per-task entropy drop (max; not E_pot)"
#: E_pot of each task's Δφ forecasting that task's own transition (one series per run and task)
OWN = "per-task Δφ, each task's own transition"


def entropy_drop(h: np.ndarray, window: int) -> np.ndarray:
    """``max_c (median(h_c[1 .. min(t, window)]) − h_c[t])``: the largest fall of a task's
    output entropy below its own warm-up level (online: the warm-up median uses only the
    steps seen so far; step 0 gives 0).

    >>> h = np.array([[1.0, 1.0], [1.0, 1.0], [0.9, 1.0], [0.5, 0.8]])  # steps x tasks
    >>> [round(float(v), 3) for v in entropy_drop(h, 2)]  # warm-up medians 1, then (1 + 0.9) / 2
    [0.0, 0.0, 0.05, 0.45]
    """
    h = np.asarray(h, dtype=np.float64)
    out = np.zeros(len(h))
    base = None
    for t in range(1, len(h)):
        if t <= window:
            base = np.median(h[1 : t + 1], axis=0)
        out[t] = float(np.max(base - h[t]))
    return out


def _series(r: Run, window: int, kind: str = "epot") -> np.ndarray:
    x = np.asarray(r.signal, dtype=np.float64)
    if kind == "drop":
        return entropy_drop(x, window)
    if x.ndim == 1:
        return epot_series(x, window)
    return np.max([epot_series(x[:, c], window) for c in range(x.shape[1])], axis=0)


def _auroc(runs: list[Run], window: int, horizon: int, skip: int = 0, kind: str = "epot",
           cache: dict[tuple[int, int, str], np.ndarray] | None = None) -> float:  # fmt: skip
    """Pooled AUROC of the forecaster ``kind`` at ``window``; ``cache`` keeps each run's series
    (keyed by the run's id) for the next call on the same runs."""
    memo = {} if cache is None else cache
    series = []
    for r in runs:
        key = (id(r), window, kind)
        if key not in memo:
            memo[key] = _series(r, window, kind)
        series.append(memo[key])
    return pooled_auroc(series, runs, horizon, skip)


def epot_lofo(runs: dict[tuple[str, str, str], list[Run]], tuning: list[str], families: list[str],
              cfg: Any) -> dict[str, Any]:  # fmt: skip
    """``{variant: {"pairs": [...], "by_family": {S: mean AUROC over T != S}}}``."""
    out: dict[str, Any] = {}
    cache: dict[tuple[int, int, str], np.ndarray] = {}
    scored = [f for f in families if any(r.starts for r in runs[(f, "score", "signal")])]
    drop_windows = [w for w in cfg.epot_windows if w <= cfg.task_warmup] or [cfg.task_warmup]
    for variant, kind, how, windows, pick in (
        ("pooled Δφ", "signal", "epot", cfg.epot_windows, 0),
        ("per-task Δφ (max)", "task", "epot", cfg.epot_windows, 0),
        (DROP, "entropy", "drop", drop_windows, 0),
        (OWN, "own", "epot", cfg.epot_windows, cfg.task_warmup),
    ):
        pairs = []
        for t in tuning:
            tr = runs[(t, "tune", kind)]
            tuned = {w: _auroc(tr, w, cfg.horizon, pick, how, cache) for w in windows}
            w = max(tuned, key=lambda k: np.nan_to_num(tuned[k], nan=-1.0))
            for s in scored:
                if s != t:
                    sr = runs[(s, "score", kind)]
                    pairs.append({"tuned_on": t, "scored_on": s, "window": w,
                                  "tune_auroc": tuned[w],
                                  "auroc": _auroc(sr, w, cfg.horizon, 0, how, cache),
                                  "auroc_after_warmup": _auroc(sr, w, cfg.horizon,
                                                               cfg.task_warmup, how, cache),
                                  "positives": positives(sr, cfg.horizon),
                                  "positives_after_warmup":
                                      positives(sr, cfg.horizon, cfg.task_warmup)})  # fmt: skip
        fams = [s for s in scored if any(p["scored_on"] == s for p in pairs)]
        by, after = (
            {s: float(np.mean([p[k] for p in pairs if p["scored_on"] == s])) for s in fams}
            for k in ("auroc", "auroc_after_warmup")
        )
        out[variant] = {"pairs": pairs, "by_family": by, "by_family_after_warmup": after}
    return out


def epot_table(ep: dict[str, Any], horizon: int) -> str:
    """Markdown: per variant and scored family, the AUROC per tuning family and the mean."""
    lines = [
        f"E_pot AUROC for 'a transition starts within {horizon} steps' (window chosen on the "
        f"tuning family's tuning seeds; target ≥ {TARGET_AUROC}):",
        "",
        "| E_pot of | scored family | AUROC per tuning family (window) | mean | target met | "
        "mean, steps after the warm-up | positive steps (all / after the warm-up) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, d in ep.items():
        for s, mean in d["by_family"].items():
            per = ", ".join(
                f"{p['tuned_on']}: {_fmt(p['auroc'], 3)} ({p['window']})"
                for p in d["pairs"]
                if p["scored_on"] == s
            )
            ok = math.isfinite(mean) and mean >= TARGET_AUROC
            late = d["by_family_after_warmup"][s]
            p0 = next(p for p in d["pairs"] if p["scored_on"] == s)
            lines.append(
                f"| {variant} | {s} | {per} | {_fmt(mean, 3)} | {'yes' if ok else 'no'} | "
                f"{_fmt(late, 3)} | {p0['positives']} / {p0['positives_after_warmup']} |"
            )
    return "\n".join(lines) + "\n"
