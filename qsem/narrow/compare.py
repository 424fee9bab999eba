"""Samples-to-target comparisons of narrowing methods over model sizes (shared by experiments).

Each seed's record holds ``samples[method][str(size)]``: the training samples a
method needed to reach a target accuracy with a model of that many hidden
neurons, or ``None`` when it never did. Over seeds the medians are taken with
unreached runs counted at ``cap``, and methods are ranked by the mean over
sizes of ``log10`` median samples — the paper's comparison (pruning <
distillation < scratch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["median_capped", "plot_samples_pareto", "samples_table", "summarise_samples"]

#: the paper's three families: pruning (any of these methods) < distillation < scratch
PRUNING_METHODS = ("group_lasso", "attribution")
_STYLES = {"scratch": "o-", "distill": "s-", "group_lasso": "^-", "attribution": "D-"}


def median_capped(values: Sequence[int | None], cap: float) -> float:
    """Median of ``values`` with ``None`` (not reached) counted as ``cap``."""
    v = sorted(cap if x is None else float(x) for x in values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def summarise_samples(
    per_seed: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    sizes: Sequence[int],
    cap: float,
) -> dict[str, Any]:
    """Median samples per method and size, seeds that reached the target, and the ordering.

    ``ordering_pruning_lt_distill_lt_scratch`` compares the best of the pruning
    methods present with ``distill`` and ``scratch`` by mean log10 median samples.
    """
    med = {
        m: {str(s): median_capped([r["samples"][m][str(s)] for r in per_seed], cap) for s in sizes}
        for m in methods
    }
    reached = {
        m: {str(s): sum(r["samples"][m][str(s)] is not None for r in per_seed) for s in sizes}
        for m in methods
    }
    score = {
        m: round(float(np.mean([math.log10(max(med[m][str(s)], 1.0)) for s in sizes])), 4)
        for m in methods
    }
    pruning = [m for m in PRUNING_METHODS if m in methods]
    best = min(score[m] for m in pruning)
    per_size = {
        str(s): bool(
            min(med[m][str(s)] for m in pruning) < med["distill"][str(s)] < med["scratch"][str(s)]
        )
        for s in sizes
    }
    return {
        "median_samples": med,
        "seeds_reached": reached,
        "cap_for_unreached": cap,
        "mean_log10_samples": score,
        "ordering_pruning_lt_distill_lt_scratch": bool(best < score["distill"] < score["scratch"]),
        "ordering_per_size": per_size,
    }


def plot_samples_pareto(
    summary: Mapping[str, Any],
    methods: Sequence[str],
    sizes: Sequence[int],
    *,
    ylabel: str,
    title: str,
) -> Any:
    """Median samples against hidden neurons, one line per method (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    cap = summary["cap_for_unreached"]
    for m in methods:
        ys = [max(summary["median_samples"][m][str(s)], 1.0) for s in sizes]
        ax.plot(list(sizes), ys, _STYLES.get(m, "x-"), label=m.replace("_", " "))
    ax.axhline(cap, color="0.5", ls=":", lw=0.8, label="not reached (cap)")
    ax.set(xscale="log", yscale="log", xlabel="hidden neurons", ylabel=ylabel, title=title)
    ax.minorticks_off()
    ax.set_xticks(list(sizes), [str(s) for s in sizes])
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def samples_table(
    summary: Mapping[str, Any], methods: Sequence[str], sizes: Sequence[int], seeds: int
) -> str:
    """A markdown table of median samples (seeds reached) per size and method, and the verdict."""
    head = "| hidden neurons | " + " | ".join(m.replace("_", " ") for m in methods) + " |"
    lines = [head, "|---" * (len(methods) + 1) + "|"]
    for s in sizes:
        cells = []
        for m in methods:
            v = summary["median_samples"][m][str(s)]
            n = summary["seeds_reached"][m][str(s)]
            cells.append(f"{v:.0f} ({n}/{seeds})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    verdict = "holds" if summary["ordering_pruning_lt_distill_lt_scratch"] else "fails"
    lines += [
        "",
        "Median training samples to the target accuracy (seeds that reached it); unreached "
        f"counts as {summary['cap_for_unreached']:.0f}. Paper ordering pruning < distillation "
        f"< scratch: {verdict} here (mean log10 samples over sizes).",
        "",
    ]
    return "\n".join(lines)
