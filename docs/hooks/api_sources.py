"""mkdocs hook: a source view of the installed package layout for mkdocstrings.

``qsem.circuits`` and ``qsem.simulators`` live in the repository's ``circuits/``
and ``simulators/`` folders (``[tool.setuptools] package-dir``), which griffe's
static loader cannot follow through the editable install. Before the build this
hook makes ``build/docs-src/qsem`` with a symlink for every entry of ``qsem/``
plus ``circuits`` and ``simulators``, the layout a regular install has;
``mkdocs.yml`` points the python handler's ``paths`` there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VIEW = ROOT / "build" / "docs-src"


def make_view() -> Path:
    """(Re)build the symlinked view; returns its folder."""
    if VIEW.exists():
        shutil.rmtree(VIEW)
    pkg = VIEW / "qsem"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "qsem").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name in ("circuits", "simulators"):
        (pkg / name).symlink_to(ROOT / name)
    return VIEW


def on_startup(command: str, dirty: bool, **kwargs: Any) -> None:
    make_view()
