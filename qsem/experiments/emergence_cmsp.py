"""``qsem run emergence-cmsp``: emergence detectors scored against CMSP ground truth.

A ReLU MLP learns CMSP (atoms + composite, DESIGN.md §9); each atom and then the
composite is learned in a drop of its loss. The transitions are read off the
per-task losses on a fixed evaluation set (:mod:`qsem.narrow.transitions`;
transitions of one seed starting within ``max_lag`` steps of each other are one
transition, :func:`qsem.emergence.benchmark.merge_starts`). Each detector of
:mod:`qsem.emergence` is fed a signal of the model's output on a fixed probe
batch covering every task, with hyper-parameters chosen on seeds
``tune_offset + i`` and scores on seeds ``seed + i`` (never the same seeds):
recall, false alarms per 1000 steps, median and 90th-percentile lag (from the
start of the drop), precision and F1. The literal step-to-step Δφ is measured
and scored; the signal the detectors use is chosen on the tuning seeds
(``signal=auto``: the best tuned F1 of the adaptive detector). A hybrid model
whose last layer is a QuantumLayer adds the quantum detector (exact and with
shots), and E_pot is scored as a forecaster (AUROC of "a transition starts
within ``horizon`` steps"). Training, detectors and scoring are in
:mod:`qsem.narrow.emergence_train` and :mod:`qsem.emergence.benchmark`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from qsem.emergence import (
    BOCPD,
    AdaptiveThreshold,
    EmergencePotential,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
    ZeroDetector,
    epot_auroc,
    offline_changepoints,
)
from qsem.emergence.benchmark import Run, merge_starts, online_events, pooled_score, tune
from qsem.emergence.changepoint import default_penalty
from qsem.narrow.cmsp import CMSP
from qsem.narrow.emergence_train import SIGNALS, train_hybrid, train_mlp
from qsem.narrow.train import torch_threads
from qsem.narrow.transitions import transitions_of
from qsem.runner import ConfigError, Experiment, RunContext

from ._emergence_cmsp_report import plot_detections, table

__all__ = ["EXPERIMENT", "EmergenceCMSPConfig", "ground_truth", "run"]

RULE = (
    "per task, on the fixed evaluation set: learned = first step with loss < {low} bits; "
    "cross = last step before it with loss > {high} bits; start = the onset of the drop: the "
    "last step <= cross at which the centred {onset}-step running mean of the loss is at "
    "least the plateau level (median loss over the {plateau} steps before cross; onset=0: "
    "start = cross); transitions of one seed whose starts lie within {gap} steps of an "
    "earlier one are merged (one probe-wide signal cannot separate them); an event matches "
    "a transition when it lies in [start - {before}, start + {max_lag}], one event per "
    "transition; lag = event - start"
)


@dataclass(frozen=True)
class EmergenceCMSPConfig:
    """Config of ``qsem run emergence-cmsp`` (override any key with ``key=value``)."""

    seed: int = 0
    seeds: int = 10
    #: tuning seeds: tune_offset, tune_offset + 1, ... (never scored)
    tune_seeds: int = 5
    tune_offset: int = 100
    n_control: int = 4
    n_task: int = 32
    n_atoms: int = 4
    k: int = 3
    widths: tuple[int, ...] = (128, 128)
    lr: float = 2e-3
    adam_eps: float = 1e-5
    per_task: int = 200
    steps: int = 6000
    eval_per_task: int = 128
    probe_per_task: int = 32
    high_bits: float = 0.9
    low_bits: float = 0.1
    #: ground truth: the start is the onset of the drop, found with a running mean of this
    #: many steps against the plateau level (median loss over `plateau` steps); 0: the
    #: last step above high_bits
    onset: int = 51
    plateau: int = 1000
    #: signal: "auto" (chosen on the tuning seeds) or one of literal, lagged, ema, ema_slow
    signal: str = "auto"
    ema_beta: float = 0.99
    lag: int = 100
    #: the slow EMA signal ema_slow
    slow_beta: float = 0.995
    slow_lag: int = 200
    #: scoring window [start - before, start + max_lag] (composite drops last ~1000-1600 steps)
    max_lag: int = 1000
    #: transitions of one seed starting within merge_gap steps of an earlier one are merged
    merge_gap: int = 500
    before: int = 50
    refractory: int = 500
    horizon: int = 200
    #: E_pot trailing windows tried on the tuning seeds (the best AUROC there is used)
    epot_windows: tuple[int, ...] = (50, 200, 500)
    hybrid_seeds: int = 3
    hybrid_tune_seeds: int = 1
    hybrid_steps: int = 6000
    hybrid_per_task: int = 100
    hybrid_probe_per_task: int = 8
    hybrid_widths: tuple[int, ...] = (128, 128)
    hybrid_lr: float = 2e-3
    n_qubits: int = 4
    q_layers: int = 2
    #: shots per probe input for the shot estimate of the overlap (0: no shot estimate)
    shots: int = 1000
    #: the shot estimate is taken every shot_every steps, of the pair (Ω_t, Ω_{t-lag})
    #: ("lagged") or (Ω_t, Ω_{t-1}) ("successive")
    shot_every: int = 20
    shot_pair: str = "lagged"
    confidence: float = 0.95
    log_every: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        for key in (
            "seeds",
            "tune_seeds",
            "per_task",
            "steps",
            "eval_per_task",
            "probe_per_task",
            "lag",
            "slow_lag",
            "horizon",
            "hybrid_per_task",
            "hybrid_probe_per_task",
            "n_qubits",
            "q_layers",
            "log_every",
            "shot_every",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        for key in (
            "hybrid_seeds",
            "hybrid_tune_seeds",
            "hybrid_steps",
            "shots",
            "threads",
            "max_lag",
            "merge_gap",
            "before",
            "refractory",
            "tune_offset",
            "seed",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': must be >= 0, got {getattr(self, key)}")
        if self.hybrid_seeds and not self.hybrid_tune_seeds:
            raise ConfigError("config key 'hybrid_tune_seeds': the hybrid needs tuning seeds")
        if self.tune_offset < self.seed + self.seeds and self.seed < self.tune_offset + max(
            self.tune_seeds, self.hybrid_tune_seeds
        ):
            raise ConfigError(
                f"config key 'tune_offset': tuning seeds from {self.tune_offset} overlap the "
                f"scored seeds {self.seed}..{self.seed + self.seeds - 1}"
            )
        for key in ("widths", "hybrid_widths", "epot_windows"):
            w = getattr(self, key)
            if not w or any(x < 1 for x in w):
                raise ConfigError(f"config key '{key}': positive widths needed, got {w}")
        for key in ("lr", "adam_eps", "hybrid_lr"):
            v = getattr(self, key)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"config key '{key}': must be a positive number, got {v}")
        if not 0 < self.low_bits < self.high_bits:
            raise ConfigError(
                f"config key 'low_bits': need 0 < low_bits < high_bits, got "
                f"{self.low_bits}, {self.high_bits}"
            )
        for key in ("ema_beta", "slow_beta"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(
                    f"config key '{key}': must lie in [0, 1), got {getattr(self, key)}"
                )
        if not 0 < self.confidence < 1:
            raise ConfigError(f"config key 'confidence': must lie in (0, 1), got {self.confidence}")
        if self.shot_pair not in ("lagged", "successive"):
            raise ConfigError(
                f"config key 'shot_pair': 'lagged' or 'successive', got {self.shot_pair!r}"
            )
        if self.signal not in ("auto", *SIGNALS):
            raise ConfigError(
                f"config key 'signal': 'auto' or one of {list(SIGNALS)}, got {self.signal!r}"
            )
        try:
            CMSP(self.n_control, self.n_task, self.n_atoms, self.k)
        except ValueError as exc:
            raise ConfigError(f"config key 'n_task' / 'k': invalid CMSP setting: {exc}") from None


# -- ground truth -----------------------------------------------------------------------------


def ground_truth(losses: np.ndarray, cfg: EmergenceCMSPConfig) -> dict[str, Any]:
    """Per-task transitions of one seed's ``(steps + 1, T)`` losses; merged starts and ends."""
    per_task = transitions_of(
        losses, high=cfg.high_bits, low=cfg.low_bits, onset=cfg.onset, plateau=cfg.plateau
    )
    found = sorted((t.start, t.learned) for t in per_task if t is not None)
    starts = merge_starts([s for s, _ in found], cfg.merge_gap)
    ends = [
        max(e for s, e in found if s0 <= s and (i + 1 == len(starts) or s < starts[i + 1]))
        for i, s0 in enumerate(starts)
    ]
    return {
        "per_task": [None if t is None else list(t) for t in per_task],
        "starts": starts,
        "ends": ends,
    }


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

    def fixed(p: dict[str, Any], r: Run) -> list[int]:
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
        "fixed": (fixed, [{"theta": t} for t in _quantiles(tune_runs, qs)]),
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


def pooled_auroc(series: list[np.ndarray], runs: list[Run], horizon: int) -> float:
    """AUROC over all runs at once (the runs laid end to end, transitions shifted along)."""
    x, starts, ends, off = [], [], [], 0
    for s, r in zip(series, runs, strict=True):
        x.append(s[1:])
        starts += [off + t - 1 for t in r.starts]
        ends += [off + t - 1 for t in r.ends]
        off += len(s) - 1
    try:
        return epot_auroc(np.concatenate(x), starts, horizon, ends=ends)
    except ValueError:
        return math.nan


# -- the run ----------------------------------------------------------------------------------


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _phases(cfg: EmergenceCMSPConfig) -> list[tuple[str, Any]]:
    tune_mlp = [cfg.tune_offset + i for i in range(cfg.tune_seeds)]
    score_mlp = [cfg.seed + i for i in range(cfg.seeds)]
    out: list[tuple[str, Any]] = [("mlp-tune", tune_mlp), ("mlp-score", score_mlp)]
    if cfg.hybrid_seeds:
        out += [
            (f"hybrid-tune-{cfg.tune_offset + i}", cfg.tune_offset + i)
            for i in range(cfg.hybrid_tune_seeds)
        ]
        out += [(f"hybrid-{cfg.seed + i}", cfg.seed + i) for i in range(cfg.hybrid_seeds)]
    return out


def train_all(cfg: EmergenceCMSPConfig, ctx: RunContext) -> dict[str, Any]:
    """Every training phase, each resumable; finished phases are kept in the checkpoint."""
    state = ctx.restore()
    done: dict[str, Any] = dict(state["done"]) if state else {}
    current = state["current"] if state else None
    step_base = 0
    for tag, seeds in _phases(cfg):
        n = cfg.steps if tag.startswith("mlp") else cfg.hybrid_steps
        if tag not in done:
            resume = current if current is not None and current["tag"] == tag else None
            base = step_base

            def checkpoint(step: int, snap: Any, base: int = base) -> None:
                ctx.checkpoint(base + step, lambda: {"done": dict(done), "current": snap()})

            if tag.startswith("mlp"):
                done[tag] = train_mlp(
                    cfg, seeds, tag=tag, resume=resume, checkpoint=checkpoint, log=ctx.log
                )
            else:
                done[tag] = train_hybrid(
                    cfg, seeds, tag=tag, resume=resume, checkpoint=checkpoint, log=ctx.log
                )
            ctx.checkpoint(step_base + n, {"done": dict(done), "current": None}, force=True)
        step_base += n
    return done


def _mlp_runs(res: dict[str, Any], cfg: EmergenceCMSPConfig, name: str) -> list[Run]:
    losses = _np(res["losses"])
    out = []
    for e in range(losses.shape[1]):
        gt = ground_truth(losses[:, e], cfg)
        sig = _np(res["ema_snapshots"])[:, e] if name == "l1" else _np(res["signals"][name])[:, e]
        out.append(Run(sig, gt["starts"], gt["ends"], steps=losses.shape[0] - 1))
    return out


def _hybrid_runs(results: list[dict[str, Any]], cfg: EmergenceCMSPConfig, name: str) -> list[Run]:
    out = []
    for res in results:
        gt = ground_truth(_np(res["losses"]), cfg)
        out.append(Run(_np(res[name]), gt["starts"], gt["ends"], steps=cfg.hybrid_steps))
    return out


def analyse(done: dict[str, Any], cfg: EmergenceCMSPConfig) -> dict[str, Any]:
    """Signal choice, every detector tuned and scored, E_pot AUROC."""
    tune_res, score_res = done["mlp-tune"], done["mlp-score"]
    dets = {}
    choice = {}
    for name in SIGNALS:  # the adaptive detector at window 1000 on the raw signal
        tr = _mlp_runs(tune_res, cfg, name)
        detect, grid = scalar_detectors(cfg, tr)["adaptive"]
        grid = [g for g in grid if g["window"] == 1000 and not g["log"]]
        choice[name] = tune(detect, grid, tr, max_lag=cfg.max_lag, before=cfg.before)
    tuned_f1 = {k: max(r["f1"] for r in v[1]) for k, v in choice.items()}
    signal = max(tuned_f1, key=lambda k: tuned_f1[k]) if cfg.signal == "auto" else cfg.signal
    tr, sr = _mlp_runs(tune_res, cfg, signal), _mlp_runs(score_res, cfg, signal)
    for name, (detect, grid) in scalar_detectors(cfg, tr).items():
        dets[name] = evaluate(detect, grid, tr, sr, cfg)
    detect, grid = l1_detector(cfg, _mlp_runs(tune_res, cfg, "l1"))
    dets["l1"] = evaluate(
        detect, grid, _mlp_runs(tune_res, cfg, "l1"), _mlp_runs(score_res, cfg, "l1"), cfg
    )
    if signal != "literal":
        lt, ls = _mlp_runs(tune_res, cfg, "literal"), _mlp_runs(score_res, cfg, "literal")
        for name in ("fixed", "adaptive"):
            detect, grid = scalar_detectors(cfg, lt)[name]
            dets[f"{name} (literal Δφ)"] = evaluate(detect, grid, lt, ls, cfg)
    contrast = {}
    for name in SIGNALS:
        contrast[name] = _contrast(_mlp_runs(tune_res, cfg, name), cfg)
    tune_auroc = {
        w: pooled_auroc([epot_series(np.asarray(r.signal), w) for r in tr], tr, cfg.horizon)
        for w in cfg.epot_windows
    }
    window = max(cfg.epot_windows, key=lambda w: np.nan_to_num(tune_auroc[w], nan=-1.0))
    ep = [epot_series(np.asarray(r.signal), window) for r in sr]
    epot: dict[str, Any] = {
        "mlp": pooled_auroc(ep, sr, cfg.horizon),
        "window": window,
        "tune_auroc_by_window": {str(w): a for w, a in tune_auroc.items()},
    }
    hybrid: dict[str, Any] = {}
    if cfg.hybrid_seeds:
        h_tune = [done[t] for t, _ in _phases(cfg) if t.startswith("hybrid-tune")]
        h_score = [
            done[t]
            for t, _ in _phases(cfg)
            if t.startswith("hybrid-") and not t.startswith("hybrid-tune")
        ]
        q_sig = "q_lagged" if signal != "literal" else "q_exact"
        for label, key in (("quantum exact", q_sig), ("quantum exact (successive)", "q_exact")):
            ht, hs = _hybrid_runs(h_tune, cfg, key), _hybrid_runs(h_score, cfg, key)
            detect, grid = quantum_detector(cfg, ht, shots=False)
            hybrid[label] = evaluate(detect, grid, ht, hs, cfg)
        if cfg.shots:
            ht, hs = _hybrid_runs(h_tune, cfg, "q_shots"), _hybrid_runs(h_score, cfg, "q_shots")
            detect, grid = quantum_detector(cfg, ht, shots=True)
            hybrid["quantum shots"] = evaluate(detect, grid, ht, hs, cfg)
        ht, hs = _hybrid_runs(h_tune, cfg, signal), _hybrid_runs(h_score, cfg, signal)
        detect, grid = scalar_detectors(cfg, ht)["adaptive"]
        hybrid["adaptive (hybrid Δφ)"] = evaluate(detect, grid, ht, hs, cfg)
        ep_h = [
            epot_series(np.asarray(r.signal), window, _np(res["bures"]))
            for r, res in zip(hs, h_score, strict=True)
        ]
        epot["hybrid"] = pooled_auroc(ep_h, hs, cfg.horizon)
    return {
        "signal": signal,
        "signal_tuned_f1": tuned_f1,
        "signal_contrast": contrast,
        "detectors": dets,
        "hybrid": hybrid,
        "epot_auroc": epot,
    }


def _contrast(runs: list[Run], cfg: EmergenceCMSPConfig) -> dict[str, float]:
    """Median of the signal in transition windows over its median elsewhere (tuning seeds)."""
    inside, outside = [], []
    for r in runs:
        x = np.asarray(r.signal, dtype=np.float64)[1:]
        mask = np.zeros(len(x), dtype=bool)
        for s in r.starts:
            mask[max(0, s - 1) : s - 1 + cfg.max_lag] = True
        inside.append(x[mask])
        outside.append(x[~mask])
    i, o = np.concatenate(inside), np.concatenate(outside)
    ratio = float(np.median(i) / max(np.median(o), 1e-12)) if i.size and o.size else math.nan
    return {
        "median_in_windows": float(np.median(i)) if i.size else math.nan,
        "median_elsewhere": float(np.median(o)) if o.size else math.nan,
        "ratio": ratio,
    }


def run(cfg: EmergenceCMSPConfig, ctx: RunContext) -> dict[str, Any]:
    with torch_threads(cfg.threads):
        done = train_all(cfg, ctx)
    out = analyse(done, cfg)
    score_res = done["mlp-score"]
    truths = [ground_truth(_np(score_res["losses"])[:, e], cfg) for e in range(cfg.seeds)]
    ctx.save_figure(plot_detections(score_res, truths, out, cfg), "detections.png")
    md = table(out, cfg.horizon)
    ctx.write_text("table.md", md)
    timings = {tag: done[tag]["seconds"] for tag, _ in _phases(cfg)}
    strip = {
        k: {kk: vv for kk, vv in v.items() if kk != "per_run"}
        for k, v in {**out["detectors"], **out["hybrid"]}.items()
    }
    return {
        "detectors": strip,
        "epot_auroc": out["epot_auroc"],
        "signal": out["signal"],
        "signal_tuned_f1": out["signal_tuned_f1"],
        "signal_contrast": out["signal_contrast"],
        "transition_rule": RULE.format(
            high=cfg.high_bits,
            low=cfg.low_bits,
            onset=cfg.onset,
            plateau=cfg.plateau,
            gap=cfg.merge_gap,
            before=cfg.before,
            max_lag=cfg.max_lag,
        ),
        "transitions": truths,
        "seeds": [cfg.seed + i for i in range(cfg.seeds)],
        "tune_seeds": [cfg.tune_offset + i for i in range(cfg.tune_seeds)],
        "hybrid_seeds": [cfg.seed + i for i in range(cfg.hybrid_seeds)],
        "hybrid_tune_seeds": [cfg.tune_offset + i for i in range(cfg.hybrid_tune_seeds)]
        if cfg.hybrid_seeds
        else [],
        "events": {
            k: [r["events"] for r in v["per_run"]]
            for k, v in {**out["detectors"], **out["hybrid"]}.items()
        },
        "timings_s": timings,
        "config": asdict(cfg),
        "table": md,
    }


EXPERIMENT = Experiment(
    name="emergence-cmsp",
    description="CMSP ground truth: emergence detectors (classical, quantum, baselines) scored",
    defaults=EmergenceCMSPConfig(),
    run=run,
    checkpoint_every=1000,
)
