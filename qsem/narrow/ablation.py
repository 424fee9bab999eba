"""Neuron ablation scores: |loss change| when one hidden neuron is removed.

Removing hidden neuron ``j`` of a :class:`~qsem.narrow.mlp.NeuronGroup` zeroes
its in-row, its bias and its out-column. For a ReLU network (any activation
with ``f(0) = 0``) whose hidden activation feeds only ``out_layer``, that is
the same as zeroing input ``j`` of ``out_layer``, which is what
:func:`ablation_scores` does for a whole chunk of neurons in one batched
forward pass. :func:`ablation_scores_exact` zeroes the weights one neuron at a
time (slow; the reference).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from qsem.checks import check_int
from qsem.circuits.errors import arg_error

from .mlp import NeuronGroup, neuron_groups

__all__ = ["ablation_scores", "ablation_scores_exact"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise arg_error("x", "expected a tensor of inputs (batch, features)")
    if not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]:
        raise arg_error(
            "y", f"expected {x.shape[0]} targets matching x, got {getattr(y, 'shape', y)}"
        )


@torch.no_grad()
def ablation_scores(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    groups: list[NeuronGroup] | None = None,
    chunk: int = 64,
) -> dict[str, torch.Tensor]:
    """``|CE(ablated) - CE(model)|`` on ``(x, y)`` for every hidden neuron, by group name.

    Neurons are ablated ``chunk`` at a time in one batched forward pass (memory
    ``chunk * len(x)`` rows); the loss is the mean cross-entropy in nats.
    """
    _check_data(x, y)
    check_int("chunk", chunk, 1)
    groups = neuron_groups(model) if groups is None else groups
    base = F.cross_entropy(model(x), y)
    out: dict[str, torch.Tensor] = {}
    b = x.shape[0]
    for g in groups:
        h = g.size
        scores = torch.empty(h, dtype=base.dtype, device=x.device)
        for j0 in range(0, h, chunk):
            j1 = min(h, j0 + chunk)
            c = j1 - j0

            def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], j0=j0, c=c) -> tuple:
                a = args[0]
                rep = a.unsqueeze(0).repeat(c, *([1] * a.ndim))
                idx = torch.arange(c, device=a.device)
                rep[idx, ..., j0 + idx] = 0
                return (rep.reshape(c * a.shape[0], *a.shape[1:]),)

            handle = g.out_layer.register_forward_pre_hook(hook)
            try:
                logits = model(x)
            finally:
                handle.remove()
            logits = logits.reshape(c, b, -1)
            ce = (
                F.cross_entropy(logits.reshape(c * b, -1), y.repeat(c), reduction="none")
                .view(c, b)
                .mean(dim=1)
            )
            scores[j0:j1] = (ce - base).abs()
        out[g.name] = scores
    return out


@torch.no_grad()
def ablation_scores_exact(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    groups: list[NeuronGroup] | None = None,
    loss_fn: LossFn | None = None,
) -> dict[str, torch.Tensor]:
    """Reference: zero each neuron's in-row, bias and out-column in turn, measure, restore."""
    _check_data(x, y)
    fn = loss_fn or F.cross_entropy
    groups = neuron_groups(model) if groups is None else groups
    base = fn(model(x), y)
    out = {}
    for g in groups:
        scores = torch.empty(g.size, dtype=base.dtype)
        w_in, b_in, w_out = g.in_layer.weight, g.in_layer.bias, g.out_layer.weight
        for j in range(g.size):
            saved = (w_in[j].clone(), b_in[j].clone(), w_out[:, j].clone())
            w_in[j], b_in[j], w_out[:, j] = 0, 0, 0
            scores[j] = (fn(model(x), y) - base).abs()
            w_in[j], b_in[j], w_out[:, j] = saved
        out[g.name] = scores
    return out
