r"""Qiskit's Estimator primitive (``BaseEstimatorV2``) on qsem's torch engine.

:class:`EstimatorV2` runs Qiskit PUBs ``(circuit, observables, parameter_values,
precision)`` on :class:`~qsem.simulators.TorchSimulator` (complex128), so Qiskit
Machine Learning's ``EstimatorQNN``/``TorchConnector`` and other code written for
Qiskit's primitives run on qsem unchanged.

* **Batching.** Every PUB of one ``run`` call whose circuit is the same object is
  simulated together: the parameter rows of all of them (any broadcast shape,
  flattened) are de-duplicated and go to ONE batched engine call; each PUB's
  values are then read off the batch of states.
* **Observables** are anything ``ObservablesArray`` takes (``SparsePauliOp``,
  ``Pauli``, labels, ``SparseObservable`` with projector terms ``0 1 + - r l``),
  evaluated exactly with Qiskit's little-endian labels (rightmost character on
  qubit 0). Coefficients must be real (Hermitian observables).
* **Precision** follows Qiskit's definition (as ``qiskit_aer.primitives.EstimatorV2``
  and ``StatevectorEstimator`` do): ``precision = 0`` gives the exact expectation
  value; ``precision = ε > 0`` adds Gaussian noise ``N(0, ε²)`` to each value,
  the spread a shot estimate with standard error ``ε`` has. ``stds`` is ``ε``
  (as Aer reports it). The noise comes from ``numpy.random.default_rng(seed)``,
  drawn afresh for each ``run`` call: a fixed integer ``seed`` repeats results.
* **Readout error**: ``readout=`` (a :class:`~qsem.circuits.NoiseModel`, e.g.
  ``NoiseModel.from_backend(fake_backend)``, or per-qubit
  :class:`~qsem.circuits.noise.ReadoutError`\ s on qsem wires, qubit ``q`` = wire
  ``n - 1 - q``) gives the values a device records when it measures each Pauli
  term in its rotated basis through those confusions
  (:func:`~qsem.simulators.readout.pauli_readout_matrix`); the quantum errors of a
  model are not applied here (``NoiseModel.apply`` the circuit for those).
* **Circuits**: unitary gates and ``kraus`` channels (density-matrix simulation
  is chosen for those); measurements, resets and classical control are refused.
  Gate parameters may be any expressions (evaluated per row); parametrised gates
  without a qsem counterpart (``rzz`` ...) are decomposed first by ``transpile``.

>>> from qiskit import QuantumCircuit
>>> from qiskit.circuit import Parameter
>>> from qiskit.quantum_info import SparsePauliOp
>>> qc = QuantumCircuit(2); _ = qc.ry(Parameter("a"), 0); _ = qc.cx(0, 1)
>>> est = EstimatorV2()
>>> res = est.run([(qc, SparsePauliOp(["ZZ", "IZ"], [1.0, 0.5]), [[0.0], [np.pi]])]).result()
>>> res[0].data.evs.round(12)
array([1.5, 0.5])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.qiskit_export import require_qiskit

from .engine import TorchSimulator
from .qiskit_program import Program, as_rows, expand_label, pauli_expvals
from .readout import check_readout, pauli_readout_matrix, readout_errors

require_qiskit()

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.primitives import BaseEstimatorV2, DataBin, PrimitiveResult, PubResult  # noqa: E402
from qiskit.primitives.containers import BindingsArray, ObservablesArray  # noqa: E402
from qiskit.primitives.containers.estimator_pub import EstimatorPub  # noqa: E402
from qiskit.primitives.primitive_job import PrimitiveJob  # noqa: E402

__all__ = ["EstimatorV2", "check_seed"]

#: parameter-value types that are never a ``Mapping`` or a ``BindingsArray``
_PLAIN_VALUES = (np.ndarray, list, tuple)


def check_seed(seed: Any) -> Any:
    """``None``, an ``int`` or a ``numpy.random.Generator``; anything else is refused."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise arg_error("seed", f"must be an int, a numpy Generator or None, got {seed!r}")
    return int(seed)


def check_simulator(simulator: Any) -> TorchSimulator | None:
    if simulator is not None and not isinstance(simulator, TorchSimulator):
        raise arg_error(
            "simulator",
            f"expected a TorchSimulator or None, got {type(simulator).__name__}",
            QsemTypeError,
        )
    return simulator


@dataclass
class _Observables:
    """One coerced observables argument: padded Pauli-term tables over its elements."""

    array: ObservablesArray
    labels: list[str]
    #: (K, T): label index and real coefficient of each term of each element (padded)
    index: np.ndarray
    coeff: np.ndarray

    @classmethod
    def of(cls, obs: Any) -> _Observables:
        array = obs if isinstance(obs, ObservablesArray) else ObservablesArray.coerce(obs)
        labels: dict[str, int] = {}
        rows: list[list[tuple[int, float]]] = []
        for element in array.ravel():
            terms = []
            for label, c in element.items():
                for pauli, cc in expand_label(label, complex(c)):
                    if abs(cc.imag) > 1e-12 * max(1.0, abs(cc)):
                        raise arg_error(
                            "observables",
                            f"coefficient {c} of {label!r} is not real: the observable is not "
                            "Hermitian",
                        )
                    terms.append((labels.setdefault(pauli, len(labels)), cc.real))
            rows.append(terms or [(labels.setdefault("I" * array.num_qubits, 0), 0.0)])
        width = max(len(t) for t in rows)
        index = np.zeros((len(rows), width), dtype=np.int64)
        coeff = np.zeros((len(rows), width))
        for k, terms in enumerate(rows):
            for t, (i, c) in enumerate(terms):
                index[k, t], coeff[k, t] = i, c
        return cls(array, list(labels), index, coeff)


@dataclass(slots=True)  # one per PUB (27648 per gradient call): no __dict__ for the GC
class _Item:
    """One PUB, coerced: values ``bshape + (P,)`` broadcast against the observables."""

    circuit: Any
    obs: _Observables
    values: np.ndarray
    precision: float
    shape: tuple[int, ...]


def _check_precision(precision: Any, where: str) -> float:
    if isinstance(precision, bool) or not isinstance(precision, Real):
        raise arg_error(where, f"must be a real number >= 0, got {precision!r}", QsemTypeError)
    value = float(precision)
    if not value >= 0 or not np.isfinite(value):
        raise arg_error(where, f"must be a finite number >= 0, got {precision!r}")
    return value


class EstimatorV2(BaseEstimatorV2):
    """Qiskit ``BaseEstimatorV2`` on qsem's torch engine (see the module docstring).

    Args:
        default_precision: precision of PUBs that give none (and of ``run`` calls
            without ``precision``); 0 is exact.
        seed: seed (int) or ``numpy.random.Generator`` of the precision noise.
        simulator: the :class:`~qsem.simulators.TorchSimulator` to run on (default:
            a complex128 statevector or density-matrix simulator per circuit).
        readout: per-qubit readout confusions (a ``NoiseModel`` or ``ReadoutError`` objects;
            module docstring); ``None``: ideal measurement.

    ``engine_calls`` counts the engine calls made so far (one per distinct circuit
    per ``run``).
    """

    def __init__(
        self,
        *,
        default_precision: float = 0.0,
        seed: int | np.random.Generator | None = None,
        simulator: TorchSimulator | None = None,
        readout: Any = None,
    ) -> None:
        self._default_precision = _check_precision(default_precision, "default_precision")
        self._seed = check_seed(seed)
        self._simulator = check_simulator(simulator)
        self._readout = check_readout(readout)  # its wires are checked per circuit
        self.engine_calls = 0

    @property
    def default_precision(self) -> float:
        return self._default_precision

    @property
    def seed(self) -> int | np.random.Generator | None:
        return self._seed

    def __repr__(self) -> str:
        return f"qsem EstimatorV2(default_precision={self._default_precision}, seed={self._seed!r})"

    # -- PUBs ----------------------------------------------------------------------------
    def run(
        self, pubs: Iterable[Any], *, precision: float | None = None
    ) -> PrimitiveJob[PrimitiveResult[PubResult]]:
        """Run PUBs ``(circuit, observables[, parameter_values[, precision]])``."""
        if precision is None:
            precision = self._default_precision
        precision = _check_precision(precision, "precision")
        cache: dict[int, tuple[Any, Any]] = {}  # keeps each object alive: ids stay unique
        items = [self._coerce(pub, precision, cache) for pub in pubs]
        job = PrimitiveJob(self._run, items)
        job._submit()
        return job

    @staticmethod
    def _coerce(pub: Any, precision: float, cache: dict[int, tuple[Any, Any]]) -> _Item:
        """Qiskit's ``EstimatorPub.coerce``, with a fast path for the common tuple
        ``(circuit, observable, array)`` (observables coerced once per object)."""
        fast = (
            isinstance(pub, (tuple, list))
            and 2 <= len(pub) <= 4
            and isinstance(pub[0], QuantumCircuit)
            and (
                len(pub) < 3
                # the common cases first: BindingsArray's Protocol metaclass makes the
                # isinstance check below cost about 0.6 us a PUB
                or type(pub[2]) in _PLAIN_VALUES
                or not isinstance(pub[2], (Mapping, BindingsArray))
            )
        )
        if fast:
            circuit = pub[0]
            shape_of = cache.get(id(circuit))  # (circuit, (parameters, qubits))
            if shape_of is None:
                shape_of = cache[id(circuit)] = (
                    circuit,
                    (circuit.num_parameters, circuit.num_qubits),
                )
            nparams, nqubits = shape_of[1]
            raw = pub[2] if len(pub) > 2 else None
            values = None if raw is None else np.asarray(raw, dtype=np.float64)
            if (values is None and nparams == 0) or (
                values is not None and nparams > 0 and values.ndim >= 1
                and values.shape[-1] == nparams
            ):  # fmt: skip
                hit = cache.get(id(pub[1]))
                if hit is None:
                    hit = cache[id(pub[1])] = (pub[1], _Observables.of(pub[1]))
                obs = hit[1]
                if obs.array.num_qubits != nqubits:
                    raise ValueError(
                        f"The number of qubits of the circuit ({nqubits}) does not "
                        f"match the number of qubits of the observables ({obs.array.num_qubits})."
                    )
                if values is None:
                    values = np.zeros((0,))
                prec = precision
                if len(pub) > 3 and pub[3] is not None:
                    prec = _check_precision(pub[3], "precision")
                oshape = obs.array.shape
                if values.ndim == 1 and oshape == ():
                    return _Item(circuit, obs, values, prec, ())
                shape = np.broadcast_shapes(oshape, values.shape[:-1])
                return _Item(circuit, obs, values, prec, tuple(shape))
        full = EstimatorPub.coerce(pub, precision)
        circuit = full.circuit
        values = full.parameter_values.as_array(list(circuit.parameters))
        obs = _Observables.of(full.observables)
        prec = _check_precision(full.precision, "precision")
        return _Item(circuit, obs, values, prec, tuple(full.shape))

    # -- execution -----------------------------------------------------------------------
    def _run(self, items: list[_Item]) -> PrimitiveResult[PubResult]:
        groups: dict[int, list[int]] = {}
        for k, item in enumerate(items):
            groups.setdefault(id(item.circuit), []).append(k)
        evs: list[np.ndarray] = [np.empty(0)] * len(items)
        for members in groups.values():
            for k, values in zip(members, self._evaluate([items[k] for k in members]), strict=True):
                evs[k] = values
        rng = np.random.default_rng(self._seed)
        results = []
        for item, ev in zip(items, evs, strict=True):
            if item.precision > 0:
                ev = rng.normal(ev, item.precision, ev.shape)
            stds = (
                np.array(item.precision)
                if item.shape == ()
                else np.full(item.shape, item.precision)
            )
            results.append(
                PubResult(
                    DataBin(evs=ev, stds=stds, shape=item.shape),
                    metadata={
                        "target_precision": item.precision,
                        "circuit_metadata": item.circuit.metadata,
                    },
                )
            )
        return PrimitiveResult(results, metadata={"version": 2})

    def _evaluate(self, items: list[_Item]) -> list[np.ndarray]:
        """Exact values of PUBs sharing one circuit: ONE engine call for all their rows."""
        prog = Program.cached(items[0].circuit)
        nparams = prog.num_parameters
        if all(it.values.ndim == 1 for it in items):  # one row each (gradient PUBs)
            rows = np.stack([it.values for it in items]).reshape(len(items), nparams)
            starts = np.arange(len(items) + 1)
        else:
            flat = [as_rows(it.values, nparams) for it in items]
            starts = np.cumsum([0] + [f.shape[0] for f in flat])
            rows = np.concatenate(flat)
        if rows.shape[0] == 0:
            rows = np.zeros((1, nparams))
        state, inverse = prog.run(rows, self._simulator)
        self.engine_calls += 1
        # one label table over the distinct observables of the group
        obs_ids: dict[int, int] = {}
        tables: list[_Observables] = []
        for it in items:
            if id(it.obs) not in obs_ids:
                obs_ids[id(it.obs)] = len(tables)
                tables.append(it.obs)
        labels: dict[str, int] = {}
        remap = [np.array([labels.setdefault(l, len(labels)) for l in t.labels]) for t in tables]
        if self._readout is None:
            table = pauli_expvals(state, list(labels))  # (L, U)
        else:  # recorded values: a linear map of the exact values of sub-strings
            errs = readout_errors(self._readout, state.dims)
            needed, transfer = pauli_readout_matrix(list(labels), errs)
            table = transfer @ pauli_expvals(state, needed)
        # the terms of every observable element of the group, padded to one width
        offsets = np.cumsum([0] + [t.index.shape[0] for t in tables])
        width = max(t.index.shape[1] for t in tables)
        index = np.zeros((offsets[-1], width), dtype=np.int64)
        coeff = np.zeros((offsets[-1], width))
        for j, t in enumerate(tables):
            index[offsets[j] : offsets[j + 1], : t.index.shape[1]] = remap[j][t.index]
            coeff[offsets[j] : offsets[j + 1], : t.coeff.shape[1]] = t.coeff
        item_obs = np.array([offsets[obs_ids[id(it.obs)]] for it in items], dtype=np.int64)
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        scalar = np.array([it.shape == () for it in items])
        if scalar.any():  # one observable and one row each: gathered at once
            o, r = item_obs[scalar], inverse[starts[:-1][scalar]]
            vals = (coeff[o] * table[index[o], r[:, None]]).sum(-1)
            for k, v in zip(np.flatnonzero(scalar), vals, strict=True):
                out[k] = np.asarray(v)
        for k in np.flatnonzero(~scalar):
            it = items[k]
            o = item_obs[k] + np.arange(it.obs.index.shape[0]).reshape(it.obs.array.shape)
            r = inverse[starts[k] : starts[k + 1]].reshape(it.values.shape[:-1])
            o, r = np.broadcast_arrays(o, r)
            out[k] = (coeff[o] * table[index[o], r[..., None]]).sum(-1).reshape(it.shape)
        return out
