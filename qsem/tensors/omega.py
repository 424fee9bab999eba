"""Ω: the purification of a state per (b, l, p) on H_S ⊗ H_C ⊗ H_Z, and its wire layout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from qsem.circuits.errors import (
    DimensionError,
    InvalidStateError,
    QsemTypeError,
    arg_error,
)
from qsem.simulators import State

from .base import _atol, _check_finite, _log2, _posint, _size_check, _tensor, _Typed


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
    >>> from qsem.tensors import pi_edge
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
