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

Every optimiser and learning-rate schedule of the package is built here too, by
:func:`make_optimizer` (Adam or AdamW; a constant rate or the cosine decay of the
Kleene experiments), so a setting means the same thing in every experiment.

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
from typing import Any, Literal, overload

import torch
from torch.optim.lr_scheduler import LRScheduler

from qsem.checks import check_int, check_real, fail

__all__ = ["OptimizerKind", "Schedule", "Step", "descent", "make_optimizer", "run_steps"]

#: The optimisers :func:`make_optimizer` builds.
OptimizerKind = Literal["adam", "adamw"]
#: The learning-rate schedules :func:`make_optimizer` builds.
Schedule = Literal["constant", "cosine"]

#: Parameters as :func:`make_optimizer` takes them: a module (all its parameters)
#: or an iterable of tensors (or of parameter-group dicts).
Params = torch.nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]]


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


@overload
def make_optimizer(
    params: Params,
    lr: float,
    *,
    kind: OptimizerKind = ...,
    eps: float = ...,
    weight_decay: float = ...,
    schedule: Literal["constant"] = ...,
    steps: int | None = ...,
    final_lr: float | None = ...,
) -> tuple[torch.optim.Optimizer, None]: ...
@overload
def make_optimizer(
    params: Params,
    lr: float,
    *,
    kind: OptimizerKind = ...,
    eps: float = ...,
    weight_decay: float = ...,
    schedule: Literal["cosine"],
    steps: int,
    final_lr: float | None = ...,
) -> tuple[torch.optim.Optimizer, LRScheduler]: ...
def make_optimizer(
    params: Params,
    lr: float,
    *,
    kind: OptimizerKind = "adam",
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    schedule: Schedule = "constant",
    steps: int | None = None,
    final_lr: float | None = None,
) -> tuple[torch.optim.Optimizer, LRScheduler | None]:
    """The optimiser of ``params`` and its learning-rate schedule: ``(optimizer, scheduler)``.

    Args:
        params: a module (its ``parameters()``, in their order) or the parameters.
        lr: the learning rate ``η₀`` (``>= 0``).
        kind: ``"adam"`` (:class:`torch.optim.Adam`; a ``weight_decay`` is an L2 term
            added to the gradient) or ``"adamw"`` (:class:`torch.optim.AdamW`: the
            decay ``θ ← θ − η·λ·θ`` is decoupled from the Adam moments).
        eps: Adam's ``ε`` in ``m̂ / (√v̂ + ε)`` (``>= 0``; torch's default ``1e-8``).
        weight_decay: ``λ >= 0``.
        schedule: ``"constant"`` (no scheduler: ``None``) or ``"cosine"``
            (:class:`torch.optim.lr_scheduler.CosineAnnealingLR`).
        steps: the cosine's length ``T >= 1`` in calls of ``scheduler.step()`` (the
            Kleene experiments step it once per epoch); only for ``"cosine"``.
        final_lr: the cosine's floor ``η_min`` in ``[0, lr]`` (default ``lr / 20``);
            only for ``"cosine"``.

    The cosine schedule: after ``t`` calls of ``scheduler.step()`` (``0 <= t <= T``)
    the rate is

        η_t = η_min + (η₀ − η_min) · (1 + cos(π t / T)) / 2,

    from ``η₀`` down to ``η_min`` at ``t = T``: the first steps move far, the last
    ones refine. (torch updates it recursively, equal to this closed form up to
    rounding.) Every other optimiser setting is torch's default.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt, sched = make_optimizer(model, 0.02, schedule="cosine", steps=10)
    >>> type(opt).__name__, sched.get_last_lr()
    ('Adam', [0.02])
    >>> for _ in range(10):
    ...     opt.step(); sched.step()
    >>> round(sched.get_last_lr()[0], 6)  # lr / 20
    0.001
    >>> make_optimizer(model.parameters(), 1e-3, kind="adamw", weight_decay=0.1)[1] is None
    True
    """
    lr = check_real("lr", lr, minimum=0)
    eps = check_real("eps", eps, minimum=0)
    weight_decay = check_real("weight_decay", weight_decay, minimum=0)
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    if kind == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=lr, eps=eps, weight_decay=weight_decay
        )
    elif kind == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, eps=eps, weight_decay=weight_decay)
    else:
        fail("kind", f"expected 'adam' or 'adamw', got {kind!r}")
    if schedule == "constant":
        for name, value in (("steps", steps), ("final_lr", final_lr)):
            if value is not None:
                fail(name, "only the 'cosine' schedule takes it")
        return optimizer, None
    if schedule != "cosine":
        fail("schedule", f"expected 'constant' or 'cosine', got {schedule!r}")
    t_max = check_int("steps", steps, 1)
    floor = lr / 20 if final_lr is None else check_real("final_lr", final_lr, minimum=0, maximum=lr)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=t_max, eta_min=floor
    )
