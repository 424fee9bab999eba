"""``qsem run noisy-training``: train under a device's noise, evaluate on Aer with that noise.

The device is a fake backend of qiskit-ibm-runtime (a snapshot of a real IBM device's
calibration). The classifier is hybrid: ``Linear(2, n) -> π·tanh`` gives the angles
``x`` of a native-gate circuit (:func:`device_ansatz`, transpiled to the device: ``sx``,
``rz``, ``cx`` only), whose trainable ``rz`` angles ``w`` follow; the class
probabilities are the Born probabilities of the first circuit qubit, read by
:class:`~qsem.simulators.QuantumLayer` on the density-matrix engine (autograd through
every Kraus channel and the readout confusion).

Per seed, two copies of the model start from the same weights and are trained on the
same data (two-moons, full-batch Adam, cross-entropy):

* ``noise_aware``: the circuit with the backend's noise
  (:meth:`NoiseModel.from_backend <qsem.circuits.NoiseModel.from_backend>`, channels
  after every gate, measurement errors) and its readout confusion;
* ``noiseless``: the same circuit without noise.

Both are evaluated on the held-out points by Qiskit Aer (``density_matrix`` method with
Aer's own ``NoiseModel.from_backend``, ``shots`` measurements per point, readout error
included; ``seed_simulator`` = the seed), accuracy and cross-entropy of the estimated
class probabilities; paired tests over seeds (Wilcoxon and t-test, :mod:`qsem.stats`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qsem.runner import ConfigError, Experiment, RunContext
from qsem.stats import paired_tests
from qsem.training import descent, make_optimizer, run_steps

__all__ = [
    "EXPERIMENT",
    "NoisyTrainingConfig",
    "device_ansatz",
    "device_circuits",
    "drop_idle_wires",
    "run",
    "stressed_noise",
]

#: Fake backends the experiment accepts (small devices: the density matrix spans them).
BACKENDS = ("FakeManilaV2", "FakeLimaV2", "FakeBelemV2", "FakeQuitoV2", "FakeBurlingtonV2",
            "FakeYorktownV2", "FakeLagosV2", "FakeNairobiV2")  # fmt: skip
MODELS = ("noise_aware", "noiseless")
_EPS = 1e-9


@dataclass(frozen=True)
class NoisyTrainingConfig:
    """Config of ``qsem run noisy-training`` (override any key with ``key=value``)."""

    #: the first seed; the seeds are seed, seed+1, ..., seed+n_seeds-1
    seed: int = 0
    #: seeds (paired comparisons over them)
    n_seeds: int = 5
    #: the fake backend (qiskit-ibm-runtime) whose noise is used
    backend: str = "FakeManilaV2"
    #: circuit qubits (on the device's first qubits)
    qubits: int = 3
    #: trainable layers (rz, sx, rz, sx on every qubit, then a cx chain)
    layers: int = 2
    #: training points of the two-moons task (one full batch)
    n_train: int = 64
    #: held-out points, evaluated on Aer
    n_test: int = 200
    #: full-batch Adam epochs
    epochs: int = 40
    #: Adam learning rate
    lr: float = 0.05
    #: Aer shots per test point
    shots: int = 2000
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1
    #: readout error P(1|0) on every qubit, replacing the snapshot's (None: keep it)
    readout_p01: float | None = None
    #: readout error P(0|1) on every qubit, replacing the snapshot's (None: keep it)
    readout_p10: float | None = None
    #: extra amplitude damping (probability γ) after every sx, x and cx on each of its
    #: qubits, composed with the snapshot's errors (0: none)
    damping: float = 0.0

    def __post_init__(self) -> None:
        for key in ("n_seeds", "qubits", "layers", "n_train", "n_test", "epochs", "shots"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        if self.qubits < 2:
            raise ConfigError(f"config key 'qubits': must be >= 2, got {self.qubits}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"config key 'lr': must be a positive finite number, got {self.lr}")
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"config key 'backend': expected one of {list(BACKENDS)}, got {self.backend!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"config key 'threads': must be >= 0, got {self.threads}")
        for key in ("readout_p01", "readout_p10", "damping"):
            v = getattr(self, key)
            if v is not None and not 0.0 <= v < 0.5:
                raise ConfigError(f"config key '{key}': must lie in [0, 0.5), got {v}")
        if (self.readout_p01 is None) != (self.readout_p10 is None):
            raise ConfigError("config keys 'readout_p01' and 'readout_p10' go together")


# --------------------------------------------------------------------------
# circuits
# --------------------------------------------------------------------------
def device_ansatz(n: int, layers: int) -> Any:
    """A Qiskit circuit of native gates only (``sx``, ``rz``, ``cx``), so that transpiling
    it keeps each symbolic angle a plain parameter: inputs ``x[q]`` as ``sx rz(x) sx``,
    then per layer ``rz(w) sx rz(w') sx`` on every qubit and a ``cx`` chain."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import ParameterVector

    x = ParameterVector("x", n)
    w = ParameterVector("w", 2 * n * layers)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.sx(q)
        qc.rz(x[q], q)
        qc.sx(q)
    k = 0
    for _ in range(layers):
        for q in range(n):
            qc.rz(w[k], q)
            qc.sx(q)
            qc.rz(w[k + 1], q)
            qc.sx(q)
            k += 2
        for q in range(n - 1):
            qc.cx(q, q + 1)
    return qc


def stressed_noise(
    backend: Any, readout: tuple[float, float] | None = None, damping: float = 0.0
) -> Any:
    """Aer's ``NoiseModel.from_backend(backend)``, with every qubit's readout replaced by
    the asymmetric confusion ``readout = (P(1|0), P(0|1))`` and an amplitude damping of
    probability ``damping`` composed after every ``sx``, ``x`` and ``cx`` on each of its
    qubits (settings the snapshots lack: their readout is symmetric, their relaxation weak).
    """
    from qiskit_aer.noise import NoiseModel as AerNoiseModel
    from qiskit_aer.noise import ReadoutError, amplitude_damping_error

    model = AerNoiseModel.from_backend(backend)
    if readout is not None:
        p01, p10 = readout
        for q in range(backend.num_qubits):
            confusion = [[1 - p01, p01], [p10, 1 - p10]]
            model.add_readout_error(ReadoutError(confusion), [q], warnings=False)
    if damping > 0:
        one = amplitude_damping_error(damping)
        for name in ("sx", "x", "cx"):
            for qargs in backend.target.qargs_for_operation_name(name) or []:
                err = one if len(qargs) == 1 else one.tensor(one)
                model.add_quantum_error(err, name, list(qargs), warnings=False)
    return model


def device_circuits(backend: Any, n: int, layers: int, aer_noise: Any = None) -> dict[str, Any]:
    """The ansatz transpiled to ``backend`` (qubit ``q`` on physical qubit ``q``) and what
    runs it: ``qiskit`` (transpiled, on all device qubits), ``aer_noise`` (Aer's model of
    the backend), ``noise`` (qsem's), ``noisy`` / ``clean`` (qsem circuits with / without
    the noise, on the ``n`` used qubits only: see :func:`drop_idle_wires`), ``readout``
    (the confusion of the measured wire there), ``wire`` (the qsem wire of circuit qubit 0
    in ``noisy``/``clean``), ``full_wire`` (its wire on all device qubits, as in
    ``noise.apply(qiskit)``) and ``qubit`` (its physical qubit). ``aer_noise``: the Aer
    model to use (default: ``NoiseModel.from_backend(backend)``)."""
    from qiskit import transpile
    from qiskit_aer.noise import NoiseModel as AerNoiseModel

    from qsem.circuits import Circuit, NoiseModel

    tq = transpile(
        device_ansatz(n, layers), backend, initial_layout=list(range(n)), optimization_level=0,
        seed_transpiler=0,
    )  # fmt: skip
    if aer_noise is None:
        aer_noise = AerNoiseModel.from_backend(backend)
    noise = NoiseModel.from_qiskit(aer_noise)
    qubit = int(tq.layout.final_index_layout()[0])
    full_wire = tq.num_qubits - 1 - qubit
    noisy, mapping = drop_idle_wires(noise.apply(measured_copy(tq, qubit)))
    clean, clean_map = drop_idle_wires(Circuit.from_qiskit(tq))
    assert mapping == clean_map, "the noise acts on wires the gates do not touch"
    readout = [
        e.on([mapping[w] for w in e.wires])
        for e in noise.readout_errors([2] * tq.num_qubits)
        if e.wires == (full_wire,)
    ]
    return {
        "qiskit": tq,
        "aer_noise": aer_noise,
        "noise": noise,
        "noisy": noisy,
        "clean": clean,
        "readout": readout,
        "qubit": qubit,
        "wire": mapping[full_wire],
        "full_wire": full_wire,
    }


def drop_idle_wires(circuit: Any) -> tuple[Any, dict[int, int]]:
    """``circuit`` on the wires its operations touch (in order), and the old -> new wire map.

    A wire no operation touches stays in ``|0>`` and factors out of the state, so the
    probabilities of the kept wires are unchanged; the density matrix shrinks by ``d²``
    per dropped wire (a transpiled circuit spans every device qubit).
    """
    from qsem.circuits import Circuit
    from qsem.circuits.circuit import remap_wires

    used = sorted({w for op in circuit.ops for w in op.wires})
    mapping = {w: i for i, w in enumerate(used)}
    out = Circuit([circuit.dims[w] for w in used])
    out.add(*[remap_wires(op, mapping) for op in circuit.ops])
    return out, mapping


def measured_copy(tq: Any, qubit: int) -> Any:
    """``tq`` with ``qubit`` measured into one classical bit at the end."""
    from qiskit import ClassicalRegister

    qc = tq.copy()
    qc.add_register(ClassicalRegister(1, "c"))
    qc.measure(qubit, 0)
    return qc


# --------------------------------------------------------------------------
# data, model, training
# --------------------------------------------------------------------------
def moons(n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Standardised two-moons points (noise 0.15): train/test features and labels."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_train + n_test, noise=0.15, random_state=seed)
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.long)
    return xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:]


class HybridClassifier(torch.nn.Module):
    """``Linear(2, n) -> π·tanh`` angles, then a :class:`QuantumLayer` (probs of one wire)."""

    def __init__(self, circuit: Any, wire: int, n: int, layers: int, readout: Any) -> None:
        from qsem.simulators import QuantumLayer

        super().__init__()
        self.encode = torch.nn.Linear(2, n, dtype=torch.float64)
        self.quantum = QuantumLayer(
            circuit, probs_wires=[wire], weight_shapes={"w": 2 * n * layers},
            readout=readout, diff_method="backprop",
        )  # fmt: skip

    def angles(self, x: torch.Tensor) -> torch.Tensor:
        return math.pi * torch.tanh(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantum(self.angles(x))


def nll(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.log(p.gather(1, y[:, None]).clamp(min=_EPS)).mean()


def train(model: HybridClassifier, x: torch.Tensor, y: torch.Tensor, cfg: Any) -> float:
    """Full-batch Adam; returns the mean step time in seconds."""
    opt, _ = make_optimizer(model, cfg.lr)
    tick = time.perf_counter()
    run_steps(descent(opt, lambda _: nll(model(x), y)), range(cfg.epochs))
    return (time.perf_counter() - tick) / cfg.epochs


def aer_probs(dev: dict[str, Any], angles: torch.Tensor, w: torch.Tensor, shots: int,
              seed: int) -> np.ndarray:  # fmt: skip
    """Class probabilities ``(N, 2)`` estimated by Aer with the device noise, one job."""
    from qiskit_aer import AerSimulator

    qc = measured_copy(dev["qiskit"], dev["qubit"])
    params = {p.name: p for p in qc.parameters}
    a = angles.detach().numpy()
    n_rows = a.shape[0]
    binds = {params[f"x[{i}]"]: a[:, i].tolist() for i in range(a.shape[1])}
    binds.update({params[f"w[{j}]"]: [float(v)] * n_rows for j, v in enumerate(w.tolist())})
    sim = AerSimulator(method="density_matrix", noise_model=dev["aer_noise"])
    res = sim.run(qc, shots=shots, seed_simulator=seed, parameter_binds=[binds]).result()
    ones = np.array([res.get_counts(i).get("1", 0) for i in range(n_rows)], dtype=np.float64)
    p1 = ones / shots
    return np.stack([1 - p1, p1], 1)


def evaluate(dev: dict[str, Any], model: HybridClassifier, x: torch.Tensor, y: torch.Tensor,
             cfg: Any, seed: int) -> dict[str, float]:  # fmt: skip
    with torch.no_grad():
        p = aer_probs(dev, model.angles(x), model.quantum.weights["w"], cfg.shots, seed)
    yy = y.numpy()
    return {
        "aer_accuracy": float((p.argmax(1) == yy).mean()),
        "aer_nll": float(-np.log(np.clip(p[np.arange(len(yy)), yy], _EPS, 1)).mean()),
    }


def train_pair(cfg: NoisyTrainingConfig, dev: dict[str, Any], seed: int) -> dict[str, Any]:
    """Both models of one seed, from the same initial weights."""
    xtr, ytr, xte, yte = moons(cfg.n_train, cfg.n_test, seed)
    out: dict[str, Any] = {}
    init = None
    for name in MODELS:
        torch.manual_seed(seed)
        aware = name == "noise_aware"
        model = HybridClassifier(
            dev["noisy"] if aware else dev["clean"], dev["wire"], cfg.qubits, cfg.layers,
            dev["readout"] if aware else None,
        )  # fmt: skip
        if init is None:
            init = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(init)
        step_s = train(model, xtr, ytr, cfg)
        with torch.no_grad():
            own = model(xte)
        out[name] = {
            **evaluate(dev, model, xte, yte, cfg, seed),
            "own_accuracy": float((own.argmax(1) == yte).float().mean()),
            "step_ms": round(1000 * step_s, 2),
        }
    return out


# --------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------
def run(cfg: NoisyTrainingConfig, ctx: RunContext) -> dict[str, Any]:
    import qiskit_ibm_runtime.fake_provider as fake

    tick = time.perf_counter()
    backend = getattr(fake, cfg.backend)()
    readout = None if cfg.readout_p01 is None else (cfg.readout_p01, cfg.readout_p10 or 0.0)
    dev = device_circuits(
        backend, cfg.qubits, cfg.layers, stressed_noise(backend, readout, cfg.damping)
    )
    seeds = [cfg.seed + s for s in range(cfg.n_seeds)]
    per_seed = []
    for step, seed in enumerate(ctx.progress(seeds, total=len(seeds))):
        r = train_pair(cfg, dev, seed)
        per_seed.append(r)
        ctx.log(step, seed=seed, **{f"{m}_{k}": v for m in MODELS for k, v in r[m].items()})
    summary = {
        m: {k: _mean_std([r[m][k] for r in per_seed]) for k in per_seed[0][m]} for m in MODELS
    }
    tests = {
        k: paired_tests([r["noise_aware"][k] for r in per_seed],
                        [r["noiseless"][k] for r in per_seed])
        for k in ("aer_accuracy", "aer_nll")
    }  # fmt: skip
    results = {
        "backend": cfg.backend,
        "readout_p01_p10": readout,
        "damping": cfg.damping,
        "device_qubit": dev["qubit"],
        "circuit_ops": {k: int(v) for k, v in dev["qiskit"].count_ops().items()},
        "noisy_circuit_channels": sum(op.name == "Kraus" for op in dev["noisy"].ops),
        "seeds": seeds,
        "per_seed": per_seed,
        "summary": summary,
        "tests_noise_aware_minus_noiseless": tests,
        "wall_seconds": round(time.perf_counter() - tick, 2),
    }
    ctx.write_text("noisy_training.md", markdown_table(results))
    return results


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def markdown_table(results: dict[str, Any]) -> str:
    """Per-seed Aer accuracies of both models and the paired tests."""
    lines = [
        f"Backend {results['backend']} (circuit qubit 0 on device qubit "
        f"{results['device_qubit']}), seeds {results['seeds']}.",
        "",
        "| seed | noise-aware acc (Aer) | noiseless acc (Aer) | noise-aware NLL | noiseless NLL |",
        "|---|---|---|---|---|",
    ]
    for seed, r in zip(results["seeds"], results["per_seed"], strict=True):
        a, b = r["noise_aware"], r["noiseless"]
        lines.append(
            f"| {seed} | {a['aer_accuracy']:.3f} | {b['aer_accuracy']:.3f} | "
            f"{a['aer_nll']:.3f} | {b['aer_nll']:.3f} |"
        )
    for k, t in results["tests_noise_aware_minus_noiseless"].items():
        lines.append("")
        lines.append(
            f"{k}: mean difference (noise-aware - noiseless) {t['mean_diff']:+.4f}, "
            f"Wilcoxon p = {t['wilcoxon_p']}, paired t-test p = {t['ttest_p']}"
        )
    return "\n".join(lines) + "\n"


EXPERIMENT = Experiment(
    name="noisy-training",
    description="hybrid classifier trained under a fake IBM backend's noise vs noiselessly, "
    "both evaluated on Aer with that noise",
    defaults=NoisyTrainingConfig(),
    run=run,
    results=(
        "backend",
        "readout_p01_p10",
        "damping",
        "device_qubit",
        "circuit_ops",
        "noisy_circuit_channels",
        "seeds",
        "per_seed",
        "summary",
        "tests_noise_aware_minus_noiseless",
        "wall_seconds",
    ),
)
