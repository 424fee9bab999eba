r"""Fold single-wire gates into the noise channel that follows them (a compile-time pass).

A noisy circuit from :meth:`NoiseModel.apply <qsem.circuits.NoiseModel.apply>` alternates
single-wire gates and their error channels: ``rz(θ) sx [E] rz(φ) sx [E] ...``. On a
density matrix each run of gates costs two passes (``U`` on the row axes, ``U*`` on
the column axes) and the channel a third. :func:`fold_gates_into_channels` replaces
each run of single-wire gates ``U_1 ... U_m`` on a wire followed by a channel
``E = {K_j}`` on that same wire by one channel

.. math:: \rho \mapsto \sum_j (K_j U) \rho (K_j U)^\dagger, \qquad U = U_m \cdots U_1,

(:class:`FoldedChannel`) whose Kraus operators depend on the gates' parameters (batched
and differentiable like the gates). The simulated state is unchanged. Measured on the
``noisy_backend`` bench circuit (101 operations -> 46) with the engine's earlier
per-step density-matrix path: 1.6× faster forward. The density-matrix plan now groups
gates and channels into superoperator blocks itself (:mod:`qsem.simulators.plan_super`),
so this pass no longer changes the time much (docs: "Your device's noise", Speed).

For the torch engine only: the Aer and PennyLane converters do not know the folded
channel (simulate the unfolded circuit there).

>>> from qsem.circuits import Circuit, H, RZ, NoiseModel, Depolarizing
>>> nm = NoiseModel().add_error(Depolarizing(0.01, wires=0), H)
>>> c = nm.apply(Circuit.qubits(1).add(RZ(0.3, wires=0), H(wires=0)), measured=False)
>>> [op.name for op in fold_gates_into_channels(c).ops]
['FoldedChannel']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .circuit import Circuit
from .errors import QsemTypeError, arg_error
from .operations import Channel, Gate

__all__ = ["FoldedChannel", "fold_gates_into_channels"]


class FoldedChannel(Channel):
    """Gates ``gates`` (one wire, applied in order) then ``channel`` on that wire, as one
    channel with Kraus operators ``K_j · U_m ⋯ U_1``; its parameters are the gates'
    parameters in order, then the channel's."""

    num_wires = 1

    def __init__(self, gates: Sequence[Gate], channel: Channel) -> None:
        wires = {tuple(g.wires) for g in gates} | {tuple(channel.wires)}
        if len(wires) != 1 or len(channel.wires) != 1:
            raise arg_error("gates", f"gates and channel must act on one same wire, got {wires}")
        self.gates = list(gates)
        self.channel = channel
        # the arity depends on the folded gates: an instance attribute over the class default
        self.num_params = sum(len(g.params) for g in gates) + len(channel.params)  # type: ignore[misc]
        super().__init__(
            *[p for g in gates for p in g.params], *channel.params, wires=channel.wires
        )

    def matrix_key(self) -> tuple[Any, ...]:
        return (FoldedChannel, tuple(g.matrix_key() for g in self.gates), self.channel.matrix_key())

    def check_dims(self, dims: tuple[int, ...]) -> None:
        for op in (*self.gates, self.channel):
            op.check_dims(dims)

    def kraus(self, params, dims, *, dtype=torch.complex64, device=None):
        u: torch.Tensor | None = None
        k = 0
        for g in self.gates:
            m = g.matrix(list(params[k : k + len(g.params)]), dims, dtype=dtype, device=device)
            k += len(g.params)
            u = m if u is None else m @ u
        ops = self.channel.kraus(list(params[k:]), dims, dtype=dtype, device=device)
        assert u is not None
        if u.dim() == 3:  # batched gates: (B, 1, D, D) against (r, D, D) or (B, r, D, D)
            u = u[:, None]
        return ops @ u


def fold_gates_into_channels(circuit: Circuit) -> Circuit:
    """``circuit`` with every run of single-wire gates that a single-wire channel on the
    same wire follows folded into one :class:`FoldedChannel` (module docstring); other
    operations keep their order relative to every wire they touch."""
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a qsem Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    out = Circuit(circuit.dims)
    pending: dict[int, list[Gate]] = {}
    for op in circuit.ops:
        if isinstance(op, Gate) and len(op.wires) == 1:
            pending.setdefault(op.wires[0], []).append(op)
            continue
        if isinstance(op, Channel) and len(op.wires) == 1 and pending.get(op.wires[0]):
            out.add(FoldedChannel(pending.pop(op.wires[0]), op))
            continue
        for w in op.wires:  # gates waiting on this operation's wires go first
            out.add(*pending.pop(w, []))
        out.add(op)
    for gates in pending.values():
        out.add(*gates)
    return out
