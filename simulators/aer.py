r"""Qiskit Aer behind the backend contract (:mod:`qsem.simulators.backend`).

A qsem :class:`~qsem.circuits.Circuit` becomes one ``qiskit.QuantumCircuit``:

* **Circuit conversion.** The circuit goes through :mod:`qsem.circuits.qiskit_export`
  (the one home of the qubit encoding of qudit wires, shared with
  ``Circuit.to_qiskit``): a wire of dimension ``d > 2`` lives on
  ``ceil(log2 d)`` qubits (a qutrit on two, ``|11>`` its leakage level), gates
  act as ``U ⊕ 1``, and symbolic parameters stay Qiskit ``Parameter``\ s, so ONE
  transpiled circuit serves every row of ``values`` through ``parameter_binds``
  in ONE ``AerSimulator.run`` job. A symbolic gate of a user's own class and
  channels with *symbolic* parameters cannot be bound by Aer: such circuits are
  bound numerically per row and sent as a list of ``N`` circuits, still in one
  ``run`` job (slower: one transpilation per row).
* **Results.** Exact mode uses ``save_expectation_value`` / ``save_probabilities``
  / ``save_statevector`` / ``save_density_matrix``; shot mode measures and counts,
  seeded by ``seed_simulator``. Shot expectation values of non-diagonal
  observables rotate into the observable's eigenbasis (one extra circuit per such
  observable, in the same job). Everything comes back as torch ``float64``
  (``complex128`` for states) in qsem's wire order, restricted to the encoded
  levels. Leakage populations come from :meth:`AerBackend.leakage`; an exact
  simulation has none (up to rounding), and with shots a leaked outcome counts in
  no probability, so ``probs`` rows then sum to less than 1.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, QsemValueError, arg_error
from qsem.circuits.observables import Observable, PauliString
from qsem.circuits.operations import Operation, normalize_wires
from qsem.circuits.parameters import Parameter
from qsem.circuits.qiskit_export import QubitLayout, _Converter, _Unsupported, to_qiskit
from qsem.circuits.qiskit_export import require_qiskit as _require_qiskit

from ._aer_readout import ShotPlan, count_vector, leakage_rows, measure
from ._aer_readout import obs_key as _obs_key
from .backend import Backend, check_job, check_observables, check_shots

__all__ = ["AerBackend", "QubitLayout"]

_METHODS = ("statevector", "density_matrix")
_DEVICES = ("CPU", "GPU")


def _check_circuit(circuit: Any) -> Circuit:
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    for op in circuit.ops:
        params = list(op.params)
        batched = [p for p in params if isinstance(p, torch.Tensor) and p.dim() > 0]
        if batched or op.batch_size() is not None:
            raise arg_error(
                "circuit",
                f"{op.name} on wires {list(op.wires)} holds a batched concrete value; backends "
                "take one value per operation: batch through symbolic Parameters and `values`",
            )
    return circuit


def _cache_key(circuit: Circuit) -> tuple[Any, ...]:
    items = []
    for op in circuit.ops:
        vals = tuple(
            p if isinstance(p, Parameter) else float(torch.as_tensor(p).detach()) for p in op.params
        )
        items.append((op.structure_key(), vals))
    return (circuit.dims, tuple(items))


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """Transpiled circuits of one request and how to bind them."""

    circuits: list[Any]
    params: dict[str, Any]  # qsem name -> Qiskit Parameter (symbolic path)
    per_row: bool  # True: one circuit per row, already bound
    ops_ref: list[Operation]  # keeps matrices alive while cached (ids in structure keys)


class AerBackend(Backend):
    """Qiskit Aer's ``AerSimulator`` behind the backend contract.

    Args:
        method: ``"statevector"``, ``"density_matrix"``, or ``None`` (default): density
            matrix for circuits with channels, statevector otherwise.
        device: ``"CPU"`` or ``"GPU"``. ``"GPU"`` needs qiskit-aer-gpu and CUDA
            (``AerSimulator().available_devices()``); without them the backend warns
            once and runs on the CPU.
        cache_size: transpiled circuits kept per backend (the bridge re-runs one
            circuit many times).
        **options: passed to ``AerSimulator`` (e.g. ``max_parallel_threads``).

    Every call is one ``AerSimulator.run`` job for all ``N`` rows of ``values``.
    See the module docstring for the qutrit encoding and the decompositions.
    """

    name = "aer"

    def __init__(
        self,
        method: str | None = None,
        device: str = "CPU",
        *,
        cache_size: int = 32,
        **options: Any,
    ) -> None:
        _require_qiskit()
        from qiskit_aer import AerSimulator

        if method is not None and method not in _METHODS:
            raise arg_error("method", f"expected one of {list(_METHODS)} or None, got {method!r}")
        if not isinstance(device, str) or device.upper() not in _DEVICES:
            raise arg_error("device", f"expected 'CPU' or 'GPU', got {device!r}")
        device = device.upper()
        if device == "GPU" and "GPU" not in AerSimulator().available_devices():
            warnings.warn(
                "AerBackend: device='GPU' needs qiskit-aer-gpu and CUDA; running on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            device = "CPU"
        self.method = method
        self.device = device
        # Bind parameter rows inside one Aer experiment instead of expanding one
        # experiment per row: half the time of a 5376-row parameter-shift job (measured).
        self.options = {"runtime_parameter_bind_enable": True, **options}
        self._sims: dict[str, Any] = {}
        self._cache: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()
        self._cache_size = int(cache_size)

    def __repr__(self) -> str:
        return f"AerBackend(method={self.method!r}, device={self.device!r})"

    # -- plumbing ---------------------------------------------------------------------
    def _method(self, circuit: Circuit, shots: int | None) -> str:
        method = self.method or ("density_matrix" if circuit.has_channels else "statevector")
        if method == "statevector" and circuit.has_channels and shots is None:
            raise arg_error(
                "method",
                "exact results of a circuit with channels need method='density_matrix' "
                "(the statevector method samples noise trajectories: pass shots=...)",
            )
        return method

    def _sim(self, method: str) -> Any:
        sim = self._sims.get(method)
        if sim is None:
            from qiskit_aer import AerSimulator

            sim = self._sims[method] = AerSimulator(
                method=method, device=self.device, **self.options
            )
        return sim

    def _prepare(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        method: str,
        request: tuple[Any, ...],
        finish: Any,
    ) -> tuple[_Prepared, list[dict[Any, list[float]]] | None]:
        """Convert, finish (save/measure) and transpile; cached per circuit and request.

        ``finish(converter) -> list of Qiskit circuits`` appends the read-out.
        """
        from qiskit import transpile

        key = (_cache_key(circuit), method, request)
        prep = self._cache.get(key)
        if prep is None:
            conv = _Converter(circuit)
            try:
                for op in circuit.ops:
                    conv.add(op)
            except _Unsupported:
                prep = None
            else:
                circuits = transpile(finish(conv), self._sim(method), optimization_level=0)
                prep = _Prepared(circuits, conv.params, False, list(circuit.ops))
                self._cache[key] = prep
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            if prep is None:  # bind numerically, one circuit per row
                rows = []
                for row in values.tolist():
                    bound = circuit.bind(
                        {n: v for n, v in zip(names, row, strict=True) if n in circuit.parameters}
                    )
                    conv = _Converter(bound)
                    for op in bound.ops:
                        conv.add(op)
                    rows.append(finish(conv))
                # circuit-major like parameter_binds: all rows of read-out 0, then read-out 1, ...
                ordered = [rows[r][c] for c in range(len(rows[0])) for r in range(len(rows))]
                circuits = transpile(ordered, self._sim(method), optimization_level=0)
                return _Prepared(circuits, {}, True, []), None
        binds = None
        if prep.params:
            col = {n: j for j, n in enumerate(names)}
            vals = values.detach().to(torch.float64).cpu().numpy()
            bind = {q: vals[:, col[n]].tolist() for n, q in prep.params.items()}
            binds = [bind] * len(prep.circuits)
        return prep, binds

    def _execute(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        method: str,
        shots: int | None,
        seed: int | None,
        request: tuple[Any, ...],
        finish: Any,
    ) -> list[list[Any]]:
        """Run one job; returns ``data[readout][row]`` (Aer result data dicts)."""
        n = values.shape[0]
        prep, binds = self._prepare(circuit, values, names, method, request, finish)
        circuits = prep.circuits
        run_opts: dict[str, Any] = {"shots": shots if shots is not None else 1}
        if seed is not None:
            run_opts["seed_simulator"] = int(seed)
        if prep.per_row:
            n_read = len(circuits) // n
            per_circ = 1
        else:
            n_read = len(circuits)
            if binds is not None:
                run_opts["parameter_binds"] = binds
                per_circ = n
            elif shots is not None and n > 1:  # independent samples per row
                circuits = [c for c in circuits for _ in range(n)]
                per_circ = n
            else:
                per_circ = 1
        result = self._sim(method).run(circuits, **run_opts).result()
        if not result.success:  # pragma: no cover - Aer reports its own failures
            raise QsemValueError(f"argument 'circuit': Aer failed: {result.status}")
        out = []
        for c in range(n_read):
            if prep.per_row:
                out.append([result.data(c * n + r) for r in range(n)])
            elif per_circ == 1:
                data = result.data(c)
                out.append([data] * n)
            else:
                out.append([result.data(c * n + r) for r in range(n)])
        return out

    def _check(
        self, circuit: Any, values: Any, names: Any, shots: Any
    ) -> tuple[Circuit, torch.Tensor, list[str], int | None]:
        circuit = _check_circuit(circuit)
        circuit, values, names = check_job(circuit, values, names)
        return circuit, values, names, check_shots(shots)

    def _wires(self, circuit: Circuit, wires: Any) -> list[int]:
        w = list(normalize_wires(wires, "wires"))
        bad = [x for x in w if x >= circuit.num_wires]
        if bad:
            raise arg_error("wires", f"wire(s) {bad} out of range for {circuit.num_wires} wires")
        return w

    # -- contract -----------------------------------------------------------------------
    def probs(self, circuit, values, names, wires, *, shots=None, seed=None):
        """Marginal probabilities ``(N, prod dims)`` on ``wires`` (in the given order).

        Leaked shots count in no entry, so rows may sum to less than 1 with shots.
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        w = self._wires(circuit, wires)
        method = self._method(circuit, shots)
        layout = QubitLayout.of(circuit.dims)
        idx = layout.valid_indices(w)
        m = sum(layout.bits[x] for x in w)

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if shots is None:
                qc.save_probabilities(layout.qargs(w), label="p")
            else:
                measure(qc, layout, w)
            return [qc]

        req = ("probs", tuple(w), shots is None)
        data = self._execute(circuit, values, names, method, shots, seed, req, finish)[0]
        if shots is None:
            rows = [np.asarray(d["p"], dtype=np.float64)[idx] for d in data]
        else:
            rows = [count_vector(d, m)[idx] / shots for d in data]
        return torch.from_numpy(np.stack(rows))

    def expval(self, circuit, values, names, observables, *, shots=None, seed=None):
        """Expectation values ``(N, K)``; leakage levels contribute 0 (observable ``O ⊕ 0``).

        With shots, diagonal observables share one measured circuit; each non-diagonal
        one gets a copy rotated into its eigenbasis (all in the same job).
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        obs = check_observables(circuit, observables)
        method = self._method(circuit, shots)
        layout = QubitLayout.of(circuit.dims)
        if shots is None:
            return self._expval_exact(circuit, values, names, obs, method, layout)
        return self._expval_shots(circuit, values, names, obs, method, layout, shots, seed)

    def _expval_exact(self, circuit, values, names, obs, method, layout):
        from qiskit.quantum_info import Operator, SparsePauliOp

        def operator(o: Observable) -> Any:
            wires = list(o.wires)
            if isinstance(o, PauliString) and all(layout.bits[x] == 1 for x in wires):
                return SparsePauliOp(o.paulis, coeffs=[o.coeff])
            local = o.local_matrix(circuit.wire_dims(wires))
            return SparsePauliOp.from_operator(Operator(layout.embed(local, wires, 0.0)))

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            for k, o in enumerate(obs):
                qc.save_expectation_value(operator(o), layout.qargs(o.wires), label=f"e{k}")
            return [qc]

        req = ("expval", tuple(_obs_key(o, circuit) for o in obs))
        data = self._execute(circuit, values, names, method, None, None, req, finish)[0]
        out = [[float(np.real(d[f"e{k}"])) for k in range(len(obs))] for d in data]
        return torch.tensor(out, dtype=torch.float64)

    def _expval_shots(self, circuit, values, names, obs, method, layout, shots, seed):
        plan = ShotPlan(circuit, obs)

        def finish(conv: _Converter) -> list[Any]:
            return plan.circuits(conv.qc, conv.lib, layout)

        req = ("expval_shots", tuple(_obs_key(o, circuit) for o in obs))
        data = self._execute(circuit, values, names, method, shots, seed, req, finish)
        return torch.from_numpy(plan.sums(data, layout, values.shape[0]) / shots)

    # -- extras -------------------------------------------------------------------------
    def leakage(self, circuit, values, names, *, shots=None, seed=None):
        """Leakage population ``(N, L)`` of each wire with leakage levels.

        Columns follow :meth:`leaky_wires` (qutrits and other ``d`` that are not a
        power of 2), in wire order; ``(N, 0)`` when there are none.
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        layout = QubitLayout.of(circuit.dims)
        leaky = self.leaky_wires(circuit)
        n = values.shape[0]
        if not leaky:
            return torch.zeros(n, 0, dtype=torch.float64)
        method = self._method(circuit, shots)

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if shots is None:
                for w in leaky:
                    qc.save_probabilities(layout.qargs([w]), label=f"l{w}")
            else:
                measure(qc, layout, leaky)
            return [qc]

        data = self._execute(
            circuit, values, names, method, shots, seed, ("leak", shots is None), finish
        )[0]
        out = leakage_rows(data, circuit, layout, leaky, shots)
        return torch.from_numpy(out)

    @staticmethod
    def leaky_wires(circuit: Circuit) -> list[int]:
        """Wires whose encoding has leakage levels (dimension not a power of 2)."""
        layout = QubitLayout.of(circuit.dims)
        return [w for w in range(len(circuit.dims)) if layout.leaky(w)]

    def state(self, circuit, values, names):
        """The final state of each row in qsem's order, on the encoded levels only.

        ``(N, D)`` statevectors (method statevector) or ``(N, D, D)`` density
        matrices (method density_matrix), complex128, ``D = prod dims``.
        """
        circuit, values, names, _ = self._check(circuit, values, names, None)
        method = self._method(circuit, None)
        layout = QubitLayout.of(circuit.dims)
        idx = layout.valid_indices(range(circuit.num_wires))
        label = "psi" if method == "statevector" else "rho"

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if method == "statevector":
                qc.save_statevector(label=label)
            else:
                qc.save_density_matrix(label=label)
            return [qc]

        data = self._execute(circuit, values, names, method, None, None, ("state",), finish)[0]
        rows = []
        for d in data:
            s = np.asarray(d[label], dtype=np.complex128)
            rows.append(s[idx] if s.ndim == 1 else s[np.ix_(idx, idx)])
        return torch.from_numpy(np.stack(rows))

    def to_qiskit(self, circuit: Circuit) -> Any:
        """The (untranspiled) ``QuantumCircuit`` and the map qsem name -> Qiskit ``Parameter``
        (a ``ParameterVector`` for a qsem ``ParameterVector``): see
        :func:`qsem.circuits.qiskit_export.to_qiskit`.

        Raises :class:`QsemValueError` for circuits that must be bound per row.
        """
        return to_qiskit(_check_circuit(circuit))
