"""qsem.simulators: the torch engine, measurements, state similarity, backends and the bridge.

The Aer and PennyLane backends import their (heavy) packages, so they are not
imported here: use ``qsem.simulators.aer.AerBackend`` and
``qsem.simulators.pennylane_backend.PennyLaneBackend``, or ``backend="aer"`` /
``backend="pennylane"`` in the bridge.
"""

from .backend import Backend, TorchBackend
from .bridge import QuantumLayer, expval_bridge, make_backend, probs_bridge
from .engine import TorchSimulator, simulate
from .estimators import estimate_overlap
from .measure import counts, entropy, expval, probs, purity, reduced_density_matrix, sample
from .memory import available_memory, check_fits, state_bytes
from .shot_estimates import OverlapEstimate
from .similarity import (
    SwapTestEstimate,
    bures_angle,
    destructive_swap_test_estimate,
    fidelity,
    normalized_overlap,
    overlap,
    swap_test_estimate,
)
from .state import State, check_density_matrix

__all__ = [
    "Backend",
    "OverlapEstimate",
    "QuantumLayer",
    "State",
    "SwapTestEstimate",
    "TorchBackend",
    "TorchSimulator",
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
