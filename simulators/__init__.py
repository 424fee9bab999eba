"""qsem.simulators: the torch engine (and, later, Aer/PennyLane adapters and the bridge)."""

from .backend import Backend, TorchBackend
from .bridge import QuantumLayer, expval_bridge, make_backend, probs_bridge
from .engine import TorchSimulator, simulate
from .measure import counts, entropy, expval, probs, purity, reduced_density_matrix, sample
from .memory import available_memory, check_fits, state_bytes
from .state import State, check_density_matrix

__all__ = [
    "Backend",
    "QuantumLayer",
    "State",
    "TorchBackend",
    "TorchSimulator",
    "available_memory",
    "check_density_matrix",
    "check_fits",
    "counts",
    "entropy",
    "expval",
    "expval_bridge",
    "make_backend",
    "probs",
    "probs_bridge",
    "purity",
    "reduced_density_matrix",
    "sample",
    "simulate",
    "state_bytes",
]  # fmt: skip
