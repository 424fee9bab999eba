r"""The superoperators of a :class:`~.plan_super.SuperStep`'s blocks, built at run time.

A block (wires ``W``, operations cut into *runs* on one wire tuple each) acts on ρ
through the product of its operations' superoperators,

.. math:: S_U = U \otimes \bar U, \qquad S_{\{K_j\}} = \sum_j K_j \otimes \bar K_j,

each run's product embedded in the block's pair space (identity on the block's other
wires). Three things keep the per-call work small:

* **Parameter-free parts are built once.** An operation is *constant* when none of
  its parameters is bound at run time and no tensor it holds needs a gradient. The
  superoperator of consecutive constant runs of a block (a whole block when all of it
  is constant), and of each stretch of constant operations inside a run that holds a
  channel, is kept by the step (:class:`Constants`) and reused while the operations
  at those indices hold the same numbers and the same, unmodified tensors.
* **Variable gates are evaluated together:** one matrix (and one ``U ⊗ conj U``) per
  gate formula, with stacked parameters (:func:`gate_matrices`).
* **Runs are multiplied together:** every run's factors (cached stretches, gates) are
  padded with identities to one length and multiplied pairwise for all runs at once,
  ``⌈log2 m⌉`` batched products instead of one product per factor
  (:func:`chain_products`).

>>> import torch
>>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0]]); z = torch.diag(torch.tensor([1.0, -1.0]))
>>> [p.tolist() for p in chain_products([[x, z], [z]], torch.eye(2))]  # [z x, z]
[[[0.0, 1.0], [-1.0, 0.0]], [[1.0, 0.0], [0.0, -1.0]]]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from qsem.circuits.operations import Channel, Gate, Operation
from qsem.circuits.parameters import Parameter

from . import kernels
from .plan_state import Context

#: A run: the operations' indices, their wire tuple, the embedding permutation.
Run = tuple[list[int], tuple[int, ...], list[int] | None]


def gate_matrices(
    idx: list[int], ctx: Context, sups: dict[int, torch.Tensor] | None = None
) -> dict[int, torch.Tensor]:
    """The matrices of the one-wire gates among ops ``idx``: one evaluation per gate
    formula, wire dimension and parameter vector, with stacked parameters (as a fused
    layer evaluates them); a parameter-free gate's matrix is shared by every gate of its formula.
    With ``sups``, also each gate's superoperator ``U ⊗ conj(U)`` (one Kronecker
    product per formula) is put there."""
    groups: dict[Any, list[int]] = {}
    for i in idx:
        op = ctx.ops[i]
        if isinstance(op, Gate) and len(op.wires) == 1:
            # one group per parameter vector: its values are read as one slice
            names = tuple(p.name if isinstance(p, Parameter) else None for p in op.params)
            groups.setdefault((op.matrix_key(), ctx.dims[op.wires[0]], names), []).append(i)
    out: dict[int, torch.Tensor] = {}
    for (_, d, _), group in groups.items():
        rep = ctx.ops[group[0]]
        assert isinstance(rep, Gate)
        params = [
            ctx.stacked_param([ctx.ops[i].params[k] for i in group]) for k in range(len(rep.params))
        ]
        m = rep.matrix(params, (d,), dtype=ctx.dtype, device=ctx.device)
        if not params:
            m = ctx._cut(m, 3)
            out.update(dict.fromkeys(group, m))
            if sups is not None:
                sups.update(dict.fromkeys(group, unitary_superop(m)))
            continue
        out.update(zip(group, m.unbind(-3), strict=True))
        if sups is not None:
            sups.update(zip(group, unitary_superop(m).unbind(-3), strict=True))
    return out


def pair_kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a ⊗ b`` of ``(..., p, p)`` and ``(..., q, q)`` matrices (broadcast leading axes):
    ``(..., pq, pq)``, the same as ``kernels.kron([a, b])``, computed with the stack on
    the last axis (one contiguous outer product instead of ``p²q²`` strided ones per
    matrix: about 3× faster for stacks of small matrices)."""
    lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    p, q = a.shape[-1], b.shape[-1]
    ta = a.expand(*lead, p, p).reshape(-1, p, p).permute(1, 2, 0).contiguous()  # (p, p, N)
    tb = b.expand(*lead, q, q).reshape(-1, q, q).permute(1, 2, 0).contiguous()
    out = ta[:, None, :, None] * tb[None, :, None, :]  # (i, k, j, l, N)
    return out.reshape(p * q, p * q, -1).permute(2, 0, 1).reshape(*lead, p * q, p * q)


def unitary_superop(u: torch.Tensor) -> torch.Tensor:
    """``U ⊗ conj(U)`` of ``(..., d, d)`` matrices: ``(..., d², d²)`` (:func:`pair_kron`)."""
    return pair_kron(u, u.conj())


def _atoms(value: Any, out: list[Any]) -> bool:
    """Append what fixes a parameter-free value (numbers and strings by value; tensors
    with their in-place version counter; any other object by identity); ``False``
    when it holds a :class:`Parameter` or a tensor that needs a gradient. Operations
    are read through their attributes (a ``Kraus`` set, a ``Unitary``'s matrix, a
    controlled gate's base)."""
    if isinstance(value, Parameter):
        return False
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            return False
        out += (value, value._version)
        return True
    if isinstance(value, Operation):
        return all(_atoms(v, out) for v in getattr(value, "__dict__", {}).values())
    if isinstance(value, (list, tuple)):
        return all(_atoms(v, out) for v in value)
    out.append(value)
    return True


def _same(a: list[Any], b: list[Any]) -> bool:
    """Atoms equal: numbers and strings by value, everything else by identity (the
    cache holds the objects, so no id is reused)."""
    return len(a) == len(b) and all(
        type(x) is type(y) and x == y if isinstance(x, (int, float, str)) else x is y
        for x, y in zip(a, b, strict=True)
    )


class Constants:
    """One run's view of a step's cache of parameter-free superoperators.

    ``atoms[i]``: what fixes constant operation ``i`` (:func:`_atoms`); variable
    operations are absent. :meth:`get` returns the superoperator kept under a key
    while the operations it was built from have the same atoms (the plan is shared by
    circuits of one structure, whose constants may differ), else builds it. Only
    unbatched results that need no gradient are kept; ``counts`` records hits and
    builds. ``sups``: superoperators of the variable one-wire gates
    (:func:`gate_matrices` fills it).
    """

    def __init__(
        self, store: dict[Any, Any], counts: dict[str, int], idx: list[int], ctx: Context
    ) -> None:
        self.store, self.counts, self.ctx = store, counts, ctx
        self.sups: dict[int, torch.Tensor] = {}
        self.atoms: dict[int, list[Any]] = {}
        for i in idx:
            atoms: list[Any] = []
            if _atoms(ctx.ops[i], atoms):
                self.atoms[i] = atoms

    def all(self, idx: list[int]) -> bool:
        """True when every operation of ``idx`` is constant."""
        return all(i in self.atoms for i in idx)

    def stretches(self, idx: list[int]) -> list[tuple[list[int], bool]]:
        """``idx`` cut into maximal constant stretches holding a channel (``True``:
        cached) and the operations between them (constant gates without a channel are
        composed with their neighbours: a few ``d × d`` products)."""
        ops = self.ctx.ops
        out: list[tuple[list[int], bool]] = []
        k = 0
        while k < len(idx):
            j = k
            while j < len(idx) and idx[j] in self.atoms:
                j += 1
            if any(isinstance(ops[i], Channel) for i in idx[k:j]):
                out.append((idx[k:j], True))
            else:
                j = max(j, k + 1)  # a variable operation, or constant gates
                if out and not out[-1][1]:
                    out[-1][0].extend(idx[k:j])
                else:
                    out.append((idx[k:j], False))
            k = j
        return out

    def get(self, key: Any, idx: list[int], build: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The superoperator of constant operations ``idx`` kept under ``key``."""
        atoms = [a for i in idx for a in self.atoms[i]]
        key = (key, self.ctx.dtype, str(self.ctx.device))
        hit = self.store.get(key)
        if hit is not None and _same(hit[0], atoms):
            self.counts["hit"] += 1
            return hit[1]
        value = build()
        self.counts["built"] += 1
        if value.dim() == 2 and not value.requires_grad:
            self.store[key] = (atoms, value)
        return value


def compose(
    idx: list[int],
    ctx: Context,
    mats: dict[int, torch.Tensor] | None = None,
    sups: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The superoperator of operations ``idx`` on one wire tuple, on those wires.

    Gates multiply as matrices (``U = U_m ⋯ U_1``) until a channel, whose Kraus
    operators absorb them (``K_j U``); only then is a superoperator formed:
    ``Σ_j w_j K_j U ⊗ conj(K_j U)``, or ``U ⊗ conj(U)`` for trailing gates (a lone
    gate's is taken from ``sups`` when there).
    """
    if len(idx) == 1 and sups is not None and idx[0] in sups:
        return sups[idx[0]]
    run: torch.Tensor | None = None
    u: torch.Tensor | None = None
    for i in idx:
        op = ctx.ops[i]
        if isinstance(op, Gate):
            m = mats[i] if mats is not None and i in mats else ctx.matrix(op)
            u = m if u is None else m @ u
            continue
        assert isinstance(op, Channel)
        weights, k = ctx.channel_operators(op)
        if u is not None:
            k = k @ (u[:, None] if u.dim() == 3 else u)
            u = None
        s = kernels.superoperator(k, weights)
        run = s if run is None else s @ run
    if u is not None:
        s = kernels.kron([u, u.conj()])
        run = s if run is None else s @ run
    assert run is not None
    return run


def chain_products(chains: list[list[torch.Tensor]], eye: torch.Tensor) -> list[torch.Tensor]:
    """``F_m ⋯ F_1`` for each chain ``[F_1, …, F_m]`` of ``(q, q)`` or ``(B, q, q)``
    matrices (``eye``: the ``q × q`` identity): every chain padded with identities to
    one power-of-two length, stacked, and multiplied pairwise, all chains together."""
    if all(len(c) == 1 for c in chains):
        return [c[0] for c in chains]
    length = 1 << (max(len(c) for c in chains) - 1).bit_length()
    flat = [f for c in chains for f in [*c, *[eye] * (length - len(c))]]
    x = torch.stack(torch.broadcast_tensors(*flat), -3)
    x = x.reshape(*x.shape[:-3], len(chains), length, *x.shape[-2:])
    while x.shape[-3] > 1:
        x = x[..., 1::2, :, :] @ x[..., 0::2, :, :]
    return list(x[..., 0, :, :].unbind(-3))


def run_superops(
    runs: list[list[int]], ctx: Context, mats: dict[int, torch.Tensor], consts: Constants
) -> list[torch.Tensor]:
    """The superoperators of ``runs`` (each on one wire tuple): their stretches cached
    or composed (:meth:`Constants.stretches`), then multiplied by :func:`chain_products`,
    the runs of one superoperator size together."""
    chains: list[list[torch.Tensor]] = []
    for idx in runs:
        chain = []
        for part, cached in consts.stretches(idx):
            if cached:
                build = partial(compose, part, ctx, mats)
                chain.append(consts.get(("run", tuple(part)), part, build))
            else:
                chain.append(compose(part, ctx, mats, consts.sups))
        chains.append(chain)
    out: dict[int, torch.Tensor] = {}
    for q in sorted({c[0].shape[-1] for c in chains}):
        pick = [k for k, c in enumerate(chains) if c[0].shape[-1] == q]
        prods = chain_products([chains[k] for k in pick], ctx.eye(q))
        out.update(zip(pick, prods, strict=True))
    return [out[k] for k in range(len(runs))]


def _embed(
    s: torch.Tensor,
    op_wires: tuple[int, ...],
    block: list[int],
    perm: list[int] | None,
    ctx: Context,
) -> torch.Tensor:
    """``s`` (on ``op_wires``: rows then columns) as the block's pair-ordered superoperator."""
    d_extra = math.prod(ctx.dims[w] for w in block if w not in op_wires)
    if d_extra > 1:
        s = kernels.kron([s, ctx.eye(d_extra * d_extra)])
    if perm is None:
        return s
    sizes = [ctx.dims[w] for w in op_wires] * 2
    sizes += [ctx.dims[w] for w in block if w not in op_wires for _ in range(2)]
    lead = s.dim() - 2
    t = s.reshape(*s.shape[:lead], *sizes, *sizes)
    m = len(sizes)
    t = t.permute(*range(lead), *[lead + p for p in perm], *[lead + m + p for p in perm])
    return t.reshape(s.shape)


def _on_pair_axis(
    s: torch.Tensor, total: torch.Tensor, pos: int, pair_dims: list[int]
) -> torch.Tensor:
    """``(I ⊗ s ⊗ I) @ total``: ``s`` on the block's pair axis ``pos`` of ``total``'s output
    index (one matrix product; no identity is formed)."""
    left, q = math.prod(pair_dims[:pos]), pair_dims[pos]
    k = total.shape[-1]
    t = total.reshape(*total.shape[:-2], left, q, k * k // (left * q))
    out = s[..., None, :, :] @ t
    return out.reshape(*out.shape[:-3], k, k)


def block_superop(
    wires: list[int],
    runs: list[Run],
    ctx: Context,
    consts: Constants | None = None,
    done: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The superoperator of a block (``wires``, ``runs``) in pair order: ``(k, k)`` or
    ``(B, k, k)``, ``k = Π d_w²``.

    With ``consts``, consecutive runs of constant operations are one cached, embedded
    product. ``done``: variable runs' superoperators by their first operation
    (:func:`run_superops`); a run not there is composed here. Consecutive one-wire
    runs on different wires commute: they enter as one Kronecker product.
    """
    total: torch.Tensor | None = None
    pair_dims = [ctx.dims[v] ** 2 for v in wires]
    pending: dict[int, torch.Tensor] = {}  # one-wire runs waiting to enter, by wire

    def flush() -> None:
        nonlocal total
        if not pending:
            return
        if total is not None and list(pending) == [wires[0]]:  # (s ⊗ I) @ total: one bmm
            total = _on_pair_axis(pending[wires[0]], total, 0, pair_dims)
        else:
            factors = [pending.get(v) for v in wires]
            k = kernels.kron(
                [ctx.eye(q) if f is None else f for f, q in zip(factors, pair_dims, strict=True)]
            )
            total = k if total is None else k @ total
        pending.clear()

    k = 0
    while k < len(runs):
        j = k
        while consts is not None and j < len(runs) and consts.all(runs[j][0]):
            j += 1
        if consts is not None and j > k:
            flush()
            part = runs[k:j]
            ops = [i for r in part for i in r[0]]
            build = partial(block_superop, wires, part, ctx)
            s = consts.get(("block", tuple(wires), tuple(ops)), ops, build)
            total = s if total is None else s @ total
            k = j
            continue
        idx, w, perm = runs[k]
        k += 1
        run = done[idx[0]] if done is not None and idx[0] in done else compose(idx, ctx)
        if len(w) == 1 and len(wires) > 1:  # one wire's pair axis: no embedding
            if w[0] in pending:
                flush()
            pending[w[0]] = run
            continue
        flush()
        run = _embed(run, w, wires, perm, ctx)
        total = run if total is None else run @ total
    flush()
    assert total is not None
    if total.dim() == 3 and total.shape[0] == 1:
        total = total[0]
    return total


__all__ = [
    "Constants",
    "block_superop",
    "chain_products",
    "compose",
    "gate_matrices",
    "run_superops",
]
