"""``noisy_training.stressed_noise``: a fake backend's Aer model with an asymmetric readout
and extra amplitude damping, converted to qsem and checked against Aer.

Reference: Aer ``density_matrix`` with the same Aer model (exact probabilities of the
measured qubit, ``save_probabilities``), times the asymmetric confusion written by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("qiskit_aer")

from conftest import ATOL_AER_TRUNCATION
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

from qsem.experiments.noisy_training import NoisyTrainingConfig, device_circuits, stressed_noise
from qsem.runner import ConfigError
from qsem.simulators import TorchSimulator, probs


def aer_exact(dev, values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Aer's exact probabilities ``(B, 2)`` of the measured physical qubit."""
    qc = dev["qiskit"].copy()
    qc.save_probabilities([dev["qubit"]], label="p")
    qp = {p.name: p for p in qc.parameters}
    binds = [{qp[f"{k}[{i}]"]: v[:, i].tolist() for k, v in values.items()
              for i in range(v.shape[1])}]  # fmt: skip
    res = (
        AerSimulator(method="density_matrix", noise_model=dev["aer_noise"])
        .run(qc, parameter_binds=binds)
        .result()
    )
    return torch.tensor(np.stack([res.data(i)["p"] for i in range(len(binds[0][qp["x[0]"]]))]))


@pytest.mark.parametrize(
    ("readout", "damping"), [((0.02, 0.2), 0.0), (None, 0.05), ((0.01, 0.1), 0.03)]
)
def test_stressed_noise_matches_aer_with_the_hand_written_confusion(readout, damping) -> None:
    backend = FakeManilaV2()
    dev = device_circuits(backend, 2, 1, stressed_noise(backend, readout, damping))
    rng = np.random.default_rng(2)
    values = {k: torch.tensor(rng.uniform(-3, 3, (3, int(n or 1))))
              for k, n in dev["noisy"].parameter_lengths.items()}  # fmt: skip
    sim = TorchSimulator("density_matrix", dtype=torch.complex128)
    exact = probs(sim.run(dev["noisy"], values), [dev["wire"]])
    want = aer_exact(dev, values)
    assert (exact - want).abs().max() < ATOL_AER_TRUNCATION
    recorded = probs(sim.run(dev["noisy"], values), [dev["wire"]], readout=dev["readout"])
    if readout is not None:
        p01, p10 = readout
        conf = torch.tensor([[1 - p01, p01], [p10, 1 - p10]], dtype=torch.float64)
        assert (recorded - want @ conf).abs().max() < ATOL_AER_TRUNCATION
    plain = device_circuits(backend, 2, 1)
    base = probs(sim.run(plain["noisy"], values), [plain["wire"]])
    if damping > 0:  # the damping acts (gates after it rotate, so no sign is fixed)
        assert float((exact - base).abs().max()) > 1e-2


def test_stressed_noise_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="readout_p01"):
        NoisyTrainingConfig(readout_p01=0.1)
    with pytest.raises(ConfigError, match="damping"):
        NoisyTrainingConfig(damping=0.7)
