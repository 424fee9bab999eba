"""``qsem run kleene``: the chained semantic model on three-valued Kleene queries.

Task: :mod:`qsem.tasks.kleene` -- generated knowledge bases, open-world answers
true / false / unknown (labels ``|T>, |F>, |U>`` = 0, 1, 2), train and test
sets drawn from DIFFERENT knowledge bases. Model: :class:`qsem.models.SemanticModel`
(φ -> Φ -> Ψ -> Λ -> Ω -> qutrit truth head; profile AGI-B by default), trained
with the hard-label loss (masked cross-entropy) by Adam in mini-batches.

Writes ``results.json`` (test accuracy, per-depth accuracy, training time,
parameters, confusion matrix), ``metrics.jsonl`` (one record per epoch) and
``training_curve.png``; checkpoints after every epoch (resume with
``qsem run kleene --resume``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from qsem.models import ModelConfig, SemanticModel, hard_label_loss
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.tasks.kleene import LABELS, VOCAB_SIZE, KleeneDataset, KleeneTaskConfig, make_dataset

if TYPE_CHECKING:
    from qsem.distill import SelfDistiller

__all__ = [
    "EXPERIMENT",
    "KleeneConfig",
    "adam_cosine",
    "evaluate",
    "make_data",
    "model_config",
    "run",
    "task_config",
    "train_epoch",
]


@dataclass(frozen=True)
class KleeneConfig:
    """Config of ``qsem run kleene`` (override any key with ``key=value``)."""

    #: the random seed (data, initialisation and batch order follow it)
    seed: int = 0
    # task
    #: generated knowledge bases the training queries come from
    n_train_kbs: int = 200
    #: knowledge bases (never seen in training) the test queries come from
    n_test_kbs: int = 50
    #: queries drawn per knowledge base (balanced over depth and label)
    queries_per_kb: int = 24
    #: entities per knowledge base
    n_entities: int = 40
    #: base (level-0) predicates per knowledge base: only they have facts
    base_predicates: int = 6
    #: derived predicates on each level 1..max_depth (one rule each)
    derived_per_level: int = 4
    #: smallest query depth (number of rule hops) drawn
    min_depth: int = 0
    #: largest query depth (number of rule hops) drawn
    max_depth: int = 3
    #: most side literals (on base predicates) in one rule body
    max_side: int = 2
    #: fraction of training queries whose label the user gave (the rest are masked)
    label_fraction: float = 1.0
    # model (defaults: profile AGI-B)
    #: size of the truth axis S (3: T, F, U on a qutrit)
    s_dim: int = 3
    #: size of the context axis C (qubits: ceil(log2 c_dim))
    c_dim: int = 2
    #: size of the latent axis Z of Λ (qubits: ceil(log2 z_dim))
    z_dim: int = 2
    #: P slices of the emergence stack Ψ at the start
    n_slices: int = 1
    #: composer operators: full (order-dependent, O axis) or diagonal (order-free)
    operator: str = "full"
    #: hidden neurons of the composer MLP that makes the operators
    hidden: int = 32
    #: initial λ of the composition A ⊗' B = AB + λ[A, B]
    lam: float = 0.05
    #: trainable layers of the Ω circuit
    q_layers: int = 1
    #: depolarizing probability on every Ω wire after each layer (0: pure states)
    noise: float = 0.0
    #: readout head: qutrit, softmax or two_qubit
    head: str = "qutrit"
    #: where Ω runs: torch (the torch engine, autograd) or a backend name (aer, pennylane)
    backend: str = "torch"
    # training
    #: passes over the training queries
    epochs: int = 40
    #: queries per optimiser step
    batch_size: int = 128
    #: Adam learning rate (cosine decay to lr/20)
    lr: float = 0.02
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "n_train_kbs", "n_test_kbs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key '{name}': must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key 'lr': must be a positive finite number, got {self.lr}")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ConfigError(
                f"config key 'label_fraction': must lie in (0, 1], got {self.label_fraction}"
            )
        if self.threads < 0:
            raise ConfigError(f"config key 'threads': must be >= 0, got {self.threads}")
        try:
            task_config(self)
            model_config(self)
        except ValueError as exc:  # QsemValueError names the argument = the config key
            raise ConfigError(f"config: {exc}") from None


def task_config(cfg: Any) -> KleeneTaskConfig:
    """The generator knobs of a config with the fields of :class:`KleeneTaskConfig`."""
    names = {f.name for f in fields(KleeneTaskConfig)}
    return KleeneTaskConfig(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})


def model_config(cfg: Any, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a config with the fields of :class:`ModelConfig`."""
    names = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
    values = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
    values.update(overrides)
    return ModelConfig(vocab_size=VOCAB_SIZE, **values)


def make_data(cfg: Any) -> tuple[KleeneDataset, KleeneDataset]:
    """Train and test sets (disjoint knowledge bases); masks ``1 - label_fraction`` labels."""
    tcfg = task_config(cfg)
    train, _ = make_dataset(tcfg, cfg.n_train_kbs, cfg.seed, split="train")
    test, _ = make_dataset(tcfg, cfg.n_test_kbs, cfg.seed, split="test")
    frac = getattr(cfg, "label_fraction", 1.0)
    if frac < 1.0:
        g = torch.Generator().manual_seed(int(cfg.seed) + 7)
        drop = torch.rand(len(train), generator=g) >= frac
        train.labels = torch.where(drop, -1, train.labels)
    return train, test


def train_epoch(
    model: SemanticModel,
    optimizer: torch.optim.Optimizer,
    data: KleeneDataset,
    batch_size: int,
    generator: torch.Generator,
    *,
    step: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> tuple[float, int, float]:
    """One pass in shuffled mini-batches: (mean loss, steps, seconds).

    ``step(tokens, labels) -> loss`` takes one optimiser step on a batch (e.g.
    :meth:`qsem.distill.SelfDistiller.step`); default: the hard-label loss.
    """

    def hard_step(tokens: torch.Tensor, labels: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = hard_label_loss(model(tokens), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    take_step = hard_step if step is None else step
    model.train()
    perm = torch.randperm(len(data), generator=generator)
    total, steps = 0.0, 0
    tick = time.perf_counter()
    for i in range(0, len(data), batch_size):
        idx = perm[i : i + batch_size]
        total += take_step(data.tokens[idx], data.labels[idx])
        steps += 1
    return total / max(steps, 1), steps, time.perf_counter() - tick


@torch.no_grad()
def evaluate(model: SemanticModel, data: KleeneDataset) -> dict[str, Any]:
    """Accuracy, NLL, per-depth accuracy and confusion matrix (labels -1 skipped)."""
    model.eval()
    logp = model(data.tokens)
    keep = data.labels >= 0
    y, pred, depth = data.labels[keep], logp.argmax(dim=1)[keep], data.depths[keep]
    per_depth = {
        str(int(d)): float((pred[depth == d] == y[depth == d]).float().mean())
        for d in torch.unique(depth)
    }
    confusion = torch.zeros(3, 3, dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return {
        "accuracy": float((pred == y).float().mean()),
        "nll": float(hard_label_loss(logp, data.labels)),
        "per_depth_accuracy": per_depth,
        "confusion": confusion.tolist(),
    }


def plot_training_curve(records: list[dict[str, Any]], title: str) -> Any:
    """Loss and accuracies against epoch (a matplotlib Figure, no pyplot state)."""
    from matplotlib.figure import Figure

    epochs = [r["step"] for r in records]
    fig = Figure(figsize=(9, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["loss"] for r in records], label="train loss")
    ax_loss.plot(epochs, [r["test_nll"] for r in records], label="test NLL")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["test_accuracy"] for r in records], label="test (unseen KBs)")
    for d in sorted({k for r in records for k in r.get("test_depth", {})}):
        ax_acc.plot(epochs, [r["test_depth"].get(d) for r in records], lw=0.8, ls="--",
                    label=f"test, depth {d}")  # fmt: skip
    ax_acc.axhline(0.95, color="0.6", lw=0.8, ls=":")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    ax_acc.legend(loc="lower right", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def adam_cosine(
    model: torch.nn.Module, lr: float, epochs: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """Adam with cosine decay to ``lr/20`` over ``epochs``: late epochs refine, not jump around."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs, eta_min=lr / 20
    )


def fit(
    cfg: KleeneConfig,
    model: SemanticModel,
    train: KleeneDataset,
    test: KleeneDataset,
    ctx: RunContext,
    *,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    loop: SelfDistiller | None = None,
) -> tuple[float, int]:
    """Train with checkpoints after every epoch; returns (train seconds, optimiser steps).

    ``loop``: a :class:`qsem.distill.SelfDistiller` on ``model`` that takes every
    step (self-distillation, probes, emergence events); it gets the optimiser,
    and its state travels in the checkpoint (restored first: it grows the model
    to the checkpoint's slices).
    """
    optimizer, sched = adam_cosine(model, cfg.lr, cfg.epochs)
    if loop is not None:
        loop.bind(optimizer)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    train_seconds, steps, start = 0.0, 0, 0
    state = ctx.restore()
    if state is not None:
        if loop is not None:
            loop.load_state_dict(state["loop"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        train_seconds, steps, start = (
            float(state["train_seconds"]),
            int(state["steps"]),
            int(state["epoch"]),
        )
        ctx.echo(f"{ctx.label}: resuming after epoch {start} of {cfg.epochs}")
    epoch = start

    def snapshot() -> dict[str, Any]:
        extra = {"loop": loop.state_dict()} if loop is not None else {}
        return {**extra, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(), "train_seconds": train_seconds, "steps": steps,
                "epoch": epoch}  # fmt: skip

    bar = ctx.progress(range(start + 1, cfg.epochs + 1), total=cfg.epochs, initial=start)
    for epoch in bar:
        loss, n, seconds = train_epoch(
            model, optimizer, train, cfg.batch_size, gen, step=loop.step if loop else None
        )
        sched.step()
        train_seconds += seconds
        steps += n
        ev = evaluate(model, test)
        record = {"loss": loss, "test_accuracy": ev["accuracy"], "test_nll": ev["nll"],
                  "test_depth": ev["per_depth_accuracy"], "epoch_seconds": seconds,
                  "train_seconds": train_seconds, "lambda": float(model.composer.lam.detach()),
        }  # fmt: skip
        if loop is not None:
            record.update(kind="epoch", slices=loop.n_slices, events=len(loop.events))
        ctx.log(epoch, **record)
        if on_epoch is not None:
            on_epoch(epoch, record)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{ev['accuracy']:.3f}")
        ctx.checkpoint(epoch, snapshot, force=epoch == cfg.epochs, where=f"epoch {epoch}")
    return train_seconds, steps


def run(cfg: KleeneConfig, ctx: RunContext) -> dict[str, Any]:
    tick = time.perf_counter()
    train, test = make_data(cfg)
    data_seconds = time.perf_counter() - tick
    torch.manual_seed(cfg.seed)
    model = SemanticModel(model_config(cfg))
    train_seconds, steps = fit(cfg, model, train, test, ctx)
    ev_test, ev_train = evaluate(model, test), evaluate(model, train)
    ctx.save_figure(
        plot_training_curve(ctx.records(), "chained semantic model on Kleene queries"),
        "training_curve.png",
    )
    return {
        "test_accuracy": ev_test["accuracy"],
        "test_nll": ev_test["nll"],
        "per_depth_accuracy": ev_test["per_depth_accuracy"],
        "train_accuracy": ev_train["accuracy"],
        "train_seconds": round(train_seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "step_seconds": round(train_seconds / max(steps, 1), 5),
        "optimizer_steps": steps,
        "epochs": cfg.epochs,
        "n_train": len(train),
        "n_train_labelled": int((train.labels >= 0).sum()),
        "n_test": len(test),
        "n_train_kbs": cfg.n_train_kbs,
        "n_test_kbs": cfg.n_test_kbs,
        "test_label_counts": {LABELS[k]: int((test.labels == k).sum()) for k in range(3)},
        "test_confusion_matrix": ev_test["confusion"],
        "lambda": float(model.composer.lam.detach()),
        "parameters": model.num_parameters(),
        "model": model.describe(),
        "torch_threads": cfg.threads or torch.get_num_threads(),
    }


EXPERIMENT = Experiment(
    name="kleene",
    description="chained semantic model (φ->Φ->Ψ->Λ->Ω->qutrit head) on open-world Kleene queries",
    defaults=KleeneConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "test_accuracy",
        "test_nll",
        "per_depth_accuracy",
        "train_accuracy",
        "train_seconds",
        "data_seconds",
        "step_seconds",
        "optimizer_steps",
        "epochs",
        "n_train",
        "n_train_labelled",
        "n_test",
        "n_train_kbs",
        "n_test_kbs",
        "test_label_counts",
        "test_confusion_matrix",
        "lambda",
        "parameters",
        "model",
        "torch_threads",
    ),
)
