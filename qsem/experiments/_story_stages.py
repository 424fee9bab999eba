"""The typed results the stages of ``qsem run story`` hand on, one dataclass per stage.

Each stage runs an experiment whose ``results.json`` is a dict; the stage parses it
once (``from_results``) into the fields the rest of the story reads, so the
summary lines, tables and figures take attributes, not string keys. The
experiment's dict rides along unchanged as ``results`` (it is what the
checkpoint stores and what ``results["stages"]`` of the story holds). Rows that
go into the story's tables as they are (a user's row, a disagreement, a row of
the edge table) stay flat dicts: they are table rows, not fields.

>>> s = Spread.of({"mean": 0.5, "std": 0.25, "per_seed": [0.25, 0.75]})
>>> s.mean, s.per_seed
(0.5, (0.25, 0.75))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DistillRun", "DistillStage", "EdgeRow", "HeadSummary", "HeadsStage", "Paired",
    "PersonaliseStage", "ShotAgreement", "Spread",
]  # fmt: skip


@dataclass(frozen=True)
class Spread:
    """Mean and standard deviation over seeds (and the per-seed values where given)."""

    mean: float
    std: float
    per_seed: tuple[float, ...] = ()

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Spread:
        return cls(d["mean"], d["std"], tuple(d.get("per_seed", ())))


@dataclass(frozen=True)
class Paired:
    """A paired comparison over seeds: mean difference, t-test and Wilcoxon p-values
    (``None`` where the test is undefined)."""

    mean_diff: float
    ttest_p: float | None
    wilcoxon_p: float | None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Paired:
        return cls(d["mean_diff"], d.get("ttest_p"), d.get("wilcoxon_p"))


@dataclass(frozen=True)
class DistillRun:
    """One training run of stage a (one seed, one arm: ``hard`` or ``distill``)."""

    seed: int
    arm: str
    test_accuracy: float
    test_nll: float
    optimizer_steps: int
    slices: int

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> DistillRun:
        return cls(d["seed"], d["arm"], d["test_accuracy"], d["test_nll"], d["optimizer_steps"],
                   d["slices"])  # fmt: skip


@dataclass(frozen=True)
class ShotAgreement:
    """How often the shot intervals of a quantum detector covered the exact distance."""

    probes: int
    coverage: float


@dataclass(frozen=True)
class DistillStage:
    """Stage a (``qsem run self-distill``): hard labels alone against self-distillation.

    ``events``: detector -> seed (as a string, as in ``results.json``) -> event steps;
    ``slices_appended``: seed -> the steps at which a slice was appended.
    """

    seeds: tuple[int, ...]
    hard: Spread
    distill: Spread
    paired: Paired
    runs: tuple[DistillRun, ...]
    events: Mapping[str, Mapping[str, list[int]]]
    slices_appended: Mapping[str, list[int]]
    shot_agreement: Mapping[str, ShotAgreement]
    results: Mapping[str, Any]

    @classmethod
    def from_results(cls, r: Mapping[str, Any]) -> DistillStage:
        shots = {k: ShotAgreement(v["probes"], v["coverage"])
                 for k, v in r.get("shot_agreement", {}).items()}  # fmt: skip
        return cls(
            tuple(r["seeds"]), Spread.of(r["accuracy"]["hard"]),
            Spread.of(r["accuracy"]["distill"]), Paired.of(r["paired"]),
            tuple(DistillRun.of(x) for x in r["per_run"]), r["events"], r["slices_appended"],
            shots, r,
        )  # fmt: skip

    def run(self, seed: int, arm: str) -> DistillRun:
        """The run of ``seed`` in ``arm``."""
        return next(x for x in self.runs if x.seed == seed and x.arm == arm)


@dataclass(frozen=True)
class HeadSummary:
    """One head of stage c over its seeds: width, parameters, test metrics, step time."""

    hidden: int
    parameters: int
    accuracy: Spread
    nll: Spread
    ece: Spread
    step_ms: Spread

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> HeadSummary:
        return cls(d["hidden"], d["parameters"], Spread.of(d["accuracy"]), Spread.of(d["nll"]),
                   Spread.of(d["ece"]), Spread.of(d["step_ms"]))  # fmt: skip


@dataclass(frozen=True)
class HeadsStage:
    """Stage c (``qsem run qutrit-vs-classical``) on its first task: the heads in order and
    the paired qutrit-vs-softmax tests of accuracy and NLL."""

    task: str
    n_seeds: int
    heads: Mapping[str, HeadSummary]
    accuracy_test: Paired
    nll_test: Paired
    results: Mapping[str, Any]

    @classmethod
    def from_results(cls, r: Mapping[str, Any]) -> HeadsStage:
        task = r["tasks"][0]
        tests = r["tests"][task]["qutrit_vs_softmax"]
        heads = {h: HeadSummary.of(s) for h, s in r["summary"][task].items()}
        return cls(task, r["n_seeds"], heads, Paired.of(tests["accuracy"]),
                   Paired.of(tests["nll"]), r)  # fmt: skip


@dataclass(frozen=True)
class EdgeRow:
    """One model of stage e's edge table (``full``, ``narrowed``, ``compressed``)."""

    model: str
    hidden: int
    slices: int
    rank: int | None
    parameters: int
    bytes: int
    latency_ms: float
    accuracy: float

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> EdgeRow:
        return cls(d["model"], d["hidden"], d["slices"], d["rank"], d["parameters"], d["bytes"],
                   d["latency_ms"], d["accuracy"])  # fmt: skip


@dataclass(frozen=True)
class PersonaliseStage:
    """Stages d and e (``qsem run personalise``): accuracies per user (personal reading,
    base model, one shared reading; ``shared_accuracy`` also has ``disputed``), the edge
    user's models; ``users`` / ``examples`` / ``edge_table`` are the table rows as written."""

    per_user_accuracy: Mapping[str, float]
    labels_per_user: Mapping[str, int]
    base_accuracy: Mapping[str, float]
    shared_accuracy: Mapping[str, float]
    edge_user: str
    edge: Mapping[str, EdgeRow]
    users: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    edge_table: list[dict[str, Any]]
    results: Mapping[str, Any]

    @classmethod
    def from_results(cls, r: Mapping[str, Any]) -> PersonaliseStage:
        return cls(
            r["per_user_accuracy"], r["labels_per_user"], r["base_accuracy"],
            r["shared_accuracy"], r["edge_user"],
            {row["model"]: EdgeRow.of(row) for row in r["edge_table"]}, r["users"],
            r["examples"], r["edge_table"], r,
        )  # fmt: skip
