"""The torch engine against Qiskit ``quantum_info`` on random qubit circuits.

Endianness: qsem puts wire 0 in the most significant position of a basis index
(PennyLane's order); Qiskit puts qubit 0 in the least significant one. Every
comparison maps qsem wire ``w`` to Qiskit qubit ``n - 1 - w`` (:func:`qmap`); with
that map the two flat index orders coincide, which ``test_endianness_*`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import qiskit.quantum_info as qi
import torch
from conftest import ATOL_F32, ATOL_F64
from qiskit import QuantumCircuit
from qiskit.circuit import Instruction
from qiskit.circuit.library import (
    CCXGate,
    CRXGate,
    CRYGate,
    CRZGate,
    CSwapGate,
    CXGate,
    CZGate,
    HGate,
    PhaseGate,
    RXGate,
    RYGate,
    RZGate,
    SGate,
    SwapGate,
    TGate,
    UGate,
    UnitaryGate,
    XGate,
    YGate,
    ZGate,
)
from qiskit_aer.noise import (
    amplitude_damping_error,
    depolarizing_error,
    pauli_error,
    phase_damping_error,
)

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
    U3,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Controlled,
    Depolarizing,
    H,
    Kraus,
    Parameter,
    PauliString,
    PhaseDamping,
    PhaseShift,
    S,
    T,
    Toffoli,
    Unitary,
    X,
    Y,
    Z,
)
from qsem.circuits.operations import Operation
from qsem.simulators import (
    State,
    TorchSimulator,
    entropy,
    expval,
    probs,
    purity,
    reduced_density_matrix,
)

C128 = torch.complex128
C64 = torch.complex64
N_CIRCUITS = 200
N_NOISY = 120
N_MEASURE = 60
N_F32 = 40
N_BATCHED = 20


def qmap(n: int, wire: int) -> int:
    """qsem wire -> Qiskit qubit."""
    return n - 1 - wire


def qargs_little_endian(n: int, wires: list[int] | tuple[int, ...]) -> list[int]:
    """Qiskit qargs for a local matrix whose first wire is most significant (qsem order).

    Qiskit reads a matrix on ``qargs`` with ``qargs[0]`` least significant, so the list
    is reversed.
    """
    return [qmap(n, w) for w in reversed(wires)]


def random_unitary(rng: np.random.Generator, d: int) -> np.ndarray:
    z = (rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_kraus(rng: np.random.Generator, d: int, rank: int) -> np.ndarray:
    """``rank`` Kraus operators of a random channel (blocks of a random isometry)."""
    z = rng.normal(size=(rank * d, d)) + 1j * rng.normal(size=(rank * d, d))
    q, _ = np.linalg.qr(z)
    return q.reshape(rank, d, d)


# ---------------------------------------------------------------------------------------------
# Random circuits, built twice: qsem operations and the matching Qiskit instructions
# ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    op: Operation
    #: Qiskit instruction (gate) or ``qi.Kraus`` (channel) from concrete parameter values.
    make: Callable[[list[float]], Any]
    #: parameter values: scalars, or arrays of shape (B,) when batched
    values: list[np.ndarray]
    qargs: list[int]
    channel: bool = False

    def qiskit(self, b: int | None) -> Any:
        vals = [float(v) if v.ndim == 0 else float(v[b]) for v in self.values]
        return self.make(vals)


class Builder:
    """Draws random qsem operations with their Qiskit counterparts."""

    ONE = ("RX", "RY", "RZ", "P", "U3", "X", "Y", "Z", "H", "S", "T", "U1")
    TWO = ("CNOT", "CZ", "CRX", "CRY", "CRZ", "SWAP", "U2", "C-U3", "C-U1")
    THREE = ("CSWAP", "Toffoli", "CC-RY", "CC-H")

    def __init__(self, rng: np.random.Generator, n: int, *, symbolic: bool, batch: int | None):
        self.rng = rng
        self.n = n
        self.symbolic = symbolic
        self.batch = batch
        self.params: dict[str, Any] = {}

    # parameters ------------------------------------------------------------------
    def _param(self) -> tuple[Any, np.ndarray]:
        """A qsem parameter (float, tensor or symbol) and its value for Qiskit."""
        rng = self.rng
        batched = self.batch is not None and rng.random() < 0.7
        value = rng.uniform(-2 * math.pi, 2 * math.pi, size=(self.batch,) if batched else ())
        kind = rng.integers(3) if self.symbolic else rng.integers(2)
        if kind == 0 and not batched:
            return float(value), value
        if kind == 1:
            return torch.as_tensor(value, dtype=torch.float64), value
        name = f"p{len(self.params)}"
        scale = float(rng.choice([1.0, -1.0, 0.5]))
        self.params[name] = torch.as_tensor(value, dtype=torch.float64)
        return Parameter(name) * scale if scale != 1.0 else Parameter(name), scale * value

    def _params(self, k: int) -> tuple[list[Any], list[np.ndarray]]:
        pairs = [self._param() for _ in range(k)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def wires(self, k: int) -> list[int]:
        return [int(w) for w in self.rng.permutation(self.n)[:k]]

    # gates -----------------------------------------------------------------------
    def gate(self) -> Step:
        rng = self.rng
        pool = self.ONE + (self.TWO if self.n >= 2 else ()) + (self.THREE if self.n >= 3 else ())
        kind = str(rng.choice(pool))
        step = self._gate(kind)
        if rng.random() < 0.15 and not step.channel:
            # the adjoint of the drawn gate vs Qiskit's inverse
            inner = step
            step = Step(
                op=inner.op.adjoint(),  # type: ignore[attr-defined]
                make=lambda v, f=inner.make: f(v).inverse(),
                values=inner.values,
                qargs=inner.qargs,
            )
        return step

    def _gate(self, kind: str) -> Step:
        n = self.n
        simple1 = {
            "X": (X, XGate), "Y": (Y, YGate), "Z": (Z, ZGate), "H": (H, HGate),
            "S": (S, SGate), "T": (T, TGate),
        }  # fmt: skip
        rot1 = {
            "RX": (RX, RXGate),
            "RY": (RY, RYGate),
            "RZ": (RZ, RZGate),
            "P": (PhaseShift, PhaseGate),
        }
        simple2 = {"CNOT": (CNOT, CXGate), "CZ": (CZ, CZGate), "SWAP": (SWAP, SwapGate)}
        rot2 = {"CRX": (CRX, CRXGate), "CRY": (CRY, CRYGate), "CRZ": (CRZ, CRZGate)}
        simple3 = {"CSWAP": (CSwapGate, CSWAP), "Toffoli": (CCXGate, Toffoli)}
        if kind in simple1:
            q, k = simple1[kind]
            w = self.wires(1)
            return Step(q(wires=w), lambda v, k=k: k(), [], [qmap(n, w[0])])
        if kind in rot1:
            q, k = rot1[kind]
            w = self.wires(1)
            p, vals = self._params(1)
            return Step(q(p[0], wires=w), lambda v, k=k: k(v[0]), vals, [qmap(n, w[0])])
        if kind == "U3":
            w = self.wires(1)
            p, vals = self._params(3)
            return Step(U3(*p, wires=w), lambda v: UGate(*v), vals, [qmap(n, w[0])])
        if kind in ("U1", "U2"):
            k = 1 if kind == "U1" else 2
            w = self.wires(k)
            m = random_unitary(self.rng, 2**k)
            op = Unitary(m, wires=w)
            return Step(op, lambda v, m=m: UnitaryGate(m), [], qargs_little_endian(n, w))
        if kind in simple2:
            q, k = simple2[kind]
            w = self.wires(2)
            return Step(q(wires=w), lambda v, k=k: k(), [], [qmap(n, x) for x in w])
        if kind in rot2:
            q, k = rot2[kind]
            w = self.wires(2)
            p, vals = self._params(1)
            return Step(q(p[0], wires=w), lambda v, k=k: k(v[0]), vals, [qmap(n, x) for x in w])
        if kind in simple3:
            k, q = simple3[kind]
            w = self.wires(3)
            return Step(q(wires=w), lambda v, k=k: k(), [], [qmap(n, x) for x in w])
        # generic Controlled with random control values
        n_ctrl = 1 if kind.startswith("C-") else 2
        w = self.wires(n_ctrl + 1)
        ctrl, target = w[:n_ctrl], w[n_ctrl:]
        values = [int(x) for x in self.rng.integers(0, 2, size=n_ctrl)]
        # Qiskit's ctrl_state: bit i is the state of the i-th control qarg
        ctrl_state = sum(v << i for i, v in enumerate(values))
        qargs = [qmap(n, c) for c in ctrl] + [qmap(n, target[0])]
        base_kind = kind.split("-", 1)[1]
        if base_kind == "U3":
            p, vals = self._params(3)
            base = U3(*p, wires=target)

            def make(v: list[float]) -> Instruction:
                return UGate(*v).control(n_ctrl, ctrl_state=ctrl_state)

        elif base_kind == "RY":
            p, vals = self._params(1)
            base = RY(p[0], wires=target)

            def make(v: list[float]) -> Instruction:
                return RYGate(v[0]).control(n_ctrl, ctrl_state=ctrl_state)

        elif base_kind == "H":
            vals = []
            base = H(wires=target)

            def make(v: list[float]) -> Instruction:
                return HGate().control(n_ctrl, ctrl_state=ctrl_state)

        else:
            vals = []
            m = random_unitary(self.rng, 2)
            base = Unitary(m, wires=target)

            def make(v: list[float]) -> Instruction:
                return UnitaryGate(m).control(n_ctrl, ctrl_state=ctrl_state)

        return Step(Controlled(base, ctrl, values), make, vals, qargs)

    # channels --------------------------------------------------------------------
    def channel(self) -> Step:
        rng = self.rng
        n = self.n
        kinds = ["depolarizing", "amplitude", "bitflip", "phase", "kraus1"]
        kinds += ["kraus2"] if n >= 2 else []
        kind = str(rng.choice(kinds))
        w = self.wires(2 if kind == "kraus2" else 1)
        qargs = qargs_little_endian(n, w)
        if kind == "kraus1" or kind == "kraus2":
            d = 2 ** len(w)
            ops = random_kraus(rng, d, int(rng.integers(1, 4)))
            return Step(Kraus(ops, wires=w), lambda v, o=ops: qi.Kraus(list(o)), [], qargs, True)
        high = 4 / 3 if kind == "depolarizing" and rng.random() < 0.2 else 1.0
        p = float(rng.uniform(0, high))
        if kind == "depolarizing":
            op: Operation = Depolarizing(p, wires=w)
            ref = depolarizing_error(p, 1)
        elif kind == "amplitude":
            op = AmplitudeDamping(p, wires=w)
            ref = amplitude_damping_error(p)
        elif kind == "bitflip":
            op = BitFlip(p, wires=w)
            ref = pauli_error([("X", p), ("I", 1 - p)])
        else:
            op = PhaseDamping(p, wires=w)
            ref = phase_damping_error(p)
        return Step(op, lambda v, r=ref: qi.Kraus(r.to_quantumchannel()), [], qargs, True)


@dataclass
class Case:
    n: int
    circuit: Circuit
    steps: list[Step]
    params: dict[str, Any]
    batch: int | None


def random_case(
    seed: int,
    *,
    channels: bool = False,
    symbolic: bool = True,
    batch: int | None = None,
    n: int | None = None,
) -> Case:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6)) if n is None else n
    builder = Builder(rng, n, symbolic=symbolic, batch=batch)
    steps = []
    for _ in range(int(rng.integers(1, 4 * n + 4))):
        if channels and rng.random() < 0.3:
            steps.append(builder.channel())
        else:
            steps.append(builder.gate())
    circuit = Circuit.qubits(n).add(*[s.op for s in steps])
    return Case(n, circuit, steps, builder.params, batch)


def qiskit_circuit(case: Case, b: int | None = None) -> QuantumCircuit:
    qc = QuantumCircuit(case.n)
    for s in case.steps:
        assert not s.channel
        qc.append(s.qiskit(b), s.qargs)
    return qc


def qiskit_density_matrix(case: Case, rho0: qi.DensityMatrix | None = None) -> qi.DensityMatrix:
    rho = qi.DensityMatrix.from_label("0" * case.n) if rho0 is None else rho0
    for s in case.steps:
        rho = rho.evolve(s.qiskit(None), qargs=s.qargs)
    return rho


def qsem_unitary(case: Case, dtype: torch.dtype = C128) -> np.ndarray:
    """The circuit unitary from qsem: every basis state run as one batch."""
    dim = 2**case.n
    basis = torch.eye(dim, dtype=dtype)
    out = TorchSimulator(dtype=dtype).run(case.circuit, case.params, initial_state=basis).vector
    assert out.shape == (dim, dim)
    return out.numpy().T  # row i of the batch is U|i>, i.e. column i of U


# ---------------------------------------------------------------------------------------------
# Endianness
# ---------------------------------------------------------------------------------------------
def test_endianness_x_on_wire_0() -> None:
    """X on wire 0 of 3 qubits is index 4 (|100>) in qsem, and Qiskit's X on qubit 2."""
    vec = TorchSimulator(dtype=C128).run(Circuit.qubits(3).add(X(wires=0))).vector.numpy()
    assert int(np.argmax(np.abs(vec))) == 4
    qc = QuantumCircuit(3)
    qc.x(0)
    assert int(np.argmax(np.abs(qi.Statevector(qc).data))) == 1  # qubit 0 is least significant
    qc = QuantumCircuit(3)
    qc.x(qmap(3, 0))
    np.testing.assert_allclose(qi.Statevector(qc).data, vec, atol=ATOL_F64)


def test_endianness_non_symmetric_state() -> None:
    n = 3
    circ = Circuit.qubits(n).add(
        RY(0.3, wires=0), RY(1.2, wires=1), RY(2.0, wires=2), CNOT(wires=[0, 2]), S(wires=1)
    )
    vec = TorchSimulator(dtype=C128).run(circ).vector.numpy()
    # hand-written: product state then CNOT(0 -> 2) then S on wire 1
    a = [np.array([math.cos(t / 2), math.sin(t / 2)]) for t in (0.3, 1.2, 2.0)]
    expected = np.zeros(8, dtype=complex)
    for b0 in range(2):
        for b1 in range(2):
            for b2 in range(2):
                amp = a[0][b0] * a[1][b1] * a[2][b2] * (1j if b1 else 1)
                expected[4 * b0 + 2 * b1 + (b2 ^ b0)] += amp
    np.testing.assert_allclose(vec, expected, atol=ATOL_F64)

    def build(mapping: Callable[[int], int]) -> qi.Statevector:
        qc = QuantumCircuit(n)
        qc.ry(0.3, mapping(0))
        qc.ry(1.2, mapping(1))
        qc.ry(2.0, mapping(2))
        qc.cx(mapping(0), mapping(2))
        qc.s(mapping(1))
        return qi.Statevector(qc)

    mapped = build(lambda w: qmap(n, w))
    naive = build(lambda w: w)
    np.testing.assert_allclose(mapped.data, vec, atol=ATOL_F64)
    assert np.abs(naive.data - vec).max() > 0.1  # the naive order is a different vector
    np.testing.assert_allclose(naive.reverse_qargs().data, vec, atol=ATOL_F64)
    # marginal on wires [0, 2] (wire 0 most significant) vs Qiskit qargs reversed
    st = TorchSimulator(dtype=C128).run(circ)
    np.testing.assert_allclose(
        probs(st, [0, 2]).numpy(),
        mapped.probabilities(qargs_little_endian(n, [0, 2])),
        atol=ATOL_F64,
    )
    # a two-wire Unitary: local first wire most significant
    m = random_unitary(np.random.default_rng(7), 4)
    circ2 = Circuit.qubits(n).add(RY(0.7, wires=1), Unitary(m, wires=[2, 0]))
    qc = QuantumCircuit(n)
    qc.ry(0.7, qmap(n, 1))
    qc.append(UnitaryGate(m), qargs_little_endian(n, [2, 0]))
    np.testing.assert_allclose(
        TorchSimulator(dtype=C128).run(circ2).vector.numpy(), qi.Statevector(qc).data, atol=ATOL_F64
    )


# ---------------------------------------------------------------------------------------------
# Unitaries and statevectors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(N_CIRCUITS))
def test_random_circuit_unitary_and_state(seed: int) -> None:
    case = random_case(seed)
    qc = qiskit_circuit(case)
    u_ref = qi.Operator(qc).data
    np.testing.assert_allclose(qsem_unitary(case), u_ref, atol=ATOL_F64, rtol=0)
    sim = TorchSimulator(dtype=C128)
    vec = sim.run(case.circuit, case.params).vector.numpy()
    np.testing.assert_allclose(vec, qi.Statevector(qc).data, atol=ATOL_F64, rtol=0)
    # a random initial state
    psi0 = random_unitary(np.random.default_rng(seed + 10_000), 2**case.n)[:, 0]
    vec = sim.run(case.circuit, case.params, initial_state=torch.as_tensor(psi0)).vector.numpy()
    ref = qi.Statevector(psi0).evolve(qc).data
    np.testing.assert_allclose(vec, ref, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("seed", range(N_BATCHED))
def test_random_circuit_batched_params(seed: int) -> None:
    batch = 3
    case = random_case(50_000 + seed, batch=batch, n=int(1 + seed % 5))
    state = TorchSimulator(dtype=C128).run(case.circuit, case.params)
    got = state.vector.numpy()
    if state.batched:
        assert got.shape == (batch, 2**case.n)
    for b in range(batch):
        ref = qi.Statevector(qiskit_circuit(case, b)).data
        np.testing.assert_allclose(got[b] if state.batched else got, ref, atol=ATOL_F64)


@pytest.mark.parametrize("seed", range(N_F32))
def test_random_circuit_complex64(seed: int) -> None:
    case = random_case(seed)
    qc = qiskit_circuit(case)
    u = qsem_unitary(case, C64)
    assert u.dtype == np.complex64
    np.testing.assert_allclose(u, qi.Operator(qc).data, atol=ATOL_F32, rtol=0)
    vec = TorchSimulator(dtype=C64).run(case.circuit, case.params).vector.numpy()
    np.testing.assert_allclose(vec, qi.Statevector(qc).data, atol=ATOL_F32, rtol=0)


def test_generator_covers_every_qubit_gate() -> None:
    names: set[str] = set()
    for seed in range(N_CIRCUITS):
        for s in random_case(seed).steps:
            op = s.op
            names.add(type(op).__name__)
            if hasattr(op, "base"):
                names.add(type(op.base).__name__)
    expected = {"RX", "RY", "RZ", "PhaseShift", "U3", "X", "Y", "Z", "H", "S", "T", "Unitary"}
    expected |= {"CNOT", "CZ", "CRX", "CRY", "CRZ", "SWAP", "CSWAP", "Toffoli", "Controlled"}
    expected |= {"Adjoint"}
    assert expected <= names, expected - names


# ---------------------------------------------------------------------------------------------
# Density matrices with channels
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(N_NOISY))
def test_random_noisy_circuit_density_matrix(seed: int) -> None:
    case = random_case(20_000 + seed, channels=True)
    rho = TorchSimulator("density_matrix", dtype=C128).run(case.circuit, case.params)
    ref = qiskit_density_matrix(case).data
    np.testing.assert_allclose(rho.density_matrix.numpy(), ref, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("seed", range(N_F32 // 2))
def test_random_noisy_circuit_complex64(seed: int) -> None:
    case = random_case(20_000 + seed, channels=True)
    rho = TorchSimulator("density_matrix", dtype=C64).run(case.circuit, case.params)
    ref = qiskit_density_matrix(case).data
    np.testing.assert_allclose(rho.density_matrix.numpy(), ref, atol=ATOL_F32, rtol=0)


@pytest.mark.parametrize("seed", range(10))
def test_noisy_circuit_from_mixed_initial_state(seed: int) -> None:
    case = random_case(30_000 + seed, channels=True)
    d = 2**case.n
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    rho0 = a @ a.conj().T
    rho0 /= np.trace(rho0)
    sim = TorchSimulator("density_matrix", dtype=C128)
    got = sim.run(case.circuit, case.params, initial_state=torch.as_tensor(rho0)).density_matrix
    ref = qiskit_density_matrix(case, qi.DensityMatrix(rho0)).data
    np.testing.assert_allclose(got.numpy(), ref, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("seed", range(30))
def test_density_matrix_mode_on_unitary_circuits(seed: int) -> None:
    case = random_case(seed)
    rho = TorchSimulator("density_matrix", dtype=C128).run(case.circuit, case.params)
    ref = qi.DensityMatrix(qiskit_circuit(case)).data
    np.testing.assert_allclose(rho.density_matrix.numpy(), ref, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("p", [0.0, 0.25, 1.0, 4 / 3])
def test_depolarizing_is_qiskits_convention(p: float) -> None:
    """Depolarizing(p) = (1-p) ρ + p I/2 = Qiskit Aer's depolarizing_error(p, 1)."""
    circ = Circuit.qubits(1).add(RY(0.9, wires=0), Depolarizing(p, wires=0))
    got = TorchSimulator("density_matrix", dtype=C128).run(circ).density_matrix.numpy()
    psi = np.array([math.cos(0.45), math.sin(0.45)])
    expected = (1 - p) * np.outer(psi, psi) + p * np.eye(2) / 2
    np.testing.assert_allclose(got, expected, atol=ATOL_F64)
    ref = qi.DensityMatrix(psi).evolve(qi.Kraus(depolarizing_error(p, 1).to_quantumchannel()))
    np.testing.assert_allclose(got, ref.data, atol=ATOL_F64)


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------
def _reference_rdm(ref: Any, n: int, wires: list[int]) -> np.ndarray:
    """Qiskit's partial trace, reordered to qsem's order of ``wires`` (first most significant)."""
    traced = [qmap(n, w) for w in range(n) if w not in wires]
    rdm = qi.partial_trace(ref, traced).data if traced else qi.DensityMatrix(ref).data
    m = len(wires)
    # Kept Qiskit qubits in ascending order, the highest one most significant: that is the
    # kept qsem wires in ascending order, the lowest one most significant.
    kept = sorted(wires)
    perm = [kept.index(w) for w in wires]
    t = rdm.reshape((2,) * (2 * m)).transpose(perm + [m + p for p in perm])
    return t.reshape(2**m, 2**m)


def _pauli_label(n: int, paulis: str, wires: list[int]) -> str:
    """Qiskit label: character ``n - 1 - q`` (from the left) belongs to qubit q."""
    label = ["I"] * n
    for p, w in zip(paulis, wires, strict=True):
        label[n - 1 - qmap(n, w)] = p
    return "".join(label)


def _check_measurements(
    state: State, ref: Any, n: int, rng: np.random.Generator, atol: float
) -> None:
    for _ in range(3):
        k = int(rng.integers(1, n + 1))
        wires = [int(w) for w in rng.permutation(n)[:k]]
        # marginal probabilities in the order of `wires`
        got = probs(state, wires).numpy()
        np.testing.assert_allclose(got, ref.probabilities(qargs_little_endian(n, wires)), atol=atol)
        # reduced density matrix, purity, entropy
        rdm_ref = _reference_rdm(ref, n, wires)
        np.testing.assert_allclose(reduced_density_matrix(state, wires).numpy(), rdm_ref, atol=atol)
        np.testing.assert_allclose(
            float(purity(state, wires)), qi.purity(qi.DensityMatrix(rdm_ref)).real, atol=atol
        )
        np.testing.assert_allclose(
            float(entropy(state, wires)),
            qi.entropy(qi.DensityMatrix(rdm_ref), base=2),
            atol=1e3 * atol,
        )
    # whole register
    np.testing.assert_allclose(probs(state).numpy(), ref.probabilities(), atol=atol)
    np.testing.assert_allclose(float(purity(state)), qi.purity(ref).real, atol=atol)
    np.testing.assert_allclose(float(entropy(state)), qi.entropy(ref, base=2), atol=1e3 * atol)
    # Pauli strings
    observables, refs = [], []
    for _ in range(4):
        k = int(rng.integers(1, n + 1))
        wires = [int(w) for w in rng.permutation(n)[:k]]
        paulis = "".join(rng.choice(list("IXYZ"), size=k))
        coeff = float(rng.uniform(-2, 2))
        observables.append(PauliString(paulis, wires=wires, coeff=coeff))
        op = qi.SparsePauliOp(_pauli_label(n, paulis, wires), coeffs=[coeff])
        refs.append(ref.expectation_value(op).real)
    got = expval(state, observables).numpy()
    assert got.shape == (len(observables),)
    np.testing.assert_allclose(got, refs, atol=atol)
    np.testing.assert_allclose(float(expval(state, observables[0])), refs[0], atol=atol)


@pytest.mark.parametrize("seed", range(N_MEASURE))
def test_measurements_statevector(seed: int) -> None:
    case = random_case(40_000 + seed)
    state = TorchSimulator(dtype=C128).run(case.circuit, case.params)
    ref = qi.Statevector(qiskit_circuit(case))
    _check_measurements(state, ref, case.n, np.random.default_rng(seed), ATOL_F64)


@pytest.mark.parametrize("seed", range(N_MEASURE))
def test_measurements_density_matrix(seed: int) -> None:
    case = random_case(40_000 + seed, channels=True)
    state = TorchSimulator("density_matrix", dtype=C128).run(case.circuit, case.params)
    ref = qiskit_density_matrix(case)
    _check_measurements(state, ref, case.n, np.random.default_rng(seed), ATOL_F64)


@pytest.mark.parametrize("seed", range(N_F32 // 4))
def test_measurements_complex64(seed: int) -> None:
    case = random_case(40_000 + seed, channels=True)
    state = TorchSimulator("density_matrix", dtype=C64).run(case.circuit, case.params)
    ref = qiskit_density_matrix(case)
    _check_measurements(state, ref, case.n, np.random.default_rng(seed), ATOL_F32)


def test_pauli_label_conversion() -> None:
    """Z on wire 0 of 3 is Qiskit's label 'ZII' (qubit 2): <Z_0> = -1 after X on wire 0."""
    assert _pauli_label(3, "Z", [0]) == "ZII"
    assert _pauli_label(3, "XY", [2, 1]) == "IYX"
    state = TorchSimulator(dtype=C128).run(Circuit.qubits(3).add(X(wires=0)))
    np.testing.assert_allclose(
        expval(state, [PauliString("Z", [0]), PauliString("Z", [2])]).numpy(),
        [-1.0, 1.0],
        atol=ATOL_F64,
    )
