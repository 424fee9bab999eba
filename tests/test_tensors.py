"""Typed semantic tensors φ, Φ, Ψ, Λ, Ω (qsem.tensors) against hand-computed cases.

References: small tensors worked out by hand, closed forms of the commutator norms,
finite differences (gradcheck) and the probabilities the torch engine measures on
the circuit that prepares the same state as Ω.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import ATOL_F32, ATOL_F64, ATOL_PROPERTY

from qsem.circuits import (
    CNOT,
    RY,
    Circuit,
    Controlled,
    Depolarizing,
    DimensionError,
    Fourier,
    H,
    InvalidStateError,
    Parameter,
    QsemTypeError,
    QsemValueError,
    SubspaceRY,
    TShift,
)
from qsem.simulators import TorchSimulator, probs, reduced_density_matrix, simulate
from qsem.tensors import (
    Lambda,
    Omega,
    Phi,
    PhiOps,
    Psi,
    commutator,
    compose,
    fold,
    nci,
    nci_avg,
    omega_dims,
    pi_edge,
    pi_edge_born,
    pi_edge_compressed,
    semantic_embedding,
    top_slices,
    truncated_svd,
)

F64 = torch.float64
C128 = torch.complex128


def close(a: torch.Tensor, b: object, atol: float = ATOL_F64) -> None:
    b_t = torch.as_tensor(b, dtype=a.dtype)
    torch.testing.assert_close(a, b_t, atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# φ
# ---------------------------------------------------------------------------------------------
# V = 3 vocabulary items over S = 3 (T, F, U) × C = 2.
E_HAND = torch.tensor(
    [
        [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]],  # e_0 = (T, c0)
        [[0.0, 0.0], [0.5, 0.5], [0.0, 0.0]],  # e_1 = F, either category
        [[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]],  # e_2 = (U, c1)
    ],
    dtype=F64,
)


def test_phi_from_logits_matches_hand_computation() -> None:
    # position 0: softmax(log [1, 2, 1]) = (1/4, 1/2, 1/4); position 1: uniform 1/3
    logits = torch.stack(
        [torch.log(torch.tensor([1.0, 2.0, 1.0], dtype=F64)), torch.zeros(3, dtype=F64)]
    )
    phi = Phi.from_logits(logits, E_HAND)
    expected = [
        [[0.25, 0.0], [0.25, 0.25], [0.0, 0.25]],
        [[1 / 3, 0.0], [1 / 6, 1 / 6], [0.0, 1 / 3]],
    ]
    close(phi.data, expected)
    assert phi.axes == ("L", "S", "C")
    assert phi.sizes == {"L": 2, "S": 3, "C": 2}
    close(phi.marginal("S"), [[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    close(phi.marginal("C"), [[0.5, 0.5], [0.5, 0.5]])
    close(phi.flat()[0], [0.25, 0.0, 0.25, 0.25, 0.0, 0.25])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_phi_sums_to_one_per_position(dtype: torch.dtype) -> None:
    logits = 3 * torch.randn(4, 5, 7, dtype=dtype)
    emb = semantic_embedding(torch.randn(7, 3, 4, dtype=dtype))
    phi = Phi.from_logits(logits, emb)
    assert phi.axes == ("B", "L", "S", "C") and phi.shape == (4, 5, 3, 4)
    atol = 1e-6 if dtype == torch.float32 else ATOL_F64
    close(phi.data.sum((-2, -1)), torch.ones(4, 5), atol=atol)
    assert bool((phi.data >= 0).all())
    Phi(phi.data)  # passes its own validation


def test_phi_gradients_against_finite_differences() -> None:
    logits = torch.randn(2, 2, 3, dtype=F64, requires_grad=True)
    weights = torch.randn(3, 3, 2, dtype=F64, requires_grad=True)
    target = torch.rand(2, 2, 3, 2, dtype=F64)

    def f(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (Phi.from_logits(z, semantic_embedding(w)).data * target).sum((-2, -1))

    assert torch.autograd.gradcheck(f, (logits, weights))


def test_phi_distance() -> None:
    a = Phi(torch.tensor([[[1.0, 0.0]]], dtype=F64))
    b = Phi(torch.tensor([[[0.0, 1.0]]], dtype=F64))
    close(a.distance(b), math.sqrt(2))
    close(a.distance(b, norm="l1"), 2.0)


# ---------------------------------------------------------------------------------------------
# Φ: composition, fold, NCI
# ---------------------------------------------------------------------------------------------
E12 = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=F64)
E21 = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)
E11 = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64)
PX = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64)
PZ = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=F64)


def test_compose_is_the_product_at_lambda_zero() -> None:
    a, b = torch.randn(4, 6, 6, dtype=F64), torch.randn(4, 6, 6, dtype=F64)
    close(compose(a, b, 0.0), a @ b)


def test_compose_order_matters_for_nonzero_lambda() -> None:
    # E12 E21 = diag(1, 0), E21 E12 = diag(0, 1), [E12, E21] = diag(1, -1)
    close(commutator(E12, E21), torch.diag(torch.tensor([1.0, -1.0])))
    close(compose(E12, E21, 0.5), torch.diag(torch.tensor([1.5, -0.5])))
    close(compose(E21, E12, 0.5), torch.diag(torch.tensor([-0.5, 1.5])))
    close(compose(E12, E21, -1.0), E21 @ E12)  # λ = −1 reverses the product


def test_compose_with_batched_lambda() -> None:
    lam = torch.tensor([0.0, 0.5, -1.0], dtype=F64)
    out = compose(E12.expand(3, 2, 2), E21.expand(3, 2, 2), lam)
    close(
        out,
        torch.stack([torch.diag(torch.tensor(v)) for v in ([1.0, 0.0], [1.5, -0.5], [0.0, 1.0])]),
    )


def test_fold_is_the_left_fold_and_order_dependent() -> None:
    lam = 0.5
    m = torch.stack([E12, E21, PX])
    # ((E12 ⊗' E21) ⊗' X) = diag(1.5, -0.5) X + 0.5 [diag(1.5, -0.5), X]
    d = torch.diag(torch.tensor([1.5, -0.5], dtype=F64))
    expected = d @ PX + lam * (d @ PX - PX @ d)  # = [[0, 2.5], [-1.5, 0]]
    close(expected, [[0.0, 2.5], [-1.5, 0.0]])
    close(fold(m, lam), expected)
    ops = PhiOps.from_matrices(m, s=2, c=1)
    close(ops.fold(lam), expected)
    assert not torch.allclose(ops.fold(lam), fold(m.flip(0), lam))
    close(ops.fold(0.0), E12 @ E21 @ PX)
    close(fold(m[:1], lam), E12)  # L = 1: the operator itself


@pytest.mark.parametrize(
    ("a", "b", "value"),
    [
        (PX, PZ, math.sqrt(2)),  # [X, Z] = −2iY: 2√2 / (√2 √2)
        (E11, E12, 1.0),  # [E11, E12] = E12
        (3 * E11, -2 * E12, 1.0),  # scale invariant
        (
            torch.diag(torch.tensor([1.0, 2.0], dtype=F64)),
            torch.diag(torch.tensor([-3.0, 5.0], dtype=F64)),
            0.0,
        ),
        (PX, PX, 0.0),
        (torch.zeros(2, 2, dtype=F64), PX, 0.0),  # defined as 0 for a zero operator
    ],
)
def test_nci_closed_forms(a: torch.Tensor, b: torch.Tensor, value: float) -> None:
    close(nci(a, b), value)


def test_nci_complex_pauli_pair() -> None:
    py = torch.tensor([[0, -1j], [1j, 0]], dtype=C128)
    close(nci(PX.to(C128), py), math.sqrt(2))


def test_nci_avg_over_adjacent_positions() -> None:
    close(nci_avg(torch.stack([PX, PZ, PX])), math.sqrt(2))
    close(nci_avg(torch.stack([PX, PX, PZ])), math.sqrt(2) / 2)
    close(nci_avg(torch.stack([PX])), 0.0)
    batched = PhiOps.from_matrices(
        torch.stack([torch.stack([PX, PZ]), torch.stack([PX, PX])]), 2, 1
    )
    close(batched.nci_avg(), [math.sqrt(2), 0.0])
    # masked: only pairs of two real positions count (padding = identity, NCI 0)
    eye = torch.eye(2)
    ops = torch.stack([torch.stack([PX, PZ, eye, eye]), torch.stack([PX, PX, PZ, eye])])
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    close(nci_avg(ops, mask), [math.sqrt(2), math.sqrt(2) / 2])
    close(nci_avg(ops), [math.sqrt(2) / 3, math.sqrt(2) / 3])
    close(nci_avg(ops, torch.zeros(2, 4, dtype=torch.bool)), [0.0, 0.0])
    with pytest.raises(QsemValueError, match="argument 'mask'"):
        nci_avg(ops, mask[:, :3])
    with pytest.raises(QsemTypeError, match="argument 'mask'"):
        nci_avg(ops, mask.float())


def test_nci_gradients_against_finite_differences() -> None:
    a = torch.randn(3, 3, dtype=F64, requires_grad=True)
    b = torch.randn(3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(nci, (a, b))


def test_phi_ops_layout_and_apply() -> None:
    m = torch.randn(2, 4, 6, 6, dtype=F64)  # B = 2, L = 4, S·C = 3·2
    ops = PhiOps.from_matrices(m, s=3, c=2)
    assert ops.axes == ("B", "L", "S", "C", "O") and ops.shape == (2, 4, 3, 2, 6)
    close(ops.matrices, m)
    close(ops.data[1, 2, 2, 1], m[1, 2, 5])  # row s·C + c = 2·2 + 1
    phi = Phi(torch.full((2, 4, 3, 2), 1 / 6, dtype=F64))
    close(ops.apply(phi).flatten(-2), (m @ torch.full((6, 1), 1 / 6, dtype=F64))[..., 0])


# ---------------------------------------------------------------------------------------------
# Ψ and Λ
# ---------------------------------------------------------------------------------------------
def test_psi_slices_append_and_delta() -> None:
    uniform = Phi(torch.full((2, 1, 2), 0.5, dtype=F64))  # L = 2, S = 1, C = 2
    onehot = Phi(torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]], dtype=F64))
    psi0 = Psi.from_phi(uniform)
    assert psi0.sizes == {"B": 1, "L": 2, "S": 1, "C": 2, "P": 1}
    psi1 = psi0.append_slice(onehot)
    assert psi1.size("P") == 2
    close(psi1.slice(-1).data[0], onehot.data)
    close(psi1.slice(0).data[0], uniform.data)
    # the next step moves slice 0 to onehot: ‖(0.5, -0.5)‖ = √0.5 at l = 0, 0 at l = 1
    psi2 = Psi(torch.stack([onehot.data, onehot.data], -1)[None])
    close(psi2.delta(psi1), [[[math.sqrt(0.5), 0.0], [0.0, 0.0]]])
    close(psi2.delta(psi1, norm="l1"), [[[1.0, 0.0], [0.0, 0.0]]])
    close(psi1.delta(psi0), [[[0.0], [0.0]]])  # the appended slice has no predecessor


def test_lambda_projection_hand_computed() -> None:
    # B = L = 1, S = 2, C = 1, P = 2, Z = 2: components one-hot on s = 0 or s = 1
    data = torch.zeros(1, 1, 2, 1, 2, 2, dtype=F64)
    data[0, 0, 0, 0, 0, 0] = 1.0  # p = 0, z = 0 -> s = 0
    data[0, 0, 1, 0, 0, 1] = 1.0  # p = 0, z = 1 -> s = 1
    data[0, 0, 1, 0, 1, 0] = 1.0  # p = 1, z = 0 -> s = 1
    data[0, 0, 1, 0, 1, 1] = 1.0  # p = 1, z = 1 -> s = 1
    lam = Lambda(data)
    close(lam.project().data[0, 0, :, 0], [0.25, 0.75])
    wz = torch.tensor([0.2, 0.8], dtype=F64)
    wp = torch.tensor([0.5, 0.5], dtype=F64)
    # p = 0: (0.2, 0.8); p = 1: (0, 1) -> (0.1, 0.9)
    close(lam.project(wz, wp).data[0, 0, :, 0], [0.1, 0.9])
    close(lam.project(wz, torch.tensor([1.0, 0.0], dtype=F64)).data[0, 0, :, 0], [0.2, 0.8])


def test_lambda_from_logits_projects_to_a_distribution() -> None:
    lam = Lambda.from_logits(torch.randn(2, 3, 3, 2, 2, 4, dtype=F64))
    close(lam.data.sum((2, 3)), torch.ones(2, 3, 2, 4))
    w = torch.softmax(torch.randn(2, 3, 2, 4, dtype=F64), -1)
    phi = lam.project(weights_z=w)
    close(phi.data.sum((-2, -1)), torch.ones(2, 3))


# ---------------------------------------------------------------------------------------------
# Ω
# ---------------------------------------------------------------------------------------------
def random_omega(shape: tuple[int, ...], n_categories: int | None = None) -> Omega:
    x = torch.randn(*shape, dtype=C128)
    x = x / torch.sqrt((x.abs() ** 2).sum(dim=(2, 3, 5, 6), keepdim=True))
    return Omega(x, n_categories=n_categories)


def test_density_matrices_are_states() -> None:
    omega = random_omega((2, 3, 3, 2, 2, 4, 3))
    rho = omega.density_matrices()
    assert rho.shape == (2, 3, 2, 24, 24)
    close(rho, rho.mH, atol=ATOL_PROPERTY)
    close(
        torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1).real, torch.ones(2, 3, 2), atol=ATOL_PROPERTY
    )
    assert float(torch.linalg.eigvalsh(rho).min()) > -ATOL_PROPERTY
    red = omega.reduced_density_matrices()
    ref = rho.reshape(2, 3, 2, 6, 4, 6, 4).diagonal(dim1=-3, dim2=-1).sum(-1)
    close(red, ref)


def circuit_s_c_z() -> Circuit:
    """An entangling circuit on [S=3, 2, 2] with a batched parameter."""
    return Circuit([3, 2, 2]).add(
        Fourier(wires=0),
        SubspaceRY(Parameter("t"), wires=0, subspace=(1, 2)),
        RY(0.7, wires=1),
        Controlled(RY(1.1, wires=2), control_wires=[0], control_values=[2]),
        CNOT(wires=[1, 2]),
        Controlled(H(wires=1), control_wires=[2]),
    )


THETAS = torch.tensor([0.3, -1.2, 2.0], dtype=F64)


@pytest.mark.parametrize("n_c", [1, 2])
def test_pi_edge_equals_circuit_probabilities(n_c: int) -> None:
    state = TorchSimulator(dtype=C128).run(circuit_s_c_z(), {"t": THETAS})
    assert state.mode == "statevector"
    omega = Omega.from_state(state, n_c=n_c)
    assert omega.sizes == {
        "B": 3,
        "L": 1,
        "S": 3,
        "C": 2**n_c,
        "P": 1,
        "Z": 2 ** (2 - n_c),
        "Psi": 1,
    }
    assert omega.dims == [3, 2, 2] and omega.c_wires == list(range(1, 1 + n_c))
    p = probs(state, wires=[0, *omega.c_wires]).reshape(3, 3, 2**n_c)
    per_b = pi_edge(omega, reduce_b=False)
    close(per_b.data[:, 0], p)
    close(pi_edge(omega).data[0], p.mean(0))
    w = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    close(pi_edge(omega, weights_b=w).data[0], (w[:, None, None] * p).sum(0))
    close(omega.density_matrices()[:, 0, 0], state.density_matrix)


def test_pi_edge_in_single_precision() -> None:
    state = TorchSimulator(dtype=torch.complex64).run(circuit_s_c_z(), {"t": THETAS.float()})
    omega = Omega.from_state(state, n_c=1, shape=(1, 1, 3))  # the batch as slices P
    assert omega.dtype == torch.complex64
    p = probs(state, wires=[0, 1]).reshape(3, 3, 2)
    close(pi_edge(omega).data[0], p.mean(0), atol=ATOL_F32)


def test_pi_edge_of_a_mixed_state_from_a_noisy_circuit() -> None:
    circuit = circuit_s_c_z().add(Depolarizing(0.3, wires=0), Depolarizing(0.1, wires=2))
    for method in ("auto", "dense"):
        state = TorchSimulator("density_matrix", dtype=C128, dm_method=method).run(
            circuit, {"t": THETAS}
        )
        omega = Omega.from_state(state, n_c=1, shape=(1, 3, 1))  # the batch as positions L
        close(omega.density_matrices()[0, :, 0], state.density_matrix, atol=1e-8)
        p = probs(state, wires=[0, 1]).reshape(3, 3, 2)
        close(pi_edge(omega).data, p, atol=1e-8)
        # Ω back to a State: the qsem measurements agree with Ω's own reductions
        back = omega.to_state()
        close(
            reduced_density_matrix(back, [0, 1]),
            omega.reduced_density_matrices()[0, :, 0],
            atol=1e-8,
        )


def test_pi_edge_renormalises_unused_category_states() -> None:
    # C register of 2 qubits holds 3 categories: basis state |11> is unused
    state = TorchSimulator(dtype=C128).run(circuit_s_c_z(), {"t": THETAS})
    omega = Omega.from_state(state, n_c=2, n_categories=3)
    p = probs(state, wires=[0, 1, 2]).reshape(3, 3, 4)[..., :3]
    p = p / p.sum((-2, -1), keepdim=True)
    close(pi_edge(omega, reduce_b=False).data[:, 0], p)
    # hand case: (|T,00> + |T,11>)/√2 -> all weight on (T, category 0)
    v = torch.zeros(1, 1, 1, 1, 12, dtype=C128)
    v[..., 0] = v[..., 3] = 1 / math.sqrt(2)
    hand = Omega.from_vectors(v, [3, 2, 2], n_c=2, n_categories=3)
    close(pi_edge(hand).data[0], [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("n_categories", "n_z", "s", "dims"),
    [
        (1, 0, 3, [3]),
        (2, 1, 3, [3, 2, 2]),
        (3, 0, 3, [3, 2, 2]),
        (5, 2, 2, [2, 2, 2, 2, 2, 2]),
        (3, 1, 1, [2, 2, 2]),  # s = 1: no S wire
    ],
)
def test_omega_dims(n_categories: int, n_z: int, s: int, dims: list[int]) -> None:
    assert omega_dims(n_categories, n_z, s) == dims


def test_omega_without_an_s_wire() -> None:
    """Register [2, 2, 2] = C (2 qubits, 3 categories) + Z (1 qubit), no S wire (S = 1)."""
    circuit = Circuit([2, 2, 2]).add(
        RY(Parameter("t"), wires=0), H(wires=1), CNOT(wires=[0, 2]), RY(0.4, wires=2)
    )
    state = TorchSimulator(dtype=C128).run(circuit, {"t": THETAS})
    omega = Omega.from_state(state, n_c=2, n_categories=3, s_wire=False)
    assert omega.sizes == {"B": 3, "L": 1, "S": 1, "C": 4, "P": 1, "Z": 2, "Psi": 1}
    assert omega.dims == [2, 2, 2] and omega.s_wire is None
    assert omega.c_wires == [0, 1] and omega.z_wires == [2]
    back = omega.to_state()
    assert back.mode == "statevector" and back.dims == (2, 2, 2)
    close(back.vector, state.vector)
    p = probs(state, wires=[0, 1])[:, :3]
    close(pi_edge(omega, reduce_b=False).data[:, 0, 0], p / p.sum(-1, keepdim=True))
    # the same layout read from the vectors, and from ρ
    vec = Omega.from_vectors(state.vector.reshape(3, 1, 1, 1, 8), [2, 2, 2], 2, s_wire=False)
    close(vec.data, omega.data)
    rho = state.density_matrix.reshape(3, 1, 1, 8, 8)
    dm = Omega.from_density_matrices(rho, [2, 2, 2], 2, s_wire=False)
    close(dm.density_matrices(), rho, atol=1e-10)


def test_pure_omega_to_state_is_a_statevector_and_mixed_is_factored() -> None:
    pure = random_omega((2, 3, 3, 2, 2, 2, 1))
    st = pure.to_state()
    assert st.mode == "statevector" and st.batch_size == 2 * 3 * 2
    close(st.density_matrix.reshape(2, 3, 2, 12, 12), pure.density_matrices())
    mixed = random_omega((2, 3, 3, 2, 2, 2, 3))
    st = mixed.to_state()
    assert st.mode == "density_matrix" and st.rank == 3
    close(st.density_matrix.reshape(2, 3, 2, 12, 12), mixed.density_matrices())


def test_pi_edge_born_is_pi_edge_on_born_weights() -> None:
    omega = random_omega((2, 3, 3, 4, 2, 2, 2), n_categories=3)
    wp = torch.tensor([0.3, 0.7], dtype=F64)
    for reduce_b in (True, False):
        want = pi_edge(omega, weights_p=wp, reduce_b=reduce_b).data
        got = pi_edge_born(omega.born(), 3, weights_p=wp, reduce_b=reduce_b).data
        close(got, want)
    # by hand: restrict to the categories, renormalise, mix the slices
    born = omega.born()[:, :, :, :3]
    born = born / born.sum(dim=(2, 3), keepdim=True)
    close(pi_edge_born(omega.born(), 3, reduce_b=False).data, born.mean(-1))


def test_pi_edge_hand_state_with_slices_and_weights() -> None:
    # P = 2 slices of |S> ⊗ |C> (no Z): slice 0 = |T,0>, slice 1 = |U>(|0> + |1>)/√2
    v = torch.zeros(1, 1, 2, 1, 6, dtype=C128)
    v[0, 0, 0, 0, 0] = 1.0
    v[0, 0, 1, 0, 4] = v[0, 0, 1, 0, 5] = 1 / math.sqrt(2)
    omega = Omega.from_vectors(v, [3, 2], n_c=1)
    wp = torch.tensor([0.25, 0.75], dtype=F64)
    close(pi_edge(omega, weights_p=wp).data[0], [[0.25, 0.0], [0.0, 0.0], [0.375, 0.375]])


def test_pi_edge_gradient_against_finite_differences() -> None:
    def f(t: torch.Tensor) -> torch.Tensor:
        state = TorchSimulator(dtype=C128).run(circuit_s_c_z(), {"t": t})
        return pi_edge(Omega.from_state(state, n_c=1)).data

    assert torch.autograd.gradcheck(f, (THETAS.clone().requires_grad_(),))


def test_pi_edge_gradient_through_a_dense_depolarised_state() -> None:
    # ρ_S ⊗ ρ_C with depolarised factors has repeated eigenvalues, where an eigh backward fails
    circuit = Circuit([3, 2]).add(
        SubspaceRY(Parameter("t"), wires=0, subspace=(0, 2)),
        RY(0.7, wires=1),
        Depolarizing(0.4, wires=0),
        Depolarizing(0.2, wires=1),
    )
    sim = TorchSimulator("density_matrix", dtype=C128, dm_method="dense")

    def f(t: torch.Tensor) -> torch.Tensor:
        return pi_edge(Omega.from_state(sim.run(circuit, {"t": t}), n_c=1)).data

    t0 = THETAS.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (t0,), atol=1e-6)
    spectrum = torch.linalg.eigvalsh(sim.run(circuit, {"t": THETAS}).density_matrix[0])
    assert float((spectrum[1:] - spectrum[:-1]).abs().min()) < 1e-9  # degenerate


def test_from_density_matrices_reproduces_rho() -> None:
    omega = random_omega((1, 2, 3, 2, 1, 1, 2))
    rho = omega.density_matrices()
    again = Omega.from_density_matrices(rho, omega.dims, n_c=1)
    assert again.size("Psi") == 6
    close(again.density_matrices(), rho)
    close(pi_edge(again).data, pi_edge(omega).data)


# ---------------------------------------------------------------------------------------------
# Compressed Π_edge
# ---------------------------------------------------------------------------------------------
def test_compressed_pi_edge_is_exact_at_full_rank_and_counts_bytes() -> None:
    omega = random_omega((2, 3, 3, 2, 2, 2, 1))  # rows B·L·P = 12, columns S·C·Z·Psi = 12
    full = pi_edge_compressed(omega, rank=12)
    assert full.rel_error < 1e-12 and full.phi_error < 1e-12
    close(full.phi.data, pi_edge(omega).data)
    # complex128 = 16 bytes, float64 singular values = 8 bytes
    assert full.bytes_full == 144 * 16 == 2304
    r4 = pi_edge_compressed(omega, rank=4)
    assert r4.bytes_compressed == (12 * 4 + 4 * 12) * 16 + 4 * 8 == 1568
    assert r4.bytes_saved == 2304 - 1568 == 736
    errors = [pi_edge_compressed(omega, rank=r).rel_error for r in range(1, 13)]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(errors))
    assert errors[0] > 0.1
    close(r4.phi.data.sum((-2, -1)), torch.ones(3))  # still a distribution


def test_truncated_svd_hand_cases() -> None:
    x = torch.outer(torch.tensor([1.0, 2.0, 3.0], dtype=F64), torch.tensor([1.0, -1.0], dtype=F64))
    comp = truncated_svd(x, 1, row_axes=[0])
    assert comp.rel_error < 1e-12
    close(comp.reconstruction, x)
    assert comp.bytes_full == 48 and comp.bytes_compressed == (3 + 2) * 8 + 8
    # singular values 3 and 4: rank 1 keeps 4, error 3/5
    y = torch.diag(torch.tensor([3.0, 4.0], dtype=F64))
    assert abs(truncated_svd(y, 1, row_axes=[0]).rel_error - 0.6) < 1e-12
    # PCA: a constant column offset costs nothing at rank 1 once centred
    z = x + torch.tensor([5.0, 7.0], dtype=F64)
    pca = truncated_svd(z, 1, row_axes=[0], center=True)
    assert pca.rel_error < 1e-12 and pca.bytes_compressed == (3 + 2 + 2) * 8 + 8
    # unfolding on other axes: reconstruction keeps the input's shape
    t = torch.randn(2, 3, 4, dtype=F64)
    close(truncated_svd(t, 3, row_axes=[2, 0]).reconstruction, t)  # (8, 3): full rank 3


def test_top_slice_selection() -> None:
    omega = random_omega((1, 2, 3, 2, 3, 1, 1))
    wp = torch.tensor([0.1, 0.6, 0.3], dtype=F64)
    assert top_slices(omega, 2, wp).tolist() == [1, 2]
    assert top_slices(omega, 1).tolist() == [2]  # uniform: ties go to the most recent
    res = pi_edge_compressed(omega, top_p=2, weights_p=wp)
    per_p = (
        pi_edge(Omega(omega.data[:, :, :, :, [1]])).data,
        pi_edge(Omega(omega.data[:, :, :, :, [2]])).data,
    )
    close(res.phi.data, (0.6 * per_p[0] + 0.3 * per_p[1]) / 0.9)
    assert res.slices.tolist() == [1, 2] and res.rel_error == 0.0
    assert res.bytes_saved == omega.data.numel() * 16 // 3
    exact = pi_edge_compressed(omega, top_p=3, weights_p=wp)
    assert exact.phi_error < 1e-12 and exact.bytes_saved == 0
    both = pi_edge_compressed(omega, top_p=2, rank=2, weights_p=wp)  # rows 4, cols 6
    assert both.bytes_compressed == (4 * 2 + 2 * 6) * 16 + 2 * 8


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: Phi([[[1.0]]]), QsemTypeError, "argument 'data'"),
        (lambda: Phi(torch.ones(2, 2)), QsemValueError, "argument 'data'.*shape"),
        (lambda: Phi(torch.ones(1, 3, 2)), QsemValueError, "argument 'data'.*sum to 1"),
        (
            lambda: Phi(torch.tensor([[[1.5, -0.5]]])),
            QsemValueError,
            "argument 'data'.*non-negative",
        ),
        (
            lambda: Phi(torch.tensor([[[float("nan"), 1.0]]])),
            QsemValueError,
            "argument 'data'.*NaN",
        ),
        (lambda: Phi(torch.ones(1, 1, 1, dtype=torch.int64)), QsemTypeError, "argument 'data'"),
        (
            lambda: Phi.from_logits(torch.zeros(2, 4), E_HAND),
            DimensionError,
            "argument 'embedding'",
        ),
        (
            lambda: Phi.from_logits(torch.zeros(2, 3), 2 * E_HAND),
            QsemValueError,
            "argument 'embedding'",
        ),
        (lambda: Phi.from_logits(torch.zeros(3), E_HAND), QsemValueError, "argument 'logits'"),
        (lambda: PhiOps(torch.zeros(2, 3, 2, 5)), DimensionError, "argument 'data'.*S·C"),
        (lambda: PhiOps(torch.zeros(3, 2, 6)), QsemValueError, "argument 'data'"),
        (
            lambda: PhiOps.from_matrices(torch.zeros(2, 6, 6), s=4, c=2),
            DimensionError,
            "argument 'matrices'",
        ),
        (
            lambda: PhiOps.from_matrices(torch.zeros(2, 6, 5), s=3, c=2),
            QsemValueError,
            "argument 'matrices'",
        ),
        (lambda: compose(E12, torch.eye(3, dtype=F64)), DimensionError, "argument 'b'"),
        (lambda: compose(E12, E21, float("inf")), QsemValueError, "argument 'lam'"),
        (lambda: compose(E12, E21, "0.5"), QsemTypeError, "argument 'lam'"),
        (lambda: nci(torch.zeros(2, 3), E12), QsemValueError, "argument 'a'"),
        (lambda: Psi(torch.ones(1, 1, 1, 1)), QsemValueError, "argument 'data'"),
        (lambda: Psi(torch.ones(1, 1, 2, 1, 1)), QsemValueError, "argument 'data'.*sum to 1"),
        (
            lambda: Psi(torch.full((1, 1, 2, 1, 1), 0.5)).append_slice(Phi(torch.ones(2, 1, 1))),
            DimensionError,
            "argument 'phi'",
        ),
        (lambda: Psi(torch.full((1, 1, 2, 1, 1), 0.5)).slice(3), QsemValueError, "argument 'p'"),
        (lambda: Lambda(torch.ones(1, 1, 1, 1, 1)), QsemValueError, "argument 'data'"),
        (lambda: Lambda(torch.ones(1, 1, 2, 1, 1, 1)), QsemValueError, "argument 'data'.*sum to 1"),
        (
            lambda: Lambda(torch.ones(1, 1, 1, 1, 1, 2)).project(weights_z=torch.ones(2)),
            QsemValueError,
            "argument 'weights_z'.*sum to 1",
        ),
        (
            lambda: Lambda(torch.ones(1, 1, 1, 1, 1, 2)).project(weights_z=torch.ones(3) / 3),
            DimensionError,
            "argument 'weights_z'",
        ),
        (
            lambda: Omega(torch.ones(1, 1, 3, 1, 1, 1, 1) / 3**0.5),
            QsemTypeError,
            "argument 'data'.*complex",
        ),
        (
            lambda: Omega(torch.ones(1, 3, 1, 1, 1, 1, dtype=C128)),
            QsemValueError,
            "argument 'data'",
        ),
        (
            lambda: Omega(torch.ones(1, 1, 3, 3, 1, 1, 1, dtype=C128) / 3),
            DimensionError,
            "power-of-two",
        ),
        (
            lambda: Omega(torch.ones(1, 1, 3, 2, 1, 1, 1, dtype=C128)),
            InvalidStateError,
            "argument 'data'",
        ),
        (
            lambda: Omega(torch.ones(1, 1, 3, 2, 1, 1, 1, dtype=C128) / 6**0.5, n_categories=3),
            QsemValueError,
            "argument 'n_categories'",
        ),
        (
            lambda: Omega.from_vectors(
                torch.ones(1, 1, 1, 1, 12, dtype=C128) / 12**0.5, [3, 3], n_c=1
            ),
            DimensionError,
            "argument 'dims'",
        ),
        (
            lambda: Omega.from_density_matrices(
                torch.ones(1, 1, 1, 6, 6, dtype=C128), [3, 2], n_c=1
            ),
            InvalidStateError,
            "argument 'rho'",
        ),
        (lambda: Omega.from_state(torch.ones(6), n_c=1), QsemTypeError, "argument 'state'"),
        (
            lambda: Omega.from_state(
                simulate(Circuit([3, 2]).add(TShift(wires=0))), n_c=1, shape=(2, 1, 1)
            ),
            DimensionError,
            "argument 'shape'",
        ),
        (lambda: pi_edge(torch.ones(3)), QsemTypeError, "argument 'omega'"),
        (lambda: pi_edge_born(torch.ones(2, 3), 1), QsemValueError, "argument 'born'"),
        (lambda: pi_edge_born(torch.ones(1, 1, 3, 2, 1), 3), QsemValueError, "'n_categories'"),
        (
            lambda: Omega.from_vectors(
                torch.ones(1, 1, 1, 1, 6, dtype=C128) / 6**0.5, [3, 2], n_c=1, s_wire=False
            ),
            DimensionError,
            r"argument 'dims'.*s_wire=False",
        ),
        (lambda: omega_dims(0), QsemValueError, "argument 'n_categories'"),
        (lambda: omega_dims(2, n_z=-1), QsemValueError, "argument 'n_z'"),
        (
            lambda: pi_edge(
                Omega(torch.eye(4, dtype=C128)[3].reshape(1, 1, 2, 2, 1, 1, 1), n_categories=1)
            ),
            QsemValueError,
            "argument 'omega'.*no probability",
        ),
        (
            lambda: truncated_svd(torch.ones(3, 2), 3, row_axes=[0]),
            QsemValueError,
            "argument 'rank'",
        ),
        (
            lambda: truncated_svd(torch.ones(3, 2), 1, row_axes=[0, 0]),
            QsemValueError,
            "argument 'row_axes'",
        ),
        (
            lambda: top_slices(random_omega((1, 1, 3, 2, 2, 1, 1)), 3),
            QsemValueError,
            "argument 'top_p'",
        ),
    ],
)
def test_bad_input_names_the_argument(build, error, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match):
        build()


# ---------------------------------------------------------------------------------------------
# The documentation's examples
# ---------------------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[1] / "docs" / "tensors.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(DOC_BLOCKS)))
def test_doc_examples_run(index: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(DOC_BLOCKS[index], f"docs/tensors.md[{index}]", "exec"), {})


def test_python_float_lambda_keeps_double_precision() -> None:
    """λ given as a Python float must not pass through float32 (regression)."""
    import qsem.tensors as T

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 3, dtype=torch.float64, generator=g)
    b = torch.rand(3, 3, dtype=torch.float64, generator=g)
    ab = a @ b
    expected = ab + 0.1 * (ab - b @ a)
    assert float((T.compose(a, b, 0.1) - expected).abs().max()) < 1e-15
