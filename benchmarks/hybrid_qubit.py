"""hybrid_qubit: one Adam step of a qubit hybrid layer, qsem vs PennyLane ``default.qubit``.

Model (the same on both sides): angle-encode a batch ``X`` of shape ``(B, n)`` with
``RY(x_i)`` on wire ``i``; ``L`` layers of [``RY(w[l,i,0])``, ``RZ(w[l,i,1])`` on every
wire, then a CNOT ring ``CNOT(i, i+1 mod n)``]; measure ``<Z_i>`` on every wire; MSE
against random targets in [-1, 1]. One timed unit = zero_grad + forward + backward +
``Adam.step``.

* qsem: ONE :class:`~qsem.circuits.Circuit` with symbolic parameters ``x{i}`` (bound to
  the batch columns ``X[:, i]``) and ``w_{l}_{i}_ry`` / ``w_{l}_{i}_rz`` (bound to the
  entries of an ``nn.Parameter`` of shape ``(L, n, 2)``), run by
  ``TorchSimulator("statevector")`` in complex64, ``expval`` of the ``Z_i`` list.
* anchor: ``default.qubit`` QNode (interface torch, diff_method backprop) wrapped in
  ``qml.qnn.TorchLayer``, inputs of shape ``(B, n)`` through parameter broadcasting.
  ``default.qubit`` has no dtype option and simulates in complex128, so qsem is also
  timed in complex128 (``qsem_c128_s``, ``ratio_c128``: same precision as the anchor).

At n=10 a second row, ``hybrid_qubit[n=10,lightning.qubit]``, times the same step
against ``lightning.qubit`` with ``diff_method="adjoint"`` (TorchLayer, broadcasting: one
circuit and one adjoint sweep per batch row), target ``>= 10``.

Before timing, both sides compute the loss and the gradient for the same weights and
must agree to 1e-4.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from qsem.circuits import CNOT, RY, RZ, Circuit, ParameterVector, PauliString
from qsem.simulators import TorchSimulator, expval

from . import harness
from .harness import Config, check_close, measure, row

NAME = "hybrid_qubit"
#: (n wires, L layers, B batch, target ratio)
SIZES: list[tuple[int, int, int, str | None]] = [(6, 3, 64, None), (10, 4, 128, ">= 15")]
LR = 0.01
ATOL = 1e-4


def build_circuit(n: int, layers: int) -> Circuit:
    """Inputs bind ``x`` (B, n); weights bind ``w`` = the (L, n, 2) weights flattened."""
    x, w = ParameterVector("x", n), ParameterVector("w", layers * n * 2)
    c = Circuit.qubits(n)
    for i in range(n):
        c.add(RY(x[i], wires=i))
    for l in range(layers):
        for i in range(n):
            c.add(RY(w[(l * n + i) * 2], wires=i), RZ(w[(l * n + i) * 2 + 1], wires=i))
        for i in range(n):
            c.add(CNOT(wires=[i, (i + 1) % n]))
    return c


class QsemLayer(nn.Module):
    """The qsem model: one symbolic circuit, weights bound by name at every call."""

    def __init__(self, n: int, layers: int, weights: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.circuit = build_circuit(n, layers)
        self.sim = TorchSimulator("statevector", dtype=dtype)
        self.obs = [PauliString("Z", wires=[i]) for i in range(n)]
        self.weights = nn.Parameter(weights.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params: dict[str, Any] = {"x": x, "w": self.weights.reshape(-1)}
        out = expval(self.sim.run(self.circuit, params), self.obs)
        return out.to(x.dtype)


def pennylane_layer(
    n: int, layers: int, weights: torch.Tensor, device: str = "default.qubit"
) -> nn.Module:
    """``default.qubit`` with backprop, or ``lightning.qubit`` with the adjoint method."""
    import pennylane as qml

    method = "adjoint" if device == "lightning.qubit" else "backprop"
    return qnode_layer(qml.device(device, wires=n), n, layers, weights, method)


def qnode_layer(
    dev: Any, n: int, layers: int, weights: torch.Tensor, diff_method: str
) -> nn.Module:
    """The workload's layer as a PennyLane QNode on the device ``dev`` (TorchLayer)."""
    import pennylane as qml

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def qnode(inputs: torch.Tensor, weights: torch.Tensor) -> Any:
        for i in range(n):
            qml.RY(inputs[..., i], wires=i)
        for l in range(layers):
            for i in range(n):
                qml.RY(weights[l, i, 0], wires=i)
                qml.RZ(weights[l, i, 1], wires=i)
            for i in range(n):
                qml.CNOT(wires=[i, (i + 1) % n])
        return [qml.expval(qml.PauliZ(i)) for i in range(n)]

    layer = qml.qnn.TorchLayer(qnode, {"weights": (layers, n, 2)})
    with torch.no_grad():
        layer.weights.copy_(weights)
    return layer


def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x).to(y.dtype), y)


make_step = partial(harness.adam_step, loss_fn, lr=LR)
loss_and_grad = partial(harness.loss_and_grad, loss_fn)


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    rows = {}
    for n, layers, batch, target in SIZES:
        name = f"{NAME}[n={n}]"
        cfg.log(f"  {name}: L={layers}, B={batch}")
        g = torch.Generator().manual_seed(cfg.seed + n)
        x = torch.rand(batch, n, generator=g) * torch.pi
        y = torch.rand(batch, n, generator=g) * 2 - 1
        w0 = torch.rand(layers, n, 2, generator=g) * 2 * torch.pi

        qsem64 = QsemLayer(n, layers, w0, torch.complex64)
        qsem128 = QsemLayer(n, layers, w0, torch.complex128)
        anchor = pennylane_layer(n, layers, w0)
        la, ga = loss_and_grad(anchor, x, y)
        dev_loss = dev_grad = 0.0
        for label, m in (("complex64", qsem64), ("complex128", qsem128)):
            lq, gq = loss_and_grad(m, x, y)
            dev_loss = max(dev_loss, check_close(f"{name} loss ({label})", lq, la, ATOL))
            dev_grad = max(dev_grad, check_close(f"{name} gradient ({label})", gq, ga, ATOL))
        cfg.log(
            f"    agreement: loss {float(la):.6f}, |dloss| {dev_loss:.1e}, |dgrad| {dev_grad:.1e}"
        )

        units = {
            "qsem": make_step(qsem64, x, y),
            "qsem_c128": make_step(qsem128, x, y),
            "anchor": make_step(anchor, x, y),
        }
        reps = {"qsem": cfg.repeats, "qsem_c128": cfg.repeats, "anchor": cfg.anchor_repeats}
        warm = {"qsem": cfg.warmup, "qsem_c128": cfg.warmup, "anchor": cfg.anchor_warmup}
        st = measure(units, reps, warm, cfg.log)
        rows[name] = row(
            qsem=st["qsem"],
            anchor="pennylane default.qubit (TorchLayer, backprop, broadcasting)",
            anchor_stats=st["anchor"],
            target=target,
            notes=(
                f"n={n}, L={layers}, B={batch}; one Adam step (fwd+bwd+update). qsem complex64; "
                "default.qubit simulates in complex128 (no dtype option): ratio_c128 compares "
                f"qsem complex128. Agreement checked: |dloss| {dev_loss:.1e}, "
                f"|dgrad| {dev_grad:.1e}."
            ),
            qsem_c128_s=st["qsem_c128"].median,
            ratio_c128=st["anchor"].median / st["qsem_c128"].median,
            qsem_c128_timing=st["qsem_c128"].as_dict(),
            agreement={"loss": float(la), "max_abs_dloss": dev_loss, "max_abs_dgrad": dev_grad},
            size={"n": n, "layers": layers, "batch": batch},
            floor_bytes=harness.floor_bytes(
                build_circuit(n, layers), "statevector", batch, torch.complex64, backward=True
            ),
        )
        if n == LIGHTNING_N:
            key = f"{NAME}[n={n},lightning.qubit]"
            rows[key] = _lightning_row(cfg, n, layers, batch, LIGHTNING_TARGET, x, y, w0)
            cfg.log(f"    vs lightning.qubit: ratio {rows[key]['ratio']:.1f} ({LIGHTNING_TARGET})")
    return rows


#: The row against ``lightning.qubit`` (adjoint): the register size and its target.
LIGHTNING_N = 10
LIGHTNING_TARGET = ">= 10"


def _lightning_row(
    cfg: Config,
    n: int,
    layers: int,
    batch: int,
    target: str,
    x: torch.Tensor,
    y: torch.Tensor,
    w0: torch.Tensor,
) -> dict[str, Any]:
    """qsem (autograd, complex64) against ``lightning.qubit`` adjoint on the same step
    (fresh models from ``w0``: the other row's timed Adam steps moved its weights)."""
    qsem64 = QsemLayer(n, layers, w0, torch.complex64)
    anchor = pennylane_layer(n, layers, w0, "lightning.qubit")
    la, ga = loss_and_grad(anchor, x, y)
    lq, gq = loss_and_grad(qsem64, x, y)
    dev = max(
        check_close("lightning loss", lq, la, ATOL), check_close("lightning grad", gq, ga, ATOL)
    )
    st = measure(
        {"qsem": make_step(qsem64, x, y), "anchor": make_step(anchor, x, y)},
        {"qsem": cfg.repeats, "anchor": cfg.slow_anchor_repeats},
        {"qsem": cfg.warmup, "anchor": 0},
        cfg.log,
    )
    return row(
        qsem=st["qsem"],
        anchor="pennylane lightning.qubit (TorchLayer, adjoint, broadcasting)",
        anchor_stats=st["anchor"],
        target=target,
        notes=(
            f"n={n}, L={layers}, B={batch}; one Adam step. qsem complex64 autograd; lightning "
            f"complex128 adjoint (one circuit per batch row). Agreement: max dev {dev:.1e}."
        ),
        size={"n": n, "layers": layers, "batch": batch},
        floor_bytes=harness.floor_bytes(
            build_circuit(n, layers), "statevector", batch, torch.complex64, backward=True
        ),
    )
