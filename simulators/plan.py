"""Execution plans of the torch engine: the names of :mod:`.plan_compile` (a circuit's
structure -> steps), :mod:`.plan_exec` (the steps and how a plan runs) and
:mod:`.plan_state` (the state a step takes and returns, and the run's fixed inputs)
and :mod:`.plan_super` (a density matrix's noisy region as superoperator blocks) in one
place.

>>> from qsem.circuits import Circuit, CNOT, SWAP
>>> c = Circuit.qubits(2).add(CNOT(wires=[0, 1]), SWAP(wires=[0, 1]))
>>> plan = compile_plan(c, "statevector")
>>> [type(s).__name__ for s in plan.steps]
['PermutationStep']
"""

from __future__ import annotations

from .plan_compile import compile_plan
from .plan_exec import (
    FLAT_DM_PERM_LIMIT,
    ChannelStep,
    FusedStep,
    GateStep,
    LocalPermutationStep,
    PermutationStep,
    Plan,
    Step,
    run_plan,
    run_steps,
)
from .plan_state import Context, SimState, StepMode, apply_unitary, factor_to_dense
from .plan_super import SuperStep

__all__ = [
    "FLAT_DM_PERM_LIMIT",
    "ChannelStep",
    "Context",
    "FusedStep",
    "GateStep",
    "LocalPermutationStep",
    "PermutationStep",
    "Plan",
    "SimState",
    "Step",
    "StepMode",
    "SuperStep",
    "apply_unitary",
    "compile_plan",
    "factor_to_dense",
    "run_plan",
    "run_steps",
]
