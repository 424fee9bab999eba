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

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.gates import Unitary
from qsem.circuits.observables import Observable, as_observables
from qsem.circuits.operations import Gate, Operation
from qsem.circuits.parameters import Parameter

from . import kernels
from .engine import TorchSimulator
from .plan_exec import FusedStep, GateStep, LocalPermutationStep, PermutationStep, Plan, Step
from .plan_state import Context, SimState


def local_outer(
    mu: torch.Tensor, psi: torch.Tensor, shape: Sequence[int], axes: Sequence[int]
) -> torch.Tensor:
    """``M[b, a, c] = Σ_rest μ[b, a, rest] ψ[b, c, rest]`` on ``axes``: ``(B, Dk, Dk)``.

    ``μ = conj(λ)`` (the sweep carries ``conj(λ)``, so no GEMM operand is a conjugated
    view, which batched GEMMs would copy); ``a, c`` index the local space of ``axes``
    (in the given order); ``μ, ψ`` are ``(B, prod(shape))``.

    >>> mu = torch.tensor([[1, 0, 0, 0]], dtype=torch.complex128)
    >>> psi = torch.tensor([[0, 0, 1, 0]], dtype=torch.complex128)
    >>> local_outer(mu, psi, (2, 2), [0])[0].real
    tensor([[0., 1.],
            [0., 0.]], dtype=torch.float64)
    """
    b = mu.shape[0]
    n = len(shape)
    dk = math.prod(shape[a] for a in axes)
    a0 = axes[0]
    if list(axes) == list(range(a0, a0 + len(axes))):
        left = math.prod(shape[:a0])
        right = math.prod(shape[a0 + len(axes) :])
        mv = mu.reshape(b, left, dk, right)
        pv = psi.reshape(b, left, dk, right)
        if right == 1:
            return mv[..., 0].transpose(-1, -2) @ pv[..., 0]
        if left == 1:
            return mv[:, 0] @ pv[:, 0].transpose(-1, -2)
        return (mv @ pv.transpose(-1, -2)).sum(1)
    rest = [a for a in range(n) if a not in axes]
    perm = [0, *[a + 1 for a in axes], *[a + 1 for a in rest]]
    mv = mu.reshape(b, *shape).permute(perm).reshape(b, dk, -1)
    pv = psi.reshape(b, *shape).permute(perm).reshape(b, dk, -1)
    return mv @ pv.transpose(-1, -2)


def apply_observables(
    psi: torch.Tensor, observables: Sequence[Observable], weights: torch.Tensor, dims: tuple
) -> torch.Tensor:
    """``λ_b = Σ_k weights[b, k] O_k ψ_b`` for ``ψ`` ``(B, D)`` and ``weights`` ``(B, K)``.

    Diagonal observables add into one full-register diagonal, applied with one
    product: single-wire ones as per-wire vectors joined by outer sums (about two
    passes over ``D`` in all), multi-wire ones broadcast from their wires; the others
    are applied on their wires.
    """
    b, n = psi.shape[0], len(dims)
    lam: torch.Tensor | None = None
    per_wire: dict[int, torch.Tensor] = {}
    multi: list[tuple[Observable, torch.Tensor, torch.Tensor]] = []
    for k, o in enumerate(observables):
        local = tuple(dims[w] for w in o.wires)
        d = o.diagonal(local)
        if d is None:
            mat = o.matrix(local, dtype=psi.dtype, device=psi.device)
            term = kernels.apply_matrix(psi, mat, dims, list(o.wires))
            term = term * weights[:, k, None].to(psi.dtype)
            lam = term if lam is None else lam + term
            continue
        v = weights[:, k, None] * d.to(dtype=weights.dtype, device=psi.device)  # (B, Dk)
        if len(o.wires) == 1:
            w = o.wires[0]
            per_wire[w] = v if w not in per_wire else per_wire[w] + v
        else:
            multi.append((o, v, d))
    diag: torch.Tensor | None = None
    if per_wire:
        diag = torch.zeros(b, 1, dtype=weights.dtype, device=psi.device)
        for w in range(n):
            vw = per_wire.get(w, torch.zeros(b, dims[w], dtype=weights.dtype, device=psi.device))
            diag = (diag[:, :, None] + vw[:, None, :]).reshape(b, -1)
    for o, v, _ in multi:
        local = tuple(dims[w] for w in o.wires)
        order = sorted(range(len(o.wires)), key=lambda i: o.wires[i])
        t = v.reshape(b, *local).permute(0, *[i + 1 for i in order])
        shape = [dims[a] if a in o.wires else 1 for a in range(n)]
        full = t.reshape(b, *shape).expand(b, *dims).reshape(b, -1)
        diag = full if diag is None else diag + full
    if diag is not None:
        term = psi * diag
        lam = term if lam is None else lam + term
    assert lam is not None
    return lam


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


def _apply(x: torch.Tensor, mat: torch.Tensor, ctx: Context, wires: list[int]) -> torch.Tensor:
    return kernels.apply_matrix(x, mat, ctx.dims, wires)


def _transpose(u: torch.Tensor) -> torch.Tensor:
    """``U^T``: ``conj(U^† λ) = U^T conj(λ)`` undoes a gate on ``μ = conj(λ)``."""
    return u.transpose(-1, -2)


def _contract(x: torch.Tensor, vecs: list[torch.Tensor], keep: int) -> torch.Tensor:
    """``t[b, a] = Σ x[b, i_1 … a … i_k] Π_{i≠keep} v_i[b, i_i]``: ``x`` ``(B, Π d_i)``
    contracted with every vector ``v_i`` (``(d_i,)`` or ``(B, d_i)``) but the ``keep``-th.

    Trailing axes first (each a GEMV over the remaining leading axes), then leading
    ones: one read of ``x``, then ever smaller tensors.
    """
    b = x.shape[0]
    t = x
    for v in reversed(vecs[keep + 1 :]):
        t = (t.reshape(b, -1, v.shape[-1]) @ v.reshape(-1, v.shape[-1], 1)).reshape(b, -1)
    for v in vecs[:keep]:
        t = (v.reshape(-1, 1, v.shape[-1]) @ t.reshape(b, v.shape[-1], -1)).reshape(b, -1)
    return t


def first_layer_records(
    step: FusedStep, ctx: Context, mu: torch.Tensor, basis: tuple[int, ...]
) -> list[tuple[int, int, torch.Tensor]]:
    """The records of plan step 0, a fused layer applied to the basis state ``|c>``.

    Its input is known, ``ψ' = |c>``, so nothing is undone: with ``U = ⊗_j U_j`` and
    ``v_i = U_i[:, c_i]`` (the factors of the product state the layer made),
    ``M'_j[a, c'] = δ_{c' c_j} Σ_b U_j[b, a] t_j[b]`` where ``t_j`` is ``μ`` contracted with
    every ``v_i``, ``i ≠ j`` (:func:`_contract`): about one read of ``μ`` per block, where
    the general step costs two chain passes and a local contraction per block.
    """
    dims = ctx.dims
    blocks = step.block_matrices(ctx)
    start = {block[0]: j for j, (block, _) in enumerate(blocks)}
    vecs: list[torch.Tensor] = []
    slots: list[tuple[int, int, int]] = []  # (axis, block j, basis index c_j)
    w = 0
    while w < len(dims):
        j = start.get(w)
        if j is None:  # a wire without gates: its basis vector
            vecs.append(ctx.eye(dims[w])[basis[w]])
            w += 1
            continue
        wires, u = blocks[j]
        c = 0
        for v in wires:
            c = c * dims[v] + basis[v]
        slots.append((len(vecs), j, c))
        vecs.append(u[..., :, c])
        w = wires[-1] + 1
    out: list[tuple[int, int, torch.Tensor]] = []
    with torch.profiler.record_function("qsem.adjoint.first_layer_records"):
        for axis, j, c in slots:
            u = blocks[j][1]
            t = _contract(mu, vecs, axis)  # (B, dk)
            col = (t[:, None, :] @ u).squeeze(-2)  # Σ_b t[b] U[b, a]
            m = torch.zeros(*col.shape, u.shape[-1], dtype=col.dtype, device=col.device)
            m[..., c] = col
            out.append((0, j, u.conj() @ m))
    return out


def backward_sweep(
    plan: Plan,
    ctx: Context,
    psi: torch.Tensor,
    lam: torch.Tensor,
    wanted: Sequence[bool],
    basis: tuple[int, ...] | None = None,
) -> list[tuple[int, int, torch.Tensor]]:
    """Walk the plan backwards; return ``(step, block, M)`` for the differentiable blocks.

    ``wanted[s]``: step ``s`` holds a parameter that needs a gradient. ``psi`` and
    ``lam`` are consumed (the caller hands over the final state and ``O ψ``); the sweep
    carries ``μ = conj(λ)`` (undone by ``U^T``), see :func:`local_outer`. ``basis``: the
    levels of the initial state when it is a basis state; a first step that is a fused
    layer then needs no undoing (:func:`first_layer_records`). Nothing is undone past
    the first step.
    """
    out: list[tuple[int, int, torch.Tensor]] = []
    mu = lam.conj().resolve_conj()
    del lam
    for s in range(len(plan.steps) - 1, -1, -1):
        step: Step = plan.steps[s]
        if s == 0 and not wanted[0]:
            break
        if s == 0 and basis is not None and isinstance(step, FusedStep):
            out.extend(first_layer_records(step, ctx, mu, basis))
            break
        if isinstance(step, PermutationStep):
            _, inv = step.indices(ctx.device)
            psi, mu = kernels.index_rows(psi, inv), kernels.index_rows(mu, inv)
        elif isinstance(step, LocalPermutationStep):
            psi = step.unapply(psi, ctx)
            mu = step.unapply(mu, ctx)
        elif isinstance(step, GateStep):
            gate = ctx.ops[step.index]
            assert isinstance(gate, Gate)
            u = ctx.matrix(gate)
            wires = list(gate.wires)
            psi = _apply(psi, u.mH, ctx, wires)
            if wanted[s]:
                out.append((s, 0, local_outer(mu, psi, ctx.dims, wires)))
            mu = _apply(mu, _transpose(u), ctx, wires)
        else:  # channels never reach a statevector plan (the entry point refuses them)
            assert isinstance(step, FusedStep), type(step).__name__
            # U = ⊗_j U_j on disjoint wires: with ψ' = U^† ψ and λ' = U^† λ,
            # <λ| ⊗_{i≠j} U_i ⊗ ∂U_j |ψ'> = <λ'| (U_j^† ∂U_j)_j |ψ'> = Σ ∂U_j ∘ (conj(U_j) M'_j)
            # with M'_j = local_outer(conj(λ'), ψ') on block j: two chain passes undo the layer.
            blocks = step.block_matrices(ctx)
            psi = step.apply_blocks(SimState(psi, "statevector"), ctx, [u.mH for _, u in blocks])
            mu = step.apply_blocks(
                SimState(mu, "statevector"), ctx, [_transpose(u) for _, u in blocks]
            )
            if wanted[s]:
                for j, (wires, u) in enumerate(blocks):
                    m = local_outer(mu, psi, ctx.dims, wires)
                    out.append((s, j, u.conj() @ m))
    return out


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
