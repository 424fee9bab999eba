"""Adjoint differentiation of expectation values (statevector, any wire dimensions).

The method of Jones & Gacon (arXiv 2009.02823), generalised to qudits and to
blocks of gates. For ``|ψ> = U_N ⋯ U_1 |ψ_0>`` and the loss
``L = Σ_b Σ_k g_{bk} <ψ_b|O_k|ψ_b>`` (``g`` the incoming gradient of the
expectation values; ``g = e_k`` gives one row of the Jacobian) put
``λ_N = O_b ψ_N`` with ``O_b = Σ_k g_{bk} O_k`` (Hermitian) and walk back:

.. math::
    ψ_{j-1} = U_j^† ψ_j, \\qquad
    \\frac{∂L}{∂θ} \\mathrel{+}= 2\\,\\mathrm{Re}\\,⟨λ_j| ∂_θ U_j |ψ_{j-1}⟩
        = 2\\,\\mathrm{Re} \\sum_{ac} (∂_θ U_j)_{ac} M^{(j)}_{ac}, \\qquad
    λ_{j-1} = U_j^† λ_j,

with the local matrix ``M^{(j)}_{ac} = Σ_rest conj(λ_j[a, rest]) ψ_{j-1}[c, rest]`` on
the wires of ``U_j``. For a gate ``U(θ) = exp(-iθG) U(0)`` this is the familiar
``2 Re <λ_j| -iG |ψ_j>``; writing it through ``M`` serves every gate of the library
(the derivative of each gate's matrix is the one its definition gives, generator
or formula), and the engine's fused blocks (a Kronecker product of per-wire
products of gates) are one ``U_j`` each. The sums over ``∂_θ U_j`` are taken by
autograd on the small local matrices only: a surrogate ``S = Σ_j 2 Re Σ U_j ∘ M^{(j)}``
(``M`` constant) has ``∂S/∂θ = ∂L/∂θ`` for every parameter, symbolic (bound to a
tensor) or concrete, batched or shared, inputs as well as weights.

Cost: one forward pass, then per step two inverse applications and one local
contraction (≈ 3 forward passes). Memory: the final state, ``λ`` and the
temporaries of one step — a few states, independent of the depth (autograd keeps
every intermediate state instead).

>>> import torch
>>> from qsem.circuits import Circuit, RY, CNOT, PauliString
>>> c = Circuit.qubits(2).add(RY(torch.tensor(0.3, requires_grad=True), wires=0),
...                           CNOT(wires=[0, 1]))
>>> t = c.ops[0].params[0]
>>> e = adjoint_expval(c, None, [PauliString("Z", wires=[1])])
>>> e.backward(); round(float(t.grad), 6) == round(-float(torch.sin(t.detach())), 6)
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.gates import Unitary
from qsem.circuits.observables import Observable, as_observables
from qsem.circuits.operations import Gate, Operation
from qsem.circuits.parameters import Parameter

from .adjoint_sweep import apply_observables, backward_sweep, local_outer
from .engine import TorchSimulator
from .plan_exec import FusedStep, GateStep, Plan
from .plan_state import Context


def _differentiable(op: Operation, bindings: Mapping[str, Any]) -> bool:
    for p in op.params:
        if isinstance(p, Parameter):
            v = bindings.get(p.name)
            if isinstance(v, torch.Tensor) and v.requires_grad:
                return True
        elif isinstance(p, torch.Tensor) and p.requires_grad:
            return True
    return False


def _step_ops(step: FusedStep) -> list[int]:
    return [i for cls in step.classes for lvl in cls.levels for g in lvl.groups for i in g.ops]


class _Spec:
    """What the autograd function needs besides the tensors: circuit, names, simulator."""

    def __init__(
        self,
        circuit: Circuit,
        names: list[str],
        fixed: dict[str, Any],
        op_slots: list[tuple[int, int]],
        observables: list[Observable],
        sim: TorchSimulator,
        initial_state: Any,
    ) -> None:
        self.circuit = circuit
        self.names = names  # params bound to tensors, in the order of the tensor inputs
        self.fixed = fixed  # params bound to numbers
        self.op_slots = op_slots  # (op index, param index) of concrete tensor params
        self.observables = observables
        self.sim = sim
        self.initial_state = initial_state
        self.batched = False

    def basis(self) -> tuple[int, ...] | None:
        """The initial state's levels when it is a basis state (``None``: ``|0…0>``)."""
        start = self.initial_state
        if start is None:
            return (0,) * len(self.circuit.dims)
        if isinstance(start, (list, tuple)):
            return tuple(int(v) for v in start)
        return None

    def bind(self, tensors: Sequence[torch.Tensor]) -> tuple[dict[str, Any], list[Operation]]:
        k = len(self.names)
        bindings: dict[str, Any] = dict(self.fixed)
        bindings.update(zip(self.names, tensors[:k], strict=True))
        ops = list(self.circuit.ops)
        for (i, j), t in zip(self.op_slots, tensors[k:], strict=True):
            params = list(ops[i].params)
            params[j] = t
            ops[i] = ops[i].with_params(params)
        return bindings, ops

    def context(self, bindings: Mapping[str, Any], ops: list[Operation]) -> Context:
        sim = self.sim
        return Context(
            dims=self.circuit.dims,
            ops=ops,
            bindings=bindings,
            dtype=sim.dtype,
            real_dtype=torch.float32 if sim.dtype == torch.complex64 else torch.float64,
            device=sim.device,
        )


def _forward(spec: _Spec, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectation values and the final state ``(B, D)``, without autograd."""
    from .measure import expval

    bindings, _ = spec.bind([t.detach() for t in tensors])
    with torch.no_grad():  # the circuit's own tensor parameters: no graph is built
        state = spec.sim.run(spec.circuit, bindings, initial_state=spec.initial_state)
        out = expval(state, spec.observables)
    spec.batched = state.batched
    return out, state.tensor


class AdjointExpval(torch.autograd.Function):
    """``<O_k>`` ``(B, K)`` with a backward pass by the adjoint method (see the module doc)."""

    @staticmethod
    def forward(ctx: Any, spec: _Spec, *tensors: torch.Tensor) -> torch.Tensor:
        out, psi = _forward(spec, tensors)
        ctx.spec = spec
        ctx.save_for_backward(psi, *tensors)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        spec: _Spec = ctx.spec
        psi, *tensors = ctx.saved_tensors
        grads = adjoint_vjp(spec, psi, grad if spec.batched else grad[None], tensors)
        return (None, *grads)


def adjoint_vjp(
    spec: _Spec, psi: torch.Tensor, grad: torch.Tensor, tensors: Sequence[torch.Tensor]
) -> list[torch.Tensor | None]:
    """Gradients of ``Σ grad ∘ <O>`` with respect to ``tensors`` (``None`` where unused)."""
    sim = spec.sim
    plan = sim.plan(spec.circuit)
    need = [t.requires_grad for t in tensors]
    with torch.no_grad():
        bindings, ops = spec.bind([t.detach() for t in tensors])
        ctx = spec.context(bindings, ops)
        flags = {spec.names[i]: True for i in range(len(spec.names)) if need[i]}
        slot_ops = {
            spec.op_slots[i][0] for i in range(len(spec.op_slots)) if need[len(spec.names) + i]
        }
        wanted = []
        for step in plan.steps:
            idx = (
                _step_ops(step)
                if isinstance(step, FusedStep)
                else [step.index]
                if isinstance(step, GateStep)
                else []
            )
            wanted.append(any(i in slot_ops or _uses(ops[i], flags) for i in idx))
        weights = grad.to(ctx.real_dtype).reshape(psi.shape[0] if grad.shape[0] != 1 else 1, -1)
        weights = weights.expand(psi.shape[0], weights.shape[-1])
        lam = apply_observables(psi, spec.observables, weights, spec.circuit.dims)
        records = backward_sweep(plan, ctx, psi, lam, wanted, spec.basis())
    if not records:
        return [torch.zeros_like(t) if n else None for t, n in zip(tensors, need, strict=True)]
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(n) for t, n in zip(tensors, need, strict=True)]
        bindings, ops = spec.bind(leaves)
        gctx = spec.context(bindings, ops)
        surrogate = _surrogate(plan, gctx, records)
        inputs = [leaf for leaf, n in zip(leaves, need, strict=True) if n]
        got = torch.autograd.grad(surrogate, inputs, allow_unused=True)
    it = iter(got)
    out: list[torch.Tensor | None] = []
    for t, n in zip(tensors, need, strict=True):
        if not n:
            out.append(None)
            continue
        g = next(it)
        out.append(torch.zeros_like(t) if g is None else g.to(t.dtype))
    return out


def _uses(op: Operation, flags: Mapping[str, bool]) -> bool:
    return any(isinstance(p, Parameter) and flags.get(p.name, False) for p in op.params)


def _surrogate(
    plan: Plan, ctx: Context, records: list[tuple[int, int, torch.Tensor]]
) -> torch.Tensor:
    """``S = Σ_j 2 Re Σ_{b,a,c} U_j[b, a, c] M_j[b, a, c]`` with ``U_j`` rebuilt under autograd."""
    total = torch.zeros((), dtype=ctx.real_dtype, device=ctx.device)
    blocks_of: dict[int, list[tuple[list[int], torch.Tensor]]] = {}
    for s, j, m in records:
        step = plan.steps[s]
        if isinstance(step, FusedStep):
            if s not in blocks_of:
                blocks_of[s] = step.block_matrices(ctx)
            u = blocks_of[s][j][1]
        else:
            assert isinstance(step, GateStep)
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            u = ctx.matrix(gate)
        total = total + 2 * torch.view_as_real(u * m).select(-1, 0).sum()
    return total


def _prepare(
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Observable | Sequence[Observable],
    dtype: torch.dtype,
    device: Any,
    initial_state: Any,
) -> tuple[_Spec, list[torch.Tensor]]:
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    if circuit.has_channels:
        raise arg_error(
            "circuit",
            "adjoint differentiation needs a pure-state circuit (this one has channels); "
            "use backprop or parameter shift",
        )
    obs = as_observables(observables, "observables")
    if params is not None and not isinstance(params, Mapping):
        raise arg_error(
            "params",
            f"expected a mapping name -> value, got {type(params).__name__}",
            QsemTypeError,
        )
    names, tensors, fixed = [], [], {}
    for name, value in (params or {}).items():
        if isinstance(value, torch.Tensor):
            names.append(name)
            tensors.append(value)
        else:
            fixed[name] = value
    slots = []
    for i, op in enumerate(circuit.ops):
        if isinstance(op, Unitary) and op.unitary.requires_grad:
            raise arg_error(
                "circuit",
                f"adjoint differentiation does not differentiate the matrix of {op.name} on "
                f"wires {list(op.wires)}; use diff_method='backprop'",
            )
        for j, p in enumerate(op.params):
            if isinstance(p, torch.Tensor):
                slots.append((i, j))
                tensors.append(p)
    sim = TorchSimulator("statevector", dtype=dtype, device=device)
    return _Spec(circuit, names, fixed, slots, obs, sim, initial_state), tensors


def adjoint_expval(
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Observable | Sequence[Observable],
    *,
    dtype: torch.dtype = torch.complex128,
    device: Any = None,
    initial_state: Any = None,
    simulator: TorchSimulator | None = None,
) -> torch.Tensor:
    """Expectation values ``(B, K)`` (``(K,)`` unbatched) differentiated by the adjoint method.

    The forward pass is :class:`~qsem.simulators.TorchSimulator` (statevector) without
    autograd; ``backward()`` runs the adjoint sweep (module doc). Every tensor in
    ``params`` and every concrete tensor parameter of the circuit's gates that
    requires a gradient receives one. ``simulator`` reuses a simulator's plan cache
    (its dtype and device then apply).
    """
    spec, tensors = _prepare(circuit, params, observables, dtype, device, initial_state)
    if simulator is not None:
        if simulator.mode != "statevector":
            raise arg_error("simulator", "adjoint differentiation needs a statevector simulator")
        spec.sim = simulator
    out = AdjointExpval.apply(spec, *tensors)
    return out


def adjoint_jacobian(
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Observable | Sequence[Observable],
    *,
    dtype: torch.dtype = torch.complex128,
    device: Any = None,
    initial_state: Any = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Expectation values and their Jacobian by the adjoint method, without autograd.

    Returns ``(values, jac)``: ``values`` as :func:`adjoint_expval`; ``jac[name]`` of
    shape ``(K, *params[name].shape)`` holds ``d Σ_b <O_k>_b / d params[name]`` for every
    tensor-bound parameter (one adjoint sweep per observable). For a batched
    parameter ``(B, ...)`` the rows are independent, so row ``b`` of ``jac[name][k]``
    is ``d<O_k>_b / d params[name][b]``; a shared (unbatched) parameter gets the sum
    over the batch.

    >>> from qsem.circuits import Circuit, RX, PauliString
    >>> c = Circuit.qubits(1).add(RX(Parameter("t"), wires=0))
    >>> t = torch.tensor(0.5, dtype=torch.float64)
    >>> v, jac = adjoint_jacobian(c, {"t": t}, [PauliString("Z", wires=[0])])
    >>> bool(torch.isclose(jac["t"][0], -torch.sin(t)))
    True
    """
    spec, tensors = _prepare(circuit, params, observables, dtype, device, initial_state)
    leaves = [t.detach().requires_grad_(True) for t in tensors]
    values, psi = _forward(spec, leaves)
    vals = values if spec.batched else values[None]
    rows: list[list[torch.Tensor | None]] = []
    for k in range(vals.shape[-1]):
        g = torch.zeros_like(vals)
        g[:, k] = 1
        rows.append(adjoint_vjp(spec, psi, g, leaves))
    jac: dict[str, torch.Tensor] = {}
    for i, name in enumerate(spec.names):
        parts = [r[i] for r in rows]
        jac[name] = torch.stack(
            [p if p is not None else torch.zeros_like(tensors[i]) for p in parts]
        )
    return values, jac


__all__ = ["AdjointExpval", "adjoint_expval", "adjoint_jacobian", "local_outer"]
