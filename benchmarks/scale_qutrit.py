"""scale_qutrit: one large qutrit register (B=1), forward + gradient, against the floor.

No peer simulates these registers (PennyLane's ``default.qutrit`` takes hours at 12
qutrits and has no adjoint method; Aer has no qutrits), so each row reports qsem's
time against the memory-traffic floor only: ``× floor`` = qsem's median over the time
to move the bytes the step must move (``benchmarks.harness.floor_bytes``) at the copy
bandwidth measured in the same run. Target: ``× floor <= 3`` at the largest sizes.

Circuit: ``TRY(x_i, (0, 1))`` encoding, L=4 layers of ``TRY``/``TRZ`` on the subspaces
(0, 1) and (1, 2) of every qutrit, then a ``TAdd`` ring; ``<λ_3>`` (Gell-Mann,
``diag(1, -1, 0)``) on every wire; the gradient of ``MSE(<λ_3>, y)`` for the weights.

* statevector, n = 8, 10, 12 qutrits: :func:`qsem.simulators.adjoint_expval`, complex64;
* density matrix, 6 qutrits, a ``Depolarizing(0.01)`` channel on every wire after each
  layer: autograd through ``TorchSimulator("density_matrix")``, complex64 (a mixed
  state: the adjoint method does not apply).
"""

from __future__ import annotations

from typing import Any

import torch

from qsem.circuits import TRY, TRZ, Circuit, Depolarizing, GellMann, ParameterVector, TAdd
from qsem.simulators import TorchSimulator, adjoint_expval, expval

from .harness import Config, check_close, floor_bytes, measure

NAME = "scale_qutrit"
LAYERS = 4
SV_SIZES = (8, 10, 12)
DM_SIZE = 6
NOISE = 0.01
ATOL = 1e-4
TARGET = "<= 3"


def build_circuit(n: int, layers: int, noise: float = 0.0) -> Circuit:
    x, w = ParameterVector("x", n), ParameterVector("w", layers * n * 4)
    c = Circuit.qutrits(n)
    for i in range(n):
        c.add(TRY(x[i], wires=i))
    k = 0
    for _ in range(layers):
        for i in range(n):
            for gate in (TRY, TRZ):
                for sub in ((0, 1), (1, 2)):
                    c.add(gate(w[k], wires=i, subspace=sub))
                    k += 1
        for i in range(n):
            c.add(TAdd(wires=[i, (i + 1) % n]))
        if noise:
            for i in range(n):
                c.add(Depolarizing(noise, wires=i))
    return c


def _unit(n: int, mode: str, dtype: torch.dtype, seed: int) -> tuple[Any, Circuit]:
    circuit = build_circuit(n, LAYERS, NOISE if mode == "density_matrix" else 0.0)
    obs = [GellMann(3, wires=[i]) for i in range(n)]
    g = torch.Generator().manual_seed(seed + n)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    x = (torch.rand(n, generator=g, dtype=torch.float64) * torch.pi).to(real)
    y = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
    w0 = torch.rand(LAYERS * n * 4, generator=g, dtype=torch.float64) * 2 * torch.pi
    sim = TorchSimulator(mode, dtype=dtype)

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        w = w0.to(real).detach().clone().requires_grad_()
        params = {"x": x, "w": w}
        if mode == "statevector":
            e = adjoint_expval(circuit, params, obs, dtype=dtype, simulator=sim)
        else:
            e = expval(sim.run(circuit, params), obs)
        ((e.double() - y) ** 2).mean().backward()
        assert w.grad is not None
        return e.detach(), w.grad

    return step, circuit


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    cases = [(n, "statevector") for n in cfg.extra.get("qutrit_sizes") or SV_SIZES]
    cases.append((DM_SIZE, "density_matrix"))
    for n, mode in cases:
        name = f"{NAME}[n={n},{'sv' if mode == 'statevector' else 'dm'}]"
        cfg.log(f"  {name}: L={LAYERS}, B=1, {mode}")
        step, circuit = _unit(n, mode, torch.complex64, cfg.seed)
        ref, _ = _unit(n, mode, torch.complex128, cfg.seed)
        e64, g64 = step()
        e128, g128 = ref() if n <= 10 or mode != "statevector" else (e64, g64)
        check_close(f"{name} <λ3>", e64, e128, ATOL)
        check_close(f"{name} grad", g64, g128, ATOL)
        st = measure({"qsem": step}, {"qsem": cfg.repeats}, {"qsem": cfg.warmup}, None)["qsem"]
        floor_mode = "statevector" if mode == "statevector" else "density_matrix"
        how = "adjoint" if mode == "statevector" else "autograd, Depolarizing per layer"
        rows[name] = {
            "qsem_s": st.median,
            "anchor": "none (no peer runs these registers: x floor only)",
            "anchor_s": None,
            "ratio": None,
            "ratio_min": None,
            "target": None,
            "floor_target": TARGET,
            "met": None,
            "no_peer": True,
            "notes": (
                f"{n} qutrits, L={LAYERS}, B=1, {mode}, forward + gradient of MSE over every "
                f"<λ3>; {how}, complex64. No peer: x floor is the comparison."
            ),
            "qsem_timing": st.as_dict(),
            "size": {"n": n, "layers": LAYERS, "batch": 1, "mode": mode},
            "floor_bytes": floor_bytes(circuit, floor_mode, 1, torch.complex64, backward=True),
        }
        cfg.log(f"    qsem {st.median * 1e3:.0f} ms (min {st.min * 1e3:.0f})")
    return rows
