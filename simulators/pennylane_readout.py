r"""Qutrit readout errors of the ``qsem`` PennyLane device, as ``default.qutrit.mixed``
defines them.

``qml.device("qsem", readout_relaxation_probs=[γ10, γ20, γ21],
readout_misclassification_probs=[p01, p02, p12])``: at measurement, every measured
qutrit wire goes through ``QutritAmplitudeDamping(γ10, γ20, γ21)`` then
``TritFlip(p01, p02, p12)`` after the state is rotated by the measurement's
diagonalizing gates (PennyLane's ``diagonalizing_gates``, so the eigenvalue order is
PennyLane's). Both channels send each basis level to basis levels (one nonzero per row
in every Kraus operator), so on the diagonal they act as a confusion matrix

.. math:: M[i, j] = \sum_k |K_k[j, i]|^2 = P(\text{record } j \mid \text{level } i),
          \qquad M = M_{\text{relax}} M_{\text{misclass}},

applied with qsem's readout kernels (:mod:`qsem.simulators.readout`,
:class:`~qsem.circuits.noise.ReadoutError`): ``p' = p · (⊗_w M)`` on the qutrit wires.
``expval``/``var`` are ``p' · λ`` / ``p' · λ² - (p' · λ)²`` with PennyLane's
eigenvalues ``λ`` (a sum: term by term, as PennyLane measures it); ``probs``,
``sample`` and ``counts`` record ``p'``. ``state``, ``density_matrix``, ``purity``
and ``vn_entropy`` are not affected (as on ``default.qutrit.mixed``, which, like
qsem's device through :func:`warn_state_readout`, warns for analytic ``state`` and
``density_matrix``); qubit wires of a mixed register are not affected either.

>>> M = readout_confusion([0.1, 0.2, 0.05], None)
>>> [round(float(x), 2) for x in M[2]]  # level 2 relaxes to 0 or 1
[0.2, 0.05, 0.75]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pennylane as qml
import torch

from qsem.circuits.errors import arg_error
from qsem.circuits.noise import ReadoutError

from . import measure as M
from .pennylane_measure import as_batched
from .state import State

__all__ = ["Readout", "readout_confusion"]

#: the measurements readout errors change (as on default.qutrit.mixed)
AFFECTED = ("ExpectationMP", "VarianceMP", "ProbabilityMP", "SampleMP", "CountsMP")


def _confusion(kraus: Sequence[Any]) -> torch.Tensor:
    """``M[i, j] = Σ_k |K_k[j, i]|²`` of a channel that maps basis levels to basis levels."""
    ks = np.stack([np.asarray(k, dtype=np.complex128) for k in kraus])
    return torch.from_numpy((np.abs(ks) ** 2).sum(0).T.copy())


def readout_confusion(relaxation: Any, misclassification: Any) -> torch.Tensor | None:
    """The 3×3 confusion of ``default.qutrit.mixed``'s readout arguments (``None``: none).

    ``relaxation``: ``[γ10, γ20, γ21]`` of ``QutritAmplitudeDamping``;
    ``misclassification``: ``[p01, p02, p12]`` of ``TritFlip`` (applied second).
    """
    out: torch.Tensor | None = None
    channels = (
        ("readout_relaxation_probs", relaxation, qml.QutritAmplitudeDamping),
        ("readout_misclassification_probs", misclassification, qml.TritFlip),
    )
    for name, probs, channel in channels:
        if probs is None:
            continue
        values = np.asarray(probs, dtype=float).reshape(-1)
        if values.shape != (3,):
            raise arg_error(name, f"expected 3 probabilities, got {probs!r}")
        try:
            with qml.queuing.QueuingManager.stop_recording():
                op = channel(*values, wires=0)
        except ValueError as exc:  # PennyLane's own check of the probabilities
            raise arg_error(name, str(exc)) from None
        m = _confusion(op.kraus_matrices())
        out = m if out is None else out @ m
    return out


class Readout:
    """Readout errors of a device on a register: the confusion on each qutrit wire, and
    ``rotate(state, ops)``, which applies PennyLane operations to a state (the device's
    engine)."""

    def __init__(
        self, confusion: torch.Tensor, dims: Sequence[int], rotate: Callable[..., State]
    ) -> None:
        self.errors = [ReadoutError(confusion, wires=[w]) for w, d in enumerate(dims) if d == 3]
        self.rotate = rotate

    @staticmethod
    def applies(mp: Any) -> bool:
        return type(mp).__name__ in AFFECTED

    def _recorded(self, state: State, obs: Any, wires: list[int]) -> torch.Tensor:
        """``(B, D_w)`` recorded probabilities on ``wires`` in ``obs``'s eigenbasis."""
        batched = as_batched(state)
        gates = obs.diagonalizing_gates() if obs is not None else []
        if gates:
            batched = as_batched(self.rotate(batched, gates))
        return M.probs(batched, wires, readout=self.errors or None)

    def exact(self, mp: Any, state: State, index: dict[Any, int]) -> Any:
        """The analytic value of ``mp`` with readout errors (torch, autograd kept)."""
        kind = type(mp).__name__
        if kind == "ExpectationMP":
            return state.unbatch(self._expval(mp.obs, state, index))
        wires = [index[w] for w in mp.wires] if mp.wires else list(range(len(state.dims)))
        p = self._recorded(state, mp.obs, wires)
        if kind == "ProbabilityMP":
            return state.unbatch(p)
        lam = _eigvals(mp.obs, state.dims, index).to(p.dtype)
        mean = p @ lam
        return state.unbatch(p @ lam**2 - mean**2)  # VarianceMP

    def _expval(self, obs: Any, state: State, index: dict[Any, int]) -> torch.Tensor:
        if obs.name in ("Sum", "LinearCombination"):
            coeffs, ops = obs.terms() if obs.name == "LinearCombination" else (None, obs.operands)
            coeffs = coeffs if coeffs is not None else [1.0] * len(ops)
            return sum(c * self._expval(o, state, index) for c, o in zip(coeffs, ops, strict=True))
        if obs.name == "SProd":
            return obs.scalar * self._expval(obs.base, state, index)
        p = self._recorded(state, obs, [index[w] for w in obs.wires])
        return p @ _eigvals(obs, state.dims, index).to(p.dtype)

    def eigen_samples(
        self, state: State, obs: Any, index: dict[Any, int], shots: int, gen: torch.Generator
    ) -> torch.Tensor:
        """``(B, shots)`` eigenvalues of ``obs`` drawn from the recorded outcomes."""
        p = self._recorded(state, obs, [index[w] for w in obs.wires]).detach()
        p = p.clamp(min=0).to(torch.float64)
        idx = torch.multinomial(p / p.sum(-1, keepdim=True), shots, replacement=True, generator=gen)
        return _eigvals(obs, state.dims, index)[idx]

    def basis_samples(
        self, state: State, wires: list[int], shots: int, gen: torch.Generator
    ) -> torch.Tensor:
        """``(B, shots, k)`` recorded levels of ``wires``."""
        return M.sample(as_batched(state), shots, wires, generator=gen, readout=self.errors or None)


def _eigvals(obs: Any, dims: tuple[int, ...], index: dict[Any, int]) -> torch.Tensor:
    """PennyLane's eigenvalues of ``obs`` in the order of its diagonalizing gates; a product
    on disjoint wires as the Kronecker product of its factors' (any wire dimensions)."""
    if obs.name == "Prod":
        wires = [w for f in obs.operands for w in f.wires]
        if len(set(wires)) == len(wires):
            out = np.ones(1)
            for f in obs.operands:
                out = np.kron(out, _eigvals(f, dims, index).numpy())
            return torch.from_numpy(out)
    lam = np.real(np.asarray(qml.math.unwrap(obs.eigvals()), dtype=np.complex128))
    if lam.shape[-1] != math.prod(dims[index[w]] for w in obs.wires):
        raise arg_error("tape", f"qsem cannot read the eigenvalues of {obs.name} with readout")
    return torch.from_numpy(lam.astype(np.float64))


@qml.transform
def warn_state_readout(tape: Any) -> tuple[Sequence[Any], Callable[[Any], Any]]:
    """Warn, as ``default.qutrit.mixed`` does and in its words, that an analytic ``state``
    or ``density_matrix`` measurement is not affected by the device's readout errors (a
    preprocessing transform of a device with readout errors; the tape is unchanged)."""
    if not tape.shots:
        for m in tape.measurements:
            if isinstance(m, qml.measurements.StateMP):
                warnings.warn(f"Measurement {m} is not affected by readout error.", stacklevel=2)
    return (tape,), lambda results: results[0]
