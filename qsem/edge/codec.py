"""Lossless tensors and record checksums for the history store.

A tensor is stored as ``(dtype name, shape as JSON, raw little-endian C-order bytes)``:
:func:`decode_tensor` gives back the same bits (NaN payloads and ``-0.0`` included).
A real number (``Δφ``, an event's value, ``θ``) goes into a ``REAL`` column, which
keeps every float except two: it stores ``-0.0`` as ``0.0`` and NaN as NULL. Those
two are stored as their 8 IEEE-754 bytes (:func:`encode_real`), and a checksum is
taken over what is stored, so every value reads back with the bits it was written with.

>>> import numpy as np
>>> a = np.array([[1.5, -0.0], [np.nan, 2.0]], dtype=np.float32)
>>> decode_tensor(*encode_tensor(a)).tobytes() == a.tobytes()
True
>>> decode_real(encode_real(-0.0)), encode_real(0.5)
(-0.0, 0.5)
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any

import numpy as np

from qsem.circuits.errors import QsemTypeError, arg_error

__all__ = ["DTYPES", "checksum", "decode_real", "decode_tensor", "encode_real", "encode_tensor"]

#: the dtypes a store keeps (bfloat16 has no lossless NumPy dtype and is refused).
DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32",
           "float64", "complex64", "complex128")  # fmt: skip


def encode_tensor(value: Any, name: str = "tensor") -> tuple[str, str, bytes]:
    """``(dtype, shape as JSON, raw little-endian C-order bytes)`` of an array or torch tensor.

    Lossless: :func:`decode_tensor` gives back the same bits.
    """
    if type(value).__module__.startswith("torch"):
        import torch

        if not isinstance(value, torch.Tensor):
            raise arg_error(name, f"expected an array, got {type(value).__name__}", QsemTypeError)
        if value.dtype == torch.bfloat16:
            raise arg_error(name, "bfloat16 has no lossless NumPy dtype; convert it first")
        value = value.detach().cpu().resolve_conj().resolve_neg().numpy()
    arr = np.asarray(value)
    dtype = arr.dtype.name
    if dtype not in DTYPES:
        raise arg_error(name, f"dtype {dtype} is not storable; storable: {', '.join(DTYPES)}")
    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return dtype, json.dumps(list(arr.shape)), data


def decode_tensor(dtype: str, shape: str, data: bytes) -> np.ndarray:
    """The array :func:`encode_tensor` stored (a fresh, writable copy)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    dims = tuple(int(d) for d in json.loads(shape))
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    return arr.astype(np.dtype(dtype), copy=True).reshape(dims)


def encode_real(value: Any, name: str = "value") -> float | bytes | None:
    """``value`` as a store keeps it exactly: None, a float, or for ``-0.0`` and NaN (any
    payload), which a ``REAL`` column would turn into ``0.0`` and NULL, the 8 bytes of
    the IEEE-754 double, little-endian. Anything that is not a real number is refused
    naming ``name``."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, bool, complex)):
        raise arg_error(name, f"expected a real number or None, got {type(value).__name__}",
                        QsemTypeError)  # fmt: skip
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise arg_error(name, f"expected a real number or None, got {type(value).__name__}",
                        QsemTypeError) from None  # fmt: skip
    if math.isnan(x) or (x == 0.0 and math.copysign(1.0, x) < 0):
        return struct.pack("<d", x)
    return x


def decode_real(stored: Any) -> float | None:
    """The number :func:`encode_real` stored (``ValueError`` for anything else)."""
    if stored is None:
        return None
    if isinstance(stored, bytes):
        if len(stored) != 8:
            raise ValueError(f"a stored real number has {len(stored)} bytes, not 8")
        return float(struct.unpack("<d", stored)[0])
    if isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return float(stored)
    raise ValueError(f"not a stored real number: {type(stored).__name__}")


def checksum(*parts: Any) -> str:
    """blake2b-128 hex digest over the parts (bytes as they are, the rest as ``repr``), each
    followed by a NUL byte: the checksum every stored record carries."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
        h.update(b"\x00")
    return h.hexdigest()
