"""``qsem run kleene``: the chained semantic model on three-valued Kleene queries.

Task: :mod:`qsem.tasks.kleene` -- generated knowledge bases, open-world answers
true / false / unknown (labels ``|T>, |F>, |U>`` = 0, 1, 2), train and test
sets drawn from DIFFERENT knowledge bases. Model: :class:`qsem.models.SemanticModel`
(φ -> Φ -> Ψ -> Λ -> Ω -> qutrit truth head; profile AGI-B by default), trained
with the hard-label loss (masked cross-entropy) by Adam in mini-batches.

The training parts that the Kleene experiments share (data, model config, the
epoch loop with its hooks, evaluation, the optimiser schedule) live in
:mod:`qsem.tasks.kleene_training`; they are importable from here too.

Writes ``results.json`` (test accuracy, per-depth accuracy, training time,
parameters, confusion matrix), ``metrics.jsonl`` (one record per epoch) and
``training_curve.png``; checkpoints after every epoch (resume with
``qsem run kleene --resume``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from qsem.models import ModelConfig, SemanticModel
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.tasks.kleene import LABELS, KleeneTaskConfig
from qsem.tasks.kleene_training import (
    adam_cosine,
    evaluate,
    fit,
    make_data,
    model_config,
    plot_training_curve,
    task_config,
    train_epoch,
)

__all__ = [
    "EXPERIMENT",
    "KleeneConfig",
    "KleeneTaskKeys",
    "LabelFractionKey",
    "SeedKey",
    "SemanticModelKeys",
    "TrainingKeys",
    "adam_cosine",
    "evaluate",
    "make_data",
    "model_config",
    "run",
    "task_config",
    "train_epoch",
]


#: the library's defaults, the one home of every model and generator default below
_MODEL, _TASK = ModelConfig(), KleeneTaskConfig()


@dataclass(frozen=True)
class SeedKey:
    """The ``seed`` key, first of every Kleene config."""

    #: the random seed (data, initialisation and batch order follow it)
    seed: int = 0


@dataclass(frozen=True)
class KleeneTaskKeys:
    """The task keys of a Kleene experiment; :attr:`task` is their :class:`KleeneTaskConfig`."""

    #: generated knowledge bases the training queries come from
    n_train_kbs: int = 200
    #: knowledge bases (never seen in training) the test queries come from
    n_test_kbs: int = 50
    #: queries drawn per knowledge base (balanced over depth and label)
    queries_per_kb: int = _TASK.queries_per_kb
    #: entities per knowledge base
    n_entities: int = _TASK.n_entities
    #: base (level-0) predicates per knowledge base: only they have facts
    base_predicates: int = _TASK.base_predicates
    #: derived predicates on each level 1..max_depth (one rule each)
    derived_per_level: int = _TASK.derived_per_level
    #: smallest query depth (number of rule hops) drawn
    min_depth: int = _TASK.min_depth
    #: largest query depth (number of rule hops) drawn
    max_depth: int = _TASK.max_depth
    #: most side literals (on base predicates) in one rule body
    max_side: int = _TASK.max_side

    @property
    def task(self) -> KleeneTaskConfig:
        """The generator's config: these keys, the library's defaults for the rest."""
        return task_config(self)


@dataclass(frozen=True)
class LabelFractionKey:
    """The share of training labels a Kleene experiment keeps (after its task keys)."""

    #: fraction of training queries whose label the user gave (the rest are masked)
    label_fraction: float = 1.0


@dataclass(frozen=True)
class SemanticModelKeys:
    """The model keys of a Kleene experiment; :attr:`model` is their :class:`ModelConfig`."""

    # model (defaults: profile AGI-B)
    #: size of the truth axis S (3: T, F, U on a qutrit)
    s_dim: int = _MODEL.s_dim
    #: size of the context axis C (qubits: ceil(log2 c_dim))
    c_dim: int = _MODEL.c_dim
    #: size of the latent axis Z of Λ (qubits: ceil(log2 z_dim))
    z_dim: int = _MODEL.z_dim
    #: P slices of the emergence stack Ψ at the start
    n_slices: int = _MODEL.n_slices
    #: composer operators: full (order-dependent, O axis) or diagonal (order-free)
    operator: str = _MODEL.operator
    #: hidden neurons of the composer MLP that makes the operators
    hidden: int = _MODEL.hidden
    #: initial λ of the composition A ⊗' B = AB + λ[A, B]
    lam: float = _MODEL.lam
    #: trainable layers of the Ω circuit
    q_layers: int = _MODEL.q_layers
    #: depolarizing probability on every Ω wire after each layer (0: pure states)
    noise: float = _MODEL.noise
    #: readout head: qutrit, softmax or two_qubit
    head: str = _MODEL.head
    #: where Ω runs: torch (the torch engine, autograd) or a backend name (aer, pennylane)
    backend: str = _MODEL.backend

    @property
    def model(self) -> ModelConfig:
        """The model's config on the Kleene vocabulary: these keys, the library's defaults
        for the rest."""
        return model_config(self)


@dataclass(frozen=True)
class TrainingKeys:
    """The training keys of a Kleene experiment (Adam, cosine schedule, mini-batches)."""

    # training
    #: passes over the training queries
    epochs: int = 40
    #: queries per optimiser step
    batch_size: int = 128
    #: Adam learning rate (cosine decay to lr/20)
    lr: float = 0.02
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1


@dataclass(frozen=True)
class KleeneConfig(TrainingKeys, SemanticModelKeys, LabelFractionKey, KleeneTaskKeys, SeedKey):
    """Config of ``qsem run kleene`` (override any key with ``key=value``): the seed, the
    task keys (:attr:`task`), the label fraction, the model keys (:attr:`model`) and the
    training keys."""

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
            task_config(self)  # building the library configs checks them
            model_config(self)
        except ValueError as exc:  # QsemValueError names the argument = the config key
            raise ConfigError(f"config: {exc}") from None


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
