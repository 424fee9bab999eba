"""Deprecated name of :mod:`qsem.tensors.projection` (Π_edge, exact and compressed).

Renamed so that Π_edge and the personalisation package :mod:`qsem.edge` no longer
share a name; import the functions from ``qsem.tensors`` (or
``qsem.tensors.projection``).
"""

from __future__ import annotations

import warnings

from .projection import (
    Compression,
    EdgeCompression,
    pi_edge,
    pi_edge_born,
    pi_edge_compressed,
    top_slices,
    truncated_svd,
)

warnings.warn(
    "qsem.tensors.edge is deprecated: import from qsem.tensors (or qsem.tensors.projection)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "Compression",
    "EdgeCompression",
    "pi_edge",
    "pi_edge_born",
    "pi_edge_compressed",
    "top_slices",
    "truncated_svd",
]
