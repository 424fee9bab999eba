"""The Qiskit Aer backend against the torch engine, Qiskit ``quantum_info`` and closed forms.

* Endianness: qsem wire 0 is the most significant index, Qiskit is little-endian;
  checked on hand-built states through ``to_qiskit`` + ``Statevector`` and through
  the backend's own read-out.
* The qutrit (and any-d) encoding: each symbolic decomposition (subspace
  rotations, controlled rotations, phases, U3 under qudit controls) is compared,
  after binding in Qiskit, with ``U ⊕ 1`` built from qsem's matrix; no Aer
  instruction with a symbolic parameter acts on more than one qubit (Aer binds
  its controlled rotations wrongly).
* Random qubit, qutrit and mixed circuits with symbolic parameters, exact (both
  methods, and density matrix with channels) against ``TorchBackend`` to
  ``ATOL_BACKENDS``; shot estimates within ``SHOT_SIGMAS`` standard errors.
* Leakage: zero in exact and shot mode; a deliberately leaking circuit shows it.
* One job per call; errors name their argument.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import ATOL_BACKENDS, ATOL_F64, SHOT_SIGMAS

from qsem.circuits import (
    CNOT,
    CRX,
    CRY,
    CRZ,
    CSWAP,
    CZ,
    RX,
    RY,
    RZ,
    SWAP,
    TRX,
    TRY,
    TRZ,
    U3,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Controlled,
    Depolarizing,
    Gate,
    GellMann,
    H,
    Hermitian,
    Identity,
    Kraus,
    MissingDependencyError,
    Parameter,
    ParameterVector,
    PauliString,
    PhaseDamping,
    PhaseShift,
    QsemTypeError,
    QsemValueError,
    S,
    T,
    TAdd,
    TClock,
    THadamard,
    TritFlip,
    TShift,
    Unitary,
    X,
    Y,
    Z,
)
from qsem.circuits.gates import Adjoint
from qsem.simulators import TorchSimulator
from qsem.simulators.backend import TorchBackend

pytest.importorskip("qiskit_aer")
from qiskit.quantum_info import Operator, Statevector

from qsem.simulators import aer as aer_mod
from qsem.simulators.aer import AerBackend, QubitLayout

METHODS = ["statevector", "density_matrix"]


@pytest.fixture(scope="module")
def backends() -> dict[str, AerBackend]:
    return {m: AerBackend(method=m) for m in METHODS}


# ---------------------------------------------------------------------------------------------
# Random circuits
# ---------------------------------------------------------------------------------------------
def haar(n: int, rng: np.random.Generator) -> np.ndarray:
    z = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_kraus(d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    """Kraus operators from the first d columns of a Haar isometry (exactly CPTP)."""
    u = haar(d * rank, rng)[:, :d]
    return u.reshape(rank, d, d)


NAMES = ["a", "b", "c"]


def _angle(rng: np.random.Generator, symbolic: bool = True) -> object:
    if symbolic and rng.random() < 0.8:
        name = NAMES[int(rng.integers(len(NAMES)))]
        scale = float(rng.choice([1.0, -0.5, 2.0]))
        return Parameter(name) * scale if scale != 1.0 else Parameter(name)
    return float(rng.uniform(-math.pi, math.pi))


def random_gate(dims: tuple[int, ...], rng: np.random.Generator):  # type: ignore[no-untyped-def]
    n = len(dims)
    kind = int(rng.integers(6 if n > 1 else 2))
    w = [int(x) for x in rng.permutation(n)]
    d0 = dims[w[0]]
    if kind == 0:  # single-wire parametrised
        if d0 == 2:
            cls = [RX, RY, RZ, PhaseShift, U3][int(rng.integers(5))]
            if cls is U3:
                return U3(_angle(rng), _angle(rng), _angle(rng), wires=w[0])
            return cls(_angle(rng), wires=w[0])
        j, k = sorted(int(x) for x in rng.choice(d0, 2, replace=False))
        cls = [TRX, TRY, TRZ][int(rng.integers(3))]
        return cls(_angle(rng), wires=w[0], subspace=(j, k))
    if kind == 1:  # single-wire fixed
        if d0 == 2:
            g = [X, Y, Z, H, S, T][int(rng.integers(6))](wires=w[0])
        else:
            g = [TShift, TClock, THadamard][int(rng.integers(3))](wires=w[0])
        return Adjoint(g) if rng.random() < 0.2 else g
    c, t = w[0], w[1]
    if kind == 2:  # controlled rotation, any control value
        dt = dims[t]
        sub = (0, 1) if dt == 2 else tuple(sorted(int(x) for x in rng.choice(dt, 2, replace=False)))
        base = [TRX, TRY, TRZ][int(rng.integers(3))](_angle(rng), wires=t, subspace=sub)
        if dt == 2 and rng.random() < 0.5:
            base = [RX, RY, RZ][int(rng.integers(3))](_angle(rng), wires=t)
        if dt == 2 and rng.random() < 0.3:
            base = U3(_angle(rng), _angle(rng), _angle(rng), wires=t)
        return Controlled(base, [c], [int(rng.integers(dims[c]))])
    if kind == 3:  # two-wire fixed
        if dims[c] == dims[t] == 2:
            return [CNOT, CZ, SWAP][int(rng.integers(3))](wires=[c, t])
        if dims[c] == dims[t] and rng.random() < 0.5:
            return SWAP(wires=[c, t])
        return TAdd(wires=[c, t])
    if kind == 4:  # two-wire unitary
        return Unitary(haar(dims[c] * dims[t], rng), wires=[c, t])
    if n >= 3:  # three wires
        c2 = w[2]
        if dims[c] == 2 and dims[t] == dims[c2]:
            return CSWAP(wires=[c, t, c2])
        return Controlled(Controlled(THadamard(wires=c2), [t], [0]), [c], [dims[c] - 1])
    if dims[c] == dims[t] == 2:
        return [CRX, CRY, CRZ][int(rng.integers(3))](_angle(rng), wires=[c, t])
    return TAdd(wires=[t, c])


def random_channel(dims: tuple[int, ...], rng: np.random.Generator):  # type: ignore[no-untyped-def]
    n = len(dims)
    w = int(rng.integers(n))
    d = dims[w]
    kind = int(rng.integers(4))
    if kind == 0:
        return Depolarizing(float(rng.uniform(0, 0.5)), wires=w)
    if kind == 1:
        return AmplitudeDamping(*[float(rng.uniform(0, 0.5)) for _ in range(d - 1)], wires=w)
    if kind == 2 and n > 1:
        w2 = int((w + 1 + rng.integers(n - 1)) % n)
        return Kraus(random_kraus(d * dims[w2], 3, rng), wires=[w, w2])
    if d == 2:
        return [BitFlip, PhaseDamping][int(rng.integers(2))](float(rng.uniform(0, 0.5)), wires=w)
    if d == 3:
        return TritFlip(*[float(x) for x in rng.uniform(0, 0.3, 3)], wires=w)
    return Kraus(random_kraus(d, 2, rng), wires=[w])


def random_circuit(
    dims: tuple[int, ...], seed: int, n_ops: int = 10, channels: bool = False
) -> Circuit:
    rng = np.random.default_rng(seed)
    c = Circuit(dims)
    for i in range(len(dims)):  # spread amplitude over every level
        c.add(THadamard(wires=i))
    for _ in range(n_ops):
        c.add(random_gate(tuple(dims), rng))
        if channels and rng.random() < 0.4:
            c.add(random_channel(tuple(dims), rng))
    return c


def random_values(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, len(NAMES), generator=g, dtype=torch.float64) * 2 - 1) * math.pi


def observables(dims: tuple[int, ...], seed: int) -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed + 100)
    out: list = []  # type: ignore[type-arg]
    qubits = [w for w, d in enumerate(dims) if d == 2]
    if len(qubits) >= 2:
        out.append(PauliString("XZ", wires=qubits[:2]))
        out.append(PauliString("Y", wires=[qubits[-1]], coeff=0.5))
    for w, d in enumerate(dims):
        if d > 2:
            out.append(GellMann(int(rng.integers(1, d * d)), wires=w, dim=d))
    out.append(PauliString("Z", wires=[qubits[0]]) if qubits else GellMann(3, wires=0))
    w2 = [0, len(dims) - 1]
    m = rng.normal(size=(dims[0] * dims[-1],) * 2) + 1j * rng.normal(size=(dims[0] * dims[-1],) * 2)
    out.append(Hermitian((m + m.conj().T) / 2, wires=w2))
    return out


CASES = {
    "qubits": (2, 2, 2),
    "qutrits": (3, 3),
    "mixed": (2, 3, 2),
    "mixed_qudits": (3, 2, 4),
}


# ---------------------------------------------------------------------------------------------
# Endianness and layout
# ---------------------------------------------------------------------------------------------
def test_layout() -> None:
    lay = QubitLayout.of((2, 3, 2, 5))
    assert lay.bits == (1, 2, 1, 3)
    assert lay.offsets == (6, 4, 3, 0)
    assert lay.qubits(1) == [5, 4] and lay.qubits(3) == [2, 1, 0]
    assert lay.qargs([0, 1]) == [4, 5, 6]
    assert [lay.leaky(w) for w in range(4)] == [False, True, False, True]
    # qsem local index (l0, l1) on wires [1, 3] -> encoded (l0 << 3) + l1
    idx = lay.valid_indices([1, 3])
    assert idx.tolist() == [(a << 3) + b for a in range(3) for b in range(5)]


def test_endianness_qubits() -> None:
    """X on qsem wire 0 of three qubits is Qiskit's qubit 2: bitstring '100', index 4."""
    c = Circuit.qubits(3).add(X(wires=0))
    qc, _ = AerBackend().to_qiskit(c)
    assert Statevector(qc).probabilities_dict() == pytest.approx({"100": 1.0})
    p = AerBackend().probs(c, torch.zeros(1, 0, dtype=torch.float64), [], [0, 1, 2])
    assert p[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]  # qsem index |100> = 4
    p20 = AerBackend().probs(c, torch.zeros(1, 0, dtype=torch.float64), [], [2, 0])
    assert p20[0].tolist() == [0, 1, 0, 0]  # (w2=0, w0=1)


def test_endianness_non_symmetric_state() -> None:
    """P(w0=1) = sin²(a/2), P(w1=1) = sin²(b/2): marginals land on the right wires."""
    a, b = 0.4, 2.1
    c = Circuit.qubits(2).add(RY(Parameter("a"), wires=0), RY(Parameter("b"), wires=1))
    vals = torch.tensor([[a, b]], dtype=torch.float64)
    p = AerBackend().probs(c, vals, ["a", "b"], [0, 1])[0].numpy()
    p0 = np.array([math.cos(a / 2) ** 2, math.sin(a / 2) ** 2])
    p1 = np.array([math.cos(b / 2) ** 2, math.sin(b / 2) ** 2])
    np.testing.assert_allclose(p, np.kron(p0, p1), atol=ATOL_F64)
    z = AerBackend().expval(c, vals, ["a", "b"], [PauliString("Z", wires=[0])])
    assert float(z) == pytest.approx(math.cos(a), abs=ATOL_F64)


@pytest.mark.parametrize("shots", [None, 64])
def test_endianness_qutrit_encoding(shots: int | None) -> None:
    """Circuit([3, 2]): TShift on wire 0 puts level 1 on qubit 1 (wire 0 holds qubits 2, 1)."""
    c = Circuit([3, 2]).add(TShift(wires=0), X(wires=1))
    qc, _ = AerBackend().to_qiskit(c)
    assert Statevector(qc).probabilities_dict() == pytest.approx({"011": 1.0})
    c2 = Circuit([3, 2]).add(TShift(wires=0), TShift(wires=0))
    qc2, _ = AerBackend().to_qiskit(c2)
    assert Statevector(qc2).probabilities_dict() == pytest.approx({"100": 1.0})
    vals = torch.zeros(2, 0, dtype=torch.float64)
    p = AerBackend().probs(c, vals, [], [0, 1], shots=shots, seed=1)
    expected = torch.zeros(6, dtype=torch.float64)
    expected[1 * 2 + 1] = 1
    torch.testing.assert_close(p, expected.expand(2, 6), atol=ATOL_F64, rtol=0)
    p10 = AerBackend().probs(c, vals, [], [1, 0], shots=shots, seed=1)
    assert p10[0].tolist() == [0, 0, 0, 0, 1, 0]  # (w1=1, w0=1) -> 1*3 + 1


def test_state_order_matches_torch() -> None:
    c = random_circuit((2, 3, 2), seed=5)
    vals = random_values(2, 5)
    psi = AerBackend("statevector").state(c, vals, NAMES)
    binds = {n: vals[:, j] for j, n in enumerate(NAMES) if n in c.parameters}
    ref = TorchSimulator("statevector", dtype=torch.complex128).run(c, binds).vector
    overlap = (psi.conj() * ref).sum(-1).abs()
    torch.testing.assert_close(
        overlap, torch.ones(2, dtype=torch.float64), atol=ATOL_BACKENDS, rtol=0
    )
    rho = AerBackend("density_matrix").state(c, vals, NAMES)
    ref_rho = ref[:, :, None] * ref[:, None, :].conj()
    torch.testing.assert_close(rho, ref_rho, atol=ATOL_BACKENDS, rtol=0)


# ---------------------------------------------------------------------------------------------
# Decompositions of symbolic gates
# ---------------------------------------------------------------------------------------------
def _bound_operator(circuit: Circuit, values: dict[str, float]) -> np.ndarray:
    qc, params = AerBackend().to_qiskit(circuit)
    bound = qc.assign_parameters({params[n]: v for n, v in values.items()})
    return Operator(bound).data


def _embedded_reference(circuit: Circuit, values: dict[str, float]) -> np.ndarray:
    """``U ⊕ 1`` of the bound circuit from qsem's matrices, in Qiskit's qubit order."""
    lay = QubitLayout.of(circuit.dims)
    m = 1 << lay.num_qubits
    bound = circuit.bind(values) if values else circuit
    full = np.eye(m, dtype=complex)
    for op in bound.ops:
        local = op.concrete_matrix(circuit.wire_dims(op.wires)).numpy()
        emb = lay.embed(local, list(op.wires), 1.0)
        # little-endian operator on its qargs, placed in the full register
        op_full = Operator(np.eye(m)).compose(Operator(emb), qargs=lay.qargs(op.wires))
        full = op_full.data @ full
    return full


SUBSPACE_CASES = [
    (d, sub, axis)
    for d in (3, 4, 5)
    for sub in [(j, k) for j in range(d) for k in range(j + 1, d)]
    for axis in "xyz"
    if d != 5 or sub in [(0, 4), (1, 2), (2, 3), (3, 4)]
]


@pytest.mark.parametrize(("d", "sub", "axis"), SUBSPACE_CASES)
def test_subspace_rotation_decomposition(d: int, sub: tuple[int, int], axis: str) -> None:
    cls = {"x": TRX, "y": TRY, "z": TRZ}[axis]
    c = Circuit([d]).add(cls(Parameter("t") * 0.7, wires=0, subspace=sub))
    got = _bound_operator(c, {"t": 1.3})
    np.testing.assert_allclose(got, _embedded_reference(c, {"t": 1.3}), atol=ATOL_F64)


CONTROLLED_CASES = [
    ("qutrit-ctrl-2", [3, 3], lambda t: Controlled(TRY(t, wires=1, subspace=(1, 2)), [0], [2])),
    ("qutrit-ctrl-0", [3, 3], lambda t: Controlled(TRX(t, wires=1, subspace=(0, 2)), [0], [0])),
    ("qubit-ctrl-qutrit", [2, 3], lambda t: Controlled(TRZ(t, wires=1, subspace=(0, 1)), [0])),
    ("qutrit-ctrl-qubit-rx", [3, 2], lambda t: Controlled(RX(t, wires=1), [0], [1])),
    ("qutrit-ctrl-phase", [3, 2], lambda t: Controlled(PhaseShift(t, wires=1), [0], [2])),
    ("two-ctrl-phase", [2, 3, 2], lambda t: Controlled(PhaseShift(t, wires=2), [0, 1], [0, 2])),
    ("qutrit-ctrl-u3", [3, 2], lambda t: Controlled(U3(t, -t, 0.4, wires=1), [0], [1])),
    ("crx", [2, 2], lambda t: CRX(t, wires=[1, 0])),
    ("cry", [2, 2], lambda t: CRY(t, wires=[0, 1])),
    ("crz", [2, 2], lambda t: CRZ(t, wires=[0, 1])),
    ("nested", [2, 3, 3],
     lambda t: Controlled(Controlled(TRY(t, wires=2, subspace=(0, 2)), [1], [1]), [0])),
    ("adjoint", [3, 2], lambda t: Adjoint(Controlled(TRX(t, wires=0, subspace=(1, 2)), [1]))),
    ("d4", [4, 2], lambda t: Controlled(TRY(t, wires=0, subspace=(1, 2)), [1], [0])),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "dims", "make"), CONTROLLED_CASES, ids=[c[0] for c in CONTROLLED_CASES]
)
def test_controlled_decomposition(label: str, dims: list[int], make) -> None:  # type: ignore[no-untyped-def]
    c = Circuit(dims).add(make(Parameter("t")))
    assert c.parameters == ["t"]
    for t in (0.0, 1.1, -2.7):
        got = _bound_operator(c, {"t": t})
        np.testing.assert_allclose(got, _embedded_reference(c, {"t": t}), atol=ATOL_F64)


@pytest.mark.parametrize("case", list(CASES))
def test_transpiled_circuits_have_only_single_qubit_parametric_gates(case: str) -> None:
    """Aer binds its own cry/crx/crz/cp/mcphase wrongly: none may carry a symbol."""
    backend = AerBackend("statevector")
    c = random_circuit(CASES[case], seed=11, n_ops=14)
    backend.probs(c, random_values(2, 0), NAMES, [0])
    (prep,) = backend._cache.values()
    assert prep.params, "the circuit must stay symbolic"
    for circ in prep.circuits:
        for inst in circ.data:
            symbolic = any(getattr(p, "parameters", None) for p in inst.operation.params)
            if symbolic:
                assert inst.operation.num_qubits == 1, inst.operation.name
                assert inst.operation.name in {"rx", "ry", "rz", "p", "u"}


# ---------------------------------------------------------------------------------------------
# Agreement with the torch engine
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_circuits_exact(backends, method: str, case: str, seed: int) -> None:  # type: ignore[no-untyped-def]
    dims = CASES[case]
    c = random_circuit(dims, seed)
    vals = random_values(3, seed)
    obs = observables(dims, seed)
    ref = TorchBackend()
    got = backends[method].expval(c, vals, NAMES, obs)
    torch.testing.assert_close(got, ref.expval(c, vals, NAMES, obs), atol=ATOL_BACKENDS, rtol=0)
    wires = [len(dims) - 1, 0]
    got_p = backends[method].probs(c, vals, NAMES, wires)
    torch.testing.assert_close(got_p, ref.probs(c, vals, NAMES, wires), atol=ATOL_BACKENDS, rtol=0)
    leak = backends[method].leakage(c, vals, NAMES)
    assert leak.shape == (3, len(AerBackend.leaky_wires(c)))
    assert float(leak.abs().sum()) < ATOL_BACKENDS


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [2, 3])
def test_random_noisy_circuits_density_matrix(backends, case: str, seed: int) -> None:  # type: ignore[no-untyped-def]
    dims = CASES[case]
    c = random_circuit(dims, seed, channels=True)
    assert c.has_channels
    vals = random_values(3, seed)
    obs = observables(dims, seed)
    ref = TorchBackend()
    for backend in (backends["density_matrix"], AerBackend()):  # method=None picks it
        got = backend.expval(c, vals, NAMES, obs)
        torch.testing.assert_close(got, ref.expval(c, vals, NAMES, obs), atol=ATOL_BACKENDS, rtol=0)
    got_p = backends["density_matrix"].probs(c, vals, NAMES, list(range(len(dims))))
    ref_p = ref.probs(c, vals, NAMES, list(range(len(dims))))
    torch.testing.assert_close(got_p, ref_p, atol=ATOL_BACKENDS, rtol=0)
    leak = backends["density_matrix"].leakage(c, vals, NAMES)
    assert float(leak.abs().sum()) < ATOL_BACKENDS


def test_channel_conventions_closed_form() -> None:
    """Depolarizing(p) = (1-p)ρ + p I/d on a qutrit in |0>: P(0) = 1 - p + p/3 (encoded)."""
    p, g1, g2 = 0.3, 0.25, 0.6
    c = Circuit([3]).add(Depolarizing(p, wires=0))
    got = AerBackend().probs(c, torch.zeros(1, 0, dtype=torch.float64), [], [0])[0]
    np.testing.assert_allclose(got.numpy(), [1 - p + p / 3, p / 3, p / 3], atol=ATOL_F64)
    # cascade |2> -> |1> -> |0>: from |2>, P(1) = γ2, P(2) = 1 - γ2 (one step)
    c = Circuit([3]).add(TShift(wires=0), TShift(wires=0), AmplitudeDamping(g1, g2, wires=0))
    got = AerBackend().probs(c, torch.zeros(1, 0, dtype=torch.float64), [], [0])[0]
    np.testing.assert_allclose(got.numpy(), [0, g2, 1 - g2], atol=ATOL_F64)


def test_symbolic_channel_is_bound_per_row(backends, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A channel with a symbolic parameter: one circuit per row, still one run() call."""
    c = Circuit([2, 3]).add(
        RY(Parameter("a"), wires=0),
        TRX(Parameter("b"), wires=1, subspace=(0, 2)),
        Depolarizing(Parameter("p"), wires=1),
        AmplitudeDamping(Parameter("p") * 0.5, wires=0),
    )
    vals = torch.tensor([[0.3, 1.0, 0.1], [1.2, -0.4, 0.5], [2.0, 2.0, 0.9]], dtype=torch.float64)
    names = ["a", "b", "p"]
    calls = _count_runs(monkeypatch)
    obs = [GellMann(3, wires=1), PauliString("Z", wires=[0])]
    got = backends["density_matrix"].expval(c, vals, names, obs)
    assert calls == [3]  # one job holding one bound circuit per row
    torch.testing.assert_close(
        got, TorchBackend().expval(c, vals, names, obs), atol=ATOL_BACKENDS, rtol=0
    )


def _count_runs(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Record, per AerSimulator.run call, the number of circuits sent."""
    from qiskit_aer import AerSimulator

    calls: list[int] = []
    original = AerSimulator.run

    def spy(self, circuits, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(circuits) if isinstance(circuits, list) else 1)
        return original(self, circuits, **kwargs)

    monkeypatch.setattr(AerSimulator, "run", spy)
    return calls


def test_one_job_and_one_transpilation(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend = AerBackend()
    c = random_circuit((2, 3, 2), seed=7)
    obs = observables((2, 3, 2), 7)
    calls = _count_runs(monkeypatch)
    transpiles: list[int] = []
    import qiskit

    real_transpile = qiskit.transpile

    def spy_transpile(*args, **kwargs):  # type: ignore[no-untyped-def]
        transpiles.append(1)
        return real_transpile(*args, **kwargs)

    monkeypatch.setattr(qiskit, "transpile", spy_transpile)
    for n in (5, 17):
        backend.expval(c, random_values(n, n), NAMES, obs)
    assert calls == [1, 1]  # one circuit per job: rows go through parameter_binds
    assert transpiles == [1]  # the second call reuses the transpiled circuit
    backend.expval(c, random_values(4, 1), NAMES, obs, shots=100, seed=1)
    n_rotated = sum(o.diagonal(c.wire_dims(o.wires)) is None for o in obs)
    assert calls[2:] == [1 + n_rotated]  # diagonal + one rotated circuit per other observable


# ---------------------------------------------------------------------------------------------
# Shots
# ---------------------------------------------------------------------------------------------
def _obs_variance(c: Circuit, vals: torch.Tensor, obs: list) -> torch.Tensor:  # type: ignore[type-arg]
    ref = TorchBackend()
    mean = ref.expval(c, vals, NAMES, obs)
    squares = []
    for o in obs:
        m = o.local_matrix(c.wire_dims(o.wires))
        squares.append(Hermitian(m @ m, wires=list(o.wires)))
    return (ref.expval(c, vals, NAMES, squares) - mean**2).clamp(min=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["qubits", "mixed"])
def test_shot_estimates(backends, method: str, case: str) -> None:  # type: ignore[no-untyped-def]
    dims = CASES[case]
    shots = 2000
    c = random_circuit(dims, seed=21, channels=method == "density_matrix")
    vals = random_values(3, 21)
    obs = observables(dims, 21)
    exact = TorchBackend().expval(c, vals, NAMES, obs)
    se = (_obs_variance(c, vals, obs) / shots).sqrt()
    got = backends[method].expval(c, vals, NAMES, obs, shots=shots, seed=3)
    assert bool(((got - exact).abs() <= SHOT_SIGMAS * se + 1e-12).all()), (got - exact) / se
    again = backends[method].expval(c, vals, NAMES, obs, shots=shots, seed=3)
    torch.testing.assert_close(again, got, atol=0, rtol=0)  # seeded
    wires = list(range(len(dims)))
    p_exact = TorchBackend().probs(c, vals, NAMES, wires)
    p = backends[method].probs(c, vals, NAMES, wires, shots=shots, seed=4)
    se_p = (p_exact * (1 - p_exact) / shots).sqrt()
    assert bool(((p - p_exact).abs() <= SHOT_SIGMAS * se_p + 1e-12).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(3, dtype=torch.float64), atol=ATOL_F64, rtol=0)


def test_statevector_trajectories_with_shots() -> None:
    """method='statevector' samples noise trajectories: estimates still within SE."""
    c = Circuit([2, 3]).add(H(wires=0), TShift(wires=1), Depolarizing(0.4, wires=1))
    c.add(AmplitudeDamping(0.5, wires=0))
    vals = torch.zeros(2, 0, dtype=torch.float64)
    shots = 2000
    exact = TorchBackend().probs(c, vals, [], [0, 1])
    got = AerBackend("statevector").probs(c, vals, [], [0, 1], shots=shots, seed=9)
    se = (exact * (1 - exact) / shots).sqrt()
    assert bool(((got - exact).abs() <= SHOT_SIGMAS * se + 1e-12).all())
    assert not torch.equal(got[0], got[1])  # rows are independent samples


def test_rows_are_independent_seeded_samples() -> None:
    """Equal rows (bound or parameter-free) get different samples; the seed fixes them all."""
    c = Circuit.qubits(1).add(H(wires=0))
    p = AerBackend().probs(c, torch.zeros(4, 0, dtype=torch.float64), [], [0], shots=500, seed=2)
    assert len({tuple(r.tolist()) for r in p}) > 1
    c = Circuit.qubits(1).add(RY(Parameter("a"), wires=0))
    vals = torch.ones(4, 1, dtype=torch.float64)
    p = AerBackend().probs(c, vals, ["a"], [0], shots=500, seed=2)
    assert len({tuple(r.tolist()) for r in p}) > 1
    torch.testing.assert_close(AerBackend().probs(c, vals, ["a"], [0], shots=500, seed=2), p)


# ---------------------------------------------------------------------------------------------
# Leakage
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shots", [None, 300])
def test_leakage_zero(shots: int | None) -> None:
    dims = (3, 2, 3)
    c = random_circuit(dims, seed=31, channels=True)
    leak = AerBackend().leakage(c, random_values(3, 31), NAMES, shots=shots, seed=5)
    assert leak.shape == (3, 2)
    assert float(leak.abs().max()) < ATOL_BACKENDS
    assert AerBackend.leaky_wires(Circuit([2, 4, 3, 5])) == [2, 3]
    no_leak = AerBackend().leakage(Circuit([2, 4]), torch.zeros(2, 0, dtype=torch.float64), [])
    assert no_leak.shape == (2, 0)


@pytest.mark.parametrize("shots", [None, 200])
def test_leakage_is_detected(monkeypatch, shots: int | None) -> None:  # type: ignore[no-untyped-def]
    """Positive control: a converter that pushes wire 1 to |11> shows full leakage."""
    original = aer_mod._Converter.add_gate

    def leaky_add(self, op):  # type: ignore[no-untyped-def]
        if isinstance(op, Identity):
            for q in self.layout.qubits(op.wires[0]):
                self.qc.x(q)
            return
        original(self, op)

    monkeypatch.setattr(aer_mod._Converter, "add_gate", leaky_add)
    c = Circuit([3, 3, 2]).add(TShift(wires=0), Identity(wires=1), H(wires=2))
    vals = torch.zeros(2, 0, dtype=torch.float64)
    leak = AerBackend().leakage(c, vals, [], shots=shots, seed=1)
    torch.testing.assert_close(leak, torch.tensor([[0.0, 1.0]] * 2, dtype=torch.float64))
    p = AerBackend().probs(c, vals, [], [0, 1, 2], shots=shots, seed=1)
    assert float(p.sum(-1).max()) == pytest.approx(0.0, abs=ATOL_F64)
    p0 = AerBackend().probs(c, vals, [], [0], shots=shots, seed=1)
    torch.testing.assert_close(p0, torch.tensor([[0.0, 1.0, 0.0]] * 2, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# Bad input and environment
# ---------------------------------------------------------------------------------------------
def test_errors() -> None:
    c = Circuit([2, 3]).add(RY(Parameter("a"), wires=0), Depolarizing(0.1, wires=1))
    vals = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(QsemValueError, match="argument 'method'"):
        AerBackend("statevector").expval(c, vals, ["a"], [PauliString("Z", wires=[0])])
    with pytest.raises(QsemValueError, match="argument 'method'"):
        AerBackend("stabilizer")
    with pytest.raises(QsemValueError, match="argument 'device'"):
        AerBackend(device="TPU")
    with pytest.raises(QsemValueError, match="argument 'values'"):
        AerBackend().probs(c, torch.zeros(2, 3, dtype=torch.float64), ["a"], [0])
    with pytest.raises(QsemValueError, match="argument 'names'"):
        AerBackend().probs(c, torch.zeros(2, 1, dtype=torch.float64), ["b"], [0])
    with pytest.raises(QsemValueError, match="argument 'shots'"):
        AerBackend().probs(c, vals, ["a"], [0], shots=0)
    with pytest.raises(QsemValueError, match="argument 'wires'"):
        AerBackend().probs(c, vals, ["a"], [2])
    with pytest.raises(QsemTypeError, match="argument 'circuit'"):
        AerBackend().probs("not a circuit", vals, ["a"], [0])
    batched = Circuit.qubits(1).add(RY(torch.tensor([0.1, 0.2]), wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'circuit'.*batched"):
        AerBackend().probs(batched, torch.zeros(2, 0, dtype=torch.float64), [], [0])
    w = ParameterVector("w", 2)
    vec = Circuit.qubits(1).add(RY(w[0], wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'values'.*one column per element"):
        AerBackend().probs(vec, torch.zeros(2, 1, dtype=torch.float64), ["w"], [0])
    with pytest.raises(QsemValueError, match="argument 'values'"):
        AerBackend().probs(
            Circuit.qubits(1).add(RY(Parameter("a"), wires=0)),
            torch.tensor([[float("nan")]], dtype=torch.float64), ["a"], [0],
        )  # fmt: skip
    with pytest.raises(QsemValueError, match="Pauli strings act on qubits"):
        AerBackend("density_matrix").expval(c, vals, ["a"], [PauliString("Z", wires=[1])])


def test_gpu_falls_back_with_one_warning() -> None:
    from qiskit_aer import AerSimulator

    if "GPU" in AerSimulator().available_devices():
        backend = AerBackend(device="GPU")
        assert backend.device == "GPU"
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = AerBackend(device="GPU")
    assert backend.device == "CPU"
    assert len(caught) == 1 and "GPU" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


def test_missing_qiskit_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "qiskit_aer", None)
    with pytest.raises(MissingDependencyError, match=r"qsem\[aer\]"):
        AerBackend()


def test_gates_without_names_use_the_embedded_unitary() -> None:
    """Concrete gates of any class: Unitary on qubit + qutrit, controlled qutrit SWAP."""
    rng = np.random.default_rng(3)
    c = Circuit([2, 3, 3]).add(
        THadamard(wires=1), THadamard(wires=2), H(wires=0),
        Unitary(haar(6, rng), wires=[1, 0]),
        Controlled(SWAP(wires=[1, 2]), [0]),
        TAdd(wires=[2, 0]),
        Controlled(Adjoint(THadamard(wires=2)), [1], [2]),
    )  # fmt: skip
    vals = torch.zeros(1, 0, dtype=torch.float64)
    got = AerBackend().probs(c, vals, [], [0, 1, 2])
    torch.testing.assert_close(
        got, TorchBackend().probs(c, vals, [], [0, 1, 2]), atol=ATOL_BACKENDS, rtol=0
    )


class _XYRotation(Gate):
    """A parametrised gate with no Qiskit name: exp(-iθ(X+Y)/(2√2)) on a qubit."""

    num_params = 1
    wire_dims = (2,)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):  # type: ignore[no-untyped-def]
        th = params[0].to(torch.float64)
        c, s = torch.cos(th / 2), torch.sin(th / 2)
        n = (1 - 1j) / math.sqrt(2)
        m = torch.stack([c + 0j, -1j * s * n, -1j * s * n.conjugate(), c + 0j], -1)
        return m.reshape(*th.shape, 2, 2).to(dtype)


def test_unnamed_symbolic_gate_is_bound_per_row(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c = Circuit([2, 3]).add(
        H(wires=0),
        _XYRotation(Parameter("a"), wires=0),
        Controlled(TRY(Parameter("b"), wires=1, subspace=(0, 2)), [0]),
        Controlled(_XYRotation(Parameter("b") * 2, wires=0), [1], [2]),
        Adjoint(_XYRotation(Parameter("a"), wires=0)),
    )
    with pytest.raises(QsemValueError, match="argument 'circuit'"):
        AerBackend().to_qiskit(c)
    vals = random_values(3, 12)[:, :2]
    calls = _count_runs(monkeypatch)
    obs = [PauliString("Y", wires=[0]), GellMann(4, wires=1)]
    got = AerBackend().expval(c, vals, ["a", "b"], obs)
    assert calls == [3]
    torch.testing.assert_close(
        got, TorchBackend().expval(c, vals, ["a", "b"], obs), atol=ATOL_BACKENDS, rtol=0
    )
    shots = AerBackend().expval(c, vals, ["a", "b"], obs, shots=50, seed=1)
    assert shots.shape == (3, 2) and calls[1] == 3 * 2  # rows x two rotated read-outs
