"""Simulation results and user-provided initial states, with validation."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from qsem.circuits.errors import InvalidStateError, QsemTypeError, arg_error
from qsem.circuits.tolerances import STATE_ATOL, atol_for

Mode = Literal["statevector", "density_matrix"]
MODES: tuple[str, ...] = ("statevector", "density_matrix")


def check_mode(mode: object) -> Mode:
    if mode not in MODES:
        raise arg_error("mode", f"must be one of {list(MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def check_dtype(dtype: object) -> torch.dtype:
    if dtype not in (torch.complex64, torch.complex128):
        raise arg_error("dtype", f"must be torch.complex64 or torch.complex128, got {dtype!r}")
    return dtype


class State:
    """A simulated register.

    ``tensor`` is ``(B, D)`` (statevector) or ``(B, D, D)`` (density matrix); ``dims``
    are the wire dimensions (wire 0 most significant); ``batched`` tells whether the
    user asked for a batch (measurements drop the batch axis when not).

    A density matrix may be held factored, ``ρ = Σ_k w_k |ψ_k><ψ_k|`` with ``factor``
    of shape ``(B, r, D)`` and ``weights`` ``(B, r)`` (``None``: all 1) — the
    purification of the semantic hierarchy's Ω with components ``sqrt(w_k) ψ_k``; ``tensor`` then
    builds the dense ``ρ`` on first access, while measurements use the factor.
    """

    def __init__(
        self,
        tensor: torch.Tensor | None,
        dims: tuple[int, ...],
        mode: Mode,
        batched: bool,
        *,
        factor: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        if tensor is None and factor is None:
            raise arg_error("tensor", "a State needs a tensor or a factor")
        self._tensor = tensor
        self.factor = factor
        self.weights = weights
        self.dims = tuple(dims)
        self.mode: Mode = mode
        self.batched = batched

    @property
    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            f = self.factor
            assert f is not None
            left = f if self.weights is None else f * self.weights[..., None].to(f.dtype)
            self._tensor = left.transpose(1, 2) @ f.conj()
        return self._tensor

    @property
    def rank(self) -> int | None:
        """Number of purification components when factored, else ``None``."""
        return None if self.factor is None else int(self.factor.shape[1])

    def __repr__(self) -> str:
        form = f", rank={self.rank}" if self.factor is not None else ""
        return f"State(mode={self.mode!r}, dims={list(self.dims)}, batch={self.batch_size}{form})"

    @property
    def batch_size(self) -> int:
        src = self.factor if self.factor is not None else self._tensor
        assert src is not None
        return int(src.shape[0])

    @property
    def dim(self) -> int:
        return math.prod(self.dims)

    def unbatch(self, t: torch.Tensor) -> torch.Tensor:
        """Drop the leading batch axis of ``t`` when the state is unbatched."""
        return t if self.batched else t[0]

    @property
    def vector(self) -> torch.Tensor:
        """The statevector ``(B, D)`` (or ``(D,)``); density-matrix states raise."""
        if self.mode != "statevector":
            raise arg_error("state", "a density-matrix state has no statevector")
        return self.unbatch(self.tensor)

    @property
    def density_matrix(self) -> torch.Tensor:
        """``ρ`` as ``(B, D, D)`` (or ``(D, D)``); statevectors give ``|ψ><ψ|``."""
        if self.mode == "density_matrix":
            return self.unbatch(self.tensor)
        psi = self.tensor
        return self.unbatch(psi[:, :, None] * psi.conj()[:, None, :])


def check_density_matrix(rho: torch.Tensor, name: str = "state", atol: float | None = None) -> None:
    """Raise :class:`InvalidStateError` unless ``rho`` (..., D, D) is Hermitian, PSD, trace 1."""
    if not isinstance(rho, torch.Tensor):
        raise arg_error(name, f"expected a tensor, got {type(rho).__name__}", QsemTypeError)
    if rho.dim() < 2 or rho.shape[-1] != rho.shape[-2]:
        raise arg_error(
            name, f"expected a density matrix of shape (..., D, D), got {tuple(rho.shape)}"
        )
    tol = atol if atol is not None else atol_for(STATE_ATOL, rho.dtype)
    r = rho.detach()
    finite = torch.view_as_real(r) if r.is_complex() else r
    if not bool(torch.isfinite(finite).all()):
        raise arg_error(name, "contains NaN or inf")
    herm = float((r - r.mH).abs().max())
    if herm > tol:
        raise InvalidStateError(
            f"argument '{name}': not Hermitian, max |ρ - ρ^†| = {herm:.3g} > {tol:g}"
        )
    tr = torch.diagonal(r, dim1=-2, dim2=-1).sum(-1)
    terr = float((tr - 1).abs().max())
    if terr > tol:
        raise InvalidStateError(
            f"argument '{name}': trace is {tr.real.flatten().tolist()}, not 1 (tol {tol:g})"
        )
    low = float(torch.linalg.eigvalsh((r + r.mH) / 2).min())
    if low < -tol:
        raise InvalidStateError(
            f"argument '{name}': not positive semidefinite, "
            f"smallest eigenvalue {low:.3g} < -{tol:g}"
        )


def initial_state(
    value: Any,
    dims: tuple[int, ...],
    mode: Mode,
    batch: int | None,
    *,
    dtype: torch.dtype,
    device: Any,
) -> tuple[torch.Tensor, int | None]:
    """Build the flat initial tensor and return it with its batch size (``None``: unbatched).

    ``value`` may be ``None`` (``|0...0>``), a sequence of levels per wire, or a
    tensor: a statevector ``(D,)``/``(B, D)`` or, in density-matrix mode, also
    ``(D, D)``/``(B, D, D)``. This is where a user's initial state is validated.

    >>> t, b = initial_state([1, 0], (2, 3), "statevector", None, dtype=torch.complex64,
    ...                      device="cpu")
    >>> t.shape, int(t[0].abs().argmax()), b
    (torch.Size([1, 6]), 3, None)
    """
    if value is None or isinstance(value, (list, tuple)):
        return _basis_state(value, dims, mode, batch, dtype, device), batch
    if not isinstance(value, torch.Tensor):
        raise arg_error(
            "initial_state",
            f"expected a tensor or a list of levels, got {type(value).__name__}",
            QsemTypeError,
        )
    d = math.prod(dims)
    t = value.to(device=device, dtype=dtype, copy=True)  # never alias the caller's tensor
    if not bool(torch.isfinite(torch.view_as_real(t.detach())).all()):
        raise arg_error("initial_state", "contains NaN or inf")
    if t.shape[-1] != d:
        raise arg_error(
            "initial_state", f"last axis has size {t.shape[-1]}, the register has dimension {d}"
        )
    # (D,) and (B, D) are statevectors; (D, D) in density-matrix mode and (B, D, D) are
    # density matrices (in density-matrix mode a (D, D) tensor is read as one matrix).
    is_dm = t.dim() == 3 or (t.dim() == 2 and mode == "density_matrix" and t.shape[0] == d)
    if is_dm:
        if mode != "density_matrix":
            raise arg_error("initial_state", "a density matrix needs mode='density_matrix'")
        check_density_matrix(t, "initial_state")
        sb = int(t.shape[0]) if t.dim() == 3 else None
        t = t if t.dim() == 3 else t[None]
    else:
        sb, t = _statevector_input(t, mode, d)
    if sb is not None and batch is not None and sb != batch:
        raise arg_error(
            "initial_state", f"batch size {sb} does not match the parameters' batch size {batch}"
        )
    out_batch = sb if sb is not None else batch
    if out_batch is not None and t.shape[0] != out_batch:
        t = t.expand(out_batch, *t.shape[1:]).clone()
    return t, out_batch


def _basis_state(
    value: list[int] | tuple[int, ...] | None,
    dims: tuple[int, ...],
    mode: Mode,
    batch: int | None,
    dtype: torch.dtype,
    device: Any,
) -> torch.Tensor:
    """``|l_1 … l_n>`` (``None``: all 0) as ``(B, D)`` or ``|l><l|`` as ``(B, D, D)``."""
    levels = [0] * len(dims) if value is None else list(value)
    if len(levels) != len(dims) or any(
        not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < dd
        for v, dd in zip(levels, dims, strict=False)
    ):
        raise arg_error(
            "initial_state",
            f"expected one level per wire within dims {list(dims)}, got {value!r}",
        )
    idx = 0
    for v, dd in zip(levels, dims, strict=True):
        idx = idx * dd + v
    d, b = math.prod(dims), batch or 1
    if mode == "statevector":
        t = torch.zeros(b, d, dtype=dtype, device=device)
        t[:, idx] = 1
    else:
        t = torch.zeros(b, d, d, dtype=dtype, device=device)
        t[:, idx, idx] = 1
    return t


def _statevector_input(t: torch.Tensor, mode: Mode, d: int) -> tuple[int | None, torch.Tensor]:
    """A statevector ``(D,)``/``(B, D)`` checked for its norm; ``(its batch, (B, D) or ρ)``."""
    if t.dim() not in (1, 2):
        raise arg_error("initial_state", f"expected shape (D,) or (B, D), got {tuple(t.shape)}")
    norms = torch.linalg.vector_norm(t.detach(), dim=-1)
    tol = 10 * atol_for(STATE_ATOL, t.dtype)
    if float((norms - 1).abs().max()) > tol:
        hint = ""
        if mode == "statevector" and t.dim() == 2 and t.shape[0] == d:
            hint = (
                f"; a ({d}, {d}) tensor in statevector mode is read as {d} statevectors — "
                "for a density matrix use mode='density_matrix'"
            )
        raise InvalidStateError(
            f"argument 'initial_state': not normalised, norm(s) {norms.flatten().tolist()}, "
            f"expected 1 (tolerance {tol:g}){hint}"
        )
    sb = int(t.shape[0]) if t.dim() == 2 else None
    t = t if t.dim() == 2 else t[None]
    if mode == "density_matrix":
        t = t[:, :, None] * t.conj()[:, None, :]
    return sb, t
