"""Parameter shift through torch autograd: the machinery under :mod:`qsem.simulators.bridge`.

Every variable gate-parameter occurrence of a circuit becomes its own scalar
column ``θ_j`` of a matrix ``Θ`` (B, J) (:func:`expand`, :func:`theta_matrix`);
:class:`ShiftFunction` maps ``Θ -> F(Θ)`` on a backend and, in backward, builds
``∂F/∂θ_j = Σ_r c_r F(Θ + s_r e_j)`` from each gate's shift rule
(:mod:`qsem.circuits.shift`), every shifted row of the batch in ONE backend call.

>>> from qsem.circuits import Circuit, Parameter, RY
>>> x = Parameter("x")
>>> c = Circuit.qubits(1).add(RY(x, wires=0), RY(2 * x, wires=0))
>>> ex = expand(c)
>>> ex.names
['θ0', 'θ1']
>>> theta_matrix(c, ex, {"x": 0.5})[0].tolist()
[[0.5, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.observables import Observable
from qsem.circuits.operations import Gate
from qsem.circuits.parameters import Parameter

from .backend import Backend

__all__ = ["Expanded", "ShiftFunction", "expand", "theta_matrix"]


@dataclass(frozen=True)
class _Column:
    """Where column j of Θ comes from, and how to shift it."""

    op: int  # index of the operation in the circuit
    slot: int  # index of the parameter in the operation
    source: Parameter | None  # the symbol, or None for a concrete tensor parameter
    rule: tuple[tuple[float, float], ...] | None  # None: not differentiable by shifts (channels)


@dataclass
class Expanded:
    """A circuit whose every variable gate parameter is its own scalar ``θ_j``."""

    circuit: Circuit
    columns: list[_Column]

    @property
    def names(self) -> list[str]:
        return [f"θ{j}" for j in range(len(self.columns))]


def expand(circuit: Circuit) -> Expanded:
    """Give every symbolic or tensor parameter occurrence its own column."""
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    ops = []
    columns: list[_Column] = []
    for i, op in enumerate(circuit.ops):
        new_params: list[Any] = []
        for k, p in enumerate(op.params):
            if isinstance(p, Parameter) or isinstance(p, torch.Tensor):
                rule = None
                if isinstance(op, Gate):
                    dims = tuple(circuit.dims[w] for w in op.wires)
                    rule = tuple(op.shift_rule(k, dims))
                columns.append(_Column(i, k, p if isinstance(p, Parameter) else None, rule))
                new_params.append(Parameter(f"θ{len(columns) - 1}"))
            else:
                new_params.append(p)
        ops.append(op.with_params(new_params) if new_params != list(op.params) else op)
    return Expanded(Circuit(circuit.dims, ops), columns)


def theta_matrix(
    circuit: Circuit, expanded: Expanded, params: Mapping[str, Any] | None
) -> tuple[torch.Tensor, bool, list[bool]]:
    """``Θ`` (B, J) float64 from bound values (differentiable), whether it is batched,
    and per column whether its source requires a gradient."""
    params = dict(params or {})
    missing = [p for p in circuit.parameters if p not in params]
    if missing:
        raise arg_error("params", f"no value for symbolic parameter(s) {missing}")
    cols = []
    for col in expanded.columns:
        if col.source is None:
            value = circuit.ops[col.op].params[col.slot]
            assert isinstance(value, torch.Tensor)
            t = value.to(torch.float64)
        else:
            raw = params[col.source.name]
            t = (
                raw.to(torch.float64)
                if isinstance(raw, torch.Tensor)
                else torch.tensor(
                    float(raw) if not isinstance(raw, (list, tuple)) else raw, dtype=torch.float64
                )
            )
            t = col.source.select(t, f"params['{col.source.name}']")
            if col.source.scale != 1.0:
                t = t * col.source.scale
        if t.dim() > 1:
            raise arg_error(
                f"params['{col.source.name if col.source else col.op}']",
                f"unexpected shape {tuple(t.shape)}",
            )
        cols.append(t)
    if not cols:
        return torch.zeros(1, 0, dtype=torch.float64), False, []
    batched = any(c.dim() == 1 for c in cols)
    try:
        stacked = torch.stack(torch.broadcast_tensors(*cols), -1)
    except RuntimeError:
        sizes = sorted({int(c.shape[0]) for c in cols if c.dim() == 1})
        raise arg_error("params", f"batch sizes differ: {sizes}") from None
    if not bool(torch.isfinite(stacked.detach()).all()):
        raise arg_error("params", "contains NaN or inf")
    needed = [bool(c.requires_grad) for c in cols]
    return (stacked if batched else stacked[None]), batched, needed


@dataclass
class _Job:
    """Everything one forward/backward pass needs besides Θ."""

    backend: Backend
    expanded: Expanded
    kind: str  # "expval" or "probs"
    observables: list[Observable]
    wires: list[int]
    shots: int | None
    seed: int | None
    #: per column of Θ, whether it needs a gradient: columns that need none (e.g. inputs
    #: without requires_grad) are not shifted in the backward pass
    needed: list[bool] | None = None

    def run(self, values: torch.Tensor, seed_offset: int = 0) -> torch.Tensor:
        seed = None if self.seed is None else self.seed + seed_offset
        names = self.expanded.names
        if self.kind == "expval":
            return self.backend.expval(
                self.expanded.circuit, values, names, self.observables, shots=self.shots, seed=seed
            )
        return self.backend.probs(
            self.expanded.circuit, values, names, self.wires, shots=self.shots, seed=seed
        )

    def jacobian(self, theta: torch.Tensor, needed: list[bool]) -> torch.Tensor:
        """``∂F/∂θ`` (B, K, J) by parameter shift: all shifted rows in ONE backend call."""
        b, j_total = theta.shape
        rows, plan = [], []
        for j, col in enumerate(self.expanded.columns):
            if not needed[j]:
                continue
            if col.rule is None:
                raise arg_error(
                    "params",
                    f"a channel parameter (operation {col.op}) needs a gradient; parameter-shift "
                    "rules exist for gates only: use backend='torch' (autograd) for channel "
                    "parameters",
                )
            for coeff, shift in col.rule:
                shifted = theta.clone()
                shifted[:, j] += shift
                rows.append(shifted)
                plan.append((j, coeff))
        k = None
        if not rows:
            out = self.run(theta, seed_offset=1)
            return torch.zeros(b, out.shape[-1], j_total, dtype=torch.float64)
        results = self.run(torch.cat(rows, 0), seed_offset=1)  # (len(rows) * B, K)
        k = results.shape[-1]
        jac = torch.zeros(b, k, j_total, dtype=torch.float64)
        for r, (j, coeff) in enumerate(plan):
            jac[:, :, j] += coeff * results[r * b : (r + 1) * b]
        return jac


class ShiftFunction(torch.autograd.Function):
    """``Θ -> F(Θ)`` on a backend, with the parameter-shift Jacobian in backward."""

    @staticmethod
    def forward(ctx: Any, theta: torch.Tensor, job: _Job) -> torch.Tensor:
        ctx.job = job
        ctx.save_for_backward(theta)
        with torch.no_grad():
            return job.run(theta.detach())

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (theta,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        needed = ctx.job.needed or [True] * theta.shape[1]
        jac = ctx.job.jacobian(theta.detach(), needed)
        return torch.einsum("bk,bkj->bj", grad_out.to(torch.float64), jac), None
