"""The summary, table and figure of ``qsem run narrow-semantic``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from qsem.narrow.compare import samples_table, summarise_samples

if TYPE_CHECKING:
    from .narrow_semantic import SemanticNarrowConfig

__all__ = ["METHODS", "plot_accuracy", "summarise", "table"]

#: the narrowing methods compared, in table order
METHODS = ("scratch", "distill", "group_lasso", "attribution")


def _mean_std(values: list[float]) -> list[float]:
    return [round(float(np.mean(values)), 4), round(float(np.std(values)), 4)]


def summarise(cfg: SemanticNarrowConfig, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples summary (as narrow-digits) plus mean ± std of accuracy and size per method."""
    cap = float(cfg.max_steps * cfg.batch + cfg.attribution_samples)
    summary = summarise_samples(per_seed, METHODS, cfg.sizes, cap)
    keys = ("accuracy", "accuracy_after_angle_pruning", "accuracy_outside",
            "nonzero_parameters", "angles_kept")  # fmt: skip
    summary["models"] = {
        m: {
            str(s): {k: _mean_std([r["models"][m][str(s)][k] for r in per_seed]) for k in keys}
            for s in cfg.sizes
        }
        for m in METHODS
    }
    summary["teacher"] = {
        k: _mean_std([r["teacher"][k] for r in per_seed])
        for k in ("parameters", "accuracy_inside", "accuracy_outside", "accuracy_all")
    }
    return summary


def plot_accuracy(cfg: SemanticNarrowConfig, summary: dict[str, Any]) -> Any:
    """Sub-domain and outside accuracy (mean ± std over seeds) against hidden neurons."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("accuracy", f"depth <= {cfg.narrow_depth} (the sub-domain)"),
              ("accuracy_outside", f"depth > {cfg.narrow_depth} (outside)"))  # fmt: skip
    teacher = summary["teacher"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for m in METHODS:
            rows = [summary["models"][m][str(s)][key] for s in cfg.sizes]
            ax.errorbar(list(cfg.sizes), [r[0] for r in rows], yerr=[r[1] for r in rows],
                        marker="o", capsize=3, label=m.replace("_", " "))  # fmt: skip
        ref = teacher["accuracy_inside" if key == "accuracy" else "accuracy_outside"][0]
        ax.axhline(ref, color="0.4", ls="--", lw=0.8, label=f"teacher ({cfg.teacher_hidden})")
        ax.set(xscale="log", xlabel="hidden neurons", title=title, ylim=(0.3, 1.02))
        ax.minorticks_off()
        ax.set_xticks(list(cfg.sizes), [str(s) for s in cfg.sizes])
    axes[0].axhline(cfg.target_accuracy, color="0.6", ls=":", lw=0.8)
    axes[0].set_ylabel("test accuracy (unseen knowledge bases)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def table(cfg: SemanticNarrowConfig, summary: dict[str, Any]) -> str:
    lines = [
        "| hidden | method | sub-domain acc | after angle pruning | outside acc | nonzero params "
        "| angles kept | median samples to target (seeds) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in cfg.sizes:
        for m in METHODS:
            r = summary["models"][m][str(s)]
            med = summary["median_samples"][m][str(s)]
            n = summary["seeds_reached"][m][str(s)]

            def pm(key: str, digits: int = 3, row: dict[str, Any] = r) -> str:
                mean, std = row[key]
                return f"{mean:.{digits}f} ± {std:.{digits}f}"

            lines.append(
                f"| {s} | {m.replace('_', ' ')} | {pm('accuracy')} | "
                f"{pm('accuracy_after_angle_pruning')} | {pm('accuracy_outside')} | "
                f"{pm('nonzero_parameters', 0)} | {pm('angles_kept', 1)} | "
                f"{med:.0f} ({n}/{cfg.seeds}) |"
            )
    t = summary["teacher"]
    lines += [
        "",
        f"Broad teacher: {cfg.teacher_hidden} hidden neurons, {t['parameters'][0]:.0f} "
        f"parameters, sub-domain accuracy {t['accuracy_inside'][0]:.3f}, outside "
        f"{t['accuracy_outside'][0]:.3f} (mean over {cfg.seeds} seeds). Sub-domain: queries "
        f"of depth <= {cfg.narrow_depth}; target {cfg.target_accuracy}.",
        "",
        samples_table(summary, METHODS, cfg.sizes, cfg.seeds),
    ]
    return "\n".join(lines)
