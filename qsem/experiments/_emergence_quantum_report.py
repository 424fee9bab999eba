"""The table of ``qsem run emergence-quantum``."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["table"]


def table(dets: dict[str, Any], timing: list[dict[str, Any]], n_probe: int) -> str:
    """Markdown: the detector table, then the time of one step's estimate (``n_probe`` inputs)."""

    def f(v: Any, d: int = 2) -> str:
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"

    rows = [
        "| signal (per task) | shots / input | recall | false alarms / 1000 steps | "
        "median lag | p90 lag | precision | F1 | transitions | tuned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in dets.items():
        p = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["params"].items()
        )
        shots = "-" if "classical" in name else ("exact" if not d["shots"] else str(d["shots"]))
        rows.append(
            f"| {name} | {shots} | {f(d['recall'])} | {f(d['false_alarms_per_1000'], 3)} | "
            f"{f(d['median_lag'], 0)} | {f(d['p90_lag'], 0)} | {f(d['precision'])} | "
            f"{f(d['f1'])} | {d['n_transitions']} | {p or '-'} |"
        )
    rows += [
        "",
        f"One step's estimate ({n_probe} probe "
        "inputs, N shots each; median / min of the repetitions, loaded machine):",
        "",
        "| backend | sampling | N | median ms | min ms |",
        "|---|---|---|---|---|",
    ]
    for t in timing:
        rows.append(
            f"| {t['backend']} | {t['sampling']} | {t['shots']} | "
            f"{1e3 * t['median_s']:.1f} | {1e3 * t['min_s']:.1f} |"
        )
    return "\n".join(rows) + "\n"
