"""Training the chained semantic model on Kleene queries: the parts several experiments share.

``qsem run kleene``, ``self-distill``, ``personalise``, ``profiles`` and
``narrow-semantic`` all build their data with :func:`make_data`, their model's
config with :func:`model_config`, train with :func:`train_epoch` (one pass; a
``step`` hook lets :class:`qsem.distill.SelfDistiller` take every step), with
:class:`Epochs` (one epoch and the schedule's step as one step of the package's
training loop, :func:`qsem.training.run_steps`) or with :func:`fit` (epochs with
checkpoints, an ``on_epoch`` hook and a ``loop`` hook), on Adam with the cosine
schedule of :func:`qsem.training.make_optimizer` (``schedule="cosine"``, one step
per epoch), and score with :func:`evaluate`.

A config here is anything with the keys these functions read (the Kleene
experiments' configs, :class:`qsem.experiments.kleene.KleeneConfig` and its
subclasses): the task keys (``n_train_kbs``, ``n_test_kbs``, ``label_fraction`` and
the fields of :class:`~qsem.tasks.kleene.KleeneTaskConfig`), the model keys (the
fields of :class:`~qsem.models.ModelConfig`), ``seed``, ``epochs``, ``batch_size``
and ``lr``.

>>> import torch
>>> from qsem.models import SemanticModel
>>> from qsem.training import make_optimizer
>>> model = SemanticModel(model_config(object(), hidden=4))
>>> optimizer, schedule = make_optimizer(model, 0.02, schedule="cosine", steps=10)
>>> round(schedule.get_last_lr()[0], 3)
0.02
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import torch
from torch.optim.lr_scheduler import LRScheduler

from qsem.models import ModelConfig, SemanticModel, hard_label_loss
from qsem.training import Step, descent, make_optimizer, run_steps

from .kleene import VOCAB_SIZE, KleeneDataset, KleeneTaskConfig, make_dataset

if TYPE_CHECKING:
    from qsem.distill import SelfDistiller

__all__ = [
    "Epochs",
    "RunLike",
    "adam_cosine",
    "evaluate",
    "fit",
    "make_data",
    "model_config",
    "plot_training_curve",
    "task_config",
    "train_epoch",
]

T = TypeVar("T")


class RunLike(Protocol):
    """What :func:`fit` needs of a run (:class:`qsem.runner.RunContext` has it)."""

    @property
    def label(self) -> str: ...

    def restore(self) -> dict[str, Any] | None: ...

    def echo(self, message: str) -> None: ...

    def progress(
        self,
        iterable: Iterable[T],
        *,
        total: int | None = None,
        initial: int = 0,
        desc: str | None = None,
    ) -> Iterator[T]: ...

    def log(self, step: int, **values: Any) -> None: ...

    def checkpoint(
        self,
        step: int,
        state: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        force: bool = False,
        where: str | None = None,
    ) -> bool: ...


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

    model.train()
    perm = torch.randperm(len(data), generator=generator)
    batches = [perm[i : i + batch_size] for i in range(0, len(data), batch_size)]

    def hard_loss(b: int) -> torch.Tensor:
        return hard_label_loss(model(data.tokens[batches[b]]), data.labels[batches[b]])

    if step is None:
        take_step = descent(optimizer, hard_loss)
    else:
        custom = step  # the distiller's (or a caller's) own optimiser step on one batch

        def take_step(b: int) -> float:
            return custom(data.tokens[batches[b]], data.labels[batches[b]])

    total = 0.0

    def add(done: Step) -> None:
        nonlocal total
        total += done.loss

    tick = time.perf_counter()
    run_steps(take_step, range(len(batches)), after=add)
    return total / max(len(batches), 1), len(batches), time.perf_counter() - tick


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
) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """Deprecated: ``make_optimizer(model, lr, schedule="cosine", steps=epochs)``
    (:func:`qsem.training.make_optimizer`), Adam with cosine decay to ``lr/20``."""
    warnings.warn(
        "qsem.tasks.kleene_training.adam_cosine is deprecated; use "
        "qsem.training.make_optimizer(model, lr, schedule='cosine', steps=epochs)",
        DeprecationWarning,
        stacklevel=2,
    )
    return make_optimizer(model, lr, schedule="cosine", steps=epochs)


class Epochs:
    """One epoch as one step of :func:`qsem.training.run_steps`: :func:`train_epoch`, then
    the schedule's step; keeps the totals (optimiser steps, seconds) and the last epoch's.

    ``step``: the optimiser step on one batch (default: the hard-label loss; a
    :meth:`qsem.distill.SelfDistiller.step` for self-distillation).
    """

    def __init__(
        self,
        model: SemanticModel,
        optimizer: torch.optim.Optimizer,
        schedule: LRScheduler,
        data: KleeneDataset,
        batch_size: int,
        generator: torch.Generator,
        *,
        step: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
    ) -> None:
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.data, self.batch_size, self.generator, self.step = data, batch_size, generator, step
        #: optimiser steps and training seconds over all epochs run (a resume sets them)
        self.steps, self.seconds = 0, 0.0
        #: optimiser steps and seconds of the last epoch
        self.last_steps, self.last_seconds = 0, 0.0

    def __call__(self, epoch: int) -> float:
        loss, n, seconds = train_epoch(self.model, self.optimizer, self.data, self.batch_size,
                                       self.generator, step=self.step)  # fmt: skip
        self.schedule.step()
        self.last_steps, self.last_seconds = n, seconds
        self.steps, self.seconds = self.steps + n, self.seconds + seconds
        return loss


def fit(
    cfg: Any,
    model: SemanticModel,
    train: KleeneDataset,
    test: KleeneDataset,
    ctx: RunLike,
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
    optimizer, sched = make_optimizer(model, cfg.lr, schedule="cosine", steps=cfg.epochs)
    if loop is not None:
        loop.bind(optimizer)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    epochs = Epochs(model, optimizer, sched, train, cfg.batch_size, gen,
                    step=loop.step if loop else None)  # fmt: skip
    start = 0
    state = ctx.restore()
    if state is not None:
        if loop is not None:
            loop.load_state_dict(state["loop"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        epochs.seconds, epochs.steps = float(state["train_seconds"]), int(state["steps"])
        start = int(state["epoch"])
        ctx.echo(f"{ctx.label}: resuming after epoch {start} of {cfg.epochs}")

    def snapshot(epoch: int) -> dict[str, Any]:
        extra = {"loop": loop.state_dict()} if loop is not None else {}
        return {**extra, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "train_seconds": epochs.seconds, "steps": epochs.steps, "epoch": epoch}  # fmt: skip

    bar = ctx.progress(range(start + 1, cfg.epochs + 1), total=cfg.epochs, initial=start)

    def after(done: Step) -> None:  # evaluation, the epoch's record, the progress bar
        ev = evaluate(model, test)
        record = {"loss": done.loss, "test_accuracy": ev["accuracy"], "test_nll": ev["nll"],
                  "test_depth": ev["per_depth_accuracy"], "epoch_seconds": epochs.last_seconds,
                  "train_seconds": epochs.seconds, "lambda": float(model.composer.lam.detach()),
        }  # fmt: skip
        if loop is not None:
            record.update(kind="epoch", slices=loop.n_slices, events=len(loop.events))
        ctx.log(done.step, **record)
        if on_epoch is not None:
            on_epoch(done.step, record)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{done.loss:.3f}", test_acc=f"{ev['accuracy']:.3f}")

    def save(epoch: int) -> None:
        ctx.checkpoint(epoch, partial(snapshot, epoch), force=epoch == cfg.epochs,
                       where=f"epoch {epoch}")  # fmt: skip

    run_steps(epochs, bar, after=after, checkpoint=save)
    return epochs.seconds, epochs.steps
