"""The engine's internal paths agree with each other and with a dense reference.

Every optimisation of the torch engine (plan caching, fused Kronecker blocks,
composed permutation gathers, local gathers for large registers, factored
density matrices, chunked no-grad runs) is compared against a plain reference:
each gate embedded as a full-register matrix built here with numpy, one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    CNOT,
    CRX,
    RX,
    RY,
    RZ,
    SWAP,
    TRX,
    TRY,
    TSWAP,
    U3,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Controlled,
    Depolarizing,
    H,
    Parameter,
    ParameterVector,
    TAdd,
    TShift,
    Unitary,
)
from qsem.simulators import TorchSimulator, probs
from qsem.simulators.engine import MIN_CHUNKED_BYTES, MIN_CHUNKS
from qsem.simulators.plan import (
    Context,
    FusedStep,
    LocalPermutationStep,
    PermutationStep,
    Plan,
    SimState,
    Step,
    compile_plan,
)


def embed(mat: np.ndarray, wires: list[int], dims: tuple[int, ...]) -> np.ndarray:
    """Full-register matrix of ``mat`` acting on ``wires`` (wire 0 most significant)."""
    n = len(dims)
    local = tuple(dims[w] for w in wires)
    big = mat.reshape(local + local)
    rest = [a for a in range(n) if a not in wires]
    eye = np.eye(math.prod(dims[a] for a in rest)).reshape(tuple(dims[a] for a in rest) * 2)
    # einsum over explicit letters: output rows then columns in wire order
    letters = "abcdefghijklmnopqrstuvwxyz"
    rows, cols = letters[:n], letters[n : 2 * n]
    sub_local = "".join(rows[w] for w in wires) + "".join(cols[w] for w in wires)
    sub_rest = "".join(rows[a] for a in rest) + "".join(cols[a] for a in rest)
    full = np.einsum(f"{sub_local},{sub_rest}->{rows}{cols}", big, eye)
    d = math.prod(dims)
    return full.reshape(d, d)


def reference_rho(circuit: Circuit, values: dict | None = None) -> np.ndarray:
    """Dense reference: ρ evolved gate by gate with full-register matrices."""
    circ = circuit.bind(values) if values else circuit
    d = circ.dim
    rho = np.zeros((d, d), dtype=np.complex128)
    rho[0, 0] = 1
    for op in circ.ops:
        local = tuple(circ.dims[w] for w in op.wires)
        if hasattr(op, "kraus"):
            params = [torch.as_tensor(p, dtype=torch.float64) for p in op.params]
            ks = op.kraus(params, local, dtype=torch.complex128).numpy()
            rho = sum(
                embed(k, list(op.wires), circ.dims)
                @ rho
                @ embed(k, list(op.wires), circ.dims).conj().T
                for k in ks
            )
        else:
            u = embed(op.concrete_matrix(local).numpy(), list(op.wires), circ.dims)
            rho = u @ rho @ u.conj().T
    return rho


def layered(dims: list[int], seed: int) -> Circuit:
    rng = np.random.default_rng(seed)
    c = Circuit(dims)
    for w, d in enumerate(dims):
        c.add(
            RY(float(rng.uniform(0, 6)), wires=w)
            if d == 2
            else TRY(float(rng.uniform(0, 6)), wires=w, subspace=(1, 2))
        )
    for w in range(len(dims) - 1):
        if dims[w] == dims[w + 1] == 2:
            c.add(CNOT(wires=[w, w + 1]))
        elif dims[w] == dims[w + 1]:
            c.add(TAdd(wires=[w, w + 1]))
    for w, d in enumerate(dims):
        c.add(
            RZ(float(rng.uniform(0, 6)), wires=w)
            if d == 2
            else TRX(float(rng.uniform(0, 6)), wires=w, subspace=(0, 2))
        )
    return c


def test_cached_plan_uses_each_circuits_own_values() -> None:
    """Two circuits of the same structure but other angles must not share values."""
    sim = TorchSimulator(dtype=torch.complex128)
    a = Circuit.qubits(2).add(RY(0.3, wires=0), CNOT(wires=[0, 1]))
    b = Circuit.qubits(2).add(RY(1.2, wires=0), CNOT(wires=[0, 1]))
    pa, pb = probs(sim.run(a)), probs(sim.run(b))
    assert len(sim._plans) == 1
    assert sim.plan(a) is sim.plan(b)  # one compiled plan serves both
    assert torch.allclose(
        pa, torch.tensor([math.cos(0.15) ** 2, 0, 0, math.sin(0.15) ** 2], dtype=torch.float64)
    )
    assert torch.allclose(
        pb, torch.tensor([math.cos(0.6) ** 2, 0, 0, math.sin(0.6) ** 2], dtype=torch.float64)
    )


@pytest.mark.parametrize("block", [2, 4, 8, 32, 64])
@pytest.mark.parametrize("dims", [[2, 2, 2, 2, 2], [3, 2, 3, 3], [2, 3, 2, 2, 3]])
def test_block_sizes_agree_with_reference(dims: list[int], block: int) -> None:
    """Fused blocks of every size (left, middle and right blocks) give the same state."""
    c = layered(dims, seed=len(dims) + block)
    ref = reference_rho(c)
    sv = TorchSimulator(dtype=torch.complex128, max_block_dim=block).run(c).vector.numpy()
    np.testing.assert_allclose(np.outer(sv, sv.conj()), ref, atol=ATOL_F64)


def test_mixed_gate_kinds_in_one_level_are_grouped_correctly() -> None:
    """One depth level holding RX, RY, U3 and a Unitary on different wires (grouped by formula)."""
    u = torch.linalg.qr(torch.randn(2, 2, dtype=torch.complex128))[0]
    c = Circuit.qubits(4).add(
        RX(0.1, wires=0), RY(0.2, wires=1), U3(0.3, 0.4, 0.5, wires=2), Unitary(u, wires=3),
        RY(0.6, wires=0), RX(0.7, wires=2), RY(0.8, wires=3), CNOT(wires=[3, 0]),
    )  # fmt: skip
    sv = TorchSimulator(dtype=torch.complex128).run(c).vector.numpy()
    np.testing.assert_allclose(np.outer(sv, sv.conj()), reference_rho(c), atol=ATOL_F64)
    kinds = [type(s) for s in compile_plan(c, "statevector").steps]
    assert kinds == [FusedStep, PermutationStep]


def test_consecutive_permutations_compose_into_one_gather() -> None:
    c = Circuit([3, 3, 2, 2]).add(
        TRY(0.4, wires=0), TAdd(wires=[0, 1]), TSWAP(wires=[0, 1]), CNOT(wires=[2, 3]),
        Controlled(TSWAP(wires=[0, 1]), control_wires=[2]), TShift(wires=1),
    )  # fmt: skip
    kinds = [type(s) for s in compile_plan(c, "statevector").steps]
    assert kinds == [FusedStep, PermutationStep, FusedStep]
    sv = TorchSimulator(dtype=torch.complex128).run(c).vector.numpy()
    np.testing.assert_allclose(np.outer(sv, sv.conj()), reference_rho(c), atol=ATOL_F64)


def test_local_permutation_path_for_large_registers() -> None:
    """With a tiny full-permutation limit, permutations gather on their own wires."""
    c = Circuit([2, 3, 3, 2]).add(
        H(wires=0), TRY(1.1, wires=1), TAdd(wires=[2, 1]), CNOT(wires=[3, 0]),
        Controlled(TSWAP(wires=[1, 2]), control_wires=[0]),
    )  # fmt: skip
    plan = compile_plan(c, "statevector", full_perm_limit=4)
    assert any(isinstance(s, LocalPermutationStep) for s in plan.steps)
    sim = TorchSimulator(dtype=torch.complex128)
    sim._plans[(c.structure_key(), "statevector", sim.max_block_dim)] = plan
    assert sim.plan(c) is plan  # the run below uses the local-permutation plan
    sv = sim.run(c).vector.numpy()
    np.testing.assert_allclose(np.outer(sv, sv.conj()), reference_rho(c), atol=ATOL_F64)
    sim_dm = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense")
    plan_dm = compile_plan(c, "density_matrix", full_perm_limit=4)
    assert any(isinstance(s, LocalPermutationStep) for s in plan_dm.steps)
    sim_dm._plans[(c.structure_key(), "density_matrix", sim_dm.max_block_dim)] = plan_dm
    assert sim_dm.plan(c) is plan_dm
    np.testing.assert_allclose(
        sim_dm.run(c).density_matrix.numpy(), reference_rho(c), atol=ATOL_F64
    )


def noisy(n_channels: int) -> Circuit:
    c = Circuit([2, 3, 2])
    c.add(H(wires=0), TRY(0.9, wires=1), CRX(0.4, wires=[0, 2]), RX(0.3, wires=2))
    chans = [
        Depolarizing(0.2, wires=0),
        AmplitudeDamping(0.3, 0.1, wires=1),
        Depolarizing(0.1, wires=2),
        Depolarizing(0.3, wires=1),
    ]
    for ch in chans[:n_channels]:
        c.add(ch, SWAP(wires=[0, 2]), TRX(0.5, wires=1, subspace=(0, 1)))
    return c


@pytest.mark.parametrize("n_channels", [0, 1, 2, 3, 4])
def test_factored_density_matrix_equals_dense(n_channels: int) -> None:
    """Rank grows 1 -> 4 -> 12 (<= D = 12), then the state turns dense; all exact."""
    c = noisy(n_channels)
    ref = reference_rho(c)
    auto = TorchSimulator("density_matrix", dtype=torch.complex128).run(c)
    dense = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense").run(c)
    expected_rank = {0: 1, 1: 4, 2: 12, 3: None, 4: None}[n_channels]
    assert auto.rank == expected_rank
    assert dense.rank is None
    np.testing.assert_allclose(auto.density_matrix.numpy(), ref, atol=ATOL_F64)
    np.testing.assert_allclose(dense.density_matrix.numpy(), ref, atol=ATOL_F64)
    np.testing.assert_allclose(probs(auto).numpy(), np.diag(ref).real, atol=ATOL_F64)


def test_factored_batched_parameters_and_channels() -> None:
    """Batched angles with rank > 1: each batch element keeps its own components."""
    theta = Parameter("t")
    c = Circuit.qubits(2).add(
        RY(theta, wires=0), Depolarizing(0.3, wires=0), CRX(theta, wires=[0, 1])
    )
    values = torch.tensor([0.1, 0.7, 2.0], dtype=torch.float64)
    state = TorchSimulator("density_matrix", dtype=torch.complex128).run(c, {"t": values})
    assert state.rank == 4
    for i, v in enumerate(values):
        np.testing.assert_allclose(
            state.density_matrix[i].numpy(), reference_rho(c, {"t": float(v)}), atol=ATOL_F64
        )


@pytest.mark.parametrize("dm_method", ["auto", "dense"])
def test_batched_channel_parameters_after_a_channel(dm_method: str) -> None:
    """A batched channel probability while ρ is factored with rank > 1 (regression: the
    weights of the batch were not repeated per component) and a batched qutrit cascade."""
    p = Parameter("p")
    c = Circuit([2, 2, 3]).add(
        H(wires=0),
        BitFlip(0.2, wires=1),
        BitFlip(p, wires=0),
        TRY(1.1, wires=2, subspace=(0, 1)),
        TRY(0.8, wires=2, subspace=(1, 2)),
        AmplitudeDamping(p, p * 0.5, wires=2),
    )
    values = torch.tensor([0.0, 0.3, 0.9], dtype=torch.float64)
    sim = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method=dm_method)
    state = sim.run(c, {"p": values})
    for i, v in enumerate(values):
        np.testing.assert_allclose(
            state.density_matrix[i].numpy(), reference_rho(c, {"p": float(v)}), atol=ATOL_F64
        )


@pytest.mark.parametrize("dm_method", ["auto", "dense"])
def test_amplitude_damping_gradient_at_zero_is_the_closed_form(dm_method: str) -> None:
    """Cascade on populations (p0, p1, p2): p0' = p0 + γ1 p1, p1' = (1-γ1) p1 + γ2 p2,
    p2' = (1-γ2) p2, so dp0'/dγ1 = p1 and dp1'/dγ2 = p2 - the decay terms enter
    linearly, so the gradient is finite at γ = 0 (no sqrt(γ) · sqrt(γ))."""
    g = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    c = Circuit.qutrits(1).add(
        TRY(1.1, wires=0, subspace=(0, 1)),
        TRY(0.8, wires=0, subspace=(1, 2)),
        AmplitudeDamping(g[0], g[1], wires=0),
    )
    pr = probs(TorchSimulator("density_matrix", dtype=torch.complex128, dm_method=dm_method).run(c))
    pr = pr.reshape(-1)
    before = pr.detach()
    (d0,) = torch.autograd.grad(pr[0], g, retain_graph=True)
    (d1,) = torch.autograd.grad(pr[1], g)
    torch.testing.assert_close(d0, torch.stack([before[1], before.new_zeros(())]), atol=ATOL_F64,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(d1, torch.stack([-before[1], before[2]]), atol=ATOL_F64, rtol=0)


@dataclass(frozen=True)
class Pass:
    """What a plan step saw on one application: the batch rows of the state, the basis
    levels the engine handed it (a first step on a basis state) and whether it got the
    no-grad workspace (reused buffers)."""

    rows: int
    basis: tuple[int, ...] | None
    workspace: bool


class StepSpy(Step):
    """A plan step that records a :class:`Pass` each time it is applied, then applies
    the step it wraps."""

    def __init__(self, inner: Step, passes: list[Pass]) -> None:
        self.inner, self.passes = inner, passes

    def apply(self, s: SimState, ctx: Context) -> SimState:
        self.passes.append(Pass(int(s.tensor.shape[0]), s.basis, ctx.work is not None))
        return self.inner.apply(s, ctx)


def spy_on_passes(plan: Plan, restore: list[tuple[Any, Any]]) -> list[Pass]:
    """Wrap the first step of ``plan`` (as cached by ``TorchSimulator.plan``); the list
    returned gets one :class:`Pass` per pass over the plan. ``restore`` (the
    ``restore_plans`` fixture) puts the step back after the test."""
    passes: list[Pass] = []
    restore.append((plan, plan.steps[0]))
    plan.steps[0] = StepSpy(plan.steps[0], passes)
    return passes


def rows_above_chunk_threshold(row_bytes: int) -> int:
    """Smallest batch whose state is over the engine's chunking threshold."""
    return MIN_CHUNKED_BYTES // row_bytes + 1


def test_chunked_no_grad_run_equals_plain_run(restore_plans: list[tuple[Any, Any]]) -> None:
    """Without autograd a large dense batch runs chunk by chunk, in place, with the same
    result as the one-pass run that autograd forces (a spy counts the passes)."""
    w = ParameterVector("w", 3)
    c = Circuit.qubits(3).add(
        RY(w[0], wires=0),
        RY(w[1], wires=1),
        CNOT(wires=[0, 2]),
        Depolarizing(0.1, wires=2),
        RZ(w[2], wires=2),
    )
    rows = rows_above_chunk_threshold(64 * 16)  # ρ of 3 qubits in complex128
    vals = torch.rand(rows, 3, dtype=torch.float64)
    sim = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense")
    passes = spy_on_passes(sim.plan(c), restore_plans)
    plain = sim.run(c, {"w": vals.clone().requires_grad_()}).density_matrix.detach()
    assert [p.rows for p in passes] == [rows]
    passes.clear()
    chunked = sim.run(c, {"w": vals}).density_matrix
    chunks = [p.rows for p in passes]
    assert len(chunks) >= MIN_CHUNKS and sum(chunks) == rows and max(chunks) < rows
    torch.testing.assert_close(chunked, plain, atol=ATOL_F64, rtol=0)
    for i in (0, 1, rows // 2, rows - 1):
        np.testing.assert_allclose(
            plain[i].numpy(), reference_rho(c, {"w": vals[i]}), atol=ATOL_F64
        )


def test_parameter_vector_binding_matches_scalars() -> None:
    w = ParameterVector("w", 4)
    c_vec = Circuit.qubits(2).add(
        RY(w[0], wires=0), RY(w[1], wires=1), RZ(w[3], wires=0), RX(2 * w[2], wires=1)
    )
    s = [Parameter(f"s{i}") for i in range(4)]
    c_sc = Circuit.qubits(2).add(
        RY(s[0], wires=0), RY(s[1], wires=1), RZ(s[3], wires=0), RX(2 * s[2], wires=1)
    )
    vals = torch.rand(6, 4, dtype=torch.float64)
    sim = TorchSimulator(dtype=torch.complex128)
    a = sim.run(c_vec, {"w": vals}).vector
    b = sim.run(c_sc, {f"s{i}": vals[:, i] for i in range(4)}).vector
    torch.testing.assert_close(a, b, atol=ATOL_F64, rtol=0)


def test_whole_register_purity_and_entropy_of_a_factored_state_match_dense() -> None:
    """Purity and entropy of a factored ρ come from its r × r Gram matrix: same values."""
    from qsem.simulators import entropy, purity

    c = noisy(2)
    auto = TorchSimulator("density_matrix", dtype=torch.complex128).run(c)
    dense = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense").run(c)
    assert auto.rank == 12
    torch.testing.assert_close(purity(auto), purity(dense), atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(entropy(auto), entropy(dense), atol=1e-8, rtol=0)
    assert auto._tensor is None  # the dense ρ was never built


def test_no_grad_statevector_batches_run_in_chunks_with_the_same_result(
    restore_plans: list[tuple[Any, Any]],
) -> None:
    w = ParameterVector("w", 2)
    c = Circuit.qutrits(3).add(TRY(w[0], wires=0), TAdd(wires=[0, 1]), TRX(w[1], wires=2))
    rows = rows_above_chunk_threshold(27 * 16)  # 3 qutrits in complex128
    vals = torch.rand(rows, 2, dtype=torch.float64)
    sim = TorchSimulator(dtype=torch.complex128)
    passes = spy_on_passes(sim.plan(c), restore_plans)
    plain = sim.run(c, {"w": vals.clone().requires_grad_()}).vector.detach()
    assert [p.rows for p in passes] == [rows]
    passes.clear()
    with torch.no_grad():
        chunked = sim.run(c, {"w": vals}).vector
    chunks = [p.rows for p in passes]
    assert len(chunks) >= MIN_CHUNKS and sum(chunks) == rows and max(chunks) < rows
    torch.testing.assert_close(chunked, plain, atol=ATOL_F64, rtol=0)
