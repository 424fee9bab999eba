"""The adjoint sweep's kernels: local contractions, ``O ψ`` and the backward walk.

:func:`backward_sweep` walks a statevector plan backwards from ``ψ`` and ``λ = O ψ``
(see :mod:`qsem.simulators.adjoint` for the method); :func:`local_outer` is the local
matrix of one step, :func:`apply_observables` builds ``λ``, and
:func:`first_layer_records` handles a first fused layer applied to a basis state
without undoing it.

>>> mu = torch.tensor([[0, 1, 0, 0]], dtype=torch.complex128)
>>> psi = torch.tensor([[0, 0, 0, 1]], dtype=torch.complex128)
>>> local_outer(mu, psi, (2, 2), [0])[0].real
tensor([[0., 1.],
        [0., 0.]], dtype=torch.float64)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from qsem.circuits.observables import Observable
from qsem.circuits.operations import Gate

from . import kernels
from .plan_exec import FusedStep, GateStep, LocalPermutationStep, PermutationStep, Plan, Step
from .plan_state import Context, SimState


def local_outer(
    mu: torch.Tensor, psi: torch.Tensor, shape: Sequence[int], axes: Sequence[int]
) -> torch.Tensor:
    """``M[b, a, c] = Σ_rest μ[b, a, rest] ψ[b, c, rest]`` on ``axes``: ``(B, Dk, Dk)``.

    ``μ = conj(λ)`` (the sweep carries ``conj(λ)``, so no GEMM operand is a conjugated
    view, which batched GEMMs would copy); ``a, c`` index the local space of ``axes``
    (in the given order); ``μ, ψ`` are ``(B, prod(shape))``.

    >>> mu = torch.tensor([[1, 0, 0, 0]], dtype=torch.complex128)
    >>> psi = torch.tensor([[0, 0, 1, 0]], dtype=torch.complex128)
    >>> local_outer(mu, psi, (2, 2), [0])[0].real
    tensor([[0., 1.],
            [0., 0.]], dtype=torch.float64)
    """
    b = mu.shape[0]
    n = len(shape)
    dk = math.prod(shape[a] for a in axes)
    a0 = axes[0]
    if list(axes) == list(range(a0, a0 + len(axes))):
        left = math.prod(shape[:a0])
        right = math.prod(shape[a0 + len(axes) :])
        mv = mu.reshape(b, left, dk, right)
        pv = psi.reshape(b, left, dk, right)
        if right == 1:
            return mv[..., 0].transpose(-1, -2) @ pv[..., 0]
        if left == 1:
            return mv[:, 0] @ pv[:, 0].transpose(-1, -2)
        return (mv @ pv.transpose(-1, -2)).sum(1)
    rest = [a for a in range(n) if a not in axes]
    perm = [0, *[a + 1 for a in axes], *[a + 1 for a in rest]]
    mv = mu.reshape(b, *shape).permute(perm).reshape(b, dk, -1)
    pv = psi.reshape(b, *shape).permute(perm).reshape(b, dk, -1)
    return mv @ pv.transpose(-1, -2)


def apply_observables(
    psi: torch.Tensor, observables: Sequence[Observable], weights: torch.Tensor, dims: tuple
) -> torch.Tensor:
    """``λ_b = Σ_k weights[b, k] O_k ψ_b`` for ``ψ`` ``(B, D)`` and ``weights`` ``(B, K)``.

    Diagonal observables add into one full-register diagonal, applied with one
    product: single-wire ones as per-wire vectors joined by outer sums (about two
    passes over ``D`` in all), multi-wire ones broadcast from their wires; the others
    are applied on their wires.
    """
    b, n = psi.shape[0], len(dims)
    lam: torch.Tensor | None = None
    per_wire: dict[int, torch.Tensor] = {}
    multi: list[tuple[Observable, torch.Tensor, torch.Tensor]] = []
    for k, o in enumerate(observables):
        local = tuple(dims[w] for w in o.wires)
        d = o.diagonal(local)
        if d is None:
            mat = o.matrix(local, dtype=psi.dtype, device=psi.device)
            term = kernels.apply_matrix(psi, mat, dims, list(o.wires))
            term = term * weights[:, k, None].to(psi.dtype)
            lam = term if lam is None else lam + term
            continue
        v = weights[:, k, None] * d.to(dtype=weights.dtype, device=psi.device)  # (B, Dk)
        if len(o.wires) == 1:
            w = o.wires[0]
            per_wire[w] = v if w not in per_wire else per_wire[w] + v
        else:
            multi.append((o, v, d))
    diag: torch.Tensor | None = None
    if per_wire:
        diag = torch.zeros(b, 1, dtype=weights.dtype, device=psi.device)
        for w in range(n):
            vw = per_wire.get(w, torch.zeros(b, dims[w], dtype=weights.dtype, device=psi.device))
            diag = (diag[:, :, None] + vw[:, None, :]).reshape(b, -1)
    for o, v, _ in multi:
        local = tuple(dims[w] for w in o.wires)
        order = sorted(range(len(o.wires)), key=lambda i: o.wires[i])
        t = v.reshape(b, *local).permute(0, *[i + 1 for i in order])
        shape = [dims[a] if a in o.wires else 1 for a in range(n)]
        full = t.reshape(b, *shape).expand(b, *dims).reshape(b, -1)
        diag = full if diag is None else diag + full
    if diag is not None:
        term = psi * diag
        lam = term if lam is None else lam + term
    assert lam is not None
    return lam


def _apply(x: torch.Tensor, mat: torch.Tensor, ctx: Context, wires: list[int]) -> torch.Tensor:
    return kernels.apply_matrix(x, mat, ctx.dims, wires)


def _transpose(u: torch.Tensor) -> torch.Tensor:
    """``U^T``: ``conj(U^† λ) = U^T conj(λ)`` undoes a gate on ``μ = conj(λ)``."""
    return u.transpose(-1, -2)


def _contract(x: torch.Tensor, vecs: list[torch.Tensor], keep: int) -> torch.Tensor:
    """``t[b, a] = Σ x[b, i_1 … a … i_k] Π_{i≠keep} v_i[b, i_i]``: ``x`` ``(B, Π d_i)``
    contracted with every vector ``v_i`` (``(d_i,)`` or ``(B, d_i)``) but the ``keep``-th.

    Trailing axes first (each a GEMV over the remaining leading axes), then leading
    ones: one read of ``x``, then ever smaller tensors.
    """
    b = x.shape[0]
    t = x
    for v in reversed(vecs[keep + 1 :]):
        t = (t.reshape(b, -1, v.shape[-1]) @ v.reshape(-1, v.shape[-1], 1)).reshape(b, -1)
    for v in vecs[:keep]:
        t = (v.reshape(-1, 1, v.shape[-1]) @ t.reshape(b, v.shape[-1], -1)).reshape(b, -1)
    return t


def first_layer_records(
    step: FusedStep, ctx: Context, mu: torch.Tensor, basis: tuple[int, ...]
) -> list[tuple[int, int, torch.Tensor]]:
    """The records of plan step 0, a fused layer applied to the basis state ``|c>``.

    Its input is known, ``ψ' = |c>``, so nothing is undone: with ``U = ⊗_j U_j`` and
    ``v_i = U_i[:, c_i]`` (the factors of the product state the layer made),
    ``M'_j[a, c'] = δ_{c' c_j} Σ_b U_j[b, a] t_j[b]`` where ``t_j`` is ``μ`` contracted with
    every ``v_i``, ``i ≠ j`` (:func:`_contract`): about one read of ``μ`` per block, where
    the general step costs two chain passes and a local contraction per block.
    """
    dims = ctx.dims
    blocks = step.block_matrices(ctx)
    start = {block[0]: j for j, (block, _) in enumerate(blocks)}
    vecs: list[torch.Tensor] = []
    slots: list[tuple[int, int, int]] = []  # (axis, block j, basis index c_j)
    w = 0
    while w < len(dims):
        j = start.get(w)
        if j is None:  # a wire without gates: its basis vector
            vecs.append(ctx.eye(dims[w])[basis[w]])
            w += 1
            continue
        wires, u = blocks[j]
        c = 0
        for v in wires:
            c = c * dims[v] + basis[v]
        slots.append((len(vecs), j, c))
        vecs.append(u[..., :, c])
        w = wires[-1] + 1
    out: list[tuple[int, int, torch.Tensor]] = []
    with torch.profiler.record_function("qsem.adjoint.first_layer_records"):
        for axis, j, c in slots:
            u = blocks[j][1]
            t = _contract(mu, vecs, axis)  # (B, dk)
            col = (t[:, None, :] @ u).squeeze(-2)  # Σ_b t[b] U[b, a]
            m = torch.zeros(*col.shape, u.shape[-1], dtype=col.dtype, device=col.device)
            m[..., c] = col
            out.append((0, j, u.conj() @ m))
    return out


def backward_sweep(
    plan: Plan,
    ctx: Context,
    psi: torch.Tensor,
    lam: torch.Tensor,
    wanted: Sequence[bool],
    basis: tuple[int, ...] | None = None,
) -> list[tuple[int, int, torch.Tensor]]:
    """Walk the plan backwards; return ``(step, block, M)`` for the differentiable blocks.

    ``wanted[s]``: step ``s`` holds a parameter that needs a gradient. ``psi`` and
    ``lam`` are consumed (the caller hands over the final state and ``O ψ``); the sweep
    carries ``μ = conj(λ)`` (undone by ``U^T``), see :func:`local_outer`. ``basis``: the
    levels of the initial state when it is a basis state; a first step that is a fused
    layer then needs no undoing (:func:`first_layer_records`). Nothing is undone past
    the first step.
    """
    out: list[tuple[int, int, torch.Tensor]] = []
    mu = lam.conj().resolve_conj()
    del lam
    for s in range(len(plan.steps) - 1, -1, -1):
        step: Step = plan.steps[s]
        if s == 0 and not wanted[0]:
            break
        if s == 0 and basis is not None and isinstance(step, FusedStep):
            out.extend(first_layer_records(step, ctx, mu, basis))
            break
        if isinstance(step, PermutationStep):
            _, inv = step.indices(ctx.device)
            psi, mu = kernels.index_rows(psi, inv), kernels.index_rows(mu, inv)
        elif isinstance(step, LocalPermutationStep):
            psi = step.unapply(psi, ctx)
            mu = step.unapply(mu, ctx)
        elif isinstance(step, GateStep):
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            u = ctx.matrix(gate)
            wires = list(gate.wires)
            psi = _apply(psi, u.mH, ctx, wires)
            if wanted[s]:
                out.append((s, 0, local_outer(mu, psi, ctx.dims, wires)))
            mu = _apply(mu, _transpose(u), ctx, wires)
        else:  # channels never reach a statevector plan (the entry point refuses them)
            assert isinstance(step, FusedStep), type(step).__name__
            # U = ⊗_j U_j on disjoint wires: with ψ' = U^† ψ and λ' = U^† λ,
            # <λ| ⊗_{i≠j} U_i ⊗ ∂U_j |ψ'> = <λ'| (U_j^† ∂U_j)_j |ψ'> = Σ ∂U_j ∘ (conj(U_j) M'_j)
            # with M'_j = local_outer(conj(λ'), ψ') on block j: two chain passes undo the layer.
            blocks = step.block_matrices(ctx)
            psi = step.apply_blocks(SimState(psi, "statevector"), ctx, [u.mH for _, u in blocks])
            mu = step.apply_blocks(
                SimState(mu, "statevector"), ctx, [_transpose(u) for _, u in blocks]
            )
            if wanted[s]:
                for j, (wires, u) in enumerate(blocks):
                    m = local_outer(mu, psi, ctx.dims, wires)
                    out.append((s, j, u.conj() @ m))
    return out


__all__ = ["apply_observables", "backward_sweep", "first_layer_records", "local_outer"]
