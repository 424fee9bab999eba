r"""Transmon-style qutrit noise: level relaxation, dephasing, leakage and 3×3 readout.

A transmon's three lowest levels ``|0>, |1>, |2>`` make a qutrit. After every gate of
duration ``t`` (``t_1q`` for one-wire gates, ``t_2q`` for two-wire gates) each wire
of the gate gets, in this order:

* **relaxation** ``|2> -> |1> -> |0>``:
  :class:`~qsem.circuits.AmplitudeDamping` ``(γ_1, γ_2)`` with
  ``γ_k = 1 - exp(-t / T1_k)`` (``t1 = (T1_1, T1_2)``: the lifetimes of ``|1>`` and
  ``|2>``; a transmon's ``T1_2`` is about ``T1_1 / 2``). One jump per gate: the path
  ``|2> -> |0>`` within one gate (second order in ``t / T1``) is neglected;
* **dephasing**: the coherence ``ρ_jk`` is multiplied by ``exp(-(j - k)² t / T_φ)``
  (Gaussian fluctuations of the level energies, which grow with the level index:
  the ``|0>,|2>`` coherence decays four times faster than ``|0>,|1>``). A Hadamard
  product ``ρ -> C ∘ ρ`` with ``C`` positive semidefinite is a channel; its Kraus
  operators are ``sqrt(λ_m) diag(v_m)`` from ``C = Σ λ_m v_m v_m^†``;
* **leakage** (two-wire gates only): ``|1> -> |2>`` with probability ``p_leak`` on each
  wire (the ``|11> <-> |02>`` transition a CZ-type gate drives), Kraus
  ``diag(1, sqrt(1 - p_leak), 1)`` and ``sqrt(p_leak) |2><1|``.

Readout: ``readout[i][j] = P(record j | level i)`` on every wire
(:class:`~qsem.circuits.noise.ReadoutError`); pass the model as ``readout=`` to
``probs``/``sample``/``expval``. The noisy circuit holds ordinary qsem channels, so it
runs on every backend (on Aer through the two-qubit encoding of each qutrit, where the
channels act as ``K ⊕ 0`` plus the projector on the unused level).

>>> from qsem.circuits import Circuit, TShift
>>> nm = transmon_qutrit(t1=(50.0, 25.0), t_phi=40.0, t_1q=0.05, t_2q=0.3, p_leak=0.002)
>>> [op.name for op in nm.apply(Circuit.qutrits(1).add(TShift(wires=0))).ops]
['Shift', 'AmplitudeDamping', 'Kraus']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .channels import AmplitudeDamping, Kraus
from .errors import DimensionError, arg_error
from .noise import NoiseModel, ReadoutError
from .operations import Channel, Operation

__all__ = ["DEFAULT_READOUT", "TransmonQutritNoise", "dephasing_kraus", "transmon_qutrit"]

#: A typical transmon qutrit readout (|2> is the hardest level to tell apart).
DEFAULT_READOUT = ((0.97, 0.025, 0.005), (0.04, 0.94, 0.02), (0.01, 0.07, 0.92))


def dephasing_kraus(decay: float) -> np.ndarray:
    """Kraus operators ``(r, 3, 3)`` of ``ρ_jk -> ρ_jk · decay^((j-k)²)``."""
    lv = np.arange(3)
    c = decay ** ((lv[:, None] - lv[None, :]) ** 2).astype(np.float64)
    lam, vec = np.linalg.eigh(c)
    keep = lam > 1e-15
    return np.stack([np.sqrt(lam[m]) * np.diag(vec[:, m]) for m in np.nonzero(keep)[0]])


def leakage_kraus(p: float) -> np.ndarray:
    """Kraus operators of ``|1> -> |2>`` with probability ``p``."""
    k0 = np.diag([1.0, math.sqrt(1 - p), 1.0])
    k1 = np.zeros((3, 3))
    k1[2, 1] = math.sqrt(p)
    return np.stack([k0, k1]).astype(np.complex128)


class TransmonQutritNoise(NoiseModel):
    """The noise of :func:`transmon_qutrit` (its docstring lists the parameters)."""

    def __init__(
        self,
        *,
        t1: Sequence[float],
        t_phi: float,
        t_1q: float,
        t_2q: float,
        p_leak: float,
        readout: Any,
    ) -> None:
        super().__init__()
        self.t1 = tuple(float(t) for t in t1)
        self.t_phi, self.t_1q, self.t_2q = float(t_phi), float(t_1q), float(t_2q)
        self.p_leak = float(p_leak)
        self._after: dict[int, list[Channel]] = {
            1: self._idle(self.t_1q, leak=False),
            2: self._idle(self.t_2q, leak=True),
        }
        if readout is not None:
            self.add_readout_error(ReadoutError(readout, wires=0))

    def _idle(self, t: float, *, leak: bool) -> list[Channel]:
        """The channels of one wire (local wire 0) after a gate of duration ``t``."""
        out: list[Channel] = []
        if t > 0 and any(math.isfinite(x) for x in self.t1):
            g = [1 - math.exp(-t / x) if math.isfinite(x) else 0.0 for x in self.t1]
            out.append(AmplitudeDamping(*g, wires=0))
        if t > 0 and math.isfinite(self.t_phi):
            out.append(Kraus(dephasing_kraus(math.exp(-t / self.t_phi)), wires=0))
        if leak and self.p_leak > 0:
            out.append(Kraus(leakage_kraus(self.p_leak), wires=0))
        return out

    def errors_after(self, op: Operation, n: int) -> list[Channel]:
        if isinstance(op, Channel):
            return []
        k = len(op.wires)
        if k > 2:
            raise arg_error(
                "circuit", f"{op.name} acts on {k} wires; the transmon model covers 1 and 2"
            )
        return [self.place(c, [w]) for w in op.wires for c in self._after[k]]

    def apply(self, circuit: Any, *, measured: bool | Sequence[int] = True) -> Any:
        dims = getattr(circuit, "dims", None)
        if dims is None or any(d != 3 for d in dims):
            raise DimensionError(
                f"argument 'circuit': the transmon qutrit model needs qutrit wires, got dims "
                f"{None if dims is None else list(dims)}"
            )
        return super().apply(circuit, measured=measured)

    def __repr__(self) -> str:
        return (
            f"TransmonQutritNoise(t1={self.t1}, t_phi={self.t_phi}, t_1q={self.t_1q}, "
            f"t_2q={self.t_2q}, p_leak={self.p_leak})"
        )


def transmon_qutrit(
    *,
    t1: Sequence[float] = (60.0, 30.0),
    t_phi: float = 80.0,
    t_1q: float = 0.05,
    t_2q: float = 0.3,
    p_leak: float = 1e-3,
    readout: Any = DEFAULT_READOUT,
) -> TransmonQutritNoise:
    """A transmon-style qutrit noise model (module docstring for the channels).

    Args:
        t1: ``(T1_1, T1_2)``, lifetimes of ``|1>`` (decay to ``|0>``) and ``|2>`` (decay to
            ``|1>``), in the unit of the gate times (µs by convention); ``inf``: none.
        t_phi: pure-dephasing time of the ``|0>,|1>`` coherence (``|j>,|k>``: ``T_φ/(j-k)²``).
        t_1q: duration of a one-wire gate.
        t_2q: duration of a two-wire gate.
        p_leak: probability that a two-wire gate moves ``|1>`` to ``|2>`` on each wire.
        readout: 3×3 confusion ``P(record j | level i)``, or ``None``.
    """
    if len(tuple(t1)) != 2 or any(not (x > 0) for x in t1):
        raise arg_error("t1", f"expected two positive times (T1_1, T1_2), got {t1!r}")
    for name, v in (("t_phi", t_phi),):
        if not v > 0:
            raise arg_error(name, f"must be a positive time (inf: none), got {v!r}")
    for name, v in (("t_1q", t_1q), ("t_2q", t_2q)):
        if not (v >= 0 and math.isfinite(v)):
            raise arg_error(name, f"must be a finite duration >= 0, got {v!r}")
    if not 0 <= p_leak <= 1:
        raise arg_error("p_leak", f"must lie in [0, 1], got {p_leak!r}")
    return TransmonQutritNoise(
        t1=t1, t_phi=t_phi, t_1q=t_1q, t_2q=t_2q, p_leak=p_leak, readout=readout
    )
