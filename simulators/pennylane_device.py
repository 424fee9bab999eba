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
  through the engine; ``qml.qnn.TorchLayer`` trains on it); ``diff_method="device"``
  (any interface): the Jacobian by torch autograd through the engine, computed by
  the device; ``"parameter-shift"`` and PennyLane's other transforms work as on any
  device. ``"best"`` picks backprop for torch, else device derivatives.
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
    angle_values,
    is_controlled_op,
    symbolic_circuit,
    symbolic_key,
    tape_wire_dims,
)

from .engine import TorchSimulator
from .pennylane_measure import measure_all_exact, measure_shots

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

    ``last_method`` holds the simulation method of the last tape run (also shown by
    ``repr`` and recorded as ``method`` by ``qml.Tracker``); ``engine_calls`` counts
    engine runs (one per tape, broadcast included).
    """

    _device_options = ("method",)
    #: device derivative methods: ``diff_method`` name -> method name on this class
    DERIVATIVES: ClassVar[dict[str, str]] = {"device": "_jacobian"}

    @property
    def name(self) -> str:
        return "qsem"

    def __init__(
        self,
        wires: Any = None,
        shots: Any = None,
        seed: int | None = None,
        c_dtype: Any = torch.complex128,
        method: str = "auto",
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
        self._sims: dict[str, TorchSimulator] = {}
        self._circuits: dict[Any, Circuit] = {}
        self.last_method: str | None = None
        self.engine_calls = 0

    def __repr__(self) -> str:
        wires = "None" if self.wires is None else len(self.wires)
        last = f", last run: {self.last_method}" if self.last_method else ""
        return (
            f"<QsemDevice(wires={wires}, shots={self.shots.total_shots}, "
            f"method={self._method!r}{last}, dtype={self.c_dtype})>"
        )

    # -- configuration ------------------------------------------------------------------
    def supports_derivatives(
        self, execution_config: ExecutionConfig | None = None, circuit: Any = None
    ) -> bool:
        """backprop (torch interface) and the device derivatives of
        :attr:`DERIVATIVES`, analytic only.

        Hook: a device method (an adjoint method, say) is one more entry of
        :attr:`DERIVATIVES`, ``name -> method(tape, config) -> Jacobian``.
        """
        if execution_config is None:
            return True
        if circuit is not None and circuit.shots:
            return False
        method = execution_config.gradient_method
        if method == "backprop":  # autograd runs in torch: other ML interfaces cannot see it
            return _interface(execution_config.interface) in ("torch", "auto", "numpy", "None")
        known = method == "best" or method in self.DERIVATIVES
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
            updated["use_device_gradient"] = method in ("backprop", "device")
        if config.grad_on_execution is None:
            updated["grad_on_execution"] = False
        options = dict(config.device_options)
        options.setdefault("method", self._method)
        updated["device_options"] = options
        updated["convert_to_numpy"] = method != "backprop"
        return replace(config, **updated)

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
        return program

    # -- execution ----------------------------------------------------------------------
    def execute(self, circuits: Any, execution_config: ExecutionConfig | None = None) -> Any:
        config = execution_config or ExecutionConfig()
        method = config.device_options.get("method", self._method)
        single = isinstance(circuits, qml.tape.QuantumScript)
        batch = [circuits] if single else circuits
        results = tuple(self._run(tape, method) for tape in batch)
        return results[0] if single else results

    def simulator(self, mode: str) -> TorchSimulator:
        """The device's engine for ``mode`` (kept, so plans are cached across calls)."""
        sim = self._sims.get(mode)
        if sim is None:
            sim = self._sims[mode] = TorchSimulator(mode, dtype=self.c_dtype)
        return sim

    def _run(self, tape: Any, method: str) -> Any:
        labels = list(self.wires) if self.wires is not None else list(tape.wires)
        index = {w: i for i, w in enumerate(labels)}
        dims = tape_wire_dims(tape, labels)
        ops, init, phase = _split_preparation(tape.operations, index, dims, self.c_dtype)
        circuit, params = self._circuit(ops, labels, dims)
        mode = method
        if mode == "auto":
            mode = "density_matrix" if circuit.has_channels else "statevector"
        self.last_method = mode
        state = self.simulator(mode).run(circuit, params, initial_state=init)
        self.engine_calls += 1
        if self.tracker.active:  # qml.Tracker(dev): the method of each simulation
            self.tracker.update(simulations=1, method=mode, batch_size=tape.batch_size or 1)
            self.tracker.record()
        torch_out = _uses_torch(tape)
        if not tape.shots:
            res = measure_all_exact(list(tape.measurements), state, index, phase)
            res = [r if torch_out else _to_numpy(r) for r in res]
            return res[0] if len(res) == 1 else tuple(res)
        per_shot = []
        for s in tape.shots:
            vals = [measure_shots(mp, state, index, s, self._rng) for mp in tape.measurements]
            per_shot.append(vals[0] if len(vals) == 1 else tuple(vals))
        return per_shot[0] if len(per_shot) == 1 else tuple(per_shot)

    def _circuit(
        self, ops: list[Any], labels: list[Any], dims: list[int]
    ) -> tuple[Circuit, dict[str, Any] | None]:
        """The qsem circuit of ``ops`` and its parameter binding.

        Tapes of named gates with scalar angles become one symbolic circuit per structure,
        kept across calls (the engine's plan with it) and bound to this call's angles;
        any other tape is converted operation by operation.
        """
        key = symbolic_key(ops)
        if key is None:
            return add_pennylane_ops(Circuit(dims), ops, labels), None
        key = (key, tuple(dims), tuple(labels))
        circuit = self._circuits.pop(key, None)
        if circuit is None:
            circuit = symbolic_circuit(ops, labels, dims)
        self._circuits[key] = circuit  # most recent last
        if len(self._circuits) > 64:
            self._circuits.pop(next(iter(self._circuits)))
        return circuit, (angle_values(ops) if circuit.parameters else None)

    # -- device derivatives ----------------------------------------------------------------
    def compute_derivatives(
        self, circuits: Any, execution_config: ExecutionConfig | None = None
    ) -> Any:
        config = execution_config or ExecutionConfig(gradient_method="device")
        method = getattr(self, self.DERIVATIVES[str(config.gradient_method)])
        single = isinstance(circuits, qml.tape.QuantumScript)
        batch = [circuits] if single else circuits
        jacs = tuple(method(t, config) for t in batch)
        return jacs[0] if single else jacs

    def execute_and_compute_derivatives(
        self, circuits: Any, execution_config: ExecutionConfig | None = None
    ) -> Any:
        return self.execute(circuits, execution_config), self.compute_derivatives(
            circuits, execution_config
        )

    def _jacobian(self, tape: Any, config: ExecutionConfig | None) -> Any:
        """Jacobian of the tape's results w.r.t. its trainable parameters, by autograd."""
        method = (config or ExecutionConfig()).device_options.get("method", self._method)
        params = tape.get_parameters(trainable_only=True)
        leaves = [
            torch.tensor(np.asarray(p), dtype=torch.float64, requires_grad=True) for p in params
        ]
        new = tape.bind_new_parameters(leaves, list(tape.trainable_params))
        with torch.enable_grad():  # PennyLane's torch backward calls this with grad off
            res = self._run(new, method)
            outs = [res] if len(tape.measurements) == 1 else list(res)
            return self._jacobian_of(outs, leaves)

    @staticmethod
    def _jacobian_of(outs: list[torch.Tensor], leaves: list[torch.Tensor]) -> Any:
        """PennyLane's Jacobian layout: [measurement][parameter], singletons dropped."""
        jac = []
        for out in outs:
            flat = out.reshape(-1)
            rows = [
                torch.autograd.grad(v, leaves, retain_graph=True, allow_unused=True) for v in flat
            ]
            per_param = []
            for k, leaf in enumerate(leaves):
                g = [r[k] if r[k] is not None else torch.zeros_like(leaf) for r in rows]
                stacked = torch.stack(g).reshape(tuple(out.shape) + tuple(leaf.shape))
                per_param.append(stacked.detach().numpy())
            jac.append(per_param[0] if len(leaves) == 1 else tuple(per_param))
        return jac[0] if len(outs) == 1 else tuple(jac)


def _interface(interface: Any) -> str:
    return str(getattr(interface, "value", interface))


def _is_torch(interface: Any) -> bool:
    return _interface(interface) == "torch"


def _uses_torch(tape: Any) -> bool:
    return any(isinstance(p, torch.Tensor) for p in tape.get_parameters(trainable_only=False))


def _to_numpy(r: Any) -> Any:
    """NumPy results as PennyLane's devices give them (a NumPy scalar for 0-d values)."""
    out = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else r
    return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out


def _split_preparation(
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
