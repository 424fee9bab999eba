"""The headline lines and tables of ``qsem run story`` (one function per stage).

A difference is called significant when the paired t-test over seeds gives
``p < ALPHA``; both the t-test and the Wilcoxon signed-rank p-values are printed.
"""

from __future__ import annotations

import math
from typing import Any

from .self_distill import SelfDistillConfig

__all__ = [
    "ALPHA", "distill_line", "distill_table", "edge_line", "emergence_line", "heads_line",
    "heads_table", "personalise_line", "personalise_table",
]  # fmt: skip

#: significance level of the verdicts printed in the summary (paired t-test over seeds)
ALPHA = 0.05


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


def _acc(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def personalise_line(r: dict[str, Any]) -> str:
    """Stage d's headline: each user's personal accuracy, the unpersonalised base model's,
    and one shared reading's (per user and on the disputed queries)."""
    users = list(r["per_user_accuracy"])
    labels = sorted(set(r["labels_per_user"].values()))
    per = ", ".join(f"{u} {_acc(r['per_user_accuracy'][u])}" for u in users)
    base = " / ".join(_acc(r["base_accuracy"][u]) for u in users)
    shared = r["shared_accuracy"]
    return (
        f"d. personal readings from {'/'.join(map(str, labels))} labels per user, on their "
        f"held-out labels: {per} (base model as it is: {base}); one shared reading for both: "
        f"{' / '.join(_acc(shared[u]) for u in users)}, {_acc(shared['disputed'])} on the "
        "disputed queries"
    )


def edge_line(r: dict[str, Any]) -> str:
    """Stage e's headline: the compressed model against the full one for the edge user."""
    rows = {row["model"]: row for row in r["edge_table"]}
    full, small = rows["full"], rows["compressed"]
    return (
        f"e. edge model for the {r['edge_user']} user (narrowed to {small['hidden']} neurons, "
        f"{small['slices']} slice, rank {small['rank']}): {small['parameters']} vs "
        f"{full['parameters']} parameters, {small['bytes'] / 1024:.1f} vs "
        f"{full['bytes'] / 1024:.1f} KiB, {small['latency_ms']:.2f} vs {full['latency_ms']:.2f} ms "
        f"per query (median, 1 thread), accuracy {_acc(small['accuracy'])} vs "
        f"{_acc(full['accuracy'])}"
    )


def personalise_table(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per user: labels, accuracies (personal, base, shared, disputed), θ^(u), events."""
    keys = ("user", "world", "labels", "accuracy", "base_accuracy", "shared_accuracy",
            "disputed_accuracy", "theta", "events")  # fmt: skip
    return [{k: u[k] for k in keys} for u in r["users"]]
