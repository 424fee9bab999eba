"""hybrid_qutrit: one Adam step of a qutrit hybrid classifier, qsem vs PennyLane qutrit devices.

Model (the same on both sides): 4 qutrits; angle-encode ``X`` of shape ``(B, 4)`` with
``TRY(x_i, subspace=(0, 1))`` on qutrit ``i``; 3 layers of [``TRY(w[l,i,0], (0, 1))``,
``TRY(w[l,i,1], (1, 2))`` on every qutrit, then a TAdd ring ``TAdd(i, i+1 mod 4)``];
Born probabilities of qutrit 0 -> cross-entropy (NLL of the log-probabilities) against
random 3-class labels; B = 64. One timed unit = zero_grad + forward + backward +
``Adam.step``.

Two rows:

* ``statevector vs default.qutrit``: qsem ``TorchSimulator("statevector")`` against
  ``default.qutrit``. That device takes ``c_dtype``; it is given complex64 so both sides
  compute in the same precision.
* ``density_matrix vs default.qutrit.mixed``: qsem ``TorchSimulator("density_matrix")``
  against ``default.qutrit.mixed``, which has no dtype option and simulates in
  complex128; qsem is also timed in complex128 there (``ratio_c128``). qsem's default
  ``dm_method="auto"`` keeps a channel-free ρ factored (``|ψ><ψ|``), so a third row,
  ``density_matrix dm_method=dense vs default.qutrit.mixed``, times qsem evolving the
  dense 81 x 81 matrix (the anchor's algorithm) in the same rounds (informational).

Both PennyLane devices accept parameter broadcasting with backprop in PennyLane 0.45.1
(the QNode gets the whole ``(B, 4)`` batch at once, wrapped in ``qml.qnn.TorchLayer``);
a Python loop over the batch was slower in a trial, so it is not used. Before timing,
both sides compute the loss and the gradient for the same weights and must agree to 1e-4.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from qsem.circuits import TRY, Circuit, ParameterVector, TAdd
from qsem.simulators import TorchSimulator, probs

from . import harness
from .harness import Config, check_close, measure, row

NAME = "hybrid_qutrit"
N, LAYERS, BATCH = 4, 3, 64
LR = 0.01
ATOL = 1e-4


def build_circuit(n: int = N, layers: int = LAYERS) -> Circuit:
    """Inputs bind ``x`` (B, n); weights bind ``w`` = the (L, n, 2) weights flattened."""
    x, w = ParameterVector("x", n), ParameterVector("w", layers * n * 2)
    c = Circuit.qutrits(n)
    for i in range(n):
        c.add(TRY(x[i], wires=i, subspace=(0, 1)))
    for l in range(layers):
        for i in range(n):
            c.add(
                TRY(w[(l * n + i) * 2], wires=i, subspace=(0, 1)),
                TRY(w[(l * n + i) * 2 + 1], wires=i, subspace=(1, 2)),
            )
        for i in range(n):
            c.add(TAdd(wires=[i, (i + 1) % n]))
    return c


class QsemClassifier(nn.Module):
    """The qsem model: one symbolic circuit, probabilities of qutrit 0."""

    def __init__(
        self,
        weights: torch.Tensor,
        mode: str,
        dtype: torch.dtype,
        dm_method: str = "auto",
        n: int = N,
        layers: int = LAYERS,
    ):
        super().__init__()
        self.circuit = build_circuit(n, layers)
        self.sim = TorchSimulator(mode, dtype=dtype, dm_method=dm_method)  # type: ignore[arg-type]
        self.weights = nn.Parameter(weights.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params: dict[str, Any] = {"x": x, "w": self.weights.reshape(-1)}
        return probs(self.sim.run(self.circuit, params), [0])


def pennylane_classifier(
    device: str, weights: torch.Tensor, n: int = N, layers: int = LAYERS
) -> nn.Module:
    import pennylane as qml

    if device == "default.qutrit":
        dev = qml.device(device, wires=n, c_dtype=np.complex64, r_dtype=np.float32)
    else:
        dev = qml.device(device, wires=n)

    return qnode_classifier(dev, weights, "backprop", n, layers)


def qnode_classifier(
    dev: Any, weights: torch.Tensor, diff_method: str, n: int = N, layers: int = LAYERS
) -> nn.Module:
    """The workload's classifier as a PennyLane QNode on the device ``dev`` (TorchLayer)."""
    import pennylane as qml

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def qnode(inputs: torch.Tensor, weights: torch.Tensor) -> Any:
        for i in range(n):
            qml.TRY(inputs[..., i], wires=i, subspace=(0, 1))
        for l in range(layers):
            for i in range(n):
                qml.TRY(weights[l, i, 0], wires=i, subspace=(0, 1))
                qml.TRY(weights[l, i, 1], wires=i, subspace=(1, 2))
            for i in range(n):
                qml.TAdd(wires=[i, (i + 1) % n])
        return qml.probs(wires=0)

    layer = qml.qnn.TorchLayer(qnode, {"weights": (layers, n, 2)})
    with torch.no_grad():
        layer.weights.copy_(weights)
    return layer


def loss_fn(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = model(x)
    return nn.functional.nll_loss(torch.log(p.clamp_min(1e-30)), labels)


make_step = partial(harness.adam_step, loss_fn, lr=LR)
loss_and_grad = partial(harness.loss_and_grad, loss_fn)


VARIANTS = [
    # (row label, qsem mode, anchor device, anchor precision, target)
    ("statevector vs default.qutrit", "statevector", "default.qutrit", "complex64", ">= 500"),
    (
        "density_matrix vs default.qutrit.mixed",
        "density_matrix",
        "default.qutrit.mixed",
        "complex128",
        ">= 300",
    ),
]
DENSE_LABEL = "density_matrix dm_method=dense vs default.qutrit.mixed"


def run(cfg: Config) -> dict[str, dict[str, Any]]:
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.rand(BATCH, N, generator=g) * torch.pi
    labels = torch.randint(0, 3, (BATCH,), generator=g)
    w0 = torch.rand(LAYERS, N, 2, generator=g) * 2 * torch.pi
    rows = {}
    for label, mode, device, anchor_prec, target in VARIANTS:
        name = f"{NAME}[{label}]"
        cfg.log(f"  {name}: {N} qutrits, {LAYERS} layers, B={BATCH}")
        models = {
            "qsem": QsemClassifier(w0, mode, torch.complex64),
            "qsem_c128": QsemClassifier(w0, mode, torch.complex128),
        }
        if mode == "density_matrix":
            models["qsem_dense"] = QsemClassifier(w0, mode, torch.complex64, dm_method="dense")
        anchor = pennylane_classifier(device, w0)
        la, ga = loss_and_grad(anchor, x, labels)
        dev_loss = dev_grad = 0.0
        for key, m in models.items():
            lq, gq = loss_and_grad(m, x, labels)
            dev_loss = max(dev_loss, check_close(f"{name} loss ({key})", lq, la, ATOL))
            dev_grad = max(dev_grad, check_close(f"{name} gradient ({key})", gq, ga, ATOL))
        cfg.log(
            f"    agreement: loss {float(la):.6f}, |dloss| {dev_loss:.1e}, |dgrad| {dev_grad:.1e}"
        )

        units = {key: make_step(m, x, labels) for key, m in models.items()}
        units["anchor"] = make_step(anchor, x, labels)
        reps = {key: cfg.repeats for key in models} | {"anchor": cfg.slow_anchor_repeats}
        warm = {key: cfg.warmup for key in models} | {"anchor": cfg.anchor_warmup}
        st = measure(units, reps, warm, cfg.log)
        agreement = {"loss": float(la), "max_abs_dloss": dev_loss, "max_abs_dgrad": dev_grad}
        anchor_desc = f"pennylane {device} (TorchLayer, backprop, broadcasting, {anchor_prec})"
        common = (
            f"{N} qutrits, {LAYERS} layers, B={BATCH}; one Adam step (fwd+bwd+update). "
            "Broadcasting with backprop works on this device (no loop over the batch). "
            f"Agreement checked: |dloss| {dev_loss:.1e}, |dgrad| {dev_grad:.1e}."
        )
        if mode == "statevector":
            what = f"qsem statevector complex64 vs {device} in {anchor_prec}."
        else:
            what = (
                f"qsem density_matrix complex64 (default dm_method='auto': with no channels rho "
                f"stays factored as |psi><psi|) vs {device} in {anchor_prec}; ratio_c128 compares "
                "qsem complex128; the dense-evolution row beside this one is the same run."
            )
        # the default density-matrix run keeps rho factored (a statevector's bytes)
        floor_sv = harness.floor_bytes(
            build_circuit(), "statevector", BATCH, torch.complex64, backward=True
        )
        rows[name] = row(
            qsem=st["qsem"],
            anchor=anchor_desc,
            anchor_stats=st["anchor"],
            target=target,
            notes=f"{what} {common}",
            qsem_c128_s=st["qsem_c128"].median,
            ratio_c128=st["anchor"].median / st["qsem_c128"].median,
            qsem_c128_timing=st["qsem_c128"].as_dict(),
            agreement=agreement,
            floor_bytes=floor_sv,
        )
        if mode == "density_matrix":
            rows[f"{NAME}[{DENSE_LABEL}]"] = row(
                qsem=st["qsem_dense"],
                anchor=anchor_desc,
                anchor_stats=st["anchor"],
                target=None,
                notes=(
                    "qsem density_matrix complex64 with dm_method='dense' (the 81x81 rho evolved "
                    f"as a matrix, the same algorithm as {device}); informational, timed in the "
                    f"same rounds as the row above (same anchor timings). {common}"
                ),
                agreement=agreement,
                floor_bytes=harness.floor_bytes(
                    build_circuit(), "density_matrix", BATCH, torch.complex64, backward=True
                ),
            )
    return rows
