"""``qsem run emergence-quantum``: the quantum (overlap) detector on many ground-truth transitions.

A hybrid model (MLP trunk, :class:`~qsem.simulators.QuantumLayer` head; every
probe input has a pure state Ω_t) learns a task family of
:mod:`qsem.narrow.families` — by default ``msp``, multitask sparse parity with
power-law task frequencies, whose atoms are learned one after another — with
:func:`qsem.narrow.emergence_train.train_hybrid`. Each task is its own
transition: its ground truth is read off its own loss
(:func:`qsem.narrow.transitions.find_transition`, onset rule), and each
detector watches that task's probe inputs only (``task_q_lagged``,
``task_<signal>``), so transitions that start together stay separate and
there are ``tasks × seeds`` of them. Detectors (tuned on seeds
``tune_offset + i``, scored on ``seed + i``):

- quantum, exact: :class:`~qsem.emergence.QuantumDetector` on the task's mean
  ``1 − |⟨Ω_t|Ω_{t−lag}⟩|²``;
- quantum, shots: the same pair estimated every ``shot_every`` steps by
  :func:`qsem.simulators.estimate_overlap` (compute–uncompute) at each shot count
  of ``shot_grid`` per probe input, pooled over the task's inputs into one
  Wilson interval (:meth:`~qsem.simulators.shot_estimates.OverlapEstimate.pooled`);
  it fires when the distance's lower bound clears θ;
- classical: the frobenius (fixed-threshold) and adaptive detectors on the task's ``signal`` Δφ of
  the same model's outputs on the same probe inputs.

The shot estimates are drawn afterwards from the probe bindings the training
kept (``probe_x``, ``probe_w``), so every shot count sees the very same states.
Also measured: the time of one step's estimate (every probe input) per shot
count, on the torch engine and on Aer, both sampling modes.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from qsem.emergence.benchmark import Run
from qsem.narrow.emergence_train import SIGNALS, quantum_head, train_hybrid
from qsem.narrow.families import make_family
from qsem.narrow.transitions import transitions_of
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.simulators import estimate_overlap

from ._emergence_cmsp_detectors import evaluate, quantum_detector, scalar_detectors
from ._emergence_quantum_report import table
from .emergence_cmsp import run_phases

__all__ = ["EXPERIMENT", "EmergenceQuantumConfig", "run", "shot_series", "task_runs"]

RULE = (
    "per task, on the fixed evaluation set: learned = first step with loss < {low} bits; "
    "cross = last step before it with loss > {high} bits; start = the last step <= cross at "
    "which the centred {onset}-step running mean of the loss is at least the plateau level "
    "(median loss over the {plateau} steps before cross); every task is its own transition "
    "(its own probe inputs, no merging); an event on a task's signal matches its transition "
    "when it lies in [start - {before}, start + {max_lag}]; lag = event - start"
)


@dataclass(frozen=True)
class EmergenceQuantumConfig:
    """Config of ``qsem run emergence-quantum`` (override any key with ``key=value``)."""

    #: the first scored seed; the scored seeds are seed, seed+1, ...
    seed: int = 0
    #: scored seeds (one hybrid each)
    seeds: int = 8
    #: tuning seeds: tune_offset, tune_offset + 1, ... (never scored)
    tune_seeds: int = 2
    #: first tuning seed
    tune_offset: int = 100
    #: task family (2 classes): msp, cmsp or null
    family: str = "msp"
    #: power-law exponent of the msp task frequencies
    alpha: float = 0.5
    #: control bits (one per atom at least)
    n_control: int = 4
    #: task bits
    n_task: int = 20
    #: atomic subtasks
    n_atoms: int = 4
    #: task bits per atom
    k: int = 3
    #: hidden widths of the hybrid's MLP trunk
    hybrid_widths: tuple[int, ...] = (64, 64)
    #: Adam learning rate
    hybrid_lr: float = 2e-3
    #: Adam epsilon
    adam_eps: float = 1e-5
    #: samples of each task per training step (msp: tasks drawn by frequency)
    hybrid_per_task: int = 100
    #: training steps per seed
    hybrid_steps: int = 1600
    #: samples of each task in the fixed evaluation set (ground truth)
    eval_per_task: int = 64
    #: samples of each task in the fixed probe batch (the detectors' states)
    hybrid_probe_per_task: int = 8
    #: qubits of the quantum layer
    n_qubits: int = 4
    #: trainable RY RZ layers (with a CNOT ring)
    q_layers: int = 2
    #: ground truth: above this many bits a task is not yet learned
    high_bits: float = 0.9
    #: ground truth: below this many bits a task is learned
    low_bits: float = 0.1
    #: ground truth: running-mean width of the onset rule
    onset: int = 51
    #: ground truth: steps before the crossing whose median loss is the plateau level
    plateau: int = 1000
    #: classical probe signal: one of literal, lagged, ema, ema_slow
    signal: str = "ema_slow"
    #: EMA decay of the ema signal
    ema_beta: float = 0.99
    #: lag in steps of the Ω pair (Ω_t, Ω_{t-lag}) and of the lagged / ema signals
    lag: int = 100
    #: EMA decay of ema_slow
    slow_beta: float = 0.995
    #: lag of ema_slow
    slow_lag: int = 200
    #: steps between two shot estimates (lag must be a multiple)
    shot_every: int = 20
    #: shots per probe input tried for the shot detector
    shot_grid: tuple[int, ...] = (10, 30, 100, 300, 1000)
    #: confidence level of the shot intervals
    confidence: float = 0.95
    #: scoring window [start - before, start + max_lag]
    max_lag: int = 500
    #: an event up to this many steps before a start still matches it
    before: int = 50
    #: steps after an event in which a detector stays silent
    refractory: int = 300
    #: every detector watches steps warmup..hybrid_steps (a multiple of shot_every): before
    #: `lag` steps the pair (Ω_t, Ω_{t-lag}) is not formed and Ω_t is compared with the
    #: random initial state
    warmup: int = 100
    #: repetitions of each timed estimate (median and min reported)
    timing_reps: int = 5
    #: also time the estimates on Qiskit Aer
    aer: bool = True
    #: steps between two training log records
    log_every: int = 100
    #: torch intra-op threads (0: leave torch's setting)
    threads: int = 1

    #: train_hybrid's online shot estimate is off: shots are drawn afterwards (module doc)
    shots = 0
    shot_pair = "lagged"

    def __post_init__(self) -> None:
        for key in (
            "seeds",
            "tune_seeds",
            "hybrid_per_task",
            "hybrid_steps",
            "eval_per_task",
            "hybrid_probe_per_task",
            "n_qubits",
            "q_layers",
            "lag",
            "slow_lag",
            "shot_every",
            "timing_reps",
            "log_every",
            "onset",
            "plateau",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        for key in ("seed", "tune_offset", "max_lag", "before", "refractory", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': must be >= 0, got {getattr(self, key)}")
        if self.warmup % self.shot_every or not 0 <= self.warmup < self.hybrid_steps:
            raise ConfigError(
                f"config key 'warmup': a multiple of shot_every={self.shot_every} in "
                f"[0, hybrid_steps), got {self.warmup}"
            )
        if self.lag % self.shot_every:
            raise ConfigError(
                f"config key 'lag': must be a multiple of shot_every={self.shot_every}, "
                f"got {self.lag}"
            )
        if not self.shot_grid or any(n < 1 for n in self.shot_grid):
            raise ConfigError(f"config key 'shot_grid': positive shot counts, got {self.shot_grid}")
        if (
            self.tune_offset < self.seed + self.seeds
            and self.seed < self.tune_offset + self.tune_seeds
        ):
            raise ConfigError(
                f"config key 'tune_offset': tuning seeds from {self.tune_offset} overlap the "
                f"scored seeds {self.seed}..{self.seed + self.seeds - 1}"
            )
        if self.signal not in SIGNALS:
            raise ConfigError(f"config key 'signal': one of {list(SIGNALS)}, got {self.signal!r}")
        if self.family not in ("msp", "cmsp", "null"):
            raise ConfigError(f"config key 'family': msp, cmsp or null, got {self.family!r}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"config key 'confidence': must lie in (0, 1), got {self.confidence}")
        if not 0 < self.low_bits < self.high_bits:
            raise ConfigError("config key 'low_bits': need 0 < low_bits < high_bits")
        try:
            make_family(self)
        except ValueError as exc:
            raise ConfigError(f"config key 'n_task' / 'k': invalid task setting: {exc}") from None


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _seeds(cfg: EmergenceQuantumConfig) -> tuple[list[int], list[int]]:
    return (
        [cfg.tune_offset + i for i in range(cfg.tune_seeds)],
        [cfg.seed + i for i in range(cfg.seeds)],
    )


# -- shot estimates from the kept probe bindings ----------------------------------------------


def shot_series(
    res: dict[str, Any], cfg: EmergenceQuantumConfig, shots: int, seed: int
) -> np.ndarray:
    """Per task, ``(rows, T, 3)`` (estimate, low, high) of the mean overlap of Ω_t with Ω_{t−lag}.

    Row ``i`` is step ``i · shot_every``; rows before ``lag`` are 1 (no pair yet).
    Each row is one :func:`estimate_overlap` job over every probe input at ``shots``
    shots each, seeded by ``(seed, shots, i)``; a task's counts are pooled over its
    inputs (:meth:`OverlapEstimate.pooled`).
    """
    circuit = quantum_head(cfg.n_qubits, cfg.q_layers)
    px, pw = res["probe_x"], res["probe_w"]
    n_t = res["task_q_lagged"].shape[1]
    k = cfg.lag // cfg.shot_every
    out = np.ones((px.shape[0], n_t, 3))
    for i in range(k, px.shape[0]):
        est = estimate_overlap(
            circuit,
            {"x": px[i - k], "w": pw[i - k]},
            {"x": px[i], "w": pw[i]},
            shots=shots,
            seed=((seed * 10_007 + shots) * 1_009 + i) % 2**32,
            confidence=cfg.confidence,
        )
        assert not isinstance(est, torch.Tensor)  # shots given: an estimate
        rows = torch.arange(px.shape[1]).view(n_t, -1)
        for j in range(n_t):
            r = rows[j]
            sub = dataclasses.replace(
                est, estimate=est.estimate[r], low=est.low[r], high=est.high[r], p0=est.p0[r]
            ).pooled()
            out[i, j] = (float(sub.estimate), float(sub.low), float(sub.high))
    return out


def task_runs(res: dict[str, Any], cfg: EmergenceQuantumConfig, signal: Any) -> list[Run]:
    """One :class:`Run` per task of one seed: that task's ``signal`` column and its transition.

    The run is what the detectors watch: steps ``warmup..hybrid_steps``, counted
    from ``warmup`` (step ``warmup`` is the run's step 0; a start before it is 0).

    ``signal``: a series name of :func:`train_hybrid` (``(steps + 1, T)``) or an
    array ``(rows, T, ...)`` (a shot series, one row every ``shot_every`` steps).
    """
    trans = transitions_of(
        _np(res["losses"]),
        high=cfg.high_bits,
        low=cfg.low_bits,
        onset=cfg.onset,
        plateau=cfg.plateau,
    )
    w = cfg.warmup
    if isinstance(signal, str):
        sig = _np(res[signal])[w:]
    else:
        sig = np.asarray(signal)[w // cfg.shot_every :]
    out = []
    for j, t in enumerate(trans):
        starts = [] if t is None else [max(0, t.start - w)]
        ends = [] if t is None else [max(0, t.learned - w)]
        out.append(Run(sig[:, j], starts, ends, steps=cfg.hybrid_steps - w))
    return out


# -- timing -------------------------------------------------------------------------------------


def _time_estimates(res: dict[str, Any], cfg: EmergenceQuantumConfig) -> list[dict[str, Any]]:
    """Seconds of one step's estimate (every probe input, N shots each): median and min of
    ``timing_reps`` after one warm-up call, torch engine and Aer, ``exact`` and ``backend``
    sampling."""
    circuit = quantum_head(cfg.n_qubits, cfg.q_layers)
    i = res["probe_x"].shape[0] - 1
    k = cfg.lag // cfg.shot_every
    a = {"x": res["probe_x"][i - k], "w": res["probe_w"][i - k]}
    b = {"x": res["probe_x"][i], "w": res["probe_w"][i]}
    backends: list[tuple[str, Any]] = [("torch", None)]
    if cfg.aer:
        from qsem.simulators.aer import AerBackend

        backends.append(("aer", AerBackend()))
    rows = []
    exact_s = []
    for _ in range(cfg.timing_reps + 1):
        t0 = time.perf_counter()
        estimate_overlap(circuit, a, b)
        exact_s.append(time.perf_counter() - t0)
    rows.append(
        {
            "backend": "torch",
            "sampling": "none (exact distance)",
            "shots": 0,
            "median_s": statistics.median(exact_s[1:]),
            "min_s": min(exact_s[1:]),
        }
    )
    for name, be in backends:
        for sampling in ("exact", "backend"):
            for n in cfg.shot_grid:
                ts = []
                for r in range(cfg.timing_reps + 1):
                    t0 = time.perf_counter()
                    estimate_overlap(circuit, a, b, shots=n, seed=r, backend=be, sampling=sampling)
                    ts.append(time.perf_counter() - t0)
                rows.append(
                    {
                        "backend": name,
                        "sampling": sampling,
                        "shots": n,
                        "median_s": statistics.median(ts[1:]),
                        "min_s": min(ts[1:]),
                    }
                )
    return rows


# -- the run ------------------------------------------------------------------------------------


def train_all(cfg: EmergenceQuantumConfig, ctx: RunContext) -> dict[str, Any]:
    """One resumable phase per seed (tuning seeds first)."""
    tune_s, score_s = _seeds(cfg)
    phases = []
    for s in (*tune_s, *score_s):
        tag = f"hybrid-{s}"

        def train(resume: Any, checkpoint: Any, s: int = s, tag: str = tag) -> dict[str, Any]:
            return train_hybrid(cfg, s, tag=tag, resume=resume, checkpoint=checkpoint, log=ctx.log)

        phases.append((tag, cfg.hybrid_steps, train))
    return run_phases(ctx, phases, desc="emergence-quantum seeds")


def _flat(per_seed: list[list[Run]]) -> list[Run]:
    return [r for runs in per_seed for r in runs]


def analyse(done: dict[str, Any], cfg: EmergenceQuantumConfig) -> dict[str, Any]:
    """Every detector tuned on the tuning seeds' tasks and scored on the scored seeds' tasks."""
    tune_s, score_s = _seeds(cfg)
    t_res = [done[f"hybrid-{s}"] for s in tune_s]
    s_res = [done[f"hybrid-{s}"] for s in score_s]

    def runs(sig: Any, res: list[dict[str, Any]]) -> list[Run]:
        return _flat([task_runs(r, cfg, sig) for r in res])

    out: dict[str, Any] = {}
    ht, hs = runs("task_q_lagged", t_res), runs("task_q_lagged", s_res)
    detect, grid = quantum_detector(cfg, ht, shots=False)  # type: ignore[arg-type]
    out["quantum exact"] = {**evaluate(detect, grid, ht, hs, cfg), "shots": 0}  # type: ignore[arg-type]
    ct, cs = runs(f"task_{cfg.signal}", t_res), runs(f"task_{cfg.signal}", s_res)
    for name in ("frobenius", "adaptive"):
        detect, grid = scalar_detectors(cfg, ct)[name]  # type: ignore[arg-type]
        out[f"classical {name}"] = evaluate(detect, grid, ct, cs, cfg)  # type: ignore[arg-type]
    for n in cfg.shot_grid:
        st = _flat(
            [
                task_runs(r, cfg, shot_series(r, cfg, n, s))
                for r, s in zip(t_res, tune_s, strict=True)
            ]
        )
        ss = _flat(
            [
                task_runs(r, cfg, shot_series(r, cfg, n, s))
                for r, s in zip(s_res, score_s, strict=True)
            ]
        )
        detect, grid = quantum_detector(cfg, st, shots=True)  # type: ignore[arg-type]
        out[f"quantum {n} shots"] = {**evaluate(detect, grid, st, ss, cfg), "shots": n}  # type: ignore[arg-type]
    return out


def shots_for_recall(dets: dict[str, Any], cfg: EmergenceQuantumConfig) -> dict[str, Any]:
    """The fewest shots per probe input whose detector's recall reaches the best classical
    recall (``shots_per_input``), and the exact quantum detector's recall
    (``shots_for_exact_recall``); ``None`` when no shot count of the grid does."""

    def fewest(target: float) -> int | None:
        ok = [n for n in cfg.shot_grid if dets[f"quantum {n} shots"]["recall"] >= target - 1e-12]
        return min(ok) if ok else None

    target = max(dets[f"classical {n}"]["recall"] for n in ("frobenius", "adaptive"))
    exact = dets["quantum exact"]["recall"]
    return {
        "classical_recall": target,
        "shots_per_input": fewest(target),
        "exact_recall": exact,
        "shots_for_exact_recall": fewest(exact),
    }


def run(cfg: EmergenceQuantumConfig, ctx: RunContext) -> dict[str, Any]:
    done = train_all(cfg, ctx)  # under cfg.threads: the runner calls the experiment
    t0 = time.perf_counter()
    dets = analyse(done, cfg)
    analysis_s = time.perf_counter() - t0
    timing = _time_estimates(done[f"hybrid-{cfg.seed}"], cfg)
    md = table(dets, timing, done[f"hybrid-{cfg.seed}"]["probe_x"].shape[1])
    ctx.write_text("table.md", md)
    tune_s, score_s = _seeds(cfg)
    truths = {
        s: [
            None if t is None else list(t)
            for t in transitions_of(
                _np(done[f"hybrid-{s}"]["losses"]),
                high=cfg.high_bits,
                low=cfg.low_bits,
                onset=cfg.onset,
                plateau=cfg.plateau,
            )
        ]
        for s in score_s
    }
    return {
        "detectors": {
            k: {kk: vv for kk, vv in v.items() if kk != "per_run"} for k, v in dets.items()
        },
        "shots_for_classical_recall": shots_for_recall(dets, cfg),
        "timing": timing,
        "transitions": {str(s): v for s, v in truths.items()},
        "n_transitions": sum(t is not None for v in truths.values() for t in v),
        "transition_rule": RULE.format(
            low=cfg.low_bits,
            high=cfg.high_bits,
            onset=cfg.onset,
            plateau=cfg.plateau,
            before=cfg.before,
            max_lag=cfg.max_lag,
        ),
        "seeds": score_s,
        "tune_seeds": tune_s,
        "timings_s": {"train": {t: done[t]["seconds"] for t in done}, "analysis": analysis_s},
        "config": asdict(cfg),
        "table": md,
    }


EXPERIMENT = Experiment(
    name="emergence-quantum",
    description="the quantum overlap detector (exact and shots) vs the classical Δφ, per task",
    defaults=EmergenceQuantumConfig(),
    run=run,
    checkpoint_every=500,
    results=(
        "detectors",
        "shots_for_classical_recall",
        "timing",
        "transitions",
        "n_transitions",
        "transition_rule",
        "seeds",
        "tune_seeds",
        "timings_s",
        "config",
        "table",
    ),
)
