"""PennyLane devices behind the backend contract (:mod:`qsem.simulators.backend`).

A qsem :class:`~qsem.circuits.Circuit` becomes a QNode on one of five devices:

=========================  ======  ========  ===================================
device                     wires   channels  rows of ``values``
=========================  ======  ========  ===================================
``default.qubit``          d = 2   no        broadcast natively
``lightning.qubit``        d = 2   no        broadcast, split per row by PennyLane
``default.mixed``          d = 2   yes       broadcast natively
``default.qutrit``         d = 3   no        broadcast, split per row by PennyLane
``default.qutrit.mixed``   d = 3   yes       broadcast natively
=========================  ======  ========  ===================================

Every call is one QNode execution: symbolic parameters are passed as arrays of
``N`` values (PennyLane parameter broadcasting); devices without native
broadcasting get PennyLane's ``broadcast_expand`` (one tape per row, in the same
execution). A circuit without symbolic parameters runs once (exact) or ``N``
times from one seeded device (shots). Wire ``w`` of the circuit is PennyLane
wire ``w``; both put wire 0 first, so no reordering is needed.

Operations are built by :class:`qsem.circuits.pennylane_io.PennyLaneOps` (the
operation map, shared with ``Circuit.to_pennylane``: PennyLane's own operations,
so the comparison with the torch engine is an independent check of qsem's
matrices). Observables: ``PauliString`` -> products of ``PauliX/Y/Z``; qubit ``GellMann``
  1, 2, 3 -> ``X, Y, Z``; qutrit ``GellMann`` -> ``qml.GellMann``; ``Hermitian`` ->
  ``Hermitian`` / ``THermitian``.

Shots: expectation values are PennyLane's shot estimates (it rotates into each
observable's eigenbasis); probabilities are histograms of ``qml.sample``
(``default.qutrit.mixed`` has no shot-based ``qml.probs``). Seeds go to the
device (``seed=``); the legacy ``default.qutrit`` samples from NumPy's global
generator, which is seeded for the call and restored afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import MissingDependencyError, QsemTypeError, arg_error
from qsem.circuits.observables import GellMann, Hermitian, Observable, PauliString
from qsem.circuits.operations import Channel, normalize_wires
from qsem.circuits.pennylane_io import PennyLaneOps, require_pennylane

from .backend import Backend, check_job, check_observables, check_shots

__all__ = ["DEVICES", "PennyLaneBackend"]

#: device name -> (wire dimension, supports channels)
DEVICES: dict[str, tuple[int, bool]] = {
    "default.qubit": (2, False),
    "lightning.qubit": (2, False),
    "default.mixed": (2, True),
    "default.qutrit": (3, False),
    "default.qutrit.mixed": (3, True),
}
_LEGACY_GLOBAL_RNG = {"default.qutrit"}


_require_pennylane = require_pennylane


class PennyLaneBackend(Backend):
    """PennyLane devices behind the backend contract.

    Args:
        device: ``None`` (default) picks the device for each circuit by itself:
            ``default.qubit`` for qubit circuits, ``default.mixed`` for qubit circuits
            with channels, ``default.qutrit`` for qutrit circuits, ``default.qutrit.mixed``
            for qutrit circuits with channels. Or one of those or ``lightning.qubit``,
            used for every circuit. Mixed qubit/qutrit circuits (and other dimensions)
            have no PennyLane device: use the ``torch`` or ``aer`` backend.
        **device_options: passed to ``qml.device`` (not ``wires``, ``shots``, ``seed``).

    See the module docstring for the operation map and how rows are batched.

    >>> from qsem.circuits import Circuit, TShift
    >>> PennyLaneBackend().device_for(Circuit.qutrits(1).add(TShift(wires=0)))
    'default.qutrit'
    """

    name = "pennylane"

    def __init__(self, device: str | None = None, **device_options: Any) -> None:
        qml = _require_pennylane()
        if device is not None and (not isinstance(device, str) or device not in DEVICES):
            raise arg_error(
                "device", f"unknown PennyLane device {device!r}; expected one of {list(DEVICES)}"
            )
        if device == "lightning.qubit":
            try:
                import pennylane_lightning  # noqa: F401
            except ImportError:
                raise MissingDependencyError(
                    "argument 'device': lightning.qubit needs pennylane-lightning; install it "
                    "with pip install 'qsem[pennylane]'"
                ) from None
        bad = {"wires", "shots", "seed"} & set(device_options)
        if bad:
            raise arg_error("device_options", f"{sorted(bad)} are set per call by the backend")
        self.qml = qml
        self.device = device
        self.device_options = dict(device_options)

    def __repr__(self) -> str:
        return f"PennyLaneBackend(device={self.device or 'auto'!r})"

    def device_for(self, circuit: Circuit) -> str:
        """The device that runs ``circuit``: the one given, or the one picked for it."""
        if self.device is not None:
            return self.device
        dims = sorted(set(circuit.dims))
        if dims == [2]:
            return "default.mixed" if circuit.has_channels else "default.qubit"
        if dims == [3]:
            return "default.qutrit.mixed" if circuit.has_channels else "default.qutrit"
        what = "mixed qubit/qutrit circuits" if dims == [2, 3] else f"wire dimensions {dims}"
        raise arg_error(
            "circuit",
            f"PennyLane has no device for {what}; run it with backend='torch' (or 'aer')",
        )

    # -- validation -------------------------------------------------------------------
    def _check(
        self, circuit: Any, values: Any, names: Any, shots: Any
    ) -> tuple[Circuit, torch.Tensor, list[str], int | None, str]:
        if not isinstance(circuit, Circuit):
            raise arg_error(
                "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
            )
        circuit, values, names = check_job(circuit, values, names)
        device = self.device_for(circuit)
        d, channels = DEVICES[device]
        if any(x != d for x in circuit.dims):
            kind = "qubit" if d == 2 else "qutrit"
            mixed = len(set(circuit.dims)) > 1
            fix = (
                " (mixed qubit/qutrit circuits have no PennyLane device: use the torch "
                "or Aer backend)"
                if mixed
                else "; leave device unset and PennyLaneBackend() picks "
                + ("default.qutrit(.mixed)" if 3 in circuit.dims else "default.qubit")
            )
            raise arg_error(
                "circuit",
                f"device {device!r} simulates {kind}s (every wire of dimension {d}); the "
                f"circuit has wire dimensions {list(circuit.dims)}{fix}",
            )
        for op in circuit.ops:
            if isinstance(op, Channel) and not channels:
                mixed_dev = "default.mixed" if d == 2 else "default.qutrit.mixed"
                raise arg_error(
                    "circuit",
                    f"{op.name} on wires {list(op.wires)} is a channel; device {device!r} "
                    f"simulates pure states only (use device='{mixed_dev}', or leave it unset)",
                )
            if any(isinstance(p, torch.Tensor) and p.dim() > 0 for p in op.params) or (
                op.batch_size() is not None
            ):
                raise arg_error(
                    "circuit",
                    f"{op.name} on wires {list(op.wires)} holds a batched concrete value; "
                    "backends take one value per operation: batch through symbolic Parameters "
                    "and `values`",
                )
        return circuit, values, names, check_shots(shots), device

    # -- conversion -------------------------------------------------------------------
    def _ops(self, circuit: Circuit, cols: dict[str, np.ndarray], device: str) -> list[Any]:
        return PennyLaneOps(self.qml, DEVICES[device][0], device).ops(circuit, cols)

    def _observable(self, o: Observable, circuit: Circuit, wire_dim: int) -> Any:
        qml = self.qml
        dims = circuit.wire_dims(o.wires)
        w = list(o.wires)
        with qml.QueuingManager.stop_recording():
            if isinstance(o, PauliString):
                paulis = {"I": qml.Identity, "X": qml.PauliX, "Y": qml.PauliY, "Z": qml.PauliZ}
                factors = [paulis[p](wires=x) for p, x in zip(o.paulis, w, strict=True)]
                prod = factors[0] if len(factors) == 1 else qml.prod(*factors)
                return prod if o.coeff == 1.0 else qml.s_prod(o.coeff, prod)
            if isinstance(o, GellMann):
                if wire_dim == 3:
                    base = qml.GellMann(wires=w, index=o.index)
                else:
                    base = [qml.PauliX, qml.PauliY, qml.PauliZ][o.index - 1](wires=w)
                return base if o.coeff == 1.0 else qml.s_prod(o.coeff, base)
            mat = o.hmatrix if isinstance(o, Hermitian) else o.local_matrix(dims)
            if wire_dim == 3:
                return qml.THermitian(mat, wires=w)
            return qml.Hermitian(mat, wires=w)

    # -- execution --------------------------------------------------------------------
    def _run(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: list[str],
        shots: int | None,
        seed: int | None,
        measure: Any,
        device: str,
    ) -> list[Any]:
        """Run the QNode; returns one result per row (each a list of measurement results)."""
        qml = self.qml
        n = values.shape[0]
        vals = values.detach().to(torch.float64).cpu().numpy()
        col = {nm: j for j, nm in enumerate(names)}
        # one row: plain scalars (PennyLane drops a broadcast axis of size 1 on some devices)
        cols = {
            p: (vals[:, col[p]].copy() if n > 1 else vals[0, col[p]]) for p in circuit.parameters
        }
        ops = self._ops(circuit, cols, device)
        kwargs = dict(self.device_options)
        legacy = device in _LEGACY_GLOBAL_RNG
        if seed is not None and not legacy:
            kwargs["seed"] = int(seed)
        dev = qml.device(device, wires=circuit.num_wires, **kwargs)

        def qfunc() -> Any:
            for op in ops:
                qml.apply(op)
            return measure()

        qnode = qml.set_shots(qml.QNode(qfunc, dev), shots=shots)
        # the legacy device samples from NumPy's global generator: seed it, then restore it
        saved = np.random.get_state() if legacy and seed is not None else None  # noqa: NPY002
        if saved is not None:
            np.random.seed(int(seed))  # type: ignore[arg-type]  # noqa: NPY002
        try:
            if cols and n > 1:
                res = qnode()
                return [[np.asarray(m)[r] for m in res] for r in range(n)]
            if shots is None:
                res = [np.asarray(m) for m in qnode()]
                return [res] * n
            return [[np.asarray(m) for m in qnode()] for _ in range(n)]
        finally:
            if saved is not None:
                np.random.set_state(saved)  # noqa: NPY002

    # -- contract -----------------------------------------------------------------------
    def expval(self, circuit, values, names, observables, *, shots=None, seed=None):
        circuit, values, names, shots, device = self._check(circuit, values, names, shots)
        obs = check_observables(circuit, observables)
        pl_obs = [self._observable(o, circuit, DEVICES[device][0]) for o in obs]

        def measure() -> Any:
            return [self.qml.expval(o) for o in pl_obs]

        rows = self._run(circuit, values, names, shots, seed, measure, device)
        return torch.tensor(np.array([[float(m) for m in r] for r in rows]), dtype=torch.float64)

    def probs(self, circuit, values, names, wires, *, shots=None, seed=None):
        circuit, values, names, shots, device = self._check(circuit, values, names, shots)
        w = list(normalize_wires(wires, "wires"))
        bad = [x for x in w if x >= circuit.num_wires]
        if bad:
            raise arg_error("wires", f"wire(s) {bad} out of range for {circuit.num_wires} wires")
        dims = circuit.wire_dims(w)
        size = math.prod(dims)
        if shots is None:
            rows = self._run(
                circuit, values, names, None, None, lambda: [self.qml.probs(wires=w)], device
            )
            return torch.from_numpy(np.stack([np.asarray(r[0], dtype=np.float64) for r in rows]))
        rows = self._run(
            circuit, values, names, shots, seed, lambda: [self.qml.sample(wires=w)], device
        )
        out = np.zeros((len(rows), size))
        for i, r in enumerate(rows):
            s = np.asarray(r[0]).reshape(shots, len(w)).astype(np.int64)
            idx = np.ravel_multi_index(tuple(s.T), dims)
            out[i] = np.bincount(idx, minlength=size) / shots
        return torch.from_numpy(out)
