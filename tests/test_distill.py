"""The self-distillation loop (qsem.distill): losses, teacher, probe metrics, events, resume.

Every number is checked against a hand computation or a closed form; the loop is
driven on a tiny classical model (an embedding read as φ through an
EmergenceStack) whose Ω is the statevector ``sqrt φ`` (a valid pure state).
"""

from __future__ import annotations

import io
import itertools
import math
from typing import Any

import pytest
import torch
from conftest import ATOL_F64, SHOT_SIGMAS

from qsem.circuits import TRY, Circuit, Parameter
from qsem.distill import (
    SHOT_KEYS,
    DistillConfig,
    EmergenceProbe,
    SelfDistiller,
    append_slice,
    ema_update,
    make_detectors,
    output_distribution,
    self_distillation_loss,
    soft_target_loss,
)
from qsem.emergence import EmergencePotential
from qsem.errors import QsemValueError
from qsem.layers import EmergenceStack
from qsem.runner import ConfigError
from qsem.simulators import TorchSimulator

# --------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _flat(rows: list[list[float]]) -> list[float]:
    return [x for row in rows for x in row]


def _tempered(p: list[float], tau: float) -> list[float]:
    w = [x ** (1 / tau) for x in p]
    return [x / sum(w) for x in w]


PHI_S = [[0.1, 0.2], [0.3, 0.1], [0.2, 0.1]]  # S = 3, C = 2
PHI_T = [[0.25, 0.05], [0.1, 0.3], [0.2, 0.1]]
PHI_S2 = [[0.4, 0.1], [0.1, 0.1], [0.2, 0.1]]
PHI_T2 = [[0.2, 0.2], [0.2, 0.2], [0.1, 0.1]]


def _phi(*rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[:, None]  # (B, L=1, S, C)


@pytest.mark.parametrize("tau", [1.0, 2.0, 0.5])
def test_soft_term_is_tau_squared_kl_of_tempered_distributions(tau: float) -> None:
    s, t = _phi(PHI_S, PHI_S2), _phi(PHI_T, PHI_T2)
    loss, parts = self_distillation_loss(
        s, t, torch.tensor([-1, -1]), temperature=tau, w_soft=1.0, w_hard=0.0
    )
    flat = [_flat(x) for x in (PHI_S, PHI_S2, PHI_T, PHI_T2)]
    kl = [_kl(_tempered(flat[2 + i], tau), _tempered(flat[i], tau)) for i in range(2)]
    expected = tau * tau * sum(kl) / 2  # mean over the B·L = 2 positions
    assert float(loss) == pytest.approx(expected, abs=ATOL_F64)
    assert parts["soft"] == pytest.approx(expected, abs=ATOL_F64)
    assert parts["hard"] == 0.0


def test_soft_target_loss_by_hand() -> None:
    assert soft_target_loss(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), 1.0).item() == (
        pytest.approx(_kl([1 / (1 + math.e), math.e / (1 + math.e)], [0.5, 0.5]), abs=1e-7)
    )


def test_hard_term_is_masked_ce_of_the_truth_marginal() -> None:
    s = _phi(PHI_S, PHI_S2, PHI_S)
    labels = torch.tensor([1, -1, 2])
    loss, parts = self_distillation_loss(s, None, labels, w_soft=1.0, w_hard=1.0)
    marg = [sum(r) for r in PHI_S]  # (0.3, 0.4, 0.3)
    expected = -(math.log(marg[1]) + math.log(marg[2])) / 2  # only the two labelled rows
    assert float(loss) == pytest.approx(expected, abs=ATOL_F64)
    assert parts == {
        "soft": 0.0,
        "hard": pytest.approx(expected, abs=ATOL_F64),
        "labelled": 2,
        "confident": 1.0,
    }


def test_weights_combine_and_no_labels_gives_zero_hard_term_with_a_gradient_path() -> None:
    s = _phi(PHI_S, PHI_S2).requires_grad_(True)
    t = _phi(PHI_T, PHI_T2)
    none = torch.tensor([-1, -1])
    soft, _ = self_distillation_loss(s, t, none, temperature=2.0, w_soft=1.0, w_hard=0.0)
    both, parts = self_distillation_loss(s, t, none, temperature=2.0, w_soft=0.3, w_hard=5.0)
    assert parts["hard"] == 0.0 and parts["labelled"] == 0
    assert float(both.detach()) == pytest.approx(0.3 * float(soft.detach()), abs=ATOL_F64)
    both.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    only_hard, _ = self_distillation_loss(s, None, none)
    assert float(only_hard.detach()) == 0.0 and only_hard.requires_grad


def test_loss_rejects_bad_arguments() -> None:
    s = _phi(PHI_S)
    with pytest.raises(ValueError, match="'labels'"):
        self_distillation_loss(s, None, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="'teacher'"):
        self_distillation_loss(s, _phi(PHI_S, PHI_S), torch.tensor([0]))
    with pytest.raises(ValueError, match="'temperature'"):
        self_distillation_loss(s, s, torch.tensor([0]), temperature=0.0)
    with pytest.raises(ValueError, match="'w_soft'"):
        self_distillation_loss(s, s, torch.tensor([0]), w_soft=-1.0)


def test_ema_update_by_hand() -> None:
    teacher, student = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        teacher.weight.fill_(1.0), teacher.bias.fill_(-2.0)
        student.weight.fill_(3.0), student.bias.fill_(2.0)
    ema_update(teacher, student, 0.9)
    assert float(teacher.weight.detach()) == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert float(teacher.bias.detach()) == pytest.approx(0.9 * -2.0 + 0.1 * 2.0)
    ema_update(teacher, student, 0.0)  # the previous-step teacher: a copy
    assert float(teacher.weight.detach()) == 3.0
    with pytest.raises(ValueError, match="'decay'"):
        ema_update(teacher, student, 1.5)


# --------------------------------------------------------------------------------------
# probe metrics
# --------------------------------------------------------------------------------------


def _probe(kinds: tuple[str, ...] = ("frobenius",), **kw: Any) -> EmergenceProbe:
    cfg = DistillConfig(detectors=kinds, trigger=(), **kw)
    return EmergenceProbe(make_detectors(cfg), EmergencePotential(window=3))


def test_probe_dphi_and_epot_on_a_hand_made_sequence() -> None:
    probe = _probe(("frobenius", "l1", "bocpd"), theta_frobenius=0.25, theta_l1=10.0)
    seq = [_phi(PHI_S, PHI_T), _phi(PHI_S2, PHI_T), _phi(PHI_S2, PHI_T2)]
    recs, events = [], []
    for step, phi in enumerate(seq, start=1):
        rec, ev = probe.observe(10 * step, {"phi_out": phi})
        recs.append(rec)
        events += ev
    assert recs[0] == {}  # nothing to compare with yet
    d1 = [a - b for a, b in zip(_flat(PHI_S2), _flat(PHI_S), strict=True)]
    d2 = [a - b for a, b in zip(_flat(PHI_T2), _flat(PHI_T), strict=True)]
    fro = [math.sqrt(sum(x * x for x in d)) for d in (d1, d2)]
    assert recs[1]["dphi_fro"] == pytest.approx(fro[0], abs=ATOL_F64)
    assert recs[1]["dphi_l1"] == pytest.approx(sum(map(abs, d1)), abs=ATOL_F64)
    assert recs[2]["dphi_fro"] == pytest.approx(fro[1], abs=ATOL_F64)
    # E_pot over the window (fro0, fro1): E_norm = fro1 / median, V_T = population variance
    med = (fro[0] + fro[1]) / 2
    var = ((fro[0] - med) ** 2 + (fro[1] - med) ** 2) / 2
    assert recs[2]["e_norm"] == pytest.approx(fro[1] / med, abs=ATOL_F64)
    assert recs[2]["v_t"] == pytest.approx(var, abs=ATOL_F64)
    assert recs[2]["epot_e_norm"] == pytest.approx(0.25 * fro[1] / med, abs=ATOL_F64)
    assert recs[2]["e_pot"] == pytest.approx(0.25 * (fro[1] / med + var), abs=ATOL_F64)
    assert recs[2]["theta"] == 0.0 and recs[2]["epot_theta"] == 0.0
    # frobenius (θ = 0.25) fires on the larger of the two changes only
    assert [(name, e.step) for name, e in events] == [
        ("frobenius", 10 * (1 + i)) for i in (1, 2) if fro[i - 1] > 0.25
    ]


def test_probe_quantum_distance_and_bures_angle_closed_forms() -> None:
    """|0> -> (|0> + |1>)/√2 -> ρ = diag(1/2, 1/2, 0): Tr ρσ, Bures angle by hand."""
    probe = _probe(("quantum",), theta_quantum=0.4)
    phi = _phi(PHI_S)
    c128 = torch.complex128
    zero = torch.tensor([[[1, 0, 0]]], dtype=c128)  # (N=1, 1, D=3)
    plus = torch.tensor([[[1, 1, 0]]], dtype=c128) / math.sqrt(2)
    mixed = torch.diag(torch.tensor([0.5, 0.5, 0.0], dtype=c128))[None]
    probe.observe(1, {"phi_out": phi, "omega": zero})
    rec, events = probe.observe(2, {"phi_out": phi, "omega": plus})
    assert rec["q_distance"] == pytest.approx(0.5, abs=ATOL_F64)  # 1 - |<0|+>|^2
    assert rec["bures"] == pytest.approx(math.pi / 4, abs=ATOL_F64)  # arccos sqrt(1/2)
    assert rec["epot_theta"] == pytest.approx(0.25 * math.pi / 4, abs=ATOL_F64)
    assert [(name, e.value) for name, e in events] == [("quantum", pytest.approx(0.5))]
    rec, _ = probe.observe(3, {"phi_out": phi, "omega": mixed})
    # Tr(ρσ) = <+|ρ|+> = 1/2; purities 1 and 1/2: normalised overlap (1/2)/sqrt(1/2)
    assert rec["q_distance"] == pytest.approx(1 - 0.5 / math.sqrt(0.5), abs=ATOL_F64)
    # pure |+>: F = <+|ρ|+> = 1/2 as well
    assert rec["bures"] == pytest.approx(math.pi / 4, abs=ATOL_F64)


def test_probe_nci_is_the_mean_over_queries() -> None:
    probe = _probe()
    a = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    b = a.T.clone()
    ops = torch.stack([torch.stack([a, b]), torch.stack([a, a])])  # (N=2, L=2, 2, 2)
    rec, _ = probe.observe(1, {"phi_out": _phi(PHI_S, PHI_S), "ops": ops})
    # ‖[A, Aᵀ]‖_F = ‖diag(1, -1)‖_F = √2, ‖A‖_F = 1: NCI = √2 for query 0, 0 for query 1
    assert rec["nci_avg"] == pytest.approx(math.sqrt(2) / 2, abs=ATOL_F64)
    # a padded third position (the identity) counts only without the mask
    eye = torch.eye(2, dtype=torch.float64)
    ops = torch.stack([a, b, eye])[None]  # (1, 3, 2, 2): pairs (A, Aᵀ) -> √2, (Aᵀ, I) -> 0
    rec, _ = _probe().observe(1, {"phi_out": _phi(PHI_S), "ops": ops})
    assert rec["nci_avg"] == pytest.approx(math.sqrt(2) / 2, abs=ATOL_F64)
    mask = torch.tensor([[True, True, False]])
    rec, _ = _probe().observe(1, {"phi_out": _phi(PHI_S), "ops": ops, "mask": mask})
    assert rec["nci_avg"] == pytest.approx(math.sqrt(2), abs=ATOL_F64)


def test_probe_shot_estimate_covers_the_exact_distance() -> None:
    """One qutrit, TRY(θ) on levels (0, 1): F between θ_a and θ_b is cos²((θ_a − θ_b)/2)."""
    circuit = Circuit([3]).add(TRY(Parameter("t"), wires=0, subspace=(0, 1)))
    thetas = [torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=torch.float64)]
    thetas.append(thetas[0] + 0.2)
    sim = TorchSimulator(dtype=torch.complex128)
    cfg = DistillConfig(detectors=("quantum", "quantum_shots"), trigger=(), shots=4000)
    probe = EmergenceProbe(make_detectors(cfg), EmergencePotential(), shots=4000,
                           shot_backends={"quantum_shots": (None, None)})  # fmt: skip
    rec: dict[str, Any] = {}
    for step, th in enumerate(thetas):
        out = {"phi_out": _phi(*[PHI_S] * 4), "omega": sim.run(circuit, {"t": th}),
               "omega_params": {"t": th}, "circuit": circuit}  # fmt: skip
        rec, _ = probe.observe(step, out)
    exact = 1 - math.cos(0.1) ** 2
    assert rec["q_distance"] == pytest.approx(exact, abs=ATOL_F64)
    sigma = math.sqrt(exact * (1 - exact) / (4 * 4000))
    assert abs(rec["q_distance_shots"] - exact) < SHOT_SIGMAS * sigma
    assert rec["q_distance_shots_low"] <= exact <= rec["q_distance_shots_high"]


# --------------------------------------------------------------------------------------
# the loop on a tiny model
# --------------------------------------------------------------------------------------


class Tiny(torch.nn.Module):
    """φ = EmergenceStack-mixed softmax of an embedding; Ω = sqrt φ as a statevector."""

    def __init__(self, vocab: int = 8) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 6)
        self.emergence = EmergenceStack(3, 2, 1)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        r = torch.softmax(self.emb(tokens[:, -1:]), -1).unflatten(-1, (3, 2))
        phi = self.emergence.mix(self.emergence(r))
        omega = phi.flatten(1).clamp_min(0).sqrt().to(torch.complex128)[:, None, :]
        return {"phi_out": phi, "omega": omega}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 8, (24, 2), generator=g)
    labels = torch.where(torch.rand(24, generator=g) < 0.3, tokens[:, -1] % 3, -1)
    return tokens, labels


LOOP_CFG = DistillConfig(
    detectors=("frobenius", "adaptive", "l1", "quantum"), trigger=("frobenius",),
    theta_frobenius=0.02, probe_every=2, refractory=3, max_slices=3, adaptive_window=5,
    adaptive_min_history=2, correction_steps=2, correction_batch=4, epot_window=4,
)  # fmt: skip


def _loop(
    records: list[Any], tmp_path: Any = None, cfg: DistillConfig = LOOP_CFG
) -> tuple[Tiny, torch.optim.Optimizer, SelfDistiller]:
    torch.manual_seed(0)
    model = Tiny().double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    tokens, labels = _data()
    loop = SelfDistiller(
        model, cfg, probe_tokens=tokens[:6], optimizer=opt, correction=(tokens, labels),
        log=lambda s, r: records.append((s, r)), snapshot_dir=tmp_path, seed=1,
    )  # fmt: skip
    return model, opt, loop


def _steps(loop: SelfDistiller, start: int, stop: int) -> None:
    tokens, labels = _data()
    for i in range(start, stop):
        j = 6 * (i % 4)
        loop.step(tokens[j : j + 6], labels[j : j + 6])


def test_former_phi_key_of_a_forward_still_works_with_a_deprecation_warning() -> None:
    """``phi_out`` names the distilled distribution (as in ``SemanticModel.intermediates``);
    a forward that still returns ``phi`` trains the same, with a DeprecationWarning."""

    def old_forward(model: torch.nn.Module, tokens: torch.Tensor) -> dict[str, Any]:
        out = model(tokens)
        return {"phi": out["phi_out"], "omega": out["omega"]}

    new_records: list[Any] = []
    _, _, new = _loop(new_records)
    _steps(new, 0, 6)
    old_records: list[Any] = []
    _, _, old = _loop(old_records)
    old.forward = old_forward
    with pytest.warns(DeprecationWarning, match="'phi' is now named 'phi_out'"):
        _steps(old, 0, 6)
    assert old_records == new_records and new_records
    with pytest.raises(QsemValueError, match="argument 'out'"):
        output_distribution({"logits": torch.zeros(1)})


def test_append_slice_keeps_adam_state() -> None:
    stack = EmergenceStack(3, 2, 1)
    lin = torch.nn.Linear(2, 2)
    params = [*lin.parameters(), *stack.parameters()]
    opt = torch.optim.Adam(params, lr=0.1)
    x = torch.softmax(torch.randn(4, 1, 3, 2).flatten(2), -1).unflatten(-1, (3, 2))
    for _ in range(2):
        opt.zero_grad()
        (stack.mix(stack(x)) ** 2).sum().add(lin(torch.ones(2)).sum()).backward()
        opt.step()
    lin_state = opt.state[lin.weight]
    avg_before = lin_state["exp_avg"].clone()
    w_avg = opt.state[stack.weight_logits]["exp_avg"].clone()
    s_avg = opt.state[stack.slice_logits[0]]["exp_avg"].clone()
    old_w = stack.weight_logits
    assert append_slice(stack, opt) == 2
    assert opt.state[lin.weight] is lin_state  # untouched object
    assert torch.equal(opt.state[lin.weight]["exp_avg"], avg_before)
    assert old_w not in opt.state
    new_state = opt.state[stack.weight_logits]
    assert torch.equal(new_state["exp_avg"], torch.cat([w_avg, w_avg]))
    assert torch.equal(opt.state[stack.slice_logits[1]]["exp_avg"], s_avg)
    group = opt.param_groups[0]["params"]
    assert any(p is stack.weight_logits for p in group)
    assert any(p is stack.slice_logits[1] for p in group)
    assert not any(p is old_w for p in group)
    opt.zero_grad()
    (stack.mix(stack(x)) ** 2).sum().backward()
    opt.step()  # the grown optimiser steps
    assert int(opt.state[stack.slice_logits[1]]["step"]) == 3


def test_an_event_appends_a_slice_keeps_adam_state_and_writes_a_snapshot(tmp_path) -> None:
    records: list[Any] = []
    model, opt, loop = _loop(records, tmp_path)
    _steps(loop, 0, 3)
    emb_state = opt.state[model.emb.weight]
    _steps(loop, 3, 4)  # probe at step 4 fires frobenius: a slice, a snapshot, a burst
    appended = [e for e in loop.events if e["appended"]]
    assert appended and appended[0]["step"] == 4 and model.emergence.n_slices == 2
    assert opt.state[model.emb.weight] is emb_state  # the same state object, still updated
    assert int(emb_state["step"]) == 4 + LOOP_CFG.correction_steps
    assert loop.c.correction_steps == LOOP_CFG.correction_steps
    assert loop.teacher.emergence.n_slices == 2
    snap = torch.load(tmp_path / "step-4.pt", weights_only=True)
    assert snap["slices"] == 2 and snap["step"] == 4
    kinds = {r["kind"] for _, r in records}
    assert kinds == {"probe", "event"}
    assert {"dphi_fro", "dphi_l1", "q_distance", "bures", "e_pot", "epot_v_t"} <= set(
        records[-2][1] if records[-1][1]["kind"] == "event" else records[-1][1]
    )


def test_max_slices_and_refractory_cap_the_slices() -> None:
    records: list[Any] = []
    model, _, loop = _loop(records)
    _steps(loop, 0, 30)
    steps = [e["step"] for e in loop.events if e["appended"]]
    assert model.emergence.n_slices == LOOP_CFG.max_slices == 1 + len(steps)
    assert all(b - a > LOOP_CFG.refractory for a, b in itertools.pairwise(steps))


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("teacher", ["ema", "previous"])
def test_resumed_loop_equals_uninterrupted(teacher: str) -> None:
    """N steps at once vs k steps, a checkpoint through bytes, a fresh loop, N − k more."""
    from dataclasses import replace

    cfg = replace(LOOP_CFG, teacher=teacher)
    ref_records: list[Any] = []
    ref_model, _, ref = _loop(ref_records, cfg=cfg)
    _steps(ref, 0, 16)
    assert any(e["appended"] for e in ref.events)  # a slice before and after the cut

    records: list[Any] = []
    model, opt, loop = _loop(records, cfg=cfg)
    _steps(loop, 0, 7)
    assert model.emergence.n_slices >= 2
    buf = io.BytesIO()
    torch.save({"loop": loop.state_dict(), "model": model.state_dict(),
                "opt": opt.state_dict()}, buf)  # fmt: skip
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    model2, opt2, loop2 = _loop(records, cfg=cfg)  # fresh objects, one slice
    loop2.load_state_dict(state["loop"])  # grows model, teacher, optimiser first
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    _steps(loop2, 7, 16)
    assert records == ref_records
    assert loop2.events == ref.events
    got, want = _params(model2), _params(ref_model)
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    teachers = zip(
        loop2.teacher.state_dict().values(), ref.teacher.state_dict().values(), strict=True
    )
    assert all(torch.equal(a, b) for a, b in teachers)


def test_config_errors_name_the_key() -> None:
    for kwargs, key in [
        ({"temperature": 0.0}, "temperature"),
        ({"teacher": "oracle"}, "teacher"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"detectors": ("frobenius", "psychic")}, "detectors"),
        ({"trigger": ("quantum_aer",)}, "trigger"),
        ({"probe_every": 0}, "probe_every"),
        ({"epot_alphas": (1.0, 2.0)}, "epot_alphas"),
        ({"detectors": ("quantum_shots",), "trigger": (), "shots": 0}, "shots"),
    ]:
        with pytest.raises(ConfigError, match=f"'{key}'"):
            DistillConfig(**kwargs)


def test_loop_argument_errors() -> None:
    model = Tiny()
    with pytest.raises(ValueError, match="'correction'"):
        SelfDistiller(model, DistillConfig(correction_steps=1), probe_tokens=torch.zeros(1, 1))
    loop = SelfDistiller(model, DistillConfig(), probe_tokens=torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="'optimizer'"):
        loop.step(torch.zeros(2, 1, dtype=torch.long), torch.tensor([0, -1]))


def test_detector_names_are_the_registry_names() -> None:
    """A detector's name in a config, in the probe's signal table and in the registry is
    one name: the built detector's ``Detector.name`` (``quantum_<source>``: the quantum
    detector fed that source's shot estimate)."""
    from qsem.distill import SIGNALS
    from qsem.emergence import DETECTORS

    cfg = DistillConfig(detectors=tuple(SIGNALS), trigger=())
    built = make_detectors(cfg)
    assert set(built) == set(SIGNALS)
    for name, (kind, det) in built.items():
        assert kind == name
        base = name if name in DETECTORS else name.split("_")[0]
        assert type(det) is DETECTORS[base] and det.name == base, name
        assert name == base or name in SHOT_KEYS
    assert "frobenius" in DistillConfig().detectors and "fixed" not in SIGNALS
