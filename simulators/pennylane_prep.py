"""A tape as the ``qsem`` PennyLane device runs it (:class:`TapeConverter`): the qsem
circuit, its parameter bindings, the initial state and the simulation mode.

Leading ``StatePrep`` / ``BasisState`` / ``QutritBasisState`` operations become the
engine's initial state (a product over the prepared wire groups, batched when a
``StatePrep`` is broadcast), and ``GlobalPhase`` operations one phase factor
(:func:`split_preparation`). Tapes of named gates with scalar angles (a training loop's
tapes) become one symbolic circuit per structure, kept with its wire dimensions, so a
call only binds the new angles.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.pennylane_import import (
    STATE_PREPS,
    add_pennylane_ops,
    angle_values,
    symbolic_circuit,
    symbolic_key,
    tape_wire_dims,
)

__all__ = ["Prepared", "TapeConverter", "split_preparation"]

#: tape structures whose symbolic circuit a converter keeps (least recently used dropped)
KEPT_STRUCTURES = 64


@dataclass(frozen=True)
class Prepared:
    """A tape as qsem runs it: circuit, its bindings, initial state, global phase
    (``None``: none), wire label -> qsem wire, wire dimensions, simulation mode."""

    circuit: Circuit
    params: dict[str, Any] | None
    initial: Any
    phase: Any
    index: dict[Any, int]
    dims: tuple[int, ...]
    mode: str


@dataclass(frozen=True)
class _Kept:
    """What a tape structure of named gates always gives: its symbolic circuit, wire
    dimensions, and whether it has angles to bind."""

    circuit: Circuit
    dims: tuple[int, ...]
    bound: bool


class TapeConverter:
    """Tapes -> :class:`Prepared`, keeping the symbolic circuit of each structure of named
    gates (:func:`~qsem.circuits.pennylane_import.symbolic_key` of the operations, the
    measurements and the wire labels); ``conversions`` counts the circuits built.

    >>> import pennylane as qml
    >>> ops = [qml.TRY(0.3, wires="a", subspace=(0, 1)), qml.TAdd(wires=["a", "b"])]
    >>> tape = qml.tape.QuantumScript(ops, [qml.probs(wires="b")])
    >>> conv = TapeConverter(torch.complex128)
    >>> prep = conv.prepare(tape, ["a", "b"], "auto")
    >>> prep.mode, prep.dims, sorted(prep.params)
    ('statevector', (3, 3), ['a'])
    >>> _ = conv.prepare(tape.bind_new_parameters([1.2], [0]), ["a", "b"], "auto")
    >>> conv.conversions  # the second tape only rebinds the kept circuit
    1
    """

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype
        self._kept: OrderedDict[Any, _Kept] = OrderedDict()
        self.conversions = 0

    def prepare(self, tape: Any, labels: list[Any], method: str, bind: bool = True) -> Prepared:
        """The qsem form of ``tape`` on the wires ``labels``; ``method``: ``"auto"``
        (density matrix only for a circuit with channels) or the mode to use; ``bind``
        ``False``: leave a symbolic circuit's parameters unbound (``params`` ``None``;
        the caller binds them)."""
        index = {w: i for i, w in enumerate(labels)}
        ops = tape.operations
        key = symbolic_key(ops)
        if key is not None:  # named gates only: no preparation, phase or channel
            kept = self._structure(ops, tape, labels, key, None)
            params = angle_values(ops) if kept.bound and bind else None
            mode = "statevector" if method == "auto" else method
            return Prepared(kept.circuit, params, None, None, index, kept.dims, mode)
        dims = tape_wire_dims(tape, labels)
        rest, init, phase = split_preparation(ops, index, dims, self.dtype)
        key = symbolic_key(rest) if len(rest) < len(ops) else None
        if key is not None:  # a preparation, then named gates
            kept = self._structure(rest, tape, labels, key, tuple(dims))
            params = angle_values(rest) if kept.bound and bind else None
            mode = "statevector" if method == "auto" else method
            return Prepared(kept.circuit, params, init, phase, index, kept.dims, mode)
        circuit = add_pennylane_ops(Circuit(dims), rest, labels)
        self.conversions += 1
        if method == "auto":
            method = "density_matrix" if circuit.has_channels else "statevector"
        return Prepared(circuit, None, init, phase, index, tuple(dims), method)

    def _structure(
        self, ops: Any, tape: Any, labels: list[Any], key: Any, dims: tuple[int, ...] | None
    ) -> _Kept:
        """The kept circuit of ``ops`` (named gates, structure ``key``) for ``tape``'s
        measurements on ``labels``; ``dims``: the wire dimensions when already known."""
        full = (key, tuple(m.hash for m in tape.measurements), tuple(labels), dims)
        kept = self._kept.get(full)
        if kept is not None:
            self._kept.move_to_end(full)
            return kept
        if dims is None:
            dims = tuple(tape_wire_dims(tape, labels))
        circuit = symbolic_circuit(ops, labels, dims)
        self.conversions += 1
        kept = self._kept[full] = _Kept(circuit, dims, bool(circuit.parameters))
        if len(self._kept) > KEPT_STRUCTURES:
            self._kept.popitem(last=False)
        return kept


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
