"""Compile a circuit's structure into execution steps.

* Runs of single-wire gates are fused: each wire's gates multiply into one
  matrix, and neighbouring wires are joined by Kronecker products into blocks of
  dimension at most ``max_block_dim``, applied as one batched matmul each.
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
from qsem.circuits.parameters import resolve_param

from . import kernels


@dataclass
class Context:
    """What a step needs at run time."""

    dims: tuple[int, ...]
    mode: str
    bindings: Any
    dtype: torch.dtype
    real_dtype: torch.dtype
    device: Any
    #: When a large batch runs chunk by chunk: the rows of the batch this pass covers.
    batch_slice: slice | None = None
    full_batch: int = 1

    def _cut(self, t: torch.Tensor, batch_dims: int) -> torch.Tensor:
        if self.batch_slice is not None and t.dim() == batch_dims and t.shape[0] == self.full_batch:
            return t[self.batch_slice]
        return t

    def params(self, op: Operation) -> list[torch.Tensor]:
        return [
            self._cut(resolve_param(p, self.bindings, dtype=self.real_dtype, device=self.device), 1)
            for p in op.params
        ]

    def matrix(self, gate: Gate) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in gate.wires)
        return self._cut(gate.matrix(self.params(gate), dims, dtype=self.dtype, device=self.device), 3)

    def kraus(self, channel: Channel) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in channel.wires)
        return self._cut(channel.kraus(self.params(channel), dims, dtype=self.dtype, device=self.device), 4)

    def apply_unitary(self, x: torch.Tensor, mat: torch.Tensor, wires: list[int]) -> torch.Tensor:
        """``U ψ`` or ``U ρ U^†`` on ``wires``."""
        if self.mode == "statevector":
            return kernels.apply_matrix(x, mat, self.dims, wires)
        n = len(self.dims)
        shape2 = self.dims + self.dims
        x = kernels.apply_matrix(x, mat, shape2, wires)
        return kernels.apply_matrix(x, mat.conj(), shape2, [w + n for w in wires])


class Step:
    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class FusedStep(Step):
    """Single-wire gates fused per wire, wires joined into Kronecker blocks."""

    blocks: list[list[int]]
    ops: dict[int, list[Gate]]

    def wire_matrix(self, wire: int, ctx: Context) -> torch.Tensor | None:
        m: torch.Tensor | None = None
        for g in self.ops.get(wire, []):
            u = ctx.matrix(g)
            m = u if m is None else u @ m
        return m

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        for block in self.blocks:
            mats = []
            for w in block:
                m = self.wire_matrix(w, ctx)
                if m is None:
                    d = ctx.dims[w]
                    m = torch.eye(d, dtype=ctx.dtype, device=ctx.device)
                mats.append(m)
            x = ctx.apply_unitary(x, kernels.kron(mats), block)
        return x


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

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        src, inv = self.indices(ctx.device)
        if ctx.mode == "statevector":
            return kernels.gather(x, src, inv, 1)
        d = len(self.src)
        rho = x.reshape(-1, d, d)
        rho = kernels.gather(kernels.gather(rho, src, inv, 1), src, inv, 2)
        return rho.reshape(rho.shape[0], -1)


@dataclass
class LocalPermutationStep(Step):
    """A permutation gate gathered on its own wires (large registers)."""

    gate: Gate
    _cache: dict[Any, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        key = str(ctx.device)
        if key not in self._cache:
            perm = self.gate.permutation(tuple(ctx.dims[w] for w in self.gate.wires))
            src = torch.as_tensor(perm, dtype=torch.long, device=ctx.device)
            self._cache[key] = (src, torch.argsort(src))
        src, inv = self._cache[key]
        wires = list(self.gate.wires)
        if ctx.mode == "statevector":
            return kernels.apply_permutation_local(x, src, inv, ctx.dims, wires)
        n = len(ctx.dims)
        shape2 = ctx.dims + ctx.dims
        x = kernels.apply_permutation_local(x, src, inv, shape2, wires)
        return kernels.apply_permutation_local(x, src, inv, shape2, [w + n for w in wires])


@dataclass
class GateStep(Step):
    """A multi-wire gate multiplied on its own wires."""

    gate: Gate

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return ctx.apply_unitary(x, ctx.matrix(self.gate), list(self.gate.wires))


@dataclass
class ChannelStep(Step):
    """A channel's superoperator on its wires (density-matrix mode only)."""

    channel: Channel

    def apply(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return kernels.apply_channel(x, ctx.kraus(self.channel), ctx.dims, list(self.channel.wires))


@dataclass
class Plan:
    steps: list[Step]


def _full_permutation(gate: Gate, dims: tuple[int, ...]) -> np.ndarray:
    """Gather indices of ``gate``'s permutation over the whole register."""
    local = gate.permutation(tuple(dims[w] for w in gate.wires))
    assert local is not None
    n = len(dims)
    digits = np.indices(dims).reshape(n, -1)  # (n, D)
    wires = list(gate.wires)
    local_dims = tuple(dims[w] for w in wires)
    local_index = np.ravel_multi_index(tuple(digits[wires]), local_dims)
    new_local = local[local_index]
    new_digits = digits.copy()
    new_digits[wires] = np.array(np.unravel_index(new_local, local_dims))
    return np.ravel_multi_index(tuple(new_digits), dims)


def compile_plan(
    circuit: Circuit, mode: str, *, max_block_dim: int = 32, full_perm_limit: int = 1 << 22
) -> Plan:
    """Turn ``circuit`` into steps for ``mode`` (see the module docstring)."""
    dims = circuit.dims
    n = len(dims)
    full_d = math.prod(dims)
    steps: list[Step] = []
    pending: dict[int, list[Gate]] = {}
    perm: np.ndarray | None = None

    def flush_pending() -> None:
        if not pending:
            return
        blocks: list[list[int]] = []
        for w in sorted(pending):
            if blocks:
                start = blocks[-1][0]
                if math.prod(dims[start : w + 1]) <= max_block_dim:
                    blocks[-1] = list(range(start, w + 1))
                    continue
            blocks.append([w])
        steps.append(FusedStep(blocks, dict(pending)))
        pending.clear()

    def flush_perm() -> None:
        nonlocal perm
        if perm is not None:
            steps.append(PermutationStep(perm))
            perm = None

    for op in circuit.ops:
        if isinstance(op, Channel):
            if mode != "density_matrix":
                raise arg_error(
                    "mode",
                    f"the circuit has a channel ({op.name} on wires {list(op.wires)}); "
                    "simulate it with mode='density_matrix'",
                )
            flush_pending()
            flush_perm()
            steps.append(ChannelStep(op))
            continue
        assert isinstance(op, Gate)
        local_dims = tuple(dims[w] for w in op.wires)
        if len(op.wires) == 1:
            flush_perm()
            pending.setdefault(op.wires[0], []).append(op)
            continue
        flush_pending()
        if not op.is_parametrized and op.permutation(local_dims) is not None:
            if full_d <= full_perm_limit:
                p = _full_permutation(op, dims)
                perm = p if perm is None else perm[p]
            else:
                flush_perm()
                steps.append(LocalPermutationStep(op))
            continue
        flush_perm()
        steps.append(GateStep(op))
    flush_pending()
    flush_perm()
    _ = n
    return Plan(steps)
