"""Π_edge(Ω) -> φ, exact and compressed (truncated SVD / PCA, top-P* slices).

The projection back from the quantum level; not to be confused with :mod:`qsem.edge`,
the per-user (edge-device) personalisation package."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qsem.circuits.errors import (
    QsemTypeError,
    arg_error,
)

from .base import _posint, _real_dtype, _tensor, _weights
from .omega import Omega
from .phi import Phi


def _edge_weights(
    weights_b: Any, weights_p: Any, b: int, p: int, ref: torch.Tensor
) -> torch.Tensor:
    """Joint weights ``w[b, p] = w_B[b] · w_P[b, p]`` (each normalised to sum 1)."""
    dt = _real_dtype(ref.dtype)
    wb = (
        torch.full((b,), 1 / b, dtype=dt, device=ref.device)
        if weights_b is None
        else _weights(weights_b, "weights_b", (b,), ref)
    )
    wp = (
        torch.full((b, p), 1 / p, dtype=dt, device=ref.device)
        if weights_p is None
        else _weights(weights_p, "weights_p", (b, p), ref)
    )
    return wb[:, None] * wp


def _category_probs(born: torch.Tensor, n_categories: int, name: str) -> torch.Tensor:
    """Restrict ``(B, L, S, C_reg, P)`` Born weights to the categories; renormalise per (b,l,p)."""
    kept = born[:, :, :, :n_categories, :]
    mass = kept.sum(dim=(2, 3), keepdim=True)
    low = float(mass.detach().min())
    if not low > 0:
        raise arg_error(
            name,
            f"a state has no probability on the {n_categories} category states of the C "
            "register, so its category distribution is undefined",
        )
    return kept / mass


def pi_edge(
    omega: Omega, weights_b: Any = None, weights_p: Any = None, *, reduce_b: bool = True
) -> Phi:
    """Exact Π_edge(Ω) -> φ (Born marginal over S×C).

    Per (b, l, p): ``P(s, c) = Σ_{z,ψ} |Ω[b,l,s,c,p,z,ψ]|²`` (the diagonal of
    ``Tr_Z Σ_ψ Ω_ψ Ω_ψ^†``), restricted to the ``n_categories`` category states of
    the C register and renormalised; then ``φ[l] = Σ_{b,p} w_B[b] w_P[b,p] P[b,l,p]``.
    ``weights_b``: ``(B,)``; ``weights_p``: ``(P,)`` or ``(B, P)``; each a
    distribution (default uniform). ``reduce_b=False`` keeps B: ``(B, L, S, C)``
    with ``φ[b, l] = Σ_p w_P[b,p] P[b,l,p]``.
    """
    if not isinstance(omega, Omega):
        raise arg_error("omega", f"expected an Omega, got {type(omega).__name__}", QsemTypeError)
    return pi_edge_born(
        omega.born(), omega.n_categories, weights_b, weights_p, reduce_b=reduce_b, name="omega"
    )


def pi_edge_born(
    born: torch.Tensor,
    n_categories: int,
    weights_b: Any = None,
    weights_p: Any = None,
    *,
    reduce_b: bool = True,
    name: str = "born",
) -> Phi:
    """Π_edge from Born weights ``(B, L, S, C_reg, P)`` (:meth:`Omega.born`): the
    maths of :func:`pi_edge` where only the Born probabilities exist (a circuit run
    on a backend that returns probabilities, not a state).

    The weights are restricted to the first ``n_categories`` states of the C
    register, renormalised per (b, l, p) and mixed over B and P as in :func:`pi_edge`.
    """
    t = _tensor(born, name)
    if t.dim() != 5:
        raise arg_error(name, f"expected shape (B, L, S, C, P), got {tuple(t.shape)}")
    _posint(n_categories, "n_categories")
    if n_categories > t.shape[3]:
        raise arg_error(
            "n_categories",
            f"{n_categories} categories do not fit the C register of {t.shape[3]} basis states",
        )
    probs = _category_probs(t, n_categories, name)
    return _mix(probs, weights_b, weights_p, reduce_b, t)


def _mix(
    probs: torch.Tensor, weights_b: Any, weights_p: Any, reduce_b: bool, ref: torch.Tensor
) -> Phi:
    b, p = probs.shape[0], probs.shape[-1]
    w = _edge_weights(weights_b, weights_p, b, p, ref)
    if reduce_b:
        return Phi(torch.einsum("blscp,bp->lsc", probs, w), check=False)
    wp = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    return Phi(torch.einsum("blscp,bp->blsc", probs, wp), check=False)


@dataclass(frozen=True)
class Compression:
    """A truncated SVD of an unfolded tensor (rows: ``row_axes``, columns: the rest).

    ``factors = (U_r (m, r), s_r (r,), Vh_r (r, n), mean (n,) or None)``;
    ``reconstruction`` has the input's shape; ``rel_error = ‖X − X_r‖_F / ‖X‖_F``;
    ``bytes_full`` the input's bytes, ``bytes_compressed`` those of the factors
    (``(m·r + r·n [+ n]) · itemsize + r · real itemsize``), ``bytes_saved`` the
    difference (negative when a high rank costs more than the tensor).
    """

    rank: int
    factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]
    reconstruction: torch.Tensor
    rel_error: float
    bytes_full: int
    bytes_compressed: int

    @property
    def bytes_saved(self) -> int:
        return self.bytes_full - self.bytes_compressed


def truncated_svd(
    tensor: torch.Tensor, rank: int, row_axes: Sequence[int], *, center: bool = False
) -> Compression:
    """Rank-``rank`` truncated SVD (``center=True``: PCA, columns centred first) of
    ``tensor`` unfolded to ``(prod rows, prod rest)``."""
    t = _tensor(tensor, "tensor", complex_=None)
    nd = t.dim()
    try:
        rows = [int(a) % nd for a in row_axes]
    except (TypeError, ValueError):
        raise arg_error(
            "row_axes", f"expected axis indices, got {row_axes!r}", QsemTypeError
        ) from None
    if not rows or len(set(rows)) != len(rows) or any(not -nd <= int(a) < nd for a in row_axes):
        raise arg_error("row_axes", f"expected distinct axes of a {nd}-d tensor, got {row_axes!r}")
    cols = [a for a in range(nd) if a not in rows]
    perm = rows + cols
    m = math.prod(t.shape[a] for a in rows)
    n = math.prod(t.shape[a] for a in cols)
    _posint(rank, "rank")
    if rank > min(m, n):
        raise arg_error("rank", f"must be <= min({m}, {n}) = {min(m, n)}, got {rank}")
    x = t.permute(perm).reshape(m, n)
    mean = x.mean(0) if center else None
    xc = x - mean if mean is not None else x
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    u, s, vh = u[:, :rank], s[:rank], vh[:rank]
    xr = (u * s.to(u.dtype)) @ vh
    if mean is not None:
        xr = xr + mean
    denom = float(torch.linalg.vector_norm(x.detach()))
    err = float(torch.linalg.vector_norm((x - xr).detach())) / denom if denom > 0 else 0.0
    back = [0] * nd
    for i, a in enumerate(perm):
        back[a] = i
    recon = xr.reshape([t.shape[a] for a in perm]).permute(back)
    item = t.element_size()
    real_item = torch.empty((), dtype=_real_dtype(t.dtype)).element_size()
    compressed = (m * rank + rank * n + (n if center else 0)) * item + rank * real_item
    return Compression(
        rank=rank,
        factors=(u, s, vh, mean),
        reconstruction=recon,
        rel_error=err,
        bytes_full=t.numel() * item,
        bytes_compressed=compressed,
    )


def top_slices(omega: Omega, k: int, weights_p: Any = None) -> torch.Tensor:
    """Indices (ascending) of the ``k`` slices with the largest weight (mean over B of
    ``weights_p``, ``(P,)`` or ``(B, P)``; ties go to the more recent slice)."""
    if not isinstance(omega, Omega):
        raise arg_error("omega", f"expected an Omega, got {type(omega).__name__}", QsemTypeError)
    b, p = omega.shape[0], omega.shape[4]
    _posint(k, "top_p")
    if k > p:
        raise arg_error("top_p", f"must be <= P = {p}, got {k}")
    w = _edge_weights(None, weights_p, b, p, omega.data).mean(0)
    # sort by (weight, index) descending: stable sort of the reversed order
    order = torch.argsort(w.flip(0), descending=True, stable=True)
    chosen = (p - 1 - order[:k]).sort().values
    return chosen


@dataclass(frozen=True)
class EdgeCompression:
    """Result of :func:`pi_edge_compressed`.

    ``phi``: the compressed Π_edge; ``slices``: kept slice indices; ``rank``: SVD
    rank (None: no SVD); ``rel_error``: reconstruction error of the kept tensor
    (0 without SVD); ``phi_error``: max over positions of the total-variation
    distance to the exact Π_edge; ``bytes_full``/``bytes_compressed``/``bytes_saved``:
    storage of the full Ω against what the edge keeps.
    """

    phi: Phi
    slices: torch.Tensor
    rank: int | None
    rel_error: float
    phi_error: float
    bytes_full: int
    bytes_compressed: int

    @property
    def bytes_saved(self) -> int:
        return self.bytes_full - self.bytes_compressed


def pi_edge_compressed(
    omega: Omega,
    *,
    rank: int | None = None,
    top_p: int | None = None,
    weights_b: Any = None,
    weights_p: Any = None,
    center: bool = False,
) -> EdgeCompression:
    """Compressed Π_edge: keep the ``top_p`` heaviest slices (:func:`top_slices`),
    then a rank-``rank`` truncated SVD (PCA with ``center=True``) of Ω unfolded as
    ``(B·L·P, S·C·Z·Psi)`` — one row per state; Π_edge is read from the
    reconstruction (Born weights renormalised per (b, l, p), since a truncated
    Ω has no longer trace 1) with the kept slices' weights renormalised.
    """
    if not isinstance(omega, Omega):
        raise arg_error("omega", f"expected an Omega, got {type(omega).__name__}", QsemTypeError)
    b, p = omega.shape[0], omega.shape[4]
    exact = pi_edge(omega, weights_b, weights_p)
    wp = (
        torch.full((b, p), 1 / p, dtype=_real_dtype(omega.dtype), device=omega.device)
        if weights_p is None
        else _weights(weights_p, "weights_p", (b, p), omega.data)
    )
    data = omega.data
    slices = torch.arange(p, device=data.device)
    if top_p is not None:
        slices = top_slices(omega, top_p, weights_p)
        data = data[:, :, :, :, slices.to(data.device)]
        wp = wp[:, slices]
        wp = wp / wp.sum(-1, keepdim=True).clamp_min(torch.finfo(wp.dtype).tiny)
    stored = data.numel() * data.element_size()
    err = 0.0
    if rank is not None:
        comp = truncated_svd(data, rank, row_axes=(0, 1, 4), center=center)
        data, err, stored = comp.reconstruction, comp.rel_error, comp.bytes_compressed
    born = (data.real**2 + data.imag**2).sum(dim=(5, 6))
    probs = _category_probs(born, omega.n_categories, "omega")
    phi = _mix(probs, weights_b, wp, True, omega.data)
    tv = 0.5 * (phi.data - exact.data).abs().sum(dim=(-2, -1))
    return EdgeCompression(
        phi=phi,
        slices=slices,
        rank=rank,
        rel_error=err,
        phi_error=float(tv.max()),
        bytes_full=omega.data.numel() * omega.data.element_size(),
        bytes_compressed=stored,
    )
