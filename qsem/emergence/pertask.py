"""Per-task detection: one detector per task's probe signal, an event when any of them fires.

One probe-wide Δφ blurs the drops of subtasks that emerge at different times:
after the first drop the pooled signal stays high and a later task's drop does
not stand out of it. :class:`PerTask` instead watches a *vector* signal — one
value per task, e.g. the Δφ of each task's slice of the probe batch
(:class:`qsem.narrow.transitions.ProbeSignals` with ``tasks=T``) — with one
detector per channel, each calibrated on its own channel's history, and reports
an event at step ``t`` when at least one channel fires there (outside the
shared ``refractory``). The event's ``value`` is the largest value among the
channels that fired; :attr:`PerTask.fired` names those channels.

With ``T`` channels the run-wise false-alarm rate is up to ``T`` times a
channel's. :func:`per_task_cusum` therefore gives every channel's
:class:`~qsem.emergence.calibrated.SelfCalibratingCUSUM` the target run length
``T · arl`` (a Bonferroni split), so that the union keeps about one false alarm
per ``arl`` steps under the detector's own null calibration — still a setting in
units of the run's own noise and of steps, never of a family's labels.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.exp(rng.normal(0, 0.1, (900, 3)))  # three channels of noise around 1
>>> x[600:, 2] *= 5  # channel 2 rises at step 600
>>> det = per_task_cusum(3, drift=1.0, arl=1e4, window=300, warmup=100)
>>> [(e.step, det.fired) for t, v in enumerate(x) if (e := det.update(t, v))]
[(601, [2])]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qsem.circuits.errors import QsemTypeError, arg_error

from .calibrated import SelfCalibratingCUSUM
from .detectors import Detector, check_int, check_real

__all__ = ["PerTask", "per_task_cusum"]


class PerTask(Detector):
    """One detector per channel of a vector signal; fires when any channel fires.

    ``detectors``: one per channel (their own ``refractory`` applies inside each
    channel; the ``refractory`` given here applies to the events reported).
    ``update(step, values)`` takes ``len(detectors)`` numbers. ``once=True``:
    a channel that has fired is retired (a task emerges once; its signal after
    that is no longer watched), also when its event falls inside the refractory
    period of another channel's (tasks that drop together count as one
    transition, as :func:`~qsem.emergence.benchmark.merge_starts` counts them), so
    a run raises at most one event per channel.
    """

    name = "per-task"

    def __init__(
        self, detectors: Sequence[Detector], *, once: bool = False, refractory: int = 0
    ) -> None:
        super().__init__(refractory=refractory)
        if isinstance(detectors, Detector) or not isinstance(detectors, Sequence):
            raise arg_error("detectors", "expected a sequence of Detectors", QsemTypeError)
        if not detectors or not all(isinstance(d, Detector) for d in detectors):
            raise arg_error("detectors", "expected one or more Detectors", QsemTypeError)
        if len({id(d) for d in detectors}) != len(detectors):
            raise arg_error("detectors", "each channel needs its own Detector instance")
        self.channels: list[Detector] = list(detectors)
        self.once = bool(once)
        #: per channel: has it fired (``once=True``: it is no longer fed)
        self.done: list[bool] = [False] * len(self.channels)
        #: the channels that fired at the last step (empty when none did)
        self.fired: list[int] = []

    def _observe(self, step, value):
        v = np.asarray(value, dtype=np.float64).reshape(-1)
        if v.shape[0] != len(self.channels):
            raise arg_error("value", f"expected {len(self.channels)} channel values, got {v.size}")
        events = [
            (c, d.update(step, float(v[c])))
            for c, d in enumerate(self.channels)
            if not (self.once and self.done[c])
        ]
        self.fired = [c for c, e in events if e is not None]
        for c in self.fired:  # once: a channel that fires is retired, reported or not
            self.done[c] = True
        if not self.fired:
            return False, 0.0, None, None
        return True, max(float(v[c]) for c in self.fired), None, None

    def _clear(self) -> None:
        self.fired = []
        self.done = [False] * len(self.channels)
        for d in self.channels:
            d.reset()

    def _state(self) -> dict[str, Any]:
        return {
            "channels": [d.state_dict() for d in self.channels],
            "fired": list(self.fired),
            "done": list(self.done),
        }

    def _load(self, d: dict[str, Any]) -> None:
        if len(d["channels"]) != len(self.channels):
            raise arg_error(
                "d", f"a state of {len(d['channels'])} channels, not {len(self.channels)}"
            )
        for det, s in zip(self.channels, d["channels"], strict=True):
            det.load_state_dict(s)
        self.fired = [int(c) for c in d["fired"]]
        self.done = [bool(x) for x in d["done"]]


def per_task_cusum(
    tasks: int,
    drift: float = 1.0,
    arl: float = 1e4,
    window: int = 500,
    warmup: int = 100,
    *,
    once: bool = False,
    refractory: int = 0,
    **kw: Any,
) -> PerTask:
    """:class:`PerTask` of ``tasks`` :class:`SelfCalibratingCUSUM` channels at ``tasks · arl``.

    ``arl`` is the wanted mean steps between false alarms of the union (module
    doc); ``once``: see :class:`PerTask`; ``kw`` go to every channel (``clip``,
    ``min_spread``, ``log``, ``direction``).
    """
    n = check_int("tasks", tasks, 1)
    arl = check_real("arl", arl, minimum=1.0, strict=True)
    chans = [SelfCalibratingCUSUM(drift, n * arl, window, warmup, **kw) for _ in range(n)]
    return PerTask(chans, once=once, refractory=refractory)
