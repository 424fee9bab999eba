"""The torch engine against PennyLane 0.45 ``default.qutrit`` / ``default.qutrit.mixed``.

Random qutrit circuits (statevector and density matrix with channels), mixed
qubit/qutrit circuits, measurements (probs, Gell-Mann expectation values,
reduced density matrices, purity, entropy) and batched parameters.

Conventions, checked in ``test_gate_matrices_match_pennylane`` and
``test_channel_parameter_mapping``:

* ``THadamard``: PennyLane's matrix is ``-1j`` times qsem's ``Fourier``; statevectors
  are compared with the accumulated global phase (density matrices do not see it).
* ``ControlledQutritUnitary`` controls on all-2s by default, qsem's ``Controlled`` on
  all-1s: control values are always passed explicitly.
* Channel parameters, derived from PennyLane's Kraus operators
  (``compute_kraus_matrices``):

  - ``QutritDepolarizingChannel(p)``: ``K_0 = sqrt(1-p) I`` and ``K_ab = sqrt(p/8) X^a Z^b``
    for the 8 non-identity Weyl operators. With ``Σ_{all a,b} W ρ W^† = 3 Tr(ρ) I``,
    ``ρ -> (1-p) ρ + p/8 (3 I - ρ) = (1 - 9p/8) ρ + (9p/8) I/3``: qsem
    ``Depolarizing(9p/8)`` (PennyLane's p = 1 is qsem's largest allowed p = 9/8).
  - ``QutritAmplitudeDamping(γ10, γ20, γ21)``: ``K_0 = diag(1, sqrt(1-γ10),
    sqrt(1-γ20-γ21))``, ``sqrt(γ10)|0><1|``, ``sqrt(γ20)|0><2|``, ``sqrt(γ21)|1><2|``.
    qsem's cascade ``AmplitudeDamping(γ1, γ2)`` is ``γ10 = γ1, γ20 = 0, γ21 = γ2``;
    ``γ20 != 0`` is compared through qsem ``Kraus``.
  - ``TritFlip(p01, p02, p12)``: the same parameters in both.

PennyLane 0.45 quirks worked around here (PennyLane's, not qsem's):

* ``qml.purity`` / ``qml.vn_entropy`` measurements do not run on the qutrit devices
  (default.qutrit: a qubit-shaped reshape error / "Unsupported return type";
  default.qutrit.mixed: ``NotImplementedError``), so ``qml.math.purity`` and
  ``qml.math.vn_entropy`` (``base=2``; natural log when no base) are applied to PennyLane's
  ``qml.density_matrix`` output instead.
* default.qutrit returns ``qml.density_matrix(wires)`` on the wires in sorted order, whatever
  order they are given in (default.qutrit.mixed keeps the given order, as qsem does).
* default.qutrit returns ``qml.probs`` in the eigenbasis of a non-diagonal observable
  measured in the same QNode: probabilities and such expectation values use separate QNodes.

PennyLane has no mixed-dimension device: mixed circuits are compared (a) with a
full-register numpy reference written here (Kronecker embedding of hand-written
local matrices, independent of qsem's kernels) and (b) with ``default.qutrit`` on
which every qubit is a qutrit restricted to levels 0, 1 (gates extended by the
identity on the leakage levels); the result must show no leakage.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

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
    GellMann,
    H,
    Kraus,
    PauliString,
    PhaseDamping,
    PhaseShift,
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
from qsem.circuits.gates import Add
from qsem.simulators import (
    TorchSimulator,
    entropy,
    expval,
    probs,
    purity,
    reduced_density_matrix,
)

qml = pytest.importorskip("pennylane")

DT = torch.complex128
SUBSPACES = [(0, 1), (0, 2), (1, 2)]
PL_ROT = {"x": "TRX", "y": "TRY", "z": "TRZ"}
QSEM_ROT = {"x": TRX, "y": TRY, "z": TRZ}


# ---------------------------------------------------------------------------------------------
# Independent reference matrices (hand-written; qutrit ones from PennyLane)
# ---------------------------------------------------------------------------------------------
def haar(n: int, rng: np.random.Generator) -> np.ndarray:
    z = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def np_rx(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def np_ry(t: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def np_rz(t: float) -> np.ndarray:
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def np_u3(t: float, p: float, lam: float) -> np.ndarray:
    c, s = math.cos(t / 2), math.sin(t / 2)
    return np.array([[c, -np.exp(1j * lam) * s], [np.exp(1j * p) * s, np.exp(1j * (p + lam)) * c]])


NP_FIXED_QUBIT = {
    "H": np.array([[1, 1], [1, -1]]) / math.sqrt(2),
    "X": np.array([[0, 1], [1, 0]]),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.diag([1, -1]),
    "S": np.diag([1, 1j]),
    "T": np.diag([1, np.exp(1j * np.pi / 4)]),
}
QSEM_FIXED_QUBIT = {"H": H, "X": X, "Y": Y, "Z": Z, "S": S, "T": T}


def controlled_ref(u: np.ndarray, cdims: tuple[int, ...], cvals: tuple[int, ...]) -> np.ndarray:
    """Σ_c |c><c| ⊗ (u if c == cvals else I), controls first."""
    dt = u.shape[0]
    out = np.zeros((math.prod(cdims) * dt,) * 2, dtype=complex)
    for c in itertools.product(*[range(d) for d in cdims]):
        proj = np.ones((1, 1))
        for level, d in zip(c, cdims, strict=True):
            e = np.zeros((d, d))
            e[level, level] = 1
            proj = np.kron(proj, e)
        out += np.kron(proj, u if c == cvals else np.eye(dt))
    return out


def add_ref(da: int, db: int) -> np.ndarray:
    """|a, b> -> |a, a + b mod db>."""
    m = np.zeros((da * db, da * db))
    for a, b in itertools.product(range(da), range(db)):
        m[a * db + (a + b) % db, a * db + b] = 1
    return m


def swap_ref(d: int) -> np.ndarray:
    m = np.zeros((d * d, d * d))
    for a, b in itertools.product(range(d), range(d)):
        m[b * d + a, a * d + b] = 1
    return m


def qubit_kraus(name: str, p: float) -> np.ndarray:
    eye = np.eye(2)
    x, y, z = NP_FIXED_QUBIT["X"], NP_FIXED_QUBIT["Y"], NP_FIXED_QUBIT["Z"]
    if name == "depolarizing":  # (1-p) ρ + p I/2
        return np.stack(
            [math.sqrt(1 - 3 * p / 4) * eye] + [math.sqrt(p / 4) * m for m in (x, y, z)]
        )
    if name == "amplitude":
        return np.stack([np.diag([1, math.sqrt(1 - p)]), np.array([[0, math.sqrt(p)], [0, 0]])])
    if name == "bitflip":
        return np.stack([math.sqrt(1 - p) * eye, math.sqrt(p) * x])
    return np.stack([np.diag([1, math.sqrt(1 - p)]), np.diag([0, math.sqrt(p)])])  # dephasing


QSEM_QUBIT_CHANNEL = {
    "depolarizing": Depolarizing,
    "amplitude": AmplitudeDamping,
    "bitflip": BitFlip,
    "dephasing": PhaseDamping,
}


# ---------------------------------------------------------------------------------------------
# Random circuits as specs: one description gives the qsem op, a numpy reference and PennyLane
# ---------------------------------------------------------------------------------------------
@dataclass
class Spec:
    """One operation. ``params`` are floats, or arrays (B,) for a batch.

    ``qsem(*params)`` builds the qsem operation; ``ref(*params)`` the local matrix (or
    Kraus stack) written independently of qsem; ``pl(*params)`` queues PennyLane's native
    operation (``None``: not expressible natively, the reference is embedded instead);
    PennyLane's matrix is ``phase`` times qsem's.
    """

    wires: tuple[int, ...]
    params: list[Any]
    qsem: Callable[..., Any]
    ref: Callable[..., np.ndarray]
    pl: Callable[..., Any] | None
    phase: complex = 1.0
    channel: bool = False


def _wires_of(dims: tuple[int, ...], d: int) -> list[int]:
    return [w for w, dw in enumerate(dims) if dw == d]


class Gen:
    """Draws random ops for wires of ``dims``; structure from ``srng``, values from ``prng``."""

    def __init__(
        self,
        dims: tuple[int, ...],
        srng: np.random.Generator,
        prng: np.random.Generator,
        batch: int | None = None,
        channels: bool = False,
        fixed_kraus: bool = True,
    ) -> None:
        self.dims = dims
        self.s = srng
        self.p = prng
        self.batch = batch
        self.channels = channels
        self.fixed_kraus = fixed_kraus
        self.q3 = _wires_of(dims, 3)
        self.q2 = _wires_of(dims, 2)

    def angle(self) -> Any:
        return self.p.uniform(-np.pi, 2 * np.pi, size=self.batch)

    def prob(self, high: float) -> Any:
        return self.p.uniform(0, high, size=self.batch)

    def pick(self, pool: list[int], k: int) -> tuple[int, ...]:
        return tuple(int(w) for w in self.s.choice(pool, size=k, replace=False))

    # -- qutrit gates ---------------------------------------------------------------------
    def qutrit_1(self) -> Spec:
        (w,) = self.pick(self.q3, 1)
        kind = self.s.choice(["shift", "clock", "had", "rot", "rot", "rot", "unitary", "adjoint"])
        if kind == "adjoint":
            base = self._qutrit_1_base(w, self.s.choice(["shift", "clock", "had", "rot"]))
            return Spec(
                base.wires,
                base.params,
                lambda *p: base.qsem(*p).adjoint(),
                lambda *p: base.ref(*p).conj().T,
                lambda *p: qml.adjoint(base.pl)(*p),  # type: ignore[misc]
                phase=np.conj(base.phase),
            )
        return self._qutrit_1_base(w, kind)

    def _qutrit_1_base(self, w: int, kind: str) -> Spec:
        if kind == "shift":
            return Spec(
                (w,),
                [],
                lambda: TShift(wires=w),
                qml.TShift.compute_matrix,
                lambda: qml.TShift(wires=w),
            )
        if kind == "clock":
            return Spec(
                (w,),
                [],
                lambda: TClock(wires=w),
                qml.TClock.compute_matrix,
                lambda: qml.TClock(wires=w),
            )
        if kind == "had":
            return Spec(
                (w,),
                [],
                lambda: THadamard(wires=w),
                lambda: 1j * qml.THadamard.compute_matrix(),
                lambda: qml.THadamard(wires=w),
                phase=-1j,
            )
        if kind == "rot":
            axis = str(self.s.choice(["x", "y", "z"]))
            sub = SUBSPACES[self.s.integers(3)]
            pl_cls = getattr(qml, PL_ROT[axis])
            return Spec(
                (w,),
                [self.angle()],
                lambda t: QSEM_ROT[axis](t, wires=w, subspace=sub),
                lambda t: pl_cls.compute_matrix(t, subspace=sub),
                lambda t: pl_cls(t, wires=w, subspace=sub),
            )
        u = haar(3, self.p)
        return Spec(
            (w,), [], lambda: Unitary(u, wires=w), lambda: u, lambda: qml.QutritUnitary(u, wires=w)
        )

    def qutrit_2(self) -> Spec:
        a, b = self.pick(self.q3, 2)
        kind = self.s.choice(["add", "swap", "unitary", "cu", "crot"])
        if kind == "add":
            return Spec(
                (a, b),
                [],
                lambda: TAdd(wires=[a, b]),
                qml.TAdd.compute_matrix,
                lambda: qml.TAdd(wires=[a, b]),
            )
        if kind == "swap":
            return Spec(
                (a, b),
                [],
                lambda: TSWAP(wires=[a, b]),
                qml.TSWAP.compute_matrix,
                lambda: qml.TSWAP(wires=[a, b]),
            )
        if kind == "unitary":
            u = haar(9, self.p)
            return Spec(
                (a, b),
                [],
                lambda: Unitary(u, wires=[a, b]),
                lambda: u,
                lambda: qml.QutritUnitary(u, wires=[a, b]),
            )
        v = int(self.s.integers(3))
        if kind == "cu":
            u = haar(3, self.p)
            return Spec(
                (a, b),
                [],
                lambda: Controlled(Unitary(u, wires=b), control_wires=[a], control_values=[v]),
                lambda: controlled_ref(u, (3,), (v,)),
                lambda: qml.ControlledQutritUnitary(
                    u, control_wires=[a], wires=b, control_values=str(v)
                ),
            )
        axis = str(self.s.choice(["x", "y", "z"]))
        sub = SUBSPACES[self.s.integers(3)]
        pl_cls = getattr(qml, PL_ROT[axis])
        return Spec(
            (a, b),
            [self.angle()],
            lambda t: Controlled(QSEM_ROT[axis](t, wires=b, subspace=sub), [a], [v]),
            lambda t: controlled_ref(pl_cls.compute_matrix(t, subspace=sub), (3,), (v,)),
            lambda t: qml.ControlledQutritUnitary(
                pl_cls.compute_matrix(t, subspace=sub),
                control_wires=[a],
                wires=b,
                control_values=str(v),
            ),
        )

    def qutrit_3(self) -> Spec:
        a, b, c = self.pick(self.q3, 3)
        vals = (int(self.s.integers(3)), int(self.s.integers(3)))
        if self.s.random() < 0.5:  # controlled TSWAP on one control
            v = vals[0]
            return Spec(
                (a, b, c),
                [],
                lambda: Controlled(TSWAP(wires=[b, c]), [a], [v]),
                lambda: controlled_ref(swap_ref(3), (3,), (v,)),
                lambda: qml.ControlledQutritUnitary(
                    qml.TSWAP.compute_matrix(),
                    control_wires=[a],
                    wires=[b, c],
                    control_values=str(v),
                ),
            )
        u = haar(3, self.p)
        return Spec(
            (a, b, c),
            [],
            lambda: Controlled(Unitary(u, wires=c), [a, b], list(vals)),
            lambda: controlled_ref(u, (3, 3), vals),
            lambda: qml.ControlledQutritUnitary(
                u, control_wires=[a, b], wires=c, control_values=f"{vals[0]}{vals[1]}"
            ),
        )

    # -- qubit and mixed gates ------------------------------------------------------------
    def qubit_1(self) -> Spec:
        (w,) = self.pick(self.q2, 1)
        kind = str(self.s.choice(["rx", "ry", "rz", "phase", "u3", "fixed"]))
        if kind == "fixed":
            name = str(self.s.choice(sorted(NP_FIXED_QUBIT)))
            return Spec(
                (w,),
                [],
                lambda: QSEM_FIXED_QUBIT[name](wires=w),
                lambda: NP_FIXED_QUBIT[name],
                None,
            )
        if kind == "u3":
            return Spec(
                (w,),
                [self.angle(), self.angle(), self.angle()],
                lambda a, b, c: U3(a, b, c, wires=w),
                np_u3,
                None,
            )
        if kind == "phase":
            return Spec(
                (w,),
                [self.angle()],
                lambda t: PhaseShift(t, wires=w),
                lambda t: np.diag([1, np.exp(1j * t)]),
                None,
            )
        cls, ref = {"rx": (RX, np_rx), "ry": (RY, np_ry), "rz": (RZ, np_rz)}[kind]
        return Spec((w,), [self.angle()], lambda t: cls(t, wires=w), ref, None)

    def qubit_2(self) -> Spec:
        a, b = self.pick(self.q2, 2)
        kind = str(self.s.choice(["cnot", "cz", "crx", "cry", "crz", "swap"]))
        if kind == "cnot":
            return Spec(
                (a, b),
                [],
                lambda: CNOT(wires=[a, b]),
                lambda: controlled_ref(NP_FIXED_QUBIT["X"], (2,), (1,)),
                None,
            )
        if kind == "cz":
            return Spec(
                (a, b),
                [],
                lambda: CZ(wires=[a, b]),
                lambda: controlled_ref(NP_FIXED_QUBIT["Z"], (2,), (1,)),
                None,
            )
        if kind == "swap":
            return Spec((a, b), [], lambda: SWAP(wires=[a, b]), lambda: swap_ref(2), None)
        cls, ref = {"crx": (CRX, np_rx), "cry": (CRY, np_ry), "crz": (CRZ, np_rz)}[kind]
        return Spec(
            (a, b),
            [self.angle()],
            lambda t: cls(t, wires=[a, b]),
            lambda t: controlled_ref(ref(t), (2,), (1,)),
            None,
        )

    def mixed(self) -> Spec:
        """Gates across wires of different dimensions."""
        dims = self.dims
        (q,) = self.pick(self.q2, 1)
        (t,) = self.pick(self.q3, 1)
        kind = str(self.s.choice(["add", "cswap", "crot_qutrit", "crot_qubit", "unitary"]))
        if kind == "cswap" and len(self.q3) < 2:
            kind = "crot_qutrit"
        if kind == "add":
            a, b = (q, t) if self.s.random() < 0.5 else (t, q)
            return Spec(
                (a, b), [], lambda: Add(wires=[a, b]), lambda: add_ref(dims[a], dims[b]), None
            )
        if kind == "cswap":
            b, c = self.pick(self.q3, 2)
            if self.s.random() < 0.5:
                return Spec(
                    (q, b, c),
                    [],
                    lambda: CSWAP(wires=[q, b, c]),
                    lambda: controlled_ref(swap_ref(3), (2,), (1,)),
                    None,
                )
            v = int(self.s.integers(2))
            return Spec(
                (q, b, c),
                [],
                lambda: Controlled(TSWAP(wires=[b, c]), [q], [v]),
                lambda: controlled_ref(swap_ref(3), (2,), (v,)),
                None,
            )
        if kind == "crot_qutrit":  # qubit controls a qutrit rotation
            v = int(self.s.integers(2))
            axis = str(self.s.choice(["x", "y", "z"]))
            sub = SUBSPACES[self.s.integers(3)]
            pl_cls = getattr(qml, PL_ROT[axis])
            return Spec(
                (q, t),
                [self.angle()],
                lambda th: Controlled(QSEM_ROT[axis](th, wires=t, subspace=sub), [q], [v]),
                lambda th: controlled_ref(pl_cls.compute_matrix(th, subspace=sub), (2,), (v,)),
                None,
            )
        if kind == "crot_qubit":  # qutrit controls a qubit rotation
            v = int(self.s.integers(3))
            cls, ref = [(RX, np_rx), (RY, np_ry), (RZ, np_rz)][self.s.integers(3)]
            return Spec(
                (t, q),
                [self.angle()],
                lambda th: Controlled(cls(th, wires=q), [t], [v]),
                lambda th: controlled_ref(ref(th), (3,), (v,)),
                None,
            )
        a, b = (q, t) if self.s.random() < 0.5 else (t, q)
        u = haar(6, self.p)
        return Spec((a, b), [], lambda: Unitary(u, wires=[a, b]), lambda: u, None)

    # -- channels -------------------------------------------------------------------------
    def qutrit_channel(self) -> Spec:
        (w,) = self.pick(self.q3, 1)
        kinds = ["depolarizing", "amplitude", "tritflip"] + (["kraus"] if self.fixed_kraus else [])
        kind = str(self.s.choice(kinds))
        if kind == "depolarizing":
            return Spec(
                (w,),
                [self.prob(1.0)],
                lambda p: Depolarizing(9 * p / 8, wires=w),
                lambda p: np.stack(qml.QutritDepolarizingChannel.compute_kraus_matrices(p)),
                lambda p: qml.QutritDepolarizingChannel(p, wires=w),
                channel=True,
            )
        if kind == "amplitude":
            return Spec(
                (w,),
                [self.prob(1.0), self.prob(1.0)],
                lambda g1, g2: AmplitudeDamping(g1, g2, wires=w),
                lambda g1, g2: np.stack(
                    qml.QutritAmplitudeDamping.compute_kraus_matrices(g1, 0.0, g2)
                ),
                lambda g1, g2: qml.QutritAmplitudeDamping(g1, 0.0, g2, wires=w),
                channel=True,
            )
        if kind == "tritflip":
            return Spec(
                (w,),
                [self.prob(1 / 3), self.prob(1 / 3), self.prob(1 / 3)],
                lambda a, b, c: TritFlip(a, b, c, wires=w),
                lambda a, b, c: np.stack(qml.TritFlip.compute_kraus_matrices(a, b, c)),
                lambda a, b, c: qml.TritFlip(a, b, c, wires=w),
                channel=True,
            )
        g = self.p.uniform(0, 0.5, size=3)
        ks = np.stack(qml.QutritAmplitudeDamping.compute_kraus_matrices(*g))
        return Spec(
            (w,),
            [],
            lambda: Kraus(ks, wires=w),
            lambda: ks,
            lambda: qml.QutritAmplitudeDamping(*g, wires=w),
            channel=True,
        )

    def qubit_channel(self) -> Spec:
        (w,) = self.pick(self.q2, 1)
        kind = str(self.s.choice(sorted(QSEM_QUBIT_CHANNEL)))
        cls = QSEM_QUBIT_CHANNEL[kind]
        return Spec(
            (w,),
            [self.prob(1.0)],
            lambda p: cls(p, wires=w),
            lambda p: qubit_kraus(kind, p),
            None,
            channel=True,
        )

    # -- drawing --------------------------------------------------------------------------
    def op(self) -> Spec:
        choices: list[Callable[[], Spec]] = []
        n3, n2 = len(self.q3), len(self.q2)
        if n3:
            choices += [self.qutrit_1] * 3
        if n3 >= 2:
            choices += [self.qutrit_2] * 3
        if n3 >= 3:
            choices += [self.qutrit_3]
        if n2:
            choices += [self.qubit_1] * 2
        if n2 >= 2:
            choices += [self.qubit_2] * 2
        if n2 and n3:
            choices += [self.mixed] * 3
        if self.channels:
            if n3:
                choices += [self.qutrit_channel] * 2
            if n2:
                choices += [self.qubit_channel]
        return choices[self.s.integers(len(choices))]()

    def circuit(self, depth: int) -> list[Spec]:
        specs = []
        if self.q3:  # start from a spread-out state so every later gate matters
            specs += [self._qutrit_1_base(w, "unitary") for w in self.q3]
        if self.q2:
            specs += [
                Spec(
                    (w,),
                    [self.angle(), self.angle(), self.angle()],
                    lambda a, b, c, w=w: U3(a, b, c, wires=w),
                    np_u3,
                    None,
                )
                for w in self.q2
            ]
        return specs + [self.op() for _ in range(depth)]


# ---------------------------------------------------------------------------------------------
# Runners: qsem, numpy reference, PennyLane
# ---------------------------------------------------------------------------------------------
def element(values: list[Any], b: int | None) -> list[Any]:
    return [float(v) if b is None else float(v[b]) for v in values]


def run_qsem(dims: tuple[int, ...], specs: list[Spec], mode: str, b: int | None = None):  # type: ignore[no-untyped-def]
    """Run with batched tensors as given (``b=None``) or batch element ``b`` alone."""
    ops = []
    for s in specs:
        if b is None:
            vals = [torch.as_tensor(v, dtype=torch.float64) for v in s.params]
        else:
            vals = element(s.params, b)
        ops.append(s.qsem(*vals))
    return TorchSimulator(mode, dtype=DT).run(Circuit(list(dims), ops))


def apply_local(
    t: np.ndarray, local: np.ndarray, wires: tuple[int, ...], dims: tuple[int, ...]
) -> np.ndarray:
    """Apply ``local`` on axes ``wires`` of ``t`` (shape ``dims + extra``)."""
    k = len(wires)
    t = np.moveaxis(t, list(wires), list(range(k)))
    shape = t.shape
    t = (local @ t.reshape(local.shape[1], -1)).reshape(shape)
    return np.moveaxis(t, list(range(k)), list(wires))


def full_op(local: np.ndarray, wires: tuple[int, ...], dims: tuple[int, ...]) -> np.ndarray:
    dim = math.prod(dims)
    eye = np.eye(dim, dtype=complex).reshape(*dims, dim)
    return apply_local(eye, np.asarray(local, dtype=complex), wires, dims).reshape(dim, dim)


def run_ref(dims: tuple[int, ...], specs: list[Spec], dm: bool, b: int | None = None) -> np.ndarray:
    """Full-register numpy simulation: statevector (D,) or density matrix (D, D)."""
    dim = math.prod(dims)
    psi = np.zeros(dim, dtype=complex)
    psi[0] = 1
    rho = np.outer(psi, psi.conj())
    for s in specs:
        m = np.asarray(s.ref(*element(s.params, b)), dtype=complex)
        if s.channel:
            assert dm
            ks = [full_op(k, s.wires, dims) for k in m]
            rho = sum(k @ rho @ k.conj().T for k in ks)
        else:
            f = full_op(m, s.wires, dims)
            psi, rho = f @ psi, f @ rho @ f.conj().T
    return rho if dm else psi


def np_partial_trace(rho: np.ndarray, dims: tuple[int, ...], keep: list[int]) -> np.ndarray:
    """Reduced density matrix on ``keep`` (in that order)."""
    n = len(dims)
    t = rho.reshape(dims + dims)
    rest = [w for w in range(n) if w not in keep]
    t = np.transpose(t, keep + rest + [n + w for w in keep] + [n + w for w in rest])
    dk, dr = math.prod(dims[w] for w in keep), math.prod(dims[w] for w in rest)
    return np.einsum("arbr->ab", t.reshape(dk, dr, dk, dr))


def np_probs(rho: np.ndarray, dims: tuple[int, ...], keep: list[int]) -> np.ndarray:
    return np.diag(np_partial_trace(rho, dims, keep)).real


def embed(local: np.ndarray, ldims: tuple[int, ...], leak: float = 1.0) -> np.ndarray:
    """``local`` on the levels ``< ldims`` of len(ldims) qutrits; ``leak`` · I elsewhere."""
    k = len(ldims)
    out = leak * np.eye(3**k, dtype=complex)
    valid = [
        int(np.ravel_multi_index(c, (3,) * k))
        for c in itertools.product(*[range(d) for d in ldims])
    ]
    out[np.ix_(valid, valid)] = local
    return out


def valid_indices(dims: tuple[int, ...]) -> list[int]:
    """Indices of the mixed register's basis states inside the all-qutrit register."""
    n = len(dims)
    return [
        int(np.ravel_multi_index(c, (3,) * n)) for c in itertools.product(*[range(d) for d in dims])
    ]


@functools.cache
def pl_device(name: str, n: int) -> Any:
    return qml.device(name, wires=n)


def run_pl(
    dims: tuple[int, ...],
    specs: list[Spec],
    dm: bool,
    measure: Callable[[], Any],
    b: int | None = None,
) -> Any:
    """Run on default.qutrit(.mixed); qubits become qutrits restricted to levels 0, 1."""

    def qfunc() -> Any:
        for s in specs:
            vals = element(s.params, b)
            ldims = tuple(dims[w] for w in s.wires)
            if s.pl is not None and all(d == 3 for d in ldims):
                s.pl(*vals)
            elif s.channel:
                ks = np.asarray(s.ref(*vals), dtype=complex)
                kl = [embed(k, ldims, leak=1.0 if i == 0 else 0.0) for i, k in enumerate(ks)]
                qml.QutritChannel(kl, wires=list(s.wires))
            else:
                qml.QutritUnitary(
                    embed(np.asarray(s.ref(*vals), dtype=complex), ldims), wires=list(s.wires)
                )
        return measure()

    dev = pl_device("default.qutrit.mixed" if dm else "default.qutrit", len(dims))
    return qml.QNode(qfunc, dev)()


def pl_sv_density_matrix(dims: tuple[int, ...], specs: list[Spec], wires: list[int]) -> np.ndarray:
    """``qml.density_matrix(wires)`` on default.qutrit, in the order of ``wires``.

    default.qutrit (a legacy device) returns the reduced state on the wires in sorted order,
    whatever order they are given in (default.qutrit.mixed keeps the given order): ask for
    the sorted wires and permute the axes here.
    """
    srt = sorted(wires)
    rdm = np.asarray(run_pl(dims, specs, False, lambda: qml.density_matrix(wires=srt)))
    k = len(wires)
    ldims = tuple(dims[w] for w in srt)
    perm = [srt.index(w) for w in wires]
    t = rdm.reshape(ldims + ldims).transpose(perm + [k + i for i in perm])
    dk = math.prod(ldims)
    return t.reshape(dk, dk)


def total_phase(specs: list[Spec]) -> complex:
    return complex(np.prod([s.phase for s in specs if not s.channel]))


def assert_close(actual: Any, expected: Any, atol: float = ATOL_F64) -> None:
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = (
        expected.detach().cpu().numpy()
        if isinstance(expected, torch.Tensor)
        else np.asarray(expected)
    )
    assert a.shape == e.shape, (a.shape, e.shape)
    np.testing.assert_allclose(a, e, rtol=0, atol=atol)


def draw_measurements(
    dims: tuple[int, ...], rng: np.random.Generator
) -> tuple[list[int], list[int], int, list[tuple[int, int]]]:
    """Random wire order for probs, a random wire subset for the RDM, one wire, Gell-Mann obs."""
    n = len(dims)
    order = [int(w) for w in rng.permutation(n)[: max(1, int(rng.integers(1, n + 1)))]]
    sub = [int(w) for w in rng.permutation(n)[: int(rng.integers(1, n + 1))]]
    one = int(rng.integers(n))
    gm = [(w, int(rng.integers(1, 9))) for w in range(n) if dims[w] == 3]
    return order, sub, one, gm


def vn_entropy_np(rho: np.ndarray, base: float) -> float:
    ev = np.clip(np.linalg.eigvalsh(rho), 0, None)
    ev = ev[ev > 1e-15]
    return float(-(ev * np.log(ev)).sum() / math.log(base))


# ---------------------------------------------------------------------------------------------
# Gate and channel conventions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", SUBSPACES)
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_gate_matrices_match_pennylane(axis: str, sub: tuple[int, int]) -> None:
    for theta in (0.0, 0.37, -1.9, np.pi, 5.1):
        ours = QSEM_ROT[axis](theta, wires=0, subspace=sub).concrete_matrix((3,))
        assert_close(ours, getattr(qml, PL_ROT[axis]).compute_matrix(theta, subspace=sub))
    assert_close(TShift(wires=0).concrete_matrix((3,)), qml.TShift.compute_matrix())
    assert_close(TClock(wires=0).concrete_matrix((3,)), qml.TClock.compute_matrix())
    assert_close(-1j * THadamard(wires=0).concrete_matrix((3,)), qml.THadamard.compute_matrix())
    assert_close(TAdd(wires=[0, 1]).concrete_matrix((3, 3)), qml.TAdd.compute_matrix())
    assert_close(TSWAP(wires=[0, 1]).concrete_matrix((3, 3)), qml.TSWAP.compute_matrix())
    for i in range(1, 9):
        assert_close(GellMann(i, wires=0).matrix((3,), dtype=DT), qml.GellMann.compute_matrix(i))


def superop(ks: Any) -> np.ndarray:
    ks = np.asarray(ks.detach() if isinstance(ks, torch.Tensor) else ks, dtype=complex)
    return sum(np.kron(k, k.conj()) for k in ks)


@pytest.mark.parametrize("p", [0.0, 0.13, 0.5, 8 / 9, 1.0])
def test_channel_parameter_mapping(p: float) -> None:
    """qsem's Kraus sets give PennyLane's channels under the mapping in the module docstring."""

    def t(x: float) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64)

    ours = Depolarizing(9 * p / 8, wires=0).kraus([t(9 * p / 8)], (3,), dtype=DT)
    assert_close(superop(ours), superop(qml.QutritDepolarizingChannel.compute_kraus_matrices(p)))
    # PennyLane regularises sqrt(x) as sqrt(x + 1e-14): at γ = 1 its Kraus entries are off by
    # 1e-7, so γ stays below 1 here.
    g1, g2 = 0.9 * p, 0.95 - 0.7 * p
    ours = AmplitudeDamping(g1, g2, wires=0).kraus([t(g1), t(g2)], (3,), dtype=DT)
    assert_close(
        superop(ours), superop(qml.QutritAmplitudeDamping.compute_kraus_matrices(g1, 0.0, g2))
    )
    f = (p / 3, p / 4, p / 5)
    ours = TritFlip(*f, wires=0).kraus([t(x) for x in f], (3,), dtype=DT)
    assert_close(superop(ours), superop(qml.TritFlip.compute_kraus_matrices(*f)))
    if p == 8 / 9:  # PennyLane p = 8/9 is complete depolarisation: ρ -> I/3 (qsem p = 1)
        rho = np.diag([1.0, 0, 0]).astype(complex)
        out = sum(
            k @ rho @ k.conj().T for k in qml.QutritDepolarizingChannel.compute_kraus_matrices(p)
        )
        assert_close(out, np.eye(3) / 3)


# ---------------------------------------------------------------------------------------------
# Random qutrit circuits
# ---------------------------------------------------------------------------------------------
MIXED_DIMS = [(2, 3), (3, 2), (2, 3, 3), (3, 2, 3), (3, 3, 2), (2, 2, 3), (2, 3, 2)]
#: family -> (number of seeds, seed offset, channels)
FAMILIES = {
    "qutrit": (40, 1000, False),
    "qutrit_noisy": (30, 2000, True),
    "mixed": (25, 3000, False),
    "mixed_noisy": (20, 4000, True),
}


def random_case(family: str, seed: int) -> tuple[tuple[int, ...], list[Spec], np.random.Generator]:
    """Dims, ops and the (advanced) generator of one random circuit of a family."""
    _, offset, channels = FAMILIES[family]
    rng = np.random.default_rng(offset + seed)
    if family.startswith("qutrit"):
        dims: tuple[int, ...] = (3,) * (1 + seed % 3)
        depth = 6 + seed % (4 if channels else 5)
    else:
        dims = MIXED_DIMS[seed % len(MIXED_DIMS)]
        depth = 8
    return dims, Gen(dims, rng, rng, channels=channels).circuit(depth=depth), rng


@pytest.mark.parametrize("seed", range(FAMILIES["qutrit"][0]))
def test_random_qutrit_statevector(seed: int) -> None:
    dims, specs, rng = random_case("qutrit", seed)
    state = run_qsem(dims, specs, "statevector")
    pl_state = run_pl(dims, specs, False, qml.state)
    assert_close(state.vector * total_phase(specs), pl_state)
    assert_close(state.vector, run_ref(dims, specs, dm=False))
    # the density-matrix path of the engine gives |ψ><ψ| on the same circuit
    assert_close(run_qsem(dims, specs, "density_matrix").density_matrix, state.density_matrix)

    order, sub, one, gm = draw_measurements(dims, rng)
    # separate QNodes: default.qutrit (legacy device) returns probs in the rotated basis of a
    # non-diagonal observable measured in the same QNode
    assert_close(
        probs(state, wires=order), run_pl(dims, specs, False, lambda: qml.probs(wires=order))
    )
    pl_e = run_pl(dims, specs, False, lambda: [qml.expval(qml.GellMann(w, i)) for w, i in gm])
    assert_close(expval(state, [GellMann(i, wires=w) for w, i in gm]), np.array(pl_e))
    pl_rdm = pl_sv_density_matrix(dims, specs, sub)
    assert_close(reduced_density_matrix(state, sub), pl_rdm)
    rdm1 = run_pl(dims, specs, False, lambda: qml.density_matrix(wires=[one]))
    assert_close(purity(state, [one]), qml.math.purity(rdm1, indices=[0]))
    assert_close(entropy(state, [one]), qml.math.vn_entropy(rdm1, indices=[0], base=2))
    assert_close(entropy(state, [one], base=math.e), qml.math.vn_entropy(rdm1, indices=[0]))
    assert_close(entropy(state, sub, base=3), vn_entropy_np(np.asarray(pl_rdm), 3))


@pytest.mark.parametrize("seed", range(FAMILIES["qutrit_noisy"][0]))
def test_random_qutrit_density_matrix(seed: int) -> None:
    dims, specs, rng = random_case("qutrit_noisy", seed)
    state = run_qsem(dims, specs, "density_matrix")
    order, sub, one, gm = draw_measurements(dims, rng)
    pl_rho, pl_p, pl_rdm, pl_rdm1, *pl_e = run_pl(
        dims,
        specs,
        True,
        lambda: (
            [
                qml.state(),
                qml.probs(wires=order),
                qml.density_matrix(wires=sub),
                qml.density_matrix(wires=[one]),
            ]
            + [qml.expval(qml.GellMann(w, i)) for w, i in gm]
        ),
    )
    assert_close(state.density_matrix, pl_rho)
    assert_close(state.density_matrix, run_ref(dims, specs, dm=True))
    assert_close(probs(state, wires=order), pl_p)
    assert_close(expval(state, [GellMann(i, wires=w) for w, i in gm]), np.array(pl_e))
    assert_close(reduced_density_matrix(state, sub), pl_rdm)
    assert_close(purity(state, [one]), qml.math.purity(pl_rdm1, indices=[0]))
    assert_close(purity(state), np.trace(pl_rho @ pl_rho).real)
    assert_close(entropy(state, [one]), qml.math.vn_entropy(pl_rdm1, indices=[0], base=2))
    assert_close(entropy(state, sub, base=math.e), vn_entropy_np(np.asarray(pl_rdm), math.e))
    assert_close(entropy(state), vn_entropy_np(np.asarray(pl_rho), 2))


# ---------------------------------------------------------------------------------------------
# Mixed qubit/qutrit circuits
# ---------------------------------------------------------------------------------------------
def mixed_observables(
    dims: tuple[int, ...], rng: np.random.Generator
) -> tuple[list[Any], list[np.ndarray]]:
    """Gell-Mann on qutrits, Paulis on qubits: qsem observables and full-register matrices."""
    obs, mats = [], []
    for w, d in enumerate(dims):
        if d == 3:
            i = int(rng.integers(1, 9))
            obs.append(GellMann(i, wires=w))
            mats.append(full_op(qml.GellMann.compute_matrix(i), (w,), dims))
        else:
            p = str(rng.choice(["X", "Y", "Z"]))
            obs.append(PauliString(p, wires=[w]))
            mats.append(full_op(NP_FIXED_QUBIT[p], (w,), dims))
    q2 = _wires_of(dims, 2)
    if len(q2) == 2:
        obs.append(PauliString("XY", wires=q2))
        mats.append(full_op(np.kron(NP_FIXED_QUBIT["X"], NP_FIXED_QUBIT["Y"]), tuple(q2), dims))
    return obs, mats


def check_mixed_measurements(
    state: Any, rho: np.ndarray, dims: tuple[int, ...], rng: np.random.Generator
) -> None:
    order, sub, one, _ = draw_measurements(dims, rng)
    assert_close(probs(state, wires=order), np_probs(rho, dims, order))
    assert_close(probs(state), np.diag(rho).real)
    assert_close(reduced_density_matrix(state, sub), np_partial_trace(rho, dims, sub))
    r1 = np_partial_trace(rho, dims, [one])
    assert_close(purity(state, [one]), np.trace(r1 @ r1).real)
    assert_close(entropy(state, [one]), vn_entropy_np(r1, 2))
    rs = np_partial_trace(rho, dims, sub)
    assert_close(entropy(state, sub, base=math.e), vn_entropy_np(rs, math.e))
    obs, mats = mixed_observables(dims, rng)
    assert_close(expval(state, obs), np.array([np.trace(m @ rho).real for m in mats]))


@pytest.mark.parametrize("seed", range(FAMILIES["mixed"][0]))
def test_random_mixed_statevector(seed: int) -> None:
    dims, specs, rng = random_case("mixed", seed)
    state = run_qsem(dims, specs, "statevector")
    ref = run_ref(dims, specs, dm=False)
    assert_close(state.vector, ref)
    # default.qutrit with the qubits embedded: same amplitudes, nothing on leakage levels
    pl_state = np.asarray(run_pl(dims, specs, False, qml.state)) / total_phase(specs)
    valid = valid_indices(dims)
    assert_close(state.vector, pl_state[valid])
    assert np.linalg.norm(np.delete(pl_state, valid)) < ATOL_F64
    assert_close(run_qsem(dims, specs, "density_matrix").density_matrix, np.outer(ref, ref.conj()))
    check_mixed_measurements(state, np.outer(ref, ref.conj()), dims, rng)


@pytest.mark.parametrize("seed", range(FAMILIES["mixed_noisy"][0]))
def test_random_mixed_density_matrix(seed: int) -> None:
    dims, specs, rng = random_case("mixed_noisy", seed)
    state = run_qsem(dims, specs, "density_matrix")
    ref = run_ref(dims, specs, dm=True)
    assert_close(state.density_matrix, ref)
    pl_rho = np.asarray(run_pl(dims, specs, True, qml.state))
    valid = valid_indices(dims)
    assert_close(state.density_matrix, pl_rho[np.ix_(valid, valid)])
    assert abs(np.trace(pl_rho).real - np.trace(pl_rho[np.ix_(valid, valid)]).real) < ATOL_F64
    check_mixed_measurements(state, ref, dims, rng)


# ---------------------------------------------------------------------------------------------
# Other measurements and inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [[0, 2], [2, 1], [1, 0, 2], [2, 2, 2]])
def test_basis_initial_state(levels: list[int]) -> None:
    rng = np.random.default_rng(sum(levels) + len(levels))
    dims = (3,) * len(levels)
    specs = Gen(dims, rng, rng).circuit(depth=4)[len(dims) :]  # no spreading layer
    circ = Circuit(list(dims), [s.qsem(*s.params) for s in specs])
    state = TorchSimulator(dtype=DT).run(circ, initial_state=levels)

    def qfunc() -> Any:
        qml.QutritBasisState(levels, wires=range(len(dims)))
        for s in specs:
            s.pl(*s.params)  # type: ignore[misc]
        return qml.state()

    pl_state = qml.QNode(qfunc, pl_device("default.qutrit", len(dims)))()
    assert_close(state.vector * total_phase(specs), pl_state)


def test_gellmann_all_indices_and_wire_orders() -> None:
    rng = np.random.default_rng(7)
    dims = (3, 3)
    specs = Gen(dims, rng, rng).circuit(depth=5)
    state = run_qsem(dims, specs, "statevector")
    obs = [(w, i) for w in range(2) for i in range(1, 9)]
    res = run_pl(dims, specs, False, lambda: [qml.expval(qml.GellMann(w, i)) for w, i in obs])
    ours = expval(state, [GellMann(i, wires=w) for w, i in obs])
    assert ours.shape == (16,)
    assert_close(ours, np.array(res))
    for order in ([0], [1], [0, 1], [1, 0]):
        assert_close(
            probs(state, order), run_pl(dims, specs, False, lambda o=order: qml.probs(wires=o))
        )
        assert_close(reduced_density_matrix(state, order), pl_sv_density_matrix(dims, specs, order))
        pl_rdm = run_pl(dims, specs, True, lambda o=order: qml.density_matrix(wires=o))
        assert_close(reduced_density_matrix(state, order), pl_rdm)


# ---------------------------------------------------------------------------------------------
# Batched parameters: one run with B parameter sets equals B runs
# ---------------------------------------------------------------------------------------------
BATCH_CASES = [
    ((3, 3), False),
    ((3, 3), True),
    ((3,), True),
    ((3, 3, 3), False),
    ((2, 3), False),
    ((3, 2), True),
    ((2, 3, 3), True),
    ((3, 3), True),
]


@pytest.mark.parametrize(("case", "seed"), [(c, s) for s, c in enumerate(BATCH_CASES)])
def test_batched_equals_separate_runs(case: tuple[tuple[int, ...], bool], seed: int) -> None:
    dims, dm = case
    batch = 4
    rng = np.random.default_rng(5000 + seed)
    specs = Gen(dims, rng, rng, batch=batch, channels=dm).circuit(depth=7)
    assert any(s.params for s in specs)
    mode = "density_matrix" if dm else "statevector"
    state = run_qsem(dims, specs, mode)
    full = state.density_matrix if dm else state.vector
    assert full.shape[0] == batch
    qutrit_only = all(d == 3 for d in dims)
    obs = [
        GellMann(3, wires=w) if d == 3 else PauliString("Z", wires=[w]) for w, d in enumerate(dims)
    ]
    ev = expval(state, obs)
    assert ev.shape == (batch, len(dims))
    assert probs(state, [len(dims) - 1]).shape == (batch, dims[-1])
    for b in range(batch):
        one = run_qsem(dims, specs, mode, b=b)
        assert_close(full[b], one.density_matrix if dm else one.vector)
        assert_close(ev[b], expval(one, obs))
        assert_close(full[b], run_ref(dims, specs, dm, b=b))
        if qutrit_only:
            pl = np.asarray(run_pl(dims, specs, dm, qml.state, b=b))
            assert_close(full[b] if dm else full[b] * total_phase(specs), pl)


def test_random_circuits_cover_the_gate_set() -> None:
    """The seeds above draw every gate, subspace and channel this file is meant to compare."""
    seen: set[str] = set()

    def note(op: Any) -> None:
        name = type(op).__name__
        if name.startswith("Subspace"):
            name += str(op.subspace)
        seen.add(name)
        if name == "Controlled":
            seen.add(f"C[{type(op.base).__name__}, dims of control {len(op.control_wires)}]")

    for family, (n, _, _) in FAMILIES.items():
        for seed in range(n):
            for s in random_case(family, seed)[1]:
                note(s.qsem(*s.params))
    required = {f"Subspace{a}{sub}" for a in ("RX", "RY", "RZ") for sub in SUBSPACES}
    required |= {"Shift", "Clock", "Fourier", "Add", "SWAP", "Unitary", "Controlled", "Adjoint"}
    required |= {"RX", "RY", "RZ", "U3", "PhaseShift", "CNOT", "CZ", "CRX", "CRY", "CRZ", "CSWAP"}
    required |= {"Depolarizing", "AmplitudeDamping", "TritFlip", "Kraus", "BitFlip", "PhaseDamping"}
    required |= {"C[Unitary, dims of control 2]", "C[SWAP, dims of control 1]"}
    required |= {f"C[Subspace{a}, dims of control 1]" for a in ("RX", "RY", "RZ")}
    assert required <= seen, sorted(required - seen)
