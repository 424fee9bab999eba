"""The targets and the table of ``qsem run emergence-transfer``."""

from __future__ import annotations

import math
from typing import Any

from ._emergence_cmsp_report import ORDER, _fmt

__all__ = ["TARGETS", "table", "targets_met"]

#: the leave-one-family-out targets (issue 20)
TARGETS = {
    "recall": 0.95,
    "false_alarms_per_1000": 0.1,
    "median_lag": 150,
    "p90_lag": 400,
    "null_false_alarms_per_run": 0.1,
}


def _ok(v: Any, bound: float, above: bool) -> bool:
    if v is None or not math.isfinite(v):
        return False
    return v >= bound if above else v <= bound


def targets_met(all_: dict[str, Any] | None, null: dict[str, Any] | None) -> dict[str, bool]:
    """Each target met (True) or missed (False) by the pooled 'all' row and the null row."""
    a = all_ or {}
    out = {
        "recall": _ok(a.get("recall"), TARGETS["recall"], True),
        "false_alarms_per_1000": _ok(
            a.get("false_alarms_per_1000"), TARGETS["false_alarms_per_1000"], False
        ),
        "median_lag": _ok(a.get("median_lag"), TARGETS["median_lag"], False),
        "p90_lag": _ok(a.get("p90_lag"), TARGETS["p90_lag"], False),
    }
    if null is not None:
        out["null_false_alarms_per_run"] = _ok(
            null["false_alarms_per_run"], TARGETS["null_false_alarms_per_run"], False
        )
    return out


def table(rows: dict[str, dict[str, Any]], families: list[str], tuning: list[str]) -> str:
    """Markdown: per detector, one row per scored family and the pooled 'all' row."""
    per_task = [
        f"cusum (per-task {s}{tag})" for tag in ("", ", retire all") for s in ("entropy", "Δφ")
    ]
    order = [*per_task, "cusum", "cusum (untuned)"]
    order += [n for n in ORDER if n in rows]
    order += [n for n in rows if n not in order]
    lines = [
        f"Tuned on each of {', '.join(tuning)} (tuning seeds), scored on every other family's "
        "scored seeds; rows pool all tuning families but the scored one.",
        "",
        "| detector | scored family | recall | false alarms / 1000 steps | false alarms / run | "
        "median lag | p90 lag | F1 | transitions | targets met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for det in order:
        if det not in rows:
            continue
        r = rows[det]
        tg = r.get("targets", {})
        met = ", ".join(k for k, v in tg.items() if v) or "none"
        for fam in [*families, "all"]:
            if fam not in r:
                continue
            d = r[fam]
            lines.append(
                f"| {det} | {fam} | {_fmt(d['recall'])} | {_fmt(d['false_alarms_per_1000'])} | "
                f"{_fmt(d['false_alarms_per_run'])} | {_fmt(d['median_lag'], 0)} | "
                f"{_fmt(d['p90_lag'], 0)} | {_fmt(d['f1'])} | {d['n_transitions']} | "
                f"{met if fam == 'all' else ''} |"
            )
    return "\n".join(lines) + "\n"
