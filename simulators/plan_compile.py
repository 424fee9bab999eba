"""Compile a circuit's structure into the steps of a plan (run by :mod:`.plan_exec`).

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

>>> from qsem.circuits import Circuit, H, RY, CNOT, SWAP
>>> c = Circuit.qubits(3).add(H(wires=0), RY(0.3, wires=1), CNOT(wires=[0, 1]), SWAP(wires=[1, 2]))
>>> [type(s).__name__ for s in compile_plan(c, "statevector").steps]
['FusedStep', 'PermutationStep']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import arg_error
from qsem.circuits.operations import Channel, Gate, Operation

from .plan_exec import (
    ChannelStep,
    FusedStep,
    GateStep,
    LocalPermutationStep,
    PermutationStep,
    Plan,
    Step,
    _DimClass,
    _Group,
    _Level,
)
from .plan_super import wrap_noisy_region


def _blocks(wires: list[int], dims: tuple[int, ...], max_block_dim: int) -> list[list[int]]:
    """Neighbouring wires joined into Kronecker blocks of dimension ``<= max_block_dim``."""
    blocks: list[list[int]] = []
    for w in wires:
        if blocks:
            start = blocks[-1][0]
            if math.prod(dims[start : w + 1]) <= max_block_dim:
                blocks[-1] = list(range(start, w + 1))
                continue
        blocks.append([w])
    return blocks


def _level(pending: dict[int, list[int]], wires: list[int], j: int, ops: list[Operation]) -> _Level:
    """Depth ``j`` of the wires of one dimension: gates grouped by matrix formula."""
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
        None if concat == list(range(len(wires))) else [concat.index(k) for k in range(len(wires))]
    )
    return _Level(list(groups.values()), order, len(missing))


def _fused_step(
    pending: dict[int, list[int]], ops: list[Operation], dims: tuple[int, ...], max_block_dim: int
) -> FusedStep:
    classes = []
    for d in sorted({dims[w] for w in pending}):
        wires = sorted(w for w in pending if dims[w] == d)
        depth = max(len(pending[w]) for w in wires)
        levels = [_level(pending, wires, j, ops) for j in range(depth)]
        classes.append(_DimClass(d, wires, levels))
    return FusedStep(_blocks(sorted(pending), dims, max_block_dim), classes)


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
    the same structure whatever its parameter values. A channel in a statevector
    plan is refused (the one check here: it is a property of the structure).
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
        if len(op.wires) == 1:
            flush_perm()
            pending.setdefault(op.wires[0], []).append(i)
            continue
        flush_pending()
        local_perm = None if op.params else op.permutation(tuple(dims[w] for w in op.wires))
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
    if mode == "density_matrix":  # the noisy region as superoperator blocks (plan_super)
        steps = wrap_noisy_region(steps, dims)
    return Plan(steps)


__all__ = ["compile_plan"]
