r"""Qiskit Aer noise models and device snapshots as qsem noise models.

What maps to what (Aer 0.18):

=========================================  ===============================================
Aer                                        qsem
=========================================  ===============================================
``QuantumError`` of any kind (Kraus,       :class:`~qsem.circuits.Kraus` on the error's
Pauli / mixed unitary, depolarizing,       qubits: the minimal Kraus form of the error's
thermal relaxation, amplitude/phase        channel (``qiskit.quantum_info.Kraus`` of
damping, reset, composed errors),          ``error.to_quantumchannel()``), checked CPTP
``PauliError``, ``PauliLindbladError``     to 1e-10
all-qubit error on instruction ``name``    ``add_error(channel, "name")`` (all wires)
local error on ``name`` and qubits ``qs``  ``add_error(channel, "name", wires=qs)``
``measure`` errors                         applied just before each measurement
``ReadoutError`` (all-qubit or on qubits)  :class:`~qsem.circuits.noise.ReadoutError`
``RelaxationNoisePass`` (idle ``delay``)   refused at ``apply`` on a circuit with delays
=========================================  ===============================================

Qubit numbers stay Qiskit's (``qiskit_order=True``): on an ``n``-wire qsem circuit
qubit ``q`` is wire ``n - 1 - q``, and a multi-qubit error on qargs ``(q0, q1)``
(Qiskit little-endian: ``q0`` the least significant bit) becomes a Kraus channel on
the wires ``(wire(q1), wire(q0))``.

>>> from qiskit_aer.noise import NoiseModel as AerNoiseModel, depolarizing_error
>>> aer = AerNoiseModel()
>>> aer.add_all_qubit_quantum_error(depolarizing_error(0.02, 2), ["cx"])
>>> from_aer(aer).default_errors["cx"][0].wires
(1, 0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .channels import Kraus
from .circuit import Circuit
from .errors import MissingDependencyError, QsemTypeError, QsemValueError, arg_error
from .noise import _QISKIT_NAMES, MEASURE, NoiseModel, ReadoutError, channel_kraus

if TYPE_CHECKING:
    from .operations import Channel

__all__ = ["apply_to_qiskit", "from_aer", "from_backend", "is_quantum_circuit", "to_aer"]

#: Kraus operators of the reset instruction |0><0|, |0><1|.
_RESET = np.array([[[1, 0], [0, 0]], [[0, 1], [0, 0]]], dtype=np.complex128)


def _require_aer() -> Any:
    try:
        import qiskit_aer.noise as aer_noise
    except ImportError as exc:
        raise MissingDependencyError(
            f"Qiskit noise models need qiskit-aer ({exc}); install it with pip install 'qsem[aer]'"
        ) from None
    return aer_noise


def is_quantum_circuit(obj: Any) -> bool:
    """True for a ``qiskit.QuantumCircuit`` (without importing Qiskit when it is absent)."""
    return type(obj).__module__.startswith("qiskit") and hasattr(obj, "data")


def error_channel(error: Any, where: str) -> Kraus:
    """The qsem Kraus channel (on local wires ``k-1 .. 0``) of an Aer quantum error."""
    from qiskit.quantum_info import Kraus as QKraus

    try:
        ops = QKraus(error.to_quantumchannel()).data
    except Exception as exc:  # Qiskit's own error types vary by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QsemValueError(f"argument 'noise_model': cannot convert {where}: {first}") from None
    k = int(error.num_qubits)
    try:
        return Kraus(np.stack(ops), wires=list(range(k))[::-1], atol=1e-10)
    except QsemValueError as exc:
        raise QsemValueError(f"argument 'noise_model': cannot convert {where}: {exc}") from None


def from_aer(noise_model: Any) -> NoiseModel:
    """A qsem model equal to an Aer ``NoiseModel`` (module docstring for the map)."""
    aer_noise = _require_aer()
    if not isinstance(noise_model, aer_noise.NoiseModel):
        raise arg_error(
            "noise_model",
            f"expected a qiskit_aer.noise.NoiseModel, got {type(noise_model).__name__}",
            QsemTypeError,
        )
    out = NoiseModel(qiskit_order=True)
    for name, error in noise_model._default_quantum_errors.items():
        out.add_error(error_channel(error, f"the all-qubit error on {name!r}"), name)
    for name, table in noise_model._local_quantum_errors.items():
        for qubits, error in table.items():
            where = f"the error on {name!r} qubits {tuple(qubits)}"
            out.add_error(error_channel(error, where), name, wires=tuple(qubits))
    if noise_model._default_readout_error is not None:
        out.add_readout_error(noise_model._default_readout_error.probabilities)
    for qubits, err in noise_model._local_readout_errors.items():
        out.add_readout_error(ReadoutError(err.probabilities, wires=qubits), wires=qubits)
    for p in getattr(noise_model, "_custom_noise_passes", []) or []:
        if type(p).__name__ == "RelaxationNoisePass":
            out.refused["delay"] = (
                "idle relaxation on delay instructions (Aer's RelaxationNoisePass) is not "
                "converted; transpile without scheduling (no delays)"
            )
        else:
            raise QsemValueError(
                f"argument 'noise_model': its custom noise pass {type(p).__name__} cannot be "
                "converted"
            )
    return out


def from_backend(backend: Any, **options: Any) -> NoiseModel:
    """The noise of a Qiskit ``BackendV2`` (e.g. ``FakeManilaV2()`` of qiskit-ibm-runtime):
    Aer's ``NoiseModel.from_backend(backend, **options)``, converted."""
    aer_noise = _require_aer()
    from qiskit.providers import BackendV2

    if not isinstance(backend, BackendV2):
        raise arg_error(
            "backend",
            f"expected a Qiskit BackendV2 (e.g. qiskit_ibm_runtime.fake_provider.FakeManilaV2()), "
            f"got {type(backend).__name__}",
            QsemTypeError,
        )
    return from_aer(aer_noise.NoiseModel.from_backend(backend, **options))


def _qiskit_error(chans: list[Channel], k: int, aer_noise: Any, where: str) -> Any:
    """One Aer ``QuantumError`` on ``k`` qubits: the channels (local wires) in order."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Kraus as QKraus

    qc = QuantumCircuit(k)
    for ch in chans:
        if max(ch.wires) >= k:
            raise arg_error("noise_model", f"{where}: a channel reaches past the gate's qubits")
        ops = channel_kraus(ch, (2,) * len(ch.wires)).numpy()
        qc.append(QKraus(list(ops)), list(ch.wires)[::-1])
    return aer_noise.QuantumError(QKraus(qc))


def _gate_name(key: Any) -> str:
    if isinstance(key, str):
        return key
    name = _QISKIT_NAMES.get(key)
    if name is None:
        raise arg_error("noise_model", f"gate {key.__name__} has no Qiskit instruction name")
    return name


def _width(chans: list[Channel], key: Any) -> int:
    top = max(max(c.wires) for c in chans) + 1
    from qiskit.circuit.library import get_standard_gate_name_mapping

    std = get_standard_gate_name_mapping().get(_gate_name(key))
    return max(top, std.num_qubits) if std is not None else top


def to_aer(model: NoiseModel, num_qubits: int | None = None) -> Any:
    """The Aer ``NoiseModel`` of a qubit model: Kraus errors and readout errors.

    A hand-built model with local (per-wire) entries needs ``num_qubits`` (the
    circuit width) to turn qsem wires into Qiskit qubits.
    """
    aer_noise = _require_aer()
    if not model.qiskit_order and (model.local_errors or model.local_readout):
        if num_qubits is None:
            raise arg_error("num_qubits", "a hand-built model with per-wire errors needs it")

    def qubits(idx: tuple[int, ...]) -> tuple[int, ...]:
        if model.qiskit_order:
            return idx
        assert num_qubits is not None
        return tuple(num_qubits - 1 - w for w in idx)

    out = aer_noise.NoiseModel()
    for key, chans in model.default_errors.items():
        name, where = _gate_name(key), f"the error on {key!r}"
        out.add_all_qubit_quantum_error(
            _qiskit_error(chans, _width(chans, key), aer_noise, where), name, warnings=False
        )
    for key, table in model.local_errors.items():
        for idx, chans in table.items():
            err = _qiskit_error(chans, len(idx), aer_noise, f"the error on {key!r} {idx}")
            out.add_quantum_error(err, _gate_name(key), qubits(idx), warnings=False)
    if model.default_readout is not None:
        out.add_all_qubit_readout_error(model.default_readout.matrix.numpy(), warnings=False)
    for idx, ro in model.local_readout.items():
        q = idx if model.qiskit_order else qubits(idx)[::-1]
        out.add_readout_error(ro.matrix.numpy(), q, warnings=False)
    return out


def apply_to_qiskit(model: NoiseModel, qc: Any) -> Circuit:
    """A qsem circuit of ``qc`` with the model's channels, instruction by instruction.

    Errors are keyed by each instruction's Qiskit name (``sx``, ``ecr``, ...) and by the
    qsem gate class it converts to. ``measure`` places the measurement errors (only
    terminal measurements); ``reset`` becomes the reset channel followed by its errors;
    ``barrier`` and (ideal) ``delay`` are skipped.
    """
    from .qiskit_import import from_qiskit

    n = qc.num_qubits
    out = Circuit.qubits(n)
    measured: set[int] = set()
    for k, inst in enumerate(qc.data):
        op = inst.operation
        name = op.name
        where = f"instruction {k} ({name!r})"
        qubits = [qc.find_bit(q).index for q in inst.qubits]
        wires = [n - 1 - q for q in qubits]
        if name == "barrier":
            continue
        if name in model.refused:
            raise QsemValueError(f"argument 'circuit': {where}: {model.refused[name]}")
        if name == "delay":
            continue
        if measured & set(qubits):
            raise QsemValueError(
                f"argument 'circuit': {where} acts on a measured qubit; only terminal "
                "measurements are supported"
            )
        if name == MEASURE:
            out.add(*model.measure_errors(wires, n))
            measured |= set(qubits)
            continue
        if name == "reset":
            ops: list[Any] = [Kraus(_RESET, wires=wires)]
        else:
            sub = qc.copy_empty_like()
            sub.global_phase = 0.0
            sub.append(inst)
            try:
                ops = list(from_qiskit(sub).ops)
            except QsemValueError as exc:  # name the instruction of `qc`, not of `sub`
                msg = str(exc).replace(
                    "argument 'qc': instruction 0", f"argument 'circuit': instruction {k}"
                )
                raise QsemValueError(msg) from None
        keys: list[Any] = [name] + [type(o) for o in ops[:1] if len(ops) == 1]
        chans = model.error_for(keys, model._index(wires, n))
        out.add(*ops, *(model.place(c, wires) for c in chans))
    phase = qc.copy_empty_like()
    if not hasattr(phase.global_phase, "parameters") or not phase.global_phase.parameters:
        out.add(*from_qiskit(phase).ops)
    return out
