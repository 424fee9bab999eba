"""``qsem run story``: the whole of qsem in one run (what ``make run`` runs).

Each stage calls the experiment that owns it, with a nested context
(:class:`qsem.runner.nested.NestedContext`: its records are tagged
``stage``, its checkpoints live inside the run's one ``checkpoint.pt``), and
one run directory collects everything. The stages, in order:

a. **self-distillation** — the hybrid model φ -> Φ -> Ψ -> Λ -> Ω -> qutrit head
   (:class:`qsem.models.SemanticModel`) on open-world Kleene queries with 10 %
   of the training labels, trained by the self-distillation loop
   (:class:`qsem.distill.SelfDistiller`) against hard labels alone, paired over
   seeds (:func:`qsem.experiments.self_distill.run`, config ``self_distill.*``);
b. **emergence events** of that loop (no extra training): the classical
   Frobenius detector on Δφ against the quantum detector on Ω (``1 −`` the
   normalised overlap of successive Ω states, exactly and from
   compute–uncompute shot estimates on the torch engine and on Aer);
   agreement by :func:`qsem.emergence.score_events` with the Frobenius events as
   reference and a window of one probe either side;
c. **qutrit vs softmax head** at matched parameter budgets on the Kleene
   features (:func:`qsem.experiments.qutrit_vs_classical.run`, config
   ``heads.*``);

Results: ``results["summary"]`` (the five headline lines, printed at the end),
the tables ``distill_per_seed``, ``emergence_events``, ``head_comparison``,
``stage_seconds`` (lists of flat dicts), each stage's full results in
``stages[NAME]``, and the figures ``story.png`` (one panel per stage), ``emergence.png``
and ``qutrit_vs_classical.png``. A checkpoint after every epoch of stage a and
after every stage: ``--resume`` continues after the last finished stage.

Significance: a difference is called significant when the paired t-test over
seeds gives p < 0.05 (both the t-test and the Wilcoxon signed-rank p-values are
printed; with n ≤ 5 seeds Wilcoxon's two-sided p cannot fall below 2/2^n).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from qsem.emergence import score_events
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.runner.nested import NestedContext

from . import qutrit_vs_classical, self_distill
from ._story_plot import plot_story
from .qutrit_vs_classical import QvCConfig
from .self_distill import SelfDistillConfig

__all__ = ["EXPERIMENT", "STAGES", "StoryConfig", "emergence_agreement", "run"]

#: significance level of the verdicts printed in the summary (paired t-test over seeds)
ALPHA = 0.05
#: parent steps reserved for one stage (stage i's checkpoints are at i · STAGE_SPAN + step)
STAGE_SPAN = 1_000_000
#: the quantum detectors compared with the classical trigger in stage b
QUANTUM = ("quantum", "quantum_shots", "quantum_aer")


def _distill_defaults() -> SelfDistillConfig:
    return SelfDistillConfig(n_seeds=3, save_models=True)


def _heads_defaults() -> QvCConfig:
    return QvCConfig(tasks="kleene", heads="softmax,qutrit", n_seeds=10)


@dataclass(frozen=True)
class StoryConfig:
    """Config of ``qsem run story``: one nested config per stage; every seed follows ``seed``."""

    seed: int = 0
    #: stages a and b: the config of ``qsem run self-distill`` (its seed follows ``seed``)
    self_distill: SelfDistillConfig = field(default_factory=_distill_defaults)
    #: stage c: the config of ``qsem run qutrit-vs-classical`` (its seed follows ``seed``)
    heads: QvCConfig = field(default_factory=_heads_defaults)

    def __post_init__(self) -> None:
        for key in ("self_distill", "heads"):
            if getattr(self, key).seed != 0:
                raise ConfigError(
                    f"config key '{key}.seed': the stages follow the run's seed; "
                    "set seed=N (or --seed N) instead"
                )
        if "quantum" not in self.self_distill.distill.detectors:
            raise ConfigError(
                "config key 'self_distill.distill.detectors': the story compares the quantum "
                "detector with the classical one, so it must include 'quantum'"
            )
        if "frobenius" not in self.self_distill.distill.detectors:
            raise ConfigError(
                "config key 'self_distill.distill.detectors': the story compares the quantum "
                "detector with the classical one, so it must include 'frobenius'"
            )


# --------------------------------------------------------------------------
# the stages
# --------------------------------------------------------------------------


def _distill(cfg: StoryConfig, ctx: RunContext) -> dict[str, Any]:
    return dict(self_distill.run(replace(cfg.self_distill, seed=cfg.seed), ctx))


def _heads(cfg: StoryConfig, ctx: RunContext) -> dict[str, Any]:
    return dict(qutrit_vs_classical.run(replace(cfg.heads, seed=cfg.seed), ctx))


#: (name, what it does) of each stage, in order; the names key ``results``.
STAGES: tuple[tuple[str, Callable[[StoryConfig, RunContext], dict[str, Any]]], ...] = (
    ("self_distill", _distill),
    ("heads", _heads),
)


def emergence_agreement(
    distill: dict[str, Any], probe_every: int, aer_seeds: int
) -> list[dict[str, Any]]:
    """Per detector: its events, and how they line up with the Frobenius (Δφ) detector's.

    With the Frobenius events of each seed as reference and a window of one probe
    either side, :func:`qsem.emergence.score_events` matches events one to one;
    the matched pairs, pooled over the seeds the detector ran on (``quantum_aer``:
    the first ``aer_seeds``), give ``frobenius_found`` (pairs / Frobenius events)
    and ``near_frobenius`` (pairs / this detector's events), ``None`` when the
    denominator is 0.
    """
    steps = {str(r["seed"]): r["optimizer_steps"] for r in distill["per_run"]
             if r["arm"] == "distill"}  # fmt: skip
    reference = distill["events"]["frobenius"]
    rows = []
    for name, per_seed in distill["events"].items():
        seeds = sorted(per_seed, key=int)
        if name == "quantum_aer":
            seeds = seeds[:aer_seeds]
        pairs = n_ref = n_ev = 0
        for seed in seeds:
            events, ref = per_seed[seed], reference[seed]
            n_ref, n_ev = n_ref + len(ref), n_ev + len(events)
            if ref and events:
                s = score_events(events, ref, max(steps[seed], 1), max_lag=probe_every,
                                 before=probe_every)  # fmt: skip
                pairs += round(s["recall"] * len(ref))
        rows.append({
            "detector": name,
            "seeds": len(seeds),
            "events": n_ev,
            "frobenius_found": pairs / n_ref if n_ref else None,
            "near_frobenius": pairs / n_ev if n_ev else None,
            f"steps_seed_{seeds[0] if seeds else 0}":
                " ".join(str(x) for x in per_seed[seeds[0]]) if seeds else "",
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------
# headline lines and tables
# --------------------------------------------------------------------------


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def _verdict(test: dict[str, Any], better: str, worse: str) -> str:
    """``better`` / ``worse`` when the paired t-test gives p < ALPHA, else 'no significant
    difference'; the mean difference's sign picks between them."""
    p = test.get("ttest_p")
    if p is None or p >= ALPHA:
        return "no significant difference"
    return better if test["mean_diff"] > 0 else worse


def _pm(s: dict[str, Any]) -> str:
    return f"{s['mean']:.3f} ± {s['std']:.3f}"


def distill_line(r: dict[str, Any], cfg: SelfDistillConfig) -> str:
    """Stage a's headline: accuracies of both arms, the paired difference and its verdict."""
    acc, paired = r["accuracy"], r["paired"]
    added = ", ".join(str(len(v)) for v in r["slices_appended"].values())
    n = len(r["seeds"])
    verdict = _verdict(paired, "a significant gain", "significantly worse")
    return (
        f"a. self-distillation at {cfg.label_fraction:.0%} labels, {n} seeds: test accuracy "
        f"{_pm(acc['distill'])} vs {_pm(acc['hard'])} with hard labels alone "
        f"(Δ {paired['mean_diff']:+.3f}, t-test p = {_p(paired['ttest_p'])}, Wilcoxon p = "
        f"{_p(paired['wilcoxon_p'])}): {verdict}; slices appended per seed: {added}"
    )


def emergence_line(rows: list[dict[str, Any]], r: dict[str, Any]) -> str:
    """Stage b's headline: classical and quantum event counts, their agreement, shot coverage."""
    by = {row["detector"]: row for row in rows}
    fro, q = by["frobenius"], by["quantum"]
    found = q["frobenius_found"]
    agree = "n/a" if found is None else f"{found:.0%}"
    shots = r.get("shot_agreement", {})
    where = {"quantum_shots": "torch engine", "quantum_aer": "Aer"}
    parts = [f"{v['coverage']:.0%} of {v['probes']} ({where.get(k, k)})"
             for k, v in shots.items()]  # fmt: skip
    extra = (
        f"; shot intervals cover the exact distance at {', '.join(parts)} probes" if parts else ""
    )
    return (
        f"b. emergence events: {fro['events']} by Frobenius on Δφ, {q['events']} by the "
        f"quantum detector on Ω; {agree} of the Frobenius events have a quantum event within "
        f"one probe{extra}"
    )


def heads_line(r: dict[str, Any]) -> str:
    """Stage c's headline: accuracy and NLL of both heads at matched budgets, with verdicts."""
    task = r["tasks"][0]
    s, t = r["summary"][task], r["tests"][task]["qutrit_vs_softmax"]
    acc = _verdict(t["accuracy"], "qutrit more accurate", "softmax more accurate")
    nll = _verdict(t["nll"], "softmax lower", "qutrit lower")
    return (
        f"c. qutrit vs softmax head ({s['qutrit']['parameters']} vs {s['softmax']['parameters']} "
        f"parameters, {r['n_seeds']} seeds, {task}): accuracy {_pm(s['qutrit']['accuracy'])} vs "
        f"{_pm(s['softmax']['accuracy'])} ({acc}, t-test p = {_p(t['accuracy']['ttest_p'])}); "
        f"NLL {_pm(s['qutrit']['nll'])} vs {_pm(s['softmax']['nll'])} ({nll}, "
        f"p = {_p(t['nll']['ttest_p'])})"
    )


def distill_table(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per seed: both arms' test accuracy and NLL, the slices of the distill run."""
    by = {(x["seed"], x["arm"]): x for x in r["per_run"]}
    return [
        {"seed": s, "hard_accuracy": by[s, "hard"]["test_accuracy"],
         "distill_accuracy": by[s, "distill"]["test_accuracy"],
         "hard_nll": by[s, "hard"]["test_nll"], "distill_nll": by[s, "distill"]["test_nll"],
         "slices": by[s, "distill"]["slices"]}
        for s in r["seeds"]
    ]  # fmt: skip


def heads_table(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per head: width, parameters, accuracy / NLL / ECE (mean ± std), step time."""
    task = r["tasks"][0]
    return [
        {"head": h, "width": s["hidden"], "parameters": s["parameters"],
         "accuracy": _pm(s["accuracy"]), "nll": _pm(s["nll"]), "ece": _pm(s["ece"]),
         "step_ms": round(s["step_ms"]["mean"], 3)}
        for h, s in r["summary"][task].items()
    ]  # fmt: skip


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------


def run(cfg: StoryConfig, ctx: RunContext) -> dict[str, Any]:
    """Run the stages not yet finished (checkpoint after each), then the summary and figure."""
    state = ctx.restore()
    done: dict[str, Any] = dict(state["done"]) if state is not None else {}
    current = state["current"] if state is not None else None
    for i, (name, stage) in enumerate(STAGES):
        if name in done:
            continue
        ctx.echo(f"story: stage {name} ({i + 1} of {len(STAGES)})")
        sub = NestedContext(ctx, name, {"stage": name}, current, done, offset=i * STAGE_SPAN)
        tick, cpu = time.perf_counter(), time.process_time()
        result = stage(cfg, sub)
        done[name] = {"results": result, "seconds": round(time.perf_counter() - tick, 1),
                      "cpu_seconds": round(time.process_time() - cpu, 1)}  # fmt: skip
        ctx.checkpoint((i + 1) * STAGE_SPAN, {"done": done, "current": None}, force=True)
    sd, heads = done["self_distill"]["results"], done["heads"]["results"]
    events = emergence_agreement(
        sd, cfg.self_distill.distill.probe_every, cfg.self_distill.aer_seeds
    )
    summary = [distill_line(sd, cfg.self_distill), emergence_line(events, sd), heads_line(heads)]
    records = [r for r in ctx.records() if r.get("stage") == "self_distill"]
    dcfg = cfg.self_distill.distill
    thresholds = (dcfg.theta_frobenius, dcfg.theta_quantum)
    ctx.save_figure(plot_story(sd, records, heads, thresholds), "story.png")
    return {
        "summary": summary,
        "distill_per_seed": distill_table(sd),
        "emergence_events": events,
        "head_comparison": heads_table(heads),
        "stage_seconds": [
            {"stage": n, "seconds": done[n]["seconds"], "cpu_seconds": done[n]["cpu_seconds"]}
            for n, _ in STAGES
        ],
        "stages": {n: done[n]["results"] for n, _ in STAGES},
    }


EXPERIMENT = Experiment(
    name="story",
    description="the whole story in one run (make run): self-distillation, emergence on Ω, "
    "qutrit vs softmax",
    defaults=StoryConfig(),
    run=run,
    checkpoint_every=1,
)
