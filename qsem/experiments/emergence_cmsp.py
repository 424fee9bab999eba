"""``qsem run emergence-cmsp``: emergence detectors scored against CMSP ground truth.

A ReLU MLP learns CMSP (atoms + composite); each atom and then the
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
within ``horizon`` steps"). Training is in
:mod:`qsem.narrow.emergence_train`, pooled scoring and tuning in
:mod:`qsem.emergence.benchmark`, the detector grids in ``_emergence_cmsp_detectors``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from qsem.checks import check_int, check_real
from qsem.emergence.benchmark import Run, merge_starts, tune
from qsem.narrow.cmsp import CMSP
from qsem.narrow.emergence_train import SIGNALS, train_hybrid, train_mlp
from qsem.narrow.transitions import transitions_of
from qsem.runner import ConfigError, Experiment, RunContext

from ._emergence_cmsp_detectors import (
    epot_series,
    evaluate,
    l1_detector,
    pooled_auroc,
    positives,
    quantum_detector,
    scalar_detectors,
)
from ._emergence_cmsp_report import plot_detections, table
from ._emergence_keys import EmergenceRunKeys, RunTailKeys

__all__ = ["EXPERIMENT", "EmergenceCMSPConfig", "ground_truth", "run", "run_phases"]

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
class _HybridKeys:
    """The hybrid (quantum last layer) model's keys of emergence-cmsp."""

    #: scored seeds of the hybrid (quantum last layer) model; 0: no hybrid
    hybrid_seeds: int = 3
    #: tuning seeds of the hybrid model
    hybrid_tune_seeds: int = 1
    #: training steps of the hybrid model
    hybrid_steps: int = 6000
    #: samples of each task per hybrid training step
    hybrid_per_task: int = 100
    #: samples of each task in the hybrid's probe batch
    hybrid_probe_per_task: int = 8
    #: hidden widths of the hybrid's MLP trunk
    hybrid_widths: tuple[int, ...] = (128, 128)
    #: Adam learning rate of the hybrid
    hybrid_lr: float = 2e-3
    #: qubits of the hybrid's quantum layer (one angle each from the trunk)
    n_qubits: int = 4
    #: trainable RY RZ layers (with a CNOT ring) of the hybrid's circuit
    q_layers: int = 2
    #: shots per probe input for the shot estimate of the overlap (0: no shot estimate)
    shots: int = 1000
    #: the shot estimate is taken every shot_every steps, of the pair (Ω_t, Ω_{t-lag})
    #: ("lagged") or (Ω_t, Ω_{t-1}) ("successive")
    shot_every: int = 20
    #: the pair of the shot estimate: lagged or successive
    shot_pair: str = "lagged"
    #: confidence level of the shot-estimate intervals
    confidence: float = 0.95


@dataclass(frozen=True)
class EmergenceCMSPConfig(RunTailKeys, _HybridKeys, EmergenceRunKeys):
    """Config of ``qsem run emergence-cmsp`` (override any key with ``key=value``): the shared
    emergence keys (:class:`~._emergence_keys.EmergenceRunKeys`), the hybrid's keys, the tail."""

    def __post_init__(self) -> None:
        self.check_run_keys(max(self.tune_seeds, self.hybrid_tune_seeds))
        self.check_tail_keys()
        for key in ("hybrid_per_task", "hybrid_probe_per_task", "n_qubits", "q_layers",
                    "shot_every"):  # fmt: skip
            check_int(key, getattr(self, key), 1, config=True)
        for key in ("hybrid_seeds", "hybrid_tune_seeds", "hybrid_steps", "shots"):
            check_int(key, getattr(self, key), 0, config=True)
        if self.hybrid_seeds and not self.hybrid_tune_seeds:
            raise ConfigError("config key 'hybrid_tune_seeds': the hybrid needs tuning seeds")
        if not self.hybrid_widths or any(x < 1 for x in self.hybrid_widths):
            raise ConfigError(
                f"config key 'hybrid_widths': positive widths needed, got {self.hybrid_widths}"
            )
        check_real("hybrid_lr", self.hybrid_lr, minimum=0, strict=True, config=True)
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


def run_phases(ctx: RunContext, phases: list[tuple[str, int, Any]], desc: str) -> dict[str, Any]:
    """Run ``phases`` (``(tag, steps, train(resume, checkpoint))``) in order, each resumable.

    Finished phases are kept in the checkpoint; the one under way resumes from its
    last snapshot (checkpoint steps count on from the phases before it).
    """
    state = ctx.restore()
    done: dict[str, Any] = dict(state["done"]) if state else {}
    current = state["current"] if state else None
    step_base = 0
    for tag, n, train in ctx.progress(phases, total=len(phases), desc=desc):
        if tag not in done:
            resume = current if current is not None and current["tag"] == tag else None
            base = step_base

            def checkpoint(step: int, snap: Any, base: int = base, tag: str = tag) -> None:
                ctx.checkpoint(base + step, lambda: {"done": dict(done), "current": snap()},
                               where=f"phase {tag}, step {step}")  # fmt: skip

            done[tag] = train(resume, checkpoint)
            ctx.checkpoint(step_base + n, {"done": dict(done), "current": None}, force=True,
                           where=f"phase {tag}")  # fmt: skip
        step_base += n
    return done


def train_all(cfg: EmergenceCMSPConfig, ctx: RunContext) -> dict[str, Any]:
    """Every training phase of :func:`_phases`, each resumable (:func:`run_phases`)."""
    phases = []
    for tag, seeds in _phases(cfg):
        fn = train_mlp if tag.startswith("mlp") else train_hybrid
        n = cfg.steps if tag.startswith("mlp") else cfg.hybrid_steps

        def train(resume: Any, checkpoint: Any, fn: Any = fn, seeds: Any = seeds, tag: str = tag):
            return fn(cfg, seeds, tag=tag, resume=resume, checkpoint=checkpoint, log=ctx.log)

        phases.append((tag, n, train))
    return run_phases(ctx, phases, desc="emergence-cmsp phases")


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
        for name in ("frobenius", "adaptive"):
            detect, grid = scalar_detectors(cfg, lt)[name]
            dets[f"{name} (literal Δφ)"] = evaluate(detect, grid, lt, ls, cfg)
    contrast = {}
    for name in SIGNALS:
        contrast[name] = _contrast(_mlp_runs(tune_res, cfg, name), cfg)
    epot = _epot_mlp(tr, sr, cfg)
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
        epot.update(_epot_hybrid(hs, h_score, epot["window"], cfg))
    return {
        "signal": signal,
        "signal_tuned_f1": tuned_f1,
        "signal_contrast": contrast,
        "detectors": dets,
        "hybrid": hybrid,
        "epot_auroc": epot,
    }


def _epot_mlp(tr: list[Run], sr: list[Run], cfg: EmergenceCMSPConfig) -> dict[str, Any]:
    """E_pot's AUROC on the MLP's scored runs, its window chosen on the tuning runs; also on
    the steps ``>= horizon`` only (``*_after_horizon``: a transition starting within the first
    ``horizon`` steps makes them positives that any series rising from 0 ranks high) and the
    positive steps each figure rests on."""
    tune_auroc = {
        w: pooled_auroc([epot_series(np.asarray(r.signal), w) for r in tr], tr, cfg.horizon)
        for w in cfg.epot_windows
    }
    window = max(cfg.epot_windows, key=lambda w: np.nan_to_num(tune_auroc[w], nan=-1.0))
    ep = [epot_series(np.asarray(r.signal), window) for r in sr]
    return {
        "mlp": pooled_auroc(ep, sr, cfg.horizon),
        "window": window,
        "tune_auroc_by_window": {str(w): a for w, a in tune_auroc.items()},
        "mlp_after_horizon": pooled_auroc(ep, sr, cfg.horizon, skip=cfg.horizon),
        "mlp_positives": positives(sr, cfg.horizon),
        "mlp_positives_after_horizon": positives(sr, cfg.horizon, cfg.horizon),
    }


def _epot_hybrid(
    hs: list[Run], h_score: list[dict[str, Any]], window: int, cfg: EmergenceCMSPConfig
) -> dict[str, Any]:
    """E_pot's AUROC on the hybrid's scored runs with θ_t the mean Bures angle, and without
    it (``hybrid_no_bures``: what the quantum term adds), as :func:`_epot_mlp`."""
    ep_h = [
        epot_series(np.asarray(r.signal), window, _np(res["bures"]))
        for r, res in zip(hs, h_score, strict=True)
    ]
    ep_0 = [epot_series(np.asarray(r.signal), window) for r in hs]
    return {
        "hybrid": pooled_auroc(ep_h, hs, cfg.horizon),
        "hybrid_after_horizon": pooled_auroc(ep_h, hs, cfg.horizon, skip=cfg.horizon),
        "hybrid_no_bures": pooled_auroc(ep_0, hs, cfg.horizon),
        "hybrid_positives": positives(hs, cfg.horizon),
        "hybrid_positives_after_horizon": positives(hs, cfg.horizon, cfg.horizon),
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
    description="emergence detectors (classical, quantum, baselines) vs CMSP's planted truth",
    defaults=EmergenceCMSPConfig(),
    run=run,
    checkpoint_every=1000,
    results=(
        "detectors",
        "epot_auroc",
        "signal",
        "signal_tuned_f1",
        "signal_contrast",
        "transition_rule",
        "transitions",
        "seeds",
        "tune_seeds",
        "hybrid_seeds",
        "hybrid_tune_seeds",
        "events",
        "timings_s",
        "config",
        "table",
    ),
)
