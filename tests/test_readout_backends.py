"""``readout=`` on the backends (``probs``, ``expval``, ``counts``) and the Qiskit primitives.

References are independent of :mod:`qsem.simulators.readout`: exact recorded
probabilities are Aer's noisy density matrix (``density_matrix`` method, same Aer
``NoiseModel``; Aer applies readout errors to sampled counts only) with the confusion
matrices applied by NumPy, axis by axis in Qiskit's little-endian order, or a
``numpy.kron`` of hand-written matrices. Counts are checked in distribution by a
chi-square test at level ``CHI2_ALPHA``: against the exact recorded probabilities
(goodness of fit) and against Aer's own sampled counts with the readout errors in its
noise model (two-sample contingency test); seeds are stated in each test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")
pytest.importorskip("pennylane")

from conftest import ATOL_F64, ATOL_NOISE_AER, CHI2_ALPHA
from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel as AerNoiseModel
from qiskit_aer.noise import ReadoutError, amplitude_damping_error, depolarizing_error
from scipy.stats import chi2_contingency, chisquare

from qsem.circuits import RY, Circuit, GellMann, NoiseModel, PauliString, QsemError, X
from qsem.circuits import ReadoutError as QReadout
from qsem.simulators import (
    AerBackend,
    Backend,
    EstimatorV2,
    PennyLaneBackend,
    SamplerV2,
    TorchBackend,
)
from qsem.simulators.readout import confuse_counts, pauli_readout_matrix

#: readout matrices of qubits 0, 1, 2 (rows: true state, columns: record), asymmetric
CONFUSIONS = [
    np.array([[0.97, 0.03], [0.08, 0.92]]),
    np.array([[0.9, 0.1], [0.25, 0.75]]),
    np.array([[0.99, 0.01], [0.04, 0.96]]),
]


def aer_model() -> AerNoiseModel:
    anm = AerNoiseModel()
    anm.add_all_qubit_quantum_error(depolarizing_error(0.06, 2), ["cx"])
    anm.add_all_qubit_quantum_error(amplitude_damping_error(0.12), ["sx"])
    for q, m in enumerate(CONFUSIONS):
        anm.add_readout_error(ReadoutError(m), [q])
    return anm


def base_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.sx(1)
    qc.cx(0, 1)
    qc.ry(0.8, 2)
    qc.cx(1, 2)
    qc.sx(0)
    return qc


def aer_exact_probs(qc: QuantumCircuit, anm: AerNoiseModel) -> np.ndarray:
    """Aer's noisy probabilities (no readout), little-endian index = qsem's index."""
    qc = qc.copy()
    qc.save_density_matrix()
    rho = AerSimulator(method="density_matrix", noise_model=anm).run(qc).result()
    return np.real(np.diag(np.asarray(rho.data()["density_matrix"])))


def recorded(p: np.ndarray, n: int) -> np.ndarray:
    """``p`` (little-endian over n qubits) through CONFUSIONS, qubit by qubit (NumPy)."""
    t = p.reshape([2] * n)  # axis k <-> qubit n-1-k
    for q in range(n):
        t = np.moveaxis(np.tensordot(t, CONFUSIONS[q], axes=([n - 1 - q], [0])), -1, n - 1 - q)
    return t.reshape(-1)


def marginal(p: np.ndarray, n: int, wires: list[int]) -> np.ndarray:
    """Marginal of a full-register distribution on qsem ``wires`` (in that order)."""
    t = p.reshape([2] * n)
    t = t.sum(axis=tuple(a for a in range(n) if a not in wires))
    kept = sorted(wires)
    return np.transpose(t, [kept.index(w) for w in wires]).reshape(-1)


BACKENDS = {
    "torch": TorchBackend,
    "aer": lambda: AerBackend(method="density_matrix"),
    "pennylane": PennyLaneBackend,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]()


def noisy_job() -> tuple[Circuit, NoiseModel, np.ndarray]:
    """The noisy qsem circuit, the converted model and the recorded reference (full)."""
    anm = aer_model()
    qc = base_circuit()
    nm = NoiseModel.from_qiskit(anm)
    return nm.apply(qc, measured=True), nm, recorded(aer_exact_probs(qc, anm), 3)


NO_VALUES = torch.zeros(2, 0, dtype=torch.float64)


@pytest.mark.parametrize("wires", [[0, 1, 2], [2, 0], [1]])
def test_backend_probs_with_readout_match_aer(backend: Backend, wires: list[int]) -> None:
    circuit, nm, ref = noisy_job()
    got = backend.probs(circuit, NO_VALUES, [], wires, readout=nm).numpy()
    assert got.shape == (2, 1 << len(wires))
    assert np.abs(got - marginal(ref, 3, wires)).max() < ATOL_NOISE_AER
    ideal = backend.probs(circuit, NO_VALUES, [], wires).numpy()
    assert np.abs(ideal - got).max() > 1e-3  # the confusion is not a no-op here


def test_backend_probs_hand_computed_correlated_confusion(backend: Backend) -> None:
    # RY(θ) on wire 0, X on wire 1: |ψ> = cos(θ/2)|01> + sin(θ/2)|11>; a correlated
    # 4×4 confusion on wires [0, 1] plus a 2×2 one on wire 2 (hand-written kron)
    theta = 1.2
    c = Circuit.qubits(3).add(RY(theta, wires=0), X(wires=1))
    m01 = np.array(
        [
            [0.91, 0.03, 0.04, 0.02],
            [0.05, 0.85, 0.0, 0.10],
            [0.02, 0.03, 0.9, 0.05],
            [0.0, 0.06, 0.04, 0.9],
        ]
    )
    m2 = np.array([[0.8, 0.2], [0.3, 0.7]])
    ro = [QReadout(m01, wires=[0, 1]), QReadout(m2, wires=2)]
    p = np.zeros(8)
    p[0b010], p[0b110] = np.cos(theta / 2) ** 2, np.sin(theta / 2) ** 2
    ref = p @ np.kron(m01, m2)
    got = backend.probs(c, torch.zeros(1, 0), [], [0, 1, 2], readout=ro).numpy()
    assert np.abs(got[0] - ref).max() < ATOL_F64
    # Z on wire 2 and Z⊗Z on wires 0, 1 read from the recorded distribution
    obs = [PauliString("Z", wires=[2]), PauliString("ZZ", wires=[0, 1])]
    ev = backend.expval(c, torch.zeros(1, 0), [], obs, readout=ro).numpy()
    z = np.array([1, -1])
    table = np.stack([np.tile(z, 4), np.kron(np.kron(z, z), [1, 1])], -1)
    assert np.abs(ev[0] - ref @ table).max() < ATOL_F64


def test_backend_expval_with_readout_matches_aer(backend: Backend) -> None:
    circuit, nm, ref = noisy_job()
    obs = [PauliString("Z", wires=[1]), PauliString("ZZ", wires=[2, 0], coeff=0.5)]
    got = backend.expval(circuit, NO_VALUES, [], obs, readout=nm).numpy()
    z = np.array([1.0, -1.0])
    table = np.stack(
        [np.kron(np.kron([1, 1], z), [1, 1]), 0.5 * np.kron(np.kron(z, [1, 1]), z)], -1
    )
    assert np.abs(got - ref @ table).max() < ATOL_NOISE_AER


def test_backend_readout_refusals(backend: Backend) -> None:
    circuit, nm, _ = noisy_job()
    with pytest.raises(QsemError, match=r"argument 'readout'.*not diagonal"):
        backend.expval(circuit, NO_VALUES, [], PauliString("X", wires=[0]), readout=nm)
    with pytest.raises(QsemError, match=r"argument 'readout'.*expected a NoiseModel"):
        backend.probs(circuit, NO_VALUES, [], [0], readout=np.eye(2))
    spanning = QReadout(np.eye(4), wires=[0, 1])
    with pytest.raises(QsemError, match=r"argument 'readout'.*unmeasured"):
        backend.probs(circuit, NO_VALUES, [], [0], readout=[spanning])


def test_backend_counts_with_readout_in_distribution(backend: Backend) -> None:
    circuit, nm, ref = noisy_job()
    shots = 20000
    # seed 5: chi-square goodness of fit against the exact recorded probabilities
    got = backend.counts(circuit, NO_VALUES, [], [0, 1, 2], shots=shots, seed=5, readout=nm)
    assert got.dtype == torch.int64 and got.shape == (2, 8)
    assert (got.sum(-1) == shots).all()
    for row in got.numpy():
        assert chisquare(row, ref * shots).pvalue > CHI2_ALPHA
    # seed 5 again repeats the counts
    again = backend.counts(circuit, NO_VALUES, [], [0, 1, 2], shots=shots, seed=5, readout=nm)
    assert torch.equal(got, again)


def test_backend_counts_agree_with_aer_readout_counts() -> None:
    # qsem (torch) counts, seed 3, against Aer's own sampled counts with the readout
    # errors in its noise model, seed 4: chi-square test of homogeneity
    anm = aer_model()
    qc = base_circuit()
    circuit = NoiseModel.from_qiskit(anm).apply(qc)
    shots = 20000
    ours = (
        TorchBackend()
        .counts(
            circuit,
            torch.zeros(1, 0),
            [],
            [0, 1, 2],
            shots=shots,
            seed=3,
            readout=NoiseModel.from_qiskit(anm),
        )[0]
        .numpy()
    )
    meas = qc.copy()
    meas.measure_all()
    res = AerSimulator(noise_model=anm, seed_simulator=4).run(meas, shots=shots).result()
    theirs = np.zeros(8)
    for key, c in res.get_counts().items():
        theirs[int(key, 2)] += c
    keep = (ours + theirs) > 0
    assert chi2_contingency(np.stack([ours[keep], theirs[keep]])).pvalue > CHI2_ALPHA


def test_shot_probs_with_readout_on_aer_backend_qutrit_confusion() -> None:
    # a qutrit wire on Aer (qubit encoding): the 3×3 confusion acts on valid levels
    from qsem.circuits import TShift

    c = Circuit.qutrits(1).add(TShift(wires=0))  # |1>
    m = np.array([[0.9, 0.07, 0.03], [0.1, 0.8, 0.1], [0.02, 0.18, 0.8]])
    ro = QReadout(m, wires=0)
    exact = AerBackend().probs(c, torch.zeros(1, 0), [], [0], readout=ro).numpy()[0]
    assert np.abs(exact - m[1]).max() < ATOL_F64
    got = AerBackend().counts(c, torch.zeros(1, 0), [], [0], shots=10000, seed=2, readout=ro)
    assert chisquare(got[0].numpy(), m[1] * 10000).pvalue > CHI2_ALPHA  # seed 2


def test_confuse_counts_hand_computed_and_seeded() -> None:
    # every shot of |1> on a 2×2 confusion: recorded 0 is Binomial(n, M[1, 0])
    m = np.array([[0.7, 0.3], [0.4, 0.6]])
    counts = np.array([[0, 100000]])
    out = confuse_counts(counts, (2,), [QReadout(m, wires=0)], np.random.default_rng(9))
    assert out.sum() == 100000
    assert abs(out[0, 0] / 1e5 - 0.4) < 4 * np.sqrt(0.24 / 1e5)
    # an identity confusion leaves counts as they are; a permutation permutes them
    counts = np.array([[3, 5, 7, 11]])
    same = confuse_counts(counts, (2, 2), [QReadout(np.eye(2), wires=1)], np.random.default_rng(0))
    assert np.array_equal(same, counts)
    swap = QReadout(np.array([[0.0, 1.0], [1.0, 0.0]]), wires=0)
    assert np.array_equal(
        confuse_counts(counts, (2, 2), [swap], np.random.default_rng(0)), [[7, 11, 3, 5]]
    )


def test_expval_with_readout_on_qutrit_gell_mann() -> None:
    from qsem.circuits import TShift

    c = Circuit.qutrits(1).add(TShift(wires=0))
    m = np.array([[0.9, 0.07, 0.03], [0.1, 0.8, 0.1], [0.02, 0.18, 0.8]])
    got = TorchBackend().expval(
        c, torch.zeros(1, 0), [], GellMann(3, wires=0), readout=QReadout(m, wires=0)
    )
    assert abs(float(got[0, 0]) - (m[1] @ [1.0, -1.0, 0.0])) < ATOL_F64


# ---------------------------------------------------------------------------------------------
# the Qiskit primitives
# ---------------------------------------------------------------------------------------------
def test_sampler_with_readout_matches_aer_counts() -> None:
    anm = aer_model()
    qc = base_circuit()  # no quantum errors in the sampler: readout only
    ideal = AerNoiseModel()
    for q, m in enumerate(CONFUSIONS):
        ideal.add_readout_error(ReadoutError(m), [q])
    meas = qc.copy()
    meas.measure_all()
    shots = 20000
    res = SamplerV2(seed=6, readout=NoiseModel.from_qiskit(anm)).run([meas], shots=shots).result()
    ours = np.zeros(8)
    for key, c in res[0].data.meas.get_counts().items():
        ours[int(key, 2)] += c
    ref = recorded(np.abs(Statevector(qc).data) ** 2, 3)
    assert chisquare(ours, ref * shots).pvalue > CHI2_ALPHA  # seed 6
    aer = AerSimulator(noise_model=ideal, seed_simulator=8).run(meas, shots=shots).result()
    theirs = np.zeros(8)
    for key, c in aer.get_counts().items():
        theirs[int(key, 2)] += c
    assert chi2_contingency(np.stack([ours, theirs])).pvalue > CHI2_ALPHA  # seeds 6, 8


def test_sampler_marginal_register_with_readout() -> None:
    # only qubit 2 measured: its recorded marginal is that of CONFUSIONS[2]
    qc = QuantumCircuit(3, 1)
    qc.x(2)
    qc.measure(2, 0)
    nm = NoiseModel.from_qiskit(aer_model())
    res = SamplerV2(seed=1, readout=nm).run([qc], shots=40000).result()
    counts = res[0].data.c.get_counts()
    assert (
        chisquare([counts.get("0", 0), counts.get("1", 0)], CONFUSIONS[2][1] * 40000).pvalue
        > CHI2_ALPHA
    )


@pytest.mark.parametrize("labels", [["ZII", "IZZ", "XYZ", "IXI", "YIY"], ["III", "ZZZ"]])
def test_estimator_with_readout_matches_rotated_measurement_reference(labels: list[str]) -> None:
    from qiskit.quantum_info import SparsePauliOp

    qc = base_circuit()
    nm = NoiseModel.from_qiskit(aer_model())
    got = EstimatorV2(readout=nm).run([(qc, SparsePauliOp(labels))]).result()[0].data.evs
    # reference: rotate every qubit of the support into Z, recorded probabilities through
    # CONFUSIONS (NumPy), parity of the recorded bits on the support
    ref = 0.0
    for label in labels:
        rot = qc.copy()
        for q in range(3):
            ch = label[2 - q]
            if ch == "X":
                rot.h(q)
            elif ch == "Y":
                rot.sdg(q)
                rot.h(q)
        p = recorded(np.abs(Statevector(rot).data) ** 2, 3)
        idx = np.arange(8)
        mask = sum(1 << q for q in range(3) if label[2 - q] != "I")
        parity = np.array([bin(i & mask).count("1") % 2 for i in idx])
        ref += float(p @ (1 - 2 * parity))
    assert abs(float(got) - ref) < ATOL_F64
    ideal = EstimatorV2().run([(qc, SparsePauliOp(labels))]).result()[0].data.evs
    assert abs(float(ideal) - ref) > 1e-3  # readout changes the value


def test_pauli_readout_matrix_hand_computed() -> None:
    m = np.array([[0.9, 0.1], [0.3, 0.7]])  # a = 0.2, c = 0.6 on wire 0 (qubit 1 of 2)
    needed, t = pauli_readout_matrix(["XZ", "IZ"], [QReadout(m, wires=0)])
    assert needed == ["XZ", "IZ"]
    assert np.allclose(t, [[0.6, 0.2], [0.0, 1.0]])
    with pytest.raises(QsemError, match=r"argument 'readout'.*one 2x2 confusion per qubit"):
        pauli_readout_matrix(["ZZ"], [QReadout(np.eye(4), wires=[0, 1])])


def test_primitives_refuse_bad_readout() -> None:
    with pytest.raises(QsemError, match=r"argument 'readout'"):
        EstimatorV2(readout="noisy")
    with pytest.raises(QsemError, match=r"argument 'readout'"):
        SamplerV2(readout=np.eye(2))


def test_noisy_training_circuits_without_idle_wires_record_the_same_probabilities() -> None:
    # the experiment simulates the used qubits only; the full 5-qubit noisy circuit with
    # the model's readout (itself checked against Aer in test_noise_model.py) is the reference
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    from qsem.experiments.noisy_training import device_circuits, measured_copy

    dev = device_circuits(FakeManilaV2(), 2, 1)
    assert dev["noisy"].num_wires == 2 and dev["qiskit"].num_qubits == 5
    full = dev["noise"].apply(measured_copy(dev["qiskit"], dev["qubit"]))
    rows = torch.tensor(np.random.default_rng(0).uniform(-3, 3, (4, 6)))
    full_wire = dev["full_wire"]
    assert full_wire == full.num_wires - 1 - dev["qubit"]
    ref = TorchBackend().probs(full, rows, ["x", "w"], [full_wire], readout=dev["noise"])
    got = TorchBackend().probs(
        dev["noisy"], rows, ["x", "w"], [dev["wire"]], readout=dev["readout"]
    )
    assert torch.allclose(got, ref, atol=ATOL_F64, rtol=0)
    clean = TorchBackend().probs(dev["clean"], rows, ["x", "w"], [dev["wire"]])
    assert (got - clean).abs().max() > 1e-3  # noise and readout act
