"""Training runs that record what emergence detectors are scored on (``qsem run emergence-cmsp``).

Two models learn CMSP (:mod:`qsem.narrow.cmsp`, atoms + composite) with Adam on
fresh samples (the MLP also any family of :mod:`qsem.narrow.families`):

- :func:`train_mlp`: ``E`` seeds of a ReLU MLP at once (:class:`EnsembleMLP`);
- :func:`train_hybrid`: one seed of a hybrid model (any 2-class family; per-task
  signals too, for ``qsem run emergence-quantum``) whose last layer is a
  :class:`~qsem.simulators.QuantumLayer` (an MLP trunk gives ``n_qubits`` angles,
  encoded by ``RY``; trainable ``RY RZ`` layers with a CNOT ring; the class
  probabilities are the Born probabilities of wire 0), so every probe input
  has a pure state Ω at every step.

Every step both record, on a fixed evaluation set, each task's loss in bits
(the ground truth, :mod:`qsem.narrow.transitions`) and, on a fixed probe batch
covering every task, the signals of :class:`~qsem.narrow.transitions.ProbeSignals`.
The hybrid also records the quantum distance between successive Ω states
(``1 − F`` averaged over the probe batch, exact), the same between states
``lag`` steps apart, the Bures angle, and a shot estimate of the successive
overlap with its confidence interval. Runs checkpoint and resume through a
``checkpoint(step, snapshot_fn)`` callable (a :class:`~qsem.runner.RunContext`'s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from qsem.circuits import CNOT, RY, RZ, Circuit, ParameterVector
from qsem.circuits.errors import arg_error
from qsem.simulators import QuantumLayer, simulate
from qsem.simulators.similarity import bures_angle, overlap
from qsem.training import OptimizerKind, descent, make_optimizer, run_steps

from .cmsp import make_generator
from .families import ensemble_batch, make_family
from .mlp import EnsembleMLP, build_mlp
from .transitions import ProbeSignals, SignalBank, task_entropy

__all__ = [
    "SIGNALS",
    "TASK_SIGNALS",
    "HybridCMSP",
    "ensemble_batch",
    "quantum_head",
    "train_hybrid",
    "train_mlp",
]

LN2 = math.log(2.0)
#: the probe signals recorded (:class:`~qsem.narrow.transitions.SignalBank`)
SIGNALS = ("literal", "lagged", "ema", "ema_slow")
#: the per-task probe signals recorded by :func:`train_mlp` (``(steps + 1, E, T)`` each)
#: plus ``entropy_task``: the mean output entropy of each task's probe slice
#: (:func:`~qsem.narrow.transitions.task_entropy`)
TASK_SIGNALS = (*(f"{k}_task" for k in SIGNALS), "entropy_task")
Checkpoint = Callable[[int, Callable[[], dict[str, Any]]], Any]
Log = Callable[..., None]


def _task_losses(logp: torch.Tensor, y: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Per-member, per-task mean NLL in bits ``(E, T)`` from log-probabilities ``(E, N, C)``."""
    nll = -logp.gather(-1, y[..., None]).squeeze(-1)
    return nll.view(y.shape[0], n_tasks, -1).mean(-1) / LN2


def _signals(cfg: Any, tasks: int | None = None) -> SignalBank:
    return SignalBank(
        ProbeSignals(beta=cfg.ema_beta, lag=cfg.lag, tasks=tasks),
        ProbeSignals(beta=cfg.slow_beta, lag=cfg.slow_lag, tasks=tasks),
    )


@dataclass
class _Run:
    """What both training loops checkpoint: the model, Adam, the data generator,
    the probe signals' state and the recorded series (plus loop-specific extras)."""

    tag: str
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    data_gen: torch.Generator
    sig: SignalBank
    series: dict[str, torch.Tensor]
    start: int = 0
    seconds: float = 0.0
    tick: float = field(default_factory=time.perf_counter)

    def restore(self, resume: dict[str, Any] | None) -> dict[str, Any]:
        """Load a :meth:`snapshot` (if any); returns it (or ``{}``) for the extras."""
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            self.opt.load_state_dict(resume["optimizer"])
            self.data_gen.set_state(resume["data_gen"])
            self.sig.load_state_dict(resume["signals_state"])
            self.series = {k: v.clone() for k, v in resume["series"].items()}
            self.start, self.seconds = int(resume["step"]), float(resume["seconds"])
        self.tick = time.perf_counter()
        return resume or {}

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.tick

    def snapshot(self, step: int, **extra: Any) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "signals_state": self.sig.state_dict(),
            "series": self.series,
            **extra,
            "seconds": self.elapsed(),
        }

    def train(
        self,
        steps: int,
        loss: Callable[[], torch.Tensor],
        record: Callable[[int], None],
        checkpoint: Checkpoint | None,
        extras: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        """The loop both models share (:func:`qsem.training.run_steps`): record step 0 (a
        fresh run), then for each step after :attr:`start` up to ``steps`` one Adam step on
        ``loss()``, ``record(step)`` and (before the last) ``checkpoint(step, snapshot)``
        with ``extras()`` saved too."""
        if self.start == 0:  # a fresh run (a restored one starts after a checkpointed step)
            record(0)

        def save(step: int) -> None:
            if checkpoint is not None and step < steps:
                checkpoint(step, partial(self._snapshot_with, step, extras))

        run_steps(descent(self.opt, lambda _: loss()), range(self.start + 1, steps + 1),
                  after=lambda s: record(s.step), checkpoint=save)  # fmt: skip

    def _snapshot_with(self, step: int, extras: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return self.snapshot(step, **extras())


def _data(
    fam: Any, cfg: Any, members: int, base: int, probe_per_task: int
) -> tuple[torch.Generator, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The training-data generator and the fixed evaluation (``x``, ``y``) and probe
    (``x``) batches of ``members`` members, each drawn from its own generator seeded
    from ``base``."""
    x_ev, y_ev = fam.eval_batch(cfg.eval_per_task, members, make_generator(base + 1))
    x_pr, _ = fam.eval_batch(probe_per_task, members, make_generator(base + 2))
    return make_generator(base), x_ev, y_ev, x_pr


def _two_class_family(cfg: Any) -> Any:
    """``make_family(cfg)``, refused in one line unless it has 2 classes (the hybrid
    reads them off wire 0)."""
    fam = make_family(cfg)
    if fam.n_classes != 2:
        name = getattr(cfg, "family", "cmsp")
        raise arg_error("family", f"the hybrid reads 2 classes off wire 0; {name!r} has "
                        f"{fam.n_classes}")  # fmt: skip
    return fam


def train_mlp(
    cfg: Any,
    seeds: list[int],
    *,
    tag: str,
    resume: dict[str, Any] | None = None,
    checkpoint: Checkpoint | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train ``len(seeds)`` MLPs (member ``e`` initialised from ``seeds[e]``) for ``cfg.steps``.

    The task is ``make_family(cfg)`` (:mod:`qsem.narrow.families`; CMSP unless
    ``cfg.family`` says otherwise); the optimiser Adam, or AdamW when
    ``cfg.weight_decay > 0`` (absent: 0). Returns (tensors, checkpoint-safe)
    ``losses`` ``(steps + 1, E, T)`` (row t: after t steps), ``signals`` (name ->
    ``(steps + 1, E)``), ``task_signals`` (name in :data:`TASK_SIGNALS` ->
    ``(steps + 1, E, T)``: the same distances on each task's slice of the probe
    batch), ``ema_snapshots`` ``(steps // lag + 1, E, B, C)`` (the EMA of
    the probe outputs every ``lag`` steps, for the L1 detector) and ``seconds``.
    ``tag`` names the phase in checkpoints and logs.
    """
    fam = make_family(cfg)
    n_t, e_n, n_c = len(fam.tasks), len(seeds), fam.n_classes
    model = EnsembleMLP(fam.input_dim, cfg.widths, n_c, [make_generator(s) for s in seeds])
    wd = float(getattr(cfg, "weight_decay", 0.0))
    kind: OptimizerKind = "adamw" if wd > 0 else "adam"
    opt, _ = make_optimizer(model, cfg.lr, kind=kind, eps=cfg.adam_eps, weight_decay=wd)
    data_gen, x_ev, y_ev, x_pr = _data(fam, cfg, e_n, seeds[0] * 7919 + 13, cfg.probe_per_task)
    sig = _signals(cfg, tasks=n_t)
    n = cfg.steps
    series: dict[str, torch.Tensor] = {
        "losses": torch.zeros(n + 1, e_n, n_t),
        **{k: torch.zeros(n + 1, e_n, n_t) for k in TASK_SIGNALS},
        "ema_snapshots": torch.zeros(n // cfg.lag + 1, e_n, x_pr.shape[1], n_c),
        **{k: torch.zeros(n + 1, e_n) for k in SIGNALS},
    }
    run = _Run(tag, model, opt, data_gen, sig, series)
    run.restore(resume)
    series = run.series

    def record(step: int) -> None:
        with torch.no_grad():
            series["losses"][step] = _task_losses(torch.log_softmax(model(x_ev), -1), y_ev, n_t)
            phi = torch.softmax(model(x_pr), -1)
            out = sig.update(phi)
            entropy = task_entropy(phi, n_t)
        for k, v in out.items():
            series[k][step] = v
        series["entropy_task"][step] = entropy
        if step % cfg.lag == 0 and sig.ema is not None:
            series["ema_snapshots"][step // cfg.lag] = sig.ema
        if log is not None and step % cfg.log_every == 0:
            log(
                step,
                phase=tag,
                task_loss_bits=series["losses"][step].tolist(),
                **{f"dphi_{k}": v.tolist() for k, v in out.items()},
                probe_entropy_task=entropy.tolist(),
            )

    def loss() -> torch.Tensor:
        x, y = fam.train_batch(cfg.per_task, e_n, data_gen)
        return F.cross_entropy(model(x).reshape(-1, n_c), y.reshape(-1)) * e_n

    run.train(cfg.steps, loss, record, checkpoint)
    return {
        "seeds": seeds,
        "losses": series["losses"],
        "signals": {k: series[k] for k in SIGNALS},
        "task_signals": {k: series[k] for k in TASK_SIGNALS},
        "ema_snapshots": series["ema_snapshots"],
        "seconds": round(run.elapsed(), 2),
    }


def quantum_head(n_qubits: int, layers: int) -> Circuit:
    """``RY(x_i)`` on every qubit, then ``layers`` of ``RY(w) RZ(w)`` per qubit and a CNOT ring."""
    x = ParameterVector("x", n_qubits)
    w = ParameterVector("w", 2 * n_qubits * layers)
    c = Circuit.qubits(n_qubits)
    for i in range(n_qubits):
        c.add(RY(x[i], wires=i))
    j = 0
    for _ in range(layers):
        for i in range(n_qubits):
            c.add(RY(w[j], wires=i), RZ(w[j + 1], wires=i))
            j += 2
        for i in range(n_qubits if n_qubits > 2 else n_qubits - 1):
            c.add(CNOT(wires=[i, (i + 1) % n_qubits]))
    return c


class HybridCMSP(torch.nn.Module):
    """MLP trunk ``in -> widths -> n_qubits`` angles, then a :class:`QuantumLayer` head.

    ``forward(x)`` returns class probabilities ``(B, 2)`` = the Born
    probabilities of wire 0; :meth:`omega` the pure states ``(B, 2**n_qubits)``.
    """

    def __init__(
        self, in_dim: int, widths: tuple[int, ...], n_qubits: int, layers: int, seed: int
    ) -> None:
        super().__init__()
        self.trunk = build_mlp(in_dim, widths, n_qubits, generator=make_generator(seed))
        self.circuit = quantum_head(n_qubits, layers)
        self.head = QuantumLayer(
            self.circuit, probs_wires=[0], weight_shapes={"w": 2 * n_qubits * layers}, seed=seed
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float64 into the head: its output follows the input dtype
        return self.head(self.trunk(x).to(torch.float64))

    def bindings(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The circuit's parameter bindings for inputs ``x`` (rows = inputs), detached."""
        with torch.no_grad():
            return {
                "x": self.trunk(x).detach().to(torch.float64),
                "w": self.head.weights["w"].detach().clone(),
            }

    def omega(self, x: torch.Tensor) -> torch.Tensor:
        """Ω: the head's pure state per input, ``(B, 2**n_qubits)`` complex."""
        return simulate(self.circuit, self.bindings(x), dtype=torch.complex128).vector


def _estimate_mean_overlap(
    circuit: Circuit,
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    shots: int,
    seed: int,
    confidence: float,
) -> tuple[float, float, float]:
    """Shot estimate of the probe-mean overlap F̄ with its confidence interval.

    Each probe input gets ``shots`` shots of the default estimator
    (:func:`qsem.simulators.estimate_overlap`, compute–uncompute, binomial counts
    drawn from the exact probabilities); the counts are pooled over the probe
    batch (:meth:`~qsem.simulators.shot_estimates.OverlapEstimate.pooled`): one
    estimate of F̄ and one binomial interval. Returns ``(estimate, low, high)``.
    """
    from qsem.simulators import estimate_overlap
    from qsem.simulators.shot_estimates import OverlapEstimate

    est = estimate_overlap(
        circuit, a, b, shots=shots, seed=seed, confidence=confidence, sampling="exact"
    )
    assert isinstance(est, OverlapEstimate)  # shots given: an estimate, not exact values
    pooled = est.pooled()
    return float(pooled.estimate), float(pooled.low), float(pooled.high)


def _hybrid_series(cfg: Any, n_t: int, n_probe: int, n_w: int) -> dict[str, torch.Tensor]:
    """The zeroed series of a hybrid run (see :func:`train_hybrid`)."""
    n, rows = cfg.hybrid_steps, cfg.hybrid_steps // cfg.shot_every + 1
    f64 = torch.float64
    return {
        "losses": torch.zeros(n + 1, n_t),
        "q_shots": torch.ones(rows, 3, dtype=f64),
        **{k: torch.zeros(n + 1, dtype=f64) for k in (*SIGNALS, "q_exact", "q_lagged", "bures")},
        # per task (columns): the same signals on that task's probe inputs only
        **{f"task_{k}": torch.zeros(n + 1, n_t, dtype=f64) for k in (*SIGNALS, "q_lagged")},
        "probe_x": torch.zeros(rows, n_probe, cfg.n_qubits, dtype=f64),
        "probe_w": torch.zeros(rows, n_w, dtype=f64),
    }


def _record_quantum(
    cfg: Any, series: dict[str, torch.Tensor], step: int, circuit: Circuit,
    held: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]],
    now: tuple[torch.Tensor, dict[str, torch.Tensor]], seed: int,
) -> None:  # fmt: skip
    """The quantum series of ``step`` (see :func:`train_hybrid`) from the state ``now``
    (Ω_t and its bindings) and the ``held`` ones (the last ``lag``, oldest first), which
    then take ``now`` in."""
    states, binds = held
    psi, new = now
    if step % cfg.shot_every == 0:
        series["probe_x"][step // cfg.shot_every] = new["x"]
        series["probe_w"][step // cfg.shot_every] = new["w"]
    if states:
        # (B, 1, D): a batch of statevectors, never read as one (D, D) density matrix
        f_prev = overlap(states[-1][:, None], psi[:, None], check=False).clamp(0, 1)
        f_lag = overlap(states[0][:, None], psi[:, None], check=False).clamp(0, 1)
        series["q_exact"][step] = (1 - f_prev).mean()
        series["q_lagged"][step] = (1 - f_lag).mean()
        n_t = series["task_q_lagged"].shape[1]  # probe rows are task-major
        series["task_q_lagged"][step] = (1 - f_lag).view(n_t, -1).mean(1)
        series["bures"][step] = bures_angle(states[-1][:, None], psi[:, None], check=False).mean()
        if cfg.shots > 0 and step % cfg.shot_every == 0:
            old = binds[0] if cfg.shot_pair == "lagged" else binds[-1]
            f = _estimate_mean_overlap(
                circuit, old, new, cfg.shots, seed * 1_000_003 + step, cfg.confidence
            )
            series["q_shots"][step // cfg.shot_every] = torch.tensor(f)
    states.append(psi)
    binds.append(new)
    if len(states) > cfg.lag:
        states.pop(0)
        binds.pop(0)


def train_hybrid(
    cfg: Any,
    seed: int,
    *,
    tag: str,
    resume: dict[str, Any] | None = None,
    checkpoint: Checkpoint | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train one hybrid model for ``cfg.hybrid_steps``; series as :func:`train_mlp` plus quantum.

    Extra series (length ``steps + 1``, 0 at step 0): ``q_exact`` = mean over the
    probe batch of ``1 − |⟨Ω_t|Ω_{t−1}⟩|²``; ``q_lagged`` = the same between
    ``Ω_t`` and ``Ω_{t−lag}`` (from the oldest held before ``lag`` steps);
    ``bures`` = mean Bures angle ``arccos |⟨Ω_t|Ω_{t−1}⟩|``; and, when
    ``cfg.shots > 0``, ``q_shots`` ``(steps // shot_every + 1, 3)``: at every
    ``shot_every``-th step, the shot estimate of the probe-mean overlap F̄ of
    ``Ω_t`` with ``Ω_{t−lag}`` (``shot_pair="lagged"``) or ``Ω_{t−1}``
    (``"successive"``) and its interval (:func:`_estimate_mean_overlap`).

    The task is ``make_family(cfg)`` (:mod:`qsem.narrow.families`, 2 classes: CMSP
    unless ``cfg.family`` says otherwise). Per task (probe rows are task-major), the
    series ``task_<signal>`` ``(steps + 1, T)`` hold every probe signal of
    :data:`SIGNALS` and ``task_q_lagged`` on that task's probe inputs only (the
    signals of :func:`qsem.narrow.transitions.SignalBank` with the tasks as members),
    and at every ``shot_every``-th step ``probe_x`` ``(rows, B, n_qubits)`` and
    ``probe_w`` ``(rows, W)`` keep the circuit's bindings of the probe batch, so shot
    estimates at any shot count can be drawn afterwards from the very states
    (:func:`qsem.simulators.estimate_overlap`).
    """
    fam = _two_class_family(cfg)
    n_t = len(fam.tasks)
    model = HybridCMSP(fam.input_dim, cfg.hybrid_widths, cfg.n_qubits, cfg.q_layers, seed)
    opt, _ = make_optimizer(model, cfg.hybrid_lr, eps=cfg.adam_eps)
    data_gen, x_ev, y_ev, x_pr = _data(fam, cfg, 1, seed * 7919 + 17, cfg.hybrid_probe_per_task)
    x_ev, y_ev, x_pr = x_ev[0], y_ev[0], x_pr[0]
    sig, task_sig = _signals(cfg), _signals(cfg)
    series = _hybrid_series(cfg, n_t, x_pr.shape[0], model.head.weights["w"].numel())
    states: list[torch.Tensor] = []
    binds: list[dict[str, torch.Tensor]] = []  # the last `lag` bindings, oldest first
    run = _Run(tag, model, opt, data_gen, sig, series)
    saved = run.restore(resume)
    series = run.series
    states, binds = list(saved.get("states", states)), list(saved.get("binds", binds))
    if "task_signals" in saved:
        task_sig.load_state_dict(saved["task_signals"])

    def record(step: int) -> None:
        with torch.no_grad():
            p = model(x_ev).clamp_min(1e-12)
            series["losses"][step] = _task_losses(p.log()[None], y_ev[None], n_t)[0]
            phi = model(x_pr)
            out = sig.update(phi[None])
            per_task = task_sig.update(phi.view(n_t, -1, phi.shape[-1]))  # tasks as members
            new = model.bindings(x_pr)
            psi = simulate(model.circuit, new, dtype=torch.complex128).vector
        for k, v in out.items():
            series[k][step] = v[0]
            series[f"task_{k}"][step] = per_task[k]
        _record_quantum(cfg, series, step, model.circuit, (states, binds), (psi, new), seed)
        if log is not None and step % cfg.log_every == 0:
            log(
                step,
                phase=tag,
                task_loss_bits=series["losses"][step].tolist(),
                dphi_ema=float(series["ema"][step]),
                q_exact=float(series["q_exact"][step]),
            )

    def loss() -> torch.Tensor:
        x, y = fam.train_batch(cfg.hybrid_per_task, 1, data_gen)
        return F.nll_loss(model(x[0]).clamp_min(1e-12).log(), y[0])

    def extras() -> dict[str, Any]:
        return {"states": states, "binds": binds, "task_signals": task_sig.state_dict()}

    run.train(cfg.hybrid_steps, loss, record, checkpoint, extras)
    return {"seed": seed, **series, "seconds": round(run.elapsed(), 2)}
