"""The native whole-circuit kernel: one C call per forward, one per adjoint backward.

A plan made only of unitary steps (fused single-wire layers, composed permutations,
multi-wire gates) on a statevector, or on a factored density matrix of rank 1, runs
as ONE call of the C library built with the package (``simulators/_native``): every
gate is applied in order to the batched ``(B, D)`` state, over registers of any wire
dimensions, with shared ``(d, d)`` or per-row ``(B, d, d)`` matrices. Its backward is
the adjoint method in one more call: from the final state ``ψ_m`` and the incoming
gradient ``λ_m`` (torch's convention: for ``y = A x``, ``∂/∂A = λ x^H``)

.. math::
    ψ_{k-1} = U_k^† ψ_k, \\qquad
    \\frac{∂L}{∂U_k} \\mathrel{+}= λ_k ψ_{k-1}^†, \\qquad
    λ_{k-1} = U_k^† λ_k,

so the gradients reach the gate matrices (autograd carries them to the angles through
the plan's rotation table) and the start state, with a few states of memory whatever
the depth. The gates are unitary (the library's gates are, and ``Unitary`` checks its
matrix), which the uncomputation ``ψ_{k-1} = U_k^† ψ_k`` relies on.

The engine uses it on CPU whenever it applies (:func:`applies`); ``TorchSimulator(native=
False)`` or the environment variable ``QSEM_NATIVE=0`` keep the torch path. When the
library was not built (no C compiler at install), :func:`available` is ``False`` and the
torch path runs. ``Plan.native_runs`` counts the native forwards of a plan.

>>> import torch
>>> from qsem.circuits import Circuit, H, CNOT
>>> from qsem.simulators import TorchSimulator
>>> sim = TorchSimulator(dtype=torch.complex128)
>>> c = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]))
>>> v = sim.run(c).vector
>>> bool(torch.allclose(v.abs() ** 2, torch.tensor([0.5, 0, 0, 0.5], dtype=torch.float64)))
True
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from qsem.circuits.operations import Gate

from .plan_exec import FusedStep, GateStep, PermutationStep, Plan, rotation_table
from .plan_state import Context, SimState

_I64 = ctypes.POINTER(ctypes.c_int64)


@cache
def _library() -> ctypes.CDLL | None:
    """The built kernel, or ``None`` where the package was installed without it."""
    spec = importlib.util.find_spec("qsem.simulators._qsem_native")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    common = [ctypes.c_int64, ctypes.c_int, _I64, ctypes.c_int]
    gates = [ctypes.POINTER(ctypes.c_int32), _I64, _I64, ctypes.POINTER(ctypes.c_void_p), _I64]
    for suf in ("c64", "c128"):
        fwd = getattr(lib, f"qsem_forward_{suf}")
        fwd.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *common, *gates, ctypes.c_int]
        fwd.restype = ctypes.c_int
        adj = getattr(lib, f"qsem_adjoint_{suf}")
        adj.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            *common,
            *gates,
            ctypes.POINTER(ctypes.c_void_p),
            _I64,
            ctypes.c_int,
        ]
        adj.restype = ctypes.c_int
    return lib


def available() -> bool:
    """True when the native kernel was built and loads."""
    return _library() is not None


def enabled_by_default() -> bool:
    """``QSEM_NATIVE`` unset or ``1``: the engine uses the kernel where it applies."""
    value = os.environ.get("QSEM_NATIVE", "1")
    if value not in ("0", "1"):
        from qsem.errors import arg_error

        raise arg_error("QSEM_NATIVE", f"expected '0' or '1', got {value!r}")
    return value == "1"


_SUFFIX = {torch.complex64: "c64", torch.complex128: "c128"}


def applies(plan: Plan, s: SimState, ctx: Context) -> bool:
    """True when ``plan`` on ``s`` can run natively: CPU, a pure state, unitary steps."""
    return (
        ctx.native
        and ctx.dtype in _SUFFIX
        and torch.device(ctx.device).type == "cpu"
        and s.vector_like
        and s.rank == 1
        and s.weights is None
        and all(isinstance(st, (FusedStep, PermutationStep, GateStep)) for st in plan.steps)
        and available()
    )


@dataclass
class _Spec:
    """The gates of one run in the kernel's layout (kept alive while it runs)."""

    dims: np.ndarray
    kinds: np.ndarray
    wire_ptr: np.ndarray
    wires: np.ndarray
    perms: dict[int, np.ndarray]  # gate index -> gather indices (kind 1)
    rows: int


def _gates(plan: Plan, ctx: Context, rows: int) -> tuple[_Spec, list[torch.Tensor | None]]:
    """Every gate of ``plan`` in order: ``(spec, matrices)`` (``None`` for permutations)."""
    kinds: list[int] = []
    wires: list[int] = [0]
    flat: list[int] = []
    mats: list[torch.Tensor | None] = []
    perms: dict[int, np.ndarray] = {}

    def add(kind: int, on: list[int], mat: torch.Tensor | None) -> None:
        kinds.append(kind)
        flat.extend(on)
        wires.append(len(flat))
        mats.append(mat)

    for step in plan.steps:
        if isinstance(step, FusedStep):
            for w, m in sorted(step.wire_matrices(ctx).items()):
                add(0, [w], _matrix(m, rows, ctx.dtype))
        elif isinstance(step, GateStep):
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            add(0, list(gate.wires), _matrix(ctx.matrix(gate), rows, ctx.dtype))
        else:
            assert isinstance(step, PermutationStep)
            perms[len(kinds)] = np.ascontiguousarray(step.src, dtype=np.int64)
            add(1, [], None)
    spec = _Spec(
        np.asarray(ctx.dims, dtype=np.int64),
        np.asarray(kinds, dtype=np.int32),
        np.asarray(wires, dtype=np.int64),
        np.asarray(flat or [0], dtype=np.int64),
        perms,
        rows,
    )
    return spec, mats


def _matrix(m: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """``(dk, dk)`` shared or ``(rows, dk, dk)`` per row, contiguous, in ``dtype``."""
    if m.dim() == 3 and (m.shape[0] == 1 or m.stride(0) == 0):
        m = m[0]
    if m.dim() == 3 and m.shape[0] != rows:
        raise ValueError(f"a gate batch of {m.shape[0]} rows on a state of {rows}")
    return m.to(dtype).resolve_conj().contiguous()


def _ptr(a: np.ndarray, kind: Any) -> Any:
    return a.ctypes.data_as(ctypes.POINTER(kind))


def _gate_args(spec: _Spec, mats: tuple[torch.Tensor, ...]) -> list[Any]:
    """Pointers and batch strides of the gates (matrices in order, permutations by index)."""
    it = iter(mats)
    ptrs, strides = [], []
    for k, kind in enumerate(spec.kinds):
        if kind == 1:
            ptrs.append(spec.perms[k].ctypes.data)
            strides.append(0)
            continue
        m = next(it)
        ptrs.append(m.data_ptr())
        strides.append(m.shape[-1] * m.shape[-1] if m.dim() == 3 else 0)
    spec_strides = np.asarray(strides or [0], dtype=np.int64)
    return [
        _ptr(spec.kinds, ctypes.c_int32),
        _ptr(spec.wire_ptr, ctypes.c_int64),
        _ptr(spec.wires, ctypes.c_int64),
        (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs),
        _ptr(spec_strides, ctypes.c_int64),
        spec_strides,  # kept alive by the caller's list
    ]


class _NativeCircuit(torch.autograd.Function):
    """``ψ -> U_m ⋯ U_1 ψ`` natively; backward: the adjoint sweep, natively."""

    @staticmethod
    def forward(ctx: Any, spec: _Spec, x: torch.Tensor, *mats: torch.Tensor) -> torch.Tensor:
        out = x.detach().resolve_conj().contiguous().clone()
        scratch = torch.empty_like(out)
        lib = _library()
        assert lib is not None
        args = _gate_args(spec, mats)
        rc = getattr(lib, f"qsem_forward_{_SUFFIX[out.dtype]}")(
            out.data_ptr(),
            scratch.data_ptr(),
            out.shape[0],
            len(spec.dims),
            _ptr(spec.dims, ctypes.c_int64),
            len(spec.kinds),
            *args[:5],
            torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError("qsem native kernel: register of more than 64 wires")
        ctx.spec = spec
        ctx.save_for_backward(out, *mats)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        out, *mats = ctx.saved_tensors
        spec: _Spec = ctx.spec
        psi = out.clone()
        lam = grad.resolve_conj().contiguous().clone()
        scratch = torch.empty_like(psi)
        grads = [
            torch.zeros_like(m) if ctx.needs_input_grad[2 + i] else None
            for i, m in enumerate(mats)
        ]
        gptr, gsize, it = [], [], iter(grads)
        for kind in spec.kinds:
            g = None if kind == 1 else next(it)
            gptr.append(None if g is None else g.data_ptr())
            gsize.append(0 if g is None else g.numel())
        sizes = np.asarray(gsize or [0], dtype=np.int64)
        lib = _library()
        assert lib is not None
        args = _gate_args(spec, tuple(mats))
        getattr(lib, f"qsem_adjoint_{_SUFFIX[psi.dtype]}")(
            psi.data_ptr(),
            lam.data_ptr(),
            scratch.data_ptr(),
            psi.shape[0],
            len(spec.dims),
            _ptr(spec.dims, ctypes.c_int64),
            len(spec.kinds),
            *args[:5],
            (ctypes.c_void_p * max(1, len(gptr)))(*gptr),
            _ptr(sizes, ctypes.c_int64),
            torch.get_num_threads(),
        )
        return (None, lam if ctx.needs_input_grad[1] else None, *grads)


def run_native(plan: Plan, s: SimState, ctx: Context) -> SimState:
    """Every step of ``plan`` on ``s`` in one native call (see :func:`applies`)."""
    if ctx.rotations is None:
        import dataclasses

        ctx = dataclasses.replace(ctx, rotations=rotation_table(plan, ctx))
    rows = int(s.tensor.shape[0])
    spec, mats = _gates(plan, ctx, rows)
    out = _NativeCircuit.apply(spec, s.tensor, *[m for m in mats if m is not None])
    plan.native_runs += 1
    return s.evolved(out)


__all__ = ["applies", "available", "enabled_by_default", "run_native"]
