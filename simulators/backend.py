"""The backend contract: run many parameter sets of one circuit in one job.

Every backend (the torch engine here; Qiskit Aer and PennyLane in their own
modules) takes a circuit whose symbolic parameters are scalars, a value matrix
``values`` of shape ``(N, P)`` whose columns follow ``names``, and returns
``(N, K)`` expectation values or ``(N, prod dims)`` probabilities. The hybrid
autograd bridge sends every shifted parameter set of a whole batch as one such
call, so a backend that can batch (Aer ``parameter_binds``, torch batches) runs
the backward pass as one job.

``shots=None`` asks for exact values; an integer asks for shot estimates, seeded
by ``seed``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from qsem.checks import check_shots as _check_shots
from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.observables import Observable, as_observables
from qsem.circuits.parameters import Parameter

from .engine import TorchSimulator
from .measure import expval as _expval
from .measure import probs as _probs
from .measure import sample as _sample


def check_names(names: Any) -> list[str]:
    """``names`` as a list of str (a bare string is refused: it is not a sequence of names)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise arg_error("names", f"expected a sequence of str, got {names!r}", QsemTypeError)
    return list(names)


def check_values(values: Any, names: Sequence[str], circuit: Circuit) -> torch.Tensor:
    """Validate a value matrix ``(N, P)`` (N >= 1, real, finite) against ``names`` and the
    circuit's parameters.

    A scalar parameter takes one column; a ``ParameterVector`` of length ``K`` named in
    ``names`` takes ``K`` consecutive columns (its elements in order), so ``P`` is the sum
    of these widths.
    """
    if not isinstance(values, torch.Tensor):
        raise arg_error(
            "values", f"expected a tensor (N, P), got {type(values).__name__}", QsemTypeError
        )
    lengths = circuit.parameter_lengths
    width = sum(lengths.get(n) or 1 for n in names)
    if values.dim() != 2 or values.shape[1] != width:
        vectors = {n: lengths[n] for n in names if lengths.get(n)}
        extra = f" (parameter vectors take one column per element: {vectors})" if vectors else ""
        raise arg_error("values", f"expected shape (N, {width}), got {tuple(values.shape)}{extra}")
    if values.shape[0] < 1:
        raise arg_error("values", "needs at least one row, got shape (0, ...)")
    if values.is_complex() or not bool(torch.isfinite(values).all()):
        raise arg_error("values", "must be real and finite")
    missing = [p for p in circuit.parameters if p not in names]
    if missing:
        raise arg_error("names", f"no column for the circuit's parameter(s) {missing}")
    return values


def check_job(circuit: Circuit, values: Any, names: Any) -> tuple[Circuit, torch.Tensor, list[str]]:
    """Check ``values``/``names`` and give every ``ParameterVector`` element its own scalar
    column: ``w`` of length ``K`` becomes the scalars ``w[0] .. w[K-1]`` (in the circuit
    and in ``names``), so a backend only ever sees scalar parameters."""
    names = check_names(names)
    values = check_values(values, names, circuit)
    lengths = circuit.parameter_lengths
    if not any(lengths.get(n) for n in names):
        return circuit, values, names
    flat: list[str] = []
    for n in names:
        k = lengths.get(n)
        flat += [f"{n}[{i}]" for i in range(k)] if k else [n]
    ops = []
    for op in circuit.ops:
        if any(isinstance(p, Parameter) and p.index is not None for p in op.params):
            op = op.with_params(
                [
                    Parameter(f"{p.name}[{p.index}]", p.scale)
                    if isinstance(p, Parameter) and p.index is not None
                    else p
                    for p in op.params
                ]
            )
        ops.append(op)
    out = Circuit(circuit.dims)
    out.ops = ops  # the same operations, checked when the circuit was built
    return out, values, flat


def check_observables(circuit: Circuit, observables: Any) -> list[Observable]:
    """Observables as a list, each on wires of ``circuit`` with matching dims."""
    obs = as_observables(observables, "observables")
    for o in obs:
        bad = [x for x in o.wires if x >= circuit.num_wires]
        if bad:
            raise arg_error("observables", f"{o!r} uses wire(s) {bad} out of range")
        o.check_dims(circuit.wire_dims(o.wires))
    return obs


def check_shots(shots: object) -> int | None:
    """The backends' ``shots``: ``None`` (exact) or a positive integer."""
    return _check_shots("shots", shots, allow_none=True)


class Backend(ABC):
    """Runs one circuit for many parameter sets in one job."""

    name: str = "backend"

    @abstractmethod
    def expval(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        observables: Observable | Sequence[Observable],
        *,
        shots: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Expectation values ``(N, K)`` (float64) for each row of ``values``."""

    @abstractmethod
    def probs(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        wires: Sequence[int],
        *,
        shots: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Marginal probabilities ``(N, prod dims)`` (float64) on ``wires``."""


class TorchBackend(Backend):
    """The torch engine behind the backend contract (complex128 by default)."""

    name = "torch"

    def __init__(
        self, *, mode: str | None = None, dtype: torch.dtype = torch.complex128, device: Any = None
    ) -> None:
        self.mode = mode
        self.dtype = dtype
        self.device = device

    def _run(self, circuit: Circuit, values: torch.Tensor, names: Sequence[str]) -> Any:
        circuit, values, names = check_job(circuit, values, names)
        mode = self.mode or ("density_matrix" if circuit.has_channels else "statevector")
        sim = TorchSimulator(mode, dtype=self.dtype, device=self.device)
        binds = {n: values[:, j] for j, n in enumerate(names) if n in circuit.parameters}
        state = sim.run(circuit, binds)
        if not state.batched:  # a circuit without parameters still answers N rows
            state = sim.run(
                circuit,
                binds,
                initial_state=_zeros_batch(circuit, values.shape[0], mode, self.dtype),
            )
        return state

    def expval(self, circuit, values, names, observables, *, shots=None, seed=None):
        obs = as_observables(observables, "observables")
        shots = check_shots(shots)
        state = self._run(circuit, values, names)
        if shots is None:
            return _expval(state, obs).to(torch.float64)
        # Shots sample the computational basis: only diagonal observables are estimated.
        out = []
        for k, o in enumerate(obs):
            dims = tuple(circuit.dims[w] for w in o.wires)
            diag = o.diagonal(dims)
            if diag is None:
                raise arg_error(
                    "observables",
                    f"shot estimates on the torch backend need diagonal observables; {o!r} is not "
                    "(rotate into its eigenbasis in the circuit, or use shots=None)",
                )
            samples = _sample(state, shots, list(o.wires), seed=None if seed is None else seed + k)
            idx = torch.zeros(samples.shape[:-1], dtype=torch.long)
            for j, d in enumerate(dims):
                idx = idx * d + samples[..., j]
            out.append(diag[idx].mean(-1))
        return torch.stack(out, -1).to(torch.float64)

    def probs(self, circuit, values, names, wires, *, shots=None, seed=None):
        shots = check_shots(shots)
        state = self._run(circuit, values, names)
        exact = _probs(state, list(wires)).to(torch.float64)
        if shots is None:
            return exact
        samples = _sample(state, shots, list(wires), seed=seed)
        dims = [circuit.dims[w] for w in wires]
        idx = torch.zeros(samples.shape[:-1], dtype=torch.long)
        for j, d in enumerate(dims):
            idx = idx * d + samples[..., j]
        counts = torch.nn.functional.one_hot(idx, exact.shape[-1]).sum(-2)
        return counts.to(torch.float64) / shots


def _zeros_batch(circuit: Circuit, n: int, mode: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.zeros(n, circuit.dim, dtype=dtype)
    t[:, 0] = 1
    return t
