"""Adjoint differentiation (qsem.simulators.adjoint) against autograd through the engine.

Random circuits over qubits, qutrits and mixed wire dimensions (rotations, U3,
phase shifts, fixed gates, permutation gates, controlled and qubit-controlled qutrit
rotations); parameters bound symbolically to batched inputs and a shared weight
vector, plus concrete tensor parameters inside gates. Reference: autograd through
``TorchSimulator`` in complex128 (itself checked against finite differences and
PennyLane in ``test_gradients.py``), to ``ATOL_F64``. The memory test counts the
bytes autograd saves for backward: they grow with the depth on the autograd path
and stay at one state (plus the inputs) on the adjoint path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    CNOT,
    CRX,
    CRY,
    CZ,
    RX,
    RY,
    RZ,
    SWAP,
    TRX,
    TRY,
    TRZ,
    U3,
    Circuit,
    Controlled,
    Depolarizing,
    GellMann,
    H,
    Hermitian,
    Parameter,
    ParameterVector,
    PauliString,
    PhaseShift,
    S,
    TAdd,
    THadamard,
    TShift,
    Unitary,
    X,
)
from qsem.circuits.errors import QsemError
from qsem.simulators import TorchSimulator, adjoint_expval, adjoint_jacobian, expval
from qsem.simulators.adjoint import local_outer

DIMS = {
    "qubit": (2, 2, 2, 2),
    "qutrit": (3, 3, 3),
    "mixed": (2, 3, 2, 3),
}


def _single(rng: np.random.Generator, d: int, wire: int, p: Any) -> Any:
    if d == 2:
        kind = int(rng.integers(7))
        if kind == 0:
            return RX(p, wires=wire)
        if kind == 1:
            return RY(p, wires=wire)
        if kind == 2:
            return RZ(p, wires=wire)
        if kind == 3:
            return PhaseShift(p, wires=wire)
        if kind == 4:
            return U3(p, 0.7 * p, -0.4, wires=wire)
        return [H(wires=wire), S(wires=wire), X(wires=wire)][kind - 5 if kind < 7 else 0]
    sub = [(0, 1), (1, 2), (0, 2)][int(rng.integers(3))]
    kind = int(rng.integers(5))
    if kind == 3:
        return THadamard(wires=wire)
    if kind == 4:
        return TShift(wires=wire)
    return (TRX, TRY, TRZ)[kind](p, wires=wire, subspace=sub)


def _pair(rng: np.random.Generator, dims: tuple[int, ...], a: int, b: int, p: Any) -> Any:
    da, db = dims[a], dims[b]
    kind = int(rng.integers(3))
    if da == 2 and db == 2:
        return [CNOT(wires=[a, b]), CRX(p, wires=[a, b]), CRY(p, wires=[a, b]), CZ(wires=[a, b])][
            int(rng.integers(4))
        ]
    if kind == 0:
        return TAdd(wires=[a, b])
    if kind == 1 and da == db:
        return SWAP(wires=[a, b])
    return Controlled(TRY(p, wires=b, subspace=(0, 1)), control_wires=[a])


def random_circuit(
    dims: tuple[int, ...], depth: int, seed: int
) -> tuple[Circuit, dict[str, int], list[torch.Tensor]]:
    """Input encoding ``x`` then ``depth`` layers with weights ``w`` and concrete tensors."""
    rng = np.random.default_rng(seed)
    n = len(dims)
    x = ParameterVector("x", n)
    n_w = depth * (n + n)
    w = ParameterVector("w", n_w)
    concrete: list[torch.Tensor] = []
    c = Circuit(dims)
    for i in range(n):
        c.add(_single(rng, dims[i], i, x[i]) if dims[i] == 2 else TRY(x[i], wires=i))
    k = 0
    for _ in range(depth):
        for i in range(n):
            if rng.random() < 0.2:
                t = torch.tensor(float(rng.uniform(-3, 3)), dtype=torch.float64, requires_grad=True)
                op = _single(rng, dims[i], i, t)
                if any(q is t for q in op.params):
                    concrete.append(t)
                c.add(op)
            else:
                c.add(_single(rng, dims[i], i, w[k] * 1.5 if rng.random() < 0.2 else w[k]))
            k += 1
        for i in range(n):
            j = (i + 1 + int(rng.integers(n - 1))) % n
            c.add(_pair(rng, dims, i, j, w[k]))
            k += 1
    return c, {"x": n, "w": n_w}, concrete


def observables(dims: tuple[int, ...]) -> list[Any]:
    out: list[Any] = []
    for i, d in enumerate(dims):
        out.append(PauliString("Z", wires=[i]) if d == 2 else GellMann(8, wires=[i]))
    out.append(GellMann(1, wires=[1]) if dims[1] == 3 else PauliString("X", wires=[1]))
    zz = torch.tensor([1.0, -1.0, 0.5] * 3)[: dims[2] * dims[0]]  # a two-wire diagonal
    out.append(Hermitian(torch.diag(zz).to(torch.complex128), wires=[2, 0]))
    h = torch.randn(dims[0] * dims[-1], dims[0] * dims[-1], dtype=torch.complex128)
    out.append(Hermitian(h + h.mH, wires=[len(dims) - 1, 0]))
    return out


def bind(sizes: dict[str, int], batch: int | None, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, sizes["x"]) if batch else (sizes["x"],)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 * math.pi).requires_grad_()
    w = (torch.rand(sizes["w"], generator=g, dtype=torch.float64) * 2 * math.pi).requires_grad_()
    return {"x": x, "w": w}


def grads(out: torch.Tensor, inputs: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weights = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return list(torch.autograd.grad((out * weights).sum(), list(inputs)))


@pytest.mark.parametrize("kind", sorted(DIMS))
@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_adjoint_matches_autograd(kind: str, batch: int | None, seed: int) -> None:
    dims = DIMS[kind]
    circuit, sizes, concrete = random_circuit(dims, depth=3, seed=seed)
    obs = observables(dims)
    params = bind(sizes, batch, seed)
    inputs = [params["x"], params["w"], *concrete]
    ref = expval(TorchSimulator(dtype=torch.complex128).run(circuit, params), obs)
    got = adjoint_expval(circuit, params, obs)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=ATOL_F64, rtol=0)
    for a, b in zip(grads(got, inputs, seed), grads(ref, inputs, seed), strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_every_parameter_is_differentiated() -> None:
    """The random circuits do reach every gate kind and parameter path (no vacuous test)."""
    names, n_concrete = set(), 0
    for kind in DIMS:
        for seed in (0, 1):
            circuit, _, concrete = random_circuit(DIMS[kind], depth=3, seed=seed)
            names |= {op.name for op in circuit.ops}
            n_concrete += len(concrete)
    assert n_concrete >= 3
    for name in ("RX", "RY", "RZ", "PhaseShift", "U3", "SubspaceRX", "C(SubspaceRY)", "Add"):
        assert name in names, name


@pytest.mark.parametrize("batch", [None, 2])
def test_jacobian_matches_autograd(batch: int | None) -> None:
    dims = DIMS["mixed"]
    circuit, sizes, _ = random_circuit(dims, depth=2, seed=5)
    obs = observables(dims)
    params = bind(sizes, batch, 5)
    values, jac = adjoint_jacobian(circuit, params, obs)
    ref = expval(TorchSimulator(dtype=torch.complex128).run(circuit, params), obs)
    torch.testing.assert_close(values, ref, atol=ATOL_F64, rtol=0)
    flat = ref if batch else ref[None]
    for k in range(flat.shape[-1]):
        gx, gw = torch.autograd.grad(
            flat[:, k].sum(), [params["x"], params["w"]], retain_graph=True
        )
        torch.testing.assert_close(jac["x"][k], gx, atol=1e-10, rtol=0)
        torch.testing.assert_close(jac["w"][k], gw, atol=1e-10, rtol=0)


def test_complex64_adjoint_is_close() -> None:
    dims = DIMS["qubit"]
    circuit, sizes, _ = random_circuit(dims, depth=2, seed=3)
    obs = observables(dims)[:-1]
    params = bind(sizes, 4, 3)
    ref = expval(TorchSimulator(dtype=torch.complex128).run(circuit, params), obs)
    got = adjoint_expval(circuit, params, obs, dtype=torch.complex64)
    assert got.dtype == torch.float32
    for a, b in zip(
        grads(got.double(), [params["w"]], 0), grads(ref, [params["w"]], 0), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_local_outer_against_dense_reference() -> None:
    dims = (2, 3, 2)
    g = torch.Generator().manual_seed(0)
    lam = torch.randn(2, 12, dtype=torch.complex128, generator=g)
    psi = torch.randn(2, 12, dtype=torch.complex128, generator=g)
    for axes in ([0], [1], [2], [0, 1], [1, 2], [2, 0], [0, 2]):
        t_l = lam.reshape(2, *dims)
        t_p = psi.reshape(2, *dims)
        rest = [a for a in range(3) if a not in axes]
        perm = [0, *[a + 1 for a in axes], *[a + 1 for a in rest]]
        dk = math.prod(dims[a] for a in axes)
        ref = torch.einsum(
            "bar,bcr->bac",
            t_l.permute(perm).reshape(2, dk, -1).conj(),
            t_p.permute(perm).reshape(2, dk, -1),
        )
        torch.testing.assert_close(local_outer(lam.conj(), psi, dims, axes), ref)


def _saved_bytes(fn: Any) -> int:
    """Bytes of the tensors autograd saves while ``fn`` runs (pack hook counter)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("method", ["adjoint", "autograd"])
def test_saved_memory_is_independent_of_depth(method: str) -> None:
    """Adjoint saves the final state and the inputs, whatever the depth; autograd saves
    more states with every layer (the same counter, so the test can fail)."""
    n = 8
    state_bytes = 2**n * 16
    extra = []
    obs = [PauliString("Z", wires=[i]) for i in range(n)]
    for depth in (2, 8):
        circuit, sizes, concrete = random_circuit((2,) * n, depth=depth, seed=7)
        params = bind(sizes, None, 7)
        inputs = [params["x"], params["w"], *concrete]
        if method == "adjoint":
            run = lambda c=circuit, p=params: adjoint_expval(c, p, obs)  # noqa: E731
        else:
            sim = TorchSimulator(dtype=torch.complex128)
            run = lambda c=circuit, p=params, s=sim: expval(s.run(c, p), obs)  # noqa: E731
        extra.append(_saved_bytes(run) - sum(t.numel() * t.element_size() for t in inputs))
    if method == "adjoint":
        # one state; a few bytes more where a gate holds a derived scalar (U3(t, 0.7 t))
        assert all(0 <= e - state_bytes <= 64 for e in extra), extra
    else:
        assert extra[1] > extra[0] + 4 * state_bytes


def test_bad_input_is_one_line() -> None:
    c = Circuit.qubits(1).add(RY(Parameter("t"), wires=0), Depolarizing(0.1, wires=0))
    with pytest.raises(QsemError, match="channels"):
        adjoint_expval(c, {"t": torch.tensor(0.1)}, [PauliString("Z", wires=[0])])
    with pytest.raises(QsemError, match="circuit"):
        adjoint_expval("not a circuit", None, [PauliString("Z", wires=[0])])  # type: ignore[arg-type]
    u = torch.eye(2, dtype=torch.complex128).requires_grad_()
    with pytest.raises(QsemError, match="backprop"):
        adjoint_expval(Circuit.qubits(1).add(Unitary(u, wires=0)), None, [PauliString("Z", [0])])


def test_quantum_layer_adjoint_matches_backprop() -> None:
    from qsem.simulators import QuantumLayer

    n = 3
    x, w = ParameterVector("x", n), ParameterVector("w", 2 * n)
    c = Circuit((2, 3, 2))
    for i in range(n):
        c.add(RY(x[i], wires=i) if i != 1 else TRY(x[i], wires=i, subspace=(0, 1)))
    for i in range(n):
        c.add(RX(w[i], wires=i) if i != 1 else TRX(w[i], wires=i, subspace=(1, 2)))
    c.add(TAdd(wires=[0, 1]), Controlled(TRY(w[3], wires=1), control_wires=[2]))
    c.add(RY(w[4], wires=0), CRY(w[5], wires=[2, 0]))
    obs = [PauliString("Z", wires=[0]), GellMann(3, wires=[1]), PauliString("Z", wires=[2])]
    layers = {
        m: QuantumLayer(c, obs, weight_shapes={"w": 2 * n}, diff_method=m, seed=1)
        for m in ("backprop", "adjoint")
    }
    xb = torch.rand(4, n, dtype=torch.float64, requires_grad=True)
    out = {}
    for m, layer in layers.items():
        y = layer(xb)
        gx, gw = torch.autograd.grad((y**2).sum(), [xb, layer.weights["w"]])
        out[m] = (y.detach(), gx, gw)
    for a, b in zip(out["adjoint"], out["backprop"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    with pytest.raises(QsemError, match="adjoint"):
        QuantumLayer(c, probs_wires=[0], weight_shapes={"w": 2 * n}, diff_method="adjoint")


def test_best_picks_adjoint_on_large_pure_registers() -> None:
    """``diff_method="best"`` takes the adjoint path at 2^14 amplitudes: autograd then
    saves no state for backward (the saved-bytes counter), and gradients agree."""
    from qsem.simulators import QuantumLayer
    from qsem.simulators.bridge import ADJOINT_MIN_DIM

    n = 14
    assert 2**n >= ADJOINT_MIN_DIM > 2 ** (n - 1)
    x, w = ParameterVector("x", n), ParameterVector("w", n)
    c = Circuit.qubits(n)
    for i in range(n):
        c.add(RY(x[i], wires=i), RX(w[i], wires=i), CNOT(wires=[i, (i + 1) % n]))
    obs = [PauliString("Z", wires=[i]) for i in range(n)]
    best = QuantumLayer(c, obs, weight_shapes={"w": n}, seed=2)
    ref = QuantumLayer(c, obs, weight_shapes={"w": n}, seed=2, diff_method="backprop")
    xb = torch.rand(1, n, dtype=torch.float64)
    saved = {"best": 0, "ref": 0}
    grads_ = {}
    for key, layer in (("best", best), ("ref", ref)):
        y = None

        def run(layer: Any = layer) -> None:
            nonlocal y
            y = layer(xb)

        saved[key] = _saved_bytes(run)
        assert y is not None
        grads_[key] = torch.autograd.grad((y**2).sum(), [layer.weights["w"]])[0]
    torch.testing.assert_close(grads_["best"], grads_["ref"], atol=1e-10, rtol=0)
    state = 2**n * 16
    assert saved["best"] <= state + 4096 < 4 * state < saved["ref"], saved
