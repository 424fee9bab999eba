"""The plan-wide rotation table (``qsem.simulators.plan_exec.rotation_table``).

Before the first step, a run evaluates every fused group of one-parameter rotations
whose angles are entries of one bound vector in ONE call of ``rotation_matrix``
(constants stacked across gate kinds, subspaces, depths and steps). Each case counts
those calls through ``Plan.rotation_calls`` and compares the run, states and
gradients, with the per-group evaluation (the same plan run with ``rotations={}``,
which each step then evaluates group by group) in complex128 to 1e-10. The engine's
values against PennyLane and hand-written matrices are checked in
``test_engine_pennylane.py`` and ``test_gates.py``, which run through the table too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from qsem.circuits import (
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    TRZ,
    U3,
    Circuit,
    Parameter,
    ParameterVector,
    PhaseShift,
    TAdd,
)
from qsem.simulators import TorchSimulator
from qsem.simulators.engine import initial_state_tensor
from qsem.simulators.plan_exec import FusedStep, run_plan, run_steps
from qsem.simulators.plan_state import Context, SimState

C128, F64 = torch.complex128, torch.float64
ATOL = 1e-10


def hybrid_circuit(n: int = 4, layers: int = 3) -> Circuit:
    """The ``hybrid_qutrit`` benchmark's circuit: inputs ``x``, weights ``w``."""
    x, w = ParameterVector("x", n), ParameterVector("w", layers * n * 2)
    c = Circuit.qutrits(n)
    for i in range(n):
        c.add(TRY(x[i], wires=i, subspace=(0, 1)))
    for layer in range(layers):
        for i in range(n):
            k = (layer * n + i) * 2
            c.add(TRY(w[k], wires=i, subspace=(0, 1)), TRY(w[k + 1], wires=i, subspace=(1, 2)))
        for i in range(n):
            c.add(TAdd(wires=[i, (i + 1) % n]))
    return c


def mixed_circuit(seed: int) -> tuple[Circuit, dict[str, torch.Tensor], list[torch.Tensor]]:
    """Qubits and qutrits; rotations of every kind from two vectors (one scaled), a
    scalar symbol, concrete angles needing gradients, and gates that are no rotations
    (U3, PhaseShift) in the same fused layers; a permutation between the layers."""
    rng = np.random.default_rng(seed)
    dims = [2, 3, 3, 2, 3]
    a, b = ParameterVector("a", 12), ParameterVector("b", 6)
    own = [torch.tensor(float(v), dtype=F64, requires_grad=True) for v in rng.uniform(-3, 3, 3)]
    c = Circuit(dims)
    k = 0
    for layer in range(2):
        for w, d in enumerate(dims):
            if d == 2:
                gate = [RX, RY, RZ][(w + layer) % 3]
                c.add(gate(a[k], wires=w), RY(b[k % 6] * 0.5, wires=w))
                c.add(U3(0.3, own[layer], 0.2, wires=w) if w == 0 else PhaseShift(0.4, wires=w))
            else:
                sub = [(0, 1), (1, 2), (0, 2)][(w + layer) % 3]
                gate3 = [TRX, TRY, TRZ][(w + 2 * layer) % 3]
                c.add(gate3(a[k], wires=w, subspace=sub), TRY(b[k % 6] * 0.5, wires=w))
                c.add(TRZ(Parameter("t"), wires=w, subspace=(0, 2)))
                c.add(TRX(own[2], wires=w, subspace=(1, 2)))
            k += 1
        c.add(TAdd(wires=[1, 2]), TAdd(wires=[4, 2]))
    batch = 5
    params = {
        "a": torch.tensor(rng.uniform(-3, 3, (batch, 12)), dtype=F64, requires_grad=True),
        "b": torch.tensor(rng.uniform(-3, 3, 6), dtype=F64, requires_grad=True),
        "t": torch.tensor(rng.uniform(-3, 3, batch), dtype=F64, requires_grad=True),
    }
    return c, params, own


def run_both(
    c: Circuit, params: dict[str, torch.Tensor], mode: str, dm_method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The final state with the table and with per-group evaluation, and table calls."""
    sim = TorchSimulator(mode, dtype=C128, dm_method=dm_method)
    plan = sim.plan(c)
    factored = mode == "density_matrix" and dm_method == "auto"
    start_mode = "statevector" if factored else mode
    batch = next(iter(v.shape[0] for v in params.values() if v.dim() == 2), None)
    x, _ = initial_state_tensor(None, c, start_mode, batch, C128, "cpu")
    start = SimState(x, "factored" if factored else mode, basis=(0,) * len(c.dims))
    ctx = Context(c.dims, c.ops, params, C128, F64, torch.device("cpu"))
    before = plan.rotation_calls
    fast = run_steps(plan, start, ctx).tensor
    calls = plan.rotation_calls - before
    slow = run_steps(plan, start, dataclasses.replace(ctx, rotations={})).tensor
    assert plan.rotation_calls - before == calls  # the per-group run made none
    return fast, slow, calls


def grads(out: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    w = torch.linspace(0.1, 1.0, out.shape[-1], dtype=F64)
    loss = ((out.real * w).sum() + (out.imag * w.flip(0)).sum()) ** 2
    return list(torch.autograd.grad(loss, leaves))


def test_hybrid_qutrit_circuit_uses_one_call_per_vector() -> None:
    c = hybrid_circuit()
    g = torch.Generator().manual_seed(5)
    params = {
        "x": (torch.rand(7, 4, generator=g, dtype=F64) * 3).requires_grad_(),
        "w": (torch.rand(24, generator=g, dtype=F64) * 6).requires_grad_(),
    }
    plan = TorchSimulator(dtype=C128).plan(c)
    assert sum(isinstance(s, FusedStep) for s in plan.steps) == 3  # 7 groups before
    fast, slow, calls = run_both(c, params, "statevector")
    assert calls == 2  # x's four rotations, and w's 24 across all three layers
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)
    leaves = [params["x"], params["w"]]
    for gf, gs in zip(grads(fast, leaves), grads(slow, leaves), strict=True):
        assert gf.abs().max() > 1e-3
        torch.testing.assert_close(gf, gs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("mode", "dm_method"),
    [("statevector", "auto"), ("density_matrix", "auto"), ("density_matrix", "dense")],
)
def test_mixed_registers_match_per_group_evaluation(seed: int, mode: str, dm_method: str) -> None:
    c, params, own = mixed_circuit(seed)
    fast, slow, calls = run_both(c, params, mode, dm_method)
    # the sources: a, b*0.5, and one per group of t or of concrete angles
    assert calls >= 3
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)
    leaves = [params["a"], params["b"], params["t"], *own]
    for gf, gs in zip(grads(fast, leaves), grads(slow, leaves), strict=True):
        torch.testing.assert_close(gf, gs, atol=ATOL, rtol=0)


def test_chunked_batch_evaluates_a_table_per_chunk() -> None:
    """A no-grad batch over the chunking threshold: each chunk cuts its own angles."""
    c = hybrid_circuit()
    g = torch.Generator().manual_seed(9)
    batch = 2048  # 2048 * 81 * 16 bytes: 2.6 MiB, chunked
    params = {
        "x": torch.rand(batch, 4, generator=g, dtype=F64) * 3,
        "w": torch.rand(batch, 24, generator=g, dtype=F64) * 6,
    }
    sim = TorchSimulator(dtype=C128)
    plan = sim.plan(c)
    before = plan.rotation_calls
    with torch.no_grad():
        out = sim.run(c, params).vector
    chunks = plan.rotation_calls - before
    assert chunks >= 2 * 32  # two sources in each of at least 32 chunks
    x, _ = initial_state_tensor(None, c, "statevector", batch, C128, "cpu")
    ctx = Context(c.dims, c.ops, params, C128, F64, torch.device("cpu"), rotations={})
    with torch.no_grad():
        ref = run_plan(plan, SimState(x, "statevector", basis=(0,) * 4), ctx).tensor
    assert plan.rotation_calls - before == chunks
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
