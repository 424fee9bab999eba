"""The notebook example of docs/distill.md runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_distill_page_example_runs(tmp_path: Path) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", (DOCS / "distill.md").read_text(), flags=re.S)
    namespace: dict[str, object] = {}
    here = Path.cwd()
    os.chdir(tmp_path)  # the example writes its snapshots into the working directory
    try:
        exec(compile(code, "docs/distill.md", "exec"), namespace)
    finally:
        os.chdir(here)
    loop = namespace["loop"]
    model = namespace["model"]
    assert loop.steps > 0  # type: ignore[attr-defined]
    assert model.emergence.n_slices == 1 + sum(e["appended"] for e in loop.events)  # type: ignore[attr-defined]
