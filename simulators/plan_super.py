r"""The noisy part of a density-matrix plan as superoperator blocks on a pair-ordered ρ.

A density matrix stored row-major, ``ρ[r_1 … r_n, c_1 … c_n]``, puts a wire's row axis
and its column axis ``n`` axes apart, so a channel on one wire (its superoperator acts
on the pair ``(r_w, c_w)``) needs the whole matrix transposed and copied back. Stored
in *pair order*, ``ρ[(r_1 c_1) (r_2 c_2) … (r_n c_n)]``, the pair of wire ``w`` is one
axis of size ``d_w^2`` and an operation on neighbouring wires acts on neighbouring
axes: one matrix product, no transpose.

:func:`wrap_noisy_region` (called by :func:`~.plan_compile.compile_plan` in
density-matrix mode) replaces the steps from the first channel on by one
:class:`SuperStep`. Its operations (gates and channels alike) are grouped at compile
time into *blocks* (:func:`super_blocks`): an operation joins the latest block it
commutes past whose wires, with its own, span a space of dimension at most
``block_dim`` (4: two qubits, a ``16 × 16`` superoperator), or its own wires when
those are larger. At run time each block's superoperator is the product of its
operations' superoperators,

.. math:: S_U = U \otimes \bar U, \qquad S_{\{K_j\}} = \sum_j K_j \otimes \bar K_j,

each embedded in the block's pair space (identity on the block's other wires); ρ is
gathered into pair order once, each block is one matrix product over its axes, and ρ
is gathered back. A factored ρ whose rank stays at most ``D`` runs the ordinary steps
(:attr:`SuperStep.fallback`) until a channel would make it dense.

>>> import torch
>>> from qsem.circuits import Circuit, CNOT, RX, Depolarizing
>>> from qsem.simulators.plan_compile import compile_plan
>>> c = Circuit.qubits(2).add(RX(0.3, wires=0), Depolarizing(0.1, wires=0), CNOT(wires=[0, 1]))
>>> step = compile_plan(c, "density_matrix").steps[-1]
>>> type(step).__name__, [(b.wires, b.ops) for b in step.blocks_from(1, c.ops)]
('SuperStep', [([0, 1], [1, 2])])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from qsem.circuits.operations import Channel, Gate, Operation
from qsem.circuits.parameters import Parameter

from . import kernels
from .plan_exec import FLAT_DM_PERM_LIMIT, ChannelStep, Step
from .plan_state import Context, SimState

#: Largest Hilbert dimension of a block that operations are merged into (4: two qubits).
SUPER_BLOCK_DIM = 4


@dataclass
class SuperBlock:
    """Operations (indices into the circuit, in order) applied as one superoperator.

    ``wires``: sorted, the union of the operations' wires. ``runs``: the operations cut
    into runs on one same wire tuple (composed before embedding), each with the axis
    permutation that embeds it in the block's pair space (``None``: already in order).
    """

    wires: list[int]
    ops: list[int]
    runs: list[tuple[list[int], tuple[int, ...], list[int] | None]] = field(default_factory=list)


def super_blocks(
    ops: list[Operation], start: int, dims: tuple[int, ...], block_dim: int = SUPER_BLOCK_DIM
) -> list[SuperBlock]:
    """Group ``ops[start:]`` into blocks (module docstring); structure only.

    An operation on wires ``W`` may join block ``m`` when no later block touches ``W``
    (it commutes past them) and the union of wires is within ``block_dim`` or is the
    block's or the operation's own wire set; among those, the smallest union wins
    (ties: the latest block).
    """
    blocks: list[SuperBlock] = []
    last: dict[int, int] = {}
    for i in range(start, len(ops)):
        wires = set(ops[i].wires)
        first = max((last[w] for w in wires if w in last), default=0)
        best, best_dim = -1, 0
        for m in range(first, len(blocks)):
            union = wires | set(blocks[m].wires)
            dim = math.prod(dims[w] for w in union)
            if (dim <= block_dim or union in (wires, set(blocks[m].wires))) and (
                best < 0 or dim <= best_dim
            ):
                best, best_dim = m, dim
        if best < 0:
            blocks.append(SuperBlock(sorted(wires), [i]))
            best = len(blocks) - 1
        else:
            blocks[best].wires = sorted(wires | set(blocks[best].wires))
            blocks[best].ops.append(i)
        for w in wires:
            last[w] = best
    for b in blocks:
        b.runs = _runs(b, ops, dims)
    return blocks


def _runs(
    block: SuperBlock, ops: list[Operation], dims: tuple[int, ...]
) -> list[tuple[list[int], tuple[int, ...], list[int] | None]]:
    """The block's operations cut into runs on one wire tuple, with their embeddings."""
    runs: list[tuple[list[int], tuple[int, ...], list[int] | None]] = []
    for i in block.ops:
        w = tuple(ops[i].wires)
        if runs and runs[-1][1] == w:
            runs[-1][0].append(i)
        else:
            runs.append(([i], w, None))
    return [(idx, w, _embedding(list(w), block.wires)) for idx, w, _ in runs]


def _embedding(op_wires: list[int], block_wires: list[int]) -> list[int] | None:
    """Axis order taking ``(rows of op_wires, cols of op_wires, (r, c) of the others)`` to
    the block's pair order ``(r_w, c_w)`` per block wire; ``None`` when it is the identity."""
    extra = [w for w in block_wires if w not in op_wires]
    labels = [("r", w) for w in op_wires] + [("c", w) for w in op_wires]
    labels += [(k, w) for w in extra for k in ("r", "c")]
    perm = [labels.index((k, w)) for w in block_wires for k in ("r", "c")]
    return None if perm == list(range(len(perm))) else perm


def gate_matrices(
    idx: list[int], ctx: Context, sups: dict[int, torch.Tensor] | None = None
) -> dict[int, torch.Tensor]:
    """The matrices of the one-wire gates among ops ``idx``: one evaluation per gate
    formula and wire dimension, with stacked parameters (as a fused layer evaluates
    them); a parameter-free gate's matrix is shared by every gate of its formula.
    With ``sups``, also each gate's superoperator ``U ⊗ conj(U)`` (one Kronecker
    product per formula) is put there."""
    groups: dict[Any, list[int]] = {}
    for i in idx:
        op = ctx.ops[i]
        if isinstance(op, Gate) and len(op.wires) == 1:
            groups.setdefault((op.matrix_key(), ctx.dims[op.wires[0]]), []).append(i)
    out: dict[int, torch.Tensor] = {}
    for (_, d), group in groups.items():
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
                sups.update(dict.fromkeys(group, kernels.kron([m, m.conj()])))
            continue
        out.update(zip(group, m.unbind(-3), strict=True))
        if sups is not None:
            sups.update(zip(group, kernels.kron([m, m.conj()]).unbind(-3), strict=True))
    return out


def _atoms(value: Any, out: list[Any]) -> bool:
    """Append what fixes a parameter-free value (numbers; tensors with their in-place
    version counter); ``False`` when it holds a :class:`Parameter` or a tensor that
    needs a gradient. Operations are read through their attributes (a ``Kraus`` set,
    a ``Unitary``'s matrix, a controlled gate's base)."""
    if isinstance(value, Parameter):
        return False
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            return False
        out += (value, value._version)
        return True
    if isinstance(value, Operation):
        return all(_atoms(v, out) for v in vars(value).values())
    if isinstance(value, (list, tuple)):
        return all(_atoms(v, out) for v in value)
    if isinstance(value, (int, float)):
        out.append(value)
    return True


def _same(a: list[Any], b: list[Any]) -> bool:
    """Atoms equal: tensors by identity (the cache holds them, so no id is reused)."""
    return len(a) == len(b) and all(
        x is y if isinstance(x, torch.Tensor) else type(x) is type(y) and x == y
        for x, y in zip(a, b, strict=True)
    )


class _Constants:
    """One run's view of a :class:`SuperStep`'s cache of parameter-free superoperators.

    An operation is *constant* when no parameter of it is bound at run time and no
    tensor it holds needs a gradient (:func:`_atoms`). A superoperator built from
    constant operations only is kept in ``store`` under its key with the operations'
    atoms, and reused while a later run's operations at those indices have the same
    atoms (the same numbers, the same tensors unmodified): the plan is shared by
    circuits of one structure, whose constants may differ. Only unbatched results
    that need no gradient are kept; ``counts`` records hits and builds.
    """

    def __init__(
        self, store: dict[Any, Any], counts: dict[str, int], idx: list[int], ctx: Context
    ) -> None:
        self.store, self.counts, self.ctx = store, counts, ctx
        #: superoperators of the variable one-wire gates (filled by :func:`gate_matrices`)
        self.sups: dict[int, torch.Tensor] = {}
        self.atoms: dict[int, list[Any]] = {}
        for i in idx:
            atoms: list[Any] = []
            if _atoms(ctx.ops[i], atoms):
                self.atoms[i] = atoms

    def all(self, idx: list[int]) -> bool:
        return all(i in self.atoms for i in idx)

    def stretches(self, idx: list[int], ctx: Context) -> list[tuple[list[int], bool]]:
        """``idx`` cut into maximal constant stretches holding a channel (``True``:
        cached) and the operations between them (gates-only constant stretches are
        composed with their neighbours: a few ``2 × 2`` products)."""
        out: list[tuple[list[int], bool]] = []
        k = 0
        while k < len(idx):
            j = k
            while j < len(idx) and idx[j] in self.atoms:
                j += 1
            part = idx[k:j]
            if part and any(isinstance(ctx.ops[i], Channel) for i in part):
                out.append((part, True))
                k = j
                continue
            j = max(j, k + 1)  # a variable op, or constant gates: composed per call
            if out and not out[-1][1]:
                out[-1][0].extend(idx[k:j])
            else:
                out.append((idx[k:j], False))
            k = j
        return out

    def get(self, key: Any, idx: list[int], build: Any) -> torch.Tensor:
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


def _run_superop(
    idx: list[int],
    ctx: Context,
    mats: dict[int, torch.Tensor] | None = None,
    consts: _Constants | None = None,
) -> torch.Tensor:
    """The superoperator of operations ``idx`` on one wire tuple, on those wires.

    With ``consts``, each maximal stretch of parameter-free operations holding a
    channel is one cached superoperator (:class:`_Constants`); the stretches between
    them are composed per call (:func:`_compose`).
    """
    if consts is None:
        return _compose(idx, ctx, mats)
    run: torch.Tensor | None = None
    for part, cached in consts.stretches(idx, ctx):
        if cached:
            s = consts.get(("run", tuple(part)), part, lambda p=part: _compose(p, ctx, mats))
        else:
            s = _compose(part, ctx, mats, consts.sups)
        run = s if run is None else s @ run
    assert run is not None
    return run


def _compose(
    idx: list[int],
    ctx: Context,
    mats: dict[int, torch.Tensor] | None = None,
    sups: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The superoperator of operations ``idx`` on one wire tuple, built from scratch
    (a lone gate's is taken from ``sups`` when there).

    Gates multiply as matrices (``U = U_m ⋯ U_1``) until a channel, whose Kraus
    operators absorb them (``K_j U``); only then is a superoperator formed:
    ``Σ_j w_j K_j U ⊗ conj(K_j U)``, or ``U ⊗ conj(U)`` for trailing gates.
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
        weights, k = _kraus(op, ctx)
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


def _kraus(ch: Channel, ctx: Context) -> tuple[torch.Tensor | None, torch.Tensor]:
    """A channel's weights (``None``: all 1) and operators, as :class:`ChannelStep` uses them."""
    mix = ctx.mixture(ch)
    return (mix[0], mix[1]) if mix is not None else (None, ctx.kraus(ch))


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


def block_superop(
    block: SuperBlock,
    ctx: Context,
    mats: dict[int, torch.Tensor] | None = None,
    consts: _Constants | None = None,
) -> torch.Tensor:
    """The block's superoperator in pair order: ``(k, k)`` or ``(B, k, k)``, ``k = Π d_w²``.

    With ``consts``, consecutive runs of parameter-free operations are one cached,
    embedded product; the other runs are composed per call.
    """
    total: torch.Tensor | None = None
    pair_dims = [ctx.dims[v] ** 2 for v in block.wires]
    k = 0
    while k < len(block.runs):
        j = k
        while consts is not None and j < len(block.runs) and consts.all(block.runs[j][0]):
            j += 1
        if consts is not None and j > k:
            part = SuperBlock(block.wires, [i for r in block.runs[k:j] for i in r[0]])
            part.runs = block.runs[k:j]
            key = ("block", tuple(block.wires), tuple(part.ops))
            s = consts.get(key, part.ops, lambda p=part: block_superop(p, ctx, mats))
            total = s if total is None else s @ total
            k = j
            continue
        idx, w, perm = block.runs[k]
        k += 1
        run = _run_superop(idx, ctx, mats, consts)
        if len(w) == 1 and len(block.wires) > 1:  # one wire's pair axis: no embedding
            if total is None:
                total = ctx.eye(math.prod(pair_dims))
            total = _on_pair_axis(run, total, block.wires.index(w[0]), pair_dims)
            continue
        run = _embed(run, w, block.wires, perm, ctx)
        total = run if total is None else run @ total
    assert total is not None
    if total.dim() == 3 and total.shape[0] == 1:
        total = total[0]
    return total


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


def _pair_order(dims: tuple[int, ...]) -> list[int]:
    """Axes of ``ρ`` viewed as ``dims + dims`` in pair order ``(r_1, c_1, r_2, c_2, …)``."""
    n = len(dims)
    return [a for w in range(n) for a in (w, w + n)]


@dataclass
class SuperStep(Step):
    """The operations from ``start`` on (the first channel of the circuit) as blocks.

    ``fallback``: the same operations as ordinary steps, run while ρ is factored and
    no channel would make its rank exceed ``D`` (:class:`~.plan_exec.ChannelStep`'s rule);
    from the first channel that would, the remaining operations run as blocks. When
    that channel comes and the operations before it add no block to the blocks from
    ``start``, ρ is densified at ``start`` instead (no factored steps at all).
    ``runs`` counts pair-ordered passes (``"pair"``; ``"early"``: of them, densified at
    ``start``) and purely factored ones (``"fallback"``); ``cached`` counts the
    parameter-free superoperators reused (``"hit"``) and built (``"built"``,
    :class:`_Constants`). Read by tests, harmless to share.
    """

    start: int
    fallback: list[Step]
    dims: tuple[int, ...]
    block_dim: int = SUPER_BLOCK_DIM
    flat_limit: int = FLAT_DM_PERM_LIMIT
    runs: dict[str, int] = field(default_factory=lambda: {"pair": 0, "fallback": 0, "early": 0})
    _blocks: dict[int, list[SuperBlock]] = field(default_factory=dict)
    _index: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=lambda: {"hit": 0, "built": 0})
    _consts: dict[Any, tuple[list[Any], torch.Tensor]] = field(default_factory=dict)

    def blocks_from(self, start: int, ops: list[Operation]) -> list[SuperBlock]:
        """The blocks of ``ops[start:]`` (compiled on first use, cached per start: the
        plan is shared by circuits of one structure)."""
        if start not in self._blocks:
            self._blocks[start] = super_blocks(ops, start, self.dims, self.block_dim)
        return self._blocks[start]

    def switch(self, rank: int, dim: int, ctx: Context) -> int | None:
        """The index of the channel that would take a factored ρ of ``rank`` past rank
        ``dim`` (:class:`~.plan_exec.ChannelStep`'s rule: rank × Kraus count), or ``None``
        when ρ stays factored to the end."""
        for step in self.fallback:
            if isinstance(step, ChannelStep):
                ch = ctx.ops[step.index]
                assert isinstance(ch, Channel)
                m = int(_kraus(ch, ctx)[1].shape[-3])
                if rank * m > dim:
                    return step.index
                rank *= m
        return None

    def apply(self, s: SimState, ctx: Context) -> SimState:
        start = self.start
        if s.mode == "factored":
            switch = self.switch(s.rank, int(s.tensor.shape[-1]), ctx)
            if switch is None:
                for step in self.fallback:
                    s = step.apply(s, ctx)
                self.runs["fallback"] += 1
                return s
            # ρ turns dense at ``switch`` anyway: densify now when the operations before
            # it add no block (they ride in the blocks for free); else stay factored
            # until then.
            if len(self.blocks_from(start, ctx.ops)) > len(self.blocks_from(switch, ctx.ops)):
                for step in self.fallback:
                    if isinstance(step, ChannelStep) and step.index == switch:
                        break
                    s = step.apply(s, ctx)
                start = switch
            else:
                self.runs["early"] += 1
            s = s.densified()
        self.runs["pair"] += 1
        return s.evolved(self.pair_run(s.tensor, ctx, start))

    def pair_run(self, x: torch.Tensor, ctx: Context, start: int) -> torch.Tensor:
        """Operations ``start…`` on a dense flat ρ ``(B, D*D)``: to pair order, blocks, back."""
        dims = ctx.dims
        pair_dims = [d * d for d in dims]
        x = self._to_pairs(x, ctx, inverse=False)
        blocks = self.blocks_from(start, ctx.ops)
        idx = [i for b in blocks for i in b.ops]
        consts = _Constants(self._consts, self.cached, idx, ctx)
        mats = gate_matrices([i for i in idx if i not in consts.atoms], ctx, consts.sups)
        for block in blocks:
            sup = block_superop(block, ctx, mats, consts)
            x = kernels.apply_matrix(x, sup, pair_dims, block.wires)
        return self._to_pairs(x, ctx, inverse=True)

    def _to_pairs(self, x: torch.Tensor, ctx: Context, inverse: bool) -> torch.Tensor:
        dims = ctx.dims
        d = math.prod(dims)
        order = _pair_order(dims)
        if d * d > self.flat_limit:  # no flat index that large: a strided copy
            b = x.shape[0]
            if inverse:
                undo = [order.index(a) for a in range(len(order))]
                y = x.reshape(b, *[dims[a % len(dims)] for a in order]).permute(
                    0, *[p + 1 for p in undo]
                )
            else:
                y = x.reshape(b, *dims, *dims).permute(0, *[a + 1 for a in order])
            return y.reshape(b, d * d)
        key = str(ctx.device)
        if key not in self._index:
            src = np.arange(d * d).reshape(dims + dims).transpose(order).reshape(-1)
            # int32 like PermutationStep's flat index: half the bytes of int64
            t = torch.as_tensor(src, dtype=torch.int32, device=ctx.device)
            self._index[key] = (t, torch.argsort(t).to(torch.int32))
        fwd, inv = self._index[key]
        return kernels.gather(x, inv, fwd, 1) if inverse else kernels.gather(x, fwd, inv, 1)


def wrap_noisy_region(steps: list[Step], ops: list[Operation], dims: tuple[int, ...]) -> list[Step]:
    """``steps`` with everything from the first channel step on as one :class:`SuperStep`.

    The steps before the first channel cover exactly the operations before it (the
    compiler flushes every pending step before a channel), so the region is
    ``ops[start:]`` with ``start`` that channel's index.
    """
    first = next((k for k, s in enumerate(steps) if isinstance(s, ChannelStep)), None)
    if first is None:
        return steps
    head = steps[first]
    assert isinstance(head, ChannelStep)
    return [*steps[:first], SuperStep(head.index, steps[first:], tuple(dims))]


__all__ = ["SUPER_BLOCK_DIM", "SuperBlock", "SuperStep", "block_superop", "super_blocks"]
