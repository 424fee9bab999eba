"""The layers of the package, and the one rule: no module imports from a layer above its own.

From the ground up:

    foundation <- circuits <- simulators <- library <- runner <- experiments <- entry points

Checked statically with ``ast`` over every module of ``qsem/``, ``circuits/`` and
``simulators/``, so an import anywhere in a file counts: at the top, inside a
function (a lazy import), under ``TYPE_CHECKING``, or through
``importlib.import_module("...")`` / ``__import__("...")``. Inside one layer any
import is allowed. Every module must have a layer: a new module fails this test
until it is placed in :data:`LAYERS`. The folder names ``circuits`` / ``simulators``
are never import names (they would load a second copy of the code).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: The layers, lowest first: each is a list of module prefixes (a prefix covers its
#: submodules). A module may import any module of its own layer or of a lower one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("qsem.errors", "qsem.checks", "qsem.threads", "qsem.io",
                    "qsem.__version__")),
    ("circuits", ("qsem.circuits",)),
    ("simulators", ("qsem.simulators",)),
    ("library", ("qsem.tensors", "qsem.truth", "qsem.layers", "qsem.models", "qsem.distill",
                 "qsem.emergence", "qsem.edge", "qsem.narrow", "qsem.tasks", "qsem.stats",
                 "qsem.report", "qsem.training")),
    ("runner", ("qsem.runner",)),
    ("experiments", ("qsem.experiments",)),
    ("entry points", ("qsem.sweep", "qsem.cli", "qsem._cli_run", "qsem._cli_tools",
                      "qsem.__main__")),
)  # fmt: skip

#: The package itself (``qsem/__init__.py``): light, imported before anything else.
ROOT = "qsem"

#: Repository folder -> the import name it is installed as.
FOLDERS = {"qsem": "qsem", "circuits": "qsem.circuits", "simulators": "qsem.simulators"}

#: Top-level names that exist only as repository folders: never import names.
FOLDER_NAMES = ("circuits", "simulators")

LIBRARY = dict(LAYERS)["library"]
ABOVE_LIBRARY = tuple(p for name, prefixes in LAYERS[4:] for p in prefixes)

_DYNAMIC_IMPORTERS = {"import_module", "__import__"}


# --------------------------------------------------------------------------
# the checker
# --------------------------------------------------------------------------


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of ``module`` (longest prefix), ``None`` if it has none."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _within(module, prefix) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def _resolve_relative(package: str, level: int, module: str | None) -> str | None:
    """Absolute name of ``from <level dots><module> import ...`` inside ``package``;
    ``None`` when the import climbs above the top-level package."""
    parts = package.split(".")
    if level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base)


def imported_modules(source: str, package: str, filename: str = "<src>") -> list[tuple[int, str]]:
    """All modules ``source`` imports, as (line, absolute dotted name).

    ``package``: the package the source lives in (for ``__init__.py`` the package
    itself); relative imports resolve against it. ``from X import name`` reports
    ``X.name`` (``name`` may be a submodule): ``from qsem import simulators`` reports
    ``qsem.simulators``. A relative import above the top package is reported with
    its dots.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(package, node.level, node.module)
                if base is None:
                    found.append((node.lineno, "." * node.level + (node.module or "")))
                    continue
            else:
                base = node.module or ""
            for alias in node.names:
                found.append((node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            arg = node.args[0] if node.args else None
            if (
                name in _DYNAMIC_IMPORTERS
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                found.append((node.lineno, arg.value))
    return found


def layer_violations(source: str, module: str, package: str, filename: str = "<src>") -> list[str]:
    """One message per import in ``source`` (the code of ``module``, which lives in
    ``package``) that reaches a layer above ``module``'s, names a folder, imports the
    bare package root, or climbs out of the package."""
    own = layer_of(module)
    if module == ROOT:
        own = 0
    if own is None:
        return [f"{filename}: module {module!r} has no layer: add it to LAYERS"]
    bad: list[str] = []
    for line, name in imported_modules(source, package, filename):
        where = f"{filename}:{line}"
        if name.startswith("."):
            bad.append(f"{where}: relative import {name!r} leaves the package")
        elif name.split(".")[0] in FOLDER_NAMES:
            top = name.split(".")[0]
            bad.append(f"{where}: imports folder name {name!r}; use 'qsem.{top}'")
        elif name == ROOT:
            bad.append(f"{where}: 'import qsem' hides what is used: import the module itself")
        elif _within(name, ROOT):
            theirs = layer_of(name)
            if theirs is None:
                bad.append(f"{where}: imports {name!r}, which has no layer")
            elif theirs > own:
                bad.append(
                    f"{where}: {LAYERS[own][0]} module {module!r} imports {name!r} "
                    f"from the {LAYERS[theirs][0]} layer above it"
                )
    return bad


def module_name(path: Path, folder: Path, import_name: str) -> tuple[str, str]:
    """(module, package) of the file ``path`` inside ``folder`` once installed."""
    rel = path.relative_to(folder).with_suffix("").parts
    package = ".".join((import_name, *rel[:-1]))
    if rel[-1] == "__init__":
        return package, package
    return f"{package}.{rel[-1]}", package


def check_folder(folder: Path, import_name: str) -> tuple[int, list[str]]:
    """Check every .py file under ``folder`` (installed as ``import_name``)."""
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    bad: list[str] = []
    for path in files:
        module, package = module_name(path, folder, import_name)
        shown = str(path.relative_to(folder.parent))
        bad.extend(layer_violations(path.read_text(encoding="utf-8"), module, package, shown))
    return len(files), bad


# --------------------------------------------------------------------------
# the checker itself, on sources written here
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("qsem.circuits.templates", "import qsem.simulators"),
        ("qsem.circuits.templates", "from qsem.simulators.engine import simulate"),
        ("qsem.circuits.templates", "from qsem import simulators"),
        ("qsem.circuits.templates", "from ... import tensors"),
        ("qsem.circuits.templates", "from ..simulators import engine"),
        ("qsem.circuits.templates", "import qsem"),
        ("qsem.circuits.templates", "from .... import anything"),
        ("qsem.circuits.templates", "import simulators"),
        ("qsem.circuits.templates", "from circuits.gates import H"),
        ("qsem.circuits.templates", "import importlib\nm = importlib.import_module('qsem.truth')"),
        ("qsem.circuits.templates", "m = __import__('qsem.tensors')"),
        ("qsem.errors", "from qsem.circuits import Circuit"),
        ("qsem.checks", "def f():\n    from qsem.runner import ConfigError\n"),
        ("qsem.simulators.engine", "from qsem.tensors import Omega"),
        ("qsem.simulators.engine", "import qsem.experiments"),
        ("qsem.distill.trainer", "from qsem.runner import ConfigError"),
        ("qsem.distill.trainer", "def f():\n    from qsem.runner.info import torch_threads\n"),
        ("qsem.edge.small", "def f():\n    from qsem.experiments.narrow_semantic import g\n"),
        ("qsem.narrow.train", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from qsem.sweep import Sweep\n"),
        ("qsem.report.render", "from qsem.cli import main"),
        ("qsem.runner.core", "from qsem.experiments import EXPERIMENTS"),
        ("qsem.experiments.demo", "from qsem.sweep import run_sweep"),
        ("qsem.tensors.base", "from qsem.nowhere import x"),
        ("qsem.nowhere", "import torch"),
    ],
)  # fmt: skip
def test_checker_flags(module: str, source: str) -> None:
    package = module.rsplit(".", 1)[0]
    assert layer_violations(source, module, package)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("qsem.circuits.templates", "import numpy as np\nimport torch"),
        ("qsem.circuits.templates", "from . import gates\nfrom .gates import H, CNOT"),
        ("qsem.circuits.templates", "from qsem.errors import arg_error"),
        ("qsem.circuits.templates", "from qsem.checks import check_wires"),
        ("qsem.circuits.templates", "from qsem import errors"),
        ("qsem.circuits.templates", "import importlib\nm = importlib.import_module('.gates', 'x')"),
        ("qsem.circuits.templates", "import circuitsx\nimport my_simulators"),
        ("qsem.simulators.engine", "from qsem.circuits import Circuit\nfrom . import plan"),
        ("qsem.distill.trainer", "from qsem.errors import ConfigError\nfrom qsem.models import M"),
        ("qsem.edge.small", "from qsem.narrow.mlp import composer_group"),
        ("qsem.runner.core", "from qsem.report import write_report"),
        ("qsem.experiments.demo", "from qsem.runner import Experiment"),
        ("qsem.report.render", "from qsem import __version__"),
        ("qsem.sweep.driver", "from qsem.experiments import EXPERIMENTS"),
        ("qsem.cli", "from qsem import _cli_run\nfrom qsem.sweep import cli"),
        ("qsem", "from importlib.metadata import version"),
    ],
)  # fmt: skip
def test_checker_accepts(module: str, source: str) -> None:
    package = module if module == ROOT else module.rsplit(".", 1)[0]
    assert layer_violations(source, module, package) == []


def test_checker_resolves_relative_imports() -> None:
    src = "from . import a\nfrom .b import c\nfrom .. import d\nfrom ..e.f import g"
    assert imported_modules(src, "qsem.circuits.templates") == [
        (1, "qsem.circuits.templates.a"),
        (2, "qsem.circuits.templates.b.c"),
        (3, "qsem.circuits.d"),
        (4, "qsem.circuits.e.f.g"),
    ]


def test_check_folder_fails_on_violating_tree(tmp_path: Path) -> None:
    folder = tmp_path / "circuits"
    (folder / "templates").mkdir(parents=True)
    (folder / "__init__.py").write_text("from .gates import H\n")
    (folder / "gates.py").write_text("import torch\nfrom qsem.errors import arg_error\n")
    (folder / "templates" / "__init__.py").write_text("")
    (folder / "templates" / "swap.py").write_text(
        "from ..gates import H\ndef f():\n    from ... import simulators\n"
    )
    n, bad = check_folder(folder, "qsem.circuits")
    assert n == 4
    assert len(bad) == 1
    assert "swap.py:3" in bad[0] and "qsem.simulators" in bad[0]


# --------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_no_module_imports_from_a_layer_above(folder: str) -> None:
    n, bad = check_folder(REPO / folder, FOLDERS[folder])
    assert n > 0, f"no .py files found under {folder}/ (expected at least __init__.py)"
    assert not bad, "layering violated:\n" + "\n".join(bad)


def test_every_layer_prefix_names_a_module() -> None:
    """A prefix in LAYERS that matches no file is a typo (it would place nothing)."""
    modules = {
        module_name(p, REPO / folder, import_name)[0]
        for folder, import_name in FOLDERS.items()
        for p in (REPO / folder).rglob("*.py")
    }
    stale = [
        prefix
        for _, prefixes in LAYERS
        for prefix in prefixes
        if prefix != "qsem.__version__" and not any(_within(m, prefix) for m in modules)
    ]
    assert stale == []


def test_library_imports_load_no_runner() -> None:
    """Importing every library package (``qsem.distill`` among them) loads nothing of
    the runner, the experiments, the sweep or the command line."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(LIBRARY)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({ABOVE_LIBRARY!r})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.strip() == "[]", proc.stdout
