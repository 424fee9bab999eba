"""SWAP test templates, exact overlap / fidelity, shot estimates with confidence intervals.

References: hand-written matrices and NumPy traces, Qiskit ``quantum_info``
(``Operator``, ``state_fidelity``), closed forms (the qubit fidelity formula
``F = Tr ρσ + 2 sqrt(det ρ det σ)``, the classical fidelity of commuting states),
SciPy's ``binomtest`` intervals and exact binomial coverage sums.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import qiskit.quantum_info as qi
import torch
from conftest import ATOL_BACKENDS, ATOL_F64, FD_ATOL, SHOT_SIGMAS
from qiskit import QuantumCircuit
from scipy import stats

from qsem.circuits import (
    CNOT,
    RY,
    RZ,
    TRY,
    Circuit,
    DimensionError,
    InvalidStateError,
    Parameter,
    QsemTypeError,
    QsemValueError,
    TAdd,
)
from qsem.circuits.channels import AmplitudeDamping, Depolarizing
from qsem.circuits.templates import (
    destructive_swap_registers,
    destructive_swap_signs,
    destructive_swap_test,
    prepend,
    swap_test,
    swap_test_registers,
    symmetric_basis_unitary,
)
from qsem.simulators import TorchSimulator, probs, sample, simulate
from qsem.simulators.backend import TorchBackend
from qsem.simulators.similarity import (
    OverlapEstimate,
    binomial_interval,
    bures_angle,
    destructive_swap_test_circuits,
    destructive_swap_test_estimate,
    destructive_swap_test_value,
    estimate_from_counts,
    fidelity,
    normalized_overlap,
    overlap,
    product_state,
    psd_sqrt,
    purity,
    swap_test_circuits,
    swap_test_estimate,
    swap_test_probability,
)

C128 = torch.complex128

# ---------------------------------------------------------------------------------
# random states (NumPy, seeded) and independent references
# ---------------------------------------------------------------------------------


def rand_pure(d: int, seed: int, batch: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (d,) if batch is None else (batch, d)
    v = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rand_mixed(d: int, seed: int, rank: int | None = None, batch: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = rank or d
    shape = (d, r) if batch is None else (batch, d, r)
    g = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    m = g @ np.conj(np.swapaxes(g, -1, -2))
    return m / np.trace(m, axis1=-2, axis2=-1)[..., None, None]


def t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=C128)


def dm(v: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...j->...ij", v, np.conj(v))


def tr_overlap(r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """NumPy ``Tr(ρσ)`` of density matrices (batched)."""
    return np.einsum("...ij,...ji->...", r, s).real


def qiskit_fidelity(r: np.ndarray, s: np.ndarray) -> float:
    a = qi.Statevector(r) if r.ndim == 1 else qi.DensityMatrix(r)
    b = qi.Statevector(s) if s.ndim == 1 else qi.DensityMatrix(s)
    return float(qi.state_fidelity(a, b, validate=True))


DIMS = [(2,), (2, 2), (3,), (3, 3), (2, 3)]


# ---------------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------------


def test_swap_test_layout_and_ops() -> None:
    c = swap_test([2, 3])
    assert c.dims == (2, 2, 3, 2, 3)
    assert swap_test_registers([2, 3]) == (0, [1, 2], [3, 4])
    assert [op.name for op in c] == ["H", "CSWAP", "CSWAP", "H"]
    assert [op.wires for op in c] == [(0,), (0, 1, 3), (0, 2, 4), (0,)]
    assert swap_test(2).dims == (2, 2, 2, 2, 2)
    assert swap_test([3], [3]).dims == (2, 3, 3)
    assert destructive_swap_registers(3) == ([0, 1, 2], [3, 4, 5])


def test_swap_test_matrix_against_qiskit() -> None:
    """Qubit registers of 2 wires: the template's unitary equals Qiskit's h/cswap/h circuit."""
    qc = QuantumCircuit(5)
    qc.h(0)
    qc.cswap(0, 1, 3)
    qc.cswap(0, 2, 4)
    qc.h(0)
    # Qiskit is little-endian: reverse the qubit order to get wire 0 most significant
    ref = qi.Operator(qc).reverse_qargs().data
    c = swap_test(2)
    eye = torch.eye(c.dim, dtype=C128)
    got = TorchSimulator(dtype=C128).run(c, initial_state=eye).tensor.T.numpy()
    np.testing.assert_allclose(got, ref, atol=ATOL_F64)


def test_swap_test_qutrit_matrix_by_hand() -> None:
    """One qutrit per register: (H ⊗ I) (|0><0| ⊗ I + |1><1| ⊗ SWAP) (H ⊗ I) on [2, 3, 3]."""
    d = 3
    swap = np.zeros((d * d, d * d))
    for i in range(d):
        for j in range(d):
            swap[j * d + i, i * d + j] = 1
    h = np.array([[1, 1], [1, -1]]) / math.sqrt(2)
    hh = np.kron(h, np.eye(d * d))
    cs = np.kron(np.diag([1, 0]), np.eye(d * d)) + np.kron(np.diag([0, 1]), swap)
    ref = hh @ cs @ hh
    c = swap_test([3])
    got = TorchSimulator(dtype=C128).run(c, initial_state=torch.eye(c.dim, dtype=C128))
    np.testing.assert_allclose(got.tensor.T.numpy(), ref, atol=ATOL_F64)


def test_symmetric_basis_unitary_diagonalises_swap() -> None:
    """U SWAP U^T = diag(s) with s = -1 exactly on outcomes (p, q) with p > q."""
    for d in (2, 3, 4):
        u = symmetric_basis_unitary(d)
        np.testing.assert_allclose(u @ u.T, np.eye(d * d), atol=ATOL_F64)
        swap = np.zeros((d * d, d * d))
        for i in range(d):
            for j in range(d):
                swap[j * d + i, i * d + j] = 1
        signs = [(-1.0 if p > q else 1.0) for p in range(d) for q in range(d)]
        np.testing.assert_allclose(u @ swap @ u.T, np.diag(signs), atol=ATOL_F64)


def test_destructive_signs_by_hand() -> None:
    # one qubit pair (a, b): s = (-1)^(a b)
    assert destructive_swap_signs(1).tolist() == [1, 1, 1, -1]
    # two qubit pairs, wires (a0, a1, b0, b1): s = (-1)^(a0 b0 + a1 b1)
    want = []
    for a0, a1, b0, b1 in np.ndindex(2, 2, 2, 2):
        want.append((-1) ** (a0 * b0 + a1 * b1))
    assert destructive_swap_signs(2).tolist() == want
    # a qutrit pair: s = -1 iff p > q
    assert destructive_swap_signs([3]).tolist() == [1, 1, 1, -1, 1, 1, -1, -1, 1]
    assert [op.name for op in destructive_swap_test(2)] == ["CNOT", "H", "CNOT", "H"]
    assert [op.name for op in destructive_swap_test([2, 3])] == ["CNOT", "H", "Unitary"]


def test_prep_circuits_and_prepend() -> None:
    prep_a = Circuit([2, 3]).add(RY(0.4, wires=0), TRY(0.9, wires=1, subspace=(1, 2)))
    prep_b = Circuit([2, 3]).add(RY(1.3, wires=0), TAdd(wires=[0, 1]))
    c = swap_test([2, 3], prep_a=prep_a, prep_b=prep_b)
    assert c.dims == (2, 2, 3, 2, 3)
    assert [op.wires for op in c.ops[:4]] == [(1,), (2,), (3,), (3, 4)]
    a = simulate(prep_a, dtype=C128).vector
    b = simulate(prep_b, dtype=C128).vector
    p0 = probs(simulate(c, dtype=C128), [0])[0]
    want = (1 + abs(np.vdot(a.numpy(), b.numpy())) ** 2) / 2
    assert float(p0) == pytest.approx(want, abs=ATOL_F64)
    # prepend: the preparation runs first, on the given wires
    p = prepend(
        Circuit.qubits(3).add(RZ(0.1, wires=2)), Circuit.qubits(1).add(RY(0.2, wires=0)), [1]
    )
    assert [(op.name, op.wires) for op in p] == [("RY", (1,)), ("RZ", (2,))]
    d = destructive_swap_test([2, 3], prep_a=prep_a, prep_b=prep_b)
    val = simulate(d, dtype=C128)
    s = destructive_swap_signs([2, 3])
    assert float(probs(val) @ s) == pytest.approx(2 * want - 1, abs=ATOL_F64)


# ---------------------------------------------------------------------------------
# P(0) = (1 + Tr ρσ) / 2 on the torch engine
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", DIMS, ids=str)
@pytest.mark.parametrize("kind", ["pure", "mixed", "pure-mixed", "mixed-pure"])
def test_swap_test_probability(dims: tuple[int, ...], kind: str) -> None:
    d = math.prod(dims)
    seed = 10 * d + len(kind)
    a = rand_pure(d, seed) if kind.startswith("pure") else rand_mixed(d, seed, rank=2)
    b = rand_pure(d, seed + 1) if kind.endswith("pure") else rand_mixed(d, seed + 1)
    ra = a if a.ndim == 2 else dm(a)
    rb = b if b.ndim == 2 else dm(b)
    want = (1 + tr_overlap(ra, rb)) / 2
    p0 = swap_test_probability(t(a), t(b), dims=list(dims))
    assert float(p0) == pytest.approx(want, abs=ATOL_F64)
    # the destructive test (qubit Bell measurement, qudit symmetric basis) agrees
    val = destructive_swap_test_value(t(a), t(b), dims=list(dims))
    assert float(val) == pytest.approx(2 * want - 1, abs=ATOL_F64)
    assert float(overlap(t(a), t(b))) == pytest.approx(2 * want - 1, abs=ATOL_F64)


def test_swap_test_from_states_and_batches() -> None:
    """States carry their dims; batches (and broadcasting) give per-element results."""
    prep = Circuit([2, 3]).add(RY(Parameter("x"), wires=0), TRY(Parameter("y"), wires=1))
    sim = TorchSimulator("density_matrix", dtype=C128)
    xs = torch.tensor([0.1, 0.7, 1.9], dtype=torch.float64)
    sa = sim.run(prep, {"x": xs, "y": 2 * xs})
    sb = TorchSimulator(dtype=C128).run(prep, {"x": 0.5, "y": 0.3})
    got = swap_test_probability(sa, sb)
    ra, rb = sa.density_matrix.numpy(), sb.density_matrix.numpy()
    np.testing.assert_allclose(got.numpy(), (1 + tr_overlap(ra, rb[None])) / 2, atol=ATOL_F64)
    assert got.shape == (3,)
    # a (2, 3)-batch of pure pairs
    a, b = rand_pure(4, 1, batch=6).reshape(2, 3, 4), rand_pure(4, 2, batch=6).reshape(2, 3, 4)
    want = (1 + np.abs(np.einsum("...i,...i->...", np.conj(a), b)) ** 2) / 2
    got = swap_test_probability(t(a), t(b))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), want, atol=ATOL_F64)
    val = destructive_swap_test_value(t(a), t(b))
    np.testing.assert_allclose(val.numpy(), 2 * want - 1, atol=ATOL_F64)


def test_swap_test_circuits_on_torch_backend() -> None:
    """Symbolic preparation circuits, N parameter rows in one job; exact and with shots."""
    prep_a = Circuit([3]).add(TRY(Parameter("a"), wires=0, subspace=(0, 1)))
    prep_b = Circuit([3]).add(TRY(Parameter("b"), wires=0, subspace=(1, 2)), TRY(0.3, wires=0))
    vals = torch.tensor([[0.2, 1.0], [1.5, 0.1], [2.5, 2.9]], dtype=torch.float64)
    exact = swap_test_circuits(prep_a, prep_b, values=vals, names=["a", "b"])
    ref = []
    for va, vb in vals.tolist():
        sa = simulate(prep_a, {"a": va}, dtype=C128).vector.numpy()
        sb = simulate(prep_b, {"b": vb}, dtype=C128).vector.numpy()
        ref.append(abs(np.vdot(sa, sb)) ** 2)
    assert isinstance(exact, torch.Tensor)
    np.testing.assert_allclose(exact.numpy(), ref, atol=ATOL_F64)
    est = swap_test_circuits(
        prep_a, prep_b, backend=TorchBackend(), values=vals, names=["a", "b"], shots=4000, seed=3
    )
    assert isinstance(est, OverlapEstimate)
    sigma = np.sqrt(1 - np.asarray(ref) ** 2) / np.sqrt(4000)  # sd of 2 p0 - 1
    assert np.all(np.abs(est.raw.numpy() - ref) <= SHOT_SIGMAS * sigma + 1e-12)
    assert bool(est.contains(torch.tensor(ref)).all())


# ---------------------------------------------------------------------------------
# exact overlap and fidelity
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_fidelity_against_qiskit(n: int, seed: int) -> None:
    d = 2**n
    cases = [
        (rand_pure(d, seed), rand_pure(d, seed + 50)),
        (rand_pure(d, seed), rand_mixed(d, seed + 50)),
        (rand_mixed(d, seed), rand_mixed(d, seed + 50)),
        (rand_mixed(d, seed + 100), rand_pure(d, seed + 150)),
    ]
    for a, b in cases:
        want = qiskit_fidelity(a, b)
        assert float(fidelity(t(a), t(b))) == pytest.approx(want, abs=1e-9)
        assert float(fidelity(t(b), t(a))) == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("d,rank", [(2, 1), (4, 1), (4, 2), (9, 3)])
def test_fidelity_rank_deficient(d: int, rank: int) -> None:
    """ρ = A A^† of rank r < d: F = ||A^† sqrtσ||_1² with A the (normalised) Ginibre factor.

    (Qiskit's ``state_fidelity`` takes ``sqrtm`` of the singular ρ, whose rounding-level
    eigenvalues give errors ~sqrt(eps) ~ 1e-8; this reference needs no root of ρ.)
    """
    rng = np.random.default_rng(d + rank)
    g = rng.normal(size=(d, rank)) + 1j * rng.normal(size=(d, rank))
    a = g / np.sqrt(np.trace(g @ g.conj().T).real)
    rho, sigma = a @ a.conj().T, rand_mixed(d, d * rank)
    lam, v = np.linalg.eigh(sigma)
    sqrt_sigma = (v * np.sqrt(lam)) @ v.conj().T
    want = np.linalg.svd(a.conj().T @ sqrt_sigma, compute_uv=False).sum() ** 2
    assert float(fidelity(t(rho), t(sigma))) == pytest.approx(want, abs=ATOL_F64)
    assert float(fidelity(t(sigma), t(rho))) == pytest.approx(want, abs=ATOL_F64)
    # two rank-deficient states: F = ||A^† B||_1² from the two factors
    h = rng.normal(size=(d, rank)) + 1j * rng.normal(size=(d, rank))
    b = h / np.sqrt(np.trace(h @ h.conj().T).real)
    want = np.linalg.svd(a.conj().T @ b, compute_uv=False).sum() ** 2
    assert float(fidelity(t(rho), t(b @ b.conj().T))) == pytest.approx(want, abs=ATOL_F64)


def test_fidelity_qubit_closed_form_batched() -> None:
    """Qubits: F(ρ, σ) = Tr ρσ + 2 sqrt(det ρ det σ) (Jozsa); batched input."""
    r, s = rand_mixed(2, 5, batch=32), rand_mixed(2, 6, batch=32)
    want = tr_overlap(r, s) + 2 * np.sqrt(np.linalg.det(r).real * np.linalg.det(s).real)
    np.testing.assert_allclose(fidelity(t(r), t(s)).numpy(), want, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_fidelity_qutrit_closed_forms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # commuting (diagonal in a common basis): the classical fidelity (Σ sqrt(p_i q_i))²
    p, q = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))
    u = np.linalg.qr(rng.normal(size=(3, 3)) + 1j * rng.normal(size=(3, 3)))[0]
    r, s = u @ np.diag(p) @ u.conj().T, u @ np.diag(q) @ u.conj().T
    assert float(fidelity(t(r), t(s))) == pytest.approx(np.sum(np.sqrt(p * q)) ** 2, abs=1e-9)
    # maximally mixed vs ρ: (Tr sqrt ρ)² / 3 = (Σ sqrt λ)² / 3
    rho = rand_mixed(3, seed + 7)
    lam = np.linalg.eigvalsh(rho)
    want = np.sum(np.sqrt(np.clip(lam, 0, None))) ** 2 / 3
    assert float(fidelity(t(np.eye(3) / 3), t(rho))) == pytest.approx(want, abs=1e-9)
    # pure vs mixed: <ψ|σ|ψ>, given as a vector or as a rank-1 matrix
    psi = rand_pure(3, seed + 9)
    want = float(np.real(np.conj(psi) @ rho @ psi))
    assert float(fidelity(t(psi), t(rho))) == pytest.approx(want, abs=1e-9)
    assert float(fidelity(t(dm(psi)), t(rho))) == pytest.approx(want, abs=1e-8)
    # two qutrits: unitary invariance, and Tr ρσ <= F <= 1
    r2, s2 = rand_mixed(9, seed), rand_mixed(9, seed + 1, rank=3)
    v = np.linalg.qr(rng.normal(size=(9, 9)) + 1j * rng.normal(size=(9, 9)))[0]
    f = float(fidelity(t(r2), t(s2)))
    fv = float(fidelity(t(v @ r2 @ v.conj().T), t(v @ s2 @ v.conj().T)))
    assert fv == pytest.approx(f, abs=1e-9)
    assert tr_overlap(r2, s2) <= f + 1e-12
    assert f <= 1 + 1e-12


def test_overlap_properties() -> None:
    for d in (2, 3, 6):
        a, b = rand_pure(d, d), rand_pure(d, d + 1)
        r, s = rand_mixed(d, d), rand_mixed(d, d + 1, rank=2)
        for x, y in ((a, b), (a, s), (r, b), (r, s)):
            assert float(overlap(t(x), t(y))) == pytest.approx(
                float(overlap(t(y), t(x))), abs=ATOL_F64
            )
        # 1 for equal pure states (vector or matrix form), 1/d with the maximally mixed state
        assert float(overlap(t(a), t(a))) == pytest.approx(1, abs=ATOL_F64)
        assert float(overlap(t(dm(a)), t(a))) == pytest.approx(1, abs=ATOL_F64)
        mm = np.eye(d) / d
        for x in (a, r, s, mm):
            assert float(overlap(t(mm), t(x))) == pytest.approx(1 / d, abs=ATOL_F64)
        # Tr ρσ in [0, 1], equals F for a pure input, below F for two mixed inputs
        assert float(overlap(t(a), t(s))) == pytest.approx(float(fidelity(t(a), t(s))), abs=1e-9)
        assert 0 <= float(overlap(t(r), t(s))) <= float(fidelity(t(r), t(s))) + 1e-12
        # equals |<a|b>|² by NumPy, and Tr ρσ by NumPy
        assert float(overlap(t(a), t(b))) == pytest.approx(abs(np.vdot(a, b)) ** 2, abs=ATOL_F64)
        assert float(overlap(t(r), t(s))) == pytest.approx(tr_overlap(r, s), abs=ATOL_F64)


def test_purity_bures_normalized() -> None:
    r, s = rand_mixed(3, 1), rand_mixed(3, 2)
    assert float(purity(t(r))) == pytest.approx(np.trace(r @ r).real, abs=ATOL_F64)
    assert float(purity(t(np.eye(4) / 4))) == pytest.approx(0.25, abs=ATOL_F64)
    assert float(purity(t(rand_pure(5, 0)))) == pytest.approx(1, abs=ATOL_F64)
    # Bures angle: 0 for equal states, π/2 for orthogonal ones, arccos(sqrt F) otherwise
    assert float(bures_angle(t(r), t(r))) == pytest.approx(0, abs=1e-6)
    e0, e1 = np.array([1, 0, 0]), np.array([0, 1, 0])
    assert float(bures_angle(t(e0), t(e1))) == pytest.approx(math.pi / 2, abs=ATOL_F64)
    want = math.acos(math.sqrt(qiskit_fidelity(rand_mixed(4, 3), rand_mixed(4, 4))))
    assert float(bures_angle(t(rand_mixed(4, 3)), t(rand_mixed(4, 4)))) == pytest.approx(want)
    # Tr ρσ / sqrt(Tr ρ² Tr σ²): 1 for equal mixed states, by NumPy otherwise
    assert float(normalized_overlap(t(r), t(r))) == pytest.approx(1, abs=ATOL_F64)
    want = tr_overlap(r, s) / np.sqrt(np.trace(r @ r).real * np.trace(s @ s).real)
    assert float(normalized_overlap(t(r), t(s))) == pytest.approx(want, abs=ATOL_F64)


def test_states_as_inputs_and_product_state() -> None:
    c = Circuit([2, 3]).add(RY(0.3, wires=0), TRY(1.1, wires=1, subspace=(0, 2)))
    sv = simulate(c, dtype=C128)
    sd = simulate(c, mode="density_matrix", dtype=C128)
    assert float(overlap(sv, sd)) == pytest.approx(1, abs=ATOL_F64)
    assert float(fidelity(sd, sd)) == pytest.approx(1, abs=1e-7)
    a, b = rand_pure(2, 0), rand_mixed(3, 1)
    np.testing.assert_allclose(product_state(t(a), t(a)).numpy(), np.kron(a, a), atol=ATOL_F64)
    np.testing.assert_allclose(product_state(t(a), t(b)).numpy(), np.kron(dm(a), b), atol=ATOL_F64)
    batch = product_state(t(rand_pure(2, 0, batch=4)), t(b))
    assert batch.shape == (4, 6, 6)


# ---------------------------------------------------------------------------------
# gradients (float64 finite differences)
# ---------------------------------------------------------------------------------


def _rho_from(g: torch.Tensor) -> torch.Tensor:
    m = g @ g.mH
    return m / torch.diagonal(m).sum()


def test_gradients_against_finite_differences() -> None:
    gen = torch.Generator().manual_seed(5)
    g1 = torch.randn(3, 3, dtype=C128, generator=gen, requires_grad=True)
    g2 = torch.randn(3, 3, dtype=C128, generator=gen)
    v = torch.randn(3, dtype=C128, generator=gen, requires_grad=True)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / torch.linalg.vector_norm(x)

    opts = {"eps": 1e-6, "atol": FD_ATOL, "rtol": 1e-5}
    assert torch.autograd.gradcheck(
        lambda g: fidelity(_rho_from(g), _rho_from(g2), check=False), (g1,), **opts
    )
    assert torch.autograd.gradcheck(
        lambda g: overlap(_rho_from(g), _rho_from(g2), check=False), (g1,), **opts
    )
    assert torch.autograd.gradcheck(
        lambda x: fidelity(unit(x), _rho_from(g2), check=False), (v,), **opts
    )
    # the SWAP-test probability is differentiable through the engine
    assert torch.autograd.gradcheck(
        lambda x: swap_test_probability(unit(x), _rho_from(g2), check=False), (v,), **opts
    )
    # at the maximally mixed state (triple eigenvalue): finite and equal to finite differences
    eye = torch.eye(3, dtype=C128).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda g: fidelity(_rho_from(g), _rho_from(g2), check=False), (eye,), **opts
    )
    assert torch.autograd.gradcheck(lambda g: psd_sqrt(_rho_from(g)), (eye,), **opts)


def test_psd_sqrt() -> None:
    r = rand_mixed(5, 3, rank=2)
    s = psd_sqrt(t(r)).numpy()
    np.testing.assert_allclose(s @ s, r, atol=1e-9)
    np.testing.assert_allclose(s, s.conj().T, atol=ATOL_F64)
    assert np.linalg.eigvalsh(s).min() > -1e-9


# ---------------------------------------------------------------------------------
# shot estimates and confidence intervals
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
def test_binomial_interval_against_scipy(method: str) -> None:
    ref_method = {"wilson": "wilson", "clopper-pearson": "exact"}[method]
    n = 137
    ks = [0, 1, 5, 68, 130, 136, 137]
    for conf in (0.9, 0.95, 0.99):
        low, high = binomial_interval(torch.tensor(ks), n, confidence=conf, method=method)
        for j, k in enumerate(ks):
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=conf, method=ref_method)
            assert float(low[j]) == pytest.approx(ci.low, abs=1e-10)
            assert float(high[j]) == pytest.approx(ci.high, abs=1e-10)


def test_estimate_mapping() -> None:
    est = estimate_from_counts(700, 1000, method="clopper-pearson")
    low_p, high_p = binomial_interval(700, 1000, method="clopper-pearson")
    assert float(est.p0) == 0.7
    assert float(est.estimate) == pytest.approx(0.4)
    assert float(est.low) == pytest.approx(2 * float(low_p) - 1)
    assert float(est.high) == pytest.approx(2 * float(high_p) - 1)
    # clipping to [0, 1]: fewer zeros than half of the shots
    est = estimate_from_counts(40, 100)
    assert float(est.estimate) == 0 and float(est.low) == 0
    assert float(est.raw) == pytest.approx(-0.2)
    assert 0 <= float(est.high) < 0.2
    assert est.as_dict()["shots"] == 100


@pytest.mark.parametrize("kind", ["pure-qubits", "mixed-qutrits", "mixed-[2,3]"])
def test_shot_estimates_within_sigmas(kind: str) -> None:
    if kind == "pure-qubits":
        a, b, dims = t(rand_pure(4, 1)), t(rand_pure(4, 2)), [2, 2]
    elif kind == "mixed-qutrits":
        a, b, dims = t(rand_mixed(9, 1, rank=2)), t(rand_mixed(9, 2)), [3, 3]
    else:
        a, b, dims = t(rand_pure(6, 1)), t(rand_mixed(6, 2)), [2, 3]
    exact = float(overlap(a, b))
    shots = 5000
    sd = math.sqrt(1 - exact**2) / math.sqrt(shots)  # sd of 2 p0 - 1
    for seed in range(2):
        for fn in (swap_test_estimate, destructive_swap_test_estimate):
            est = fn(a, b, shots, seed, dims=dims)
            assert abs(float(est.raw) - exact) <= SHOT_SIGMAS * sd
            assert est.shots == shots


def test_estimates_seeded_and_from_engine_samples() -> None:
    a, b = t(rand_pure(3, 4)), t(rand_mixed(3, 5))
    e1 = swap_test_estimate(a, b, 500, seed=11)
    e2 = swap_test_estimate(a, b, 500, seed=11)
    e3 = swap_test_estimate(a, b, 500, seed=12)
    assert float(e1.p0) == float(e2.p0)
    assert float(e1.p0) != float(e3.p0)
    # the count is that of the engine's own ancilla samples with the same seed
    c = swap_test([3])
    init = product_state(torch.tensor([1, 0], dtype=C128), a, b)
    state = TorchSimulator("density_matrix", dtype=C128).run(c, initial_state=init)
    zeros = int((sample(state, 500, [0], seed=11)[:, 0] == 0).sum())
    assert float(e1.p0) * 500 == zeros
    d1 = destructive_swap_test_estimate(a, b, 500, seed=11)
    assert float(d1.p0) == float(destructive_swap_test_estimate(a, b, 500, seed=11).p0)


COVERAGE_RUNS = 400


def _coverage_tolerance(conf: float, runs: int) -> float:
    """SHOT_SIGMAS binomial standard errors of a coverage fraction over ``runs`` runs."""
    return SHOT_SIGMAS * math.sqrt(conf * (1 - conf) / runs)


def _exact_coverage(p0: float, shots: int, conf: float, method: str) -> float:
    """Probability over the Binomial(shots, p0) count that the interval covers 2 p0 - 1."""
    k = torch.arange(shots + 1)
    est = estimate_from_counts(k, shots, confidence=conf, method=method)
    covered = est.contains(2 * p0 - 1).numpy()
    return float(np.sum(stats.binom.pmf(k.numpy(), shots, p0) * covered))


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
@pytest.mark.parametrize(
    "case,shots", [("pure-qubit", 200), ("mixed-qutrit", 1000), ("mixed-[2,3]", 100)]
)
def test_confidence_interval_coverage(case: str, shots: int, method: str) -> None:
    """Over 400 seeds the 95% interval holds the exact Tr ρσ in 95% ± 4 binomial SE of runs."""
    if case == "pure-qubit":
        a, b, dims = t(rand_pure(2, 21)), t(rand_pure(2, 22)), [2]
    elif case == "mixed-qutrit":
        a, b, dims = t(rand_mixed(3, 21, rank=2)), t(rand_mixed(3, 22)), [3]
    else:
        a, b, dims = t(rand_mixed(6, 21)), t(rand_pure(6, 22)), [2, 3]
    conf = 0.95
    p0 = float(swap_test_probability(a, b, dims=dims))  # the engine, once
    exact = float(overlap(a, b))
    assert 2 * p0 - 1 == pytest.approx(exact, abs=ATOL_F64)
    counts = []
    for seed in range(COVERAGE_RUNS):
        gen = torch.Generator().manual_seed(seed)
        counts.append(int((torch.rand(shots, generator=gen, dtype=torch.float64) < p0).sum()))
    est = estimate_from_counts(torch.tensor(counts), shots, confidence=conf, method=method)
    covered = float(est.contains(exact).double().mean())
    tol = _coverage_tolerance(conf, COVERAGE_RUNS)
    assert abs(covered - conf) <= tol, (covered, tol)
    # exact coverage at this (p0, shots): Clopper–Pearson never undercovers (a theorem);
    # Wilson's stays within the same tolerance of the nominal level here
    c_exact = _exact_coverage(p0, shots, conf, method)
    if method == "clopper-pearson":
        assert c_exact >= conf - 1e-12
    assert abs(c_exact - conf) <= tol


def test_coverage_end_to_end_through_the_engine() -> None:
    """A batch of 400 copies of one pair: 400 independent estimates in one seeded call."""
    a, b = t(rand_pure(4, 31)), t(rand_mixed(4, 32))
    exact = float(overlap(a, b))
    ab = a.expand(COVERAGE_RUNS, 4)
    tol = _coverage_tolerance(0.95, COVERAGE_RUNS)
    for fn in (swap_test_estimate, destructive_swap_test_estimate):
        est = fn(ab, b, 300, seed=2, method="wilson")
        assert est.estimate.shape == (COVERAGE_RUNS,)
        covered = float(est.contains(exact).double().mean())
        assert abs(covered - 0.95) <= tol, (fn.__name__, covered)


# ---------------------------------------------------------------------------------
# backends: torch and Qiskit Aer (exact and shots), preparation circuits, one job
# ---------------------------------------------------------------------------------

HAVE_AER = (
    importlib.util.find_spec("qiskit_aer") is not None
    and importlib.util.find_spec("qsem.simulators.aer") is not None
)
needs_aer = pytest.mark.skipif(not HAVE_AER, reason="qiskit-aer or qsem.simulators.aer missing")
#: (case, backend): "aer" picks the density-matrix method for the mixed case (channels);
#: the explicit density-matrix method on pure qutrit registers (9 qubits) takes ~5 s a job
BACKEND_CASES = [
    pytest.param(
        case, backend, id=f"{case}-{backend}", marks=[needs_aer] if "aer" in backend else []
    )
    for case in ("qubits", "qutrits", "mixed-[2,3]")
    for backend in ("torch", "aer")
] + [pytest.param("qubits", "aer:density_matrix", id="qubits-aer-dm", marks=needs_aer)]


def make_backend(name: str) -> object:
    if name == "torch":
        return TorchBackend()
    from qsem.simulators.aer import AerBackend

    method = name.partition(":")[2] or None
    return AerBackend(method=method)


def prep_pair(case: str) -> tuple[Circuit, Circuit]:
    """Parametrised state preparations (distinct names per register); channels make them mixed."""
    if case == "qubits":
        a = Circuit.qubits(2).add(RY(Parameter("a0"), wires=0), RY(Parameter("a1"), wires=1))
        a.add(CNOT(wires=[0, 1]), RZ(Parameter("a2"), wires=1))
        b = Circuit.qubits(2).add(RY(Parameter("b0"), wires=0), RZ(0.3, wires=0))
        b.add(CNOT(wires=[0, 1]), RY(Parameter("b1"), wires=1))
    elif case == "qutrits":
        a = Circuit.qutrits(2).add(TRY(Parameter("a0"), wires=0, subspace=(0, 1)))
        a.add(TRY(Parameter("a1"), wires=0, subspace=(1, 2)), TAdd(wires=[0, 1]))
        a.add(TRY(Parameter("a2"), wires=1, subspace=(0, 2)))
        b = Circuit.qutrits(2).add(TRY(Parameter("b0"), wires=0, subspace=(0, 2)))
        b.add(TAdd(wires=[0, 1]), TRY(Parameter("b1"), wires=1, subspace=(1, 2)))
    else:  # mixed states on [2, 3]
        a = Circuit([2, 3]).add(RY(Parameter("a0"), wires=0), TRY(Parameter("a1"), wires=1))
        a.add(TAdd(wires=[0, 1]), Depolarizing(0.3, wires=1), TRY(Parameter("a2"), wires=1))
        b = Circuit([2, 3]).add(RY(Parameter("b0"), wires=0), TRY(Parameter("b1"), wires=1))
        b.add(AmplitudeDamping(0.4, wires=0), Depolarizing(0.2, wires=0))
    return a, b


def reference_overlaps(prep_a: Circuit, prep_b: Circuit, values: torch.Tensor) -> np.ndarray:
    """Tr(ρσ) of the prepared states, from the engine's states and ``overlap`` (no SWAP test)."""
    names = ["a0", "a1", "a2", "b0", "b1"]
    col = {n: values[:, j] for j, n in enumerate(names)}
    mode = "density_matrix" if prep_a.has_channels or prep_b.has_channels else "statevector"
    sim = TorchSimulator(mode, dtype=C128)
    sa = sim.run(prep_a, {n: col[n] for n in prep_a.parameters})
    sb = sim.run(prep_b, {n: col[n] for n in prep_b.parameters})
    return overlap(sa, sb).numpy()


@pytest.mark.parametrize("case,backend", BACKEND_CASES)
def test_swap_test_on_backends(case: str, backend: str) -> None:
    """Exact P(0) on every backend equals (1 + Tr ρσ)/2; shot estimates within 4 SE."""
    prep_a, prep_b = prep_pair(case)
    values = torch.rand(4, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    values = values * 2 * math.pi
    names = ["a0", "a1", "a2", "b0", "b1"]
    ref = reference_overlaps(prep_a, prep_b, values)
    be = make_backend(backend)
    for fn in (swap_test_circuits, destructive_swap_test_circuits):
        exact = fn(prep_a, prep_b, backend=be, values=values, names=names)
        assert isinstance(exact, torch.Tensor)
        np.testing.assert_allclose(exact.numpy(), ref, atol=ATOL_BACKENDS)
        shots = 4096
        est = fn(prep_a, prep_b, backend=be, values=values, names=names, shots=shots, seed=5)
        assert isinstance(est, OverlapEstimate)
        sd = np.sqrt(np.clip(1 - ref**2, 0, None) / shots)
        assert np.all(np.abs(est.raw.numpy() - ref) <= SHOT_SIGMAS * sd + 1e-12), (fn, est)
        assert est.estimate.shape == (4,)
        # shots drawn by qsem from the backend's exact probabilities: same distribution
        kw = {"shots": shots, "seed": 5, "sampling": "exact"}
        est2 = fn(prep_a, prep_b, backend=be, values=values, names=names, **kw)
        assert np.all(np.abs(est2.raw.numpy() - ref) <= SHOT_SIGMAS * sd + 1e-12), (fn, est2)
        again = fn(prep_a, prep_b, backend=be, values=values, names=names, **kw)
        assert torch.equal(again.p0, est2.p0)


# ---------------------------------------------------------------------------------
# qsem run swap-demo
# ---------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_swap_demo_end_to_end(tmp_path: Path) -> None:
    from qsem.experiments import get_experiment, swap_demo
    from qsem.runner import run_experiment

    assert get_experiment("swap-demo") is swap_demo.EXPERIMENT
    out = tmp_path / "run"
    overrides = ["steps=6", "shots=50,400", "aer=false", "stride=2"]
    res = run_experiment(swap_demo.EXPERIMENT, overrides=overrides, out=out, quiet=True).results
    assert {p.name for p in out.iterdir()} >= {
        "config.json", "metrics.jsonl", "results.json", "swap_estimates.png", "checkpoint.pt",
    }  # fmt: skip
    assert (out / "swap_estimates.png").read_bytes()[:8] == PNG
    assert res["pairs"] == 5 and res["pair_steps"] == [2, 3, 4, 5, 6]
    assert res["mixed"] and res["aer"] == "not requested (aer=false)"
    # the exact overlaps logged during training (pair by pair) equal the batched ones
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r["exact_overlap"] for r in records if "exact_overlap" in r]
    np.testing.assert_allclose(logged, res["exact_overlap"], atol=ATOL_F64)
    # mixed states: F >= Tr ρσ, with a visible gap
    assert res["max_fidelity_minus_overlap"] > 0.01
    assert all(f >= o - 1e-12 for f, o in zip(res["fidelity"], res["exact_overlap"], strict=True))
    for n in ("50", "400"):
        e = res["estimates"]["torch"][n]
        assert e["shots"] == int(n) and len(e["estimate"]) == 5
        low, est, high = map(np.asarray, (e["low"], e["estimate"], e["high"]))
        assert np.all(low <= est) and np.all(est <= high)
        sd = np.sqrt(1 - np.asarray(res["exact_overlap"]) ** 2) / np.sqrt(int(n))
        raw = 2 * np.asarray(e["p0"]) - 1
        assert np.all(np.abs(raw - res["exact_overlap"]) <= SHOT_SIGMAS * sd)
    # noise=0: pure states, the fidelity is the overlap
    pure = run_experiment(
        swap_demo.EXPERIMENT, overrides=["steps=3", "noise=0", "shots=100", "aer=false"],
        out=tmp_path / "pure", quiet=True,
    ).results  # fmt: skip
    np.testing.assert_allclose(pure["fidelity"], pure["exact_overlap"], atol=1e-9)
    assert pure["final_loss"] < pure["initial_loss"]


@needs_aer
def test_swap_demo_on_aer(tmp_path: Path) -> None:
    from qsem.experiments import swap_demo
    from qsem.runner import run_experiment

    overrides = ["steps=3", "shots=300", "dims=2,2", "layers=1"]
    res = run_experiment(
        swap_demo.EXPERIMENT, overrides=overrides, out=tmp_path / "run", quiet=True
    ).results
    assert res["aer"].startswith("AerBackend")
    e = res["estimates"]["aer"]["300"]
    sd = np.sqrt(1 - np.asarray(res["exact_overlap"]) ** 2) / np.sqrt(300)
    raw = 2 * np.asarray(e["p0"]) - 1
    assert np.all(np.abs(raw - res["exact_overlap"]) <= SHOT_SIGMAS * sd)


def test_swap_demo_resume_equals_uninterrupted(tmp_path: Path, interrupt_log) -> None:
    from qsem.experiments import swap_demo
    from qsem.runner import run_experiment

    overrides = ["steps=5", "shots=64", "aer=false"]
    ref = run_experiment(
        swap_demo.EXPERIMENT, overrides=overrides, out=tmp_path / "ref", checkpoint_every=2,
        quiet=True,
    )  # fmt: skip

    class Boom(RuntimeError):
        pass

    out = tmp_path / "run"
    with interrupt_log(lambda step, v: step == 4, Boom), pytest.raises(Boom):
        run_experiment(
            swap_demo.EXPERIMENT, overrides=overrides, out=out, checkpoint_every=2, quiet=True
        )
    resumed = run_experiment(
        swap_demo.EXPERIMENT, out=out, resume=True, checkpoint_every=2, quiet=True
    )
    assert resumed.resumed_from_step == 2
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()
    strip = {"train_seconds", "estimate_seconds"}
    assert {k: v for k, v in resumed.results.items() if k not in strip} == {
        k: v for k, v in ref.results.items() if k not in strip
    }


def test_swap_demo_bad_config(tmp_path: Path) -> None:
    from qsem.experiments import swap_demo
    from qsem.runner import ConfigError, run_experiment

    for override, fragment in [
        ("method=wald", "config key 'method'"),
        ("stride=0", "config key 'stride'"),
        ("dims=2,1", "config key 'dims'"),
        ("shots=0", "config key 'shots'"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            run_experiment(swap_demo.EXPERIMENT, overrides=[override], out=tmp_path / "x")


@needs_aer
def test_docs_examples_run() -> None:
    """The Python examples of docs/similarity.md run as written, and say what they claim."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "similarity.md").read_text()
    ns: dict[str, object] = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "docs/similarity.md", "exec"), ns)
    rho = ns["rho"]
    assert float(overlap(rho, rho)) == pytest.approx(0.5)
    assert float(fidelity(rho, rho)) == pytest.approx(1.0)
    est = ns["est"]
    assert isinstance(est, OverlapEstimate) and est.estimate.shape == (2,)


# ---------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------


def test_bad_input() -> None:
    good = t(rand_pure(2, 0))
    rho = t(rand_mixed(2, 0))
    with pytest.raises(InvalidStateError, match="argument 'a': statevector not normalised"):
        overlap(2 * good, good)
    with pytest.raises(InvalidStateError, match="argument 'b': not Hermitian"):
        fidelity(good, torch.tensor([[0.5, 0.3], [0.1, 0.5]], dtype=C128))
    with pytest.raises(InvalidStateError, match="argument 'b': trace"):
        overlap(rho, 2 * rho)
    with pytest.raises(InvalidStateError, match="argument 'a': not positive semidefinite"):
        overlap(torch.diag(torch.tensor([1.5, -0.5], dtype=C128)), rho)
    with pytest.raises(DimensionError, match="argument 'b': dimension 3"):
        overlap(good, t(rand_pure(3, 0)))
    with pytest.raises(QsemValueError, match="argument 'b': batch shape"):
        overlap(t(rand_pure(2, 0, batch=3)), t(rand_pure(2, 0, batch=4)))
    with pytest.raises(QsemValueError, match="argument 'a': contains NaN"):
        overlap(torch.full((2,), float("nan"), dtype=C128), good)
    with pytest.raises(QsemTypeError, match="argument 'a'"):
        overlap("psi", good)
    with pytest.raises(QsemTypeError, match="argument 'a'"):
        overlap(torch.tensor([1, 0]), good)
    with pytest.raises(DimensionError, match="argument 'dims'"):
        swap_test_probability(good, good, dims=[3])
    with pytest.raises(QsemValueError, match="argument 'shots'"):
        swap_test_estimate(good, good, 0)
    with pytest.raises(QsemTypeError, match="argument 'shots'"):
        swap_test_estimate(good, good, True)
    with pytest.raises(QsemTypeError, match="argument 'seed'"):
        swap_test_estimate(good, good, 10, seed=1.5)
    with pytest.raises(QsemValueError, match="argument 'confidence'"):
        swap_test_estimate(good, good, 10, confidence=1.5)
    with pytest.raises(QsemValueError, match="argument 'method'"):
        destructive_swap_test_estimate(good, good, 10, method="wald")
    with pytest.raises(QsemValueError, match="argument 'successes'"):
        binomial_interval(11, 10)
    with pytest.raises(QsemValueError, match="argument 'successes'"):
        binomial_interval(torch.tensor([1.5]), 10)
    # templates
    with pytest.raises(DimensionError, match="argument 'dims_b'"):
        swap_test([2, 3], [3, 2])
    with pytest.raises(QsemTypeError, match="argument 'dims_a'"):
        swap_test("ab")
    with pytest.raises(QsemValueError, match="argument 'dims'"):
        destructive_swap_test([2, 1])
    with pytest.raises(DimensionError, match="argument 'prep_b'"):
        swap_test([2], prep_b=Circuit([3]))
    with pytest.raises(QsemTypeError, match="argument 'prep_a'"):
        swap_test([2], prep_a=RY(0.1, wires=0))
    with pytest.raises(QsemTypeError, match="argument 'backend'"):
        swap_test_circuits(Circuit([2]), Circuit([2]), backend="aer")
    with pytest.raises(QsemValueError, match="argument 'values'"):
        swap_test_circuits(Circuit([2]).add(RY(Parameter("x"), wires=0)), Circuit([2]))
    with pytest.raises(QsemValueError, match="argument 'sampling'"):
        swap_test_circuits(Circuit([2]), Circuit([2]), shots=10, sampling="hardware")
    with pytest.raises(DimensionError, match="argument 'prep_b'"):
        destructive_swap_test_circuits(Circuit([2]), Circuit([3]))
