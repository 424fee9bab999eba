"""Typed semantic tensors φ, Φ, Ψ, Λ, Ω.

Each class wraps one torch tensor (``.data``) with named axes (``.axes``, batch
first where there is one), validates it on construction (shape, normalisation,
dtype; errors name the argument) and keeps autograd intact: the operations are
plain torch code, so gradients flow from Ω or φ back to logits and weights.
Pass ``check=False`` to skip the (synchronising) value checks inside a training
loop; shapes and dtypes are always checked.

Axes: ``B`` branches (batch), ``L`` positions, ``S`` semantic spin (3 = truth
T/F/U), ``C`` categories, ``O`` operator axis (``O = S·C``), ``P`` emergence
slices, ``Z`` holographic latents, ``Psi`` purification components.

=========  ==================================  ==============================================
tensor     shape                               definition
=========  ==================================  ==============================================
``Phi``     (B,) L×S×C, real                   φ[l] = Σ_v softmax(z[l])_v e_v; sums to 1
``PhiOps``  (B,) L×S×C×O, O = S·C              operators M_l; A ⊗' B = AB + λ[A, B]; left fold
``Psi``     B×L×S×C×P, real                    slice p: a distribution over S×C
``Lambda``  B×L×S×C×P×Z, real                  component (p, z): a distribution over S×C
``Omega``   B×L×S×C×P×Z×Psi, complex           purification of ρ on H_S ⊗ H_C ⊗ H_Z per (b,l,p)
=========  ==================================  ==============================================

Wire layout of Ω (for each ``(b, l, p)``): the amplitudes ``Ω[b, l, s, c, p, z, ψ]``
are the ``ψ``-th purification component of a state of the register
``dims = [S] + [2]*n_c + [2]*n_z`` — wire 0 is the S qudit (a qutrit for S = 3),
wires ``1..n_c`` the C register (wire 1 the most significant bit of ``c``) and
wires ``n_c+1..n_c+n_z`` the Z register (most significant bit first). The basis
index of ``|s, c, z>`` is ``(s·2^n_c + c)·2^n_z + z``, exactly the index a qsem
``Circuit(dims)`` uses (wire 0 most significant). So Ω's ``C`` axis has ``2^n_c``
entries (the C register) and ``Z`` has ``2^n_z``; ``n_categories <= 2^n_c`` of the C
basis states carry categories: category ``k`` is basis state ``|k>`` of the C
register (``k`` written in binary on wires ``1..n_c``). An S axis of size 1 means
the register has no S wire (``dims = [2]*n_c + [2]*n_z``, the C register from wire 0):
profile AGI-D's circuit.

Π_edge(Ω) -> φ: Born probabilities ``Σ_{z,ψ} |Ω[b,l,s,c,p,z,ψ]|²`` (the partial
trace over Z of ``ρ = Σ_ψ Ω_ψ Ω_ψ^†``, read on its diagonal), restricted to the
``n_categories`` category states of C and renormalised per ``(b, l, p)`` (the
weight on the unused C basis states ``|k>``, ``k >= n_categories``, is discarded and
the rest rescaled to sum to 1; with ``n_categories = 2^n_c`` nothing is discarded),
then a weighted mean over B and P.

The package's modules: :mod:`~qsem.tensors.base` (checks, the common base),
:mod:`~qsem.tensors.phi` (φ), :mod:`~qsem.tensors.ops` (Φ: ⊗', fold, NCI),
:mod:`~qsem.tensors.psi` (Ψ), :mod:`~qsem.tensors.lam` (Λ, proj_{Z→S,C}),
:mod:`~qsem.tensors.omega` (Ω and its wire layout), :mod:`~qsem.tensors.projection`
(Π_edge, exact and compressed). Import the names from ``qsem.tensors``.

One hierarchy: the layers of :mod:`qsem.layers` and :class:`qsem.models.SemanticModel`
call these functions (``compose``/``fold`` in the composer, ``Lambda.project`` in the
holographic reducer, ``omega_dims``/``Omega.from_state`` in the quantum layer,
``pi_edge_born`` for the prediction distribution); see the "Semantic tensors" page of
the documentation.
"""

from __future__ import annotations

from .base import NORM_ATOL
from .lam import Lambda
from .omega import Omega, omega_dims
from .ops import PhiOps, commutator, compose, fold, nci, nci_avg
from .phi import Phi, semantic_embedding
from .projection import (
    Compression,
    EdgeCompression,
    pi_edge,
    pi_edge_born,
    pi_edge_compressed,
    top_slices,
    truncated_svd,
)
from .psi import Psi

__all__ = [
    "NORM_ATOL",
    "Compression",
    "EdgeCompression",
    "Lambda",
    "Omega",
    "Phi",
    "PhiOps",
    "Psi",
    "commutator",
    "compose",
    "fold",
    "nci",
    "nci_avg",
    "omega_dims",
    "pi_edge",
    "pi_edge_born",
    "pi_edge_compressed",
    "semantic_embedding",
    "top_slices",
    "truncated_svd",
]
