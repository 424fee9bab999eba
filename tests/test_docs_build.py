"""The documentation builds with warnings as errors (``make docs``), and its generated
config reference lists every config key of every experiment; the getting-started
examples run as written.

The build takes about 20-30 s (griffe reads every docstring); it is part of the
default suite so that a docstring or page that breaks the site fails ``make test``.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

from qsem.experiments import EXPERIMENTS
from qsem.runner.config import describe_keys

REPO = Path(__file__).resolve().parents[1]


def test_docs_build_strict_and_config_reference_is_complete(tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for page in ("api/circuits", "api/simulators", "api/tasks", "concepts", "getting-started"):
        assert (site / page / "index.html").is_file(), page
    text = html.unescape(re.sub(r"<[^>]+>", "", (site / "config" / "index.html").read_text()))
    for name, exp in EXPERIMENTS.items():
        assert f"{name}" in text
        for doc in describe_keys(exp.defaults):
            # one table row per key: "key type default meaning"
            assert doc.key in text and doc.help.replace("`", "") in text, (name, doc.key)
    # the API pages come from the docstrings: a known docstring phrase is there
    api = html.unescape((site / "api" / "runner" / "index.html").read_text())
    assert "The documentation of one config key." in api


def test_getting_started_examples_run() -> None:
    page = (REPO / "docs" / "getting-started.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(blocks) >= 3
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/getting-started.md[{i}]", "exec"), {})
