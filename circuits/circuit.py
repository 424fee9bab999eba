"""The circuit IR: wires with dimensions and an ordered list of operations.

>>> from qsem.circuits import Circuit, Parameter
>>> from qsem.circuits.gates import TRY, TAdd, RY, Controlled, TSWAP
>>> c = Circuit([3, 3, 2])
>>> _ = c.add(TRY(Parameter("x"), wires=0, subspace=(0, 1)), TAdd(wires=[0, 1]))
>>> _ = c.add(RY(0.3, wires=2), Controlled(TSWAP(wires=[0, 1]), control_wires=[2]))
>>> c.parameters
['x']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .errors import DimensionError, QsemTypeError, QsemValueError, arg_error
from .operations import Channel, Gate, Operation, as_numeric_tensor, normalize_wires
from .parameters import Parameter, check_param


def _check_dims(dims: object) -> tuple[int, ...]:
    if isinstance(dims, int) and not isinstance(dims, bool):
        raise arg_error(
            "dims",
            f"expected a sequence of wire dimensions, got the int {dims}; "
            f"use Circuit.qubits({dims}) or Circuit([2] * {dims})",
            QsemTypeError,
        )
    if isinstance(dims, np.ndarray) and dims.ndim == 1:
        dims = dims.tolist()
    if not isinstance(dims, Sequence) or isinstance(dims, str):
        raise arg_error(
            "dims", f"expected a sequence of ints such as [2, 3], got {dims!r}", QsemTypeError
        )
    out = []
    for i, d in enumerate(dims):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise arg_error(
                "dims",
                f"dims[{i}] must be an integer >= 2, got {d!r} of type {type(d).__name__}",
                QsemTypeError,
            )
        if d < 2:
            raise arg_error("dims", f"dims[{i}] must be an integer >= 2, got {d!r}")
        out.append(int(d))
    if not out:
        raise arg_error("dims", "a circuit needs at least one wire")
    return tuple(out)


class Circuit:
    """Wires of dimensions ``dims`` and an ordered list of gates and channels.

    Wire 0 is the most significant index of a basis state ``|w0 w1 ...>``.
    Build with :meth:`add` (chainable) or ``+=``; compose with ``+``; invert with
    :meth:`adjoint`; bind symbolic parameters with :meth:`bind`; draw with
    ``print(circuit)``.
    """

    def __init__(self, dims: Sequence[int], ops: Iterable[Operation] = ()) -> None:
        self.dims: tuple[int, ...] = _check_dims(dims)
        self.ops: list[Operation] = []
        self._version = 0
        self.add(*ops)

    @classmethod
    def qubits(cls, n: int) -> Circuit:
        """A circuit of ``n`` qubits."""
        return cls([2] * _positive(n, "n"))

    @classmethod
    def qutrits(cls, n: int) -> Circuit:
        """A circuit of ``n`` qutrits."""
        return cls([3] * _positive(n, "n"))

    # -- building -----------------------------------------------------------------
    def add(self, *ops: Operation | Circuit) -> Circuit:
        """Append operations (or every operation of a circuit on the same wires); returns self."""
        for op in ops:
            if isinstance(op, Circuit):
                if op.dims != self.dims:
                    raise DimensionError(
                        f"argument 'ops': cannot append a circuit with dims {list(op.dims)} "
                        f"to one with dims {list(self.dims)}"
                    )
                self.add(*op.ops)
                continue
            if isinstance(op, type) and issubclass(op, Operation):
                raise arg_error(
                    "ops",
                    f"got the class {op.__name__}, not an operation; create one first, "
                    f"e.g. {op.__name__}(..., wires=0)",
                    QsemTypeError,
                )
            if not isinstance(op, Operation):
                raise arg_error(
                    "ops", f"expected an Operation, got {type(op).__name__}", QsemTypeError
                )
            bad = [w for w in op.wires if w >= len(self.dims)]
            if bad:
                raise arg_error(
                    "wires",
                    f"{op.name} uses wire(s) {bad}, "
                    f"but the circuit has wires 0..{len(self.dims) - 1}",
                )
            op.check_dims(self.wire_dims(op.wires))
            self.ops.append(op)
            self._version += 1
        return self

    append = add

    def __iadd__(self, other: Operation | Circuit) -> Circuit:
        return self.add(other)

    def __add__(self, other: Circuit) -> Circuit:
        if not isinstance(other, Circuit):
            return NotImplemented
        return self.copy().add(other)

    def compose(self, other: Circuit, wires: Sequence[int]) -> Circuit:
        """A new circuit: this one followed by ``other`` mapped onto ``wires`` of this one."""
        if not isinstance(other, Circuit):
            raise arg_error(
                "other", f"expected a Circuit, got {type(other).__name__}", QsemTypeError
            )
        wires = normalize_wires(wires)
        if len(wires) != len(other.dims):
            raise arg_error(
                "wires", f"need {len(other.dims)} wires for the other circuit, got {list(wires)}"
            )
        bad = [w for w in wires if w >= len(self.dims)]
        if bad:
            raise arg_error(
                "wires", f"wire(s) {bad} out of range, the circuit has {len(self.dims)} wires"
            )
        mapped = [self.dims[w] for w in wires]
        if tuple(mapped) != other.dims:
            raise DimensionError(
                f"argument 'wires': wires {list(wires)} have dimensions {mapped}, "
                "the other circuit "
                f"needs {list(other.dims)}"
            )
        out = self.copy()
        for op in other.ops:
            out.add(remap_wires(op, {i: w for i, w in enumerate(wires)}))
        return out

    def copy(self) -> Circuit:
        return Circuit(self.dims, list(self.ops))

    def adjoint(self) -> Circuit:
        """The inverse circuit (gates only)."""
        if self.has_channels:
            raise QsemValueError(
                "a circuit with channels has no adjoint (channels are not unitary)"
            )
        return Circuit(self.dims, [op.adjoint() for op in reversed(self.ops)])  # type: ignore[attr-defined]

    def bind(self, values: Mapping[str, Any]) -> Circuit:
        """A copy whose symbolic parameters are replaced by the given values."""
        if not isinstance(values, Mapping):
            raise arg_error(
                "values",
                f"expected a mapping name -> value, got {type(values).__name__}",
                QsemTypeError,
            )
        unknown = set(values) - set(self.parameters)
        if unknown:
            raise arg_error("values", f"no parameter(s) named {sorted(unknown)} in the circuit")
        out = Circuit(self.dims)
        for op in self.ops:
            if any(isinstance(p, Parameter) and p.name in values for p in op.params):
                new: list[Any] = []
                for p in op.params:
                    if isinstance(p, Parameter) and p.name in values:
                        raw = values[p.name]
                        where = f"values['{p.name}']"
                        if isinstance(raw, torch.Tensor):
                            v = raw
                        else:
                            if p.index is None:
                                check_param(raw, where)  # clear errors for str, bool, NaN
                            v = as_numeric_tensor(raw, where).to(torch.float64)
                        v = p.select(v, where)
                        v = check_param(v, f"values['{p.name}']")  # type: ignore[assignment]
                        new.append(v * p.scale if p.scale != 1.0 else v)
                    else:
                        new.append(p)
                op = op.with_params(new)
                op.check_dims(out.wire_dims(op.wires))  # range checks on the bound values
            out.ops.append(op)
        return out

    # -- queries ------------------------------------------------------------------
    def wire_dims(self, wires: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.dims[w] for w in wires)

    @property
    def num_wires(self) -> int:
        return len(self.dims)

    @property
    def dim(self) -> int:
        """Dimension of the full register, ``prod(dims)``."""
        return math.prod(self.dims)

    @property
    def parameters(self) -> list[str]:
        """Names of symbolic parameters in order of first appearance."""
        seen: dict[str, None] = {}
        for op in self.ops:
            for p in op.params:
                if isinstance(p, Parameter):
                    seen.setdefault(p.name, None)
        return list(seen)

    @property
    def parameter_lengths(self) -> dict[str, int | None]:
        """Symbolic names -> ``None`` for a scalar, ``K`` for a vector of K elements."""
        out: dict[str, int | None] = {}
        for op in self.ops:
            for p in op.params:
                if isinstance(p, Parameter):
                    if p.index is None:
                        out.setdefault(p.name, None)
                    else:
                        prev = out.get(p.name) or 0
                        out[p.name] = max(prev, p.length or p.index + 1)
        return out

    @property
    def has_channels(self) -> bool:
        return any(isinstance(op, Channel) for op in self.ops)

    @property
    def gates(self) -> list[Gate]:
        return [op for op in self.ops if isinstance(op, Gate)]

    def structure_key(self) -> tuple[Any, ...]:
        """Hashable description of everything but parameter values."""
        return (self.dims, tuple(op.structure_key() for op in self.ops))

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.ops)

    def __repr__(self) -> str:
        return f"Circuit(dims={list(self.dims)}, ops={len(self.ops)})"

    def __str__(self) -> str:
        return self.draw()

    # -- drawing ------------------------------------------------------------------
    def draw(self, output: str = "text", *, max_width: int = 120, **options: Any) -> Any:
        """Draw the circuit: ``"text"`` (a str; long circuits fold into blocks of at most
        ``max_width`` characters, none cut) or ``"mpl"`` (a matplotlib ``Figure``; qudit
        wires labelled with their dimension). ``options`` go to the mpl drawer (``fold``,
        ``scale``)."""
        from .draw import draw_text

        if output == "text":
            return draw_text(self, max_width=max_width)
        if output == "mpl":
            from .draw_mpl import draw_mpl

            return draw_mpl(self, **options)
        raise arg_error("output", f"expected 'text' or 'mpl', got {output!r}")

    def _repr_html_(self) -> str:
        """Notebook display: the text drawing in a ``<pre>`` block."""
        import html

        return f"<pre>{html.escape(repr(self))}\n{html.escape(self.draw())}</pre>"

    def _repr_png_(self) -> bytes:
        """Notebook display as an image (the matplotlib drawing)."""
        from .draw_mpl import figure_png

        return figure_png(self)

    # -- interop ------------------------------------------------------------------
    def to_qiskit(self) -> Any:
        """A ``qiskit.QuantumCircuit`` (symbols as Qiskit ``Parameter``/``ParameterVector``;
        channels as ``kraus`` instructions; qudit wires through the qubit encoding of
        :mod:`qsem.circuits.qiskit_export`, a qutrit on two qubits)."""
        from .qiskit_export import to_qiskit

        return to_qiskit(self)[0]

    @classmethod
    def from_qiskit(cls, qc: Any) -> Circuit:
        """The circuit of a ``qiskit.QuantumCircuit``: qubits, or the qudit circuit
        ``to_qiskit`` recorded in its metadata
        (:func:`qsem.circuits.qiskit_import.from_qiskit`)."""
        from .qiskit_import import from_qiskit

        return from_qiskit(qc)

    def to_qasm3(self) -> str:
        """OpenQASM 3 text of a circuit without channels (through ``qiskit.qasm3``; qudit
        wires in the qubit encoding, recorded in an ``@qsem.qudits`` annotation)."""
        from .qiskit_import import to_qasm3

        return to_qasm3(self)

    @classmethod
    def from_qasm3(cls, text: str) -> Circuit:
        """A circuit from OpenQASM 3 text (through ``qiskit.qasm3``): qubits, or the qudit
        circuit of an ``@qsem.qudits`` annotation."""
        from .qiskit_import import from_qasm3

        return from_qasm3(text)

    def to_pennylane(self, measure: Any = None) -> Any:
        """A PennyLane quantum function ``qfunc(**params)`` applying this circuit; it returns
        ``measure()`` when given (:func:`qsem.circuits.pennylane_io.to_pennylane`)."""
        from .pennylane_io import to_pennylane

        return to_pennylane(self, measure)

    @classmethod
    def from_pennylane(cls, tape_or_qfunc: Any, *args: Any, **kwargs: Any) -> Circuit:
        """A circuit from a PennyLane tape, or a quantum function called with ``args``
        (:func:`qsem.circuits.pennylane_import.from_pennylane`)."""
        from .pennylane_import import from_pennylane

        return from_pennylane(tape_or_qfunc, *args, **kwargs)

    def to_json(self) -> str:
        """A JSON text of the circuit that :meth:`from_json` loads back exactly."""
        from .serialize import to_json

        return to_json(self)

    @classmethod
    def from_json(cls, text: str) -> Circuit:
        """The circuit of a :meth:`to_json` text."""
        from .serialize import from_json

        return from_json(text)


def _positive(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise arg_error(name, f"must be a positive integer, got {n!r}", QsemTypeError)
    if n < 1:
        raise arg_error(name, f"must be a positive integer, got {n!r}")
    return int(n)


def remap_wires(op: Operation, mapping: Mapping[int, int]) -> Operation:
    """A copy of ``op`` with its wires renamed by ``mapping`` (nested controls included)."""
    import copy

    new = copy.copy(op)
    new.wires = tuple(mapping[w] for w in op.wires)
    for attr in ("base",):
        if hasattr(op, attr):
            setattr(new, attr, remap_wires(getattr(op, attr), mapping))
    if hasattr(op, "control_wires"):
        new.control_wires = tuple(mapping[w] for w in op.control_wires)  # type: ignore[attr-defined]
    return new
