"""qsem: quantum-hybrid semantic tensors on a differentiable qudit simulator.

The circuit IR lives in :mod:`qsem.circuits`, the simulators in
:mod:`qsem.simulators`; this top-level package stays light because Python
imports it before either of them.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qsem")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0+unknown"

__all__ = ["__version__"]
