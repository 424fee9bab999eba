"""A self-calibrating online detector: a robust CUSUM in units of the run's own noise.

:class:`SelfCalibratingCUSUM` needs no threshold in the signal's units. Every
value ``x_t`` (``log10 x_t`` with ``log=True``: Δφ spans decades) is turned into
a robust z-score against a reference window of the run's own past values::

    z_t = clip((x_t − median(R)) / max(1.4826 · MAD(R), min_spread), −clip, clip)
    S_t = max(0, S_{t−1} + z_t − drift)          (one-sided upper CUSUM, Page 1954)

and an event fires when ``S_t > h``. ``R`` is the trailing ``window`` values
before ``x_t`` (every value enters it: keeping out the values seen while
``S > 0`` would bias the median down and the scale low, and make false alarms
far more frequent than ``arl`` promises). Nothing fires, and ``S`` stays 0, during a
``warmup`` of values that only fill ``R``; after an event ``S`` restarts at 0 and
``R`` restarts with a new warm-up (the signal's level after a transition is a
new baseline).

The threshold ``h`` comes from a calibration the detector carries, not from
labels: for i.i.d. standard Gaussian ``z`` the in-control average run length of
the CUSUM is Siegmund's approximation

    ARL₀(h, δ) ≈ (exp(2δb) − 2δb − 1) / (2δ²),   b = h + 1.166,  δ = drift,

and ``h`` is the solution of ``ARL₀(h, δ) = arl`` (``arl`` = the wanted mean
steps between false alarms; 10⁴ steps ≈ 0.1 false alarms per 1000 steps). Real
signals are neither Gaussian nor independent; ``clip`` bounds the push of one
outlier to ``clip − drift``. Tunable settings are ``drift``, ``arl``, ``window``,
``warmup``: all in units of the run's own noise or of steps.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.r_[rng.normal(0, 1, 400), 3 + rng.normal(0, 1, 200)]  # a 3σ rise at step 400
>>> det = SelfCalibratingCUSUM(drift=1.0, arl=1e4, window=200, warmup=50, log=False)
>>> [e.step for t, v in enumerate(x) if (e := det.update(t, v))]
[401]
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from qsem.circuits.errors import arg_error

from .detectors import MAD_SCALE, Detector, Event, check_int, check_real

__all__ = ["SelfCalibratingCUSUM", "cusum_arl", "cusum_threshold"]


def cusum_arl(h: float, drift: float) -> float:
    """Siegmund's in-control ARL of the upper CUSUM for i.i.d. N(0, 1) (module doc).

    >>> round(cusum_arl(4.0, 0.5))  # the exact ARL (Montgomery's table) is 336
    338
    """
    b = 2.0 * drift * (h + 1.166)
    return (math.exp(b) - b - 1.0) / (2.0 * drift * drift)


def cusum_threshold(arl: float, drift: float) -> float:
    """The ``h`` with ``cusum_arl(h, drift) = arl`` (bisection; ``arl`` > 1, ``drift`` > 0).

    >>> round(cusum_threshold(338.1, 0.5), 2)
    4.0
    """
    arl = check_real("arl", arl, minimum=1.0, strict=True)
    drift = check_real("drift", drift, minimum=0.0, strict=True)
    lo, hi = 0.0, 1.0
    while cusum_arl(hi, drift) < arl:
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cusum_arl(mid, drift) < arl else (lo, mid)
    return 0.5 * (lo + hi)


class SelfCalibratingCUSUM(Detector):
    """Robust upper CUSUM on z-scores of the run's own signal; ``h`` from a target ARL.

    ``drift`` (δ, in robust sigmas): the smallest sustained rise worth an alarm
    is about ``2δ``; ``arl``: wanted mean steps between false alarms under the
    Gaussian null (sets ``h``, or give ``h`` directly); ``window``: reference
    values kept; ``warmup``: values needed in the reference before ``S`` moves
    (at the start and after every event); ``clip``: bound on ``|z|``;
    ``min_spread``: floor of the scale (in the transformed units; with ``log`` a
    relative change: 0.01 ≈ 2.3 %); ``log``: use ``log10 x`` (values floored at
    1e-12); ``direction``: ``"up"`` watches for a rise, ``"down"`` for a fall
    (the CUSUM of ``−z``: e.g. a task's output entropy falling as it emerges).
    """

    name = "cusum"

    def __init__(
        self,
        drift: float = 1.0,
        arl: float = 1e4,
        window: int = 500,
        warmup: int = 100,
        *,
        h: float | None = None,
        clip: float = 4.0,
        min_spread: float = 1e-6,
        log: bool = True,
        direction: str = "up",
        refractory: int = 0,
    ) -> None:
        super().__init__(refractory=refractory)
        if direction not in ("up", "down"):
            raise arg_error("direction", f"'up' or 'down', got {direction!r}")
        self.direction = direction
        self.drift = check_real("drift", drift, minimum=0.0, strict=True)
        self.arl = check_real("arl", arl, minimum=1.0, strict=True)
        self.h = (
            cusum_threshold(self.arl, self.drift)
            if h is None
            else check_real("h", h, minimum=0.0, strict=True)
        )
        self.window = check_int("window", window, 2)
        self.warmup = check_int("warmup", warmup, 2)
        if self.warmup > self.window:
            raise arg_error("warmup", f"must be <= window ({self.window}), got {self.warmup}")
        self.clip = check_real("clip", clip, minimum=0.0, strict=True)
        self.min_spread = check_real("min_spread", min_spread, minimum=0.0, strict=True)
        self.log = bool(log)
        self._ref: deque[float] = deque(maxlen=self.window)
        self._s = 0.0
        self._shift = 0.0

    @property
    def statistic(self) -> float:
        """The current CUSUM value ``S``."""
        return self._s

    def baseline(self) -> tuple[float, float] | None:
        """``(median, scale)`` of the reference, or ``None`` during the warm-up."""
        if len(self._ref) < self.warmup:
            return None
        r = np.asarray(self._ref, dtype=np.float64)
        med = float(np.median(r))
        return med, max(MAD_SCALE * float(np.median(np.abs(r - med))), self.min_spread)

    def _observe(self, step, value):
        v = check_real("value", value)
        if self.log:
            v = math.log10(max(v, 1e-12))
        base = self.baseline()
        if base is None:
            self._ref.append(v)
            self._shift = 0.0
            return False, v, None, None
        sign = 1.0 if self.direction == "up" else -1.0
        self._shift = sign * (v - base[0])
        z = self._shift / base[1]
        z = min(max(z, -self.clip), self.clip)
        self._s = max(0.0, self._s + z - self.drift)
        if self._s > self.h:
            self._s = 0.0
            self._ref.clear()
            return True, z, None, None
        self._ref.append(v)
        return False, z, None, None

    def strength(self, event: Event) -> float:
        """The last value's distance from the reference median, in the watched direction and
        the transformed units (decades with ``log``, else the signal's units; 0 in the
        warm-up): a channel's own move, which :class:`~qsem.emergence.pertask.PerTask`
        compares across channels. Read it right after the event fired."""
        return self._shift

    def _clear(self) -> None:
        self._ref.clear()
        self._s = 0.0
        self._shift = 0.0

    def _state(self) -> dict[str, Any]:
        return {"reference": list(self._ref), "s": self._s, "shift": self._shift}

    def _load(self, d: dict[str, Any]) -> None:
        self._ref = deque((float(x) for x in d["reference"]), maxlen=self.window)
        self._s = float(d["s"])
        self._shift = float(d.get("shift", 0.0))
