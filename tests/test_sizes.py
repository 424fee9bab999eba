"""Sizes: no source file of the package over 500 lines, no function over 80.

Checked with ``ast`` over every module of ``qsem/``, ``circuits/`` and
``simulators/``. A file's size is its number of lines; a function's runs from its
``def`` line to its last line, docstring included (decorators excluded), for
module functions, methods and nested functions alike (named ``Class.method`` /
``outer.inner``).

:data:`ALLOWED` lists the only exceptions (none today). An item put there is allowed
up to its size then (it may not grow); once it is within the limits, its allowance is
stale and :func:`test_no_stale_allowance` asks for its line to be deleted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("qsem", "circuits", "simulators")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

#: (path, function or None for the whole file) -> its size when allowed. Delete a line
#: once its item is within the limits (test_no_stale_allowance says which).
ALLOWED: dict[tuple[str, str | None], int] = {}


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of every function in ``tree``, nested ones included."""
    out: list[tuple[str, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            assert node.end_lineno is not None
            out.append((name, node.end_lineno - node.lineno + 1))
            out += _functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            out += _functions(node, prefix + node.name + ".")
        else:
            out += _functions(node, prefix)
    return out


def oversized(root: Path, folders: tuple[str, ...] = FOLDERS) -> dict[tuple[str, str | None], int]:
    """Every file over :data:`MAX_FILE_LINES` and function over :data:`MAX_FUNCTION_LINES`
    under ``root/folder``: ``(relative path, function name or None) -> lines``."""
    found: dict[tuple[str, str | None], int] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines > MAX_FILE_LINES:
                found[(rel, None)] = lines
            for name, size in _functions(ast.parse(text, filename=rel)):
                if size > MAX_FUNCTION_LINES:
                    found[(rel, name)] = size
    return found


def _describe(item: tuple[str, str | None], size: int) -> str:
    path, func = item
    if func is None:
        return f"{path}: {size} lines (limit {MAX_FILE_LINES})"
    return f"{path}: function {func} is {size} lines (limit {MAX_FUNCTION_LINES})"


@pytest.fixture(scope="module")
def found() -> dict[tuple[str, str | None], int]:
    return oversized(REPO)


def test_no_file_or_function_over_the_limit(found: dict[tuple[str, str | None], int]) -> None:
    bad = [
        _describe(item, size)
        for item, size in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        if item not in ALLOWED or size > ALLOWED[item]
    ]
    assert not bad, "over the size limits (split by responsibility):\n" + "\n".join(bad)


def test_no_stale_allowance(found: dict[tuple[str, str | None], int]) -> None:
    stale = [
        f"{path}{'' if f is None else ' ' + f}" for (path, f) in ALLOWED if (path, f) not in found
    ]
    assert not stale, "within the limits now: delete their lines from ALLOWED: " + ", ".join(stale)


def test_the_scan_finds_what_is_over_and_only_that(tmp_path: Path) -> None:
    """The scanner on a made-up tree: sizes at the limit pass, one line more is reported."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)

    def function(name: str, lines: int, indent: str = "") -> str:
        body = [f'{indent}    """Doc."""'] + [f"{indent}    x = {i}" for i in range(lines - 2)]
        return "\n".join([f"{indent}def {name}():", *body]) + "\n"

    (pkg / "ok.py").write_text(function("at_limit", 80) + "\n" * (500 - 80))
    (pkg / "sub" / "big.py").write_text(
        "@staticmethod\n"  # decorators are not counted
        + function("over", 81)
        + "class C:\n"
        + function("method", 82, "    ")
        + "def outer():\n"
        + function("inner", 81, "    ")
        + "\n" * 300
    )
    assert len((pkg / "ok.py").read_text().splitlines()) == 500
    got = oversized(tmp_path, ("pkg",))
    assert got == {
        ("pkg/sub/big.py", "over"): 81,
        ("pkg/sub/big.py", "C.method"): 82,
        ("pkg/sub/big.py", "outer"): 82,
        ("pkg/sub/big.py", "outer.inner"): 81,
        ("pkg/sub/big.py", None): 1 + 81 + 1 + 82 + 1 + 81 + 300,
    }
