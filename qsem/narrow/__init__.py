"""Narrowing tools: make a broad network narrow, and compare ways to do it.

* :mod:`~qsem.narrow.cmsp` — compositional multitask sparse parity, fresh seeded samples;
* :mod:`~qsem.narrow.mlp` — ReLU MLPs, their hidden-neuron groups, seed-parallel ensembles;
* :mod:`~qsem.narrow.ablation` — neuron ablation scores;
* :mod:`~qsem.narrow.prune` — one-shot pruning (score, random, attribution), angle pruning;
* :mod:`~qsem.narrow.group_lasso` — the neuron group-lasso penalty;
* :mod:`~qsem.narrow.distill` — distillation loss;
* :mod:`~qsem.narrow.train` — training and evaluation loops;
* :mod:`~qsem.narrow.data` — 8×8 digits and MNIST IDX files.
"""

from __future__ import annotations

from .ablation import ablation_scores, ablation_scores_exact
from .cmsp import CMSP, make_generator
from .data import load_digits_8x8, load_mnist_idx, read_idx
from .distill import distillation_loss
from .group_lasso import group_lasso_penalty, neuron_norms
from .mlp import EnsembleMLP, NeuronGroup, build_mlp, count_hidden, neuron_groups
from .prune import (
    Masker,
    angle_ablation_scores,
    angle_magnitude_scores,
    angle_wire_groups,
    attribution_scores,
    keep_masks,
    prune_angles,
    prune_neurons,
    prune_wires,
    random_scores,
    wire_ablation_scores,
)
from .train import accuracy, evaluate, torch_threads, train_steps, train_until

__all__ = [
    "CMSP",
    "EnsembleMLP",
    "Masker",
    "NeuronGroup",
    "ablation_scores",
    "ablation_scores_exact",
    "accuracy",
    "angle_ablation_scores",
    "angle_magnitude_scores",
    "angle_wire_groups",
    "attribution_scores",
    "build_mlp",
    "count_hidden",
    "distillation_loss",
    "evaluate",
    "group_lasso_penalty",
    "keep_masks",
    "load_digits_8x8",
    "load_mnist_idx",
    "make_generator",
    "neuron_groups",
    "neuron_norms",
    "prune_angles",
    "prune_neurons",
    "prune_wires",
    "random_scores",
    "read_idx",
    "torch_threads",
    "train_steps",
    "train_until",
    "wire_ablation_scores",
]
