"""The one training loop (:mod:`qsem.training`): the step against a hand-written update,
the order of the hooks, stopping, and that the package has no other gradient loop."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path
from typing import Any

import torch

import qsem.training
from qsem.training import Step, descent, run_steps

REPO = Path(__file__).resolve().parents[1]


def test_descent_is_one_hand_written_adam_step() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    w = torch.nn.Parameter(a.clone())
    opt = torch.optim.Adam([w], lr=0.1)
    loss = descent(opt, lambda t: ((w - b) ** 2).sum() * t)
    assert loss(2) == float(2 * ((a - b) ** 2).sum())
    # Adam's first step moves every weight by lr * sign(grad) (m / sqrt(v) = g / |g|)
    grad = 2 * 2 * (a - b)
    expected = a - 0.1 * grad / (grad.abs() + 1e-8)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_gradients_do_not_accumulate_between_steps() -> None:
    w = torch.nn.Parameter(torch.tensor(1.0))
    opt = torch.optim.SGD([w], lr=0.5)
    run_steps(descent(opt, lambda t: w * 2.0), range(3))
    assert w.item() == 1.0 - 3 * 0.5 * 2.0  # 2.0 each step, never 4.0 or 6.0


def test_hooks_run_in_order_and_after_can_stop() -> None:
    calls: list[tuple[str, int]] = []

    def step(t: int) -> float:
        calls.append(("step", t))
        return 10.0 * t

    def after(s: Step) -> bool:
        assert s.loss == 10.0 * s.step and s.seconds >= 0
        calls.append(("after", s.step))
        return s.step == 3

    last = run_steps(step, range(1, 6), after=after, checkpoint=lambda t: calls.append(("ckpt", t)))
    assert last == 3
    assert calls == [("step", 1), ("after", 1), ("ckpt", 1), ("step", 2), ("after", 2),
                     ("ckpt", 2), ("step", 3), ("after", 3)]  # fmt: skip
    assert run_steps(step, range(4, 4)) is None


def test_resuming_runs_only_the_remaining_steps() -> None:
    seen: list[int] = []
    assert run_steps(lambda t: seen.append(t) or 0.0, range(3 + 1, 6 + 1)) == 6
    assert seen == [4, 5, 6]


def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(qsem.training)
    assert result.attempted > 0 and result.failed == 0


def _backward_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == "backward"]  # fmt: skip


#: the only places of ``qsem/`` that call ``.backward()``: the loop's step, and the
#: self-distiller's own step (its teacher is updated between backward and the
#: optimiser step, so it is a step function of its own, run by the same loop)
_BACKWARD_HOMES = {"qsem/training.py", "qsem/distill/trainer.py"}


def test_no_second_training_loop_in_the_package() -> None:
    found = {
        str(p.relative_to(REPO)): lines
        for p in sorted((REPO / "qsem").rglob("*.py"))
        if (lines := _backward_calls(p))
    }
    assert set(found) == _BACKWARD_HOMES, found


def test_epochs_as_steps_train_exactly_as_the_epoch_loop() -> None:
    """``Epochs`` under ``run_steps`` (what fit, profiles and narrow-semantic use) gives the
    weights, step count and losses of train_epoch + the schedule's step, written out."""
    from dataclasses import replace

    from qsem.experiments.kleene import KleeneConfig
    from qsem.models import SemanticModel
    from qsem.tasks.kleene_training import Epochs, make_data, train_epoch
    from qsem.training import make_optimizer

    cfg = replace(KleeneConfig(), n_train_kbs=4, n_test_kbs=2, queries_per_kb=8, hidden=4)
    train, _ = make_data(cfg)

    def fresh() -> tuple[SemanticModel, Any, Any, torch.Generator]:
        torch.manual_seed(0)
        model = SemanticModel(cfg.model)
        opt, sched = make_optimizer(model, 0.05, schedule="cosine", steps=3)
        return model, opt, sched, torch.Generator().manual_seed(1)

    model, opt, sched, gen = fresh()
    losses, n = [], 0
    for _ in range(3):
        loss, steps, _ = train_epoch(model, opt, train, 16, gen)
        sched.step()
        losses.append(loss)
        n += steps
    twin, opt2, sched2, gen2 = fresh()
    epochs = Epochs(twin, opt2, sched2, train, 16, gen2)
    seen: list[float] = []
    assert run_steps(epochs, range(1, 4), after=lambda s: seen.append(s.loss)) == 3
    assert seen == losses and epochs.steps == n > 3
    assert sched2.get_last_lr() == sched.get_last_lr()
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
