"""The PennyLane backend against the torch engine and closed forms.

Random qubit circuits on ``default.qubit``, ``lightning.qubit`` and
``default.mixed`` (with every qubit channel there), random qutrit circuits on
``default.qutrit`` and ``default.qutrit.mixed`` (with every qutrit channel on
the mixed one), all with symbolic parameters broadcast over the rows of
``values``: exact values agree with ``TorchBackend`` (complex128) to
``ATOL_BACKENDS``; shot estimates lie within ``SHOT_SIGMAS`` standard errors and
are reproducible by seed. Conventions that differ between the libraries
(``THadamard`` phase once controlled, depolarizing parameters) are pinned by
closed forms. Bad input fails with a message naming the argument.
"""

from __future__ import annotations

import math
import sys

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
    TSWAP,
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
    Kraus,
    MissingDependencyError,
    Parameter,
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
from qsem.circuits.gates import Adjoint, Toffoli
from qsem.simulators.backend import TorchBackend

pytest.importorskip("pennylane")
from qsem.simulators.pennylane_backend import DEVICES, PennyLaneBackend

QUBIT_DEVICES = ["default.qubit", "lightning.qubit", "default.mixed"]
QUTRIT_DEVICES = ["default.qutrit", "default.qutrit.mixed"]
NAMES = ["a", "b", "c"]


def haar(n: int, rng: np.random.Generator) -> np.ndarray:
    z = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_kraus(d: int, rank: int, rng: np.random.Generator) -> np.ndarray:
    return haar(d * rank, rng)[:, :d].reshape(rank, d, d)


def _angle(rng: np.random.Generator) -> object:
    if rng.random() < 0.8:
        name = NAMES[int(rng.integers(len(NAMES)))]
        scale = float(rng.choice([1.0, -0.5, 2.0]))
        return Parameter(name) * scale if scale != 1.0 else Parameter(name)
    return float(rng.uniform(-math.pi, math.pi))


def qubit_gate(n: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    w = [int(x) for x in rng.permutation(n)]
    kind = int(rng.integers(7))
    if kind == 0:
        cls = [RX, RY, RZ, PhaseShift][int(rng.integers(4))]
        return cls(_angle(rng), wires=w[0])
    if kind == 1:
        return U3(_angle(rng), _angle(rng), _angle(rng), wires=w[0])
    if kind == 2:
        g = [X, Y, Z, H, S, T, TShift, TClock, THadamard][int(rng.integers(9))](wires=w[0])
        return Adjoint(g) if rng.random() < 0.3 else g
    if kind == 3:
        return [CNOT, CZ, SWAP, TAdd][int(rng.integers(4))](wires=w[:2])
    if kind == 4:
        g = [CRX, CRY, CRZ][int(rng.integers(3))](_angle(rng), wires=w[:2])
        return Adjoint(g) if rng.random() < 0.3 else g
    if kind == 5:
        base = [RY(_angle(rng), wires=w[1]), U3(_angle(rng), 0.3, _angle(rng), wires=w[1])][
            int(rng.integers(2))
        ]
        return Controlled(base, [w[0]], [int(rng.integers(2))])
    if n >= 3 and rng.random() < 0.5:
        return [Toffoli, CSWAP][int(rng.integers(2))](wires=w[:3])
    return Unitary(haar(4, rng), wires=w[:2])


def qutrit_gate(n: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    w = [int(x) for x in rng.permutation(n)]
    kind = int(rng.integers(5 if n > 1 else 2))
    sub = tuple(sorted(int(x) for x in rng.choice(3, 2, replace=False)))
    if kind == 0:
        return [TRX, TRY, TRZ][int(rng.integers(3))](_angle(rng), wires=w[0], subspace=sub)
    if kind == 1:
        g = [TShift, TClock, THadamard][int(rng.integers(3))](wires=w[0])
        return Adjoint(g) if rng.random() < 0.3 else g
    if kind == 2:
        return [TAdd, TSWAP][int(rng.integers(2))](wires=w[:2])
    if kind == 3:
        base = [
            TRY(_angle(rng), wires=w[1], subspace=sub),
            TRZ(_angle(rng), wires=w[1], subspace=sub),
            THadamard(wires=w[1]),
            Adjoint(THadamard(wires=w[1])),
            TShift(wires=w[1]),
        ][int(rng.integers(5))]
        return Controlled(base, [w[0]], [int(rng.integers(3))])
    return Unitary(haar(9, rng), wires=w[:2])


def qubit_channel(n: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    w = int(rng.integers(n))
    kind = int(rng.integers(5))
    p = float(rng.uniform(0, 0.5))
    if kind == 4:
        w2 = (w + 1) % n
        return Kraus(random_kraus(4, 3, rng), wires=[w, w2])
    return [Depolarizing, AmplitudeDamping, BitFlip, PhaseDamping][kind](p, wires=w)


def qutrit_channel(n: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    w = int(rng.integers(n))
    kind = int(rng.integers(4))
    if kind == 0:
        return Depolarizing(float(rng.uniform(0, 9 / 8)), wires=w)
    if kind == 1:
        return AmplitudeDamping(float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), wires=w)
    if kind == 2:
        return TritFlip(*[float(x) for x in rng.uniform(0, 0.3, 3)], wires=w)
    return Kraus(random_kraus(3, 2, rng), wires=[w])


def random_circuit(d: int, n: int, seed: int, n_ops: int, channels: bool = False) -> Circuit:
    rng = np.random.default_rng(seed)
    c = Circuit([d] * n)
    for i in range(n):
        c.add(THadamard(wires=i))
    for _ in range(n_ops):
        c.add(qubit_gate(n, rng) if d == 2 else qutrit_gate(n, rng))
        if channels and rng.random() < 0.5:
            c.add(qubit_channel(n, rng) if d == 2 else qutrit_channel(n, rng))
    return c


def random_values(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, len(NAMES), generator=g, dtype=torch.float64) * 2 - 1) * math.pi


def observables(d: int, n: int, seed: int) -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed + 7)
    m = rng.normal(size=(d * d, d * d)) + 1j * rng.normal(size=(d * d, d * d))
    herm = Hermitian((m + m.conj().T) / 2, wires=[n - 1, 0])
    if d == 2:
        return [
            PauliString("XZ", wires=[0, n - 1]),
            PauliString("Y", wires=[1], coeff=-0.5),
            PauliString("ZZ", wires=[0, 1]),
            GellMann(2, wires=0),
            herm,
        ]
    return [GellMann(int(rng.integers(1, 9)), wires=0), GellMann(8, wires=n - 1, coeff=2.0), herm]


def _check_exact(backend: PennyLaneBackend, c: Circuit, vals: torch.Tensor, obs: list) -> None:  # type: ignore[type-arg]
    ref = TorchBackend()
    got = backend.expval(c, vals, NAMES, obs)
    assert got.dtype == torch.float64 and got.shape == (vals.shape[0], len(obs))
    torch.testing.assert_close(got, ref.expval(c, vals, NAMES, obs), atol=ATOL_BACKENDS, rtol=0)
    wires = [c.num_wires - 1, 0]
    got_p = backend.probs(c, vals, NAMES, wires)
    torch.testing.assert_close(got_p, ref.probs(c, vals, NAMES, wires), atol=ATOL_BACKENDS, rtol=0)


# ---------------------------------------------------------------------------------------------
# Exact agreement
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", QUBIT_DEVICES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_qubit_circuits(device: str, seed: int) -> None:
    c = random_circuit(2, 3, seed, n_ops=14)
    _check_exact(PennyLaneBackend(device), c, random_values(4, seed), observables(2, 3, seed))


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_random_noisy_qubit_circuits(seed: int) -> None:
    c = random_circuit(2, 3, seed, n_ops=10, channels=True)
    assert c.has_channels
    _check_exact(
        PennyLaneBackend("default.mixed"), c, random_values(3, seed), observables(2, 3, seed)
    )


@pytest.mark.parametrize("device", QUTRIT_DEVICES)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_qutrit_circuits(device: str, seed: int) -> None:
    c = random_circuit(3, 2, seed, n_ops=8)
    _check_exact(PennyLaneBackend(device), c, random_values(3, seed), observables(3, 2, seed))


@pytest.mark.parametrize("seed", [2, 3])
def test_random_noisy_qutrit_circuits(seed: int) -> None:
    c = random_circuit(3, 2, seed, n_ops=6, channels=True)
    assert c.has_channels
    backend = PennyLaneBackend("default.qutrit.mixed")
    _check_exact(backend, c, random_values(3, seed), observables(3, 2, seed))


def every_qutrit_operation(channels: bool) -> Circuit:
    a, b = Parameter("a"), Parameter("b")
    c = Circuit([3, 3])
    c.add(THadamard(wires=0), THadamard(wires=1), TShift(wires=0), TClock(wires=1))
    for sub in [(0, 1), (0, 2), (1, 2)]:
        c.add(TRX(a, wires=0, subspace=sub), TRY(-0.5 * b, wires=1, subspace=sub))
        c.add(TRZ(2 * a, wires=1, subspace=sub))
    c.add(TAdd(wires=[0, 1]), TSWAP(wires=[1, 0]), Adjoint(THadamard(wires=1)))
    c.add(Controlled(TRY(b, wires=1, subspace=(0, 2)), [0], [2]))
    c.add(Controlled(TShift(wires=0), [1], [0]), Controlled(TClock(wires=0), [1], [1]))
    c.add(Unitary(haar(9, np.random.default_rng(0)), wires=[1, 0]))
    c.add(Adjoint(TRY(a, wires=0, subspace=(1, 2))), THadamard(wires=1))
    if channels:
        c.add(Depolarizing(0.4, wires=0), AmplitudeDamping(0.3, 0.5, wires=1))
        c.add(TritFlip(0.1, 0.2, 0.05, wires=0))
        c.add(Kraus(random_kraus(3, 2, np.random.default_rng(1)), wires=[1]))
    return c


@pytest.mark.parametrize("device", QUTRIT_DEVICES)
def test_every_qutrit_operation(device: str) -> None:
    c = every_qutrit_operation(channels=device.endswith("mixed"))
    _check_exact(PennyLaneBackend(device), c, random_values(3, 8), observables(3, 2, 8))


def test_every_qubit_operation() -> None:
    a, b = Parameter("a"), Parameter("b")
    c = Circuit.qubits(3)
    c.add(RX(a, wires=0), RY(b, wires=1), RZ(-a, wires=2), PhaseShift(2 * b, wires=0))
    c.add(U3(a, b, 0.3, wires=1), X(wires=0), Y(wires=1), Z(wires=2), H(wires=0), S(wires=1))
    c.add(T(wires=2), TShift(wires=0), TClock(wires=1), THadamard(wires=2), Adjoint(S(wires=0)))
    c.add(CNOT(wires=[0, 1]), CZ(wires=[1, 2]), SWAP(wires=[2, 0]), TAdd(wires=[1, 0]))
    c.add(
        CRX(a, wires=[0, 2]), CRY(b, wires=[2, 1]), CRZ(a, wires=[1, 0]), Toffoli(wires=[0, 1, 2])
    )
    c.add(CSWAP(wires=[2, 0, 1]), Controlled(U3(a, 0.1, b, wires=1), [2], [0]))
    c.add(Controlled(RY(b, wires=0), [1, 2], [1, 0]), Adjoint(CRX(b, wires=[1, 2])))
    c.add(Unitary(haar(4, np.random.default_rng(2)), wires=[2, 1]))
    noisy = c.copy().add(Depolarizing(0.3, wires=0), AmplitudeDamping(0.2, wires=1))
    noisy.add(BitFlip(0.1, wires=2), PhaseDamping(0.4, wires=0))
    noisy.add(Kraus(random_kraus(4, 2, np.random.default_rng(3)), wires=[1, 2]))
    for device in QUBIT_DEVICES:
        _check_exact(PennyLaneBackend(device), c, random_values(3, 9), observables(2, 3, 9))
    _check_exact(
        PennyLaneBackend("default.mixed"), noisy, random_values(3, 9), observables(2, 3, 9)
    )


@pytest.mark.parametrize("device", QUTRIT_DEVICES)
def test_controlled_thadamard_phase(device: str) -> None:
    """Once controlled, the -i between PennyLane's THadamard and ours is observable."""
    c = Circuit([3, 3]).add(
        THadamard(wires=0),
        Controlled(THadamard(wires=1), [0], [1]),
        Controlled(Adjoint(THadamard(wires=1)), [0], [2]),
        THadamard(wires=0),
    )
    vals = torch.zeros(1, 0, dtype=torch.float64)
    got = PennyLaneBackend(device).probs(c, vals, [], [0, 1])
    torch.testing.assert_close(
        got, TorchBackend().probs(c, vals, [], [0, 1]), atol=ATOL_F64, rtol=0
    )


@pytest.mark.parametrize(("device", "d"), [("default.mixed", 2), ("default.qutrit.mixed", 3)])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_depolarizing_convention(device: str, d: int, p: float) -> None:
    """qsem's Depolarizing(p) = (1 - p) ρ + p I/d: from |0>, P(0) = 1 - p + p/d."""
    c = Circuit([d]).add(Depolarizing(p, wires=0))
    got = PennyLaneBackend(device).probs(c, torch.zeros(1, 0, dtype=torch.float64), [], [0])
    expected = [1 - p + p / d] + [p / d] * (d - 1)
    np.testing.assert_allclose(got[0].numpy(), expected, atol=ATOL_F64)


def test_qutrit_amplitude_damping_is_a_cascade() -> None:
    """From |2>: one step of AmplitudeDamping(γ1, γ2) gives P(1) = γ2, P(0) = 0."""
    g1, g2 = 0.25, 0.6
    c = Circuit([3]).add(TShift(wires=0), TShift(wires=0), AmplitudeDamping(g1, g2, wires=0))
    got = PennyLaneBackend("default.qutrit.mixed").probs(
        c, torch.zeros(1, 0, dtype=torch.float64), [], [0]
    )
    np.testing.assert_allclose(got[0].numpy(), [0, g2, 1 - g2], atol=ATOL_F64)


class _XYRotation(Gate):
    """A parametrised gate PennyLane has no name for: exp(-iθ(X+Y)/(2√2))."""

    num_params = 1
    wire_dims = (2,)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):  # type: ignore[no-untyped-def]
        th = params[0].to(torch.float64)
        c, s = torch.cos(th / 2), torch.sin(th / 2)
        n = (1 - 1j) / math.sqrt(2)
        m = torch.stack([c + 0j, -1j * s * n, -1j * s * n.conjugate(), c + 0j], -1)
        return m.reshape(*th.shape, 2, 2).to(dtype)


def test_unnamed_gate_uses_broadcast_qsem_matrix() -> None:
    c = Circuit.qubits(2).add(H(wires=0), _XYRotation(Parameter("a"), wires=1), CNOT(wires=[1, 0]))
    vals = random_values(3, 9)[:, :1]
    got = PennyLaneBackend("default.qubit").probs(c, vals, ["a"], [0, 1])
    torch.testing.assert_close(
        got, TorchBackend().probs(c, vals, ["a"], [0, 1]), atol=ATOL_F64, rtol=0
    )


def test_circuit_without_parameters_answers_every_row() -> None:
    c = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]))
    vals = torch.zeros(3, 0, dtype=torch.float64)
    got = PennyLaneBackend("default.qubit").expval(c, vals, [], [PauliString("ZZ", wires=[0, 1])])
    torch.testing.assert_close(got, torch.ones(3, 1, dtype=torch.float64))
    shots = PennyLaneBackend("default.qubit").probs(c, vals, [], [0], shots=400, seed=1)
    assert shots.shape == (3, 2)
    assert len({tuple(r.tolist()) for r in shots}) > 1  # independent samples per row


def test_values_columns_follow_names() -> None:
    """Columns are matched by name; extra columns are ignored."""
    c = Circuit.qubits(1).add(RY(Parameter("a"), wires=0))
    vals = torch.tensor([[9.0, 0.5], [9.0, 1.5]], dtype=torch.float64)
    got = PennyLaneBackend("default.qubit").expval(
        c, vals, ["z", "a"], [PauliString("Z", wires=[0])]
    )
    torch.testing.assert_close(got[:, 0], torch.cos(vals[:, 1]), atol=ATOL_F64, rtol=0)


# ---------------------------------------------------------------------------------------------
# Shots
# ---------------------------------------------------------------------------------------------
def _variance(c: Circuit, vals: torch.Tensor, obs: list) -> torch.Tensor:  # type: ignore[type-arg]
    ref = TorchBackend()
    mean = ref.expval(c, vals, NAMES, obs)
    sq = []
    for o in obs:
        m = o.local_matrix(c.wire_dims(o.wires))
        sq.append(Hermitian(m @ m, wires=list(o.wires)))
    return (ref.expval(c, vals, NAMES, sq) - mean**2).clamp(min=0)


SHOT_CASES = [
    ("default.qubit", 2, False),
    ("lightning.qubit", 2, False),
    ("default.mixed", 2, True),
    ("default.qutrit", 3, False),
    ("default.qutrit.mixed", 3, True),
]


@pytest.mark.parametrize(("device", "d", "noisy"), SHOT_CASES)
def test_shot_estimates(device: str, d: int, noisy: bool) -> None:
    n = 3 if d == 2 else 2
    shots = 2000
    c = random_circuit(d, n, seed=41, n_ops=8, channels=noisy)
    vals = random_values(2, 41)
    obs = observables(d, n, 41)
    backend = PennyLaneBackend(device)
    exact = TorchBackend().expval(c, vals, NAMES, obs)
    se = (_variance(c, vals, obs) / shots).sqrt()
    state = np.random.get_state()  # noqa: NPY002
    got = backend.expval(c, vals, NAMES, obs, shots=shots, seed=5)
    assert bool(((got - exact).abs() <= SHOT_SIGMAS * se + 1e-12).all()), (got - exact) / se
    again = backend.expval(c, vals, NAMES, obs, shots=shots, seed=5)
    torch.testing.assert_close(again, got, atol=0, rtol=0)
    wires = list(range(n))
    p_exact = TorchBackend().probs(c, vals, NAMES, wires)
    p = backend.probs(c, vals, NAMES, wires, shots=shots, seed=6)
    se_p = (p_exact * (1 - p_exact) / shots).sqrt()
    assert bool(((p - p_exact).abs() <= SHOT_SIGMAS * se_p + 1e-12).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(2, dtype=torch.float64), atol=ATOL_F64, rtol=0)
    # NumPy's global generator (seeded for the legacy default.qutrit) is restored
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2] == state[2]


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_unknown_device() -> None:
    with pytest.raises(QsemValueError, match=r"argument 'device'.*default.qutrit"):
        PennyLaneBackend("default.gaussian")
    with pytest.raises(QsemValueError, match="argument 'device_options'"):
        PennyLaneBackend("default.qubit", shots=100)
    assert set(DEVICES) == set(QUBIT_DEVICES + QUTRIT_DEVICES)


def test_operations_a_device_cannot_express() -> None:
    vals = torch.zeros(1, 0, dtype=torch.float64)
    qutrit = Circuit([3]).add(TShift(wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'circuit'.*qubits"):
        PennyLaneBackend("default.qubit").probs(qutrit, vals, [], [0])
    qubit = Circuit.qubits(1).add(H(wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'circuit'.*qutrits"):
        PennyLaneBackend("default.qutrit").probs(qubit, vals, [], [0])
    mixed = Circuit([2, 3]).add(H(wires=0))
    for device in ("default.qubit", "default.qutrit.mixed"):
        with pytest.raises(QsemValueError, match=r"argument 'circuit'.*mixed qubit/qutrit"):
            PennyLaneBackend(device).probs(mixed, vals, [], [0])
    noisy = Circuit.qubits(1).add(H(wires=0), Depolarizing(0.1, wires=0))
    for device in ("default.qubit", "lightning.qubit"):
        with pytest.raises(QsemValueError, match=r"argument 'circuit'.*default.mixed"):
            PennyLaneBackend(device).expval(noisy, vals, [], [PauliString("Z", wires=[0])])
    noisy3 = Circuit([3]).add(TritFlip(0.1, 0.1, 0.1, wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'circuit'.*default.qutrit.mixed"):
        PennyLaneBackend("default.qutrit").probs(noisy3, vals, [], [0])
    symbolic = Circuit.qubits(1).add(Kraus(np.eye(2), wires=[0]), BitFlip(Parameter("p"), wires=0))
    with pytest.raises(QsemValueError, match="argument 'circuit'"):
        custom = Circuit.qubits(1).add(_NoisyCustom(Parameter("p"), wires=0))
        PennyLaneBackend("default.mixed").probs(
            custom, torch.tensor([[0.1]], dtype=torch.float64), ["p"], [0]
        )
    got = PennyLaneBackend("default.mixed").probs(
        symbolic, torch.tensor([[0.25]], dtype=torch.float64), ["p"], [0]
    )
    np.testing.assert_allclose(got[0].numpy(), [0.75, 0.25], atol=ATOL_F64)


class _NoisyCustom(BitFlip):
    """A channel class the backend has no PennyLane name for."""


def test_argument_errors() -> None:
    c = Circuit.qubits(2).add(RY(Parameter("a"), wires=0))
    backend = PennyLaneBackend("default.qubit")
    vals = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(QsemValueError, match="argument 'values'"):
        backend.probs(c, torch.zeros(2, 2, dtype=torch.float64), ["a"], [0])
    with pytest.raises(QsemValueError, match="argument 'names'"):
        backend.probs(c, vals, ["b"], [0])
    with pytest.raises(QsemValueError, match="argument 'shots'"):
        backend.probs(c, vals, ["a"], [0], shots=-1)
    with pytest.raises(QsemValueError, match="argument 'wires'"):
        backend.probs(c, vals, ["a"], [5])
    with pytest.raises(QsemTypeError, match="argument 'circuit'"):
        backend.probs(None, vals, ["a"], [0])
    with pytest.raises(QsemTypeError, match="argument 'observables'"):
        backend.expval(c, vals, ["a"], ["Z"])
    with pytest.raises(QsemValueError, match="argument 'observables'"):
        backend.expval(c, vals, ["a"], [PauliString("Z", wires=[3])])
    batched = Circuit.qubits(1).add(RY(torch.tensor([0.1, 0.2]), wires=0))
    with pytest.raises(QsemValueError, match=r"argument 'circuit'.*batched"):
        backend.probs(batched, torch.zeros(2, 0, dtype=torch.float64), [], [0])


def test_missing_pennylane_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pennylane", None)
    with pytest.raises(MissingDependencyError, match=r"qsem\[pennylane\]"):
        PennyLaneBackend("default.qubit")
