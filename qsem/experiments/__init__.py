"""The registry of experiments that ``qsem run NAME`` knows.

Each entry is an :class:`~qsem.runner.Experiment` imported from its module;
add a new experiment by importing its ``EXPERIMENT`` object here and listing it
in ``_ALL``. Names starting with ``_`` are runnable but hidden from ``qsem list``.
"""

from __future__ import annotations

from qsem.errors import UnknownExperimentError
from qsem.runner import Experiment

from . import (
    demo,
    emergence_cmsp,
    emergence_quantum,
    emergence_transfer,
    kleene,
    narrow_curriculum,
    narrow_digits,
    narrow_pruning,
    narrow_semantic,
    noisy_training,
    personalise,
    profiles,
    qutrit_noise,
    qutrit_vs_classical,
    self_distill,
    self_distill_curve,
    story,
    swap_demo,
)

__all__ = ["EXPERIMENTS", "UnknownExperimentError", "get_experiment", "visible_experiments"]

_ALL: tuple[Experiment, ...] = (
    demo.EXPERIMENT,
    emergence_cmsp.EXPERIMENT,
    emergence_quantum.EXPERIMENT,
    emergence_transfer.EXPERIMENT,
    narrow_curriculum.EXPERIMENT,
    narrow_pruning.EXPERIMENT,
    narrow_digits.EXPERIMENT,
    narrow_semantic.EXPERIMENT,
    noisy_training.EXPERIMENT,
    kleene.EXPERIMENT,
    personalise.EXPERIMENT,
    profiles.EXPERIMENT,
    swap_demo.EXPERIMENT,
    qutrit_noise.EXPERIMENT,
    qutrit_vs_classical.EXPERIMENT,
    self_distill.EXPERIMENT,
    self_distill_curve.EXPERIMENT,
    story.EXPERIMENT,
)

#: name -> experiment, for every registered experiment.
EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in _ALL}
if len(EXPERIMENTS) != len(_ALL):  # pragma: no cover - a registration mistake
    raise RuntimeError("two registered experiments share a name")


def visible_experiments() -> list[Experiment]:
    """The experiments ``qsem list`` shows, by name."""
    return [EXPERIMENTS[n] for n in sorted(EXPERIMENTS) if not EXPERIMENTS[n].hidden]


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name raises an error listing the known ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        known = ", ".join(e.name for e in visible_experiments()) or "(none)"
        raise UnknownExperimentError(
            f"unknown experiment {name!r}; known experiments: {known} (see 'qsem list')"
        ) from None
