"""``SemanticModel.intermediates``: the typed Ω, Π_edge and the head, for every profile.

References: the circuit re-run by hand from ``omega_params`` with the torch engine,
Born probabilities of the State, the S marginal written out, and the model's own
``forward`` (the same chain without wrapping Ω).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import ATOL_F32, ATOL_F64

from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.models import PROFILES, ModelConfig, SemanticModel, profile_config
from qsem.simulators import TorchSimulator, probs
from qsem.simulators.similarity import (
    bures_angle,
    fidelity,
    normalized_overlap,
    overlap,
    purity,
    swap_test_estimate,
    swap_test_probability,
)
from qsem.tensors import Omega, pi_edge

KEYS = {"phi", "ops", "prefix", "psi", "lam", "features", "omega", "omega_params", "born",
        "phi_out", "logp"}  # fmt: skip
TOKENS = torch.tensor([[2, 9, 5, 1, 0], [3, 6, 1, 7, 4], [8, 2, 0, 0, 0]])


def _model(cfg: ModelConfig, seed: int = 0) -> SemanticModel:
    torch.manual_seed(seed)
    return SemanticModel(cfg).double()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_yields_omega_and_phi_out(name: str) -> None:
    model = _model(profile_config(name))
    cfg = model.cfg
    out = model.intermediates(TOKENS)
    assert set(out) == KEYS
    n = TOKENS.shape[0]
    omega = out["omega"]
    assert isinstance(omega, Omega)
    n_s = 1 if cfg.s_dim > 1 else 0
    n_c = (cfg.c_dim - 1).bit_length()
    n_z = (cfg.z_dim - 1).bit_length()
    assert omega.shape == (n, 1, cfg.s_dim, 2**n_c, 1, 2**n_z, 1)  # pure: Psi = 1
    assert omega.dims == model.omega.dims and omega.n_categories == cfg.c_dim
    assert (omega.s_wire is None) == (n_s == 0)
    # the state re-run from the bindings is Ω's state
    state = TorchSimulator(dtype=torch.complex128).run(model.omega.circuit, out["omega_params"])
    torch.testing.assert_close(omega.to_state().vector, state.vector, atol=ATOL_F64, rtol=0)
    # born: the State's Born probabilities
    born = out["born"]
    assert born.shape == (n, 1, cfg.s_dim, 2**n_c, 2**n_z)
    torch.testing.assert_close(born.reshape(n, -1), probs(state), atol=ATOL_F64, rtol=0)
    # φ_out = Π_edge(Ω) per query: restricted to the categories and renormalised
    phi_out = out["phi_out"]
    assert phi_out.shape == (n, 1, cfg.s_dim, cfg.c_dim)
    torch.testing.assert_close(phi_out, pi_edge(omega, reduce_b=False).data, atol=ATOL_F64, rtol=0)
    kept = born.sum(-1)[..., : cfg.c_dim]
    want = kept / kept.sum(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(phi_out, want, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(phi_out.sum(dim=(-2, -1)), torch.ones(n, 1, dtype=torch.float64))
    # the head
    logp = out["logp"]
    assert logp.shape == (n, 3)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(n, dtype=torch.float64))
    if cfg.head == "qutrit":
        s_marginal = phi_out[:, 0].sum(-1).clamp_min(1e-7)
        torch.testing.assert_close(logp, s_marginal.log(), atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(model(TOKENS), logp, atol=0, rtol=0)


def test_qutrit_head_reads_the_category_states_only() -> None:
    """C = 3 categories on two qubits: the S marginal of φ_out drops |c = 3>."""
    model = _model(ModelConfig(c_dim=3, z_dim=2))
    out = model.intermediates(TOKENS)
    born = out["born"].sum(-1)  # (B, 1, 3, 4)
    assert float(born[..., 3].detach().sum()) > 1e-6  # the unused C state carries weight
    s = born[..., :3].sum(-1) / born[..., :3].sum(dim=(-2, -1))[..., None]
    torch.testing.assert_close(out["logp"], s[:, 0].log(), atol=ATOL_F64, rtol=0)


@pytest.mark.parametrize("head", ["softmax", "qutrit"])
def test_noisy_model_gives_a_mixed_omega(head: str) -> None:
    model = _model(ModelConfig(noise=0.05, head=head))
    out = model.intermediates(TOKENS)
    omega = out["omega"]
    assert omega.shape[-1] > 1  # mixed: several purification components
    rho = omega.density_matrices()[:, 0, 0]
    sim = TorchSimulator("density_matrix", dtype=torch.complex128, dm_method="dense")
    want = sim.run(model.omega.circuit, out["omega_params"]).density_matrix
    torch.testing.assert_close(rho, want, atol=1e-7, rtol=0)
    torch.testing.assert_close(
        out["phi_out"], pi_edge(omega, reduce_b=False).data, atol=1e-7, rtol=0
    )
    loss = out["logp"].sum()
    loss.backward()
    assert model.omega.weights.grad is not None
    assert bool(torch.isfinite(model.omega.weights.grad).all())


def test_float32_model_matches_float64() -> None:
    torch.manual_seed(4)
    model = SemanticModel(ModelConfig())
    out32 = model.intermediates(TOKENS)
    out64 = model.double().intermediates(TOKENS)
    assert out32["omega"].dtype == torch.complex64
    torch.testing.assert_close(out32["phi_out"].double(), out64["phi_out"], atol=ATOL_F32, rtol=0)
    torch.testing.assert_close(out32["logp"].double(), out64["logp"], atol=10 * ATOL_F32, rtol=0)


def test_other_backends_give_probabilities_only() -> None:
    """The bridge (any backend but the torch engine) returns Born probabilities: no Ω."""
    model = _model(ModelConfig())
    ref = model.intermediates(TOKENS)
    model.omega.bridge = True
    out = model.intermediates(TOKENS)
    assert out["omega"] is None
    torch.testing.assert_close(out["phi_out"], ref["phi_out"], atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(out["logp"], ref["logp"], atol=ATOL_F64, rtol=0)
    with pytest.raises(QsemValueError, match=r"argument 'backend'.*torch engine only"):
        model.omega.state(ref["features"])


def test_layer_state_is_the_one_simulation() -> None:
    model = _model(replace(profile_config("AGI-D"), z_dim=4))
    out = model.intermediates(TOKENS)
    state = model.omega.state(out["features"])
    assert state.dims == (2, 2, 2, 2) and state.batch_size == TOKENS.shape[0]
    torch.testing.assert_close(state.vector, out["omega"].to_state().vector)
    assert math.isclose(float(out["omega"].born().detach().sum()), TOKENS.shape[0], rel_tol=1e-12)


# --------------------------------------------------------------------------
# Ω straight into the similarity functions and the SWAP test
# --------------------------------------------------------------------------


def _two_omegas(noise: float) -> tuple[Omega, Omega]:
    """Ω of the same queries under two models (two seeds) of one circuit."""
    with torch.no_grad():
        a = _model(ModelConfig(noise=noise), seed=5).intermediates(TOKENS)["omega"]
        b = _model(ModelConfig(noise=noise), seed=6).intermediates(TOKENS)["omega"]
    return a, b


def test_pure_omegas_in_similarity_and_swap_test() -> None:
    a, b = _two_omegas(0.0)
    assert a.to_state().mode == "statevector"  # the SWAP test runs in statevector mode
    va, vb = a.to_state().vector, b.to_state().vector  # (B, D)
    ov = (va.conj() * vb).sum(-1).abs() ** 2  # |<a|b>|² by hand
    assert float(ov.max()) < 0.9  # the two models' states differ
    torch.testing.assert_close(overlap(a, b), ov, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(fidelity(a, b), ov, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(normalized_overlap(a, b), ov, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(bures_angle(a, b), torch.arccos(ov.sqrt()), atol=1e-7, rtol=0)
    torch.testing.assert_close(purity(a), torch.ones_like(ov), atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(swap_test_probability(a, b), (1 + ov) / 2, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(swap_test_probability(a, b), swap_test_probability(va, vb))


def test_mixed_omegas_in_similarity_and_swap_test() -> None:
    a, b = _two_omegas(0.05)
    assert a.to_state().mode == "density_matrix"
    ra, rb = a.density_matrices()[:, 0, 0], b.density_matrices()[:, 0, 0]  # (B, D, D)
    tr = torch.einsum("bij,bji->b", ra, rb).real  # Tr(ρσ) by hand
    pa = torch.einsum("bij,bji->b", ra, ra).real
    pb = torch.einsum("bij,bji->b", rb, rb).real
    fid = []
    for r, s in zip(ra.numpy(), rb.numpy(), strict=True):  # Uhlmann, with scipy's sqrtm
        sr = scipy.linalg.sqrtm(r)
        fid.append(np.trace(scipy.linalg.sqrtm(sr @ s @ sr)).real ** 2)
    fid_t = torch.tensor(fid, dtype=torch.float64)
    torch.testing.assert_close(overlap(a, b), tr, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(purity(a), pa, atol=ATOL_F64, rtol=0)
    torch.testing.assert_close(normalized_overlap(a, b), tr / (pa * pb).sqrt(), atol=1e-9, rtol=0)
    torch.testing.assert_close(fidelity(a, b), fid_t, atol=1e-7, rtol=0)
    torch.testing.assert_close(bures_angle(a, b), torch.arccos(fid_t.sqrt()), atol=1e-6, rtol=0)
    torch.testing.assert_close(swap_test_probability(a, b), (1 + tr) / 2, atol=1e-9, rtol=0)


def test_swap_test_estimate_takes_omegas() -> None:
    a, b = _two_omegas(0.0)
    est = swap_test_estimate(a, b, shots=4000, seed=3)
    exact = overlap(a, b)
    assert bool(est.contains(exact).all())


def test_to_state_must_return_a_state() -> None:
    class Fake:
        def to_state(self) -> object:
            return "no"

    with pytest.raises(QsemTypeError, match=r"argument 'a'.*to_state\(\) returned str"):
        overlap(Fake(), torch.tensor([1.0, 0.0]))
