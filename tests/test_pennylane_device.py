"""``qml.device("qsem")`` against PennyLane 0.45's own devices: random circuits.

200 seeded random circuits (50 per kind) run as the same QNode on qsem's device and on
a reference, in complex128, values and gradients to ``ATOL_PL_DEVICE`` (1e-10):

* qubit -> ``default.qubit``; noisy qubit (channels) -> ``default.mixed``;
* qutrit -> ``default.qutrit``; noisy qutrit -> ``default.qutrit.mixed``;
* mixed qubit/qutrit, with qubits controlling qutrit rotations through ``qml.ctrl``
  (no PennyLane device runs it) -> a NumPy simulator written here from PennyLane's own
  operation matrices (``qml.matrix``; the controlled ones assembled here), gradients by
  central finite differences.

Each circuit measures ``expval`` of a random observable (Pauli word / Hermitian / sum,
or Gell-Mann / THermitian products), ``var`` and marginal ``probs``; the gradient is
of the expectation value with respect to every gate angle (torch backprop on both
sides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pennylane as qml
import pytest
import torch
from conftest import ATOL_PL_DEVICE, FD_ATOL, FD_STEP

KINDS = ("qubit", "noisy_qubit", "qutrit", "noisy_qutrit", "mixed")
REFERENCE = {
    "qubit": "default.qubit",
    "noisy_qubit": "default.mixed",
    "qutrit": "default.qutrit",
    "noisy_qutrit": "default.qutrit.mixed",
}
SEEDS = range(40)  # 40 x 5 kinds = 200 circuits

QUBIT_1 = ["RX", "RY", "RZ", "PhaseShift", "Hadamard", "S", "T", "PauliX", "PauliY", "Rot", "U3"]
QUBIT_2 = ["CNOT", "CZ", "CRX", "CRY", "CRZ", "SWAP", "IsingXX", "CY"]
QUTRIT_1 = ["TRX", "TRY", "TRZ", "TShift", "TClock", "THadamard", "QutritUnitary"]
QUTRIT_2 = ["TAdd", "TSWAP", "ControlledQutritUnitary"]
N_PARAMS = {"RX": 1, "RY": 1, "RZ": 1, "PhaseShift": 1, "Rot": 3, "U3": 3, "CRX": 1,
            "CRY": 1, "CRZ": 1, "IsingXX": 1, "TRX": 1, "TRY": 1, "TRZ": 1}  # fmt: skip
SUBSPACES = [(0, 1), (0, 2), (1, 2)]


def _unitary(d: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def _hermitian(d: int, rng: np.random.Generator) -> np.ndarray:
    z = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    return (z + z.conj().T) / 2


class RandomCircuit:
    """A seeded random circuit: a list of op builders, an observable, probs wires."""

    def __init__(self, kind: str, seed: int) -> None:
        rng = np.random.default_rng(1000 * KINDS.index(kind) + seed)
        self.kind = kind
        self.n = int(rng.integers(2, 4))
        if kind == "mixed":
            dims = [2, 3] + [int(rng.choice([2, 3])) for _ in range(self.n - 2)]
            self.dims = [dims[k] for k in rng.permutation(self.n)]
        else:
            self.dims = [3 if "qutrit" in kind else 2] * self.n
        self.steps: list[tuple[str, list[int], int, Any]] = []  # name, wires, n params, extra
        for _ in range(int(rng.integers(4, 9))):
            self._add_gate(rng)
            if "noisy" in kind and rng.random() < 0.5:
                self._add_channel(rng)
        self.n_params = sum(s[2] for s in self.steps)
        self.params = rng.uniform(-np.pi, np.pi, size=self.n_params)
        self.obs_spec = self._observable(rng)
        self.probs_wires = sorted(rng.choice(self.n, size=int(rng.integers(1, 3)), replace=False))

    def _add_gate(self, rng: np.random.Generator) -> None:
        if self.kind == "mixed" and rng.random() < 0.3:  # a qubit controlling a qutrit gate
            c = int(rng.choice([x for x in range(self.n) if self.dims[x] == 2]))
            t = int(rng.choice([x for x in range(self.n) if self.dims[x] == 3]))
            base = str(rng.choice(["TRX", "TRY", "TRZ"]))
            extra = (base, SUBSPACES[int(rng.integers(3))], int(rng.integers(2)))
            self.steps.append(("CtrlQutrit", [c, t], 1, extra))
            return
        w = int(rng.integers(self.n))
        d = self.dims[w]
        others = [x for x in range(self.n) if self.dims[x] == d and x != w]
        two = others and rng.random() < 0.4
        if d == 2:
            name = str(rng.choice(QUBIT_2 if two else QUBIT_1))
        else:
            name = str(rng.choice(QUTRIT_2 if two else QUTRIT_1))
        wires = [w, int(rng.choice(others))] if two else [w]
        extra: Any = None
        if name in ("TRX", "TRY", "TRZ"):
            extra = SUBSPACES[int(rng.integers(3))]
        elif name == "THadamard":
            extra = [None, *SUBSPACES][int(rng.integers(4))]
        elif name == "QutritUnitary":
            extra = _unitary(3, rng)
        elif name == "ControlledQutritUnitary":
            extra = (_unitary(3, rng), str(int(rng.integers(3))))
        self.steps.append((name, wires, N_PARAMS.get(name, 0), extra))

    def _add_channel(self, rng: np.random.Generator) -> None:
        w = int(rng.integers(self.n))
        if self.dims[w] == 2:
            name = str(rng.choice(["DepolarizingChannel", "AmplitudeDamping", "PhaseDamping",
                                   "BitFlip", "QubitChannel"]))  # fmt: skip
            ps = [float(rng.uniform(0, 0.3))]
        else:
            name = str(rng.choice(["QutritDepolarizingChannel", "QutritAmplitudeDamping",
                                   "TritFlip", "QutritChannel"]))  # fmt: skip
            ps = [float(x) for x in rng.uniform(0, 0.3, size=1 if "Depol" in name else 3)]
            if name == "QutritAmplitudeDamping" and rng.random() < 0.5:
                ps[1] = 0.0  # the form with a qsem AmplitudeDamping of its own
        if name in ("QubitChannel", "QutritChannel"):
            d = self.dims[w]
            u = _unitary(2 * d, rng)[:, :d]  # isometry -> two Kraus operators
            ps = [u[:d], u[d:]]
        self.steps.append((name, [w], 0, ps))

    def _observable(
        self, rng: np.random.Generator
    ) -> list[tuple[float, list[tuple[str, int, Any]]]]:
        """Sum of products: [(coeff, [(kind, wire, matrix), ...]), ...]."""
        terms = []
        for _ in range(int(rng.integers(1, 3))):
            wires = rng.choice(self.n, size=int(rng.integers(1, 3)), replace=False)
            factors = []
            for w in wires:
                w = int(w)
                if self.dims[w] == 2:
                    k = str(rng.choice(["X", "Y", "Z", "Hermitian"]))
                    factors.append((k, w, _hermitian(2, rng) if k == "Hermitian" else None))
                else:
                    k = str(rng.choice(["GellMann", "THermitian"]))
                    m = int(rng.integers(1, 9)) if k == "GellMann" else _hermitian(3, rng)
                    factors.append((k, w, m))
            terms.append((float(rng.uniform(-1, 1)), factors))
        return terms

    # -- PennyLane form -------------------------------------------------------------
    def apply(self, params: Any) -> None:
        k = 0
        for name, wires, np_, extra in self.steps:
            p = [params[k + j] for j in range(np_)]
            k += np_
            if name in ("TRX", "TRY", "TRZ"):
                getattr(qml, name)(*p, wires=wires, subspace=extra)
            elif name == "CtrlQutrit":
                base = getattr(qml, extra[0])(*p, wires=wires[1], subspace=extra[1])
                qml.ctrl(base, control=wires[0], control_values=[extra[2]])
            elif name == "THadamard":
                qml.THadamard(wires=wires, subspace=extra)
            elif name == "QutritUnitary":
                qml.QutritUnitary(extra, wires=wires)
            elif name == "ControlledQutritUnitary":
                qml.ControlledQutritUnitary(
                    extra[0], control_wires=wires[:1], wires=wires[1:], control_values=extra[1]
                )
            elif name in ("QubitChannel", "QutritChannel"):
                getattr(qml, name)(extra, wires=wires)
            elif extra is not None:  # other channels
                getattr(qml, name)(*extra, wires=wires)
            else:
                getattr(qml, name)(*p, wires=wires)

    def term(self, k: int) -> Any:
        """Term ``k`` of the observable, without its coefficient (a product of factors)."""
        ops = []
        for kind, w, m in self.obs_spec[k][1]:
            if kind in ("X", "Y", "Z"):
                ops.append(getattr(qml, "Pauli" + kind)(w))
            elif kind == "Hermitian":
                ops.append(qml.Hermitian(m, wires=w))
            elif kind == "GellMann":
                ops.append(qml.GellMann(w, m))
            else:
                ops.append(qml.THermitian(m, wires=w))
        return ops[0] if len(ops) == 1 else qml.prod(*ops)

    def observable(self) -> Any:
        """``Σ_k c_k term_k`` (a Sum of SProds)."""
        return qml.sum(*[c * self.term(k) for k, (c, _) in enumerate(self.obs_spec)])

    @property
    def coeffs(self) -> list[float]:
        return [c for c, _ in self.obs_spec]

    def qnode(
        self, device: Any, what: str, interface: str = "torch", diff: str | None = None
    ) -> Callable[..., Any]:
        """``what``: "sum" (expval and var of the sum, probs) or "terms" (expval of each
        term, var of term 0, probs: PennyLane's qutrit devices measure no sums)."""

        def qfunc(params: Any) -> Any:
            self.apply(params)
            if what == "sum":
                obs = self.observable()
                return qml.expval(obs), qml.var(obs), qml.probs(wires=self.probs_wires)
            terms = [qml.expval(self.term(k)) for k in range(len(self.obs_spec))]
            return (*terms, qml.var(self.term(0)), qml.probs(wires=self.probs_wires))

        # references (autograd): parameter shift (default.mixed's autograd backprop is NaN
        # through sqrt at 0)
        diff = diff or ("backprop" if interface == "torch" else "parameter-shift")
        return qml.QNode(qfunc, device, interface=interface, diff_method=diff)

    def loss(self, qnode: Callable[..., Any]) -> Callable[..., Any]:
        """``Σ_k c_k <term_k>`` from a "terms" QNode (differentiable in any interface)."""

        def f(params: Any) -> Any:
            out = qnode(params)
            return sum(c * out[k] for k, c in enumerate(self.coeffs))

        return f

    # -- independent NumPy reference for mixed dims --------------------------------------
    def numpy_results(self, params: np.ndarray) -> tuple[float, float, np.ndarray]:
        tape = qml.tape.make_qscript(self.apply)(params)
        psi = np.zeros(self.dims, dtype=np.complex128)
        psi[(0,) * self.n] = 1
        for op in tape.operations:
            w = list(op.wires)
            if op.name.startswith("C(T"):  # qubit-controlled qutrit gate: built here, since
                # PennyLane's own matrix of it assumes qubits (5 x 5)
                u = np.asarray(qml.matrix(op.base), dtype=np.complex128)
                proj = np.diag([1.0, 0.0] if not op.control_values[0] else [0.0, 1.0])
                mat = np.kron(proj, u) + np.kron(np.eye(2) - proj, np.eye(3))
            else:
                mat = np.asarray(qml.matrix(op, wire_order=w), dtype=np.complex128)
            psi = _apply(psi, mat, w, self.dims)
        obs_mat = self._obs_matrix()
        flat = psi.reshape(-1)
        ev = np.vdot(flat, obs_mat @ flat).real
        var = np.vdot(flat, obs_mat @ obs_mat @ flat).real - ev**2
        p = np.abs(psi) ** 2
        rest = tuple(x for x in range(self.n) if x not in self.probs_wires)
        marg = p.sum(axis=rest).reshape(-1)
        return float(ev), float(var), marg

    def _obs_matrix(self) -> np.ndarray:
        total = np.zeros((int(np.prod(self.dims)),) * 2, dtype=np.complex128)
        for c, factors in self.obs_spec:
            local = {}
            for k, w, m in factors:
                if k in ("X", "Y", "Z"):
                    local[w] = qml.matrix(getattr(qml, "Pauli" + k)(0))
                elif k == "GellMann":
                    local[w] = qml.matrix(qml.GellMann(0, m))
                else:
                    local[w] = m
            full = np.array([[1.0 + 0j]])
            for w in range(self.n):
                full = np.kron(full, local.get(w, np.eye(self.dims[w])))
            total += c * full
        return total


def _apply(psi: np.ndarray, mat: np.ndarray, wires: list[int], dims: list[int]) -> np.ndarray:
    """Apply ``mat`` (on ``wires``, first wire most significant) to the tensor ``psi``."""
    k = len(wires)
    sub = [dims[w] for w in wires]
    t = mat.reshape(sub + sub)
    out = np.tensordot(t, psi, axes=(list(range(k, 2 * k)), wires))
    return np.moveaxis(out, list(range(k)), wires)


def _close(a: Any, b: Any, atol: float) -> None:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, atol=atol, rtol=0)


CASES = [(k, s) for k in KINDS for s in SEEDS]


@pytest.mark.parametrize(("kind", "seed"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_random_circuit_values_and_gradients(kind: str, seed: int) -> None:
    rc = RandomCircuit(kind, seed)
    dev = qml.device("qsem", wires=rc.n)
    x = torch.tensor(rc.params, dtype=torch.float64, requires_grad=True)
    ours_sum = rc.qnode(dev, "sum")(x)
    ours_terms = rc.qnode(dev, "terms")(x)
    # the sum measured at once equals the sum of its terms measured apart
    _close(ours_sum[0], rc.loss(lambda _: ours_terms)(None), ATOL_PL_DEVICE)
    grad = torch.autograd.grad(ours_sum[0], x)[0] if rc.n_params else None
    if kind == "mixed":
        ref = rc.numpy_results(rc.params)
        for a, b in zip(ours_sum, ref, strict=True):
            _close(a, b, ATOL_PL_DEVICE)
        if grad is not None:
            fd = np.zeros(rc.n_params)
            for i in range(rc.n_params):
                e = np.zeros(rc.n_params)
                e[i] = FD_STEP
                fd[i] = rc.numpy_results(rc.params + e)[0] - rc.numpy_results(rc.params - e)[0]
                fd[i] /= 2 * FD_STEP
            _close(grad, fd, FD_ATOL)
        return
    # references run on NumPy/autograd (default.mixed's torch path loses precision: its
    # probabilities summed to 1 - 4e-9 on noisy_qubit-3)
    ref_dev = qml.device(REFERENCE[kind], wires=rc.n)
    y = qml.numpy.array(rc.params, requires_grad=True)
    ref_terms = rc.qnode(ref_dev, "terms", "autograd")
    for a, b in zip(ours_terms, ref_terms(y), strict=True):
        _close(a, b, ATOL_PL_DEVICE)
    if "qubit" in kind:  # sums measured at once: qubit devices only
        for a, b in zip(ours_sum, rc.qnode(ref_dev, "sum", "autograd")(y), strict=True):
            _close(a, b, ATOL_PL_DEVICE)
    if grad is not None:
        if kind == "qutrit":  # default.qutrit differentiates no THermitian (shift or backprop)
            mixed = qml.device("default.qutrit.mixed", wires=rc.n)
            ref_terms = rc.qnode(mixed, "terms", "autograd", "backprop")
        _close(grad, qml.grad(rc.loss(ref_terms))(y), ATOL_PL_DEVICE)


def test_random_circuits_cover_every_kind_of_operation() -> None:
    """The 200 circuits hold every gate, channel and observable kind listed above."""
    seen: set[str] = set()
    for kind, seed in CASES:
        rc = RandomCircuit(kind, seed)
        seen |= {s[0] for s in rc.steps}
        seen |= {f[0] for _, fs in rc.obs_spec for f in fs}
    channels = {"DepolarizingChannel", "AmplitudeDamping", "PhaseDamping", "BitFlip",
                "QubitChannel", "QutritDepolarizingChannel", "QutritAmplitudeDamping",
                "TritFlip", "QutritChannel"}  # fmt: skip
    wanted = set(QUBIT_1 + QUBIT_2 + QUTRIT_1 + QUTRIT_2) | channels
    wanted |= {"X", "Y", "Z", "Hermitian", "GellMann", "THermitian", "CtrlQutrit"}
    assert wanted <= seen, sorted(wanted - seen)
    assert len(CASES) >= 200
