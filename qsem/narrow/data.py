"""Image data for the narrow-digits study: scikit-learn's 8×8 digits, MNIST IDX files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from qsem.circuits.errors import QsemValueError, arg_error

__all__ = ["load_digits_8x8", "load_mnist_idx", "read_idx"]

#: IDX type codes -> NumPy big-endian dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format; ``.gz`` is decompressed) into a NumPy array.

    Header: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes; then the data, big-endian.
    """
    p = Path(path)
    if not p.is_file():
        raise arg_error("path", f"no such file: {p}")
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise arg_error("path", f"{p} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise arg_error("path", f"{p}: unknown IDX type code 0x{code:02x}")
    if len(raw) < 4 + 4 * ndim:
        raise arg_error("path", f"{p}: truncated IDX header")
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[code])
    count = int(np.prod(shape)) if shape else 1
    offset = 4 + 4 * ndim
    if len(raw) != offset + count * dtype.itemsize:
        raise arg_error(
            "path",
            f"{p}: IDX header says shape {shape} ({count * dtype.itemsize} bytes of data), "
            f"file has {len(raw) - offset}",
        )
    return np.frombuffer(raw, dtype, count, offset).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist_idx(images: str | os.PathLike[str], labels: str | os.PathLike[str]) -> tuple:
    """MNIST images ``(N, 784)`` scaled to [0, 1] (float32) and labels ``(N,)`` (int64)."""
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3:
        raise arg_error("images", f"expected an IDX file of images (N, rows, cols), got {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise arg_error("labels", f"expected {x.shape[0]} labels, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise QsemValueError("argument 'labels': digit labels must lie in 0..9")
    return (x.reshape(len(x), -1).astype(np.float32) / 255.0), y.astype(np.int64)


def load_digits_8x8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: ``(1797, 64)`` in [0, 1] (float32), labels int64."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)
