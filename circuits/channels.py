"""Noise channels as Kraus operators, for wires of any dimension where it makes sense.

Conventions (Qiskit's, which PennyLane's qubit channels differ from):

* ``Depolarizing(p)``: ``ρ -> (1 - p) ρ + p Tr_w(ρ) ⊗ I/d`` on one wire of any
  dimension, ``0 <= p <= d²/(d²-1)``; Kraus ``sqrt(1 - p + p/d²) I`` and
  ``sqrt(p)/d · X^a Z^b`` for the other ``d² - 1`` Weyl operators.
  PennyLane's ``DepolarizingChannel(q)`` is ``p = 4q/3``.
* ``AmplitudeDamping(γ_1, ..., γ_{d-1})``: the cascade ``|k> -> |k-1>`` with
  probability ``γ_k`` (a qubit takes one γ; a qutrit two: ``|2>->|1>->|0>``).
* ``BitFlip(p)`` (qubit), ``TritFlip(p01, p02, p12)`` (qutrit, level swaps),
  ``PhaseDamping(γ)`` (qubit), ``Kraus(ops)`` (any wires, checked CPTP).

>>> import torch
>>> k = Depolarizing(0.3, wires=0).kraus([torch.tensor(0.3)], (2,), dtype=torch.complex128)
>>> torch.allclose(sum(m.mH @ m for m in k), torch.eye(2, dtype=torch.complex128))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .errors import DimensionError, NotCPTPError, arg_error
from .operations import Channel, as_numeric_tensor
from .parameters import Parameter, ParamLike
from .tolerances import UNITARY_ATOL, atol_for

__all__ = ["AmplitudeDamping", "BitFlip", "Depolarizing", "Kraus", "PhaseDamping", "TritFlip"]


#: Slack allowed on probability bounds (rounding of user values such as 1 - 1e-17).
PROB_ATOL = 1e-12


def _fmt_values(t: torch.Tensor) -> str:
    """A probability (or a batch of them) to 6 significant digits, for error messages."""
    if t.dim() == 0:
        return f"{float(t):.6g}"
    return "[" + ", ".join(f"{x:.6g}" for x in t.reshape(-1).tolist()) + "]"


def _check_prob(name: str, value: ParamLike, low: float, high: float, what: str = "") -> None:
    if isinstance(value, Parameter):
        return
    # a Python float must not pass through float32 (4/3 would round above its bound)
    t = torch.as_tensor(value, dtype=None if isinstance(value, torch.Tensor) else torch.float64)
    t = t.detach().to(torch.float64)
    if t.numel() and (float(t.min()) < low - PROB_ATOL or float(t.max()) > high + PROB_ATOL):
        got = _fmt_values(t)
        raise arg_error(
            name, f"{what}must lie in [{low:g}, {high:g}] (tolerance {PROB_ATOL:g}), got {got}"
        )


def _check_bound(channel: Channel, params: Sequence[torch.Tensor], dims: tuple[int, ...]) -> None:
    """Range-check values bound at run time to a channel's symbolic parameters."""
    if any(isinstance(p, Parameter) for p in channel.params):
        channel.with_params(params).check_dims(tuple(dims))


def _weyl(d: int) -> np.ndarray:
    """The d² Weyl operators X^a Z^b, a, b in 0..d-1 (first one the identity)."""
    shift = np.roll(np.eye(d), 1, axis=0)
    clock = np.diag(np.exp(2j * np.pi * np.arange(d) / d))
    ops = [np.linalg.matrix_power(shift, a) @ np.linalg.matrix_power(clock, b)
           for a in range(d) for b in range(d)]  # fmt: skip
    return np.stack(ops)


class Depolarizing(Channel):
    """``ρ -> (1 - p) ρ + p I/d`` on one wire of any dimension d."""

    num_params = 1

    def check_dims(self, dims: tuple[int, ...]) -> None:
        d = dims[0]
        _check_prob(
            "p",
            self.params[0],
            0.0,
            d * d / (d * d - 1),
            f"Depolarizing on a wire of dimension {d} needs 0 <= p <= d²/(d²-1); p ",
        )

    def mixture(self, params, dims, *, dtype=torch.complex64, device=None):
        _check_bound(self, params, dims)
        d = dims[0]
        p = params[0]
        rest = p / (d * d)
        weights = torch.stack([1 - p + rest] + [rest] * (d * d - 1), -1)
        return weights, torch.as_tensor(_weyl(d), dtype=dtype, device=p.device)


class AmplitudeDamping(Channel):
    """Cascade decay ``|k> -> |k-1>`` with probability ``γ_k`` (d-1 parameters)."""

    def __init__(self, *gammas: ParamLike, wires: object) -> None:
        if not gammas:
            raise arg_error("gammas", "AmplitudeDamping needs d - 1 decay probabilities, got none")
        self._n = len(gammas)  # checked against the wire's dimension in check_dims
        super().__init__(*gammas, wires=wires)

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return self._n

    def check_dims(self, dims: tuple[int, ...]) -> None:
        d = dims[0]
        if self._n != d - 1:
            raise DimensionError(
                f"argument 'gammas': AmplitudeDamping on a wire of dimension {d} takes "
                f"{d - 1} decay probabilities, got {self._n}"
            )
        for i, g in enumerate(self.params):
            _check_prob(f"gammas[{i}]", g, 0.0, 1.0)

    def mixture(self, params, dims, *, dtype=torch.complex64, device=None):
        """``K_0 = diag(1, sqrt(1-γ_1), ...)`` with weight 1, ``|k-1><k|`` with weight ``γ_k``.

        The Kraus operators are ``K_0`` and ``sqrt(γ_k) |k-1><k|``; giving the decay
        terms as weights keeps them linear in ``γ``, so gradients are finite at
        ``γ = 0`` (``K_0`` still holds ``sqrt(1-γ)``: at ``γ = 1`` the coherences
        have an infinite derivative).
        """
        _check_bound(self, params, dims)
        d = dims[0]
        gam = torch.broadcast_tensors(*params)
        one = torch.ones_like(gam[0])
        diag = torch.stack([one] + [torch.sqrt((1 - g).clamp(min=0)) for g in gam], -1)
        k0 = torch.diag_embed(diag).to(dtype)  # (..., d, d)
        decay = torch.zeros(d - 1, d, d, dtype=dtype, device=k0.device)
        for k in range(1, d):
            decay[k - 1, k - 1, k] = 1.0
        ops = torch.cat([k0[..., None, :, :], decay.expand(*k0.shape[:-2], d - 1, d, d)], -3)
        return torch.stack([one, *gam], -1), ops


class BitFlip(Channel):
    """``ρ -> (1 - p) ρ + p X ρ X`` on a qubit."""

    num_params = 1
    wire_dims = (2,)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        super().check_dims(dims)
        _check_prob("p", self.params[0], 0.0, 1.0)

    def mixture(self, params, dims, *, dtype=torch.complex64, device=None):
        _check_bound(self, params, dims)
        p = params[0].clamp(0, 1)
        mats = np.stack([np.eye(2), np.array([[0, 1], [1, 0]])])
        return torch.stack([1 - p, p], -1), torch.as_tensor(mats, dtype=dtype, device=p.device)


class TritFlip(Channel):
    """Qutrit level flips: with probability ``p_jk`` swap levels j and k (PennyLane's TritFlip)."""

    num_params = 3
    wire_dims = (3,)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        super().check_dims(dims)
        for name, p in zip(("p01", "p02", "p12"), self.params, strict=True):
            _check_prob(name, p, 0.0, 1.0)
        if not any(isinstance(p, Parameter) for p in self.params):
            vals = [torch.as_tensor(p).detach().to(torch.float64) for p in self.params]
            total = vals[0] + vals[1] + vals[2]
            if float(total.max()) > 1 + PROB_ATOL:
                raise arg_error(
                    "params",
                    f"TritFlip needs p01 + p02 + p12 <= 1 (tolerance {PROB_ATOL:g}), got "
                    f"{_fmt_values(total)} = {_fmt_values(vals[0])} + {_fmt_values(vals[1])} + "
                    f"{_fmt_values(vals[2])}",
                )

    def mixture(self, params, dims, *, dtype=torch.complex64, device=None):
        _check_bound(self, params, dims)
        p01, p02, p12 = (p.clamp(0, 1) for p in torch.broadcast_tensors(*params))
        mats = [np.eye(3)]
        for j, k in ((0, 1), (0, 2), (1, 2)):
            m = np.eye(3)
            m[[j, k]] = m[[k, j]]
            mats.append(m)
        weights = torch.stack([(1 - p01 - p02 - p12).clamp(min=0), p01, p02, p12], -1)
        return weights, torch.as_tensor(np.stack(mats), dtype=dtype, device=p01.device)


class PhaseDamping(Channel):
    """Qubit dephasing: Kraus ``diag(1, sqrt(1-γ))`` and ``diag(0, sqrt γ)``."""

    num_params = 1
    wire_dims = (2,)

    def check_dims(self, dims: tuple[int, ...]) -> None:
        super().check_dims(dims)
        _check_prob("gamma", self.params[0], 0.0, 1.0)

    def kraus(self, params, dims, *, dtype=torch.complex64, device=None):
        _check_bound(self, params, dims)
        g = params[0].clamp(0, 1)
        k0 = torch.stack([torch.ones_like(g), torch.sqrt(1 - g)], -1)
        k1 = torch.stack([torch.zeros_like(g), torch.sqrt(g)], -1)
        return torch.stack([torch.diag_embed(k0), torch.diag_embed(k1)], -3).to(dtype)


class Kraus(Channel):
    """A general channel from Kraus operators ``(r, D, D)``, checked ``Σ K^†K = I``."""

    num_wires = None

    def __init__(self, operators: Any, wires: object, *, atol: float | None = None) -> None:
        super().__init__(wires=wires)
        ops = as_numeric_tensor(operators, "operators")
        if not ops.is_complex():
            ops = ops.to(torch.complex128)
        if ops.dim() == 2:
            ops = ops[None]
        if ops.dim() != 3 or ops.shape[-1] != ops.shape[-2] or ops.shape[0] == 0:
            raise arg_error(
                "operators", f"expected shape (r, D, D) or (D, D), got {tuple(ops.shape)}"
            )
        if not bool(torch.isfinite(torch.view_as_real(ops.detach())).all()):
            raise arg_error("operators", "contains NaN or inf")
        tol = atol if atol is not None else atol_for(UNITARY_ATOL, ops.dtype)
        s = (ops.mH @ ops).sum(0)
        err = float((s - torch.eye(ops.shape[-1], dtype=ops.dtype)).abs().max())
        if err > tol:
            raise NotCPTPError(
                f"argument 'operators': not trace preserving, max |Σ K^†K - I| = {err:.3g} "
                f"> atol {tol:g}"
            )
        self.operators = ops

    def check_dims(self, dims: tuple[int, ...]) -> None:
        if math.prod(dims) != self.operators.shape[-1]:
            raise DimensionError(
                f"argument 'operators': size {self.operators.shape[-1]} does not match wires "
                f"{list(self.wires)} of dimensions {list(dims)}"
            )

    def matrix_key(self) -> tuple[Any, ...]:
        return (Kraus, id(self.operators))

    def kraus(self, params, dims, *, dtype=torch.complex64, device=None):
        return self.operators.to(dtype=dtype, device=device)
