"""``qsem run swap-demo``: SWAP-test similarity of successive states along a training run.

A small parameterised circuit on a register of wire dims ``dims`` (default one
qubit and one qutrit) is trained with Adam to prepare a random target state
(loss ``1 - <target|ρ|target>``); with ``noise > 0`` every layer ends with a
depolarizing channel on each wire, so the states are mixed. The weights are
stored at every step. Afterwards the similarity of the states ``stride`` steps
apart, ``(ρ_{t-stride}, ρ_t)``, is computed

* exactly: ``Tr(ρσ)`` (what the SWAP test measures), the Uhlmann fidelity ``F``
  (equal to ``Tr(ρσ)`` only for pure states) and the normalised overlap;
* by the SWAP test on the torch engine at each shot count in ``shots``, with a
  ``confidence`` interval (``method`` Wilson or Clopper–Pearson);
* by the SWAP test on Qiskit Aer at the same shot counts (``aer=true`` and
  qiskit-aer installed), every pair of the run in one Aer job per shot count,
  the registers prepared by the circuit itself.

Outputs: ``metrics.jsonl`` (per step: loss, exact overlap / fidelity with the
state ``stride`` steps before), ``swap_estimates.png`` (estimate ± interval
against the exact value, one panel per shot count), ``results.json`` (per
backend and shot count: the estimates, intervals, mean absolute error, interval
coverage of the exact value, mean half-width).
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qsem.checks import check_int, check_probability, check_real, check_shots
from qsem.circuits import Add, Circuit, Depolarizing, Parameter, SubspaceRY, SubspaceRZ
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.simulators import TorchSimulator
from qsem.simulators.similarity import (
    METHODS,
    fidelity,
    normalized_overlap,
    overlap,
    swap_test_circuits,
    swap_test_estimate,
)
from qsem.training import Step, descent, make_optimizer, run_steps

__all__ = ["EXPERIMENT", "SwapDemoConfig", "build_circuit", "run"]


@dataclass(frozen=True)
class SwapDemoConfig:
    """Config of ``qsem run swap-demo`` (override any key with ``key=value``)."""

    #: the random seed (target state, initial weights, shots follow it)
    seed: int = 0
    #: wire dimensions of the register (2: qubit, 3: qutrit; product at most 64)
    dims: list[int] = field(default_factory=lambda: [2, 3])
    #: trainable layers of the circuit
    layers: int = 2
    #: depolarizing probability on every wire after each layer (>0: mixed states)
    noise: float = 0.05
    #: Adam steps of the training run
    steps: int = 40
    #: Adam learning rate
    lr: float = 0.08
    #: compare the states stride steps apart, (ρ_{t-stride}, ρ_t)
    stride: int = 1
    #: shot counts of the SWAP-test estimates
    shots: list[int] = field(default_factory=lambda: [64, 512, 4096])
    #: confidence level of the intervals
    confidence: float = 0.95
    #: interval method: wilson or clopper_pearson
    method: str = "wilson"
    #: also run the SWAP tests on Qiskit Aer (when qiskit-aer is installed)
    aer: bool = True

    def __post_init__(self) -> None:
        if not self.dims or any(d < 2 for d in self.dims) or math.prod(self.dims) > 64:
            raise ConfigError(
                f"config key 'dims': wire dims >= 2 with a product of at most 64, got {self.dims}"
            )
        if self.layers < 1:
            raise ConfigError(f"config key 'layers': must be >= 1, got {self.layers}")
        check_probability("noise", self.noise, config=True)
        check_int("steps", self.steps, 1, config=True)
        check_real("lr", self.lr, minimum=0, strict=True, config=True)
        if not 1 <= self.stride <= self.steps:
            raise ConfigError(f"config key 'stride': must lie in 1..steps, got {self.stride}")
        if not self.shots:
            raise ConfigError("config key 'shots': at least one shot count is needed")
        for s in self.shots:
            check_shots("shots", s, config=True)
        if not 0 < self.confidence < 1:
            raise ConfigError(f"config key 'confidence': must lie in (0, 1), got {self.confidence}")
        if self.method not in METHODS:
            raise ConfigError(
                f"config key 'method': expected one of {list(METHODS)}, got {self.method!r}"
            )


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------


def build_circuit(
    dims: list[int], layers: int, noise: float, prefix: str = "w"
) -> tuple[Circuit, list[str]]:
    """The trainable circuit and its parameter names ``{prefix}{k}``.

    Each layer: ``SubspaceRY`` and ``SubspaceRZ`` on the levels ``(j, j+1)`` of every
    wire (``RY``, ``RZ`` on a qubit), an ``Add`` chain between neighbouring wires,
    and ``Depolarizing(noise)`` on every wire when ``noise > 0``.
    """
    c = Circuit(dims)
    names: list[str] = []

    def param() -> Parameter:
        names.append(f"{prefix}{len(names)}")
        return Parameter(names[-1])

    for _ in range(layers):
        for w, d in enumerate(dims):
            for j in range(d - 1):
                c.add(SubspaceRY(param(), wires=w, subspace=(j, j + 1)))
                c.add(SubspaceRZ(param(), wires=w, subspace=(j, j + 1)))
        for w in range(len(dims) - 1):
            c.add(Add(wires=[w, w + 1]))
        if noise > 0:
            for w in range(len(dims)):
                c.add(Depolarizing(noise, wires=w))
    return c, names


def _have_aer() -> bool:
    return (
        importlib.util.find_spec("qiskit_aer") is not None
        and importlib.util.find_spec("qsem.simulators.aer") is not None
    )


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------

_COLOURS = {"torch": "#1f77b4", "aer": "#d95f02"}


def plot_estimates(
    steps: list[int],
    exact: list[float],
    fid: list[float],
    estimates: dict[str, dict[str, dict[str, Any]]],
    shots: list[int],
    loss: list[float],
    confidence: float,
) -> Any:
    """Loss, then per shot count: exact Tr(ρσ), F, and each backend's estimate ± interval."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 2.4 * (len(shots) + 1)))
    axes = fig.subplots(len(shots) + 1, 1, sharex=True, squeeze=False)[:, 0]
    axes[0].plot(range(1, len(loss) + 1), loss, color="k")
    axes[0].set(ylabel="loss", title="training: 1 - <target|ρ|target>")
    x = np.asarray(steps, dtype=float)
    for ax, n in zip(axes[1:], shots, strict=True):
        ax.plot(x, exact, color="k", lw=1.2, label="exact Tr(ρσ)")
        if not np.allclose(fid, exact, atol=1e-9):
            ax.plot(x, fid, color="0.5", lw=1, ls="--", label="fidelity F (≠ Tr ρσ: mixed)")
        backends = [b for b in estimates if str(n) in estimates[b]]
        for k, b in enumerate(backends):
            e = estimates[b][str(n)]
            est = np.asarray(e["estimate"])
            err = np.stack([est - np.asarray(e["low"]), np.asarray(e["high"]) - est])
            offset = (k - (len(backends) - 1) / 2) * 0.18
            ax.errorbar(x + offset, est, yerr=err, fmt="o", ms=3, lw=0.8, capsize=1.5,
                        color=_COLOURS.get(b, None),
                        label=f"{b}: coverage {e['coverage']:.2f}")  # fmt: skip
        ax.set(ylabel="similarity", title=f"SWAP test, {n} shots, {confidence:.0%} intervals")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[-1].set(xlabel="step t (pair: state at t - stride vs state at t)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------


def _summary(est: Any, exact: torch.Tensor) -> dict[str, Any]:
    d = est.as_dict()
    d["mean_abs_error"] = float((est.raw - exact).abs().mean())
    d["coverage"] = float(est.contains(exact).double().mean())
    d["mean_halfwidth"] = float(est.halfwidth.mean())
    return d


@dataclass
class _Model:
    """The trainable circuit, its simulator and the target state of the training."""

    circuit: Circuit
    names: list[str]
    sim: TorchSimulator
    target: torch.Tensor

    def states(self, ws: torch.Tensor) -> Any:
        return self.sim.run(self.circuit, {n: ws[..., k] for k, n in enumerate(self.names)})

    def loss(self, ws: torch.Tensor) -> torch.Tensor:
        return 1 - overlap(self.target, self.states(ws), check=False)


@dataclass
class _Training:
    """The weights of every step (``history[t]``: after step ``t``), losses and time."""

    history: list[torch.Tensor]
    losses: list[float]
    train_seconds: float
    final_loss: float


def _train(cfg: SwapDemoConfig, ctx: RunContext, model: _Model, w0: torch.Tensor) -> _Training:
    """Adam on ``1 - <target|ρ|target>``; logs the exact similarity of the pair
    (t - stride, t) each step; checkpoints and resumes."""
    weights = torch.nn.Parameter(w0)
    optimizer, _ = make_optimizer([weights], cfg.lr)
    history: list[torch.Tensor] = [weights.detach().clone()]
    losses: list[float] = []
    train_seconds = 0.0
    start = 0
    state = ctx.restore()
    if state is not None:
        weights.data.copy_(state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        losses = list(state["losses"])
        train_seconds = float(state["train_seconds"])
        start = int(state["step"])
        ctx.echo(f"{ctx.label}: resuming after step {start} of {cfg.steps}")

    def snapshot() -> dict[str, Any]:
        return {
            "weights": weights.detach().clone(),
            "optimizer": optimizer.state_dict(),
            "history": [h.clone() for h in history],
            "losses": list(losses),
            "train_seconds": train_seconds,
            "step": step,
        }

    step = start

    def after(done: Step) -> None:
        nonlocal step, train_seconds
        step, train_seconds = done.step, train_seconds + done.seconds
        losses.append(done.loss)
        history.append(weights.detach().clone())
        record: dict[str, Any] = {"loss": losses[-1]}
        if step >= cfg.stride:
            with torch.no_grad():
                pair = model.states(torch.stack([history[step - cfg.stride], history[step]]))
                rho = pair.density_matrix
                record["exact_overlap"] = float(overlap(rho[0], rho[1]))
                record["fidelity"] = float(fidelity(rho[0], rho[1]))
        ctx.log(step, **record)

    def save(t: int) -> None:
        ctx.checkpoint(t, snapshot, force=t == cfg.steps)

    bar = ctx.progress(range(start + 1, cfg.steps + 1), total=cfg.steps, initial=start)
    run_steps(descent(optimizer, lambda _: model.loss(weights)), bar, after=after, checkpoint=save)
    with torch.no_grad():
        final_loss = float(model.loss(weights))
    return _Training(history, losses, train_seconds, final_loss)


def _aer_estimates(
    cfg: SwapDemoConfig, ctx: RunContext, w_all: torch.Tensor, t_idx: list[int],
    exact: torch.Tensor, estimates: dict[str, Any], timings: dict[str, Any],
) -> str:  # fmt: skip
    """The same pairs' SWAP tests on Aer (into ``estimates`` / ``timings``); a note."""
    if not cfg.aer:
        return "not requested (aer=false)"
    if not _have_aer():
        note = "not run: qiskit-aer (or qsem.simulators.aer) is not installed"
        ctx.echo(f"{ctx.label}: {note}")
        return note
    from qsem.simulators.aer import AerBackend

    dims = list(cfg.dims)
    backend = AerBackend()
    prep_a, names_a = build_circuit(dims, cfg.layers, cfg.noise, prefix="a")
    prep_b, names_b = build_circuit(dims, cfg.layers, cfg.noise, prefix="b")
    values = torch.cat([w_all[[t - cfg.stride for t in t_idx]], w_all[t_idx]], dim=1)
    estimates["aer"], timings["aer"] = {}, {}
    for j, n in enumerate(cfg.shots):
        tick = time.perf_counter()
        est = swap_test_circuits(
            prep_a, prep_b, backend=backend, values=values, names=names_a + names_b,
            shots=n, seed=cfg.seed * 1000 + j, confidence=cfg.confidence, method=cfg.method,
        )  # fmt: skip
        timings["aer"][str(n)] = time.perf_counter() - tick
        estimates["aer"][str(n)] = _summary(est, exact)
    return f"AerBackend(method={backend.method!r}, device={backend.device!r})"


def _echo_summary(ctx: RunContext, estimates: dict[str, Any]) -> dict[str, Any]:
    """Per backend and shot count: mean absolute error, coverage, half-width (echoed)."""
    summary = {
        b: {
            n: {k: e[k] for k in ("mean_abs_error", "coverage", "mean_halfwidth")}
            for n, e in per.items()
        }
        for b, per in estimates.items()
    }
    for b, per in summary.items():
        text = ", ".join(
            f"{n} shots: MAE {v['mean_abs_error']:.3f}, coverage {v['coverage']:.2f}"
            for n, v in per.items()
        )
        ctx.echo(f"{ctx.label} [{b}] {text}")
    return summary


def run(cfg: SwapDemoConfig, ctx: RunContext) -> dict[str, Any]:
    """Train, store the weights of every step, then compare states exactly and by SWAP test."""
    dims = list(cfg.dims)
    circuit, names = build_circuit(dims, cfg.layers, cfg.noise)
    mode = "density_matrix" if cfg.noise > 0 else "statevector"
    gen = torch.Generator().manual_seed(cfg.seed)
    target = torch.randn(math.prod(dims), dtype=torch.complex128, generator=gen)
    model = _Model(circuit, names, TorchSimulator(mode, dtype=torch.complex128),
                   target / torch.linalg.vector_norm(target))  # fmt: skip
    w0 = 0.3 * torch.randn(len(names), dtype=torch.float64, generator=gen)
    tr = _train(cfg, ctx, model, w0)

    with torch.no_grad():
        w_all = torch.stack(tr.history)  # (steps + 1, P)
        rho_all = model.states(w_all).density_matrix  # (steps + 1, D, D)
        t_idx = list(range(cfg.stride, cfg.steps + 1))
        rho_a, rho_b = rho_all[[t - cfg.stride for t in t_idx]], rho_all[t_idx]
        exact = overlap(rho_a, rho_b)
        fid = fidelity(rho_a, rho_b)
        norm = normalized_overlap(rho_a, rho_b)

    estimates: dict[str, dict[str, dict[str, Any]]] = {"torch": {}}
    timings: dict[str, dict[str, float]] = {"torch": {}}
    for j, n in enumerate(cfg.shots):
        tick = time.perf_counter()
        est: Any = swap_test_estimate(
            rho_a, rho_b, n, seed=cfg.seed * 1000 + j, confidence=cfg.confidence,
            method=cfg.method, dims=dims, check=False,
        )  # fmt: skip
        timings["torch"][str(n)] = time.perf_counter() - tick
        estimates["torch"][str(n)] = _summary(est, exact)
    aer_note = _aer_estimates(cfg, ctx, w_all, t_idx, exact, estimates, timings)

    fig = plot_estimates(
        t_idx, exact.tolist(), fid.tolist(), estimates, list(cfg.shots), tr.losses, cfg.confidence
    )
    ctx.save_figure(fig, "swap_estimates.png")
    return {
        "dims": dims,
        "mixed": cfg.noise > 0,
        "steps": cfg.steps,
        "stride": cfg.stride,
        "pairs": len(t_idx),
        "initial_loss": tr.losses[0] if tr.losses else tr.final_loss,
        "final_loss": tr.final_loss,
        "train_seconds": round(tr.train_seconds, 4),
        "pair_steps": t_idx,
        "exact_overlap": exact.tolist(),
        "fidelity": fid.tolist(),
        "normalized_overlap": norm.tolist(),
        "max_fidelity_minus_overlap": float((fid - exact).max()),
        "summary": _echo_summary(ctx, estimates),
        "estimates": estimates,
        "estimate_seconds": timings,
        "aer": aer_note,
        "note": (
            "the SWAP test estimates Tr(ρσ) (= 2 P0 - 1); it equals the fidelity only for "
            "pure states"
        ),
    }


EXPERIMENT = Experiment(
    name="swap-demo",
    description="SWAP-test similarity of successive states of a training run vs the exact value",
    defaults=SwapDemoConfig(),
    run=run,
    checkpoint_every=10,
    results=(
        "dims",
        "mixed",
        "steps",
        "stride",
        "pairs",
        "initial_loss",
        "final_loss",
        "train_seconds",
        "pair_steps",
        "exact_overlap",
        "fidelity",
        "normalized_overlap",
        "max_fidelity_minus_overlap",
        "summary",
        "estimates",
        "estimate_seconds",
        "aer",
        "note",
    ),
)
