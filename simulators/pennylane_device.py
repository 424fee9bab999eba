"""``qml.device("qsem", wires=..., shots=...)``: qsem's torch engine as a PennyLane device.

Registered through PennyLane's ``pennylane.plugins`` entry point (installed with
qsem's ``pennylane`` extra). Built on PennyLane's :class:`pennylane.devices.Device`:

* **preprocess**: wires are validated; operations qsem has no form for are decomposed
  by PennyLane until each is a named qsem gate (qubit gates, every qutrit
  operation), a channel, a state preparation at the start, or an operation with a
  matrix on at most three wires; anything left is refused in one line naming it.
* **execute**: the tape becomes one qsem :class:`~qsem.circuits.Circuit`
  (:func:`qsem.circuits.pennylane_import.add_pennylane_ops`, the one operation map);
  PennyLane wire labels map to qsem wires in the device's wire order (both put wire 0
  first). A wire's dimension comes from the operations on it (qubit ops 2, qutrit ops
  3; :func:`~qsem.circuits.pennylane_import.tape_wire_dims`), so qubit, qutrit and
  mixed qubit/qutrit circuits run. Statevector simulation unless the tape holds a
  channel (then density matrix; ``method=`` forces one). Broadcast parameters are
  qsem's batch axis: one engine call per tape, whatever the batch size.
* **derivatives**: ``diff_method="backprop"`` with the torch interface (autograd
  through the engine; ``qml.qnn.TorchLayer`` trains on it); ``"adjoint"``: qsem's
  adjoint method (statevector, ``expval`` only, no shots; PennyLane refuses other
  tapes); ``"device"``: the adjoint where it is valid, else the Jacobian by torch
  autograd through the engine (:mod:`qsem.simulators.pennylane_derivatives`);
  ``"parameter-shift"`` and PennyLane's other transforms work as on any device.
  ``"best"`` picks backprop for torch, else ``"device"``. Tapes that differ only in
  their parameter values (shifted tapes, the rows of a broadcast tape PennyLane splits
  for device derivatives) run as one batched engine call.
* **shots**: seeded by ``seed=`` (a torch generator owned by the device): a device
  built with the same seed reproduces the same samples.

>>> import pennylane as qml
>>> dev = qml.device("qsem", wires=2)
>>> @qml.qnode(dev)
... def bell():
...     qml.Hadamard(0)
...     qml.CNOT([0, 1])
...     return qml.probs(wires=[0, 1])
>>> [round(float(p), 3) for p in bell()]
[0.5, 0.0, 0.0, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pennylane as qml
import torch
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.preprocess import (
    decompose,
    validate_device_wires,
    validate_measurements,
)
from pennylane.transforms.core import CompilePipeline

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import arg_error
from qsem.circuits.pennylane_import import (
    PENNYLANE_GATES,
    QUTRIT_NAMES,
    STATE_PREPS,
    add_pennylane_ops,
    is_controlled_op,
    tape_wire_dims,
)

from .engine import TorchSimulator
from .pennylane_derivatives import (
    adjoint_refusal,
    adjoint_stop,
    device_derivatives,
    device_vjps,
    row_key,
    stack_rows,
)
from .pennylane_measure import measure_all_exact, measure_shots, result_row, to_numpy, uses_torch
from .pennylane_prep import Prepared, TapeConverter
from .pennylane_readout import Readout, readout_confusion, warn_state_readout

__all__ = ["QsemDevice"]

_NAMED = set(PENNYLANE_GATES) | QUTRIT_NAMES | {"QubitUnitary", "Identity", "Barrier", "Snapshot",
    "GlobalPhase", "DepolarizingChannel", "AmplitudeDamping", "PhaseDamping", "BitFlip",
    "QubitChannel", "ResetError", "PauliError", "GeneralizedAmplitudeDamping",
    "ThermalRelaxationError"}  # fmt: skip
_METHODS = ("auto", "statevector", "density_matrix")


def supported_operation(op: qml.operation.Operator) -> bool:
    """Whether qsem runs ``op`` as it is (else PennyLane decomposes it)."""
    if op.name in _NAMED:
        return True
    if isinstance(op, qml.operation.Channel):
        return True
    if is_controlled_op(op) and supported_operation(op.base):
        return True  # qsem controls any gate, qutrit targets included
    return op.has_matrix and len(op.wires) <= 3 and op.name not in STATE_PREPS


def _accepted_sample(m: Any) -> bool:
    return isinstance(m, qml.measurements.SampleMeasurement)


class QsemDevice(Device):
    """qsem's batched torch engine behind PennyLane's device API.

    Args:
        wires: number of wires or their labels (``None``: the tape's wires).
        shots: ``None`` (exact) or a number of shots (PennyLane prefers ``qml.set_shots``).
        seed: seed of the device's sample generator (``None``: 0, so runs reproduce).
        c_dtype: ``torch.complex128`` (default) or ``torch.complex64`` (or NumPy's).
        method: ``"auto"`` (density matrix only for tapes with channels),
            ``"statevector"`` or ``"density_matrix"``.
        readout_relaxation_probs: ``[γ10, γ20, γ21]``: a ``QutritAmplitudeDamping`` on
            each measured qutrit wire at readout, as on ``default.qutrit.mixed``.
        readout_misclassification_probs: ``[p01, p02, p12]``: a ``TritFlip`` there
            (after the relaxation); see :mod:`qsem.simulators.pennylane_readout`.

    ``last_method`` holds the simulation method of the last tape run (also shown by
    ``repr`` and recorded as ``method`` by ``qml.Tracker``); ``engine_calls`` counts
    engine runs (one per tape, broadcast included); ``adjoint_sweeps`` counts the backward
    sweeps of the adjoint method; ``tape_conversions`` counts the qsem circuits built from
    tapes (a tape of named gates is converted once per structure, then only rebound).
    """

    _device_options = ("method",)
    #: the ``diff_method`` names the device differentiates itself (besides backprop)
    DEVICE_DERIVATIVES: ClassVar[tuple[str, ...]] = ("device", "adjoint")

    @property
    def name(self) -> str:
        """``"qsem"``, then ``"qsem (statevector)"`` / ``"qsem (density_matrix)"`` once
        PennyLane has set the device up for a circuit (what ``qml.specs`` prints as
        ``Device:``): the simulation method :meth:`simulation_method` chose for it."""
        return "qsem" if self.planned_method is None else f"qsem ({self.planned_method})"

    def __init__(
        self,
        wires: Any = None,
        shots: Any = None,
        seed: int | None = None,
        c_dtype: Any = torch.complex128,
        method: str = "auto",
        readout_relaxation_probs: Sequence[float] | None = None,
        readout_misclassification_probs: Sequence[float] | None = None,
    ) -> None:
        super().__init__(wires=wires, shots=shots)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise arg_error("seed", f"must be an integer or None, got {seed!r}")
        dtypes = {np.complex128: torch.complex128, np.complex64: torch.complex64}
        dtype = dtypes.get(c_dtype, c_dtype) if not isinstance(c_dtype, torch.dtype) else c_dtype
        if dtype not in (torch.complex64, torch.complex128):
            raise arg_error("c_dtype", f"must be complex64 or complex128, got {c_dtype!r}")
        if method not in _METHODS:
            raise arg_error("method", f"must be one of {list(_METHODS)}, got {method!r}")
        self.seed = 0 if seed is None else int(seed)
        self._rng = torch.Generator().manual_seed(self.seed)
        self.c_dtype = dtype
        self._method = method
        self.readout_confusion = readout_confusion(
            readout_relaxation_probs, readout_misclassification_probs
        )
        self._sims: dict[str, TorchSimulator] = {}
        self._converter = TapeConverter(dtype)
        self.last_method: str | None = None
        self.planned_method: str | None = None
        self.engine_calls = 0
        self.adjoint_sweeps = 0

    @property
    def tape_conversions(self) -> int:
        """How many qsem circuits the device has built from tapes (see the class doc)."""
        return self._converter.conversions

    def __repr__(self) -> str:
        wires = "None" if self.wires is None else len(self.wires)
        last = f", last run: {self.last_method}" if self.last_method else ""
        readout = ", readout errors" if self.readout_confusion is not None else ""
        if self.planned_method and self.planned_method != self.last_method:
            last += f", planned: {self.planned_method}"
        return (
            f"<QsemDevice(wires={wires}, shots={self.shots.total_shots}, "
            f"method={self._method!r}{last}, dtype={self.c_dtype}{readout})>"
        )

    # -- configuration ------------------------------------------------------------------
    def supports_derivatives(
        self, execution_config: ExecutionConfig | None = None, circuit: Any = None
    ) -> bool:
        """Analytic first derivatives: ``"backprop"`` (torch interface), ``"device"``
        (qsem's adjoint where valid, else autograd through the engine), ``"adjoint"``
        (only where the adjoint method is valid: statevector, expval, no channels) and
        ``"best"``. Finite shots: none (PennyLane falls back to parameter shift for
        ``"best"``, refuses the others)."""
        if execution_config is None:
            return True
        if circuit is not None and circuit.shots:
            return False
        method = execution_config.gradient_method
        if method == "backprop":  # autograd runs in torch: other ML interfaces cannot see it
            return _interface(execution_config.interface) in ("torch", "auto", "numpy", "None")
        if method == "adjoint" and self.readout_confusion is not None:
            return False
        if method == "adjoint" and circuit is not None:
            sim = execution_config.device_options.get("method", self._method)
            if adjoint_refusal(circuit, sim, params=False) is not None:
                return False
        known = method == "best" or method in self.DEVICE_DERIVATIVES
        return known and execution_config.derivative_order == 1

    def setup_execution_config(
        self, config: ExecutionConfig | None = None, circuit: Any = None
    ) -> ExecutionConfig:
        config = config or ExecutionConfig()
        for option in config.device_options:
            if option not in self._device_options:
                raise arg_error("device_options", f"unknown option {option!r} for {self}")
        method = config.gradient_method
        if method == "best":
            method = "backprop" if _is_torch(config.interface) else "device"
        updated: dict[str, Any] = {"gradient_method": method}
        if config.use_device_gradient is None:
            updated["use_device_gradient"] = method in ("backprop", *self.DEVICE_DERIVATIVES)
        if config.grad_on_execution is None:
            # "adjoint": the sweep's forward pass gives the values, so the Jacobian comes with
            # the execution (one engine run, as lightning.qubit does); device VJPs run later
            updated["grad_on_execution"] = (
                method == "adjoint" and not config.use_device_jacobian_product
            )
        options = dict(config.device_options)
        options.setdefault("method", self._method)
        updated["device_options"] = options
        if circuit is not None:
            self.planned_method = self.simulation_method(circuit, options["method"])
        updated["convert_to_numpy"] = method != "backprop"
        return replace(config, **updated)

    def simulation_method(self, tape: Any, method: str | None = None) -> str:
        """The simulation method for ``tape``: ``method`` (default: the device's) unless
        ``"auto"``, then density matrix for a tape with channels, else statevector."""
        method = method or self._method
        if method != "auto":
            return method
        noisy = any(isinstance(op, qml.operation.Channel) for op in tape.operations)
        return "density_matrix" if noisy else "statevector"

    def preprocess_transforms(
        self, execution_config: ExecutionConfig | None = None
    ) -> CompilePipeline:
        program = CompilePipeline()
        program.add_transform(validate_device_wires, self.wires, name=self.name)
        program.add_transform(qml.defer_measurements, allow_postselect=False)
        program.add_transform(
            decompose, stopping_condition=supported_operation, name=self.name,
            skip_initial_state_prep=True,
        )  # fmt: skip
        program.add_transform(
            validate_measurements, sample_measurements=_accepted_sample, name=self.name
        )
        if self.readout_confusion is not None:
            program.add_transform(warn_state_readout)
        config = execution_config or ExecutionConfig()
        if config.gradient_method in self.DEVICE_DERIVATIVES:
            # trainable parameters as named-gate angles (Rot -> RZ RY RZ), for the adjoint
            program.add_transform(
                decompose, stopping_condition=adjoint_stop, name=self.name,
                skip_initial_state_prep=True,
            )  # fmt: skip
            # PennyLane's Jacobian products take scalar parameters: a broadcast tape with
            # trainable parameters is split into its rows (batched again when run)
            program.add_transform(_expand_trainable_broadcast)
        return program

    # -- execution ----------------------------------------------------------------------
    def execute(self, circuits: Any, execution_config: ExecutionConfig | None = None) -> Any:
        config = execution_config or ExecutionConfig()
        method = config.device_options.get("method", self._method)
        single = isinstance(circuits, qml.tape.QuantumScript)
        batch = [circuits] if single else circuits
        results = self._run_rows(batch, method)
        return results[0] if single else tuple(results)

    def _run_rows(self, tapes: Sequence[Any], method: str) -> list[Any]:
        """Results of ``tapes``; analytic NumPy tapes that differ only in their parameter
        values (parameter-shift's shifted tapes, ``broadcast_expand``'s rows) run as the
        rows of ONE broadcast engine call."""
        groups: dict[Any, list[int]] = {}
        for k, tape in enumerate(tapes):
            key = None if uses_torch(tape) else row_key(tape)
            groups.setdefault(("single", k) if key is None else key, []).append(k)
        out: list[Any] = [None] * len(tapes)
        for members in groups.values():
            if len(members) == 1:
                out[members[0]] = self.run_tape(tapes[members[0]], method)
                continue
            res = self.run_tape(stack_rows([tapes[k] for k in members]), method)
            several = len(tapes[members[0]].measurements) > 1
            for g, k in enumerate(members):
                out[k] = tuple(result_row(r, g) for r in res) if several else result_row(res, g)
        return out

    def simulator(self, mode: str) -> TorchSimulator:
        """The device's engine for ``mode`` (kept, so plans are cached across calls)."""
        sim = self._sims.get(mode)
        if sim is None:
            sim = self._sims[mode] = TorchSimulator(mode, dtype=self.c_dtype)
        return sim

    def prepare(self, tape: Any, method: str, bind: bool = True) -> Prepared:
        """The qsem circuit, bindings, initial state and simulation mode of ``tape``
        (:class:`~qsem.simulators.pennylane_prep.TapeConverter`; ``bind=False`` leaves
        a symbolic circuit's angles to the caller)."""
        return self._converter.prepare(tape, self._labels(tape), method, bind)

    def _labels(self, tape: Any) -> list[Any]:
        return list(self.wires) if self.wires is not None else list(tape.wires)

    def wire_dims(self, tape: Any) -> list[int]:
        """The dimension of each device wire (label order) for ``tape``."""
        return tape_wire_dims(tape, self._labels(tape))

    def record_run(self, mode: str, tape: Any) -> None:
        """Count one engine run of ``tape`` in ``mode`` (``last_method``, ``qml.Tracker``)."""
        self.last_method = mode
        self.engine_calls += 1
        if self.tracker.active:  # qml.Tracker(dev): the method of each simulation
            self.tracker.update(simulations=1, method=mode, batch_size=tape.batch_size or 1)
            self.tracker.record()

    def run_tape(self, tape: Any, method: str) -> Any:
        """The results of ``tape`` (one engine run; torch results keep autograd)."""
        prep = self.prepare(tape, method)
        state = self.simulator(prep.mode).run(prep.circuit, prep.params, initial_state=prep.initial)
        self.record_run(prep.mode, tape)
        index = prep.index
        torch_out = uses_torch(tape)
        readout = self._readout(prep)
        if not tape.shots:
            res = measure_all_exact(list(tape.measurements), state, index, prep.phase, readout)
            res = [r if torch_out else to_numpy(r) for r in res]
            return res[0] if len(res) == 1 else tuple(res)
        per_shot = []
        for s in tape.shots:
            vals = [
                measure_shots(mp, state, index, s, self._rng, readout) for mp in tape.measurements
            ]
            per_shot.append(vals[0] if len(vals) == 1 else tuple(vals))
        return per_shot[0] if len(per_shot) == 1 else tuple(per_shot)

    def _readout(self, prep: Prepared) -> Readout | None:
        """The device's readout errors on the register of ``prep`` (``None``: none)."""
        if self.readout_confusion is None:
            return None
        labels = list(prep.index)

        def rotate(state: Any, ops: Any) -> Any:
            circuit = add_pennylane_ops(Circuit(list(prep.dims)), ops, labels)
            return self.simulator(state.mode).run(circuit, None, initial_state=state.tensor)

        return Readout(self.readout_confusion, prep.dims, rotate)

    # -- device derivatives ----------------------------------------------------------------
    def _derivative_options(
        self, execution_config: ExecutionConfig | None
    ) -> tuple[str, bool, bool]:
        """(simulation method, use the adjoint, refuse what the adjoint cannot run): the
        adjoint for ``"device"`` / ``"adjoint"`` without readout errors, strict for
        ``"adjoint"``."""
        config = execution_config or ExecutionConfig(gradient_method="device")
        method = config.device_options.get("method", self._method)
        adjoint = config.gradient_method in ("device", "adjoint")
        adjoint = adjoint and self.readout_confusion is None
        return method, adjoint, config.gradient_method == "adjoint"

    def compute_derivatives(
        self, circuits: Any, execution_config: ExecutionConfig | None = None
    ) -> Any:
        return self.execute_and_compute_derivatives(circuits, execution_config)[1]

    def execute_and_compute_derivatives(
        self, circuits: Any, execution_config: ExecutionConfig | None = None
    ) -> Any:
        """Results and Jacobians of the tapes: qsem's adjoint method where it is valid
        (``diff_method`` ``"device"``, ``"adjoint"``, ``"best"``), else torch autograd
        through the engine (:mod:`qsem.simulators.pennylane_derivatives`)."""
        method, adjoint, strict = self._derivative_options(execution_config)
        single = isinstance(circuits, qml.tape.QuantumScript)
        batch = [circuits] if single else circuits
        if self.tracker.active:
            self.tracker.update(derivative_batches=1, derivatives=len(batch))
            self.tracker.record()
        pairs = device_derivatives(self, batch, method, adjoint, strict)
        results = tuple(r for r, _ in pairs)
        jacs = tuple(j for _, j in pairs)
        return (results[0], jacs[0]) if single else (results, jacs)

    def supports_vjp(
        self, execution_config: ExecutionConfig | None = None, circuit: Any = None
    ) -> bool:
        """``device_vjp=True`` with ``"adjoint"`` / ``"device"``: :meth:`compute_vjp`."""
        if execution_config is None:
            return True
        known = execution_config.gradient_method in self.DEVICE_DERIVATIVES
        return known and self.supports_derivatives(execution_config, circuit)

    def compute_vjp(
        self,
        circuits: Any,
        cotangents: Any,
        execution_config: ExecutionConfig | None = None,
    ) -> Any:
        """Vector-Jacobian products: one adjoint sweep for all same-structure tapes where
        the adjoint applies (:func:`~qsem.simulators.pennylane_derivatives.device_vjps`)."""
        method, adjoint, strict = self._derivative_options(execution_config)
        single = isinstance(circuits, qml.tape.QuantumScript)
        batch = [circuits] if single else circuits
        dys = [cotangents] if single else cotangents
        if self.tracker.active:
            self.tracker.update(vjp_batches=1, vjps=len(batch))
            self.tracker.record()
        vjps = device_vjps(self, batch, dys, method, adjoint, strict)
        return vjps[0] if single else tuple(vjps)


def _interface(interface: Any) -> str:
    return str(getattr(interface, "value", interface))


def _is_torch(interface: Any) -> bool:
    return _interface(interface) == "torch"


@qml.transform
def _expand_trainable_broadcast(tape: Any) -> tuple[Any, Any]:
    """``broadcast_expand`` for a broadcast tape with trainable parameters; others as is."""
    if tape.batch_size is None or not tape.trainable_params:
        return (tape,), _first
    return qml.transforms.broadcast_expand(tape)


def _first(results: Any) -> Any:
    return results[0]
