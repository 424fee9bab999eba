"""Ω: per-position circuits on a qutrit S register and qubit C and Z registers."""

from __future__ import annotations

import itertools
import math

import torch

from qsem.checks import check_int
from qsem.circuits import CRY, RY, RZ, TRY, TRZ, Circuit, Controlled, Depolarizing, Parameter
from qsem.circuits.errors import arg_error
from qsem.simulators import State, TorchSimulator, probs, probs_bridge
from qsem.tensors import Omega, omega_dims

from ._checks import check_tensor


def register_sizes(s_dim: int, c_dim: int, z_dim: int) -> tuple[int, int, int]:
    """Wires of the S, C and Z registers: ``(1 or 0, ⌈log2 C⌉, ⌈log2 Z⌉)`` (0 for size 1)."""
    n_s = 1 if s_dim > 1 else 0
    n_c = math.ceil(math.log2(c_dim)) if c_dim > 1 else 0
    n_z = math.ceil(math.log2(z_dim)) if z_dim > 1 else 0
    return n_s, n_c, n_z


_EPS = 1e-6


def _chain_angles(p: torch.Tensor) -> torch.Tensor:
    """``θ_j = 2 acos √(p_j / Σ_{k>=j} p_k)`` for ``j < d-1``: ``TRY(θ_j, (j, j+1))`` in turn
    load ``p`` (last axis, d levels) into a qudit starting in ``|0>``."""
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(_EPS)
    tail = torch.flip(torch.cumsum(torch.flip(p, [-1]), dim=-1), [-1])
    ratio = (p[..., :-1] / tail[..., :-1].clamp_min(_EPS)).clamp(_EPS, 1 - _EPS)
    return 2 * torch.acos(torch.sqrt(ratio))


def _qubit_angles(p: torch.Tensor, n: int) -> torch.Tensor:
    """``RY`` angles loading the per-qubit marginals of ``p`` (padded to ``2**n``) into n qubits."""
    if n == 0:
        return p[..., :0]
    pad = torch.nn.functional.pad(p, (0, 2**n - p.shape[-1]))
    pad = pad / pad.sum(dim=-1, keepdim=True).clamp_min(_EPS)
    bits = pad.reshape(*p.shape[:-1], *([2] * n))
    angles = []
    for q in range(n):
        others = [a for a in range(-n, 0) if a != -n + q]
        p1 = bits.sum(dim=others)[..., 1] if others else bits[..., 1]
        angles.append(2 * torch.asin(torch.sqrt(p1.clamp(_EPS, 1 - _EPS))))
    return torch.stack(angles, dim=-1)


class QuantumSemanticLayer(torch.nn.Module):
    """Ω: one circuit per ``(b, l)``, angle encoded from classical features.

    Wires, most significant first: the S register (one wire of dimension
    ``s_dim``, a qutrit by default; absent when ``s_dim = 1``), the C register
    (``⌈log2 c_dim⌉`` qubits) and the Z register (``⌈log2 z_dim⌉`` qubits): the
    layout of :class:`qsem.tensors.Omega` (:func:`qsem.tensors.omega_dims`).

    Circuit: angle encoding. With ``encoding="linear"`` the angles are
    ``a = s (W x + β)`` (``s = angle_scale``). With ``encoding="born"`` (default)
    the features are read as ``x = [vec dist (S·C), latent (Z)]`` and the angles
    are ``a = born_angles(x) + s (W x + β)`` with ``W, β`` starting at zero:
    ``born_angles`` loads the S marginal of ``dist`` into the S wire exactly
    (``θ_j = 2 acos √(p_j / Σ_{k>=j} p_k)``, so the Born probabilities of the
    encoded qutrit ARE that marginal) and the per-qubit marginals of the C
    distribution and of the latent weights into the C and Z qubits (a product
    state: correlations between qubits of one register are not encoded). The
    encoding gates are: ``TRY(a, (j, j+1))`` for ``j < d-1`` on the S wire and ``RY(a)``
    on each qubit; then ``layers`` trainable layers of ``TRY``/``TRZ`` on every
    subspace ``(j, j+1)`` of the S wire and ``RY``, ``RZ`` on each qubit,
    followed by entanglers (each qubit controls a trainable ``TRY(w, (0, 1))`` of
    the S wire, and a chain of trainable ``CRY`` along the qubits); trainable
    weights start near 0, so at initialisation every register's readout is close
    to its encoded marginal (no fixed entangler permutes the outcomes: a ``CNOT``
    here would send the two-qubit head's ``|10>`` to the excluded ``|11>``);
    with ``noise > 0`` a ``Depolarizing(noise)`` channel on every wire after each
    layer (density-matrix simulation).

    ``backend="torch"`` (default) runs all ``B·L`` circuits as ONE batched
    ``TorchSimulator.run`` (autograd through the engine); any other backend (or
    ``bridge=True``) goes through :func:`qsem.simulators.probs_bridge`: one
    backend job for all ``B·L`` rows, parameter-shift gradients. Backends that
    cannot mix qubits and qutrits (PennyLane) need ``s_dim`` in ``{1, 2}``.

    ``forward(x)`` with ``x`` ``(B, L, in_features)`` returns the joint Born
    probabilities ``(B, L, dS, 2**n_c, 2**n_z)`` (a size-1 axis for an absent
    register); they sum to 1 per ``(b, l)``. :meth:`simulate` runs the circuits once
    and returns the bindings, the simulated :class:`~qsem.simulators.State` (torch
    engine only; ``None`` on other backends, which return probabilities) and those
    Born probabilities; :meth:`state` the State alone, :meth:`to_omega` the State as
    a :class:`qsem.tensors.Omega`.
    """

    def __init__(
        self,
        in_features: int,
        s_dim: int = 3,
        c_dim: int = 2,
        z_dim: int = 2,
        layers: int = 1,
        noise: float = 0.0,
        backend: str = "torch",
        init_scale: float = 0.1,
        angle_scale: float = math.pi,
        encoding: str = "born",
        bridge: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.s_dim = check_int("s_dim", s_dim, 1)
        self.c_dim = check_int("c_dim", c_dim, 1)
        self.z_dim = check_int("z_dim", z_dim, 1)
        self.layers = check_int("layers", layers, 0)
        if not (0.0 <= float(noise) <= 1.0):
            raise arg_error("noise", f"must lie in [0, 1], got {noise}")
        self.noise = float(noise)
        self.angle_scale = float(angle_scale)
        if encoding not in ("born", "linear"):
            raise arg_error("encoding", f"expected 'born' or 'linear', got {encoding!r}")
        self.encoding = encoding
        if not isinstance(backend, str):
            raise arg_error("backend", f"expected a backend name, got {type(backend).__name__}")
        self.backend = backend
        self.bridge = bool(bridge)
        n_s, n_c, n_z = register_sizes(self.s_dim, self.c_dim, self.z_dim)
        if n_s + n_c + n_z == 0:
            raise arg_error(
                "s_dim", "the circuit needs at least one wire (s_dim, c_dim or z_dim > 1)"
            )
        self.n_wires = (n_s, n_c, n_z)
        self.dims = omega_dims(self.c_dim, n_z, self.s_dim)
        self.circuit, self.n_inputs, self.n_weights = self._build()
        if encoding == "born" and self.in_features != self.s_dim * self.c_dim + self.z_dim:
            raise arg_error(
                "in_features",
                f"the 'born' encoding reads [dist (S·C), latent (Z)] = "
                f"{self.s_dim * self.c_dim + self.z_dim} features, got {self.in_features}",
            )
        self.encoder = torch.nn.Linear(self.in_features, self.n_inputs)
        if encoding == "born":
            torch.nn.init.zeros_(self.encoder.weight)
            torch.nn.init.zeros_(self.encoder.bias)
        self.weights = torch.nn.Parameter(init_scale * torch.randn(self.n_weights))
        self._sims: dict[torch.dtype, TorchSimulator] = {}

    # -- circuit ---------------------------------------------------------------
    def _build(self) -> tuple[Circuit, int, int]:
        c = Circuit(self.dims)
        n_s = self.n_wires[0]
        qubits = list(range(n_s, len(self.dims)))
        a = iter(range(10**6))
        w = iter(range(10**6))
        if n_s:
            for j in range(self.s_dim - 1):
                c.add(TRY(Parameter(f"a{next(a)}"), wires=0, subspace=(j, j + 1)))
        for q in qubits:
            c.add(RY(Parameter(f"a{next(a)}"), wires=q))
        n_inputs = next(a)
        for _ in range(self.layers):
            if n_s:
                for gate in (TRY, TRZ):
                    for j in range(self.s_dim - 1):
                        c.add(gate(Parameter(f"w{next(w)}"), wires=0, subspace=(j, j + 1)))
            for q in qubits:
                c.add(RY(Parameter(f"w{next(w)}"), wires=q), RZ(Parameter(f"w{next(w)}"), wires=q))
            if n_s:
                for q in qubits:
                    rot = TRY(Parameter(f"w{next(w)}"), wires=0, subspace=(0, 1))
                    c.add(Controlled(rot, control_wires=[q]))
            for q0, q1 in itertools.pairwise(qubits):
                c.add(CRY(Parameter(f"w{next(w)}"), wires=[q0, q1]))
            if self.noise > 0:
                for wire in range(len(self.dims)):
                    c.add(Depolarizing(self.noise, wires=wire))
        return c, n_inputs, next(w)

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding angles ``(B, L, n_inputs)`` of features ``(B, L, in_features)``."""
        check_tensor(x, "x", 3)
        if x.shape[-1] != self.in_features:
            raise arg_error("x", f"expected {self.in_features} features on the last axis, got "
                            f"{x.shape[-1]}")  # fmt: skip
        linear = self.angle_scale * self.encoder(x)
        if self.encoding == "linear":
            return linear
        return linear + self.born_angles(x)

    def born_angles(self, x: torch.Tensor) -> torch.Tensor:
        """Angles that load the marginals of ``x = [dist, latent]`` (see the class doc)."""
        sc = self.s_dim * self.c_dim
        dist = x[..., :sc].clamp_min(0.0).unflatten(-1, (self.s_dim, self.c_dim))
        latent = x[..., sc:].clamp_min(0.0)
        n_s, n_c, n_z = self.n_wires
        out = []
        if n_s:
            out.append(_chain_angles(dist.sum(dim=-1)))
        out.append(_qubit_angles(dist.sum(dim=-2), n_c))
        out.append(_qubit_angles(latent, n_z))
        return torch.cat(out, dim=-1)

    def bindings(self, angles: torch.Tensor) -> dict[str, torch.Tensor]:
        """Parameter values for the circuit: inputs ``(N,)`` per angle, weights ``()``."""
        flat = angles.reshape(-1, self.n_inputs)
        params = {f"a{i}": flat[:, i] for i in range(self.n_inputs)}
        params.update({f"w{j}": self.weights[j] for j in range(self.n_weights)})
        return params

    def _simulator(self, dtype: torch.dtype) -> TorchSimulator:
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        if cdtype not in self._sims:
            mode = "density_matrix" if self.noise > 0 else "statevector"
            self._sims[cdtype] = TorchSimulator(mode=mode, dtype=cdtype)
        return self._sims[cdtype]

    @property
    def has_state(self) -> bool:
        """Whether :meth:`simulate` gives the state (torch engine, no bridge)."""
        return self.backend == "torch" and not self.bridge

    def simulate(
        self, x: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], State | None, torch.Tensor]:
        """Run the ``B·L`` circuits once: ``(bindings, state, born)``.

        ``bindings``: the circuit's parameter values (:meth:`bindings`, rows ``b·L + l``);
        ``state``: the simulated :class:`~qsem.simulators.State` of batch ``B·L``
        (statevector, or a factored density matrix when ``noise > 0``), or ``None``
        on a backend other than the torch engine (or ``bridge=True``), which returns
        Born probabilities only; ``born``: the joint Born probabilities
        ``(B, L, dS, 2**n_c, 2**n_z)``, read from the state when there is one.
        """
        angles = self.angles(x)
        b, length = x.shape[:2]
        params = self.bindings(angles)
        state: State | None = None
        if self.has_state:
            state = self._simulator(x.dtype).run(self.circuit, params)
            p = probs(state)
        else:
            p = probs_bridge(
                self.circuit, params, list(range(len(self.dims))), backend=self.backend
            )
        p = p.to(x.dtype)
        n_s, n_c, n_z = self.n_wires
        return params, state, p.reshape(b, length, self.s_dim if n_s else 1, 2**n_c, 2**n_z)

    def state(self, x: torch.Tensor) -> State:
        """The simulated state of the ``B·L`` circuits (batch ``B·L``, row ``b·L + l``).

        Torch engine only: other backends (and ``bridge=True``) return Born
        probabilities, not a state, so this raises there (use :meth:`forward`).
        """
        if not self.has_state:
            raise arg_error(
                "backend",
                f"the state is available on the torch engine only (backend='torch', "
                f"bridge=False), got backend={self.backend!r}, bridge={self.bridge}; "
                "other backends give the Born probabilities (forward)",
            )
        state = self.simulate(x)[1]
        assert state is not None
        return state

    def to_omega(self, state: State, batch: int, length: int, *, check: bool = False) -> Omega:
        """``state`` (from :meth:`simulate`, batch ``B·L``) as Ω ``(B, L, S, C, 1, Z, Psi)``.

        ``C`` is the C register (``2**n_c`` states, ``c_dim`` of them categories),
        ``S = 1`` when there is no S wire; one state per (b, l), P = 1.
        """
        n_s, n_c, _ = self.n_wires
        return Omega.from_state(
            state,
            n_c,
            shape=(batch, length, 1),
            n_categories=self.c_dim,
            s_wire=bool(n_s),
            check=check,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.simulate(x)[2]
