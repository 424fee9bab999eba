r"""The backend contract: run many parameter sets of one circuit in one job.

Every backend (the torch engine here; Qiskit Aer and PennyLane in their own
modules) takes a circuit whose symbolic parameters are scalars, a value matrix
``values`` of shape ``(N, P)`` whose columns follow ``names``, and returns
``(N, K)`` expectation values or ``(N, prod dims)`` probabilities. The hybrid
autograd bridge sends every shifted parameter set of a whole batch as one such
call, so a backend that can batch (Aer ``parameter_binds``, torch batches) runs
the backward pass as one job.

``shots=None`` asks for exact values; an integer asks for shot estimates, seeded
by ``seed``.

``readout=`` (a :class:`~qsem.circuits.NoiseModel` or
:class:`~qsem.circuits.noise.ReadoutError`\ s) on ``probs``, ``expval`` and ``counts``
of every backend gives the *recorded* values, through the readout confusion
(:mod:`qsem.simulators.readout`): exact probabilities ``p · (⊗ M)``; with shots the
backend's own counts confused shot by shot (seeded by ``seed``); expectation values
of diagonal observables from the recorded probabilities of their wires (others are
refused: they are not measured in the computational basis). The base class adds
this to each subclass's ``probs``/``expval``, so a backend implements only the
ideal measurement.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from qsem.checks import check_shots as _check_shots
from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.observables import Observable, as_observables
from qsem.circuits.operations import normalize_wires
from qsem.circuits.parameters import Parameter

from .engine import TorchSimulator
from .measure import expval as _expval
from .measure import probs as _probs
from .measure import sample as _sample
from .readout import apply_readout, confuse_counts, diagonal_expvals, marginal_readout
from .readout import readout_errors as _readout_errors


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


def _recorded_probs(
    backend: Backend, call: Callable[..., torch.Tensor], job: dict[str, Any], readout: Any
) -> torch.Tensor:
    """``probs`` through the readout confusion ``readout`` of the measured wires."""
    circuit = job["circuit"]
    if not isinstance(circuit, Circuit):  # the backend's own check names the argument
        return call(backend, **job)
    w = list(normalize_wires(job["wires"], "wires"))
    bad = [x for x in w if x >= circuit.num_wires]
    if bad:
        raise arg_error("wires", f"wire(s) {bad} out of range for {circuit.num_wires} wires")
    errs = marginal_readout(_readout_errors(readout, circuit.dims), w)
    dims = circuit.wire_dims(w)
    out = call(backend, **job)
    shots, seed = job.get("shots"), job.get("seed")
    if shots is None:
        return apply_readout(out, dims, errs)
    counts = np.rint(out.numpy() * shots).astype(np.int64)
    rng = np.random.default_rng(None if seed is None else [int(seed), 0x5EAD])
    return torch.from_numpy(confuse_counts(counts, dims, errs, rng) / shots)


def _recorded_expval(
    backend: Backend, call: Callable[..., torch.Tensor], job: dict[str, Any], readout: Any
) -> torch.Tensor:
    """``expval`` of diagonal observables from the recorded probabilities of their wires."""
    circuit = job.pop("circuit")
    if not isinstance(circuit, Circuit):
        return call(backend, circuit, **job)
    obs = check_observables(circuit, job.pop("observables"))
    wires = sorted({x for o in obs for x in o.wires})
    diagonals = []
    for o in obs:
        d = o.diagonal(circuit.wire_dims(o.wires))
        if d is None:
            raise arg_error(
                "readout",
                f"applies to computational-basis measurements; {o!r} is not diagonal "
                "(rotate into its eigenbasis in the circuit)",
            )
        diagonals.append((d, [wires.index(x) for x in o.wires]))
    p = backend.probs(circuit, wires=wires, readout=readout, **job)  # type: ignore[call-arg]
    return diagonal_expvals(p, circuit.wire_dims(wires), diagonals)


def _with_readout(kind: str, method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``method`` (a subclass's ideal ``probs``/``expval``) taking ``readout=`` too."""
    recorded = _recorded_probs if kind == "probs" else _recorded_expval
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: Backend, *args: Any, readout: Any = None, **kw: Any) -> torch.Tensor:
        if readout is None:
            return method(self, *args, **kw)
        job = signature.bind(self, *args, **kw).arguments
        job.pop(next(iter(signature.parameters)))  # self
        return recorded(self, method, dict(job), readout)

    wrapper.__readout__ = True  # type: ignore[attr-defined]
    return wrapper


class Backend(ABC):
    """Runs one circuit for many parameter sets in one job.

    Every subclass's ``probs`` and ``expval`` also take ``readout=`` (see the module
    docstring); ``counts`` gives integer shot counts.
    """

    name: str = "backend"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for kind in ("probs", "expval"):
            method = cls.__dict__.get(kind)
            if method is not None and not getattr(method, "__readout__", False):
                setattr(cls, kind, _with_readout(kind, method))

    def counts(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        wires: Sequence[int],
        *,
        shots: int,
        seed: int | None = None,
        readout: Any = None,
    ) -> torch.Tensor:
        """Shot counts ``(N, prod dims)`` (int64) of the outcomes on ``wires``, through the
        readout confusion if ``readout`` is given (Aer: leaked shots count in no entry).

        >>> from qsem.circuits import Circuit, X
        >>> from qsem.circuits.noise import ReadoutError
        >>> c = Circuit.qubits(1).add(X(wires=0))
        >>> ro = ReadoutError([[1.0, 0.0], [0.25, 0.75]], wires=0)
        >>> TorchBackend().counts(c, torch.zeros(1, 0), [], [0], shots=1000, seed=1, readout=ro)
        tensor([[250, 750]])
        """
        shots = _check_shots("shots", shots, allow_none=False)
        p = self.probs(  # type: ignore[call-arg]
            circuit, values, names, wires, shots=shots, seed=seed, readout=readout
        )
        return torch.from_numpy(np.rint(p.numpy() * shots).astype(np.int64))

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
