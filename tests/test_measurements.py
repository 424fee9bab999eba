"""Measurements: samples, counts, marginal probabilities, expectation values, purity, entropy.

States are given directly as (batched) statevectors or density matrices through
``initial_state`` on registers of mixed dimensions (2, 3 and 4), so every reference
is a few lines of numpy on the same array; entangled states come from circuits and
are checked against closed forms (purity 1/d, entropy log2 d).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, SHOT_SIGMAS

from qsem.circuits import (
    CNOT,
    Circuit,
    Depolarizing,
    Fourier,
    GellMann,
    H,
    Hermitian,
    PauliString,
    QsemError,
    TAdd,
    THadamard,
    gell_mann_matrices,
)
from qsem.circuits.gates import Add
from qsem.simulators import (
    TorchSimulator,
    counts,
    entropy,
    expval,
    probs,
    purity,
    reduced_density_matrix,
    sample,
)

DT = torch.complex128
DIMS = [(2, 3), (3, 3, 2), (2, 3, 4), (4,)]


def random_states(dims: tuple[int, ...], batch: int, seed: int, zeros: int = 2) -> np.ndarray:
    """(B, D) normalised statevectors, each with ``zeros`` amplitudes exactly 0."""
    rng = np.random.default_rng(seed)
    dim = math.prod(dims)
    psi = rng.normal(size=(batch, dim)) + 1j * rng.normal(size=(batch, dim))
    for b in range(batch):
        psi[b, rng.choice(dim, size=min(zeros, dim - 1), replace=False)] = 0
    return psi / np.linalg.norm(psi, axis=1, keepdims=True)


def random_density_matrices(dims: tuple[int, ...], batch: int, seed: int) -> np.ndarray:
    """(B, D, D) random mixed states of rank min(3, D)."""
    rng = np.random.default_rng(seed)
    dim = math.prod(dims)
    rank = min(3, dim)
    a = rng.normal(size=(batch, dim, rank)) + 1j * rng.normal(size=(batch, dim, rank))
    rho = a @ a.conj().transpose(0, 2, 1)
    return rho / np.trace(rho, axis1=1, axis2=2)[:, None, None]


def make_state(dims: tuple[int, ...], mode: str, batch: int | None, seed: int):  # type: ignore[no-untyped-def]
    """A qsem State and its density matrices (B, D, D) as the numpy reference."""
    b = batch or 1
    if mode == "statevector":
        psi = random_states(dims, b, seed)
        rho = np.einsum("bi,bj->bij", psi, psi.conj())
        init = torch.tensor(psi if batch else psi[0])
    else:
        rho = random_density_matrices(dims, b, seed)
        init = torch.tensor(rho if batch else rho[0])
    state = TorchSimulator(mode, dtype=DT).run(Circuit(list(dims)), initial_state=init)
    return state, rho


def np_marginal(rho: np.ndarray, dims: tuple[int, ...], wires: list[int]) -> np.ndarray:
    """Marginal probabilities (B, prod dims[wires]) in the order of ``wires``."""
    p = np.diagonal(rho, axis1=1, axis2=2).real.reshape(-1, *dims)
    rest = tuple(1 + w for w in range(len(dims)) if w not in wires)
    p = p.sum(axis=rest)
    kept = sorted(wires)
    p = np.transpose(p, [0] + [1 + kept.index(w) for w in wires])
    return p.reshape(p.shape[0], -1)


def np_rdm(rho: np.ndarray, dims: tuple[int, ...], wires: list[int]) -> np.ndarray:
    n = len(dims)
    rest = [w for w in range(n) if w not in wires]
    t = rho.reshape(-1, *dims, *dims)
    t = np.transpose(t, [0] + [1 + w for w in wires + rest] + [1 + n + w for w in wires + rest])
    dk = math.prod(dims[w] for w in wires)
    dr = math.prod(dims[w] for w in rest)
    return np.einsum("barcr->bac", t.reshape(-1, dk, dr, dk, dr))


def close(a: object, b: object, atol: float = ATOL_F64) -> None:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=0, atol=atol)


WIRE_ORDERS = {
    (2, 3): [[1, 0], [1], None],
    (3, 3, 2): [[2, 0], [1, 2, 0], [0, 2]],
    (2, 3, 4): [[2, 1, 0], [2, 0], [1]],
    (4,): [None],
}


# ---------------------------------------------------------------------------------------------
# Samples and counts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
@pytest.mark.parametrize("dims", DIMS)
def test_sample_shape_levels_and_seed(dims: tuple[int, ...], mode: str) -> None:
    state, _ = make_state(dims, mode, 3, seed=1)
    s = sample(state, 400, seed=11)
    assert s.shape == (3, 400, len(dims))
    assert not s.is_floating_point() and not s.is_complex()
    for w, d in enumerate(dims):
        assert int(s[..., w].min()) >= 0 and int(s[..., w].max()) < d
        assert len(torch.unique(s[..., w])) > 1  # random states: every wire varies
    assert torch.equal(s, sample(state, 400, seed=11))  # reproducible
    assert not torch.equal(s, sample(state, 400, seed=12))  # another seed, other samples
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(sample(state, 50, generator=g1), sample(state, 50, generator=g2))
    unbatched, _ = make_state(dims, mode, None, seed=1)
    assert sample(unbatched, 7, seed=0).shape == (7, len(dims))
    w = list(range(len(dims)))[::-1]
    sub = sample(state, 20, wires=w, seed=3)
    assert sub.shape == (3, 20, len(dims))
    for i, wire in enumerate(w):
        assert int(sub[..., i].max()) < dims[wire]


@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
@pytest.mark.parametrize("dims", DIMS)
def test_sample_frequencies_match_probs(dims: tuple[int, ...], mode: str) -> None:
    shots = 20000
    state, rho = make_state(dims, mode, 2, seed=2)
    for i, wires in enumerate(WIRE_ORDERS[dims]):
        w = list(range(len(dims))) if wires is None else wires
        s = sample(state, shots, wires=wires, seed=100 + i).numpy()
        wd = [dims[x] for x in w]
        flat = np.ravel_multi_index(tuple(np.moveaxis(s, -1, 0)), wd)  # (B, shots)
        p = np_marginal(rho, dims, w)
        for b in range(2):
            freq = np.bincount(flat[b], minlength=math.prod(wd)) / shots
            sigma = np.sqrt(p[b] * (1 - p[b]) / shots)
            assert np.all(np.abs(freq - p[b]) <= SHOT_SIGMAS * sigma + 1e-12), (freq, p[b])
        if mode == "statevector" and wires is None:  # zero amplitudes are never drawn
            assert np.all(freq[p[1] < 1e-15] == 0)


def test_counts() -> None:
    state, rho = make_state((2, 3), "statevector", 2, seed=4)
    s = sample(state, 3000, seed=9)
    for b in range(2):
        c = counts(s[b])
        assert sum(c.values()) == 3000
        assert list(c) == sorted(c)
        assert all(isinstance(k, tuple) and len(k) == 2 for k in c)
        assert all(0 <= k[0] < 2 and 0 <= k[1] < 3 for k in c)
        rows, n = np.unique(s[b].numpy(), axis=0, return_counts=True)
        assert c == {tuple(int(v) for v in r): int(k) for r, k in zip(rows, n, strict=True)}
        p = np_marginal(rho, (2, 3), [0, 1])[b]
        assert set(c) <= {(i // 3, i % 3) for i in np.flatnonzero(p > 0)}
    bell = TorchSimulator().run(Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1])))
    c = counts(sample(bell, 1000, seed=0))
    assert set(c) == {(0, 0), (1, 1)}
    with pytest.raises(QsemError, match="samples"):
        counts(s)


# ---------------------------------------------------------------------------------------------
# Marginal probabilities, reduced states, expectation values
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
@pytest.mark.parametrize("dims", DIMS)
def test_marginal_probs_and_rdm_in_given_wire_order(dims: tuple[int, ...], mode: str) -> None:
    state, rho = make_state(dims, mode, 3, seed=3)
    close(probs(state), np.diagonal(rho, axis1=1, axis2=2).real)
    n = len(dims)
    orders = [list(p) for p in itertools.permutations(range(n))]
    orders += [[w] for w in range(n)] + ([[2, 0], [1, 0]] if n == 3 else [])
    for w in orders:
        p = probs(state, wires=w)
        assert p.shape == (3, math.prod(dims[x] for x in w))
        close(p, np_marginal(rho, dims, w))
        close(reduced_density_matrix(state, w), np_rdm(rho, dims, w))
    unbatched, rho1 = make_state(dims, mode, None, seed=3)
    close(probs(unbatched, wires=[n - 1]), np_marginal(rho1, dims, [n - 1])[0])


def test_marginal_probs_of_a_basis_state_permute_digits() -> None:
    """|1, 2, 3> on dims (2, 3, 4): probs(wires=[2, 0, 1]) peaks at digits (3, 1, 2)."""
    state = TorchSimulator(dtype=DT).run(Circuit([2, 3, 4]), initial_state=[1, 2, 3])
    p = probs(state, wires=[2, 0, 1])
    assert p.shape == (24,)
    assert int(p.argmax()) == np.ravel_multi_index((3, 1, 2), (4, 2, 3))
    assert float(p.max()) == pytest.approx(1.0, abs=ATOL_F64)


@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
def test_expval_list_shape_and_values(mode: str) -> None:
    dims = (2, 3, 4)
    rng = np.random.default_rng(8)
    a = rng.normal(size=(6, 6)) + 1j * rng.normal(size=(6, 6))
    herm = (a + a.conj().T) / 2
    obs = [
        PauliString("Z", wires=[0]),
        PauliString("X", wires=[0], coeff=-0.5),
        GellMann(4, wires=1),
        GellMann(15, wires=2, dim=4),
        GellMann(7, wires=2, coeff=2.0),
        Hermitian(herm, wires=[1, 0]),
    ]
    x, z = np.array([[0, 1], [1, 0]]), np.diag([1.0, -1.0])

    def full(local: np.ndarray, wires: list[int]) -> np.ndarray:
        """Embed ``local`` on ``wires`` (in that order) into the (2, 3, 4) register."""
        rest = [w for w in range(3) if w not in wires]
        m = np.kron(local, np.eye(math.prod(dims[w] for w in rest)))
        order = wires + rest
        d = [dims[w] for w in order]
        t = m.reshape(d + d)
        inv = [order.index(w) for w in range(3)]
        t = np.transpose(t, inv + [3 + i for i in inv])
        return t.reshape(24, 24)

    mats = [
        full(z, [0]),
        full(-0.5 * x, [0]),
        full(gell_mann_matrices(3)[3], [1]),
        full(gell_mann_matrices(4)[14], [2]),
        full(2 * gell_mann_matrices(4)[6], [2]),
        full(herm, [1, 0]),
    ]
    state, rho = make_state(dims, mode, 4, seed=6)
    ev = expval(state, obs)
    assert ev.shape == (4, len(obs))
    assert ev.dtype == torch.float64
    close(ev, np.einsum("kij,bji->bk", np.stack(mats), rho).real)
    assert expval(state, obs[2]).shape == (4,)
    close(expval(state, obs[2]), ev[:, 2])
    unbatched, rho1 = make_state(dims, mode, None, seed=6)
    assert expval(unbatched, obs).shape == (len(obs),)
    close(expval(unbatched, obs), np.einsum("kij,ji->k", np.stack(mats), rho1[0]).real)
    assert expval(unbatched, obs[0]).shape == ()


# ---------------------------------------------------------------------------------------------
# Purity and entropy: closed forms
# ---------------------------------------------------------------------------------------------
def max_entangled(d: int, mode: str):  # type: ignore[no-untyped-def]
    """(1/sqrt d) Σ_j |j, j>: Fourier on wire 0, then Add (CNOT / TAdd)."""
    circ = Circuit([d, d])
    if d == 2:
        circ.add(H(wires=0), CNOT(wires=[0, 1]))
    elif d == 3:
        circ.add(THadamard(wires=0), TAdd(wires=[0, 1]))
    else:
        circ.add(Fourier(wires=0), Add(wires=[0, 1]))
    return TorchSimulator(mode, dtype=DT).run(circ)


@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
@pytest.mark.parametrize("d", [2, 3, 4])
def test_maximally_entangled_pair(d: int, mode: str) -> None:
    state = max_entangled(d, mode)
    expected = np.zeros(d * d)
    expected[[j * d + j for j in range(d)]] = 1 / d
    close(probs(state), expected)
    for w in ([0], [1]):
        close(reduced_density_matrix(state, w), np.eye(d) / d)
        close(purity(state, w), 1 / d)
        close(entropy(state, w), math.log2(d))
        close(entropy(state, w, base=math.e), math.log(d))
        close(entropy(state, w, base=d), 1.0)
    for w in (None, [0, 1], [1, 0]):
        close(purity(state, w), 1.0)
        close(entropy(state, w), 0.0)


@pytest.mark.parametrize("d", [2, 3])
def test_depolarized_pair_closed_forms(d: int) -> None:
    """Complete depolarisation (p = 1) of one half of a maximally entangled pair: I/d²."""
    circ = Circuit([d, d]).add(Fourier(wires=0), Add(wires=[0, 1]), Depolarizing(1.0, wires=1))
    state = TorchSimulator("density_matrix", dtype=DT).run(circ)
    close(state.density_matrix, np.eye(d * d) / d**2)
    close(purity(state), 1 / d**2)
    close(entropy(state), 2 * math.log2(d))
    close(purity(state, [1]), 1 / d)
    close(entropy(state, [0]), math.log2(d))


def test_batched_purity_and_entropy_of_a_werner_family() -> None:
    """Depolarizing(p) on one half of |Φ+> gives (1 - p)|Φ+><Φ+| + p I/4 (a Werner state):
    eigenvalues 1 - 3p/4 and p/4 (three times); either half stays I/2. Batched p."""
    p = torch.tensor([0.0, 0.25, 0.6, 1.0], dtype=torch.float64)
    circ = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]), Depolarizing(p, wires=1))
    state = TorchSimulator("density_matrix", dtype=DT).run(circ)
    lam = np.array([1 - 3 * q / 4 for q in p.tolist()])  # eigenvalue of |Φ+>; others q/4 (x3)
    others = (1 - lam) / 3
    close(purity(state), lam**2 + 3 * others**2)
    h = np.array(
        [
            -sum(v * math.log2(v) for v in (a, b, b, b) if v > 0)
            for a, b in zip(lam, others, strict=True)
        ]
    )
    close(entropy(state), h)
    close(purity(state, [0]), np.full(4, 0.5))
    close(entropy(state, [1]), np.ones(4))
