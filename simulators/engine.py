"""The torch simulation engine: batched statevector and density-matrix simulation.

Fully differentiable by autograd; complex64 by default, complex128 on request;
any torch device. The class is thin: it validates every input once, compiles a
cached plan (:mod:`qsem.simulators.plan_compile`) and runs it
(:mod:`qsem.simulators.plan_exec`): each step takes a state that says what it holds
and returns the next, calling the pure kernels of :mod:`qsem.simulators.kernels`.

>>> import torch
>>> from qsem.circuits import Circuit, H, CNOT
>>> from qsem.simulators import TorchSimulator, probs
>>> bell = Circuit.qubits(2).add(H(wires=0), CNOT(wires=[0, 1]))
>>> probs(TorchSimulator().run(bell))
tensor([0.5000, 0.0000, 0.0000, 0.5000])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.parameters import Parameter, check_param
from qsem.threads import one_thread_backward, small_state_threads

from .kernels import Workspace
from .memory import check_fits
from .native import applies as native_applies
from .native import run_native, setting_from_env, wanted
from .plan_compile import compile_plan
from .plan_exec import CHUNK_BYTES, MIN_CHUNKED_BYTES, MIN_CHUNKS, Plan, run_plan
from .plan_state import Context, SimState
from .state import Mode, State, check_dtype, check_mode, initial_state


def check_device(device: Any) -> torch.device:
    """Validate a torch device (CUDA only where it is available)."""
    try:
        dev = torch.device(device) if device is not None else torch.device("cpu")
    except (RuntimeError, TypeError) as exc:
        raise arg_error("device", f"not a torch device: {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise arg_error("device", f"{device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise arg_error(
            "device", f"{device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if dev.type != "cpu":
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, NotImplementedError, AssertionError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise arg_error(
                "device", f"torch cannot allocate on {device!r} here ({first[:120]})"
            ) from None
    return dev


def batch_size_of(circuit: Circuit, params: Mapping[str, Any] | None) -> int | None:
    """Validate bound values and return their common batch size (``None``: unbatched).

    Scalars bind numbers or tensors ``()``/``(B,)``; parameter vectors of length K bind
    ``(K,)``/``(B, K)``. All bound tensors are checked for NaN/inf in one pass.
    """
    sizes: dict[int, str] = {}
    for op in circuit.ops:
        b = op.batch_size()
        if b is not None:
            sizes.setdefault(b, f"a parameter of {op.name} on wires {list(op.wires)}")
    lengths = circuit.parameter_lengths
    finite_checks = []
    for name, value in (params or {}).items():
        where = f"params['{name}']"
        k = lengths.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
            raise arg_error(
                where,
                f"expected a number or a real tensor, got {type(value).__name__}",
                QsemTypeError,
            )
        if not isinstance(value, torch.Tensor):
            check_param(value, where)
            if k is not None:
                raise arg_error(
                    where, f"parameter vector of length {k} needs a tensor (K,) or (B, K)"
                )
            continue
        if value.is_complex():
            raise arg_error(where, "parameters must be real, got a complex tensor")
        if value.dtype == torch.bool:
            raise arg_error(where, "expected a real tensor, got a bool tensor", QsemTypeError)
        if value.numel() == 0:
            raise arg_error(where, f"needs at least one value, got shape {tuple(value.shape)}")
        if k is None:
            if value.dim() > 1:
                raise arg_error(
                    where, f"tensor must have shape () or (B,), got {tuple(value.shape)}"
                )
            batched = value.dim() == 1
        else:
            if value.dim() not in (1, 2) or value.shape[-1] != k:
                raise arg_error(
                    where,
                    f"ParameterVector '{name}' has {k} elements: expected shape ({k},) or "
                    f"(B, {k}), got {tuple(value.shape)}",
                )
            batched = value.dim() == 2
        if batched:
            sizes.setdefault(int(value.shape[0]), where)
        finite_checks.append(value.detach().reshape(-1))
    if finite_checks and not bool(
        torch.isfinite(torch.cat([t.to(torch.float64) for t in finite_checks])).all()
    ):
        for n, v in (params or {}).items():
            if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v.detach()).all()):
                where = ""
                if v.dim() >= 1:
                    rows = (~torch.isfinite(v.detach())).reshape(v.shape[0], -1).any(-1)
                    where = (
                        f" at batch index(es) {rows.nonzero().flatten().tolist()}"
                        if v.dim() == (2 if lengths.get(n) else 1)
                        else ""
                    )
                raise arg_error(f"params['{n}']", f"must be finite, got NaN or inf{where}")
    if len(sizes) > 1:
        desc = ", ".join(f"{b} ({where})" for b, where in sizes.items())
        raise arg_error("params", f"batch sizes differ: {desc}")
    return next(iter(sizes)) if sizes else None


#: Plans kept in the process-wide cache shared by every :class:`TorchSimulator`.
SHARED_PLANS = 32
_SHARED: OrderedDict[Any, Plan] = OrderedDict()


def _remember(cache: OrderedDict[Any, Plan], key: Any, plan: Plan, size: int) -> None:
    cache[key] = plan
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)


class TorchSimulator:
    """Simulate circuits on torch tensors.

    Args:
        mode: ``"statevector"`` or ``"density_matrix"`` (needed for channels).
        dtype: ``torch.complex64`` (default) or ``torch.complex128``.
        device: any torch device, CUDA included.
        max_block_dim: largest Kronecker block of fused single-wire gates.
        max_memory: bytes a simulation may use (default: what the device has free).
        dm_method: density-matrix representation. ``"auto"`` starts a pure initial
            state as the factored ``ρ = Σ_k |ψ_k><ψ_k|`` (rank 1; unitary gates cost
            what a statevector costs, each Kraus channel multiplies the rank) and
            turns dense once the rank would exceed ``D``; ``"dense"`` always
            evolves the ``D × D`` matrix. Both are exact.
        native: run a plan of unitary steps on a pure state in one call of the native
            kernel, with its adjoint backward (:mod:`~qsem.simulators.native`; CPU).
            ``None`` (default): for states of at most ``NATIVE_MAX_AMPLITUDES`` amplitudes
            (where it is faster), unless the environment variable ``QSEM_NATIVE``
            (``auto``/``1``/``0``) says otherwise; ``True``: at any size; ``False``:
            always the torch path. Where the kernel is not built, or the circuit or
            device does not suit it, the torch path runs.
    """

    def __init__(
        self,
        mode: Mode | str = "statevector",
        *,
        dtype: torch.dtype = torch.complex64,
        device: Any = None,
        max_block_dim: int = 16,
        max_memory: int | None = None,
        dm_method: str = "auto",
        native: bool | None = None,
    ) -> None:
        self.mode: Mode = check_mode(mode)
        self.dtype = check_dtype(dtype)
        self.device = check_device(device)
        if not isinstance(max_block_dim, int) or max_block_dim < 2:
            raise arg_error("max_block_dim", f"must be an integer >= 2, got {max_block_dim!r}")
        self.max_block_dim = max_block_dim
        if max_memory is not None and (
            isinstance(max_memory, bool) or not isinstance(max_memory, int) or max_memory <= 0
        ):
            raise arg_error("max_memory", f"must be a positive number of bytes, got {max_memory!r}")
        self.max_memory = max_memory
        if dm_method not in ("auto", "dense"):
            raise arg_error("dm_method", f"must be 'auto' or 'dense', got {dm_method!r}")
        self.dm_method = dm_method
        if native is not None and not isinstance(native, bool):
            raise arg_error("native", f"must be True, False or None, got {native!r}")
        self.native = setting_from_env() if native is None else native
        self._plans: OrderedDict[Any, Plan] = OrderedDict()

    def __repr__(self) -> str:
        return f"TorchSimulator(mode={self.mode!r}, dtype={self.dtype}, device={self.device})"

    def plan(self, circuit: Circuit) -> Plan:
        """The cached execution plan of ``circuit``'s structure.

        Plans are shared between simulators (a process-wide cache of the last
        ``SHARED_PLANS`` structures), so a layer or backend that makes a fresh
        simulator per call does not compile the plan again.
        """
        key = (circuit.structure_key(), self.mode, self.max_block_dim)
        plan = self._plans.get(key)
        if plan is None:
            plan = _SHARED.get(key)
            if plan is None:
                plan = compile_plan(circuit, self.mode, max_block_dim=self.max_block_dim)
            _remember(_SHARED, key, plan, SHARED_PLANS)
            _remember(self._plans, key, plan, 128)
        else:
            self._plans.move_to_end(key)
        return plan

    def run(
        self,
        circuit: Circuit,
        params: Mapping[str, Any] | None = None,
        *,
        initial_state: Any = None,
    ) -> State:
        """Simulate ``circuit`` with symbolic parameters bound from ``params``.

        ``initial_state``: ``None`` for ``|0...0>``, a list of levels per wire, a
        statevector ``(D,)``/``(B, D)`` or (density-matrix mode) ``(D, D)``/``(B, D, D)``.
        Every input is validated here, once; the plan's steps trust them.
        """
        batch = self._check_inputs(circuit, params, initial_state)
        check_fits(circuit.dims, self.mode, batch or 1, self.dtype, self.device, self.max_memory)
        plan = self.plan(circuit)
        factored = (
            self.mode == "density_matrix"
            and self.dm_method == "auto"
            and _is_pure_input(initial_state, circuit.dim)
        )
        start_mode: Mode = "statevector" if factored else self.mode
        x, out_batch = initial_state_tensor(
            initial_state, circuit, start_mode, batch, self.dtype, self.device
        )
        basis = None
        if start_mode != "density_matrix" and (
            initial_state is None or isinstance(initial_state, (list, tuple))
        ):
            basis = (0,) * len(circuit.dims) if initial_state is None else tuple(initial_state)
        start = SimState(x, "factored" if factored else self.mode, basis=basis)
        needs_grad = _needs_grad(circuit, params, initial_state)
        ctx = Context(
            dims=circuit.dims,
            ops=circuit.ops,
            bindings=params,
            dtype=self.dtype,
            real_dtype=torch.float32 if self.dtype == torch.complex64 else torch.float64,
            device=self.device,
            work=None if needs_grad else Workspace(),
            native=wanted(self.native, x.numel()),
        )
        nbytes = x.numel() * x.element_size()
        if factored and circuit.has_channels:  # may turn dense: D times larger
            nbytes *= circuit.dim
        with small_state_threads(nbytes):
            if native_applies(plan, start, ctx):
                end = run_native(plan, start, ctx)
            else:
                end = run_plan(plan, start, ctx, allow_chunks=not needs_grad and not factored)
        one_thread_backward(end.tensor, nbytes)
        return _result(end, circuit, out_batch is not None)

    def _check_inputs(
        self, circuit: Circuit, params: Mapping[str, Any] | None, initial_state: Any
    ) -> int | None:
        """Validate the circuit and bindings; return the batch size (``None``: unbatched)."""
        if not isinstance(circuit, Circuit):
            raise arg_error(
                "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
            )
        if params is not None and not isinstance(params, Mapping):
            raise arg_error(
                "params",
                f"expected a mapping name -> value, got {type(params).__name__}",
                QsemTypeError,
            )
        missing = [p for p in circuit.parameters if p not in (params or {})]
        if missing:
            raise arg_error("params", f"no value for symbolic parameter(s) {missing}")
        extra = sorted(set(params or {}) - set(circuit.parameters))
        if extra:
            raise arg_error("params", f"the circuit has no parameter(s) named {extra}")
        batch = batch_size_of(circuit, params)
        if isinstance(initial_state, torch.Tensor) and initial_state.dim() in (2, 3):
            lead = initial_state.shape[0]
            looks_batched = initial_state.dim() == 3 or (
                initial_state.dim() == 2 and (self.mode == "statevector" or lead != circuit.dim)
            )
            if looks_batched and batch is None:
                batch = int(lead)
        return batch


def _needs_grad(circuit: Circuit, params: Mapping[str, Any] | None, initial_state: Any) -> bool:
    """True when autograd is on and a bound value, gate tensor or the start state needs it."""
    tensors = [v for v in (params or {}).values() if isinstance(v, torch.Tensor)]
    tensors += [p for op in circuit.ops for p in op.params if isinstance(p, torch.Tensor)]
    if isinstance(initial_state, torch.Tensor):
        tensors.append(initial_state)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _result(end: SimState, circuit: Circuit, batched: bool) -> State:
    """The user's :class:`State` from the plan's final state (its representation kept)."""
    x = end.tensor
    if end.mode == "factored":
        factor = x.reshape(-1, end.rank, circuit.dim)
        weights = None if end.weights is None else end.weights.reshape(-1, end.rank)
        return State(None, circuit.dims, "density_matrix", batched, factor=factor, weights=weights)
    if end.mode == "density_matrix":
        x = x.reshape(x.shape[0], circuit.dim, circuit.dim)
    return State(x, circuit.dims, end.mode, batched)


def _is_pure_input(value: Any, dim: int) -> bool:
    """True for ``None``, a list of levels, or a statevector tensor ``(D,)``/``(B, D)``."""
    if value is None or isinstance(value, (list, tuple)):
        return True
    if isinstance(value, torch.Tensor):
        return value.dim() == 1 or (value.dim() == 2 and value.shape[0] != dim)
    return False


def initial_state_tensor(
    value: Any, circuit: Circuit, mode: Mode, batch: int | None, dtype: torch.dtype, device: Any
) -> tuple[torch.Tensor, int | None]:
    """Flat initial tensor ``(B, D)`` or ``(B, D*D)`` and its batch size."""
    t, out_batch = initial_state(value, circuit.dims, mode, batch, dtype=dtype, device=device)
    return t.reshape(t.shape[0], -1), out_batch


def simulate(
    circuit: Circuit,
    params: Mapping[str, Any] | None = None,
    *,
    mode: Mode | str | None = None,
    dtype: torch.dtype = torch.complex64,
    device: Any = None,
    initial_state: Any = None,
) -> State:
    """One-call simulation; density-matrix mode is chosen when the circuit has channels.

    >>> from qsem.circuits import Circuit, TShift
    >>> simulate(Circuit.qutrits(1).add(TShift(wires=0))).vector
    tensor([0.+0.j, 1.+0.j, 0.+0.j])
    """
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    if mode is None:
        mode = "density_matrix" if circuit.has_channels else "statevector"
    return TorchSimulator(mode, dtype=dtype, device=device).run(
        circuit, params, initial_state=initial_state
    )


__all__ = [
    "CHUNK_BYTES",
    "MIN_CHUNKED_BYTES",
    "MIN_CHUNKS",
    "Parameter",
    "TorchSimulator",
    "batch_size_of",
    "check_device",
    "simulate",
]
