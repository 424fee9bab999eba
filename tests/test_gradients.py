"""Gradients through the torch engine.

Expectation values and probabilities are differentiated with respect to gate
parameters (qubit, qutrit and mixed-dimension gates, controlled qutrit rotations),
channel parameters (depolarizing p, damping γ, flip probabilities) in
density-matrix mode, and batched inputs. References: central finite differences
(``FD_STEP`` / ``FD_ATOL``) and PennyLane 0.45 backprop (torch interface) on
``default.qubit`` / ``default.mixed`` / ``default.qutrit`` / ``default.qutrit.mixed``
for the same circuits. Channel conventions as in ``test_engine_pennylane.py``:
PennyLane ``DepolarizingChannel(3p/4)`` and ``QutritDepolarizingChannel(8p/9)`` are qsem
``Depolarizing(p)``; ``QutritAmplitudeDamping(γ1, 0, γ2)`` is ``AmplitudeDamping(γ1, γ2)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, FD_ATOL, FD_STEP, GRAD_ATOL_F32

from qsem.circuits import (
    CNOT,
    CRX,
    CRY,
    CRZ,
    RX,
    RY,
    RZ,
    TRX,
    TRY,
    TRZ,
    U3,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Controlled,
    Depolarizing,
    GellMann,
    H,
    Parameter,
    PauliString,
    PhaseDamping,
    PhaseShift,
    TAdd,
    THadamard,
    TritFlip,
    TShift,
)
from qsem.circuits.gates import Add
from qsem.simulators import TorchSimulator, expval, probs

qml = pytest.importorskip("pennylane")

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# Cases: the same circuit for qsem and PennyLane, as functions of a parameter vector
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """``ops(p)`` qsem operations and ``pl(p)`` PennyLane operations of parameters ``p[i]``."""

    name: str
    dims: tuple[int, ...]
    x0: list[float]
    ops: Callable[[Sequence[Any]], list[Any]]
    observables: list[Any]
    probs_wires: list[int]
    pl: Callable[[Sequence[Any]], None] | None
    pl_observables: Callable[[], list[Any]] = field(default=lambda: [])
    pl_device: str = ""
    mode: str = "statevector"


def _qubit_ops(p: Sequence[Any]) -> list[Any]:
    return [
        RX(p[0], wires=0),
        RY(p[1], wires=1),
        H(wires=2),
        U3(p[2], p[3], p[4], wires=2),
        CRX(p[5], wires=[0, 1]),
        PhaseShift(p[6], wires=1),
        CNOT(wires=[2, 1]),
        CRY(p[7], wires=[2, 0]),
        CRZ(p[8], wires=[0, 2]),
        RZ(p[9], wires=1),
        RY(p[0], wires=2),  # p[0] used twice: gradients accumulate
    ]


def _qubit_pl(p: Sequence[Any]) -> None:
    qml.RX(p[0], wires=0)
    qml.RY(p[1], wires=1)
    qml.Hadamard(wires=2)
    qml.U3(p[2], p[3], p[4], wires=2)
    qml.CRX(p[5], wires=[0, 1])
    qml.PhaseShift(p[6], wires=1)
    qml.CNOT(wires=[2, 1])
    qml.CRY(p[7], wires=[2, 0])
    qml.CRZ(p[8], wires=[0, 2])
    qml.RZ(p[9], wires=1)
    qml.RY(p[0], wires=2)


def _qutrit_ops(p: Sequence[Any]) -> list[Any]:
    return [
        TRX(p[0], wires=0, subspace=(0, 1)),
        TRY(p[1], wires=1, subspace=(0, 2)),
        THadamard(wires=0),
        TAdd(wires=[0, 1]),
        TRZ(p[2], wires=1, subspace=(1, 2)),
        Controlled(TRY(p[3], wires=1, subspace=(0, 1)), control_wires=[0], control_values=[2]),
        Controlled(TRX(p[4], wires=0, subspace=(1, 2)), control_wires=[1], control_values=[1]),
        TRY(p[5], wires=0, subspace=(1, 2)),
        TRZ(p[0], wires=0, subspace=(0, 2)),
        TShift(wires=1),
        TRX(p[6], wires=1, subspace=(0, 2)),
    ]


def _qutrit_pl(p: Sequence[Any]) -> None:
    qml.TRX(p[0], wires=0, subspace=(0, 1))
    qml.TRY(p[1], wires=1, subspace=(0, 2))
    qml.THadamard(wires=0)
    qml.TAdd(wires=[0, 1])
    qml.TRZ(p[2], wires=1, subspace=(1, 2))
    u = qml.TRY.compute_matrix(p[3], subspace=(0, 1))
    qml.ControlledQutritUnitary(u, control_wires=[0], wires=1, control_values="2")
    u = qml.TRX.compute_matrix(p[4], subspace=(1, 2))
    qml.ControlledQutritUnitary(u, control_wires=[1], wires=0, control_values="1")
    qml.TRY(p[5], wires=0, subspace=(1, 2))
    qml.TRZ(p[0], wires=0, subspace=(0, 2))
    qml.TShift(wires=1)
    qml.TRX(p[6], wires=1, subspace=(0, 2))


def _mixed_ops(p: Sequence[Any]) -> list[Any]:
    return [
        RY(p[0], wires=0),
        TRY(p[1], wires=1, subspace=(0, 2)),
        Controlled(TRX(p[2], wires=1, subspace=(1, 2)), control_wires=[0]),
        Controlled(RX(p[3], wires=0), control_wires=[1], control_values=[2]),
        Add(wires=[0, 1]),
        U3(p[4], p[5], p[6], wires=0),
        TRZ(p[7], wires=1, subspace=(0, 1)),
        Controlled(TRY(p[8], wires=1, subspace=(0, 1)), control_wires=[0], control_values=[0]),
        PhaseShift(p[0], wires=0),
    ]


def _torch_embed(local: torch.Tensor, ldims: tuple[int, ...]) -> torch.Tensor:
    """``local`` on levels ``< ldims`` of len(ldims) qutrits, identity on the others."""
    k = len(ldims)
    valid = torch.tensor(
        [np.ravel_multi_index(c, (3,) * k) for c in itertools.product(*[range(d) for d in ldims])]
    )
    out = torch.eye(3**k, dtype=torch.complex128)
    out[valid[:, None], valid[None, :]] = local.to(torch.complex128)
    return out


def _torch_controlled(u: torch.Tensor, cdim: int, cval: int) -> torch.Tensor:
    """Σ_c |c><c| ⊗ (u if c == cval else I), control first."""
    out = torch.zeros(cdim * u.shape[0], cdim * u.shape[0], dtype=torch.complex128)
    for c in range(cdim):
        proj = torch.zeros(cdim, cdim, dtype=torch.complex128)
        proj[c, c] = 1
        out = out + torch.kron(proj, u if c == cval else torch.eye(u.shape[0], dtype=u.dtype))
    return out


def _add_matrix(da: int, db: int) -> torch.Tensor:
    m = torch.zeros(da * db, da * db, dtype=torch.complex128)
    for a, b in itertools.product(range(da), range(db)):
        m[a * db + (a + b) % db, a * db + b] = 1
    return m


def _mixed_pl(p: Sequence[Any]) -> None:
    """The mixed [2, 3] circuit on two qutrits, the qubit restricted to levels 0, 1."""

    def one(u: torch.Tensor, w: int, d: int) -> None:
        qml.QutritUnitary(_torch_embed(u, (d,)), wires=w)

    def two(u: torch.Tensor, wires: list[int], ldims: tuple[int, int]) -> None:
        qml.QutritUnitary(_torch_embed(u, ldims), wires=wires)

    c128 = torch.complex128
    one(qml.RY.compute_matrix(p[0]).to(c128), 0, 2)
    qml.TRY(p[1], wires=1, subspace=(0, 2))
    two(_torch_controlled(qml.TRX.compute_matrix(p[2], subspace=(1, 2)), 2, 1), [0, 1], (2, 3))
    two(_torch_controlled(qml.RX.compute_matrix(p[3]).to(c128), 3, 2), [1, 0], (3, 2))
    two(_add_matrix(2, 3), [0, 1], (2, 3))
    one(qml.U3.compute_matrix(p[4], p[5], p[6]).to(c128), 0, 2)
    qml.TRZ(p[7], wires=1, subspace=(0, 1))
    two(_torch_controlled(qml.TRY.compute_matrix(p[8], subspace=(0, 1)), 2, 0), [0, 1], (2, 3))
    one(qml.PhaseShift.compute_matrix(p[0]).to(c128), 0, 2)


def _qubit_channel_ops(p: Sequence[Any]) -> list[Any]:
    return [
        RY(p[0], wires=0),
        CRX(p[1], wires=[0, 1]),
        Depolarizing(p[2], wires=0),
        AmplitudeDamping(p[3], wires=1),
        RX(p[4], wires=1),
        BitFlip(p[5], wires=0),
        CNOT(wires=[0, 1]),
        PhaseDamping(p[6], wires=1),
        U3(p[7], p[0], p[1], wires=1),
        Depolarizing(p[3], wires=1),
    ]


def _qubit_channel_pl(p: Sequence[Any]) -> None:
    qml.RY(p[0], wires=0)
    qml.CRX(p[1], wires=[0, 1])
    qml.DepolarizingChannel(3 * p[2] / 4, wires=0)
    qml.AmplitudeDamping(p[3], wires=1)
    qml.RX(p[4], wires=1)
    qml.BitFlip(p[5], wires=0)
    qml.CNOT(wires=[0, 1])
    qml.PhaseDamping(p[6], wires=1)
    qml.U3(p[7], p[0], p[1], wires=1)
    qml.DepolarizingChannel(3 * p[3] / 4, wires=1)


def _qutrit_channel_ops(p: Sequence[Any]) -> list[Any]:
    return [
        TRY(p[0], wires=0, subspace=(0, 1)),
        TRY(p[7], wires=0, subspace=(1, 2)),
        TAdd(wires=[0, 1]),
        Depolarizing(p[1], wires=1),
        AmplitudeDamping(p[2], p[3], wires=0),
        Controlled(TRX(p[8], wires=1, subspace=(0, 2)), control_wires=[0], control_values=[1]),
        TritFlip(p[4], p[5], p[6], wires=1),
        THadamard(wires=1),
        Depolarizing(p[2], wires=0),
    ]


def _qutrit_channel_pl(p: Sequence[Any]) -> None:
    qml.TRY(p[0], wires=0, subspace=(0, 1))
    qml.TRY(p[7], wires=0, subspace=(1, 2))
    qml.TAdd(wires=[0, 1])
    qml.QutritDepolarizingChannel(8 * p[1] / 9, wires=1)
    qml.QutritAmplitudeDamping(p[2], 0.0, p[3], wires=0)
    u = qml.TRX.compute_matrix(p[8], subspace=(0, 2))
    qml.ControlledQutritUnitary(u, control_wires=[0], wires=1, control_values="1")
    qml.TritFlip(p[4], p[5], p[6], wires=1)
    qml.THadamard(wires=1)
    qml.QutritDepolarizingChannel(8 * p[2] / 9, wires=0)


def _mixed_channel_ops(p: Sequence[Any]) -> list[Any]:
    return [
        TRY(p[0], wires=0, subspace=(0, 2)),
        RY(p[1], wires=1),
        Controlled(TRY(p[2], wires=0, subspace=(0, 1)), control_wires=[1]),
        AmplitudeDamping(p[3], p[4], wires=0),
        Depolarizing(p[5], wires=1),
        Add(wires=[0, 1]),
        Depolarizing(p[6], wires=0),
        AmplitudeDamping(p[3], wires=1),
    ]


def _gm(w: int, i: int) -> Any:
    return qml.GellMann(w, i)


CASES = [
    Case(
        "qubit",
        (2, 2, 2),
        [0.3, -1.1, 0.7, 2.1, -0.4, 1.3, 0.9, -2.2, 0.5, 1.7],
        _qubit_ops,
        [
            PauliString("Z", wires=[0]),
            PauliString("X", wires=[1]),
            PauliString("ZY", wires=[0, 2]),
            PauliString("XX", wires=[1, 2], coeff=0.5),
        ],
        [2, 0],
        _qubit_pl,
        lambda: [
            qml.expval(qml.PauliZ(0)),
            qml.expval(qml.PauliX(1)),
            qml.expval(qml.PauliZ(0) @ qml.PauliY(2)),
            qml.expval(0.5 * qml.PauliX(1) @ qml.PauliX(2)),
        ],
        "default.qubit",
    ),
    Case(
        "qutrit",
        (3, 3),
        [0.4, 1.2, -0.8, 2.3, 0.6, -1.5, 1.0],
        _qutrit_ops,
        [GellMann(1, wires=0), GellMann(3, wires=1), GellMann(5, wires=1), GellMann(8, wires=0)],
        [1, 0],
        _qutrit_pl,
        lambda: [
            qml.expval(_gm(0, 1)),
            qml.expval(_gm(1, 3)),
            qml.expval(_gm(1, 5)),
            qml.expval(_gm(0, 8)),
        ],
        "default.qutrit",
    ),
    Case(
        "mixed",
        (2, 3),
        [0.7, 1.9, -0.6, 1.1, 0.8, -0.3, 1.4, 2.6, -1.2],
        _mixed_ops,
        [PauliString("X", wires=[0]), GellMann(2, wires=1), GellMann(3, wires=1)],
        [1, 0],
        _mixed_pl,
        lambda: [
            qml.expval(qml.THermitian(_torch_embed(torch.tensor([[0, 1], [1, 0]]), (2,)), wires=0)),
            qml.expval(_gm(1, 2)),
            qml.expval(_gm(1, 3)),
        ],
        "default.qutrit",
    ),
    Case(
        "qubit_channels",
        (2, 2),
        [0.9, -1.3, 0.35, 0.4, 0.7, 0.15, 0.3, 1.6],
        _qubit_channel_ops,
        [PauliString("Z", wires=[0]), PauliString("Y", wires=[1]), PauliString("XZ", wires=[0, 1])],
        [1],
        _qubit_channel_pl,
        lambda: [
            qml.expval(qml.PauliZ(0)),
            qml.expval(qml.PauliY(1)),
            qml.expval(qml.PauliX(0) @ qml.PauliZ(1)),
        ],
        "default.mixed",
        "density_matrix",
    ),
    Case(
        "qutrit_channels",
        (3, 3),
        [1.1, 0.45, 0.3, 0.55, 0.12, 0.2, 0.25, 0.8, -0.9],
        _qutrit_channel_ops,
        [GellMann(3, wires=0), GellMann(4, wires=1), GellMann(8, wires=1)],
        [0, 1],
        _qutrit_channel_pl,
        lambda: [qml.expval(_gm(0, 3)), qml.expval(_gm(1, 4)), qml.expval(_gm(1, 8))],
        "default.qutrit.mixed",
        "density_matrix",
    ),
    Case(
        "mixed_channels",
        (3, 2),
        [1.3, 0.8, -0.7, 0.35, 0.5, 0.6, 0.4],
        _mixed_channel_ops,
        [GellMann(1, wires=0), PauliString("Z", wires=[1])],
        [1, 0],
        None,
        mode="density_matrix",
    ),
]
CASE_IDS = [c.name for c in CASES]


def outputs(case: Case, p: Sequence[Any], dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Expectation values then marginal probabilities: ``(K,)``, or ``(B, K)`` when batched."""
    state = TorchSimulator(case.mode, dtype=dtype).run(Circuit(list(case.dims), case.ops(p)))
    return torch.cat([expval(state, case.observables), probs(state, case.probs_wires)], -1)


def n_outputs(case: Case) -> int:
    return len(case.observables) + math.prod(case.dims[w] for w in case.probs_wires)


def f_of(
    case: Case, dtype: torch.dtype = torch.complex128
) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: outputs(case, list(x.unbind(-1)), dtype)


def pl_outputs(case: Case, x: torch.Tensor) -> torch.Tensor:
    """The same vector from PennyLane (backprop, torch interface)."""
    dev = qml.device(case.pl_device, wires=len(case.dims))
    assert case.pl is not None

    def expvals() -> Any:
        case.pl(list(x.unbind(-1)))  # type: ignore[misc]
        return case.pl_observables()

    def marginal() -> Any:
        case.pl(list(x.unbind(-1)))  # type: ignore[misc]
        return qml.probs(wires=case.probs_wires)

    # two QNodes: default.qutrit returns probs in a rotated basis when a non-diagonal
    # observable is measured in the same QNode
    ev = qml.QNode(expvals, dev, interface="torch", diff_method="backprop")()
    pr = qml.QNode(marginal, dev, interface="torch", diff_method="backprop")()
    pr = pr.real.to(F64)
    if any(d == 2 for d in case.dims) and case.pl_device.startswith("default.qutrit"):
        keep = [
            int(np.ravel_multi_index(c, (3,) * len(case.probs_wires)))
            for c in itertools.product(*[range(case.dims[w]) for w in case.probs_wires])
        ]
        pr = pr[keep]
    return torch.cat([torch.stack([torch.as_tensor(e).real.to(F64) for e in ev]), pr])


def jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.jacobian(f, x)


def fd_jacobian(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Central finite differences, column by column."""
    cols = []
    with torch.no_grad():
        for i in range(x.shape[-1]):
            e = torch.zeros_like(x)
            e[..., i] = FD_STEP
            cols.append((f(x + e) - f(x - e)) / (2 * FD_STEP))
    return torch.stack(cols, -1)


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_autograd_matches_finite_differences(case: Case) -> None:
    x = torch.tensor(case.x0, dtype=F64)
    f = f_of(case)
    jac = jacobian(f, x)
    assert jac.shape == (n_outputs(case), len(x))
    assert float(jac.abs().max()) > 0.05  # the circuit depends on its parameters
    assert bool((jac.abs().amax(0) > 1e-6).all()), "every parameter should matter"
    assert_close(jac, fd_jacobian(f, x), FD_ATOL)


@pytest.mark.parametrize("case", [c for c in CASES if c.pl is not None], ids=lambda c: c.name)
def test_autograd_matches_pennylane_backprop(case: Case) -> None:
    x = torch.tensor(case.x0, dtype=F64)
    ours = outputs(case, list(x.unbind(-1)))
    ref = pl_outputs(case, x)
    assert_close(ours, ref, ATOL_F64)
    # vector-Jacobian products with random cotangents (a full Jacobian through PennyLane's
    # qutrit devices costs one slow backward pass per output)
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(3, len(ours), generator=gen, dtype=F64)
    x1 = x.clone().requires_grad_(True)
    pl_out = pl_outputs(case, x1)
    ours_jac = jacobian(f_of(case), x)
    for k in range(3):
        (g,) = torch.autograd.grad(pl_out @ v[k], x1, retain_graph=True)
        assert_close(v[k] @ ours_jac, g, ATOL_F64)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_complex64_gradients_roughly_agree(case: Case) -> None:
    x64 = torch.tensor(case.x0, dtype=F64)
    jac64 = jacobian(f_of(case), x64)
    x32 = torch.tensor(case.x0, dtype=torch.float32)
    jac32 = jacobian(f_of(case, torch.complex64), x32)
    assert jac32.dtype == torch.float32
    assert_close(jac32.to(F64), jac64, GRAD_ATOL_F32)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_batched_parameters_gradients(case: Case) -> None:
    """A (B, P) batch of parameter sets: the Jacobian is block diagonal over the batch, each
    block is the unbatched one, finite differences agree (checked through random VJPs)."""
    gen = torch.Generator().manual_seed(len(case.name))
    batch = 3
    x0 = torch.tensor(case.x0, dtype=F64)
    xb = x0 + 0.1 * torch.rand(batch, len(x0), generator=gen, dtype=F64)
    f = f_of(case)
    xg = xb.clone().requires_grad_(True)
    out = f(xg)
    assert out.shape == (batch, n_outputs(case))
    v = torch.randn(out.shape[1], generator=gen, dtype=F64)
    fd = fd_jacobian(f, xb)  # (B, K, P): perturbs column i of every batch row at once
    for b in range(batch):
        (g,) = torch.autograd.grad(out[b] @ v, xg, retain_graph=True)  # (B, P)
        others = [c for c in range(batch) if c != b]
        assert float(g[others].abs().max()) == 0.0  # batch elements are independent
        x1 = xb[b].clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(f(x1) @ v, x1)
        assert_close(g[b], g1, ATOL_F64)
        assert_close(g[b], v @ fd[b], FD_ATOL)


def test_batched_inputs_and_shared_weights() -> None:
    """Batched data through symbolic parameters, shared (unbatched) weights as tensors: the
    weight gradient of the batch sum is the sum of per-sample gradients."""
    data = torch.tensor([0.3, -1.2, 2.0, 0.7], dtype=F64, requires_grad=True)
    w = torch.tensor([0.5, -0.9, 1.4], dtype=F64, requires_grad=True)
    x = Parameter("x")

    def circuit(wv: torch.Tensor) -> Circuit:
        return Circuit([3, 2]).add(
            TRY(x, wires=0, subspace=(0, 1)),
            RY(2 * x, wires=1),
            Controlled(TRX(wv[0], wires=0, subspace=(1, 2)), control_wires=[1]),
            TRY(wv[1], wires=0, subspace=(0, 2)),
            Controlled(RX(wv[2], wires=1), [0], [2]),
        )

    obs = [GellMann(3, wires=0), PauliString("Z", wires=[1])]
    sim = TorchSimulator(dtype=torch.complex128)

    def loss(dv: torch.Tensor, wv: torch.Tensor) -> torch.Tensor:
        state = sim.run(circuit(wv), {"x": dv})
        return (expval(state, obs) * torch.tensor([1.0, -0.5], dtype=F64)).sum(-1)

    per_sample = loss(data, w)
    assert per_sample.shape == (4,)
    g_data, g_w = torch.autograd.grad(per_sample.sum(), (data, w))
    for b in range(4):
        d1 = data[b].detach().clone().requires_grad_(True)
        w1 = w.detach().clone().requires_grad_(True)
        gd, gw = torch.autograd.grad(loss(d1, w1), (d1, w1))
        assert_close(g_data[b], gd, ATOL_F64)
        g_w = g_w - gw
        h = FD_STEP
        with torch.no_grad():
            fd = (loss(d1 + h, w1) - loss(d1 - h, w1)) / (2 * h)
        assert_close(gd, fd, FD_ATOL)
    assert_close(g_w, torch.zeros(3, dtype=F64), ATOL_F64)


def test_gradcheck_real_outputs_with_channels() -> None:
    """torch.autograd.gradcheck on Gell-Mann expectation values of a noisy qutrit circuit."""

    def f(x: torch.Tensor) -> torch.Tensor:
        c = Circuit([3]).add(
            TRY(x[0], wires=0, subspace=(0, 1)),
            TRX(x[1], wires=0, subspace=(1, 2)),
            AmplitudeDamping(x[2], x[3], wires=0),
            Depolarizing(x[4], wires=0),
        )
        state = TorchSimulator("density_matrix", dtype=torch.complex128).run(c)
        return expval(state, [GellMann(i, wires=0) for i in range(1, 9)])

    x = torch.tensor([0.7, -1.2, 0.3, 0.45, 0.2], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,), eps=FD_STEP, atol=FD_ATOL)


def test_gradcheck_complex_statevector() -> None:
    """gradcheck of the complex128 statevector itself (Wirtinger derivatives), mixed dims."""

    def f(x: torch.Tensor) -> torch.Tensor:
        c = Circuit([2, 3]).add(
            U3(x[0], x[1], x[2], wires=0),
            TRY(x[3], wires=1, subspace=(0, 2)),
            Controlled(TRZ(x[4], wires=1, subspace=(1, 2)), control_wires=[0]),
            Controlled(RY(x[5], wires=0), control_wires=[1], control_values=[2]),
            PhaseShift(x[0], wires=0),
        )
        return TorchSimulator(dtype=torch.complex128).run(c).vector

    x = torch.tensor([0.4, 1.1, -0.7, 2.0, 0.9, -1.3], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,), eps=FD_STEP, atol=FD_ATOL)
