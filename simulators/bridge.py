"""The hybrid autograd bridge: circuits on any backend inside torch autograd.

The forward pass runs on a backend (torch engine, Qiskit Aer, PennyLane); the
backward pass uses parameter-shift rules derived from each gate's generator
(two-term for eigenvalues ``±1/2``, general otherwise; :mod:`qsem.circuits.shift`),
with every shifted circuit of the whole batch sent to the backend in ONE call.

How parameters reach the circuit: every gate-parameter occurrence becomes its
own scalar column ``θ_j`` of a matrix ``Θ`` (B, J). ``Θ`` is built from the
user's bound values with ordinary torch ops (index, scale, broadcast), so
autograd carries the chain rule to inputs and weights, batched or not, shared
parameters and scaled parameters (``2 * x``) included. Only ``Θ -> outputs``
crosses the backend, through :class:`ShiftFunction`.

>>> import torch
>>> from qsem.circuits import Circuit, Parameter, RY, PauliString
>>> c = Circuit.qubits(1).add(RY(Parameter("x"), wires=0))
>>> x = torch.tensor([0.3, 1.2], dtype=torch.float64, requires_grad=True)
>>> out = expval_bridge(c, {"x": x}, [PauliString("Z", wires=[0])], backend="torch")
>>> out.sum().backward()
>>> torch.allclose(x.grad, -torch.sin(x.detach()))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import MissingDependencyError, QsemTypeError, arg_error
from qsem.circuits.observables import Observable, as_observables

from .backend import Backend, TorchBackend, check_shots
from .parameter_shift import Expanded, ShiftFunction, _Job, expand, theta_matrix

BACKENDS = ("torch", "aer", "pennylane")


def make_backend(backend: str | Backend, **options: Any) -> Backend:
    """A backend by name (``"torch"``, ``"aer"``, ``"pennylane"``) or the instance given."""
    if isinstance(backend, Backend):
        return backend
    if backend == "torch":
        return TorchBackend(**options)
    if backend == "aer":
        try:
            from .aer import AerBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                f"argument 'backend': 'aer' needs Qiskit Aer: pip install 'qsem[aer]' ({exc})"
            ) from None
        return AerBackend(**options)
    if backend == "pennylane":
        try:
            from .pennylane_backend import PennyLaneBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "argument 'backend': 'pennylane' needs PennyLane 0.45: "
                f"pip install 'qsem[pennylane]' ({exc})"
            ) from None
        return PennyLaneBackend(**options)
    raise arg_error("backend", f"must be one of {list(BACKENDS)} or a Backend, got {backend!r}")


def _bridge(
    kind: str,
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Sequence[Observable],
    wires: Sequence[int],
    backend: str | Backend,
    shots: int | None,
    seed: int | None,
    diff_method: str,
    expanded: Expanded | None,
    backend_options: Mapping[str, Any],
) -> torch.Tensor:
    shots = check_shots(shots)
    if diff_method not in DIFF_METHODS:
        raise arg_error("diff_method", f"must be one of {list(DIFF_METHODS)}, got {diff_method!r}")
    be = make_backend(backend, **backend_options)
    if diff_method == "adjoint" or (
        diff_method == "best" and prefers_adjoint(kind, circuit, be, shots)
    ):
        return _torch_adjoint(kind, circuit, params, observables, be, shots)
    if diff_method == "backprop" or (
        diff_method == "best" and isinstance(be, TorchBackend) and shots is None
    ):
        if not isinstance(be, TorchBackend):
            raise arg_error("diff_method", f"'backprop' needs backend='torch', got {be.name!r}")
        return _torch_direct(kind, circuit, params, observables, wires, be)
    expanded = expanded or expand(circuit)
    theta, batched, needed = theta_matrix(circuit, expanded, params)
    job = _Job(be, expanded, kind, list(observables), list(wires), shots, seed, needed)
    out = ShiftFunction.apply(theta, job)
    return out if batched else out[0]


#: ``diff_method`` values: parameter shift (any backend), autograd through the engine
#: (``backprop``), the adjoint method (torch backend, statevector expectation values) and
#: ``best`` (backprop on the torch backend without shots, else parameter shift).
DIFF_METHODS = ("parameter-shift", "backprop", "adjoint", "best")


#: ``diff_method="best"`` differentiates a pure-state circuit of at least this register
#: dimension by the adjoint method (time at most that of autograd, memory of a few
#: states instead of one per step); smaller ones by autograd.
ADJOINT_MIN_DIM = 1 << 14


def prefers_adjoint(kind: str, circuit: Circuit, be: Backend, shots: int | None) -> bool:
    """Whether ``"best"`` picks the adjoint method: torch backend, statevector, exact
    expectation values, a register of at least ``ADJOINT_MIN_DIM`` amplitudes."""
    return (
        kind == "expval"
        and shots is None
        and isinstance(be, TorchBackend)
        and be.mode in (None, "statevector")
        and not circuit.has_channels
        and circuit.dim >= ADJOINT_MIN_DIM
    )


def _torch_adjoint(
    kind: str,
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Sequence[Observable],
    be: Backend,
    shots: int | None,
) -> torch.Tensor:
    """Expectation values differentiated by :func:`qsem.simulators.adjoint_expval`."""
    if not isinstance(be, TorchBackend) or kind != "expval" or shots is not None:
        raise arg_error(
            "diff_method",
            "'adjoint' needs backend='torch', exact expectation values (observables, "
            f"shots=None); got backend {be.name!r}, {kind}, shots={shots}",
        )
    from .adjoint import adjoint_expval

    return adjoint_expval(circuit, params, observables, dtype=be.dtype, device=be.device).to(
        torch.float64
    )


def _torch_direct(
    kind: str,
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Sequence[Observable],
    wires: Sequence[int],
    be: TorchBackend,
) -> torch.Tensor:
    from .engine import TorchSimulator
    from .measure import expval, probs

    mode = be.mode or ("density_matrix" if circuit.has_channels else "statevector")
    state = TorchSimulator(mode, dtype=be.dtype, device=be.device).run(circuit, params)
    if kind == "expval":
        return expval(state, list(observables)).to(torch.float64)
    return probs(state, list(wires)).to(torch.float64)


def expval_bridge(
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    observables: Observable | Sequence[Observable],
    *,
    backend: str | Backend = "torch",
    shots: int | None = None,
    seed: int | None = None,
    diff_method: str = "parameter-shift",
    **backend_options: Any,
) -> torch.Tensor:
    """Expectation values ``(B, K)`` (or ``(K,)``) on ``backend``, differentiable by shifts.

    ``diff_method="backprop"`` (torch backend only) differentiates the engine by
    autograd instead, ``"adjoint"`` (torch backend, statevector) by the adjoint method
    (:func:`qsem.simulators.adjoint_expval`: memory of a few states whatever the
    depth); ``"best"`` picks backprop where it can.
    """
    obs = as_observables(observables, "observables")
    return _bridge(
        "expval", circuit, params, obs, [], backend, shots, seed, diff_method, None, backend_options
    )


def probs_bridge(
    circuit: Circuit,
    params: Mapping[str, Any] | None,
    wires: Sequence[int],
    *,
    backend: str | Backend = "torch",
    shots: int | None = None,
    seed: int | None = None,
    diff_method: str = "parameter-shift",
    **backend_options: Any,
) -> torch.Tensor:
    """Marginal probabilities on ``wires``, differentiable by parameter shifts."""
    w = list(wires)
    bad = [x for x in w if not isinstance(x, int) or not 0 <= x < circuit.num_wires]
    if bad or not w:
        raise arg_error("wires", f"need wires within 0..{circuit.num_wires - 1}, got {w}")
    return _bridge(
        "probs", circuit, params, [], w, backend, shots, seed, diff_method, None, backend_options
    )


class QuantumLayer(torch.nn.Module):
    """A circuit as a torch layer: ``forward(x) -> (B, K)`` on any backend.

    ``circuit`` has a symbolic input (``input_name``: a ``ParameterVector`` bound by
    ``x`` of shape ``(B, n)``, or a scalar bound by ``(B,)``) and trainable weights
    (``weight_shapes``: name -> number of elements; ``ParameterVector`` of that length,
    or 0 for a scalar). The output is ``<O_k>`` for ``observables`` or, with
    ``probs_wires``, the marginal probabilities on those wires.

    Conventions of PennyLane's ``TorchLayer``:

    * the output has the dtype of the input ``x`` (the simulation itself runs in
      double precision; weights are float64 parameters), so the layer sits between
      float32 ``nn.Linear`` layers;
    * weights start uniform in ``[0, 2π)``, drawn from ``generator`` if given, else
      from a generator seeded by ``seed`` if given, else from torch's global generator
      (so ``torch.manual_seed`` fixes them);
    * ``init_method`` replaces that draw: a function applied in place to every weight
      tensor (e.g. ``torch.nn.init.normal_``), or a mapping weight name -> such a
      function or a tensor of the weight's shape.

    ``seed`` also seeds shot sampling (``shots``). ``readout`` (with ``probs_wires``; a
    :class:`~qsem.circuits.NoiseModel` or :class:`~qsem.circuits.noise.ReadoutError` list)
    maps the probabilities through the readout confusion of those wires
    (:mod:`qsem.simulators.readout`), on every backend.

    ``diff_method``: ``"best"`` (default: on the torch engine without shots, the adjoint
    method for expectation values of a pure-state register of at least 2^14 amplitudes,
    else autograd; parameter shift on other backends or with shots), ``"backprop"``,
    ``"parameter-shift"`` or ``"adjoint"`` (torch backend, expectation values of a
    pure-state circuit: peak memory of a few states whatever the depth).

    >>> import torch
    >>> from qsem.circuits import Circuit, ParameterVector, RY, CNOT, PauliString
    >>> x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    >>> c = Circuit.qubits(2).add(RY(x[0], wires=0), RY(x[1], wires=1), CNOT(wires=[0, 1]))
    >>> _ = c.add(RY(w[0], wires=0), RY(w[1], wires=1))
    >>> obs = [PauliString("Z", wires=[i]) for i in range(2)]
    >>> layer = QuantumLayer(c, obs, weight_shapes={"w": 2})
    >>> layer(torch.rand(5, 2)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        circuit: Circuit,
        observables: Observable | Sequence[Observable] | None = None,
        *,
        input_name: str = "x",
        weight_shapes: Mapping[str, int] | None = None,
        probs_wires: Sequence[int] | None = None,
        backend: str | Backend = "torch",
        shots: int | None = None,
        seed: int | None = None,
        diff_method: str = "best",
        init_method: Callable[[torch.Tensor], Any] | Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
        readout: Any = None,
        **backend_options: Any,
    ) -> None:
        super().__init__()
        if (observables is None) == (probs_wires is None):
            raise arg_error("observables", "give either observables or probs_wires (one of them)")
        self._readout = _layer_readout(readout, circuit, probs_wires)
        self.circuit = circuit
        self.observables = (
            None if observables is None else as_observables(observables, "observables")
        )
        self.probs_wires = None if probs_wires is None else list(probs_wires)
        self.input_name = input_name
        lengths = circuit.parameter_lengths
        if input_name not in lengths:
            raise arg_error(
                "input_name",
                f"the circuit has no parameter named {input_name!r}; it has {sorted(lengths)}",
            )
        gen = _weight_generator(generator, seed)
        self.weights = _layer_weights(lengths, input_name, weight_shapes, gen, init_method)
        self.backend = make_backend(backend, **backend_options)
        _check_layer_diff_method(diff_method, self.backend, observables is not None, shots)
        self.shots = shots
        self.seed = seed
        self.diff_method = diff_method
        self._expanded = expand(circuit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params: dict[str, Any] = {self.input_name: x, **dict(self.weights.items())}
        backprop = self.diff_method == "backprop" or (
            self.diff_method == "best" and self.shots is None
        )
        kind = "expval" if self.observables is not None else "probs"
        if self.diff_method == "adjoint" or (
            self.diff_method == "best"
            and prefers_adjoint(kind, self.circuit, self.backend, self.shots)
        ):
            out = _torch_adjoint(kind, self.circuit, params, self.observables or [],
                                 self.backend, self.shots)  # fmt: skip
        elif isinstance(self.backend, TorchBackend) and backprop:
            out = _torch_direct(
                kind, self.circuit, params, self.observables or [], self.probs_wires or [],
                self.backend,
            )  # fmt: skip
        else:
            out = _bridge(
                kind, self.circuit, params, self.observables or [], self.probs_wires or [],
                self.backend, self.shots, self.seed, "parameter-shift", self._expanded, {},
            )  # fmt: skip
        if self._readout:
            from .readout import apply_readout

            dims = [self.circuit.dims[w] for w in self.probs_wires or []]
            flat = out.reshape(-1, out.shape[-1])
            out = apply_readout(flat, dims, self._readout).reshape(out.shape)
        # TorchLayer's convention: the output has the input's (floating) dtype
        return out.to(x.dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else out


def _layer_readout(readout: Any, circuit: Circuit, probs_wires: Sequence[int] | None) -> list[Any]:
    """The per-wire readout confusions of ``probs_wires`` (``[]`` without ``readout``)."""
    if readout is None:
        return []
    from .readout import marginal_readout, readout_errors

    if probs_wires is None:
        raise arg_error("readout", "applies to probs_wires outputs; give probs_wires")
    errs = readout_errors(readout, circuit.dims)
    return marginal_readout(errs, list(probs_wires))


def _weight_generator(generator: Any, seed: int | None) -> torch.Generator | None:
    """``generator`` if given, else one seeded by ``seed`` if given, else None (global RNG)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise arg_error(
            "generator",
            f"expected a torch.Generator, got {type(generator).__name__}",
            QsemTypeError,
        )
    if generator is None and seed is not None:
        return torch.Generator().manual_seed(seed)
    return generator


def _layer_weights(
    lengths: Mapping[str, int | None],
    input_name: str,
    weight_shapes: Mapping[str, int] | None,
    gen: torch.Generator | None,
    init_method: Any,
) -> torch.nn.ParameterDict:
    """One float64 parameter per entry of ``weight_shapes``, checked against the circuit's
    parameters (``lengths``: name -> vector length, None for a scalar); every circuit
    parameter but ``input_name`` needs one."""
    weights = torch.nn.ParameterDict()
    for name, size in (weight_shapes or {}).items():
        if name not in lengths:
            raise arg_error("weight_shapes", f"the circuit has no parameter named {name!r}")
        expected = lengths[name] or 0
        if (
            isinstance(size, bool)
            or not isinstance(size, int)
            or (expected and size < expected)
            or (not expected and size != 0)
        ):
            raise arg_error(
                "weight_shapes",
                f"{name!r} needs {expected or 'a scalar (0)'} element(s), got {size!r}",
            )
        shape = (size,) if size else ()
        weights[name] = torch.nn.Parameter(_init_weight(name, shape, gen, init_method))
    unbound = [n for n in lengths if n != input_name and n not in (weight_shapes or {})]
    if unbound:
        raise arg_error("weight_shapes", f"no weights declared for circuit parameter(s) {unbound}")
    return weights


def _check_layer_diff_method(
    diff_method: str, backend: Backend, has_observables: bool, shots: int | None
) -> None:
    """Refuse a ``diff_method`` that the layer's backend and outputs cannot serve."""
    if diff_method not in DIFF_METHODS:
        raise arg_error("diff_method", f"must be one of {list(DIFF_METHODS)}, got {diff_method!r}")
    if diff_method == "adjoint" and (
        not isinstance(backend, TorchBackend) or not has_observables or shots is not None
    ):
        raise arg_error(
            "diff_method",
            "'adjoint' needs backend='torch', observables (not probs_wires) and shots=None",
        )
    if diff_method == "backprop" and not isinstance(backend, TorchBackend):
        raise arg_error("diff_method", f"'backprop' needs backend='torch', got {backend.name!r}")


def _init_weight(
    name: str, shape: tuple[int, ...], gen: torch.Generator | None, init_method: Any
) -> torch.Tensor:
    """A weight's initial value: ``init_method`` (function or per-name mapping) or
    uniform in ``[0, 2π)`` from ``gen`` (torch's global generator when None)."""
    method = init_method
    if isinstance(init_method, Mapping):
        if name not in init_method:
            raise arg_error("init_method", f"no entry for weight {name!r}")
        method = init_method[name]
    if method is None:
        return 2 * math.pi * torch.rand(shape, generator=gen, dtype=torch.float64)
    if isinstance(method, torch.Tensor):
        if tuple(method.shape) != shape:
            raise arg_error(
                "init_method",
                f"weight {name!r} needs shape {shape}, got {tuple(method.shape)}",
            )
        return method.detach().to(torch.float64).clone()
    if not callable(method):
        raise arg_error(
            "init_method",
            f"expected a function, a tensor or a mapping of them, got {type(method).__name__}",
            QsemTypeError,
        )
    t = torch.empty(shape, dtype=torch.float64)
    out = method(t)
    return (out if isinstance(out, torch.Tensor) else t).detach().to(torch.float64)
