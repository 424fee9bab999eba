"""mkdocs hook: the API reference pages, generated at build time.

One page per public package (``api/<name>.md``): the package's own ``__all__``
(rendered by mkdocstrings from the docstrings), then a section for each public
submodule listing the names of its ``__all__`` that the package does not
re-export (e.g. ``qsem.simulators.similarity.swap_test_circuits``). A new
submodule or a new public name therefore appears without editing any page.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from mkdocs.structure.files import File, Files

#: page name -> (package, one-line summary with a link to its guide page)
PAGES: dict[str, tuple[str, str]] = {
    "circuits": (
        "qsem.circuits",
        "The circuit IR, gates, channels, observables, parameters, circuit templates and "
        "the interchange formats. Guide: [Circuits](../circuits.md).",
    ),
    "simulators": (
        "qsem.simulators",
        "The torch engine, measurements, state similarity and overlap estimators, the Aer "
        "and PennyLane backends and the autograd bridge. Guides: "
        "[Simulators](../simulators.md), [Similarity](../similarity.md).",
    ),
    "tensors": (
        "qsem.tensors",
        "The semantic tensors φ, Φ, Ψ, Λ, Ω and the maps between them. "
        "Guide: [Semantic tensors](../tensors.md).",
    ),
    "layers": (
        "qsem.layers",
        "The `torch.nn.Module`s of the hierarchy and the readout heads. "
        "Guide: [Semantic model](../model.md).",
    ),
    "models": (
        "qsem.models",
        "The chained semantic model and its profiles. Guide: [Semantic model](../model.md).",
    ),
    "distill": (
        "qsem.distill",
        "Self-distillation with emergence detection. Guide: [Self-distillation](../distill.md).",
    ),
    "emergence": (
        "qsem.emergence",
        "Emergence detectors, change-point baselines, the emergence potential and their "
        "scoring. Guide: [Emergence detection](../emergence.md).",
    ),
    "edge": (
        "qsem.edge",
        "Per-user history in SQLite, personal readings and small models per user. "
        "Guide: [Edge personalisation](../edge.md).",
    ),
    "report": (
        "qsem.report",
        "The self-contained report.html of a run and the comparison of runs. "
        "Guide: [Reports and run safety](../reports.md).",
    ),
    "narrow": (
        "qsem.narrow",
        "Narrowing: CMSP, MLP ensembles, pruning, the group lasso, distillation. "
        "Guide: [Narrowing](../narrow.md).",
    ),
    "runner": (
        "qsem.runner",
        "Experiment configs, run directories, metrics, checkpoints and resume. Guides: "
        "[Runner](../runner.md), [Config reference](../config.md).",
    ),
    "sweep": (
        "qsem.sweep",
        "Sweeps over seeds and grids: trials, executors, the ledger and the summary. "
        "Guide: [Sweeps](../sweeps.md).",
    ),
    "stats": (
        "qsem.stats",
        "Statistics across seeds: means, bootstrap intervals and paired tests. "
        "Guide: [Sweeps](../sweeps.md).",
    ),
    "truth": (
        "qsem.truth",
        "Three-valued truth: Kleene's logic, its qutrit states, gates and circuits. "
        "Guide: [Truth states](../truth.md).",
    ),
    "tasks": (
        "qsem.tasks",
        "Generated tasks: the three-valued Kleene queries and the three-class tasks. "
        "Guide: [Semantic model](../model.md).",
    ),
    "training": (
        "qsem.training",
        "The one training loop: optimiser steps with hooks for logging, evaluation, probes "
        "and checkpoints; the one home of optimisers and learning-rate schedules. "
        "Guide: [Runner](../runner.md).",
    ),
}


def _public(module: Any) -> list[str]:
    return [str(n) for n in getattr(module, "__all__", [])]


def _defined_in(module: Any, name: str) -> bool:
    """False for a class or function that ``module`` only imports (it is documented at
    its home); constants count as the module's own."""
    obj = getattr(module, name, None)
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj.__module__ == module.__name__
    return True


def render(package: str, summary: str) -> str:
    """The Markdown of one API page."""
    pkg = importlib.import_module(package)
    out = [f"# `{package}`", "", summary, "", f"::: {package}", ""]
    if not hasattr(pkg, "__path__"):
        return "\n".join(out)
    exported = set(_public(pkg))
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        sub = importlib.import_module(name)
        own = [n for n in _public(sub) if n not in exported and _defined_in(sub, n)]
        if not own:
            continue
        out += [f"## `{name}`", "", f"::: {name}", "    options:", "      heading_level: 3"]
        out += ["      members:"]
        out += [f'        - "{n}"' for n in own]  # quoted: YAML reads ON, NO, ... as bools
        out.append("")
    return "\n".join(out)


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Add ``api/<name>.md`` for every package of :data:`PAGES`."""
    for page, (package, summary) in PAGES.items():
        files.append(File.generated(config, f"api/{page}.md", content=render(package, summary)))
    return files
