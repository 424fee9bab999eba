"""qsem circuits as PennyLane operations (the export direction of the PennyLane map).

One home of the export operation map used by :meth:`Circuit.to_pennylane
<qsem.circuits.Circuit.to_pennylane>` and by the PennyLane backend
(:mod:`qsem.simulators.pennylane_backend`). Wire ``w`` is PennyLane wire ``w``;
both put wire 0 first (most significant), so no reordering is needed.

Operation map (PennyLane's own operations, so the comparison with the torch
engine is an independent check of qsem's matrices):

* qubits: ``RX RY RZ PhaseShift U3 X Y Z H S T CNOT CZ CRX CRY CRZ SWAP CSWAP
  Toffoli`` by name; ``Controlled`` -> ``qml.ctrl`` with explicit
  ``control_values`` (on ``default.mixed``, which cannot decompose broadcast
  multi-controlled rotations, with two or more controls it enters as
  ``QubitUnitary`` of ``qml.matrix`` of that ``qml.ctrl`` operation);
  ``Unitary`` -> ``QubitUnitary``; ``Adjoint`` -> ``qml.adjoint``; qudit names on
  d = 2 (``Shift``, ``Clock``, ``Fourier``, ``Add``) -> ``PauliX``, ``PauliZ``,
  ``Hadamard``, ``CNOT``.
* qutrits: ``TShift TClock TAdd TSWAP`` and ``TRX/TRY/TRZ`` (same ``subspace``
  convention) by name; ``PennyLaneTHadamard`` (PennyLane's matrix and ``subspace``)
  -> ``THadamard``; qsem's ``THadamard`` (= ``Fourier``) -> ``THadamard`` too, which
  is ``-i`` times the Fourier matrix (a global phase; inside ``Controlled`` the
  matrix is corrected by ``i``); ``Unitary`` -> ``QutritUnitary``; ``Controlled`` ->
  ``ControlledQutritUnitary`` with the base's PennyLane matrix and the control
  values as a ternary string.
* channels: qubit ``Depolarizing(p)`` -> ``DepolarizingChannel(3p/4)``,
  ``AmplitudeDamping``, ``BitFlip``, ``PhaseDamping`` -> the same names,
  ``Kraus`` -> ``QubitChannel``; qutrit ``Depolarizing(p)`` ->
  ``QutritDepolarizingChannel(8p/9)`` (PennyLane's Kraus operators give
  ``ρ -> (1 - 9q/8) ρ + (9q/8) I/3``), ``AmplitudeDamping(γ1, γ2)`` ->
  ``QutritAmplitudeDamping(γ1, 0, γ2)``, ``TritFlip`` -> ``TritFlip``, ``Kraus`` ->
  ``QutritChannel``.

A gate of another class (a user's own ``Gate`` subclass) enters as
``QubitUnitary``/``QutritUnitary`` of qsem's matrix (broadcast over rows).

The import direction (``Circuit.from_pennylane``, the ``qsem`` PennyLane device) is
:mod:`qsem.circuits.pennylane_import`.

>>> import pennylane as qml
>>> from qsem.circuits import Circuit, RY, CNOT
>>> c = Circuit.qubits(2).add(RY(0.4, wires=0), CNOT(wires=[0, 1]))
>>> dev = qml.device("default.qubit", wires=2)
>>> probs = qml.QNode(c.to_pennylane(lambda: qml.probs(wires=[0, 1])), dev)()
>>> round(float(probs[3]), 4)
0.0395
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import channels as CH
from . import gates as G
from .circuit import Circuit
from .errors import MissingDependencyError, QsemTypeError, arg_error
from .operations import Adjoint, Channel, Gate
from .parameters import Parameter, resolve_param

__all__ = ["PennyLaneOps", "require_pennylane", "to_pennylane"]


def require_pennylane() -> Any:
    """``pennylane``, or a one-line error naming the extra ``qsem[pennylane]``."""
    try:
        import pennylane as qml
    except ImportError as exc:
        raise MissingDependencyError(
            f"PennyLane interop needs pennylane ({exc}); install it with "
            "pip install 'qsem[pennylane]'"
        ) from None
    return qml


class PennyLaneOps:
    """Builds PennyLane operations for the gates and channels of a qsem circuit.

    ``wire_dim`` is 2 (qubit ops) or 3 (qutrit ops); ``device`` names the target device
    (``default.mixed`` applies multi-controlled gates as matrices) for messages.
    Parameter values come from ``cols`` (name -> number or array of rows).
    """

    def __init__(self, qml: Any, wire_dim: int, device: str = "default.qubit") -> None:
        self.qml = qml
        self.wire_dim = wire_dim
        self.device = device

    def _param(self, p: Any, cols: dict[str, Any]) -> Any:
        if isinstance(p, Parameter):
            if p.name not in cols:
                raise arg_error("params", f"no value for symbolic parameter {p.name!r}")
            v = cols[p.name]
            if p.index is not None:
                v = v[..., p.index]
            return v * p.scale if p.scale != 1.0 else v
        return float(resolve_param(p, None, dtype=torch.float64, device="cpu"))

    def ops(self, circuit: Circuit, cols: dict[str, np.ndarray]) -> list[Any]:
        qml = self.qml
        out: list[Any] = []
        with qml.QueuingManager.stop_recording():
            for op in circuit.ops:
                if isinstance(op, Channel):
                    out.append(self._channel(op, circuit, cols))
                elif isinstance(op, G.Gate) and not isinstance(op, G.Identity):
                    out.append(self._gate(op, circuit, cols))
        return out

    def _gate(self, op: Gate, circuit: Circuit, cols: dict[str, np.ndarray]) -> Any:
        if self.wire_dim == 2:
            return self._qubit_gate(op, circuit, cols)
        return self._qutrit_gate(op, circuit, cols)

    def _qubit_gate(self, op: Gate, circuit: Circuit, cols: dict[str, np.ndarray]) -> Any:
        qml = self.qml
        w = list(op.wires)
        t = type(op)
        par = [self._param(p, cols) for p in op.params]
        rot = {G.RX: qml.RX, G.RY: qml.RY, G.RZ: qml.RZ, G.CRX: qml.CRX, G.CRY: qml.CRY,
               G.CRZ: qml.CRZ, G.PhaseShift: qml.PhaseShift}  # fmt: skip
        if t in rot:
            return rot[t](par[0], wires=w)
        if t is G.U3:
            return qml.U3(*par, wires=w)
        fixed = {G.X: qml.PauliX, G.Shift: qml.PauliX, G.Y: qml.PauliY, G.Z: qml.PauliZ,
                 G.Clock: qml.PauliZ, G.H: qml.Hadamard, G.Fourier: qml.Hadamard, G.S: qml.S,
                 G.T: qml.T, G.CNOT: qml.CNOT, G.Add: qml.CNOT, G.SWAP: qml.SWAP, G.CZ: qml.CZ,
                 G.CSWAP: qml.CSWAP, G.Toffoli: qml.Toffoli}  # fmt: skip
        if t in fixed:
            return fixed[t](wires=w)
        if isinstance(op, G._SubspaceRotation):  # subspace (0, 1) of a qubit
            cls = {"x": qml.RX, "y": qml.RY, "z": qml.RZ}[op._pauli]
            return cls(par[0], wires=w)
        if isinstance(op, G.Unitary):
            return qml.QubitUnitary(op.unitary.detach().cpu().numpy(), wires=w)
        if isinstance(op, G.Controlled):
            base = self._qubit_gate(op.base, circuit, cols)
            ctrl = qml.ctrl(
                base, control=list(op.control_wires), control_values=list(op.control_values)
            )
            if self.device == "default.mixed" and len(op.control_wires) > 1:
                # default.mixed cannot decompose multi-controlled broadcast rotations:
                # apply PennyLane's own (broadcast) matrix of the controlled operation
                return qml.QubitUnitary(qml.matrix(ctrl, wire_order=w), wires=w)
            return ctrl
        if isinstance(op, Adjoint):
            return qml.adjoint(self._qubit_gate(op.base, circuit, cols))
        return qml.QubitUnitary(self._qsem_matrix(op, circuit, cols), wires=w)

    def _qutrit_gate(self, op: Gate, circuit: Circuit, cols: dict[str, np.ndarray]) -> Any:
        qml = self.qml
        w = list(op.wires)
        t = type(op)
        if isinstance(op, G._SubspaceRotation):
            cls = {"x": qml.TRX, "y": qml.TRY, "z": qml.TRZ}[op._pauli]
            return cls(self._param(op.params[0], cols), wires=w, subspace=op.subspace)
        if isinstance(op, G.PennyLaneTHadamard):
            return qml.THadamard(wires=w, subspace=op.subspace)
        fixed = {G.Shift: qml.TShift, G.Clock: qml.TClock, G.Fourier: qml.THadamard,
                 G.Add: qml.TAdd, G.SWAP: qml.TSWAP}  # fmt: skip
        if t in fixed:
            return fixed[t](wires=w)
        if isinstance(op, G.Unitary):
            return qml.QutritUnitary(op.unitary.detach().cpu().numpy(), wires=w)
        if isinstance(op, G.Controlled):
            base = op.base
            return qml.ControlledQutritUnitary(
                self._qutrit_matrix(base, circuit, cols),
                control_wires=list(op.control_wires),
                wires=list(base.wires),
                control_values="".join(str(v) for v in op.control_values),
            )
        if isinstance(op, Adjoint):
            return qml.adjoint(self._qutrit_gate(op.base, circuit, cols))
        return qml.QutritUnitary(self._qsem_matrix(op, circuit, cols), wires=w)

    def _qutrit_matrix(self, op: Gate, circuit: Circuit, cols: dict[str, np.ndarray]) -> Any:
        """The exact matrix of ``op`` from PennyLane's operations (the phase matters once
        controlled: PennyLane's ``THadamard`` is ``-i`` times qsem's Fourier gate)."""
        if type(op) is G.Fourier:
            return 1j * self.qml.THadamard.compute_matrix()
        if isinstance(op, Adjoint):
            return np.conj(np.swapaxes(self._qutrit_matrix(op.base, circuit, cols), -1, -2))
        return self.qml.matrix(self._qutrit_gate(op, circuit, cols), wire_order=list(op.wires))

    def _qsem_matrix(self, op: Gate, circuit: Circuit, cols: dict[str, np.ndarray]) -> np.ndarray:
        """qsem's own matrix of a gate PennyLane has no name for (broadcast over rows)."""
        params = [torch.as_tensor(np.asarray(self._param(p, cols))) for p in op.params]
        mat = op.matrix(params, circuit.wire_dims(op.wires), dtype=torch.complex128)
        return mat.detach().cpu().numpy()

    def _channel(self, op: Channel, circuit: Circuit, cols: dict[str, np.ndarray]) -> Any:
        qml = self.qml
        w = list(op.wires)
        par = [self._param(p, cols) for p in op.params]
        t = type(op)
        if self.wire_dim == 2:
            if t is CH.Depolarizing:
                return qml.DepolarizingChannel(par[0] * 0.75, wires=w)
            if t is CH.AmplitudeDamping:
                return qml.AmplitudeDamping(par[0], wires=w)
            if t is CH.BitFlip:
                return qml.BitFlip(par[0], wires=w)
            if t is CH.PhaseDamping:
                return qml.PhaseDamping(par[0], wires=w)
            make = qml.QubitChannel
        else:
            if t is CH.Depolarizing:
                return qml.QutritDepolarizingChannel(par[0] * 8 / 9, wires=w)
            if t is CH.AmplitudeDamping:
                return qml.QutritAmplitudeDamping(par[0], 0.0, par[1], wires=w)
            if t is CH.TritFlip:
                return qml.TritFlip(*par, wires=w)
            make = qml.QutritChannel
        if any(isinstance(p, Parameter) for p in op.params):
            raise arg_error(
                "circuit",
                f"{op.name} with symbolic parameters has no PennyLane channel on "
                f"{self.device!r}; bind its parameters first",
            )
        if isinstance(op, CH.Kraus):
            ks = op.operators.detach().cpu().numpy()
        else:
            params = [resolve_param(p, None, dtype=torch.float64, device="cpu") for p in op.params]
            ks = op.kraus(params, circuit.wire_dims(w), dtype=torch.complex128).numpy()
        return make(list(ks), wires=w)


def to_pennylane(circuit: Circuit, measure: Callable[[], Any] | None = None) -> Callable[..., Any]:
    """A quantum function ``qfunc(**params)`` that applies ``circuit``'s operations.

    Symbolic parameters are keyword arguments (a ``ParameterVector`` takes its whole
    array, ``(K,)`` or broadcast ``(B, K)``); torch or autograd arrays keep their
    gradients. ``qfunc`` returns ``measure()`` when ``measure`` is given, so
    ``qml.QNode(circuit.to_pennylane(lambda: qml.state()), dev)`` is a QNode.
    Qubit circuits use qubit operations, qutrit circuits PennyLane's qutrit operations;
    mixed qubit/qutrit circuits have no PennyLane form.
    """
    qml = require_pennylane()
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    kinds = set(circuit.dims)
    if len(kinds) != 1 or kinds - {2, 3}:
        raise arg_error(
            "circuit",
            f"PennyLane has qubit and qutrit operations only, not wire dims {list(circuit.dims)}",
        )
    if measure is not None and not callable(measure):
        raise arg_error("measure", f"expected a function, got {type(measure).__name__}")
    builder = PennyLaneOps(qml, kinds.pop(), "default.mixed")
    names = set(circuit.parameters)

    def qfunc(**params: Any) -> Any:
        missing = sorted(names - set(params))
        unknown = sorted(set(params) - names)
        if missing or unknown:
            raise arg_error(
                "params", f"missing values for {missing}" if missing else f"unknown {unknown}"
            )
        for op in builder.ops(circuit, params):
            qml.apply(op)
        return None if measure is None else measure()

    qfunc.__name__ = "qsem_circuit"
    return qfunc
