"""Run a compiled plan: each step takes a :class:`~.plan_state.SimState` and returns one.

The steps are the plan's data (built by :mod:`qsem.simulators.plan_compile`) and
their ``apply``: a step reads the representation from the state it is given
(statevector, dense ρ, or factored ρ with its rank and weights) and returns a new
state that says what it holds — a channel on a factored ρ returns a state of higher
rank, or a dense one. Nothing is written anywhere else, so a plan, a state and a
:class:`~.plan_state.Context` can be shared by any number of runs.

Steps trust their inputs: the public entry points validate once.

>>> import torch
>>> from qsem.circuits import Circuit, H, CNOT
>>> from qsem.simulators.plan_compile import compile_plan
>>> c = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]))
>>> ctx = Context(c.dims, c.ops, None, torch.complex64, torch.float32, "cpu")
>>> start = SimState(torch.tensor([[1, 0, 0, 0]], dtype=torch.complex64), "statevector")
>>> end = run_plan(compile_plan(c, "statevector"), start, ctx)
>>> end.mode, end.tensor.abs().pow(2).round(decimals=3).tolist()
('statevector', [[0.5, 0.0, 0.0, 0.5]])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qsem.circuits.operations import Channel, Gate
from qsem.circuits.parameters import Parameter
from qsem.circuits.rotations import rotation_matrix

from . import kernels
from .plan_state import Context, SimState, apply_unitary

#: Without autograd, a batched state above ``MIN_CHUNKED_BYTES`` runs in at least
#: ``MIN_CHUNKS`` chunks of the batch, of at most ``CHUNK_BYTES`` each, written back in
#: place: the peak stays near one state plus one chunk's working set.
CHUNK_BYTES = 64 << 20
MIN_CHUNKED_BYTES = 1 << 20
MIN_CHUNKS = 32

#: A density-matrix permutation gathers its ``D * D`` entries through one flat index
#: (int32, 4 bytes an entry) up to this many entries; beyond it, rows then columns.
FLAT_DM_PERM_LIMIT = 1 << 24


class Step:
    """One step of a plan: ``apply(state, ctx)`` returns the next state."""

    def apply(self, s: SimState, ctx: Context) -> SimState:
        raise NotImplementedError


@dataclass
class _Group:
    """Operations at one depth level with the same matrix formula: evaluated together."""

    ops: list[int]  # indices into the circuit's ops
    positions: list[int]  # their wires' positions in the dimension class


@dataclass
class _Level:
    groups: list[_Group]
    order: list[int] | None  # gather order after concatenating groups (+ identities)
    n_identity: int


@dataclass
class _DimClass:
    """The wires of one dimension in a fused step, processed as one stack."""

    d: int
    wires: list[int]
    levels: list[_Level]


def _level_matrices(level: _Level, d: int, ctx: Context) -> torch.Tensor:
    """Every wire's gate at one depth level: ``(..., W, d, d)`` in wire order."""
    parts = []
    for group in level.groups:
        m = None if ctx.rotations is None else ctx.rotations.get(id(group))
        if m is None:
            rep = ctx.ops[group.ops[0]]
            assert isinstance(rep, Gate)
            params = [
                ctx.stacked_param([ctx.ops[i].params[k] for i in group.ops])
                for k in range(len(rep.params))
            ]
            m = rep.matrix(params, (d,), dtype=ctx.dtype, device=ctx.device)
            if not params:  # a batched matrix is cut to the chunk's rows before it is expanded
                m = ctx._cut(m, 3)
                m = m.unsqueeze(-3).expand(*m.shape[:-2], len(group.ops), d, d)
        parts.append(m)
    if level.n_identity:
        parts.append(ctx.eye(d).expand(level.n_identity, d, d))
    if len(parts) == 1:
        layer = parts[0]
    else:
        batch_shape = torch.broadcast_shapes(*[q.shape[:-3] for q in parts])
        layer = torch.cat([q.expand(*batch_shape, *q.shape[-3:]) for q in parts], -3)
    if level.order is not None:
        layer = layer[..., level.order, :, :]
    return layer


@dataclass
class FusedStep(Step):
    """Single-wire gates fused per wire, wires joined into Kronecker blocks.

    Per dimension class the gates at each depth level are evaluated with stacked
    parameters, one call per gate kind, and multiplied into per-wire matrices with
    one batched matmul per level.
    """

    blocks: list[list[int]]
    classes: list[_DimClass]

    def _class_matrices(self, cls: _DimClass, ctx: Context) -> torch.Tensor:
        total: torch.Tensor | None = None
        for level in cls.levels:
            layer = _level_matrices(level, cls.d, ctx)
            total = layer if total is None else layer @ total
        assert total is not None
        return total

    def wire_matrices(self, ctx: Context) -> dict[int, torch.Tensor]:
        """Each fused wire's product of gates: ``{wire: (d, d) or (B, d, d)}``."""
        per_wire: dict[int, torch.Tensor] = {}
        for cls in self.classes:
            mats = self._class_matrices(cls, ctx)
            per_wire.update(zip(cls.wires, mats.unbind(-3), strict=True))
        return per_wire

    def block_matrices(
        self, ctx: Context, per_wire: dict[int, torch.Tensor] | None = None
    ) -> list[tuple[list[int], torch.Tensor]]:
        """``(wires, ⊗ U_w)`` per Kronecker block (identity on a block wire without gates)."""
        per_wire = self.wire_matrices(ctx) if per_wire is None else per_wire
        out = []
        for block in self.blocks:
            factors = [per_wire[v] if v in per_wire else ctx.eye(ctx.dims[v]) for v in block]
            out.append((block, kernels.kron(factors)))
        return out

    def apply(self, s: SimState, ctx: Context) -> SimState:
        per_wire = self.wire_matrices(ctx)
        if s.basis is not None and s.vector_like and s.rank == 1:
            return s.evolved(_product_state(per_wire, s.basis, ctx, s.tensor.shape))
        mats = [m for _, m in self.block_matrices(ctx, per_wire)]
        return s.evolved(self.apply_blocks(s, ctx, mats))

    def apply_blocks(self, s: SimState, ctx: Context, mats: list[torch.Tensor]) -> torch.Tensor:
        """Apply the blocks' matrices ``mats`` (one per block; the adjoint passes ``U^†``)."""
        # Every wire in order: a block's matrix, or an identity run (gap).
        rows: list[tuple[int, torch.Tensor | None]] = []
        start = {block[0]: (block, m) for block, m in zip(self.blocks, mats, strict=True)}
        w = 0
        n = len(ctx.dims)
        while w < n:
            entry = start.get(w)
            if entry is None:
                if rows and rows[-1][1] is None:
                    rows[-1] = (rows[-1][0] * ctx.dims[w], None)
                else:
                    rows.append((ctx.dims[w], None))
                w += 1
                continue
            block, m = entry
            rows.append((math.prod(ctx.dims[v] for v in block), m))
            w = block[-1] + 1
        if any(m is None for _, m in rows):
            # a sparse layer: each block on its own wires (no pass over untouched wires)
            for block, m in zip(self.blocks, mats, strict=True):
                s = s.evolved(apply_unitary(s, ctx, m, block))
            return s.tensor
        if s.vector_like:
            segments = [(dk, None if m is None else s.per_component(m)) for dk, m in rows]
        else:  # U ρ U^†: U's blocks on the row axes, conj(U)'s on the column axes
            segments = rows + [(dk, None if m is None else m.conj()) for dk, m in rows]
        return kernels.apply_kron_chain(s.tensor, segments, ctx.work)


def _product_state(
    per_wire: dict[int, torch.Tensor], basis: tuple[int, ...], ctx: Context, shape: torch.Size
) -> torch.Tensor:
    """``(⊗_w U_w) |l_1 … l_n> = ⊗_w U_w[:, l_w]``: a fused layer on a basis state."""
    vecs = []
    for w, d in enumerate(ctx.dims):
        m = per_wire.get(w)
        if m is None:  # a wire without gates keeps its basis vector
            m = ctx.eye(d)
        vecs.append(m[..., :, basis[w]])
    return kernels.kron_vectors(vecs, shape)


def _indices(src: np.ndarray, cache: dict[Any, Any], device: Any) -> tuple[torch.Tensor, ...]:
    """A permutation's gather indices on ``device`` and their inverse, cached per device."""
    key = str(device)
    if key not in cache:
        t = torch.as_tensor(src, dtype=torch.long, device=device)
        cache[key] = (t, torch.argsort(t))
    return cache[key]


@dataclass
class PermutationStep(Step):
    """A composed basis permutation over the whole register: one gather.

    A density matrix of up to ``flat_limit`` entries gathers through one flat index;
    a larger one gathers rows, then columns.
    """

    src: np.ndarray
    flat_limit: int = FLAT_DM_PERM_LIMIT
    _cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def indices(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        src, inv = _indices(self.src, self._cache, device)
        return src, inv

    def flat_index(self, device: Any, inverse: bool = False) -> torch.Tensor:
        """``P ρ P^T`` (or its inverse) as one gather over the flat ``D * D`` entries.

        int32 indices, built in int32 (no int64 temporary); the inverse only when a
        gradient needs it.
        """
        key = f"dm{'-inv' if inverse else ''}:{device}"
        if key not in self._cache:
            src, inv = self.indices(device)
            s = (inv if inverse else src).to(torch.int32)
            d = len(self.src)
            self._cache[key] = ((s[:, None] * d + s[None, :]).reshape(-1), s)
        return self._cache[key][0]

    def apply(self, s: SimState, ctx: Context) -> SimState:
        x = s.tensor
        grad = torch.is_grad_enabled() and x.requires_grad
        if s.vector_like:
            src, inv = self.indices(ctx.device)
            if ctx.work is not None and not grad:
                return s.evolved(kernels.index_rows(x, src, out=ctx.work.out(x, x.shape)))
            return s.evolved(kernels.gather(x, src, inv, 1))
        d = len(self.src)
        if d * d <= self.flat_limit:
            flat = self.flat_index(ctx.device)
            if ctx.work is not None and not grad:
                return s.evolved(torch.index_select(x, 1, flat, out=ctx.work.out(x, x.shape)))
            return s.evolved(kernels.gather(x, flat, self.flat_index(ctx.device, True), 1))
        src, inv = self.indices(ctx.device)
        rho = x.reshape(-1, d, d)
        rho = kernels.gather(kernels.gather(rho, src, inv, 1), src, inv, 2)
        return s.evolved(rho.reshape(rho.shape[0], -1))


@dataclass
class LocalPermutationStep(Step):
    """A permutation gate gathered on its own wires (large registers)."""

    wires: list[int]
    src: np.ndarray
    _cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def unapply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """The inverse permutation on a statevector (the adjoint sweep)."""
        src, inv = _indices(self.src, self._cache, ctx.device)
        return kernels.apply_permutation_local(x, inv, src, ctx.dims, self.wires)

    def apply(self, s: SimState, ctx: Context) -> SimState:
        src, inv = _indices(self.src, self._cache, ctx.device)
        if s.vector_like:
            return s.evolved(
                kernels.apply_permutation_local(s.tensor, src, inv, ctx.dims, self.wires)
            )
        n = len(ctx.dims)
        shape2 = ctx.dims + ctx.dims
        x = kernels.apply_permutation_local(s.tensor, src, inv, shape2, self.wires)
        cols = [w + n for w in self.wires]
        return s.evolved(kernels.apply_permutation_local(x, src, inv, shape2, cols))


@dataclass
class GateStep(Step):
    """A multi-wire gate multiplied on its own wires."""

    index: int

    def apply(self, s: SimState, ctx: Context) -> SimState:
        gate = ctx.ops[self.index]
        assert isinstance(gate, Gate)
        return s.evolved(apply_unitary(s, ctx, ctx.matrix(gate), list(gate.wires)))


@dataclass
class ChannelStep(Step):
    """A channel on its wires (density-matrix mode only).

    Factored: each component ψ_k becomes the components K_j ψ_k (rank × number of
    Kraus operators), until the rank would exceed D; then ρ turns dense and the
    channel's superoperator is applied.
    """

    index: int

    def apply(self, s: SimState, ctx: Context) -> SimState:
        ch = ctx.ops[self.index]
        assert isinstance(ch, Channel)
        weights, ops = ctx.channel_operators(ch)
        if s.mode == "factored" and s.rank * ops.shape[-3] <= s.tensor.shape[-1]:
            return _factored_channel(s, ctx, list(ch.wires), ops, weights)
        if s.mode == "factored":
            s = s.densified()
        rho = kernels.apply_channel(s.tensor, ops, ctx.dims, list(ch.wires), weights)
        return s.evolved(rho)


def _factored_channel(
    s: SimState, ctx: Context, wires: list[int], ops: torch.Tensor, weights: torch.Tensor | None
) -> SimState:
    """``ψ_k -> K_j ψ_k``: a factored ρ of rank ``r`` becomes one of rank ``r m``."""
    x = s.tensor
    m, d = ops.shape[-3], x.shape[-1]
    parts = [
        kernels.apply_matrix(x, s.per_component(ops[..., j, :, :]), ctx.dims, wires)
        for j in range(m)
    ]
    out = torch.stack(parts, 1)  # (B * r, m, D): components of one element stay adjacent
    w = s.weights
    if weights is not None:
        new = s.per_component(weights.reshape(-1, m), 2).expand(x.shape[0], m)
        w = (new if w is None else w[:, None] * new).reshape(-1)
    elif w is not None:
        w = w[:, None].expand(-1, m).reshape(-1)
    return SimState(out.reshape(-1, d), "factored", rank=s.rank * m, weights=w)


@dataclass
class Plan:
    steps: list[Step]
    #: per dtype and device: the rotation groups' constants (see :func:`rotation_table`)
    _parts: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: how many shared rotation evaluations :func:`rotation_table` made (one per source)
    rotation_calls: int = 0
    #: how many forward passes ran in the native kernel (:mod:`.native`)
    native_runs: int = 0

    def rotation_groups(self, ctx: Context) -> list[tuple[_Group, int]]:
        """``(group, d)`` of every fused group of one-parameter rotations, in step order."""
        key = ("groups", ctx.dtype, str(ctx.device))
        if key not in self._parts:
            found = []
            for step in self.steps:
                for cls in step.classes if isinstance(step, FusedStep) else []:
                    for level in cls.levels:
                        for group in level.groups:
                            rep = ctx.ops[group.ops[0]]
                            if (
                                isinstance(rep, Gate)
                                and _rotation_parts(rep, cls.d, ctx) is not None
                            ):
                                found.append((group, cls.d))
            self._parts[key] = found
        return self._parts[key]


def _rotation_parts(gate: Gate, d: int, ctx: Context) -> torch.Tensor | None:
    return gate.rotation_parts((d,), dtype=ctx.dtype, device=ctx.device)


def _source(ctx: Context, group: _Group, d: int) -> Any:
    """Rotations whose angles are entries of one bound vector share a source key."""
    params = [ctx.ops[i].params[0] for i in group.ops]
    first = params[0]
    if isinstance(first, Parameter) and first.index is not None:
        if all(
            isinstance(p, Parameter)
            and p.index is not None
            and p.name == first.name
            and p.scale == first.scale
            for p in params
        ):
            return (first.name, first.scale, d)
    return ("group", id(group))


def rotation_table(plan: Plan, ctx: Context) -> dict[int, torch.Tensor]:
    """The matrices of every rotation group of ``plan``'s fused steps: ``{id(group): M}``.

    Rotations ``U(θ) = g_0 + cos(θ/2) g_1 + sin(θ/2) g_2`` whose angles are entries of
    the same bound vector (any gate kind, subspace, step or depth) are evaluated in ONE
    call of :func:`~qsem.circuits.rotations.rotation_matrix` with their constants
    stacked, and split into the groups' ``(..., k, d, d)`` matrices (one autograd node
    for all of them instead of one per group and step). Other groups are evaluated on
    their own, as the steps would.
    """
    buckets: dict[Any, list[tuple[_Group, int]]] = {}
    for group, d in plan.rotation_groups(ctx):
        buckets.setdefault(_source(ctx, group, d), []).append((group, d))
    table: dict[int, torch.Tensor] = {}
    for bucket in buckets.values():
        theta = ctx.stacked_param([ctx.ops[i].params[0] for g, _ in bucket for i in g.ops])
        key = (tuple(id(g) for g, _ in bucket), ctx.dtype, str(ctx.device))
        parts = plan._parts.get(key)
        if parts is None:
            stacks = []
            for g, d in bucket:
                gate = ctx.ops[g.ops[0]]
                assert isinstance(gate, Gate)  # rotation_groups yields gate groups only
                one = _rotation_parts(gate, d, ctx)
                assert one is not None
                stacks.append(one.unsqueeze(1).expand(3, len(g.ops), d, d))
            parts = plan._parts[key] = torch.cat(stacks, 1)
        mats = rotation_matrix(theta, parts)
        plan.rotation_calls += 1
        for (g, _), m in zip(bucket, mats.split([len(g.ops) for g, _ in bucket], -3), strict=True):
            table[id(g)] = m
    return table


def run_plan(plan: Plan, s: SimState, ctx: Context, *, allow_chunks: bool = False) -> SimState:
    """Run every step on ``s`` (whose tensor the caller owns); return the final state.

    With ``allow_chunks`` (nothing needs a gradient, and the representation cannot
    change: no factored ρ), a large batched state goes one chunk of the batch at a
    time, each chunk written back into ``s.tensor``, so memory stays near one state
    plus one chunk's working set.
    """
    x = s.tensor
    nbytes = x.numel() * x.element_size()
    rows = int(x.shape[0])
    if not allow_chunks or nbytes <= min(MIN_CHUNKED_BYTES, CHUNK_BYTES) or rows == 1:
        return run_steps(plan, s, ctx)
    chunk = max(1, min(rows * CHUNK_BYTES // nbytes, -(-rows // MIN_CHUNKS)))
    out = s
    for start in range(0, rows, chunk):
        part = slice(start, start + chunk)
        done = run_steps(plan, SimState(x[part], s.mode, basis=s.basis), ctx.for_rows(part, rows))
        x[part] = done.tensor
        out = done.evolved(x)
        del done
    return out


def run_steps(plan: Plan, s: SimState, ctx: Context) -> SimState:
    """Every step of ``plan`` on ``s``, each on the state the previous one returned.

    The plan's rotations are evaluated first, together (:func:`rotation_table`).
    """
    if ctx.rotations is None:
        ctx = dataclasses.replace(ctx, rotations=rotation_table(plan, ctx))
    for step in plan.steps:
        s = step.apply(s, ctx)
    return s


__all__ = [
    "CHUNK_BYTES",
    "FLAT_DM_PERM_LIMIT",
    "MIN_CHUNKED_BYTES",
    "MIN_CHUNKS",
    "ChannelStep",
    "FusedStep",
    "GateStep",
    "LocalPermutationStep",
    "PermutationStep",
    "Plan",
    "Step",
    "rotation_table",
    "run_plan",
    "run_steps",
]
