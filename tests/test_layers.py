"""The semantic layers φ, Φ, Ψ, Λ, Ω and the readout heads.

References: hand-computed small cases, ⊗' and the fold written out in the
test (the layers call :mod:`qsem.tensors`, so it is not an independent
reference), circuits built gate by gate and run directly, and central finite
differences in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ATOL_F32, ATOL_F64, FD_ATOL, FD_STEP

from qsem.circuits import CRY, RY, RZ, TRY, TRZ, Circuit, Controlled, Depolarizing
from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.layers import (
    EmergenceStack,
    HolographicReducer,
    NonCommutativeComposer,
    QuantumSemanticLayer,
    QutritTruthHead,
    SemanticEncoder,
    SoftmaxHead,
    TwoQubitHead,
)
from qsem.simulators import TorchSimulator, probs
from qsem.tensors import Psi

F64 = torch.float64

# --------------------------------------------------------------------------
# φ: SemanticEncoder
# --------------------------------------------------------------------------


def test_encoder_matches_definition_and_sums_to_one() -> None:
    enc = SemanticEncoder(vocab_size=5, s_dim=3, c_dim=2, n_items=4).double()
    tokens = torch.tensor([[0, 4, 2], [1, 1, 3]])
    phi = enc(tokens)
    assert phi.shape == (2, 3, 3, 2)
    torch.testing.assert_close(phi.sum(dim=(2, 3)), torch.ones(2, 3, dtype=F64))
    z = enc.logits.detach().numpy()
    e = enc.item_logits.detach().numpy()
    for b in range(2):
        for pos in range(3):
            zl = z[tokens[b, pos]]
            p = np.exp(zl - zl.max())
            p /= p.sum()
            ref = sum(p[v] * np.exp(e[v]) / np.exp(e[v]).sum() for v in range(4))
            np.testing.assert_allclose(phi[b, pos].detach().numpy().ravel(), ref, atol=ATOL_F64)
    torch.testing.assert_close(enc.items.sum(dim=(1, 2)), torch.ones(4, dtype=F64))


@pytest.mark.parametrize(
    ("tokens", "exc", "fragment"),
    [
        ([[0, 1]], QsemTypeError, "torch.Tensor"),
        (torch.tensor([0, 1]), QsemValueError, "shape"),
        (torch.tensor([[0.0, 1.0]]), QsemTypeError, "integer"),
        (torch.tensor([[0, 5]]), QsemValueError, "0..4"),
        (torch.tensor([[-1, 2]]), QsemValueError, "0..4"),
    ],
)
def test_encoder_bad_tokens(tokens: object, exc: type, fragment: str) -> None:
    enc = SemanticEncoder(vocab_size=5)
    with pytest.raises(exc, match=f"argument 'tokens'.*{fragment}"):
        enc(tokens)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Φ: ⊗' and the composer
# --------------------------------------------------------------------------

A = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=F64)
B = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=F64)


def _fold_by_hand(ops: torch.Tensor, lam: float) -> torch.Tensor:
    """``((M_1 ⊗' M_2) ⊗' M_3) ...`` with ``A ⊗' B = AB + λ(AB − BA)`` written out."""
    acc = ops[:, 0]
    for pos in range(1, ops.shape[1]):
        m = ops[:, pos]
        acc = acc @ m + lam * (acc @ m - m @ acc)
    return acc


@pytest.mark.parametrize("lam", [0.0, 0.2, -0.2])
def test_composer_fold_matches_the_definition(lam: float) -> None:
    g = torch.Generator().manual_seed(0)
    ops = torch.rand(3, 5, 4, 4, generator=g, dtype=F64)
    comp = NonCommutativeComposer(2, 2, lam=lam, learn_lam=False).double()
    lam64 = float(comp.lam)
    assert abs(lam64 - lam) < 1e-7  # λ_raw was initialised in float32
    torch.testing.assert_close(comp.fold(ops), _fold_by_hand(ops, lam64), atol=ATOL_F64, rtol=0)
    # A ⊗' B by hand: AB = diag(1, 0), BA = diag(0, 1), so A ⊗' B = diag(1 + λ, -λ)
    want = torch.diag(torch.tensor([1.0 + lam64, -lam64], dtype=F64))
    torch.testing.assert_close(comp.fold(torch.stack([A, B])[None])[0], want)


def _phi(b: int, length: int, s: int = 3, c: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(b, length, s * c, generator=g, dtype=F64), -1).reshape(
        b, length, s, c
    )


def test_composer_prefix_is_the_fold_applied_to_u() -> None:
    comp = NonCommutativeComposer(3, 2, lam=0.1).double()
    phi = _phi(2, 4)
    ops, prefix = comp(phi)
    assert ops.shape == (2, 4, 6, 6) and prefix.shape == (2, 4, 3, 2)
    torch.testing.assert_close(ops.sum(-1), torch.ones(2, 4, 6, dtype=F64))  # row-stochastic
    u = torch.softmax(comp.init_logits, 0)
    for pos in range(4):
        fold = _fold_by_hand(ops[:, : pos + 1], float(comp.lam.detach()))
        torch.testing.assert_close(prefix[:, pos].flatten(1), u @ fold, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(prefix.sum(dim=(2, 3)), torch.ones(2, 4, dtype=F64))


def test_composer_padding_is_neutral() -> None:
    comp = NonCommutativeComposer(3, 2, lam=0.2).double()
    phi = _phi(1, 3)
    _, short = comp(phi)
    padded = torch.cat([phi, _phi(1, 2, seed=5)], dim=1)
    mask = torch.tensor([[True, True, True, False, False]])
    _, long = comp(padded, mask)
    torch.testing.assert_close(long[:, -1], short[:, -1], atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("lam", [0.0, 0.2])
def test_order_matters_in_full_mode_not_in_diagonal_mode(lam: float) -> None:
    phi = _phi(1, 3)
    rev = phi.flip(1)
    full = NonCommutativeComposer(3, 2, mode="full", lam=lam).double()
    a, b = full(phi)[1][:, -1], full(rev)[1][:, -1]
    assert float((a - b).abs().max().detach()) > 1e-3
    diag = NonCommutativeComposer(3, 2, mode="diagonal").double()
    torch.testing.assert_close(diag(phi)[1][:, -1], diag(rev)[1][:, -1], atol=ATOL_F64, rtol=0)


def test_lambda_changes_the_fold_of_non_commuting_operators() -> None:
    ops = torch.stack([A, B])[None]
    c0 = NonCommutativeComposer(1, 2, lam=0.0, learn_lam=False).double()
    c1 = NonCommutativeComposer(1, 2, lam=0.2, learn_lam=False).double()
    torch.testing.assert_close(c0.fold(ops)[0], A @ B)
    torch.testing.assert_close(c1.fold(ops)[0], A @ B + 0.2 * (A @ B - B @ A))
    torch.testing.assert_close(c1.fold(ops.flip(1))[0], B @ A + 0.2 * (B @ A - A @ B))


# --------------------------------------------------------------------------
# Ψ and Λ
# --------------------------------------------------------------------------


def test_emergence_slices_and_add_slice() -> None:
    stack = EmergenceStack(3, 2, n_slices=2).double()
    r = _phi(2, 3)
    psi = stack(r)
    assert psi.shape == (2, 3, 3, 2, 2)
    torch.testing.assert_close(psi.sum(dim=(2, 3)), torch.ones(2, 3, 2, dtype=F64))
    before = stack.mix(psi)
    torch.testing.assert_close(before, sum(stack.alpha[p] * psi[..., p] for p in range(2)))
    assert stack.add_slice() == 3
    psi3 = stack(r)
    assert psi3.shape[-1] == 3
    torch.testing.assert_close(stack.mix(psi3), before, atol=ATOL_F64, rtol=0)
    # ΔΨ between steps is qsem.tensors.Psi.delta: the common slices
    assert Psi(psi3.detach()).delta(Psi(psi.detach())).abs().max() < 1e-12
    assert Psi(psi.detach()).delta(Psi(psi.detach().flip(-1))).shape == (2, 3, 2)


def test_add_slice_freezes_the_ended_regime_and_the_copy_learns() -> None:
    """Without the freeze the copy and its source would get equal gradients forever."""
    torch.manual_seed(3)
    stack = EmergenceStack(3, 2, n_slices=1).double()
    r = _phi(4, 2)
    target = _phi(4, 2)
    assert stack.add_slice() == 2
    assert stack.frozen.tolist() == [True, False] and stack.live_slice == 1
    frozen_before = stack.slice_logits[0].detach().clone()
    opt = torch.optim.Adam(stack.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad(set_to_none=True)
        loss = ((stack.mix(stack(r)) - target) ** 2).sum()
        loss.backward()
        assert stack.slice_logits[0].grad is None
        opt.step()
    assert torch.equal(stack.slice_logits[0].detach(), frozen_before)
    assert (stack.slice_logits[1].detach() - frozen_before).abs().max() > 1e-3
    # a later event freezes the new live slice; the state dict carries the flags
    stack.add_slice()
    assert stack.frozen.tolist() == [True, True, False]
    grown = EmergenceStack(3, 2, n_slices=1).double()
    grown.add_slice()
    grown.add_slice()
    grown.load_state_dict(stack.state_dict())
    assert grown.frozen.tolist() == [True, True, False]


def test_holographic_components_sum_back() -> None:
    stack = EmergenceStack(3, 2, n_slices=2).double()
    holo = HolographicReducer(3, 2, z_dim=4).double()
    psi = stack(_phi(2, 3))
    lam = holo(psi)
    assert lam.shape == (2, 3, 3, 2, 2, 4)
    torch.testing.assert_close(lam.sum(-1), psi)
    typed, pi = holo.components(psi)
    torch.testing.assert_close(holo.joint(typed, pi), lam)
    feats = holo.features(typed, pi, stack.alpha)
    assert feats.shape == (2, 3, 6 + 4)
    # proj_{Z→S,C}(Λ) = Σ_p α_p Σ_z Λ[..., p, z] = Σ_p α_p Ψ[..., p]
    torch.testing.assert_close(feats[..., :6], stack.mix(psi).flatten(2))
    want_latent = torch.einsum("blscpz,p->blz", lam, stack.alpha)
    torch.testing.assert_close(feats[..., 6:], want_latent)
    torch.testing.assert_close(feats[..., 6:].sum(-1), torch.ones(2, 3, dtype=F64))


# --------------------------------------------------------------------------
# Ω: QuantumSemanticLayer
# --------------------------------------------------------------------------


def _features(b: int, length: int, s: int, c: int, z: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dist = torch.softmax(2 * torch.randn(b, length, s * c, generator=g, dtype=F64), -1)
    lat = torch.softmax(torch.randn(b, length, z, generator=g, dtype=F64), -1)
    return torch.cat([dist, lat], dim=-1)


def _direct_circuit(layer: QuantumSemanticLayer, angles: list[float]) -> Circuit:
    """The layer's circuit written out gate by gate with numbers (S qutrit, 2 qubits)."""
    w = layer.weights.detach().tolist()
    c = Circuit([3, 2, 2])
    c.add(
        TRY(angles[0], wires=0, subspace=(0, 1)),
        TRY(angles[1], wires=0, subspace=(1, 2)),
        RY(angles[2], wires=1),
        RY(angles[3], wires=2),
    )
    k = 0
    for _ in range(layer.layers):
        for gate in (TRY, TRZ):
            for j in range(2):
                c.add(gate(w[k], wires=0, subspace=(j, j + 1)))
                k += 1
        for q in (1, 2):
            c.add(RY(w[k], wires=q), RZ(w[k + 1], wires=q))
            k += 2
        for q in (1, 2):
            c.add(Controlled(TRY(w[k], wires=0, subspace=(0, 1)), control_wires=[q]))
            k += 1
        c.add(CRY(w[k], wires=[1, 2]))
        k += 1
        if layer.noise > 0:
            for wire in range(3):
                c.add(Depolarizing(layer.noise, wires=wire))
    return c


@pytest.mark.parametrize(("encoding", "noise"), [("born", 0.0), ("linear", 0.0), ("born", 0.1)])
def test_omega_equals_directly_built_circuit(encoding: str, noise: float) -> None:
    layer = QuantumSemanticLayer(
        8, 3, 2, 2, layers=2, noise=noise, encoding=encoding, init_scale=0.7
    ).double()
    with torch.no_grad():
        layer.encoder.weight.normal_(0, 0.3)
    x = _features(2, 3, 3, 2, 2)
    out = layer(x)
    assert out.shape == (2, 3, 3, 2, 2)
    torch.testing.assert_close(out.sum(dim=(2, 3, 4)), torch.ones(2, 3, dtype=F64))
    angles = layer.angles(x).detach()
    mode = "density_matrix" if noise else "statevector"
    sim = TorchSimulator(mode=mode, dtype=torch.complex128)
    for b in range(2):
        for pos in range(3):
            ref = probs(sim.run(_direct_circuit(layer, angles[b, pos].tolist())))
            torch.testing.assert_close(out[b, pos].reshape(-1), ref, atol=ATOL_F64, rtol=0)


def test_born_encoding_loads_the_marginals() -> None:
    layer = QuantumSemanticLayer(8, 3, 2, 2, layers=1, init_scale=0.0).double()
    x = _features(4, 2, 3, 2, 2, seed=3)
    out = layer(x)
    dist = x[..., :6].reshape(4, 2, 3, 2)
    # weights 0: the S and C marginals are those of the encoded distribution
    torch.testing.assert_close(out.sum(dim=(3, 4)), dist.sum(-1), atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(out.sum(dim=(2, 4)), dist.sum(-2), atol=ATOL_F64, rtol=0)


def test_omega_through_the_bridge_matches_the_engine() -> None:
    torch.manual_seed(2)
    layer = QuantumSemanticLayer(8, 3, 2, 2, layers=1, init_scale=0.5).double()
    x = _features(2, 2, 3, 2, 2, seed=4)
    direct = layer(x)
    layer.bridge = True
    bridged = layer(x)
    torch.testing.assert_close(bridged, direct, atol=ATOL_F64, rtol=0)
    g_bridge = torch.autograd.grad(bridged[..., 0, :, :].sum(), layer.weights)[0]
    layer.bridge = False
    g_direct = torch.autograd.grad(layer(x)[..., 0, :, :].sum(), layer.weights)[0]
    torch.testing.assert_close(g_bridge, g_direct, atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    ("backend", "module", "s_dim", "c_dim"),
    [("aer", "qiskit_aer", 3, 2), ("pennylane", "pennylane", 1, 4)],
)
def test_omega_on_other_backends_matches_the_engine(
    backend: str, module: str, s_dim: int, c_dim: int
) -> None:
    """Aer takes the qutrit register; PennyLane has no mixed-dimension device (qubits only)."""
    pytest.importorskip(module)
    torch.manual_seed(3)
    layer = QuantumSemanticLayer(s_dim * c_dim + 2, s_dim, c_dim, 2, init_scale=0.5).double()
    x = _features(2, 1, s_dim, c_dim, 2, seed=5)
    ref = layer(x)
    g_ref = torch.autograd.grad(ref[..., 0, :].sum(), layer.weights)[0]
    layer.backend = backend
    out = layer(x)
    g = torch.autograd.grad(out[..., 0, :].sum(), layer.weights)[0]
    torch.testing.assert_close(out, ref, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(g, g_ref, atol=1e-7, rtol=0)


def test_omega_float32_matches_float64() -> None:
    layer = QuantumSemanticLayer(8, 3, 2, 2, init_scale=0.5)
    x = _features(2, 2, 3, 2, 2).float()
    out32 = layer(x)
    out64 = layer.double()(x.double())
    torch.testing.assert_close(out32.double(), out64, atol=ATOL_F32, rtol=0)


# --------------------------------------------------------------------------
# gradients against finite differences (float64)
# --------------------------------------------------------------------------


def test_gradients_of_the_chain_match_finite_differences() -> None:
    """φ -> Φ -> Ω in float64: autograd against central differences, element by element."""
    torch.manual_seed(0)
    enc = SemanticEncoder(4, 3, 1, init_scale=1.0).double()
    comp = NonCommutativeComposer(3, 1, hidden=4, lam=0.1).double()
    omega = QuantumSemanticLayer(5, 3, 1, 2, layers=1, init_scale=0.5).double()
    tokens = torch.tensor([[1, 3, 2]])
    lat = torch.tensor([[[0.3, 0.7]]], dtype=F64)
    params = [enc.item_logits, comp.lam_raw, comp.net[2].bias, omega.weights, omega.encoder.bias]

    def chain() -> torch.Tensor:
        _, prefix = comp(enc(tokens))
        feats = torch.cat([prefix[:, -1:].flatten(2), lat], dim=-1)
        p = omega(feats)[0, 0].sum(dim=(1, 2))  # S marginal
        return p[0] + 2 * p[2]

    grads = torch.autograd.grad(chain(), params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + FD_STEP
                up = float(chain())
                flat[i] = old - FD_STEP
                down = float(chain())
                flat[i] = old
                fd = (up - down) / (2 * FD_STEP)
                assert abs(float(g.view(-1)[i]) - fd) < FD_ATOL, (p.shape, i, fd)


# --------------------------------------------------------------------------
# heads
# --------------------------------------------------------------------------


def test_heads_hand_computed() -> None:
    p = torch.zeros(1, 1, 3, 2, 1, dtype=F64)
    p[0, 0, :, 0, 0] = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    p[0, 0, :, 1, 0] = torch.tensor([0.2, 0.1, 0.1], dtype=F64)
    torch.testing.assert_close(
        QutritTruthHead()(p).exp(), torch.tensor([[[0.3, 0.3, 0.4]]], dtype=F64)
    )
    # the same from a distribution over S×C (φ_out, what SemanticModel passes)
    torch.testing.assert_close(
        QutritTruthHead()(p.sum(-1)).exp(), torch.tensor([[[0.3, 0.3, 0.4]]], dtype=F64)
    )
    assert QutritTruthHead.reads == "phi_out" and TwoQubitHead.reads == SoftmaxHead.reads == "born"
    # two qubits (S absent): |00>=.4, |01>=.3, |10>=.2, |11>=.1 -> renormalised over three
    q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64).reshape(1, 1, 1, 2, 2)
    head = TwoQubitHead()
    torch.testing.assert_close(head(q).exp(), torch.tensor([[[4 / 9, 3 / 9, 2 / 9]]], dtype=F64))
    torch.testing.assert_close(head.excluded(q), torch.tensor([[0.1]], dtype=F64))
    soft = SoftmaxHead(6).double()
    torch.testing.assert_close(soft(p).exp().sum(-1), torch.ones(1, 1, dtype=F64))


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def test_bad_layer_arguments_name_the_argument() -> None:
    with pytest.raises(QsemValueError, match="argument 's_dim'"):
        SemanticEncoder(5, s_dim=0)
    with pytest.raises(QsemValueError, match="argument 'mode'"):
        NonCommutativeComposer(mode="upper")
    with pytest.raises(QsemValueError, match="argument 'lam'"):
        NonCommutativeComposer(lam=0.3)
    with pytest.raises(QsemValueError, match="argument 'n_slices'"):
        EmergenceStack(n_slices=0)
    with pytest.raises(QsemValueError, match="argument 'noise'"):
        QuantumSemanticLayer(8, noise=1.5)
    with pytest.raises(QsemValueError, match="argument 'in_features'"):
        QuantumSemanticLayer(5)
    with pytest.raises(QsemValueError, match="argument 'encoding'"):
        QuantumSemanticLayer(8, encoding="amplitude")
    with pytest.raises(QsemValueError, match="argument 's_dim'"):
        QuantumSemanticLayer(3, s_dim=1, c_dim=1, z_dim=1)


def test_bad_forward_inputs_name_the_argument() -> None:
    comp = NonCommutativeComposer(3, 2)
    phi = torch.softmax(torch.randn(2, 4, 6), -1).reshape(2, 4, 3, 2)
    with pytest.raises(QsemValueError, match=r"argument 'mask'.*shape"):
        comp(phi, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(QsemTypeError, match=r"argument 'mask'.*bool"):
        comp(phi, torch.ones(2, 4))
    with pytest.raises(QsemValueError, match="argument 'phi'"):
        comp(phi.reshape(2, 4, 2, 3))
    with pytest.raises(QsemValueError, match=r"argument 'phi'.*axes"):
        comp(phi[0])
    with pytest.raises(QsemValueError, match="argument 'r'"):
        EmergenceStack(3, 2)(phi.reshape(2, 4, 6, 1))
    with pytest.raises(QsemValueError, match="argument 'psi'"):
        HolographicReducer(3, 2, 2)(torch.rand(2, 4, 2, 3, 1))
    with pytest.raises(QsemValueError, match="argument 'x'"):
        QuantumSemanticLayer(8)(torch.rand(2, 4, 7))
    with pytest.raises(QsemValueError, match="argument 'p'"):
        QutritTruthHead()(torch.rand(2, 1, 1, 2, 2))
    with pytest.raises(QsemValueError, match="argument 'p'"):
        TwoQubitHead()(torch.rand(2, 1, 3, 2, 1))
