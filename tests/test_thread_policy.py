"""qsem's thread policy (``qsem.threads``): small states run on one torch thread.

A spy gate records ``torch.get_num_threads()`` when the engine builds its matrix
(forward pass), and a hook on a bound parameter records it when that parameter's
gradient arrives (inside the backward call, after the simulated part of the graph).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch

from qsem.circuits import RY, Circuit, Parameter
from qsem.circuits.operations import Gate
from qsem.simulators import TorchSimulator, probs
from qsem.threads import (
    SMALL_STATE_BYTES,
    set_thread_policy,
    thread_policy,
    torch_threads,
)


class Spy(Gate):
    """An identity on one qubit that records the thread count when it is built."""

    num_wires = 1
    num_params = 0
    seen: ClassVar[list[int]] = []

    def matrix(self, params: Any, dims: Any, *, dtype: Any = torch.complex64, device: Any = None):
        Spy.seen.append(torch.get_num_threads())
        return torch.eye(dims[0], dtype=dtype, device=device)


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = thread_policy()
    with torch_threads(2):
        yield
    set_thread_policy(before)


def run_and_backward(n: int, batch: int) -> tuple[list[int], list[int], int]:
    """Threads seen in the forward pass, in the backward call, and after it."""
    Spy.seen.clear()
    c = Circuit.qubits(n)
    for w in range(n):
        c.add(RY(Parameter("t"), wires=w))
    c.add(Spy(wires=0))
    t = torch.linspace(0.1, 2.0, batch, dtype=torch.float64).requires_grad_()
    in_backward: list[int] = []
    t.register_hook(lambda g: in_backward.append(torch.get_num_threads()))
    state = TorchSimulator().run(c, {"t": t})
    forward = list(Spy.seen)
    probs(state, [0])[:, 0].sum().backward()
    assert t.grad is not None and t.grad.abs().max() > 0
    return forward, in_backward, torch.get_num_threads()


def test_small_state_runs_on_one_thread_and_restores(two_threads: None) -> None:
    set_thread_policy("auto")
    forward, backward, after = run_and_backward(4, 8)  # 8 * 16 * 8 bytes
    assert forward == [1]
    assert backward == [1]
    assert after == 2
    assert torch.get_num_threads() == 2


def test_torch_policy_leaves_threads_alone(two_threads: None) -> None:
    set_thread_policy("torch")
    forward, backward, after = run_and_backward(4, 8)
    assert forward == [2] and backward == [2] and after == 2


def test_large_state_keeps_the_users_threads(two_threads: None) -> None:
    set_thread_policy("auto")
    n, batch = 14, 4  # 4 * 2^14 * 8 bytes = 512 KiB
    assert batch * 2**n * 8 >= SMALL_STATE_BYTES
    forward, backward, after = run_and_backward(n, batch)
    assert forward == [2] and backward == [2] and after == 2


def test_one_thread_setting_is_never_raised(two_threads: None) -> None:
    set_thread_policy("auto")
    with torch_threads(1):
        forward, backward, after = run_and_backward(3, 2)
        assert forward == [1] and backward == [1] and after == 1


def test_bad_policy_names_the_argument() -> None:
    with pytest.raises(ValueError, match="argument 'policy'"):
        set_thread_policy("fast")


def bad_environment_message(var: str, value: str) -> str:
    """What a fresh process prints when a simulation runs with ``var=value`` set."""
    code = (
        "from qsem.circuits import Circuit, RY\n"
        "from qsem.simulators import TorchSimulator\n"
        "from qsem.errors import QsemError\n"
        "try:\n"
        "    TorchSimulator().run(Circuit.qubits(1).add(RY(0.1, wires=0)))\n"
        "except QsemError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, var: value}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_bad_environment_policy_is_one_line() -> None:
    """An invalid QSEM_THREAD_POLICY is refused by one line naming it (not ignored)."""
    assert bad_environment_message("QSEM_THREAD_POLICY", "fast") == (
        "argument 'QSEM_THREAD_POLICY': expected 'auto' or 'torch', got 'fast'"
    )
