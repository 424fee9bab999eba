"""PennyLane tapes as qsem circuits: the import direction of the PennyLane operation map.

:func:`from_pennylane` (``Circuit.from_pennylane``) and the ``qsem`` PennyLane device
(:mod:`qsem.simulators.pennylane_device`) both convert operations here, so the map
has one home per direction (export: :mod:`qsem.circuits.pennylane_io`).

Named gates map through :data:`PENNYLANE_GATES`; every PennyLane qutrit operation to
its named qsem gate (``THadamard`` -> :class:`~qsem.circuits.gates.PennyLaneTHadamard`,
PennyLane's matrix exactly; ``QutritUnitary`` -> ``Unitary``;
``ControlledQutritUnitary`` and ``qml.ctrl`` -> ``Controlled``); named channels to
qsem's channels, any other channel to :class:`~qsem.circuits.Kraus`, any other
operation with a matrix to :class:`~qsem.circuits.gates.Unitary`. Wire dimensions come
from the operations on each wire (:func:`tape_wire_dims`): qubit, qutrit or mixed.

>>> import pennylane as qml
>>> def qfunc():
...     qml.THadamard(wires=0)
...     qml.TRY(0.3, wires=0, subspace=(1, 2))
>>> from_pennylane(qfunc).ops
[PennyLaneTHadamard(subspace=None, wires=[0]), SubspaceRY(0.3, subspace=(1, 2), wires=[0])]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from . import channels as CH
from . import gates as G
from .circuit import Circuit
from .errors import DimensionError, QsemTypeError, arg_error
from .operations import Channel, Gate, Operation
from .parameters import ParameterVector
from .pennylane_io import require_pennylane

__all__ = [
    "PENNYLANE_GATES",
    "QUTRIT_NAMES",
    "STATE_PREPS",
    "add_pennylane_ops",
    "angle_values",
    "from_pennylane",
    "is_controlled_op",
    "pennylane_op",
    "symbolic_circuit",
    "symbolic_key",
    "tape_wire_dims",
]


#: PennyLane operation name -> qsem gate class (constructed as ``cls(*params, wires=...)``).
PENNYLANE_GATES: dict[str, type[Gate]] = {
    "RX": G.RX, "RY": G.RY, "RZ": G.RZ, "PhaseShift": G.PhaseShift, "U3": G.U3,
    "PauliX": G.X, "PauliY": G.Y, "PauliZ": G.Z, "Hadamard": G.H, "S": G.S, "T": G.T,
    "CNOT": G.CNOT, "CZ": G.CZ, "CRX": G.CRX, "CRY": G.CRY, "CRZ": G.CRZ, "SWAP": G.SWAP,
    "CSWAP": G.CSWAP, "Toffoli": G.Toffoli,
    "TShift": G.Shift, "TClock": G.Clock, "TAdd": G.Add, "TSWAP": G.SWAP,
}  # fmt: skip
_SUBSPACE = {"TRX": G.SubspaceRX, "TRY": G.SubspaceRY, "TRZ": G.SubspaceRZ}
#: PennyLane operations and observables that act on qutrit wires (everything else that
#: names wires acts on qubits, except the dimension-neutral ones below).
QUTRIT_NAMES = frozenset({
    "TShift", "TClock", "TAdd", "TSWAP", "THadamard", "TRX", "TRY", "TRZ", "QutritUnitary",
    "ControlledQutritUnitary", "QutritBasisState", "QutritChannel", "QutritDepolarizingChannel",
    "QutritAmplitudeDamping", "TritFlip", "GellMann", "THermitian",
})  # fmt: skip
NEUTRAL_NAMES = frozenset({"Identity", "Barrier", "Snapshot", "GlobalPhase"})
#: state preparations the device turns into its initial state when they come first
STATE_PREPS = frozenset({"StatePrep", "BasisState", "QutritBasisState"})
#: channels with a qsem class of their own: PennyLane name -> parameter map
_QUBIT_CHANNELS: dict[str, Callable[[list[Any], list[int]], Channel]] = {
    "DepolarizingChannel": lambda p, w: CH.Depolarizing(p[0] * (4.0 / 3.0), wires=w),
    "AmplitudeDamping": lambda p, w: CH.AmplitudeDamping(p[0], wires=w),
    "PhaseDamping": lambda p, w: CH.PhaseDamping(p[0], wires=w),
    "BitFlip": lambda p, w: CH.BitFlip(p[0], wires=w),
    "QutritDepolarizingChannel": lambda p, w: CH.Depolarizing(p[0] * (9.0 / 8.0), wires=w),
    "TritFlip": lambda p, w: CH.TritFlip(*p, wires=w),
}


def _value(p: Any) -> Any:
    """A PennyLane parameter as a qsem one: torch tensors kept (gradients), others float."""
    if isinstance(p, torch.Tensor):
        return p if p.dim() <= 1 else p.reshape(-1)
    arr = np.asarray(p)
    return float(arr) if arr.ndim == 0 else torch.as_tensor(arr, dtype=torch.float64)


def _matrix_value(m: Any) -> Any:
    """A matrix parameter (torch kept for gradients; anything else as complex128 NumPy)."""
    return m if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.complex128)


def _op_dim(op: Any) -> int | None:
    """The wire dimension an operation or observable implies (``None``: neutral)."""
    while op.name.startswith(("Adjoint(", "Pow(")):  # an adjoint or power acts as its base
        op = op.base
    if op.name in NEUTRAL_NAMES:
        return None
    return 3 if op.name in QUTRIT_NAMES else 2


def is_controlled_op(op: Any) -> bool:
    """A ``qml.ctrl`` operation (``C(...)``) whose base may act on qutrits."""
    return op.name.startswith("C(") and hasattr(op, "base") and hasattr(op, "control_wires")


def _wire_dims_of(op: Any) -> list[tuple[Any, int]]:
    """``(wire label, dimension)`` pairs an operation implies (neutral wires left out):
    ``qml.ctrl`` controls are qubits, its base says what its target wires are."""
    if is_controlled_op(op):
        return [(w, 2) for w in op.control_wires] + _wire_dims_of(op.base)
    d = _op_dim(op)
    return [] if d is None else [(w, d) for w in op.wires]


def _observables_of(obs: Any) -> list[Any]:
    """The leaf observables of a (possibly composite) PennyLane observable."""
    if obs is None:
        return []
    if hasattr(obs, "operands"):
        return [leaf for o in obs.operands for leaf in _observables_of(o)]
    if hasattr(obs, "base") and obs.name in ("SProd", "Adjoint", "Pow"):
        return _observables_of(obs.base)
    return [obs]


def tape_wire_dims(tape: Any, labels: list[Any] | None = None) -> list[int]:
    """Wire dimensions of a PennyLane tape, from the operations and observables on each wire.

    Qutrit operations/observables (``TShift`` ... ``GellMann``, ``THermitian``) make a wire
    a qutrit, every other operation naming the wire makes it a qubit, ``Identity`` and
    friends are neutral. A wire nothing names takes the tape's dimension when all named
    wires agree (a qutrit tape measuring an idle wire), else 2. A wire used both ways is
    refused in one line naming the two operations.
    """
    labels = list(tape.wires) if labels is None else labels
    index = {w: i for i, w in enumerate(labels)}
    dims: list[int | None] = [None] * len(labels)
    first: list[str] = [""] * len(labels)
    leaves = list(tape.operations)
    for m in tape.measurements:
        leaves += _observables_of(m.obs)
    for op in leaves:
        for w, d in _wire_dims_of(op):
            i = index[w]
            if dims[i] is None:
                dims[i], first[i] = d, op.name
            elif dims[i] != d:
                kind = {2: "qubit", 3: "qutrit"}
                raise DimensionError(
                    f"argument 'tape': wire {w!r} is a {kind[dims[i]]} for {first[i]} but a "  # type: ignore[index]
                    f"{kind[d]} for {op.name}; a wire has one dimension"
                )
    named = {d for d in dims if d is not None}
    fill = named.pop() if len(named) == 1 else 2
    return [fill if d is None else d for d in dims]


def pennylane_op(
    op: Any, wires: list[int], dims: tuple[int, ...]
) -> Operation | list[Operation] | None:
    """The qsem operation of one PennyLane operation on qsem ``wires`` of ``dims``.

    A list for ``BasisState``/``QutritBasisState`` (shifts from ``|0>``); ``None`` for
    operations with no effect on the state (``Identity``,
    ``Barrier``, ``Snapshot``; ``GlobalPhase`` is the caller's). Raises a one-line
    :class:`~qsem.circuits.errors.QsemValueError` naming an operation qsem cannot run.
    """
    name = op.name
    if name.startswith("Adjoint("):
        base = pennylane_op(op.base, wires, dims)
        if isinstance(base, Gate):
            return base.adjoint()
    cls = PENNYLANE_GATES.get(name)
    if cls is not None:
        return cls(*[_value(p) for p in op.parameters], wires=wires)
    if is_controlled_op(op):  # qml.ctrl(op, control=...): a qubit-controlled qsem gate
        n_ctrl = len(op.control_wires)
        base = pennylane_op(op.base, wires[n_ctrl:], dims[n_ctrl:])
        if isinstance(base, Gate):
            values = [int(bool(v)) for v in op.control_values]
            return G.Controlled(base, wires[:n_ctrl], values)
    if name in _SUBSPACE:
        sub = tuple(op.hyperparameters["subspace"])
        return _SUBSPACE[name](_value(op.parameters[0]), wires=wires, subspace=sub)
    if name == "THadamard":
        sub = op.hyperparameters.get("subspace")
        return G.PennyLaneTHadamard(wires=wires, subspace=None if sub is None else tuple(sub))
    if name in ("QubitUnitary", "QutritUnitary"):
        return G.Unitary(_matrix_value(op.parameters[0]), wires=wires)
    if name == "ControlledQutritUnitary":
        n_ctrl = len(op.hyperparameters["control_wires"])
        given = op.hyperparameters["control_values"]  # PennyLane default: all 2s
        values = [int(v) for v in given] if given is not None else [2] * n_ctrl
        base = G.Unitary(_matrix_value(op.parameters[0]), wires=wires[n_ctrl:])
        return G.Controlled(base, wires[:n_ctrl], values)
    if name in ("BasisState", "QutritBasisState"):  # from |0...0>: a shift per wire
        levels = np.asarray(op.parameters[0]).reshape(-1).astype(int)
        shifts: list[Operation] = [
            G.Shift(wires=[w]) for w, k in zip(wires, levels, strict=True) for _ in range(k)
        ]
        return shifts
    if name in NEUTRAL_NAMES - {"GlobalPhase"}:
        return None
    if name in _QUBIT_CHANNELS:
        return _QUBIT_CHANNELS[name]([_value(p) for p in op.parameters], wires)
    if name == "QutritAmplitudeDamping" and _is_zero(op.parameters[1]):
        g10, _, g21 = (_value(p) for p in op.parameters)
        return CH.AmplitudeDamping(g10, g21, wires=wires)
    qml = require_pennylane()
    if isinstance(op, qml.operation.Channel):
        ks = op.kraus_matrices()
        stacked = torch.stack(list(ks)) if isinstance(ks[0], torch.Tensor) else np.asarray(ks)
        return CH.Kraus(_matrix_value(stacked), wires=wires)
    if op.has_matrix and len(op.wires) == len(wires):
        return G.Unitary(_matrix_value(qml.matrix(op, wire_order=list(op.wires))), wires=wires)
    raise arg_error("tape", f"qsem cannot run the operation {name} on wires {list(op.wires)}")


def _is_zero(p: Any) -> bool:
    return not isinstance(p, torch.Tensor) and float(np.asarray(p)) == 0.0


def add_pennylane_ops(circuit: Circuit, ops: Any, labels: list[Any]) -> Circuit:
    """Append the qsem form of PennyLane ``ops`` (wire labels ``labels``) to ``circuit``."""
    index = {w: i for i, w in enumerate(labels)}
    for op in ops:
        wires = [index[w] for w in op.wires]
        new = pennylane_op(op, wires, circuit.wire_dims(wires))
        if isinstance(new, list):
            circuit.add(*new)
        elif new is not None:
            circuit.add(new)
    return circuit


#: operations whose parameters may stay symbolic (scalar angles of named gates)
_SYMBOLIC = frozenset(PENNYLANE_GATES) | frozenset(_SUBSPACE) | {"THadamard"}


def symbolic_key(ops: Any) -> tuple[Any, ...] | None:
    """A hashable structure key of ``ops`` when every operation is a named gate with scalar
    angles (then one symbolic circuit serves every call with this structure), else ``None``.
    Whether each angle is broadcast (a row per batch element) is part of the key."""
    key = []
    for op in ops:
        name = op.name
        if name not in _SYMBOLIC:
            return None
        sub = op.hyperparameters.get("subspace")
        rows = tuple([_ndim(v) == 1 for v in op.data])
        key.append((name, op.wires, None if sub is None else tuple(sub), rows))
    return tuple(key)


def _ndim(v: Any) -> int:
    return v.dim() if isinstance(v, torch.Tensor) else np.ndim(v)


def symbolic_circuit(ops: Any, labels: list[Any], dims: Sequence[int]) -> Circuit:
    """The circuit of ``ops`` (all accepted by :func:`symbolic_key`) with its angles as
    entries of two :class:`~qsem.circuits.parameters.ParameterVector` objects in tape order:
    ``"a"`` the plain angles, ``"b"`` the broadcast ones (so only the gates that differ
    per row are batched). Bind them with :func:`angle_values`."""
    index = {w: i for i, w in enumerate(labels)}
    flags = [_ndim(v) == 1 for op in ops for v in op.data]
    a = ParameterVector("a", max(1, flags.count(False)))
    b = ParameterVector("b", max(1, flags.count(True)))
    out = Circuit(list(dims))
    counts = [0, 0]
    for op in ops:
        wires = [index[w] for w in op.wires]
        angles = []
        for v in op.data:
            row = _ndim(v) == 1
            angles.append((b if row else a)[counts[row]])
            counts[row] += 1
        if op.name in _SUBSPACE:
            sub = tuple(op.hyperparameters["subspace"])
            out.add(_SUBSPACE[op.name](angles[0], wires=wires, subspace=sub))
        elif op.name == "THadamard":
            sub = op.hyperparameters.get("subspace")
            out.add(G.PennyLaneTHadamard(wires=wires, subspace=None if sub is None else sub))
        else:
            out.add(PENNYLANE_GATES[op.name](*angles, wires=wires))
    return out


def angle_values(ops: Any) -> dict[str, torch.Tensor]:
    """The bindings of :func:`symbolic_circuit`'s parameters for ``ops``: ``"a"`` (K,) and
    ``"b"`` (B, K') as float64 tensors (torch tensors keep their gradients).

    Angles of one dtype are stacked first and cast once (one autograd node for the cast
    instead of one per angle: a TorchLayer's float32 weights and inputs)."""
    plain: list[Any] = []
    rows: list[Any] = []
    for op in ops:
        for v in op.data:
            (rows if _ndim(v) == 1 else plain).append(v)
    out = {}
    if plain:
        out["a"] = _stack_float64(plain, 0)
    if rows:
        out["b"] = _stack_float64(rows, -1)
    return out


def _stack_float64(values: list[Any], dim: int) -> torch.Tensor:
    """``torch.stack(values, dim)`` as float64: one cast when all are tensors of one dtype."""
    first = values[0]
    if isinstance(first, torch.Tensor) and all(
        isinstance(v, torch.Tensor) and v.dtype == first.dtype and v.device == first.device
        for v in values
    ):
        return torch.stack(values, dim).to(torch.float64)
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in values], dim)


def from_pennylane(tape_or_qfunc: Any, *args: Any, **kwargs: Any) -> Circuit:
    """The qsem circuit of a PennyLane tape (or quantum script), or of a quantum function
    called with ``args``/``kwargs``.

    Wires are numbered in the tape's wire order, with the dimensions of
    :func:`tape_wire_dims` (qubit, qutrit or both). Parameters arrive as numbers (torch
    tensors stay tensors, so gradients flow). Every PennyLane qutrit operation becomes
    its named qsem gate (``THadamard`` -> :class:`~qsem.circuits.gates.THadamard`, the same
    matrix; ``QutritUnitary`` -> ``Unitary``; ``ControlledQutritUnitary`` ->
    ``Controlled(Unitary)``), channels their qsem channel (``DepolarizingChannel(p)`` ->
    ``Depolarizing(4p/3)``, ``QutritDepolarizingChannel(p)`` -> ``Depolarizing(9p/8)``,
    ``QutritAmplitudeDamping(γ10, 0, γ21)`` -> ``AmplitudeDamping(γ10, γ21)``, others
    ``Kraus``); ``BasisState``/``QutritBasisState`` become shifts (a preparation from
    ``|0...0>``). Any other operation with a matrix enters as ``Unitary``. Measurements
    are dropped.
    """
    qml = require_pennylane()
    tape = tape_or_qfunc
    if not isinstance(tape, qml.tape.QuantumScript):
        if not callable(tape):
            raise arg_error(
                "tape_or_qfunc",
                f"expected a PennyLane tape or quantum function, got {type(tape).__name__}",
                QsemTypeError,
            )
        tape = qml.tape.make_qscript(tape)(*args, **kwargs)
    labels = list(tape.wires)
    if not labels:
        raise arg_error("tape_or_qfunc", "the tape has no wires")
    return add_pennylane_ops(Circuit(tape_wire_dims(tape, labels)), tape.operations, labels)
