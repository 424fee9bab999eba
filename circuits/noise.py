r"""Device noise: one :class:`NoiseModel` holds the channels a device adds to a circuit.

A noise model attaches **quantum errors** (qsem channels) to gates and **readout
errors** (confusion matrices) to measurements:

* ``add_error(channel, gates, wires=None)``: after every gate matching ``gates``
  (qsem gate classes such as ``RX`` or ``CNOT``, or Qiskit instruction names such
  as ``"sx"``, ``"ecr"``, ``"measure"``), on every wire tuple (``wires=None``, an
  *all-wire* error) or only on the gate's exact ordered wires ``wires`` (a *local*
  error). The channel is written on the gate's *local* wires ``0 .. k-1`` (local
  ``i`` is the gate's ``i``-th wire). As in Qiskit Aer, a local error replaces the
  all-wire error of the same gate on those wires, and adding a second error to
  the same gate and wires composes them (the first acts first).
* Errors on ``"measure"`` act just before each measured wire is read (Aer's
  convention); ``apply(circuit)`` appends them to every wire of a qsem circuit
  (``measured=True``, the default) or to none (``measured=False``).
* ``add_readout_error(matrix, wires=None)``: ``M[i, j] = P(record j | state i)``
  (rows sum to 1) on one wire for every wire, or on the given wires (a correlated
  confusion over several wires, rows and columns indexed big-endian over them,
  qsem's order). ``probs``/``sample``/``expval`` of :mod:`qsem.simulators` take
  ``readout=`` (this model, or :class:`ReadoutError`\ s) and map the exact
  probabilities ``p`` to recorded ones ``p' = p · (⊗ M)``.

Wire indices: a hand-built model uses qsem wires. A model converted from Qiskit
(:meth:`NoiseModel.from_qiskit`, :meth:`NoiseModel.from_backend`) keeps Qiskit's
qubit numbers (``qiskit_order=True``): on a qsem circuit of ``n`` wires, qubit
``q`` is wire ``n - 1 - q`` (as in :meth:`Circuit.from_qiskit <qsem.circuits.Circuit.from_qiskit>`).

>>> from qsem.circuits import CNOT, Circuit, Depolarizing, H
>>> nm = NoiseModel().add_error(Depolarizing(0.01, wires=0), H)
>>> noisy = nm.apply(Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1])))
>>> [op.name for op in noisy.ops]
['H', 'Depolarizing', 'CNOT']
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from . import gates as G
from .channels import Kraus
from .circuit import Circuit, remap_wires
from .errors import DimensionError, QsemTypeError, arg_error
from .operations import Channel, Operation, as_numeric_tensor, normalize_wires

__all__ = ["MEASURE", "NoiseModel", "ReadoutError", "qiskit_name"]

#: The instruction key of measurement errors (Qiskit's instruction name).
MEASURE = "measure"
#: Readout rows must sum to 1 and entries be >= 0 to this tolerance.
READOUT_ATOL = 1e-9

GateKey = type[Operation] | str

#: qsem gate class -> the Qiskit instruction name it exports to (string-keyed rules).
_QISKIT_NAMES: dict[type[Operation], str] = {
    G.Identity: "id", G.X: "x", G.Y: "y", G.Z: "z", G.H: "h", G.S: "s", G.T: "t",
    G.RX: "rx", G.RY: "ry", G.RZ: "rz", G.PhaseShift: "p", G.U3: "u", G.SWAP: "swap",
    G.CNOT: "cx", G.CZ: "cz", G.CRX: "crx", G.CRY: "cry", G.CRZ: "crz", G.Toffoli: "ccx",
    G.CSWAP: "cswap", G.Unitary: "unitary", Kraus: "kraus",
}  # fmt: skip
_ADJOINT_NAMES: dict[type[Operation], str] = {G.S: "sdg", G.T: "tdg"}


def qiskit_name(op: Operation) -> str | None:
    """The Qiskit instruction name of a qsem operation (``None`` when it has none)."""
    if isinstance(op, G.Adjoint) and not op.base.params:
        return _ADJOINT_NAMES.get(type(op.base))
    return _QISKIT_NAMES.get(type(op))


class ReadoutError:
    """A confusion matrix ``M[i, j] = P(record j | state i)`` on ``wires``.

    Rows and columns are indexed big-endian over ``wires`` (qsem's order), so on a
    qubit ``M = [[1 - p01, p01], [p10, 1 - p10]]``; a qutrit takes a 3×3 matrix.

    >>> ReadoutError([[0.98, 0.02], [0.05, 0.95]], wires=0).matrix.shape
    torch.Size([2, 2])
    """

    def __init__(self, matrix: Any, wires: object) -> None:
        m = as_numeric_tensor(matrix, "matrix")
        if m.is_complex():
            raise arg_error("matrix", "a confusion matrix is real, got complex values")
        m = m.to(torch.float64)
        if m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
            raise arg_error("matrix", f"expected a square (D, D) matrix, got {tuple(m.shape)}")
        if not bool(torch.isfinite(m).all()) or float(m.min()) < -READOUT_ATOL:
            raise arg_error("matrix", "entries must be finite probabilities >= 0")
        err = float((m.sum(1) - 1).abs().max())
        if err > READOUT_ATOL:
            raise arg_error(
                "matrix", f"each row must sum to 1 (P(record | state)), off by {err:.3g}"
            )
        self.matrix = m.clamp(min=0)
        self.wires = normalize_wires(wires)

    def check_dims(self, dims: Sequence[int]) -> None:
        if int(np.prod(dims)) != self.matrix.shape[0]:
            raise DimensionError(
                f"argument 'matrix': a {self.matrix.shape[0]}×{self.matrix.shape[0]} confusion "
                f"does not fit wires {list(self.wires)} of dimensions {list(dims)}"
            )

    def on(self, wires: Sequence[int]) -> ReadoutError:
        """The same confusion on other wires."""
        out = copy.copy(self)
        out.wires = normalize_wires(wires)
        return out

    def __repr__(self) -> str:
        return (
            f"ReadoutError({self.matrix.shape[0]}×{self.matrix.shape[0]}, wires={list(self.wires)})"
        )


def _keys(gates: GateKey | Iterable[GateKey]) -> list[GateKey]:
    if isinstance(gates, (str, type)):
        items: list[Any] = [gates]
    elif isinstance(gates, Iterable):
        items = list(gates)
    else:
        items = [gates]
    if not items:
        raise arg_error("gates", "name at least one gate (a qsem gate class or a Qiskit name)")
    for g in items:
        ok = isinstance(g, str) or (isinstance(g, type) and issubclass(g, Operation))
        if not ok:
            raise arg_error(
                "gates",
                f"expected qsem gate classes or Qiskit instruction names, got {g!r}",
                QsemTypeError,
            )
    return items


class NoiseModel:
    """Quantum errors after gates and readout confusion at measurement (module docstring).

    Args:
        qiskit_order: wire tuples are Qiskit qubit numbers (qubit ``q`` is wire
            ``n - 1 - q`` of an ``n``-wire circuit); set by the Qiskit converters.
    """

    def __init__(self, *, qiskit_order: bool = False) -> None:
        self.qiskit_order = bool(qiskit_order)
        self.default_errors: dict[GateKey, list[Channel]] = {}
        self.local_errors: dict[GateKey, dict[tuple[int, ...], list[Channel]]] = {}
        self.default_readout: ReadoutError | None = None
        self.local_readout: dict[tuple[int, ...], ReadoutError] = {}
        #: Qiskit instructions the model refuses to place (e.g. "delay": idle relaxation).
        self.refused: dict[str, str] = {}

    # -- building -------------------------------------------------------------------------
    def add_error(
        self, channel: Channel, gates: GateKey | Iterable[GateKey], wires: object = None
    ) -> NoiseModel:
        """Add ``channel`` (on the gate's local wires) after ``gates``; returns self."""
        if not isinstance(channel, Channel):
            raise arg_error(
                "channel", f"expected a qsem Channel, got {type(channel).__name__}", QsemTypeError
            )
        local = None if wires is None else normalize_wires(wires)
        top = max(channel.wires)
        if local is not None and top >= len(local):
            raise arg_error(
                "channel",
                f"acts on local wire {top}, but the gate wires {list(local)} have "
                f"local wires 0..{len(local) - 1}",
            )
        for key in _keys(gates):
            if local is None:
                self.default_errors.setdefault(key, []).append(channel)
            else:
                self.local_errors.setdefault(key, {}).setdefault(local, []).append(channel)
        return self

    def add_readout_error(self, error: ReadoutError | Any, wires: object = None) -> NoiseModel:
        """A confusion on one wire for every wire (``wires=None``) or on ``wires``; returns self.

        A later readout error on the same wires replaces the earlier one (Aer's rule).
        """
        if not isinstance(error, ReadoutError):
            error = ReadoutError(error, wires=0 if wires is None else wires)
        if wires is None:
            if len(error.wires) != 1:
                raise arg_error("wires", "an all-wire readout error acts on one wire; give wires=")
            self.default_readout = error.on([0])
        else:
            w = normalize_wires(wires)
            self.local_readout[w] = error.on(w)
        return self

    # -- queries --------------------------------------------------------------------------
    @property
    def is_ideal(self) -> bool:
        return not (
            self.default_errors or self.local_errors or self.default_readout or self.local_readout
        )

    def _index(self, wires: Sequence[int], n: int) -> tuple[int, ...]:
        """qsem wires -> the model's indices (and back: the map is an involution)."""
        return tuple(n - 1 - w for w in wires) if self.qiskit_order else tuple(wires)

    def error_for(self, keys: Sequence[GateKey], indices: tuple[int, ...]) -> list[Channel]:
        """The channels (local wires, in order) of every key: its local error on exactly
        ``indices`` if there is one, else its all-wire error."""
        out: list[Channel] = []
        for key in keys:
            chans = self.local_errors.get(key, {}).get(indices)
            if chans is None:
                chans = self.default_errors.get(key, [])
            out += chans
        return out

    def place(self, channel: Channel, wires: Sequence[int]) -> Channel:
        """``channel`` (local wires) moved onto the gate's circuit ``wires``."""
        moved = remap_wires(channel, dict(enumerate(wires)))
        assert isinstance(moved, Channel)
        return moved

    def errors_after(self, op: Operation, n: int) -> list[Channel]:
        """The channels that follow ``op`` in a circuit of ``n`` wires."""
        if isinstance(op, Channel):
            return []
        keys: list[GateKey] = [type(op)]
        name = qiskit_name(op)
        if name is not None:
            keys.append(name)
        chans = self.error_for(keys, self._index(op.wires, n))
        return [self.place(c, op.wires) for c in chans]

    def measure_errors(self, wires: Iterable[int], n: int) -> list[Channel]:
        """The channels acting just before ``wires`` are measured."""
        out = []
        for w in wires:
            for c in self.error_for([MEASURE], self._index([w], n)):
                out.append(self.place(c, [w]))
        return out

    def apply(self, circuit: Any, *, measured: bool | Sequence[int] = True) -> Circuit:
        """The circuit with this model's channels after the gates they belong to.

        ``circuit``: a qsem :class:`~qsem.circuits.Circuit` or a Qiskit
        ``QuantumCircuit`` (converted instruction by instruction, so Qiskit names such
        as ``sx``/``ecr`` key their errors; its ``measure`` instructions place the
        measurement errors, and ``measured`` must stay at its default).
        ``measured``: the wires of a qsem circuit whose measurement errors are appended
        (``True``: all wires, ``False``: none).
        """
        if not isinstance(circuit, Circuit):
            from .noise_qiskit import apply_to_qiskit, is_quantum_circuit

            if is_quantum_circuit(circuit):
                if measured is not True:
                    raise arg_error(
                        "measured", "a Qiskit circuit's own measure instructions decide it"
                    )
                return apply_to_qiskit(self, circuit)
            raise arg_error(
                "circuit",
                f"expected a qsem Circuit or a Qiskit QuantumCircuit, got {type(circuit).__name__}",
                QsemTypeError,
            )
        n = circuit.num_wires
        out = Circuit(circuit.dims)
        for op in circuit.ops:
            out.add(op, *self.errors_after(op, n))
        if measured is True:
            wires: Sequence[int] = range(n)
        elif measured is False:
            wires = []
        else:
            wires = normalize_wires(measured, "measured")
        out.add(*self.measure_errors(wires, n))
        return out

    def readout_errors(self, dims: Sequence[int]) -> list[ReadoutError]:
        """The readout confusions on a register of ``dims`` (qsem wires): local ones on
        their wires, the all-wire one on every other wire."""
        n = len(dims)
        out = []
        covered: set[int] = set()
        for idx, err in self.local_readout.items():
            if max(idx) >= n:
                continue
            wires = self._index(idx, n)
            covered |= set(wires)
            e = err.on(wires[::-1] if self.qiskit_order else wires)
            e.check_dims([dims[w] for w in e.wires])
            out.append(e)
        if self.default_readout is not None:
            for w in range(n):
                if w not in covered:
                    e = self.default_readout.on([w])
                    e.check_dims([dims[w]])
                    out.append(e)
        return out

    def __repr__(self) -> str:
        n_local = sum(len(v) for v in self.local_errors.values())
        ro = len(self.local_readout) + (self.default_readout is not None)
        return (
            f"NoiseModel(all-wire errors on {sorted(map(_key_name, self.default_errors))}, "
            f"{n_local} local errors, {ro} readout errors"
            f"{', Qiskit qubit order' if self.qiskit_order else ''})"
        )

    # -- converters (implemented in noise_qiskit / noise_qutrit) --------------------------
    @classmethod
    def from_qiskit(cls, noise_model: Any) -> NoiseModel:
        """A qsem model from a Qiskit Aer ``NoiseModel`` (see :mod:`qsem.circuits.noise_qiskit`)."""
        from .noise_qiskit import from_aer

        return from_aer(noise_model)

    @classmethod
    def from_backend(cls, backend: Any, **options: Any) -> NoiseModel:
        """A qsem model of a Qiskit ``BackendV2`` snapshot, through Aer's
        ``NoiseModel.from_backend(backend, **options)``."""
        from .noise_qiskit import from_backend

        return from_backend(backend, **options)

    def to_qiskit(self) -> Any:
        """The Qiskit Aer ``NoiseModel`` of this (qubit) model."""
        from .noise_qiskit import to_aer

        return to_aer(self)

    @classmethod
    def transmon_qutrit(cls, **parameters: Any) -> NoiseModel:
        """A transmon-style qutrit model (:func:`qsem.circuits.noise_qutrit.transmon_qutrit`)."""
        from .noise_qutrit import transmon_qutrit

        return transmon_qutrit(**parameters)


def _key_name(key: GateKey) -> str:
    return key if isinstance(key, str) else key.__name__


def channel_kraus(ch: Channel, dims: Sequence[int]) -> torch.Tensor:
    """Kraus operators ``(r, D, D)`` complex128 of a channel with concrete parameters."""
    from .parameters import resolve_param

    d = tuple(dims)
    params = [resolve_param(p, None, dtype=torch.float64, device=None) for p in ch.params]
    return ch.kraus(params, d, dtype=torch.complex128)
