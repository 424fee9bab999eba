r"""Qudit wires that survive a trip through Qiskit and OpenQASM 3.

:func:`~qsem.circuits.qiskit_export.to_qiskit` encodes a wire of dimension
``d > 2`` on ``ceil(log2 d)`` qubits. For a circuit with such wires it also
records, in ``QuantumCircuit.metadata["qsem"]``, which qubits encode which wire
and which qsem operation each run of Qiskit instructions came from:

.. code-block:: text

    {"format": "qsem.qudits", "version": 1,
     "dims":   [3, 2],                 # the qsem wires
     "qubits": [[2, 1], [0]],          # each wire's qubits, most significant bit first
     "ops": [[count, op, binds], ...]} # per qsem operation, in order

``count`` is the number of Qiskit instructions the operation became, ``op`` the
operation as in :func:`qsem.circuits.Circuit.to_json` (class, wires, subspace,
symbolic ``Parameter``\ s ...), ``binds`` one entry ``[name, index, k, j, c]`` per
symbolic parameter: instruction ``k`` of the run holds, as its parameter ``j``,
``c`` times the parameter's value. :func:`restore` rebuilds the qsem circuit from
this: the same dimensions, operation classes, wires and parameters. A parameter
Qiskit has bound since (``assign_parameters``) is read back as its number
(``value / c``), one still free stays the qsem ``Parameter`` of the record.

The record describes the circuit as exported. If the instructions no longer add
up (a gate appended, the circuit transpiled), :func:`restore` warns and the
circuit imports as qubits.

OpenQASM 3 has no metadata; :func:`annotate` writes the same record as an
annotation, one ``@qsem.qudits {...}`` line on the qubit declaration
(OpenQASM 3 keeps annotations with their statement, and tools that do not know
one ignore it: Qiskit's importer does; it refuses ``pragma`` lines), and
:func:`split_annotation` reads it back.

>>> from qsem.circuits import Circuit, TRY, Parameter
>>> qc = Circuit([3]).add(TRY(Parameter("t"), wires=0, subspace=(1, 2))).to_qiskit()
>>> qc.metadata["qsem"]["qubits"], restore(qc).ops
([[1, 0]], [SubspaceRY(t, subspace=(1, 2), wires=[0])])
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from .circuit import Circuit
from .errors import arg_error
from .operations import Operation

__all__ = ["ANNOTATION", "FORMAT", "VERSION", "annotate", "record", "restore", "split_annotation"]

FORMAT = "qsem.qudits"
VERSION = 1
ANNOTATION = "@qsem.qudits "


def _symbolic_entries(d: Any) -> list[dict[str, Any]]:
    """Every symbolic parameter entry of an encoded operation (nested bases included)."""
    out: list[dict[str, Any]] = []
    if isinstance(d, dict):
        for p in d.get("params", []):
            if isinstance(p, dict) and "parameter" in p:
                out.append(p)
        if "base" in d:
            out += _symbolic_entries(d["base"])
    return out


def _locate(insts: list[Any], q: Any) -> tuple[int, int, float] | None:
    """``(k, j, c)``: the first instruction parameter of ``insts`` equal to ``c · q``."""
    from qiskit.circuit import ParameterExpression

    for k, inst in enumerate(insts):
        for j, v in enumerate(inst.operation.params):
            if isinstance(v, ParameterExpression) and q in v.parameters:
                if len(v.parameters) != 1:
                    continue
                try:
                    c = float(v.gradient(q))
                    offset = complex(v.assign(q, 0.0).numeric())
                except (TypeError, ValueError, RuntimeError):
                    continue
                if c != 0.0 and offset == 0:
                    return k, j, c
    return None


def record(
    circuit: Circuit, qc: Any, spans: list[tuple[Operation, int, int]], params: dict[str, Any]
) -> dict[str, Any]:
    """The metadata record of ``circuit`` exported as ``qc``; ``spans``: each operation and
    the range of ``qc.data`` it became; ``params``: qsem name -> Qiskit parameter (vector)."""
    from .qiskit_export import QubitLayout
    from .serialize import _encode

    layout = QubitLayout.of(circuit.dims)
    ops = []
    for op, start, stop in spans:
        d = _encode(op)
        insts = list(qc.data[start:stop])
        binds = []
        seen = set()
        for e in _symbolic_entries(d):
            key = (e["parameter"], e["index"])
            if key in seen:
                continue
            seen.add(key)
            q = params[e["parameter"]]
            q = q[e["index"]] if e["index"] is not None else q
            loc = _locate(insts, q)
            if loc is not None:
                binds.append([e["parameter"], e["index"], *loc])
        ops.append([stop - start, d, binds])
    return {
        "format": FORMAT,
        "version": VERSION,
        "dims": list(circuit.dims),
        "qubits": [layout.qubits(w) for w in range(len(circuit.dims))],
        "ops": ops,
    }


def _bind(d: dict[str, Any], values: dict[tuple[str, int | None], float]) -> dict[str, Any]:
    """``d`` with the symbolic entries whose parameter Qiskit bound replaced by numbers."""
    out = dict(d)
    if "params" in d:
        out["params"] = [
            values[(p["parameter"], p["index"])] * p["scale"]
            if isinstance(p, dict) and (p.get("parameter"), p.get("index")) in values
            else p
            for p in d["params"]
        ]
    if "base" in d:
        out["base"] = _bind(d["base"], values)
    return out


def _valid(qc: Any, meta: Any) -> str | None:
    """Why the record does not describe ``qc`` (None when it does)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return "not a qsem.qudits record"
    if meta.get("version") != VERSION:
        return f"record version {meta.get('version')!r}, this qsem reads {VERSION}"
    try:
        count = sum(int(n) for n, _, _ in meta["ops"])
        nq = sum(len(q) for q in meta["qubits"])
    except (KeyError, TypeError, ValueError):
        return "malformed record"
    if nq != qc.num_qubits:
        return f"the record encodes {nq} qubits, the circuit has {qc.num_qubits}"
    if count != len(qc.data):
        return f"the record holds {count} instructions, the circuit {len(qc.data)}"
    return None


def restore(qc: Any) -> Circuit | None:
    """The qsem circuit recorded in ``qc.metadata["qsem"]``; ``None`` when there is no
    record, or (with a warning) when it no longer matches the circuit."""
    from qiskit.circuit import ParameterExpression

    from .serialize import _decode

    meta = (qc.metadata or {}).get("qsem")
    if meta is None:
        return None
    why = _valid(qc, meta)
    if why is not None:
        warnings.warn(
            f"qsem qudit record ignored ({why}); the circuit imports as qubits",
            stacklevel=3,
        )
        return None
    out = Circuit(meta["dims"])
    start = 0
    for i, (count, d, binds) in enumerate(meta["ops"]):
        insts = qc.data[start : start + count]
        values: dict[tuple[str, int | None], float] = {}
        for name, index, k, j, c in binds:
            v = insts[k].operation.params[j]
            if isinstance(v, ParameterExpression) and v.parameters:
                continue  # still free: the recorded qsem Parameter
            values[(name, index)] = float(v.numeric() if hasattr(v, "numeric") else v) / c
        try:
            out.add(_decode(_bind(d, values), f"metadata ops[{i}]"))
        except (KeyError, TypeError) as exc:
            raise arg_error("qc", f"qsem qudit record: ops[{i}] is malformed ({exc!r})") from None
        start += count
    return out


def annotate(text: str, meta: dict[str, Any]) -> str:
    """OpenQASM 3 ``text`` with ``meta`` as an ``@qsem.qudits`` annotation on its qubit
    declaration (the first ``qubit`` statement)."""
    line = ANNOTATION + json.dumps(meta, separators=(",", ":"), allow_nan=False)
    lines = text.splitlines()
    at = next((k for k, s in enumerate(lines) if s.lstrip().startswith("qubit")), None)
    if at is None:
        raise arg_error("circuit", "the OpenQASM 3 text declares no qubits")
    return "\n".join([*lines[:at], line, *lines[at:]]) + "\n"


def split_annotation(text: str) -> tuple[str, dict[str, Any] | None]:
    """``(text without the qsem.qudits annotation, its record or None)``."""
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if line.lstrip().startswith(ANNOTATION):
            try:
                meta = json.loads(line.lstrip()[len(ANNOTATION) :])
            except json.JSONDecodeError as exc:
                why = f"line {k + 1}: malformed @qsem.qudits annotation ({exc})"
                raise arg_error("text", why) from None
            return "\n".join(lines[:k] + lines[k + 1 :]), meta
    return text, None
