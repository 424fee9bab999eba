"""The native whole-circuit kernel (qsem.simulators.native): values and gradients against
the torch path of the engine, a hand-built dense reference and finite differences, on
random qubit, qutrit and mixed circuits, batched and not; the counter proves it ran."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ATOL_F32, ATOL_F64, FD_ATOL
from test_adjoint import DIMS, bind, random_circuit
from test_thread_policy import bad_environment_message

from qsem.circuits import CRY, RY, TRY, Circuit, ParameterVector, TAdd, Unitary
from qsem.simulators import TorchSimulator, native
from qsem.simulators.native import NATIVE_MAX_AMPLITUDES, SAVE_MAX_AMPLITUDES
from qsem.threads import torch_threads

pytestmark = pytest.mark.skipif(
    not native.available(), reason="the native kernel was not built (no C compiler at install)"
)


def _random_unitary(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.complex128)
    q, r = torch.linalg.qr(a)
    return q * (r.diagonal() / r.diagonal().abs())


def _with_unitaries(circuit: Circuit, seed: int) -> Circuit:
    """``circuit`` plus two-wire dense unitaries (multi-wire matrix gates, wires in both orders)."""
    dims = circuit.dims
    out = Circuit(dims).add(*circuit.ops)
    out.add(Unitary(_random_unitary(dims[0] * dims[2], seed), wires=[0, 2]))
    last = len(dims) - 1
    out.add(Unitary(_random_unitary(dims[last] * dims[1], seed + 1), wires=[last, 1]))
    return out


def _run(circuit: Circuit, params: dict, native_on: bool, **kw: object) -> tuple:
    sim = TorchSimulator(dtype=torch.complex128, native=native_on)
    state = sim.run(circuit, params, **kw)
    return state.vector, sim.plan(circuit)


def _loss_grads(v: torch.Tensor, inputs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Gradients of a real loss that weighs every amplitude's real and imaginary part."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(v.shape, generator=g, dtype=torch.float64)
    b = torch.randn(v.shape, generator=g, dtype=torch.float64)
    loss = (a * v.real + b * v.imag).sum() + (v.abs() ** 2 * a).sum()
    return list(torch.autograd.grad(loss, inputs))


def _dense_reference(circuit: Circuit, params: dict[str, torch.Tensor]) -> np.ndarray:
    """The final state, one row at a time, by numpy tensor contractions of each gate's matrix."""
    sim = TorchSimulator(dtype=torch.complex128, native=False)
    dims = circuit.dims
    x = params["x"].detach()
    rows = x.shape[0] if x.dim() == 2 else 1
    out = []
    for b in range(rows):
        bound = {"x": x[b] if x.dim() == 2 else x, "w": params["w"].detach()}
        psi = np.zeros(dims, dtype=np.complex128)
        psi[(0,) * len(dims)] = 1
        for op in circuit.ops:
            mat = sim_matrix(sim, circuit, op, bound)
            k = len(op.wires)
            m = mat.reshape([dims[w] for w in op.wires] * 2)
            psi = np.tensordot(m, psi, axes=(list(range(k, 2 * k)), list(op.wires)))
            psi = np.moveaxis(psi, list(range(k)), list(op.wires))
        out.append(psi.reshape(-1))
    return np.stack(out)


def sim_matrix(sim: TorchSimulator, circuit: Circuit, op: object, bound: dict) -> np.ndarray:
    """One gate's matrix with its parameters bound (the gate's own definition)."""
    from qsem.simulators.plan_state import Context

    ctx = Context(circuit.dims, circuit.ops, bound, torch.complex128, torch.float64, "cpu")
    return ctx.matrix(op).detach().numpy()  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(DIMS))
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_native_matches_torch_path_and_reference(kind: str, batch: int | None, seed: int) -> None:
    circuit, sizes, concrete = random_circuit(DIMS[kind], depth=3, seed=seed)
    circuit = _with_unitaries(circuit, seed)
    params = bind(sizes, batch, seed)
    inputs = [params["x"], params["w"], *concrete]
    before = TorchSimulator(dtype=torch.complex128).plan(circuit).native_runs
    got, plan = _run(circuit, params, True)
    assert plan.native_runs == before + 1
    ref, ref_plan = _run(circuit, params, False)
    assert ref_plan is plan and plan.native_runs == before + 1  # the torch path: no count
    torch.testing.assert_close(got, ref, atol=ATOL_F64, rtol=0)
    dense = _dense_reference(circuit, params)
    np.testing.assert_allclose(got.detach().reshape(dense.shape).numpy(), dense, atol=ATOL_F64)
    for a, b in zip(_loss_grads(got, inputs, seed), _loss_grads(ref, inputs, seed), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_native_gradient_matches_finite_differences() -> None:
    circuit, sizes, _ = random_circuit(DIMS["mixed"], depth=2, seed=5)
    circuit = _with_unitaries(circuit, 5)
    params = bind(sizes, 2, 5)
    before = TorchSimulator(dtype=torch.complex128).plan(circuit).native_runs
    got, plan = _run(circuit, params, True)
    (gw,) = _loss_grads(got, [params["w"]], 9)
    assert plan.native_runs == before + 1
    h = 1e-6
    for k in range(0, sizes["w"], 3):
        vals = []
        for sign in (1, -1):
            w = params["w"].detach().clone()
            w[k] += sign * h
            v, _ = _run(circuit, {"x": params["x"].detach(), "w": w}, True)
            g = torch.Generator().manual_seed(9)
            a = torch.randn(v.shape, generator=g, dtype=torch.float64)
            b = torch.randn(v.shape, generator=g, dtype=torch.float64)
            loss = (a * v.real + b * v.imag).sum() + (v.abs() ** 2 * a).sum()
            vals.append(float(loss.detach()))
        assert abs((vals[0] - vals[1]) / (2 * h) - float(gw[k])) < FD_ATOL


def test_initial_state_and_batched_gate_matrices() -> None:
    """Gradients reach a batched start state and per-row matrices of a multi-wire gate."""
    dims = (2, 3, 2)
    g = torch.Generator().manual_seed(3)
    psi0 = torch.randn(4, 12, generator=g, dtype=torch.complex128)
    psi0 = (psi0 / psi0.norm(dim=1, keepdim=True)).requires_grad_()
    t = torch.rand(4, 2, generator=g, dtype=torch.float64).requires_grad_()
    tv = ParameterVector("t", 2)
    c = Circuit(dims).add(
        RY(tv[0], wires=0),
        TRY(0.4, wires=1, subspace=(1, 2)),
        CRY(tv[1], wires=[2, 0]),
        TAdd(wires=[1, 2]),
        RY(0.3, wires=2),
    )
    outs = {}
    before = TorchSimulator(dtype=torch.complex128).plan(c).native_runs
    for on in (True, False):
        v, plan = _run(c, {"t": t}, on, initial_state=psi0)
        outs[on] = (v, *_loss_grads(v, [psi0, t], 2))
    assert plan.native_runs == before + 1
    for a, b in zip(outs[True], outs[False], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_factored_density_matrix_runs_natively() -> None:
    """A channel-free density-matrix run keeps ρ = |ψ><ψ| factored: the kernel runs it."""
    circuit, sizes, _ = random_circuit(DIMS["qutrit"], depth=2, seed=4)
    params = bind(sizes, 2, 4)
    rhos, plan = {}, None
    sim0 = TorchSimulator("density_matrix", dtype=torch.complex128)
    before = sim0.plan(circuit).native_runs
    for on in (True, False):
        sim = TorchSimulator("density_matrix", dtype=torch.complex128, native=on)
        rho = sim.run(circuit, params).density_matrix
        (gw,) = torch.autograd.grad(rho.real.pow(2).sum() + rho.imag.sum(), [params["w"]])
        rhos[on] = (rho, gw)
        plan = sim.plan(circuit)
    assert plan is not None and plan.native_runs == before + 1
    for a, b in zip(rhos[True], rhos[False], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("n", [16, 18])
def test_complex64_threads_and_uncomputation(n: int) -> None:
    """complex64, and states large enough that the kernel splits them over two threads;
    at n=18 the states before each gate exceed SAVE_MAX_AMPLITUDES, so the backward
    uncomputes ψ_{k-1} = U_k^† ψ_k (at n=16 it reads the saved states)."""
    x = ParameterVector("x", n)
    c = Circuit.qubits(n)
    for i in range(n):
        c.add(RY(x[i], wires=i))
    c.add(Unitary(_random_unitary(4, 1), wires=[3, 11]), CRY(x[0], wires=[n - 1, 2]))
    assert ((n + 2) << n > SAVE_MAX_AMPLITUDES) == (n == 18)
    vals = {}
    for on in (True, False):
        for dt in (torch.complex64, torch.complex128):
            xv = torch.linspace(0.1, 2.0, n, dtype=torch.float64).requires_grad_()
            sim = TorchSimulator(dtype=dt, native=on)
            before = sim.plan(c).native_runs  # plans are shared between simulators
            real = torch.float32 if dt == torch.complex64 else torch.float64
            with torch_threads(2):
                v = sim.run(c, {"x": xv.to(real)}).vector
                (g,) = torch.autograd.grad((v.real * torch.arange(1 << n)).sum(), [xv])
            vals[on, dt] = (v.to(torch.complex128), g)
            assert sim.plan(c).native_runs - before == int(on)
    # the loss weighs amplitudes by up to 2^16: complex64 agrees to its own precision
    for dt, atol, rtol in ((torch.complex64, ATOL_F32, 1e-4), (torch.complex128, 1e-9, 1e-12)):
        for a, b in zip(vals[True, dt], vals[False, dt], strict=True):
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def test_default_engages_only_small_states() -> None:
    c = Circuit.qubits(2).add(RY(0.3, wires=0), RY(0.5, wires=1))
    sim = TorchSimulator(native=None)
    if sim.native is not None:
        pytest.skip("QSEM_NATIVE is set in this environment")
    rows = NATIVE_MAX_AMPLITUDES // 4
    before = sim.plan(c).native_runs
    sim.run(c, {}, initial_state=torch.eye(4, dtype=torch.complex64)[[0] * rows])
    assert sim.plan(c).native_runs == before + 1
    sim.run(c, {}, initial_state=torch.eye(4, dtype=torch.complex64)[[0] * (rows + 1)])
    assert sim.plan(c).native_runs == before + 1  # above the size: the torch path


def test_bad_qsem_native_is_one_line() -> None:
    assert bad_environment_message("QSEM_NATIVE", "yes") == (
        "argument 'QSEM_NATIVE': expected 'auto', '0' or '1', got 'yes'"
    )


def test_a_copied_simulator_runs_natively() -> None:
    """``copy.deepcopy`` of a simulator (a model copy does it) copies its plans with their
    kernel layouts (no ctypes objects in them: those cannot be copied), and the copy runs
    natively on its own plan."""
    import copy

    circuit, sizes, _ = random_circuit(DIMS["mixed"], depth=2, seed=8)
    params = bind(sizes, 2, 8)
    sim = TorchSimulator(dtype=torch.complex128, native=True)
    first = sim.run(circuit, params).vector.detach()
    twin = copy.deepcopy(sim)
    plan = twin.plan(circuit)
    assert plan is not sim.plan(circuit)
    before = plan.native_runs
    again = twin.run(circuit, params).vector.detach()
    assert plan.native_runs == before + 1
    torch.testing.assert_close(again, first, atol=ATOL_F64, rtol=0)


def test_second_derivatives_match_the_torch_path() -> None:
    """A backward with ``create_graph=True`` (a Hessian) is itself differentiable: it
    reruns the gates by torch operations. Hessian of a loss in the weights, both paths."""
    circuit, sizes, _ = random_circuit(DIMS["mixed"], depth=2, seed=6)
    circuit = _with_unitaries(circuit, 6)
    params = bind(sizes, 2, 6)
    x = params["x"].detach()
    hess = {}
    before = TorchSimulator(dtype=torch.complex128).plan(circuit).native_runs
    for on in (True, False):
        sim = TorchSimulator(dtype=torch.complex128, native=on)

        def loss(w: torch.Tensor, sim: TorchSimulator = sim) -> torch.Tensor:
            v = sim.run(circuit, {"x": x, "w": w}).vector
            return (v.abs() ** 2 * torch.arange(v.shape[-1])).sum() + v.real.sum()

        hess[on] = torch.autograd.functional.hessian(loss, params["w"].detach())
    assert TorchSimulator(dtype=torch.complex128).plan(circuit).native_runs > before
    assert hess[True].abs().max() > 0.1
    torch.testing.assert_close(hess[True], hess[False], atol=1e-9, rtol=0)
