"""The headline lines and tables of ``qsem run story`` (one function per stage).

A difference is called significant when the paired t-test over seeds gives
``p < ALPHA``; both the t-test and the Wilcoxon signed-rank p-values are printed.
"""

from __future__ import annotations

import math
from typing import Any

from ._story_stages import DistillStage, HeadsStage, Paired, PersonaliseStage, Spread
from .self_distill import SelfDistillConfig

__all__ = [
    "ALPHA", "COLUMNS", "distill_line", "distill_table", "edge_line", "emergence_line",
    "heads_line", "heads_table", "personalise_line", "personalise_table",
]  # fmt: skip

#: significance level of the verdicts printed in the summary (paired t-test over seeds)
ALPHA = 0.05


def _p(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2g}"


def _verdict(test: Paired, better: str, worse: str) -> str:
    """``better`` / ``worse`` when the paired t-test gives p < ALPHA, else 'no significant
    difference'; the mean difference's sign picks between them."""
    p = test.ttest_p
    if p is None or p >= ALPHA:
        return "no significant difference"
    return better if test.mean_diff > 0 else worse


def _pm(s: Spread) -> str:
    return f"{s.mean:.3f} ± {s.std:.3f}"


def distill_line(r: DistillStage, cfg: SelfDistillConfig) -> str:
    """Stage a's headline: accuracies of both arms, the paired difference and its verdict;
    the slices per seed come from :func:`distill_table` (one source for both)."""
    paired = r.paired
    rows = distill_table(r)
    total = ", ".join(str(row["slices"]) for row in rows)
    added = ", ".join(str(row["slices_appended"]) for row in rows)
    n = len(r.seeds)
    verdict = _verdict(paired, "a significant gain", "significantly worse")
    return (
        f"a. self-distillation at {cfg.label_fraction:.0%} labels, {n} seeds: test accuracy "
        f"{_pm(r.distill)} vs {_pm(r.hard)} with hard labels alone "
        f"(Δ {paired.mean_diff:+.3f}, t-test p = {_p(paired.ttest_p)}, Wilcoxon p = "
        f"{_p(paired.wilcoxon_p)}): {verdict}; slices per seed: {total} ({added} of them "
        "appended at emergence events)"
    )


def emergence_line(rows: list[dict[str, Any]], r: DistillStage) -> str:
    """Stage b's headline: classical and quantum event counts, their agreement, shot coverage."""
    by = {row["detector"]: row for row in rows}
    fro, q = by["frobenius"], by["quantum"]
    found = q["frobenius_found"]
    agree = "n/a" if found is None else f"{found:.0%}"
    where = {"quantum_shots": "torch engine", "quantum_aer": "Aer"}
    parts = [f"{v.coverage:.0%} of {v.probes} ({where.get(k, k)})"
             for k, v in r.shot_agreement.items()]  # fmt: skip
    extra = (
        f"; shot intervals cover the exact distance at {', '.join(parts)} probes" if parts else ""
    )
    return (
        f"b. emergence events: {fro['events']} by Frobenius on Δφ, {q['events']} by the "
        f"quantum detector on Ω; {agree} of the Frobenius events have a quantum event within "
        f"one probe{extra}"
    )


def heads_line(r: HeadsStage) -> str:
    """Stage c's headline: accuracy and NLL of both heads at matched budgets, with verdicts."""
    q, s = r.heads["qutrit"], r.heads["softmax"]
    acc = _verdict(r.accuracy_test, "qutrit more accurate", "softmax more accurate")
    nll = _verdict(r.nll_test, "softmax lower", "qutrit lower")
    return (
        f"c. qutrit vs softmax head ({q.parameters} vs {s.parameters} "
        f"parameters, {r.n_seeds} seeds, {r.task}): accuracy {_pm(q.accuracy)} vs "
        f"{_pm(s.accuracy)} ({acc}, t-test p = {_p(r.accuracy_test.ttest_p)}); "
        f"NLL {_pm(q.nll)} vs {_pm(s.nll)} ({nll}, p = {_p(r.nll_test.ttest_p)})"
    )


def distill_table(r: DistillStage) -> list[dict[str, Any]]:
    """One row per seed: both arms' test accuracy and NLL, the slices of the distill run."""
    rows = []
    for s in r.seeds:
        hard, distill = r.run(s, "hard"), r.run(s, "distill")
        rows.append({"seed": s, "hard_accuracy": hard.test_accuracy,
                     "distill_accuracy": distill.test_accuracy, "hard_nll": hard.test_nll,
                     "distill_nll": distill.test_nll, "slices": distill.slices,
                     "slices_appended": len(r.slices_appended[str(s)])})  # fmt: skip
    return rows


def heads_table(r: HeadsStage) -> list[dict[str, Any]]:
    """One row per head: width, parameters, accuracy / NLL / ECE (mean ± std), step time."""
    return [
        {"head": h, "width": s.hidden, "parameters": s.parameters, "accuracy": _pm(s.accuracy),
         "nll": _pm(s.nll), "ece": _pm(s.ece), "step_ms": round(s.step_ms.mean, 3)}
        for h, s in r.heads.items()
    ]  # fmt: skip


def _acc(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def personalise_line(r: PersonaliseStage) -> str:
    """Stage d's headline: each user's personal accuracy, the unpersonalised base model's,
    and one shared reading's (per user and on the disputed queries)."""
    users = list(r.per_user_accuracy)
    labels = sorted(set(r.labels_per_user.values()))
    per = ", ".join(f"{u} {_acc(r.per_user_accuracy[u])}" for u in users)
    base = " / ".join(_acc(r.base_accuracy[u]) for u in users)
    shared = r.shared_accuracy
    return (
        f"d. personal readings from {'/'.join(map(str, labels))} labels per user, on their "
        f"held-out labels: {per} (base model as it is: {base}); one shared reading for both: "
        f"{' / '.join(_acc(shared[u]) for u in users)}, {_acc(shared['disputed'])} on the "
        "disputed queries"
    )


def edge_line(r: PersonaliseStage) -> str:
    """Stage e's headline: the compressed model against the full one for the edge user."""
    full, small = r.edge["full"], r.edge["compressed"]
    return (
        f"e. edge model for the {r.edge_user} user (narrowed to {small.hidden} neurons, "
        f"{small.slices} slice, rank {small.rank}): {small.parameters} vs "
        f"{full.parameters} parameters, {small.bytes / 1024:.1f} vs "
        f"{full.bytes / 1024:.1f} KiB, {small.latency_ms:.2f} vs {full.latency_ms:.2f} ms "
        f"per query (median, 1 thread), accuracy {_acc(small.accuracy)} vs "
        f"{_acc(full.accuracy)}"
    )


def personalise_table(r: PersonaliseStage) -> list[dict[str, Any]]:
    """One row per user: labels, accuracies (personal, base, shared, disputed), θ^(u), events."""
    keys = ("user", "world", "labels", "accuracy", "base_accuracy", "shared_accuracy",
            "disputed_accuracy", "theta", "events")  # fmt: skip
    return [{k: u[k] for k in keys} for u in r.users]


#: The meaning of every column of the story's tables (``results["columns"]``; the report
#: lists it under each table).
COLUMNS: dict[str, dict[str, str]] = {
    "distill_per_seed": {
        "seed": "the seed of both runs of this row",
        "hard_accuracy": "test accuracy on unseen knowledge bases, trained on hard labels only",
        "distill_accuracy": "test accuracy with self-distillation (same seed, same labels)",
        "hard_nll": "test negative log-likelihood (nats per query), hard labels only",
        "distill_nll": "test negative log-likelihood (nats per query), self-distillation",
        "slices": "slices of the self-distilled model at the end (the initial one included)",
        "slices_appended": "of those, the slices appended at emergence events",
    },
    "emergence_events": {
        "detector": "frobenius: Δφ between probes (classical); quantum: 1 − overlap of the "
        "Ω states (exact, torch shots, Aer shots)",
        "seeds": "seeds the detector ran on",
        "events": "events it raised, all those seeds together",
        "frobenius_found": "share of the Frobenius events with an event of this detector within "
        "one probe (recall against Frobenius)",
        "near_frobenius": "share of this detector's events within one probe of a Frobenius "
        "event (precision against Frobenius)",
        "steps_first_seed": "optimiser steps of its events in the first seed",
    },
    "head_comparison": {
        "head": "the output head: softmax over 3 classes, or a qutrit read out in |T>, |F>, |U>",
        "width": "hidden width chosen to match the parameter budget",
        "parameters": "trainable parameters of the whole model",
        "accuracy": "test accuracy, mean ± standard deviation over seeds",
        "nll": "test negative log-likelihood (nats per query), mean ± std over seeds",
        "ece": "expected calibration error (10 confidence bins), mean ± std over seeds",
        "step_ms": "mean wall time of one training step in milliseconds",
    },
    "personalisation": {
        "user": "the simulated user",
        "world": "how the user reads unknown facts: open world (U) or closed world (F)",
        "labels": "labels the user gave",
        "accuracy": "accuracy of the user's personal reading on their held-out labels",
        "base_accuracy": "accuracy of the shared model as it is on those labels",
        "shared_accuracy": "accuracy of one reading fitted to both users' labels",
        "disputed_accuracy": "personal accuracy on the held-out queries the two worlds answer "
        "differently",
        "theta": "θ^(u): the event threshold of the user's Δφ stream (‖φ_t − φ_(t−1)‖₁ on "
        "the probe queries, one value per label)",
        "events": "events in that stream: labels at which Δφ crossed θ^(u)",
    },
    "disagreements": {
        "query": "a held-out query on which the users disagree",
        "open-world answer": "the answer (T, F or U) of the open-world user's personal reading",
        "open-world label": "the open-world user's own label",
        "closed-world answer": "the answer of the closed-world user's personal reading",
        "closed-world label": "the closed-world user's own label",
        "shared answer": "the one shared reading's answer",
    },
    "edge_models": {
        "model": "full: the user's model; narrowed: fewer neurons; compressed: narrowed, top "
        "slices only and a low-rank output layer",
        "hidden": "neurons of the composer's hidden layer",
        "slices": "slices of the emergence layer kept",
        "rank": "rank of the truncated-SVD output layer (none: full rank)",
        "parameters": "parameters, personal ones included",
        "bytes": "bytes of the saved model and personal state",
        "latency_ms": "median single-thread CPU time of one query, milliseconds",
        "accuracy": "accuracy on the edge user's held-out labels",
        "answer_tv_to_full": "mean total-variation distance of this model's answer distribution "
        "to the full model's (0: the same answers, 1: disjoint)",
    },
    "stage_seconds": {
        "stage": "the stage of the story",
        "seconds": "wall time of the stage",
        "cpu_seconds": "CPU time of the stage (all threads)",
    },
}
