"""``qsem run qutrit-noise``: the qutrit head's calibration under transmon noise.

The story's stage c found the one-qutrit truth head better calibrated than a
``softmax(3)`` head at the same accuracy on the Kleene task (NLL about 0.107 vs 0.213).
Here the qutrit head's circuit (:func:`qsem.experiments.qutrit_vs_classical.qutrit_circuit`)
runs under :func:`~qsem.circuits.noise_qutrit.transmon_qutrit` noise of strength ``λ``
(each of ``strengths``), trained *and* evaluated under that noise, with the readout
confusion on its Born probabilities:

* every gate lasts ``λ · t_gate`` (relaxation ``T1 = (60, 30)``, dephasing
  ``T_φ = 80``, in the same unit);
* the readout confusion is ``I + λ (M - I)`` with ``M`` the default transmon readout
  (:data:`~qsem.circuits.noise_qutrit.DEFAULT_READOUT`; at ``λ = 1`` 3 %, 6 %, 8 % of
  ``|0>, |1>, |2>`` misread).

``λ = 0`` is the noiseless head. The softmax head (classical, untouched by the noise)
is trained on the same data and seeds (the same widths as ``qutrit-vs-classical``).
Reported per ``λ``: accuracy, NLL and ECE on the test split, mean with a bootstrap
interval over seeds (:func:`qsem.stats.seed_statistics`), and paired tests
qutrit − softmax over seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from qsem.circuits.noise_qutrit import DEFAULT_READOUT, transmon_qutrit
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.simulators import TorchSimulator
from qsem.stats import paired_tests, seed_statistics

from . import qutrit_vs_classical as qvc

__all__ = ["EXPERIMENT", "NoisyQutritHead", "QutritNoiseConfig", "noise_at", "run"]


@dataclass(frozen=True)
class _NoiseLead:
    #: the first seed; the seeds are seed, seed+1, ..., seed+n_seeds-1
    seed: int = 0
    #: seeds per noise strength (paired tests and intervals over them)
    n_seeds: int = 5
    #: noise strengths λ (0: noiseless); readout I + λ (M - I) must stay stochastic
    strengths: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0])
    #: gate duration at λ = 1 (unit of T1 = (60, 30) and T_φ = 80)
    t_gate: float = 0.5
    #: the three-class task: kleene, iris, wine or cmsp_undefined
    task: str = "kleene"


@dataclass(frozen=True)
class QutritNoiseConfig(qvc.HeadTrainingKeys, _NoiseLead):
    """Config of ``qsem run qutrit-noise`` (override any key with ``key=value``): the
    width, training and data keys of ``qsem run qutrit-vs-classical``, the noise keys."""

    #: width of the softmax model's feature extractor (qutrit model: matched count)
    hidden: int = 8
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        for key in ("n_seeds", "hidden", "epochs", "kleene_train_kbs", "kleene_test_kbs",
                    "cmsp_n_train", "cmsp_n_test"):  # fmt: skip
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        if not self.strengths:
            raise ConfigError("config key 'strengths': give at least one noise strength")
        m = np.asarray(DEFAULT_READOUT)
        for s in self.strengths:
            if not (s >= 0 and math.isfinite(s)) or (np.eye(3) + s * (m - np.eye(3))).min() < 0:
                raise ConfigError(
                    f"config key 'strengths': each must be >= 0 with I + λ (M - I) >= 0 "
                    f"(λ <= {1 / (1 - m.diagonal().min()):.3g}), got {s}"
                )
        if not (self.t_gate >= 0 and math.isfinite(self.t_gate)):
            raise ConfigError(f"config key 't_gate': must be >= 0, got {self.t_gate}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key 'lr': must be a positive finite number, got {self.lr}")
        if self.task not in qvc.TASKS:
            raise ConfigError(
                f"config key 'task': expected one of {list(qvc.TASKS)}, got {self.task!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"config key 'threads': must be >= 0, got {self.threads}")

    def base(self) -> qvc.QvCConfig:
        """The ``qutrit-vs-classical`` config of the same data and training."""
        shared = {f.name: getattr(self, f.name) for f in fields(qvc.HeadTrainingKeys)}
        return qvc.QvCConfig(
            seed=self.seed, n_seeds=self.n_seeds, tasks=self.task, heads="softmax,qutrit",
            dtype="complex128", threads=self.threads, **shared,
        )  # fmt: skip


def noise_at(strength: float, t_gate: float) -> Any:
    """The transmon qutrit model at noise strength ``λ`` (module docstring)."""
    m = np.asarray(DEFAULT_READOUT)
    return transmon_qutrit(
        t1=(60.0, 30.0), t_phi=80.0, t_1q=strength * t_gate, t_2q=strength * t_gate,
        p_leak=0.0, readout=np.eye(3) + strength * (m - np.eye(3)),
    )  # fmt: skip


class NoisyQutritHead(qvc.HeadModel):
    """The qutrit head model with its circuit under ``noise`` and its readout confusion."""

    def __init__(self, n_features: int, hidden: int, noise: Any) -> None:
        super().__init__("qutrit", n_features, hidden, "complex128")
        self.circuit = noise.apply(self.circuit)
        self.simulator = TorchSimulator("density_matrix", dtype=torch.complex128)
        assert noise.default_readout is not None
        self.confusion = noise.default_readout.matrix

    def born(self, x: torch.Tensor) -> torch.Tensor:
        return super().born(x) @ self.confusion.to(x.dtype)


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------
def run(cfg: QutritNoiseConfig, ctx: RunContext) -> dict[str, Any]:
    base = cfg.base()
    seeds = [cfg.seed + s for s in range(cfg.n_seeds)]
    tick = time.perf_counter()
    raw: dict[str, list[dict[str, Any]]] = {"softmax": []}
    raw.update({f"qutrit@{s:g}": [] for s in cfg.strengths})
    widths: dict[str, int] = {}
    step = 0
    for seed in ctx.progress(seeds, total=len(seeds)):
        data = qvc._load(base, cfg.task, seed)
        widths = qvc.matched_widths(["softmax", "qutrit"], data.n_features, cfg.hidden)
        init = seed * 1000
        raw["softmax"].append(qvc.train_one(base, data, "softmax", widths["softmax"], init))
        for s in cfg.strengths:
            noise = noise_at(s, cfg.t_gate)

            def make(noise: Any = noise, n: int = data.n_features, h: int = widths["qutrit"]):
                return NoisyQutritHead(n, h, noise)

            r = qvc.train_one(base, data, "qutrit", widths["qutrit"], init + 1, make)
            raw[f"qutrit@{s:g}"].append(r)
            ctx.log(step, seed=seed, strength=s, **r)
            step += 1
    metrics = ("accuracy", "nll", "ece")
    summary = {
        k: {m: seed_statistics([r[m] for r in rs], seed=cfg.seed) for m in metrics}
        for k, rs in raw.items()
    }
    tests = {
        k: {m: paired_tests([r[m] for r in rs], [r[m] for r in raw["softmax"]]) for m in metrics}
        for k, rs in raw.items()
        if k != "softmax"
    }
    results = {
        "task": cfg.task,
        "seeds": seeds,
        "strengths": list(cfg.strengths),
        "widths": widths,
        "summary": summary,
        "tests_qutrit_minus_softmax": tests,
        "per_seed": raw,
        "wall_seconds": round(time.perf_counter() - tick, 2),
    }
    ctx.write_text("qutrit_noise.md", markdown_table(results))
    return results


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def _ci(s: dict[str, Any]) -> str:
    lo, hi = s["ci_low"], s["ci_high"]
    span = "" if lo is None else f" [{lo:.3f}, {hi:.3f}]"
    return f"{s['mean']:.3f}{span}"


def markdown_table(results: dict[str, Any]) -> str:
    """Per model: accuracy, NLL, ECE (mean [95 % bootstrap interval]) and the paired tests."""
    lines = [
        f"Task {results['task']}, seeds {results['seeds']}; mean [95 % bootstrap interval].",
        "",
        "| model | accuracy | NLL | ECE | NLL − softmax (t-test p) |",
        "|---|---|---|---|---|",
    ]
    for k, s in results["summary"].items():
        t = results["tests_qutrit_minus_softmax"].get(k)
        diff = "-" if t is None else f"{t['nll']['mean_diff']:+.3f} (p = {_p(t['nll']['ttest_p'])})"
        lines.append(f"| {k} | {_ci(s['accuracy'])} | {_ci(s['nll'])} | {_ci(s['ece'])} | {diff} |")
    return "\n".join(lines) + "\n"


EXPERIMENT = Experiment(
    name="qutrit-noise",
    description="the qutrit head's calibration advantage over softmax under transmon noise",
    defaults=QutritNoiseConfig(),
    run=run,
    results=(
        "task",
        "seeds",
        "strengths",
        "widths",
        "summary",
        "tests_qutrit_minus_softmax",
        "per_seed",
        "wall_seconds",
    ),
)
