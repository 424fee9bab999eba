"""Scoring detectors against known transitions, and E_pot as a forecaster.

:func:`score_events` — transition ``i`` starting at step ``s_i`` is *detected*
when an event lies in its window ``[s_i − before, s_i + max_lag]``. Matching is
one-to-one and greedy in order of the starts: each transition takes the first
event in its window not already taken by an earlier transition. Then

* ``recall`` = detected transitions / transitions (NaN without transitions);
* ``lag`` of a detected transition = (its matched event) − ``s_i`` (negative
  when the event precedes the start, down to ``−before``); ``median_lag`` and
  ``p90_lag`` (NumPy's linear-interpolation percentile) over the detected ones
  (NaN when none);
* ``false_alarms`` = events inside no transition's window;
  ``false_alarms_per_1000`` = ``1000 · false_alarms / n_steps``;
* ``precision`` = matched events / events (extra events inside a window are not
  false alarms but lower the precision; 0 without events); ``f1`` = harmonic
  mean of precision and recall (0 when both are 0).

:func:`epot_auroc` — step ``t`` is labelled positive when a transition starts
in ``(t, t + horizon]``. Steps inside a transition are dropped: from a start
``s`` up to its end (``ends``) or, without ends, for ``horizon`` steps
(``[s, s + horizon)``) — there the transition is under way and is no longer a
forecast. The AUROC (``sklearn.metrics.roc_auc_score``) of E_pot against the
labels on the remaining steps: 1 for a perfect forecaster, 0.5 for a constant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qsem.checks import check_int
from qsem.circuits.errors import QsemTypeError, arg_error

from .detectors import Event

__all__ = ["epot_auroc", "score_events"]


def _steps(name: str, values: Any) -> list[int]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise arg_error(name, f"expected a sequence of steps, got {values!r}", QsemTypeError)
    out = []
    for i, v in enumerate(values):
        if isinstance(v, Event):
            v = v.step
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(check_int(f"{name}[{i}]", v))
    return out


def score_events(
    event_steps: Sequence[int] | Sequence[Event],
    transition_starts: Sequence[int],
    n_steps: int,
    *,
    max_lag: int,
    before: int = 0,
) -> dict[str, Any]:
    """Recall, false alarms per 1000 steps, lags, precision and F1 (see the module doc).

    ``event_steps``: steps (or :class:`Event` objects) of the detections;
    ``transition_starts``: the true starts; ``n_steps``: the length of the run.

    >>> r = score_events([105, 300], [100, 500], 1000, max_lag=50)
    >>> r["recall"], r["false_alarms"], r["median_lag"], r["precision"]
    (0.5, 1, 5.0, 0.5)
    """
    events = sorted(_steps("event_steps", event_steps))
    starts = sorted(_steps("transition_starts", transition_starts))
    n_steps = check_int("n_steps", n_steps, 1)
    max_lag = check_int("max_lag", max_lag, 0)
    before = check_int("before", before, 0)
    used = [False] * len(events)
    lags: list[int] = []
    detected: list[bool] = []
    for s in starts:
        hit = None
        for j, e in enumerate(events):
            if not used[j] and s - before <= e <= s + max_lag:
                hit = j
                break
        detected.append(hit is not None)
        if hit is not None:
            used[hit] = True
            lags.append(events[hit] - s)
    in_window = [any(s - before <= e <= s + max_lag for s in starts) for e in events]
    false_alarms = sum(not w for w in in_window)
    n_matched = len(lags)
    recall = n_matched / len(starts) if starts else math.nan
    precision = n_matched / len(events) if events else 0.0
    if math.isnan(recall):
        f1 = math.nan
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "false_alarms": false_alarms,
        "false_alarms_per_1000": 1000.0 * false_alarms / n_steps,
        "median_lag": float(np.median(lags)) if lags else math.nan,
        "p90_lag": float(np.percentile(lags, 90)) if lags else math.nan,
        "lags": lags,
        "detected": detected,
        "n_events": len(events),
        "n_transitions": len(starts),
        "n_matched": n_matched,
    }


def epot_labels(
    n_steps: int,
    transition_starts: Sequence[int],
    horizon: int,
    ends: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``(n_steps,)`` of "a transition starts in (t, t + horizon]" and the kept mask."""
    starts = _steps("transition_starts", transition_starts)
    horizon = check_int("horizon", horizon, 1)
    y = np.zeros(n_steps, dtype=bool)
    keep = np.ones(n_steps, dtype=bool)
    if ends is not None:
        ends_l = _steps("ends", ends)
        if len(ends_l) != len(starts):
            raise arg_error("ends", f"need one end per start ({len(starts)}), got {len(ends_l)}")
    for i, s in enumerate(starts):
        y[max(0, s - horizon) : max(0, s)] = True
        stop = (ends_l[i] + 1) if ends is not None else s + horizon
        keep[max(0, s) : max(0, stop)] = False
    return y, keep


def epot_auroc(
    e_pot: Sequence[float] | np.ndarray,
    transition_starts: Sequence[int],
    horizon: int,
    *,
    ends: Sequence[int] | None = None,
    steps: Sequence[int] | None = None,
) -> float:
    """AUROC of E_pot as a forecaster of "a transition starts within the next ``horizon`` steps".

    ``e_pot[i]`` is the value at step ``i`` (or at ``steps[i]``, for a signal
    logged every k steps; labels are then computed on the step grid and read at
    those steps). Steps inside transitions are dropped (module doc). Raises when
    the kept steps hold only one class.

    >>> epot_auroc([0, 0, 1, 1, 0, 0, 0, 0], [4], horizon=2)
    1.0
    """
    from sklearn.metrics import roc_auc_score

    try:
        x = np.asarray(e_pot, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise arg_error("e_pot", "expected a sequence of numbers", QsemTypeError) from None
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise arg_error("e_pot", "must be non-empty and finite")
    if steps is None:
        idx = np.arange(len(x))
    else:
        idx = np.asarray(_steps("steps", steps))
        if len(idx) != len(x) or np.any(np.diff(idx) <= 0) or idx[0] < 0:
            raise arg_error("steps", "need one increasing step >= 0 per value of e_pot")
    y, keep = epot_labels(int(idx[-1]) + 1, transition_starts, horizon, ends)
    mask = keep[idx]
    labels = y[idx][mask]
    if labels.size == 0 or labels.all() or not labels.any():
        raise arg_error(
            "transition_starts",
            "the labels of the kept steps hold one class only (need steps before and away "
            "from transitions)",
        )
    return float(roc_auc_score(labels, x[mask]))
