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


#: which of the channels that fire together ``once=True`` retires (:class:`PerTask`)
RETIRE = ("all", "dominant")


class PerTask(Detector):
    """One detector per channel of a vector signal; fires when any channel fires.

    ``detectors``: one per channel (their own ``refractory`` applies inside each
    channel; the ``refractory`` given here applies to the events reported).
    ``update(step, values)`` takes ``len(detectors)`` numbers.

    ``once=True``: a channel that has fired is *retired* (a task emerges once; its
    signal after that is no longer watched). Which channels, and for how long:

    * ``retire="all"``: every channel that fires, also when its event falls inside
      the refractory period of another channel's (tasks that drop together count
      as one transition, as :func:`~qsem.emergence.benchmark.merge_starts` counts
      them), so a run raises at most one event per channel;
    * ``retire="dominant"``: the channels that fire from a reported event at step
      ``s`` to ``s + refractory`` form a *group*; when the group closes only its
      *dominant* channel is retired — the one whose own move is largest,
      :meth:`Detector.strength` (for :class:`SelfCalibratingCUSUM`, the distance of
      its value from its own reference median) — and the others stay armed (their
      detectors have restarted on the new level). A shared first drop that moves
      every task's outputs then retires the task that drove it, not all of them.
      ``dominance=ρ`` < 1 retires every channel of the group whose strength is at
      least ρ times the largest (tasks that truly drop together);
    * ``rearm=q`` (steps, 0: never): a retired channel is still fed, muted, and is
      armed again once its own detector has stayed silent for ``q`` steps since it
      last fired (a quiet period: its signal has settled on a new level).
    """

    name = "per-task"

    def __init__(
        self,
        detectors: Sequence[Detector],
        *,
        once: bool = False,
        refractory: int = 0,
        retire: str = "all",
        rearm: int = 0,
        dominance: float = 1.0,
    ) -> None:
        super().__init__(refractory=refractory)
        if isinstance(detectors, Detector) or not isinstance(detectors, Sequence):
            raise arg_error("detectors", "expected a sequence of Detectors", QsemTypeError)
        if not detectors or not all(isinstance(d, Detector) for d in detectors):
            raise arg_error("detectors", "expected one or more Detectors", QsemTypeError)
        if len({id(d) for d in detectors}) != len(detectors):
            raise arg_error("detectors", "each channel needs its own Detector instance")
        if retire not in RETIRE:
            raise arg_error("retire", f"one of {list(RETIRE)}, got {retire!r}")
        self.rearm = check_int("rearm", rearm, 0)
        self.dominance = check_real("dominance", dominance, minimum=0.0)
        if self.dominance > 1.0:
            raise arg_error("dominance", f"must lie in [0, 1], got {dominance}")
        if not once and (retire != "all" or self.rearm):
            raise arg_error("once", "retire='dominant' and rearm > 0 need once=True")
        self.channels: list[Detector] = list(detectors)
        self.once = bool(once)
        self.retire = retire
        n = len(self.channels)
        #: per channel: is it retired (``once=True``: not reported; without ``rearm`` not fed)
        self.done: list[bool] = [False] * n
        #: the channels that fired at the last step (empty when none did)
        self.fired: list[int] = []
        self._last_fire: list[int | None] = [None] * n
        self._group_end: int | None = None
        self._pending: dict[int, tuple[float, int]] = {}  # channel -> (strength, step)

    def _observe(self, step, value):
        v = np.asarray(value, dtype=np.float64).reshape(-1)
        if v.shape[0] != len(self.channels):
            raise arg_error("value", f"expected {len(self.channels)} channel values, got {v.size}")
        if self._group_end is not None and step > self._group_end:
            self._close_group()
        self.fired = []
        strength: dict[int, float] = {}
        for c, d in enumerate(self.channels):
            if self.once and self.done[c] and not self.rearm:
                continue  # retired for good: no longer fed
            e = d.update(step, float(v[c]))
            if self.done[c]:  # retired and muted; its own events restart the quiet period
                last = self._last_fire[c]
                if e is not None or last is None:
                    self._last_fire[c] = step
                elif step - last >= self.rearm:
                    self.done[c] = False
            elif e is not None:
                self.fired.append(c)
                strength[c] = d.strength(e)
        self._retire(step, strength)
        if not self.fired:
            return False, 0.0, None, None
        return True, max(float(v[c]) for c in self.fired), None, None

    def _retire(self, step: int, strength: dict[int, float]) -> None:
        if not self.once or not self.fired:
            return
        if self.retire == "all":
            for c in self.fired:
                self.done[c] = True
                self._last_fire[c] = step
            return
        if self._group_end is None:  # the first firing opens a group (as the refractory does)
            self._group_end = step + self.refractory
        for c in self.fired:
            old = self._pending.get(c)
            if old is None or strength[c] > old[0]:
                self._pending[c] = (strength[c], step)

    def _close_group(self) -> None:
        """Retire the group's dominant channels: strength >= dominance x the largest."""
        if self._pending:
            top = max(s for s, _ in self._pending.values())
            for c, (s, t) in self._pending.items():
                if s >= top or (top > 0 and s >= self.dominance * top):
                    self.done[c] = True
                    self._last_fire[c] = t
        self._pending = {}
        self._group_end = None

    def _clear(self) -> None:
        n = len(self.channels)
        self.fired = []
        self.done = [False] * n
        self._last_fire = [None] * n
        self._group_end = None
        self._pending = {}
        for d in self.channels:
            d.reset()

    def _state(self) -> dict[str, Any]:
        return {
            "channels": [d.state_dict() for d in self.channels],
            "fired": list(self.fired),
            "done": list(self.done),
            "last_fire": list(self._last_fire),
            "group_end": self._group_end,
            "pending": [[c, s, t] for c, (s, t) in sorted(self._pending.items())],
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
        n = len(self.channels)
        self._last_fire = [None if x is None else int(x) for x in d.get("last_fire", [None] * n)]
        g = d.get("group_end")
        self._group_end = None if g is None else int(g)
        self._pending = {int(c): (float(s), int(t)) for c, s, t in d.get("pending", [])}


def per_task_cusum(
    tasks: int,
    drift: float = 1.0,
    arl: float = 1e4,
    window: int = 500,
    warmup: int = 100,
    *,
    once: bool = False,
    refractory: int = 0,
    retire: str = "all",
    rearm: int = 0,
    dominance: float = 1.0,
    **kw: Any,
) -> PerTask:
    """:class:`PerTask` of ``tasks`` :class:`SelfCalibratingCUSUM` channels at ``tasks · arl``.

    ``arl`` is the wanted mean steps between false alarms of the union (module
    doc); ``once``, ``retire``, ``rearm``, ``dominance``: see :class:`PerTask`; ``kw`` go to every
    channel (``clip``, ``min_spread``, ``log``, ``direction``).
    """
    n = check_int("tasks", tasks, 1)
    arl = check_real("arl", arl, minimum=1.0, strict=True)
    chans = [SelfCalibratingCUSUM(drift, n * arl, window, warmup, **kw) for _ in range(n)]
    return PerTask(
        chans, once=once, refractory=refractory, retire=retire, rearm=rearm, dominance=dominance
    )
