"""What a reader sees in the story's and personalise's figures (issue 21, item 14).

Each figure is drawn (Agg) and checked where a test can see it: label text renders (no
raw TeX outside ``$...$``), the legend of the readings bars lies inside its axes and
over no bar, both figures give the readings the same names and colours, error bars of an
accuracy stay within [0, 1], seed labels do not overprint, and the summary's slice
counts are the table's.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from qsem.experiments._story_plot import _paired, _personal
from qsem.experiments._story_report import distill_line, distill_table
from qsem.experiments._story_stages import DistillStage, Paired, PersonaliseStage, Spread
from qsem.experiments.personalise import READINGS, plot_personalise
from qsem.experiments.self_distill import SelfDistillConfig

USERS = ("open-world", "closed-world")


def _accuracies(value: float = 1.0) -> dict[str, Any]:
    """Readings at ``value`` for both users (1.0: the tallest bars a legend could cover)."""
    acc = {u: value for u in USERS}
    return {"base_accuracy": dict(acc), "per_user_accuracy": dict(acc),
            "shared_accuracy": {**acc, "disputed": value}}  # fmt: skip


def _personalise_figure() -> Figure:
    streams = {u: {"dphi": [0.3, 0.2, 0.5, 0.1], "theta": 0.25, "events": [3]} for u in USERS}
    fig = plot_personalise({"personal": _accuracies(), "streams": streams})
    FigureCanvasAgg(fig).draw()
    return fig


def _panel_d() -> Any:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    acc = _accuracies()
    users = PersonaliseStage(acc["per_user_accuracy"], {u: 40 for u in USERS},
                             acc["base_accuracy"], acc["shared_accuracy"], "closed", {}, [], [],
                             [], acc)  # fmt: skip
    _personal(ax, users)
    FigureCanvasAgg(fig).draw()
    return ax


def _texts(fig: Figure) -> list[str]:
    out = [fig.texts[i].get_text() for i in range(len(fig.texts))]
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def test_labels_render_no_raw_tex() -> None:
    texts = _texts(_personalise_figure())  # drawing parsed every $...$ (a bad one raises)
    for text in texts:
        outside = re.sub(r"\$[^$]*\$", "", text)
        assert not re.search(r"[_^]\{|\\[a-zA-Z]", outside), text
    assert any("$" in t and "varphi" in t for t in texts)  # the Δφ axis is typeset


@pytest.mark.parametrize("which", ["personalise figure", "story panel d"])
def test_readings_legend_inside_axes_and_over_no_bar(which: str) -> None:
    ax = _personalise_figure().axes[0] if which == "personalise figure" else _panel_d()
    legend = ax.get_legend().get_window_extent()
    box = ax.get_window_extent()
    assert box.x0 <= legend.x0 and legend.x1 <= box.x1, (legend, box)
    assert box.y0 <= legend.y0 and legend.y1 <= box.y1, (legend, box)
    bars = [p.get_window_extent() for p in ax.patches]
    assert len(bars) == len(READINGS) * len(USERS)
    assert not any(legend.overlaps(b) for b in bars)


def _legend_entries(ax: Any) -> list[tuple[str, tuple[float, ...]]]:
    legend = ax.get_legend()
    return [(t.get_text(), tuple(h.get_facecolor()))
            for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)]  # fmt: skip


def test_readings_have_the_same_names_and_colours_in_both_figures() -> None:
    assert _legend_entries(_personalise_figure().axes[0]) == _legend_entries(_panel_d())


def _sd(distill: list[float], mean: float, std: float) -> DistillStage:
    arm = Spread(mean, std, tuple(distill))
    return DistillStage(tuple(range(len(distill))), arm, arm, Paired(0.0, 0.5, None), (), {}, {},
                        {}, {})  # fmt: skip


def test_accuracy_error_bars_stay_within_0_1() -> None:
    fig = Figure()
    ax = fig.subplots()
    _paired(ax, _sd([1.0, 0.97, 0.99], mean=0.987, std=0.05))
    FigureCanvasAgg(fig).draw()
    ys = [y for c in ax.collections for seg in c.get_segments() for _, y in seg]
    assert ys and min(ys) >= 0.0 and max(ys) <= 1.0, (min(ys), max(ys))


def test_seed_labels_do_not_overprint() -> None:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    _paired(ax, _sd([0.95, 0.951, 0.953, 0.96, 0.5], mean=0.87, std=0.2))
    FigureCanvasAgg(fig).draw()
    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the text, not its leader line
    assert len(boxes) == 5  # five distinct end values, five labels
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)


def test_summary_slices_are_the_tables() -> None:
    per_run = [{"seed": s, "arm": arm, "test_accuracy": 0.8, "test_nll": 0.5, "slices": n,
                "optimizer_steps": 10}
               for s, n in ((0, 3), (1, 4), (2, 4)) for arm in ("hard", "distill")]  # fmt: skip
    r = DistillStage.from_results({
        "seeds": [0, 1, 2], "per_run": per_run, "events": {},
        "slices_appended": {"0": [10, 20], "1": [5, 9, 30], "2": [7, 8, 9]},
        "accuracy": {arm: {"mean": 0.8, "std": 0.01} for arm in ("hard", "distill")},
        "paired": {"mean_diff": 0.0, "ttest_p": 0.9, "wilcoxon_p": 1.0}})  # fmt: skip
    table = distill_table(r)
    line = distill_line(r, SelfDistillConfig())
    assert [row["slices"] for row in table] == [3, 4, 4]
    assert [row["slices_appended"] for row in table] == [2, 3, 3]
    assert "slices per seed: 3, 4, 4 (2, 3, 3 of them appended" in line
