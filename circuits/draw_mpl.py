"""Matplotlib drawing of a circuit: one horizontal line per wire, labelled with its
dimension (``w0 · d=3``), operations in the columns of :func:`qsem.circuits.draw.layers`.

Gates are white boxes with the text drawing's label, channels shaded boxes, controls
dots (an open number beside the dot when the control value is not 1), and a vertical
line joins the wires of a multi-wire operation. The figure is a plain
``matplotlib.figure.Figure`` (no pyplot state), so it works under any backend,
Agg included.

>>> from qsem.circuits import Circuit, TRY, TAdd
>>> fig = draw_mpl(Circuit([3, 2]).add(TRY(0.3, wires=0), TAdd(wires=[0, 1])))
>>> type(fig).__name__
'Figure'
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from .draw import cells, layers
from .errors import arg_error
from .operations import Channel

if TYPE_CHECKING:
    from .circuit import Circuit

#: width of one label character and the minimum box width, in column units
_CHAR = 0.11
_MIN_BOX = 0.7


def _require_matplotlib() -> Any:
    from matplotlib.figure import Figure

    return Figure


def draw_mpl(circuit: Circuit, *, scale: float = 1.0) -> Any:
    """A ``matplotlib.figure.Figure`` of ``circuit`` (``scale`` multiplies its size)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise arg_error("scale", f"must be a positive number, got {scale!r}")
    from matplotlib.patches import Circle, Rectangle

    figure_cls = _require_matplotlib()
    n = circuit.num_wires
    cols = layers(circuit)
    widths = []
    for ops in cols:
        labels = [s for op in ops for s in cells(op).values()]
        widths.append(max([_MIN_BOX] + [_CHAR * len(s) + 0.25 for s in labels]))
    x0 = 1.2  # room for the wire labels
    xs, x = [], x0
    for wd in widths:
        xs.append(x + wd / 2 + 0.15)
        x += wd + 0.3
    total = x + 0.3
    fig = figure_cls(figsize=(scale * max(2.5, 0.9 * total), scale * (0.6 * n + 0.4)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, total)
    ax.set_ylim(-n + 0.4, 0.6)
    ax.axis("off")
    for w, d in enumerate(circuit.dims):
        ax.plot([x0, total - 0.1], [-w, -w], color="black", lw=1, zorder=0)
        ax.text(x0 - 0.1, -w, f"w{w} · d={d}", ha="right", va="center", fontsize=9)
    for xc, wd, ops in zip(xs, widths, cols, strict=True):
        for op in ops:
            c = cells(op)
            lo, hi = min(op.wires), max(op.wires)
            if hi > lo:
                ax.plot([xc, xc], [-lo, -hi], color="black", lw=1, zorder=1)
            controls = dict(
                zip(
                    getattr(op, "control_wires", ()),
                    getattr(op, "control_values", ()),
                    strict=False,
                )
            )
            face = "#f3d6d6" if isinstance(op, Channel) else "white"
            for w, label in c.items():
                if w in controls:
                    ax.add_patch(Circle((xc, -w), 0.09, color="black", zorder=3))
                    if controls[w] != 1:
                        ax.text(xc + 0.14, -w + 0.14, str(controls[w]), fontsize=7, zorder=4)
                    continue
                ax.add_patch(
                    Rectangle((xc - wd / 2, -w - 0.25), wd, 0.5, facecolor=face,
                              edgecolor="black", lw=1, zorder=2)
                )  # fmt: skip
                ax.text(xc, -w, label, ha="center", va="center", fontsize=8, zorder=3)
    return fig


def figure_png(circuit: Circuit, dpi: int = 100) -> bytes:
    """PNG bytes of :func:`draw_mpl` (for notebook display)."""
    fig = draw_mpl(circuit)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
