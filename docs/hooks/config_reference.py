"""mkdocs hook: the config reference page, generated from the code at build time.

Every registered experiment (:data:`qsem.experiments.EXPERIMENTS`) gets a table
of its config keys — dotted name, type, default and meaning — from
:func:`qsem.runner.config.describe_keys`, which reads the ``#:`` comment above
each config dataclass field. The page ``config.md`` exists only in the built
site, so it cannot drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "config.md"

INTRO = """# Config reference

Every experiment that `qsem run NAME` knows takes the config keys below.
Set them with `key=value` on the command line (dots reach nested keys:
`distill.temperature=3`), in a `.json` or `.toml` file given with `--config`, or
programmatically through `qsem.runner.run_experiment(..., overrides=[...])`.
Lists are written `1,2,3` or `[1, 2, 3]`; `none` clears an optional key.
`qsem run NAME --help` prints the same table in the terminal.
This page is generated from the code when the documentation is built.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    return "`" + _cell(json.dumps(value, ensure_ascii=False)) + "`"


def render() -> str:
    """The whole page as Markdown."""
    from qsem.experiments import EXPERIMENTS
    from qsem.runner.config import describe_keys

    names = sorted(EXPERIMENTS)
    out = [INTRO, ""]
    out += ["| experiment | what it does |", "|---|---|"]
    out += [f"| [`{n}`](#{n}) | {_cell(EXPERIMENTS[n].description)} |" for n in names]
    for name in names:
        exp = EXPERIMENTS[name]
        out += ["", f"## `{name}` {{#{name}}}", "", _cell(exp.description), ""]
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for doc in describe_keys(exp.defaults):
            kind, default, meaning = _cell(doc.type), _default(doc.default), _cell(doc.help)
            out.append(f"| `{doc.key}` | `{kind}` | {default} | {meaning} |")
    return "\n".join(out) + "\n"


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add the generated ``config.md`` to the site's files."""
    files.append(File.generated(config, PAGE, content=render()))
    return files
