r"""qsem circuits as Qiskit ``QuantumCircuit``\\ s: the qubit encoding of qudit wires.

This is the one home of the encoding used by :meth:`Circuit.to_qiskit
<qsem.circuits.Circuit.to_qiskit>` and by the Aer backend
(:mod:`qsem.simulators.aer`). A qubit circuit maps gate for gate; a qutrit (or
mixed) circuit is exported through the two-qubit-per-qutrit encoding below, so
the exported circuit acts on ``Σ_w ceil(log2 d_w)`` qubits.

* **Wires.** A qubit wire is one Qiskit qubit. A wire of dimension ``d > 2`` is
  encoded in ``k = ceil(log2 d)`` qubits (a qutrit in two): level ``l`` is the
  binary number ``l`` on those qubits (``|00>, |01>, |10>`` hold ``|0>, |1>, |2>``),
  and the levels ``d .. 2^k - 1`` (``|11>`` for a qutrit) are *leakage* levels.
  Wire 0 is qsem's most significant index; Qiskit is little-endian, so the last
  wire gets the lowest qubits: wire ``w`` holds qubits ``off_w .. off_w + k_w - 1``
  (bit ``b`` of its level on qubit ``off_w + b``) with ``off_w = Σ_{v > w} k_v``.
  The Qiskit basis index is then the big-endian concatenation of the wire levels.
* **Gates.** Every gate acts as ``U ⊕ 1``: ``U`` on the encoded levels, the
  identity wherever some wire of the gate sits on a leakage level.
  Gates with symbolic parameters stay symbolic (Qiskit ``Parameter``\\ s), so ONE
  transpiled circuit serves every row of ``values`` through ``parameter_binds``
  in ONE ``AerSimulator.run`` job:

  - ``RX/RY/RZ``, ``PhaseShift``, ``U3`` map to Qiskit's ``rx/ry/rz``, ``p``, ``u``
    (``U3 = P(φ)·RY(θ)·P(λ)`` once controlled).
  - ``SubspaceRX/RY/RZ(θ)`` on levels ``(j, k)`` of an encoded wire: let ``p`` be the
    highest bit in which ``j`` and ``k`` differ (``j`` has 0 there, ``k`` has 1). CNOTs
    from bit ``p`` onto every other differing bit map ``k`` to ``j + 2^p`` and leave
    ``j`` alone; the rotation is then ``rx/ry/rz(θ)`` on bit ``p``, controlled by the
    wire's other bits being those of ``j``; the same CNOTs undo the relabelling.
    On a qutrit (high qubit ``h``, low qubit ``l``): ``(0,1)`` is ``R(θ)`` on ``l``
    controlled by ``h = 0``; ``(0,2)`` is ``R(θ)`` on ``h`` controlled by ``l = 0``;
    ``(1,2)`` is ``CX(h->l) · [R(θ) on h controlled by l = 1] · CX(h->l)``. Nothing
    touches the leakage level ``|11>``.
  - ``Controlled(base, controls, values)`` (any nesting, any control dims) adds one
    control per bit of each control wire, the bits of the control value giving the
    control state (``X`` on the bits that must be 0, before and after).
  - Controlled parametrised gates are built from single-qubit ``rx/ry/rz/p`` and
    (multi-)CX only: ``C^n R_{y,z}(θ) = R(θ/2)·MCX·R(-θ/2)·MCX`` (time order),
    ``C^n RX = H·C^n RZ·H``, ``C^n P(φ) = C^n RZ(φ) · C^{n-1}P(φ/2)`` on the last
    control. Aer 0.18 binds the parameters of its own ``cry/crx/crz/cp/mcphase``
    instructions wrongly under ``parameter_binds`` (Qiskit/qiskit-aer#2323,
    #2391, #2403), so the converted circuits never contain them.
  - ``Adjoint`` of a parametrised gate uses the gate's own ``adjoint()`` (negated
    angles).
  - Gates without symbolic parameters: named Qiskit gates for the standard qubit
    gates, otherwise a ``UnitaryGate`` holding the embedded matrix ``U ⊕ 1``.

  A symbolic gate that none of these express (a user's own parametrised ``Gate``
  subclass) and channels with *symbolic* parameters cannot be bound by Aer:
  such circuits are bound numerically per row and sent as a list of ``N``
  circuits, still in one ``run`` job (slower: one transpilation per row).
* **Channels** become Aer ``kraus`` instructions: on encoded wires each Kraus
  operator ``K`` becomes ``K ⊕ 0`` and the projector onto the leakage subspace is
  added as one more Kraus operator, so the map stays CPTP on the qubits.
  Exact results of a circuit with channels need ``method="density_matrix"``
  (``method=None`` picks it); ``method="statevector"`` samples trajectories and
  is accepted with ``shots`` only.

A circuit with a qudit wire records its encoding and operations in
``qc.metadata["qsem"]`` (:mod:`qsem.circuits.qiskit_qudits`), from which
:func:`~qsem.circuits.qiskit_import.from_qiskit` restores the qudit circuit.

Symbolic parameters become Qiskit ``Parameter``\\ s; the elements of a qsem
``ParameterVector`` become the elements of a Qiskit ``ParameterVector`` of the same
name and length (each element its own parameter).

>>> from qsem.circuits import Circuit, ParameterVector, RY, CNOT
>>> w = ParameterVector("w", 2)
>>> qc, params = to_qiskit(Circuit.qubits(2).add(RY(w[0], wires=0), RY(w[1], wires=1)))
>>> sorted(p.name for p in qc.parameters)
['w[0]', 'w[1]']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import gates as G
from .circuit import Circuit
from .errors import MissingDependencyError, QsemTypeError, arg_error
from .operations import Adjoint, Channel, Gate, Operation
from .parameters import Parameter, resolve_param

__all__ = ["QubitLayout", "require_qiskit", "to_qiskit"]

#: Kraus operators with a smaller Frobenius norm are dropped (p = 0 terms).
_KRAUS_DROP = 1e-14


def require_qiskit() -> Any:
    """``(qiskit, qiskit_aer)``, or a one-line error naming the extra ``qsem[aer]``."""
    try:
        import qiskit
        import qiskit_aer
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Aer backend needs qiskit and qiskit-aer ({exc}); install them with "
            "pip install 'qsem[aer]' (or 'qsem[gpu]' for qiskit-aer-gpu)"
        ) from None
    return qiskit, qiskit_aer


# ---------------------------------------------------------------------------------------------
# Layout: qsem wires -> Qiskit qubits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QubitLayout:
    """Where each qsem wire lives on the Qiskit register.

    ``bits[w]`` qubits encode wire ``w``; ``offsets[w]`` is its lowest qubit (bit 0
    of the level). Wire 0 gets the highest qubits, so a Qiskit basis index is the
    big-endian concatenation of the wire levels.

    >>> lay = QubitLayout.of((2, 3, 2))
    >>> lay.qubits(1), lay.num_qubits
    ([2, 1], 4)
    """

    dims: tuple[int, ...]
    bits: tuple[int, ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, dims: Sequence[int]) -> QubitLayout:
        dims = tuple(int(d) for d in dims)
        bits = tuple(max(1, math.ceil(math.log2(d))) for d in dims)
        offsets = tuple(sum(bits[w + 1 :]) for w in range(len(dims)))
        return cls(dims, bits, offsets)

    @property
    def num_qubits(self) -> int:
        return sum(self.bits)

    def qubits(self, wire: int) -> list[int]:
        """Qubits of ``wire``, most significant bit first."""
        o, k = self.offsets[wire], self.bits[wire]
        return [o + b for b in reversed(range(k))]

    def qargs(self, wires: Sequence[int]) -> list[int]:
        """Qiskit qargs (little-endian) of a big-endian local matrix on ``wires``."""
        big = [q for w in wires for q in self.qubits(w)]
        return big[::-1]

    def leaky(self, wire: int) -> bool:
        return self.dims[wire] != 1 << self.bits[wire]

    def valid_indices(self, wires: Sequence[int]) -> np.ndarray:
        """Encoded index (big-endian over the wires' bits) of each qsem local index."""
        idx = np.zeros(1, dtype=np.int64)
        for w in wires:
            idx = (idx[:, None] << self.bits[w]) + np.arange(self.dims[w])[None, :]
            idx = idx.reshape(-1)
        return idx

    def embed(self, matrix: np.ndarray, wires: Sequence[int], leak_fill: float) -> np.ndarray:
        """``M ⊕ leak_fill·1``: a local matrix on ``wires`` placed on their encoded qubits."""
        m = 1 << sum(self.bits[w] for w in wires)
        idx = self.valid_indices(wires)
        out = np.zeros((m, m), dtype=np.complex128)
        if leak_fill:
            out[np.diag_indices(m)] = leak_fill
            out[idx, idx] = 0
        out[np.ix_(idx, idx)] = matrix
        return out


# ---------------------------------------------------------------------------------------------
# Circuit conversion
# ---------------------------------------------------------------------------------------------
class _Unsupported(Exception):
    """A symbolic operation Aer cannot bind: the circuit is bound per row instead."""


def _flatten(op: Gate) -> tuple[Gate, list[tuple[int, int]]]:
    """``(base, [(control wire, value), ...])``: nested ``Controlled``/``Adjoint`` undone."""
    controls: list[tuple[int, int]] = []
    while True:
        if isinstance(op, G.Controlled):
            controls += list(zip(op.control_wires, op.control_values, strict=True))
            op = op.base
        elif isinstance(op, Adjoint):
            inner = op.base.adjoint()
            if isinstance(inner, Adjoint):
                return op, controls
            op = inner
        else:
            return op, controls


class _Converter:
    """Builds the Qiskit circuit of a qsem circuit on a :class:`QubitLayout`."""

    def __init__(self, circuit: Circuit) -> None:
        qiskit, _ = require_qiskit()
        from qiskit.circuit import library as lib

        self.qiskit = qiskit
        self.lib = lib
        self.circuit = circuit
        self.layout = QubitLayout.of(circuit.dims)
        self.params: dict[str, Any] = {}
        self.qc = qiskit.QuantumCircuit(self.layout.num_qubits)
        self._named: dict[type, Any] = {
            G.X: lib.XGate, G.Y: lib.YGate, G.Z: lib.ZGate, G.H: lib.HGate, G.S: lib.SGate,
            G.T: lib.TGate,
        }  # fmt: skip

    # -- parameters -------------------------------------------------------------------
    def param(self, p: Any) -> Any:
        if isinstance(p, Parameter):
            q = self.params.get(p.name)
            if p.index is not None:  # an element of a Qiskit ParameterVector of that name
                length = p.length or self.circuit.parameter_lengths[p.name] or p.index + 1
                if q is None:
                    q = self.params[p.name] = self.qiskit.circuit.ParameterVector(p.name, length)
                q = q[p.index]
            elif q is None:
                q = self.params[p.name] = self.qiskit.circuit.Parameter(p.name)
            return q * p.scale if p.scale != 1.0 else q
        t = resolve_param(p, None, dtype=torch.float64, device="cpu")
        return float(t)

    # -- gates ------------------------------------------------------------------------
    def add(self, op: Operation) -> None:
        if isinstance(op, Channel):
            self.add_channel(op)
        elif isinstance(op, Gate):
            self.add_gate(op)
        else:  # pragma: no cover - Circuit only holds gates and channels
            raise arg_error("circuit", f"cannot convert {op!r}", QsemTypeError)

    def add_gate(self, op: Gate) -> None:
        symbolic = any(isinstance(p, Parameter) for p in op.params)
        base, controls = _flatten(op)
        if isinstance(base, G.Identity):
            return
        if self._try_named(base, controls):
            return
        if symbolic:
            raise _Unsupported(op.name)
        mat = op.concrete_matrix(self.circuit.wire_dims(op.wires)).detach().cpu().numpy()
        self._unitary(mat, list(op.wires))

    def _unitary(self, mat: np.ndarray, wires: list[int]) -> None:
        emb = self.layout.embed(mat, wires, 1.0)
        gate = self.lib.UnitaryGate(emb, check_input=False)
        self.qc.append(gate, self.layout.qargs(wires))

    def _control_bits(self, controls: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        qubits, states = [], []
        lay = self.layout
        for w, v in controls:
            for b in range(lay.bits[w]):
                qubits.append(lay.offsets[w] + b)
                states.append((v >> b) & 1)
        return qubits, states

    def _append(self, gate: Any, targets: list[int], cq: list[int], cs: list[int]) -> None:
        if cq:
            state = sum(s << i for i, s in enumerate(cs))
            gate = gate.control(len(cq), ctrl_state=state)
        self.qc.append(gate, cq + targets)

    def _try_named(self, base: Gate, controls: list[tuple[int, int]]) -> bool:
        """Append ``base`` (with controls) as named Qiskit gates; False if it has no name."""
        lib, lay = self.lib, self.layout
        dims = self.circuit.wire_dims(base.wires)
        cq, cs = self._control_bits(controls)
        if isinstance(base, G._SubspaceRotation):
            self._subspace_rotation(base, cq, cs)
            return True
        if not all(d == 2 for d in dims):
            return False
        q = [lay.offsets[w] for w in base.wires]
        if isinstance(base, G.PhaseShift):
            phi = self.param(base.params[0])
            self._with_controls(cq, cs, lambda ctl: self._mc_phase(phi, q[0], ctl))
            return True
        if isinstance(base, G.U3):
            th, ph, lam = (self.param(p) for p in base.params)

            def u3(ctl: list[int]) -> None:  # U3 = P(φ) · RY(θ) · P(λ), exactly
                self._mc_phase(lam, q[0], ctl)
                self._mc_rot("y", th, q[0], ctl)
                self._mc_phase(ph, q[0], ctl)

            self._with_controls(cq, cs, u3)
            return True
        named = self._named.get(type(base))
        if named is None and type(base) in (G.Shift, G.Clock, G.Fourier):
            fallback: dict[type, Any] = {
                G.Shift: lib.XGate,
                G.Clock: lib.ZGate,
                G.Fourier: lib.HGate,
            }
            named = fallback[type(base)]
        if named is not None:
            self._append(named(), q, cq, cs)
            return True
        if type(base) is G.SWAP:
            self._append(lib.SwapGate(), q, cq, cs)
            return True
        if type(base) in (G.Add, G.CNOT):  # control q[0], target q[1]
            self._append(lib.XGate(), [q[1]], [*cq, q[0]], [*cs, 1])
            return True
        return False

    # Parametrised gates are built from single-qubit rx/ry/rz/p and (multi-)CX only (see the
    # module docstring: Aer's cry/crx/crz/cp/mcphase are bound wrongly by parameter_binds).
    def _with_controls(self, cq: list[int], cs: list[int], body: Any) -> None:
        """Run ``body(controls)`` with controls that must be 0 flipped to 1 around it."""
        flip = [q for q, s in zip(cq, cs, strict=True) if s == 0]
        for q in flip:
            self.qc.x(q)
        body(cq)
        for q in flip:
            self.qc.x(q)

    def _mc_rot(self, axis: str, theta: Any, target: int, ctl: list[int]) -> None:
        """``R_axis(θ)`` on ``target`` when every qubit of ``ctl`` is 1."""
        qc = self.qc
        if not ctl:
            {"x": qc.rx, "y": qc.ry, "z": qc.rz}[axis](theta, target)
        elif axis == "x":  # RX = H RZ H
            qc.h(target)
            self._mc_rot("z", theta, target, ctl)
            qc.h(target)
        else:  # X R(-θ/2) X = R(θ/2) for R = RY, RZ
            getattr(qc, "r" + axis)(theta / 2, target)
            qc.mcx(ctl, target)
            getattr(qc, "r" + axis)(-theta / 2, target)
            qc.mcx(ctl, target)

    def _mc_phase(self, phi: Any, target: int, ctl: list[int]) -> None:
        """``P(φ)`` on ``target`` when every qubit of ``ctl`` is 1 (``P(φ) = e^{iφ/2} RZ(φ)``)."""
        if not ctl:
            self.qc.p(phi, target)
            return
        self._mc_rot("z", phi, target, ctl)
        self._mc_phase(phi / 2, ctl[-1], ctl[:-1])

    def _subspace_rotation(self, rot: G._SubspaceRotation, cq: list[int], cs: list[int]) -> None:
        lay = self.layout
        (w,) = rot.wires
        j, k = rot.subspace
        diff = j ^ k
        p = diff.bit_length() - 1  # j has 0 at bit p, k has 1
        others = [b for b in range(lay.bits[w]) if b != p]
        cx_targets = [b for b in others if (diff >> b) & 1]
        off = lay.offsets[w]
        for b in cx_targets:
            self.qc.cx(off + p, off + b)
        inner_q = [off + b for b in others]
        inner_s = [(j >> b) & 1 for b in others]
        theta = self.param(rot.params[0])
        self._with_controls(
            inner_q + cq, inner_s + cs, lambda ctl: self._mc_rot(rot._pauli, theta, off + p, ctl)
        )
        for b in reversed(cx_targets):
            self.qc.cx(off + p, off + b)

    # -- channels ---------------------------------------------------------------------
    def add_channel(self, op: Channel) -> None:
        if any(isinstance(p, Parameter) for p in op.params):
            raise _Unsupported(op.name)
        from qiskit.quantum_info import Kraus

        dims = self.circuit.wire_dims(op.wires)
        params = [resolve_param(p, None, dtype=torch.float64, device="cpu") for p in op.params]
        ks = op.kraus(params, dims, dtype=torch.complex128).detach().cpu().numpy()
        wires = list(op.wires)
        emb = [self.layout.embed(k, wires, 0.0) for k in ks]
        emb = [k for k in emb if np.linalg.norm(k) > _KRAUS_DROP] or emb[:1]
        if any(self.layout.leaky(w) for w in wires):
            m = emb[0].shape[0]
            leak = np.eye(m, dtype=np.complex128)
            idx = self.layout.valid_indices(wires)
            leak[idx, idx] = 0
            emb.append(leak)
        self.qc.append(Kraus(emb), self.layout.qargs(wires))


def to_qiskit(circuit: Circuit) -> tuple[Any, dict[str, Any]]:
    """The ``QuantumCircuit`` of ``circuit`` and the map qsem name -> Qiskit ``Parameter``
    (or ``ParameterVector``).

    Qubit wire ``w`` of an ``n``-wire qubit circuit is Qiskit qubit ``n - 1 - w`` (Qiskit is
    little-endian), so ``Statevector(qc)`` equals qsem's state vector index for index.
    Channels become ``kraus`` instructions. A symbolic channel, or a symbolic gate of a
    user's own class, cannot be exported: bind it first. A circuit with qudit wires
    records its encoding in ``qc.metadata["qsem"]`` (:mod:`qsem.circuits.qiskit_qudits`),
    from which :func:`~qsem.circuits.qiskit_import.from_qiskit` restores it.
    """
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    for op in circuit.ops:
        if op.batch_size() is not None or any(
            isinstance(p, torch.Tensor) and p.dim() > 0 for p in op.params
        ):
            raise arg_error(
                "circuit",
                f"{op.name} on wires {list(op.wires)} holds a batched value; a Qiskit circuit "
                "takes one value per gate (use symbolic Parameters)",
            )
    conv = _Converter(circuit)
    spans = []
    try:
        for op in circuit.ops:
            start = len(conv.qc.data)
            conv.add(op)
            spans.append((op, start, len(conv.qc.data)))
    except _Unsupported as exc:
        raise arg_error(
            "circuit", f"{exc} has symbolic parameters Qiskit cannot hold; bind them first"
        ) from None
    if any(d != 2 for d in circuit.dims):  # which qubits encode which qudit (qiskit_qudits)
        from .qiskit_qudits import record

        conv.qc.metadata = {"qsem": record(circuit, conv.qc, spans, conv.params)}
    return conv.qc, dict(conv.params)
