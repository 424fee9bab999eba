"""Plain-text circuit drawing, folded to a width instead of cut.

Operations are placed in columns greedily: an operation goes in the first column
after every wire it spans (:func:`layers`, shared with the matplotlib drawing in
:mod:`qsem.circuits.draw_mpl`). A drawing wider than ``max_width`` folds into
blocks, each repeating the wire labels; ``»`` ends a block that continues and
``«`` starts the continuation, so every operation is shown.

>>> from qsem.circuits import Circuit, RY
>>> c = Circuit.qubits(1).add(*[RY(0.1 * k, wires=0) for k in range(12)])
>>> text = draw_text(c, max_width=40)
>>> text.count("RY("), max(len(r) for r in text.splitlines()) <= 40
(12, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import arg_error
from .operations import Channel, Operation

if TYPE_CHECKING:
    from .circuit import Circuit


def layers(circuit: Circuit) -> list[list[Operation]]:
    """The operations of ``circuit`` in drawing columns (greedy, in order)."""
    columns: list[list[Operation]] = []
    level = [0] * circuit.num_wires
    for op in circuit.ops:
        lo, hi = min(op.wires), max(op.wires)
        col = max(level[lo : hi + 1])
        if col == len(columns):
            columns.append([])
        columns[col].append(op)
        for w in range(lo, hi + 1):
            level[w] = col + 1
    return columns


def cells(op: Operation) -> dict[int, str]:
    """What to print on each wire an operation touches (controls ``●``, ``●v`` for value v)."""
    controls = getattr(op, "control_wires", ())
    values = getattr(op, "control_values", ())
    label = op.label()
    out: dict[int, str] = {}
    for w, v in zip(controls, values, strict=False):
        out[w] = "●" if v == 1 else f"●{v}"
    targets = [w for w in op.wires if w not in out]
    if isinstance(op, Channel):
        label = "~" + label
    if len(targets) == 1:
        out[targets[0]] = label
    else:
        for i, w in enumerate(targets):
            out[w] = f"{label}[{i}]"
    return out


def _column_strings(circuit: Circuit, ops: list[Operation]) -> list[str]:
    """One column: a string per wire (all of the same width, incl. a trailing ``─``)."""
    n = circuit.num_wires
    cell: dict[int, str] = {}
    span: set[int] = set()
    for op in ops:
        c = cells(op)
        cell.update(c)
        lo, hi = min(op.wires), max(op.wires)
        span.update(w for w in range(lo, hi + 1) if w not in c)
    width = max([len(v) for v in cell.values()] + [1])
    out = []
    for w in range(n):
        if w in cell:
            out.append(cell[w].center(width, "─") + "─")
        elif w in span:
            out.append("│".center(width, "─") + "─")
        else:
            out.append("─" * (width + 1))
    return out


def draw_text(circuit: Circuit, max_width: int = 120) -> str:
    """The text drawing; rows longer than ``max_width`` fold into further blocks."""
    if isinstance(max_width, bool) or not isinstance(max_width, int) or max_width < 20:
        raise arg_error("max_width", f"must be an int >= 20, got {max_width!r}")
    names = [f"{w}(d{d}): " for w, d in enumerate(circuit.dims)]
    pad = max(len(s) for s in names)
    labels = [s.rjust(pad) for s in names]
    columns = [_column_strings(circuit, ops) for ops in layers(circuit)]
    blocks: list[list[str]] = []
    rows = [lab + "─" for lab in labels]
    used = False
    for col in columns:
        # keep one character for the continuation mark "»"
        if used and len(rows[0]) + len(col[0]) > max_width - 1:
            blocks.append([r + "»" for r in rows])
            rows = [lab + "«" for lab in labels]
            used = False
        rows = [r + c for r, c in zip(rows, col, strict=True)]
        used = True
    blocks.append(rows)
    return "\n\n".join("\n".join(b) for b in blocks)
