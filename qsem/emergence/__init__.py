"""Emergence detection: detectors, change-point baselines, scores, E_pot.

* :mod:`~qsem.emergence.detectors` — :class:`Detector` (feed one step's signal,
  get an :class:`Event` or ``None``), :class:`FixedThreshold`,
  :class:`AdaptiveThreshold`, :class:`L1Detector`, :class:`QuantumDetector`,
  :class:`ZeroDetector`;
* :mod:`~qsem.emergence.calibrated` — :class:`SelfCalibratingCUSUM` (thresholds in
  units of the run's own noise, from a target false-alarm rate);
* :mod:`~qsem.emergence.pertask` — :class:`PerTask` (one detector per task's
  signal, an event when any fires) and :func:`per_task_cusum`;
* :mod:`~qsem.emergence.changepoint` — :class:`BOCPD` (online Bayesian change
  points) and :func:`offline_changepoints` (ruptures PELT / binary segmentation);
* :mod:`~qsem.emergence.scoring` — :func:`score_events` (recall, false alarms per
  1000 steps, lags, precision, F1) and :func:`epot_auroc`;
* :mod:`~qsem.emergence.potential` — :class:`EmergencePotential`.

The quantum estimators of the overlap between successive states live in
:mod:`qsem.simulators.estimators` (:func:`~qsem.simulators.estimators.estimate_overlap`).
"""

from __future__ import annotations

import warnings

from .calibrated import SelfCalibratingCUSUM
from .changepoint import BOCPD, offline_changepoints
from .detectors import (
    AdaptiveThreshold,
    Detector,
    Event,
    FixedThreshold,
    L1Detector,
    QuantumDetector,
    ZeroDetector,
)
from .pertask import PerTask, per_task_cusum
from .potential import EmergencePotential
from .scoring import epot_auroc, score_events


class _Registry(dict[str, type[Detector]]):
    """Name -> detector class; a former name still finds its class, with a warning."""

    def __missing__(self, key: str) -> type[Detector]:
        for cls in self.values():
            if key in cls.former_names:
                warnings.warn(
                    f"detector name {key!r} is deprecated: use {cls.name!r}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return cls
        raise KeyError(key)


#: Online detectors by name (``Detector.name``): the names run configurations use
#: (``distill.detectors``) and events carry.
DETECTORS: dict[str, type[Detector]] = _Registry(
    (cls.name, cls)
    for cls in (
        FixedThreshold,
        AdaptiveThreshold,
        L1Detector,
        QuantumDetector,
        ZeroDetector,
        BOCPD,
        SelfCalibratingCUSUM,
    )
)

__all__ = [
    "BOCPD",
    "DETECTORS",
    "AdaptiveThreshold",
    "Detector",
    "EmergencePotential",
    "Event",
    "FixedThreshold",
    "L1Detector",
    "PerTask",
    "QuantumDetector",
    "SelfCalibratingCUSUM",
    "ZeroDetector",
    "epot_auroc",
    "offline_changepoints",
    "per_task_cusum",
    "score_events",
]
