"""Interop round trips against independent references: Qiskit (Statevector, Operator,
DensityMatrix), PennyLane (its own devices), OpenQASM 3, and the JSON form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import ATOL_F64
from test_backend_aer import random_circuit

from qsem.circuits import (
    CNOT,
    RX,
    RY,
    TRY,
    Circuit,
    Depolarizing,
    H,
    Kraus,
    Parameter,
    ParameterVector,
    QsemError,
    QsemTypeError,
    QsemValueError,
    TAdd,
    Unitary,
)
from qsem.circuits.qiskit_export import QubitLayout
from qsem.simulators import TorchSimulator

qiskit = pytest.importorskip("qiskit")
from qiskit import QuantumCircuit  # noqa: E402
from qiskit.circuit.random import random_circuit as qiskit_random_circuit  # noqa: E402
from qiskit.quantum_info import DensityMatrix, Operator, Statevector  # noqa: E402
from qiskit.quantum_info import Kraus as QiskitKraus  # noqa: E402

#: the done-when tolerance of the issue
ROUND_TRIP_ATOL = 1e-10
VALUES = {"a": 0.37, "b": -1.21, "c": 2.05}


def _sim(mode: str = "statevector") -> TorchSimulator:
    return TorchSimulator(mode, dtype=torch.complex128)


def _qiskit_round_trip(seeds: range) -> float:
    """Worst deviation over random Qiskit circuits: qsem's simulation of from_qiskit(qc)
    from a random state vs Qiskit's, and Operator(to_qiskit(from_qiskit(qc))) vs
    Operator(qc) (global phase included)."""
    from qiskit.quantum_info import random_statevector

    worst = 0.0
    for seed in seeds:
        n = 1 + seed % 5
        qc = qiskit_random_circuit(n, depth=4, max_operands=3, seed=seed)
        init = random_statevector(2**n, seed=seed)
        c = Circuit.from_qiskit(qc)
        psi = _sim().run(c, initial_state=torch.from_numpy(init.data)).vector.numpy()
        worst = max(worst, float(np.abs(psi - init.evolve(qc).data).max()))
        back = c.to_qiskit()
        worst = max(worst, float(np.abs(Operator(back).data - Operator(qc).data).max()))
    return worst


def test_qiskit_round_trip_100_random_circuits() -> None:
    """The issue's done-when check: 100 seeded qiskit.circuit.random circuits (every gate
    of Qiskit's random pool: cu, rzz, ecr, xx_plus_yy, ...) to 1e-10 (~2 s)."""
    assert _qiskit_round_trip(range(100)) < ROUND_TRIP_ATOL


@pytest.mark.parametrize("dims", [(2, 2, 2), (3, 3), (2, 3, 2)])
def test_to_qiskit_matches_statevector_and_density_matrix(dims: tuple[int, ...]) -> None:
    """qsem's random circuits (symbols, controls, qutrits, channels) against Qiskit's own
    simulation of the export, read back through the qubit encoding."""
    lay = QubitLayout.of(dims)
    idx = lay.valid_indices(range(len(dims)))
    for seed in range(4):
        c = random_circuit(dims, seed, n_ops=10, channels=False)
        vals = {k: v for k, v in VALUES.items() if k in c.parameters}
        qc = c.to_qiskit()
        bound = qc.assign_parameters({p: vals[p.name] for p in qc.parameters})
        psi = _sim().run(c, vals).vector.numpy()
        np.testing.assert_allclose(Statevector(bound).data[idx], psi, atol=ROUND_TRIP_ATOL)
        noisy = random_circuit(dims, seed, n_ops=8, channels=True)
        vals = {k: v for k, v in VALUES.items() if k in noisy.parameters}
        nqc = noisy.bind(vals).to_qiskit()
        rho = _sim("density_matrix").run(noisy, vals).density_matrix.numpy()
        got = DensityMatrix(nqc).data[np.ix_(idx, idx)]
        np.testing.assert_allclose(got, rho, atol=ROUND_TRIP_ATOL)
        if all(d == 2 for d in dims):  # qubit circuits come back as they were
            back = Circuit.from_qiskit(bound)
            np.testing.assert_allclose(_sim().run(back).vector.numpy(), psi, atol=ATOL_F64)


def test_qiskit_parameters_and_vectors_round_trip() -> None:
    x, w = Parameter("x"), ParameterVector("w", 2)
    c = Circuit.qubits(2).add(RY(x, wires=0), RX(w[1] * 2.0, wires=1), RY(w[0], wires=1))
    c.add(CNOT(wires=[0, 1]))
    qc = c.to_qiskit()
    names = sorted(p.name for p in qc.parameters)
    assert names == ["w[0]", "w[1]", "x"]
    back = Circuit.from_qiskit(qc)
    assert back.parameter_lengths == {"x": None, "w": 2}
    vals = {"x": torch.tensor(0.4), "w": torch.tensor([0.3, -0.9])}
    np.testing.assert_allclose(
        _sim().run(back, vals).vector.numpy(), _sim().run(c, vals).vector.numpy(), atol=ATOL_F64
    )


def test_from_qiskit_gates_kraus_and_refusals() -> None:
    theta = qiskit.circuit.Parameter("t")
    qc = QuantumCircuit(2)
    qc.rzz(theta, 0, 1)
    with pytest.raises(QsemValueError, match="unbound parameters and no qsem counterpart"):
        Circuit.from_qiskit(qc)
    bound = qc.assign_parameters({theta: 0.7})
    c = Circuit.from_qiskit(bound)
    assert isinstance(c.ops[0], Unitary)
    np.testing.assert_allclose(_sim().run(c).vector.numpy(), Statevector(bound).data, atol=ATOL_F64)
    noisy = QuantumCircuit(1)
    noisy.h(0)
    p = 0.3
    ks = [math.sqrt(1 - p) * np.eye(2), math.sqrt(p) * np.array([[0, 1], [1, 0]])]
    noisy.append(QiskitKraus(ks), [0])
    c = Circuit.from_qiskit(noisy)
    assert isinstance(c.ops[1], Kraus)
    rho = _sim("density_matrix").run(c).density_matrix.numpy()
    np.testing.assert_allclose(rho, DensityMatrix(noisy).data, atol=ATOL_F64)
    measured = QuantumCircuit(1, 1)
    measured.measure(0, 0)
    with pytest.raises(QsemValueError, match="classical bits"):
        Circuit.from_qiskit(measured)
    with pytest.raises(QsemTypeError, match="argument 'qc'"):
        Circuit.from_qiskit("OPENQASM 3;")
    sym = Circuit.qubits(1).add(Depolarizing(Parameter("p"), wires=0))
    with pytest.raises(QsemValueError, match="bind them first"):
        sym.to_qiskit()


def test_qasm3_round_trip() -> None:
    # (Qiskit renames a parameter whose name is an OpenQASM gate name, e.g. "x" -> "x_0")
    th = Parameter("theta")
    c = Circuit.qubits(3).add(H(wires=0), RY(th, wires=1), CNOT(wires=[0, 2]), RX(0.25, wires=2))
    text = c.to_qasm3()
    assert text.startswith("OPENQASM 3") and "input float[64] theta;" in text
    back = Circuit.from_qasm3(text)
    np.testing.assert_allclose(
        _sim().run(back, {"theta": 0.8}).vector.numpy(),
        _sim().run(c, {"theta": 0.8}).vector.numpy(),
        atol=ATOL_F64,
    )
    # qudit circuits round-trip (tests/test_qiskit_qudits.py); channels have no OpenQASM form
    with pytest.raises(QsemValueError, match="noise channels"):
        Circuit([3]).add(Depolarizing(0.1, wires=0)).to_qasm3()
    with pytest.raises(QsemValueError, match="not valid OpenQASM 3"):
        Circuit.from_qasm3("OPENQASM 3.0;\nqubit[1] q;\nfoo q[0];")


@pytest.mark.parametrize("dims", [(2, 3, 2), (3, 3), (2, 4, 3)])
def test_json_round_trip_is_exact(dims: tuple[int, ...]) -> None:
    for seed in range(5):
        c = random_circuit(dims, seed, n_ops=12, channels=True)
        c.add(RY(torch.tensor(0.1234567, dtype=torch.float32), wires=0) if dims[0] == 2 else
              TRY(torch.tensor(0.7, dtype=torch.float64), wires=0, subspace=(0, 2)))  # fmt: skip
        text = c.to_json()
        doc = json.loads(text)
        assert doc["version"] == 1 and doc["format"] == "qsem.circuit"
        back = Circuit.from_json(text)
        assert back.dims == c.dims and repr(back.ops) == repr(c.ops)
        for a, b in zip(c.ops, back.ops, strict=True):
            assert type(a) is type(b) and a.wires == b.wires
            for p, q in zip(a.params, b.params, strict=True):
                if isinstance(p, torch.Tensor):
                    assert isinstance(q, torch.Tensor) and p.dtype == q.dtype and torch.equal(p, q)
                else:
                    assert p == q
            if isinstance(a, (Unitary, Kraus)):
                ma = a.unitary if isinstance(a, Unitary) else a.operators
                mb = b.unitary if isinstance(b, Unitary) else b.operators  # type: ignore[union-attr]
                assert ma.dtype == mb.dtype and torch.equal(ma, mb)
        vals = {k: v for k, v in VALUES.items() if k in c.parameters}
        r1 = _sim("density_matrix").run(c, vals).density_matrix
        r2 = _sim("density_matrix").run(back, vals).density_matrix
        assert torch.equal(r1, r2)


def test_json_keeps_parameter_vectors_and_refuses_bad_documents() -> None:
    w = ParameterVector("w", 3)
    c = Circuit([3, 3]).add(TRY(w[2] * -0.5, wires=0, subspace=(1, 2)), TAdd(wires=[0, 1]))
    back = Circuit.from_json(c.to_json())
    assert back.ops[0].params[0] == w[2] * -0.5 and back.parameter_lengths == {"w": 3}
    doc = json.loads(c.to_json())
    doc["version"] = 99
    with pytest.raises(QsemValueError, match="version 99"):
        Circuit.from_json(json.dumps(doc))
    with pytest.raises(QsemValueError, match="argument 'text'"):
        Circuit.from_json('{"format": "other"}')
    doc["version"], doc["ops"][0]["type"] = 1, "NoSuchGate"
    with pytest.raises(QsemError, match="unknown operation 'NoSuchGate'"):
        Circuit.from_json(json.dumps(doc))


def test_pennylane_round_trip_qubits_and_qutrits() -> None:
    qml = pytest.importorskip("pennylane")
    for dims, device in [((2, 2, 2), "default.mixed"), ((3, 3), "default.qutrit.mixed")]:
        for seed in range(3):
            c = random_circuit(dims, seed, n_ops=10, channels=True)
            vals = {k: v for k, v in VALUES.items() if k in c.parameters}
            wires = list(range(len(dims)))
            dev = qml.device(device, wires=len(dims))
            qnode = qml.QNode(c.to_pennylane(lambda w=wires: qml.density_matrix(wires=w)), dev)
            rho_pl = np.asarray(qnode(**vals))
            rho = _sim("density_matrix").run(c, vals).density_matrix.numpy()
            np.testing.assert_allclose(rho_pl, rho, atol=ATOL_F64)
            back = Circuit.from_pennylane(c.bind(vals).to_pennylane())
            assert back.dims == c.dims
            rho_back = _sim("density_matrix").run(back).density_matrix.numpy()
            np.testing.assert_allclose(rho_back, rho, atol=ATOL_F64)


def test_pennylane_vectors_gradients_and_refusals() -> None:
    qml = pytest.importorskip("pennylane")
    w = ParameterVector("w", 2)
    c = Circuit.qubits(2).add(RY(w[0], wires=0), RY(w[1], wires=1), CNOT(wires=[0, 1]))
    dev = qml.device("default.qubit", wires=2)
    qnode = qml.QNode(c.to_pennylane(lambda: qml.expval(qml.PauliZ(1))), dev, interface="torch")
    v = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    out = qnode(w=v)
    out.backward()
    # <Z1> = cos(w0) cos(w1)
    ref = torch.cos(v.detach()[0]) * torch.cos(v.detach()[1])
    torch.testing.assert_close(out.detach(), ref, atol=ATOL_F64, rtol=0)
    grad = torch.stack([-torch.sin(v[0]) * torch.cos(v[1]), -torch.cos(v[0]) * torch.sin(v[1])])
    torch.testing.assert_close(v.grad, grad.detach(), atol=ATOL_F64, rtol=0)

    def qfunc(a: float) -> None:
        qml.Hadamard(0)
        qml.IsingXX(a, wires=[0, "anc"])

    back = Circuit.from_pennylane(qfunc, 0.6)
    state = qml.QNode(
        lambda: (qfunc(0.6), qml.state())[1], qml.device("default.qubit", wires=[0, "anc"])
    )()
    np.testing.assert_allclose(_sim().run(back).vector.numpy(), state, atol=ATOL_F64)
    with pytest.raises(QsemValueError, match="qubit and qutrit operations only"):
        Circuit([2, 3]).to_pennylane()
    with pytest.raises(QsemValueError, match="missing values"):
        qml.QNode(c.to_pennylane(qml.state), dev)()


def test_random_circuits_use_named_gates() -> None:
    """The round trip goes through qsem's named gates, not only Unitary fallbacks."""
    c = Circuit.from_qiskit(qiskit_random_circuit(3, depth=6, max_operands=3, seed=3))
    assert any(not isinstance(op, Unitary) for op in c.ops)


@pytest.mark.parametrize(
    "module",
    [
        "qiskit_export",
        "qiskit_import",
        "pennylane_io",
        "pennylane_import",
        "serialize",
        "draw",
        "draw_mpl",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    pytest.importorskip("pennylane")
    mod = importlib.import_module(f"qsem.circuits.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
