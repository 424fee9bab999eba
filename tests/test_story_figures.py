"""The figures README.md and docs/story.md quote for the default story run hold within the
documented tolerance (issue 21, item 11).

What repeats bit for bit (same machine, same torch thread count, same library versions)
and what only within these tolerances is stated in docs/story.md ("Reproducibility").
The comparison itself is checked here on the documented lines; the default run it needs
takes about 5 minutes, so that test is ``slow`` (``make studies``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import STORY_ATOL_METRIC, STORY_ATOL_PERCENT, STORY_RTOL_COUNT

from qsem.experiments import get_experiment
from qsem.runner import run_experiment

REPO = Path(__file__).resolve().parents[1]
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
ALPHA = 0.05


def documented_lines(path: Path) -> list[str]:
    """The five summary lines (a. to e.) of the first fenced block that holds them."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if current is not None:
                blocks.append(current)
            current = None if current is not None else []
        elif current is not None:
            current.append(line)
    for block in blocks:
        lines = [x for x in block if re.match(r"[a-e]\. ", x)]
        if len(lines) == 5:
            return lines
    raise AssertionError(f"{path}: no block with the five summary lines")


def _tokens(line: str) -> list[tuple[str, float, str]]:
    """(text before, number, text after) of every number in a line (the stage letter is
    no number)."""
    spans = [(m.start(), m.end(), float(m.group())) for m in _NUMBER.finditer(line)]
    return [(line[max(0, a - 6) : a], x, line[b : b + 16]) for a, b, x in spans]


def disagreements(documented: str, measured: str) -> list[str]:
    """Where ``measured`` (a run's summary line) leaves the tolerance of ``documented``."""
    doc, run = _tokens(documented), _tokens(measured)
    if len(doc) != len(run):
        return [f"the lines differ in shape:\n  {documented}\n  {measured}"]
    out = []
    for (before, d, after), (_, m, _) in zip(doc, run, strict=True):
        what = f"{before.strip()}[{d:g}]{after.rstrip()} -> {m:g}"
        if re.match(r"(?: vs [-+\d.]+)? (?:ms|KiB)", after):
            continue  # latencies and file sizes depend on the machine and the torch build
        if before.endswith("p = "):
            ok = (d < ALPHA) == (m < ALPHA)  # the verdict, not the value
        elif after.startswith("%"):
            ok = abs(d - m) <= STORY_ATOL_PERCENT
        elif d == int(d) and "." not in f"{d:g}" and abs(d) >= 1:
            ok = abs(d - m) <= max(2.0, STORY_RTOL_COUNT * abs(d))
        else:
            ok = abs(d - m) <= STORY_ATOL_METRIC
        if not ok:
            out.append(what)
    return out


def test_readme_and_story_quote_the_same_lines() -> None:
    assert documented_lines(REPO / "README.md") == documented_lines(REPO / "docs/story.md")


def test_comparison_accepts_the_other_machine_and_refuses_a_change() -> None:
    """The figures of the issue's other machine (p = 0.58, NLL 0.107 for line c) pass; a
    flipped verdict or an accuracy off by 0.05 does not."""
    c = documented_lines(REPO / "docs/story.md")[2]
    other = c.replace("p = 0.7)", "p = 0.58)").replace("NLL 0.104", "NLL 0.107")
    assert other != c and disagreements(c, other) == []
    flipped = c.replace("p = 0.7)", "p = 0.01)")
    assert disagreements(c, flipped)
    worse = c.replace("accuracy 0.959", "accuracy 0.909")
    assert disagreements(c, worse)


@pytest.mark.slow
def test_default_run_gives_the_documented_figures(tmp_path: Path) -> None:
    results = run_experiment(get_experiment("story"), out=tmp_path / "run", quiet=True).results
    documented = documented_lines(REPO / "docs/story.md")
    problems = [p for d, m in zip(documented, results["summary"], strict=True)
                for p in disagreements(d, m)]  # fmt: skip
    assert not problems, problems
