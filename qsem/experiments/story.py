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
d. **personalisation** and e. **an edge model**, one stage: ``qsem run
   personalise`` (:func:`qsem.experiments.personalise.run`) on stage a's
   self-distilled model of the first seed (loaded from ``models/``, not changed):
   two simulated users label queries of the knowledge bases it was tested on
   differently — open world (unknown stays ``|U>``) and closed world (unknown
   means ``|F>``), ``labels_per_user`` labels each; per-user readings (slice
   weights and readout calibration; histories in ``history.sqlite``) against the
   model as it is and one shared reading fitted on both users' labels; then the
   ``edge_user``'s reading narrowed and compressed (:func:`qsem.edge.edge_model`):
   parameters, bytes on disk, median single-thread latency per query and
   accuracy, against the full model. That experiment's checkpoints (after the
   personal readings, after the edge model) nest inside this run's.

Stages d and e train with ``self_distill.threads`` torch threads (1: the run is
single-threaded, so its CPU time is about its wall time on an idle machine).

Results: ``results["summary"]`` (the five headline lines, printed at the end),
the tables ``distill_per_seed``, ``emergence_events``, ``head_comparison``,
``personalisation``, ``disagreements``, ``edge_models``, ``stage_seconds``
(lists of flat dicts), each stage's full results in ``stages[NAME]``, and the
figures ``story.png`` (one panel per stage), ``emergence.png``,
``qutrit_vs_classical.png`` and ``personalise.png``. Checkpoints after every epoch
of stage a, after every stage and inside stage d/e: ``--resume`` continues after
the last of them (a stage cut short starts again from its last checkpoint).

Significance: a difference is called significant when the paired t-test over
seeds gives p < 0.05 (both the t-test and the Wilcoxon signed-rank p-values are
printed; with n ≤ 5 seeds Wilcoxon's two-sided p cannot fall below 2/2^n).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar

from qsem.edge import WORLDS, EdgeConfig, PersonalConfig
from qsem.emergence import score_events
from qsem.report.collect import COLUMNS_KEY
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.runner.nested import NestedContext

from . import personalise, qutrit_vs_classical, self_distill
from ._story_plot import plot_story
from ._story_report import (
    COLUMNS,
    distill_line,
    distill_table,
    edge_line,
    emergence_line,
    heads_line,
    heads_table,
    personalise_line,
    personalise_table,
)
from ._story_stages import DistillStage, HeadsStage, PersonaliseStage
from .kleene import KleeneConfig
from .personalise import PersonaliseConfig
from .qutrit_vs_classical import QvCConfig
from .self_distill import SelfDistillConfig

__all__ = [
    "EXPERIMENT", "STAGES", "DistillStage", "HeadsStage", "PersonaliseStage", "StageOutcome",
    "StoryConfig", "StoryOutcome", "emergence_agreement", "run",
]  # fmt: skip

#: parent steps reserved for one stage (stage i's checkpoints are at i · STAGE_SPAN + step)
STAGE_SPAN = 1_000_000


def _distill_defaults() -> SelfDistillConfig:
    return SelfDistillConfig(n_seeds=3, save_models=True)


def _heads_defaults() -> QvCConfig:
    return QvCConfig(tasks="kleene", heads="softmax,qutrit", n_seeds=10)


@dataclass(frozen=True)
class StoryConfig:
    """Config of ``qsem run story``: one nested config per stage; every seed follows ``seed``."""

    #: the random seed of every stage (the stages' own seed keys must stay 0)
    seed: int = 0
    #: stages a and b: the config of ``qsem run self-distill`` (its seed follows ``seed``)
    self_distill: SelfDistillConfig = field(default_factory=_distill_defaults)
    #: stage c: the config of ``qsem run qutrit-vs-classical`` (its seed follows ``seed``)
    heads: QvCConfig = field(default_factory=_heads_defaults)
    #: stage d: labels each simulated user gives (one open-world, one closed-world user)
    labels_per_user: int = 50
    #: stage d: how each user's personal reading is fitted
    personal: PersonalConfig = field(default_factory=PersonalConfig)
    #: stage e: the world (open / closed) of the user whose model is narrowed and compressed
    edge_user: str = "closed"
    #: stage e: how that user's edge model is narrowed and compressed
    edge: EdgeConfig = field(default_factory=EdgeConfig)

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
        if not self.self_distill.save_models:
            raise ConfigError(
                "config key 'self_distill.save_models': stages d and e personalise the model "
                "of stage a, so it must be true"
            )
        if self.labels_per_user < 1:
            raise ConfigError(
                f"config key 'labels_per_user': must be >= 1, got {self.labels_per_user}"
            )
        if self.edge_user not in WORLDS:
            raise ConfigError(f"config key 'edge_user': one of {WORLDS}, got {self.edge_user!r}")
        if self.edge.hidden > self.self_distill.hidden:
            raise ConfigError(
                f"config key 'edge.hidden': {self.edge.hidden} > the model's "
                f"{self.self_distill.hidden} hidden neurons (self_distill.hidden)"
            )


# --------------------------------------------------------------------------
# the stages
# --------------------------------------------------------------------------


def _distill(cfg: StoryConfig, ctx: RunContext) -> DistillStage:
    sd = replace(cfg.self_distill, seed=cfg.seed)
    return DistillStage.from_results(dict(self_distill.EXPERIMENT(sd, ctx)))


def _heads(cfg: StoryConfig, ctx: RunContext) -> HeadsStage:
    heads = replace(cfg.heads, seed=cfg.seed)
    return HeadsStage.from_results(dict(qutrit_vs_classical.EXPERIMENT(heads, ctx)))


def _personalise(cfg: StoryConfig, ctx: RunContext) -> PersonaliseStage:
    """``qsem run personalise`` on stage a's self-distilled model of the first seed: its
    users label queries of the knowledge bases that model was tested on."""
    sd = replace(cfg.self_distill, seed=cfg.seed)
    model = self_distill.load_model(ctx.path(self_distill.model_file(cfg.seed, "distill")), sd)
    task = {f.name: getattr(sd, f.name) for f in fields(KleeneConfig)}
    pcfg = PersonaliseConfig(
        **{**task, "n_slices": model.emergence.n_slices}, labels_per_user=cfg.labels_per_user,
        edge_user=cfg.edge_user, personal=cfg.personal, edge=cfg.edge,
    )  # fmt: skip
    return PersonaliseStage.from_results(dict(personalise.EXPERIMENT(pcfg, ctx, model=model)))


#: (name, what it does) of each stage, in order; the names key ``results["stages"]``.
STAGES: tuple[tuple[str, Callable[[StoryConfig, RunContext], Any]], ...] = (
    ("self_distill", _distill),
    ("heads", _heads),
    ("personalise", _personalise),
)

#: stage name -> how its experiment's results.json becomes the stage's typed results
_PARSE: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "self_distill": DistillStage.from_results,
    "heads": HeadsStage.from_results,
    "personalise": PersonaliseStage.from_results,
}

R = TypeVar("R", DistillStage, HeadsStage, PersonaliseStage)


@dataclass(frozen=True)
class StageOutcome(Generic[R]):
    """What one finished stage hands on: its typed results and how long it took.

    ``result.results`` is the ``results.json`` dict of the experiment that ran the
    stage; :meth:`as_state` / :meth:`from_state` give the plain data a checkpoint holds.
    """

    result: R
    seconds: float
    cpu_seconds: float

    def as_state(self) -> dict[str, Any]:
        return {"results": dict(self.result.results), "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds}  # fmt: skip

    @classmethod
    def from_state(cls, name: str, state: Mapping[str, Any]) -> StageOutcome[Any]:
        """The outcome of stage ``name`` from :meth:`as_state`'s data (a checkpoint's)."""
        result = _PARSE[name](dict(state["results"]))
        return StageOutcome(result, float(state["seconds"]), float(state["cpu_seconds"]))


@dataclass(frozen=True)
class StoryOutcome:
    """The finished stages, one typed field each, as :func:`run` hands them to its summary."""

    self_distill: StageOutcome[DistillStage]
    heads: StageOutcome[HeadsStage]
    personalise: StageOutcome[PersonaliseStage]

    @classmethod
    def from_stages(cls, done: Mapping[str, StageOutcome[Any]]) -> StoryOutcome:
        return cls(**{name: done[name] for name, _ in STAGES})

    def stage(self, name: str) -> StageOutcome[Any]:
        """The outcome of stage ``name`` (one of :data:`STAGES`)."""
        outcome: StageOutcome[Any] = getattr(self, name)
        return outcome


def emergence_agreement(
    distill: DistillStage, probe_every: int, aer_seeds: int
) -> list[dict[str, Any]]:
    """Per detector: its events, and how they line up with the Frobenius (Δφ) detector's.

    With the Frobenius events of each seed as reference and a window of one probe
    either side, :func:`qsem.emergence.score_events` matches events one to one;
    the matched pairs, pooled over the seeds the detector ran on (``quantum_aer``:
    the first ``aer_seeds``), give ``frobenius_found`` (pairs / Frobenius events)
    and ``near_frobenius`` (pairs / this detector's events), ``None`` when the
    denominator is 0; ``steps_first_seed``: the steps of its events in the first seed.
    """
    steps = {str(r.seed): r.optimizer_steps for r in distill.runs if r.arm == "distill"}
    reference = distill.events["frobenius"]
    rows = []
    for name, per_seed in distill.events.items():
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
        listed = " ".join(str(x) for x in per_seed[seeds[0]]) if seeds else ""
        rows.append({
            "detector": name,
            "seeds": len(seeds),
            "events": n_ev,
            "frobenius_found": pairs / n_ref if n_ref else None,
            "near_frobenius": pairs / n_ev if n_ev else None,
            "steps_first_seed": listed or "none",
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------


def _run_stages(cfg: StoryConfig, ctx: RunContext) -> StoryOutcome:
    """Run the stages not yet finished, with a checkpoint after each."""
    state = ctx.restore()
    saved = state["done"] if state else {}
    done = {n: StageOutcome.from_state(n, v) for n, v in saved.items()}
    current = state["current"] if state is not None else None
    for i, (name, stage) in enumerate(STAGES):
        if name in done:
            continue
        ctx.echo(f"{ctx.label}: stage {name} ({i + 1} of {len(STAGES)})")
        plain = {n: o.as_state() for n, o in done.items()}  # what nested checkpoints store
        sub = NestedContext(ctx, name, {"stage": name}, current, plain, offset=i * STAGE_SPAN)
        tick, cpu = time.perf_counter(), time.process_time()
        result = stage(cfg, sub)
        done[name] = StageOutcome(result, round(time.perf_counter() - tick, 1),
                                  round(time.process_time() - cpu, 1))  # fmt: skip
        plain = {n: o.as_state() for n, o in done.items()}
        ctx.checkpoint((i + 1) * STAGE_SPAN, {"done": plain, "current": None}, force=True,
                       where=f"stage {name} ({i + 1} of {len(STAGES)})")  # fmt: skip
    return StoryOutcome.from_stages(done)


def run(cfg: StoryConfig, ctx: RunContext) -> dict[str, Any]:
    """Run the stages not yet finished (checkpoint after each), then the summary and figure."""
    story = _run_stages(cfg, ctx)
    sd, heads = story.self_distill.result, story.heads.result
    users = story.personalise.result
    events = emergence_agreement(
        sd, cfg.self_distill.distill.probe_every, cfg.self_distill.aer_seeds
    )
    summary = [distill_line(sd, cfg.self_distill), emergence_line(events, sd), heads_line(heads),
               personalise_line(users), edge_line(users)]  # fmt: skip
    records = [r for r in ctx.records() if r.get("stage") == "self_distill"]
    dcfg = cfg.self_distill.distill
    thresholds = (dcfg.theta_frobenius, dcfg.theta_quantum)
    ctx.save_figure(plot_story(sd, records, heads, users, thresholds), "story.png")
    return {
        "summary": summary,
        "distill_per_seed": distill_table(sd),
        "emergence_events": events,
        "head_comparison": heads_table(heads),
        "personalisation": personalise_table(users),
        "disagreements": users.examples,
        "edge_models": users.edge_table,
        "stage_seconds": [
            {
                "stage": n,
                "seconds": story.stage(n).seconds,
                "cpu_seconds": story.stage(n).cpu_seconds,
            }
            for n, _ in STAGES
        ],
        "stages": {n: dict(story.stage(n).result.results) for n, _ in STAGES},
        COLUMNS_KEY: COLUMNS,
    }


EXPERIMENT = Experiment(
    name="story",
    description="the whole story in one run (make run): self-distillation, emergence on Ω, "
    "qutrit vs softmax",
    defaults=StoryConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "summary",
        "distill_per_seed",
        "emergence_events",
        "head_comparison",
        "personalisation",
        "disagreements",
        "edge_models",
        "stage_seconds",
        "stages",
        COLUMNS_KEY,
    ),
)
