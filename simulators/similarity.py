"""State similarity: exact overlap and fidelity, and SWAP-test estimates.

Exact functions (torch, differentiable by autograd, batched over leading axes):

* :func:`overlap` ``(a, b)``: ``|<a|b>|²`` for statevectors, ``<a|σ|a>`` for a
  vector and a density matrix, ``Tr(ρσ)`` for two density matrices — what the
  SWAP test measures;
* :func:`fidelity`: the Uhlmann fidelity ``F(ρ, σ) = (Tr sqrt(sqrtρ σ sqrtρ))²``;
  it equals :func:`overlap` when at least one state is pure, and is larger than
  ``Tr(ρσ)`` in general for mixed states;
* :func:`bures_angle` ``= arccos(sqrt F)`` (the ``θ_t`` of the emergence potential), :func:`purity`
  ``Tr ρ²`` and :func:`normalized_overlap` ``Tr(ρσ) / sqrt(Tr ρ² Tr σ²)``.

Inputs are tensors, :class:`~qsem.simulators.state.State` objects, or any object
with a ``to_state()`` method returning a State (duck typed: ``qsem.tensors.Omega``
is one — a pure Ω gives a statevector, a mixed one a density matrix; this package
does not import ``qsem``). A tensor
``(..., D)`` is a (batch of) statevector(s) unless it is square in its last two
axes, ``(..., D, D)``, which makes it a (batch of) density matrix(ces): to pass
``D`` statevectors of dimension ``D`` as one tensor, pass a
:class:`~qsem.simulators.state.State` or add an axis, ``(D, 1, D)``.

SWAP test on the torch engine (:func:`swap_test_probability`,
:func:`swap_test_estimate`, and the destructive variants): the registers are
prepared in the given states as the initial state ``|0><0| ⊗ ρ ⊗ σ`` of the
:func:`~qsem.circuits.templates.swap_test` circuit (statevector mode when both
are pure, density-matrix mode otherwise); ``shots`` ancilla outcomes are drawn
and ``Tr(ρσ) = 2 P(0) - 1`` is reported with a binomial confidence interval
(:func:`binomial_interval`, Wilson or Clopper–Pearson, mapped through ``2p - 1``
and clipped to ``[0, 1]``; the interval and the estimate class live in
:mod:`~qsem.simulators.shot_estimates`). :func:`swap_test_circuits` runs the circuit form
(preparation sub-circuits with symbolic parameters) on any
:class:`~qsem.simulators.backend.Backend`.

>>> import torch
>>> a = torch.tensor([1, 0], dtype=torch.complex128)
>>> b = torch.tensor([1, 1], dtype=torch.complex128) / 2**0.5
>>> round(float(overlap(a, b)), 6)
0.5
>>> est = swap_test_estimate(a, b, shots=1000, seed=7)
>>> bool(est.low <= 0.5 <= est.high)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import DimensionError, arg_error
from qsem.circuits.templates import (
    destructive_swap_signs,
    destructive_swap_test,
    swap_test,
)

from ._similarity_inputs import _as_input, _broadcast_shapes, _dm, _expect, _Input, _pair
from .engine import TorchSimulator
from .measure import probs as _probs
from .measure import sample as _sample
from .shot_estimates import METHODS, OverlapEstimate, binomial_interval, estimate_from_counts
from .shot_estimates import check_confidence as _check_confidence
from .shot_estimates import check_method as _check_method
from .shot_estimates import check_seed as _check_seed
from .shot_estimates import check_shots as _check_shots
from .state import State
from .swap_circuits import (
    SAMPLING,
    destructive_swap_test_circuits,
    resolve_sampling,
    swap_test_circuits,
)
from .swap_circuits import backend_job as backend_job  # re-exported (estimators)

__all__ = [
    "METHODS",
    "SAMPLING",
    "OverlapEstimate",
    "binomial_interval",
    "bures_angle",
    "destructive_swap_test_circuits",
    "destructive_swap_test_estimate",
    "destructive_swap_test_value",
    "estimate_from_counts",
    "fidelity",
    "normalized_overlap",
    "overlap",
    "product_state",
    "psd_sqrt",
    "purity",
    "resolve_sampling",
    "swap_test_circuits",
    "swap_test_estimate",
    "swap_test_probability",
]


# ----------------------------------------------------------------------------------
# exact similarity
# ----------------------------------------------------------------------------------


def overlap(a: Any, b: Any, *, check: bool = True) -> torch.Tensor:
    """``Tr(ρσ)``: ``|<a|b>|²`` for two statevectors, ``<a|σ|a>`` for a vector and a matrix.

    This is what the SWAP test measures. It equals :func:`fidelity` when at least one
    state is pure; for two mixed states it is smaller in general (``Tr(ρσ) <= F``).
    Differentiable; batched over broadcast leading axes; a real tensor.
    ``check=False`` skips the validation of the inputs (norm, Hermitian, PSD, trace).
    """
    ia, ib = _pair(a, b, check)
    if not ia.is_matrix and not ib.is_matrix:
        inner = (ia.tensor.conj() * ib.tensor).sum(-1)
        return inner.real**2 + inner.imag**2
    if not ia.is_matrix:
        return _expect(ia.tensor, ib.tensor)
    if not ib.is_matrix:
        return _expect(ib.tensor, ia.tensor)
    return (ia.tensor * ib.tensor.transpose(-1, -2)).sum((-2, -1)).real


class _PSDSqrt(torch.autograd.Function):
    """``sqrt(ρ)`` of a Hermitian PSD matrix by eigendecomposition.

    The backward pass solves the Sylvester equation ``S X + X S = G`` in the eigenbasis
    (``X_ij = G_ij / (s_i + s_j)``), which stays finite for repeated eigenvalues
    (where differentiating ``eigh`` would divide by zero); on the null space of a
    rank-deficient ``ρ`` (``s_i + s_j = 0``) the derivative is infinite and the
    corresponding entries are set to zero. Eigenvalues below ``10 D eps λ_max``
    (rounding level) count as zero.
    """

    @staticmethod
    def forward(ctx: Any, rho: torch.Tensor) -> torch.Tensor:
        herm = (rho + rho.mH) / 2
        evals, vecs = torch.linalg.eigh(herm)
        # eigenvalues at rounding level are zero: their square roots (~1e-8 in float64)
        # would otherwise add noise of that size to fidelities of rank-deficient states
        tol = 10 * evals.shape[-1] * torch.finfo(evals.dtype).eps
        tol = tol * evals.abs().amax(-1, keepdim=True)
        s = torch.where(evals > tol, evals, 0).sqrt()
        ctx.save_for_backward(s, vecs)
        return (vecs * s[..., None, :].to(vecs.dtype)) @ vecs.mH

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        s, vecs = ctx.saved_tensors
        denom = s[..., :, None] + s[..., None, :]
        tiny = s.amax(-1, keepdim=True)[..., None] * s.shape[-1] * torch.finfo(s.dtype).eps
        k = torch.where(denom > tiny, 1 / denom.clamp(min=torch.finfo(s.dtype).tiny), 0)
        g = vecs.mH @ grad @ vecs
        return vecs @ (g * k.to(g.dtype)) @ vecs.mH


def psd_sqrt(rho: torch.Tensor) -> torch.Tensor:
    """Square root of Hermitian PSD matrices ``(..., D, D)`` (eigendecomposition).

    Differentiable with a backward pass that stays finite at repeated eigenvalues
    (e.g. the maximally mixed state); negative eigenvalues from rounding are clipped.
    """
    if not isinstance(rho, torch.Tensor) or rho.dim() < 2 or rho.shape[-1] != rho.shape[-2]:
        shape = tuple(rho.shape) if isinstance(rho, torch.Tensor) else type(rho).__name__
        raise arg_error("rho", f"expected a tensor of shape (..., D, D), got {shape}")
    return _PSDSqrt.apply(rho)


def fidelity(a: Any, b: Any, *, check: bool = True) -> torch.Tensor:
    """Uhlmann fidelity ``F(ρ, σ) = (Tr sqrt(sqrtρ σ sqrtρ))²`` in ``[0, 1]``.

    Computed as ``(Σ singular values of sqrtρ · sqrtσ)²`` — the same number, since
    ``sqrtρ σ sqrtρ = X X^†`` with ``X = sqrtρ sqrtσ`` — with ``sqrtρ`` from the
    eigendecomposition (:func:`psd_sqrt`). For a statevector ``|a>`` the factor is
    ``|a>`` itself, so ``F = <a|σ|a>``, and ``F = |<a|b>|²`` for two statevectors: for
    pure inputs the fidelity is the :func:`overlap`. Differentiable (finite at
    repeated eigenvalues; at rank-deficient mixed states ``F`` is not smooth and the
    gradient is a finite one-sided choice) and batched.
    """
    ia, ib = _pair(a, b, check)
    if not ia.is_matrix or not ib.is_matrix:
        return overlap(ia.tensor, ib.tensor, check=False)
    x = psd_sqrt(ia.tensor) @ psd_sqrt(ib.tensor)
    root = torch.linalg.svdvals(x).sum(-1)
    return root**2


def bures_angle(a: Any, b: Any, *, check: bool = True) -> torch.Tensor:
    """Bures angle ``arccos(sqrt F)`` in ``[0, π/2]`` (the ``θ_t`` of the emergence potential).

    Evaluated as ``atan2(sqrt(1 - F), sqrt F)``, accurate near ``F = 1`` where
    ``arccos`` loses digits. Its gradient is infinite at ``F = 1`` (equal states).
    """
    f = fidelity(a, b, check=check).clamp(0, 1)
    return torch.atan2((1 - f).clamp(min=0).sqrt(), f.sqrt())


def purity(x: Any, *, check: bool = True) -> torch.Tensor:
    """``Tr ρ²`` (``1`` for a normalised statevector); tensors or States, batched."""
    ix = _as_input(x, "x", check)
    t = ix.tensor
    if not ix.is_matrix:
        return (t.real**2 + t.imag**2).sum(-1) ** 2
    return (t * t.transpose(-1, -2)).sum((-2, -1)).real


def normalized_overlap(a: Any, b: Any, *, check: bool = True) -> torch.Tensor:
    """``Tr(ρσ) / sqrt(Tr ρ² Tr σ²)``: 1 for equal states, pure or mixed.

    The quantum emergence detector of §7 uses ``1 - normalized_overlap(ρ_t, ρ_{t-1})``.
    """
    ia, ib = _pair(a, b, check)
    num = overlap(ia.tensor, ib.tensor, check=False)
    pa = purity(ia.tensor, check=False)
    pb = purity(ib.tensor, check=False)
    return num / (pa * pb).sqrt()


# ----------------------------------------------------------------------------------
# product states and register dims
# ----------------------------------------------------------------------------------


def product_state(*states: Any, check: bool = True) -> torch.Tensor:
    """Tensor (Kronecker) product ``s_0 ⊗ s_1 ⊗ ...``, ``s_0`` most significant.

    Statevectors give a statevector; if any factor is a density matrix, every factor
    is turned into one and the product is a density matrix. Leading batch axes
    broadcast. Inputs are tensors or States (read as in :func:`overlap`).
    """
    if not states:
        raise arg_error("states", "need at least one state")
    ins = [_as_input(s, f"states[{i}]", check) for i, s in enumerate(states)]
    dtype = ins[0].tensor.dtype
    for x in ins[1:]:
        dtype = torch.promote_types(dtype, x.tensor.dtype)
    try:
        _broadcast_shapes(*(x.batch_shape for x in ins))
    except ValueError:
        shapes = [tuple(x.batch_shape) for x in ins]
        raise arg_error("states", f"batch shapes {shapes} do not broadcast") from None
    if not any(x.is_matrix for x in ins):
        out = ins[0].tensor.to(dtype)
        for x in ins[1:]:
            t = x.tensor.to(dtype)
            out = out[..., :, None] * t[..., None, :]
            out = out.reshape(*out.shape[:-2], -1)
        return out
    out = _dm(ins[0]).to(dtype)
    for x in ins[1:]:
        t = _dm(x).to(dtype)
        da, db = out.shape[-1], t.shape[-1]
        out = out[..., :, None, :, None] * t[..., None, :, None, :]
        out = out.reshape(*out.shape[:-4], da * db, da * db)
    return out


def _register_dims(dims: Sequence[int] | None, ia: _Input) -> tuple[int, ...]:
    """Wire dims of a register: given, from a State, ``[2]*n`` for ``D = 2^n``, else ``[D]``."""
    d = ia.dim
    if dims is None:
        if ia.dims is not None:
            return ia.dims
        n = d.bit_length() - 1
        return (2,) * n if d == 1 << n and n >= 1 else (d,)
    if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
        dims = [2] * int(dims)
    out = Circuit(dims).dims  # validated (errors say 'dims')
    if math.prod(out) != d:
        raise DimensionError(
            f"argument 'dims': wire dims {list(out)} give dimension {math.prod(out)}, "
            f"the states have dimension {d}"
        )
    return out


def _flatten_batch(t: torch.Tensor, is_matrix: bool) -> tuple[torch.Tensor, torch.Size]:
    batch = t.shape[:-2] if is_matrix else t.shape[:-1]
    tail = t.shape[len(batch) :]
    if len(batch) == 0:
        return t, batch
    return t.reshape(-1, *tail), batch


def _ancilla(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor([1, 0], dtype=dtype, device=device)


def _run_swap_test(
    a: Any, b: Any, dims: Sequence[int] | None, check: bool, dtype: torch.dtype | None
) -> tuple[State, torch.Size]:
    ia, ib = _pair(a, b, check)
    reg = _register_dims(dims, ia)
    circuit = swap_test(list(reg))
    dt = dtype or (ia.tensor.dtype if ia.tensor.dtype.is_complex else torch.complex128)
    mixed = ia.is_matrix or ib.is_matrix
    init = product_state(_ancilla(dt, ia.tensor.device), ia.tensor, ib.tensor, check=False)
    init, batch = _flatten_batch(init, mixed)
    mode = "density_matrix" if mixed else "statevector"
    sim = TorchSimulator(mode, dtype=dt, device=ia.tensor.device)
    return sim.run(circuit, initial_state=init), batch


def swap_test_probability(
    a: Any,
    b: Any,
    *,
    dims: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Exact ``P(ancilla = 0) = (1 + Tr(ρσ)) / 2`` of the SWAP test, run on the torch engine.

    The registers get ``dims`` (default: a State's dims; ``[2]*n`` for ``D = 2^n``;
    else one wire of dimension ``D``). Differentiable; batched like :func:`overlap`.
    """
    state, batch = _run_swap_test(a, b, dims, check, dtype)
    p0 = _probs(state, [0])[..., 0]
    return p0.reshape(batch) if len(batch) else p0


def _run_destructive(
    a: Any, b: Any, dims: Sequence[int] | None, check: bool, dtype: torch.dtype | None
) -> tuple[State, torch.Size, tuple[int, ...]]:
    ia, ib = _pair(a, b, check)
    reg = _register_dims(dims, ia)
    circuit = destructive_swap_test(list(reg))
    dt = dtype or ia.tensor.dtype
    mixed = ia.is_matrix or ib.is_matrix
    init = product_state(ia.tensor, ib.tensor, check=False)
    init, batch = _flatten_batch(init, mixed)
    mode = "density_matrix" if mixed else "statevector"
    sim = TorchSimulator(mode, dtype=dt, device=ia.tensor.device)
    return sim.run(circuit, initial_state=init), batch, reg


def destructive_swap_test_value(
    a: Any,
    b: Any,
    *,
    dims: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Exact ``Tr(ρσ) = Σ_k P(k) s_k`` from the destructive SWAP test on the torch engine."""
    state, batch, reg = _run_destructive(a, b, dims, check, dtype)
    p = _probs(state)
    val = p @ destructive_swap_signs(reg, dtype=p.dtype, device=p.device)
    return val.reshape(batch) if len(batch) else val


# ----------------------------------------------------------------------------------
# shot estimates
# ----------------------------------------------------------------------------------


def swap_test_estimate(
    a: Any,
    b: Any,
    shots: int,
    seed: int | None = None,
    *,
    confidence: float = 0.95,
    method: str = "wilson",
    dims: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> OverlapEstimate:
    """Estimate ``Tr(ρσ)`` with the SWAP test on the torch engine from ``shots`` outcomes.

    Runs :func:`~qsem.circuits.templates.swap_test` with the registers prepared in
    ``a`` and ``b`` (statevectors or density matrices, tensors or States, batched),
    draws ``shots`` ancilla outcomes (seeded by ``seed``) per batch element, and
    returns the estimate ``2 P0 - 1`` with a ``confidence`` interval (``method``
    ``"wilson"`` or ``"clopper-pearson"``; see :func:`estimate_from_counts`).
    """
    n = _check_shots(shots)
    seed = _check_seed(seed)
    _check_confidence(confidence)
    _check_method(method)
    with torch.no_grad():
        state, batch = _run_swap_test(a, b, dims, check, dtype)
        samples = _sample(state, n, [0], seed=seed)  # (..., shots, 1)
    zeros = (samples[..., 0] == 0).sum(-1)
    zeros = zeros.reshape(batch) if len(batch) else zeros.reshape(())
    return estimate_from_counts(zeros, n, confidence=confidence, method=method)


def destructive_swap_test_estimate(
    a: Any,
    b: Any,
    shots: int,
    seed: int | None = None,
    *,
    confidence: float = 0.95,
    method: str = "wilson",
    dims: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    check: bool = True,
) -> OverlapEstimate:
    """Estimate ``Tr(ρσ)`` with the destructive SWAP test on the torch engine.

    Draws ``shots`` joint outcomes of all ``2n`` wires; the outcomes with SWAP
    eigenvalue ``+1`` (even parity of ``Σ a_i b_i`` on qubit pairs) have probability
    ``(1 + Tr(ρσ)) / 2``, so the interval is the same as :func:`swap_test_estimate`'s.
    """
    n = _check_shots(shots)
    seed = _check_seed(seed)
    _check_confidence(confidence)
    _check_method(method)
    with torch.no_grad():
        state, batch, reg = _run_destructive(a, b, dims, check, dtype)
        samples = _sample(state, n, seed=seed)  # (..., shots, 2n)
    full = (*reg, *reg)
    idx = torch.zeros(samples.shape[:-1], dtype=torch.long, device=samples.device)
    for j, d in enumerate(full):
        idx = idx * d + samples[..., j]
    signs = destructive_swap_signs(reg, device=samples.device)
    plus = (signs[idx] > 0).sum(-1)
    plus = plus.reshape(batch) if len(batch) else plus.reshape(())
    return estimate_from_counts(plus, n, confidence=confidence, method=method)


def __getattr__(name: str) -> Any:
    """``SwapTestEstimate``: the former name of :class:`OverlapEstimate` (deprecated)."""
    from .shot_estimates import deprecated_alias

    return deprecated_alias(__name__, name)
