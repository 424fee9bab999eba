r"""Readout error: confusion matrices applied to Born probabilities.

A readout error on wires ``w`` is a stochastic matrix ``M[i, j] = P(record j | state i)``
(:class:`~qsem.circuits.noise.ReadoutError`). The recorded distribution of a register
whose confusions act on disjoint wire groups is

.. math:: p'(j) = \sum_i p(i) \prod_g M_g[i_g, j_g],

one contraction per group over the full probability tensor (``(B, d_0, ..., d_{n-1})``),
then the marginal on the measured wires. Linear in ``p``, so autograd passes through it.

>>> import torch
>>> from qsem.circuits.noise import ReadoutError
>>> p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
>>> apply_readout(p, (2,), [ReadoutError([[0.9, 0.1], [0.2, 0.8]], wires=0)])
tensor([[0.9000, 0.1000]], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.noise import NoiseModel, ReadoutError

__all__ = ["apply_readout", "marginal_readout", "readout_errors"]


def readout_errors(readout: Any, dims: Sequence[int]) -> list[ReadoutError]:
    """``readout`` (``None``, a :class:`NoiseModel`, a :class:`ReadoutError` or a list of
    them) as readout errors on disjoint wires of a register of ``dims``."""
    if readout is None:
        return []
    if isinstance(readout, NoiseModel):
        errs = readout.readout_errors(dims)
    elif isinstance(readout, ReadoutError):
        errs = [readout]
    elif isinstance(readout, (list, tuple)) and all(isinstance(r, ReadoutError) for r in readout):
        errs = list(readout)
    else:
        raise arg_error(
            "readout",
            "expected a NoiseModel, a ReadoutError or a list of them, got "
            f"{type(readout).__name__}",
            QsemTypeError,
        )
    seen: set[int] = set()
    for e in errs:
        bad = [w for w in e.wires if w >= len(dims)]
        if bad:
            raise arg_error("readout", f"{e!r} uses wire(s) {bad} of a {len(dims)}-wire register")
        if seen & set(e.wires):
            raise arg_error(
                "readout", f"readout errors overlap on wire(s) {sorted(seen & set(e.wires))}"
            )
        seen |= set(e.wires)
        e.check_dims([dims[w] for w in e.wires])
    return errs


def apply_readout(
    p: torch.Tensor, dims: Sequence[int], errors: Sequence[ReadoutError]
) -> torch.Tensor:
    """Recorded probabilities ``(B, D)`` from exact ones ``(B, D)`` on the full register."""
    if not errors:
        return p
    n = len(dims)
    x = p.reshape(p.shape[0], *dims)
    for e in errors:
        w = list(e.wires)
        rest = [a for a in range(n) if a not in w]
        order = [0] + [1 + a for a in rest] + [1 + a for a in w]
        y = x.permute(order)
        shape = y.shape
        m = e.matrix.to(dtype=p.dtype, device=p.device)
        y = (y.reshape(-1, m.shape[0]) @ m).reshape(shape)
        x = y.permute(torch.argsort(torch.tensor(order)).tolist())
    return x.reshape(p.shape[0], -1)


def marginal_readout(errors: Sequence[ReadoutError], wires: Sequence[int]) -> list[ReadoutError]:
    """The readout errors of the measured ``wires``, renumbered to their positions there.

    A confusion spanning measured and unmeasured wires is refused (its marginal is not
    a confusion of the measured wires alone).
    """
    pos = {w: i for i, w in enumerate(wires)}
    out = []
    for e in errors:
        inside = [w in pos for w in e.wires]
        if all(inside):
            out.append(e.on([pos[w] for w in e.wires]))
        elif any(inside):
            raise arg_error(
                "readout", f"{e!r} spans measured wires {list(wires)} and unmeasured ones"
            )
    return out
