"""qsem.simulators: the torch engine, measurements, state similarity, backends and the bridge.

``AerBackend``, ``PennyLaneBackend``, the Qiskit primitives ``EstimatorV2`` and
``SamplerV2`` (:mod:`qsem.simulators.qiskit_primitives`,
:mod:`qsem.simulators.qiskit_sampler`) and Qiskit ML's ``EstimatorGradient``
(:mod:`qsem.simulators.qiskit_gradient`) are imported lazily: ``from qsem.simulators
import AerBackend`` loads :mod:`qsem.simulators.aer` on first use, and importing
``qsem.simulators`` imports neither Qiskit nor PennyLane. Constructing one without
its package raises :class:`~qsem.circuits.errors.MissingDependencyError` naming the
extra to install (``qsem[aer]``, ``qsem[pennylane]``).
"""

# The folder name is not an import name: ``import simulators`` would load a second copy.
if __name__ != "qsem.simulators":
    raise ImportError(
        f"import qsem.simulators, not {__name__}; simulators/ is installed as qsem.simulators"
    )

from typing import Any

from .adjoint import adjoint_expval, adjoint_jacobian
from .backend import Backend, TorchBackend
from .bridge import QuantumLayer, expval_bridge, make_backend, probs_bridge
from .engine import TorchSimulator, simulate
from .estimators import estimate_overlap
from .measure import counts, entropy, expval, probs, purity, reduced_density_matrix, sample
from .memory import available_memory, check_fits, state_bytes
from .shot_estimates import OverlapEstimate
from .similarity import (
    bures_angle,
    destructive_swap_test_estimate,
    fidelity,
    normalized_overlap,
    overlap,
    swap_test_estimate,
)
from .state import State, check_density_matrix

__all__ = [
    "AerBackend",
    "Backend",
    "EstimatorGradient",
    "EstimatorV2",
    "OverlapEstimate",
    "PennyLaneBackend",
    "QuantumLayer",
    "SamplerV2",
    "State",
    "TorchBackend",
    "TorchSimulator",
    "adjoint_expval",
    "adjoint_jacobian",
    "available_memory",
    "bures_angle",
    "check_density_matrix",
    "check_fits",
    "counts",
    "destructive_swap_test_estimate",
    "entropy",
    "estimate_overlap",
    "expval",
    "expval_bridge",
    "fidelity",
    "make_backend",
    "normalized_overlap",
    "overlap",
    "probs",
    "probs_bridge",
    "purity",
    "reduced_density_matrix",
    "sample",
    "simulate",
    "state_bytes",
    "swap_test_estimate",
]  # fmt: skip

_LAZY = {
    "AerBackend": ".aer",
    "PennyLaneBackend": ".pennylane_backend",
    "EstimatorV2": ".qiskit_primitives",
    "EstimatorGradient": ".qiskit_gradient",
    "SamplerV2": ".qiskit_sampler",
}


def __getattr__(name: str) -> Any:
    """Import the Aer and PennyLane backends and the Qiskit primitives on first use
    (PEP 562); ``SwapTestEstimate``, the former name of ``OverlapEstimate``, with a
    DeprecationWarning."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    from .shot_estimates import deprecated_alias

    return deprecated_alias(__name__, name)
