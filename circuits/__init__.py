"""qsem.circuits: the circuit IR, gate and channel library, observables and templates.

Imports go one way: ``qsem.circuits`` <- ``qsem.simulators`` <- the rest of ``qsem``.
"""

# The folder name is not an import name: ``import circuits`` would load a second copy.
if __name__ != "qsem.circuits":
    raise ImportError(
        f"import qsem.circuits, not {__name__}; circuits/ is installed as qsem.circuits"
    )

from . import channels, gates, observables, templates
from .channels import AmplitudeDamping, BitFlip, Depolarizing, Kraus, PhaseDamping, TritFlip
from .circuit import Circuit
from .errors import (
    DimensionError,
    InvalidStateError,
    MemoryLimitError,
    MissingDependencyError,
    NotCPTPError,
    NotUnitaryError,
    QsemError,
    QsemTypeError,
    QsemValueError,
)
from .gates import *  # noqa: F403
from .gates import __all__ as _gate_names
from .noise import NoiseModel, ReadoutError
from .observables import GellMann, Hermitian, Observable, PauliString, gell_mann_matrices
from .operations import Channel, Gate, Operation
from .parameters import Parameter, ParameterVector
from .templates import destructive_swap_test, swap_test

__all__ = [
    *_gate_names,
    "AmplitudeDamping", "BitFlip", "Channel", "Circuit", "Depolarizing", "DimensionError",
    "Gate", "GellMann", "Hermitian", "InvalidStateError", "Kraus", "MemoryLimitError",
    "MissingDependencyError", "NoiseModel", "NotCPTPError", "NotUnitaryError", "Observable",
    "Operation",
    "Parameter", "ParameterVector", "PauliString", "PhaseDamping", "QsemError", "QsemTypeError",
    "QsemValueError", "ReadoutError",
    "TritFlip", "channels", "destructive_swap_test", "gates", "gell_mann_matrices", "observables",
    "swap_test", "templates",
]  # fmt: skip
