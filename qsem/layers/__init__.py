"""Torch layers of the semantic tensor hierarchy φ -> Φ -> Ψ -> Λ -> Ω.

All layers are batch first. The maths (⊗' and the fold, ``proj_{Z→S,C}``, the
layout of Ω, Π_edge) is :mod:`qsem.tensors`'s: the layers call it. Axis letters
follow the semantic hierarchy: B batch, L positions, S semantic spin (3 = truth {T, F, U}),
C categories, O = S·C operator axis, P emergence slices, Z holographic latent
components.

* :class:`SemanticEncoder` -- token ids ``(B, L)`` -> φ ``(B, L, S, C)``;
* :class:`NonCommutativeComposer` -- φ -> per-position operators Φ
  ``(B, L, O, O)`` and their left fold with ``A ⊗' B = AB + λ[A, B]``;
* :class:`EmergenceStack` -- Ψ ``(B, L, S, C, P)``, one more slice per
  emergence event (:meth:`EmergenceStack.add_slice`);
* :class:`HolographicReducer` -- Λ ``(B, L, S, C, P, Z)`` and its projection
  back to ``(S, C)``;
* :class:`QuantumSemanticLayer` -- Ω: a circuit per (b, l) on a qutrit S
  register and qubit C and Z registers, angle encoded from the classical
  features; its state (a :class:`qsem.tensors.Omega`) and Born probabilities out;
* readout heads :class:`QutritTruthHead`, :class:`SoftmaxHead`,
  :class:`TwoQubitHead`.
"""

from __future__ import annotations

from .composer import NonCommutativeComposer
from .emergence import EmergenceStack
from .encoder import SemanticEncoder
from .heads import QutritTruthHead, SoftmaxHead, TwoQubitHead, make_head
from .holographic import HolographicReducer
from .quantum import QuantumSemanticLayer

__all__ = [
    "EmergenceStack",
    "HolographicReducer",
    "NonCommutativeComposer",
    "QuantumSemanticLayer",
    "QutritTruthHead",
    "SemanticEncoder",
    "SoftmaxHead",
    "TwoQubitHead",
    "make_head",
]
