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
the plan's rotation table) and the start state. While the states before each gate hold at
most :data:`SAVE_MAX_AMPLITUDES` amplitudes, the forward pass keeps them and the backward
reads ``ψ_{k-1}`` instead of uncomputing it (a third less arithmetic); beyond that it
uncomputes, with a few states of memory whatever the depth. A backward that is itself
to be differentiated (``create_graph=True``, e.g. a Hessian) reruns the gates by torch
operations and lets autograd build its graph. The gates are unitary (the
library's gates are, and ``Unitary`` checks its matrix), which the uncomputation
``ψ_{k-1} = U_k^† ψ_k`` relies on.

The engine uses it on CPU where it applies (:func:`applies`) and, by default, for states
of at most :data:`NATIVE_MAX_AMPLITUDES` amplitudes (where it was measured faster);
``TorchSimulator(native=True)`` uses it at any size, ``native=False`` never; the
environment variable ``QSEM_NATIVE`` (``auto``, ``1``, ``0``) sets the default. When the
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
from qsem.errors import arg_error

from . import kernels
from .plan_exec import FusedStep, GateStep, PermutationStep, Plan, rotation_table
from .plan_state import Context, SimState

#: the calling convention this module speaks (``qsem_native_version()`` of the library)
ABI_VERSION = 2


@cache
def _library() -> ctypes.CDLL | None:
    """The built kernel, or ``None`` where the package was installed without it."""
    spec = importlib.util.find_spec("qsem.simulators._qsem_native")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    lib.qsem_native_version.restype = ctypes.c_int
    if lib.qsem_native_version() != ABI_VERSION:  # a stale build: reinstall to rebuild it
        return None
    # every array goes as its address (an int): no ctypes object per call
    vp = ctypes.c_void_p
    common = [ctypes.c_int64, ctypes.c_int, vp, ctypes.c_int]
    gates = [vp, vp, vp, vp, vp]
    for suf in ("c64", "c128"):
        fwd = getattr(lib, f"qsem_forward_{suf}")
        fwd.argtypes = [vp, vp, *common, *gates, vp, ctypes.c_int]
        fwd.restype = ctypes.c_int
        adj = getattr(lib, f"qsem_adjoint_{suf}")
        adj.argtypes = [vp, vp, vp, *common, *gates, vp, vp, vp, ctypes.c_int]
        adj.restype = ctypes.c_int
    return lib


def available() -> bool:
    """True when the native kernel was built and loads."""
    return _library() is not None


#: Under the default setting (``native=None``) the kernel runs a state of at most this
#: many amplitudes (all batch rows together); above it the torch path, whose Kronecker
#: blocks make fewer passes over a large state, was faster (docs/benchmarks.md, round seven).
NATIVE_MAX_AMPLITUDES = 8192


#: With a gradient to come, the forward pass keeps the state before each matrix gate
#: (the backward reads ψ_{k-1} instead of uncomputing it) while they hold at most this many
#: amplitudes in all; beyond it the backward uncomputes, with a few states of memory.
SAVE_MAX_AMPLITUDES = 1 << 22


def setting_from_env() -> bool | None:
    """``QSEM_NATIVE``: unset or ``auto`` -> ``None`` (by size), ``1`` -> on, ``0`` -> off."""
    value = os.environ.get("QSEM_NATIVE", "auto")
    if value not in ("auto", "0", "1"):
        raise arg_error("QSEM_NATIVE", f"expected 'auto', '0' or '1', got {value!r}")
    return None if value == "auto" else value == "1"


def wanted(setting: bool | None, amplitudes: int) -> bool:
    """Whether a run of ``amplitudes`` (rows x D) may use the kernel under ``setting``."""
    return setting if setting is not None else amplitudes <= NATIVE_MAX_AMPLITUDES


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
    """A plan's gates in the kernel's layout; built once per plan and dtype.

    ``sources``: what each run evaluates, in order: ``("class", step, k)`` (the stacked
    per-wire products ``(..., W, d, d)`` of a fused step's dimension class) or
    ``("gate", step)`` (a multi-wire gate's matrix). ``gates``: per matrix gate of the
    kernel, ``(source, element offset in a row's block, dk)``. The integer arrays are
    CPU tensors, their addresses read at each call (a copied plan, e.g. by
    ``copy.deepcopy`` of a model holding a simulator, then points at its own copies).
    """

    dims: torch.Tensor
    kinds: torch.Tensor
    wire_ptr: torch.Tensor
    wires: torch.Tensor
    perms: dict[int, torch.Tensor]  # gate index -> gather indices (kind 1)
    sources: list[tuple[Any, ...]]
    gates: list[tuple[int, int, int]]
    #: (rows, which sources are per row) -> batch strides and extents per gate
    layouts: dict[Any, tuple[torch.Tensor, torch.Tensor]]

    def args(self) -> list[Any]:
        """The register and gate layout as the kernel takes them (addresses)."""
        return [
            self.dims.data_ptr(),
            len(self.kinds),
            self.kinds.data_ptr(),
            self.wire_ptr.data_ptr(),
            self.wires.data_ptr(),
        ]


def _build_spec(plan: Plan, ctx: Context) -> _Spec:
    kinds: list[int] = []
    wire_ptr: list[int] = [0]
    flat: list[int] = []
    perms: dict[int, torch.Tensor] = {}
    sources: list[tuple[Any, ...]] = []
    gates: list[tuple[int, int, int]] = []
    for i, step in enumerate(plan.steps):
        if isinstance(step, FusedStep):
            for k, cls in enumerate(step.classes):
                sources.append(("class", i, k))
                for pos, w in enumerate(cls.wires):
                    kinds.append(0)
                    flat.append(w)
                    wire_ptr.append(len(flat))
                    gates.append((len(sources) - 1, pos * cls.d * cls.d, cls.d))
        elif isinstance(step, GateStep):
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            sources.append(("gate", i))
            kinds.append(0)
            flat.extend(gate.wires)
            wire_ptr.append(len(flat))
            dk = int(np.prod([ctx.dims[w] for w in gate.wires]))
            gates.append((len(sources) - 1, 0, dk))
        else:
            assert isinstance(step, PermutationStep)
            perms[len(kinds)] = torch.as_tensor(np.asarray(step.src, dtype=np.int64)).clone()
            kinds.append(1)
            wire_ptr.append(len(flat))
    return _Spec(
        torch.tensor(ctx.dims, dtype=torch.int64),
        torch.tensor(kinds, dtype=torch.int32),
        torch.tensor(wire_ptr, dtype=torch.int64),
        torch.tensor(flat or [0], dtype=torch.int64),
        perms,
        sources,
        gates,
        {},
    )


def _spec(plan: Plan, ctx: Context) -> _Spec:
    key = ("native", ctx.dtype)
    if key not in plan._parts:
        plan._parts[key] = _build_spec(plan, ctx)
    spec: _Spec = plan._parts[key]
    return spec


def _sources(plan: Plan, spec: _Spec, ctx: Context, rows: int) -> list[torch.Tensor]:
    """Every source's matrices, contiguous: shared ``(..., d, d)`` or per row ``(rows, ...)``."""
    out = []
    for src in spec.sources:
        step = plan.steps[src[1]]
        if src[0] == "class":
            assert isinstance(step, FusedStep)
            m = step._class_matrices(step.classes[src[2]], ctx)
            per_row_dims = 4
        else:
            assert isinstance(step, GateStep)
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            m = ctx.matrix(gate)
            per_row_dims = 3
        if m.dim() == per_row_dims and (m.shape[0] == 1 or m.stride(0) == 0):
            m = m[0]
        if m.dim() == per_row_dims and m.shape[0] != rows:
            raise ValueError(f"a gate batch of {m.shape[0]} rows on a state of {rows}")
        out.append(m.to(ctx.dtype).resolve_conj().contiguous())
    return out


def _layout(spec: _Spec, mats: tuple[torch.Tensor, ...], rows: int) -> tuple[int, int]:
    """Addresses of the per-gate batch strides (elements; 0: shared) and extents."""
    per_row = tuple(
        m.dim() == (4 if src[0] == "class" else 3)
        for m, src in zip(mats, spec.sources, strict=True)
    )
    key = (rows, per_row)
    if key not in spec.layouts:
        n = max(1, len(spec.kinds))
        strides = torch.zeros(n, dtype=torch.int64)
        extents = torch.zeros(n, dtype=torch.int64)
        it = iter(spec.gates)
        for k, kind in enumerate(spec.kinds.tolist()):
            if kind == 0:
                src, _, dk = next(it)
                stride = mats[src].numel() // rows if per_row[src] else 0
                strides[k] = stride
                extents[k] = (rows - 1) * stride + dk * dk
        spec.layouts[key] = (strides, extents)
    strides, extents = spec.layouts[key]
    return strides.data_ptr(), extents.data_ptr()


def _pointers(spec: _Spec, what: list[torch.Tensor | None], perms: bool) -> Any:
    """Per kernel gate: its matrix's address in ``what`` (a tensor per source, or
    ``None``: no address), and, with ``perms``, the permutations' gather indices."""
    n = len(spec.kinds)
    ptrs: list[int | None] = [None] * n
    it = iter(spec.gates)
    for k, kind in enumerate(spec.kinds.tolist()):
        if kind == 1:
            ptrs[k] = spec.perms[k].data_ptr() if perms else None
            continue
        src, offset, _ = next(it)
        t = what[src]
        if t is not None:
            ptrs[k] = t.data_ptr() + offset * t.element_size()
    return (ctypes.c_void_p * max(1, n))(*ptrs)


class _NativeCircuit(torch.autograd.Function):
    """``ψ -> U_m ⋯ U_1 ψ`` natively; backward: the adjoint sweep, natively."""

    @staticmethod
    def forward(ctx: Any, spec: _Spec, x: torch.Tensor, *mats: torch.Tensor) -> torch.Tensor:
        out = x.detach().resolve_conj().contiguous().clone()
        scratch = torch.empty_like(out)
        rows = int(out.shape[0])
        ptrs = _pointers(spec, list(mats), True)
        strides, _ = _layout(spec, mats, rows)
        n_mat = len(spec.gates)
        ctx.saves = None
        if any(ctx.needs_input_grad[1:]) and n_mat * out.numel() <= SAVE_MAX_AMPLITUDES:
            ctx.saves = torch.empty((n_mat, *out.shape), dtype=out.dtype)
        lib = _library()
        assert lib is not None
        rc = getattr(lib, f"qsem_forward_{_SUFFIX[out.dtype]}")(
            out.data_ptr(),
            scratch.data_ptr(),
            rows,
            len(spec.dims),
            *spec.args(),
            ctypes.addressof(ptrs),
            strides,
            None if ctx.saves is None else ctx.saves.data_ptr(),
            torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError("qsem native kernel: register of more than 64 wires")
        ctx.spec = spec
        ctx.save_for_backward(x, out, *mats)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, out, *mats = ctx.saved_tensors
        spec: _Spec = ctx.spec
        if torch.is_grad_enabled():  # create_graph: this backward will be differentiated
            return (None, *_differentiable_vjp(spec, ctx.needs_input_grad[1:], grad, x, mats))
        saves = ctx.saves
        psi = out.clone() if saves is None else out  # read-only with saves
        lam = grad.resolve_conj().contiguous().clone()
        scratch = torch.empty_like(psi)
        rows = int(psi.shape[0])
        grads = [
            torch.zeros_like(m) if ctx.needs_input_grad[2 + i] else None for i, m in enumerate(mats)
        ]
        ptrs = _pointers(spec, list(mats), True)
        gptrs = _pointers(spec, grads, False)
        strides, extents = _layout(spec, tuple(mats), rows)
        lib = _library()
        assert lib is not None
        getattr(lib, f"qsem_adjoint_{_SUFFIX[psi.dtype]}")(
            psi.data_ptr(),
            lam.data_ptr(),
            scratch.data_ptr(),
            rows,
            len(spec.dims),
            *spec.args(),
            ctypes.addressof(ptrs),
            strides,
            ctypes.addressof(gptrs),
            extents,
            None if saves is None else saves.data_ptr(),
            torch.get_num_threads(),
        )
        return (None, lam if ctx.needs_input_grad[1] else None, *grads)


def _torch_circuit(spec: _Spec, x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """The kernel's gates applied by torch operations (differentiable to any order)."""
    dims = tuple(spec.dims.tolist())
    wires, wire_ptr = spec.wires.tolist(), spec.wire_ptr.tolist()
    it = iter(spec.gates)
    for k, kind in enumerate(spec.kinds.tolist()):
        if kind == 1:
            x = x[:, spec.perms[k]]
            continue
        src, offset, dk = next(it)
        m = mats[src]
        if spec.sources[src][0] == "class":  # a class's stack (..., W, d, d): wire at offset
            m = m[..., offset // (dk * dk), :, :]
        x = kernels.apply_matrix(x, m, dims, wires[wire_ptr[k] : wire_ptr[k + 1]])
    return x


def _differentiable_vjp(
    spec: _Spec,
    needs: tuple[bool, ...],
    grad: torch.Tensor,
    x: torch.Tensor,
    mats: list[torch.Tensor],
) -> list[torch.Tensor | None]:
    """The backward as a graph (``create_graph=True``, e.g. a Hessian): the circuit is run
    again by torch operations and differentiated by autograd."""
    inputs = [x, *mats]
    with torch.enable_grad():
        y = _torch_circuit(spec, x, mats)
        wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
        got = iter(torch.autograd.grad(y, wanted, grad, create_graph=True, allow_unused=True))
    return [next(got) if need else None for need in needs]


def run_native(plan: Plan, s: SimState, ctx: Context) -> SimState:
    """Every step of ``plan`` on ``s`` in one native call (see :func:`applies`)."""
    if ctx.rotations is None:
        import dataclasses

        ctx = dataclasses.replace(ctx, rotations=rotation_table(plan, ctx))
    rows = int(s.tensor.shape[0])
    spec = _spec(plan, ctx)
    out = _NativeCircuit.apply(spec, s.tensor, *_sources(plan, spec, ctx, rows))
    plan.native_runs += 1
    return s.evolved(out)


__all__ = [
    "NATIVE_MAX_AMPLITUDES",
    "SAVE_MAX_AMPLITUDES",
    "applies",
    "available",
    "run_native",
    "setting_from_env",
    "wanted",
]
