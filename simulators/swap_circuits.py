"""SWAP tests of two preparation circuits on a backend: one job for every pair.

:func:`swap_test_circuits` and :func:`destructive_swap_test_circuits` build the
(destructive) SWAP-test circuit of two preparation circuits and run it for a batch of
parameter rows on any :class:`~qsem.simulators.backend.Backend` (Aer included), with the
shots drawn by the backend or by qsem from exact probabilities (``sampling``). They are
importable from :mod:`qsem.simulators.similarity` as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import DimensionError, QsemTypeError, arg_error
from qsem.circuits.templates import (
    destructive_swap_signs,
    destructive_swap_test,
    swap_test,
    swap_test_registers,
)

from .shot_estimates import OverlapEstimate
from .shot_estimates import check_confidence as _check_confidence
from .shot_estimates import check_method as _check_method
from .shot_estimates import check_seed as _check_seed
from .shot_estimates import check_shots as _check_shots
from .shot_estimates import counts_estimate as _estimate

__all__ = [
    "SAMPLING",
    "backend_job",
    "destructive_swap_test_circuits",
    "resolve_sampling",
    "swap_test_circuits",
]

#: Who draws the shots in :func:`swap_test_circuits`: the backend, or qsem from exact values.
SAMPLING: tuple[str, ...] = ("auto", "backend", "exact")


def resolve_sampling(sampling: str, backend: Any, circuit: Circuit) -> str:
    """``"auto"`` (the default) -> ``"exact"``: a simulator draws the counts from the exact
    probabilities (seeded ``Binomial(shots, p)``: the distribution of measuring its final
    state ``shots`` times, without the per-shot cost), unless the backend cannot give exact
    probabilities (Aer's ``method="statevector"`` on a circuit with channels samples noise
    trajectories): then ``"backend"``. ``"backend"`` / ``"exact"`` are kept as given."""
    if sampling != "auto":
        return sampling
    if getattr(backend, "method", None) == "statevector" and circuit.has_channels:
        return "backend"
    return "exact"


def _swap_circuit(prep_a: Any, prep_b: Any, destructive: bool) -> Circuit:
    """The (destructive) SWAP-test circuit of two preparation circuits (types checked)."""
    for name, prep in (("prep_a", prep_a), ("prep_b", prep_b)):
        if not isinstance(prep, Circuit):
            raise arg_error(name, f"expected a Circuit, got {type(prep).__name__}", QsemTypeError)
    if not destructive:
        return swap_test(list(prep_a.dims), list(prep_b.dims), prep_a=prep_a, prep_b=prep_b)
    if prep_a.dims != prep_b.dims:
        raise DimensionError(
            f"argument 'prep_b': dims {list(prep_b.dims)} differ from {list(prep_a.dims)} "
            "of 'prep_a'"
        )
    return destructive_swap_test(list(prep_a.dims), prep_a=prep_a, prep_b=prep_b)


def backend_job(
    circuit: Circuit,
    wires: Sequence[int] | None,
    backend: Any,
    values: torch.Tensor | None,
    names: Sequence[str] | None,
    shots: int | None,
    seed: int | None,
    confidence: float,
    method: str,
    sampling: str,
) -> tuple[torch.Tensor, int | None, int | None, str]:
    """One overlap job of ``circuit`` on a backend (the SWAP tests' and
    compute–uncompute's), its arguments checked: the float64 probabilities ``(N, K)`` of
    ``wires`` (None: every wire), exact or drawn by the backend as ``sampling`` resolves
    (:func:`resolve_sampling`), with ``(shots, seed, sampling)`` as checked/resolved."""
    from .backend import Backend, TorchBackend

    if backend is None:
        backend = TorchBackend()
    if not isinstance(backend, Backend):
        raise arg_error(
            "backend", f"expected a Backend instance, got {type(backend).__name__}", QsemTypeError
        )
    names = list(circuit.parameters if names is None else names)
    if values is None:
        if names:
            raise arg_error("values", f"the circuits have parameters {names}; pass their values")
        values = torch.zeros(1, 0, dtype=torch.float64)
    n_shots = None if shots is None else _check_shots(shots)
    seed = _check_seed(seed)
    if n_shots is not None:
        _check_confidence(confidence)
        _check_method(method)
    if sampling not in SAMPLING:
        raise arg_error("sampling", f"must be one of {list(SAMPLING)}, got {sampling!r}")
    sampling = resolve_sampling(sampling, backend, circuit)
    exact = n_shots is None or sampling == "exact"
    wires = list(range(circuit.num_wires)) if wires is None else list(wires)
    p = backend.probs(circuit, values, names, wires, shots=None if exact else n_shots, seed=seed)
    return p.to(torch.float64), n_shots, seed, sampling


def swap_test_circuits(
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
    """The SWAP test of two state-preparation circuits on a :class:`Backend`, one job.

    ``prep_a`` and ``prep_b`` act on the same register dims; their symbolic
    parameters (distinct names unless shared on purpose) take the columns ``names``
    (default: the circuit's parameters in order of appearance) of ``values``
    ``(N, P)``: the ``N`` pairs run as one backend job. ``backend``: a
    :class:`~qsem.simulators.backend.Backend` (default: the torch engine in
    complex128; e.g. ``AerBackend()``). ``shots=None`` returns the exact
    ``Tr(ρσ) = 2 P0 - 1`` as a float64 tensor ``(N,)``; an integer returns a
    :class:`OverlapEstimate` of shape ``(N,)`` from ``shots`` ancilla outcomes
    per pair, seeded by ``seed``.

    ``sampling="auto"`` (default): ``"exact"`` wherever the backend gives exact
    probabilities (:func:`resolve_sampling`). ``sampling="backend"``: the backend draws
    the shots (Aer measures the circuit ``shots`` times). ``sampling="exact"``: the
    backend computes the exact
    ancilla probability (one job, as with ``shots=None``) and qsem draws the
    ``Binomial(shots, P0)`` count per pair with a torch generator seeded by ``seed`` —
    the same distribution as measuring a simulator's final state ``shots`` times (what
    Aer's measurement sampling does, without its per-shot cost), but not a model of
    hardware or of mid-circuit measurement.
    """
    circuit = _swap_circuit(prep_a, prep_b, destructive=False)
    anc = swap_test_registers(list(prep_a.dims))[0]
    p, n_shots, seed, sampling = backend_job(
        circuit, [anc], backend, values, names, shots, seed, confidence, method, sampling
    )
    p0 = p[:, 0]
    if n_shots is None:
        return 2 * p0 - 1
    return _estimate(p0, n_shots, seed, sampling, confidence, method)


def destructive_swap_test_circuits(
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
    """:func:`swap_test_circuits` with the destructive SWAP test (no ancilla).

    The backend returns the joint outcome distribution of all ``2n`` wires;
    ``Tr(ρσ) = Σ_k P(k) s_k`` exactly, or from the count of outcomes with SWAP
    eigenvalue ``s = +1`` with shots.
    """
    circuit = _swap_circuit(prep_a, prep_b, destructive=True)
    p, n_shots, seed, sampling = backend_job(
        circuit, None, backend, values, names, shots, seed, confidence, method, sampling
    )
    signs = destructive_swap_signs(list(prep_a.dims), device=p.device)
    if n_shots is None:
        return p @ signs
    p_plus = (p * (signs > 0)).sum(-1)
    return _estimate(p_plus, n_shots, seed, sampling, confidence, method)
