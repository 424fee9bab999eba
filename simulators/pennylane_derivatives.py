r"""Device derivatives of the ``qsem`` PennyLane device: adjoint, else autograd.

The device (:mod:`qsem.simulators.pennylane_device`) answers ``diff_method="device"``,
``"adjoint"`` and ``"best"`` (outside the torch interface) with a Jacobian it computes
itself, in PennyLane's layout ``jac[measurement][parameter]`` (singletons dropped):

* **adjoint** (:func:`qsem.simulators.adjoint.adjoint_expval`) where it is valid
  (:func:`adjoint_refusal` is ``None``): statevector simulation, analytic, every
  measurement an ``expval`` whose observable has no trainable parameter, every
  trainable parameter a scalar angle of a gate (not of a state preparation). With
  ``<M_m> = Σ_k c_{mk} <O_k>`` (the observable's qsem terms,
  :func:`~qsem.simulators.pennylane_measure.observable_terms`) one adjoint sweep per
  measurement gives the row ``∂<M_m>/∂θ`` (incoming gradient ``g_k = c_{mk}``).
  A broadcast tape (batch ``B``) makes every trainable parameter a row parameter
  ``θ → (θ_1, …, θ_B)`` first: the rows are independent, so the one sweep per
  measurement gives ``∂<M_m>_b/∂θ_b`` for every ``b`` at once — the diagonal of a
  broadcast parameter's ``(B, B)`` block, or the ``(B,)`` column of a shared one.
* **autograd** otherwise (``var``, ``probs``, reduced states, channels, trainable
  matrices or observables): torch autograd through the engine, one backward pass per
  output entry. ``diff_method="adjoint"`` refuses such tapes instead (PennyLane's
  ``supports_derivatives``); finite shots are refused by both.

``qml.Tracker`` records ``derivative_method`` (``"adjoint"`` or ``"autograd"``) per tape.

>>> import pennylane as qml
>>> dev = qml.device("qsem", wires=1)
>>> @qml.qnode(dev, diff_method="adjoint")
... def f(x):
...     qml.RX(x, 0)
...     return qml.expval(qml.Z(0))
>>> round(float(qml.grad(f)(qml.numpy.array(0.5, requires_grad=True))), 6)  # -sin(0.5)
-0.479426
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pennylane as qml
import torch

from qsem.circuits.errors import arg_error
from qsem.circuits.pennylane_import import (
    PENNYLANE_GATES,
    STATE_PREPS,
    is_controlled_op,
    symbolic_key,
)

from .adjoint import adjoint_expval
from .pennylane_measure import observable_terms

if TYPE_CHECKING:
    from .pennylane_device import QsemDevice

_SUBSPACE_ROTATIONS = frozenset({"TRX", "TRY", "TRZ"})
#: most amplitudes (rows x register dimension) one stacked adjoint call may hold
ADJOINT_ROW_LIMIT = 1 << 22

__all__ = [
    "adjoint_refusal",
    "adjoint_stop",
    "angle_gate",
    "autograd_derivatives",
    "device_derivatives",
    "device_vjps",
    "row_key",
    "stack_rows",
]


def adjoint_refusal(tape: Any, method: str, params: bool = True) -> str | None:
    """Why the adjoint method cannot differentiate ``tape`` (``None``: it can).

    ``method`` is the device's simulation option (``"auto"``, ``"statevector"`` or
    ``"density_matrix"``); ``params=False`` checks the structure only (shots, method,
    measurements, channels), not which parameters are trainable (a tape before
    PennyLane's decompositions).
    """
    if tape.shots:
        return "finite shots"
    if method == "density_matrix":
        return "density-matrix simulation"
    for mp in tape.measurements:
        if not isinstance(mp, qml.measurements.ExpectationMP) or mp.obs is None:
            return f"the measurement {type(mp).__name__} (adjoint needs expval)"
    for op in tape.operations:
        if isinstance(op, qml.operation.Channel):
            return f"the channel {op.name} (adjoint needs a pure state)"
    if not params:
        return None
    n_ops = len(tape.operations)
    batched = tape.batch_size is not None
    par_info = tape.par_info
    for i in tape.trainable_params:
        info = par_info[i]
        op = info["op"]
        if info["op_idx"] >= n_ops:
            return f"a trainable parameter of the observable {op.name}"
        if op.name in STATE_PREPS:
            return f"a trainable parameter of the state preparation {op.name}"
        if not angle_gate(op) or np.ndim(op.data[info["p_idx"]]) != (
            1 if batched and op.batch_size else 0
        ):
            return f"a trainable parameter of {op.name} (adjoint needs named gate angles)"
    return None


def angle_gate(op: Any) -> bool:
    """Whether qsem keeps ``op``'s parameters as angles of a named gate (so the adjoint
    differentiates them), not inside a matrix built from them (``Rot``, ``QubitUnitary``)."""
    while op.name.startswith("Adjoint(") or is_controlled_op(op):
        op = op.base
    return op.name in PENNYLANE_GATES or op.name in _SUBSPACE_ROTATIONS


def adjoint_stop(op: Any) -> bool:
    """Decomposition stop for device derivatives: an operation qsem runs whose trainable
    parameters (if any) are named-gate angles, or one PennyLane cannot decompose further
    (then the autograd Jacobian differentiates it)."""
    if not any(qml.math.requires_grad(d) for d in op.data):
        return True
    return angle_gate(op) or not op.has_decomposition


def device_derivatives(
    dev: QsemDevice, tapes: Sequence[Any], method: str, adjoint: bool, strict: bool = False
) -> list[tuple[Any, Any]]:
    """``(results, jacobian)`` of each tape: the adjoint method where
    :func:`adjoint_refusal` allows it and ``adjoint`` is set, else autograd (``strict``:
    refuse instead, in one line naming the reason).

    Tapes that differ only in their parameter values (PennyLane's ``broadcast_expand``
    splits a broadcast tape into such rows) run as ONE batched adjoint call: each tape
    is a row of the batch, every parameter a row parameter.
    """
    out: list[Any] = [None] * len(tapes)
    groups: dict[Any, list[int]] = {}
    for k, tape in enumerate(tapes):
        reason = adjoint_refusal(tape, method) if adjoint else "no adjoint"
        if strict and reason is not None:
            raise arg_error(
                "diff_method",
                f"'adjoint' cannot differentiate {reason}; use diff_method='device' or 'backprop'",
            )
        ok = reason is None
        if dev.tracker.active:
            dev.tracker.update(derivative_method="adjoint" if ok else "autograd")
            dev.tracker.record()
        if not ok:
            out[k] = autograd_derivatives(dev, tape, method)
            continue
        key = row_key(tape)
        groups.setdefault(key if key is not None else ("single", k), []).append(k)
    for key, members in groups.items():
        group = [tapes[k] for k in members]
        per_tape = len(group[0].measurements) * math.prod(dev.wire_dims(group[0]))
        if key[0] == "single" or per_tape > ADJOINT_ROW_LIMIT:
            for k in members:
                out[k] = adjoint_derivatives(dev, tapes[k])
            continue
        size = max(1, ADJOINT_ROW_LIMIT // per_tape)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            for k, pair in zip(
                chunk, _adjoint_selected(dev, [tapes[k] for k in chunk]), strict=True
            ):
                out[k] = (
                    pair if pair is not None else autograd_derivatives(dev, tapes[k], "statevector")
                )
    return out


def _adjoint_selected(dev: QsemDevice, group: list[Any]) -> list[Any]:
    """``(results, jacobian)`` of same-structure tapes from ONE adjoint sweep: row
    ``(g, m)`` of a batch of ``G·M`` rows is tape ``g`` with the incoming gradient of
    its measurement ``m`` only (rows are independent, every parameter a row parameter),
    so row ``(g, m)`` of the gradient is ``∂<M_m>/∂θ`` of tape ``g``."""
    n_mp = len(group[0].measurements)
    with torch.enable_grad():  # PennyLane's torch backward calls this with grad off
        setup = _adjoint_setup(dev, *_stacked(group, repeat=n_mp))
        if setup is None:
            return [None] * len(group)
        bound, vals, weights, consts = setup
        select = torch.stack([weights[m][0] for m in range(n_mp)])  # (M, K): equal rows
        picked = select.repeat(len(group), 1)  # row (g, m) -> measurement m
        rows = _table_grads(vals, picked, bound, list(group[0].trainable_params))
        dev.adjoint_sweeps += 1
    values = (vals.detach() * picked).sum(-1).reshape(len(group), n_mp) + torch.tensor(consts)
    table = rows.reshape(len(rows), len(group), n_mp).numpy()  # (P, G, M)
    vals_np = values.numpy()
    out = []
    for g in range(len(group)):
        res = [vals_np[g, m] for m in range(n_mp)]
        jac = [_pack(list(table[:, g, m])) for m in range(n_mp)]
        out.append((_pack(res), _pack(jac)))
    return out


def device_vjps(
    dev: QsemDevice,
    tapes: Sequence[Any],
    cotangents: Sequence[Any],
    method: str,
    adjoint: bool,
    strict: bool = False,
) -> list[np.ndarray]:
    """Vector-Jacobian products ``Σ_m dy_m ∂<M_m>/∂θ`` of each tape (``device_vjp=True``):
    ONE adjoint sweep for all same-structure tapes (rows of one batch, incoming
    gradient ``Σ_m dy_m`` times measurement ``m``'s coefficients); other tapes through
    their Jacobian (:func:`device_derivatives`)."""
    out: list[Any] = [None] * len(tapes)
    groups: dict[Any, list[int]] = {}
    for k, tape in enumerate(tapes):
        key = row_key(tape) if adjoint and adjoint_refusal(tape, method) is None else None
        if key is None:
            _, jac = device_derivatives(dev, [tape], method, adjoint, strict)[0]
            multi = len(tape.measurements) > 1
            vjp = qml.gradients.compute_vjp_multi if multi else qml.gradients.compute_vjp_single
            out[k] = np.asarray(vjp(cotangents[k], jac))
            continue
        if dev.tracker.active:
            dev.tracker.update(derivative_method="adjoint")
            dev.tracker.record()
        groups.setdefault(key, []).append(k)
    for members in groups.values():
        size = max(1, ADJOINT_ROW_LIMIT // math.prod(dev.wire_dims(tapes[members[0]])))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            got = _adjoint_vjp_rows(dev, [tapes[k] for k in chunk], [cotangents[k] for k in chunk])
            for k, v in zip(chunk, got, strict=True):
                out[k] = v
    return out


def _adjoint_vjp_rows(dev: QsemDevice, group: list[Any], dys: list[Any]) -> list[np.ndarray]:
    n_mp = len(group[0].measurements)
    dy = torch.tensor(
        np.array([np.asarray(qml.math.unwrap(d), dtype=np.float64).reshape(n_mp) for d in dys]),
        dtype=torch.float64,
    )  # (G, M)
    with torch.enable_grad():  # PennyLane's torch backward calls this with grad off
        setup = _adjoint_setup(dev, *_stacked(group))
        if setup is None:  # only identity terms: constant results
            return [np.zeros(len(t.trainable_params)) for t in group]
        bound, vals, weights, _ = setup
        picked = sum(dy[:, m, None] * weights[m].to(torch.float64) for m in range(n_mp))
        table = _table_grads(vals, picked, bound, list(group[0].trainable_params))
        dev.adjoint_sweeps += 1
    return [table[:, g].numpy() for g in range(len(group))]


def row_key(tape: Any) -> Any:
    """Tapes with equal keys differ only in their (scalar) parameter values, so
    :func:`stack_rows` runs them as one broadcast tape (``None``: not stackable)."""
    if tape.batch_size is not None or tape.shots:
        return None
    ops = symbolic_key(tape.operations)
    if ops is None:
        return None
    return ops, tuple(mp.hash for mp in tape.measurements), tuple(tape.trainable_params)


def stack_rows(tapes: list[Any], repeat: int = 1) -> Any:
    """One broadcast tape whose rows are ``tapes`` (each ``repeat`` times in a row; every
    gate angle stacked; the measurements, equal by :func:`row_key`, kept)."""
    return _stacked(tapes, repeat)[0]


def _stacked(tapes: list[Any], repeat: int = 1) -> tuple[Any, np.ndarray]:
    """:func:`stack_rows`' tape and its angle table ``(rows, P)`` (tape parameter order)."""
    table = np.array(
        [
            [float(qml.math.unwrap(v)) for v in t.get_parameters(False, operations_only=True)]
            for t in tapes
        ],
        dtype=np.float64,
    ).reshape(len(tapes), -1)  # (G, P): row_key's tapes hold scalar angles only
    table = np.repeat(table, repeat, axis=0)
    tape = tapes[0].bind_new_parameters(list(table.T), list(range(table.shape[1])))
    return tape, table


def _pack(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else tuple(items)


def _row_leaves(tape: Any) -> tuple[list[torch.Tensor], list[bool]]:
    """What is bound to the tape's trainable parameters (leaves requiring gradients; for a
    broadcast tape a ``(B,)`` row tensor each, shared ones expanded), and which are shared."""
    batch = tape.batch_size
    bound, shared = [], []
    for p in tape.get_parameters(trainable_only=True):
        v = np.asarray(qml.math.unwrap(p), dtype=np.float64)
        leaf = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        shared.append(leaf.dim() == 0)
        bound.append(leaf.expand(batch) if batch is not None and leaf.dim() == 0 else leaf)
    return bound, shared


def adjoint_derivatives(dev: QsemDevice, tape: Any) -> tuple[Any, Any]:
    """Values and Jacobian of an expval-only statevector tape by qsem's adjoint method
    (module doc): one adjoint sweep per measurement, broadcast rows included."""
    rows = _adjoint_rows(dev, tape)
    if rows is None:  # only identity terms: nothing to sweep
        return autograd_derivatives(dev, tape, "statevector")
    values, grads = rows
    shared = [np.ndim(p) == 0 for p in tape.get_parameters(trainable_only=True)]
    jac = [_layout(per, shared, tape.batch_size) for per in grads]
    return _pack([_numpy(v) for v in values]), _pack(jac)


def _adjoint_setup(dev: QsemDevice, tape: Any, table: np.ndarray | None = None) -> Any:
    """Bind leaves, run the adjoint forward pass: ``(bound, vals, weights, consts)`` with
    ``bound`` the leaves to differentiate, ``vals`` the qsem terms' values
    ``(B, K)`` (or ``(K,)``), ``weights[m]`` the coefficients of measurement ``m``'s terms
    (shaped as ``vals``) and ``consts[m]`` its identity part; ``None`` when every term is
    the identity. Call under ``enable_grad``.

    ``table``: :func:`_stacked`'s angle table of ``tape`` (every angle a row): bound as
    ONE ``(B, P)`` leaf to the symbolic circuit, without a leaf per parameter or a
    re-bound tape. Otherwise each trainable parameter gets its own leaf (a ``(B,)`` row
    for a broadcast tape, :func:`_row_leaves`)."""
    if table is not None:
        prep = dev.prepare(tape, "statevector", bind=False)
        leaf = torch.from_numpy(table).requires_grad_(True)
        params = {"b": leaf} if prep.circuit.parameters else None
        bound = [leaf] if params else []
    else:
        bound, _ = _row_leaves(tape)
        prep = dev.prepare(
            tape.bind_new_parameters(bound, list(tape.trainable_params)), "statevector"
        )
        params = prep.params
    per_mp = [observable_terms(mp.obs, prep.index, prep.dims) for mp in tape.measurements]
    listed = [o for terms in per_mp for _, o in terms if o is not None]
    if not listed:
        return None
    dev.record_run(prep.mode, tape)
    vals = adjoint_expval(
        prep.circuit, params, listed, initial_state=prep.initial,
        simulator=dev.simulator("statevector"),
    )  # fmt: skip
    weights, consts = [], []
    j = 0
    for terms in per_mp:
        w = torch.zeros_like(vals)
        const = 0.0
        for c, o in terms:
            if o is None:
                const += _real(c)
            else:
                w[..., j] = _real(c)
                j += 1
        weights.append(w)
        consts.append(const)
    return bound, vals, weights, consts


def _adjoint_rows(
    dev: QsemDevice, tape: Any
) -> tuple[list[torch.Tensor], list[list[torch.Tensor | None]]] | None:
    """Per measurement ``m``: its values ``<M_m>`` (``(B,)`` or scalar) and, per trainable
    parameter, ``∂<M_m>_b/∂θ_b`` row-wise (``None``: unused), one adjoint sweep per
    measurement; ``None`` when every term is the identity."""
    with torch.enable_grad():  # PennyLane's torch backward calls this with grad off
        setup = _adjoint_setup(dev, tape)
        if setup is None:
            return None
        bound, vals, weights, consts = setup
        values = [(vals.detach() * w).sum(-1) + c for w, c in zip(weights, consts, strict=True)]
        grads = [_grads(vals, w, bound) for w in weights]
        dev.adjoint_sweeps += len(weights)
    return values, grads


def _grads(vals: torch.Tensor, weights: torch.Tensor, inputs: list[torch.Tensor]) -> list[Any]:
    """``∂ Σ weights ∘ vals / ∂ inputs`` (one adjoint sweep; ``None`` where unused)."""
    if not inputs:
        return []
    got = torch.autograd.grad(
        vals, inputs, grad_outputs=weights, retain_graph=True, allow_unused=True
    )
    return [None if g is None else g.detach() for g in got]


def _table_grads(
    vals: torch.Tensor, weights: torch.Tensor, bound: list[torch.Tensor], columns: list[int]
) -> torch.Tensor:
    """``∂ Σ weights ∘ vals / ∂θ`` for the ``columns`` of :func:`_stacked`'s angle table
    (``bound``: ``[table]``, or ``[]`` for a circuit without angles), as ``(P, B)``: one
    row per trainable parameter, one column per batch row (one adjoint sweep)."""
    rows = vals.shape[0]
    grads = _grads(vals, weights, bound)
    if not grads or grads[0] is None:
        return torch.zeros(len(columns), rows, dtype=torch.float64)
    return grads[0][:, columns].T


def _layout(grads: list[Any], shared: list[bool], batch: Any) -> Any:
    """One measurement's Jacobian row per parameter, as PennyLane lays it out (a broadcast
    parameter's ``(B, B)`` block is diagonal: rows are independent)."""
    out = []
    for g, is_shared in zip(grads, shared, strict=True):
        if batch is None:
            out.append(np.asarray(0.0 if g is None else g.numpy())[()])
            continue
        row = torch.zeros(batch, dtype=torch.float64) if g is None else g
        out.append(row.numpy() if is_shared else torch.diag(row).numpy())
    return _pack(out)


def autograd_derivatives(dev: QsemDevice, tape: Any, method: str) -> tuple[Any, Any]:
    """Values and Jacobian of ``tape`` by torch autograd through the engine."""
    params = tape.get_parameters(trainable_only=True)
    leaves = [torch.tensor(np.asarray(p), dtype=torch.float64, requires_grad=True) for p in params]
    new = tape.bind_new_parameters(leaves, list(tape.trainable_params))
    with torch.enable_grad():  # PennyLane's torch backward calls this with grad off
        res = dev.run_tape(new, method)
        outs = [res] if len(tape.measurements) == 1 else list(res)
        jac = _jacobian_of(outs, leaves)
    values = [_numpy(o) for o in outs]
    return (values[0] if len(values) == 1 else tuple(values)), jac


def _jacobian_of(outs: list[torch.Tensor], leaves: list[torch.Tensor]) -> Any:
    """PennyLane's Jacobian layout: [measurement][parameter], singletons dropped."""
    jac = []
    for out in outs:
        flat = out.reshape(-1)
        rows = [torch.autograd.grad(v, leaves, retain_graph=True, allow_unused=True) for v in flat]
        per_param = []
        for k, leaf in enumerate(leaves):
            g = [r[k] if r[k] is not None else torch.zeros_like(leaf) for r in rows]
            stacked = torch.stack(g).reshape(tuple(out.shape) + tuple(leaf.shape))
            per_param.append(stacked.detach().numpy())
        jac.append(per_param[0] if len(leaves) == 1 else tuple(per_param))
    return jac[0] if len(outs) == 1 else tuple(jac)


def _real(c: Any) -> float:
    c = c.detach() if isinstance(c, torch.Tensor) else qml.math.unwrap(c)
    return float(np.real(np.asarray(c)))


def _numpy(r: Any) -> Any:
    """A NumPy result as PennyLane's devices give it (a NumPy scalar for 0-d values)."""
    out = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)
    return out[()] if out.ndim == 0 else out
