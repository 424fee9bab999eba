"""CUDA checks of the torch engine; skipped where there is no CUDA (CI has none)."""

from __future__ import annotations

import pytest
import torch
from conftest import ATOL_F32, ATOL_F64

from qsem.circuits import CNOT, RY, TRY, Circuit, Depolarizing, ParameterVector, PauliString, TAdd
from qsem.simulators import TorchSimulator, expval, probs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def circuit() -> tuple[Circuit, ParameterVector]:
    w = ParameterVector("w", 6)
    c = Circuit([2, 2, 3, 3]).add(
        RY(w[0], wires=0), RY(w[1], wires=1), TRY(w[2], wires=2, subspace=(0, 1)),
        TRY(w[3], wires=3, subspace=(1, 2)), CNOT(wires=[0, 1]), TAdd(wires=[2, 3]),
        Depolarizing(0.1, wires=2), RY(w[4], wires=0), TRY(w[5], wires=3),
    )  # fmt: skip
    return c, w


@pytest.mark.parametrize("mode", ["statevector", "density_matrix"])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_cuda_matches_cpu(mode: str, dtype: torch.dtype) -> None:
    c, _ = circuit()
    if mode == "statevector":
        c = Circuit(c.dims, [op for op in c.ops if not isinstance(op, Depolarizing)])
    vals = torch.rand(16, 6, dtype=torch.float64)
    atol = ATOL_F32 if dtype == torch.complex64 else ATOL_F64
    cpu = TorchSimulator(mode, dtype=dtype).run(c, {"w": vals})  # type: ignore[arg-type]
    gpu = TorchSimulator(mode, dtype=dtype, device="cuda").run(c, {"w": vals.cuda()})  # type: ignore[arg-type]
    torch.testing.assert_close(probs(gpu).cpu(), probs(cpu), atol=atol, rtol=0)


def test_cuda_gradients_match_cpu() -> None:
    c, _ = circuit()
    obs = PauliString("Z", wires=[0])
    grads = []
    for device in ("cpu", "cuda"):
        w = torch.linspace(0.1, 1.2, 6, dtype=torch.float64, device=device).requires_grad_()
        sim = TorchSimulator("density_matrix", dtype=torch.complex128, device=device)
        expval(sim.run(c, {"w": w}), obs).backward()
        grads.append(w.grad.cpu())  # type: ignore[union-attr]
    torch.testing.assert_close(grads[1], grads[0], atol=ATOL_F64, rtol=0)
