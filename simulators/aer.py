"""Qiskit Aer behind the backend contract (:mod:`qsem.simulators.backend`).

A qsem :class:`~qsem.circuits.Circuit` becomes one ``qiskit.QuantumCircuit``:

* **Wires.** A qubit wire is one Qiskit qubit. A wire of dimension ``d > 2`` is
  encoded in ``k = ceil(log2 d)`` qubits (a qutrit in two): level ``l`` is the
  binary number ``l`` on those qubits (``|00>, |01>, |10>`` hold ``|0>, |1>, |2>``),
  and the levels ``d .. 2^k - 1`` (``|11>`` for a qutrit) are *leakage* levels.
  Wire 0 is qsem's most significant index; Qiskit is little-endian, so the last
  wire gets the lowest qubits: wire ``w`` holds qubits ``off_w .. off_w + k_w - 1``
  (bit ``b`` of its level on qubit ``off_w + b``) with ``off_w = Σ_{v > w} k_v``.
  The Qiskit basis index is then the big-endian concatenation of the wire levels.
* **Gates.** Every gate acts as ``U ⊕ 1``: ``U`` on the encoded levels, the
  identity wherever some wire of the gate sits on a leakage level.
  Gates with symbolic parameters stay symbolic (Qiskit ``Parameter``\\ s), so ONE
  transpiled circuit serves every row of ``values`` through ``parameter_binds``
  in ONE ``AerSimulator.run`` job:

  - ``RX/RY/RZ``, ``PhaseShift``, ``U3`` map to Qiskit's ``rx/ry/rz``, ``p``, ``u``
    (``U3 = P(φ)·RY(θ)·P(λ)`` once controlled).
  - ``SubspaceRX/RY/RZ(θ)`` on levels ``(j, k)`` of an encoded wire: let ``p`` be the
    highest bit in which ``j`` and ``k`` differ (``j`` has 0 there, ``k`` has 1). CNOTs
    from bit ``p`` onto every other differing bit map ``k`` to ``j + 2^p`` and leave
    ``j`` alone; the rotation is then ``rx/ry/rz(θ)`` on bit ``p``, controlled by the
    wire's other bits being those of ``j``; the same CNOTs undo the relabelling.
    On a qutrit (high qubit ``h``, low qubit ``l``): ``(0,1)`` is ``R(θ)`` on ``l``
    controlled by ``h = 0``; ``(0,2)`` is ``R(θ)`` on ``h`` controlled by ``l = 0``;
    ``(1,2)`` is ``CX(h->l) · [R(θ) on h controlled by l = 1] · CX(h->l)``. Nothing
    touches the leakage level ``|11>``.
  - ``Controlled(base, controls, values)`` (any nesting, any control dims) adds one
    control per bit of each control wire, the bits of the control value giving the
    control state (``X`` on the bits that must be 0, before and after).
  - Controlled parametrised gates are built from single-qubit ``rx/ry/rz/p`` and
    (multi-)CX only: ``C^n R_{y,z}(θ) = R(θ/2)·MCX·R(-θ/2)·MCX`` (time order),
    ``C^n RX = H·C^n RZ·H``, ``C^n P(φ) = C^n RZ(φ) · C^{n-1}P(φ/2)`` on the last
    control. Aer 0.18 binds the parameters of its own ``cry/crx/crz/cp/mcphase``
    instructions wrongly under ``parameter_binds`` (Qiskit/qiskit-aer#2323,
    #2391, #2403), so the converted circuits never contain them.
  - ``Adjoint`` of a parametrised gate uses the gate's own ``adjoint()`` (negated
    angles).
  - Gates without symbolic parameters: named Qiskit gates for the standard qubit
    gates, otherwise a ``UnitaryGate`` holding the embedded matrix ``U ⊕ 1``.

  A symbolic gate that none of these express (a user's own parametrised ``Gate``
  subclass) and channels with *symbolic* parameters cannot be bound by Aer:
  such circuits are bound numerically per row and sent as a list of ``N``
  circuits, still in one ``run`` job (slower: one transpilation per row).
* **Channels** become Aer ``kraus`` instructions: on encoded wires each Kraus
  operator ``K`` becomes ``K ⊕ 0`` and the projector onto the leakage subspace is
  added as one more Kraus operator, so the map stays CPTP on the qubits.
  Exact results of a circuit with channels need ``method="density_matrix"``
  (``method=None`` picks it); ``method="statevector"`` samples trajectories and
  is accepted with ``shots`` only.
* **Results.** Exact mode uses ``save_expectation_value`` / ``save_probabilities``
  / ``save_statevector`` / ``save_density_matrix``; shot mode measures and counts,
  seeded by ``seed_simulator``. Shot expectation values of non-diagonal
  observables rotate into the observable's eigenbasis (one extra circuit per such
  observable, in the same job). Everything comes back as torch ``float64``
  (``complex128`` for states) in qsem's wire order, restricted to the encoded
  levels. Leakage populations come from :meth:`AerBackend.leakage`; an exact
  simulation has none (up to rounding), and with shots a leaked outcome counts in
  no probability, so ``probs`` rows then sum to less than 1.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.circuits import gates as G
from qsem.circuits.circuit import Circuit
from qsem.circuits.errors import MissingDependencyError, QsemTypeError, QsemValueError, arg_error
from qsem.circuits.observables import Observable, PauliString
from qsem.circuits.operations import Adjoint, Channel, Gate, Operation, normalize_wires
from qsem.circuits.parameters import Parameter, resolve_param

from .backend import Backend, check_job, check_observables, check_shots

__all__ = ["AerBackend", "QubitLayout"]

_METHODS = ("statevector", "density_matrix")
_DEVICES = ("CPU", "GPU")
#: Kraus operators with a smaller Frobenius norm are dropped (p = 0 terms).
_KRAUS_DROP = 1e-14


def _require_qiskit() -> Any:
    try:
        import qiskit
        import qiskit_aer
    except ImportError as exc:
        raise MissingDependencyError(
            f"the Aer backend needs qiskit and qiskit-aer ({exc}); install them with "
            "pip install 'qsem[aer]' (or 'qsem[gpu]' for qiskit-aer-gpu)"
        ) from None
    return qiskit, qiskit_aer


# ---------------------------------------------------------------------------------------------
# Layout: qsem wires -> Qiskit qubits
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QubitLayout:
    """Where each qsem wire lives on the Qiskit register.

    ``bits[w]`` qubits encode wire ``w``; ``offsets[w]`` is its lowest qubit (bit 0
    of the level). Wire 0 gets the highest qubits, so a Qiskit basis index is the
    big-endian concatenation of the wire levels.

    >>> lay = QubitLayout.of((2, 3, 2))
    >>> lay.qubits(1), lay.num_qubits
    ([2, 1], 4)
    """

    dims: tuple[int, ...]
    bits: tuple[int, ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, dims: Sequence[int]) -> QubitLayout:
        dims = tuple(int(d) for d in dims)
        bits = tuple(max(1, math.ceil(math.log2(d))) for d in dims)
        offsets = tuple(sum(bits[w + 1 :]) for w in range(len(dims)))
        return cls(dims, bits, offsets)

    @property
    def num_qubits(self) -> int:
        return sum(self.bits)

    def qubits(self, wire: int) -> list[int]:
        """Qubits of ``wire``, most significant bit first."""
        o, k = self.offsets[wire], self.bits[wire]
        return [o + b for b in reversed(range(k))]

    def qargs(self, wires: Sequence[int]) -> list[int]:
        """Qiskit qargs (little-endian) of a big-endian local matrix on ``wires``."""
        big = [q for w in wires for q in self.qubits(w)]
        return big[::-1]

    def leaky(self, wire: int) -> bool:
        return self.dims[wire] != 1 << self.bits[wire]

    def valid_indices(self, wires: Sequence[int]) -> np.ndarray:
        """Encoded index (big-endian over the wires' bits) of each qsem local index."""
        idx = np.zeros(1, dtype=np.int64)
        for w in wires:
            idx = (idx[:, None] << self.bits[w]) + np.arange(self.dims[w])[None, :]
            idx = idx.reshape(-1)
        return idx

    def embed(self, matrix: np.ndarray, wires: Sequence[int], leak_fill: float) -> np.ndarray:
        """``M ⊕ leak_fill·1``: a local matrix on ``wires`` placed on their encoded qubits."""
        m = 1 << sum(self.bits[w] for w in wires)
        idx = self.valid_indices(wires)
        out = np.zeros((m, m), dtype=np.complex128)
        if leak_fill:
            out[np.diag_indices(m)] = leak_fill
            out[idx, idx] = 0
        out[np.ix_(idx, idx)] = matrix
        return out


# ---------------------------------------------------------------------------------------------
# Circuit conversion
# ---------------------------------------------------------------------------------------------
class _Unsupported(Exception):
    """A symbolic operation Aer cannot bind: the circuit is bound per row instead."""


def _flatten(op: Gate) -> tuple[Gate, list[tuple[int, int]]]:
    """``(base, [(control wire, value), ...])``: nested ``Controlled``/``Adjoint`` undone."""
    controls: list[tuple[int, int]] = []
    while True:
        if isinstance(op, G.Controlled):
            controls += list(zip(op.control_wires, op.control_values, strict=True))
            op = op.base
        elif isinstance(op, Adjoint):
            inner = op.base.adjoint()
            if isinstance(inner, Adjoint):
                return op, controls
            op = inner
        else:
            return op, controls


class _Converter:
    """Builds the Qiskit circuit of a qsem circuit on a :class:`QubitLayout`."""

    def __init__(self, circuit: Circuit) -> None:
        qiskit, _ = _require_qiskit()
        from qiskit.circuit import library as lib

        self.qiskit = qiskit
        self.lib = lib
        self.circuit = circuit
        self.layout = QubitLayout.of(circuit.dims)
        self.params: dict[str, Any] = {}
        self.qc = qiskit.QuantumCircuit(self.layout.num_qubits)
        self._named: dict[type, Any] = {
            G.X: lib.XGate, G.Y: lib.YGate, G.Z: lib.ZGate, G.H: lib.HGate, G.S: lib.SGate,
            G.T: lib.TGate,
        }  # fmt: skip

    # -- parameters -------------------------------------------------------------------
    def param(self, p: Any) -> Any:
        if isinstance(p, Parameter):
            q = self.params.get(p.name)
            if q is None:
                q = self.params[p.name] = self.qiskit.circuit.Parameter(p.name)
            return q * p.scale if p.scale != 1.0 else q
        t = resolve_param(p, None, dtype=torch.float64, device="cpu")
        return float(t)

    # -- gates ------------------------------------------------------------------------
    def add(self, op: Operation) -> None:
        if isinstance(op, Channel):
            self.add_channel(op)
        elif isinstance(op, Gate):
            self.add_gate(op)
        else:  # pragma: no cover - Circuit only holds gates and channels
            raise arg_error("circuit", f"cannot convert {op!r}", QsemTypeError)

    def add_gate(self, op: Gate) -> None:
        symbolic = any(isinstance(p, Parameter) for p in op.params)
        base, controls = _flatten(op)
        if isinstance(base, G.Identity):
            return
        if self._try_named(base, controls):
            return
        if symbolic:
            raise _Unsupported(op.name)
        mat = op.concrete_matrix(self.circuit.wire_dims(op.wires)).detach().cpu().numpy()
        self._unitary(mat, list(op.wires))

    def _unitary(self, mat: np.ndarray, wires: list[int]) -> None:
        emb = self.layout.embed(mat, wires, 1.0)
        gate = self.lib.UnitaryGate(emb, check_input=False)
        self.qc.append(gate, self.layout.qargs(wires))

    def _control_bits(self, controls: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
        qubits, states = [], []
        lay = self.layout
        for w, v in controls:
            for b in range(lay.bits[w]):
                qubits.append(lay.offsets[w] + b)
                states.append((v >> b) & 1)
        return qubits, states

    def _append(self, gate: Any, targets: list[int], cq: list[int], cs: list[int]) -> None:
        if cq:
            state = sum(s << i for i, s in enumerate(cs))
            gate = gate.control(len(cq), ctrl_state=state)
        self.qc.append(gate, cq + targets)

    def _try_named(self, base: Gate, controls: list[tuple[int, int]]) -> bool:
        """Append ``base`` (with controls) as named Qiskit gates; False if it has no name."""
        lib, lay = self.lib, self.layout
        dims = self.circuit.wire_dims(base.wires)
        cq, cs = self._control_bits(controls)
        if isinstance(base, G._SubspaceRotation):
            self._subspace_rotation(base, cq, cs)
            return True
        if not all(d == 2 for d in dims):
            return False
        q = [lay.offsets[w] for w in base.wires]
        if isinstance(base, G.PhaseShift):
            phi = self.param(base.params[0])
            self._with_controls(cq, cs, lambda ctl: self._mc_phase(phi, q[0], ctl))
            return True
        if isinstance(base, G.U3):
            th, ph, lam = (self.param(p) for p in base.params)

            def u3(ctl: list[int]) -> None:  # U3 = P(φ) · RY(θ) · P(λ), exactly
                self._mc_phase(lam, q[0], ctl)
                self._mc_rot("y", th, q[0], ctl)
                self._mc_phase(ph, q[0], ctl)

            self._with_controls(cq, cs, u3)
            return True
        named = self._named.get(type(base))
        if named is None and type(base) in (G.Shift, G.Clock, G.Fourier):
            fallback: dict[type, Any] = {
                G.Shift: lib.XGate,
                G.Clock: lib.ZGate,
                G.Fourier: lib.HGate,
            }
            named = fallback[type(base)]
        if named is not None:
            self._append(named(), q, cq, cs)
            return True
        if type(base) is G.SWAP:
            self._append(lib.SwapGate(), q, cq, cs)
            return True
        if type(base) in (G.Add, G.CNOT):  # control q[0], target q[1]
            self._append(lib.XGate(), [q[1]], [*cq, q[0]], [*cs, 1])
            return True
        return False

    # Parametrised gates are built from single-qubit rx/ry/rz/p and (multi-)CX only (see the
    # module docstring: Aer's cry/crx/crz/cp/mcphase are bound wrongly by parameter_binds).
    def _with_controls(self, cq: list[int], cs: list[int], body: Any) -> None:
        """Run ``body(controls)`` with controls that must be 0 flipped to 1 around it."""
        flip = [q for q, s in zip(cq, cs, strict=True) if s == 0]
        for q in flip:
            self.qc.x(q)
        body(cq)
        for q in flip:
            self.qc.x(q)

    def _mc_rot(self, axis: str, theta: Any, target: int, ctl: list[int]) -> None:
        """``R_axis(θ)`` on ``target`` when every qubit of ``ctl`` is 1."""
        qc = self.qc
        if not ctl:
            {"x": qc.rx, "y": qc.ry, "z": qc.rz}[axis](theta, target)
        elif axis == "x":  # RX = H RZ H
            qc.h(target)
            self._mc_rot("z", theta, target, ctl)
            qc.h(target)
        else:  # X R(-θ/2) X = R(θ/2) for R = RY, RZ
            getattr(qc, "r" + axis)(theta / 2, target)
            qc.mcx(ctl, target)
            getattr(qc, "r" + axis)(-theta / 2, target)
            qc.mcx(ctl, target)

    def _mc_phase(self, phi: Any, target: int, ctl: list[int]) -> None:
        """``P(φ)`` on ``target`` when every qubit of ``ctl`` is 1 (``P(φ) = e^{iφ/2} RZ(φ)``)."""
        if not ctl:
            self.qc.p(phi, target)
            return
        self._mc_rot("z", phi, target, ctl)
        self._mc_phase(phi / 2, ctl[-1], ctl[:-1])

    def _subspace_rotation(self, rot: G._SubspaceRotation, cq: list[int], cs: list[int]) -> None:
        lay = self.layout
        (w,) = rot.wires
        j, k = rot.subspace
        diff = j ^ k
        p = diff.bit_length() - 1  # j has 0 at bit p, k has 1
        others = [b for b in range(lay.bits[w]) if b != p]
        cx_targets = [b for b in others if (diff >> b) & 1]
        off = lay.offsets[w]
        for b in cx_targets:
            self.qc.cx(off + p, off + b)
        inner_q = [off + b for b in others]
        inner_s = [(j >> b) & 1 for b in others]
        theta = self.param(rot.params[0])
        self._with_controls(
            inner_q + cq, inner_s + cs, lambda ctl: self._mc_rot(rot._pauli, theta, off + p, ctl)
        )
        for b in reversed(cx_targets):
            self.qc.cx(off + p, off + b)

    # -- channels ---------------------------------------------------------------------
    def add_channel(self, op: Channel) -> None:
        if any(isinstance(p, Parameter) for p in op.params):
            raise _Unsupported(op.name)
        from qiskit.quantum_info import Kraus

        dims = self.circuit.wire_dims(op.wires)
        params = [resolve_param(p, None, dtype=torch.float64, device="cpu") for p in op.params]
        ks = op.kraus(params, dims, dtype=torch.complex128).detach().cpu().numpy()
        wires = list(op.wires)
        emb = [self.layout.embed(k, wires, 0.0) for k in ks]
        emb = [k for k in emb if np.linalg.norm(k) > _KRAUS_DROP] or emb[:1]
        if any(self.layout.leaky(w) for w in wires):
            m = emb[0].shape[0]
            leak = np.eye(m, dtype=np.complex128)
            idx = self.layout.valid_indices(wires)
            leak[idx, idx] = 0
            emb.append(leak)
        self.qc.append(Kraus(emb), self.layout.qargs(wires))


def _check_circuit(circuit: Any) -> Circuit:
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    for op in circuit.ops:
        params = list(op.params)
        batched = [p for p in params if isinstance(p, torch.Tensor) and p.dim() > 0]
        if batched or op.batch_size() is not None:
            raise arg_error(
                "circuit",
                f"{op.name} on wires {list(op.wires)} holds a batched concrete value; backends "
                "take one value per operation: batch through symbolic Parameters and `values`",
            )
    return circuit


def _cache_key(circuit: Circuit) -> tuple[Any, ...]:
    items = []
    for op in circuit.ops:
        vals = tuple(
            p if isinstance(p, Parameter) else float(torch.as_tensor(p).detach()) for p in op.params
        )
        items.append((op.structure_key(), vals))
    return (circuit.dims, tuple(items))


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """Transpiled circuits of one request and how to bind them."""

    circuits: list[Any]
    params: dict[str, Any]  # qsem name -> Qiskit Parameter (symbolic path)
    per_row: bool  # True: one circuit per row, already bound
    ops_ref: list[Operation]  # keeps matrices alive while cached (ids in structure keys)


class AerBackend(Backend):
    """Qiskit Aer's ``AerSimulator`` behind the backend contract.

    Args:
        method: ``"statevector"``, ``"density_matrix"``, or ``None`` (default): density
            matrix for circuits with channels, statevector otherwise.
        device: ``"CPU"`` or ``"GPU"``. ``"GPU"`` needs qiskit-aer-gpu and CUDA
            (``AerSimulator().available_devices()``); without them the backend warns
            once and runs on the CPU.
        cache_size: transpiled circuits kept per backend (the bridge re-runs one
            circuit many times).
        **options: passed to ``AerSimulator`` (e.g. ``max_parallel_threads``).

    Every call is one ``AerSimulator.run`` job for all ``N`` rows of ``values``.
    See the module docstring for the qutrit encoding and the decompositions.
    """

    name = "aer"

    def __init__(
        self,
        method: str | None = None,
        device: str = "CPU",
        *,
        cache_size: int = 32,
        **options: Any,
    ) -> None:
        _require_qiskit()
        from qiskit_aer import AerSimulator

        if method is not None and method not in _METHODS:
            raise arg_error("method", f"expected one of {list(_METHODS)} or None, got {method!r}")
        if not isinstance(device, str) or device.upper() not in _DEVICES:
            raise arg_error("device", f"expected 'CPU' or 'GPU', got {device!r}")
        device = device.upper()
        if device == "GPU" and "GPU" not in AerSimulator().available_devices():
            warnings.warn(
                "AerBackend: device='GPU' needs qiskit-aer-gpu and CUDA; running on the CPU",
                RuntimeWarning,
                stacklevel=2,
            )
            device = "CPU"
        self.method = method
        self.device = device
        # Bind parameter rows inside one Aer experiment instead of expanding one
        # experiment per row: half the time of a 5376-row parameter-shift job (measured).
        self.options = {"runtime_parameter_bind_enable": True, **options}
        self._sims: dict[str, Any] = {}
        self._cache: OrderedDict[tuple[Any, ...], _Prepared] = OrderedDict()
        self._cache_size = int(cache_size)

    def __repr__(self) -> str:
        return f"AerBackend(method={self.method!r}, device={self.device!r})"

    # -- plumbing ---------------------------------------------------------------------
    def _method(self, circuit: Circuit, shots: int | None) -> str:
        method = self.method or ("density_matrix" if circuit.has_channels else "statevector")
        if method == "statevector" and circuit.has_channels and shots is None:
            raise arg_error(
                "method",
                "exact results of a circuit with channels need method='density_matrix' "
                "(the statevector method samples noise trajectories: pass shots=...)",
            )
        return method

    def _sim(self, method: str) -> Any:
        sim = self._sims.get(method)
        if sim is None:
            from qiskit_aer import AerSimulator

            sim = self._sims[method] = AerSimulator(
                method=method, device=self.device, **self.options
            )
        return sim

    def _prepare(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        method: str,
        request: tuple[Any, ...],
        finish: Any,
    ) -> tuple[_Prepared, list[dict[Any, list[float]]] | None]:
        """Convert, finish (save/measure) and transpile; cached per circuit and request.

        ``finish(converter) -> list of Qiskit circuits`` appends the read-out.
        """
        from qiskit import transpile

        key = (_cache_key(circuit), method, request)
        prep = self._cache.get(key)
        if prep is None:
            conv = _Converter(circuit)
            try:
                for op in circuit.ops:
                    conv.add(op)
            except _Unsupported:
                prep = None
            else:
                circuits = transpile(finish(conv), self._sim(method), optimization_level=0)
                prep = _Prepared(circuits, conv.params, False, list(circuit.ops))
                self._cache[key] = prep
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            if prep is None:  # bind numerically, one circuit per row
                rows = []
                for row in values.tolist():
                    bound = circuit.bind(
                        {n: v for n, v in zip(names, row, strict=True) if n in circuit.parameters}
                    )
                    conv = _Converter(bound)
                    for op in bound.ops:
                        conv.add(op)
                    rows.append(finish(conv))
                # circuit-major like parameter_binds: all rows of read-out 0, then read-out 1, ...
                ordered = [rows[r][c] for c in range(len(rows[0])) for r in range(len(rows))]
                circuits = transpile(ordered, self._sim(method), optimization_level=0)
                return _Prepared(circuits, {}, True, []), None
        binds = None
        if prep.params:
            col = {n: j for j, n in enumerate(names)}
            vals = values.detach().to(torch.float64).cpu().numpy()
            bind = {q: vals[:, col[n]].tolist() for n, q in prep.params.items()}
            binds = [bind] * len(prep.circuits)
        return prep, binds

    def _execute(
        self,
        circuit: Circuit,
        values: torch.Tensor,
        names: Sequence[str],
        method: str,
        shots: int | None,
        seed: int | None,
        request: tuple[Any, ...],
        finish: Any,
    ) -> list[list[Any]]:
        """Run one job; returns ``data[readout][row]`` (Aer result data dicts)."""
        n = values.shape[0]
        prep, binds = self._prepare(circuit, values, names, method, request, finish)
        circuits = prep.circuits
        run_opts: dict[str, Any] = {"shots": shots if shots is not None else 1}
        if seed is not None:
            run_opts["seed_simulator"] = int(seed)
        if prep.per_row:
            n_read = len(circuits) // n
            per_circ = 1
        else:
            n_read = len(circuits)
            if binds is not None:
                run_opts["parameter_binds"] = binds
                per_circ = n
            elif shots is not None and n > 1:  # independent samples per row
                circuits = [c for c in circuits for _ in range(n)]
                per_circ = n
            else:
                per_circ = 1
        result = self._sim(method).run(circuits, **run_opts).result()
        if not result.success:  # pragma: no cover - Aer reports its own failures
            raise QsemValueError(f"argument 'circuit': Aer failed: {result.status}")
        out = []
        for c in range(n_read):
            if prep.per_row:
                out.append([result.data(c * n + r) for r in range(n)])
            elif per_circ == 1:
                data = result.data(c)
                out.append([data] * n)
            else:
                out.append([result.data(c * n + r) for r in range(n)])
        return out

    def _check(
        self, circuit: Any, values: Any, names: Any, shots: Any
    ) -> tuple[Circuit, torch.Tensor, list[str], int | None]:
        circuit = _check_circuit(circuit)
        circuit, values, names = check_job(circuit, values, names)
        return circuit, values, names, check_shots(shots)

    def _wires(self, circuit: Circuit, wires: Any) -> list[int]:
        w = list(normalize_wires(wires, "wires"))
        bad = [x for x in w if x >= circuit.num_wires]
        if bad:
            raise arg_error("wires", f"wire(s) {bad} out of range for {circuit.num_wires} wires")
        return w

    # -- measurement helpers ------------------------------------------------------------
    @staticmethod
    def _measure(qc: Any, layout: QubitLayout, wires: Sequence[int]) -> Any:
        from qiskit import ClassicalRegister

        qargs = layout.qargs(wires)
        creg = ClassicalRegister(len(qargs), "m")
        qc.add_register(creg)
        qc.measure(qargs, creg)
        return qc

    @staticmethod
    def _counts(data: dict[str, Any], m: int) -> np.ndarray:
        counts = np.zeros(1 << m, dtype=np.float64)
        for key, c in data["counts"].items():
            counts[int(key, 16)] += c
        return counts

    # -- contract -----------------------------------------------------------------------
    def probs(self, circuit, values, names, wires, *, shots=None, seed=None):
        """Marginal probabilities ``(N, prod dims)`` on ``wires`` (in the given order).

        Leaked shots count in no entry, so rows may sum to less than 1 with shots.
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        w = self._wires(circuit, wires)
        method = self._method(circuit, shots)
        layout = QubitLayout.of(circuit.dims)
        idx = layout.valid_indices(w)
        m = sum(layout.bits[x] for x in w)

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if shots is None:
                qc.save_probabilities(layout.qargs(w), label="p")
            else:
                self._measure(qc, layout, w)
            return [qc]

        req = ("probs", tuple(w), shots is None)
        data = self._execute(circuit, values, names, method, shots, seed, req, finish)[0]
        if shots is None:
            rows = [np.asarray(d["p"], dtype=np.float64)[idx] for d in data]
        else:
            rows = [self._counts(d, m)[idx] / shots for d in data]
        return torch.from_numpy(np.stack(rows))

    def expval(self, circuit, values, names, observables, *, shots=None, seed=None):
        """Expectation values ``(N, K)``; leakage levels contribute 0 (observable ``O ⊕ 0``).

        With shots, diagonal observables share one measured circuit; each non-diagonal
        one gets a copy rotated into its eigenbasis (all in the same job).
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        obs = check_observables(circuit, observables)
        method = self._method(circuit, shots)
        layout = QubitLayout.of(circuit.dims)
        if shots is None:
            return self._expval_exact(circuit, values, names, obs, method, layout)
        return self._expval_shots(circuit, values, names, obs, method, layout, shots, seed)

    def _expval_exact(self, circuit, values, names, obs, method, layout):
        from qiskit.quantum_info import Operator, SparsePauliOp

        def operator(o: Observable) -> Any:
            wires = list(o.wires)
            if isinstance(o, PauliString) and all(layout.bits[x] == 1 for x in wires):
                return SparsePauliOp(o.paulis, coeffs=[o.coeff])
            local = o.local_matrix(circuit.wire_dims(wires))
            return SparsePauliOp.from_operator(Operator(layout.embed(local, wires, 0.0)))

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            for k, o in enumerate(obs):
                qc.save_expectation_value(operator(o), layout.qargs(o.wires), label=f"e{k}")
            return [qc]

        req = ("expval", tuple(_obs_key(o, circuit) for o in obs))
        data = self._execute(circuit, values, names, method, None, None, req, finish)[0]
        out = [[float(np.real(d[f"e{k}"])) for k in range(len(obs))] for d in data]
        return torch.tensor(out, dtype=torch.float64)

    def _expval_shots(self, circuit, values, names, obs, method, layout, shots, seed):
        # read-out plan: (wires measured, [(observable index, eigenvalues per local index)])
        diag_items: list[tuple[int, np.ndarray]] = []
        rotated: list[tuple[int, np.ndarray, np.ndarray]] = []
        for k, o in enumerate(obs):
            dims = circuit.wire_dims(o.wires)
            d = o.diagonal(dims)
            if d is not None:
                diag_items.append((k, d.numpy()))
            else:
                lam, vec = np.linalg.eigh(o.local_matrix(dims))
                rotated.append((k, lam, vec))
        diag_wires = sorted({w for k, _ in diag_items for w in obs[k].wires})

        def finish(conv: _Converter) -> list[Any]:
            out = []
            if diag_items:
                out.append(self._measure(conv.qc.copy(), layout, diag_wires))
            for k, _, vec in rotated:
                qc = conv.qc.copy()
                wires = list(obs[k].wires)
                emb = layout.embed(vec.conj().T, wires, 1.0)
                qc.append(conv.lib.UnitaryGate(emb, check_input=False), layout.qargs(wires))
                out.append(self._measure(qc, layout, wires))
            return out

        req = ("expval_shots", tuple(_obs_key(o, circuit) for o in obs))
        data = self._execute(circuit, values, names, method, shots, seed, req, finish)
        n = values.shape[0]
        res = np.zeros((n, len(obs)))
        c = 0
        if diag_items:
            m = sum(layout.bits[w] for w in diag_wires)
            for r in range(n):
                counts = self._counts(data[0][r], m)
                for k, diag in diag_items:
                    res[r, k] = _estimate(counts, layout, diag_wires, list(obs[k].wires), diag)
            c = 1
        for k, lam, _ in rotated:
            wires = list(obs[k].wires)
            m = sum(layout.bits[w] for w in wires)
            idx = layout.valid_indices(wires)
            for r in range(n):
                res[r, k] = float(self._counts(data[c][r], m)[idx] @ lam)
            c += 1
        return torch.from_numpy(res / shots)

    # -- extras -------------------------------------------------------------------------
    def leakage(self, circuit, values, names, *, shots=None, seed=None):
        """Leakage population ``(N, L)`` of each wire with leakage levels.

        Columns follow :meth:`leaky_wires` (qutrits and other ``d`` that are not a
        power of 2), in wire order; ``(N, 0)`` when there are none.
        """
        circuit, values, names, shots = self._check(circuit, values, names, shots)
        layout = QubitLayout.of(circuit.dims)
        leaky = self.leaky_wires(circuit)
        n = values.shape[0]
        if not leaky:
            return torch.zeros(n, 0, dtype=torch.float64)
        method = self._method(circuit, shots)

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if shots is None:
                for w in leaky:
                    qc.save_probabilities(layout.qargs([w]), label=f"l{w}")
            else:
                self._measure(qc, layout, leaky)
            return [qc]

        data = self._execute(
            circuit, values, names, method, shots, seed, ("leak", shots is None), finish
        )[0]
        out = np.zeros((n, len(leaky)))
        for r, d in enumerate(data):
            if shots is None:
                for i, w in enumerate(leaky):
                    out[r, i] = float(np.sum(np.asarray(d[f"l{w}"])[circuit.dims[w] :]))
            else:
                m = sum(layout.bits[w] for w in leaky)
                counts = self._counts(d, m)
                keys = np.arange(1 << m)
                shift = m
                for i, w in enumerate(leaky):
                    shift -= layout.bits[w]
                    level = (keys >> shift) & ((1 << layout.bits[w]) - 1)
                    out[r, i] = counts[level >= circuit.dims[w]].sum() / shots
        return torch.from_numpy(out)

    @staticmethod
    def leaky_wires(circuit: Circuit) -> list[int]:
        """Wires whose encoding has leakage levels (dimension not a power of 2)."""
        layout = QubitLayout.of(circuit.dims)
        return [w for w in range(len(circuit.dims)) if layout.leaky(w)]

    def state(self, circuit, values, names):
        """The final state of each row in qsem's order, on the encoded levels only.

        ``(N, D)`` statevectors (method statevector) or ``(N, D, D)`` density
        matrices (method density_matrix), complex128, ``D = prod dims``.
        """
        circuit, values, names, _ = self._check(circuit, values, names, None)
        method = self._method(circuit, None)
        layout = QubitLayout.of(circuit.dims)
        idx = layout.valid_indices(range(circuit.num_wires))
        label = "psi" if method == "statevector" else "rho"

        def finish(conv: _Converter) -> list[Any]:
            qc = conv.qc.copy()
            if method == "statevector":
                qc.save_statevector(label=label)
            else:
                qc.save_density_matrix(label=label)
            return [qc]

        data = self._execute(circuit, values, names, method, None, None, ("state",), finish)[0]
        rows = []
        for d in data:
            s = np.asarray(d[label], dtype=np.complex128)
            rows.append(s[idx] if s.ndim == 1 else s[np.ix_(idx, idx)])
        return torch.from_numpy(np.stack(rows))

    def to_qiskit(self, circuit: Circuit) -> Any:
        """The (untranspiled) ``QuantumCircuit`` and the map qsem name -> Qiskit ``Parameter``.

        Raises :class:`QsemValueError` for circuits that must be bound per row.
        """
        circuit = _check_circuit(circuit)
        conv = _Converter(circuit)
        try:
            for op in circuit.ops:
                conv.add(op)
        except _Unsupported as exc:
            raise arg_error(
                "circuit", f"{exc} has symbolic parameters Aer cannot bind; bind them first"
            ) from None
        return conv.qc, dict(conv.params)


def _obs_key(o: Observable, circuit: Circuit) -> tuple[Any, ...]:
    local = np.ascontiguousarray(o.local_matrix(circuit.wire_dims(o.wires)))
    return (o.wires, local.shape, local.tobytes())


def _estimate(
    counts: np.ndarray,
    layout: QubitLayout,
    measured: list[int],
    wires: list[int],
    diag: np.ndarray,
) -> float:
    """``Σ_outcomes count · diag[levels of wires]`` (0 where a wire of ``wires`` leaked)."""
    m = sum(layout.bits[w] for w in measured)
    keys = np.nonzero(counts)[0]
    shift = m
    level = {}
    for w in measured:
        shift -= layout.bits[w]
        level[w] = (keys >> shift) & ((1 << layout.bits[w]) - 1)
    ok = np.ones(len(keys), dtype=bool)
    local = np.zeros(len(keys), dtype=np.int64)
    for w in wires:
        ok &= level[w] < layout.dims[w]
        local = local * layout.dims[w] + np.minimum(level[w], layout.dims[w] - 1)
    return float((counts[keys] * np.where(ok, diag[local], 0.0)).sum())
