"""Memory estimates: refuse a register that would not fit before allocating it."""

from __future__ import annotations

import math
from typing import Any

import torch

from qsem.circuits.errors import MemoryLimitError

#: Working set of a simulation step relative to the state: input, output, one temporary.
WORKING_FACTOR = 3

#: A working set at most this large is not checked against the free memory (reading
#: ``/proc/meminfo`` costs 50-130 us, as much as a whole small-register step); an
#: explicit ``max_memory`` is always checked.
UNCHECKED_BYTES = 16 << 20


def available_memory(device: Any = None) -> int:
    """Bytes available for new tensors on ``device`` (CPU: MemAvailable; CUDA: free memory)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def state_bytes(dims: tuple[int, ...], mode: str, batch: int, dtype: torch.dtype) -> int:
    """Bytes of the state tensor itself (Python ints: no overflow for huge registers)."""
    d = math.prod(dims)
    elems = batch * (d * d if mode == "density_matrix" else d)
    return elems * dtype.itemsize


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def check_fits(
    dims: tuple[int, ...],
    mode: str,
    batch: int,
    dtype: torch.dtype,
    device: Any = None,
    max_memory: int | None = None,
) -> int:
    """Raise :class:`MemoryLimitError` if the working set exceeds the limit; return state bytes.

    Without ``max_memory`` a working set of at most ``UNCHECKED_BYTES`` passes unchecked.
    """
    need = state_bytes(dims, mode, batch, dtype)
    if max_memory is None and need * WORKING_FACTOR <= UNCHECKED_BYTES:
        return need
    limit = max_memory if max_memory is not None else available_memory(device)
    if need * WORKING_FACTOR > limit:
        raise MemoryLimitError(
            f"argument 'circuit': a {mode} register of dims {list(dims)} with batch {batch} in "
            f"{str(dtype).replace('torch.', '')} needs {_fmt(need)} for the state and about "
            f"{_fmt(need * WORKING_FACTOR)} to simulate, but only {_fmt(limit)} is available"
            + (" (max_memory)" if max_memory is not None else "")
        )
    return need
