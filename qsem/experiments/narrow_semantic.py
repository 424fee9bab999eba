"""``qsem run narrow-semantic``: narrow the chained semantic model to a sub-domain.

The broad model (the teacher) is the end-to-end semantic model of ``qsem run
kleene`` (φ -> Φ -> Ψ -> Λ -> Ω -> qutrit head, profile AGI-B, a composer MLP
of ``teacher_hidden`` = 32 tanh neurons), trained as there on open-world Kleene
queries of every depth ``0..max_depth``. The **sub-domain** is the queries of depth
``<= narrow_depth`` (default: facts and one rule hop). Almost all parameters of
the model sit in the composer's MLP, so its hidden neurons are the unit of size:
a model with ``h`` hidden neurons has ``43 h + 36`` composer parameters
(``O = S·C = 6``) plus the same ~400 others at every ``h``.

For each size ``h`` of ``sizes`` four ways to a narrow model, all trained on
sub-domain queries only (the teacher's broad training is not counted):

1. **scratch** — a fresh model with ``h`` hidden neurons;
2. **distill** — the same fresh model trained on
   ``α·CE + (1-α)·T²·KL(teacher ‖ student)`` at temperature ``T``;
3. **group lasso** — the teacher trained on the sub-domain with the neuron group
   lasso; every ``eval_every`` steps it is pruned to each size by neuron norm
   (no recovery) and the first sample count meeting the target is recorded;
   after the full budget it is pruned to ``h`` and given ``recovery_steps``;
4. **attribution** — the teacher pruned to ``h`` by ``|activation × gradient|``
   on ``attribution_samples`` queries, then recovery training.

Every method trains for the same budget (``max_steps`` of ``batch`` queries);
``samples`` records when the sub-domain test accuracy first reached
``target_accuracy``. Afterwards the trainable circuit angles of Ω are pruned
greedily by ablation score as long as the sub-domain TRAIN accuracy drops by at
most ``angle_tolerance`` (a rotation with angle 0 is the identity). Reported per
method and size: sub-domain test accuracy (before and after angle pruning),
accuracy on the queries outside the sub-domain, nonzero parameters, kept angles,
samples to target (``results.json``, ``table.md``, ``pareto.png``,
``accuracy.png``). Test queries come from knowledge bases never seen in training.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from qsem.checks import check_int, check_probability, check_real
from qsem.models import SemanticModel, hard_label_loss
from qsem.narrow import (
    Masker,
    angle_ablation_scores,
    attribution_scores,
    distillation_loss,
    group_lasso_penalty,
    keep_masks,
    neuron_norms,
    prune_angles,
    prune_neurons,
    train_until,
)
from qsem.narrow.compare import plot_samples_pareto
from qsem.narrow.mlp import composer_group
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.tasks.kleene import KleeneDataset
from qsem.tasks.kleene_training import (
    Epochs,
    make_data,
    model_config,
    task_config,
)
from qsem.training import make_optimizer, run_steps

from ._narrow_semantic_report import METHODS, plot_accuracy, summarise, table
from .kleene import KleeneTaskKeys

__all__ = ["EXPERIMENT", "SemanticNarrowConfig", "composer_group", "run", "split_domain"]


@dataclass(frozen=True)
class _NarrowLead:
    #: the first seed; the seeds are seed, seed+1, ..., seed+seeds-1
    seed: int = 0
    #: seeds, each with its own data, teacher and narrow models
    seeds: int = 3


@dataclass(frozen=True)
class _NarrowKeys:
    #: the sub-domain: queries of depth <= narrow_depth
    narrow_depth: int = 1
    # the broad teacher: the model of `qsem run kleene` (profile AGI-B, 32 hidden neurons)
    #: hidden neurons of the teacher's composer MLP
    teacher_hidden: int = 32
    #: training epochs of the broad teacher
    teacher_epochs: int = 40
    #: queries per teacher training step
    teacher_batch: int = 128
    #: Adam learning rate of the teacher
    teacher_lr: float = 0.02
    # narrowing
    #: hidden-neuron counts h of the narrow models (each below teacher_hidden)
    sizes: tuple[int, ...] = (2, 4, 8)
    #: sub-domain test accuracy a method must reach
    target_accuracy: float = 0.95
    #: queries per narrowing step
    batch: int = 32
    #: Adam learning rate while narrowing
    lr: float = 0.01
    #: training steps per method and size (the same budget for all)
    max_steps: int = 1500
    #: steps between two checks of the target
    eval_every: int = 25
    #: distillation: weight α of the hard term in α·CE + (1-α)·T²·KL
    alpha: float = 0.1
    #: distillation temperature T
    temperature: float = 20.0
    #: strength of the neuron group lasso
    gl_lambda: float = 1e-3
    #: training steps after pruning (group lasso and attribution)
    recovery_steps: int = 200
    #: sub-domain queries scored for attribution pruning
    attribution_samples: int = 256
    #: largest drop of sub-domain train accuracy allowed when pruning circuit angles
    angle_tolerance: float = 0.005
    #: sub-domain training queries used to score and check angle pruning
    angle_samples: int = 512
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1


@dataclass(frozen=True)
class SemanticNarrowConfig(_NarrowKeys, KleeneTaskKeys, _NarrowLead):
    """Config of ``qsem run narrow-semantic`` (override any key with ``key=value``): the
    seeds, the task keys of ``qsem run kleene`` (:attr:`task`: open-world Kleene queries),
    the sub-domain, the broad teacher and the narrowing keys."""

    def __post_init__(self) -> None:
        for key in ("seeds", "teacher_hidden", "teacher_epochs", "teacher_batch", "batch",
                    "eval_every", "attribution_samples", "angle_samples"):  # fmt: skip
            check_int(key, getattr(self, key), 1, config=True)
        for key in ("max_steps", "recovery_steps", "threads"):
            check_int(key, getattr(self, key), 0, config=True)
        if not self.min_depth <= self.narrow_depth < self.max_depth:
            raise ConfigError(
                f"config key 'narrow_depth': must lie in [min_depth, max_depth) = "
                f"[{self.min_depth}, {self.max_depth}) so that the sub-domain holds queries and "
                f"some fall outside it, got {self.narrow_depth}"
            )
        if not self.sizes or any(not 1 <= s < self.teacher_hidden for s in self.sizes):
            raise ConfigError(
                f"config key 'sizes': each size must lie in [1, teacher_hidden) = "
                f"[1, {self.teacher_hidden}), got {self.sizes}"
            )
        if not 0 < self.target_accuracy <= 1:
            raise ConfigError("config key 'target_accuracy': must lie in (0, 1]")
        check_probability("alpha", self.alpha, config=True)
        if not 0 <= self.angle_tolerance < 1:
            raise ConfigError("config key 'angle_tolerance': must lie in [0, 1)")
        for key in ("temperature", "lr", "teacher_lr"):
            check_real(key, getattr(self, key), minimum=0, strict=True, config=True)
        check_real("gl_lambda", self.gl_lambda, minimum=0, config=True)
        try:
            task_config(self)
            model_config(self, hidden=self.teacher_hidden)
        except ValueError as exc:  # QsemValueError names the argument = the config key
            raise ConfigError(f"config: {exc}") from None


def split_domain(data: KleeneDataset, narrow_depth: int) -> tuple[KleeneDataset, KleeneDataset]:
    """(queries of depth ``<= narrow_depth``, the other queries)."""
    inside = data.depths <= narrow_depth
    return data.select(inside), data.select(~inside)


@torch.no_grad()
def answered_right(model: SemanticModel, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of the queries ``tokens`` answered with ``labels``, in eval mode."""
    model.eval()
    return float((model(tokens).argmax(dim=1) == labels).float().mean())


def accuracy(model: SemanticModel, data: KleeneDataset) -> float:
    return answered_right(model, data.tokens, data.labels)


def nonzero_parameters(model: torch.nn.Module) -> int:
    """Parameters that are not exactly 0 (pruned neurons and angles are)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def train_teacher(cfg: SemanticNarrowConfig, train: KleeneDataset, seed: int) -> SemanticModel:
    """The broad model: Adam with cosine decay over every depth, as ``qsem run kleene``."""
    torch.manual_seed(seed)
    model = SemanticModel(model_config(cfg, hidden=cfg.teacher_hidden))
    opt, sched = make_optimizer(model, cfg.teacher_lr, schedule="cosine", steps=cfg.teacher_epochs)
    gen = torch.Generator().manual_seed(seed)
    run_steps(Epochs(model, opt, sched, train, cfg.teacher_batch, gen), range(cfg.teacher_epochs))
    return model


class _Narrowing:
    """The data and teacher of one seed, and the training runs on the sub-domain."""

    def __init__(self, cfg: SemanticNarrowConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        train, test = make_data(replace(cfg, seed=seed))
        self.train_all, self.test_all = train, test
        self.train, _ = split_domain(train, cfg.narrow_depth)
        self.test, self.test_out = split_domain(test, cfg.narrow_depth)
        tick = time.perf_counter()
        self.teacher = train_teacher(cfg, train, seed)
        self.teacher_seconds = time.perf_counter() - tick
        with torch.no_grad():
            self.teacher.eval()
            self.teacher_logp = self.teacher(self.train.tokens)
        g = torch.Generator().manual_seed(seed + 101)
        n = min(cfg.angle_samples, len(self.train))
        self.angle_idx = torch.randperm(len(self.train), generator=g)[:n]

    def reached(self, model: SemanticModel) -> Callable[[int], bool]:
        return lambda _steps: accuracy(model, self.test) >= self.cfg.target_accuracy

    def step_loss(
        self, model: SemanticModel, gen: torch.Generator, *, distill: bool = False
    ) -> Callable[[int], torch.Tensor]:
        """The loss of one step on a fresh mini-batch: hard labels, or distillation."""
        data, cfg = self.train, self.cfg

        def loss(_step: int) -> torch.Tensor:
            model.train()
            idx = torch.randint(0, len(data), (cfg.batch,), generator=gen)
            out, labels = model(data.tokens[idx]), data.labels[idx]
            if distill:
                return distillation_loss(out, self.teacher_logp[idx], labels, alpha=cfg.alpha,
                                         temperature=cfg.temperature)  # fmt: skip
            return hard_label_loss(out, labels)

        return loss

    def fresh(self, size: int) -> SemanticModel:
        torch.manual_seed(self.seed * 7919 + size)
        return SemanticModel(model_config(self.cfg, hidden=size))

    def prune_to(
        self, model: SemanticModel, scores: torch.Tensor, size: int
    ) -> tuple[SemanticModel, Masker]:
        pruned = copy.deepcopy(model)
        keep = keep_masks({"composer": scores}, 1 - size / self.cfg.teacher_hidden)
        return pruned, prune_neurons(pruned, keep, groups=[composer_group(pruned)])

    # -- the four methods ----------------------------------------------------

    def from_scratch(self, size: int, *, distill: bool) -> tuple[SemanticModel, int | None]:
        model = self.fresh(size)
        gen = torch.Generator().manual_seed(self.seed * 7919 + size)
        loss = self.step_loss(model, gen, distill=distill)
        hit = train_until(model, loss, self.reached(model), self.cfg.max_steps, lr=self.cfg.lr,
                          eval_every=self.cfg.eval_every, stop=False)  # fmt: skip
        return model, None if hit is None else hit * self.cfg.batch

    def attribution(self, size: int) -> tuple[SemanticModel, Masker, int | None]:
        gen = torch.Generator().manual_seed(self.seed * 7919 + size + 1)
        idx = torch.randint(0, len(self.train), (self.cfg.attribution_samples,), generator=gen)

        def nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.nll_loss(out, y, reduction="sum")

        scores = attribution_scores(self.teacher, self.train.tokens[idx], self.train.labels[idx],
                                    groups=[composer_group(self.teacher)], loss_fn=nll)  # fmt: skip
        model, masker = self.prune_to(self.teacher, scores["composer"], size)
        hit = train_until(model, self.step_loss(model, gen), self.reached(model),
                          self.cfg.max_steps, lr=self.cfg.lr, eval_every=self.cfg.eval_every,
                          masker=masker, stop=False)  # fmt: skip
        samples = None if hit is None else hit * self.cfg.batch + self.cfg.attribution_samples
        return model, masker, samples

    def group_lasso(
        self,
    ) -> tuple[dict[int, tuple[SemanticModel, Masker, float]], dict[int, int | None]]:
        """Group-lasso training of the teacher; per size the recovered pruned model and samples."""
        cfg = self.cfg
        net = copy.deepcopy(self.teacher)
        group = composer_group(net)
        found: dict[int, int | None] = dict.fromkeys(cfg.sizes)

        def check(steps: int) -> bool:  # True once every size met the target
            scores = neuron_norms(group).detach()
            for size in cfg.sizes:
                if found[size] is None:
                    pruned, _ = self.prune_to(net, scores, size)
                    if accuracy(pruned, self.test) >= cfg.target_accuracy:
                        found[size] = steps * cfg.batch
            return all(v is not None for v in found.values())

        gen = torch.Generator().manual_seed(self.seed * 7919 + 3)
        ce = self.step_loss(net, gen)

        def loss(step: int) -> torch.Tensor:
            return ce(step) + group_lasso_penalty(net, cfg.gl_lambda, groups=[group])

        train_until(net, loss, check, cfg.max_steps, lr=cfg.lr, eval_every=cfg.eval_every,
                    stop=False)  # fmt: skip
        scores = neuron_norms(group).detach()
        out = {}
        for size in cfg.sizes:
            model, masker = self.prune_to(net, scores, size)
            before = accuracy(model, self.test)
            train_until(model, self.step_loss(model, gen), lambda _s: False, cfg.recovery_steps,
                        lr=cfg.lr, masker=masker, stop=False)  # fmt: skip
            out[size] = (model, masker, before)
        return out, found

    # -- angle pruning and the report of one narrowed model ------------------

    def prune_angles(self, model: SemanticModel, masker: Masker | None) -> int:
        """Zero the lowest-ablation-score angles of Ω while train accuracy holds; kept count."""
        angles = model.omega.weights
        tokens = self.train.tokens[self.angle_idx]
        labels = self.train.labels[self.angle_idx]

        def train_acc() -> float:
            return answered_right(model, tokens, labels)

        def loss() -> torch.Tensor:
            model.eval()
            return hard_label_loss(model(tokens), labels)

        scores = angle_ablation_scores(angles, loss)
        base, n = train_acc(), angles.numel()
        saved = angles.detach().clone()
        order = torch.argsort(scores.flatten(), stable=True)
        pruned = 0
        with torch.no_grad():
            for k in range(1, n + 1):
                angles.view(-1)[order[:k]] = 0.0
                if base - train_acc() > self.cfg.angle_tolerance:
                    break
                pruned = k
            angles.copy_(saved)
        if pruned:
            prune_angles(angles, scores, pruned / n, masker=masker)
        return n - pruned

    def report(
        self, model: SemanticModel, masker: Masker | None, samples: int | None
    ) -> dict[str, Any]:
        acc = accuracy(model, self.test)
        kept = self.prune_angles(model, masker)
        return {
            "samples": samples,
            "accuracy": round(acc, 4),
            "accuracy_after_angle_pruning": round(accuracy(model, self.test), 4),
            "accuracy_outside": round(accuracy(model, self.test_out), 4),
            "nonzero_parameters": nonzero_parameters(model),
            "angles_kept": kept,
        }


def one_seed(cfg: SemanticNarrowConfig, seed: int) -> dict[str, Any]:
    """Teacher, then every method at every size, for one seed."""
    job = _Narrowing(cfg, seed)
    teacher = job.teacher
    out: dict[str, Any] = {
        "seed": seed,
        "teacher": {
            "hidden": cfg.teacher_hidden,
            "parameters": teacher.num_parameters(),
            "accuracy_inside": round(accuracy(teacher, job.test), 4),
            "accuracy_outside": round(accuracy(teacher, job.test_out), 4),
            "accuracy_all": round(accuracy(teacher, job.test_all), 4),
            "train_seconds": round(job.teacher_seconds, 2),
        },
        "n_train_inside": len(job.train),
        "n_test_inside": len(job.test),
        "n_test_outside": len(job.test_out),
    }
    models: dict[str, dict[str, Any]] = {m: {} for m in METHODS}
    gl_models, gl_found = job.group_lasso()
    for size in cfg.sizes:
        model, samples = job.from_scratch(size, distill=False)
        models["scratch"][str(size)] = job.report(model, None, samples)
        model, samples = job.from_scratch(size, distill=True)
        models["distill"][str(size)] = job.report(model, None, samples)
        model, masker, samples = job.attribution(size)
        models["attribution"][str(size)] = job.report(model, masker, samples)
        model, masker, before = gl_models[size]
        rec = job.report(model, masker, gl_found[size])
        models["group_lasso"][str(size)] = {**rec, "accuracy_before_recovery": round(before, 4)}
    out["models"] = models
    out["samples"] = {m: {s: r["samples"] for s, r in d.items()} for m, d in models.items()}
    return out


def run(cfg: SemanticNarrowConfig, ctx: RunContext) -> dict[str, Any]:
    per_seed: list[dict[str, Any]] = []
    state = ctx.restore()
    if state is not None:
        per_seed = list(state["per_seed"])
        ctx.echo(f"{ctx.label}: resuming after {len(per_seed)} of {cfg.seeds} seeds")
    todo = range(len(per_seed), cfg.seeds)
    for i in ctx.progress(todo, total=cfg.seeds, initial=len(per_seed)):
        tick = time.perf_counter()
        r = one_seed(cfg, cfg.seed + i)
        r["seconds"] = round(time.perf_counter() - tick, 1)
        per_seed.append(r)
        ctx.log(i + 1, **r)
        ctx.checkpoint(i + 1, {"per_seed": per_seed}, force=True)
    summary = summarise(cfg, per_seed)
    fig = plot_samples_pareto(
        summary, METHODS, cfg.sizes,
        title=f"narrowing the semantic model to depth <= {cfg.narrow_depth}",
        ylabel=f"training queries to {cfg.target_accuracy:.0%} sub-domain accuracy",
    )  # fmt: skip
    ctx.save_figure(fig, "pareto.png")
    ctx.save_figure(plot_accuracy(cfg, summary), "accuracy.png")
    md = table(cfg, summary)
    ctx.path("table.md").write_text(md)
    return {
        **summary,
        "per_seed": per_seed,
        "paper": "pruning < distillation < scratch in samples needed (arXiv 2505.15811, MNIST)",
        "config": asdict(cfg),
        "table": md,
    }


EXPERIMENT = Experiment(
    name="narrow-semantic",
    description="narrow the semantic model to depth <= 1: pruning vs scratch vs distillation",
    defaults=SemanticNarrowConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "median_samples",
        "seeds_reached",
        "cap_for_unreached",
        "mean_log10_samples",
        "ordering_pruning_lt_distill_lt_scratch",
        "ordering_per_size",
        "models",
        "teacher",
        "per_seed",
        "paper",
        "config",
        "table",
    ),
)
