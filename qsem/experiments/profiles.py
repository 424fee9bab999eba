"""``qsem run profiles``: profiles AGI-A..D of one model family on the same Kleene task.

Each profile (:data:`qsem.models.PROFILES`) keeps different axes and circuit
registers of :class:`qsem.models.SemanticModel`; all are trained on the same
train/test knowledge bases with the same optimiser settings (a short config).
Writes ``results.json`` (one row per profile), ``profiles.md`` and
``profiles.csv`` (the table: accuracy, parameters, step time), ``profiles.png``
(bar plot) and ``metrics.jsonl`` (one record per profile and epoch).
Checkpoints after each finished profile; a resumed run skips finished ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from qsem.models import PROFILES, SemanticModel, profile_config
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.tasks.kleene_training import Epochs, evaluate, make_data, model_config
from qsem.training import Step, make_optimizer, run_steps

from .kleene import KleeneConfig, KleeneTaskKeys, SeedKey, TrainingKeys

__all__ = ["EXPERIMENT", "ProfilesConfig", "format_table", "run"]


@dataclass(frozen=True)
class _ProfilesKey:
    #: model profiles to train, from AGI-A, AGI-B, AGI-C, AGI-D
    profiles: list[str] = field(default_factory=lambda: ["AGI-A", "AGI-B", "AGI-C", "AGI-D"])


@dataclass(frozen=True)
class _CircuitKey:
    #: trainable layers of the Ω circuit
    q_layers: int = 1


@dataclass(frozen=True)
class ProfilesConfig(TrainingKeys, _CircuitKey, KleeneTaskKeys, _ProfilesKey, SeedKey):
    """Config of ``qsem run profiles`` (override any key with ``key=value``): the seed, the
    profiles, the Kleene task keys (:attr:`task`), the Ω circuit's layers and the
    training keys; :meth:`kleene` is the :class:`KleeneConfig` every profile shares."""

    n_train_kbs: int = 100
    n_test_kbs: int = 30
    #: passes over the training queries (every profile)
    epochs: int = 15

    def __post_init__(self) -> None:
        if not self.profiles:
            raise ConfigError("config key 'profiles': give at least one profile")
        bad = [p for p in self.profiles if p not in PROFILES]
        if bad:
            raise ConfigError(f"config key 'profiles': unknown {bad}; known: {sorted(PROFILES)}")
        if len(set(self.profiles)) != len(self.profiles):
            raise ConfigError("config key 'profiles': a profile is listed twice")
        self.kleene()  # validates the rest

    def kleene(self) -> KleeneConfig:
        """The :class:`KleeneConfig` every profile shares (its keys of the same name are
        these; the model fields are set per profile)."""
        try:
            shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "profiles"}
            return replace(KleeneConfig(), **shared)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"config: {exc}") from None


_COLUMNS = (
    ("profile", "profile"),
    ("axes", "kept axes"),
    ("test_accuracy", "test accuracy"),
    ("test_nll", "test NLL"),
    ("parameters", "parameters"),
    ("step_ms", "step time (ms)"),
    ("train_seconds", "train time (s)"),
    ("circuit_dims", "circuit wires"),
    ("head", "head"),
)


def format_table(rows: list[dict[str, Any]], kind: str = "md") -> str:
    """The profile table as Markdown (``kind="md"``) or CSV."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list):
            return "x".join(map(str, v))
        return str(v)

    head = [title for _, title in _COLUMNS]
    body = [[cell(r[key]) for key, _ in _COLUMNS] for r in rows]
    if kind == "csv":
        return "\n".join(",".join(f'"{c}"' if "," in c else c for c in line)
                         for line in [head, *body]) + "\n"  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def plot_profiles(rows: list[dict[str, Any]]) -> Any:
    """Bars: test accuracy and step time per profile."""
    from matplotlib.figure import Figure

    names = [r["profile"] for r in rows]
    fig = Figure(figsize=(9, 3.6))
    ax_acc, ax_t = fig.subplots(1, 2)
    bars = ax_acc.bar(names, [r["test_accuracy"] for r in rows], color="#1b9e77")
    ax_acc.bar_label(bars, fmt="%.3f", fontsize=8)
    ax_acc.axhline(1 / 3, color="0.5", lw=0.8, ls=":", label="chance")
    ax_acc.set(ylabel="test accuracy (unseen KBs)", ylim=(0, 1.08), title="accuracy")
    ax_acc.legend(loc="lower right", fontsize=8)
    bars = ax_t.bar(names, [r["step_ms"] for r in rows], color="#7570b3")
    ax_t.bar_label(bars, labels=[f"{r['parameters']} par." for r in rows], fontsize=8)
    ax_t.set(ylabel="ms per optimiser step", title="step time (labels: parameters)")
    fig.suptitle("profiles of one model family on Kleene queries")
    fig.tight_layout()
    return fig


def _train_profile(
    cfg: ProfilesConfig, index: int, name: str, data: tuple[Any, Any], ctx: RunContext, first: int
) -> dict[str, Any]:
    """Train profile ``name`` (the ``index``-th) for ``cfg.epochs``; its row of the table.
    Its epochs are logged at steps ``first + 1 ...``."""
    train, test = data
    torch.manual_seed(cfg.seed * 1000 + index)
    model = SemanticModel(profile_config(name, model_config(cfg.kleene())))
    optimizer, sched = make_optimizer(model, cfg.lr, schedule="cosine", steps=cfg.epochs)
    epochs = Epochs(model, optimizer, sched, train, cfg.batch_size,
                    torch.Generator().manual_seed(cfg.seed))  # fmt: skip
    tick = time.perf_counter()

    def after(done: Step) -> None:
        ev = evaluate(model, test)
        ctx.log(first + done.step, profile=name, epoch=done.step, loss=done.loss,
                test_accuracy=ev["accuracy"])  # fmt: skip

    run_steps(epochs, range(1, cfg.epochs + 1), after=after)
    ev = evaluate(model, test)
    return {
        "profile": name,
        "axes": PROFILES[name][0],
        "test_accuracy": ev["accuracy"],
        "test_nll": ev["nll"],
        "per_depth_accuracy": ev["per_depth_accuracy"],
        "parameters": model.num_parameters(),
        "step_ms": 1000 * epochs.seconds / max(epochs.steps, 1),
        "train_seconds": epochs.seconds,
        "wall_seconds": time.perf_counter() - tick,
        "circuit_dims": list(model.omega.dims),
        "head": model.cfg.head,
        "operator": model.cfg.operator,
    }


def run(cfg: ProfilesConfig, ctx: RunContext) -> dict[str, Any]:
    kcfg = cfg.kleene()
    train, test = make_data(kcfg)
    state = ctx.restore()
    rows: list[dict[str, Any]] = list(state["rows"]) if state is not None else []
    done = {r["profile"] for r in rows}
    step = len(rows) * cfg.epochs
    names = ctx.progress(cfg.profiles, total=len(cfg.profiles), desc="profiles")
    for i, name in enumerate(names):
        if name in done:
            continue
        rows.append(_train_profile(cfg, i, name, (train, test), ctx, step))
        step += cfg.epochs
        ctx.echo(f"{ctx.label}: {name} test accuracy {rows[-1]['test_accuracy']:.3f}")
        ctx.checkpoint(step, {"rows": rows}, force=True)

    ctx.path("profiles.md").write_text(format_table(rows, "md"), encoding="utf-8")
    ctx.path("profiles.csv").write_text(format_table(rows, "csv"), encoding="utf-8")
    ctx.save_figure(plot_profiles(rows), "profiles.png")
    return {
        "rows": rows,
        "n_train": len(train),
        "n_test": len(test),
        "epochs": cfg.epochs,
        "best_profile": max(rows, key=lambda r: r["test_accuracy"])["profile"],
    }


EXPERIMENT = Experiment(
    name="profiles",
    description="profiles AGI-A..D of the semantic model family on the same Kleene task",
    defaults=ProfilesConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "rows",
        "n_train",
        "n_test",
        "epochs",
        "best_profile",
    ),
)
