r"""Qiskit ``QuantumCircuit``\ s (and OpenQASM 3) into qsem circuits.

Qiskit qubit ``q`` of an ``n``-qubit circuit becomes qsem wire ``n - 1 - q`` (the
inverse of :func:`qsem.circuits.qiskit_export.to_qiskit`), so
``Statevector(qc)`` and qsem's state vector agree index for index.

* Gates with a qsem counterpart (:data:`QISKIT_GATES`, keyed by Qiskit's gate name
  and holding the qsem gate *classes*) map to that class; controlled gates whose
  base maps (any number of controls, any control state) become
  :class:`~qsem.circuits.gates.Controlled`; ``sdg``/``tdg``/``sxdg`` and other
  inverses map to ``Adjoint`` of the base.
* Parameters: a Qiskit ``Parameter`` becomes a qsem
  :class:`~qsem.circuits.Parameter` of the same name, an element of a Qiskit
  ``ParameterVector`` an element of a qsem ``ParameterVector`` (same name, index
  and length); a linear expression ``a·θ`` keeps its scale.
* Anything else (``rzz``, ``u2``, ``ecr``, a user's gate ...) enters as
  :class:`~qsem.circuits.gates.Unitary` holding Qiskit's matrix of the
  instruction, once its parameters are bound; an unbound one is refused.
* ``kraus`` instructions (``qc.append(Kraus(...), qargs)``) become
  :class:`~qsem.circuits.Kraus` channels; ``barrier`` and ``delay`` are skipped;
  measurements, resets and classical control are refused.
* A numeric ``qc.global_phase`` is kept as a phase ``e^{iφ}·I`` on wire 0.
* A circuit that :func:`~qsem.circuits.qiskit_export.to_qiskit` exported from a
  circuit with qudit wires carries a record in ``qc.metadata["qsem"]``
  (:mod:`qsem.circuits.qiskit_qudits`): it imports as that qudit circuit, not
  as qubits (``to_qasm3``/``from_qasm3`` carry the record in an annotation).

>>> from qiskit import QuantumCircuit
>>> qc = QuantumCircuit(2)
>>> _ = qc.h(0); _ = qc.cx(0, 1)
>>> from_qiskit(qc).ops
[H(wires=[1]), CNOT(wires=[1, 0])]
"""

from __future__ import annotations

import cmath
from collections.abc import Callable
from typing import Any

import numpy as np

from . import gates as G
from .channels import Kraus
from .circuit import Circuit
from .errors import MissingDependencyError, QsemTypeError, QsemValueError, arg_error
from .operations import Gate, Operation
from .parameters import Parameter, ParamLike

__all__ = [
    "DERIVED_PREFIX",
    "QISKIT_GATES",
    "from_qasm3",
    "from_qiskit",
    "import_qiskit",
    "to_qasm3",
]

#: Qiskit gate name -> qsem gate class (constructed as ``cls(*params, wires=...)``, wires
#: in qsem order: for controlled names the controls first, as in Qiskit's qargs).
QISKIT_GATES: dict[str, type[Gate]] = {
    "id": G.Identity, "x": G.X, "y": G.Y, "z": G.Z, "h": G.H, "s": G.S, "t": G.T,
    "rx": G.RX, "ry": G.RY, "rz": G.RZ, "p": G.PhaseShift, "u1": G.PhaseShift,
    "u": G.U3, "u3": G.U3, "swap": G.SWAP, "cx": G.CNOT, "cz": G.CZ, "crx": G.CRX,
    "cry": G.CRY, "crz": G.CRZ, "ccx": G.Toffoli, "cswap": G.CSWAP,
}  # fmt: skip
#: Qiskit names of inverses of gates in :data:`QISKIT_GATES`.
_INVERSES = {"sdg": "s", "tdg": "t"}
_SKIP = {"barrier", "delay"}


def _require_qiskit() -> Any:
    try:
        import qiskit
    except ImportError as exc:
        raise MissingDependencyError(
            f"Qiskit interop needs qiskit ({exc}); install it with pip install 'qsem[aer]'"
        ) from None
    return qiskit


#: Name prefix of the parameters :func:`import_qiskit` makes for expressions (``expressions=True``).
DERIVED_PREFIX = "__qsem_expr_"


class _Params:
    """Qiskit parameters -> qsem parameters (one qsem object per Qiskit parameter).

    ``derived``: where to keep expressions qsem cannot hold (non-linear, several
    parameters, an offset); each becomes a fresh qsem ``Parameter`` named
    ``DERIVED_PREFIX + k``. ``None`` refuses them (the gate then needs binding).
    """

    def __init__(self, derived: dict[str, Any] | None = None) -> None:
        self.cache: dict[Any, Parameter] = {}
        self.derived = derived

    def _derive(self, value: Any) -> Parameter | None:
        if self.derived is None:
            return None
        name = f"{DERIVED_PREFIX}{len(self.derived)}"
        self.derived[name] = value
        return Parameter(name)

    def symbol(self, q: Any) -> Parameter:
        p = self.cache.get(q)
        if p is None:
            vec = getattr(q, "vector", None)
            if vec is not None:
                p = Parameter(vec.name, 1.0, int(q.index), len(vec))
            else:
                p = Parameter(q.name)
            self.cache[q] = p
        return p

    def convert(self, value: Any, where: str) -> ParamLike | None:
        """A qsem parameter, or None for an expression qsem cannot hold (non-linear ...)."""
        from qiskit.circuit import ParameterExpression

        if not isinstance(value, ParameterExpression):
            if isinstance(value, (int, float, np.floating, np.integer)):
                return float(value)
            return None  # a matrix (UnitaryGate) or other non-angle parameter
        free = list(value.parameters)
        if not free:
            return float(value.numeric())
        if len(free) != 1:
            return self._derive(value)
        (q,) = free
        try:
            scale = float(value.gradient(q))
            offset = complex(value.assign(q, 0.0).numeric())
        except (TypeError, ValueError, RuntimeError):
            return self._derive(value)
        if abs(offset) > 0.0:
            return self._derive(value)
        sym = self.symbol(q)
        return sym if scale == 1.0 else sym * scale


def _wires(qc: Any, qubits: Any) -> list[int]:
    n = qc.num_qubits
    return [n - 1 - qc.find_bit(q).index for q in qubits]


def _named(name: str, params: list[ParamLike], wires: list[int]) -> Gate | None:
    cls = QISKIT_GATES.get(name)
    if cls is not None:
        return cls(*params, wires=wires)
    if name in _INVERSES:
        return QISKIT_GATES[_INVERSES[name]](wires=wires).adjoint()
    return None


def _convert_gate(op: Any, wires: list[int], params: _Params, where: str) -> Gate | None:
    """A qsem gate for a Qiskit gate, or None when there is no counterpart."""
    from qiskit.circuit import ControlledGate

    vals = [params.convert(v, where) for v in op.params]
    if any(v is None for v in vals):
        return None
    plain: list[ParamLike] = [v for v in vals if v is not None]
    nc = getattr(op, "num_ctrl_qubits", 0)
    default_state = (1 << nc) - 1
    if not isinstance(op, ControlledGate) or op.ctrl_state == default_state:
        gate = _named(op.name, plain, wires)
        if gate is not None:
            return gate
    # a controlled gate is its base controlled unless it carries more (cu's phase γ)
    if isinstance(op, ControlledGate) and len(op.params) == len(op.base_gate.params):
        base = _convert_gate(op.base_gate, wires[nc:], params, where)
        if base is None:
            return None
        values = [(op.ctrl_state >> i) & 1 for i in range(nc)]
        return G.Controlled(base, wires[:nc], values)
    return None


def from_qiskit(qc: Any) -> Circuit:
    """The qsem circuit of a Qiskit ``QuantumCircuit``.

    A circuit exported by :func:`~qsem.circuits.qiskit_export.to_qiskit` from a circuit
    with qudit wires comes back as that circuit (dimensions, gates, parameters: see
    :mod:`qsem.circuits.qiskit_qudits`); any other circuit imports as qubits, with the
    gate map of the module docstring. Raises a one-line error naming the instruction
    for measurements, classical control, and unbound gates without a qsem counterpart
    (bind them with ``qc.assign_parameters`` first).
    """
    return import_qiskit(qc)[0]


def import_qiskit(
    qc: Any, *, expressions: bool = False, qudits: bool = True
) -> tuple[Circuit, dict[str, Any]]:
    """:func:`from_qiskit` with options: ``(circuit, derived)``.

    ``expressions=True`` keeps gate parameters that are expressions qsem's
    ``Parameter`` cannot hold (``2(π - x₀)(π - x₁)`` of ``zz_feature_map``, ``θ + φ``,
    ``θ + 1``) symbolic: each becomes a parameter named ``DERIVED_PREFIX + k`` and
    ``derived`` maps that name to the Qiskit ``ParameterExpression`` whose value it
    must be bound to (the Qiskit primitives of :mod:`qsem.simulators` evaluate them
    per row). With ``expressions=False`` (``from_qiskit``) ``derived`` is empty.
    ``qudits=False`` ignores a qudit record: the circuit imports as the qubits Qiskit
    simulates.
    """
    qiskit = _require_qiskit()
    from qiskit.quantum_info import Operator

    if not isinstance(qc, qiskit.QuantumCircuit):
        raise arg_error(
            "qc", f"expected a qiskit QuantumCircuit, got {type(qc).__name__}", QsemTypeError
        )
    if qc.num_qubits == 0:
        raise arg_error("qc", "the circuit has no qubits")
    if qudits:
        from .qiskit_qudits import restore

        restored = restore(qc)
        if restored is not None:
            return restored, {}
    derived: dict[str, Any] = {}
    params = _Params(derived if expressions else None)
    out = Circuit.qubits(qc.num_qubits)
    for k, inst in enumerate(qc.data):
        op = inst.operation
        where = f"instruction {k} ({op.name!r})"
        if op.name in _SKIP:
            continue
        if inst.clbits or getattr(op, "condition", None) is not None or op.num_clbits:
            raise arg_error(
                "qc", f"{where} uses classical bits; only unitary gates and Kraus channels import"
            )
        wires = _wires(qc, inst.qubits)
        if op.name == "kraus":
            mats = [np.asarray(m, dtype=np.complex128) for m in op.params]
            out.add(Kraus(np.stack(mats), wires=wires[::-1]))
            continue
        if not isinstance(op, qiskit.circuit.Gate):
            raise arg_error("qc", f"{where} is not a gate (measure, reset ...); cannot import it")
        gate: Operation | None = _convert_gate(op, wires, params, where)
        if gate is None:
            if op.is_parameterized():
                raise arg_error(
                    "qc",
                    f"{where} has unbound parameters and no qsem counterpart; bind them "
                    "first (qc.assign_parameters)",
                )
            mat = Operator(op).data
            gate = G.Unitary(mat, wires=wires[::-1])
        out.add(gate)
    phase = qc.global_phase
    if not hasattr(phase, "parameters") or not phase.parameters:
        phi = float(phase)
        if phi != 0.0:
            out.add(G.Unitary(cmath.exp(1j * phi) * np.eye(2), wires=[0]))
    return out, derived


def to_qasm3(circuit: Circuit) -> str:
    """OpenQASM 3 text of a circuit without channels, through ``qiskit.qasm3.dumps``.

    Qudit wires are written in the qubit encoding of :func:`to_qiskit
    <qsem.circuits.qiskit_export.to_qiskit>`, with the record of which qubits encode
    which wire in an ``@qsem.qudits {...}`` annotation on the qubit declaration
    (:mod:`qsem.circuits.qiskit_qudits`), so :func:`from_qasm3` restores them.
    Channels have no OpenQASM 3 form: they are refused.
    """
    from .qiskit_export import to_qiskit
    from .qiskit_qudits import annotate

    _require_qiskit()
    from qiskit import qasm3

    if circuit.has_channels:
        raise arg_error("circuit", "OpenQASM 3 has no noise channels; remove them first")
    qc, _ = to_qiskit(circuit)
    text = str(qasm3.dumps(qc))
    meta = (qc.metadata or {}).get("qsem")
    if meta is None:
        return text
    return annotate(text, meta)


def from_qasm3(text: str) -> Circuit:
    """A circuit from OpenQASM 3 text, through ``qiskit.qasm3.loads`` (which needs
    ``qiskit_qasm3_import``, part of the ``qsem[aer]`` extra): qubits, or the qudit
    circuit recorded in an ``@qsem.qudits`` annotation (see :func:`to_qasm3`)."""
    from .qiskit_qudits import split_annotation

    _require_qiskit()
    from qiskit import qasm3

    if not isinstance(text, str):
        raise arg_error("text", f"expected OpenQASM 3 text, got {type(text).__name__}")
    text, meta = split_annotation(text)
    load: Callable[[str], Any] = qasm3.loads
    try:
        qc = load(text)
    except ImportError as exc:
        raise MissingDependencyError(
            f"loading OpenQASM 3 needs qiskit_qasm3_import ({exc}); pip install 'qsem[aer]'"
        ) from None
    except Exception as exc:  # the parser's own error types vary by version
        if type(exc).__name__ == "MissingOptionalLibraryError":
            raise MissingDependencyError(
                "loading OpenQASM 3 needs qiskit_qasm3_import; pip install 'qsem[aer]'"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QsemValueError(f"argument 'text': not valid OpenQASM 3: {first}") from None
    if meta is not None:
        qc.metadata = {**(qc.metadata or {}), "qsem": meta}
    return from_qiskit(qc)
