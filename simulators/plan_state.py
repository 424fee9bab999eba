"""What a plan's steps read and return at run time.

* :class:`SimState`: the register between two steps — its tensor *and* its
  representation (statevector, dense density matrix, or a factored density matrix
  ``ρ = Σ_k w_k |ψ_k><ψ_k|`` with its rank and weights; the basis levels while it is
  still a basis state). Frozen: a step returns a new state, and the engine reads the
  representation from the state it gets back, never from a shared object.
* :class:`Context`: the run's fixed inputs — the circuit's operations, the bound
  parameter values, dtype, device, the rows of the batch a chunked pass covers and
  the no-grad workspace. Frozen as well; a chunked run makes one per chunk.

Neither validates: the public entry points (:class:`~qsem.simulators.TorchSimulator`,
:func:`~qsem.simulators.adjoint_expval`) check every input once, and steps trust
what they are given.

>>> import torch
>>> s = SimState(torch.ones(6, 4, dtype=torch.complex64), "factored", rank=3)
>>> s.batch, s.vector_like
(2, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch

from qsem.circuits.operations import Channel, Gate, Operation
from qsem.circuits.parameters import Parameter, resolve_param

from . import kernels

#: How a :class:`SimState` holds the register.
StepMode = Literal["statevector", "density_matrix", "factored"]


def factor_to_dense(f: torch.Tensor, weights: torch.Tensor | None, rank: int) -> torch.Tensor:
    """``ρ = Σ_k w_k |ψ_k><ψ_k|`` from components ``(B, r, D)`` and weights ``(B * r,)``."""
    left = f if weights is None else f * weights.reshape(-1, rank, 1).to(f.dtype)
    return left.transpose(1, 2) @ f.conj()


@dataclass(frozen=True, slots=True)
class SimState:
    """The register between two steps, with its representation.

    ``tensor``: ``(B, D)`` (``"statevector"``), ``(B, D * D)`` (``"density_matrix"``,
    flat) or ``(B * rank, D)`` (``"factored"``: the components of one batch element
    adjacent, ``weights`` ``(B * rank,)`` or ``None`` for all 1). ``basis``: the levels
    ``(l_1, ..., l_n)`` while the tensor is the basis state ``|l_1 … l_n>`` (the
    engine's initial state); a step's result never carries it.
    """

    tensor: torch.Tensor
    mode: StepMode
    rank: int = 1
    weights: torch.Tensor | None = None
    basis: tuple[int, ...] | None = None

    @property
    def vector_like(self) -> bool:
        """True when the tensor holds vectors (statevector or factored ρ)."""
        return self.mode != "density_matrix"

    @property
    def batch(self) -> int:
        """Number of batch elements the tensor holds."""
        return int(self.tensor.shape[0]) // self.rank

    def evolved(self, tensor: torch.Tensor) -> SimState:
        """The same representation holding ``tensor`` (no longer a basis state)."""
        return SimState(tensor, self.mode, self.rank, self.weights)

    def per_component(self, t: torch.Tensor, batched_dim: int = 3) -> torch.Tensor:
        """Repeat a batched tensor for each purification component of its batch element.

        ``t`` is batched when it has ``batched_dim`` axes (3 for matrices ``(B, D, D)``,
        2 for channel weights ``(B, m)``) and more than one batch element.
        """
        if self.rank > 1 and t.dim() == batched_dim and t.shape[0] > 1:
            return t.repeat_interleave(self.rank, 0)
        return t

    def densified(self) -> SimState:
        """Factored ``(B * r, D)`` -> the dense flat ``(B, D * D)`` state."""
        x = self.tensor
        d = x.shape[-1]
        rho = factor_to_dense(x.reshape(-1, self.rank, d), self.weights, self.rank)
        return SimState(rho.reshape(rho.shape[0], d * d), "density_matrix")


@dataclass(frozen=True, slots=True)
class Context:
    """A run's fixed inputs: the circuit's ops, the bound values, dtype and device.

    ``batch_slice``: the rows of the batch a chunked pass covers (``full_batch`` rows
    in all); bound tensors with ``full_batch`` rows are cut to them. ``work``: output
    buffers reused from step to step (set when nothing needs a gradient).
    ``rotations``: the matrices of the plan's rotation groups, evaluated together
    before the first step (``{id(group): (..., k, d, d)}``; see
    :func:`~qsem.simulators.plan_exec.rotation_table`); ``None``: not yet evaluated
    (the plan's run evaluates it); ``{}``: each step evaluates its own groups.
    ``native``: the engine may run a unitary plan in one native call
    (:mod:`~qsem.simulators.native`).
    """

    dims: tuple[int, ...]
    ops: list[Operation]
    bindings: Any
    dtype: torch.dtype
    real_dtype: torch.dtype
    device: Any
    batch_slice: slice | None = None
    full_batch: int = 1
    work: kernels.Workspace | None = None
    rotations: dict[int, torch.Tensor] | None = None
    #: the engine may run the plan with the native kernel (:mod:`.native`)
    native: bool = False

    def for_rows(self, rows: slice, full_batch: int) -> Context:
        """This context for one chunk of the batch."""
        # a table holds the full batch's rows: each chunk evaluates its own ({}: none)
        rotations = None if self.rotations else self.rotations
        return dataclasses.replace(
            self, batch_slice=rows, full_batch=full_batch, rotations=rotations
        )

    def mixture(self, channel: Channel) -> tuple[torch.Tensor, torch.Tensor] | None:
        dims = tuple(self.dims[w] for w in channel.wires)
        mix = channel.mixture(self.params(channel), dims, dtype=self.dtype, device=self.device)
        if mix is None:
            return None
        return self._cut(mix[0], 2), self._cut(mix[1], 4)

    def channel_operators(self, channel: Channel) -> tuple[torch.Tensor | None, torch.Tensor]:
        """A channel's weights and operators: ``(p, U)`` of a mixture ``Σ_k p_k U_k ρ U_k^†``
        (linear in ``p``), else ``(None, K)`` of its Kraus operators."""
        mix = self.mixture(channel)
        return (mix[0], mix[1]) if mix is not None else (None, self.kraus(channel))

    def _cut(self, t: torch.Tensor, batch_dims: int) -> torch.Tensor:
        if self.batch_slice is not None and t.dim() == batch_dims and t.shape[0] == self.full_batch:
            return t[self.batch_slice]
        return t

    def param(self, p: Any) -> torch.Tensor:
        return resolve_param(p, self.bindings, dtype=self.real_dtype, device=self.device)

    def params(self, op: Operation) -> list[torch.Tensor]:
        return [self._cut(self.param(p), 1) for p in op.params]

    def stacked_param(self, values: list[Any]) -> torch.Tensor:
        """Parameters of several operations stacked on a last axis: ``(..., G)``."""
        first = values[0]
        if (
            isinstance(first, Parameter)
            and first.index is not None
            and all(
                isinstance(v, Parameter)
                and v.name == first.name
                and v.scale == first.scale
                and v.index is not None
                for v in values
            )
        ):
            # a vector's binding is a tensor: the entry point refuses anything else
            vec = self.bindings[first.name].to(device=self.device, dtype=self.real_dtype)
            idx = [v.index for v in values]
            lo, step = idx[0], (idx[1] - idx[0] if len(idx) > 1 else 1)
            if step > 0 and idx == list(range(lo, lo + step * len(idx), step)):
                out = vec[..., lo : lo + step * len(idx) : step]  # a view (cheap backward)
            else:
                out = vec[..., idx]
            out = out * first.scale if first.scale != 1.0 else out
        else:
            out = torch.stack(torch.broadcast_tensors(*[self.param(v) for v in values]), -1)
        if self.batch_slice is not None and out.dim() == 2 and out.shape[0] == self.full_batch:
            out = out[self.batch_slice]
        return out

    def matrix(self, gate: Gate) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in gate.wires)
        return self._cut(
            gate.matrix(self.params(gate), dims, dtype=self.dtype, device=self.device), 3
        )

    def kraus(self, channel: Channel) -> torch.Tensor:
        dims = tuple(self.dims[w] for w in channel.wires)
        return self._cut(
            channel.kraus(self.params(channel), dims, dtype=self.dtype, device=self.device), 4
        )

    def eye(self, d: int) -> torch.Tensor:
        """The identity ``(d, d)`` in the run's dtype and device."""
        return torch.eye(d, dtype=self.dtype, device=self.device)


def apply_unitary(s: SimState, ctx: Context, mat: torch.Tensor, wires: list[int]) -> torch.Tensor:
    """``U ψ`` (each component of a factored ρ) or ``U ρ U^†`` on ``wires``."""
    if s.vector_like:
        return kernels.apply_matrix(s.tensor, s.per_component(mat), ctx.dims, wires)
    n = len(ctx.dims)
    shape2 = ctx.dims + ctx.dims
    x = kernels.apply_matrix(s.tensor, mat, shape2, wires)
    return kernels.apply_matrix(x, mat.conj(), shape2, [w + n for w in wires])


__all__ = ["Context", "SimState", "StepMode", "apply_unitary", "factor_to_dense"]
