"""Typed semantic tensors φ, Φ, Ψ, Λ, Ω (DESIGN.md §6).

Each class wraps one torch tensor (``.data``) with named axes (``.axes``, batch
first where there is one), validates it on construction (shape, normalisation,
dtype; errors name the argument) and keeps autograd intact: the operations are
plain torch code, so gradients flow from Ω or φ back to logits and weights.
Pass ``check=False`` to skip the (synchronising) value checks inside a training
loop; shapes and dtypes are always checked.

Axes: ``B`` branches (batch), ``L`` positions, ``S`` semantic spin (3 = truth
T/F/U), ``C`` categories, ``O`` operator axis (``O = S·C``), ``P`` emergence
slices, ``Z`` holographic latents, ``Psi`` purification components.

=========  ==================================  ==============================================
tensor     shape                               definition
=========  ==================================  ==============================================
``Phi``     (B,) L×S×C, real                   φ[l] = Σ_v softmax(z[l])_v e_v; sums to 1
``PhiOps``  (B,) L×S×C×O, O = S·C              operators M_l; A ⊗' B = AB + λ[A, B]; left fold
``Psi``     B×L×S×C×P, real                    slice p: a distribution over S×C
``Lambda``  B×L×S×C×P×Z, real                  component (p, z): a distribution over S×C
``Omega``   B×L×S×C×P×Z×Psi, complex           purification of ρ on H_S ⊗ H_C ⊗ H_Z per (b,l,p)
=========  ==================================  ==============================================

Wire layout of Ω (for each ``(b, l, p)``): the amplitudes ``Ω[b, l, s, c, p, z, ψ]``
are the ``ψ``-th purification component of a state of the register
``dims = [S] + [2]*n_c + [2]*n_z`` — wire 0 is the S qudit (a qutrit for S = 3),
wires ``1..n_c`` the C register (wire 1 the most significant bit of ``c``) and
wires ``n_c+1..n_c+n_z`` the Z register (most significant bit first). The basis
index of ``|s, c, z>`` is ``(s·2^n_c + c)·2^n_z + z``, exactly the index a qsem
``Circuit(dims)`` uses (wire 0 most significant). So Ω's ``C`` axis has ``2^n_c``
entries (the C register) and ``Z`` has ``2^n_z``; ``n_categories <= 2^n_c`` of the C
basis states carry categories: category ``k`` is basis state ``|k>`` of the C
register (``k`` written in binary on wires ``1..n_c``). An S axis of size 1 means
the register has no S wire (``dims = [2]*n_c + [2]*n_z``, the C register from wire 0):
profile AGI-D's circuit.

Π_edge(Ω) -> φ: Born probabilities ``Σ_{z,ψ} |Ω[b,l,s,c,p,z,ψ]|²`` (the partial
trace over Z of ``ρ = Σ_ψ Ω_ψ Ω_ψ^†``, read on its diagonal), restricted to the
``n_categories`` category states of C and renormalised per ``(b, l, p)`` (the
weight on the unused C basis states ``|k>``, ``k >= n_categories``, is discarded and
the rest rescaled to sum to 1; with ``n_categories = 2^n_c`` nothing is discarded),
then a weighted mean over B and P.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from qsem.circuits.errors import (
    DimensionError,
    InvalidStateError,
    QsemTypeError,
    arg_error,
)
from qsem.simulators import State

__all__ = [
    "Compression",
    "EdgeCompression",
    "Lambda",
    "Omega",
    "Phi",
    "PhiOps",
    "Psi",
    "commutator",
    "compose",
    "fold",
    "nci",
    "nci_avg",
    "omega_dims",
    "pi_edge",
    "pi_edge_born",
    "pi_edge_compressed",
    "semantic_embedding",
    "top_slices",
    "truncated_svd",
]

#: Tolerance of the normalisation checks (sums to 1, non-negative), per real dtype.
NORM_ATOL = {
    torch.float16: 1e-2,
    torch.bfloat16: 2e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-9,
}

T = TypeVar("T", bound="_Typed")


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dtype).real.dtype if dtype.is_complex else dtype


def _atol(dtype: torch.dtype, atol: float | None) -> float:
    return float(atol) if atol is not None else NORM_ATOL.get(_real_dtype(dtype), 1e-9)


def _tensor(value: Any, name: str, *, complex_: bool | None = False) -> torch.Tensor:
    """A floating tensor (real when ``complex_`` is False, complex when True, either if None)."""
    if not isinstance(value, torch.Tensor):
        raise arg_error(name, f"expected a torch.Tensor, got {type(value).__name__}", QsemTypeError)
    if complex_ is True and not value.is_complex():
        raise arg_error(name, f"must be a complex tensor, got {value.dtype}", QsemTypeError)
    if complex_ is False and not value.dtype.is_floating_point:
        raise arg_error(name, f"must be a real floating tensor, got {value.dtype}", QsemTypeError)
    if complex_ is None and not (value.dtype.is_floating_point or value.is_complex()):
        raise arg_error(
            name, f"must be a floating or complex tensor, got {value.dtype}", QsemTypeError
        )
    return value


def _check_finite(t: torch.Tensor, name: str) -> None:
    d = t.detach()
    if not bool(torch.isfinite(torch.view_as_real(d) if d.is_complex() else d).all()):
        raise arg_error(name, "contains NaN or inf")


def _check_distribution(
    t: torch.Tensor, name: str, dims: tuple[int, ...], atol: float | None, what: str
) -> None:
    """Non-negative and summing to 1 over ``dims`` (within the dtype's tolerance)."""
    _check_finite(t, name)
    tol = _atol(t.dtype, atol)
    d = t.detach()
    low = float(d.min()) if d.numel() else 0.0
    if low < -tol:
        raise arg_error(name, f"{what} must be non-negative, found {low:.3g} (tol {tol:g})")
    sums = d.sum(dim=dims)
    err = (sums - 1).abs()
    if err.numel() and float(err.max()) > tol:
        idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
        raise arg_error(
            name,
            f"{what} must sum to 1; at index {idx} the sum is {float(sums[idx]):.6g} (tol {tol:g})",
        )


def _size_check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise arg_error(name, msg, DimensionError)


class _Typed:
    """Common behaviour: ``data``, ``axes``, sizes by axis name, ``detach``/``to``."""

    axes: tuple[str, ...]
    data: torch.Tensor

    def _copy(self: T, data: torch.Tensor) -> T:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.data = data
        return new

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def sizes(self) -> dict[str, int]:
        """Axis name -> size."""
        return dict(zip(self.axes, self.data.shape, strict=True))

    def size(self, axis: str) -> int:
        """The size of the named axis (``"B"``, ``"L"``, ``"S"``, ...)."""
        if axis not in self.axes:
            raise arg_error(
                "axis", f"{type(self).__name__} has axes {list(self.axes)}, not {axis!r}"
            )
        return int(self.data.shape[self.axes.index(axis)])

    def detach(self: T) -> T:
        return self._copy(self.data.detach())

    def to(self: T, *args: Any, **kwargs: Any) -> T:
        """``tensor.to(...)`` on the data (device or dtype of the same kind)."""
        data = self.data.to(*args, **kwargs)
        if data.is_complex() != self.data.is_complex():
            raise arg_error("dtype", f"{type(self).__name__} keeps its real/complex kind")
        return self._copy(data)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{a}={n}" for a, n in self.sizes.items())
        return f"{type(self).__name__}({sizes}, dtype={self.data.dtype})"


# ---------------------------------------------------------------------------------------------
# φ
# ---------------------------------------------------------------------------------------------
def semantic_embedding(weights: torch.Tensor) -> torch.Tensor:
    """Vocabulary embedding ``e_v`` (``(V, S, C)``): a softmax over S×C of raw ``weights``.

    Use it to parametrise a learned embedding whose rows are distributions.
    """
    w = _tensor(weights, "weights")
    if w.dim() != 3:
        raise arg_error("weights", f"expected shape (V, S, C), got {tuple(w.shape)}")
    return torch.softmax(w.flatten(1), dim=-1).reshape(w.shape)


class Phi(_Typed):
    """φ: per position a distribution over S×C, shape ``(L, S, C)`` or ``(B, L, S, C)``.

    >>> import torch
    >>> logits = torch.tensor([[0.0, 0.0]])          # L = 1, V = 2
    >>> emb = torch.tensor([[[1.0, 0.0], [0, 0], [0, 0]],  # e_0 = |T, c0>
    ...                     [[0.0, 0.0], [0, 1], [0, 0]]])  # e_1 = |F, c1>
    >>> Phi.from_logits(logits, emb).data[0]
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000],
            [0.0000, 0.0000]])
    """

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() not in (3, 4):
            raise arg_error(
                "data", f"expected shape (L, S, C) or (B, L, S, C), got {tuple(t.shape)}"
            )
        self.axes = ("L", "S", "C") if t.dim() == 3 else ("B", "L", "S", "C")
        if check:
            _check_distribution(t, "data", (-2, -1), atol, "each φ[l] over S×C")
        self.data = t

    @classmethod
    def from_logits(
        cls, logits: torch.Tensor, embedding: torch.Tensor, *, check: bool = True
    ) -> Phi:
        """``φ[l] = Σ_v softmax(logits[l])_v · embedding[v]``.

        ``logits``: ``(L, V)`` or ``(B, L, V)`` token logits; ``embedding``: ``(V, S, C)``,
        each ``embedding[v]`` a distribution over S×C (see :func:`semantic_embedding`).
        Each φ[l] is a convex mixture of distributions, so it sums to 1.
        """
        z = _tensor(logits, "logits")
        e = _tensor(embedding, "embedding")
        if z.dim() not in (2, 3):
            raise arg_error("logits", f"expected shape (L, V) or (B, L, V), got {tuple(z.shape)}")
        if e.dim() != 3:
            raise arg_error("embedding", f"expected shape (V, S, C), got {tuple(e.shape)}")
        _size_check(
            e.shape[0] == z.shape[-1],
            "embedding",
            f"has {e.shape[0]} vocabulary rows but logits have V = {z.shape[-1]}",
        )
        if check:
            _check_finite(z, "logits")
            _check_distribution(e, "embedding", (-2, -1), None, "each embedding row e_v")
        dtype = torch.promote_types(z.dtype, e.dtype)
        p = torch.softmax(z.to(dtype), dim=-1)
        return cls(torch.einsum("...lv,vsc->...lsc", p, e.to(dtype)), check=False)

    @property
    def batched(self) -> bool:
        return self.data.dim() == 4

    def flat(self) -> torch.Tensor:
        """The distributions flattened over S×C: ``(..., L, S·C)`` (index ``s·C + c``)."""
        return self.data.flatten(-2)

    def marginal(self, axis: str) -> torch.Tensor:
        """The marginal over ``"S"`` (truth; sums C out) or ``"C"``: ``(..., L, S|C)``."""
        if axis == "S":
            return self.data.sum(-1)
        if axis == "C":
            return self.data.sum(-2)
        raise arg_error("axis", f"must be 'S' or 'C', got {axis!r}")

    def distance(self, other: Phi, norm: str = "fro") -> torch.Tensor:
        """``‖φ − φ'‖`` over everything (``"fro"``: Frobenius, ``"l1"``): a scalar tensor."""
        if not isinstance(other, Phi):
            raise arg_error("other", f"expected a Phi, got {type(other).__name__}", QsemTypeError)
        _size_check(
            other.shape == self.shape, "other", f"shape {tuple(other.shape)} != {tuple(self.shape)}"
        )
        d = self.data - other.data
        if norm == "fro":
            return torch.linalg.vector_norm(d)
        if norm == "l1":
            return d.abs().sum()
        raise arg_error("norm", f"must be 'fro' or 'l1', got {norm!r}")


# ---------------------------------------------------------------------------------------------
# Φ
# ---------------------------------------------------------------------------------------------
def _square(x: Any, name: str) -> torch.Tensor:
    t = _tensor(x, name, complex_=None)
    if t.dim() < 2 or t.shape[-1] != t.shape[-2]:
        raise arg_error(name, f"expected square matrices (..., D, D), got {tuple(t.shape)}")
    return t


def _lam(lam: Any, ref: torch.Tensor, check: bool = True) -> torch.Tensor:
    if isinstance(lam, bool) or not isinstance(lam, (int, float, torch.Tensor)):
        raise arg_error(
            "lam", f"expected a number or a tensor, got {type(lam).__name__}", QsemTypeError
        )
    # a Python number goes straight to the operators' precision (never through float32)
    if isinstance(lam, torch.Tensor):
        t = lam.to(device=ref.device)
    else:
        t = torch.as_tensor(lam, dtype=_real_dtype(ref.dtype), device=ref.device)
    if check:
        _check_finite(t, "lam")
    if t.is_complex() and not ref.is_complex():
        raise arg_error("lam", "a complex λ needs complex operators", QsemTypeError)
    t = t.to(ref.dtype if t.is_complex() else _real_dtype(ref.dtype))
    if t.dim() > 1:
        raise arg_error("lam", f"expected a scalar or a batch (B,), got shape {tuple(t.shape)}")
    return t[..., None, None] if t.dim() == 1 else t


def commutator(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[A, B] = AB − BA`` of (batched) square matrices."""
    a, b = _square(a, "a"), _square(b, "b")
    return a @ b - b @ a


def compose(
    a: torch.Tensor, b: torch.Tensor, lam: Any = 0.0, *, check: bool = True
) -> torch.Tensor:
    """``A ⊗' B = AB + λ[A, B]`` (``λ`` a number or a batch ``(B,)``).

    At ``λ = 0`` it is the matrix product; ``λ = −1`` gives ``BA``. For ``λ != 0``
    and non-commuting A, B the order matters. ``check=False`` skips the
    (synchronising) finiteness check of ``λ`` (shapes are always checked): the
    composer layer calls it so inside its training loop.
    """
    a, b = _square(a, "a"), _square(b, "b")
    _size_check(a.shape[-1] == b.shape[-1], "b", f"size {b.shape[-1]} != size {a.shape[-1]} of a")
    ab = a @ b
    return ab + _lam(lam, ab, check) * (ab - b @ a)


def fold(matrices: torch.Tensor, lam: Any = 0.0, *, check: bool = True) -> torch.Tensor:
    """Left fold ``((M_1 ⊗' M_2) ⊗' M_3) ... ⊗' M_L`` of ``(..., L, D, D)`` -> ``(..., D, D)``."""
    m = _square(matrices, "matrices")
    if m.dim() < 3 or m.shape[-3] < 1:
        raise arg_error("matrices", f"expected (..., L, D, D) with L >= 1, got {tuple(m.shape)}")
    acc = m[..., 0, :, :]
    for i in range(1, m.shape[-3]):
        acc = compose(acc, m[..., i, :, :], lam, check=check)
    return acc


def nci(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Non-commutativity index ``‖[A, B]‖_F / (‖A‖_F ‖B‖_F)`` (0 if A or B is 0).

    It lies in ``[0, √2]``; 0 exactly when A and B commute.
    """
    c = commutator(a, b)
    den = torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b)
    num = torch.linalg.matrix_norm(c)
    tiny = torch.finfo(num.dtype).tiny
    return torch.where(den > 0, num / den.clamp_min(tiny), torch.zeros_like(num))


def nci_avg(matrices: torch.Tensor) -> torch.Tensor:
    """Mean NCI over adjacent positions of ``(..., L, D, D)``: ``(...)`` (0 when L = 1)."""
    m = _square(matrices, "matrices")
    if m.dim() < 3:
        raise arg_error("matrices", f"expected (..., L, D, D), got {tuple(m.shape)}")
    if m.shape[-3] < 2:
        return torch.zeros(m.shape[:-3], dtype=_real_dtype(m.dtype), device=m.device)
    return nci(m[..., :-1, :, :], m[..., 1:, :, :]).mean(-1)


class PhiOps(_Typed):
    """Φ: per position an operator ``M_l`` on the S·C space, ``([B,] L, S, C, O)``.

    ``O = S·C``; ``M_l[s·C + c, o] = data[..., l, s, c, o]`` (the row is the (s, c)
    output index, the column the input). Real or complex.

    >>> import torch
    >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0]]); z = torch.diag(torch.tensor([1.0, -1.0]))
    >>> ops = PhiOps.from_matrices(torch.stack([x, z]), s=2, c=1)
    >>> ops.fold(0.0)            # X Z
    tensor([[ 0., -1.],
            [ 1.,  0.]])
    >>> round(float(ops.nci_avg()), 6)     # ‖[X, Z]‖ / (‖X‖ ‖Z‖) = 2√2 / 2
    1.414214
    """

    def __init__(self, data: torch.Tensor, *, check: bool = True) -> None:
        t = _tensor(data, "data", complex_=None)
        if t.dim() not in (4, 5):
            raise arg_error(
                "data", f"expected shape (L, S, C, O) or (B, L, S, C, O), got {tuple(t.shape)}"
            )
        _size_check(
            t.shape[-1] == t.shape[-2] * t.shape[-3],
            "data",
            f"operator axis O = {t.shape[-1]} must equal S·C = {t.shape[-3] * t.shape[-2]}",
        )
        if check:
            _check_finite(t, "data")
        self.axes = ("L", "S", "C", "O") if t.dim() == 4 else ("B", "L", "S", "C", "O")
        self.data = t

    @classmethod
    def from_matrices(cls, matrices: torch.Tensor, s: int, c: int, *, check: bool = True) -> PhiOps:
        """From ``(L, D, D)`` or ``(B, L, D, D)`` matrices with ``D = s·c``."""
        m = _square(matrices, "matrices")
        if m.dim() not in (3, 4):
            raise arg_error("matrices", f"expected (L, D, D) or (B, L, D, D), got {tuple(m.shape)}")
        for n, v in (("s", s), ("c", c)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise arg_error(n, f"must be a positive integer, got {v!r}")
        _size_check(m.shape[-1] == s * c, "matrices", f"D = {m.shape[-1]} != s·c = {s * c}")
        return cls(m.reshape(*m.shape[:-2], s, c, s * c), check=check)

    @property
    def matrices(self) -> torch.Tensor:
        """``(..., L, D, D)`` with ``D = S·C``."""
        return self.data.flatten(-3, -2)

    def fold(self, lam: Any = 0.0) -> torch.Tensor:
        """The sequence operator ``M_1 ⊗' ... ⊗' M_L`` (left fold): ``(..., D, D)``."""
        return fold(self.matrices, lam)

    def nci_avg(self) -> torch.Tensor:
        """Mean NCI of adjacent positions: ``()`` or ``(B,)``."""
        return nci_avg(self.matrices)

    def apply(self, phi: Phi) -> torch.Tensor:
        """``M_l φ[l]`` per position (φ flattened over S×C): ``(..., L, S, C)`` (not normalised)."""
        if not isinstance(phi, Phi):
            raise arg_error("phi", f"expected a Phi, got {type(phi).__name__}", QsemTypeError)
        _size_check(
            tuple(phi.shape[-3:]) == tuple(self.shape[-4:-1]),
            "phi",
            f"(L, S, C) = {tuple(phi.shape[-3:])} does not match Φ's {tuple(self.shape[-4:-1])}",
        )
        m = self.matrices
        v = phi.flat().to(m.dtype)
        return (m @ v[..., None])[..., 0].reshape(*v.shape[:-1], *phi.shape[-2:])


# ---------------------------------------------------------------------------------------------
# Ψ
# ---------------------------------------------------------------------------------------------
class Psi(_Typed):
    """Ψ: ``(B, L, S, C, P)``; slice ``p`` holds the S×C distribution of regime ``p``.

    A new slice is appended at each emergence event (:meth:`append_slice`).

    >>> import torch
    >>> phi = Phi(torch.full((2, 3, 1), 1 / 3))         # L = 2, S = 3, C = 1
    >>> psi = Psi.from_phi(phi).append_slice(phi)
    >>> psi.sizes
    {'B': 1, 'L': 2, 'S': 3, 'C': 1, 'P': 2}
    """

    axes = ("B", "L", "S", "C", "P")

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() != 5 or t.shape[-1] < 1:
            raise arg_error(
                "data", f"expected shape (B, L, S, C, P) with P >= 1, got {tuple(t.shape)}"
            )
        if check:
            _check_distribution(t, "data", (2, 3), atol, "each slice Ψ[b, l, :, :, p] over S×C")
        self.data = t

    @staticmethod
    def _phi_data(phi: Phi) -> torch.Tensor:
        if not isinstance(phi, Phi):
            raise arg_error("phi", f"expected a Phi, got {type(phi).__name__}", QsemTypeError)
        return phi.data if phi.batched else phi.data[None]

    @classmethod
    def from_phi(cls, phi: Phi) -> Psi:
        """One slice holding φ (an unbatched φ gets ``B = 1``)."""
        return cls(cls._phi_data(phi)[..., None], check=False)

    def append_slice(self, phi: Phi) -> Psi:
        """A new Ψ with φ appended as slice ``P`` (on an emergence event)."""
        d = self._phi_data(phi)
        _size_check(
            tuple(d.shape) == tuple(self.shape[:4]),
            "phi",
            f"shape (B, L, S, C) = {tuple(d.shape)} does not match Ψ's {tuple(self.shape[:4])}",
        )
        return Psi(torch.cat([self.data, d[..., None].to(self.dtype)], dim=-1), check=False)

    def slice(self, p: int) -> Phi:
        """Slice ``p`` (negative counts from the end) as a batched φ ``(B, L, S, C)``."""
        n = self.shape[-1]
        if isinstance(p, bool) or not isinstance(p, int) or not -n <= p < n:
            raise arg_error("p", f"slice index must be an int in [-{n}, {n}), got {p!r}")
        return Phi(self.data[..., p], check=False)

    def delta(self, previous: Psi, norm: str = "fro") -> torch.Tensor:
        """``ΔΨ = ‖Ψ_t − Ψ_{t−1}‖`` over (S, C) per (b, l, p): ``(B, L, P')``.

        ``P' = min(P_t, P_{t−1})``: the slices both tensors have (a slice appended
        since ``previous`` has no predecessor). ``norm``: ``"fro"`` or ``"l1"``.
        """
        if not isinstance(previous, Psi):
            raise arg_error(
                "previous", f"expected a Psi, got {type(previous).__name__}", QsemTypeError
            )
        _size_check(
            previous.shape[:4] == self.shape[:4],
            "previous",
            f"(B, L, S, C) = {tuple(previous.shape[:4])} != {tuple(self.shape[:4])}",
        )
        k = min(self.shape[-1], previous.shape[-1])
        d = self.data[..., :k] - previous.data[..., :k]
        if norm == "fro":
            return torch.linalg.vector_norm(d, dim=(2, 3))
        if norm == "l1":
            return d.abs().sum(dim=(2, 3))
        raise arg_error("norm", f"must be 'fro' or 'l1', got {norm!r}")


# ---------------------------------------------------------------------------------------------
# Λ
# ---------------------------------------------------------------------------------------------
def _weights(
    w: Any, name: str, shape: tuple[int, ...], ref: torch.Tensor, check: bool = True
) -> torch.Tensor:
    """Weights broadcastable to ``shape``, non-negative, summing to 1 over the last axis
    (``check=False``: the values are not checked, only the shape)."""
    t = _tensor(w, name)
    try:
        t = torch.broadcast_to(t, shape)
    except RuntimeError:
        raise arg_error(
            name, f"shape {tuple(t.shape)} does not broadcast to {shape}", DimensionError
        ) from None
    if check:
        _check_distribution(t, name, (-1,), None, "weights")
    return t.to(dtype=_real_dtype(ref.dtype), device=ref.device)


class Lambda(_Typed):
    """Λ: ``(B, L, S, C, P, Z)``; each component ``(p, z)`` a distribution over S×C.

    ``proj_{Z->S,C}``: ``φ[b, l] = Σ_p w_P[p] Σ_z w_Z[z] Λ[b, l, :, :, p, z]``
    (:meth:`project`; the weights are distributions, uniform by default, so φ
    sums to 1).

    >>> import torch
    >>> lam = Lambda.from_logits(torch.zeros(1, 2, 3, 2, 1, 4))
    >>> lam.project().data.sum((-2, -1))
    tensor([[1., 1.]])
    """

    axes = ("B", "L", "S", "C", "P", "Z")

    def __init__(
        self, data: torch.Tensor, *, atol: float | None = None, check: bool = True
    ) -> None:
        t = _tensor(data, "data")
        if t.dim() != 6:
            raise arg_error("data", f"expected shape (B, L, S, C, P, Z), got {tuple(t.shape)}")
        if check:
            _check_distribution(t, "data", (2, 3), atol, "each component Λ[b, l, :, :, p, z]")
        self.data = t

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> Lambda:
        """Softmax over S×C of raw ``(B, L, S, C, P, Z)`` logits."""
        z = _tensor(logits, "logits")
        if z.dim() != 6:
            raise arg_error("logits", f"expected shape (B, L, S, C, P, Z), got {tuple(z.shape)}")
        b, l, s, c, p, nz = z.shape
        flat = z.permute(0, 1, 4, 5, 2, 3).reshape(b, l, p, nz, s * c)
        dist = torch.softmax(flat, -1).reshape(b, l, p, nz, s, c).permute(0, 1, 4, 5, 2, 3)
        return cls(dist, check=False)

    def project(self, weights_z: Any = None, weights_p: Any = None, *, check: bool = True) -> Phi:
        """``proj_{Z->S,C}``: φ ``(B, L, S, C)``.

        ``weights_z`` broadcastable to ``(B, L, P, Z)``, ``weights_p`` to ``(B, L, P)``;
        each a distribution over its last axis (default uniform). ``check=False``
        skips the (synchronising) value checks of the weights, as inside a training
        loop (:class:`qsem.layers.HolographicReducer` calls it so).
        """
        b, l, _, _, p, nz = self.shape
        d = self.data
        wz = (
            torch.full((b, l, p, nz), 1 / nz, dtype=d.dtype, device=d.device)
            if weights_z is None
            else _weights(weights_z, "weights_z", (b, l, p, nz), d, check)
        )
        wp = (
            torch.full((b, l, p), 1 / p, dtype=d.dtype, device=d.device)
            if weights_p is None
            else _weights(weights_p, "weights_p", (b, l, p), d, check)
        )
        return Phi(torch.einsum("blscpz,blpz,blp->blsc", d, wz, wp), check=False)


# ---------------------------------------------------------------------------------------------
# Ω
# ---------------------------------------------------------------------------------------------
def _log2(n: int, name: str, axis: str) -> int:
    k = n.bit_length() - 1
    if n < 1 or (1 << k) != n:
        raise arg_error(
            name,
            f"axis {axis} is a qubit register and needs a power-of-two size, got {n}",
            DimensionError,
        )
    return k


def _posint(v: Any, name: str, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise arg_error(name, f"must be an integer >= {low}, got {v!r}")
    return v


def omega_dims(n_categories: int, n_z: int = 0, s: int = 3) -> list[int]:
    """Wire dims of the register for one Ω state: ``[s] + [2]*n_c + [2]*n_z``.

    ``n_c = ⌈log2 n_categories⌉`` qubits hold the categories (0 for one category);
    ``s = 1`` means no S wire (``[2]*(n_c + n_z)``; Ω's S axis then has size 1).
    :class:`qsem.layers.QuantumSemanticLayer` builds its circuit on these wires.

    >>> omega_dims(3, n_z=2)
    [3, 2, 2, 2, 2]
    >>> omega_dims(3, n_z=1, s=1)
    [2, 2, 2]
    """
    _posint(n_categories, "n_categories")
    _posint(n_z, "n_z", 0)
    _posint(s, "s", 1)
    n_c = (n_categories - 1).bit_length()
    return [s] * (s > 1) + [2] * (n_c + n_z)


class Omega(_Typed):
    """Ω: complex ``(B, L, S, C, P, Z, Psi)``, the purification of a state per (b, l, p).

    ``ρ[b, l, p] = Σ_ψ Ω_ψ Ω_ψ^†`` on ``H_S ⊗ H_C ⊗ H_Z`` with the wire layout of the
    module docstring (``dims = [S] + [2]*n_c + [2]*n_z``); ``C = 2^n_c`` and
    ``Z = 2^n_z`` are register sizes and ``n_categories`` (default ``C``) of the C
    basis states carry categories. Checked: ``Σ_{s,c,z,ψ} |Ω|² = 1`` per (b, l, p).

    >>> import torch
    >>> from qsem.circuits import Circuit, H, TShift
    >>> from qsem.simulators import simulate
    >>> state = simulate(Circuit([3, 2]).add(TShift(wires=0), H(wires=1)), dtype=torch.complex128)
    >>> omega = Omega.from_state(state, n_c=1)
    >>> pi_edge(omega).data[0]                  # |F> with a uniform category
    tensor([[0.0000, 0.0000],
            [0.5000, 0.5000],
            [0.0000, 0.0000]], dtype=torch.float64)
    """

    axes = ("B", "L", "S", "C", "P", "Z", "Psi")

    def __init__(
        self,
        data: torch.Tensor,
        *,
        n_categories: int | None = None,
        atol: float | None = None,
        check: bool = True,
    ) -> None:
        t = _tensor(data, "data", complex_=True)
        if t.dim() != 7:
            raise arg_error("data", f"expected shape (B, L, S, C, P, Z, Psi), got {tuple(t.shape)}")
        self.n_c = _log2(int(t.shape[3]), "data", "C")
        self.n_z = _log2(int(t.shape[5]), "data", "Z")
        n_cat = int(t.shape[3]) if n_categories is None else _posint(n_categories, "n_categories")
        if n_cat > t.shape[3]:
            raise arg_error(
                "n_categories",
                f"{n_cat} categories do not fit the C register of {t.shape[3]} basis states",
            )
        self.n_categories = n_cat
        if check:
            _check_finite(t, "data")
            norms = (t.detach().abs() ** 2).sum(dim=(2, 3, 5, 6))
            tol = _atol(t.dtype, atol)
            err = (norms - 1).abs()
            if float(err.max()) > tol:
                idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
                raise InvalidStateError(
                    f"argument 'data': Σ|Ω|² over (S, C, Z, Psi) must be 1 (trace of ρ); at "
                    f"(b, l, p) = {idx} it is {float(norms[idx]):.6g} (tol {tol:g})"
                )
        self.data = t

    # -- layout ---------------------------------------------------------------------------
    @property
    def dims(self) -> list[int]:
        """Wire dimensions of one (b, l, p) state: ``[S] + [2]*n_c + [2]*n_z``
        (no S wire when ``S = 1``)."""
        return omega_dims(2**self.n_c, self.n_z, int(self.shape[2]))

    @property
    def s_wire(self) -> int | None:
        """Wire of the S qudit: 0, or None when ``S = 1`` (no S wire)."""
        return 0 if self.shape[2] > 1 else None

    @property
    def c_wires(self) -> list[int]:
        first = 0 if self.s_wire is None else 1
        return list(range(first, first + self.n_c))

    @property
    def z_wires(self) -> list[int]:
        first = (0 if self.s_wire is None else 1) + self.n_c
        return list(range(first, first + self.n_z))

    @property
    def dim(self) -> int:
        return math.prod(self.dims)

    def vectors(self) -> torch.Tensor:
        """Purification components as ``(B, L, P, Psi, D)`` vectors in the circuit's basis order."""
        b, l, s, c, p, z, r = self.shape
        return self.data.permute(0, 1, 4, 6, 2, 3, 5).reshape(b, l, p, r, s * c * z)

    def density_matrices(self) -> torch.Tensor:
        """``ρ = Σ_ψ Ω_ψ Ω_ψ^†`` per (b, l, p): ``(B, L, P, D, D)``."""
        v = self.vectors()
        return torch.einsum("blpri,blprj->blpij", v, v.conj())

    def reduced_density_matrices(self) -> torch.Tensor:
        """``Tr_Z ρ`` per (b, l, p) on ``H_S ⊗ H_C``: ``(B, L, P, S·C, S·C)``."""
        b, l, s, c, p, _, _ = self.shape
        rho = torch.einsum("bltcpzr,bludpzr->blptcud", self.data, self.data.conj())
        return rho.reshape(b, l, p, s * c, s * c)

    def born(self) -> torch.Tensor:
        """Born probabilities over (S, C-register) per (b, l, p): ``(B, L, S, C, P)``."""
        return (self.data.real**2 + self.data.imag**2).sum(dim=(5, 6))

    def to_state(self) -> State:
        """Ω as a :class:`State` of batch ``B·L·P``: row ``(b·L + l)·P + p`` is (b, l, p).

        A pure Ω (``Psi = 1``) gives a statevector State; otherwise a density-matrix
        State held factored, ``ρ = Σ_ψ |Ω_ψ><Ω_ψ|``. The qsem measurements (``probs``,
        ``reduced_density_matrix``...) apply to it, and the similarity functions of
        :mod:`qsem.simulators.similarity` (``overlap``, ``fidelity``, the SWAP tests)
        call it, so they take an Ω directly.
        """
        b, l, p, r, d = self.vectors().shape
        factor = self.vectors().reshape(b * l * p, r, d)
        if r == 1:
            return State(factor[:, 0], tuple(self.dims), "statevector", True)
        return State(None, tuple(self.dims), "density_matrix", True, factor=factor)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def from_vectors(
        cls,
        vectors: torch.Tensor,
        dims: Sequence[int],
        n_c: int,
        *,
        n_categories: int | None = None,
        s_wire: bool = True,
        check: bool = True,
    ) -> Omega:
        """From components ``(B, L, P, Psi, D)`` in the basis order of ``dims``.

        ``dims = [S] + [2]*(n_c + n_z)``: the S qudit, then the C and Z qubits;
        ``s_wire=False``: ``dims = [2]*(n_c + n_z)``, no S wire (Ω's S axis has size 1).
        """
        v = _tensor(vectors, "vectors", complex_=True)
        if v.dim() != 5:
            raise arg_error("vectors", f"expected shape (B, L, P, Psi, D), got {tuple(v.shape)}")
        dims = [int(x) for x in dims]
        _posint(n_c, "n_c", 0)
        n_s = 1 if s_wire else 0
        if len(dims) < n_s + n_c or any(x != 2 for x in dims[n_s:]) or (s_wire and dims[0] < 2):
            want = "[S] + [2]*(n_c + n_z)" if s_wire else "[2]*(n_c + n_z) (s_wire=False)"
            raise arg_error("dims", f"expected {want} with n_c = {n_c}, got {dims}", DimensionError)
        _size_check(
            v.shape[-1] == math.prod(dims),
            "vectors",
            f"D = {v.shape[-1]} does not match dims {dims} (product {math.prod(dims)})",
        )
        b, l, p, r, _ = v.shape
        s, c, z = dims[0] if s_wire else 1, 2**n_c, 2 ** (len(dims) - n_s - n_c)
        data = v.reshape(b, l, p, r, s, c, z).permute(0, 1, 4, 5, 2, 6, 3)
        return cls(data, n_categories=n_categories, check=check)

    @classmethod
    def from_density_matrices(
        cls,
        rho: torch.Tensor,
        dims: Sequence[int],
        n_c: int,
        *,
        n_categories: int | None = None,
        s_wire: bool = True,
        atol: float | None = None,
        check: bool = True,
    ) -> Omega:
        """From ``ρ`` ``(B, L, P, D, D)`` (checked Hermitian, PSD, trace 1 unless
        ``check=False``).

        The components are the columns of ``sqrt(ρ)`` (``Psi = D``): ``ρ = sqrt(ρ)
        sqrt(ρ)^†``. ``sqrt(ρ)`` comes from :func:`qsem.simulators.similarity.psd_sqrt`,
        whose backward pass stays finite at repeated eigenvalues (a depolarised state),
        where differentiating an eigendecomposition would give NaN.
        """
        from qsem.simulators import check_density_matrix
        from qsem.simulators.similarity import psd_sqrt

        r = _tensor(rho, "rho", complex_=True)
        if r.dim() != 5:
            raise arg_error("rho", f"expected shape (B, L, P, D, D), got {tuple(r.shape)}")
        if check:
            check_density_matrix(r, "rho", atol)
        comps = psd_sqrt(r)
        return cls.from_vectors(
            comps.transpose(-1, -2),
            dims,
            n_c,
            n_categories=n_categories,
            s_wire=s_wire,
            check=check,
        )

    @classmethod
    def from_state(
        cls,
        state: State,
        n_c: int,
        *,
        shape: tuple[int, int, int] | None = None,
        n_categories: int | None = None,
        s_wire: bool = True,
        check: bool = True,
    ) -> Omega:
        """Wrap a simulated register ``[S] + [2]*n_c + [2]*n_z`` as Ω.

        The state's batch (size ``N``; 1 if unbatched) becomes ``shape = (B, L, P)``
        (default ``(N, 1, 1)``), row ``(b·L + l)·P + p``. A statevector gives
        ``Psi = 1``; a factored density matrix its components ``sqrt(w_k) ψ_k``; a
        dense one the columns of ``sqrt(ρ)`` (:meth:`from_density_matrices`).
        ``s_wire=False``: the register has no S wire (``[2]*(n_c + n_z)``).
        ``check=False`` skips the (synchronising) normalisation check, as inside a
        training loop (:class:`qsem.layers.QuantumSemanticLayer` calls it so).
        """
        if not isinstance(state, State):
            raise arg_error("state", f"expected a State, got {type(state).__name__}", QsemTypeError)
        n = state.batch_size
        shp = (n, 1, 1) if shape is None else tuple(shape)
        if len(shp) != 3 or any(isinstance(x, bool) or not isinstance(x, int) for x in shp):
            raise arg_error("shape", f"expected three ints (B, L, P), got {shape!r}")
        _size_check(math.prod(shp) == n, "shape", f"{shp} does not hold the state's batch of {n}")
        if state.mode == "statevector":
            comps = state.tensor[:, None, :]
        elif state.factor is not None:
            f = state.factor
            comps = f if state.weights is None else f * state.weights.sqrt()[..., None].to(f.dtype)
        else:
            return cls.from_density_matrices(
                state.tensor.reshape(*shp, state.dim, state.dim),
                state.dims,
                n_c,
                n_categories=n_categories,
                s_wire=s_wire,
                check=check,
            )
        return cls.from_vectors(
            comps.reshape(*shp, *comps.shape[1:]),
            state.dims,
            n_c,
            n_categories=n_categories,
            s_wire=s_wire,
            check=check,
        )


# ---------------------------------------------------------------------------------------------
# Π_edge
# ---------------------------------------------------------------------------------------------
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
