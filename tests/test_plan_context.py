"""The run's :class:`~qsem.simulators.plan_state.Context` on a chunked batch.

A large batch without gradients runs chunk by chunk (``run_plan``), each chunk with
its own ``Context`` that cuts every bound tensor with the full batch's rows to the
chunk's rows. Parameters are cut as they are read, so matrices built from them come
out the chunk's size; what is batched *without* a parameter — a user's batched
:class:`~qsem.circuits.Unitary` (a multi-wire gate step, a fused one-wire gate, or a
gate inside the superoperator blocks that a channel absorbs) — is cut when its matrix
is built, and a block built from it is never kept as a parameter-free constant.
Values are checked against the gate-by-gate reference of ``tests/test_plan_mutation.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from test_plan_mutation import reference

from qsem.circuits import (
    RY,
    TRY,
    AmplitudeDamping,
    Circuit,
    Parameter,
    PhaseDamping,
    Unitary,
)
from qsem.simulators import TorchSimulator
from qsem.simulators.plan import Context, compile_plan
from qsem.simulators.plan_exec import ChannelStep, GateStep
from qsem.simulators.plan_super import SuperStep

C128, F64 = torch.complex128, torch.float64


def _unitaries(batch: int, d: int, seed: int) -> torch.Tensor:
    """``batch`` random unitaries ``(batch, d, d)`` (QR of complex Gaussian matrices)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch, d, d)) + 1j * rng.normal(size=(batch, d, d))
    q, r = np.linalg.qr(z)
    phases = np.diagonal(r, axis1=1, axis2=2) / np.abs(np.diagonal(r, axis1=1, axis2=2))
    return torch.as_tensor(q * phases[:, None, :])


def test_chunked_batches_cut_batched_unitaries() -> None:
    """96 density matrices of D = 36 (over the chunking threshold: 32 chunks of 3 rows):
    a batched two-wire unitary (a gate step), a batched one-wire unitary fused into a
    layer, and one inside the blocks followed by a channel on its wire (the channel's
    Kraus operators absorb it: ``(B, r, D, D)``), none with a parameter."""
    batch = 96
    c = Circuit([2, 3, 2, 3])
    c.add(RY(Parameter("a"), wires=0), TRY(0.7, wires=1), RY(0.4, wires=2), TRY(1.1, wires=3))
    c.add(Unitary(_unitaries(batch, 6, 1), wires=[0, 1]))
    c.add(Unitary(_unitaries(batch, 3, 3), wires=3))  # one wire: fused into a layer
    c.add(PhaseDamping(Parameter("g"), wires=0))  # the blocks start here
    c.add(Unitary(_unitaries(batch, 2, 2), wires=2), AmplitudeDamping(0.3, wires=2))
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method="dense")
    plan = sim.plan(c)
    kinds = [type(s) for s in plan.steps]
    assert GateStep in kinds  # the two-wire unitary is not fused away
    # the channels (from the first on) run as superoperator blocks; the same channels as
    # steps are the block step's fallback for a factored ρ
    sup = plan.steps[-1]
    assert isinstance(sup, SuperStep)
    assert [type(s) for s in sup.fallback].count(ChannelStep) == 2
    rng = np.random.default_rng(5)
    values = {
        "a": torch.as_tensor(rng.uniform(-2, 2, size=batch)),
        "g": torch.as_tensor(rng.uniform(0, 0.9, size=batch)),
    }
    with torch.no_grad():
        got = sim.run(c, values).density_matrix
    assert sup.runs["pair"] == 32  # the blocks ran once per chunk (32 chunks of 3 rows)
    # the batched unitary's block was built in every chunk, never kept as a constant
    assert sup.cached["built"] >= 32 and not sup._consts
    want = reference(c, values, batch, True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-9)


def test_context_identity_is_in_the_runs_dtype() -> None:
    """``Context.eye``: the identity in the run's complex dtype (and its device)."""
    c = Circuit.qubits(1)
    for dtype, real in [(C128, F64), (torch.complex64, torch.float32)]:
        ctx = Context(c.dims, c.ops, {}, dtype, real, torch.device("cpu"))
        eye = ctx.eye(3)
        assert eye.dtype == dtype and eye.device == torch.device("cpu")
        assert torch.equal(eye, torch.eye(3, dtype=dtype))


def test_run_plan_runs_one_pass_unless_chunks_are_allowed() -> None:
    """Chunking is opt-in (``allow_chunks``, which the engine sets only when nothing needs
    a gradient). With it, a batch over ``MIN_CHUNKED_BYTES`` runs in ``MIN_CHUNKS``
    chunks of ``ceil(rows / MIN_CHUNKS)`` rows, each handed the basis levels of the start
    state; a batch of exactly ``MIN_CHUNKED_BYTES`` runs as one pass (a step spy)."""
    from test_engine_internals import Pass, StepSpy

    from qsem.simulators.plan_exec import MIN_CHUNKED_BYTES, MIN_CHUNKS, run_plan
    from qsem.simulators.plan_state import SimState

    c = Circuit.qubits(3).add(RY(0.3, wires=0), RY(0.5, wires=1))
    ctx = Context(c.dims, c.ops, {}, C128, F64, torch.device("cpu"))
    plan = compile_plan(c, "statevector")
    passes: list[Pass] = []
    plan.steps[0] = StepSpy(plan.steps[0], passes)

    def run(rows: int, allow: bool) -> torch.Tensor:
        passes.clear()
        start = torch.zeros(rows, 8, dtype=C128)
        start[:, 0] = 1
        state = SimState(start, "statevector", basis=(0, 0, 0))
        return (
            run_plan(plan, state, ctx, allow_chunks=allow).tensor
            if allow
            else (run_plan(plan, state, ctx).tensor)
        )

    at_limit = MIN_CHUNKED_BYTES // (8 * 16)  # ψ of 3 qubits in complex128: 128 bytes a row
    one = run(at_limit + 1, False)
    assert [p.rows for p in passes] == [at_limit + 1]
    chunked = run(at_limit + 1, True)
    size = -(-(at_limit + 1) // MIN_CHUNKS)
    sizes = [min(size, at_limit + 1 - k) for k in range(0, at_limit + 1, size)]
    assert [p.rows for p in passes] == sizes and len(sizes) == MIN_CHUNKS
    assert all(p.basis == (0, 0, 0) for p in passes)
    torch.testing.assert_close(chunked, one, atol=0, rtol=0)
    run(at_limit, True)
    assert [p.rows for p in passes] == [at_limit]  # exactly the limit: one pass


def test_two_large_rows_run_as_two_chunks() -> None:
    """Two rows of 1 MiB each (16 qubits in complex128), over the threshold together:
    one row a chunk."""
    from test_engine_internals import Pass, StepSpy

    from qsem.simulators.plan_exec import run_plan
    from qsem.simulators.plan_state import SimState

    c = Circuit.qubits(16).add(RY(0.3, wires=0), RY(0.5, wires=15))
    ctx = Context(c.dims, c.ops, {}, C128, F64, torch.device("cpu"))
    plan = compile_plan(c, "statevector")
    passes: list[Pass] = []
    plan.steps[0] = StepSpy(plan.steps[0], passes)
    start = torch.zeros(2, 2**16, dtype=C128)
    start[:, 0] = 1
    run_plan(plan, SimState(start, "statevector", basis=(0,) * 16), ctx, allow_chunks=True)
    assert [p.rows for p in passes] == [1, 1]
