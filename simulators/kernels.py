"""Pure-function simulation kernels on flat batched tensors.

A register of wire dimensions ``shape`` is stored flat: a statevector as
``(B, D)`` with ``D = prod(shape)``, a density matrix as ``(B, D, D)``, which the
kernels treat as a statevector over ``shape + shape`` (rows then columns).
Gates act only on the axes they touch: no full-register matrix is ever built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _split(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, int, int] | None:
    """``(L, Dk, R)`` if ``axes`` are consecutive and increasing, else ``None``."""
    a0 = axes[0]
    if list(axes) != list(range(a0, a0 + len(axes))):
        return None
    return (
        math.prod(shape[:a0]),
        math.prod(shape[a0 : a0 + len(axes)]),
        math.prod(shape[a0 + len(axes) :]),
    )


def apply_matrix(
    x: torch.Tensor, mat: torch.Tensor, shape: Sequence[int], axes: Sequence[int]
) -> torch.Tensor:
    """Apply ``mat`` (``(Dk, Dk)`` or ``(B, Dk, Dk)``) to ``axes`` of ``x`` (``(B, prod(shape))``).

    The local matrix's wire order is the order of ``axes``. Returns a new ``(B, D)`` tensor.
    """
    b = x.shape[0]
    batched = mat.dim() == 3
    split = _split(shape, axes)
    if split is not None:
        left, dk, right = split
        if right == 1:
            out = x.reshape(b, left, dk) @ mat.transpose(-1, -2)
        elif left == 1:
            out = mat @ x.reshape(b, dk, right)
        elif batched:
            out = torch.einsum("bij,bljr->blir", mat, x.reshape(b, left, dk, right))
        else:
            # One large GEMM beats many small ones: bring the block axis last.
            xt = x.reshape(b, left, dk, right).transpose(2, 3).reshape(-1, dk)
            out = (xt @ mat.transpose(-1, -2)).reshape(b, left, right, dk).transpose(2, 3)
        return out.reshape(b, -1)
    # General case: move the axes to the end, multiply, move back.
    n = len(shape)
    rest = [a for a in range(n) if a not in axes]
    order = rest + list(axes)
    dk = math.prod(shape[a] for a in axes)
    xt = x.reshape(b, *shape).permute(0, *[a + 1 for a in order])
    moved_shape = xt.shape
    y = xt.reshape(b, -1, dk) @ mat.transpose(-1, -2)
    y = y.reshape(moved_shape)
    inverse = [0] * n
    for i, a in enumerate(order):
        inverse[a] = i
    return y.permute(0, *[i + 1 for i in inverse]).reshape(b, -1)


class Workspace:
    """Reusable output buffers for steps that need no gradient (no allocation per step).

    Two scratch tensors per ``(numel, dtype, device)``: a step writes into the one that
    does not hold its input, so consecutive steps ping-pong between them. A fresh
    large tensor costs a page fault per 4 KiB on first touch — about as much as a pass
    over it — so the hot loop of a large no-grad simulation allocates nothing.

    >>> w = Workspace(); a = torch.zeros(4); b = w.out(a, (2, 2)); b.shape
    torch.Size([2, 2])
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, torch.dtype, str], list[torch.Tensor]] = {}

    def out(self, avoid: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """A buffer of ``shape`` (``avoid``'s dtype and device) not sharing ``avoid``'s memory."""
        numel = math.prod(shape)
        key = (numel, avoid.dtype, str(avoid.device))
        pool = self._bufs.setdefault(key, [])
        held = avoid.untyped_storage().data_ptr()
        for buf in pool:
            if buf.untyped_storage().data_ptr() != held:
                return buf.view(*shape)
        buf = torch.empty(numel, dtype=avoid.dtype, device=avoid.device)
        pool.append(buf)
        return buf.view(*shape)


def apply_kron_chain(
    x: torch.Tensor,
    segments: Sequence[tuple[int, torch.Tensor | None]],
    work: Workspace | None = None,
) -> torch.Tensor:
    """Apply ``M_1 ⊗ M_2 ⊗ ... ⊗ M_k`` to ``x`` ``(B, N)`` whose axes split as ``d_1 ... d_k``.

    ``segments`` lists ``(d_j, M_j)`` in axis order covering every axis
    (``prod d_j = N``); ``M_j`` is ``(d_j, d_j)`` or ``(B|1, d_j, d_j)``, ``None`` for the
    identity. Each segment is one GEMM that contracts the *leading* axis and writes it
    last: ``y[b, r, i] = Σ_a x[b, a, r] M[i, a]`` — after all ``k`` segments the axes are
    back in order, and no step ever copies a transposed operand (the transposed read is
    the GEMM's own operand layout). Cost: ``k`` passes over the state, ``Σ d_j`` complex
    multiply-adds per amplitude. A density matrix is the chain over ``dims + dims`` with
    ``U``'s blocks on the rows and ``conj(U)``'s on the columns: ``U ρ U^†``.

    >>> x = torch.arange(4.0).reshape(1, 4).to(torch.complex64)
    >>> sx = torch.tensor([[0, 1], [1, 0]], dtype=torch.complex64)
    >>> apply_kron_chain(x, [(2, sx), (2, None)]).real
    tensor([[2., 3., 0., 1.]])
    """
    b, n = x.shape
    use_out = work is not None and not (
        torch.is_grad_enabled()
        and (x.requires_grad or any(m is not None and m.requires_grad for _, m in segments))
    )
    for dk, mat in segments:
        src = x.reshape(b, dk, n // dk).transpose(1, 2)  # (B, rest, dk), a view
        out = work.out(x, (b, n // dk, dk)) if use_out and work is not None else None
        if mat is None:
            y = src.contiguous() if out is None else out.copy_(src)
        else:
            mt = mat.transpose(-1, -2)
            if b == 1 and (mt.dim() == 2 or mt.shape[0] == 1):
                m2 = mt if mt.dim() == 2 else mt[0]
                y = (src[0] @ m2 if out is None else torch.mm(src[0], m2, out=out[0]))[None]
                y = y if out is None else out
            else:
                mb = mt.expand(b, dk, dk) if mt.dim() == 2 or mt.shape[0] == 1 else mt
                y = torch.bmm(src, mb) if out is None else torch.bmm(src, mb, out=out)
        x = y.reshape(b, n)
    return x


#: Rows of at least this many entries are gathered one row at a time (see :func:`index_rows`).
ROW_GATHER_MIN = 1 << 13


def index_rows(
    x: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``out[b, i] = x[b, index[i]]`` for a ``(B, N)`` tensor: a permutation of every row.

    ATen's ``index_select`` along the last axis of a 2-D tensor is its slow strided
    path (about 5x a 1-D gather of the same row at ``N = 2^20``, 1 thread), so long
    rows (``N >= ROW_GATHER_MIN``) are gathered one row at a time through the 1-D
    kernel; short rows, where the per-call cost dominates, in one call.

    >>> x = torch.arange(6.0).reshape(2, 3)
    >>> index_rows(x, torch.tensor([2, 0, 1]))
    tensor([[2., 0., 1.],
            [5., 3., 4.]])
    """
    if x.shape[1] < ROW_GATHER_MIN:
        return (
            torch.index_select(x, 1, index)
            if out is None
            else torch.index_select(x, 1, index, out=out)
        )
    out = torch.empty_like(x, memory_format=torch.contiguous_format) if out is None else out
    for b in range(x.shape[0]):
        torch.index_select(x[b], 0, index, out=out[b])
    return out


def _select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return index_rows(x, index) if dim == 1 and x.dim() == 2 else x.index_select(dim, index)


class _Gather(torch.autograd.Function):
    """``x.index_select(dim, index)`` whose backward is the inverse gather (no scatter)."""

    @staticmethod
    def forward(ctx, x, index, inverse, dim):
        ctx.save_for_backward(inverse)
        ctx.dim = dim
        return _select(x, dim, index)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return _select(grad, ctx.dim, inverse), None, None, None


def gather(x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor, dim: int) -> torch.Tensor:
    """Permute ``x`` along ``dim``: ``out[..., i, ...] = x[..., index[i], ...]``."""
    if x.requires_grad:
        return _Gather.apply(x, index, inverse, dim)
    return _select(x, dim, index)


def apply_permutation_local(
    x: torch.Tensor, src: torch.Tensor, inv: torch.Tensor, shape: Sequence[int], axes: Sequence[int]
) -> torch.Tensor:
    """Apply a basis permutation ``src`` of the local space of ``axes`` (gather, no matmul)."""
    b = x.shape[0]
    split = _split(shape, axes)
    if split is not None:
        left, dk, right = split
        return gather(x.reshape(b, left, dk, right), src, inv, 2).reshape(b, -1)
    n = len(shape)
    rest = [a for a in range(n) if a not in axes]
    order = rest + list(axes)
    dk = math.prod(shape[a] for a in axes)
    xt = x.reshape(b, *shape).permute(0, *[a + 1 for a in order])
    moved_shape = xt.shape
    y = gather(xt.reshape(b, -1, dk), src, inv, 2).reshape(moved_shape)
    inverse = [0] * n
    for i, a in enumerate(order):
        inverse[a] = i
    return y.permute(0, *[i + 1 for i in inverse]).reshape(b, -1)


def kron(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """Kronecker product of (possibly batched) square matrices, first one most significant."""
    out = mats[0]
    for m in mats[1:]:
        da, db = out.shape[-1], m.shape[-1]
        prod = out[..., :, None, :, None] * m[..., None, :, None, :]
        out = prod.reshape(*prod.shape[:-4], da * db, da * db)
    return out


def kron_vectors(vecs: Sequence[torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    """``v_1 ⊗ v_2 ⊗ … ⊗ v_n`` (first most significant) as a contiguous ``shape`` tensor.

    Each ``v_j`` is ``(d_j,)`` or batched ``(B, d_j)``; ``n - 1`` outer products, no
    pass of a matrix over the state (a fused layer applied to a basis state).

    >>> kron_vectors([torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0, 3.0])], (1, 6))
    tensor([[0., 1., 3., 0., 2., 6.]])
    """
    out = vecs[0]
    for v in vecs[1:]:
        prod = out[..., :, None] * v[..., None, :]
        out = prod.reshape(*prod.shape[:-2], -1)
    out = torch.broadcast_to(out, tuple(shape))
    return out if out.is_contiguous() else out.contiguous()


def superoperator(kraus: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``S[i, j, a, c] = Σ_k w_k K_k[i, a] conj(K_k[j, c])`` from ``(..., r, D, D)``.

    ``weights`` ``(..., r)`` default to 1. Returned as ``(..., D*D, D*D)`` acting on
    the (row, column) pair of indices.
    """
    left = kraus if weights is None else kraus * weights.to(kraus.dtype)[..., None, None]
    d, r = kraus.shape[-1], kraus.shape[-3]
    # one matrix product over k: ((i a), k) @ (k, (j c)), then (i, a, j, c) -> (i, j, a, c)
    a = left.movedim(-3, -1).reshape(*left.shape[:-3], d * d, r)
    b = kraus.conj().reshape(*kraus.shape[:-3], r, d * d)
    s = (a @ b).reshape(*torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]), d, d, d, d)
    return s.transpose(-3, -2).reshape(*s.shape[:-4], d * d, d * d)


def apply_channel(
    rho: torch.Tensor,
    kraus: torch.Tensor,
    shape: Sequence[int],
    axes: Sequence[int],
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``ρ -> Σ_k w_k K_k ρ K_k^†`` on ``axes`` of a flat density matrix ``(B, D*D)``.

    Uses the superoperator on the (row axes, column axes) pair: one contraction.
    """
    n = len(shape)
    sup = superoperator(kraus, weights)
    full_axes = list(axes) + [a + n for a in axes]
    return apply_matrix(rho, sup, list(shape) + list(shape), full_axes)


def marginal_probs(probs: torch.Tensor, shape: Sequence[int], wires: Sequence[int]) -> torch.Tensor:
    """Marginal of ``probs`` ``(B, D)`` on ``wires`` (in the given order): ``(B, prod dims)``."""
    n = len(shape)
    if list(wires) == list(range(n)):
        return probs
    b = probs.shape[0]
    p = probs.reshape(b, *shape)
    rest = [a + 1 for a in range(n) if a not in wires]
    if rest:
        p = p.sum(dim=rest)
    kept = sorted(wires)
    order = [kept.index(w) + 1 for w in wires]
    return p.permute(0, *order).reshape(b, -1)


def reduced_density_matrix_sv(
    psi: torch.Tensor, shape: Sequence[int], wires: Sequence[int]
) -> torch.Tensor:
    """``Tr_rest |ψ><ψ|`` on ``wires`` (in the given order) from ``(B, D)``."""
    b = psi.shape[0]
    n = len(shape)
    rest = [a for a in range(n) if a not in wires]
    dw = math.prod(shape[w] for w in wires)
    m = psi.reshape(b, *shape).permute(0, *[w + 1 for w in wires], *[a + 1 for a in rest])
    m = m.reshape(b, dw, -1)
    return m @ m.mH


def reduced_density_matrix_dm(
    rho: torch.Tensor, shape: Sequence[int], wires: Sequence[int]
) -> torch.Tensor:
    """Partial trace of ``(B, D, D)`` keeping ``wires`` (in the given order)."""
    b = rho.shape[0]
    n = len(shape)
    rest = [a for a in range(n) if a not in wires]
    dw = math.prod(shape[w] for w in wires)
    dr = math.prod(shape[a] for a in rest)
    r = rho.reshape(b, *shape, *shape)
    perm = [w + 1 for w in wires] + [a + 1 for a in rest]
    perm += [w + 1 + n for w in wires] + [a + 1 + n for a in rest]
    r = r.permute(0, *perm).reshape(b, dw, dr, dw, dr)
    return torch.diagonal(r, dim1=2, dim2=4).sum(-1)
