"""Deprecated name of :mod:`qsem.tensors.projection` (Π_edge, exact and compressed).

Renamed so that Π_edge and the personalisation package :mod:`qsem.edge` no longer
share a name. This module only forwards: every name is looked up in
:mod:`qsem.tensors.projection` on access, with a ``DeprecationWarning`` pointing at
the line that used it. Import the functions from ``qsem.tensors`` (or
``qsem.tensors.projection``) instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import projection

#: the names the module held, each forwarded to qsem.tensors.projection
_FORWARDED = (
    "Compression",
    "EdgeCompression",
    "pi_edge",
    "pi_edge_born",
    "pi_edge_compressed",
    "top_slices",
    "truncated_svd",
)
__all__ = list(_FORWARDED)


def __getattr__(name: str) -> Any:
    """``qsem.tensors.projection.<name>`` for the names this module used to hold (PEP 562)."""
    if name not in _FORWARDED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"qsem.tensors.edge is deprecated: import {name} from qsem.tensors "
        "(or qsem.tensors.projection)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(projection, name)
