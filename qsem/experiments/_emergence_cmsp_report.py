"""The table and the figure of ``qsem run emergence-cmsp``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["plot_detections", "table"]

ORDER = ("frobenius", "adaptive", "l1", "bocpd", "pelt", "binseg", "zero")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(out: dict[str, Any], horizon: int) -> str:
    """Markdown: one row per detector (MLP signal, then the hybrid rows), and E_pot."""
    rows = [
        "| model / signal | detector | recall | false alarms / 1000 steps | median lag | "
        "p90 lag | precision | F1 | tuned on tune seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dets = out["detectors"]
    names = [n for n in ORDER if n in dets] + [n for n in dets if n not in ORDER]
    for name in names:
        d = dets[name]
        sig = "MLP, EMA of outputs (L1)" if name == "l1" else f"MLP, {out['signal']} Δφ"
        if "literal" in name:
            sig = "MLP, literal Δφ"
        rows.append(_row(sig, name.replace(" (literal Δφ)", ""), d))
    for name, d in out["hybrid"].items():
        rows.append(_row("hybrid (QuantumLayer)", name, d))
    ep = out["epot_auroc"]
    rows += [
        "",
        f"E_pot AUROC (a transition starts within the next {horizon} steps; trailing window "
        f"{ep['window']}, chosen on the tuning seeds): "
        + ", ".join(f"{k} {_fmt(ep[k], 3)}" for k in ("mlp", "hybrid") if k in ep)
        + "; on the steps after the first "
        + f"{horizon} only: "
        + ", ".join(
            f"{k} {_fmt(ep[f'{k}_after_horizon'], 3)} ({ep[f'{k}_positives_after_horizon']} "
            "positive steps)"
            for k in ("mlp", "hybrid")
            if f"{k}_after_horizon" in ep
        )
        + (
            f"; hybrid without the Bures term {_fmt(ep['hybrid_no_bures'], 3)}"
            if "hybrid_no_bures" in ep
            else ""
        ),
    ]
    return "\n".join(rows) + "\n"


def _row(sig: str, name: str, d: dict[str, Any]) -> str:
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["params"].items()
    )
    return (
        f"| {sig} | {name} | {_fmt(d['recall'])} | {_fmt(d['false_alarms_per_1000'])} | "
        f"{_fmt(d['median_lag'], 0)} | {_fmt(d['p90_lag'], 0)} | {_fmt(d['precision'])} | "
        f"{_fmt(d['f1'])} | {params or '-'} |"
    )


def plot_detections(
    res: dict[str, Any],
    truths: list[dict[str, Any]],
    out: dict[str, Any],
    cfg: Any,
    members: tuple[int, ...] = (0, 1),
    task_names: list[str] | None = None,
) -> Any:
    """Per-task losses with the true transitions, the signal, and each detector's events.

    ``task_names``: the legend of the loss curves (default: atoms, then the composite).
    """
    from matplotlib.figure import Figure

    losses = np.asarray(res["losses"])
    signal = np.asarray(res["signals"][out["signal"]])
    literal = np.asarray(res["signals"]["literal"])
    members = tuple(m for m in members if m < losses.shape[1])
    dets = out["detectors"]
    names = [n for n in ORDER if n in dets] + [n for n in dets if n not in ORDER]
    fig = Figure(figsize=(6.5 * len(members), 8.5))
    axes = fig.subplots(
        3, len(members), sharex=True, squeeze=False, gridspec_kw={"height_ratios": [2.2, 1.6, 1.6]}
    )
    steps = np.arange(losses.shape[0])
    if task_names is None:
        task_names = [f"atom {i}" for i in range(losses.shape[2] - 1)] + ["composite"]
    for col, e in enumerate(members):
        ax = axes[0, col]
        for t in range(losses.shape[2]):
            ax.plot(steps, losses[:, e, t], lw=0.8, label=task_names[t])
        for s, end in zip(truths[e]["starts"], truths[e]["ends"], strict=True):
            ax.axvspan(s, end, color="0.85", zorder=0)
            ax.axvline(s, color="k", lw=1.0, ls="--")
        ax.axhline(cfg.high_bits, color="0.5", lw=0.6, ls=":")
        ax.axhline(cfg.low_bits, color="0.5", lw=0.6, ls=":")
        ax.set(
            title=f"seed {cfg.seed + e}: task losses, true transitions (dashed: start)",
            ylabel="loss (bits)",
        )
        if col == 0:
            ax.legend(fontsize=7, loc="upper right")
        ax = axes[1, col]
        ax.plot(steps[1:], literal[1:, e], lw=0.3, color="0.6", label="literal Δφ")
        ax.plot(steps[1:], signal[1:, e], lw=0.9, color="C0", label=f"{out['signal']} Δφ")
        ax.set(yscale="log", ylabel="Δφ (probe batch)")
        for s in truths[e]["starts"]:
            ax.axvline(s, color="k", lw=1.0, ls="--")
        if col == 0:
            ax.legend(fontsize=7, loc="upper right")
        ax = axes[2, col]
        for i, name in enumerate(names):
            ev = dets[name]["per_run"][e]["events"]
            ax.scatter(ev, [i] * len(ev), marker="|", s=120, color=f"C{i % 10}")
        for s in truths[e]["starts"]:
            ax.axvspan(s - cfg.before, s + cfg.max_lag, color="C2", alpha=0.15, zorder=0)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set(
            xlabel="step",
            ylim=(-0.7, len(names) - 0.3),
            title="detector events (green: scoring window)",
        )
    fig.tight_layout()
    return fig
