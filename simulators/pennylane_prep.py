"""State preparations of the ``qsem`` PennyLane device: leading ``StatePrep`` /
``BasisState`` / ``QutritBasisState`` operations become the engine's initial state
(a product over the prepared wire groups, batched when a ``StatePrep`` is broadcast),
and ``GlobalPhase`` operations one phase factor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits.pennylane_import import STATE_PREPS

__all__ = ["split_preparation"]


def split_preparation(
    ops: Sequence[Any], index: dict[Any, int], dims: list[int], dtype: torch.dtype
) -> tuple[list[Any], Any, Any]:
    """Leading state preparations as the engine's initial state, and the global phase.

    Returns the remaining operations, the initial state (``None``, a list of levels or a
    statevector) and ``exp(-i Σ φ)`` of the ``GlobalPhase`` operations (``None``: none).
    """
    levels = [0] * len(dims)
    pieces: list[tuple[list[int], Any]] = []
    k = 0
    while k < len(ops) and ops[k].name in STATE_PREPS:
        op = ops[k]
        wires = [index[w] for w in op.wires]
        if op.name == "StatePrep":
            vec = op.state_vector(wire_order=op.wires)
            vec = vec if isinstance(vec, torch.Tensor) else torch.as_tensor(np.asarray(vec))
            batched = op.batch_size is not None
            pieces.append((wires, vec.reshape((vec.shape[0], -1) if batched else (-1,))))
        else:
            for w, v in zip(
                wires, np.asarray(op.parameters[0]).reshape(-1).astype(int), strict=True
            ):
                levels[w] = int(v)
        k += 1
    rest = list(ops[k:])
    phases = [op for op in rest if op.name == "GlobalPhase"]
    phase = None
    if phases:
        total = sum(op.parameters[0] for op in phases)
        phase = torch.exp(-1j * torch.as_tensor(total, dtype=torch.float64)).to(dtype)
        rest = [op for op in rest if op.name != "GlobalPhase"]
    if not pieces:
        return rest, (levels if any(levels) else None), phase
    return rest, _product_state(pieces, levels, dims, dtype), phase


def _product_state(
    pieces: list[tuple[list[int], Any]], levels: list[int], dims: list[int], dtype: torch.dtype
) -> torch.Tensor:
    """The statevector of prepared wire groups and basis levels elsewhere (wire 0 first)."""
    covered = {w for ws, _ in pieces for w in ws}
    order: list[int] = []
    state: torch.Tensor | None = None
    batch = None
    for ws, vec in pieces:
        v = vec.to(dtype)
        if v.dim() == 2:
            batch = v.shape[0]
        state = v if state is None else _kron(state, v)
        order += ws
    for w in range(len(dims)):
        if w not in covered:
            e = torch.zeros(dims[w], dtype=dtype)
            e[levels[w]] = 1
            state = _kron(state, e)  # type: ignore[arg-type]
            order.append(w)
    assert state is not None
    lead = [] if batch is None else [batch]
    t = state.reshape(*lead, *[dims[w] for w in order])
    off = len(lead)
    perm = list(range(off)) + [off + order.index(w) for w in range(len(dims))]
    return t.permute(perm).reshape(*lead, -1)


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Kronecker product of statevectors ``(D,)``/``(B, D)`` (batch broadcast)."""
    out = a[..., :, None] * b[..., None, :]
    return out.reshape(*out.shape[:-2], -1)
