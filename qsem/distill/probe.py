"""Probe metrics of the self-distillation loop: Δφ, the quantum distance, NCI, E_pot.

Every ``probe_every`` steps the loop runs the model on a fixed probe batch and
hands its outputs to :meth:`EmergenceProbe.observe`, which compares them with
the previous probe:

* ``dphi_fro = ‖φ_t − φ_prev‖_F`` and ``dphi_l1 = Σ |φ_t − φ_prev|`` over the
  whole probe tensor ``(N, L, S, C)`` (the L1 value is the one
  :class:`~qsem.emergence.L1Detector` computes);
* with Ω: ``q_distance = 1 − mean_n Tr(ρ_t ρ_prev) / sqrt(Tr ρ_t² Tr ρ_prev²)``
  (:func:`~qsem.simulators.similarity.normalized_overlap` per probe query, then
  the mean) and ``bures = mean_n arccos sqrt F(ρ_t, ρ_prev)``
  (:func:`~qsem.simulators.similarity.bures_angle`);
* with Ω's circuit and its parameters: a shot estimate of ``F`` between the
  bindings at ``t`` and ``prev`` (:func:`qsem.simulators.estimate_overlap`, on
  the torch engine or any backend); the ``N`` queries' outcomes are pooled into
  one estimate of the mean ``F`` with a confidence interval
  (:meth:`~qsem.simulators.shot_estimates.OverlapEstimate.pooled`: ``Σ`` counts
  over ``N · shots`` trials), ``q_distance_shots = 1 − F̂`` (``q_distance_aer`` on
  Aer, with ``q_distance_aer_exact``: the exact value on the queries it covers);
* ``nci_avg``: the mean over probe queries of :func:`qsem.tensors.nci_avg` of
  the Φ operators (over pairs of real positions when the outputs carry a ``mask``);
* ``E_pot`` from :class:`~qsem.emergence.EmergencePotential` fed
  ``(dphi_fro, bures, nci_avg)``: ``e_norm, theta, nci_avg, v_t, e_pot, critical``
  and the four weighted terms ``epot_e_norm = α1·E_norm``, ``epot_theta = α2·θ``,
  ``epot_nci = α3·NCI_avg``, ``epot_v_t = α4·V_T``.

The first probe only stores its outputs (there is nothing to compare with).
Each detector is fed the signal of its kind (:data:`SIGNALS`) and answers an
event or ``None``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

from qsem.circuits.errors import arg_error
from qsem.emergence import Detector, EmergencePotential, Event
from qsem.simulators import State, bures_angle, estimate_overlap, normalized_overlap
from qsem.simulators.shot_estimates import OverlapEstimate
from qsem.tensors import nci_avg

__all__ = [
    "EPOT_TERMS",
    "SHOT_KEYS",
    "SIGNALS",
    "EmergenceProbe",
    "output_distribution",
    "state_tensor",
]

#: the four weighted terms of E_pot in a probe record: α1·E_norm, α2·θ, α3·NCI_avg, α4·V_T.
EPOT_TERMS = ("epot_e_norm", "epot_theta", "epot_nci", "epot_v_t")

#: detector name -> the probe signal it is fed. The names are those of
#: :data:`qsem.emergence.DETECTORS` (``Detector.name``); ``quantum_shots`` and
#: ``quantum_aer`` are the ``quantum`` detector fed a shot estimate.
SIGNALS: dict[str, str] = {
    "frobenius": "dphi_fro",
    "adaptive": "dphi_fro",
    "bocpd": "dphi_fro",
    "l1": "phi_out",
    "quantum": "q_distance",
    "quantum_shots": "estimate_quantum_shots",
    "quantum_aer": "estimate_quantum_aer",
}

#: shot-estimate kind -> the record key of its distance ``1 − F̂``.
SHOT_KEYS: dict[str, str] = {"quantum_shots": "q_distance_shots", "quantum_aer": "q_distance_aer"}


def output_distribution(out: Mapping[str, Any]) -> torch.Tensor:
    """The distribution the loop distils, ``out["phi_out"]``: φ_out = Π_edge(Ω), the same
    key and meaning as in :meth:`qsem.models.SemanticModel.intermediates` (whose
    ``"phi"`` is the encoder's φ).

    A mapping with the former key ``"phi"`` (and no ``"phi_out"``) is still read, with a
    :class:`DeprecationWarning`.
    """
    if "phi_out" in out:
        return out["phi_out"]
    if "phi" in out:
        warnings.warn(
            "a distillation forward's 'phi' is now named 'phi_out' (the model's output "
            "distribution, as in SemanticModel.intermediates); 'phi' is deprecated",
            DeprecationWarning,
            stacklevel=3,
        )
        return out["phi"]
    raise arg_error("out", f"expected a mapping with 'phi_out', got keys {sorted(out)}")


def _rows(params: Mapping[str, torch.Tensor], n_rows: int, keep: int | None) -> dict[str, Any]:
    """The bindings of the first ``keep`` rows (scalars, e.g. trained weights, are shared)."""
    if keep is None:
        return dict(params)
    return {k: v[:keep] if v.dim() == 1 and v.shape[0] == n_rows else v for k, v in params.items()}


def state_tensor(omega: Any) -> torch.Tensor:
    """Ω as a tensor the similarity functions read: ``(N, 1, D)`` vectors or ``(N, D, D)``.

    ``omega``: an object with ``to_state()`` (a :class:`qsem.tensors.Omega`), a
    :class:`~qsem.simulators.State`, or such a tensor already (returned as is).
    """
    if hasattr(omega, "to_state"):
        omega = omega.to_state()
    if isinstance(omega, State):
        d = omega.dim
        if omega.mode == "statevector":
            return omega.vector.detach().reshape(-1, 1, d)
        return omega.density_matrix.detach().reshape(-1, d, d)
    if isinstance(omega, torch.Tensor):
        return omega.detach()
    raise arg_error("omega", f"expected an Omega, a State or a tensor, got {type(omega).__name__}")


class EmergenceProbe:
    """Successive-probe metrics, the detectors and the emergence potential.

    Args:
        detectors: name -> (kind, detector); ``kind`` is a key of :data:`SIGNALS`.
        potential: the :class:`~qsem.emergence.EmergencePotential` (alphas read from it).
        shots: shots per probe query of every shot estimate.
        shot_backends: kind (a key of :data:`SHOT_KEYS`) -> ``(backend, rows)``: the
            backend of :func:`estimate_overlap` (``None``: the torch engine) and how
            many probe queries it estimates (``None``: all).
        seed: base seed of the shot draws (the draw at step ``t`` uses ``seed + t``).
        confidence: of the shot estimate's interval.
    """

    def __init__(
        self,
        detectors: Mapping[str, tuple[str, Detector]],
        potential: EmergencePotential,
        *,
        shots: int = 1000,
        shot_backends: Mapping[str, tuple[Any, int | None]] | None = None,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> None:
        for name, (kind, _) in detectors.items():
            if kind not in SIGNALS:
                raise arg_error(
                    "detectors", f"{name!r}: unknown kind {kind!r}; known {list(SIGNALS)}"
                )
        self.detectors = dict(detectors)
        self.potential = potential
        self.shots = int(shots)
        self.shot_backends = dict(shot_backends or {})
        for kind in self.shot_backends:
            if kind not in SHOT_KEYS:
                raise arg_error("shot_backends", f"unknown kind {kind!r}; known {list(SHOT_KEYS)}")
        self.seed = int(seed)
        self.confidence = float(confidence)
        self.prev_phi: torch.Tensor | None = None
        self.prev_state: torch.Tensor | None = None
        self.prev_params: dict[str, torch.Tensor] | None = None

    # -- measuring -----------------------------------------------------------------------
    @torch.no_grad()
    def observe(
        self, step: int, out: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[tuple[str, Event]]]:
        """Metrics of this probe against the previous one, and the events it raised."""
        phi = output_distribution(out).detach().to(torch.float64)
        rec: dict[str, Any] = {}
        signals: dict[str, Any] = {"phi_out": phi}
        if out.get("ops") is not None:
            rec["nci_avg"] = float(nci_avg(out["ops"].detach(), out.get("mask")).mean())
        state = state_tensor(out["omega"]) if out.get("omega") is not None else None
        params = out.get("omega_params")
        if params is not None:
            params = {k: v.detach().clone() for k, v in params.items()}
        if self.prev_phi is not None:
            diff = phi - self.prev_phi
            rec["dphi_fro"] = float(torch.linalg.vector_norm(diff))
            rec["dphi_l1"] = float(diff.abs().sum())
            signals["dphi_fro"] = rec["dphi_fro"]
            if state is not None and self.prev_state is not None:
                rec["q_distance"] = float(1 - normalized_overlap(state, self.prev_state).mean())
                rec["bures"] = float(bures_angle(state, self.prev_state).mean())
                signals["q_distance"] = rec["q_distance"]
            for kind, (backend, keep) in self.shot_backends.items():
                if params is None or self.prev_params is None:
                    break
                n = phi.shape[0]
                est = estimate_overlap(
                    out["circuit"], _rows(params, n, keep), _rows(self.prev_params, n, keep),
                    shots=self.shots, seed=self.seed + step, backend=backend,
                    confidence=self.confidence,
                )  # fmt: skip
                assert isinstance(est, OverlapEstimate)  # shots given: an estimate
                pooled = est.pooled()
                key = SHOT_KEYS[kind]
                rec[key] = 1 - float(pooled.estimate)
                rec[key + "_low"] = 1 - float(pooled.high)
                rec[key + "_high"] = 1 - float(pooled.low)
                if keep is not None and state is not None and self.prev_state is not None:
                    near = normalized_overlap(state[:keep], self.prev_state[:keep])
                    rec[key + "_exact"] = float(1 - near.mean())  # the same queries, exactly
                signals[SIGNALS[kind]] = pooled
            pot = self.potential.update(
                rec["dphi_fro"], theta=rec.get("bures", 0.0), nci=rec.get("nci_avg", 0.0)
            )
            rec.update({k: float(pot[k]) for k in ("e_norm", "theta", "v_t", "e_pot")})
            rec["critical"] = bool(pot["critical"])
            rec.update(zip(EPOT_TERMS, map(float, pot["terms"]), strict=True))
        events: list[tuple[str, Event]] = []
        for name, (kind, det) in self.detectors.items():
            signal = signals.get(SIGNALS[kind])
            if signal is None:
                continue
            ev = det.update(step, signal)
            if ev is not None:
                events.append((name, ev))
        self.prev_phi, self.prev_state, self.prev_params = phi, state, params
        return rec, events

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "prev_phi": self.prev_phi,
            "prev_state": self.prev_state,
            "prev_params": self.prev_params,
            "detectors": {n: d.state_dict() for n, (_, d) in self.detectors.items()},
            "potential": self.potential.state_dict(),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.prev_phi, self.prev_state = d["prev_phi"], d["prev_state"]
        self.prev_params = d["prev_params"]
        for name, (_, det) in self.detectors.items():
            det.load_state_dict(d["detectors"][name])
        self.potential.load_state_dict(d["potential"])
