"""The statevector engine's speed paths against independent references.

Each fast path is checked two ways: its numbers against a reference that does not
use it (numpy fancy indexing, PennyLane ``default.qubit``, the unfused engine) at
complex128, and a spy (the torch profiler's record of the ATen calls, with their
input shapes) showing that the fast path is the one that ran.
"""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from qsem.circuits import CNOT, RY, RZ, Circuit, ParameterVector, PauliString
from qsem.simulators import TorchSimulator, adjoint_expval
from qsem.simulators.kernels import ROW_GATHER_MIN, index_rows

ATOL = 1e-10


def _aten_calls(fn, name: str) -> list[list[list[int]]]:
    """Input shapes of every call of ATen op ``name`` while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [list(e.input_shapes) for e in prof.events() if e.name == name]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n", [5, ROW_GATHER_MIN, ROW_GATHER_MIN * 2])
@pytest.mark.parametrize("use_out", [False, True])
def test_index_rows_matches_fancy_indexing(batch: int, n: int, use_out: bool) -> None:
    rng = np.random.default_rng(batch * 1000 + n)
    x = rng.normal(size=(batch, n)) + 1j * rng.normal(size=(batch, n))
    idx = rng.permutation(n)
    xt, it = torch.as_tensor(x), torch.as_tensor(idx)
    out = torch.empty_like(xt) if use_out else None
    got = index_rows(xt, it, out=out)
    np.testing.assert_array_equal(got.numpy(), x[:, idx])
    if out is not None:
        assert got.data_ptr() == out.data_ptr()
    calls = _aten_calls(lambda: index_rows(xt, it, out=out), "aten::index_select")
    if n >= ROW_GATHER_MIN:  # one 1-D gather per row
        assert [c[0] for c in calls] == [[n]] * batch
    else:  # one 2-D gather
        assert [c[0] for c in calls] == [[batch, n]]


def _ring_circuit(n: int, layers: int) -> Circuit:
    w = ParameterVector("w", layers * n * 2)
    c = Circuit.qubits(n)
    for layer in range(layers):
        for i in range(n):
            c.add(RY(w[(layer * n + i) * 2], wires=i), RZ(w[(layer * n + i) * 2 + 1], wires=i))
        for i in range(n):
            c.add(CNOT(wires=[i, (i + 1) % n]))
    return c


def test_long_row_permutations_match_pennylane() -> None:
    """13 qubits (8192 amplitudes: the row-by-row gather), forward and adjoint
    gradient of Σ<Z_i> against PennyLane default.qubit with backprop."""
    n, layers = 13, 2
    assert 2**n >= ROW_GATHER_MIN
    c = _ring_circuit(n, layers)
    w0 = torch.rand(layers * n * 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    obs = [PauliString("Z", wires=[i]) for i in range(n)]

    w = w0.clone().requires_grad_()

    # the torch path's gathers are under test: not the native kernel (8192 amplitudes
    # would run natively by default)
    sim = TorchSimulator(dtype=torch.complex128, native=False)

    def run() -> torch.Tensor:
        e = adjoint_expval(c, {"w": w}, obs, dtype=torch.complex128, simulator=sim)
        e.sum().backward()
        return e

    calls = _aten_calls(run, "aten::index_select")
    # forward: one gather per ring; backward: ψ and λ per ring; every one 1-D
    assert [s[0] for s in calls] == [[2**n]] * (3 * layers)
    w.grad = None
    e = run()

    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev, interface="torch", diff_method="backprop")
    def ref(wt: torch.Tensor):
        for layer in range(layers):
            for i in range(n):
                qml.RY(wt[(layer * n + i) * 2], wires=i)
                qml.RZ(wt[(layer * n + i) * 2 + 1], wires=i)
            for i in range(n):
                qml.CNOT(wires=[i, (i + 1) % n])
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    wr = w0.clone().requires_grad_()
    er = torch.stack(list(ref(wr)))
    er.sum().backward()
    np.testing.assert_allclose(e.detach().numpy(), er.detach().numpy(), atol=ATOL)
    assert w.grad is not None and wr.grad is not None
    np.testing.assert_allclose(w.grad.numpy(), wr.grad.numpy(), atol=ATOL)


# ---------------------------------------------------------------------------------
# adjoint: a first fused layer on a basis state is not undone (first_layer_records)
# ---------------------------------------------------------------------------------


def _ran(fn, label: str) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name == label)


FIRST = "qsem.adjoint.first_layer_records"


@pytest.mark.parametrize("kind", ["qubit", "qutrit", "mixed"])
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("start", [None, "levels"])
def test_first_layer_shortcut_matches_autograd(kind: str, batch: int | None, start) -> None:
    """Random circuits (test_adjoint's) starting with a fused layer, from |0…0> and from
    other basis states: adjoint gradients against autograd through the engine
    (complex128, 1e-10), and the profiler shows the shortcut ran once per backward."""
    from test_adjoint import DIMS, bind, grads, observables, random_circuit

    from qsem.simulators import TorchSimulator, expval

    dims = DIMS[kind]
    circuit, sizes, concrete = random_circuit(dims, depth=2, seed=5)
    obs = observables(dims)
    params = bind(sizes, batch, 5)
    levels = None if start is None else [d - 1 - (i % d) for i, d in enumerate(dims)]
    inputs = [params["x"], params["w"], *concrete]
    ref = expval(
        TorchSimulator(dtype=torch.complex128).run(circuit, params, initial_state=levels), obs
    )
    got = adjoint_expval(circuit, params, obs, initial_state=levels)
    torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    pairs = []
    assert _ran(lambda: pairs.append(grads(got, inputs, 5)), FIRST) == 1
    for a, b in zip(pairs[0], grads(ref, inputs, 5), strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_first_layer_records_equal_the_general_sweep() -> None:
    """Step 0's records from the shortcut equal those of undoing the layer (the general
    path, ``basis=None``), on a sparse first layer (wires without gates) of mixed dims."""
    from qsem.circuits import TRY, TAdd
    from qsem.simulators import TorchSimulator
    from qsem.simulators.adjoint_sweep import backward_sweep
    from qsem.simulators.plan_exec import FusedStep
    from qsem.simulators.plan_state import Context

    dims = (3, 2, 3, 2, 3)
    c = Circuit(dims)
    c.add(TRY(0.3, wires=0, subspace=(1, 2)), RY(0.7, wires=1), RZ(0.2, wires=1))
    c.add(TRY(1.1, wires=4), TAdd(wires=[0, 2]), RY(0.4, wires=3))
    sim = TorchSimulator(dtype=torch.complex128)
    plan = sim.plan(c)
    assert isinstance(plan.steps[0], FusedStep)
    levels = (2, 1, 0, 1, 1)
    psi = sim.run(c, initial_state=list(levels)).tensor.reshape(1, -1)
    g = torch.Generator().manual_seed(3)
    lam = torch.randn(psi.shape, generator=g, dtype=torch.complex128)
    ctx = Context(dims, c.ops, None, torch.complex128, torch.float64, "cpu")
    wanted = [True] * len(plan.steps)
    fast = backward_sweep(plan, ctx, psi.clone(), lam.clone(), wanted, levels)
    slow = backward_sweep(plan, ctx, psi.clone(), lam.clone(), wanted, None)
    assert [(s, j) for s, j, _ in fast] == [(s, j) for s, j, _ in slow]
    assert any(s == 0 for s, _, _ in fast)
    for (_, _, a), (_, _, b) in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_small_working_sets_skip_the_free_memory_read_but_not_max_memory() -> None:
    from qsem.circuits.errors import MemoryLimitError
    from qsem.simulators.memory import UNCHECKED_BYTES, WORKING_FACTOR, check_fits

    dims = (3,) * 4
    need = 81 * 64 * 8
    assert need * WORKING_FACTOR <= UNCHECKED_BYTES
    assert check_fits(dims, "statevector", 64, torch.complex64) == need
    assert check_fits(dims, "statevector", 64, torch.complex128) == 2 * need
    with pytest.raises(MemoryLimitError, match="max_memory"):
        check_fits(dims, "statevector", 64, torch.complex64, max_memory=need)
