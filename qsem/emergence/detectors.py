"""Online emergence detectors with one small interface.

A :class:`Detector` is fed one step's signal at a time and answers an
:class:`Event` or ``None``::

    det = AdaptiveThreshold(k=5.0, window=50)
    for step, dphi in enumerate(signal):
        event = det.update(step, dphi)

Every detector has ``reset()`` and ``state_dict()`` / ``load_state_dict()``
holding plain data (ints, floats, lists): a run resumed from a checkpoint
continues with the same events as an uninterrupted one. Steps must increase
strictly from one call to the next.

* :class:`FixedThreshold` — ``value > θ``;
* :class:`AdaptiveThreshold` — ``value > median + k · 1.4826 · MAD`` over the
  trailing window of previous values (the current value excluded);
* :class:`L1Detector` — ``‖φ_t − φ_prev‖₁ > θ``, keeping only the previous φ
  (light enough for the edge);
* :class:`QuantumDetector` — a distance ``d = 1 − F`` between successive
  quantum states, from a shot estimate of ``F`` with a confidence interval: fires
  only when the interval clears ``θ`` (``1 − high > θ``), or from an exact distance;
* :class:`ZeroDetector` — never fires (the trivial baseline).

``refractory``: after an event at step ``s`` no event is reported at steps
``s + 1 .. s + refractory`` (the signal is still observed, so histories stay
complete).

>>> det = FixedThreshold(0.5, refractory=2)
>>> [e.step for s, v in enumerate([0, 1, 1, 1, 1]) if (e := det.update(s, v))]
[1, 4]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.checks import check_int, check_real
from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = [
    "MAD_SCALE",
    "AdaptiveThreshold",
    "Detector",
    "Event",
    "FixedThreshold",
    "L1Detector",
    "QuantumDetector",
    "ZeroDetector",
]

#: ``1 / Φ⁻¹(3/4)``: ``MAD_SCALE · MAD`` estimates σ for Gaussian noise.
MAD_SCALE = 1.482602218505602


@dataclass(frozen=True)
class Event:
    """A detection: the ``step`` it fired at, the signal ``value`` there, the detector's name.

    ``low`` / ``high`` bound the value when it comes from an estimate with a
    confidence interval (:class:`QuantumDetector`), else ``None``.
    """

    step: int
    value: float
    detector: str
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "step": self.step,
            "value": self.value,
            "detector": self.detector,
            "low": self.low,
            "high": self.high,
        }


# ----------------------------------------------------------------------------------
# the interface
# ----------------------------------------------------------------------------------


class Detector(ABC):
    """Feed one step's signal with :meth:`update`; get an :class:`Event` or ``None``.

    Subclasses implement :meth:`_observe` (update the internal state with the
    value; return ``(fires, value, low, high)``), :meth:`_clear`, :meth:`_state`
    and :meth:`_load`. The base class checks the step, applies the refractory
    period and keeps the step bookkeeping.
    """

    name: str = "detector"
    #: names this detector had before (their checkpoint states still load)
    former_names: tuple[str, ...] = ()

    def __init__(self, *, refractory: int = 0) -> None:
        self.refractory = check_int("refractory", refractory, 0)
        self._last_step: int | None = None
        self._last_event: int | None = None

    def update(self, step: int, value: Any) -> Event | None:
        """Observe ``value`` at ``step`` (after the previous step); an Event if it fires."""
        step = check_int("step", step)
        if self._last_step is not None and step <= self._last_step:
            raise arg_error("step", f"must increase: got {step} after {self._last_step}")
        fires, v, low, high = self._observe(step, value)
        self._last_step = step
        if not fires:
            return None
        if self._last_event is not None and step - self._last_event <= self.refractory:
            return None
        self._last_event = step
        return Event(step, float(v), self.name, low, high)

    def strength(self, event: Event) -> float:
        """How far ``event`` stands out of this detector's signal (its ``value`` here).

        :class:`~qsem.emergence.pertask.PerTask` compares channels by it
        (``retire="dominant"``); detectors with a baseline report the distance from it.
        """
        return event.value

    def reset(self) -> None:
        """Forget everything seen (the settings stay)."""
        self._last_step = None
        self._last_event = None
        self._clear()

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (JSON-ready) for checkpoints."""
        return {
            "name": self.name,
            "last_step": self._last_step,
            "last_event": self._last_event,
            **self._state(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a detector of the same kind."""
        if not isinstance(d, dict):
            raise arg_error("d", f"expected a dict, got {type(d).__name__}", QsemTypeError)
        if d.get("name") != self.name and d.get("name") not in self.former_names:
            raise arg_error("d", f"a state of {d.get('name')!r}, this detector is {self.name!r}")
        self._last_step = d["last_step"]
        self._last_event = d["last_event"]
        self._load(d)

    @abstractmethod
    def _observe(self, step: int, value: Any) -> tuple[bool, float, float | None, float | None]:
        """Take in the value; whether it fires, the value reported, its interval."""

    def _clear(self) -> None:  # noqa: B027 - stateless detectors have nothing to clear
        """Forget the signal history."""

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, d: dict[str, Any]) -> None:  # noqa: B027 - nothing to restore by default
        """Restore the signal history from :meth:`_state`'s keys."""


class ZeroDetector(Detector):
    """Never fires: the trivial baseline (recall 0, no false alarms)."""

    name = "zero"

    def __init__(self) -> None:
        super().__init__(refractory=0)

    def _observe(self, step, value):
        return False, 0.0, None, None


class FixedThreshold(Detector):
    """Fires when the scalar signal exceeds ``theta``: ``value > θ``.

    Fed ``Δφ = ‖φ_t − φ_{t−1}‖_F`` this is the Frobenius detector, the default one, and
    its name (in :data:`qsem.emergence.DETECTORS`, in run configs and in event records)
    is ``"frobenius"``; the former name ``"fixed"`` is still read from checkpoints.

    >>> FixedThreshold(0.1).update(0, 0.3).value
    0.3
    """

    name = "frobenius"
    former_names = ("fixed",)

    def __init__(self, theta: float, *, refractory: int = 0) -> None:
        super().__init__(refractory=refractory)
        self.theta = check_real("theta", theta)

    def _observe(self, step, value):
        v = check_real("value", value)
        return v > self.theta, v, None, None


class AdaptiveThreshold(Detector):
    """Fires when ``value > median(h) + k · max(1.4826 · MAD(h), min_spread)``.

    ``h`` is the trailing window of the last ``window`` values *before* the
    current one (the current value is excluded, so a jump is not measured
    against itself); ``MAD(h) = median |h − median(h)|``, scaled by
    :data:`MAD_SCALE` ``= 1.4826`` so that ``1.4826 · MAD`` estimates the standard
    deviation of Gaussian noise (``k`` is then in "sigmas"). Nothing fires until
    ``min_history`` values are in the window. Every value (events included)
    enters the window afterwards. ``min_spread`` (default 0) keeps a constant
    history from making every increase an event.

    >>> det = AdaptiveThreshold(k=3, window=4, min_history=4)
    >>> [det.update(s, v) for s, v in enumerate([1.0, 2.0, 1.0, 2.0])] == [None] * 4
    True
    >>> det.threshold()  # median 1.5, MAD 0.5
    3.72390332775840...
    """

    name = "adaptive"

    def __init__(
        self,
        k: float = 5.0,
        window: int = 50,
        min_history: int = 10,
        *,
        refractory: int = 0,
        min_spread: float = 0.0,
    ) -> None:
        super().__init__(refractory=refractory)
        self.k = check_real("k", k, minimum=0.0)
        self.window = check_int("window", window, 1)
        self.min_history = check_int("min_history", min_history, 1)
        if self.min_history > self.window:
            raise arg_error(
                "min_history", f"must be <= window ({self.window}), got {self.min_history}"
            )
        self.min_spread = check_real("min_spread", min_spread, minimum=0.0)
        self._hist: deque[float] = deque(maxlen=self.window)

    def threshold(self) -> float | None:
        """The current threshold (``None`` before ``min_history`` values)."""
        if len(self._hist) < self.min_history:
            return None
        h = np.asarray(self._hist, dtype=np.float64)
        med = float(np.median(h))
        mad = float(np.median(np.abs(h - med)))
        return med + self.k * max(MAD_SCALE * mad, self.min_spread)

    def _observe(self, step, value):
        v = check_real("value", value)
        thr = self.threshold()
        self._hist.append(v)
        return thr is not None and v > thr, v, None, None

    def _clear(self) -> None:
        self._hist.clear()

    def _state(self) -> dict[str, Any]:
        return {"history": list(self._hist)}

    def _load(self, d: dict[str, Any]) -> None:
        self._hist = deque((float(x) for x in d["history"]), maxlen=self.window)


class L1Detector(Detector):
    """Fires when ``‖φ_t − φ_prev‖₁ = Σ |φ_t − φ_prev| > θ`` (sum over all entries).

    Keeps only the previous φ it was fed (one array, float64): light enough for
    the edge. The first call stores φ and never fires; φ must keep its shape.

    >>> det = L1Detector(0.5)
    >>> det.update(0, [0.5, 0.5]) is None
    True
    >>> det.update(1, [0.9, 0.1]).value
    0.8
    """

    name = "l1"

    def __init__(self, theta: float, *, refractory: int = 0) -> None:
        super().__init__(refractory=refractory)
        self.theta = check_real("theta", theta)
        self._prev: np.ndarray | None = None

    def _observe(self, step, value):
        if isinstance(value, torch.Tensor):
            if value.is_complex():
                raise arg_error("value", "expected a real tensor φ, got a complex one")
            arr = value.detach().cpu().to(torch.float64).numpy()
        elif isinstance(value, (np.ndarray, list, tuple)):
            arr = np.asarray(value, dtype=np.float64)
        else:
            raise arg_error(
                "value", f"expected a tensor or array φ, got {type(value).__name__}", QsemTypeError
            )
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise arg_error("value", "φ must be non-empty and finite")
        prev, self._prev = self._prev, arr.copy()
        if prev is None:
            return False, 0.0, None, None
        if prev.shape != arr.shape:
            self._prev = prev
            raise arg_error("value", f"φ has shape {arr.shape}, the previous one {prev.shape}")
        d = float(np.abs(arr - prev).sum())
        return d > self.theta, d, None, None

    def _clear(self) -> None:
        self._prev = None

    def _state(self) -> dict[str, Any]:
        if self._prev is None:
            return {"prev": None, "shape": None}
        return {"prev": self._prev.reshape(-1).tolist(), "shape": list(self._prev.shape)}

    def _load(self, d: dict[str, Any]) -> None:
        if d["prev"] is None:
            self._prev = None
        else:
            self._prev = np.asarray(d["prev"], dtype=np.float64).reshape(d["shape"])


class QuantumDetector(Detector):
    """Fires when the distance ``d = 1 − F`` between successive states provably exceeds θ.

    ``update(step, est)``: ``est`` is an overlap estimate with ``.estimate``,
    ``.low`` and ``.high`` on ``F`` (e.g.
    :func:`qsem.simulators.estimators.estimate_overlap` with ``shots``, an
    ``OverlapEstimate``), one element; the distance interval is
    ``[1 − high, 1 − low]`` and the detector fires only when its lower bound
    clears the threshold, ``1 − high > θ`` — shot noise alone then raises an
    alarm with probability at most ``(1 − confidence) / 2`` per step. The event's
    ``value`` is ``1 − estimate``, its ``low`` / ``high`` the distance interval.
    ``est`` may also be an exact distance (a float or a one-element tensor):
    it fires when ``d > θ``. A batch of estimates (one per probe query) is refused:
    pool it first (``OverlapEstimate.pooled()``: the mean overlap from the pooled
    counts, with its interval).

    >>> from types import SimpleNamespace as NS
    >>> det = QuantumDetector(0.01)
    >>> det.update(0, NS(estimate=0.97, low=0.95, high=0.995)) is None  # 1 - high = 0.005
    True
    >>> det.update(1, NS(estimate=0.95, low=0.93, high=0.97)).low  # 1 - high = 0.03
    0.03...
    """

    name = "quantum"

    def __init__(self, theta: float, *, refractory: int = 0) -> None:
        super().__init__(refractory=refractory)
        self.theta = check_real("theta", theta)

    def _observe(self, step, value):
        if all(hasattr(value, a) for a in ("estimate", "low", "high")):
            n = getattr(value.estimate, "numel", lambda: 1)()
            if n != 1:
                raise arg_error(
                    "value",
                    f"a batch of {n} estimates; pass one (e.g. est.pooled(), the mean overlap "
                    "from the pooled counts)",
                )
            f = check_real("value.estimate", value.estimate)
            lo = check_real("value.low", value.low)
            hi = check_real("value.high", value.high)
            if not lo <= hi:
                raise arg_error("value", f"interval low {lo} > high {hi}")
            d, d_low, d_high = 1.0 - f, 1.0 - hi, 1.0 - lo
            return d_low > self.theta, d, d_low, d_high
        d = check_real("value", value)
        return d > self.theta, d, None, None
