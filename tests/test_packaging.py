"""Packaging and layering checks.

* Imports go one way only: ``qsem.circuits`` <- ``qsem.simulators`` <- the rest
  of ``qsem`` (DESIGN.md section 1). Checked statically with ``ast`` so that a
  violation anywhere in a file (inside a function, under ``TYPE_CHECKING``,
  through ``importlib.import_module("...")``) is caught, not only at import time.
* The folders ``circuits/`` and ``simulators/`` are installed as
  ``qsem.circuits`` and ``qsem.simulators`` through ``[tool.setuptools]
  package-dir``; the import names must resolve to those folders, and every
  package folder must be listed in ``pyproject.toml`` so that a regular
  (non-editable) install ships it.
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# folder -> (import name of the folder, qsem modules that folder may import)
LAYERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "circuits": ("qsem.circuits", ("qsem.circuits",)),
    "simulators": ("qsem.simulators", ("qsem.circuits", "qsem.simulators")),
    "qsem": ("qsem", ("qsem",)),
}

# Top-level names that exist only as repository folders. Importing them by
# their folder name would load a second copy of the code (or fail once
# installed); always go through ``qsem.circuits`` / ``qsem.simulators``.
FOLDER_NAMES = ("circuits", "simulators")

_DYNAMIC_IMPORTERS = {"import_module", "__import__"}


# --------------------------------------------------------------------------
# the checker
# --------------------------------------------------------------------------


def _resolve_relative(package: str, level: int, module: str | None) -> str | None:
    """Absolute name of ``from <level dots><module> import ...`` inside ``package``.

    Returns None when the relative import climbs above the top-level package.
    """
    parts = package.split(".")
    if level - 1 >= len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base)


def imported_modules(source: str, package: str, filename: str = "<src>") -> list[tuple[int, str]]:
    """All modules that ``source`` imports, as (line, absolute dotted name).

    ``package`` is the package the source lives in (for a module ``a/b/c.py``
    installed as ``qsem.circuits.b.c`` it is ``qsem.circuits.b``; for an
    ``__init__.py`` it is the package itself); relative imports are resolved
    against it. ``from X import name`` reports ``X.name`` (``name`` may be a
    submodule), so ``from qsem import simulators`` reports ``qsem.simulators``.
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
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else None
            )
            if (
                name in _DYNAMIC_IMPORTERS
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and not node.args[0].value.startswith(".")
            ):
                found.append((node.lineno, node.args[0].value))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_violations(
    source: str, package: str, allowed: tuple[str, ...], filename: str = "<src>"
) -> list[str]:
    """Messages for each import in ``source`` that breaks the layering rule.

    Any ``qsem`` module may be imported only if it lies under one of ``allowed``
    (``import qsem`` itself is the top-level package and is never under
    ``qsem.circuits``); the bare folder names ``circuits`` / ``simulators`` are
    never allowed; a relative import above the top-level package is an error.
    """
    bad: list[str] = []
    for line, name in imported_modules(source, package, filename):
        if name.startswith("."):
            bad.append(f"{filename}:{line}: relative import {name!r} leaves the package")
        elif _within(name, "qsem"):
            if not any(_within(name, prefix) for prefix in allowed):
                bad.append(
                    f"{filename}:{line}: imports {name!r}; only {', '.join(allowed)} allowed here"
                )
        elif name.split(".")[0] in FOLDER_NAMES:
            top = name.split(".")[0]
            bad.append(f"{filename}:{line}: imports folder name {name!r}; use 'qsem.{top}'")
    return bad


def package_of(path: Path, folder: Path, import_name: str) -> str:
    """Package that the file ``path`` (inside ``folder``) belongs to once installed."""
    rel = path.relative_to(folder).parent.parts
    return ".".join((import_name, *rel))


def check_folder(folder: Path, import_name: str, allowed: tuple[str, ...]) -> tuple[int, list[str]]:
    """Check every .py file under ``folder``; return (files checked, violations)."""
    files = sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    bad: list[str] = []
    for path in files:
        source = path.read_text(encoding="utf-8")
        package = package_of(path, folder, import_name)
        shown = str(path.relative_to(folder.parent))
        bad.extend(layer_violations(source, package, allowed, shown))
    return len(files), bad


# --------------------------------------------------------------------------
# the checker itself on synthetic sources
# --------------------------------------------------------------------------

CIRCUITS_ALLOWED = LAYERS["circuits"][1]
SIMULATORS_ALLOWED = LAYERS["simulators"][1]


@pytest.mark.parametrize(
    "source",
    [
        "import qsem.simulators",
        "import qsem.simulators.engine as eng",
        "from qsem.simulators import run",
        "from qsem.simulators.torch_engine import simulate",
        "from qsem import simulators",
        "from qsem import tensors",
        "import qsem",
        "from qsem.experiments import cli",
        "from .. import simulators",
        "from ..simulators import engine",
        "from ... import anything",
        "import simulators",
        "from circuits.gates import H",
        "def f():\n    from qsem.simulators import run\n    return run",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qsem.truth import Truth",
        "import importlib\nmod = importlib.import_module('qsem.simulators')",
        "mod = __import__('qsem.tensors')",
    ],
)
def test_checker_flags_violation_in_circuits(source: str) -> None:
    assert layer_violations(source, "qsem.circuits", CIRCUITS_ALLOWED)


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np\nimport torch",
        "from __future__ import annotations",
        "from . import gates",
        "from .gates import H, CNOT",
        "from .. import gates",  # qsem.circuits.gates, from qsem.circuits.templates
        "import qsem.circuits",
        "import qsem.circuits.gates as g",
        "from qsem.circuits import Circuit",
        "from qsem.circuits.gates import *",
        "import importlib\nmod = importlib.import_module('.gates', __package__)",
        "import circuitsx\nimport my_simulators",
    ],
)
def test_checker_accepts_allowed_in_circuits(source: str) -> None:
    assert layer_violations(source, "qsem.circuits.templates", CIRCUITS_ALLOWED) == []


def test_checker_simulators_layer() -> None:
    ok = (
        "from qsem.circuits import Circuit\n"
        "from qsem.simulators.engine import run\n"
        "from . import aer"
    )
    assert layer_violations(ok, "qsem.simulators", SIMULATORS_ALLOWED) == []
    for bad in (
        "from qsem.tensors import Omega",
        "from qsem import truth",
        "import qsem.experiments",
        "import qsem",
        "from .. import emergence",
        "import circuits",
    ):
        assert layer_violations(bad, "qsem.simulators", SIMULATORS_ALLOWED), bad


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
    (folder / "gates.py").write_text("import torch\n")
    (folder / "templates" / "__init__.py").write_text("")
    (folder / "templates" / "swap.py").write_text(
        "from ..gates import H\nfrom ... import simulators\n"
    )
    n, bad = check_folder(folder, "qsem.circuits", CIRCUITS_ALLOWED)
    assert n == 4
    assert len(bad) == 1
    assert "swap.py:2" in bad[0] and "qsem.simulators" in bad[0]


# --------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------


@pytest.mark.parametrize("folder", sorted(LAYERS))
def test_import_direction(folder: str) -> None:
    import_name, allowed = LAYERS[folder]
    n, bad = check_folder(REPO / folder, import_name, allowed)
    assert n > 0, f"no .py files found under {folder}/ (expected at least __init__.py)"
    assert not bad, "import direction violated:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("module", "folder"),
    [("qsem", "qsem"), ("qsem.circuits", "circuits"), ("qsem.simulators", "simulators")],
)
def test_import_names_resolve_to_repo_folders(module: str, folder: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__file__ is not None, f"{module} is a namespace package: add {folder}/__init__.py"
    where = Path(mod.__file__).resolve()
    assert where.parent == (REPO / folder).resolve(), (
        f"{module} resolves to {where}, expected {REPO / folder}/__init__.py "
        "(run the tests from an editable install: make venv)"
    )


def _pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")
    with (REPO / "pyproject.toml").open("rb") as fh:
        config: dict[str, Any] = tomllib.load(fh)
    return config


def _package_folders() -> dict[str, Path]:
    """Import name -> folder for every package folder in the tree."""
    found: dict[str, Path] = {}
    for folder, (import_name, _) in LAYERS.items():
        root = REPO / folder
        for init in sorted(root.rglob("__init__.py")):
            if "__pycache__" in init.parts:
                continue
            found[package_of(init, root, import_name)] = init.parent
    return found


def test_pyproject_lists_every_package() -> None:
    config = _pyproject()["tool"]["setuptools"]
    assert config["package-dir"] == {
        "qsem": "qsem",
        "qsem.circuits": "circuits",
        "qsem.simulators": "simulators",
    }
    listed = set(config["packages"])
    present = set(_package_folders())
    missing = sorted(present - listed)
    assert not missing, (
        f"package folders not listed in [tool.setuptools] packages (a regular install "
        f"would leave them out): {missing}"
    )
    stale = sorted(listed - present)
    assert not stale, f"listed in [tool.setuptools] packages but no __init__.py: {stale}"


def test_wheel_contains_the_mapped_packages(tmp_path: Path) -> None:
    """A regular (non-editable) build ships circuits/ and simulators/ under qsem/."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in LAYERS:
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("qsem-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for import_name, package_dir in _package_folders().items():
        for py in package_dir.glob("*.py"):
            expected.add("/".join((*import_name.split("."), py.name)))
    missing = sorted(expected - names)
    assert not missing, f"wheel is missing {missing}"
    assert "qsem/circuits/__init__.py" in names
    assert "qsem/simulators/__init__.py" in names
    templates = {
        f"qsem/report/templates/{p.name}" for p in (REPO / "qsem/report/templates").iterdir()
    }
    assert templates and templates <= names, f"wheel is missing {sorted(templates - names)}"


def test_shipped_text_cites_no_file_users_do_not_have() -> None:
    """Docstrings and docs pages point users to the docs, never to the design notes
    (a file outside the package that a user of qsem does not have)."""
    files = [p for d in ("qsem", "circuits", "simulators", "docs") for p in (REPO / d).rglob("*")
             if p.suffix in (".py", ".md")]  # fmt: skip
    cited = [str(p.relative_to(REPO)) for p in files if "DESIGN.md" in p.read_text()]
    assert files and cited == []


def test_notebook_front_end_is_installed_by_make_venv() -> None:
    """README says to open the notebooks with JupyterLab from ``.venv``: the ``notebook``
    extra (in ``all``, which ``make venv`` installs) brings it, pinned in constraints.txt,
    and the documented ``jupyter lab`` runs from this interpreter's environment."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(r.startswith("jupyterlab") for r in extras["notebook"])
    assert "notebook" in extras["all"][0]
    pins = (REPO / "constraints.txt").read_text().splitlines()
    assert any(line.startswith("jupyterlab==") for line in pins)
    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.exists(), "no jupyter in the venv: run `make venv` (the notebook extra)"
    done = subprocess.run(
        [str(jupyter), "lab", "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip()[:1].isdigit(), done.stderr
    assert ".venv/bin/jupyter lab examples/" in (REPO / "README.md").read_text()
