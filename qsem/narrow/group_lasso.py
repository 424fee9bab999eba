"""Group lasso over hidden neurons: ``Σ_j sqrt(‖W_in[j]‖² + b[j]² + ‖W_out[:, j]‖²)``."""

from __future__ import annotations

import torch
from torch import nn

from qsem.checks import check_real

from .mlp import NeuronGroup, neuron_groups

__all__ = ["group_lasso_penalty", "neuron_norms"]


def neuron_norms(group: NeuronGroup) -> torch.Tensor:
    """``(H,)``: the Euclidean norm of each neuron's in-row, bias and out-column together."""
    parts = [group.in_layer.weight, group.out_layer.weight.T]
    if group.in_layer.bias is not None:
        parts.insert(1, group.in_layer.bias[:, None])
    return torch.linalg.vector_norm(torch.cat(parts, dim=1), dim=1)


def group_lasso_penalty(
    model: nn.Module, lam: float = 1.0, *, groups: list[NeuronGroup] | None = None
) -> torch.Tensor:
    """``lam`` times the sum of :func:`neuron_norms` over every hidden layer (differentiable).

    At a zero group the gradient is 0 (torch's subgradient of the norm).
    """
    lam = check_real("lam", lam, minimum=0)
    groups = neuron_groups(model) if groups is None else groups
    return lam * sum((neuron_norms(g).sum() for g in groups), torch.zeros(()))
