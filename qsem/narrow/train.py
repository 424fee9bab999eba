"""Training loops: plain, with a penalty, with pruning masks kept; evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qsem.checks import check_int, check_real
from qsem.threads import torch_threads
from qsem.training import descent, make_optimizer, run_steps

__all__ = ["accuracy", "evaluate", "torch_threads", "train_steps", "train_until"]

LN2 = math.log(2.0)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to ``y``."""
    return float((model(x).argmax(dim=-1) == y).float().mean())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Cross-entropy (nats and bits) and accuracy of ``model`` on ``(x, y)``."""
    logits = model(x)
    ce = float(F.cross_entropy(logits, y))
    acc = float((logits.argmax(dim=-1) == y).float().mean())
    return {"loss": ce, "loss_bits": ce / LN2, "accuracy": acc}


def _adam_loop(
    step_loss: Callable[[int], torch.Tensor],
    steps: int,
    opt: torch.optim.Optimizer,
    masker: object | None,
    after_step: Callable[[int, float], bool],
) -> torch.optim.Optimizer:
    """``opt`` on ``step_loss(step)`` for steps ``1..steps`` (:func:`qsem.training.run_steps`);
    stops when ``after_step`` says so."""
    if masker is not None:
        masker.attach(opt)  # type: ignore[attr-defined]
    run_steps(descent(opt, step_loss), range(1, steps + 1),
              after=lambda s: after_step(s.step, s.loss))  # fmt: skip
    return opt


def train_steps(
    model: nn.Module,
    batch_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    *,
    lr: float = 1e-3,
    eps: float = 1e-8,
    penalty: Callable[[], torch.Tensor] | None = None,
    masker: object | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    callback: Callable[[int, float], bool | None] | None = None,
) -> torch.optim.Optimizer:
    """Adam on ``loss_fn(model(x), y) + penalty()`` for ``steps`` steps.

    ``batch_fn(step)`` returns the batch of a step (fresh samples or a minibatch);
    ``masker`` (a :class:`~qsem.narrow.prune.Masker`) keeps pruned weights at zero;
    ``callback(step, loss)`` runs after each step and stops training by returning True.
    Returns the optimiser (reuse it to continue).
    """
    check_int("steps", steps, 0)
    check_real("lr", lr, minimum=0, strict=True)
    check_real("eps", eps, minimum=0, strict=True)
    opt = optimizer or make_optimizer(model, lr, eps=eps)[0]
    fn = loss_fn or F.cross_entropy

    def step_loss(step: int) -> torch.Tensor:
        x, y = batch_fn(step)
        loss = fn(model(x), y)
        return loss if penalty is None else loss + penalty()

    def after_step(step: int, loss: float) -> bool:
        return callback is not None and bool(callback(step, loss))

    return _adam_loop(step_loss, steps, opt, masker, after_step)


def train_until(
    model: nn.Module,
    step_loss: Callable[[int], torch.Tensor],
    reached: Callable[[int], bool],
    steps: int,
    *,
    lr: float = 1e-3,
    eval_every: int = 1,
    masker: object | None = None,
    stop: bool = True,
) -> int | None:
    """Adam on ``step_loss(step)``; the number of steps after which ``reached`` first held.

    ``reached(completed_steps)`` is checked before training (a return of 0
    means the model already met the goal) and after every ``eval_every``-th
    step. With ``stop=True`` training ends at the first hit; with ``stop=False``
    it runs all ``steps`` (a fixed budget) and ``reached`` is not called after
    the first hit. Returns ``None`` when the goal was never met. Multiply by the batch
    size for the number of training samples.
    """
    check_int("steps", steps, 0)
    check_int("eval_every", eval_every, 1)
    check_real("lr", lr, minimum=0, strict=True)
    hit: int | None = 0 if reached(0) else None
    if hit is not None and stop:
        return hit

    def after_step(step: int, _loss: float) -> bool:
        nonlocal hit
        if hit is None and step % eval_every == 0 and reached(step):
            hit = step
            return stop
        return False

    _adam_loop(step_loss, steps, make_optimizer(model, lr)[0], masker, after_step)
    return hit
