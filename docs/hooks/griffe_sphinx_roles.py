"""Griffe extension: Sphinx roles in docstrings rendered as inline code.

qsem's docstrings are Google style with reST inline markup in places
(``:class:`~qsem.tensors.Omega```, ``:func:`pi_edge```, double-backtick
literals). Markdown has no roles, so this extension rewrites
``:role:`~a.b.c``` to ```c``` and ``:role:`a.b.c``` to ```a.b.c``` before the
docstrings are parsed (double backticks are already code in Markdown), and
fences the doctest examples as ``pycon`` code blocks.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`(~?)([^`]+)`")


def _replace(match: re.Match[str]) -> str:
    tilde, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def strip_roles(text: str) -> str:
    """``:class:`~a.B``` -> ```B```; other text unchanged."""
    return _ROLE.sub(_replace, text)


def fence_doctests(text: str) -> str:
    """Wrap each doctest block (``>>>`` lines and their output, up to a blank line)
    in a ``pycon`` code fence, so Markdown does not read ``[a][b]`` in it as a link."""
    out: list[str] = []
    in_block = in_fence = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and not in_block and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            in_block = True
        elif in_block and not stripped:
            out.append(f"{indent}```")
            in_block = False
        out.append(line)
    if in_block:
        out.append(f"{indent}```")
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in every docstring griffe loads."""

    def _fix(self, obj: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(strip_roles(obj.docstring.value))

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        self._fix(obj)

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        self._fix(obj)
