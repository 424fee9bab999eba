"""``qsem run narrow-pruning``: ablation pruning, recovery, off-target relearning, group lasso.

After the "nonlocality" study of arXiv 2505.15811: a ReLU MLP is trained on CMSP with ``n_atoms``
atoms plus the composites A = {0, 1, 2} and B = {3, 4, 5}. Hidden neurons are
scored by ablation on A; the lowest fraction ``s`` is pruned in one shot. For
each ``s`` we report A's accuracy without recovery, after ``recovery_steps``
Adam steps on A, and B's accuracy after retraining the recovered net on B for
``offtarget_steps`` (can the pruned net still learn what it was narrowed away
from?). Then the unpruned net is trained ``gl_steps`` more on A with the neuron
group lasso (``gl_lambda``) and the same curves are drawn. All sparsities of a
curve train together as one ensemble with persistent neuron masks.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from qsem.narrow import (
    CMSP,
    EnsembleMLP,
    Masker,
    ablation_scores,
    build_mlp,
    evaluate,
    group_lasso_penalty,
    keep_masks,
    make_generator,
    neuron_groups,
    prune_neurons,
)
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.training import Step, descent, make_optimizer, run_steps

__all__ = ["EXPERIMENT", "PruningConfig", "run"]

PAPER = {
    "width": 256,
    "max_sparsity_recovered_unregularised": 0.9,
    "max_sparsity_group_lasso_no_recovery": 0.95,
    "max_sparsity_group_lasso": 0.97,
    "offtarget_relearned_up_to_unregularised": "0.6-0.7",
    "offtarget_after_group_lasso": "chance (not relearned)",
}


@dataclass(frozen=True)
class PruningConfig:
    """Config of ``qsem run narrow-pruning`` (paper: n_task=18, k=3, widths 32..2048)."""

    #: the random seed (data, initialisation and masks follow it)
    seed: int = 0
    #: control bits of a CMSP input (one per atom at least)
    n_control: int = 6
    #: task bits of a CMSP input
    n_task: int = 12
    #: atomic subtasks of CMSP
    n_atoms: int = 6
    #: task bits per atom (an atom is the parity of its k bits)
    k: int = 2
    #: hidden widths of the nets studied (one set of curves per width)
    widths: tuple[int, ...] = (64, 256)
    #: Linear layers per net (hidden layers = depth - 1)
    depth: int = 3
    #: Adam learning rate
    lr: float = 1e-3
    #: samples of each task per initial training step
    train_per_task: int = 64
    #: most initial training steps
    train_steps: int = 8000
    #: stop initial training once both composites reach this accuracy
    train_target_accuracy: float = 0.995
    #: steps between two evaluations during initial training
    eval_every: int = 250
    #: samples per task in the fixed evaluation set
    eval_samples: int = 2000
    #: samples of {0,1,2} (apart from the evaluation set) for the ablation scores
    score_samples: int = 1000
    #: fractions of hidden neurons pruned (one point of each curve per fraction)
    sparsities: tuple[float, ...] = (0.0, 0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
    #: Adam steps on composite A after pruning
    recovery_steps: int = 1000
    #: samples per recovery step
    recovery_batch: int = 256
    #: Adam steps retraining the recovered net on composite B
    offtarget_steps: int = 1000
    #: samples per off-target step
    offtarget_batch: int = 256
    #: strength of the neuron group lasso
    gl_lambda: float = 1e-3
    #: extra training steps on A with the group lasso
    gl_steps: int = 4000
    #: samples per group-lasso step
    gl_batch: int = 256
    #: accuracy a pruned net must keep to count in the largest-sparsity summary
    accuracy_threshold: float = 0.98
    #: torch device (cpu, cuda, ...)
    device: str = "cpu"
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.n_atoms < 6:
            raise ConfigError("config key 'n_atoms': needs >= 6 atoms for {0,1,2} and {3,4,5}")
        try:
            CMSP(self.n_control, self.n_task, self.n_atoms, self.k)
        except ValueError as exc:
            raise ConfigError(f"config: invalid CMSP setting: {exc}") from None
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"config key 'widths': positive widths needed, got {self.widths}")
        if self.depth < 2:
            raise ConfigError(f"config key 'depth': must be >= 2, got {self.depth}")
        if not self.sparsities or any(not 0 <= s < 1 for s in self.sparsities):
            raise ConfigError(f"config key 'sparsities': values in [0, 1), got {self.sparsities}")
        for key in ("train_per_task", "eval_every", "eval_samples", "score_samples",
                    "recovery_batch", "offtarget_batch", "gl_batch"):  # fmt: skip
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        for key in ("train_steps", "recovery_steps", "offtarget_steps", "gl_steps", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': must be >= 0, got {getattr(self, key)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key 'lr': must be positive, got {self.lr}")
        if not (self.gl_lambda >= 0 and math.isfinite(self.gl_lambda)):
            raise ConfigError(f"config key 'gl_lambda': must be >= 0, got {self.gl_lambda}")


A, B = (0, 1, 2), (3, 4, 5)


def _ens_accuracy(ens: EnsembleMLP, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    with torch.no_grad():
        out = ens(x.expand(ens.members, *x.shape))
    return [round(float(v), 4) for v in (out.argmax(-1) == y).float().mean(dim=1)]


def _train_ensemble(
    ens: EnsembleMLP, masker: Masker, cmsp: CMSP, task: tuple[int, ...], steps: int,
    batch: int, lr: float, gen: torch.Generator,
) -> None:  # fmt: skip
    opt, _ = make_optimizer(ens, lr)
    masker.attach(opt)

    def loss(_: int) -> torch.Tensor:
        x, y = cmsp.sample(task, batch, gen)
        out = ens(x.expand(ens.members, *x.shape))
        return F.cross_entropy(out.reshape(-1, 2), y.repeat(ens.members)) * ens.members

    run_steps(descent(opt, loss), range(steps))


def _masked_ensemble(models: list, keeps: list) -> tuple[EnsembleMLP, Masker]:
    ens = EnsembleMLP.from_models(models)
    masker = Masker()
    for p, m in ens.neuron_masks(keeps):
        masker.add(p, m)
    return ens, masker


def prune_curves(
    net: torch.nn.Sequential, cfg: PruningConfig, cmsp: CMSP, evals: dict, gen: torch.Generator
) -> dict[str, Any]:
    """Accuracy on A (pruned, recovered) and B (relearned) at each sparsity."""
    xa, ya = evals["A"]
    xb, yb = evals["B"]
    xs, ys = evals["score"]  # a batch of A apart from the evaluation set
    scores = ablation_scores(net, xs, ys)
    names = [g.name for g in neuron_groups(net)]
    models, keeps, pruned_acc, kept = [], [], [], []
    for s in cfg.sparsities:
        keep = keep_masks(scores, s)
        m = copy.deepcopy(net)
        prune_neurons(m, keep)
        models.append(m)
        keeps.append([keep[n] for n in names])
        pruned_acc.append(round(evaluate(m, xa, ya)["accuracy"], 4))
        kept.append(int(sum(int(k.sum()) for k in keep.values())))
    ens, masker = _masked_ensemble(models, keeps)
    _train_ensemble(ens, masker, cmsp, A, cfg.recovery_steps, cfg.recovery_batch, cfg.lr, gen)
    recovered = _ens_accuracy(ens, xa, ya)
    b_before = _ens_accuracy(ens, xb, yb)
    ens_b, masker_b = _masked_ensemble([ens.member(e) for e in range(ens.members)], keeps)
    _train_ensemble(ens_b, masker_b, cmsp, B, cfg.offtarget_steps, cfg.offtarget_batch,
                    cfg.lr, gen)  # fmt: skip
    relearned = _ens_accuracy(ens_b, xb, yb)
    return {
        "sparsity": list(cfg.sparsities),
        "neurons_kept": kept,
        "accuracy_A_pruned": pruned_acc,
        "accuracy_A_recovered": recovered,
        "accuracy_B_before_retraining": b_before,
        "accuracy_B_relearned": relearned,
        "max_sparsity_pruned": _max_sparsity(cfg.sparsities, pruned_acc, cfg.accuracy_threshold),
        "max_sparsity_recovered": _max_sparsity(cfg.sparsities, recovered, cfg.accuracy_threshold),
        "max_sparsity_B_relearned": _max_sparsity(cfg.sparsities, relearned, 0.9),
    }


def _max_sparsity(
    sparsities: tuple[float, ...], acc: list[float], threshold: float
) -> float | None:
    ok = [s for s, a in zip(sparsities, acc, strict=True) if a >= threshold]
    return max(ok) if ok else None


def train_broad(
    cfg: PruningConfig, width: int, cmsp: CMSP, evals: dict, ctx: RunContext | None
) -> tuple[torch.nn.Sequential, dict[str, Any]]:
    gen = make_generator(cfg.seed * 1000 + width)
    net = build_mlp(cmsp.input_dim, [width] * (cfg.depth - 1), 2, generator=gen)
    opt, _ = make_optimizer(net, cfg.lr)
    data_gen = make_generator(cfg.seed * 1000 + width + 1)

    def loss(_step: int) -> torch.Tensor:
        x, y, _ = cmsp.sample_mixture(cmsp.tasks, cfg.train_per_task, data_gen)
        return F.cross_entropy(net(x), y)

    def after(done: Step) -> bool:
        if done.step % cfg.eval_every:
            return False
        acc = {t: evaluate(net, *evals[t])["accuracy"] for t in ("A", "B")}
        if ctx is not None:
            ctx.log(done.step, phase="train", width=width, loss=done.loss, accuracy_A=acc["A"],
                    accuracy_B=acc["B"])  # fmt: skip
        return min(acc.values()) >= cfg.train_target_accuracy

    step = run_steps(descent(opt, loss), range(1, cfg.train_steps + 1), after=after) or 0
    acc = {t: round(evaluate(net, *evals[t])["accuracy"], 4) for t in ("A", "B")}
    return net, {"train_steps": step, "accuracy_A": acc["A"], "accuracy_B": acc["B"]}


def group_lasso_train(
    net: torch.nn.Sequential, cfg: PruningConfig, cmsp: CMSP, gen: torch.Generator,
    ctx: RunContext | None, width: int,
) -> torch.nn.Sequential:  # fmt: skip
    gl = copy.deepcopy(net)
    opt, _ = make_optimizer(gl, cfg.lr)
    ce = torch.zeros(())

    def loss(_: int) -> torch.Tensor:
        nonlocal ce
        x, y = cmsp.sample(A, cfg.gl_batch, gen)
        ce = F.cross_entropy(gl(x), y)
        return ce + group_lasso_penalty(gl, cfg.gl_lambda)

    def after(done: Step) -> None:
        if ctx is not None and done.step % cfg.eval_every == 0:
            ctx.log(done.step, phase="group_lasso", width=width, ce=ce.item(), loss=done.loss)

    run_steps(descent(opt, loss), range(1, cfg.gl_steps + 1), after=after)
    return gl


def plot_width(width: int, unreg: dict[str, Any], gl: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, r, title in ((axes[0], unreg, "no regulariser"), (axes[1], gl, "after group lasso")):
        s = r["sparsity"]
        ax.plot(s, r["accuracy_A_pruned"], "o-", label="{0,1,2} pruned, no recovery")
        ax.plot(s, r["accuracy_A_recovered"], "s-", label="{0,1,2} after recovery")
        ax.plot(s, r["accuracy_B_relearned"], "^--", label="{3,4,5} retrained (off-target)")
        ax.axhline(0.5, color="0.6", lw=0.8, ls=":")
        ax.set(xlabel="fraction of hidden neurons pruned", title=f"width {width}: {title}",
               ylim=(0.4, 1.02))  # fmt: skip
    axes[0].set_ylabel("accuracy")
    axes[1].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def table(results: dict[str, Any]) -> str:
    lines = [
        "| width | curve | max sparsity, acc >= thr, no recovery | with recovery "
        "| {3,4,5} relearned (acc >= 0.9) up to | {3,4,5} acc before retraining (unpruned) |",
        "|---|---|---|---|---|---|",
    ]
    for w, r in results["per_width"].items():
        for key, label, b_acc in (
            ("unregularised", "no regulariser", r["trained"]["accuracy_B"]),
            ("group_lasso", "group lasso", r["group_lasso_accuracy"]["B"]),
        ):
            c = r[key]
            lines.append(
                f"| {w} | {label} | {c['max_sparsity_pruned']} | {c['max_sparsity_recovered']} | "
                f"{c['max_sparsity_B_relearned']} | {b_acc} |"
            )
    lines += ["", "Paper (width 256, 6+18 bits, k = 3): ~0.9 with recovery (no regulariser); "
              "group lasso ~0.95 without recovery, ~0.97 with; {3,4,5} relearned up to "
              "s ~ 0.6-0.7 unregularised, at chance after group lasso.", ""]  # fmt: skip
    return "\n".join(lines)


def run(cfg: PruningConfig, ctx: RunContext) -> dict[str, Any]:
    tasks = [(i,) for i in range(cfg.n_atoms)] + [A, B]
    cmsp = CMSP(cfg.n_control, cfg.n_task, cfg.n_atoms, cfg.k, tasks)
    eval_gen = make_generator(cfg.seed + 424242)
    evals = {"A": cmsp.sample(A, cfg.eval_samples, eval_gen),
             "B": cmsp.sample(B, cfg.eval_samples, eval_gen),
             "score": cmsp.sample(A, cfg.score_samples, eval_gen)}  # fmt: skip
    per_width: dict[str, Any] = {}
    for width in ctx.progress(cfg.widths, total=len(cfg.widths), desc="narrow-pruning widths"):
        tick = time.perf_counter()
        net, info = train_broad(cfg, width, cmsp, evals, ctx)
        gen = make_generator(cfg.seed * 1000 + width + 2)
        unreg = prune_curves(net, cfg, cmsp, evals, gen)
        gl_net = group_lasso_train(net, cfg, cmsp, gen, ctx, width)
        gl_info = {t: round(evaluate(gl_net, *evals[t])["accuracy"], 4) for t in ("A", "B")}
        gl = prune_curves(gl_net, cfg, cmsp, evals, gen)
        per_width[str(width)] = {
            "trained": info,
            "group_lasso_accuracy": gl_info,
            "unregularised": unreg,
            "group_lasso": gl,
            "seconds": round(time.perf_counter() - tick, 1),
        }
        ctx.save_figure(plot_width(width, unreg, gl), f"pruning_width{width}.png")
        ctx.echo(f"{ctx.label}: width {width} done in {per_width[str(width)]['seconds']} s")
    results: dict[str, Any] = {"per_width": per_width}
    md = table(results)
    ctx.path("table.md").write_text(md)
    ref_width = 256 if 256 in cfg.widths else cfg.widths[-1]
    ref = per_width[str(ref_width)]
    gl_b = ref["group_lasso"]["accuracy_B_relearned"]
    results.update(
        {
            "max_sparsity_recovered_unregularised": ref["unregularised"]["max_sparsity_recovered"],
            "max_sparsity_recovered_group_lasso": ref["group_lasso"]["max_sparsity_recovered"],
            "max_sparsity_no_recovery_group_lasso": ref["group_lasso"]["max_sparsity_pruned"],
            "reference_width": ref_width,
            "offtarget_B_accuracy_after_group_lasso": ref["group_lasso_accuracy"]["B"],
            "offtarget_B_at_chance_after_group_lasso": bool(ref["group_lasso_accuracy"]["B"] < 0.6),
            "offtarget_B_relearned_after_group_lasso": gl_b,
            "paper": PAPER,
            "config": asdict(cfg),
            "table": md,
        }
    )
    return results


EXPERIMENT = Experiment(
    name="narrow-pruning",
    description="CMSP: ablation pruning curves, recovery, off-target relearning, group lasso",
    defaults=PruningConfig(),
    run=run,
    results=(
        "per_width",
        "max_sparsity_recovered_unregularised",
        "max_sparsity_recovered_group_lasso",
        "max_sparsity_no_recovery_group_lasso",
        "reference_width",
        "offtarget_B_accuracy_after_group_lasso",
        "offtarget_B_at_chance_after_group_lasso",
        "offtarget_B_relearned_after_group_lasso",
        "paper",
        "config",
        "table",
    ),
)
