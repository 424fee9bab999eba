"""Every gate of the library against hand-written matrices.

The reference matrices are typed out here with numpy (literal entries at the special
angles 0, π/2, π and the closed form at a generic angle); nothing is computed by qsem.
Also checked: batching, generators (``U(θ) = exp(-iθG) U(0)``), adjoints, permutations
and unitarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import ATOL_F32, ATOL_F64

from qsem.circuits import Circuit
from qsem.circuits.gates import (
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
    Add,
    Adjoint,
    Clock,
    Controlled,
    Fourier,
    H,
    Identity,
    PhaseShift,
    S,
    Shift,
    T,
    TAdd,
    TClock,
    THadamard,
    Toffoli,
    TShift,
    Unitary,
    X,
    Y,
    Z,
)
from qsem.circuits.operations import Gate
from qsem.simulators import simulate

C128 = torch.complex128
PI = math.pi
R2 = 1 / math.sqrt(2)
R3 = 1 / math.sqrt(3)
W3 = np.exp(2j * PI / 3)  # ω for d = 3
THETA = 0.73  # the generic angle
ANGLES = [0.0, PI / 2, PI, THETA]


def _np(gate: Gate, dims: tuple[int, ...], dtype: torch.dtype = C128) -> np.ndarray:
    return gate.concrete_matrix(dims, dtype=dtype).numpy()


def _assert_matrix(gate: Gate, dims: tuple[int, ...], expected: np.ndarray) -> None:
    got = _np(gate, dims)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL_F64, rtol=0)
    got32 = _np(gate, dims, torch.complex64)
    assert got32.dtype == np.complex64
    np.testing.assert_allclose(got32, expected, atol=ATOL_F32, rtol=0)


def _perm_matrix(dest: list[int]) -> np.ndarray:
    """Matrix sending basis column j to row dest[j] (the destination list is typed by hand)."""
    m = np.zeros((len(dest), len(dest)), dtype=complex)
    for j, i in enumerate(dest):
        m[i, j] = 1
    return m


def _block_diag(*blocks: np.ndarray) -> np.ndarray:
    n = sum(b.shape[0] for b in blocks)
    out = np.zeros((n, n), dtype=complex)
    i = 0
    for b in blocks:
        k = b.shape[0]
        out[i : i + k, i : i + k] = b
        i += k
    return out


# ---------------------------------------------------------------------------------------------
# Qubit rotations: literal matrices at 0, π/2, π and the closed form at THETA
# ---------------------------------------------------------------------------------------------
def rx_ref(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def ry_ref(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def rz_ref(t: float) -> np.ndarray:
    return np.array([[np.exp(-0.5j * t), 0], [0, np.exp(0.5j * t)]])


def phase_ref(t: float) -> np.ndarray:
    return np.array([[1, 0], [0, np.exp(1j * t)]])


LITERAL_ROTATIONS = {
    (RX, 0.0): np.eye(2, dtype=complex),
    (RX, PI / 2): R2 * np.array([[1, -1j], [-1j, 1]]),
    (RX, PI): np.array([[0, -1j], [-1j, 0]]),
    (RY, 0.0): np.eye(2, dtype=complex),
    (RY, PI / 2): R2 * np.array([[1, -1], [1, 1]], dtype=complex),
    (RY, PI): np.array([[0, -1], [1, 0]], dtype=complex),
    (RZ, 0.0): np.eye(2, dtype=complex),
    (RZ, PI / 2): np.array([[R2 - 1j * R2, 0], [0, R2 + 1j * R2]]),
    (RZ, PI): np.array([[-1j, 0], [0, 1j]]),
    (PhaseShift, 0.0): np.eye(2, dtype=complex),
    (PhaseShift, PI / 2): np.array([[1, 0], [0, 1j]]),
    (PhaseShift, PI): np.array([[1, 0], [0, -1]], dtype=complex),
}
CLOSED_FORMS = {RX: rx_ref, RY: ry_ref, RZ: rz_ref, PhaseShift: phase_ref}


@pytest.mark.parametrize(
    "key", list(LITERAL_ROTATIONS), ids=lambda k: f"{k[0].__name__}-{k[1]:.3f}"
)
def test_qubit_rotation_literal(key: tuple[type, float]) -> None:
    cls, angle = key
    _assert_matrix(cls(angle, wires=0), (2,), LITERAL_ROTATIONS[key])


@pytest.mark.parametrize("cls", [RX, RY, RZ, PhaseShift])
@pytest.mark.parametrize("angle", [*ANGLES, -2.1, 5.9])
def test_qubit_rotation_closed_form(cls: type, angle: float) -> None:
    _assert_matrix(cls(angle, wires=0), (2,), CLOSED_FORMS[cls](angle))


def u3_ref(t: float, p: float, lam: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -np.exp(1j * lam) * s], [np.exp(1j * p) * s, np.exp(1j * (p + lam)) * c]])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ((0.0, 0.0, 0.0), np.eye(2, dtype=complex)),
        ((PI, 0.0, PI), np.array([[0, 1], [1, 0]], dtype=complex)),  # X
        ((PI / 2, 0.0, PI), R2 * np.array([[1, 1], [1, -1]], dtype=complex)),  # H
        ((PI, PI / 2, PI / 2), np.array([[0, -1j], [1j, 0]])),  # Y
        ((0.0, 0.0, PI / 2), np.array([[1, 0], [0, 1j]])),  # S
        ((THETA, 0.4, -1.3), u3_ref(THETA, 0.4, -1.3)),
        ((2.5, -0.7, 3.0), u3_ref(2.5, -0.7, 3.0)),
    ],
)
def test_u3(params: tuple[float, float, float], expected: np.ndarray) -> None:
    _assert_matrix(U3(*params, wires=0), (2,), expected)


FIXED_QUBIT = [
    (X, np.array([[0, 1], [1, 0]], dtype=complex)),
    (Y, np.array([[0, -1j], [1j, 0]])),
    (Z, np.array([[1, 0], [0, -1]], dtype=complex)),
    (H, R2 * np.array([[1, 1], [1, -1]], dtype=complex)),
    (S, np.array([[1, 0], [0, 1j]])),
    (T, np.array([[1, 0], [0, R2 + 1j * R2]])),
    (Identity, np.eye(2, dtype=complex)),
]


@pytest.mark.parametrize(("cls", "expected"), FIXED_QUBIT, ids=[c.__name__ for c, _ in FIXED_QUBIT])
def test_fixed_qubit_gates(cls: type, expected: np.ndarray) -> None:
    _assert_matrix(cls(wires=0), (2,), expected)


CNOT_M = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=complex)
CZ_M = np.diag([1, 1, 1, -1]).astype(complex)
SWAP_M = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=complex)
CSWAP_M = np.array(
    [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],
    ],
    dtype=complex,
)
TOFFOLI_M = np.array(
    [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1, 0],
    ],
    dtype=complex,
)


@pytest.mark.parametrize(
    ("gate", "dims", "expected"),
    [
        (CNOT(wires=[0, 1]), (2, 2), CNOT_M),
        (CNOT(wires=[1, 0]), (2, 2), CNOT_M),  # the local matrix is in the gate's wire order
        (CZ(wires=[0, 1]), (2, 2), CZ_M),
        (SWAP(wires=[0, 1]), (2, 2), SWAP_M),
        (CSWAP(wires=[0, 1, 2]), (2, 2, 2), CSWAP_M),
        (Toffoli(wires=[0, 1, 2]), (2, 2, 2), TOFFOLI_M),
        (Add(wires=[0, 1]), (2, 2), CNOT_M),  # the qubit Add is CNOT
        (Fourier(wires=0), (2,), R2 * np.array([[1, 1], [1, -1]], dtype=complex)),
        (Shift(wires=0), (2,), np.array([[0, 1], [1, 0]], dtype=complex)),
        (Clock(wires=0), (2,), np.array([[1, 0], [0, -1]], dtype=complex)),
    ],
    ids=["CNOT", "CNOT-rev", "CZ", "SWAP", "CSWAP", "Toffoli", "Add2", "F2", "Shift2", "Clock2"],
)
def test_fixed_multi_qubit_gates(gate: Gate, dims: tuple[int, ...], expected: np.ndarray) -> None:
    _assert_matrix(gate, dims, expected)


@pytest.mark.parametrize("angle", ANGLES)
@pytest.mark.parametrize("cls", [CRX, CRY, CRZ])
def test_controlled_qubit_rotations(cls: type, angle: float) -> None:
    base = {CRX: rx_ref, CRY: ry_ref, CRZ: rz_ref}[cls](angle)
    expected = np.array(
        [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, base[0, 0], base[0, 1]],
            [0, 0, base[1, 0], base[1, 1]],
        ],
        dtype=complex,
    )
    _assert_matrix(cls(angle, wires=[0, 1]), (2, 2), expected)


def test_crx_at_pi_literal() -> None:
    expected = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, -1j], [0, 0, -1j, 0]], dtype=complex)
    _assert_matrix(CRX(PI, wires=[0, 1]), (2, 2), expected)


# ---------------------------------------------------------------------------------------------
# Qutrit (d = 3) gates
# ---------------------------------------------------------------------------------------------
QUTRIT_FIXED = [
    (TShift(wires=0), (3,), np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=complex)),
    (TClock(wires=0), (3,), np.diag([1, W3, W3**2])),
    (
        THadamard(wires=0),
        (3,),
        R3 * np.array([[1, 1, 1], [1, W3, W3**2], [1, W3**2, W3]]),
    ),
    # |a, b> -> |a, a + b mod 3>: destination of column 3a + b, typed by hand
    (TAdd(wires=[0, 1]), (3, 3), _perm_matrix([0, 1, 2, 4, 5, 3, 8, 6, 7])),
    # |a, b> -> |b, a>
    (TSWAP(wires=[0, 1]), (3, 3), _perm_matrix([0, 3, 6, 1, 4, 7, 2, 5, 8])),
    (Identity(wires=0), (3,), np.eye(3, dtype=complex)),
]


@pytest.mark.parametrize(
    ("gate", "dims", "expected"),
    QUTRIT_FIXED,
    ids=["TShift", "TClock", "THadamard", "TAdd", "TSWAP", "I3"],
)
def test_qutrit_fixed_gates(gate: Gate, dims: tuple[int, ...], expected: np.ndarray) -> None:
    _assert_matrix(gate, dims, expected)


def test_qutrit_clock_literal_entries() -> None:
    w = -0.5 + 1j * math.sqrt(3) / 2
    _assert_matrix(TClock(wires=0), (3,), np.diag([1, w, w.conjugate()]))


def _sub_rx(t: float, j: int, k: int, d: int = 3) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    m = np.eye(d, dtype=complex)
    m[j, j] = m[k, k] = c
    m[j, k] = m[k, j] = -1j * s
    return m


def _sub_ry(t: float, j: int, k: int, d: int = 3) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    m = np.eye(d, dtype=complex)
    m[j, j] = m[k, k] = c
    m[j, k], m[k, j] = -s, s
    return m


def _sub_rz(t: float, j: int, k: int, d: int = 3) -> np.ndarray:
    m = np.eye(d, dtype=complex)
    m[j, j], m[k, k] = np.exp(-0.5j * t), np.exp(0.5j * t)
    return m


SUBSPACE_REFS = {TRX: _sub_rx, TRY: _sub_ry, TRZ: _sub_rz}


@pytest.mark.parametrize("subspace", [(0, 1), (0, 2), (1, 2)])
@pytest.mark.parametrize("angle", ANGLES)
@pytest.mark.parametrize("cls", [TRX, TRY, TRZ])
def test_qutrit_subspace_rotations(cls: type, angle: float, subspace: tuple[int, int]) -> None:
    expected = SUBSPACE_REFS[cls](angle, *subspace)
    _assert_matrix(cls(angle, wires=0, subspace=subspace), (3,), expected)


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        (TRX(PI, wires=0, subspace=(0, 2)), np.array([[0, 0, -1j], [0, 1, 0], [-1j, 0, 0]])),
        (TRY(PI, wires=0, subspace=(1, 2)), np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], complex)),
        (TRZ(PI, wires=0, subspace=(0, 1)), np.diag([-1j, 1j, 1])),
        (TRZ(PI / 2, wires=0, subspace=(1, 2)), np.diag([1, R2 - 1j * R2, R2 + 1j * R2])),
        (
            TRY(PI / 2, wires=0, subspace=(0, 2)),
            np.array([[R2, 0, -R2], [0, 1, 0], [R2, 0, R2]], dtype=complex),
        ),
        (
            TRX(PI / 2, wires=0, subspace=(0, 1)),
            np.array([[R2, -1j * R2, 0], [-1j * R2, R2, 0], [0, 0, 1]]),
        ),
    ],
    ids=["TRX02-pi", "TRY12-pi", "TRZ01-pi", "TRZ12-pi/2", "TRY02-pi/2", "TRX01-pi/2"],
)
def test_qutrit_subspace_literal(gate: Gate, expected: np.ndarray) -> None:
    _assert_matrix(gate, (3,), expected)


def test_subspace_order_is_irrelevant() -> None:
    a = _np(TRY(THETA, wires=0, subspace=(2, 0)), (3,))
    np.testing.assert_allclose(a, _sub_ry(THETA, 0, 2), atol=ATOL_F64)


# ---------------------------------------------------------------------------------------------
# Other dimensions: d = 2 (above) and d = 4, plus mixed dims for Add
# ---------------------------------------------------------------------------------------------
D4_FIXED = [
    (
        Shift(wires=0),
        (4,),
        np.array([[0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=complex),
    ),
    (Clock(wires=0), (4,), np.diag([1, 1j, -1, -1j])),
    (
        Fourier(wires=0),
        (4,),
        0.5 * np.array([[1, 1, 1, 1], [1, 1j, -1, -1j], [1, -1, 1, -1], [1, -1j, -1, 1j]]),
    ),
    (
        Add(wires=[0, 1]),
        (4, 4),
        _perm_matrix([0, 1, 2, 3, 5, 6, 7, 4, 10, 11, 8, 9, 15, 12, 13, 14]),
    ),
    # mixed dims: |a, b> -> |a, a + b mod 3> with a a qubit
    (Add(wires=[0, 1]), (2, 3), _perm_matrix([0, 1, 2, 4, 5, 3])),
    # |a, b> -> |a, a + b mod 2> with a a qutrit control
    (Add(wires=[0, 1]), (3, 2), _perm_matrix([0, 1, 3, 2, 4, 5])),
    (
        SWAP(wires=[0, 1]),
        (4, 4),
        _perm_matrix([0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15]),
    ),
    (Identity(wires=0), (4,), np.eye(4, dtype=complex)),
]


@pytest.mark.parametrize(
    ("gate", "dims", "expected"),
    D4_FIXED,
    ids=["Shift4", "Clock4", "F4", "Add44", "Add23", "Add32", "SWAP44", "I4"],
)
def test_qudit_gates_other_dims(gate: Gate, dims: tuple[int, ...], expected: np.ndarray) -> None:
    _assert_matrix(gate, dims, expected)


@pytest.mark.parametrize("angle", ANGLES)
def test_subspace_rotation_d4(angle: float) -> None:
    _assert_matrix(TRY(angle, wires=0, subspace=(1, 3)), (4,), _sub_ry(angle, 1, 3, d=4))
    _assert_matrix(TRX(angle, wires=0, subspace=(0, 3)), (4,), _sub_rx(angle, 0, 3, d=4))


# ---------------------------------------------------------------------------------------------
# Controlled gates on mixed dims and other control values
# ---------------------------------------------------------------------------------------------
def test_qubit_controlled_qutrit_swap() -> None:
    tswap = _perm_matrix([0, 3, 6, 1, 4, 7, 2, 5, 8])
    expected = _block_diag(np.eye(9, dtype=complex), tswap)
    gate = Controlled(TSWAP(wires=[1, 2]), control_wires=[0])
    _assert_matrix(gate, (2, 3, 3), expected)
    # and on the 0 control value
    gate0 = Controlled(TSWAP(wires=[1, 2]), control_wires=[0], control_values=[0])
    _assert_matrix(gate0, (2, 3, 3), _block_diag(tswap, np.eye(9, dtype=complex)))


@pytest.mark.parametrize("value", [0, 1, 2])
@pytest.mark.parametrize("angle", ANGLES)
def test_qutrit_control_values(value: int, angle: float) -> None:
    blocks = [np.eye(2, dtype=complex)] * 3
    blocks[value] = rx_ref(angle)
    gate = Controlled(RX(angle, wires=1), control_wires=[0], control_values=[value])
    _assert_matrix(gate, (3, 2), _block_diag(*blocks))


def test_qutrit_controlled_tshift_value_2() -> None:
    shift = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=complex)
    eye = np.eye(3, dtype=complex)
    gate = Controlled(TShift(wires=1), control_wires=[0], control_values=[2])
    _assert_matrix(gate, (3, 3), _block_diag(eye, eye, shift))


def test_two_controls_mixed_values() -> None:
    # controls: a qutrit with value 2, a qubit with value 0; target a qubit RY
    blocks = [np.eye(2, dtype=complex)] * 6
    blocks[2 * 2 + 0] = ry_ref(THETA)
    gate = Controlled(RY(THETA, wires=2), control_wires=[0, 1], control_values=[2, 0])
    _assert_matrix(gate, (3, 2, 2), _block_diag(*blocks))


def test_csswap_on_qutrit_targets() -> None:
    tswap = _perm_matrix([0, 3, 6, 1, 4, 7, 2, 5, 8])
    _assert_matrix(CSWAP(wires=[0, 1, 2]), (2, 3, 3), _block_diag(np.eye(9, dtype=complex), tswap))


def test_controlled_gate_in_circuit_reversed_wires() -> None:
    """A qubit on wire 2 controls a qutrit SWAP of wires 0 and 1: check on all basis states."""
    circ = Circuit([3, 3, 2]).add(Controlled(TSWAP(wires=[0, 1]), control_wires=[2]))
    dims = (3, 3, 2)
    for a in range(3):
        for b in range(3):
            for c in range(2):
                out = simulate(circ, dtype=C128, initial_state=[a, b, c]).vector.numpy()
                aa, bb = (b, a) if c == 1 else (a, b)
                expected = np.zeros(18, dtype=complex)
                expected[np.ravel_multi_index((aa, bb, c), dims)] = 1
                np.testing.assert_allclose(out, expected, atol=ATOL_F64)


# ---------------------------------------------------------------------------------------------
# Catalogue of every gate for the generic checks
# ---------------------------------------------------------------------------------------------
GateFactory = Callable[..., Gate]
# (id, factory(*params), number of params, dims)
PARAM_GATES: list[tuple[str, GateFactory, int, tuple[int, ...]]] = [
    ("RX", lambda t: RX(t, wires=0), 1, (2,)),
    ("RY", lambda t: RY(t, wires=0), 1, (2,)),
    ("RZ", lambda t: RZ(t, wires=0), 1, (2,)),
    ("PhaseShift", lambda t: PhaseShift(t, wires=0), 1, (2,)),
    ("U3", lambda a, b, c: U3(a, b, c, wires=0), 3, (2,)),
    ("CRX", lambda t: CRX(t, wires=[0, 1]), 1, (2, 2)),
    ("CRY", lambda t: CRY(t, wires=[0, 1]), 1, (2, 2)),
    ("CRZ", lambda t: CRZ(t, wires=[0, 1]), 1, (2, 2)),
    *[
        (
            f"{cls.__name__}{j}{k}",
            (lambda c, s: lambda t: c(t, wires=0, subspace=s))(cls, (j, k)),
            1,
            (3,),
        )
        for cls in (TRX, TRY, TRZ)
        for j, k in ((0, 1), (0, 2), (1, 2))
    ],
    ("TRY13-d4", lambda t: TRY(t, wires=0, subspace=(1, 3)), 1, (4,)),
    (
        "C2-RY",
        lambda t: Controlled(RY(t, wires=1), control_wires=[0], control_values=[2]),
        1,
        (3, 2),
    ),
    (
        "C-TRX02",
        lambda t: Controlled(TRX(t, wires=1, subspace=(0, 2)), control_wires=[0]),
        1,
        (2, 3),
    ),
    (
        "C-U3",
        lambda a, b, c: Controlled(
            U3(a, b, c, wires=2), control_wires=[0, 1], control_values=[0, 1]
        ),
        3,
        (2, 2, 2),
    ),
]
PARAM_IDS = [g[0] for g in PARAM_GATES]

FIXED_GATES: list[tuple[str, Gate, tuple[int, ...]]] = [
    ("X", X(wires=0), (2,)),
    ("Y", Y(wires=0), (2,)),
    ("Z", Z(wires=0), (2,)),
    ("H", H(wires=0), (2,)),
    ("S", S(wires=0), (2,)),
    ("T", T(wires=0), (2,)),
    ("I2", Identity(wires=0), (2,)),
    ("CNOT", CNOT(wires=[0, 1]), (2, 2)),
    ("CZ", CZ(wires=[0, 1]), (2, 2)),
    ("SWAP", SWAP(wires=[0, 1]), (2, 2)),
    ("CSWAP", CSWAP(wires=[0, 1, 2]), (2, 2, 2)),
    ("Toffoli", Toffoli(wires=[0, 1, 2]), (2, 2, 2)),
    ("TShift", TShift(wires=0), (3,)),
    ("TClock", TClock(wires=0), (3,)),
    ("THadamard", THadamard(wires=0), (3,)),
    ("TAdd", TAdd(wires=[0, 1]), (3, 3)),
    ("TSWAP", TSWAP(wires=[0, 1]), (3, 3)),
    ("Shift4", Shift(wires=0), (4,)),
    ("Clock4", Clock(wires=0), (4,)),
    ("F4", Fourier(wires=0), (4,)),
    ("Add44", Add(wires=[0, 1]), (4, 4)),
    ("Add23", Add(wires=[0, 1]), (2, 3)),
    ("C-TSWAP", Controlled(TSWAP(wires=[1, 2]), control_wires=[0]), (2, 3, 3)),
    ("C2-TShift", Controlled(TShift(wires=1), control_wires=[0], control_values=[2]), (3, 3)),
    ("C0-Fourier", Controlled(Fourier(wires=1), control_wires=[0], control_values=[0]), (2, 3)),
    ("Adj-S", Adjoint(S(wires=0)), (2,)),
    ("Adj-TAdd", Adjoint(TAdd(wires=[0, 1])), (3, 3)),
    (
        "Unitary",
        Unitary(np.array([[0, 1j], [1j, 0]]) @ (R2 * np.array([[1, 1], [1, -1]])), wires=0),
        (2,),
    ),
]
FIXED_IDS = [g[0] for g in FIXED_GATES]


def _random_params(
    rng: np.random.Generator, n: int, batch: int | None = None
) -> list[torch.Tensor]:
    shape = () if batch is None else (batch,)
    return [torch.as_tensor(rng.uniform(-2 * PI, 2 * PI, size=shape)) for _ in range(n)]


def _assert_unitary(m: torch.Tensor, atol: float = ATOL_F64) -> None:
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    torch.testing.assert_close(m @ m.mH, eye.expand_as(m), atol=atol, rtol=0)
    torch.testing.assert_close(m.mH @ m, eye.expand_as(m), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "factory", "npar", "dims"), PARAM_GATES, ids=PARAM_IDS)
def test_batched_params_stack_single(
    name: str, factory: GateFactory, npar: int, dims: tuple[int, ...], rng: np.random.Generator
) -> None:
    batch = 5
    params = _random_params(rng, npar, batch)
    gate = factory(*params)
    assert gate.batch_size() == batch
    for dtype, atol in ((C128, ATOL_F64), (torch.complex64, ATOL_F32)):
        m = gate.concrete_matrix(dims, dtype=dtype)
        assert m.shape == (batch, math.prod(dims), math.prod(dims))
        assert m.dtype == dtype
        singles = torch.stack(
            [
                factory(*[p[b] for p in params]).concrete_matrix(dims, dtype=dtype)
                for b in range(batch)
            ]
        )
        torch.testing.assert_close(m, singles, atol=atol, rtol=0)


def test_u3_partially_batched(rng: np.random.Generator) -> None:
    theta = torch.as_tensor(rng.uniform(-PI, PI, size=4))
    m = U3(theta, 0.3, -1.2, wires=0).concrete_matrix((2,))
    assert m.shape == (4, 2, 2)
    for b in range(4):
        np.testing.assert_allclose(m[b].numpy(), u3_ref(float(theta[b]), 0.3, -1.2), atol=ATOL_F64)


@pytest.mark.parametrize("cls", [RX, RY, RZ, PhaseShift])
def test_batched_qubit_rotation_vs_closed_form(cls: type) -> None:
    angles = torch.tensor(ANGLES, dtype=torch.float64)
    m = cls(angles, wires=0).concrete_matrix((2,)).numpy()
    expected = np.stack([CLOSED_FORMS[cls](a) for a in ANGLES])
    np.testing.assert_allclose(m, expected, atol=ATOL_F64)


# ---------------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------------
ONE_PARAM = [g for g in PARAM_GATES if g[2] == 1]


@pytest.mark.parametrize(
    ("name", "factory", "npar", "dims"), ONE_PARAM, ids=[g[0] for g in ONE_PARAM]
)
@pytest.mark.parametrize("theta", [PI / 2, PI, THETA, -2.4])
def test_generator_consistency(
    name: str, factory: GateFactory, npar: int, dims: tuple[int, ...], theta: float
) -> None:
    gate = factory(theta)
    gen = gate.generator(0, dims)
    assert gen.dtype == C128
    torch.testing.assert_close(gen, gen.mH, atol=ATOL_F64, rtol=0)
    u0 = factory(0.0).concrete_matrix(dims)
    expected = torch.linalg.matrix_exp(-1j * theta * gen) @ u0
    torch.testing.assert_close(gate.concrete_matrix(dims), expected, atol=ATOL_F64, rtol=0)
    spec = gate.spectrum(0, dims)
    torch.testing.assert_close(spec, torch.linalg.eigvalsh(gen), atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize(
    ("name", "factory", "npar", "dims"), ONE_PARAM, ids=[g[0] for g in ONE_PARAM]
)
def test_generator_spectrum(
    name: str, factory: GateFactory, npar: int, dims: tuple[int, ...]
) -> None:
    """Rotations have eigenvalues ±1/2 (plus 0 off their support); PhaseShift 0 and -1."""
    spec = sorted(np.round(factory(0.1).spectrum(0, dims).numpy(), 12).tolist())
    allowed = {-1.0, 0.0} if name == "PhaseShift" else {-0.5, 0.0, 0.5}
    assert set(spec) <= allowed
    if name != "PhaseShift":
        assert spec.count(0.5) == spec.count(-0.5) == 1


@pytest.mark.parametrize("index", [0, 1, 2])
def test_u3_generators(index: int) -> None:
    """U3 = P(φ) RY(θ) P(λ): each generator, moved to where its parameter sits, shifts it."""
    params = [0.9, -0.4, 1.7]
    delta = 0.61
    gen = U3(*params, wires=0).generator(index, (2,))
    shifted = list(params)
    shifted[index] += delta
    u = U3(*params, wires=0).concrete_matrix((2,))
    u_shift = U3(*shifted, wires=0).concrete_matrix((2,))
    step = torch.linalg.matrix_exp(-1j * delta * gen)
    p_phi = torch.tensor(phase_ref(params[1]))
    p_lam = torch.tensor(phase_ref(params[2]))
    ry = torch.tensor(ry_ref(params[0]))
    if index == 0:
        expected = p_phi @ step @ ry @ p_lam
    elif index == 1:
        expected = step @ u
    else:
        expected = u @ step
    torch.testing.assert_close(u_shift, expected, atol=ATOL_F64, rtol=0)


# ---------------------------------------------------------------------------------------------
# Adjoints
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "factory", "npar", "dims"), PARAM_GATES, ids=PARAM_IDS)
@pytest.mark.parametrize("batched", [False, True])
def test_adjoint_parametric(
    name: str,
    factory: GateFactory,
    npar: int,
    dims: tuple[int, ...],
    batched: bool,
    rng: np.random.Generator,
) -> None:
    gate = factory(*_random_params(rng, npar, 3 if batched else None))
    adj = gate.adjoint()
    assert isinstance(adj, Gate)
    assert adj.wires == gate.wires
    m = gate.concrete_matrix(dims)
    torch.testing.assert_close(adj.concrete_matrix(dims), m.mH, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(adj.adjoint().concrete_matrix(dims), m, atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize(("name", "gate", "dims"), FIXED_GATES, ids=FIXED_IDS)
def test_adjoint_fixed(name: str, gate: Gate, dims: tuple[int, ...]) -> None:
    m = gate.concrete_matrix(dims)
    adj = gate.adjoint()
    torch.testing.assert_close(adj.concrete_matrix(dims), m.mH, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(adj.adjoint().concrete_matrix(dims), m, atol=ATOL_F64, rtol=0)
    wrapped = Adjoint(gate)
    torch.testing.assert_close(wrapped.concrete_matrix(dims), m.mH, atol=ATOL_F64, rtol=0)


def test_adjoint_literal() -> None:
    np.testing.assert_allclose(_np(S(wires=0).adjoint(), (2,)), np.diag([1, -1j]), atol=ATOL_F64)
    np.testing.assert_allclose(
        _np(T(wires=0).adjoint(), (2,)), np.diag([1, R2 - 1j * R2]), atol=ATOL_F64
    )
    np.testing.assert_allclose(
        _np(TShift(wires=0).adjoint(), (3,)),
        np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=complex),
        atol=ATOL_F64,
    )
    np.testing.assert_allclose(
        _np(U3(THETA, 0.4, -1.3, wires=0).adjoint(), (2,)),
        u3_ref(THETA, 0.4, -1.3).conj().T,
        atol=ATOL_F64,
    )


# ---------------------------------------------------------------------------------------------
# Permutations
# ---------------------------------------------------------------------------------------------
PERM_GATES = [
    (name, gate, dims) for name, gate, dims in FIXED_GATES if gate.permutation(dims) is not None
]


def test_permutation_catalogue_is_complete() -> None:
    names = {p[0] for p in PERM_GATES}
    expected = {"X", "I2", "CNOT", "SWAP", "CSWAP", "Toffoli", "TShift", "TAdd", "TSWAP"}
    expected |= {"Shift4", "Add44", "Add23", "C-TSWAP", "C2-TShift", "Adj-TAdd"}
    assert expected <= names


@pytest.mark.parametrize(("name", "gate", "dims"), PERM_GATES, ids=[p[0] for p in PERM_GATES])
def test_permutation_matches_matrix(name: str, gate: Gate, dims: tuple[int, ...]) -> None:
    src = gate.permutation(dims)
    assert src is not None
    n = math.prod(dims)
    assert sorted(np.asarray(src).tolist()) == list(range(n))
    # out[i] = in[src[i]]  <=>  M[i, src[i]] = 1
    m = np.zeros((n, n), dtype=complex)
    m[np.arange(n), src] = 1
    np.testing.assert_allclose(m, _np(gate, dims), atol=0)


# ---------------------------------------------------------------------------------------------
# Unitarity
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "factory", "npar", "dims"), PARAM_GATES, ids=PARAM_IDS)
def test_unitary_at_random_params(
    name: str, factory: GateFactory, npar: int, dims: tuple[int, ...], rng: np.random.Generator
) -> None:
    for _ in range(5):
        _assert_unitary(factory(*_random_params(rng, npar)).concrete_matrix(dims))
    _assert_unitary(factory(*_random_params(rng, npar, 7)).concrete_matrix(dims))
    m32 = factory(*_random_params(rng, npar, 7)).concrete_matrix(dims, dtype=torch.complex64)
    _assert_unitary(m32, ATOL_F32)


@pytest.mark.parametrize(("name", "gate", "dims"), FIXED_GATES, ids=FIXED_IDS)
def test_fixed_gates_unitary(name: str, gate: Gate, dims: tuple[int, ...]) -> None:
    _assert_unitary(gate.concrete_matrix(dims))
    assert gate.concrete_matrix(dims).shape == (math.prod(dims), math.prod(dims))
