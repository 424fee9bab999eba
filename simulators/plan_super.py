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

from qsem.circuits.operations import Channel, Operation

from . import kernels
from .plan_exec import FLAT_DM_PERM_LIMIT, ChannelStep, Step
from .plan_state import Context, SimState
from .plan_superops import Constants, block_superop, gate_matrices, run_superops

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
                m = int(ctx.channel_operators(ch)[1].shape[-3])
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
        consts = Constants(self._consts, self.cached, idx, ctx)
        mats = gate_matrices([i for i in idx if i not in consts.atoms], ctx, consts.sups)
        variable = [r[0] for b in blocks for r in b.runs if not consts.all(r[0])]
        sups = run_superops(variable, ctx, mats, consts)
        done = {run[0]: sup for run, sup in zip(variable, sups, strict=True)}
        for block in blocks:
            sup = block_superop(block.wires, block.runs, ctx, consts, done)
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


def wrap_noisy_region(steps: list[Step], dims: tuple[int, ...]) -> list[Step]:
    """``steps`` with everything from the first channel step on as one :class:`SuperStep`.

    The steps before the first channel cover exactly the operations before it (the
    compiler flushes every pending step before a channel), so the region is the
    circuit's operations from that channel's index on.
    """
    first = next((k for k, s in enumerate(steps) if isinstance(s, ChannelStep)), None)
    if first is None:
        return steps
    head = steps[first]
    assert isinstance(head, ChannelStep)
    return [*steps[:first], SuperStep(head.index, steps[first:], tuple(dims))]


__all__ = ["SUPER_BLOCK_DIM", "SuperBlock", "SuperStep", "super_blocks", "wrap_noisy_region"]
