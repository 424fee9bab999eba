"""Circuit drawings: folded text, matplotlib, notebook display."""

from __future__ import annotations

import re

import matplotlib
import pytest

from qsem.circuits import (
    CNOT,
    RY,
    TRY,
    TSWAP,
    Circuit,
    Controlled,
    Depolarizing,
    Parameter,
    QsemValueError,
    TAdd,
)

matplotlib.use("Agg")


def _long_circuit(n_gates: int = 40) -> Circuit:
    c = Circuit.qubits(3)
    for k in range(n_gates):
        c.add(RY(0.01 * (k + 1), wires=k % 3) if k % 4 else CNOT(wires=[k % 3, (k + 1) % 3]))
    return c


@pytest.mark.parametrize("width", [40, 80, 120])
def test_text_folds_long_circuits_and_shows_every_gate(width: int) -> None:
    c = _long_circuit()
    text = c.draw(max_width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    shown = re.findall(r"RY\((0\.\d+)\)", text)
    expected = [f"{0.01 * (k + 1):g}" for k in range(40) if k % 4]
    assert sorted(shown) == sorted(expected)  # every rotation, each once
    assert text.count("CNOT[0]") == 10 and text.count("CNOT[1]") == 10
    blocks = text.split("\n\n")
    assert len(blocks) > 1
    assert all(b.splitlines()[0].endswith("»") for b in blocks[:-1])
    assert all(b.splitlines()[0].startswith("0(d2): «") for b in blocks[1:])


def test_short_circuit_is_one_block_and_str_is_the_drawing() -> None:
    c = Circuit([3, 3, 2]).add(TRY(0.3, wires=0), TAdd(wires=[0, 1]), RY(0.2, wires=2))
    c.add(Controlled(TSWAP(wires=[0, 1]), control_wires=[2]))
    assert str(c) == c.draw()
    assert c.draw().splitlines() == [
        "0(d3): ─RY(0.3)─Add[0]─SWAP[0]─",
        "1(d3): ─────────Add[1]─SWAP[1]─",
        "2(d2): ─RY(0.2)───────────●────",
    ]
    with pytest.raises(QsemValueError, match="argument 'max_width'"):
        c.draw(max_width=5)
    with pytest.raises(QsemValueError, match="argument 'output'"):
        c.draw("latex")


def test_mpl_drawing_labels_wire_dimensions() -> None:
    from matplotlib.figure import Figure

    c = Circuit([3, 2]).add(TRY(Parameter("x"), wires=0, subspace=(1, 2)), TAdd(wires=[0, 1]))
    c.add(Depolarizing(0.1, wires=1), Controlled(RY(0.4, wires=1), [0], [2]))
    fig = c.draw("mpl")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "w0 · d=3" in texts and "w1 · d=2" in texts
    assert "RY12(x)" in texts and "~Depolarizing(0.1)" in texts and "2" in texts
    fig.canvas.draw()  # renders under Agg


def test_notebook_display_and_short_repr() -> None:
    c = _long_circuit()
    assert repr(c) == "Circuit(dims=[2, 2, 2], ops=40)"
    html = c._repr_html_()
    assert html.startswith("<pre>") and "RY(0.4)" in html
    png = c._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_interop_page_first_example_runs() -> None:
    """The opening example of docs/interop.md runs and prints the drawing shown there."""
    import contextlib
    import io
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "interop.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    shown = re.findall(r"```\n(0\(d3\).*?)```", text, flags=re.S)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/interop.md", "exec"), {})
    assert out.getvalue().strip() == shown.strip()
