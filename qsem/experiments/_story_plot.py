"""The overview figure of ``qsem run story`` (``story.png``): one panel per stage (a–e)."""

from __future__ import annotations

from typing import Any

from ._story_stages import DistillStage, HeadsStage, PersonaliseStage
from .personalise import plot_readings

__all__ = ["plot_story", "proportion_error", "spread"]

_HARD, _DISTILL = "#7570b3", "#1b9e77"


def proportion_error(mean: float, std: float) -> list[list[float]]:
    """``yerr`` of ``mean ± std`` for a proportion, clipped to [0, 1] (an accuracy never
    leaves it): ``[[min(std, mean)], [min(std, 1 - mean)]]``."""
    return [[max(0.0, min(std, mean))], [max(0.0, min(std, 1.0 - mean))]]


def spread(ys: list[float], gap: float) -> list[float]:
    """Label heights near sorted ``ys``, at least ``gap`` apart (pushed up where crowded,
    then the block shifted down by its mean push, so labels stay beside their points)."""
    out: list[float] = []
    for y in ys:
        out.append(max(y, out[-1] + gap) if out else y)
    shift = sum(o - y for o, y in zip(out, ys, strict=True)) / len(ys) if ys else 0.0
    return [o - shift for o in out]


_HEADS = {"softmax": "#7570b3", "qutrit": "#1b9e77"}


def _paired(ax: Any, sd: DistillStage) -> None:
    """a: test accuracy per seed, hard labels only vs self-distillation."""
    ends: dict[float, list[str]] = {}
    for s, a, b in zip(sd.seeds, sd.hard.per_seed, sd.distill.per_seed, strict=True):
        ax.plot([0, 1], [a, b], marker="o", color="0.45", lw=1)
        ends.setdefault(round(b, 3), []).append(str(s))
    for x, arm, c in ((0, sd.hard, _HARD), (1, sd.distill, _DISTILL)):
        ax.errorbar(x, arm.mean, yerr=proportion_error(arm.mean, arm.std), fmt="s", color=c,
                    ms=8, capsize=4, zorder=3)  # fmt: skip
    ax.set_ylim(top=1.0 + 0.02 * (1.0 - ax.get_ylim()[0]))
    low, high = ax.get_ylim()
    ys = spread(sorted(ends), 0.07 * (high - low))
    for y, (b, seeds) in zip(ys, sorted(ends.items()), strict=True):
        label = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}"
        ax.annotate(label, (1.0, b), xytext=(1.06, y), fontsize=7, va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.6"})  # fmt: skip
    p = sd.paired.ttest_p
    ptxt = "n/a" if p is None else f"{p:.2g}"
    ax.set(xticks=[0, 1], xticklabels=["hard labels\nonly", "self-\ndistillation"],
           xlim=(-0.35, 1.45), ylabel="test accuracy (unseen KBs)",
           title=f"a. self-distillation (paired t-test p = {ptxt})")  # fmt: skip


def _events(
    ax: Any, records: list[dict[str, Any]], sd: DistillStage, thresholds: tuple[float, float]
) -> None:
    """b: Δφ and the quantum distance of the first seed's self-distillation run, with events."""
    seed = sd.seeds[0]
    mine = [r for r in records if r.get("seed") == seed and r.get("arm") == "distill"]
    probes = [r for r in mine if r.get("kind") == "probe" and "dphi_fro" in r]
    steps = [r["step"] for r in probes]
    ax.plot(steps, [r["dphi_fro"] for r in probes], color="#d95f02", lw=1.2,
            label="Δφ (Frobenius), classical")  # fmt: skip
    ax.set(yscale="log", xlabel="optimiser step", ylabel="Δφ between probes",
           title=f"b. emergence events, seed {seed}: classical (Δφ) and quantum (Ω)")  # fmt: skip
    twin = ax.twinx()
    for key, label, ls in (("q_distance", "1 − overlap of Ω (exact)", "-"),
                           ("q_distance_shots", "1 − overlap of Ω (shots)", ":")):  # fmt: skip
        pts = [(r["step"], r[key]) for r in probes if r.get(key) is not None]
        if pts:
            twin.plot(*zip(*pts, strict=True), color="#1b9e77", lw=1, ls=ls, label=label)
    ax.axhline(thresholds[0], color="#d95f02", lw=0.8, ls="--", label="θ of the Δφ detector")
    twin.axhline(thresholds[1], color="#1b9e77", lw=0.8, ls="--",
                 label="θ of the quantum detector")  # fmt: skip
    twin.set_yscale("symlog", linthresh=1e-4)
    twin.set_ylim(bottom=0)
    twin.set_ylabel("quantum distance")
    theta = sd.events
    marks = (("frobenius", "#d95f02", 0.96, "v"), ("quantum", "#1b9e77", 0.90, "^"),
             ("quantum_shots", "#66a61e", 0.84, "^"))  # fmt: skip
    for name, colour, y, m in marks:
        for i, step in enumerate(theta.get(name, {}).get(str(seed), [])):
            ax.plot(step, y, marker=m, color=colour, ms=8, ls="none",
                    transform=ax.get_xaxis_transform(),
                    label=f"{name} event" if i == 0 else None)  # fmt: skip
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper right", ncol=2)


def _heads(ax: Any, heads: HeadsStage) -> None:
    """c: accuracy and NLL of the two heads (mean ± std over seeds)."""
    names = list(heads.heads)
    width = 0.8 / len(names)
    twin = ax.twinx()
    for i, h in enumerate(names):
        off, s = (i - (len(names) - 1) / 2) * width, heads.heads[h]
        ax.bar(0 + off, s.accuracy.mean, width,
               yerr=proportion_error(s.accuracy.mean, s.accuracy.std), capsize=3,
               color=_HEADS.get(h, "0.5"), label=f"{h} ({s.parameters} params)")  # fmt: skip
        twin.bar(1 + off, s.nll.mean, width, yerr=s.nll.std, capsize=3,
                 color=_HEADS.get(h, "0.5"))  # fmt: skip
    ax.set(xticks=[0, 1], xticklabels=["test accuracy", "test NLL (right axis)"],
           ylim=(0, 1.05), ylabel="accuracy",
           title=f"c. qutrit vs softmax head ({heads.n_seeds} seeds)")  # fmt: skip
    twin.set_ylabel("NLL")
    ax.legend(fontsize=7, loc="lower left")


def _personal(ax: Any, users: PersonaliseStage) -> None:
    """d: each user's held-out accuracy under each reading (the personalise figure's bars)."""
    plot_readings(ax, users.results)
    labels = sorted(set(users.labels_per_user.values()))
    ax.set_title(f"d. two readings, {'/'.join(map(str, labels))} labels per user")


def _edge(ax: Any, edge: PersonaliseStage) -> None:
    """e: parameters, bytes and latency of the narrowed / compressed models, relative to full."""
    rows = edge.edge
    full = rows["full"]
    keys = (("parameters", "parameters"), ("bytes", "bytes on disk"),
            ("latency_ms", "latency / query"))  # fmt: skip
    names = list(rows)
    width = 0.8 / len(names)
    colours = {"full": "0.6", "narrowed": _HARD, "compressed": _DISTILL}
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(keys))]
        ys = [getattr(rows[name], k) / getattr(full, k) for k, _ in keys]
        ax.bar(xs, ys, width, color=colours.get(name, "0.4"),
               label=f"{name}: accuracy {rows[name].accuracy:.3f}")  # fmt: skip
    ax.set(xticks=range(len(keys)), xticklabels=[t for _, t in keys], ylim=(0, 1.5),
           ylabel="relative to the full model",
           title=f"e. edge model for the {edge.edge_user} user")  # fmt: skip
    ax.legend(fontsize=7, loc="upper center", ncol=2)


def plot_story(
    sd: DistillStage,
    records: list[dict[str, Any]],
    heads: HeadsStage,
    users: PersonaliseStage,
    thresholds: tuple[float, float],
) -> Any:
    """The overview, one panel per stage: a (paired accuracies), b (Δφ, quantum distance,
    events), c (heads), d (personal readings), e (edge model).

    ``sd``, ``heads``: the results of stages a and c; ``users``: those of stages d and e
    (``qsem run personalise``);
    ``records``: stage a's metric records; ``thresholds``: θ of the Frobenius and of
    the quantum detector.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 9))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1])
    _paired(fig.add_subplot(grid[0, 0]), sd)
    _events(fig.add_subplot(grid[0, 1:]), records, sd, thresholds)
    _heads(fig.add_subplot(grid[1, 0]), heads)
    _personal(fig.add_subplot(grid[1, 1]), users)
    _edge(fig.add_subplot(grid[1, 2]), users)
    fig.suptitle("qsem run story: the hybrid φ → Ω model on three-valued Kleene queries",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return fig
