"""``qsem.runner.nested.NestedContext``: parts of a run, two levels deep, killed anywhere and
resumed, end exactly like an uninterrupted run; a part sees its own records only."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qsem.io import read_jsonl
from qsem.runner import Experiment, RunContext, run_experiment
from qsem.runner.nested import NestedContext


class Boom(RuntimeError):
    """Stands in for a run killed mid-way."""


@dataclass(frozen=True)
class PartsConfig:
    seed: int = 0
    steps: int = 4


def _counter(ctx: RunContext, steps: int, fail: tuple[str, int] | None, where: str) -> float:
    """Sum of draws from all three global generators, a checkpoint after every step."""
    state = ctx.restore()
    total, start = (state["total"], state["step"]) if state is not None else (0.0, 0)
    for step in range(start + 1, steps + 1):
        if fail == (where, step):
            raise Boom(f"killed in {where} at step {step}")
        total += float(torch.rand(())) + float(np.random.rand()) + random.random()  # noqa: NPY002
        ctx.log(step, total=total)
        ctx.checkpoint(step, {"total": total, "step": step}, force=True)
    return total


def make_parts(fail: tuple[str, int] | None = None) -> Experiment:
    """Two stages; stage "b" has two inner parts (seeds); each part is a counter."""

    def stage_b(cfg: PartsConfig, ctx: RunContext) -> dict[str, Any]:
        state = ctx.restore()
        done: list[float] = list(state["done"]) if state is not None else []
        current = state["current"] if state is not None else None
        for i in range(len(done), 2):
            sub = NestedContext(ctx, f"seed-{i}", {"seed": i}, current, done, i * cfg.steps)
            done.append(_counter(sub, cfg.steps, fail, f"b{i}"))
            ctx.checkpoint((i + 1) * cfg.steps, {"done": done, "current": None}, force=True)
        return {"totals": done, "own_records": len(ctx.records())}

    def stage_a(cfg: PartsConfig, ctx: RunContext) -> dict[str, Any]:
        return {"total": _counter(ctx, cfg.steps, fail, "a"), "own_records": len(ctx.records())}

    def run(cfg: PartsConfig, ctx: RunContext) -> dict[str, Any]:
        state = ctx.restore()
        done: dict[str, Any] = dict(state["done"]) if state is not None else {}
        current = state["current"] if state is not None else None
        for i, (name, stage) in enumerate((("a", stage_a), ("b", stage_b))):
            if name not in done:
                sub = NestedContext(ctx, name, {"stage": name}, current, done, 100 * i)
                done[name] = stage(cfg, sub)
                ctx.checkpoint(100 * (i + 1), {"done": done, "current": None}, force=True)
        return done

    return Experiment("parts", "nested parts", PartsConfig(), run, checkpoint_every=1)


@pytest.mark.parametrize("fail", [("a", 3), ("b0", 1), ("b0", 4), ("b1", 2), ("b1", 4)])
def test_killed_anywhere_resumes_like_uninterrupted(tmp_path: Path, fail: tuple[str, int]) -> None:
    ref = run_experiment(make_parts(), out=tmp_path / "ref", quiet=True)
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_experiment(make_parts(fail), out=out, quiet=True)
    res = run_experiment(make_parts(), out=out, resume=True, quiet=True)
    assert res.results == ref.results
    assert read_jsonl(out / "metrics.jsonl") == read_jsonl(tmp_path / "ref" / "metrics.jsonl")


def test_tags_and_own_records(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_experiment(make_parts(), out=out, quiet=True).results
    recs = read_jsonl(out / "metrics.jsonl")
    assert [(r["stage"], r.get("seed"), r["step"]) for r in recs] == (
        [("a", None, s) for s in range(1, 5)] + [("b", i, s) for i in (0, 1) for s in range(1, 5)]
    )
    assert res["a"]["own_records"] == 4 and res["b"]["own_records"] == 8
