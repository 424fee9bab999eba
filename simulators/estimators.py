"""Estimators of the overlap of two states of one parameterised circuit.

Successive training states ``|ψ_t> = U(θ_t)|0>`` and ``|ψ_{t−1}> = U(θ_{t−1})|0>``
are two bindings of the same circuit. Three estimators of ``F = |<ψ_t|ψ_{t−1}>|²``
(``Tr(ρσ)`` for mixed states) from ``N`` shots:

=====================  ======================================  ===================
method                 counted outcome, its probability         variance of ``F̂``
=====================  ======================================  ===================
``compute_uncompute``  all zeros after ``U_a`` then ``U_b^†``:   ``F (1 − F) / N``
                       ``P(0…0) = F`` (pure states only)
``swap``               ancilla 0 of the SWAP test:              ``(1 − F²) / N``
                       ``(1 + F) / 2``
``destructive``        SWAP eigenvalue +1 of the Bell-basis     ``(1 − F²) / N``
                       measurement: ``(1 + F) / 2``
=====================  ======================================  ===================

Near ``F ≈ 1`` (successive training states, ``1 − F ~ 1e-3``) compute–uncompute
needs ``(1 + F) / F ≈ 2`` times fewer shots than the SWAP tests *at the same
F* — more precisely ``F(1 − F)`` against ``(1 − F)(1 + F)`` — and it uses one
register instead of two (plus an ancilla). It is the default
(:data:`DEFAULT_METHOD`); the shots each needs for a given RMS error are measured
on the "Emergence detection" page of the documentation. It requires a circuit of
gates only (it runs the adjoint); the SWAP tests also take circuits with
channels (mixed states, where they measure ``Tr(ρσ)``, not the Uhlmann fidelity).

>>> import torch
>>> from qsem.circuits import RY, Circuit, Parameter
>>> c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
>>> f = estimate_overlap(c, {"x": torch.tensor([0.0, 1.0])}, {"x": 0.0})
>>> [round(v, 6) for v in f.tolist()]  # cos²(x/2)
[1.0, 0.770151]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.parameters import Parameter
from qsem.circuits.templates import compute_uncompute

from .shot_estimates import (
    METHODS,
    OverlapEstimate,
    check_shots,
    counts_estimate,
)
from .similarity import (
    backend_job,
    destructive_swap_test_circuits,
    swap_test_circuits,
)

__all__ = [
    "DEFAULT_METHOD",
    "OVERLAP_METHODS",
    "compute_uncompute_circuits",
    "estimate_overlap",
    "overlap_variance",
    "two_bindings",
]

#: The estimators of :func:`estimate_overlap`.
OVERLAP_METHODS: tuple[str, ...] = ("compute_uncompute", "swap", "destructive")
#: The one needing the fewest shots at equal error near ``F ≈ 1`` (measured; see the
#: "Emergence detection" page of the documentation; ``F(1 − F)/N`` against ``(1 − F²)/N``).
DEFAULT_METHOD = "compute_uncompute"


def overlap_variance(f: Any, shots: int, method: str = DEFAULT_METHOD) -> torch.Tensor:
    """Closed-form variance of the unclipped shot estimate of ``F`` (pure states).

    ``F (1 − F) / N`` for compute–uncompute, ``(1 − F²) / N`` for both SWAP tests.
    """
    if method not in OVERLAP_METHODS:
        raise arg_error("method", f"must be one of {list(OVERLAP_METHODS)}, got {method!r}")
    n = check_shots(shots)
    f_t = torch.as_tensor(f, dtype=torch.float64)
    if method == "compute_uncompute":
        return f_t * (1 - f_t) / n
    return (1 - f_t * f_t) / n


def compute_uncompute_circuits(
    prep_a: Circuit,
    prep_b: Circuit,
    *,
    backend: Any = None,
    values: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    shots: int | None = None,
    seed: int | None = None,
    confidence: float = 0.95,
    method: str = "wilson",
    sampling: str = "auto",
) -> torch.Tensor | OverlapEstimate:
    """Compute–uncompute ``U_a`` then ``U_b^†`` on a :class:`Backend`, one job.

    Same arguments as :func:`~qsem.simulators.similarity.swap_test_circuits`.
    ``shots=None``: the exact ``P(0…0) = |<ψ_b|ψ_a>|²`` per row, float64 ``(N,)``;
    an integer: an :class:`OverlapEstimate` (``mapping="direct"``: ``F̂`` is the
    observed all-zeros frequency itself, with its binomial interval).
    """
    circuit = compute_uncompute(prep_a, prep_b)
    p, n_shots, seed, sampling = backend_job(
        circuit, None, backend, values, names, shots, seed, confidence, method, sampling
    )
    p0 = p[:, 0]
    if n_shots is None:
        return p0
    return counts_estimate(p0, n_shots, seed, sampling, confidence, method, mapping="direct")


# ----------------------------------------------------------------------------------
# one circuit, two bindings
# ----------------------------------------------------------------------------------


def _as_values(name: str, value: Any, length: int | None) -> torch.Tensor:
    """A binding as float64: ``()`` / ``(N,)`` for a scalar, ``(K,)`` / ``(N, K)`` for a vector."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise arg_error(name, "must be real, got a complex tensor")
        t = value.detach().to(device="cpu", dtype=torch.float64)
    else:
        if isinstance(value, (bool, str)):
            raise arg_error(name, f"expected a number or a tensor, got {value!r}", QsemTypeError)
        try:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise arg_error(
                name, f"expected a number or a tensor, got {type(value).__name__}", QsemTypeError
            ) from None
    want = (0, 1) if length is None else (1, 2)
    if t.dim() not in want or (length is not None and t.shape[-1] < length):
        form = "() or (N,)" if length is None else f"({length},) or (N, {length})"
        raise arg_error(name, f"expected shape {form}, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise arg_error(name, "must be finite")
    return t


def _rename(circuit: Circuit, mapping: Mapping[tuple[str, int | None], str]) -> Circuit:
    """A copy whose symbolic parameters are scalars renamed by ``mapping[(name, index)]``."""
    out = Circuit(circuit.dims)
    for op in circuit.ops:
        if any(isinstance(p, Parameter) for p in op.params):
            new = [
                Parameter(mapping[(p.name, p.index)], p.scale) if isinstance(p, Parameter) else p
                for p in op.params
            ]
            op = op.with_params(new)
        out.ops.append(op)
    return out


def two_bindings(
    circuit: Circuit, params_a: Mapping[str, Any], params_b: Mapping[str, Any]
) -> tuple[Circuit, Circuit, torch.Tensor, list[str]]:
    """Two copies of ``circuit`` with distinct scalar parameters, and their value matrix.

    Every symbolic parameter (an element of a parameter vector included) becomes a
    scalar named ``a<j>`` in the first copy and ``b<j>`` in the second; the returned
    ``values`` ``(N, 2P)`` holds the bindings in the columns ``names``. Scalars
    broadcast against batches of ``N`` rows.
    """
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    lengths = circuit.parameter_lengths
    keys: list[tuple[str, int | None]] = []
    for op in circuit.ops:
        for p in op.params:
            if isinstance(p, Parameter) and (p.name, p.index) not in keys:
                keys.append((p.name, p.index))
    tables: list[dict[str, torch.Tensor]] = []
    for which, params in (("params_a", params_a), ("params_b", params_b)):
        if not isinstance(params, Mapping):
            raise arg_error(
                which,
                f"expected a mapping name -> value, got {type(params).__name__}",
                QsemTypeError,
            )
        missing = [n for n in lengths if n not in params]
        if missing:
            raise arg_error(which, f"no value for the circuit's parameter(s) {missing}")
        unknown = sorted(set(params) - set(lengths))
        if unknown:
            raise arg_error(which, f"no parameter(s) named {unknown} in the circuit")
        tables.append({n: _as_values(f"{which}['{n}']", params[n], lengths[n]) for n in lengths})
    sizes = {
        int(t.shape[0])
        for table in tables
        for n, t in table.items()
        if t.dim() == (1 if lengths[n] is None else 2)
    }
    if len(sizes) > 1:
        raise arg_error("params_b", f"batch sizes {sorted(sizes)} differ between bindings")
    n_rows = sizes.pop() if sizes else 1
    cols: list[torch.Tensor] = []
    names: list[str] = []
    for prefix, table in zip("ab", tables, strict=True):
        for j, (name, index) in enumerate(keys):
            t = table[name]
            v = t if index is None else t[..., index]
            cols.append(v.expand(n_rows) if v.dim() == 0 else v)
            names.append(f"{prefix}{j}")
    values = torch.stack(cols, 1) if cols else torch.zeros(n_rows, 0, dtype=torch.float64)
    prep_a = _rename(circuit, {k: f"a{j}" for j, k in enumerate(keys)})
    prep_b = _rename(circuit, {k: f"b{j}" for j, k in enumerate(keys)})
    return prep_a, prep_b, values, names


def estimate_overlap(
    circuit: Circuit,
    params_a: Mapping[str, Any],
    params_b: Mapping[str, Any],
    *,
    method: str = DEFAULT_METHOD,
    shots: int | None = None,
    seed: int | None = None,
    backend: Any = None,
    confidence: float = 0.95,
    interval: str = "wilson",
    sampling: str = "auto",
) -> torch.Tensor | OverlapEstimate:
    """The overlap of ``circuit`` bound to ``params_a`` and to ``params_b``, exact or from shots.

    ``circuit``: a parameterised :class:`Circuit` preparing the state from ``|0…0>``;
    ``params_a`` / ``params_b``: name -> value (a scalar, or ``(N,)`` rows; a
    parameter vector ``(K,)`` or ``(N, K)``), e.g. Ω's circuit at step ``t`` and
    ``t − 1``. ``method``: ``"compute_uncompute"`` (default), ``"swap"`` or
    ``"destructive"`` (module table). ``shots=None``: the exact ``Tr(ρσ)``,
    float64 ``(N,)``; an integer: an :class:`OverlapEstimate` ``(N,)`` with
    ``.estimate``, ``.low``, ``.high`` (``interval``: ``"wilson"`` or
    ``"clopper-pearson"`` at ``confidence``), seeded by ``seed``. ``backend``: a
    :class:`~qsem.simulators.backend.Backend` (default: the torch engine,
    complex128; e.g. ``AerBackend()``). ``sampling``: ``"auto"`` (default: ``"exact"``
    wherever the backend gives exact probabilities), ``"backend"`` (the backend draws the
    shots) or ``"exact"`` (exact probabilities, then seeded ``Binomial(shots, p)``
    counts: the same distribution, without per-shot cost).
    """
    if method not in OVERLAP_METHODS:
        raise arg_error("method", f"must be one of {list(OVERLAP_METHODS)}, got {method!r}")
    if method == "compute_uncompute" and isinstance(circuit, Circuit) and circuit.has_channels:
        raise arg_error(
            "method",
            "compute_uncompute runs the adjoint and needs a circuit of gates only; this one has "
            "channels (use method='swap' or 'destructive', which measure Tr(ρσ))",
        )
    if interval not in METHODS:
        raise arg_error("interval", f"must be one of {list(METHODS)}, got {interval!r}")
    prep_a, prep_b, values, names = two_bindings(circuit, params_a, params_b)
    run = {
        "compute_uncompute": compute_uncompute_circuits,
        "swap": swap_test_circuits,
        "destructive": destructive_swap_test_circuits,
    }[method]
    return run(
        prep_a,
        prep_b,
        backend=backend,
        values=values,
        names=names,
        shots=shots,
        seed=seed,
        confidence=confidence,
        method=interval,
        sampling=sampling,
    )
