"""The training loop every model of the package shares: steps, hooks, checkpoints.

One loop, :func:`run_steps`, drives all gradient training in ``qsem`` (the
experiments' models, the Kleene epochs, the emergence benchmarks' MLPs and
hybrids, the narrowing toolkit): for each step number ``t`` of ``steps`` it takes
one optimiser step ``step(t)`` (timed), hands the finished :class:`Step` to
``after`` (logging, evaluation, probes, emergence signals; returning ``True``
stops the loop) and then calls ``checkpoint(t)``. What differs between models
lives in the hooks:

- ``step``: usually :func:`descent` (zero the gradients, ``loss(t).backward()``,
  ``optimizer.step()``); a self-distillation step
  (:meth:`qsem.distill.SelfDistiller.step`) or any callable that takes one
  optimiser step and returns its loss fits as well;
- ``steps``: any iterable of step numbers (``range(start + 1, n + 1)`` to resume
  after step ``start``; a progress bar over it);
- the optimiser's schedule steps in ``after`` (or per epoch, in the caller).

>>> import torch
>>> w = torch.nn.Parameter(torch.tensor(3.0))
>>> opt = torch.optim.SGD([w], lr=0.25)
>>> seen = []
>>> last = run_steps(descent(opt, lambda t: w**2), range(1, 4),
...                  after=lambda s: seen.append(round(s.loss, 4)))
>>> last, seen, round(w.item(), 4)  # w <- w - 0.25 * 2w = w / 2 each step
(3, [9.0, 2.25, 0.5625], 0.375)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Step", "descent", "run_steps"]


@dataclass(frozen=True)
class Step:
    """One finished optimiser step.

    Attributes:
        step: its number (the element of ``steps`` it ran for).
        loss: the loss the step minimised, as a float (before the update).
        seconds: wall time of the step itself (hooks not counted).
    """

    step: int
    loss: float
    seconds: float


def descent(
    optimizer: torch.optim.Optimizer, loss: Callable[[int], torch.Tensor]
) -> Callable[[int], float]:
    """The plain gradient step on ``loss(t)``: gradients zeroed, backward, ``optimizer.step()``.

    Returns the step function ``t -> float(loss)`` for :func:`run_steps`.
    """

    def step(t: int) -> float:
        value = loss(t)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        return float(value.detach())

    return step


def run_steps(
    step: Callable[[int], float],
    steps: Iterable[int],
    *,
    after: Callable[[Step], Any] | None = None,
    checkpoint: Callable[[int], Any] | None = None,
) -> int | None:
    """Run ``step(t)`` for each ``t`` of ``steps``, then ``after(Step)`` and ``checkpoint(t)``.

    ``after`` returning a true value stops the loop before that step's checkpoint.
    Returns the number of the last step run (``None`` when ``steps`` was empty).
    """
    last: int | None = None
    for t in steps:
        tick = time.perf_counter()
        loss = step(t)
        done = Step(t, loss, time.perf_counter() - tick)
        last = t
        if after is not None and after(done):
            break
        if checkpoint is not None:
            checkpoint(t)
    return last
