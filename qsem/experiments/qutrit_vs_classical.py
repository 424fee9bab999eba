"""``qsem run qutrit-vs-classical``: three-valued labels read by three heads.

Tasks (:mod:`qsem.tasks.three_class`): Kleene-logic queries, iris, wine and
CMSP with an undefined class. Every model is the same small feature extractor
(``Linear(F, h) -> tanh``) followed by a linear map to the head's input and
the head:

* ``softmax``: ``Linear(h, 3)`` logits -> ``softmax(3)``;
* ``qutrit``: ``Linear(h, 4)`` angles ``a`` -> one qutrit
  ``TRY(a0, (0,1)) TRY(a1, (1,2)) TRZ(a2, (0,1)) TRZ(a3, (1,2))`` then the
  trainable ``TRY(w0, (0,1)) TRY(w1, (1,2))``; the Born probabilities of
  ``|0>, |1>, |2>`` are ``P(T), P(F), P(U)`` (:class:`~qsem.layers.QutritTruthHead`);
* ``two_qubit``: ``Linear(h, 4)`` angles -> two qubits
  ``RY(a0) RY(a1) RZ(a2) RZ(a3) CNOT(0,1)`` then the trainable ``RY(w0) RY(w1)``;
  outcomes ``|00>, |01>, |10>`` -> ``T, F, U``; the probability of ``|11>`` is
  DISCARDED and the other three renormalised (a post-selection,
  :class:`~qsem.layers.TwoQubitHead`).

Budgets are matched by trainable-parameter count: the softmax model uses
width ``hidden``; each quantum model uses the width whose total count is
closest to the softmax model's (the counts are reported). Every head starts at
uniform predictions: the angle map's bias puts the circuits at
``(1/3, 1/3, 1/3)`` (away from the flat corner ``|0>``, where the Born
probabilities have zero gradient), as zero logits do. The circuits run on
the torch engine, one batched ``TorchSimulator.run`` per forward pass (angles
bound as ``(B,)`` tensors). Training: Adam, full batch. Metrics on the test
split over ``n_seeds`` seeds: accuracy, NLL, ECE (10 equal-width bins on the
top-class confidence), parameter count, step time; paired tests over seeds
(Wilcoxon signed-rank and paired t-test, scipy.stats) of qutrit against
softmax and against two-qubit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.checks import check_int, check_real
from qsem.circuits import CNOT, RY, RZ, TRY, TRZ, Circuit, Parameter
from qsem.layers.heads import QutritTruthHead, TwoQubitHead
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.simulators import TorchSimulator, probs
from qsem.stats import paired_tests
from qsem.tasks.three_class import (
    TASKS,
    ThreeClassData,
    load_cmsp_undefined,
    load_iris,
    load_kleene,
    load_wine,
)
from qsem.training import descent, make_optimizer, run_steps

__all__ = [
    "EXPERIMENT",
    "HEADS",
    "HeadModel",
    "HeadTrainingKeys",
    "QvCConfig",
    "expected_calibration_error",
    "matched_widths",
    "parameter_count",
    "run",
]

HEADS = ("softmax", "qutrit", "two_qubit")
METRICS = ("accuracy", "nll", "ece")
_DTYPES = {"complex64": torch.complex64, "complex128": torch.complex128}
_EPS = 1e-7


@dataclass(frozen=True)
class HeadTrainingKeys:
    """The model width, training and data keys of the head comparisons
    (``qsem run qutrit-vs-classical`` and ``qsem run qutrit-noise``)."""

    #: width of the softmax model's feature extractor (quantum models: matched count)
    hidden: int = 8
    #: full-batch Adam epochs
    epochs: int = 150
    #: Adam learning rate
    lr: float = 0.05
    #: knowledge bases of the Kleene training queries
    kleene_train_kbs: int = 20
    #: knowledge bases of the Kleene test queries
    kleene_test_kbs: int = 10
    #: training samples of cmsp_undefined
    cmsp_n_train: int = 600
    #: test samples of cmsp_undefined
    cmsp_n_test: int = 600

    def check_head_training(self) -> None:
        """Refuse counts below 1 and a learning rate that is not a positive finite number."""
        for key in ("hidden", "epochs", "kleene_train_kbs", "kleene_test_kbs", "cmsp_n_train",
                    "cmsp_n_test"):  # fmt: skip
            check_int(key, getattr(self, key), 1, config=True)
        check_real("lr", self.lr, minimum=0, strict=True, config=True)


@dataclass(frozen=True)
class _QvCLead:
    #: the first seed; the seeds are seed, seed+1, ..., seed+n_seeds-1
    seed: int = 0
    #: seeds per task and head (the paired tests run over them)
    n_seeds: int = 10
    #: comma-separated subset of kleene, iris, wine, cmsp_undefined
    tasks: str = "kleene,iris,wine,cmsp_undefined"
    #: comma-separated subset of softmax, qutrit, two_qubit
    heads: str = "softmax,qutrit,two_qubit"


@dataclass(frozen=True)
class QvCConfig(HeadTrainingKeys, _QvCLead):
    """Config of ``qsem run qutrit-vs-classical`` (override any key with ``key=value``)."""

    #: complex dtype of the simulated states: complex64 or complex128
    dtype: str = "complex64"
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        check_int("n_seeds", self.n_seeds, 1, config=True)
        self.check_head_training()
        check_int("threads", self.threads, 0, config=True)
        if self.dtype not in _DTYPES:
            raise ConfigError(
                f"config key 'dtype': expected one of {sorted(_DTYPES)}, got {self.dtype!r}"
            )
        for key, allowed in (("tasks", TASKS), ("heads", HEADS)):
            names = _split(getattr(self, key))
            bad = [n for n in names if n not in allowed]
            if not names or bad or len(set(names)) != len(names):
                raise ConfigError(
                    f"config key '{key}': a comma-separated subset of {allowed}, "
                    f"got {getattr(self, key)!r}"
                )

    @property
    def task_list(self) -> list[str]:
        return _split(self.tasks)

    @property
    def head_list(self) -> list[str]:
        return _split(self.heads)


def _split(s: str) -> list[str]:
    return [p.strip() for p in str(s).split(",") if p.strip()]


# --------------------------------------------------------------------------
# heads and parameter budgets
# --------------------------------------------------------------------------

#: (head input width, trainable weights inside the head's circuit)
_HEAD_SHAPE = {"softmax": (3, 0), "qutrit": (4, 2), "two_qubit": (4, 2)}
#: initial biases of the angle map: TRY(0,1) then TRY(1,2) give (1/3, 1/3, 1/3) from |0>;
#: RY(π/2) on both qubits gives 1/4 each, 1/3 each after dropping |11>
_UNIFORM_ANGLES = {
    "qutrit": [2 * math.acos(math.sqrt(1 / 3)), math.pi / 2, 0.0, 0.0],
    "two_qubit": [math.pi / 2, math.pi / 2, 0.0, 0.0],
}


def parameter_count(head: str, n_features: int, hidden: int) -> int:
    """Trainable parameters of a model: extractor, map to the head's input, circuit weights."""
    m, w = _HEAD_SHAPE[head]
    return (n_features + 1) * hidden + (hidden + 1) * m + w


def matched_widths(heads: list[str], n_features: int, hidden: int) -> dict[str, int]:
    """Width per head: softmax keeps ``hidden``; the others the width with the closest count."""
    budget = parameter_count("softmax", n_features, hidden)
    out: dict[str, int] = {}
    for head in heads:
        if head == "softmax":
            out[head] = hidden
            continue
        out[head] = min(
            range(1, 4 * hidden + 2),
            key=lambda h: (abs(parameter_count(head, n_features, h) - budget), h),
        )
    return out


def qutrit_circuit() -> Circuit:
    """One qutrit: four encoded angles ``a0..a3``, two trainable ``w0, w1``."""
    return Circuit.qutrits(1).add(
        TRY(Parameter("a0"), wires=0, subspace=(0, 1)),
        TRY(Parameter("a1"), wires=0, subspace=(1, 2)),
        TRZ(Parameter("a2"), wires=0, subspace=(0, 1)),
        TRZ(Parameter("a3"), wires=0, subspace=(1, 2)),
        TRY(Parameter("w0"), wires=0, subspace=(0, 1)),
        TRY(Parameter("w1"), wires=0, subspace=(1, 2)),
    )


def two_qubit_circuit() -> Circuit:
    """Two qubits: four encoded angles ``a0..a3``, two trainable ``w0, w1``."""
    return Circuit.qubits(2).add(
        RY(Parameter("a0"), wires=0),
        RY(Parameter("a1"), wires=1),
        RZ(Parameter("a2"), wires=0),
        RZ(Parameter("a3"), wires=1),
        CNOT(wires=[0, 1]),
        RY(Parameter("w0"), wires=0),
        RY(Parameter("w1"), wires=1),
    )


class HeadModel(torch.nn.Module):
    """Extractor ``Linear(F, h) -> tanh -> Linear(h, m)`` and one head; ``forward`` -> log-probs."""

    def __init__(self, head: str, n_features: int, hidden: int, dtype: str = "complex64"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"argument 'head': expected one of {HEADS}, got {head!r}")
        m, w = _HEAD_SHAPE[head]
        self.head = head
        self.extractor = torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.Tanh())
        self.to_head = torch.nn.Linear(hidden, m)
        if w:
            self.weights = torch.nn.Parameter(torch.zeros(w))
            self.circuit = qutrit_circuit() if head == "qutrit" else two_qubit_circuit()
            self.simulator = TorchSimulator(dtype=_DTYPES[dtype])
            self.readout: torch.nn.Module = (
                QutritTruthHead() if head == "qutrit" else TwoQubitHead()
            )
            # start at uniform predictions (like zero logits), away from the flat corner |0>
            with torch.no_grad():
                self.to_head.bias.copy_(torch.tensor(_UNIFORM_ANGLES[head]))

    def born(self, x: torch.Tensor) -> torch.Tensor:
        """Born probabilities of the circuit, ``(B, 3)`` (qutrit) or ``(B, 4)`` (two qubits)."""
        a = self.to_head(self.extractor(x))
        params: dict[str, torch.Tensor] = {f"a{i}": a[:, i] for i in range(4)}
        params.update({f"w{i}": self.weights[i] for i in range(self.weights.numel())})
        return probs(self.simulator.run(self.circuit, params)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head == "softmax":
            return torch.log_softmax(self.to_head(self.extractor(x)), dim=-1)
        p = self.born(x)
        # the layers' heads take (B, L, dS, dC, dZ): one position, the register on its axis
        shaped = p[:, None, :, None, None] if self.head == "qutrit" else p[:, None, None, :, None]
        return self.readout(shaped)[:, 0]


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE: ``Σ_b |B_b|/N · |acc(B_b) - conf(B_b)|`` over bins ``((b-1)/M, b/M]`` of max prob."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


# --------------------------------------------------------------------------
# training one model
# --------------------------------------------------------------------------


def _load(cfg: QvCConfig, task: str, seed: int) -> ThreeClassData:
    if task == "kleene":
        return load_kleene(seed, cfg.kleene_train_kbs, cfg.kleene_test_kbs)
    if task == "iris":
        return load_iris(seed)
    if task == "wine":
        return load_wine(seed)
    return load_cmsp_undefined(seed, cfg.cmsp_n_train, cfg.cmsp_n_test)


def train_one(
    cfg: Any,
    data: ThreeClassData,
    head: str,
    hidden: int,
    init_seed: int,
    make_model: Callable[[], torch.nn.Module] | None = None,
) -> dict[str, Any]:
    """Train one model full batch; metrics on the test split.

    ``cfg`` needs ``epochs``, ``lr`` and ``dtype``; ``make_model`` (called after seeding
    with ``init_seed``) builds another model than ``HeadModel(head, ...)``.
    """
    torch.manual_seed(init_seed)
    model = (
        HeadModel(head, data.n_features, hidden, cfg.dtype) if make_model is None else make_model()
    )
    opt, _ = make_optimizer(model, cfg.lr)
    x, y = data.x_train, data.y_train
    tick = time.perf_counter()
    run_steps(descent(opt, lambda _: torch.nn.functional.nll_loss(model(x), y)), range(cfg.epochs))
    step = (time.perf_counter() - tick) / cfg.epochs
    with torch.no_grad():
        logp = model(data.x_test).double()
        train_acc = float((model(x).argmax(1) == y).double().mean())
    p = logp.exp()
    p = p / p.sum(dim=1, keepdim=True)
    yt = data.y_test
    return {
        "accuracy": float((p.argmax(1) == yt).double().mean()),
        "nll": float(torch.nn.functional.nll_loss(logp, yt)),
        "ece": expected_calibration_error(p.numpy(), yt.numpy()),
        "train_accuracy": train_acc,
        "step_ms": 1000 * step,
        "parameters": sum(q.numel() for q in model.parameters()),
    }


# --------------------------------------------------------------------------
# table and plot
# --------------------------------------------------------------------------


def _pm(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def markdown_table(results: dict[str, Any]) -> str:
    lines = [
        f"# qutrit vs classical heads ({results['n_seeds']} seeds, mean ± std on the test split)",
        "",
        "| task | head | width | params | accuracy | NLL | ECE | step (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, per_head in results["summary"].items():
        for head, s in per_head.items():
            lines.append(
                f"| {task} | {head} | {s['hidden']} | {s['parameters']} | {_pm(s['accuracy'])} "
                f"| {_pm(s['nll'])} | {_pm(s['ece'])} | {_pm(s['step_ms'], 2)} |"
            )
    lines += [
        "",
        "Paired over seeds (difference = qutrit − other; Wilcoxon signed-rank and paired t-test).",
        "",
        "| task | comparison | metric | mean diff | Wilcoxon p | t-test p |",
        "|---|---|---|---|---|---|",
    ]
    for task, comps in results["tests"].items():
        for comp, per_metric in comps.items():
            for metric, t in per_metric.items():
                lines.append(
                    f"| {task} | {comp} | {metric} | {t['mean_diff']:+.4f} "
                    f"| {_p(t['wilcoxon_p'])} | {_p(t['ttest_p'])} |"
                )
    lines += ["", "two_qubit: |11> is discarded and |00>, |01>, |10> renormalised."]
    return "\n".join(lines) + "\n"


_COLOURS = {"softmax": "#7570b3", "qutrit": "#1b9e77", "two_qubit": "#d95f02"}


def plot_bars(results: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    summary = results["summary"]
    tasks = list(summary)
    heads = list(next(iter(summary.values())))
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    width = 0.8 / len(heads)
    xs = np.arange(len(tasks))
    for ax, metric, label in zip(axes, METRICS, ("test accuracy", "test NLL", "ECE (10 bins)"),
                                 strict=True):  # fmt: skip
        for i, head in enumerate(heads):
            means = [summary[t][head][metric]["mean"] for t in tasks]
            stds = [summary[t][head][metric]["std"] for t in tasks]
            ax.bar(xs + (i - (len(heads) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
                   color=_COLOURS[head], label=head)  # fmt: skip
        ax.set_xticks(xs, tasks, rotation=15)
        ax.set(ylabel=label, title=label)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8, loc="lower left")
    n = results["n_seeds"]
    fig.suptitle(f"qutrit vs classical heads, matched parameter budgets ({n} seeds)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def run(cfg: QvCConfig, ctx: RunContext) -> dict[str, Any]:
    tasks, heads = cfg.task_list, cfg.head_list
    seeds = [cfg.seed + s for s in range(cfg.n_seeds)]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {t: {h: [] for h in heads} for t in tasks}
    widths: dict[str, dict[str, int]] = {}
    jobs = [(ti, t, s) for ti, t in enumerate(tasks) for s in seeds]
    step = 0
    tick = time.perf_counter()
    for ti, task, seed in ctx.progress(jobs, total=len(jobs)):
        data = _load(cfg, task, seed)
        widths[task] = matched_widths(heads, data.n_features, cfg.hidden)
        for hi, head in enumerate(heads):
            r = train_one(cfg, data, head, widths[task][head], seed * 1000 + 10 * ti + hi)
            raw[task][head].append(r)
            ctx.log(step, task=task, head=head, seed=seed, **r)
            step += 1
    summary: dict[str, dict[str, Any]] = {}
    tests: dict[str, dict[str, Any]] = {}
    for task in tasks:
        summary[task] = {}
        for head in heads:
            rs = raw[task][head]
            summary[task][head] = {
                "hidden": widths[task][head],
                "parameters": rs[0]["parameters"],
                **{m: _stats([r[m] for r in rs]) for m in (*METRICS, "train_accuracy", "step_ms")},
            }
        if "qutrit" in heads:
            tests[task] = {}
            for other in heads:
                if other == "qutrit":
                    continue
                tests[task][f"qutrit_vs_{other}"] = {
                    m: paired_tests(
                        [r[m] for r in raw[task]["qutrit"]], [r[m] for r in raw[task][other]]
                    )
                    for m in METRICS
                }
    results: dict[str, Any] = {
        "n_seeds": cfg.n_seeds,
        "seeds": seeds,
        "tasks": tasks,
        "heads": heads,
        "summary": summary,
        "tests": tests,
        "per_seed": raw,
        "two_qubit_readout": "|00>,|01>,|10> -> T,F,U; |11> discarded, the rest renormalised",
        "wall_seconds": round(time.perf_counter() - tick, 2),
    }
    ctx.write_text("qutrit_vs_classical.md", markdown_table(results))
    ctx.save_figure(plot_bars(results), "qutrit_vs_classical.png")
    return results


EXPERIMENT = Experiment(
    name="qutrit-vs-classical",
    description="softmax(3) vs one-qutrit vs two-qubit readout at matched budgets, 4 tasks",
    defaults=QvCConfig(),
    run=run,
    results=(
        "n_seeds",
        "seeds",
        "tasks",
        "heads",
        "summary",
        "tests",
        "per_seed",
        "two_qubit_readout",
        "wall_seconds",
    ),
)
