"""Packaging checks (the layering of imports is tests/test_layering.py).

* The folders ``circuits/`` and ``simulators/`` are installed as
  ``qsem.circuits`` and ``qsem.simulators`` through ``[tool.setuptools]
  package-dir``; the import names must resolve to those folders, and every
  package folder must be listed in ``pyproject.toml`` so that a regular
  (non-editable) install ships it.
* No second copy: the folder names are never import names. Importing ``circuits`` or
  ``simulators`` fails at once, and no test, benchmark, example or docs page does.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from test_layering import FOLDER_NAMES, FOLDERS, imported_modules

REPO = Path(__file__).resolve().parents[1]


def package_of(path: Path, folder: Path, import_name: str) -> str:
    """Package that the file ``path`` (inside ``folder``) belongs to once installed."""
    rel = path.relative_to(folder).parent.parts
    return ".".join((import_name, *rel))


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
    for folder, import_name in FOLDERS.items():
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
    for folder in FOLDERS:
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


# --------------------------------------------------------------------------
# no second copy: the folder names are never import names
# --------------------------------------------------------------------------

#: Where user-facing and test code lives outside the package: every import there must
#: name ``qsem.circuits`` / ``qsem.simulators``, never the folders.
SCANNED = ("tests", "benchmarks", "examples", "docs")

_FENCE = re.compile(r"^(\s*)(```|~~~)[^\n]*\n(.*?)^\1\2\s*$", re.S | re.M)
_FOLDER_IMPORT = re.compile(
    r"^\s*(?:>>>\s*|\.\.\.\s*)?(?:from\s+(?:circuits|simulators)(?:\.\w+)*\s+import\b"
    r"|import\s+(?:[\w.]+\s*(?:as\s+\w+\s*)?,\s*)*(?:circuits|simulators)\b(?!-))",
    re.M,
)


def code_chunks(path: Path) -> list[str]:
    """The code in ``path``: a .py file whole, a notebook's code cells, a Markdown
    file's fenced blocks (doctest prompts stripped)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return [text]
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [textwrap.dedent(m.group(3)) for m in _FENCE.finditer(text)]


def folder_imports(code: str) -> list[str]:
    """Imports in ``code`` that name the folders ``circuits`` / ``simulators``."""
    found = [m.group(0).strip() for m in _FOLDER_IMPORT.finditer(code)]
    if found:
        return found
    plain = "\n".join(
        re.sub(r"^\s*(>>>|\.\.\.) ?", "", line)
        for line in code.splitlines()
        if not line.lstrip().startswith(("%", "!"))
    )
    try:
        names = imported_modules(plain, "qsem")
    except SyntaxError:  # shell or output blocks: the regular expression above covers them
        return []
    return [n for _, n in names if n.split(".")[0] in FOLDER_NAMES]


def scanned_files() -> list[Path]:
    out = []
    for top in SCANNED:
        for suffix in ("*.py", "*.ipynb", "*.md"):
            out += [p for p in (REPO / top).rglob(suffix) if ".ipynb_checkpoints" not in p.parts]
    return sorted([*out, REPO / "README.md"])


@pytest.mark.parametrize(
    "code",
    [
        "import simulators.engine as engine_mod",
        "import circuits",
        "from circuits.gates import H",
        "from simulators import TorchSimulator",
        "import numpy as np, simulators",
        ">>> from circuits import Circuit",
        "def f():\n    import simulators.plan\n",
        "import importlib\nimportlib.import_module('simulators.engine')",
        "x = 1 +\nimport circuits",  # not Python as a whole: still found
    ],
)
def test_folder_import_scanner_flags(code: str) -> None:
    assert folder_imports(code)


@pytest.mark.parametrize(
    "code",
    [
        "import qsem.simulators.engine as engine_mod",
        "from qsem.circuits import Circuit",
        "from qsem import circuits, simulators",
        "pip install qsem[aer]\nls circuits/ simulators/",
        "# circuits and simulators are installed under qsem",
        "import my_circuits",
    ],
)
def test_folder_import_scanner_accepts(code: str) -> None:
    assert folder_imports(code) == []


def test_code_chunks_reads_notebook_cells_and_markdown_fences(tmp_path: Path) -> None:
    nb = tmp_path / "a.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["import circuits"]},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "import simulators\n"]},
    ]}))  # fmt: skip
    md = tmp_path / "a.md"
    md.write_text("text import circuits\n\n```python\nfrom circuits import H\n```\n")
    assert [folder_imports(c) for c in code_chunks(nb)] == [["import simulators"]]
    assert [folder_imports(c) for c in code_chunks(md)] == [["from circuits import"]]


def test_no_code_imports_the_folders_by_name() -> None:
    """tests/, benchmarks/, examples/ (notebook code cells too), docs/ code blocks and the
    README import only ``qsem.*``: a folder name would load a second copy of the code."""
    files = scanned_files()
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".md" for p in files)
    bad = [
        f"{p.relative_to(REPO)}: {hit}"
        for p in files
        if p.resolve() != Path(__file__).resolve()
        for chunk in code_chunks(p)
        for hit in folder_imports(chunk)
    ]
    assert bad == [], "import qsem.circuits / qsem.simulators instead:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("statement", "qsem_name"),
    [
        ("import circuits", "qsem.circuits"),
        ("import circuits.gates", "qsem.circuits"),
        ("from circuits.errors import QsemError", "qsem.circuits"),
        ("import simulators", "qsem.simulators"),
        ("import simulators.engine", "qsem.simulators"),
        ("from simulators.plan import compile_plan", "qsem.simulators"),
    ],
)
def test_importing_a_folder_name_fails_at_once(statement: str, qsem_name: str) -> None:
    """With the repository root on ``sys.path`` (as when running from a checkout), the
    folder name raises one ImportError line naming the real import name."""
    code = (
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        f"try:\n    {statement}\nexcept ImportError as e:\n    print(type(e).__name__, e)\n"
        "else:\n    print('imported')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('circuits', 'simulators')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    first, loaded = proc.stdout.splitlines()
    assert first.startswith("ImportError import " + qsem_name + ",")
    assert loaded == "[]"  # nothing of the second copy stays loaded


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
