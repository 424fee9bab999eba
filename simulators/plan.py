"""Compile a circuit's structure into execution steps.

* Runs of single-wire gates are fused: each wire's gates multiply into one
  matrix, and neighbouring wires are joined by Kronecker products into blocks of
  dimension at most ``max_block_dim``, applied as one batched matmul each.
  A fused first layer on a basis state ``|l_1 … l_n>`` (the usual ``|0…0>``
  start) builds the product state ``⊗_w U_w[:, l_w]`` instead: no matmul.
* Parameter-free permutation gates (X, CNOT, SWAP, TShift, TAdd, CSWAP, ...) in a
  row compose into one index gather over the register (for registers up to
  ``full_perm_limit``; larger ones gather on the gate's own wires).
* Other gates multiply on their own wires; channels apply their superoperator.

A plan depends only on the circuit's structure, never on parameter values, so
it is cached and reused across batches and steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import arg_error
from qsem.circuits.operations import Channel, Gate, Operation
from qsem.circuits.parameters import Parameter, resolve_param

from . import kernels


def factor_to_dense(f: torch.Tensor, weights: torch.Tensor | None, rank: int) -> torch.Tensor:
    """``ρ = Σ_k w_k |ψ_k><ψ_k|`` from components ``(B, r, D)`` and weights ``(B * r,)``."""
    left = f if weights is None else f * weights.reshape(-1, rank, 1).to(f.dtype)
    return left.transpose(1, 2) @ f.conj()


@dataclass
class Context:
    """What a step needs at run time: the current circuit's ops and bound values."""

    dims: tuple[int, ...]
    mode: str
    ops: list[Operation]
    bindings: Any
    dtype: torch.dtype
    real_dtype: torch.dtype
    device: Any
    #: When a large batch runs chunk by chunk: the rows of the batch this pass covers.
    batch_slice: slice | None = None
    full_batch: int = 1
    #: In mode "factored" (a density matrix held as ρ = Σ_k w_k |ψ_k><ψ_k|) the state is
    #: ``(B * rank, D)``, components of one batch element adjacent, with weights
    #: ``(B * rank,)`` (``None``: all 1).
    rank: int = 1
    weights: torch.Tensor | None = None
    #: Output buffers reused from step to step (set when nothing needs a gradient).
    work: kernels.Workspace | None = None
    #: Levels ``(l_1, ..., l_n)`` while the state is still the basis state
    #: ``|l_1 ... l_n>`` (set for the first step only, see :func:`run_steps`).
    basis: tuple[int, ...] | None = None

    @property
    def vector_like(self) -> bool:
        """True when the state tensor holds vectors (statevector or factored ρ)."""
        return self.mode != "density_matrix"

    def per_component(self, t: torch.Tensor, batched_dim: int = 3) -> torch.Tensor:
        """Repeat a batched tensor for each purification component of its batch element.

        ``t`` is batched when it has ``batched_dim`` axes (3 for matrices ``(B, D, D)``,
        2 for channel weights ``(B, m)``) and more than one batch element.
        """
        if self.rank > 1 and t.dim() == batched_dim and t.shape[0] > 1:
            return t.repeat_interleave(self.rank, 0)
        return t

    def densify(self, x: torch.Tensor) -> torch.Tensor:
        """Factored ``(B * r, D)`` -> dense flat ``(B, D * D)``; switches the mode."""
        d = x.shape[-1]
        rho = factor_to_dense(x.reshape(-1, self.rank, d), self.weights, self.rank)
        self.mode, self.rank, self.weights = "density_matrix", 1, None
        return rho.reshape(rho.shape[0], d * d)

    def mixture(self, channel: Channel) -> tuple[torch.Tensor, torch.Tensor] | None:
        dims = tuple(self.dims[w] for w in channel.wires)
        mix = channel.mixture(self.params(channel), dims, dtype=self.dtype, device=self.device)
        if mix is None:
            return None
        return self._cut(mix[0], 2), self._cut(mix[1], 4)

    def _cut(self, t: torch.Tensor, batch_dims: int) -> torch.Tensor:
        if self.batch_slice is not None and t.dim() == batch_dims and t.shape[0] == self.full_batch:
            return t[self.batch_slice]
        return t

    def param(self, p: Any) -> torch.Tensor:
        return resolve_param(p, self.bindings, dtype=self.real_dtype, device=self.device)

    def params(self, op: Operation) -> list[torch.Tensor]:
        return [self._cut(self.param(p), 1) for p in op.params]

    def stacked_param(self, values: list[Any]) -> torch.Tensor:
        """Parameters of several operations stacked on a last axis: ``(..., G)``."""
        first = values[0]
        if (
            isinstance(first, Parameter)
            and first.index is not None
            and all(
                isinstance(v, Parameter)
                and v.name == first.name
                and v.scale == first.scale
                and v.index is not None
                for v in values
            )
        ):
            raw = self.bindings[first.name]
            vec = (
                raw.to(device=self.device, dtype=self.real_dtype)
                if isinstance(raw, torch.Tensor)
                else torch.as_tensor(raw, dtype=self.real_dtype, device=self.device)
            )
            idx = [v.index for v in values]
            lo, step = idx[0], (idx[1] - idx[0] if len(idx) > 1 else 1)
            if step > 0 and idx == list(range(lo, lo + step * len(idx), step)):
                out = vec[..., lo : lo + step * len(idx) : step]  # a view (cheap backward)
            else:
                out = vec[..., idx]
            out = out * first.scale if first.scale != 1.0 else out
        else:
            out = torch.stack(torch.broadcast_tensors(*[self.param(v) for v in values]), -1)
        if self.batch_slice is not None and out.dim() == 2 and out.shape[0] == self.full_batch:
            out = out[self.batch_slice]
        return out

    def matrix(self, gate: Gate) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in gate.wires)
        return self._cut(
            gate.matrix(self.params(gate), dims, dtype=self.dtype, device=self.device), 3
        )

    def kraus(self, channel: Channel) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in channel.wires)
        return self._cut(
            channel.kraus(self.params(channel), dims, dtype=self.dtype, device=self.device), 4
        )

    def apply_unitary(self, x: torch.Tensor, mat: torch.Tensor, wires: list[int]) -> torch.Tensor:
        """``U ψ`` or ``U ρ U^†`` on ``wires``."""
        if self.vector_like:
            return kernels.apply_matrix(x, self.per_component(mat), self.dims, wires)
        n = len(self.dims)
        shape2 = self.dims + self.dims
        x = kernels.apply_matrix(x, mat, shape2, wires)
        return kernels.apply_matrix(x, mat.conj(), shape2, [w + n for w in wires])


class Step:
    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
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
        d = cls.d
        for level in cls.levels:
            parts = []
            for group in level.groups:
                rep = ctx.ops[group.ops[0]]
                assert isinstance(rep, Gate)
                params = [
                    ctx.stacked_param([ctx.ops[i].params[k] for i in group.ops])
                    for k in range(len(rep.params))
                ]
                m = rep.matrix(params, (d,), dtype=ctx.dtype, device=ctx.device)
                if not params:
                    m = ctx._cut(m, 3).unsqueeze(-3).expand(*m.shape[:-2], len(group.ops), d, d)
                parts.append(m)
            if level.n_identity:
                eye = torch.eye(d, dtype=ctx.dtype, device=ctx.device)
                parts.append(eye.expand(level.n_identity, d, d))
            if len(parts) == 1:
                layer = parts[0]
            else:
                batch_shape = torch.broadcast_shapes(*[q.shape[:-3] for q in parts])
                layer = torch.cat([q.expand(*batch_shape, *q.shape[-3:]) for q in parts], -3)
            if level.order is not None:
                layer = layer[..., level.order, :, :]
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
            factors = [
                per_wire[v] if v in per_wire
                else torch.eye(ctx.dims[v], dtype=ctx.dtype, device=ctx.device)
                for v in block
            ]  # fmt: skip
            out.append((block, kernels.kron(factors)))
        return out

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        per_wire = self.wire_matrices(ctx)
        if ctx.basis is not None and ctx.vector_like and ctx.rank == 1:
            return _product_state(per_wire, ctx.basis, ctx, x.shape)
        return self.apply_blocks(x, ctx, [m for _, m in self.block_matrices(ctx, per_wire)])

    def apply_blocks(self, x: torch.Tensor, ctx: Context, mats: list[torch.Tensor]) -> torch.Tensor:
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
                x = ctx.apply_unitary(x, m, block)
            return x
        if ctx.vector_like:
            segments = [(dk, None if m is None else ctx.per_component(m)) for dk, m in rows]
        else:  # U ρ U^†: U's blocks on the row axes, conj(U)'s on the column axes
            segments = rows + [(dk, None if m is None else m.conj()) for dk, m in rows]
        return kernels.apply_kron_chain(x, segments, ctx.work)


def _product_state(
    per_wire: dict[int, torch.Tensor], basis: tuple[int, ...], ctx: Context, shape: torch.Size
) -> torch.Tensor:
    """``(⊗_w U_w) |l_1 … l_n> = ⊗_w U_w[:, l_w]``: a fused layer on a basis state."""
    vecs = []
    for w, d in enumerate(ctx.dims):
        m = per_wire.get(w)
        if m is None:  # a wire without gates keeps its basis vector
            m = torch.eye(d, dtype=ctx.dtype, device=ctx.device)
        vecs.append(m[..., :, basis[w]])
    return kernels.kron_vectors(vecs, shape)


def _fused_step(
    pending: dict[int, list[int]], ops: list[Operation], dims: tuple[int, ...], max_block_dim: int
) -> FusedStep:
    blocks: list[list[int]] = []
    for w in sorted(pending):
        if blocks:
            start = blocks[-1][0]
            if math.prod(dims[start : w + 1]) <= max_block_dim:
                blocks[-1] = list(range(start, w + 1))
                continue
        blocks.append([w])
    classes = []
    for d in sorted({dims[w] for w in pending}):
        wires = sorted(w for w in pending if dims[w] == d)
        depth = max(len(pending[w]) for w in wires)
        levels = []
        for j in range(depth):
            groups: dict[Any, _Group] = {}
            missing = []
            for pos, w in enumerate(wires):
                if j >= len(pending[w]):
                    missing.append(pos)
                    continue
                i = pending[w][j]
                g = groups.setdefault(ops[i].matrix_key(), _Group([], []))
                g.ops.append(i)
                g.positions.append(pos)
            concat = [p for g in groups.values() for p in g.positions] + missing
            order = (
                None
                if concat == list(range(len(wires)))
                else [concat.index(k) for k in range(len(wires))]
            )
            levels.append(_Level(list(groups.values()), order, len(missing)))
        classes.append(_DimClass(d, wires, levels))
    return FusedStep(blocks, classes)


#: A density-matrix permutation gathers its ``D * D`` entries through one flat index
#: (int32, 4 bytes an entry) up to this many entries; beyond it, rows then columns.
FLAT_DM_PERM_LIMIT = 1 << 24


@dataclass
class PermutationStep(Step):
    """A composed basis permutation over the whole register: one gather."""

    src: np.ndarray
    _cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def indices(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            src = torch.as_tensor(self.src, dtype=torch.long, device=device)
            self._cache[key] = (src, torch.argsort(src))
        return self._cache[key]

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

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        grad = torch.is_grad_enabled() and x.requires_grad
        if ctx.vector_like:
            src, inv = self.indices(ctx.device)
            if ctx.work is not None and not grad:
                return torch.index_select(x, 1, src, out=ctx.work.out(x, x.shape))
            return kernels.gather(x, src, inv, 1)
        d = len(self.src)
        if d * d <= FLAT_DM_PERM_LIMIT:
            flat = self.flat_index(ctx.device)
            if ctx.work is not None and not grad:
                return torch.index_select(x, 1, flat, out=ctx.work.out(x, x.shape))
            return kernels.gather(x, flat, self.flat_index(ctx.device, inverse=True), 1)
        src, inv = self.indices(ctx.device)
        rho = x.reshape(-1, d, d)
        rho = kernels.gather(kernels.gather(rho, src, inv, 1), src, inv, 2)
        return rho.reshape(rho.shape[0], -1)


@dataclass
class LocalPermutationStep(Step):
    """A permutation gate gathered on its own wires (large registers)."""

    wires: list[int]
    src: np.ndarray
    _cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def _indices(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._cache:
            src = torch.as_tensor(self.src, dtype=torch.long, device=device)
            self._cache[key] = (src, torch.argsort(src))
        return self._cache[key]

    def unapply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """The inverse permutation on a statevector (the adjoint sweep)."""
        src, inv = self._indices(ctx.device)
        return kernels.apply_permutation_local(x, inv, src, ctx.dims, self.wires)

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        src, inv = self._indices(ctx.device)
        if ctx.vector_like:
            return kernels.apply_permutation_local(x, src, inv, ctx.dims, self.wires)
        n = len(ctx.dims)
        shape2 = ctx.dims + ctx.dims
        x = kernels.apply_permutation_local(x, src, inv, shape2, self.wires)
        return kernels.apply_permutation_local(x, src, inv, shape2, [w + n for w in self.wires])


@dataclass
class GateStep(Step):
    """A multi-wire gate multiplied on its own wires."""

    index: int

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        gate = ctx.ops[self.index]
        assert isinstance(gate, Gate)
        return ctx.apply_unitary(x, ctx.matrix(gate), list(gate.wires))


@dataclass
class ChannelStep(Step):
    """A channel on its wires (density-matrix mode only).

    Factored: each component ψ_k becomes the components K_j ψ_k (rank × number of
    Kraus operators), until the rank would exceed D; then ρ turns dense and the
    channel's superoperator is applied.
    """

    index: int

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        ch = ctx.ops[self.index]
        assert isinstance(ch, Channel)
        wires = list(ch.wires)
        mix = ctx.mixture(ch)
        if mix is not None:
            weights, ops = mix  # ρ -> Σ_k p_k U_k ρ U_k^†: linear in p
        else:
            weights, ops = None, ctx.kraus(ch)
        m = ops.shape[-3]
        d = x.shape[-1]
        if ctx.mode == "factored" and ctx.rank * m <= d:
            parts = [
                kernels.apply_matrix(x, ctx.per_component(ops[..., j, :, :]), ctx.dims, wires)
                for j in range(m)
            ]
            out = torch.stack(parts, 1)  # (B * r, m, D): components of one element stay adjacent
            if weights is not None:
                w = ctx.per_component(weights.reshape(-1, m), 2).expand(x.shape[0], m)
                w = w if ctx.weights is None else ctx.weights[:, None] * w
                ctx.weights = w.reshape(-1)
            elif ctx.weights is not None:
                ctx.weights = ctx.weights[:, None].expand(-1, m).reshape(-1)
            ctx.rank *= m
            return out.reshape(-1, d)
        if ctx.mode == "factored":
            x = ctx.densify(x)
        return kernels.apply_channel(x, ops, ctx.dims, wires, weights)


@dataclass
class Plan:
    steps: list[Step]


def _full_permutation(gate: Gate, dims: tuple[int, ...]) -> np.ndarray:
    """Gather indices of ``gate``'s permutation over the whole register.

    Index arithmetic on the gate's own wires only: ``O(k D)`` for a ``k``-wire gate
    (no ``(n, D)`` digit table).
    """
    local = gate.permutation(tuple(dims[w] for w in gate.wires))
    assert local is not None
    n = len(dims)
    strides = [math.prod(dims[w + 1 :]) for w in range(n)]
    idx = np.arange(math.prod(dims), dtype=np.int64)
    digits = [(idx // strides[w]) % dims[w] for w in gate.wires]
    local_index = np.zeros_like(idx)
    for w, dig in zip(gate.wires, digits, strict=True):
        local_index = local_index * dims[w] + dig
    new_local = np.asarray(local, dtype=np.int64)[local_index]
    out = idx
    for w, dig in zip(reversed(gate.wires), reversed(digits), strict=True):
        new_digit = new_local % dims[w]
        new_local //= dims[w]
        out = out + (new_digit - dig) * strides[w]
    return out


def compile_plan(
    circuit: Circuit, mode: str, *, max_block_dim: int = 16, full_perm_limit: int = 1 << 22
) -> Plan:
    """Turn ``circuit``'s structure into steps for ``mode`` (see the module docstring).

    Steps refer to operations by index, so a cached plan serves every circuit with
    the same structure whatever its parameter values.
    """
    dims = circuit.dims
    ops = circuit.ops
    full_d = math.prod(dims)
    steps: list[Step] = []
    pending: dict[int, list[int]] = {}
    perm: np.ndarray | None = None

    def flush_pending() -> None:
        if pending:
            steps.append(_fused_step(pending, ops, dims, max_block_dim))
            pending.clear()

    def flush_perm() -> None:
        nonlocal perm
        if perm is not None:
            # the same permutation twice (a repeated entangling ring) shares one step,
            # so its cached indices exist once
            same = [
                s for s in steps if isinstance(s, PermutationStep) and np.array_equal(s.src, perm)
            ]
            steps.append(same[0] if same else PermutationStep(perm))
            perm = None

    for i, op in enumerate(ops):
        if isinstance(op, Channel):
            if mode != "density_matrix":
                raise arg_error(
                    "mode",
                    f"the circuit has a channel ({op.name} on wires {list(op.wires)}); "
                    "simulate it with mode='density_matrix'",
                )
            flush_pending()
            flush_perm()
            steps.append(ChannelStep(i))
            continue
        assert isinstance(op, Gate)
        local_dims = tuple(dims[w] for w in op.wires)
        if len(op.wires) == 1:
            flush_perm()
            pending.setdefault(op.wires[0], []).append(i)
            continue
        flush_pending()
        local_perm = None if op.params else op.permutation(local_dims)
        if local_perm is not None:
            if full_d <= full_perm_limit:
                p = _full_permutation(op, dims)
                perm = p if perm is None else perm[p]
            else:
                flush_perm()
                steps.append(LocalPermutationStep(list(op.wires), local_perm))
            continue
        flush_perm()
        steps.append(GateStep(i))
    flush_pending()
    flush_perm()
    return Plan(steps)
