"""Detectors, their tuning grids, and E_pot for ``qsem run emergence-cmsp``.

Each ``*_detector`` / :func:`scalar_detectors` entry is ``(detect(params, run), grid)``:
``detect`` returns the event steps of the detector built with ``params`` on one
:class:`~qsem.emergence.benchmark.Run`; the grid is searched on the tuning seeds
(:func:`evaluate`). Grids of thresholds are quantiles of the tuning seeds' signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qsem.emergence import (
    BOCPD,
    AdaptiveThreshold,
    EmergencePotential,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
    ZeroDetector,
    offline_changepoints,
)
from qsem.emergence.benchmark import Run, online_events, pooled_score, tune
from qsem.emergence.changepoint import default_penalty
from qsem.emergence.scoring import epot_labels

if TYPE_CHECKING:
    from .emergence_cmsp import EmergenceCMSPConfig

__all__ = [
    "after_step",
    "epot_series",
    "evaluate",
    "l1_detector",
    "pooled_auroc",
    "pooled_labels",
    "positives",
    "quantum_detector",
    "scalar_detectors",
]


# -- detectors --------------------------------------------------------------------------------


def _log(x: np.ndarray) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(x, dtype=np.float64), 1e-12))


def _quantiles(runs: list[Run], qs: tuple[float, ...]) -> list[float]:
    v = np.concatenate(
        [
            np.asarray(r.signal, dtype=np.float64)[1:].reshape(len(r.signal) - 1, -1).max(-1)
            for r in runs
        ]
    )
    return [float(np.quantile(v, q)) for q in qs]


def scalar_detectors(cfg: EmergenceCMSPConfig, tune_runs: list[Run]) -> dict[str, Any]:
    """``name -> (detect(params, run), grid)`` of the detectors fed a scalar signal."""
    ref = cfg.refractory
    qs = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)

    def frobenius(p: dict[str, Any], r: Run) -> list[int]:
        return online_events(FixedThreshold(p["theta"], refractory=ref), r.signal)

    def adaptive(p: dict[str, Any], r: Run) -> list[int]:
        det = AdaptiveThreshold(p["k"], p["window"], min(100, p["window"]), refractory=ref)
        return online_events(det, _log(r.signal) if p["log"] else r.signal)

    def bocpd(p: dict[str, Any], r: Run) -> list[int]:
        det = BOCPD(p["hazard"], p["threshold"], refractory=ref)
        return online_events(det, _log(r.signal))

    def offline(method: str) -> Any:
        def detect(p: dict[str, Any], r: Run) -> list[int]:
            x = _log(r.signal)[1:]
            pen = p["c"] * default_penalty(x)
            n = len(x)  # segments of >= 50 steps, candidate points every 25 (fewer when short)
            size, jump = max(2, min(50, n // 100)), max(1, min(25, n // 200))
            cps = offline_changepoints(x, method, penalty=pen, min_size=size, jump=jump)
            return [c + 1 for c in cps]

        return detect

    def zero(p: dict[str, Any], r: Run) -> list[int]:
        return online_events(ZeroDetector(), r.signal)

    cs = [{"c": c} for c in (10.0, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)]
    return {
        "frobenius": (frobenius, [{"theta": t} for t in _quantiles(tune_runs, qs)]),
        "adaptive": (
            adaptive,
            [
                {"k": k, "window": w, "log": lg}
                for k in (2.0, 3.0, 5.0, 8.0, 12.0)
                for w in (200, 1000)
                for lg in (False, True)
            ],
        ),
        "bocpd": (
            bocpd,
            [
                {"hazard": h, "threshold": t}
                for h in (1e-4, 1e-3, 1e-2)
                for t in (0.5, 0.8, 0.95, 0.99)
            ],
        ),
        "pelt": (offline("pelt"), cs),
        "binseg": (offline("binseg"), cs),
        "zero": (zero, [{}]),
    }


def l1_detector(cfg: EmergenceCMSPConfig, tune_runs: list[Run]) -> Any:
    """L1 detector on the EMA of the probe outputs every ``lag`` steps (signal = the snapshots)."""

    def detect(p: dict[str, Any], r: Run) -> list[int]:
        det = L1Detector(p["theta"], refractory=cfg.refractory)
        snaps = np.asarray(r.signal)
        return [i * cfg.lag for i in range(len(snaps)) if det.update(i * cfg.lag, snaps[i])]

    d = np.concatenate(
        [
            np.abs(np.diff(np.asarray(r.signal), axis=0)).reshape(len(r.signal) - 1, -1).sum(-1)
            for r in tune_runs
        ]
    )
    grid = [{"theta": float(np.quantile(d, q))} for q in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)]
    return detect, grid


def quantum_detector(cfg: EmergenceCMSPConfig, tune_runs: list[Run], shots: bool) -> Any:
    """QuantumDetector on exact distances (``Run.signal`` floats) or shot estimates ``(n, 3)``."""

    def detect(p: dict[str, Any], r: Run) -> list[int]:
        det = QuantumDetector(p["theta"], refractory=cfg.refractory)
        x = np.asarray(r.signal)
        if not shots:
            return online_events(det, x)
        det.reset()
        every = cfg.shot_every
        out = []
        for i in range(1, len(x)):  # row i: step i * shot_every
            if det.update(i * every, _Est(*(float(v) for v in x[i]))) is not None:
                out.append(i * every)
        return out

    vals = np.concatenate(
        [1 - np.asarray(r.signal)[1:, 0] if shots else np.asarray(r.signal)[1:] for r in tune_runs]
    )
    grid = [{"theta": float(np.quantile(vals, q))} for q in (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)]
    return detect, grid


@dataclass
class _Est:
    estimate: float
    low: float
    high: float


def evaluate(
    detect: Any,
    grid: list[dict[str, Any]],
    tune_runs: list[Run],
    runs: list[Run],
    cfg: EmergenceCMSPConfig,
) -> dict[str, Any]:
    """Tune on ``tune_runs``, score on ``runs``."""
    kw = {"max_lag": cfg.max_lag, "before": cfg.before}
    best, table_ = tune(detect, grid, tune_runs, **kw)
    score = pooled_score([detect(best, r) for r in runs], runs, **kw)
    tuned = min(table_, key=lambda row: row["params"] != best)
    return {**score, "params": best, "tune_f1": tuned["f1"]}


# -- E_pot -------------------------------------------------------------------------------------


def epot_series(signal: np.ndarray, window: int, theta: Any = None) -> np.ndarray:
    """E_pot per step (step 0: the first value fed is step 1's signal)."""
    ep = EmergencePotential(window=window, relative_variance=True)
    out = [0.0]
    for t in range(1, len(signal)):
        th = 0.0 if theta is None else float(theta[t])
        out.append(ep.update(float(signal[t]), th)["e_pot"])
    return np.asarray(out)


def pooled_labels(
    series: list[np.ndarray], runs: list[Run], horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kept steps ``1 ..`` of every run, pooled: ``(values, labels)`` of "a transition of
    *this* run starts within ``horizon`` steps" (:func:`qsem.emergence.scoring.epot_labels`,
    steps inside transitions dropped). Each run is labelled on its own steps, so a transition
    near the start of one run never labels the last steps of the run before it.

    >>> runs = [Run([0] * 6, []), Run([0] * 6, [2], [3])]
    >>> x, y = pooled_labels([np.zeros(6), np.zeros(6)], runs, 2)
    >>> y.astype(int).tolist()  # run 1: steps 1..5 negative; run 2: step 1 positive, 2-3 dropped
    [0, 0, 0, 0, 0, 1, 0, 0]
    """
    xs, ys = [], []
    for s, r in zip(series, runs, strict=True):
        v = np.asarray(s, dtype=np.float64)
        y, keep = epot_labels(len(v), r.starts, horizon, r.ends if r.ends else None)
        xs.append(v[1:][keep[1:]])
        ys.append(y[1:][keep[1:]])
    return np.concatenate(xs), np.concatenate(ys)


def after_step(r: Run, series: np.ndarray, skip: int) -> tuple[np.ndarray, Run]:
    """The series and the run from step ``skip`` on (steps renumbered from 0; a transition
    under way at ``skip`` counts from there, one that ended before it is dropped)."""
    kept = [
        (max(t - skip, 0), e - skip) for t, e in zip(r.starts, r.ends, strict=True) if e >= skip
    ]
    return series[skip:], Run(series[skip:], [t for t, _ in kept], [e for _, e in kept])


def pooled_auroc(series: list[np.ndarray], runs: list[Run], horizon: int, skip: int = 0) -> float:
    """AUROC over all runs at once (:func:`pooled_labels`) on the steps ``>= skip``
    (:func:`after_step`); NaN when the kept steps hold one class only (e.g. no step before a
    transition is kept)."""
    from sklearn.metrics import roc_auc_score

    if skip:
        pairs = [after_step(r, np.asarray(x), skip) for r, x in zip(runs, series, strict=True)]
        series, runs = [x for x, _ in pairs], [r for _, r in pairs]
    x, y = pooled_labels(series, runs, horizon)
    if y.size == 0 or y.all() or not y.any():
        return math.nan
    return float(roc_auc_score(y, x))


def positives(runs: list[Run], horizon: int, skip: int = 0) -> int:
    """The kept steps ``>= skip`` (and ``>= 1``) labelled positive: the steps a forecaster's
    AUROC after ``skip`` rests on (0: it is undefined)."""
    pairs = [after_step(r, np.zeros(r.n_steps + 1), skip) for r in runs]
    return int(pooled_labels([s for s, _ in pairs], [r for _, r in pairs], horizon)[1].sum())
