"""NoiseModel: hand-built noise, Qiskit Aer models and device snapshots against Aer itself.

References are independent of qsem's conversion: Aer's ``density_matrix`` method with
the same Aer ``NoiseModel`` (``save_density_matrix``), and for recorded probabilities
Aer's exact noisy state, then the ``measure`` errors applied with
``qiskit.quantum_info`` and the readout matrices applied with NumPy in Qiskit's
little-endian order (Aer applies readout errors only to sampled counts). Sampled Aer
counts (which include every error) are checked against qsem's recorded probabilities
by a chi-square test at level ``CHI2_ALPHA`` (seeds stated in each test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")

from conftest import (
    ATOL_AER_TRUNCATION,
    ATOL_F64,
    ATOL_NOISE_AER,
    CHI2_ALPHA,
    FD_ATOL,
    FD_STEP,
)
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter as QParameter
from qiskit.circuit.random import random_circuit
from qiskit.quantum_info import DensityMatrix
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel as AerNoiseModel
from qiskit_aer.noise import (
    PauliError,
    PauliLindbladError,
    ReadoutError,
    amplitude_damping_error,
    coherent_unitary_error,
    depolarizing_error,
    kraus_error,
    pauli_error,
    phase_damping_error,
    reset_error,
    thermal_relaxation_error,
)
from scipy.stats import chisquare, unitary_group

from qsem.circuits import (
    CNOT,
    RX,
    RY,
    RZ,
    Circuit,
    Depolarizing,
    H,
    NoiseModel,
    PauliString,
    QsemError,
    QsemTypeError,
    QsemValueError,
)
from qsem.circuits import ReadoutError as QReadout
from qsem.circuits.channels import AmplitudeDamping, BitFlip
from qsem.simulators import expval, probs, sample, simulate


# ---------------------------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------------------------
def kraus_form(anm: AerNoiseModel) -> AerNoiseModel:
    """The same Aer model with every quantum error as ONE Kraus instruction.

    Aer's simulator drops the terms of a mixture-of-circuits ``QuantumError`` whose
    probability is below 1e-10 (measured: on FakeManilaV2's cx error, 15 of 144 terms,
    3.5e-10 in the density matrix); a single Kraus term is applied exactly.
    """
    from qiskit.quantum_info import Kraus
    from qiskit_aer.noise import QuantumError

    def exact(e):
        return QuantumError(Kraus(e.to_quantumchannel()))

    out = AerNoiseModel()
    for name, e in anm._default_quantum_errors.items():
        out.add_all_qubit_quantum_error(exact(e), [name], warnings=False)
    for name, table in anm._local_quantum_errors.items():
        for qubits, e in table.items():
            out.add_quantum_error(exact(e), [name], qubits, warnings=False)
    if anm._default_readout_error is not None:
        out.add_all_qubit_readout_error(anm._default_readout_error, warnings=False)
    for qubits, e in anm._local_readout_errors.items():
        out.add_readout_error(e, qubits, warnings=False)
    return out


def aer_dm(qc: QuantumCircuit, anm: AerNoiseModel, *, exact: bool = True) -> np.ndarray:
    """Aer's noisy density matrix (density_matrix method); ``exact``: the errors in
    :func:`kraus_form`, which Aer applies without truncation."""
    if exact:
        anm = kraus_form(anm)
    qc = qc.remove_final_measurements(inplace=False)
    qc.save_density_matrix()
    sim = AerSimulator(method="density_matrix", noise_model=anm)
    return np.asarray(sim.run(qc).result().data()["density_matrix"])


def _readout_matrix(anm: AerNoiseModel, q: int) -> np.ndarray | None:
    err = anm._local_readout_errors.get((q,), anm._default_readout_error)
    return None if err is None else np.asarray(err.probabilities)


def recorded_reference(qc: QuantumCircuit, anm: AerNoiseModel) -> np.ndarray:
    """Recorded probabilities of ``qc`` (all qubits measured at the end) under ``anm``,
    little-endian index: Aer's state, measure errors by quantum_info, readout by NumPy."""
    n = qc.num_qubits
    rho = DensityMatrix(aer_dm(qc, anm))
    for q in range(n):
        err = anm._local_quantum_errors.get("measure", {}).get((q,))
        if err is None:
            err = anm._default_quantum_errors.get("measure")
        if err is not None:
            rho = rho.evolve(err.to_quantumchannel(), qargs=[q])
    p = np.real(np.diag(rho.data)).reshape([2] * n)  # axis k <-> qubit n-1-k
    for q in range(n):
        m = _readout_matrix(anm, q)
        if m is not None:
            p = np.moveaxis(np.tensordot(p, m, axes=([n - 1 - q], [0])), -1, n - 1 - q)
    return p.reshape(-1)


def qsem_rho(circuit: Circuit) -> np.ndarray:
    st = simulate(circuit, mode="density_matrix", dtype=torch.complex128)
    return st.tensor.detach().numpy()


def aer_counts(qc: QuantumCircuit, anm: AerNoiseModel, shots: int, seed: int) -> np.ndarray:
    qc = qc.remove_final_measurements(inplace=False)
    qc.measure_all()
    res = AerSimulator(noise_model=anm, seed_simulator=seed).run(qc, shots=shots).result()
    out = np.zeros(1 << qc.num_qubits)
    for key, c in res.get_counts().items():
        out[int(key.replace(" ", ""), 2)] += c
    return out


def chi2_pvalue(counts: np.ndarray, p: np.ndarray) -> float:
    keep = p > 1e-9
    assert counts[~keep].sum() == 0
    expected = p[keep] / p[keep].sum() * counts.sum()
    return float(chisquare(counts[keep], expected).pvalue)


# ---------------------------------------------------------------------------------------------
# an Aer model with every kind of error
# ---------------------------------------------------------------------------------------------
def every_error_model() -> AerNoiseModel:
    rng = np.random.default_rng(7)
    g = 0.15
    amp = [np.array([[1, 0], [0, np.sqrt(1 - g)]]), np.array([[0, np.sqrt(g)], [0, 0]])]
    anm = AerNoiseModel()
    anm.add_all_qubit_quantum_error(kraus_error(amp), ["sx"])
    anm.add_all_qubit_quantum_error(pauli_error([("X", 0.1), ("Y", 0.05), ("I", 0.85)]), ["x"])
    anm.add_all_qubit_quantum_error(depolarizing_error(0.05, 1), ["h"])
    anm.add_all_qubit_quantum_error(thermal_relaxation_error(50.0, 30.0, 5.0), ["h"], False)
    anm.add_all_qubit_quantum_error(phase_damping_error(0.07), ["rz"])
    u = unitary_group.rvs(2, random_state=rng)
    anm.add_all_qubit_quantum_error(coherent_unitary_error(u), ["ry"])
    anm.add_all_qubit_quantum_error(depolarizing_error(0.08, 2), ["cx"])
    asym = thermal_relaxation_error(40.0, 25.0, 8.0).expand(amplitude_damping_error(0.2))
    anm.add_quantum_error(asym, ["cx"], [0, 1])  # local: overrides the all-qubit one
    anm.add_all_qubit_quantum_error(PauliError(["II", "XI", "ZY"], [0.85, 0.1, 0.05]), ["cz"])
    anm.add_quantum_error(PauliLindbladError(["XZ", "YY"], [0.1, 0.03]), ["cz"], [2, 1])
    anm.add_all_qubit_quantum_error(reset_error(0.1, 0.05), ["reset"])
    anm.add_all_qubit_quantum_error(amplitude_damping_error(0.1), ["measure"])
    anm.add_quantum_error(pauli_error([("X", 0.2), ("I", 0.8)]), ["measure"], [1])
    anm.add_all_qubit_readout_error(ReadoutError([[0.97, 0.03], [0.08, 0.92]]))
    anm.add_readout_error(ReadoutError([[0.9, 0.1], [0.25, 0.75]]), [2])
    return anm


def every_gate_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.sx(1)
    qc.x(2)
    qc.cx(0, 1)
    qc.cx(1, 0)
    qc.ry(0.7, 2)
    qc.cz(2, 1)
    qc.cz(1, 2)
    qc.rz(1.1, 0)
    qc.reset(1)
    qc.h(1)
    qc.cx(1, 2)
    qc.x(0)
    return qc


def test_every_error_kind_matches_aer_density_matrix() -> None:
    anm = every_error_model()
    qc = every_gate_circuit()
    got = qsem_rho(NoiseModel.from_qiskit(anm).apply(qc))
    assert np.abs(got - aer_dm(qc, anm)).max() < ATOL_NOISE_AER


def test_every_error_kind_recorded_probabilities_match_aer() -> None:
    anm = every_error_model()
    qc = every_gate_circuit()
    qc.measure_all()
    nm = NoiseModel.from_qiskit(anm)
    state = simulate(nm.apply(qc), mode="density_matrix", dtype=torch.complex128)
    got = probs(state, readout=nm).numpy()
    ref = recorded_reference(qc, anm)
    assert np.abs(got - ref).max() < ATOL_NOISE_AER
    # Aer's sampled counts (readout error applied by Aer itself), seed 11, 20000 shots
    assert chi2_pvalue(aer_counts(qc, anm, 20000, seed=11), got) > CHI2_ALPHA


def test_local_error_overrides_all_qubit_error_and_errors_compose_in_order() -> None:
    anm = every_error_model()
    nm = NoiseModel.from_qiskit(anm)
    assert set(nm.local_errors["cx"]) == {(0, 1)}
    assert len(nm.default_errors["h"]) == 1  # Aer composed depolarizing and relaxation
    # cx on (0, 1) carries the local error only; cx on (1, 0) the all-qubit one
    qc = QuantumCircuit(3)
    qc.cx(0, 1)
    ops = nm.apply(qc).ops
    k = ops[1].operators
    asym = NoiseModel.from_qiskit(_single("cx", [0, 1], anm)).apply(qc).ops[1].operators
    assert torch.equal(k, asym)
    qc2 = QuantumCircuit(3)
    qc2.cx(1, 0)
    dep = nm.apply(qc2).ops[1].operators
    assert not torch.equal(dep, k)


def _single(name: str, qubits: list[int], anm: AerNoiseModel) -> AerNoiseModel:
    out = AerNoiseModel()
    out.add_quantum_error(anm._local_quantum_errors[name][tuple(qubits)], [name], qubits)
    return out


# ---------------------------------------------------------------------------------------------
# device snapshots
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manila() -> tuple[object, AerNoiseModel, NoiseModel]:
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    backend = FakeManilaV2()
    return backend, AerNoiseModel.from_backend(backend), NoiseModel.from_backend(backend)


@pytest.mark.parametrize("seed", [3, 4])
def test_fake_backend_transpiled_circuit_matches_aer(manila, seed: int) -> None:
    backend, anm, nm = manila
    qc = transpile(random_circuit(4, 4, seed=seed), backend, seed_transpiler=seed)
    rho = qsem_rho(nm.apply(qc))
    assert np.abs(rho - aer_dm(qc, anm)).max() < ATOL_NOISE_AER
    # Aer on the model as given: its < 1e-10 truncation of mixture terms shows
    assert np.abs(rho - aer_dm(qc, anm, exact=False)).max() < ATOL_AER_TRUNCATION
    qc.measure_all()
    state = simulate(nm.apply(qc), mode="density_matrix", dtype=torch.complex128)
    got = probs(state, readout=nm).numpy()
    assert np.abs(got - recorded_reference(qc, anm)).max() < ATOL_NOISE_AER
    # 20000 shots, Aer seed = test seed
    assert chi2_pvalue(aer_counts(qc, anm, 20000, seed=seed), got) > CHI2_ALPHA


def test_qsem_circuit_and_qiskit_circuit_get_the_same_noise(manila) -> None:
    """A qsem circuit's gates find string-keyed (Qiskit-name) errors: CNOT is 'cx'."""
    _, anm, nm = manila
    c = Circuit.qubits(5).add(RZ(0.4, wires=4), CNOT(wires=[4, 3]), RZ(1.2, wires=3))
    qc = QuantumCircuit(5)
    qc.rz(0.4, 0)
    qc.cx(0, 1)
    qc.rz(1.2, 1)
    a = qsem_rho(nm.apply(c, measured=False))
    assert np.abs(a - qsem_rho(nm.apply(qc))).max() < ATOL_F64
    assert np.abs(a - aer_dm(qc, anm)).max() < ATOL_NOISE_AER
    # the cx error only: rz is ideal, and the snapshot's "measure" entries are readout errors
    assert [op.name for op in nm.apply(c).ops].count("Kraus") == 1
    assert "measure" not in nm.local_errors and len(nm.readout_errors(c.dims)) == 5


def test_round_trip_to_qiskit(manila) -> None:
    backend, anm, nm = manila
    back = nm.to_qiskit()
    qc = transpile(random_circuit(3, 3, seed=9), backend, seed_transpiler=9)
    qc.measure_all()
    assert np.abs(aer_dm(qc, back, exact=False) - aer_dm(qc, anm)).max() < ATOL_NOISE_AER
    assert np.abs(recorded_reference(qc, back) - recorded_reference(qc, anm)).max() < 1e-12
    again = NoiseModel.from_qiskit(back)
    s1 = simulate(again.apply(qc), mode="density_matrix", dtype=torch.complex128)
    s2 = simulate(nm.apply(qc), mode="density_matrix", dtype=torch.complex128)
    assert torch.allclose(probs(s1, readout=again), probs(s2, readout=nm), atol=ATOL_F64)


def test_every_error_model_round_trips() -> None:
    anm = every_error_model()
    back = NoiseModel.from_qiskit(anm).to_qiskit()
    qc = every_gate_circuit()
    assert np.abs(aer_dm(qc, back, exact=False) - aer_dm(qc, anm)).max() < ATOL_NOISE_AER
    qc.measure_all()
    assert np.abs(recorded_reference(qc, back) - recorded_reference(qc, anm)).max() < 1e-12


def test_delay_relaxation_is_refused_in_one_line(manila) -> None:
    _, _, nm = manila
    qc = QuantumCircuit(5)
    qc.x(0)
    qc.delay(100, 0, unit="dt")
    with pytest.raises(QsemValueError, match=r"instruction 1 \('delay'\).*not converted") as e:
        nm.apply(qc)
    assert "\n" not in str(e.value)


def test_mid_circuit_measurement_is_refused(manila) -> None:
    _, _, nm = manila
    qc = QuantumCircuit(5, 5)
    qc.measure(0, 0)
    qc.x(0)
    with pytest.raises(QsemValueError, match=r"instruction 1 \('x'\).*terminal"):
        nm.apply(qc)


def test_bad_input_is_refused() -> None:
    with pytest.raises(QsemTypeError, match="argument 'noise_model'"):
        NoiseModel.from_qiskit("not a model")
    bad = AerNoiseModel()
    bad.add_all_qubit_quantum_error(PauliError(["XI", "ZY"], [0.1, 0.05]), ["cz"])
    with pytest.raises(QsemValueError, match=r"cannot convert the all-qubit error on 'cz'.*trace"):
        NoiseModel.from_qiskit(bad)
    with pytest.raises(QsemTypeError, match="argument 'backend'"):
        NoiseModel.from_backend(object())
    with pytest.raises(QsemValueError, match=r"argument 'matrix'.*sum to 1"):
        QReadout([[0.9, 0.2], [0.1, 0.9]], wires=0)
    with pytest.raises(QsemTypeError, match="argument 'gates'"):
        NoiseModel().add_error(Depolarizing(0.1, wires=0), 3)
    with pytest.raises(QsemValueError, match=r"argument 'channel'.*local wire 1"):
        NoiseModel().add_error(BitFlip(0.1, wires=1), RX, wires=[0])
    with pytest.raises(QsemTypeError, match="argument 'readout'"):
        probs(simulate(Circuit.qubits(1)), readout="bad")
    with pytest.raises(QsemError, match=r"argument 'readout'.*not diagonal"):
        expval(simulate(Circuit.qubits(1)), PauliString("X", wires=[0]), readout=_ro(0))


# ---------------------------------------------------------------------------------------------
# hand-built models, readout, gradients
# ---------------------------------------------------------------------------------------------
def _ro(w: int, a: float = 0.1, b: float = 0.3) -> QReadout:
    return QReadout([[1 - a, a], [b, 1 - b]], wires=w)


def test_hand_built_model_places_channels_after_matching_gates() -> None:
    nm = NoiseModel()
    nm.add_error(Depolarizing(0.2, wires=0), H)
    nm.add_error(BitFlip(0.3, wires=1), CNOT)  # on the target (local wire 1)
    nm.add_error(AmplitudeDamping(0.5, wires=0), CNOT, wires=[1, 0])  # local: replaces it
    nm.add_error(AmplitudeDamping(0.25, wires=0), "measure")
    c = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]), CNOT(wires=[1, 0]))
    names = [(op.name, op.wires) for op in nm.apply(c).ops]
    assert names == [
        ("H", (0,)), ("Depolarizing", (0,)), ("CNOT", (0, 1)), ("BitFlip", (1,)),
        ("CNOT", (1, 0)), ("AmplitudeDamping", (1,)),
        ("AmplitudeDamping", (0,)), ("AmplitudeDamping", (1,)),
    ]  # fmt: skip
    assert [op.name for op in nm.apply(c, measured=[1]).ops][-1:] == ["AmplitudeDamping"]
    assert len(nm.apply(c, measured=False).ops) == 6


def test_hand_built_depolarizing_against_closed_form() -> None:
    p = 0.3
    nm = NoiseModel().add_error(Depolarizing(p, wires=0), H)
    rho = qsem_rho(nm.apply(Circuit.qubits(1).add(H(wires=0))))
    plus = np.full((2, 2), 0.5)
    assert np.abs(rho - ((1 - p) * plus + p * np.eye(2) / 2)).max() < ATOL_F64


def test_readout_against_hand_written_confusion() -> None:
    """Per-wire and correlated confusions, qsem's big-endian order, marginals and samples."""
    c = Circuit.qubits(3).add(RY(0.8, wires=0), RY(1.9, wires=1), CNOT(wires=[1, 2]))
    state = simulate(c, dtype=torch.complex128)
    p = probs(state).numpy()
    m0 = _ro(0).matrix.numpy()
    corr = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.0, 0.9, 0.0, 0.1], [0.2, 0.0, 0.8, 0.0], [0.0, 0.0, 0.3, 0.7]]
    )
    errs = [_ro(0), QReadout(corr, wires=[2, 1])]
    ref = p.reshape(2, 2, 2)
    ref = np.einsum("abc,ax->xbc", ref, m0)
    ref = np.einsum("abc,cbyz->azy", ref, corr.reshape(2, 2, 2, 2))  # rows (w2, w1)
    got = probs(state, readout=errs).numpy()
    assert np.abs(got - ref.reshape(-1)).max() < ATOL_F64
    assert np.abs(probs(state, [1], readout=errs).numpy() - ref.sum((0, 2))).max() < ATOL_F64
    z = expval(state, PauliString("Z", wires=[0]), readout=errs)
    assert abs(float(z) - (ref[0].sum() - ref[1].sum())) < ATOL_F64
    shots = sample(state, 20000, readout=errs, seed=5)  # seed 5
    idx = (shots * torch.tensor([4, 2, 1])).sum(-1)
    counts = np.bincount(idx.numpy(), minlength=8)
    assert chi2_pvalue(counts, ref.reshape(-1)) > CHI2_ALPHA


def test_gradient_through_noisy_circuit_and_readout(manila) -> None:
    """Autograd through Kraus channels and the confusion against central differences."""
    _, _, nm = manila
    theta = QParameter("t")
    qc = QuantumCircuit(5)
    qc.sx(0)
    qc.rz(theta, 0)
    qc.sx(0)
    qc.cx(0, 1)
    qc.measure_all()
    circuit = nm.apply(qc)

    def f(t: torch.Tensor) -> torch.Tensor:
        st = simulate(circuit, {"t": t}, mode="density_matrix", dtype=torch.complex128)
        return probs(st, [4, 3], readout=nm)

    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (jac,) = torch.autograd.functional.jacobian(f, (t,))
    fd = (f(t.detach() + FD_STEP) - f(t.detach() - FD_STEP)) / (2 * FD_STEP)
    assert torch.allclose(jac, fd, atol=FD_ATOL)
    assert float(jac.abs().max()) > 1e-2


def test_correlated_readout_from_qiskit_keeps_qiskit_bit_order() -> None:
    """A 2-qubit Aer ReadoutError on qubits (0, 2): rows little-endian (qubit 0 lowest).

    qsem applies it whenever both wires are measured (Aer only on a two-qubit measure
    instruction, which Qiskit circuits never hold); reference: NumPy in Qiskit's order.
    """
    corr = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.0, 0.9, 0.0, 0.1], [0.2, 0.0, 0.8, 0.0], [0.0, 0.0, 0.3, 0.7]]
    )
    anm = AerNoiseModel()
    anm.add_readout_error(ReadoutError(corr), [0, 2])
    nm = NoiseModel.from_qiskit(anm)
    qc = QuantumCircuit(3)
    qc.ry(0.8, 0)
    qc.ry(1.9, 2)
    qc.cx(2, 1)
    p = np.real(np.diag(DensityMatrix(qc).data)).reshape(2, 2, 2)  # axes: qubits 2, 1, 0
    # Qiskit's index over (q0, q2) is b0 + 2 b2: a (b2, b0) matrix reshaped (2, 2, 2, 2)
    ref = np.einsum("cbd,cdxy->xby", p, corr.reshape(2, 2, 2, 2))
    got = probs(simulate(nm.apply(qc), dtype=torch.complex128), readout=nm).numpy()
    assert np.abs(got - ref.reshape(-1)).max() < ATOL_F64


# ---------------------------------------------------------------------------------------------
# the study: many random circuits on several device snapshots (slow)
# ---------------------------------------------------------------------------------------------
#: Four snapshots: 5-qubit line (cx, rz, sx, x), 7-qubit H (cx, rz, sx, x), 5-qubit T with
#: the u1/u2/u3 basis, and 5 qubits with fractional rx/rzz gates.
SNAPSHOTS = ("FakeManilaV2", "FakeLagosV2", "FakeBurlingtonV2", "FakeFractionalBackend")


@pytest.mark.slow
@pytest.mark.parametrize("name", SNAPSHOTS)
def test_random_transpiled_circuits_match_aer(name: str) -> None:
    """15 random circuits per snapshot (seeds 100..114, 60 in all): density matrices and
    recorded probabilities to 1e-10 against Aer; every third also sampled (20000 shots,
    Aer seed = circuit seed) and chi-square tested."""
    import qiskit_ibm_runtime.fake_provider as fake

    backend = getattr(fake, name)()
    anm = AerNoiseModel.from_backend(backend)
    nm = NoiseModel.from_backend(backend)
    worst = 0.0
    for seed in range(100, 115):
        rng = np.random.default_rng(seed)
        width = int(rng.integers(2, 6))
        qc = random_circuit(width, int(rng.integers(2, 6)), max_operands=2, seed=seed)
        tq = transpile(qc, backend, seed_transpiler=seed, optimization_level=1)
        rho = qsem_rho(nm.apply(tq))
        worst = max(worst, float(np.abs(rho - aer_dm(tq, anm)).max()))
        tq.measure_all()
        state = simulate(nm.apply(tq), mode="density_matrix", dtype=torch.complex128)
        got = probs(state, readout=nm).numpy()
        worst = max(worst, float(np.abs(got - recorded_reference(tq, anm)).max()))
        if seed % 3 == 0:
            assert chi2_pvalue(aer_counts(tq, anm, 20000, seed=seed), got) > CHI2_ALPHA, seed
    assert worst < ATOL_NOISE_AER, worst


# ---------------------------------------------------------------------------------------------
# QuantumLayer with readout, and the noisy-training experiment
# ---------------------------------------------------------------------------------------------
def test_quantum_layer_readout_equals_confused_probabilities() -> None:
    from qsem.circuits import ParameterVector
    from qsem.simulators import QuantumLayer

    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    c = Circuit.qubits(2).add(RY(x[0], wires=0), RY(x[1], wires=1), CNOT(wires=[0, 1]))
    c.add(RY(w[0], wires=0), RY(w[1], wires=1))
    nm = NoiseModel().add_readout_error([[0.9, 0.1], [0.3, 0.7]])
    layer = QuantumLayer(c, probs_wires=[1], weight_shapes={"w": 2}, readout=nm, seed=3)
    plain = QuantumLayer(c, probs_wires=[1], weight_shapes={"w": 2}, seed=3)
    xs = torch.rand(4, 2, dtype=torch.float64)
    m = nm.default_readout.matrix
    assert torch.allclose(layer(xs), plain(xs) @ m, atol=ATOL_F64)
    with pytest.raises(QsemValueError, match="argument 'readout'"):
        QuantumLayer(c, [PauliString("Z", wires=[0])], weight_shapes={"w": 2}, readout=nm)


def test_noisy_training_smoke(tmp_path) -> None:
    import json

    from qsem.experiments import noisy_training as nt
    from qsem.runner import run_experiment

    tiny = ["n_seeds=2", "qubits=2", "layers=1", "n_train=16", "n_test=16", "epochs=2",
            "shots=256"]  # fmt: skip
    run_experiment(nt.EXPERIMENT, overrides=tiny, out=tmp_path / "run", quiet=True)
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["seeds"] == [0, 1] and res["noisy_circuit_channels"] > 0
    for r in res["per_seed"]:
        for m in nt.MODELS:
            assert 0.0 <= r[m]["aer_accuracy"] <= 1.0
    assert set(res["tests_noise_aware_minus_noiseless"]) == {"aer_accuracy", "aer_nll"}
    assert "| seed |" in (tmp_path / "run" / "noisy_training.md").read_text()


def test_unconvertible_instruction_is_named_in_one_line() -> None:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.initialize([0, 1], 1)
    with pytest.raises(
        QsemValueError, match=r"^argument 'circuit': instruction 1 \('initialize'\) is not"
    ):
        NoiseModel().apply(qc)
