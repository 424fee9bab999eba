"""ReLU MLPs, their hidden-neuron groups, and a seed-parallel ensemble of MLPs.

A *neuron group* is one hidden layer seen as a set of neurons: hidden neuron
``j`` owns row ``j`` of the layer producing it (``in_layer.weight[j]``,
``in_layer.bias[j]``) and column ``j`` of the layer consuming it
(``out_layer.weight[:, j]``). Ablation, pruning and group lasso all act on
these groups, so they work on any model whose Linear layers are chained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from qsem.checks import check_int
from qsem.circuits.errors import QsemTypeError, arg_error

if TYPE_CHECKING:
    from qsem.models import SemanticModel

__all__ = [
    "EnsembleMLP",
    "NeuronGroup",
    "build_mlp",
    "composer_group",
    "count_hidden",
    "neuron_groups",
]


def build_mlp(
    in_dim: int,
    widths: Sequence[int],
    out_dim: int,
    *,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """``Linear(in, w0), ReLU, Linear(w0, w1), ReLU, ..., Linear(w_last, out)``.

    Initialised like :class:`torch.nn.Linear` (uniform ``±1/sqrt(fan_in)``), from
    ``generator`` when given (else torch's global generator).
    """
    check_int("in_dim", in_dim, 1)
    check_int("out_dim", out_dim, 1)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise arg_error("widths", f"expected a list of layer widths, got {widths!r}", QsemTypeError)
    for w in widths:
        check_int("widths", w, 1)
    dims = [in_dim, *widths, out_dim]
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        lin = nn.Linear(dims[i], dims[i + 1])
        if generator is not None:
            bound = 1.0 / math.sqrt(dims[i])
            with torch.no_grad():
                lin.weight.copy_(torch.rand(lin.weight.shape, generator=generator) * 2 - 1)
                lin.weight.mul_(bound)
                lin.bias.copy_((torch.rand(lin.bias.shape, generator=generator) * 2 - 1) * bound)
        layers.append(lin)
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class NeuronGroup:
    """Hidden layer ``name``: neurons are rows of ``in_layer`` and columns of ``out_layer``."""

    name: str
    in_layer: nn.Linear
    out_layer: nn.Linear

    @property
    def size(self) -> int:
        return self.in_layer.out_features


def neuron_groups(model: nn.Module) -> list[NeuronGroup]:
    """The hidden layers of ``model``: consecutive Linear layers (module order) that chain.

    Consecutive Linear modules ``a``, ``b`` of ``model.modules()`` with
    ``a.out_features == b.in_features`` form a group. This is right for
    feed-forward stacks (``nn.Sequential`` and models that register their
    Linear layers in call order); build :class:`NeuronGroup` by hand otherwise.
    """
    if not isinstance(model, nn.Module):
        raise arg_error("model", f"expected a torch.nn.Module, got {type(model)}", QsemTypeError)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    groups = []
    for (name, a), (_, b) in itertools.pairwise(linears):
        if a.out_features == b.in_features and a.bias is not None:
            groups.append(NeuronGroup(name or "0", a, b))
    if not groups:
        raise arg_error("model", "has no hidden layer (two chained nn.Linear layers)")
    return groups


def composer_group(model: SemanticModel) -> NeuronGroup:
    """The composer MLP's hidden layer of a :class:`~qsem.models.SemanticModel` as a
    neuron group (the model's unit of size, for pruning and narrowing)."""
    net = model.composer.net
    return NeuronGroup("composer", net[0], net[2])  # type: ignore[arg-type]


def count_hidden(model: nn.Module, masks: dict[str, torch.Tensor] | None = None) -> int:
    """Number of hidden neurons (kept ones only, given keep ``masks`` by group name)."""
    total = 0
    for g in neuron_groups(model):
        total += int(masks[g.name].sum()) if masks and g.name in masks else g.size
    return total


class EnsembleMLP(nn.Module):
    """``E`` independent ReLU MLPs evaluated in one batched pass.

    Input ``(E, B, in_dim)``, output ``(E, B, out_dim)``. Member ``e`` is
    initialised exactly like :func:`build_mlp` with ``generators[e]``, and since
    Adam is element-wise, training the sum of the members' losses with one Adam
    is the same as training each member with its own Adam.
    """

    def __init__(
        self,
        in_dim: int,
        widths: Sequence[int],
        out_dim: int,
        generators: Sequence[torch.Generator],
    ) -> None:
        super().__init__()
        if not generators:
            raise arg_error("generators", "give one generator per ensemble member")
        members = [build_mlp(in_dim, widths, out_dim, generator=g) for g in generators]
        linears = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in members]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in linears]))
            for i in range(len(linears[0]))
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach()[None, :] for ls in linears]))
            for i in range(len(linears[0]))
        )

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> EnsembleMLP:
        """Stack MLPs of one architecture (e.g. pruned copies of one net) into an ensemble."""
        if not models:
            raise arg_error("models", "give at least one model")
        lins = [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models]
        shapes = [tuple(tuple(lin.weight.shape) for lin in ls) for ls in lins]
        if len(set(shapes)) != 1:
            raise arg_error("models", f"all models need the same Linear shapes, got {set(shapes)}")
        ens = cls.__new__(cls)
        nn.Module.__init__(ens)
        ens.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().T.clone() for ls in lins]))
            for i in range(len(lins[0]))
        )
        ens.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach()[None, :].clone() for ls in lins]))
            for i in range(len(lins[0]))
        )
        return ens

    def neuron_masks(self, keep: Sequence[Sequence[torch.Tensor]]) -> list[tuple]:
        """``(param, mask)`` pairs removing hidden neurons: ``keep[e][layer]`` is a bool ``(H,)``.

        Feed them to :meth:`qsem.narrow.prune.Masker.add`.
        """
        out = []
        for i in range(len(self.weights) - 1):
            k = torch.stack([torch.as_tensor(keep[e][i]) for e in range(self.members)])
            k = k.to(self.weights[i].dtype)
            out.append((self.weights[i], k[:, None, :].expand_as(self.weights[i]).clone()))
            out.append((self.biases[i], k[:, None, :].clone()))
            out.append((self.weights[i + 1], k[:, :, None].expand_as(self.weights[i + 1]).clone()))
        return out

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
        return h

    def member(self, e: int) -> nn.Sequential:
        """Member ``e`` as a standalone :func:`build_mlp` network (a copy)."""
        dims = [self.weights[0].shape[1]] + [w.shape[2] for w in self.weights]
        mlp = build_mlp(dims[0], dims[1:-1], dims[-1])
        lins = [m for m in mlp if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(lins, self.weights, self.biases, strict=True):
                lin.weight.copy_(w[e].T)
                lin.bias.copy_(b[e, 0])
        return mlp
