"""Controlled gates: any control dimensions, mixed with any target dimensions.

``Controlled(base, control_wires, control_values)`` applies ``base`` when the controls
hold ``control_values``; ``CZ``, ``CRX``, ``CRY``, ``CRZ``, ``CSWAP`` and ``Toffoli`` are
named instances. All of them are importable from :mod:`qsem.circuits.gates` and
:mod:`qsem.circuits` as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .errors import DimensionError, QsemTypeError, arg_error
from .gates import (
    RX,
    RY,
    RZ,
    SWAP,
    X,
    Z,
)
from .operations import Gate, Operation, normalize_wires
from .parameters import ParamLike

__all__ = ["CRX", "CRY", "CRZ", "CSWAP", "CZ", "Controlled", "Toffoli"]


class Controlled(Gate):
    """``base`` applied when ``control_wires`` are in ``control_values`` (default all 1).

    Controls and target may have any dimensions: a qubit controlling a qutrit
    ``SWAP`` is ``Controlled(SWAP(wires=[1, 2]), control_wires=[0])``.
    Local wire order is ``control_wires + base.wires``.
    """

    num_wires = None

    def __init__(
        self,
        base: Gate,
        control_wires: object,
        control_values: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(base, Gate):
            raise arg_error("base", f"expected a Gate, got {type(base).__name__}", QsemTypeError)
        ctrl = normalize_wires(control_wires, "control_wires")
        if set(ctrl) & set(base.wires):
            raise arg_error(
                "control_wires", f"{list(ctrl)} overlap the target wires {list(base.wires)}"
            )
        if isinstance(control_values, (int, np.integer)) and not isinstance(control_values, bool):
            control_values = [control_values]
        if control_values is not None and (
            not isinstance(control_values, Sequence)
            or isinstance(control_values, str)
            or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in control_values
            )
        ):
            raise arg_error(
                "control_values",
                f"expected {len(ctrl)} integer level(s), one per control wire, "
                f"got {control_values!r}",
                QsemTypeError,
            )
        values = (
            tuple(int(v) for v in control_values)
            if control_values is not None
            else (1,) * len(ctrl)
        )
        if len(values) != len(ctrl) or min(values) < 0:
            raise arg_error(
                "control_values", f"need {len(ctrl)} non-negative values, got {control_values!r}"
            )
        self.base = base
        self.control_wires = ctrl
        self.control_values = values
        self.params = base.params
        self.wires = ctrl + base.wires

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return self.base.num_params

    @property
    def name(self) -> str:
        return f"C({self.base.name})"

    def label(self) -> str:
        return self.base.label()

    def hyperparameters(self) -> dict[str, Any]:
        return {"control_values": self.control_values, **self.base.hyperparameters()}

    def matrix_key(self) -> tuple[Any, ...]:
        return (type(self), len(self.control_wires), self.control_values, self.base.matrix_key())

    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        base = self.base.with_params(params)
        new = Controlled.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.base = base  # type: ignore[assignment]
        new.params = base.params
        return new

    def check_dims(self, dims: tuple[int, ...]) -> None:
        nc = len(self.control_wires)
        for w, v, d in zip(self.control_wires, self.control_values, dims[:nc], strict=True):
            if v >= d:
                raise DimensionError(
                    f"argument 'control_values': value {v} does not exist on control wire {w} "
                    f"of dimension {d}"
                )
        self.base.check_dims(tuple(dims[nc:]))

    def _block(self, dims: tuple[int, ...]) -> tuple[int, int, int]:
        nc = len(self.control_wires)
        cdims = tuple(dims[:nc])
        dt = math.prod(dims[nc:])
        start = int(np.ravel_multi_index(self.control_values, cdims)) * dt
        return start, dt, math.prod(dims)

    def matrix(self, params, dims, *, dtype=torch.complex64, device=None):
        dims = tuple(dims)
        nc = len(self.control_wires)
        u = self.base.matrix(params, dims[nc:], dtype=dtype, device=device)
        start, dt, dtot = self._block(dims)
        full = torch.eye(dtot, dtype=dtype, device=u.device).expand(*u.shape[:-2], dtot, dtot)
        full = full.clone()
        full[..., start : start + dt, start : start + dt] = u
        return full

    def generator(self, index: int, dims: tuple[int, ...]) -> torch.Tensor:
        dims = tuple(dims)
        g = self.base.generator(index, dims[len(self.control_wires) :])
        start, dt, dtot = self._block(dims)
        full = torch.zeros(dtot, dtot, dtype=torch.complex128)
        full[start : start + dt, start : start + dt] = g
        return full

    def permutation(self, dims: tuple[int, ...]) -> np.ndarray | None:
        dims = tuple(dims)
        base = self.base.permutation(dims[len(self.control_wires) :])
        if base is None:
            return None
        start, dt, dtot = self._block(dims)
        perm = np.arange(dtot)
        perm[start : start + dt] = start + base
        return perm

    def adjoint(self) -> Gate:
        return Controlled(self.base.adjoint(), self.control_wires, self.control_values)


class _NamedControlled(Controlled):
    """A controlled gate with a conventional name; first wire(s) control."""

    n_controls: ClassVar[int] = 1
    n_params: ClassVar[int] = 0

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        raise NotImplementedError

    def __init__(self, *params: ParamLike, wires: object) -> None:
        if len(params) != self.n_params:
            raise arg_error(
                "params",
                f"{type(self).__name__} takes {self.n_params} parameter(s), got {len(params)}",
            )
        w = normalize_wires(wires)
        if len(w) != self.n_controls + self._n_targets():
            raise arg_error(
                "wires",
                f"{type(self).__name__} acts on "
                f"{self.n_controls + self._n_targets()} wires, got {list(w)}",
            )
        super().__init__(self._base(params, w[self.n_controls :]), w[: self.n_controls])

    def _n_targets(self) -> int:
        return 1

    @property
    def name(self) -> str:
        return type(self).__name__

    def with_params(self, params: Sequence[ParamLike]) -> Operation:
        return type(self)(*params, wires=self.wires)

    def adjoint(self) -> Gate:
        if self.num_params:
            base_adj = self.base.adjoint()
            return type(self)(*base_adj.params, wires=self.wires)
        return self


class CZ(_NamedControlled):
    """Controlled Z."""

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return Z(wires=target)


class CRX(_NamedControlled):
    """Controlled RX(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RX(params[0], wires=target)


class CRY(_NamedControlled):
    """Controlled RY(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RY(params[0], wires=target)


class CRZ(_NamedControlled):
    """Controlled RZ(θ)."""

    n_params = 1

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return RZ(params[0], wires=target)


class CSWAP(_NamedControlled):
    """Fredkin gate: controlled SWAP (any equal target dims; control of any dim, value 1)."""

    def _n_targets(self) -> int:
        return 2

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return SWAP(wires=target)


class Toffoli(_NamedControlled):
    """Doubly controlled X."""

    n_controls = 2

    def _base(self, params: Sequence[ParamLike], target: tuple[int, ...]) -> Gate:
        return X(wires=target)
