"""The state a plan step takes and returns (``qsem.simulators.plan_state``), step by step.

Each step gets a :class:`SimState` and returns a new one that says what it holds
(statevector, dense ρ, factored ρ with its rank and weights, batch); the state it
was given and the run's :class:`Context` are never changed. Values are checked
against the gate-by-gate reference of ``tests/test_plan_mutation.py`` (each
operation's own matrix or Kraus operators, one at a time) or a hand-built
permutation; the steps are called directly, the way the engine calls them.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ATOL_F64
from test_kernels_mutation import CountingWorkspace
from test_plan_mutation import reference

from qsem.circuits import (
    CNOT,
    CRY,
    RY,
    RZ,
    SWAP,
    BitFlip,
    Circuit,
    Depolarizing,
    H,
    Parameter,
    PhaseDamping,
    TAdd,
    TShift,
)
from qsem.simulators.kernels import Workspace
from qsem.simulators.plan import (
    ChannelStep,
    Context,
    FusedStep,
    GateStep,
    LocalPermutationStep,
    PermutationStep,
    SimState,
    SuperStep,
    compile_plan,
    factor_to_dense,
    run_plan,
)

F64, C128 = torch.float64, torch.complex128


def context(circuit: Circuit, values: dict | None = None, work: bool = False) -> Context:
    return Context(circuit.dims, circuit.ops, values, C128, F64, torch.device("cpu"),
                   work=Workspace() if work else None)  # fmt: skip


def basis_start(circuit: Circuit, batch: int, mode: str) -> SimState:
    x = torch.zeros(batch, circuit.dim, dtype=C128)
    x[:, 0] = 1
    return SimState(x, mode, basis=(0,) * len(circuit.dims))


def dense(s: SimState, d: int) -> torch.Tensor:
    """``ρ`` ``(B, D, D)`` of any representation."""
    if s.mode == "factored":
        return factor_to_dense(s.tensor.reshape(-1, s.rank, d), s.weights, s.rank)
    if s.mode == "density_matrix":
        return s.tensor.reshape(-1, d, d)
    return s.tensor[:, :, None] * s.tensor.conj()[:, None, :]


def test_each_step_returns_the_representation_it_leaves() -> None:
    """A factored ρ through every kind of step: rank and weights grow with each mixture
    until the rank would pass ``D``, then ρ turns dense; the state each step was given
    keeps its tensor, rank, weights and basis levels; ρ matches the reference after
    every step."""
    t = Parameter("t")
    c = Circuit.qubits(2).add(
        RY(t, wires=0), H(wires=1),  # fused first layer on the basis state
        CNOT(wires=[0, 1]),  # permutation
        Depolarizing(0.3, wires=0),  # a mixture of 4: rank 4 = D, weights
        RZ(t, wires=1), CNOT(wires=[1, 0]),
        BitFlip(0.2, wires=1),  # 4 x 2 > D: dense
        RY(0.4, wires=0),
    )  # fmt: skip
    vals = {"t": torch.tensor([0.3, 1.1, -0.7], dtype=F64)}
    plan = compile_plan(c, "density_matrix")
    # from the first channel on, the plan holds one SuperStep whose fallback is the
    # ordinary steps (tests/test_plan_super.py checks the SuperStep itself)
    assert [type(s) for s in plan.steps] == [FusedStep, PermutationStep, SuperStep]
    steps = plan.steps[:2] + plan.steps[2].fallback
    assert [type(s) for s in steps] == [
        FusedStep, PermutationStep, ChannelStep, FusedStep, PermutationStep, ChannelStep,
        FusedStep,
    ]  # fmt: skip
    ctx = context(c, vals)
    s = basis_start(c, 3, "factored")
    seen = []
    done = 0  # operations applied so far
    for step, n_ops in zip(steps, [2, 1, 1, 1, 1, 1, 1], strict=True):
        before = (s.tensor, s.rank, s.weights, s.basis, s.mode)
        new = step.apply(s, ctx)
        assert (s.tensor, s.rank, s.weights, s.basis, s.mode) == before
        seen.append((new.mode, new.rank, None if new.weights is None else tuple(new.weights.shape),
                     new.batch, new.basis))  # fmt: skip
        done += n_ops
        prefix = Circuit.qubits(2).add(*c.ops[:done])
        np.testing.assert_allclose(
            dense(new, 4).numpy(), reference(prefix, vals, 3, True).numpy(), atol=ATOL_F64
        )
        s = new
    assert seen == [
        ("factored", 1, None, 3, None),
        ("factored", 1, None, 3, None),
        ("factored", 4, (12,), 3, None),
        ("factored", 4, (12,), 3, None),
        ("factored", 4, (12,), 3, None),
        ("density_matrix", 1, None, 3, None),
        ("density_matrix", 1, None, 3, None),
    ]
    assert ctx.batch_slice is None and ctx.full_batch == 1 and ctx.work is None


def test_a_kraus_channel_on_a_weighted_factored_state_repeats_the_weights() -> None:
    """Rank 2 with weights, then a Kraus set of 2 (no mixture): rank 4, each component's
    weight repeated for both of its Kraus images."""
    c = Circuit.qubits(2).add(H(wires=0), BitFlip(0.25, wires=0), PhaseDamping(0.4, wires=1))
    ctx = context(c)
    s = basis_start(c, 1, "factored")
    for step in compile_plan(c, "density_matrix").steps:
        s = step.apply(s, ctx)
    assert (s.mode, s.rank, s.batch) == ("factored", 4, 1)
    np.testing.assert_allclose(
        dense(s, 4).numpy(), reference(c, {}, 1, True).numpy(), atol=ATOL_F64
    )
    assert s.weights is not None
    np.testing.assert_allclose(s.weights.numpy(), [0.75, 0.75, 0.25, 0.25], atol=ATOL_F64)


def test_a_first_layer_uses_the_basis_levels_the_state_carries() -> None:
    """A state that carries basis levels (1, 2) is built as the product state of those
    levels; the same tensor without them is multiplied through: the same result (the
    levels must describe the tensor, and the engine sets them only then)."""
    c = Circuit([2, 3]).add(RY(0.7, wires=0), TShift(wires=1))
    step = compile_plan(c, "statevector").steps[0]
    x = torch.zeros(2, 6, dtype=C128)
    x[:, 1 * 3 + 2] = 1
    ctx = context(c)
    with_levels = step.apply(SimState(x, "statevector", basis=(1, 2)), ctx)
    without = step.apply(SimState(x, "statevector"), ctx)
    ref = reference(c, {}, 2, False, levels=[1, 2])
    np.testing.assert_allclose(with_levels.tensor.numpy(), ref.numpy(), atol=ATOL_F64)
    np.testing.assert_allclose(without.tensor.numpy(), ref.numpy(), atol=ATOL_F64)
    assert with_levels.basis is None and without.basis is None


def test_state_and_context_are_frozen_and_a_chunk_gets_its_own_context() -> None:
    c = Circuit.qubits(1).add(RY(0.1, wires=0))
    s = basis_start(c, 2, "statevector")
    ctx = context(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.rank = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.batch_slice = slice(0, 1)
    part = ctx.for_rows(slice(2, 4), 6)
    assert (part.batch_slice, part.full_batch) == (slice(2, 4), 6)
    assert (ctx.batch_slice, ctx.full_batch) == (None, 1)
    assert part.ops is ctx.ops and part.bindings is ctx.bindings
    assert s.evolved(s.tensor * 2).basis is None and s.basis == (0,)
    f = SimState(torch.ones(6, 4, dtype=C128), "factored", rank=3)
    assert (f.batch, f.vector_like, SimState(f.tensor, "density_matrix").vector_like) == (
        2, True, False,
    )  # fmt: skip


def test_run_plan_returns_the_last_steps_state() -> None:
    c = Circuit.qubits(3).add(H(wires=0), Depolarizing(0.5, wires=0), BitFlip(0.3, wires=1))
    ctx = context(c)
    end = run_plan(compile_plan(c, "density_matrix"), basis_start(c, 1, "factored"), ctx)
    assert (end.mode, end.rank, end.batch) == ("factored", 8, 1)
    np.testing.assert_allclose(
        dense(end, 8).numpy(), reference(c, {}, 1, True).numpy(), atol=ATOL_F64
    )


def _permuted(rho: torch.Tensor, src: np.ndarray) -> torch.Tensor:
    """``P ρ P^T`` for ``(P x)[i] = x[src[i]]``, by an explicit permutation matrix."""
    d = len(src)
    p = torch.zeros(d, d, dtype=rho.dtype)
    p[torch.arange(d), torch.as_tensor(src)] = 1
    return p @ rho @ p.T


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("flat_limit", [0, 10**6])
def test_density_matrix_permutation_flat_and_by_rows_then_columns(
    flat_limit: int, grad: bool
) -> None:
    """A batch of ρ permuted through one flat index, or rows then columns (a register
    above ``flat_limit`` entries): values against ``P ρ P^T``, and the gradient of
    ``Re Σ W ∘ out`` (``P^T W P``) through both paths, with and without a workspace."""
    c = Circuit([3, 2, 3, 2]).add(TAdd(wires=[0, 2]), SWAP(wires=[0, 2]), CNOT(wires=[1, 3]))
    (step,) = compile_plan(c, "density_matrix").steps
    assert isinstance(step, PermutationStep)
    step = PermutationStep(step.src, flat_limit=flat_limit)
    d = c.dim
    g = torch.Generator().manual_seed(4)
    rho = torch.randn(3, d, d, dtype=C128, generator=g)
    x = rho.reshape(3, d * d).clone().requires_grad_(grad)
    ctx = context(c, work=not grad)
    out = step.apply(SimState(x, "density_matrix"), ctx)
    want = torch.stack([_permuted(r, step.src) for r in rho])
    np.testing.assert_allclose(out.tensor.detach().reshape(3, d, d).numpy(), want.numpy(),
                               atol=ATOL_F64)  # fmt: skip
    assert out.mode == "density_matrix"
    if grad:
        w = torch.randn(3, d, d, dtype=C128, generator=g)
        (out.tensor.reshape(3, d, d) * w).real.sum().backward()
        assert x.grad is not None
        # torch's gradient of a real loss in a complex tensor: conj(∂L/∂x) = P^T conj(W) P
        back = torch.stack([_permuted(wi.conj(), np.argsort(step.src)) for wi in w])
        np.testing.assert_allclose(x.grad.reshape(3, d, d).numpy(), back.numpy(), atol=ATOL_F64)


def _grad(f, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``∂ Re Σ W ∘ f(x) / ∂x`` as torch gives it (``conj`` of the holomorphic one)."""
    leaf = x.clone().requires_grad_(True)
    (f(leaf) * w).real.sum().backward()
    assert leaf.grad is not None
    return leaf.grad


@pytest.mark.parametrize("mode", ["statevector", "density_matrix", "factored"])
def test_local_permutations_apply_and_undo(mode: str) -> None:
    """Local gathers (a register above ``full_perm_limit``) on ψ, a factored ρ and a
    dense ρ against the whole-register permutation, values and gradients; ``unapply``
    (the adjoint sweep's undo, on a fresh step: no cached indices) inverts ``apply``."""
    c = Circuit([2, 3, 3]).add(TAdd(wires=[2, 1]))
    (whole,) = compile_plan(c, "statevector").steps
    assert isinstance(whole, PermutationStep)
    d, back = c.dim, np.argsort(whole.src)
    g = torch.Generator().manual_seed(5)
    ctx = context(c)

    def local() -> LocalPermutationStep:
        (step,) = compile_plan(c, "statevector", full_perm_limit=1).steps
        assert isinstance(step, LocalPermutationStep)
        return step

    if mode == "density_matrix":
        rho = torch.randn(2, d, d, dtype=C128, generator=g)
        w = torch.randn(2, d, d, dtype=C128, generator=g)
        step = local()

        def run(r: torch.Tensor) -> torch.Tensor:
            out = step.apply(SimState(r.reshape(2, -1), "density_matrix"), ctx)
            return out.tensor.reshape(2, d, d)

        want = torch.stack([_permuted(r, whole.src) for r in rho])
        np.testing.assert_allclose(run(rho).numpy(), want.numpy(), atol=ATOL_F64)
        want_grad = torch.stack([_permuted(wi.conj(), back) for wi in w])
        np.testing.assert_allclose(_grad(run, rho, w).numpy(), want_grad.numpy(), atol=ATOL_F64)
        return
    x = torch.randn(4, d, dtype=C128, generator=g)
    w = torch.randn(4, d, dtype=C128, generator=g)
    undo = local()
    np.testing.assert_allclose(undo.unapply(x[:, whole.src], ctx).numpy(), x.numpy(),
                               atol=ATOL_F64)  # fmt: skip
    np.testing.assert_allclose(_grad(lambda v: undo.unapply(v, ctx), x, w).numpy(),
                               w.conj()[:, whole.src].numpy(), atol=ATOL_F64)  # fmt: skip
    step = local()
    s = SimState(x, mode, rank=2 if mode == "factored" else 1)
    out = step.apply(s, ctx)
    assert (out.mode, out.rank) == (s.mode, s.rank)
    np.testing.assert_allclose(out.tensor.numpy(), x[:, whole.src].numpy(), atol=ATOL_F64)
    grad = _grad(lambda v: step.apply(SimState(v, s.mode, s.rank), ctx).tensor, x, w)
    np.testing.assert_allclose(grad.numpy(), w.conj()[:, back].numpy(), atol=ATOL_F64)


def test_a_gate_step_on_each_representation() -> None:
    """A two-wire gate multiplied on its wires: ``U ψ``, ``U ψ_k`` per component of a
    batched factored ρ (a batched matrix repeated per component), and ``U ρ U^†``."""
    t = Parameter("t")
    c = Circuit([2, 2]).add(CRY(t, wires=[0, 1]))
    (step,) = compile_plan(c, "density_matrix").steps
    assert isinstance(step, GateStep)
    vals = {"t": torch.tensor([0.4, -1.3], dtype=F64)}
    ctx = context(c, vals)
    g = torch.Generator().manual_seed(6)
    comps = torch.randn(2, 2, 4, dtype=C128, generator=g)  # (B, r, D)
    f = step.apply(SimState(comps.reshape(4, 4), "factored", rank=2), ctx)
    rho = factor_to_dense(comps, None, 2)
    dm = step.apply(SimState(rho.reshape(2, 16), "density_matrix"), ctx)
    u = c.ops[0].matrix([vals["t"]], (2, 2), dtype=C128)
    want = u @ rho @ u.mH
    np.testing.assert_allclose(dense(f, 4).numpy(), want.numpy(), atol=ATOL_F64)
    np.testing.assert_allclose(dense(dm, 4).numpy(), want.numpy(), atol=ATOL_F64)


@pytest.mark.parametrize(
    "module",
    ["qsem.simulators.plan", "qsem.simulators.plan_compile", "qsem.simulators.plan_exec",
     "qsem.simulators.plan_state", "qsem.simulators.plan_super", "qsem.simulators.state"],
)  # fmt: skip
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_documented_plan_example_runs_as_written() -> None:
    """The example of docs/simulators.md ("Inside a run")."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "simulators.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "SimState(" in b]
    ns: dict[str, object] = {}
    exec(compile(code, "docs/simulators.md", "exec"), ns)
    end = ns["end"]
    assert isinstance(end, SimState) and end.weights is not None
    np.testing.assert_allclose(end.weights.numpy(), [0.925, 0.025, 0.025, 0.025], atol=1e-12)


@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
def test_a_permutation_writes_into_the_workspace_only_without_a_gradient(mode: str) -> None:
    """With a workspace and no gradient the gather writes into a reused buffer (a
    counting workspace sees it); an input that needs a gradient gets a fresh tensor
    and the exact gradient, although the context still holds the workspace."""
    c = Circuit([3, 2, 3]).add(TAdd(wires=[0, 2]), SWAP(wires=[0, 2]))
    (step,) = compile_plan(c, mode).steps
    assert isinstance(step, PermutationStep)
    d = c.dim
    width = d if mode == "statevector" else d * d
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, width, dtype=C128, generator=g)
    src = step.src if mode == "statevector" else (step.src[:, None] * d + step.src).reshape(-1)
    work = CountingWorkspace()
    ctx = Context(c.dims, c.ops, None, C128, F64, torch.device("cpu"), work=work)
    out = step.apply(SimState(x, mode), ctx).tensor
    assert work.calls == 1 and out.untyped_storage().data_ptr() in work.storages
    np.testing.assert_allclose(out.numpy(), x[:, src].numpy(), atol=ATOL_F64)
    w = torch.randn(2, width, dtype=C128, generator=g)
    leaf = x.clone().requires_grad_(True)
    fresh = step.apply(SimState(leaf, mode), ctx).tensor
    assert work.calls == 1 and fresh.untyped_storage().data_ptr() not in work.storages
    (fresh * w).real.sum().backward()
    assert leaf.grad is not None
    np.testing.assert_allclose(leaf.grad.numpy(), w.conj()[:, np.argsort(src)].numpy(),
                               atol=ATOL_F64)  # fmt: skip


def test_whole_register_gather_up_to_and_including_the_limit() -> None:
    """A register of exactly ``full_perm_limit`` levels still composes its permutations
    into one whole-register gather; one level less of limit and they gather locally."""
    c = Circuit.qubits(2).add(CNOT(wires=[0, 1]), SWAP(wires=[0, 1]))
    assert [type(s) for s in compile_plan(c, "statevector", full_perm_limit=4).steps] == [
        PermutationStep
    ]
    assert [type(s) for s in compile_plan(c, "statevector", full_perm_limit=3).steps] == [
        LocalPermutationStep, LocalPermutationStep,
    ]  # fmt: skip


def test_a_channel_in_a_statevector_plan_is_refused_with_the_fix() -> None:
    c = Circuit.qubits(2).add(H(wires=0), Depolarizing(0.1, wires=1))
    with pytest.raises(Exception) as err:
        compile_plan(c, "statevector")
    assert str(err.value) == (
        "argument 'mode': the circuit has a channel (Depolarizing on wires [1]); "
        "simulate it with mode='density_matrix'"
    )


class FlatIndexSpy(PermutationStep):
    """A permutation step that counts its flat-index look-ups (the path it took)."""

    def __init__(self, src: np.ndarray, flat_limit: int) -> None:
        super().__init__(src, flat_limit)
        self.flat_calls = 0

    def flat_index(self, device: object, inverse: bool = False) -> torch.Tensor:
        self.flat_calls += 1
        return super().flat_index(device, inverse)


def test_the_flat_index_is_used_up_to_and_including_flat_limit_entries() -> None:
    """A ρ of exactly ``flat_limit`` entries gathers through the flat index; with one
    entry less of limit it gathers rows, then columns: the same values."""
    c = Circuit([3, 3]).add(TAdd(wires=[0, 1]))
    (step,) = compile_plan(c, "density_matrix").steps
    assert isinstance(step, PermutationStep)
    rho = torch.randn(1, 81, dtype=C128, generator=torch.Generator().manual_seed(8))
    outs = []
    for limit, flat_calls in ((81, 2), (80, 0)):  # the index and its inverse
        spy = FlatIndexSpy(step.src, limit)
        outs.append(spy.apply(SimState(rho, "density_matrix"), context(c)).tensor)
        assert spy.flat_calls == flat_calls
    np.testing.assert_allclose(outs[0].numpy(), outs[1].numpy(), atol=ATOL_F64)


def test_block_matrices_without_given_wire_matrices() -> None:
    """``block_matrices(ctx)`` (as the adjoint sweep calls it) builds each block's
    ``⊗ U_w`` itself: the Kronecker product of the gates' own matrices."""
    c = Circuit([2, 3, 2]).add(RY(0.3, wires=0), TShift(wires=1), H(wires=2), RZ(0.5, wires=2))
    (step,) = compile_plan(c, "statevector", max_block_dim=6).steps
    assert isinstance(step, FusedStep) and step.blocks == [[0, 1], [2]]
    ctx = context(c)
    (w0, m0), (w2, m2) = step.block_matrices(ctx)
    mats = [op.matrix([ctx.param(p) for p in op.params], (c.dims[op.wires[0]],), dtype=C128)
            for op in c.ops]  # fmt: skip
    assert (w0, w2) == ([0, 1], [2])
    np.testing.assert_allclose(m0.numpy(), torch.kron(mats[0], mats[1]).numpy(), atol=ATOL_F64)
    np.testing.assert_allclose(m2.numpy(), (mats[3] @ mats[2]).numpy(), atol=ATOL_F64)


@pytest.mark.parametrize("gap", [False, True])
def test_a_fused_layer_over_every_wire_runs_as_one_chain_into_the_workspace(gap: bool) -> None:
    """A layer that covers every wire is one Kronecker chain written into the reused
    buffers (a counting workspace sees them); a layer with an untouched wire applies
    each block on its own wires instead (no workspace). Same values as the reference."""
    c = Circuit([2, 3, 2]).add(RY(0.3, wires=0), TShift(wires=1))
    if not gap:
        c.add(H(wires=2))
    (step,) = compile_plan(c, "statevector", max_block_dim=2).steps
    assert isinstance(step, FusedStep)
    x = torch.randn(2, 12, dtype=C128, generator=torch.Generator().manual_seed(9))
    work = CountingWorkspace()
    ctx = Context(c.dims, c.ops, None, C128, F64, torch.device("cpu"), work=work)
    out = step.apply(SimState(x, "statevector"), ctx).tensor
    assert (work.calls > 0) is not gap
    u = torch.eye(12, dtype=C128)
    for op in c.ops:
        (w,) = op.wires
        m = op.matrix([ctx.param(p) for p in op.params], (c.dims[w],), dtype=C128)
        left, right = math.prod(c.dims[:w]), math.prod(c.dims[w + 1 :])
        u = torch.kron(torch.kron(torch.eye(left, dtype=C128), m), torch.eye(right, dtype=C128)) @ u
    np.testing.assert_allclose(out.numpy(), (x @ u.T).numpy(), atol=ATOL_F64)


@pytest.mark.parametrize(
    ("picks", "view"),
    [([0, 1, 2], True), ([1, 3, 5], True), ([4], True), ([0, 2], True), ([2, 0, 1], False),
     ([0, 1, 3], False), ([4, 4, 4], False)],
)  # fmt: skip
def test_stacked_vector_parameters_are_a_view_when_strided(picks: list[int], view: bool) -> None:
    """Entries of one bound vector at a constant positive stride are one slice: a view of
    the binding (its storage; a cheap backward); other index sets gather. Same values."""
    from qsem.circuits import ParameterVector

    w = ParameterVector("w", 6)
    bound = torch.arange(12, dtype=F64).reshape(2, 6)
    ctx = Context((2,), [], {"w": bound}, C128, F64, torch.device("cpu"))
    out = ctx.stacked_param([w[i] for i in picks])
    np.testing.assert_array_equal(out.numpy(), bound[:, picks].numpy())
    same = out.untyped_storage().data_ptr() == bound.untyped_storage().data_ptr()
    assert same is view
    scaled = ctx.stacked_param([2 * w[i] for i in picks])
    np.testing.assert_array_equal(scaled.numpy(), 2 * bound[:, picks].numpy())
    assert scaled.untyped_storage().data_ptr() != bound.untyped_storage().data_ptr()


def test_a_chunk_evaluates_its_own_rotation_table() -> None:
    """``Context.for_rows``: a rotation table holds the full batch's rows, so a chunk's
    context has none (``None``: the chunk's run evaluates its own); ``{}`` (each step
    evaluates its own groups) and ``None`` stay as they are; the rows are the chunk's."""
    ctx = Context((2,), [], {}, C128, F64, torch.device("cpu"))
    table = {1: torch.eye(2, dtype=C128).expand(4, 1, 2, 2)}
    for rotations, expected in [(table, None), ({}, {}), (None, None)]:
        part = dataclasses.replace(ctx, rotations=rotations).for_rows(slice(2, 4), 4)
        assert part.rotations == expected and type(part.rotations) is type(expected)
        assert (part.batch_slice, part.full_batch) == (slice(2, 4), 4)
