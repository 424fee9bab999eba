"""Hypothesis properties of gates, channels and simulated states (qubits, qutrits, mixed).

* every gate is unitary at random (and batched) parameters;
* every channel is CPTP (``Σ K^†K = I``) with a positive semidefinite Choi matrix;
* random circuits with random channels keep ρ Hermitian, PSD and of trace 1;
* statevectors stay normalised; density-matrix mode equals ``|ψ><ψ|`` on unitary circuits;
* a circuit followed by its adjoint gives back the initial state.

The hypothesis profile (``max_examples``, derandomised) comes from ``conftest.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, ATOL_PROPERTY
from hypothesis import given
from hypothesis import strategies as st

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
    Add,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Clock,
    Controlled,
    Depolarizing,
    Fourier,
    H,
    Identity,
    Kraus,
    PhaseDamping,
    PhaseShift,
    S,
    Shift,
    T,
    Toffoli,
    TritFlip,
    Unitary,
    X,
    Y,
    Z,
)
from qsem.circuits.operations import Channel, Gate, Operation
from qsem.simulators import TorchSimulator

C128 = torch.complex128
PI = math.pi

angles = st.floats(-2 * PI, 2 * PI, allow_nan=False, allow_infinity=False)
unit = st.floats(0.0, 1.0, allow_nan=False)
seeds = st.integers(0, 2**32 - 1)


def random_unitary(rng: np.random.Generator, d: int) -> np.ndarray:
    z = (rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    return q * (np.diag(r) / np.abs(np.diag(r)))


def random_kraus(rng: np.random.Generator, d: int, rank: int) -> np.ndarray:
    z = rng.normal(size=(rank * d, d)) + 1j * rng.normal(size=(rank * d, d))
    q, _ = np.linalg.qr(z)
    return q.reshape(rank, d, d)


def assert_unitary(m: torch.Tensor, atol: float = ATOL_PROPERTY) -> None:
    eye = torch.eye(m.shape[-1], dtype=m.dtype).expand_as(m)
    torch.testing.assert_close(m.mH @ m, eye, atol=atol, rtol=0)
    torch.testing.assert_close(m @ m.mH, eye, atol=atol, rtol=0)


def assert_density_matrix(rho: torch.Tensor, atol: float = ATOL_PROPERTY) -> None:
    """Hermitian, trace 1 and PSD (smallest eigenvalue >= -atol), batched or not."""
    assert float((rho - rho.mH).abs().max()) <= atol
    tr = torch.diagonal(rho, dim1=-2, dim2=-1).sum(-1)
    assert float((tr - 1).abs().max()) <= atol
    low = float(torch.linalg.eigvalsh((rho + rho.mH) / 2).min())
    assert low >= -atol, low


# ---------------------------------------------------------------------------------------------
# Gates
# ---------------------------------------------------------------------------------------------
GATES: list[tuple[str, Callable[..., Gate], int, tuple[int, ...]]] = [
    ("RX", lambda t: RX(t, wires=0), 1, (2,)),
    ("RY", lambda t: RY(t, wires=0), 1, (2,)),
    ("RZ", lambda t: RZ(t, wires=0), 1, (2,)),
    ("PhaseShift", lambda t: PhaseShift(t, wires=0), 1, (2,)),
    ("U3", lambda a, b, c: U3(a, b, c, wires=0), 3, (2,)),
    ("CRX", lambda t: CRX(t, wires=[0, 1]), 1, (2, 2)),
    ("CRY", lambda t: CRY(t, wires=[0, 1]), 1, (2, 2)),
    ("CRZ", lambda t: CRZ(t, wires=[0, 1]), 1, (2, 2)),
    ("TRX02", lambda t: TRX(t, wires=0, subspace=(0, 2)), 1, (3,)),
    ("TRY12", lambda t: TRY(t, wires=0, subspace=(1, 2)), 1, (3,)),
    ("TRZ01", lambda t: TRZ(t, wires=0, subspace=(0, 1)), 1, (3,)),
    ("TRY23-d4", lambda t: TRY(t, wires=0, subspace=(2, 3)), 1, (4,)),
    (
        "C2-U3",
        lambda a, b, c: Controlled(U3(a, b, c, wires=1), control_wires=[0], control_values=[2]),
        3,
        (3, 2),
    ),
    (
        "C-TRX",
        lambda t: Controlled(TRX(t, wires=2, subspace=(1, 2)), control_wires=[0, 1]),
        1,
        (2, 3, 3),
    ),
    ("Adj-U3", lambda a, b, c: U3(a, b, c, wires=0).adjoint(), 3, (2,)),
    ("X", lambda: X(wires=0), 0, (2,)),
    ("Y", lambda: Y(wires=0), 0, (2,)),
    ("Z", lambda: Z(wires=0), 0, (2,)),
    ("H", lambda: H(wires=0), 0, (2,)),
    ("S", lambda: S(wires=0), 0, (2,)),
    ("T", lambda: T(wires=0), 0, (2,)),
    ("CNOT", lambda: CNOT(wires=[0, 1]), 0, (2, 2)),
    ("CZ", lambda: CZ(wires=[0, 1]), 0, (2, 2)),
    ("SWAP", lambda: SWAP(wires=[0, 1]), 0, (2, 2)),
    ("CSWAP", lambda: CSWAP(wires=[0, 1, 2]), 0, (2, 2, 2)),
    ("Toffoli", lambda: Toffoli(wires=[0, 1, 2]), 0, (2, 2, 2)),
    ("TShift", lambda: Shift(wires=0), 0, (3,)),
    ("TClock", lambda: Clock(wires=0), 0, (3,)),
    ("THadamard", lambda: Fourier(wires=0), 0, (3,)),
    ("TAdd", lambda: Add(wires=[0, 1]), 0, (3, 3)),
    ("TSWAP", lambda: SWAP(wires=[0, 1]), 0, (3, 3)),
    ("F4", lambda: Fourier(wires=0), 0, (4,)),
    ("Add23", lambda: Add(wires=[0, 1]), 0, (2, 3)),
    ("C-TSWAP", lambda: Controlled(SWAP(wires=[1, 2]), control_wires=[0]), 0, (2, 3, 3)),
]
PARAM_GATES = [g for g in GATES if g[2] > 0]


@pytest.mark.parametrize(
    ("name", "factory", "npar", "dims"), PARAM_GATES, ids=[g[0] for g in PARAM_GATES]
)
@given(data=st.data())
def test_gate_unitary_at_random_params(
    name: str, factory: Callable[..., Gate], npar: int, dims: tuple[int, ...], data: st.DataObject
) -> None:
    batch = data.draw(st.sampled_from([None, 1, 3]), label="batch")
    if batch is None:
        params: list[Any] = data.draw(st.lists(angles, min_size=npar, max_size=npar))
    else:
        params = [
            torch.tensor(
                data.draw(st.lists(angles, min_size=batch, max_size=batch)), dtype=torch.float64
            )
            for _ in range(npar)
        ]
    m = factory(*params).concrete_matrix(dims)
    d = math.prod(dims)
    assert m.shape == ((d, d) if batch is None else (batch, d, d))
    assert_unitary(m)


@pytest.mark.parametrize(("name", "factory", "npar", "dims"), GATES, ids=[g[0] for g in GATES])
def test_fixed_and_parametric_gates_unitary_at_zero(
    name: str, factory: Callable[..., Gate], npar: int, dims: tuple[int, ...]
) -> None:
    assert_unitary(factory(*([0.0] * npar)).concrete_matrix(dims))


@given(seed=seeds, d=st.sampled_from([2, 3, 4, 6]), batch=st.sampled_from([None, 2]))
def test_unitary_gate_of_random_matrix(seed: int, d: int, batch: int | None) -> None:
    rng = np.random.default_rng(seed)
    m = random_unitary(rng, d) if batch is None else np.stack([random_unitary(rng, d)] * batch)
    assert_unitary(Unitary(m, wires=0).concrete_matrix((d,)))


# ---------------------------------------------------------------------------------------------
# Channels
# ---------------------------------------------------------------------------------------------
@st.composite
def channels(draw: st.DrawFn) -> tuple[Channel, tuple[int, ...]]:
    """A random channel on wire 0 with valid random parameters, and its wire dims."""
    kind = draw(
        st.sampled_from(
            ["depolarizing", "amplitude", "bitflip", "phase", "tritflip", "kraus", "kraus2"]
        )
    )
    if kind == "depolarizing":
        d = draw(st.sampled_from([2, 3, 4]))
        p = draw(st.floats(0.0, d * d / (d * d - 1)))
        return Depolarizing(p, wires=0), (d,)
    if kind == "amplitude":
        d = draw(st.sampled_from([2, 3]))
        gammas = draw(st.lists(unit, min_size=d - 1, max_size=d - 1))
        return AmplitudeDamping(*gammas, wires=0), (d,)
    if kind == "bitflip":
        return BitFlip(draw(unit), wires=0), (2,)
    if kind == "phase":
        return PhaseDamping(draw(unit), wires=0), (2,)
    if kind == "tritflip":
        weights = draw(st.lists(unit, min_size=3, max_size=3))
        total = draw(unit)
        s = sum(weights)
        probs = [total * w / s if s > 0 else 0.0 for w in weights]
        probs = [min(p, 1.0) for p in probs]
        if sum(probs) > 1.0:
            probs = [p / sum(probs) for p in probs]
        return TritFlip(*probs, wires=0), (3,)
    rng = np.random.default_rng(draw(seeds))
    if kind == "kraus":
        d = draw(st.sampled_from([2, 3]))
        return Kraus(random_kraus(rng, d, draw(st.integers(1, 4))), wires=0), (d,)
    dims = tuple(draw(st.lists(st.sampled_from([2, 3]), min_size=2, max_size=2)))
    d = math.prod(dims)
    return Kraus(random_kraus(rng, d, draw(st.integers(1, 3))), wires=[0, 1]), dims


def _kraus(ch: Channel, dims: tuple[int, ...]) -> torch.Tensor:
    real = [torch.as_tensor(p, dtype=torch.float64) for p in ch.params]
    return ch.kraus(real, dims, dtype=C128)


@given(chd=channels())
def test_channel_is_cptp(chd: tuple[Channel, tuple[int, ...]]) -> None:
    ch, dims = chd
    k = _kraus(ch, dims)
    d = math.prod(dims)
    assert k.dim() == 3 and k.shape[-2:] == (d, d)
    s = (k.mH @ k).sum(0)
    torch.testing.assert_close(s, torch.eye(d, dtype=C128), atol=ATOL_PROPERTY, rtol=0)


@given(
    d=st.sampled_from([2, 3, 4]),
    ps=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
)
def test_batched_depolarizing_and_damping_cptp(d: int, ps: list[float]) -> None:
    scale = d * d / (d * d - 1)
    p = torch.tensor(ps, dtype=torch.float64) * scale
    k = Depolarizing(p, wires=0).kraus([p], (d,), dtype=C128)
    assert k.shape[0] == 3 and k.shape[-2:] == (d, d)
    s = (k.mH @ k).sum(-3)
    torch.testing.assert_close(
        s, torch.eye(d, dtype=C128).expand(3, d, d), atol=ATOL_PROPERTY, rtol=0
    )
    gammas = [torch.tensor(ps, dtype=torch.float64).roll(i) for i in range(d - 1)]
    k = AmplitudeDamping(*gammas, wires=0).kraus(gammas, (d,), dtype=C128)
    s = (k.mH @ k).sum(-3)
    torch.testing.assert_close(
        s, torch.eye(d, dtype=C128).expand(3, d, d), atol=ATOL_PROPERTY, rtol=0
    )


@given(chd=channels())
def test_choi_matrix_psd(chd: tuple[Channel, tuple[int, ...]]) -> None:
    """The engine applied to half of a maximally entangled state gives J/d, with J the Choi
    matrix: PSD, trace 1 after the 1/d, and its input marginal I/d (trace preserving)."""
    ch, dims = chd
    d = math.prod(dims)
    n = len(dims)
    circuit = Circuit(list(dims) * 2)
    moved = Kraus(_kraus(ch, dims), wires=list(range(n, 2 * n)), atol=1e-9)
    circuit.add(moved)
    omega = torch.eye(d, dtype=C128).reshape(-1) / math.sqrt(d)
    rho = TorchSimulator("density_matrix", dtype=C128).run(circuit, initial_state=omega)
    choi_over_d = rho.density_matrix
    assert_density_matrix(choi_over_d)
    marg = choi_over_d.reshape(d, d, d, d).diagonal(dim1=1, dim2=3).sum(-1)
    torch.testing.assert_close(marg, torch.eye(d, dtype=C128) / d, atol=ATOL_PROPERTY, rtol=0)
    # the same Choi matrix from the Kraus operators directly: Σ_k vec(K_k) vec(K_k)^†
    k = _kraus(ch, dims)
    vecs = k.transpose(-1, -2).reshape(
        k.shape[0], -1
    )  # row-major vec of K^T: index (i, j) = K[j, i]
    choi = torch.einsum("ka,kb->ab", vecs, vecs.conj())
    torch.testing.assert_close(choi / d, choi_over_d, atol=ATOL_PROPERTY, rtol=0)
    assert float(torch.linalg.eigvalsh(choi).min()) >= -ATOL_PROPERTY


# ---------------------------------------------------------------------------------------------
# Random circuits on mixed dims
# ---------------------------------------------------------------------------------------------
def _one_wire_gate(
    draw: st.DrawFn, rng: np.random.Generator, w: int, d: int, param: Callable[[], Any]
) -> Gate:
    kinds = ["TRX", "TRY", "TRZ", "Shift", "Clock", "Fourier", "Identity", "Unitary"]
    if d == 2:
        kinds += ["RX", "RY", "RZ", "PhaseShift", "U3", "X", "Y", "Z", "H", "S", "T"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("TRX", "TRY", "TRZ"):
        sub = draw(st.lists(st.integers(0, d - 1), min_size=2, max_size=2, unique=True))
        return {"TRX": TRX, "TRY": TRY, "TRZ": TRZ}[kind](param(), wires=w, subspace=sub)
    if kind == "Unitary":
        return Unitary(random_unitary(rng, d), wires=w)
    if kind in ("RX", "RY", "RZ", "PhaseShift"):
        return {"RX": RX, "RY": RY, "RZ": RZ, "PhaseShift": PhaseShift}[kind](param(), wires=w)
    if kind == "U3":
        return U3(param(), param(), param(), wires=w)
    fixed = {"Shift": Shift, "Clock": Clock, "Fourier": Fourier, "Identity": Identity}
    fixed |= {"X": X, "Y": Y, "Z": Z, "H": H, "S": S, "T": T}
    return fixed[kind](wires=w)


def _gate(
    draw: st.DrawFn, rng: np.random.Generator, dims: list[int], param: Callable[[], Any]
) -> Gate:
    n = len(dims)
    arity = draw(st.integers(1, min(n, 3)))
    wires = draw(st.permutations(range(n)))[:arity]
    wd = [dims[w] for w in wires]
    if arity == 1:
        gate = _one_wire_gate(draw, rng, wires[0], wd[0], param)
    elif arity == 2:
        kinds = ["Add", "Controlled", "Unitary"]
        kinds += ["SWAP"] if wd[0] == wd[1] else []
        kinds += ["CNOT", "CZ", "CRX", "CRY", "CRZ"] if wd == [2, 2] else []
        kind = draw(st.sampled_from(kinds))
        if kind == "Controlled":
            value = draw(st.integers(0, wd[0] - 1))
            base = _one_wire_gate(draw, rng, wires[1], wd[1], param)
            gate = Controlled(base, [wires[0]], [value])
        elif kind == "Unitary":
            gate = Unitary(random_unitary(rng, wd[0] * wd[1]), wires=wires)
        elif kind in ("CRX", "CRY", "CRZ"):
            gate = {"CRX": CRX, "CRY": CRY, "CRZ": CRZ}[kind](param(), wires=wires)
        else:
            gate = {"Add": Add, "SWAP": SWAP, "CNOT": CNOT, "CZ": CZ}[kind](wires=wires)
    else:
        kinds = ["Controlled2"]
        kinds += ["CSWAP"] if wd[1] == wd[2] else []
        kinds += ["Toffoli"] if wd == [2, 2, 2] else []
        kind = draw(st.sampled_from(kinds))
        if kind == "CSWAP":
            gate = CSWAP(wires=wires)
        elif kind == "Toffoli":
            gate = Toffoli(wires=wires)
        else:
            values = [draw(st.integers(0, wd[i] - 1)) for i in range(2)]
            base = _one_wire_gate(draw, rng, wires[2], wd[2], param)
            gate = Controlled(base, wires[:2], values)
    if draw(st.integers(0, 5)) == 0:
        gate = gate.adjoint()
    return gate


def _channel(draw: st.DrawFn, rng: np.random.Generator, dims: list[int]) -> Channel:
    w = draw(st.integers(0, len(dims) - 1))
    d = dims[w]
    kinds = ["depolarizing", "amplitude", "kraus"]
    kinds += ["bitflip", "phase"] if d == 2 else []
    kinds += ["tritflip"] if d == 3 else []
    kind = draw(st.sampled_from(kinds))
    if kind == "depolarizing":
        return Depolarizing(draw(st.floats(0.0, d * d / (d * d - 1))), wires=w)
    if kind == "amplitude":
        return AmplitudeDamping(*draw(st.lists(unit, min_size=d - 1, max_size=d - 1)), wires=w)
    if kind == "bitflip":
        return BitFlip(draw(unit), wires=w)
    if kind == "phase":
        return PhaseDamping(draw(unit), wires=w)
    if kind == "tritflip":
        a, b, c = sorted(draw(st.lists(unit, min_size=3, max_size=3)))
        return TritFlip(a, b - a, c - b, wires=w)
    return Kraus(random_kraus(rng, d, draw(st.integers(1, 3))), wires=w)


@st.composite
def circuits(
    draw: st.DrawFn, *, noisy: bool = False, batch: int | None = None, max_wires: int = 3
) -> Circuit:
    """A random circuit on 1..max_wires wires of dims 2 or 3 (mixed), optionally with channels
    and with parameters batched over ``batch``."""
    dims = draw(st.lists(st.sampled_from([2, 3]), min_size=1, max_size=max_wires))
    rng = np.random.default_rng(draw(seeds))

    def param() -> Any:
        if batch is None:
            return draw(angles)
        return torch.tensor(
            draw(st.lists(angles, min_size=batch, max_size=batch)), dtype=torch.float64
        )

    ops: list[Operation] = []
    for _ in range(draw(st.integers(1, 8))):
        if noisy and draw(st.integers(0, 2)) == 0:
            ops.append(_channel(draw, rng, dims))
        else:
            ops.append(_gate(draw, rng, dims, param))
    return Circuit(dims, ops)


def random_pure_state(seed: int, d: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=d) + 1j * rng.normal(size=d)
    return torch.as_tensor(v / np.linalg.norm(v))


@given(circuit=circuits(noisy=True), seed=seeds, pure=st.booleans())
def test_noisy_circuit_keeps_a_density_matrix(circuit: Circuit, seed: int, pure: bool) -> None:
    d = circuit.dim
    if pure:
        init: Any = random_pure_state(seed, d)
    else:
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
        init = torch.as_tensor(a @ a.conj().T / np.trace(a @ a.conj().T))
    rho = TorchSimulator("density_matrix", dtype=C128).run(circuit, initial_state=init)
    assert rho.density_matrix.shape == (d, d)
    assert_density_matrix(rho.density_matrix)


@given(circuit=circuits(noisy=True, batch=2))
def test_batched_noisy_circuit_keeps_density_matrices(circuit: Circuit) -> None:
    rho = TorchSimulator("density_matrix", dtype=C128).run(circuit).density_matrix
    assert rho.shape[-1] == circuit.dim
    assert_density_matrix(rho)


@given(circuit=circuits(batch=None), seed=seeds)
def test_statevector_norm_stays_one(circuit: Circuit, seed: int) -> None:
    psi0 = random_pure_state(seed, circuit.dim)
    for init in (None, psi0):
        vec = TorchSimulator(dtype=C128).run(circuit, initial_state=init).vector
        norm = torch.linalg.vector_norm(vec, dim=-1)
        torch.testing.assert_close(norm, torch.ones_like(norm), atol=ATOL_PROPERTY, rtol=0)


@given(circuit=circuits(batch=3))
def test_batched_statevector_norm_stays_one(circuit: Circuit) -> None:
    vec = TorchSimulator(dtype=C128).run(circuit).vector
    norm = torch.linalg.vector_norm(vec, dim=-1)
    torch.testing.assert_close(norm, torch.ones_like(norm), atol=ATOL_PROPERTY, rtol=0)


@given(circuit=circuits(batch=None), seed=seeds)
def test_density_matrix_mode_equals_projector_of_statevector(circuit: Circuit, seed: int) -> None:
    psi0 = random_pure_state(seed, circuit.dim)
    psi = TorchSimulator(dtype=C128).run(circuit, initial_state=psi0).vector
    rho = TorchSimulator("density_matrix", dtype=C128).run(circuit, initial_state=psi0)
    torch.testing.assert_close(
        rho.density_matrix, torch.outer(psi, psi.conj()), atol=ATOL_F64, rtol=0
    )


@given(circuit=circuits(batch=2))
def test_batched_density_matrix_mode_equals_projector(circuit: Circuit) -> None:
    psi = TorchSimulator(dtype=C128).run(circuit).vector
    rho = TorchSimulator("density_matrix", dtype=C128).run(circuit).density_matrix
    expected = psi[..., :, None] * psi.conj()[..., None, :]
    torch.testing.assert_close(rho, expected, atol=ATOL_F64, rtol=0)


@given(circuit=circuits(batch=None), seed=seeds)
def test_circuit_then_adjoint_is_identity(circuit: Circuit, seed: int) -> None:
    psi0 = random_pure_state(seed, circuit.dim)
    full = circuit + circuit.adjoint()
    assert len(full) == 2 * len(circuit)
    out = TorchSimulator(dtype=C128).run(full, initial_state=psi0).vector
    torch.testing.assert_close(out, psi0, atol=ATOL_F64, rtol=0)
    # and in density-matrix mode
    rho = TorchSimulator("density_matrix", dtype=C128).run(full, initial_state=psi0).density_matrix
    torch.testing.assert_close(rho, torch.outer(psi0, psi0.conj()), atol=ATOL_F64, rtol=0)


@given(circuit=circuits(batch=2))
def test_batched_circuit_then_adjoint_is_identity(circuit: Circuit) -> None:
    out = TorchSimulator(dtype=C128).run(circuit + circuit.adjoint()).vector
    expected = torch.zeros(circuit.dim, dtype=C128)
    expected[0] = 1
    torch.testing.assert_close(out, expected.expand_as(out), atol=ATOL_F64, rtol=0)
