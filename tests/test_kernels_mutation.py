"""Every kernel of ``qsem.simulators.kernels`` against a dense reference built here.

The references are written independently of the kernels: a gate on some axes is
the full ``D x D`` matrix filled entry by entry from basis-index tuples
(``np.unravel_index``), partial traces and marginals are sums over those tuples,
gradients come from autograd through the dense matrices. Each branch of the
kernels (consecutive / general axes, batched / shared matrices, the ``(1, d, d)``
segment, workspace buffers with and without a gradient) has a case; mutation
testing (``make mutation``, docs/testing.md) measures that they are all needed.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import ATOL_F64

from qsem.simulators.kernels import (
    ROW_GATHER_MIN,
    Workspace,
    _split,
    apply_channel,
    apply_kron_chain,
    apply_matrix,
    apply_permutation_local,
    gather,
    kron,
    kron_vectors,
    marginal_probs,
    reduced_density_matrix_dm,
    reduced_density_matrix_sv,
    superoperator,
)


def _cmat(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def dense(mat: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """The full matrix of ``mat`` acting on ``axes`` (in that order), entry by entry."""
    d = math.prod(shape)
    local = [shape[a] for a in axes]
    rest = [a for a in range(len(shape)) if a not in axes]
    out = np.zeros((d, d), dtype=complex)
    for i, j in itertools.product(range(d), repeat=2):
        ii, jj = np.unravel_index(i, shape), np.unravel_index(j, shape)
        if all(ii[a] == jj[a] for a in rest):
            ri = np.ravel_multi_index([ii[a] for a in axes], local)
            rj = np.ravel_multi_index([jj[a] for a in axes], local)
            out[i, j] = mat[ri, rj]
    return out


def partial_trace(rho: np.ndarray, shape: tuple[int, ...], wires: tuple[int, ...]) -> np.ndarray:
    """``Tr_rest ρ`` keeping ``wires`` in the given order, by summing basis entries."""
    d = math.prod(shape)
    local = [shape[w] for w in wires]
    rest = [a for a in range(len(shape)) if a not in wires]
    dw = math.prod(local)
    out = np.zeros((dw, dw), dtype=complex)
    for i, j in itertools.product(range(d), repeat=2):
        ii, jj = np.unravel_index(i, shape), np.unravel_index(j, shape)
        if all(ii[a] == jj[a] for a in rest):
            ri = np.ravel_multi_index([ii[w] for w in wires], local)
            rj = np.ravel_multi_index([jj[w] for w in wires], local)
            out[ri, rj] += rho[i, j]
    return out


# ---------------------------------------------------------------------------------
# _split and apply_matrix
# ---------------------------------------------------------------------------------


def test_split_of_consecutive_axes_only():
    assert _split((2, 3, 4), (0,)) == (1, 2, 12)
    assert _split((2, 3, 4), (1, 2)) == (2, 12, 1)
    assert _split((2, 3, 4, 5), (1, 2)) == (2, 12, 5)
    assert _split((2, 3, 4), (0, 1, 2)) == (1, 24, 1)
    assert _split((2, 3, 4), (0, 2)) is None
    assert _split((2, 3, 4), (1, 0)) is None
    assert _split((2, 3, 4), (2, 1)) is None


# every branch: right == 1, left == 1, middle (shared / batched), general (gaps, reversed)
CASES = [
    ((2, 3, 2), (2,)),
    ((2, 3, 2), (1, 2)),
    ((3, 2, 2), (0,)),
    ((2, 3, 2), (0, 1)),
    ((2, 3, 2), (1,)),
    ((2, 2, 3, 2), (1, 2)),
    ((2, 3, 2), (0, 2)),
    ((2, 3, 2), (2, 0)),
    ((2, 3, 2), (1, 0)),
    ((3, 2, 2, 2), (3, 1)),
]


@pytest.mark.parametrize(("shape", "axes"), CASES)
@pytest.mark.parametrize("batched", [False, True])
def test_apply_matrix_against_the_dense_operator(shape, axes, batched):
    rng = np.random.default_rng(11)
    b, d = 3, math.prod(shape)
    dk = math.prod(shape[a] for a in axes)
    mats = _cmat(rng, b, dk, dk) if batched else _cmat(rng, dk, dk)
    x = _cmat(rng, b, d)
    out = apply_matrix(torch.as_tensor(x), torch.as_tensor(mats), shape, axes)
    ref = np.stack([dense(mats[i] if batched else mats, shape, axes) @ x[i] for i in range(b)])
    assert out.shape == (b, d)
    np.testing.assert_allclose(out.numpy(), ref, atol=ATOL_F64)


@pytest.mark.parametrize(("shape", "axes"), CASES)
def test_apply_channel_against_kraus_sums(shape, axes):
    rng = np.random.default_rng(5)
    b, d = 2, math.prod(shape)
    dk = math.prod(shape[a] for a in axes)
    kraus = _cmat(rng, 3, dk, dk)
    weights = rng.uniform(size=3)
    rho = _cmat(rng, b, d, d)
    for w in (None, weights):
        out = apply_channel(
            torch.as_tensor(rho.reshape(b, -1)),
            torch.as_tensor(kraus),
            shape,
            axes,
            None if w is None else torch.as_tensor(w),
        )
        ks = [dense(k, shape, axes) for k in kraus]
        wk = np.ones(3) if w is None else w
        ref = np.stack([sum(wk[k] * ks[k] @ r @ ks[k].conj().T for k in range(3)) for r in rho])
        np.testing.assert_allclose(out.numpy().reshape(b, d, d), ref, atol=1e-8)


def test_superoperator_entries():
    rng = np.random.default_rng(2)
    kraus, w = _cmat(rng, 2, 3, 3), rng.uniform(size=2)
    s = superoperator(torch.as_tensor(kraus), torch.as_tensor(w)).numpy()
    assert s.shape == (9, 9)
    for i, j, a, c in itertools.product(range(3), repeat=4):
        ref = sum(w[k] * kraus[k, i, a] * np.conj(kraus[k, j, c]) for k in range(2))
        assert abs(s[3 * i + j, 3 * a + c] - ref) < ATOL_F64
    s1 = superoperator(torch.as_tensor(kraus)).numpy()
    np.testing.assert_allclose(s1, sum(np.kron(k, k.conj()) for k in kraus), atol=ATOL_F64)
    # batched Kraus sets with per-element weights
    kb, wb = _cmat(rng, 4, 3, 2, 2), rng.uniform(size=(4, 3))  # 3 operators of size 2
    sb = superoperator(torch.as_tensor(kb), torch.as_tensor(wb)).numpy()
    ref = [sum(wb[i, k] * np.kron(kb[i, k], kb[i, k].conj()) for k in range(3)) for i in range(4)]
    np.testing.assert_allclose(sb, np.stack(ref), atol=ATOL_F64)
    # one shared Kraus set with batched weights (a channel whose probability is batched):
    # the batch shape comes from the weights alone
    ks, ws = _cmat(rng, 3, 2, 2), rng.uniform(size=(4, 3))
    ss = superoperator(torch.as_tensor(ks), torch.as_tensor(ws)).numpy()
    ref = [sum(ws[i, k] * np.kron(ks[k], ks[k].conj()) for k in range(3)) for i in range(4)]
    np.testing.assert_allclose(ss, np.stack(ref), atol=ATOL_F64)


# ---------------------------------------------------------------------------------
# apply_kron_chain: every segment kind, with and without workspace and gradient
# ---------------------------------------------------------------------------------


class CountingWorkspace(Workspace):
    """A workspace that counts the buffers it hands out (a spy through the public API)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.storages: set[int] = set()

    def out(self, avoid, shape):
        self.calls += 1
        buf = super().out(avoid, shape)
        self.storages.add(buf.untyped_storage().data_ptr())
        return buf


def _chain_reference(x: np.ndarray, segs: list[tuple[int, np.ndarray | None]]) -> np.ndarray:
    rows = []
    for i in range(x.shape[0]):
        full = np.eye(1)
        for d, m in segs:
            if m is None:
                m_i = np.eye(d)
            elif m.ndim == 2:
                m_i = m
            else:
                m_i = m[0] if m.shape[0] == 1 else m[i]
            full = np.kron(full, m_i)
        rows.append(full @ x[i])
    return np.stack(rows)


SEGMENT_KINDS = {
    "shared": lambda rng, b, d: _cmat(rng, d, d),
    "one": lambda rng, b, d: _cmat(rng, 1, d, d),
    "batched": lambda rng, b, d: _cmat(rng, b, d, d),
    "identity": lambda rng, b, d: None,
}


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize(
    "kinds",
    [
        ("one", "shared"),
        ("shared", "one"),
        ("batched", "identity"),
        ("identity", "one", "batched"),
        ("one", "one"),
    ],
)
@pytest.mark.parametrize("use_work", [False, True])
def test_kron_chain_every_segment_kind(b, kinds, use_work):
    if b == 1 and "batched" in kinds:
        kinds = tuple("one" if k == "batched" else k for k in kinds)
    rng = np.random.default_rng(17)
    dims = [2, 3, 2][: len(kinds)]
    segs = [(d, SEGMENT_KINDS[k](rng, b, d)) for d, k in zip(dims, kinds, strict=True)]
    x = _cmat(rng, b, math.prod(dims))
    work = CountingWorkspace() if use_work else None
    tsegs = [(d, None if m is None else torch.as_tensor(m)) for d, m in segs]
    xt = torch.as_tensor(x.copy())
    out = apply_kron_chain(xt, tsegs, work)
    np.testing.assert_allclose(out.numpy(), _chain_reference(x, segs), atol=ATOL_F64)
    if work is not None:
        assert work.calls == len(segs)  # every segment wrote into a reused buffer ...
        assert out.untyped_storage().data_ptr() in work.storages  # ... the last one included
    np.testing.assert_array_equal(xt.numpy(), x)  # the input is never overwritten


@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("grad_of", ["state", "matrix"])
def test_kron_chain_with_a_workspace_still_differentiates(b, grad_of):
    """A gradient is needed: no workspace buffer (out= has no autograd); gradients exact."""
    rng = np.random.default_rng(23)
    m1, m2 = _cmat(rng, 1, 2, 2), _cmat(rng, 3, 3)
    x = _cmat(rng, b, 6)
    weights = torch.as_tensor(rng.uniform(size=(b, 6)))

    def loss(xt, m1t, m2t, work):
        y = apply_kron_chain(xt, [(2, m1t), (3, m2t)], work)
        return (weights * y.abs() ** 2).sum()

    def dense_loss(xt, m1t, m2t):
        full = (m1t[0][:, None, :, None] * m2t[None, :, None, :]).reshape(6, 6)
        return (weights * (xt @ full.T).abs() ** 2).sum()

    leaves = [torch.as_tensor(v).clone() for v in (x, m1, m2)]
    idx = 0 if grad_of == "state" else 1
    leaves[idx].requires_grad_(True)
    work = CountingWorkspace()
    (g,) = torch.autograd.grad(loss(*leaves, work), leaves[idx])
    assert work.calls == 0
    ref_leaves = [v.detach().clone() for v in leaves]
    ref_leaves[idx].requires_grad_(True)
    (g_ref,) = torch.autograd.grad(dense_loss(*ref_leaves), ref_leaves[idx])
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), atol=1e-8)
    # under no_grad the same call may use the buffers
    with torch.no_grad():
        y = apply_kron_chain(leaves[0], [(2, leaves[1]), (3, leaves[2])], work)
    assert work.calls == 2
    ref = _chain_reference(x, [(2, m1), (3, m2)])
    np.testing.assert_allclose(y.numpy(), ref, atol=ATOL_F64)


def test_workspace_buffers_ping_pong_and_are_keyed_by_size_dtype_device():
    w = Workspace()
    x = torch.zeros(12, dtype=torch.complex128)
    a = w.out(x, (3, 4))
    assert a.shape == (3, 4) and a.dtype == torch.complex128 and a.device == x.device
    b = w.out(a, (12,))
    c = w.out(b, (4, 3))
    assert a.data_ptr() != b.data_ptr() and c.data_ptr() == a.data_ptr()  # two buffers only
    assert w.out(c, (2, 6)).data_ptr() == b.data_ptr()
    other = w.out(torch.zeros(12, dtype=torch.float64), (12,))
    assert other.dtype == torch.float64
    assert w.out(x, (6,)).numel() == 6


# ---------------------------------------------------------------------------------
# permutations
# ---------------------------------------------------------------------------------


def _permutation(rng: np.random.Generator, dk: int) -> tuple[np.ndarray, np.ndarray]:
    src = rng.permutation(dk)
    return src, np.argsort(src)


@pytest.mark.parametrize(("shape", "axes"), CASES)
def test_apply_permutation_local_against_the_dense_permutation(shape, axes):
    rng = np.random.default_rng(31)
    dk = math.prod(shape[a] for a in axes)
    src, inv = _permutation(rng, dk)
    perm = np.zeros((dk, dk))
    perm[np.arange(dk), src] = 1.0  # out[i] = in[src[i]]
    x = _cmat(rng, 2, math.prod(shape))
    out = apply_permutation_local(
        torch.as_tensor(x), torch.as_tensor(src), torch.as_tensor(inv), shape, axes
    )
    ref = x @ dense(perm, shape, axes).T
    np.testing.assert_allclose(out.numpy(), ref, atol=0)


@pytest.mark.parametrize(("shape", "axes"), [((2, 3, 2), (1, 2)), ((2, 3, 2), (2, 0))])
def test_gradient_through_apply_permutation_local(shape, axes):
    rng = np.random.default_rng(37)
    dk = math.prod(shape[a] for a in axes)
    src, inv = _permutation(rng, dk)
    perm = np.zeros((dk, dk))
    perm[np.arange(dk), src] = 1.0
    full = torch.as_tensor(dense(perm, shape, axes))
    weights = torch.as_tensor(rng.uniform(size=(2, math.prod(shape))))
    x = torch.as_tensor(_cmat(rng, 2, math.prod(shape))).requires_grad_(True)
    y = apply_permutation_local(x, torch.as_tensor(src), torch.as_tensor(inv), shape, axes)
    (g,) = torch.autograd.grad((weights * y.abs() ** 2).sum(), x)
    x_ref = x.detach().clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad((weights * (x_ref @ full.T).abs() ** 2).sum(), x_ref)
    np.testing.assert_allclose(g.numpy(), g_ref.numpy(), atol=ATOL_F64)


def test_gather_forward_and_backward_on_any_dim():
    rng = np.random.default_rng(41)
    src, inv = _permutation(rng, 5)
    x = torch.as_tensor(rng.normal(size=(3, 5, 2)))
    np.testing.assert_array_equal(
        gather(x, torch.as_tensor(src), None, 1).numpy(), x.numpy()[:, src]
    )
    xg = x.clone().requires_grad_(True)
    w = torch.as_tensor(rng.normal(size=(3, 5, 2)))
    y = gather(xg, torch.as_tensor(src), torch.as_tensor(inv), 1)
    (g,) = torch.autograd.grad((w * y).sum(), xg)
    # d/dx[:, j] of Σ_i w[:, i] x[:, src[i]] is w[:, inv[j]]
    np.testing.assert_array_equal(g.numpy(), w.numpy()[:, inv])
    assert torch.autograd.gradcheck(
        lambda t: gather(t, torch.as_tensor(src), torch.as_tensor(inv), 1), (xg,)
    )


def _index_select_inputs(fn) -> list[list[int]]:
    """The input shape of every ``aten::index_select`` call while ``fn`` runs (a spy
    through torch's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return [list(e.input_shapes[0]) for e in prof.events() if e.name == "aten::index_select"]


def test_gather_without_a_gradient_on_each_dim_of_a_matrix():
    """``gather`` of a 2-D tensor along dim 0 and dim 1 (short and long rows) against
    NumPy fancy indexing; long rows along dim 1 are gathered one 1-D row at a time,
    everything else in one call."""
    rng = np.random.default_rng(47)
    for rows, cols, dim in [(6, 5, 0), (3, 5, 1), (3, ROW_GATHER_MIN, 1)]:
        x = torch.as_tensor(rng.normal(size=(rows, cols)))
        src, _ = _permutation(rng, (rows, cols)[dim])
        index = torch.as_tensor(src)
        expected = x.numpy()[src] if dim == 0 else x.numpy()[:, src]
        np.testing.assert_array_equal(gather(x, index, None, dim).numpy(), expected)
        calls = _index_select_inputs(lambda x=x, index=index, dim=dim: gather(x, index, None, dim))
        long_rows = dim == 1 and cols >= ROW_GATHER_MIN
        assert calls == ([[cols]] * rows if long_rows else [[rows, cols]])


# ---------------------------------------------------------------------------------
# products, marginals, partial traces
# ---------------------------------------------------------------------------------


def test_kron_of_plain_and_batched_matrices():
    rng = np.random.default_rng(43)
    a, b, c = _cmat(rng, 2, 2), _cmat(rng, 3, 3), _cmat(rng, 2, 2)
    out = kron([torch.as_tensor(m) for m in (a, b, c)]).numpy()
    np.testing.assert_allclose(out, np.kron(np.kron(a, b), c), atol=ATOL_F64)
    ab, bb = _cmat(rng, 4, 2, 2), _cmat(rng, 4, 3, 3)
    outb = kron([torch.as_tensor(ab), torch.as_tensor(bb)]).numpy()
    np.testing.assert_allclose(
        outb, np.stack([np.kron(ab[i], bb[i]) for i in range(4)]), atol=ATOL_F64
    )
    assert kron([torch.as_tensor(a)]).shape == (2, 2)


def test_kron_vectors_plain_and_batched():
    rng = np.random.default_rng(47)
    u, v, w = rng.normal(size=2), rng.normal(size=3), rng.normal(size=2)
    out = kron_vectors([torch.as_tensor(t) for t in (u, v, w)], (1, 12))
    assert out.shape == (1, 12) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy()[0], np.kron(np.kron(u, v), w), atol=ATOL_F64)
    # a shared vector broadcast over a batch is materialised contiguous
    out = kron_vectors([torch.as_tensor(u), torch.as_tensor(v)], (3, 6))
    assert out.shape == (3, 6) and out.is_contiguous()
    np.testing.assert_allclose(out.numpy(), np.tile(np.kron(u, v), (3, 1)), atol=ATOL_F64)
    ub, vb = rng.normal(size=(3, 2)), rng.normal(size=(3, 3))
    out = kron_vectors([torch.as_tensor(ub), torch.as_tensor(vb)], (3, 6))
    np.testing.assert_allclose(out.numpy(), np.stack([np.kron(ub[i], vb[i]) for i in range(3)]))


@pytest.mark.parametrize("wires", [(0, 1, 2), (2, 0, 1), (1,), (2, 0), (0, 2), (1, 0)])
def test_marginal_probs_by_summing_basis_states(wires):
    rng = np.random.default_rng(53)
    shape = (2, 3, 2)
    p = rng.uniform(size=(2, 12))
    out = marginal_probs(torch.as_tensor(p), shape, wires).numpy()
    local = [shape[w] for w in wires]
    ref = np.zeros((2, math.prod(local)))
    for i in range(12):
        ii = np.unravel_index(i, shape)
        ref[:, np.ravel_multi_index([ii[w] for w in wires], local)] += p[:, i]
    np.testing.assert_allclose(out, ref, atol=ATOL_F64)


@pytest.mark.parametrize("wires", [(0,), (2,), (1, 2), (2, 0), (0, 1, 2), (2, 1, 0)])
def test_reduced_density_matrices_against_partial_traces(wires):
    rng = np.random.default_rng(59)
    shape = (2, 3, 2)
    psi = _cmat(rng, 2, 12)
    out = reduced_density_matrix_sv(torch.as_tensor(psi), shape, wires).numpy()
    ref = np.stack([partial_trace(np.outer(v, v.conj()), shape, wires) for v in psi])
    np.testing.assert_allclose(out, ref, atol=1e-8)
    rho = _cmat(rng, 2, 12, 12)
    out = reduced_density_matrix_dm(torch.as_tensor(rho), shape, wires).numpy()
    ref = np.stack([partial_trace(r, shape, wires) for r in rho])
    np.testing.assert_allclose(out, ref, atol=1e-8)
