"""Compiled plans (``qsem.simulators.plan``) against a gate-by-gate reference.

The reference evolves ``ψ`` or ``ρ`` one operation at a time with the operation's
own matrix / Kraus operators from ``qsem.circuits`` (the gate definitions, not the
plan): the tensor is reshaped to one axis per wire, the gate's wires moved first,
multiplied, moved back (``torch.movedim``) — no fusion, no permutation gathers, no
factored density matrices. It is written in torch so that gradients come from
autograd through it. Every kind of step and every run-time path of the plan has a
case: fused layers (first layer on a basis state, gaps, blocks up to
``max_block_dim``, groups of different gates at one depth, parameter-free gates),
stacked vector parameters (strided, unordered, scaled, batched),
composed and repeated permutations, multi-wire gates, channels (mixtures and Kraus
sets, batched) in factored and dense density matrices, batch chunks, gradients.
See docs/testing.md (``make mutation``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.circuits import (
    CNOT,
    CRY,
    CSWAP,
    RX,
    RY,
    RZ,
    SWAP,
    TRY,
    TRZ,
    TSWAP,
    AmplitudeDamping,
    BitFlip,
    Circuit,
    Depolarizing,
    H,
    Kraus,
    Parameter,
    ParameterVector,
    PhaseDamping,
    TAdd,
    THadamard,
    TShift,
    X,
)
from qsem.circuits.operations import Channel, Gate
from qsem.circuits.parameters import resolve_param
from qsem.simulators import TorchSimulator
from qsem.simulators.plan import PermutationStep, compile_plan

F64 = torch.float64
C128 = torch.complex128


def _on(t: torch.Tensor, m: torch.Tensor, axes: list[int]) -> torch.Tensor:
    """Multiply ``m`` ``(dk, dk)`` or ``(B, dk, dk)`` into ``axes`` of ``t`` ``(B, d_1, ...)``."""
    k = len(axes)
    moved = torch.movedim(t, axes, list(range(1, k + 1)))
    shape = moved.shape
    flat = moved.reshape(shape[0], math.prod(shape[1 : k + 1]), -1)
    out = (m @ flat).reshape(shape)
    return torch.movedim(out, list(range(1, k + 1)), axes)


def reference(circuit: Circuit, values: dict, batch: int, density: bool, levels=None):
    """``ψ`` ``(B, D)`` or ``ρ`` ``(B, D, D)`` after every operation, one at a time."""
    dims, n, d = circuit.dims, len(circuit.dims), circuit.dim
    start = torch.zeros(d, dtype=C128)
    start[int(np.ravel_multi_index(levels or [0] * n, dims))] = 1
    t = start.expand(batch, d).reshape(batch, *dims)
    if density:
        t = (start[:, None] * start[None, :]).expand(batch, d, d).reshape(batch, *dims, *dims)
    for op in circuit.ops:
        wires = list(op.wires)
        local = tuple(dims[w] for w in wires)
        params = [resolve_param(p, values, dtype=F64, device=None) for p in op.params]
        rows, cols = [w + 1 for w in wires], [w + 1 + n for w in wires]
        if isinstance(op, Channel):
            ks = op.kraus(params, local, dtype=C128)
            t = sum(
                _on(_on(t, ks[..., j, :, :], rows), ks[..., j, :, :].conj(), cols)
                for j in range(ks.shape[-3])
            )
            continue
        assert isinstance(op, Gate)
        m = op.matrix(params, local, dtype=C128)
        t = _on(t, m, rows)
        if density:
            t = _on(t, m.conj(), cols)
    return t.reshape(batch, d, d) if density else t.reshape(batch, d)


MODES = [
    ("statevector", "auto"),
    ("density_matrix", "dense"),
    ("density_matrix", "auto"),  # factored ρ = Σ_k w_k |ψ_k><ψ_k|
]


def simulate(circuit, values, mode, dm_method, levels=None, max_block_dim=16):
    sim = TorchSimulator(mode, dtype=C128, dm_method=dm_method, max_block_dim=max_block_dim)
    state = sim.run(circuit, values, initial_state=levels)
    return state.density_matrix if mode == "density_matrix" else state.vector


def _check(circuit, values, mode, dm_method, batch, levels=None, max_block_dim=16):
    out = simulate(circuit, values, mode, dm_method, levels, max_block_dim)
    ref = reference(circuit, values, batch, mode == "density_matrix", levels)
    out = out.reshape(ref.shape) if out.dim() < ref.dim() else out
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-9)


# ---------------------------------------------------------------------------------
# fused single-wire layers
# ---------------------------------------------------------------------------------


def _mixed_layers() -> Circuit:
    """Qubits and qutrits, uneven depths, mixed gate kinds per level, a gap, constants."""
    w = ParameterVector("w", 8)
    c = Circuit([2, 3, 2, 3, 2])
    c.add(RY(w[0], wires=0), TRY(w[1], wires=1), H(wires=2), THadamard(wires=3))
    c.add(RZ(w[2], wires=0), RX(w[3], wires=2), TRZ(w[4], wires=3, subspace=(0, 2)))
    c.add(RY(0.4, wires=0), TShift(wires=1))
    c.add(CNOT(wires=[0, 2]), TAdd(wires=[1, 3]), SWAP(wires=[2, 4]))
    c.add(RY(w[5], wires=0), TRY(w[6], wires=3))  # gaps at wires 1, 2, 4
    c.add(CRY(w[7], wires=[4, 0]))
    c.add(H(wires=4), RX(2 * w[5], wires=2), TRY(0.3, wires=1), RY(w[0], wires=0))
    c.add(TRY(w[1], wires=3))  # every wire touched: one Kronecker chain
    return c


@pytest.mark.parametrize(("mode", "dm_method"), MODES)
@pytest.mark.parametrize("max_block_dim", [2, 6, 16, 72])
@pytest.mark.parametrize("levels", [None, [1, 2, 0, 1, 1]])
def test_mixed_dimension_layers(mode, dm_method, max_block_dim, levels):
    values = {"w": torch.linspace(-1.3, 2.1, 8, dtype=F64)}
    _check(_mixed_layers(), values, mode, dm_method, 1, levels, max_block_dim)


@pytest.mark.parametrize(("mode", "dm_method"), MODES)
def test_batched_vector_parameters_strided_unordered_scaled(mode, dm_method):
    w, u = ParameterVector("w", 9), ParameterVector("u", 2)
    c = Circuit.qubits(4)
    c.add(*[RY(w[2 * i], wires=i) for i in range(4)])  # indices 0, 2, 4, 6: stride 2
    c.add(*[RZ(w[i], wires=i) for i in (3, 1, 0, 2)])  # wires 0..3 get w[0..3]: stride 1
    c.add(*[RX(w[i], wires=k) for k, i in enumerate((8, 1, 5, 3))])  # unordered
    c.add(*[RY(0.5 * w[i], wires=i) for i in range(4)])  # scaled
    # the same vector at different scales, and two vectors, at one depth (rows below)
    c.add(RY(w[7], wires=0), RY(Parameter("a"), wires=1), RY(2 * w[7], wires=2))  # mixed
    c.add(CNOT(wires=[0, 1]), CNOT(wires=[2, 3]))
    c.add(*[RX(w[4], wires=i) for i in range(4)])  # one index repeated
    c.add(RY(w[1], wires=0), RY(2 * w[2], wires=1), RY(w[3], wires=2), RY(w[4], wires=3))
    c.add(RX(w[1], wires=0), RX(u[0], wires=1), RX(w[2], wires=2), RX(u[1], wires=3))
    c.add(*[RY(w[i], wires=k) for k, i in enumerate((1, 2, 4, 5))])  # increasing, no stride
    values = {
        "w": torch.linspace(0.1, 2.9, 27, dtype=F64).reshape(3, 9),
        "u": torch.tensor([[0.3, -0.4]] * 3, dtype=F64),
        "a": 0.7,
    }
    _check(c, values, mode, dm_method, 3)
    one = {"w": values["w"][:1], "u": values["u"][:1], "a": 0.7}  # a batch of one
    _check(c, one, mode, dm_method, 1)


def test_plan_structure_of_a_fused_layer():
    """Neighbouring wires join into blocks of at most ``max_block_dim``; a row of
    permutations is one step, shared when it repeats."""
    c = Circuit([2, 3, 2, 3])
    c.add(*[RY(0.1, wires=i) if i % 2 == 0 else TRY(0.2, wires=i) for i in range(4)])
    assert [s.blocks for s in compile_plan(c, "statevector", max_block_dim=6).steps] == [
        [[0, 1], [2, 3]]
    ]
    assert compile_plan(c, "statevector", max_block_dim=36).steps[0].blocks == [[0, 1, 2, 3]]
    assert compile_plan(c, "statevector", max_block_dim=5).steps[0].blocks == [[0], [1], [2], [3]]
    ring = Circuit.qubits(3).add(CNOT(wires=[0, 1]), CNOT(wires=[1, 2]), RY(0.3, wires=0))
    ring.add(CNOT(wires=[0, 1]), CNOT(wires=[1, 2]))
    steps = compile_plan(ring, "statevector").steps
    assert [type(s).__name__ for s in steps] == ["PermutationStep", "FusedStep", "PermutationStep"]
    assert steps[0] is steps[2]
    # CNOT(0,1) then CNOT(1,2): |100> -> |110> -> |111>, one composed gather
    assert isinstance(steps[0], PermutationStep) and steps[0].src[0b111] == 0b100


# ---------------------------------------------------------------------------------
# permutations, multi-wire gates, large-register local permutations
# ---------------------------------------------------------------------------------


def _permutations() -> Circuit:
    c = Circuit([2, 3, 2, 3])
    c.add(H(wires=0), TRY(Parameter("t"), wires=1), RY(0.3, wires=2), THadamard(wires=3))
    c.add(CNOT(wires=[0, 2]), TAdd(wires=[1, 3]), X(wires=0))  # X is a 1-wire: flushes the row
    c.add(TAdd(wires=[3, 1]), SWAP(wires=[0, 2]))
    c.add(CRY(Parameter("t"), wires=[2, 0]))
    c.add(TAdd(wires=[1, 3]), TAdd(wires=[1, 3]))
    return c


@pytest.mark.parametrize(("mode", "dm_method"), MODES)
@pytest.mark.parametrize("grad", [False, True])
def test_permutations_and_gates_values_and_gradients(mode, dm_method, grad):
    c = _permutations()
    t = torch.tensor([0.4, -1.1], dtype=F64, requires_grad=grad)
    out = simulate(c, {"t": t}, mode, dm_method)
    ref = reference(c, {"t": t}, 2, mode == "density_matrix")
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-9)
    if grad:
        wts = torch.linspace(0.1, 1.0, out[0].numel(), dtype=F64).reshape(out[0].shape)
        (g,) = torch.autograd.grad((wts * out.abs() ** 2).sum(), t)
        t2 = t.detach().clone().requires_grad_(True)
        ref2 = reference(c, {"t": t2}, 2, mode == "density_matrix")
        (g_ref,) = torch.autograd.grad((wts * ref2.abs() ** 2).sum(), t2)
        np.testing.assert_allclose(g.numpy(), g_ref.numpy(), atol=1e-9)


def test_three_wire_permutation_on_a_large_register_gathers_locally():
    """Above ``full_perm_limit`` a permutation gathers on its own wires."""
    c = Circuit.qubits(3).add(H(wires=0), X(wires=2), CSWAP(wires=[0, 1, 2]), CNOT(wires=[2, 0]))
    plan = compile_plan(c, "statevector", full_perm_limit=4)
    kinds = [type(s).__name__ for s in plan.steps]
    assert kinds == ["FusedStep", "LocalPermutationStep", "LocalPermutationStep"]
    assert plan.steps[1].wires == [0, 1, 2]
    # the default limit composes both into one whole-register gather
    assert [type(s).__name__ for s in compile_plan(c, "statevector").steps] == [
        "FusedStep",
        "PermutationStep",
    ]


def test_local_permutations_on_a_23_qubit_register():
    """D = 2^23 > the default ``full_perm_limit``: the simulator gathers on the gate's wires.

    Only wires 0-2 are touched: the state is the 3-qubit reference state on the
    leading wires times ``|0…0>`` on the other 20 (complex64, 64 MiB).
    """
    n = 23
    small = Circuit.qubits(3).add(
        RY(Parameter("a"), wires=0), H(wires=1), X(wires=2), CSWAP(wires=[0, 1, 2]),
        CNOT(wires=[2, 0]), RY(0.3, wires=2),
    )  # fmt: skip
    big = Circuit.qubits(n).add(*small.ops)
    assert [type(s).__name__ for s in compile_plan(big, "statevector").steps] == [
        "FusedStep", "LocalPermutationStep", "LocalPermutationStep", "FusedStep",
    ]  # fmt: skip
    a = torch.tensor(0.7, dtype=torch.float32, requires_grad=True)
    psi = TorchSimulator("statevector").run(big, {"a": a}).vector
    lead = psi.reshape(8, -1)
    a_ref = torch.tensor(0.7, dtype=F64, requires_grad=True)
    ref = reference(small, {"a": a_ref}, 1, False)[0]
    np.testing.assert_allclose(lead[:, 0].detach().numpy(), ref.detach().numpy(), atol=1e-6)
    assert float(lead[:, 1:].detach().abs().max()) == 0.0
    # the gradient flows back through both local gathers
    wts = torch.arange(1.0, 9.0)
    (g,) = torch.autograd.grad((wts * lead[:, 0].abs() ** 2).sum(), a)
    (g_ref,) = torch.autograd.grad((wts.to(F64) * ref.abs() ** 2).sum(), a_ref)
    assert abs(float(g) - float(g_ref)) < 1e-5


# ---------------------------------------------------------------------------------
# channels: mixtures and Kraus sets, factored and dense, batched
# ---------------------------------------------------------------------------------


def _noisy(batched_p: bool) -> Circuit:
    c = Circuit([2, 3])
    p = Parameter("p") if batched_p else 0.2
    k0 = np.diag([1.0, np.sqrt(0.5)])
    k1 = np.array([[0.0, np.sqrt(0.5)], [0.0, 0.0]])
    c.add(RY(Parameter("t"), wires=0), TRY(0.7, wires=1), H(wires=0))
    c.add(Depolarizing(p, wires=0))  # a mixture: weights and unitaries
    c.add(RY(0.2, wires=0))
    c.add(Kraus([k0, k1], wires=0))  # plain Kraus operators
    c.add(AmplitudeDamping(0.3, 0.1, wires=1))
    c.add(BitFlip(p, wires=0))
    c.add(RX(Parameter("t"), wires=0), TRY(0.5, wires=1))
    c.add(Depolarizing(0.1, wires=1))  # rank grows past D = 6: the factored ρ turns dense
    return c


@pytest.mark.parametrize("dm_method", ["dense", "auto"])
@pytest.mark.parametrize("batched_p", [False, True])
def test_channels_against_kraus_sums(dm_method, batched_p):
    c = _noisy(batched_p)
    values = {"t": torch.tensor([0.3, 1.2, -0.8], dtype=F64)}
    if batched_p:
        values["p"] = torch.tensor([0.0, 0.15, 0.4], dtype=F64)
    _check(c, values, "density_matrix", dm_method, 3)


@pytest.mark.parametrize("dm_method", ["dense", "auto"])
def test_channel_gradients(dm_method):
    c = _noisy(True)
    t = torch.tensor([0.3, 1.2], dtype=F64, requires_grad=True)
    p = torch.tensor([0.05, 0.3], dtype=F64, requires_grad=True)
    rho = simulate(c, {"t": t, "p": p}, "density_matrix", dm_method)
    wts = torch.linspace(0.2, 1.0, 36, dtype=F64).reshape(6, 6)
    g = torch.autograd.grad((wts * rho.real).sum() + (wts * rho.imag).sum(), (t, p))
    t2, p2 = (v.detach().clone().requires_grad_(True) for v in (t, p))
    ref = reference(c, {"t": t2, "p": p2}, 2, True)
    g_ref = torch.autograd.grad((wts * ref.real).sum() + (wts * ref.imag).sum(), (t2, p2))
    for a, b in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-9)


def test_factored_rank_and_weights_of_a_mixture():
    """Depolarizing on a qubit: 4 weighted components; the state keeps them factored."""
    c = Circuit.qubits(2).add(H(wires=0), Depolarizing(0.3, wires=0))
    sim = TorchSimulator("density_matrix", dtype=C128)
    state = sim.run(c)
    assert state.rank == 4
    ref = reference(c, {}, 1, True)[0]
    np.testing.assert_allclose(state.density_matrix.numpy(), ref.numpy(), atol=ATOL_F64)
    two = Circuit.qubits(2).add(H(wires=0), Depolarizing(0.3, wires=0), BitFlip(0.2, wires=1))
    s2 = sim.run(two)
    assert s2.rank is None and s2.factor is None  # 4 x 2 components > D = 4: dense
    np.testing.assert_allclose(
        s2.density_matrix.numpy(), reference(two, {}, 1, True)[0].numpy(), atol=ATOL_F64
    )


def test_a_channel_in_a_statevector_circuit_is_refused():
    c = Circuit.qubits(1).add(Depolarizing(0.1, wires=0))
    with pytest.raises(Exception, match=r"^argument 'mode': the circuit has a channel "):
        compile_plan(c, "statevector")


# ---------------------------------------------------------------------------------
# large batches run chunk by chunk (no gradient)
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "dm_method", "batch"), [("statevector", "auto", 2048), ("density_matrix", "dense", 96)]
)
def test_chunked_batches(mode, dm_method, batch):
    w = ParameterVector("w", 4)
    c = Circuit([2, 3, 2, 3])
    c.add(RY(w[0], wires=0), TRY(w[1], wires=1), RY(w[2], wires=2), TRY(w[3], wires=3))
    c.add(CNOT(wires=[0, 2]), TAdd(wires=[1, 3]), CRY(Parameter("c"), wires=[2, 0]))
    c.add(RY(0.3, wires=0), RY(w[0], wires=2))
    if mode == "density_matrix":
        c.add(Depolarizing(Parameter("p"), wires=0), AmplitudeDamping(0.2, wires=2))
    rng = np.random.default_rng(3)
    values = {
        "w": torch.as_tensor(rng.uniform(-2, 2, size=(batch, 4))),
        "c": torch.as_tensor(rng.uniform(-2, 2, size=batch)),
    }
    if mode == "density_matrix":
        values["p"] = torch.as_tensor(rng.uniform(0, 0.5, size=batch))
    with torch.no_grad():
        _check(c, values, mode, dm_method, batch)


@pytest.mark.parametrize("dm_method", ["dense", "auto"])
def test_channels_that_keep_rho_factored(dm_method):
    """D = 12: a mixture, a Kraus set, a mixture again stay factored (rank 2, 4, 8) with
    per-element weights; the fourth channel (rank 32 > 12) makes ρ dense."""
    c = Circuit([2, 3, 2])
    c.add(RY(Parameter("t"), wires=0), TRY(0.9, wires=1), H(wires=2))
    c.add(BitFlip(Parameter("p"), wires=0))  # mixture, batched weights: rank 2
    c.add(CNOT(wires=[0, 2]), TRY(Parameter("t"), wires=1), CRY(Parameter("t"), wires=[2, 0]))
    c.add(PhaseDamping(Parameter("g"), wires=2))  # Kraus operators, batched: rank 4
    c.add(RX(0.3, wires=0))
    c.add(BitFlip(Parameter("p"), wires=2))  # a mixture after weights: rank 8
    values = {
        "t": torch.tensor([0.3, 1.2], dtype=F64),
        "p": torch.tensor([0.1, 0.35], dtype=F64),
        "g": torch.tensor([0.2, 0.6], dtype=F64),
    }
    _check(c, values, "density_matrix", dm_method, 2)
    if dm_method == "auto":
        state = TorchSimulator("density_matrix", dtype=C128).run(c, values)
        assert state.rank == 8 and state.weights.shape == (2, 8)
    c.add(Depolarizing(0.2, wires=0))  # rank 32 > D: dense from here
    _check(c, values, "density_matrix", dm_method, 2)


def test_kraus_channels_alone_turn_rho_dense_without_weights():
    """Only Kraus operators (no weights): the factored ρ is densified from plain components."""
    k0 = np.diag([1.0, np.sqrt(0.7)])
    k1 = np.array([[0.0, np.sqrt(0.3)], [0.0, 0.0]])
    c = Circuit.qubits(1).add(H(wires=0), Kraus([k0, k1], wires=0), RY(0.4, wires=0))
    c.add(PhaseDamping(0.25, wires=0), RX(0.2, wires=0))  # rank 4 > D = 2: dense
    for dm_method in ("auto", "dense"):
        _check(c, {}, "density_matrix", dm_method, 1)
    first = Circuit.qubits(1).add(H(wires=0), Kraus([k0, k1], wires=0))
    state = TorchSimulator("density_matrix", dtype=C128).run(first)
    assert state.rank == 2 and state.weights is None  # plain components, no weights


@pytest.mark.parametrize("dm_method", ["dense", "auto"])
def test_mixture_gradient_is_finite_at_zero_probability(dm_method):
    """Mixtures enter through their weights, linear in p: d/dp at p = 0 is the forward
    difference (exact for a linear map), not the infinite slope of sqrt(p) Kraus operators."""
    c = Circuit([2, 3]).add(RY(0.7, wires=0), TRY(0.4, wires=1))
    c.add(Depolarizing(Parameter("p"), wires=0), BitFlip(Parameter("p"), wires=0))
    p = torch.tensor(0.0, dtype=F64, requires_grad=True)
    rho = simulate(c, {"p": p}, "density_matrix", dm_method)
    wts = torch.linspace(0.2, 1.0, 36, dtype=F64).reshape(6, 6)
    (g,) = torch.autograd.grad((wts * rho.real).sum(), p)
    h = 1e-3

    def f(v: float) -> float:
        return float((wts * reference(c, {"p": v}, 1, True)[0].real).sum())

    # ρ(p) is quadratic in p (two channels): this one-sided difference is exact
    forward = (4 * f(h) - 3 * f(0.0) - f(2 * h)) / (2 * h)
    assert math.isfinite(float(g)) and abs(float(g) - forward) < 1e-8


@pytest.mark.parametrize(("mode", "dm_method"), MODES)
def test_a_permutation_before_any_parameter_in_a_gradient_run(mode, dm_method):
    """The first steps see a state that needs no gradient while the run does (no buffers)."""
    c = Circuit([2, 3, 2]).add(CNOT(wires=[0, 2]), X(wires=0))
    c.add(CNOT(wires=[0, 2]), TAdd(wires=[2, 1]), RY(Parameter("t"), wires=0))
    c.add(TRY(Parameter("t"), wires=1), CNOT(wires=[0, 2]))
    t = torch.tensor([0.4, 1.3], dtype=F64, requires_grad=True)
    out = simulate(c, {"t": t}, mode, dm_method, levels=[1, 2, 0])
    ref = reference(c, {"t": t}, 2, mode == "density_matrix", [1, 2, 0])
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), atol=1e-9)
    wts = torch.linspace(0.1, 1.0, out[0].numel(), dtype=F64).reshape(out[0].shape)
    (g,) = torch.autograd.grad((wts * out.abs() ** 2).sum(), t)
    t2 = t.detach().clone().requires_grad_(True)
    ref2 = reference(c, {"t": t2}, 2, mode == "density_matrix", [1, 2, 0])
    (g_ref,) = torch.autograd.grad((wts * ref2.abs() ** 2).sum(), t2)
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), atol=1e-9)


def test_density_matrix_permutation_above_the_flat_index_limit():
    """D = 3^7 * 2 = 4374: D^2 > ``FLAT_DM_PERM_LIMIT`` (2^24), so a permutation of ρ
    gathers rows then columns instead of one flat index (complex64, 153 MiB).

    Only wires 0, 1, 5, 6 and 7 are touched; the others stay in |0>: ρ is the reference
    ρ of those five wires, embedded at the indices where the untouched wires are 0.
    """
    dims = [3] * 7 + [2]
    ops = [THadamard(wires=0), RY(0.6, wires=7), TRY(0.8, wires=6),
           TAdd(wires=[0, 1]), TSWAP(wires=[1, 6]), TAdd(wires=[6, 5])]  # fmt: skip
    big = Circuit(dims).add(*ops)
    kinds = [type(s).__name__ for s in compile_plan(big, "density_matrix").steps]
    assert kinds == ["FusedStep", "PermutationStep"]
    wires = [0, 1, 5, 6, 7]
    small = Circuit([dims[w] for w in wires]).add(
        THadamard(wires=0), RY(0.6, wires=4), TRY(0.8, wires=3),
        TAdd(wires=[0, 1]), TSWAP(wires=[1, 3]), TAdd(wires=[3, 2]),
    )  # fmt: skip
    ref = reference(small, {}, 1, True)[0].numpy()
    with torch.no_grad():
        rho = TorchSimulator("density_matrix", dm_method="dense").run(big).density_matrix
    digits = np.array(np.unravel_index(np.arange(small.dim), [dims[w] for w in wires]))
    full = np.zeros((len(dims), small.dim), dtype=np.int64)
    full[wires] = digits
    idx = torch.as_tensor(np.ravel_multi_index(tuple(full), dims))
    block = rho[idx][:, idx]
    np.testing.assert_allclose(block.numpy(), ref, atol=2e-6)
    assert abs(float(rho.abs().sum()) - float(block.abs().sum())) < 1e-3  # nothing elsewhere


def test_float64_vectors_bound_into_a_complex64_simulator():
    """Bound vectors are cast to the simulator's real dtype: the state stays complex64."""
    w = ParameterVector("w", 3)
    c = Circuit.qubits(3).add(*[RY(w[i], wires=i) for i in range(3)], CNOT(wires=[0, 1]))
    c.add(*[RZ(w[i], wires=i) for i in range(3)])
    values = {"w": torch.tensor([[0.3, -1.1, 2.0], [0.9, 0.2, -0.4]], dtype=F64)}
    psi = TorchSimulator("statevector").run(c, values).vector
    assert psi.dtype == torch.complex64
    ref = reference(c, values, 2, False)
    np.testing.assert_allclose(psi.numpy(), ref.numpy(), atol=1e-6)


@pytest.mark.parametrize(("mode", "dm_method"), MODES)
def test_interleaved_gate_kinds_at_one_depth(mode, dm_method):
    """Groups of one kind are evaluated together, then put back in wire order."""
    c = Circuit.qubits(4).add(H(wires=0), H(wires=1), H(wires=2), H(wires=3))
    c.add(CNOT(wires=[0, 1]))  # the next layer is not the first one
    c.add(RY(Parameter("a"), wires=0), RX(Parameter("b"), wires=1), RY(0.9, wires=2))
    c.add(RZ(0.4, wires=3), RX(0.2, wires=0), RY(Parameter("a"), wires=2))  # wire 1 skips
    _check(c, {"a": torch.tensor(0.35, dtype=F64), "b": torch.tensor(-1.2, dtype=F64)},
           mode, dm_method, 1)  # fmt: skip
