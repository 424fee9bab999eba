"""Ground-truth transitions from per-task loss curves, and the probe signals Δφ.

A *transition* of a task is the sudden drop of its loss: with
``ℓ_t`` the task's loss in bits on a fixed evaluation set after ``t`` steps,

- ``learned`` = the first ``t`` with ``ℓ_t < low`` (default 0.1 bits);
- ``cross``   = the last ``t < learned`` with ``ℓ_t > high`` (default 0.9 bits);
- ``start``   = with ``onset = 0``: ``cross``. With ``onset = w > 0``: the
  onset of the drop, the last ``t <= cross`` at which the centred ``w``-step
  running mean of ``ℓ`` is at least the plateau level ``P`` = the median of
  ``ℓ`` over the ``plateau`` steps before ``cross`` (the loss may hover above
  ``high`` for hundreds of steps while it already falls: a composite sits at
  ~1.05 bits, confidently wrong, and leaves that level well before 0.9).

A task that never falls below ``low``, or that is never above ``high`` before
it does, has no transition.

The probe signals are distances between the model's output distributions
``φ_t`` ``(B, 2)`` on a fixed probe batch: the literal step-to-step
``Δφ_t = ‖φ_t − φ_{t−1}‖_F`` and the smoothed ``‖φ̄_t − φ̄_{t−k}‖_F`` of the
exponential moving average ``φ̄_t = β φ̄_{t−1} + (1 − β) φ_t`` (``φ̄_0 = φ_0``).

>>> import numpy as np
>>> loss = np.array([1.0, 1.0, 0.95, 0.6, 0.3, 0.05, 0.02])
>>> find_transition(loss)
Transition(start=2, learned=5)
>>> find_transition(loss, onset=1)  # plateau level: median(1.0, 1.0, 0.95) = 1.0
Transition(start=1, learned=5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from qsem.checks import check_int
from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = [
    "ProbeSignals",
    "SignalBank",
    "Transition",
    "find_transition",
    "task_entropy",
    "transitions_of",
]


class Transition(NamedTuple):
    """A task's loss drop: it began after step ``start`` and ended at step ``learned``."""

    start: int
    learned: int


def find_transition(
    loss_bits: Sequence[float] | np.ndarray,
    *,
    high: float = 0.9,
    low: float = 0.1,
    onset: int = 0,
    plateau: int = 1000,
    steps: Sequence[int] | np.ndarray | None = None,
) -> Transition | None:
    """The transition of one loss curve by the rule of the module docstring, or ``None``.

    ``loss_bits[i]`` is the loss after ``steps[i]`` steps (default ``steps[i] = i``);
    ``onset`` and ``plateau`` count samples of the curve.
    """
    check_int("onset", onset, 0)
    check_int("plateau", plateau, 1)
    loss = np.asarray(loss_bits, dtype=float)
    if loss.ndim != 1:
        raise arg_error("loss_bits", f"expected a 1-D curve, got shape {loss.shape}")
    if not low < high:
        raise arg_error("low", f"must be below high={high}, got {low}")
    at = np.arange(len(loss)) if steps is None else np.asarray(steps)
    if at.shape != loss.shape:
        raise arg_error("steps", f"needs one step per loss value: {at.shape} != {loss.shape}")
    below = np.flatnonzero(loss < low)
    if below.size == 0:
        return None
    first = int(below[0])
    above = np.flatnonzero(loss[:first] > high)
    if above.size == 0:
        return None
    cross = int(above[-1])
    if onset == 0:
        return Transition(int(at[cross]), int(at[first]))
    level = float(np.median(loss[max(0, cross - plateau) : cross + 1]))
    half = onset // 2
    pad = np.pad(loss, (half, onset - 1 - half), mode="edge")
    smooth = np.convolve(pad, np.ones(onset) / onset, mode="valid")
    at_level = np.flatnonzero(smooth[: cross + 1] >= level)
    start = int(at_level[-1]) if at_level.size else cross
    return Transition(int(at[start]), int(at[first]))


def transitions_of(
    curves: np.ndarray,
    *,
    high: float = 0.9,
    low: float = 0.1,
    onset: int = 0,
    plateau: int = 1000,
) -> list[Transition | None]:
    """``find_transition`` of every column of ``curves`` ``(steps + 1, tasks)`` (row t: step t)."""
    arr = np.asarray(curves, dtype=float)
    if arr.ndim != 2:
        raise arg_error("curves", f"expected (steps, tasks), got shape {arr.shape}")
    return [
        find_transition(arr[:, j], high=high, low=low, onset=onset, plateau=plateau)
        for j in range(arr.shape[1])
    ]


def task_entropy(phi: torch.Tensor, tasks: int) -> torch.Tensor:
    """Mean output entropy in bits of each task's slice of the probe batch, ``(E, T)``.

    ``phi`` ``(E, T·b, C)`` holds class probabilities, task-major (the layout of the
    families' ``eval_batch``). ``H_t = −(1/b) Σ_i Σ_c φ_ic log2 φ_ic`` over the
    task's ``b`` probe inputs: label-free, it falls from ~log2 C towards 0 when a
    task's outputs become confident (a subtask emerging), and stays near log2 C
    while a task cannot be learned.

    >>> phi = torch.tensor([[[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]])
    >>> task_entropy(phi, 2).tolist()
    [[1.0, 0.0]]
    """
    if not isinstance(phi, torch.Tensor) or phi.dim() != 3:
        raise arg_error("phi", f"expected an (E, B, C) tensor, got {phi!r:.60}", QsemTypeError)
    check_int("tasks", tasks, 1)
    if phi.shape[1] % tasks:
        raise arg_error("phi", f"{phi.shape[1]} probe rows do not split into {tasks} tasks")
    p = phi.detach().to(torch.float64)
    h = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
    return h.reshape(p.shape[0], tasks, -1).mean(-1)


class ProbeSignals:
    """Online Δφ signals of ``E`` models on one probe batch, fed ``φ_t`` ``(E, B, C)`` each step.

    ``update(phi)`` returns a dict of ``(E,)`` float tensors:

    - ``"literal"``: ``‖φ_t − φ_{t−1}‖_F`` per model (0 at the first call);
    - ``"ema"``: ``‖φ̄_t − φ̄_{t−lag}‖_F`` with ``φ̄`` the EMA of decay ``beta``
      (measured from the oldest average held until ``lag`` are held);
    - ``"lagged"``: ``‖φ_t − φ_{t−lag}‖_F`` (same warm-up).

    Norms are over the batch and class axes. With ``tasks=T`` the probe batch is
    read as ``T`` task-major slices (``B = T·b``, the layout of the families'
    ``eval_batch``) and ``update`` also returns ``"literal_task"``, ``"ema_task"``,
    ``"lagged_task"``: the same distances per slice, ``(E, T)`` (their squares sum
    to the square of the pooled one). A per-task signal moves when *that* task's
    outputs move, so drops of different tasks at different times stay apart
    instead of blurring into one probe-wide Δφ. The state is plain tensors
    (``state_dict`` / ``load_state_dict``), so a resumed run continues exactly.

    >>> sig = ProbeSignals(beta=0.5, lag=2)
    >>> out = sig.update(torch.zeros(1, 1, 2))
    >>> out = sig.update(torch.tensor([[[1.0, 0.0]]]))
    >>> float(out["literal"][0]), float(out["ema"][0])
    (1.0, 0.5)
    """

    def __init__(self, *, beta: float = 0.99, lag: int = 100, tasks: int | None = None) -> None:
        self.tasks = None if tasks is None else check_int("tasks", tasks, 1)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 1:
            raise arg_error("beta", f"must lie in [0, 1), got {beta!r}")
        self.beta = float(beta)
        self.lag = check_int("lag", lag, 1)
        self.reset()

    def reset(self) -> None:
        self.prev: torch.Tensor | None = None
        self.ema: torch.Tensor | None = None
        self.history: list[torch.Tensor] = []  # the last `lag` EMAs, oldest first
        self.raw: list[torch.Tensor] = []  # the last `lag` raw outputs, oldest first

    @staticmethod
    def _norm(d: torch.Tensor) -> torch.Tensor:
        return d.flatten(1).norm(dim=1)

    def _task_norm(self, d: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """``(E, T)`` norms of the ``T`` task slices of ``d`` (zeros when ``d`` is None)."""
        t = int(self.tasks or 1)
        if d is None:
            return torch.zeros(like.shape[0], t, dtype=torch.float64)
        return d.reshape(d.shape[0], t, -1).norm(dim=2)

    def update(self, phi: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(phi, torch.Tensor) or phi.dim() != 3:
            raise arg_error("phi", f"expected an (E, B, C) tensor, got {phi!r:.60}", QsemTypeError)
        phi = phi.detach().to(torch.float64)
        if self.prev is not None and self.prev.shape != phi.shape:
            raise arg_error("phi", f"shape changed from {tuple(self.prev.shape)} to {phi.shape}")
        if self.tasks is not None and phi.shape[1] % self.tasks:
            raise arg_error(
                "phi", f"{phi.shape[1]} probe rows do not split into {self.tasks} tasks"
            )
        zero = torch.zeros(phi.shape[0], dtype=torch.float64)
        d_lit = None if self.prev is None else phi - self.prev
        literal = zero if self.prev is None else self._norm(phi - self.prev)
        ema = phi.clone() if self.ema is None else self.beta * self.ema + (1 - self.beta) * phi
        d_ema = ema - self.history[0] if self.history else None
        d_lag = phi - self.raw[0] if self.raw else None
        ema_sig = zero if d_ema is None else self._norm(d_ema)
        lagged = zero if d_lag is None else self._norm(d_lag)
        self.prev, self.ema = phi, ema
        self.history.append(ema)
        self.raw.append(phi)
        if len(self.history) > self.lag:
            self.history.pop(0)
            self.raw.pop(0)
        out = {"literal": literal, "ema": ema_sig, "lagged": lagged}
        if self.tasks is not None:
            for k, d in (("literal", d_lit), ("ema", d_ema), ("lagged", d_lag)):
                out[f"{k}_task"] = self._task_norm(d, phi)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "prev": self.prev,
            "ema": self.ema,
            "history": list(self.history),
            "raw": list(self.raw),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev, self.ema = state["prev"], state["ema"]
        self.history, self.raw = list(state["history"]), list(state["raw"])


class SignalBank:
    """Two :class:`ProbeSignals` at two time scales: ``literal``, ``lagged``, ``ema`` from the
    first, and ``ema_slow`` (the second's ``ema``).

    >>> bank = SignalBank(ProbeSignals(beta=0.5, lag=1), ProbeSignals(beta=0.9, lag=2))
    >>> sorted(bank.update(torch.zeros(1, 1, 2)))
    ['ema', 'ema_slow', 'lagged', 'literal']

    With per-task signals (both members built with ``tasks=T``) it also returns
    ``ema_slow_task`` ``(E, T)``.
    """

    def __init__(self, fast: ProbeSignals, slow: ProbeSignals) -> None:
        self.fast, self.slow = fast, slow

    @property
    def ema(self) -> torch.Tensor | None:
        """The fast EMA of the outputs."""
        return self.fast.ema

    def update(self, phi: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.fast.update(phi)
        slow = self.slow.update(phi)
        out["ema_slow"] = slow["ema"]
        if "ema_task" in slow:
            out["ema_slow_task"] = slow["ema_task"]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"fast": self.fast.state_dict(), "slow": self.slow.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fast.load_state_dict(state["fast"])
        self.slow.load_state_dict(state["slow"])
