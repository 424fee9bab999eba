"""``qsem run demo``: a two-qutrit truth classifier on iris.

The three iris species are read as the three truth values of a qutrit,
setosa -> |T> = |0>, versicolor -> |F> = |1>, virginica -> |U> = |2>
(the qutrit truth basis). The four standardised features are angle-encoded onto two
qutrits (``TRY`` on the subspaces (0,1) and (1,2), with a trainable per-feature
scale and offset), followed by ``layers`` trainable layers of ``TRY(0,1)``,
``TRY(1,2)``, ``TRZ(0,1)``, ``TRZ(1,2)`` per qutrit and a ``TAdd`` each way.
The Born probabilities of qutrit 0 are the class distribution; the loss is
their negative log-likelihood, minimised with Adam, full batch.

One circuit with symbolic parameters serves every batch: inputs are bound as
tensors of shape ``(B,)``, weights as tensors of shape ``()``, and each batch is
one ``TorchSimulator.run``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits import TRY, TRZ, Circuit, Parameter, TAdd
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.simulators import TorchSimulator, probs
from qsem.training import Step, descent, make_optimizer, run_steps

__all__ = ["EXPERIMENT", "DemoConfig", "QutritClassifier", "build_circuit", "run"]

#: Species of iris in label order, and the truth value each one is read as.
CLASSES = ("setosa", "versicolor", "virginica")
TRUTH = ("T", "F", "U")

_DTYPES = {"complex64": torch.complex64, "complex128": torch.complex128}
#: Most trainable layers: the circuit is built and simulated layer by layer, so a
#: typo such as ``layers=1000000`` is refused instead of running silently for hours.
MAX_LAYERS = 100


@dataclass(frozen=True)
class DemoConfig:
    """Config of ``qsem run demo`` (override any key with ``key=value``)."""

    #: the random seed (train/test split and initial weights follow it)
    seed: int = 0
    #: full-batch Adam epochs
    epochs: int = 100
    #: Adam learning rate
    lr: float = 0.1
    #: trainable layers (TRY, TRZ on both subspaces of each qutrit, then a TAdd each way)
    layers: int = 2
    #: encode the features again before every layer (data re-uploading)
    reupload: bool = False
    #: fraction of the iris samples held out for testing (0.05 to 0.8)
    test_size: float = 0.3
    #: standard deviation of the initial circuit weights (radians)
    init_scale: float = 0.5
    #: complex dtype of the simulated state: complex64 or complex128
    dtype: str = "complex64"
    #: torch device the simulation runs on (cpu, cuda, ...)
    device: str = "cpu"
    #: torch intra-op threads while training (0: leave torch's setting). The states
    #: are tiny (9 amplitudes per sample), so more threads only add overhead.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"config key 'epochs': must be >= 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key 'lr': must be a positive finite number, got {self.lr}")
        if not 1 <= self.layers <= MAX_LAYERS:
            raise ConfigError(
                f"config key 'layers': must lie in [1, {MAX_LAYERS}] (the circuit is built "
                f"gate by gate before training), got {self.layers}"
            )
        if not 0.05 <= self.test_size <= 0.8:
            raise ConfigError(
                f"config key 'test_size': must lie in [0.05, 0.8], got {self.test_size}"
            )
        if not (self.init_scale >= 0 and math.isfinite(self.init_scale)):
            raise ConfigError(f"config key 'init_scale': must be >= 0, got {self.init_scale}")
        if self.threads < 0:
            raise ConfigError(f"config key 'threads': must be >= 0, got {self.threads}")
        if self.dtype not in _DTYPES:
            raise ConfigError(
                f"config key 'dtype': expected one of {sorted(_DTYPES)}, got {self.dtype!r}"
            )


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

_LAYER_GATES = ((TRY, (0, 1)), (TRY, (1, 2)), (TRZ, (0, 1)), (TRZ, (1, 2)))


def _encode(circuit: Circuit) -> None:
    for q in range(2):
        circuit.add(
            TRY(Parameter(f"x{2 * q}"), wires=q, subspace=(0, 1)),
            TRY(Parameter(f"x{2 * q + 1}"), wires=q, subspace=(1, 2)),
        )


def build_circuit(layers: int, reupload: bool = False) -> tuple[Circuit, list[str]]:
    """The classifier circuit on two qutrits and the names of its trainable weights.

    Inputs are the symbolic parameters ``x0..x3`` (features 0, 1 on qutrit 0;
    2, 3 on qutrit 1); weights are ``w{layer}_{qutrit}_{gate}``.
    """
    circuit = Circuit.qutrits(2)
    names: list[str] = []
    for layer in range(layers):
        if layer == 0 or reupload:
            _encode(circuit)
        for q in range(2):
            for g, (gate, subspace) in enumerate(_LAYER_GATES):
                name = f"w{layer}_{q}_{g}"
                names.append(name)
                circuit.add(gate(Parameter(name), wires=q, subspace=subspace))
        circuit.add(TAdd(wires=[0, 1]), TAdd(wires=[1, 0]))
    return circuit, names


class QutritClassifier(torch.nn.Module):
    """Angle encoding with trainable scale/offset, then the trainable circuit.

    ``forward(x)`` maps standardised features ``(B, 4)`` to the Born
    probabilities ``(B, 3)`` of qutrit 0 over ``(|T>, |F>, |U>)``.
    """

    def __init__(self, cfg: DemoConfig) -> None:
        super().__init__()
        self.circuit, self.names = build_circuit(cfg.layers, cfg.reupload)
        self.weights = torch.nn.Parameter(cfg.init_scale * torch.randn(len(self.names)))
        self.scale = torch.nn.Parameter(torch.ones(4))
        self.offset = torch.nn.Parameter(torch.zeros(4))
        self.simulator = TorchSimulator(dtype=_DTYPES[cfg.dtype], device=cfg.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x * self.scale + self.offset
        params: dict[str, torch.Tensor] = {f"x{i}": angles[:, i] for i in range(4)}
        params.update({name: self.weights[i] for i, name in enumerate(self.names)})
        return probs(self.simulator.run(self.circuit, params), wires=[0])


def _nll(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.log(p.gather(1, y[:, None]).squeeze(1).clamp_min(1e-12)).mean()


def _accuracy(p: torch.Tensor, y: torch.Tensor) -> float:
    return int((p.argmax(dim=1) == y).sum()) / len(y)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def load_data(cfg: DemoConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """Iris, split (seeded, stratified) and standardised with the training statistics."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    x, y = load_iris(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=cfg.test_size, random_state=cfg.seed % 2**32, stratify=y
    )
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)

    def tensor(a: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    real = torch.float32 if cfg.dtype == "complex64" else torch.float64
    return {
        "x_train": tensor((x_tr - mean) / std, real),
        "x_test": tensor((x_te - mean) / std, real),
        "y_train": tensor(y_tr, torch.long),
        "y_test": tensor(y_te, torch.long),
    }


# --------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------

_CLASS_COLOURS = ("#1b9e77", "#d95f02", "#7570b3")


def plot_training_curve(records: list[dict[str, Any]]) -> Any:
    """Loss and accuracies against epoch (a matplotlib Figure, no pyplot state)."""
    from matplotlib.figure import Figure

    epochs = [r["step"] for r in records]
    fig = Figure(figsize=(9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["loss"] for r in records], label="train NLL")
    ax_loss.plot(epochs, [r["test_nll"] for r in records], label="test NLL")
    ax_loss.set(xlabel="epoch", ylabel="negative log-likelihood", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_accuracy"] for r in records], label="train")
    ax_acc.plot(epochs, [r["test_accuracy"] for r in records], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_acc.legend(loc="lower right")
    fig.suptitle("qutrit truth classifier on iris")
    fig.tight_layout()
    return fig


def plot_readout(p: torch.Tensor, y: torch.Tensor) -> Any:
    """Born probabilities of the test samples: a ternary scatter and stacked bars."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pn = p.detach().cpu().double().numpy()
    yn = y.cpu().numpy()
    fig = Figure(figsize=(11, 4.2))
    ax_tri, ax_bar = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})

    h = math.sqrt(3) / 2
    corners = [(0.0, 0.0), (1.0, 0.0), (0.5, h)]
    ax_tri.plot([0, 1, 0.5, 0], [0, 0, h, 0], color="0.3", lw=1)
    for (cx, cy), name in zip(corners, TRUTH, strict=True):
        ax_tri.annotate(f"|{name}>", (cx, cy), ha="center", va="center", fontsize=11,
                        xytext=(cx + (cx - 0.5) * 0.12, cy + (cy - h / 3) * 0.12))  # fmt: skip
    xs = pn[:, 1] + 0.5 * pn[:, 2]
    ys = h * pn[:, 2]
    wrong = pn.argmax(axis=1) != yn
    for c in range(3):
        sel = yn == c
        if not sel.any():
            continue
        ax_tri.scatter(xs[sel & ~wrong], ys[sel & ~wrong], s=28, color=_CLASS_COLOURS[c],
                       alpha=0.85, label=f"{CLASSES[c]} (|{TRUTH[c]}>)")  # fmt: skip
        if (sel & wrong).any():
            ax_tri.scatter(xs[sel & wrong], ys[sel & wrong], s=60, color=_CLASS_COLOURS[c],
                           marker="X", edgecolors="k", linewidths=0.6)  # fmt: skip
    handles, labels = ax_tri.get_legend_handles_labels()
    if wrong.any():
        handles.append(Line2D([], [], marker="X", ls="", color="0.5", markeredgecolor="k"))
        labels.append("misclassified")
    ax_tri.legend(handles, labels, loc="upper right", fontsize=8, bbox_to_anchor=(1.12, 1.02))
    ax_tri.set(xlim=(-0.12, 1.12), ylim=(-0.1, h + 0.1), aspect="equal",
               title="test samples in the qutrit simplex")  # fmt: skip
    ax_tri.axis("off")

    order = np.array(sorted(range(len(yn)), key=lambda i: (yn[i], -pn[i, yn[i]])), dtype=int)
    idx = np.arange(len(order), dtype=float)
    bottom = np.zeros(len(order))
    for level in range(3):
        heights = pn[order, level]
        ax_bar.bar(idx, heights, bottom=bottom, width=1.0, color=_CLASS_COLOURS[level],
                   label=f"P(|{TRUTH[level]}>)", edgecolor="none")  # fmt: skip
        bottom = bottom + heights
    for k in range(1, 3):
        ax_bar.axvline(float((yn < k).sum()) - 0.5, color="k", lw=0.8)
    for c in range(3):
        members = np.flatnonzero(yn[order] == c)
        if members.size:
            ax_bar.text((members[0] + members[-1]) / 2, 1.03, f"true {CLASSES[c]}",
                        ha="center", va="bottom", fontsize=8, color=_CLASS_COLOURS[c])  # fmt: skip
    ax_bar.set(xlim=(-0.5, len(order) - 0.5), ylim=(0, 1.12), xlabel="test sample (by true class)",
               ylabel="Born probability of qutrit 0")  # fmt: skip
    ax_bar.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------


def run(cfg: DemoConfig, ctx: RunContext) -> dict[str, Any]:
    """Train the classifier; log per-epoch metrics; checkpoint; plot; return results."""
    device = torch.device(cfg.device)
    data = load_data(cfg, device)
    model = QutritClassifier(cfg).to(device)
    optimizer, _ = make_optimizer(model, cfg.lr)
    train_seconds = 0.0
    start_epoch = 0
    state = ctx.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        train_seconds = float(state["train_seconds"])
        start_epoch = int(state["epoch"])
        ctx.echo(f"{ctx.label}: resuming after epoch {start_epoch} of {cfg.epochs}")

    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]

    def snapshot() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "train_seconds": train_seconds,
        }

    epoch = start_epoch
    bar = ctx.progress(
        range(start_epoch + 1, cfg.epochs + 1), total=cfg.epochs, initial=start_epoch
    )

    def after(done: Step) -> None:
        nonlocal epoch, train_seconds
        epoch, train_seconds = done.step, train_seconds + done.seconds
        with torch.no_grad():
            p_tr, p_te = model(x_tr), model(x_te)
        record = {
            "loss": done.loss,
            "train_nll": _nll(p_tr, y_tr).item(),
            "train_accuracy": _accuracy(p_tr, y_tr),
            "test_nll": _nll(p_te, y_te).item(),
            "test_accuracy": _accuracy(p_te, y_te),
        }
        ctx.log(epoch, **record)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{record['loss']:.3f}", test_acc=f"{record['test_accuracy']:.3f}")

    def save(epoch: int) -> None:
        ctx.checkpoint(epoch, snapshot, force=epoch == cfg.epochs, where=f"epoch {epoch}")

    run_steps(descent(optimizer, lambda _: _nll(model(x_tr), y_tr)), bar, after=after,
              checkpoint=save)  # fmt: skip

    with torch.no_grad():
        p_tr, p_te = model(x_tr), model(x_te)
    confusion = torch.zeros(3, 3, dtype=torch.long)
    for t, q in zip(y_te.tolist(), p_te.argmax(dim=1).tolist(), strict=True):
        confusion[t, q] += 1

    ctx.save_figure(plot_training_curve(ctx.records()), "training_curve.png")
    ctx.save_figure(plot_readout(p_te, y_te), "qutrit_readout.png")
    return {
        "train_accuracy": _accuracy(p_tr, y_tr),
        "test_accuracy": _accuracy(p_te, y_te),
        "train_nll": _nll(p_tr, y_tr).item(),
        "test_nll": _nll(p_te, y_te).item(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "num_circuit_weights": len(model.names),
        "epochs": cfg.epochs,
        "n_train": len(y_tr),
        "n_test": len(y_te),
        "train_seconds": round(train_seconds, 4),
        "class_to_level": {
            c: f"|{t}> = |{i}>" for i, (c, t) in enumerate(zip(CLASSES, TRUTH, strict=True))
        },
        "test_confusion_matrix": confusion.tolist(),
    }


EXPERIMENT = Experiment(
    name="demo",
    description="two-qutrit truth classifier on iris (|T>,|F>,|U> readout), torch engine",
    defaults=DemoConfig(),
    run=run,
    checkpoint_every=20,
    results=(
        "train_accuracy",
        "test_accuracy",
        "train_nll",
        "test_nll",
        "num_parameters",
        "num_circuit_weights",
        "epochs",
        "n_train",
        "n_test",
        "train_seconds",
        "class_to_level",
        "test_confusion_matrix",
    ),
)
