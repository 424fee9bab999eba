"""The fused layer kernels against independent dense references.

``apply_kron_chain`` (a whole layer of per-block matrices as one GEMM per block, axes
rotated cyclically) is checked against ``numpy.kron`` of the full matrices; the
density-matrix path (``U ρ U^†`` as the chain over rows then columns, permutations as
one flat gather, no-grad runs writing into reused buffers) against ``U ρ U^†`` built
here gate by gate with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64
from test_engine_internals import spy_on_passes

from qsem.circuits import CNOT, RY, RZ, TRY, Circuit, H, Parameter, TAdd
from qsem.simulators import TorchSimulator
from qsem.simulators.kernels import Workspace, apply_kron_chain
from qsem.simulators.plan import FusedStep, compile_plan


def _unitary(d: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d)))
    return q


@pytest.mark.parametrize("sizes", [[2], [4, 3], [3, 1, 2], [2, 3, 4, 2]])
@pytest.mark.parametrize("use_work", [False, True])
def test_kron_chain_matches_numpy_kron(sizes: list[int], use_work: bool) -> None:
    rng = np.random.default_rng(7)
    mats = [_unitary(d, rng) if d > 1 else None for d in sizes]
    full = np.eye(1)
    for d, m in zip(sizes, mats, strict=True):
        full = np.kron(full, np.eye(d) if m is None else m)
    n = full.shape[0]
    x = rng.normal(size=(3, n)) + 1j * rng.normal(size=(3, n))
    segs = [
        (d, None if m is None else torch.as_tensor(m)) for d, m in zip(sizes, mats, strict=True)
    ]
    out = apply_kron_chain(torch.as_tensor(x), segs, Workspace() if use_work else None)
    np.testing.assert_allclose(out.numpy(), x @ full.T, atol=ATOL_F64)


def test_kron_chain_batched_matrices() -> None:
    """A ``(B, d, d)`` matrix applies its own row to each batch element."""
    rng = np.random.default_rng(3)
    a = np.stack([_unitary(2, rng) for _ in range(4)])
    b = _unitary(3, rng)
    x = rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6))
    out = apply_kron_chain(torch.as_tensor(x), [(2, torch.as_tensor(a)), (3, torch.as_tensor(b))])
    ref = np.stack([np.kron(a[i], b) @ x[i] for i in range(4)])
    np.testing.assert_allclose(out.numpy(), ref, atol=ATOL_F64)


def test_workspace_never_returns_the_input_buffer() -> None:
    w = Workspace()
    x = torch.zeros(8, dtype=torch.complex64)
    a = w.out(x, (8,))
    b = w.out(a, (2, 4))
    assert a.data_ptr() != b.data_ptr() and a.data_ptr() != x.data_ptr()
    assert w.out(b, (8,)).data_ptr() == a.data_ptr()  # ping-pong, no third buffer


def _ring(n: int, layers: int, dims: int) -> Circuit:
    c = Circuit([dims] * n)
    for i in range(n):
        c.add(RY(Parameter(f"x{i}"), wires=i) if dims == 2 else TRY(Parameter(f"x{i}"), wires=i))
    for l in range(layers):
        for i in range(n):
            if dims == 2:
                c.add(RY(0.3 + l + i, wires=i), RZ(0.7 * i - l, wires=i))
            else:
                c.add(TRY(0.3 + l + i, wires=i, subspace=(1, 2)))
        for i in range(n):
            c.add(CNOT(wires=[i, (i + 1) % n]) if dims == 2 else TAdd(wires=[i, (i + 1) % n]))
    return c


def _reference(c: Circuit, values: dict[str, float]) -> np.ndarray:
    """ρ gate by gate: each gate's full-register matrix from numpy Kronecker products."""
    circ = c.bind(values)
    d = circ.dim
    rho = np.zeros((d, d), dtype=np.complex128)
    rho[0, 0] = 1
    for op in circ.ops:
        local = tuple(circ.dims[w] for w in op.wires)
        m = op.concrete_matrix(local).numpy()
        wires = list(op.wires)
        # embed through a permutation of axes: move the gate's wires first
        n = len(circ.dims)
        rest = [a for a in range(n) if a not in wires]
        order = wires + rest
        dr = int(np.prod([circ.dims[a] for a in rest])) if rest else 1
        big = np.kron(m, np.eye(dr)).reshape([circ.dims[a] for a in order] * 2)
        inv = np.argsort(order)
        u = big.transpose(list(inv) + [n + i for i in inv]).reshape(d, d)
        rho = u @ rho @ u.conj().T
    return rho


@pytest.mark.parametrize(("n", "dims"), [(4, 2), (3, 3)])
def test_dense_density_matrix_batched_no_grad(
    n: int, dims: int, restore_plans: list[tuple[Any, Any]]
) -> None:
    """Dense ρ, batched encoding, no grad (buffers reused): each element vs the reference."""
    c = _ring(n, 2, dims)
    xs = torch.linspace(0.1, 2.9, 3, dtype=torch.float64)
    params = {f"x{i}": xs + 0.2 * i for i in range(n)}
    sim = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense")
    passes = spy_on_passes(sim.plan(c), restore_plans)
    with torch.no_grad():
        first = sim.run(c, params).density_matrix
        second = sim.run(c, params).density_matrix  # a second run must not overwrite the first
    assert [p.workspace for p in passes] == [True, True]  # the reused-buffer path ran
    passes.clear()
    sim.run(c, {k: v.clone().requires_grad_() for k, v in params.items()})
    assert [p.workspace for p in passes] == [False]  # autograd: no shared buffers
    for b in range(3):
        ref = _reference(c, {k: float(v[b]) for k, v in params.items()})
        np.testing.assert_allclose(first[b].numpy(), ref, atol=ATOL_F64)
    np.testing.assert_allclose(first.numpy(), second.numpy(), atol=0)
    steps = compile_plan(c, "density_matrix").steps
    perms = [s for s in steps if type(s).__name__ == "PermutationStep"]
    assert len(perms) == 2 and perms[0] is perms[1]  # the repeated ring shares its indices


def test_dense_density_matrix_gradient_matches_finite_difference() -> None:
    c = Circuit.qubits(3).add(
        H(wires=0), RY(Parameter("a"), wires=1), RZ(Parameter("a"), wires=2),
        CNOT(wires=[0, 1]), CNOT(wires=[1, 2]), RY(Parameter("b"), wires=0),
    )  # fmt: skip
    sim = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense")

    def f(a: float, b: float) -> float:
        rho = _reference(c, {"a": a, "b": b})
        return float(rho[5, 5].real + rho[1, 6].imag)

    a = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.1, dtype=torch.float64, requires_grad=True)
    rho = sim.run(c, {"a": a, "b": b}).density_matrix
    (rho[5, 5].real + rho[1, 6].imag).backward()
    h = 1e-6
    fd_a = (f(0.4 + h, -1.1) - f(0.4 - h, -1.1)) / (2 * h)
    fd_b = (f(0.4, -1.1 + h) - f(0.4, -1.1 - h)) / (2 * h)
    assert a.grad is not None and b.grad is not None
    np.testing.assert_allclose([float(a.grad), float(b.grad)], [fd_a, fd_b], atol=1e-6)


def _statevector_reference(c: Circuit, values: dict[str, float], levels: list[int]) -> np.ndarray:
    """ψ gate by gate from the basis state ``|levels>`` (full-register numpy matrices)."""
    circ = c.bind(values)
    d, n = circ.dim, len(circ.dims)
    psi = np.zeros(d, dtype=np.complex128)
    psi[int(np.ravel_multi_index(levels, circ.dims))] = 1
    for op in circ.ops:
        wires = list(op.wires)
        m = op.concrete_matrix(tuple(circ.dims[w] for w in wires)).numpy()
        rest = [a for a in range(n) if a not in wires]
        order = wires + rest
        dr = int(np.prod([circ.dims[a] for a in rest])) if rest else 1
        big = np.kron(m, np.eye(dr)).reshape([circ.dims[a] for a in order] * 2)
        inv = np.argsort(order)
        psi = big.transpose(list(inv) + [n + i for i in inv]).reshape(d, d) @ psi
    return psi


def _mixed_circuit() -> Circuit:
    """Dims [2, 3, 2]; the first fused layer leaves wire 1 without gates."""
    c = Circuit([2, 3, 2]).add(
        RY(Parameter("a"), wires=0), RZ(0.3, wires=0), H(wires=2), RY(Parameter("b"), wires=2),
        CNOT(wires=[0, 2]),
        TRY(Parameter("b"), wires=1, subspace=(1, 2)), RY(0.9, wires=0),
    )  # fmt: skip
    return c


@pytest.mark.parametrize("levels", [None, [1, 2, 0], [0, 1, 1]])
@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
def test_first_layer_on_a_basis_state(
    levels: list[int] | None, mode: str, restore_plans: list[tuple[Any, Any]]
) -> None:
    """A fused first layer on ``|l_1 … l_n>`` (built as a product state) vs the reference,
    batched and unbatched, and vs the same run from the one-hot tensor (the matmul path)."""
    c = _mixed_circuit()
    a = torch.tensor([0.4, -1.3, 2.2], dtype=torch.float64)
    sim = TorchSimulator(mode, dtype=torch.complex128)  # type: ignore[arg-type]
    start = [0, 0, 0] if levels is None else levels
    assert isinstance(sim.plan(c).steps[0], FusedStep)
    passes = spy_on_passes(sim.plan(c), restore_plans)
    out = sim.run(c, {"a": a, "b": 0.7}, initial_state=levels)
    one_hot = torch.zeros(c.dim, dtype=torch.complex128)
    one_hot[int(np.ravel_multi_index(start, c.dims))] = 1
    via_matmul = sim.run(c, {"a": a, "b": 0.7}, initial_state=one_hot)
    # the fused first layer got the levels (product-state path), then the tensor (matmul)
    assert [p.basis for p in passes] == [tuple(start), None]
    for k in range(3):
        psi = _statevector_reference(c, {"a": float(a[k]), "b": 0.7}, start)
        if mode == "statevector":
            got, other = out.vector[k].numpy(), via_matmul.vector[k].numpy()
            np.testing.assert_allclose(got, psi, atol=ATOL_F64)
        else:
            got, other = out.density_matrix[k].numpy(), via_matmul.density_matrix[k].numpy()
            np.testing.assert_allclose(got, np.outer(psi, psi.conj()), atol=ATOL_F64)
        np.testing.assert_allclose(got, other, atol=ATOL_F64)
    single = sim.run(c, {"a": 0.4, "b": 0.7}, initial_state=levels)
    first = single.vector if mode == "statevector" else single.density_matrix
    np.testing.assert_allclose(
        first.numpy(),
        (out.vector if mode == "statevector" else out.density_matrix)[0].numpy(),
        atol=ATOL_F64,
    )


def test_first_layer_on_a_basis_state_gradient_matches_finite_difference() -> None:
    c = _mixed_circuit()
    levels = [1, 2, 0]
    sim = TorchSimulator("statevector", dtype=torch.complex128)

    def f(a: float, b: float) -> float:
        psi = _statevector_reference(c, {"a": a, "b": b}, levels)
        return float(abs(psi[3]) ** 2 + psi[7].imag)

    a = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.1, dtype=torch.float64, requires_grad=True)
    psi = sim.run(c, {"a": a, "b": b}, initial_state=levels).vector
    (psi[3].abs() ** 2 + psi[7].imag).backward()
    h = 1e-6
    fd_a = (f(0.4 + h, -1.1) - f(0.4 - h, -1.1)) / (2 * h)
    fd_b = (f(0.4, -1.1 + h) - f(0.4, -1.1 - h)) / (2 * h)
    assert a.grad is not None and b.grad is not None
    np.testing.assert_allclose([float(a.grad), float(b.grad)], [fd_a, fd_b], atol=1e-6)
