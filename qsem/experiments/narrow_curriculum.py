"""``qsem run narrow-curriculum``: broad vs composite-only training on CMSP.

The paper ("On the creation of narrow AI", arXiv 2505.15811) trains a ReLU MLP
on compositional multitask sparse parity: with the atoms in the training
distribution ("broad"), 27/40 seeds learn the 16-bit composite parity within
200k steps; trained on the composite alone ("narrow"), 0/40 do within 1M steps.
This experiment runs both conditions for ``seeds`` seeds each, all seeds of a
condition in one batched ensemble (independent weights, data and Adam state),
and records the step at which each seed's composite loss first drops below
``threshold_bits``. The defaults are a CPU-scale setting; the paper's full
setting is ``qsem/narrow/configs/narrow_curriculum_paper.json`` (a GPU job).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from qsem.narrow.cmsp import CMSP, make_generator
from qsem.narrow.mlp import EnsembleMLP
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.training import Step, descent, make_optimizer, run_steps

__all__ = ["EXPERIMENT", "CurriculumConfig", "run", "train_condition"]

LN2 = math.log(2.0)
PAPER = {"broad_converged": 27, "narrow_converged": 0, "seeds": 40,
         "broad_steps": 200_000, "narrow_steps": 1_000_000}  # fmt: skip


@dataclass(frozen=True)
class CurriculumConfig:
    """Config of ``qsem run narrow-curriculum`` (override any key with ``key=value``)."""

    #: the first seed; the seeds are seed, seed+1, ..., seed+seeds-1
    seed: int = 0
    #: seeds per condition (trained together as one ensemble)
    seeds: int = 10
    #: control bits of a CMSP input (one per atom at least)
    n_control: int = 4
    #: task bits of a CMSP input
    n_task: int = 32
    #: atomic subtasks of CMSP
    n_atoms: int = 4
    #: task bits per atom (an atom is the parity of its k bits)
    k: int = 2
    #: hidden widths of the ReLU MLP
    widths: tuple[int, ...] = (64, 64)
    #: Adam learning rate
    lr: float = 1e-3
    #: Adam epsilon
    adam_eps: float = 1e-5
    #: samples of each task per step in the broad condition (atoms + composite)
    broad_per_task: int = 50
    #: composite samples per step in the narrow condition (default: as many as broad uses)
    narrow_per_step: int = 250
    #: training steps of the broad condition
    broad_steps: int = 8000
    #: training steps of the narrow condition
    narrow_steps: int = 24000
    #: steps between two evaluations of the composite loss
    eval_every: int = 250
    #: composite samples in the fixed evaluation set
    eval_samples: int = 1000
    #: a seed has converged once its composite loss is below this many bits
    threshold_bits: float = 0.1
    #: stop a condition once every seed has converged
    stop_when_converged: bool = True
    #: torch device (cpu, cuda, ...)
    device: str = "cpu"
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        for key in ("seeds", "broad_per_task", "narrow_per_step", "eval_every", "eval_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        for key in ("broad_steps", "narrow_steps", "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': must be >= 0, got {getattr(self, key)}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"config key 'widths': positive widths needed, got {self.widths}")
        for key in ("lr", "adam_eps", "threshold_bits"):
            v = getattr(self, key)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"config key '{key}': must be a positive number, got {v}")
        try:
            CMSP(self.n_control, self.n_task, self.n_atoms, self.k)
        except ValueError as exc:
            raise ConfigError(f"config: invalid CMSP setting: {exc}") from None


def _ensemble_batch(
    cmsp: CMSP, tasks: list[tuple[int, ...]], per_task: int, members: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, T*per_task, in)`` inputs and ``(E, T*per_task)`` labels, fresh for each member."""
    x, y, _ = cmsp.sample_mixture(tasks, per_task * members, gen)
    t = len(tasks)
    x = x.view(t, members, per_task, -1).transpose(0, 1).reshape(members, t * per_task, -1)
    y = y.view(t, members, per_task).transpose(0, 1).reshape(members, t * per_task)
    return x, y


def _loss_bits(model: EnsembleMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member mean cross-entropy in bits, ``(E,)``."""
    logits = model(x)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return ce.view(y.shape).mean(dim=1) / LN2


def _condition(
    cfg: CurriculumConfig, cmsp: CMSP, condition: str
) -> tuple[list[tuple[int, ...]], int, int, int]:
    """(tasks, samples per task per step, steps, data-seed offset) of ``condition``."""
    if condition == "broad":
        return cmsp.tasks, cfg.broad_per_task, cfg.broad_steps, 0
    if condition == "narrow":
        return [tuple(range(cfg.n_atoms))], cfg.narrow_per_step, cfg.narrow_steps, 1_000_003
    raise ValueError(f"argument 'condition': 'broad' or 'narrow', got {condition!r}")


@dataclass
class _Curves:
    """The composite-loss curve of every member and the step each one converged at."""

    converged: list[int | None]
    curve_steps: list[int]
    curves: list[list[float]]
    last: torch.Tensor

    def add(self, step: int, losses: torch.Tensor, threshold_bits: float) -> None:
        self.last = losses
        self.curve_steps.append(step)
        self.curves.append([round(float(v), 5) for v in losses])
        for i, v in enumerate(losses.tolist()):
            if self.converged[i] is None and v < threshold_bits:
                self.converged[i] = step

    @property
    def n_converged(self) -> int:
        return sum(c is not None for c in self.converged)


def _restore(
    resume: dict[str, Any], model: EnsembleMLP, opt: torch.optim.Optimizer,
    data_gen: torch.Generator, log: _Curves,
) -> tuple[_Curves, int, float]:  # fmt: skip
    """Load a checkpointed condition into ``model``, ``opt`` and ``data_gen``; its curves,
    step and seconds so far."""
    model.load_state_dict(resume["model"])
    opt.load_state_dict(resume["optimizer"])
    data_gen.set_state(resume["data_gen"].to(data_gen.get_state().device))
    curves = [list(c) for c in resume["curves"]]
    last = torch.tensor(curves[-1]) if curves else log.last
    log = _Curves(list(resume["converged"]), list(resume["curve_steps"]), curves, last)
    return log, int(resume["step"]), float(resume["seconds"])


def train_condition(
    cfg: CurriculumConfig,
    condition: str,
    ctx: RunContext | None = None,
    *,
    resume: dict[str, Any] | None = None,
    done: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``cfg.seeds`` members on ``condition`` ("broad" or "narrow").

    Returns per-seed convergence steps (``None``: not converged), the final
    composite loss per seed, the loss curves and the wall time. With ``ctx`` it
    checkpoints at evaluation steps (``ctx.checkpoint_every``) the state of this
    condition plus ``done`` (finished conditions); ``resume`` continues from
    such a state.
    """
    device = torch.device(cfg.device)
    cmsp = CMSP(cfg.n_control, cfg.n_task, cfg.n_atoms, cfg.k)
    tasks, per_task, steps, offset = _condition(cfg, cmsp, condition)
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    init_gens = [make_generator(s) for s in seeds]
    model = EnsembleMLP(cmsp.input_dim, cfg.widths, 2, init_gens).to(device)
    opt, _ = make_optimizer(model, cfg.lr, eps=cfg.adam_eps)
    data_gen = make_generator(cfg.seed + offset, device)
    eval_gen = make_generator(cfg.seed + 7_777_777, device)
    composite = [tuple(range(cfg.n_atoms))]
    x_ev, y_ev = _ensemble_batch(cmsp, composite, cfg.eval_samples, cfg.seeds, eval_gen)
    log = _Curves([None] * cfg.seeds, [], [], torch.full((cfg.seeds,), 1.0))
    tick = time.perf_counter()
    start, seconds = 0, 0.0
    if resume is not None:
        log, start, seconds = _restore(resume, model, opt, data_gen, log)
    base = 0 if condition == "broad" else cfg.broad_steps

    def snapshot(step: int) -> dict[str, Any]:
        return {
            "done": dict(done or {}),
            "current": {
                "condition": condition, "step": step, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "data_gen": data_gen.get_state(),
                "converged": log.converged, "curve_steps": log.curve_steps,
                "curves": log.curves, "seconds": seconds + time.perf_counter() - tick,
            },
        }  # fmt: skip

    def loss(_: int) -> torch.Tensor:
        x, y = _ensemble_batch(cmsp, tasks, per_task, cfg.seeds, data_gen)
        return _loss_bits(model, x, y).sum()

    def after(s: Step) -> bool:  # evaluate when due; True (stop) once every seed converged
        if s.step % cfg.eval_every and s.step != steps:
            return False
        with torch.no_grad():
            log.add(s.step, _loss_bits(model, x_ev, y_ev).cpu(), cfg.threshold_bits)
        if ctx is not None:
            ctx.log(s.step, condition=condition, composite_loss_bits=log.last.tolist(),
                    converged=log.n_converged)  # fmt: skip
        return cfg.stop_when_converged and log.n_converged == cfg.seeds

    def save(t: int) -> None:
        if ctx is not None and (t % cfg.eval_every == 0 or t == steps):
            ctx.checkpoint(base + t, partial(snapshot, t), where=f"{condition}, step {t}")

    todo = range(start + 1, steps + 1)
    bar = todo if ctx is None else ctx.progress(todo, total=steps, initial=start, desc=condition)
    step = run_steps(descent(opt, loss), bar, after=after, checkpoint=save) or start
    return {
        "condition": condition,
        "seeds": seeds,
        "steps_run": step,
        "samples_per_step": per_task * len(tasks),
        "convergence_steps": log.converged,
        "converged": log.n_converged,
        "final_composite_loss_bits": [round(float(v), 5) for v in log.last],
        "curve_steps": log.curve_steps,
        "curves": log.curves,
        "seconds": round(seconds + time.perf_counter() - tick, 2),
    }


def plot_curves(results: dict[str, dict[str, Any]], threshold: float) -> Any:
    """Composite loss (bits) against step, every seed, one panel per condition."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, cond in zip(axes, ("broad", "narrow"), strict=True):
        r = results[cond]
        for i in range(len(r["seeds"])):
            ax.plot(r["curve_steps"], [c[i] for c in r["curves"]], lw=0.9, alpha=0.8)
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
        title = "atoms + composite" if cond == "broad" else "composite only"
        ax.set(xlabel="step", title=f"{title}: {r['converged']}/{len(r['seeds'])} converged",
               yscale="log")  # fmt: skip
    axes[0].set_ylabel("composite loss (bits)")
    fig.tight_layout()
    return fig


def table(results: dict[str, Any], cfg: CurriculumConfig) -> str:
    b, n = results["broad"], results["narrow"]

    def steps(r: dict[str, Any]) -> str:
        done = sorted(s for s in r["convergence_steps"] if s is not None)
        return "-" if not done else f"median {done[len(done) // 2]} (min {done[0]}, max {done[-1]})"

    return "\n".join([
        "| condition | converged (ours) | steps to < "
        f"{cfg.threshold_bits} bits (ours) | steps run x samples per step (ours) | paper |",
        "|---|---|---|---|---|",
        f"| broad (atoms + composite) | {b['converged']}/{len(b['seeds'])} | {steps(b)} | "
        f"{b['steps_run']} x {b['samples_per_step']} | 27/40 in 200k steps |",
        f"| narrow (composite only) | {n['converged']}/{len(n['seeds'])} | {steps(n)} | "
        f"{n['steps_run']} x {n['samples_per_step']} | 0/40 in 1M steps |",
        "",
    ])  # fmt: skip


def run(cfg: CurriculumConfig, ctx: RunContext) -> dict[str, Any]:
    state = ctx.restore()
    per: dict[str, Any] = dict(state["done"]) if state else {}
    current = state["current"] if state else None
    for c in ("broad", "narrow"):
        if c not in per:
            resume = current if current is not None and current["condition"] == c else None
            per[c] = train_condition(cfg, c, ctx, resume=resume, done=per)
    ctx.save_figure(plot_curves(per, cfg.threshold_bits), "curriculum_curves.png")
    md = table(per, cfg)
    ctx.path("table.md").write_text(md)
    return {
        "broad_converged": per["broad"]["converged"],
        "narrow_converged": per["narrow"]["converged"],
        "seeds": cfg.seeds,
        "broad_convergence_steps": per["broad"]["convergence_steps"],
        "narrow_convergence_steps": per["narrow"]["convergence_steps"],
        "broad": per["broad"],
        "narrow": per["narrow"],
        "paper": PAPER,
        "config": asdict(cfg),
        "table": md,
    }


EXPERIMENT = Experiment(
    name="narrow-curriculum",
    description="CMSP: broad (atoms + composite) vs composite-only training, seeds converged",
    defaults=CurriculumConfig(),
    run=run,
    checkpoint_every=1000,
    results=(
        "broad_converged",
        "narrow_converged",
        "seeds",
        "broad_convergence_steps",
        "narrow_convergence_steps",
        "broad",
        "narrow",
        "paper",
        "config",
        "table",
    ),
)
