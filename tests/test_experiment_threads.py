"""One way to run an experiment under a thread setting: calling the :class:`Experiment`.

The runner, and an experiment that runs another as a part (``qsem run story``), call
``EXPERIMENT(config, ctx)``, which applies the config's ``threads`` key; no experiment
module wraps its own body in ``torch_threads``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from qsem.experiments import EXPERIMENTS
from qsem.runner import Experiment, run_experiment
from qsem.runner.experiment import thread_setting

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ThreadsConfig:
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class NoThreadsConfig:
    seed: int = 0


def _report(cfg: Any, ctx: Any) -> dict[str, Any]:
    return {"threads": torch.get_num_threads()}


PROBE = Experiment("probe", "reports torch's thread count", ThreadsConfig(), _report)
PLAIN = Experiment("plain", "reports torch's thread count", NoThreadsConfig(), _report)


def _outer(cfg: Any, ctx: Any) -> dict[str, Any]:
    inner = PROBE(ThreadsConfig(threads=cfg.inner), ctx)
    return {"outer": torch.get_num_threads(), "inner": inner["threads"]}


@dataclass(frozen=True)
class OuterConfig:
    seed: int = 0
    inner: int = 1


OUTER = Experiment("outer", "runs PROBE as a part", OuterConfig(), _outer)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_the_runner_applies_the_config_threads_and_restores_them(tmp_path, two_threads) -> None:
    res = run_experiment(PROBE, out=tmp_path / "one", quiet=True, report=False)
    assert res.results == {"threads": 1}
    assert torch.get_num_threads() == 2  # restored after the run
    res = run_experiment(PROBE, overrides=["threads=0"], out=tmp_path / "zero", quiet=True,
                         report=False)  # fmt: skip
    assert res.results == {"threads": 2}  # 0: torch's setting left as it is


def test_a_config_without_threads_leaves_torch_alone(tmp_path, two_threads) -> None:
    assert run_experiment(PLAIN, out=tmp_path / "r", quiet=True, report=False).results == {
        "threads": 2
    }


def test_a_part_run_by_another_experiment_gets_its_own_setting(two_threads) -> None:
    assert OUTER(OuterConfig(inner=1), None) == {"outer": 2, "inner": 1}
    assert torch.get_num_threads() == 2


def test_thread_setting_reads_dataclasses_and_dicts() -> None:
    assert thread_setting(ThreadsConfig(threads=3)) == 3
    assert thread_setting({"seed": 0, "threads": 2}) == 2
    assert thread_setting(NoThreadsConfig()) == 0


def test_a_threads_key_that_is_not_an_integer_is_refused() -> None:
    with pytest.raises(ValueError, match="'threads' must be an integer"):
        Experiment("bad", "d", {"seed": 0, "threads": "two"}, _report)


def test_every_registered_experiment_declares_threads_as_an_integer_or_not_at_all() -> None:
    for exp in EXPERIMENTS.values():
        assert isinstance(thread_setting(exp.defaults), int), exp.name


def test_no_experiment_module_sets_threads_itself() -> None:
    """The runner applies the thread setting: no ``torch_threads`` / ``set_num_threads`` in
    ``qsem/experiments`` (a wrapper there would be a second way)."""
    offenders = []
    for path in sorted((REPO / "qsem" / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
            if isinstance(node, (ast.Name, ast.Attribute)) and name in (
                "torch_threads", "set_num_threads"
            ):  # fmt: skip
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
