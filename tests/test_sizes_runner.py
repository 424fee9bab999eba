"""Sizes of the run harness: no module of ``qsem/runner`` over 500 lines, no function over 80.

(The limits of the whole package are the design card's; this test holds the runner to
them now, after ``runner/core.py`` was split into ``core``, ``rundir`` and ``experiment``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_FUNCTION = 500, 80


def _runner_files() -> list[Path]:
    return sorted((REPO / "qsem" / "runner").glob("*.py"))


def test_no_runner_module_is_over_500_lines() -> None:
    long = {
        p.name: n for p in _runner_files() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_runner_function_is_over_80_lines() -> None:
    long = []
    for path in _runner_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION:
                    long.append(f"{path.name}:{node.name} ({lines})")
    assert long == []


def test_the_check_sees_the_files() -> None:
    assert {"core.py", "rundir.py", "experiment.py", "config.py"} <= {
        p.name for p in _runner_files()
    }
