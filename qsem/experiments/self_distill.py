"""``qsem run self-distill``: the semantic model under the self-distillation loop.

Task: the Kleene queries of ``qsem run kleene`` at a small label budget
(``label_fraction`` 0.1: 90 % of the training labels are masked). For each of
``n_seeds`` seeds (data, label mask, initialisation and batch order all follow
the seed) two models are trained with the same data, epochs and optimiser
(:func:`qsem.tasks.kleene_training.fit`):

* ``hard``: the hard-label loss alone (the baseline at that label budget);
* ``distill``: :class:`qsem.distill.SelfDistiller` — soft ``τ²·KL`` against an
  EMA teacher on every query plus the masked hard term, probes every
  ``distill.probe_every`` steps on a fixed probe batch of ``probe_size``
  training queries, detectors (classical Frobenius / adaptive / L1 on Δφ,
  quantum on Ω exact and with shots), slices appended at the events of the
  trigger detector (Frobenius, ``Δφ > θ_emg``, the default);
* ``control`` (with ``control=true``): the same loop with ``w_soft = 0`` — every
  other setting (e.g. ``distill.labelled_batch``) equal — so that
  ``distill − control`` is what the soft term itself adds (``paired_control``).

For the first ``aer_seeds`` seeds the shot estimate also runs on Qiskit Aer
(:class:`qsem.simulators.aer.AerBackend`, detector ``quantum_aer``) on the first
``distill.aer_queries`` probe queries. Writes ``results.json`` (accuracies per
seed and arm, the paired Wilcoxon signed-rank and t-test p-values on accuracy
and on the test NLL, the events
of every detector, the slices), ``metrics.jsonl`` (epoch records, every probe,
every event; tagged by ``seed`` and ``arm``), ``emergence.png`` and
``snapshots/seed-S/step-N.pt`` at each appended slice (with ``save_models``
also ``models/seed-S-ARM.pt``, each trained model). Checkpoints after every
epoch of every (seed, arm); ``--resume`` continues where it stopped.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from qsem.checks import check_int
from qsem.distill import SHOT_KEYS, DistillConfig, SelfDistiller
from qsem.io import atomic_write_bytes
from qsem.models import SemanticModel
from qsem.runner import Experiment, RunContext
from qsem.runner.nested import NestedContext
from qsem.stats import paired_tests
from qsem.tasks.kleene_training import evaluate, fit, make_data, model_config

from .kleene import KleeneConfig

__all__ = [
    "EXPERIMENT", "SelfDistillConfig", "load_model", "model_file", "plot_emergence", "run",
    "shot_agreement",
]  # fmt: skip

ARMS = ("hard", "distill")
#: the arms with ``control=true``: the loop without its soft term as well
CONTROL_ARMS = ("hard", "distill", "control")


def _default_distill() -> DistillConfig:
    return DistillConfig(
        detectors=("frobenius", "adaptive", "l1", "quantum", "quantum_shots", "quantum_aer"),
        trigger=("frobenius",),
    )


@dataclass(frozen=True)
class SelfDistillConfig(KleeneConfig):
    """Config of ``qsem run self-distill``: the Kleene keys, the seeds, the loop (``distill.*``)."""

    label_fraction: float = 0.1
    epochs: int = 12
    #: seeds, each training both arms (hard and distill); seeds are seed, seed+1, ...
    n_seeds: int = 5
    #: training queries in the fixed probe batch
    probe_size: int = 64
    #: seeds (the first ones) whose shot estimates also run on Aer (detector quantum_aer)
    aer_seeds: int = 1
    #: write models/seed-S-ARM.pt (slice count and state_dict of each trained model)
    save_models: bool = False
    #: draw emergence.png (off for sweeps that read only the accuracies: it costs ~2 s)
    figure: bool = True
    #: also train the control arm: the loop with w_soft = 0, everything else equal
    control: bool = False
    distill: DistillConfig = field(default_factory=_default_distill)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, low in (("n_seeds", 1), ("probe_size", 1), ("aer_seeds", 0)):
            check_int(key, getattr(self, key), low, config=True)


def model_file(seed: int, arm: str) -> str:
    """Where ``save_models`` puts the model of (``seed``, ``arm``), inside the run directory."""
    return f"models/seed-{seed}-{arm}.pt"


def load_model(path: str | Path, cfg: SelfDistillConfig) -> SemanticModel:
    """A model written by ``save_models`` (its slices grown to the stored count).

    >>> model = load_model(run_dir / model_file(0, "distill"), cfg)  # doctest: +SKIP
    """
    stored = torch.load(path, map_location="cpu", weights_only=True)
    model = SemanticModel(model_config(cfg, n_slices=int(stored["slices"])))
    model.load_state_dict(stored["model"])
    return model


def train_arm(
    cfg: SelfDistillConfig, seed: int, arm: str, ctx: NestedContext, data: Any
) -> dict[str, Any]:
    """Train one (seed, arm); its test accuracy, events and slices."""
    train, test = data
    scfg = replace(cfg, seed=seed)
    torch.manual_seed(seed)
    model = SemanticModel(model_config(cfg))
    loop = None
    if arm in ("distill", "control"):
        probe = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        dcfg = cfg.distill if arm == "distill" else replace(cfg.distill, w_soft=0.0)
        if seed - cfg.seed >= cfg.aer_seeds and "quantum_aer" in dcfg.detectors:
            dcfg = replace(dcfg, detectors=tuple(d for d in dcfg.detectors if d != "quantum_aer"))
        loop = SelfDistiller(
            model, dcfg, probe_tokens=train.tokens[probe[: cfg.probe_size]],
            correction=(train.tokens, train.labels), log=lambda s, r: ctx.log(s, **r),
            snapshot_dir=ctx.path(f"snapshots/seed-{seed}"), seed=seed,
        )  # fmt: skip
    tick = time.perf_counter()
    seconds, steps = fit(scfg, model, train, test, ctx, loop=loop)
    if cfg.save_models:
        buf = io.BytesIO()
        torch.save({"slices": model.emergence.n_slices, "model": model.state_dict()}, buf)
        target = ctx.path(model_file(seed, arm))
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, buf.getvalue())
    ev = evaluate(model, test)
    out: dict[str, Any] = {
        "seed": seed, "arm": arm, "test_accuracy": ev["accuracy"], "test_nll": ev["nll"],
        "train_seconds": round(seconds, 3), "wall_seconds": round(time.perf_counter() - tick, 3),
        "optimizer_steps": steps, "slices": model.emergence.n_slices,
    }  # fmt: skip
    if loop is not None:
        out["events"] = loop.events
        out["correction_steps"] = loop.c.correction_steps
    return out


def _summary(done: list[dict[str, Any]], cfg: SelfDistillConfig) -> dict[str, Any]:
    by = {(r["seed"], r["arm"]): r for r in done}
    seeds = sorted({r["seed"] for r in done})
    arms = CONTROL_ARMS if cfg.control else ARMS
    acc = {arm: [by[s, arm]["test_accuracy"] for s in seeds] for arm in arms}
    detectors = list(cfg.distill.detectors)
    events = {d: {str(s): [e["step"] for e in by[s, "distill"]["events"] if e["detector"] == d]
                  for s in seeds} for d in detectors}  # fmt: skip
    return {
        "seeds": seeds,
        "accuracy": {
            arm: {
                "per_seed": acc[arm],
                "mean": statistics.fmean(acc[arm]),
                "std": statistics.stdev(acc[arm]) if len(seeds) > 1 else 0.0,
            }
            for arm in arms
        },
        "paired": paired_tests(acc["distill"], acc["hard"]),
        "paired_control": paired_tests(acc["distill"], acc["control"]) if cfg.control else None,
        "nll": {arm: [by[s, arm]["test_nll"] for s in seeds] for arm in arms},
        "paired_nll": paired_tests(
            [by[s, "distill"]["test_nll"] for s in seeds],
            [by[s, "hard"]["test_nll"] for s in seeds],
        ),
        "events": events,
        "n_events": {d: sum(len(v) for v in events[d].values()) for d in detectors},
        "slices": {str(s): by[s, "distill"]["slices"] for s in seeds},
        "slices_appended": {
            str(s): [e["step"] for e in by[s, "distill"]["events"] if e["appended"]] for s in seeds
        },
    }


def shot_agreement(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Shot estimates of the quantum distance against the exact one, over every probe.

    Per shot kind: the probes compared, the fraction whose interval covers the
    exact distance of the same queries (Aer estimates the first
    ``distill.aer_queries`` probe queries only), and the mean absolute difference.
    """
    probes = [r for r in records if r.get("kind") == "probe" and "q_distance" in r]
    out: dict[str, Any] = {}
    for kind, key in SHOT_KEYS.items():
        rows = [r for r in probes if r.get(key) is not None]
        if not rows:
            continue
        exact = [r.get(key + "_exact", r["q_distance"]) for r in rows]
        cover = [r[key + "_low"] <= e <= r[key + "_high"] for r, e in zip(rows, exact, strict=True)]
        out[kind] = {
            "probes": len(rows),
            "coverage": sum(cover) / len(rows),
            "mean_abs_diff": sum(abs(r[key] - e) for r, e in zip(rows, exact, strict=True))
            / len(rows),
        }
    return out


def plot_emergence(records: list[dict[str, Any]], seed: int, summary: Mapping[str, Any]) -> Any:
    """Δφ, E_pot (and its terms), the quantum distances and every detector's events (seed
    ``seed``'s distill run; vertical lines: slices appended), and the paired accuracies."""
    from matplotlib.figure import Figure

    mine = [r for r in records if r.get("arm") == "distill" and r.get("seed") == seed]
    probes = [r for r in mine if r.get("kind") == "probe" and "dphi_fro" in r]
    events = [r for r in mine if r.get("kind") == "event"]
    steps = [r["step"] for r in probes]
    fig = Figure(figsize=(10, 10))
    ax_phi, ax_epot, ax_q, ax_ev, ax_acc = fig.subplots(
        5, 1, gridspec_kw={"height_ratios": [1, 1, 1, 0.7, 0.9]}
    )
    ax_phi.plot(steps, [r["dphi_fro"] for r in probes], lw=0.9, label="Δφ (Frobenius)")
    ax_phi.set(ylabel="Δφ", yscale="log", title=f"probe signals, seed {seed} (self-distill)")
    ax_epot.plot(steps, [r["e_pot"] for r in probes], lw=1.2, color="#d95f02", label="E_pot")
    for key, label in (("epot_e_norm", "α1·E_norm"), ("epot_theta", "α2·θ"),
                       ("epot_nci", "α3·NCI_avg"), ("epot_v_t", "α4·V_T")):  # fmt: skip
        ax_epot.plot(steps, [r[key] for r in probes], lw=0.6, ls="--", label=label)
    ax_epot.set(ylabel="E_pot and terms")
    curves = (("q_distance", "1 − norm. overlap (exact)"),
              ("q_distance_shots", "shots, torch"), ("q_distance_aer", "shots, Aer"))  # fmt: skip
    for key, label in curves:
        pts = [(r["step"], r[key]) for r in probes if r.get(key) is not None]
        if pts:
            ax_q.plot(*zip(*pts, strict=True), lw=0.8, label=label)
    ax_q.set(ylabel="quantum distance")
    ax_q.set_yscale("symlog", linthresh=1e-4)
    names = list(summary["events"])
    for e in events:
        y = names.index(e["detector"]) if e["detector"] in names else -1
        big = e["appended"]
        ax_ev.plot(e["step"], y, marker="s" if big else "|", ms=6 if big else 7, mew=1.5,
                   color="k" if big else "#1b9e77", ls="none")  # fmt: skip
    ax_ev.set(yticks=range(len(names)), yticklabels=names, ylim=(-0.6, len(names) - 0.4),
              xlabel="optimiser step", title="events (squares: a slice appended)")  # fmt: skip
    for ax in (ax_phi, ax_epot, ax_q, ax_ev):
        for e in events:
            if e["appended"] and ax is not ax_ev:
                ax.axvline(e["step"], color="k", lw=0.8, ls=":")
        ax.set_xlim(0, max(steps, default=1) + 5)
    for ax in (ax_phi, ax_epot, ax_q):
        if ax.get_legend_handles_labels()[0]:  # no quantum curves without quantum detectors
            ax.legend(fontsize=7, loc="upper right", ncol=2)
    acc = summary["accuracy"]
    for s, a, b in zip(summary["seeds"], acc["hard"]["per_seed"], acc["distill"]["per_seed"],
                       strict=True):  # fmt: skip
        ax_acc.plot([0, 1], [a, b], marker="o", color="0.4", lw=0.9)
        ax_acc.annotate(f"seed {s}", (1.03, b), fontsize=7, va="center")
    p = summary["paired"].get("wilcoxon_p")
    ptxt = "n/a" if p is None else f"{p:.3g}"
    ax_acc.set(
        xticks=[0, 1],
        xticklabels=["hard only", "self-distill"],
        xlim=(-0.3, 1.4),
        ylabel="test accuracy",
        title=f"paired over seeds (Wilcoxon p = {ptxt})",
    )
    fig.tight_layout()
    return fig


def run(cfg: SelfDistillConfig, ctx: RunContext) -> dict[str, Any]:
    tick = time.perf_counter()
    state = ctx.restore()
    done: list[dict[str, Any]] = list(state["done"]) if state is not None else []
    current = state["current"] if state is not None else None
    finished = {(r["seed"], r["arm"]) for r in done}
    seeds = [cfg.seed + i for i in range(cfg.n_seeds)]
    jobs = [(s, arm) for s in seeds for arm in (CONTROL_ARMS if cfg.control else ARMS)]
    data: dict[int, Any] = {}  # both arms of a seed train on the same data: built once
    for i, (seed, arm) in enumerate(ctx.progress(jobs, total=len(jobs), desc="self-distill")):
        if (seed, arm) in finished:
            continue
        if seed not in data:
            data = {seed: make_data(replace(cfg, seed=seed))}
        sub = NestedContext(ctx, f"{seed}/{arm}", {"seed": seed, "arm": arm}, current, done,
                          offset=i * cfg.epochs)  # fmt: skip
        result = train_arm(cfg, seed, arm, sub, data[seed])
        done.append(result)
        ctx.echo(f"{ctx.label}: seed {seed} {arm}: test accuracy {result['test_accuracy']:.3f}")
        ctx.checkpoint((i + 1) * cfg.epochs, {"done": done, "current": None}, force=True,
                       where=f"seed {seed}, arm {arm} ({i + 1} of {len(jobs)})")  # fmt: skip
    summary = _summary(done, cfg)
    summary["shot_agreement"] = shot_agreement(ctx.records())
    if cfg.figure:
        ctx.save_figure(plot_emergence(ctx.records(), seeds[0], summary), "emergence.png")
    return {
        **summary,
        "per_run": done,
        "label_fraction": cfg.label_fraction,
        "epochs": cfg.epochs,
        "wall_seconds": round(time.perf_counter() - tick, 1),
    }


EXPERIMENT = Experiment(
    name="self-distill",
    description="self-distillation vs hard labels only on Kleene queries at a small label budget",
    defaults=SelfDistillConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "seeds",
        "accuracy",
        "paired",
        "paired_control",
        "nll",
        "paired_nll",
        "events",
        "n_events",
        "slices",
        "slices_appended",
        "shot_agreement",
        "per_run",
        "label_fraction",
        "epochs",
        "wall_seconds",
    ),
)
