r"""Exact estimator gradients for Qiskit Machine Learning, from qsem's engine.

:class:`EstimatorGradient` implements Qiskit ML's ``BaseEstimatorGradient``: pass it
as ``EstimatorQNN(..., gradient=EstimatorGradient())`` and the QNN's backward pass
(and ``TorchConnector``'s) takes exact gradients from qsem instead of Qiskit ML's
default ``ParamShiftEstimatorGradient``, which builds two shifted PUBs per parameter
per row (27648 one-row PUBs for 6 observables x 64 rows x 36 weights) and spends
most of a training step in Qiskit ML's own bookkeeping of them.

For items ``i`` (circuit ``C_i``, observable ``O_i = Σ_t c_{it} P_t`` in Pauli
terms, values ``θ_i``) it returns

.. math::

    g_i = \nabla_{θ} \langle ψ(θ)| O_i |ψ(θ)\rangle \big|_{θ = θ_i}

restricted to the requested parameters, for every item of one circuit in ONE
batched engine pass: the rows of all items are bound as one batch, the
expectation values of the distinct Pauli terms ``(B, K)`` are weighted by the
item's coefficients ``W (B, K)``, and one reverse pass of ``Σ W ∘ <P>`` gives every
row's gradient (rows are independent). That pass is qsem's adjoint method
(:func:`~qsem.simulators.adjoint_expval`, one backward sweep for all rows and
terms) for unitary circuits and torch autograd through the density-matrix engine
for circuits with ``kraus`` channels. Gate angles that are expressions of the
parameters (``2(π - x₀)(π - x₁)``) enter through the chain rule
(:meth:`~qsem.simulators.qiskit_program.Program.chain`, sympy derivatives).

The gradient is exact (``DerivativeType.REAL`` only). It ignores the estimator's
precision (as the exact value's gradient) and refuses an estimator with a readout
model (the recorded values' gradient is not what it computes).

>>> from qiskit import QuantumCircuit
>>> from qiskit.circuit import Parameter
>>> from qiskit.quantum_info import SparsePauliOp
>>> qc = QuantumCircuit(1); _ = qc.ry(Parameter("a"), 0)
>>> res = EstimatorGradient().run([qc], [SparsePauliOp("Z")], [[0.5]]).result()
>>> bool(np.isclose(res.gradients[0][0], -np.sin(0.5)))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits.errors import MissingDependencyError, QsemTypeError, arg_error
from qsem.circuits.observables import PauliString
from qsem.circuits.qiskit_export import require_qiskit

from .adjoint import adjoint_expval
from .engine import TorchSimulator
from .measure import expval
from .qiskit_primitives import EstimatorV2, _Observables
from .qiskit_program import Program

require_qiskit()

try:
    from qiskit_machine_learning.gradients import BaseEstimatorGradient
    from qiskit_machine_learning.gradients.base.estimator_gradient_result import (
        EstimatorGradientResult,
    )
    from qiskit_machine_learning.gradients.utils import DerivativeType
except ImportError as exc:  # pragma: no cover - installed with qsem[bench]
    raise MissingDependencyError(
        f"EstimatorGradient needs qiskit-machine-learning ({exc}); install it with "
        "pip install qiskit-machine-learning (or 'qsem[bench]')"
    ) from None

from qiskit.providers import Options  # noqa: E402

__all__ = ["EstimatorGradient"]


def _pauli(label: str) -> PauliString:
    """A Qiskit label other than the identity (rightmost character on qubit 0 = qsem wire
    ``n - 1``) as a qsem ``PauliString`` on its non-identity wires."""
    wires = [w for w, ch in enumerate(label) if ch != "I"]
    return PauliString("".join(label[w] for w in wires), wires=wires)


class EstimatorGradient(BaseEstimatorGradient):
    """Qiskit ML ``BaseEstimatorGradient`` with exact gradients from qsem (module doc).

    Args:
        estimator: the qsem :class:`~qsem.simulators.EstimatorV2` the QNN runs on (its
            simulator is used); default a new one. A ``readout`` model is refused.
        options: Qiskit ML gradient options (kept for the API; none change the result).

    ``engine_calls`` counts the batched engine passes (one per distinct circuit per
    ``run``).
    """

    def __init__(self, estimator: EstimatorV2 | None = None, options: Any = None) -> None:
        if estimator is None:
            estimator = EstimatorV2()
        if not isinstance(estimator, EstimatorV2):
            raise arg_error(
                "estimator",
                f"expected a qsem EstimatorV2, got {type(estimator).__name__}",
                QsemTypeError,
            )
        if estimator._readout is not None:
            raise arg_error(
                "estimator",
                "has a readout model; EstimatorGradient gives the exact values' gradient",
            )
        super().__init__(estimator, options, DerivativeType.REAL)
        self.engine_calls = 0

    def _get_local_options(self, options: Any) -> Options:
        opts = Options()
        opts.update_options(**dict(options))
        return opts

    def _run(
        self,
        circuits: Sequence[Any],
        observables: Sequence[Any],
        parameter_values: Sequence[Sequence[float]] | np.ndarray,
        parameters: Sequence[Sequence[Any]],
        **options: Any,
    ) -> EstimatorGradientResult:
        groups: dict[int, list[int]] = {}
        for i, qc in enumerate(circuits):
            groups.setdefault(id(qc), []).append(i)
        full: list[np.ndarray] = [np.empty(0)] * len(circuits)
        for members in groups.values():
            qc = circuits[members[0]]
            rows = np.asarray([parameter_values[i] for i in members], dtype=np.float64)
            jac = self._jacobian(qc, [observables[i] for i in members], rows)
            for k, i in enumerate(members):
                full[i] = jac[k]
        gradients, metadata = [], []
        columns: dict[int, np.ndarray] = {}  # per distinct parameters object
        for i, params in enumerate(parameters):
            cols = columns.get(id(params))
            if cols is None:
                index = {p: j for j, p in enumerate(circuits[i].parameters)}
                cols = columns[id(params)] = np.array([index[p] for p in params], dtype=np.int64)
            gradients.append(full[i][cols])
            metadata.append({"parameters": params})
        return EstimatorGradientResult(
            gradients=gradients, metadata=metadata, options=self._get_local_options(options)
        )

    def _jacobian(self, qc: Any, observables: list[Any], rows: np.ndarray) -> np.ndarray:
        """``(B, P)``: ``∂<O_b>/∂θ`` at row ``b`` for the items of one circuit."""
        if not np.isfinite(rows).all():
            raise arg_error("parameter_values", "must be finite, got NaN or inf")
        prog = Program.cached(qc)
        tables: dict[int, _Observables] = {}
        labels: dict[str, int] = {}
        entries: list[tuple[int, int, float]] = []  # (row, term, coefficient)
        for b, obs in enumerate(observables):
            table = tables.get(id(obs))
            if table is None:
                table = tables[id(obs)] = _Observables.of(obs)
            if table.index.shape[0] != 1:
                raise arg_error("observables", "each item needs one observable, got an array")
            for t, c in zip(table.index[0], table.coeff[0], strict=True):
                label = table.labels[t]
                if c != 0.0 and label.strip("I"):
                    entries.append((b, labels.setdefault(label, len(labels)), c))
        out = np.zeros((rows.shape[0], prog.num_parameters))
        if not labels:  # identities only: a constant
            return out
        weights = torch.zeros(rows.shape[0], len(labels), dtype=torch.float64)
        for b, k, c in entries:
            weights[b, k] += c
        paulis = [_pauli(label) for label in labels]
        binds = {
            name: t.requires_grad_(True) for name, t in prog.bindings(rows).items()
        }  # fmt: skip
        if not binds:
            return out
        sim = self._estimator._simulator
        mode = "density_matrix" if prog.circuit.has_channels else "statevector"
        if sim is not None and sim.mode != mode:
            raise arg_error("simulator", f"the circuit needs a {mode} simulator, got {sim.mode!r}")
        if mode == "density_matrix":
            sim = sim or TorchSimulator(mode, dtype=torch.complex128)
            values = expval(sim.run(prog.circuit, binds), paulis)
        else:
            values = adjoint_expval(prog.circuit, binds, paulis, simulator=sim)
        self.engine_calls += 1
        total = (values.reshape(rows.shape[0], -1) * weights.to(values.dtype)).sum()
        names = list(binds)
        got = torch.autograd.grad(total, [binds[n] for n in names], allow_unused=True)
        grads = {
            n: (torch.zeros_like(binds[n]) if g is None else g).detach().to(torch.float64)
            for n, g in zip(names, got, strict=True)
        }
        return prog.chain(grads, rows)
