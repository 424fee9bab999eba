"""Plain-text circuit drawing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .operations import Channel

if TYPE_CHECKING:
    from .circuit import Circuit


def _cells(op: object) -> dict[int, str]:
    """What to print on each wire an operation touches."""
    controls = getattr(op, "control_wires", ())
    values = getattr(op, "control_values", ())
    label = op.label()  # type: ignore[attr-defined]
    cells: dict[int, str] = {}
    for w, v in zip(controls, values, strict=False):
        cells[w] = "●" if v == 1 else f"●{v}"
    targets = [w for w in op.wires if w not in cells]  # type: ignore[attr-defined]
    if isinstance(op, Channel):
        label = "~" + label
    if len(targets) == 1:
        cells[targets[0]] = label
    else:
        for i, w in enumerate(targets):
            cells[w] = f"{label}[{i}]"
    return cells


def draw_text(circuit: Circuit, max_width: int = 120) -> str:
    """Greedy layering: an operation goes in the first column after every wire it spans."""
    n = circuit.num_wires
    columns: list[dict[int, str]] = []
    spans: list[set[int]] = []
    level = [0] * n
    for op in circuit.ops:
        lo, hi = min(op.wires), max(op.wires)
        col = max(level[lo : hi + 1])
        if col == len(columns):
            columns.append({})
            spans.append(set())
        cells = _cells(op)
        columns[col].update(cells)
        spans[col].update(w for w in range(lo, hi + 1) if w not in cells)
        for w in range(lo, hi + 1):
            level[w] = col + 1
    names = [f"{w}(d{d}): " for w, d in enumerate(circuit.dims)]
    pad = max(len(s) for s in names)
    rows = [s.rjust(pad) + "─" for s in names]
    for cells_of, span in zip(columns, spans, strict=True):
        width = max([len(v) for v in cells_of.values()] + [1])
        for w in range(n):
            if w in cells_of:
                rows[w] += cells_of[w].center(width, "─") + "─"
            elif w in span:
                rows[w] += "│".center(width, "─") + "─"
            else:
                rows[w] += "─" * (width + 1)
    out = []
    for r in rows:
        out.append(r if len(r) <= max_width else r[: max_width - 1] + "…")
    return "\n".join(out)
