"""The emergence potential E_pot.

``E_pot(t) = α1·E_norm(t) + α2·θ_t + α3·NCI_avg(t) + α4·V_T(t)`` with

* ``E_norm(t) = Δφ_t / median(Δφ over the trailing window)``: the step's change
  against its typical size (1 when it is typical);
* ``θ_t``: the Bures angle ``arccos sqrt F(ρ_t, ρ_{t−1})`` between successive Ω
  states (``qsem.simulators.similarity.bures_angle``; 0 for a classical model);
* ``NCI_avg(t)``: the mean non-commutativity index of adjacent Φ operators
  (``qsem.tensors.nci_avg``; 0 when there are none);
* ``V_T(t)`` = the (population) variance of Δφ over the trailing window;
  with ``relative_variance=True`` it is divided by the window's median²
  (dimensionless, like ``E_norm``; the raw variance has the units of Δφ²).

The trailing window holds the last ``window`` values of Δφ up to and including
step ``t``. At the first step (window of one value) ``E_norm = 1`` and ``V_T = 0``.
A median of 0 is floored at ``eps``. ``critical = E_pot > theta_epot``.

>>> ep = EmergencePotential(window=3, theta_epot=0.5)
>>> [round(ep.update(d)["e_pot"], 4) for d in (1.0, 1.0, 4.0)]
[0.25, 0.25, 1.5]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from qsem.checks import check_int, check_real
from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = ["EmergencePotential"]


class EmergencePotential:
    """Running E_pot with its four terms; feed one step with :meth:`update`.

    ``window``: ``T``; ``alphas``: ``(α1, α2, α3, α4)``, default 0.25 each;
    ``theta_epot``: the critical level ``Θ_epot``; ``eps``: the floor of the median.
    """

    def __init__(
        self,
        window: int = 50,
        alphas: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        theta_epot: float = 1.0,
        *,
        relative_variance: bool = False,
        eps: float = 1e-12,
    ) -> None:
        self.window = check_int("window", window, 1)
        if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence):
            raise arg_error("alphas", f"expected 4 numbers, got {alphas!r}", QsemTypeError)
        if len(alphas) != 4:
            raise arg_error("alphas", f"expected 4 weights (α1..α4), got {len(alphas)}")
        self.alphas = tuple(check_real(f"alphas[{i}]", a) for i, a in enumerate(alphas))
        self.theta_epot = check_real("theta_epot", theta_epot)
        if not isinstance(relative_variance, bool):
            raise arg_error("relative_variance", "expected a bool", QsemTypeError)
        self.relative_variance = relative_variance
        self.eps = check_real("eps", eps, minimum=0.0, strict=True)
        self._hist: deque[float] = deque(maxlen=self.window)

    def update(self, delta_phi: float, theta: float = 0.0, nci: float = 0.0) -> dict[str, Any]:
        """Add step ``t``'s Δφ (and θ_t, NCI_avg(t)); returns every term.

        Keys: ``delta_phi``, ``e_norm``, ``theta``, ``nci_avg``, ``v_t``, ``e_pot``,
        ``critical`` (a bool), and ``terms``: the four weighted terms ``α_i · x_i``.
        """
        d = check_real("delta_phi", delta_phi, minimum=0.0)
        th = check_real("theta", theta)
        nc = check_real("nci", nci)
        self._hist.append(d)
        h = np.asarray(self._hist, dtype=np.float64)
        med = max(float(np.median(h)), self.eps)
        e_norm = d / med
        v_t = float(h.var())
        if self.relative_variance:
            v_t /= med * med
        a1, a2, a3, a4 = self.alphas
        terms = [a1 * e_norm, a2 * th, a3 * nc, a4 * v_t]
        e_pot = float(sum(terms))
        return {
            "delta_phi": d,
            "e_norm": e_norm,
            "theta": th,
            "nci_avg": nc,
            "v_t": v_t,
            "e_pot": e_pot,
            "critical": e_pot > self.theta_epot,
            "terms": terms,
        }

    def reset(self) -> None:
        self._hist.clear()

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (the window of Δφ) for checkpoints."""
        return {"name": "epot", "history": list(self._hist)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if not isinstance(d, dict) or d.get("name") != "epot":
            raise arg_error("d", "expected a state_dict of an EmergencePotential")
        self._hist = deque((float(x) for x in d["history"]), maxlen=self.window)
