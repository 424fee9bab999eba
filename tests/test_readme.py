"""The README's first example runs as written and draws what the README shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_runs_and_prints_the_drawing_shown() -> None:
    code = _blocks("python")[0]
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    p_truth = namespace["p_truth"]
    assert tuple(p_truth.shape) == (8, 3)  # type: ignore[attr-defined]
    drawing = re.search(r"```\n(0\(d3\).*?)```", README.read_text(), flags=re.S)
    assert drawing is not None
    assert out.getvalue().strip() == drawing.group(1).strip()


def test_readme_interop_examples_run() -> None:
    """The PennyLane-device and Qiskit/noise examples run as written."""
    blocks = _blocks("python")[1:3]
    assert len(blocks) == 2 and 'qml.device("qsem"' in blocks[0] and "EstimatorV2" in blocks[1]
    for code in blocks:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "README.md", "exec"), {})
