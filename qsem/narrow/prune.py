"""One-shot pruning of hidden neurons (by score, at random, by attribution) and of angles.

Masks live in a :class:`Masker`: it zeroes the masked entries of parameters now,
zeroes their gradients, and re-applies the masks after every step of the
optimisers it is attached to — so pruned weights stay zero through recovery
training, whatever the optimiser (Adam state, weight decay) would do.

Pruning a neuron masks its in-row, bias and out-column (see
:mod:`qsem.narrow.mlp`); pruning a rotation angle sets it to 0, which removes
the rotation: ``R(0) = I`` for every rotation ``exp(-iθG)`` of qsem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qsem.checks import check_probability
from qsem.circuits.errors import QsemTypeError, arg_error

from .mlp import NeuronGroup, neuron_groups

__all__ = [
    "Masker",
    "angle_ablation_scores",
    "angle_magnitude_scores",
    "angle_wire_groups",
    "attribution_scores",
    "keep_masks",
    "prune_angles",
    "prune_neurons",
    "prune_wires",
    "random_scores",
    "wire_ablation_scores",
]


class Masker:
    """Binary masks on parameters, kept through optimiser steps."""

    def __init__(self) -> None:
        self._masks: dict[int, tuple[nn.Parameter, torch.Tensor]] = {}
        self._hooks: dict[int, object] = {}
        self._optimizers: set[int] = set()

    def add(self, param: torch.Tensor, mask: torch.Tensor) -> None:
        """Mask ``param`` with ``mask`` (1 keep, 0 prune); combines with an earlier mask."""
        if not isinstance(param, torch.Tensor):
            raise arg_error("param", f"expected a tensor, got {type(param)}", QsemTypeError)
        if not isinstance(mask, torch.Tensor) or mask.shape != param.shape:
            raise arg_error(
                "mask", f"expected shape {tuple(param.shape)}, got {getattr(mask, 'shape', mask)}"
            )
        mask = mask.to(device=param.device, dtype=param.dtype)
        key = id(param)
        if key in self._masks:
            mask = mask * self._masks[key][1]
        self._masks[key] = (param, mask)  # type: ignore[assignment]
        if key not in self._hooks and param.requires_grad:
            self._hooks[key] = param.register_hook(lambda g, k=key: g * self._masks[k][1])
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked entry now."""
        for p, m in self._masks.values():
            p.mul_(m)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Re-apply the masks after each ``optimizer.step()`` (idempotent)."""
        if id(optimizer) not in self._optimizers:
            optimizer.register_step_post_hook(lambda *_: self.apply())
            self._optimizers.add(id(optimizer))

    def mask_of(self, param: torch.Tensor) -> torch.Tensor | None:
        entry = self._masks.get(id(param))
        return None if entry is None else entry[1]

    def masked_fraction(self) -> float:
        """Fraction of masked entries over all masked parameters."""
        total = sum(m.numel() for _, m in self._masks.values())
        zeros = sum(int((m == 0).sum()) for _, m in self._masks.values())
        return zeros / total if total else 0.0


def keep_masks(
    scores: Mapping[str, torch.Tensor], fraction: float, *, scope: str = "global"
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks pruning the lowest-scoring ``fraction`` of neurons.

    ``scope="global"`` ranks all neurons together; ``"layer"`` prunes ``fraction``
    of each group. Ties are broken by position (stable sort).
    """
    s = check_probability("fraction", fraction)
    if scope not in ("global", "layer"):
        raise arg_error("scope", f"expected 'global' or 'layer', got {scope!r}")
    if not scores:
        raise arg_error("scores", "no scores given")
    out = {}
    if scope == "layer":
        for name, sc in scores.items():
            n_prune = math.floor(s * sc.numel() + 1e-9)
            keep = torch.ones(sc.numel(), dtype=torch.bool, device=sc.device)
            keep[torch.argsort(sc.flatten(), stable=True)[:n_prune]] = False
            out[name] = keep
        return out
    names = list(scores)
    flat = torch.cat([scores[n].flatten().float().cpu() for n in names])
    n_prune = math.floor(s * flat.numel() + 1e-9)
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:n_prune]] = False
    i = 0
    for n in names:
        k = scores[n].numel()
        out[n] = keep[i : i + k].to(scores[n].device)
        i += k
    return out


def prune_neurons(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor],
    *,
    groups: list[NeuronGroup] | None = None,
    masker: Masker | None = None,
) -> Masker:
    """Mask the in-row, bias and out-column of every neuron with ``keep[group][j] == False``."""
    groups = neuron_groups(model) if groups is None else groups
    masker = masker or Masker()
    by_name = {g.name: g for g in groups}
    for name, k in keep.items():
        if name not in by_name:
            raise arg_error("keep", f"unknown neuron group {name!r}; groups: {sorted(by_name)}")
        g = by_name[name]
        if k.shape != (g.size,):
            raise arg_error("keep", f"group {name!r} has {g.size} neurons, mask {tuple(k.shape)}")
        kf = k.to(g.in_layer.weight.dtype)
        masker.add(g.in_layer.weight, kf[:, None].expand_as(g.in_layer.weight).clone())
        if g.in_layer.bias is not None:
            masker.add(g.in_layer.bias, kf.clone())
        masker.add(g.out_layer.weight, kf[None, :].expand_as(g.out_layer.weight).clone())
    return masker


def random_scores(
    model: nn.Module, generator: torch.Generator, *, groups: list[NeuronGroup] | None = None
) -> dict[str, torch.Tensor]:
    """Uniform random scores (pruning by them is random pruning)."""
    groups = neuron_groups(model) if groups is None else groups
    return {g.name: torch.rand(g.size, generator=generator) for g in groups}


def attribution_scores(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    groups: list[NeuronGroup] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean over samples of ``|a_j · dL/da_j|`` for each hidden activation ``a_j``.

    ``a`` is the input of each group's ``out_layer`` (the post-activation hidden
    value); ``L`` is ``loss_fn`` (default cross-entropy) summed over the batch, so
    the per-sample gradient is taken. Parameter gradients are not touched.
    """
    groups = neuron_groups(model) if groups is None else groups
    fn = loss_fn or (lambda out, t: F.cross_entropy(out, t, reduction="sum"))
    acts: list[torch.Tensor] = []
    handles = []
    for g in groups:

        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            acts.append(args[0])

        handles.append(g.out_layer.register_forward_pre_hook(hook))
    try:
        loss = fn(model(x), y)
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(loss, acts)
    return {
        g.name: (a * ga).abs().reshape(-1, g.size).mean(dim=0).detach()
        for g, a, ga in zip(groups, acts, grads, strict=True)
    }


def angle_magnitude_scores(angles: torch.Tensor) -> torch.Tensor:
    """Distance of each angle to the nearest multiple of 4π (where a rotation is the identity)."""
    if not isinstance(angles, torch.Tensor):
        raise arg_error("angles", f"expected a tensor, got {type(angles)}", QsemTypeError)
    a = angles.detach()
    period = 4 * math.pi
    return (a - period * torch.round(a / period)).abs()


@torch.no_grad()
def angle_ablation_scores(
    angles: torch.Tensor, loss_closure: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """``|loss(θ_i = 0) - loss|`` for each element of ``angles`` (``loss_closure()`` evaluates)."""
    if not isinstance(angles, torch.Tensor):
        raise arg_error("angles", f"expected a tensor, got {type(angles)}", QsemTypeError)
    base = float(loss_closure())
    flat = angles.view(-1)
    scores = torch.empty(flat.numel())
    for i in range(flat.numel()):
        saved = flat[i].clone()
        flat[i] = 0
        scores[i] = abs(float(loss_closure()) - base)
        flat[i] = saved
    return scores.view(angles.shape)


def prune_angles(
    angles: torch.Tensor,
    scores: torch.Tensor,
    fraction: float,
    *,
    masker: Masker | None = None,
) -> Masker:
    """Set the lowest-scoring ``fraction`` of ``angles`` to 0 (removing those rotations), kept."""
    if not isinstance(scores, torch.Tensor) or scores.shape != angles.shape:
        raise arg_error("scores", f"expected shape {tuple(angles.shape)}")
    keep = keep_masks({"angles": scores.flatten()}, fraction)["angles"].view(angles.shape)
    masker = masker or Masker()
    masker.add(angles, keep.to(angles.dtype))
    return masker


def angle_wire_groups(circuit: Any, name: str = "w") -> dict[int, list[int]]:
    """Indices of the trainable angles ``name`` acting on each wire of ``circuit``.

    Angles are either elements of a ``ParameterVector`` called ``name``
    (``name[i]``, as in ``QuantumLayer``) or scalars called ``name0, name1, ...``
    (as in ``QuantumSemanticLayer``). A gate on several wires (a controlled
    rotation) counts for each of them. Zeroing a wire's group removes every
    trainable rotation touching that wire.
    """
    ops = getattr(circuit, "ops", None)
    if ops is None:
        raise arg_error("circuit", f"expected a qsem Circuit, got {type(circuit)}", QsemTypeError)
    pattern = re.compile(rf"^{re.escape(name)}(\d+)$")
    groups: dict[int, list[int]] = {}
    for op in ops:
        for p in getattr(op, "params", ()):
            pname, index = getattr(p, "name", None), getattr(p, "index", None)
            if pname == name and index is not None:
                i = int(index)
            elif isinstance(pname, str) and index is None and pattern.match(pname):
                i = int(pattern.match(pname).group(1))  # type: ignore[union-attr]
            else:
                continue
            for wire in op.wires:
                bucket = groups.setdefault(int(wire), [])
                if i not in bucket:
                    bucket.append(i)
    if not groups:
        raise arg_error("name", f"the circuit has no trainable angles called {name!r}")
    return dict(sorted(groups.items()))


@torch.no_grad()
def wire_ablation_scores(
    angles: torch.Tensor,
    groups: Mapping[int, list[int]],
    loss_closure: Callable[[], torch.Tensor],
) -> dict[int, float]:
    """``|loss(all angles of the wire = 0) - loss|`` for each wire of ``groups``."""
    base = float(loss_closure())
    flat = angles.view(-1)
    out = {}
    for wire, idx in groups.items():
        saved = flat[idx].clone()
        flat[idx] = 0
        out[wire] = abs(float(loss_closure()) - base)
        flat[idx] = saved
    return out


def prune_wires(
    angles: torch.Tensor,
    groups: Mapping[int, list[int]],
    wires: list[int],
    *,
    masker: Masker | None = None,
) -> Masker:
    """Set every trainable angle on ``wires`` to 0 (kept through optimiser steps)."""
    mask = torch.ones_like(angles)
    for w in wires:
        if w not in groups:
            raise arg_error("wires", f"wire {w} has no trainable angles; wires: {sorted(groups)}")
        mask.view(-1)[groups[w]] = 0
    masker = masker or Masker()
    masker.add(angles, mask)
    return masker
