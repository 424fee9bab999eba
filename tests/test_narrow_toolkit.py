"""qsem.narrow: CMSP, ablation, pruning masks, group lasso, distillation, IDX, angle pruning.

References are brute force or by hand: parities bit by bit, ablation by zeroing
weights of a hand-built net and recomputing its loss in NumPy, the group-lasso
sum in plain Python with its gradient checked by central finite differences,
the distillation loss from softmaxes written out.
"""

from __future__ import annotations

import gzip
import itertools
import math
import struct

import numpy as np
import pytest
import torch
from conftest import ATOL_F64, FD_ATOL, FD_STEP

from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.narrow import (
    CMSP,
    EnsembleMLP,
    ablation_scores,
    ablation_scores_exact,
    angle_ablation_scores,
    angle_magnitude_scores,
    angle_wire_groups,
    attribution_scores,
    build_mlp,
    distillation_loss,
    group_lasso_penalty,
    keep_masks,
    load_mnist_idx,
    make_generator,
    neuron_groups,
    prune_angles,
    prune_neurons,
    prune_wires,
    random_scores,
    read_idx,
    train_until,
    wire_ablation_scores,
)
from qsem.narrow.compare import median_capped, summarise_samples

# --------------------------------------------------------------------------
# CMSP
# --------------------------------------------------------------------------

SETTINGS = [(2, 4, 2, 2, [(0,), (1,), (0, 1)]), (3, 7, 3, 2, [(2,), (0, 2), (0, 1, 2)]),
            (4, 12, 4, 3, [(1,), (0, 1, 2, 3)]), (1, 1, 1, 1, [(0,)])]  # fmt: skip


@pytest.mark.parametrize(("c", "n", "m", "k", "tasks"), SETTINGS)
def test_cmsp_labels_are_brute_force_parity(c, n, m, k, tasks):
    cmsp = CMSP(c, n, m, k, tasks)
    gen = make_generator(3)
    for task in tasks:
        x, y = cmsp.sample(task, 64, gen)
        assert x.shape == (64, c + n) and y.dtype == torch.int64
        for row, label in zip(x.tolist(), y.tolist(), strict=True):
            control, bits = row[:c], row[c:]
            assert control == [1.0 if i in task else 0.0 for i in range(c)]
            owned = [a * k + j for a in task for j in range(k)]
            assert label == sum(int(bits[i]) for i in owned) % 2
            assert set(bits) <= {0.0, 1.0}


def test_cmsp_enumerates_every_bit_pattern():
    """All 2^n patterns appear for n = 4 in 2000 draws, each label consistent."""
    cmsp = CMSP(2, 4, 2, 2)
    x, y = cmsp.sample((0, 1), 2000, make_generator(0))
    patterns = {tuple(int(v) for v in r[2:]) for r in x.tolist()}
    assert patterns == set(itertools.product((0, 1), repeat=4))
    assert torch.equal(y, x[:, 2:].sum(1).long() % 2)


def test_cmsp_default_tasks_and_mixture():
    cmsp = CMSP(4, 16, 4, 3)
    assert cmsp.tasks == [(0,), (1,), (2,), (3,), (0, 1, 2, 3)]
    assert cmsp.task_bits((1, 3)) == [3, 4, 5, 9, 10, 11]
    x, _y, t = cmsp.sample_mixture(cmsp.tasks, 10, make_generator(1))
    assert x.shape == (50, 20) and torch.equal(t, torch.arange(5).repeat_interleave(10))
    assert torch.equal(x[:10, :4], torch.tensor([[1.0, 0, 0, 0]]).expand(10, 4))


def test_cmsp_determinism_by_seed():
    cmsp = CMSP(3, 9, 3, 3)
    a = cmsp.sample((0, 2), 100, make_generator(7))
    b = cmsp.sample((0, 2), 100, make_generator(7))
    c = cmsp.sample((0, 2), 100, make_generator(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    g = make_generator(7)
    first, second = cmsp.sample(0, 50, g), cmsp.sample(0, 50, g)
    assert not torch.equal(first[0], second[0])  # fresh samples on every call


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"n_control": 1, "n_task": 8, "n_atoms": 2, "k": 2}, "n_control"),
        ({"n_control": 4, "n_task": 5, "n_atoms": 2, "k": 3}, "n_task"),
        ({"n_control": 4, "n_task": 8, "n_atoms": 0, "k": 2}, "n_atoms"),
        ({"n_control": 4, "n_task": 8, "n_atoms": 2, "k": 2.0}, "k"),
        ({"n_control": 4, "n_task": 8, "n_atoms": 2, "k": 2, "tasks": [(0, 2)]}, "task"),
        ({"n_control": 4, "n_task": 8, "n_atoms": 2, "k": 2, "tasks": [()]}, "task"),
        ({"n_control": 4, "n_task": 8, "n_atoms": 2, "k": 2, "tasks": [(1, 1)]}, "task"),
    ],
)
def test_cmsp_bad_input(kwargs, arg):
    with pytest.raises((QsemValueError, QsemTypeError), match=f"argument '{arg}'"):
        CMSP(**kwargs)


def test_cmsp_sample_bad_input():
    cmsp = CMSP(2, 4, 2, 2)
    with pytest.raises(QsemValueError, match="argument 'batch'"):
        cmsp.sample(0, 0, make_generator(0))
    with pytest.raises(QsemTypeError, match="argument 'generator'"):
        cmsp.sample(0, 3, 0)
    with pytest.raises(QsemValueError, match="argument 'seed'"):
        make_generator(-1)


# --------------------------------------------------------------------------
# MLP, ensemble
# --------------------------------------------------------------------------


def test_build_mlp_and_groups():
    net = build_mlp(5, [7, 3], 2, generator=make_generator(0))
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    groups = neuron_groups(net)
    assert [(g.name, g.size) for g in groups] == [("0", 7), ("2", 3)]
    assert float(net[0].weight.detach().abs().max()) <= 1 / math.sqrt(5)
    with pytest.raises(QsemValueError, match="argument 'widths'"):
        build_mlp(5, [0], 2)
    with pytest.raises(QsemValueError, match="argument 'model'"):
        neuron_groups(torch.nn.Linear(3, 2))


def test_ensemble_matches_members():
    gens = [make_generator(s) for s in range(3)]
    ens = EnsembleMLP(6, [5, 4], 2, gens)
    x = torch.randn(3, 8, 6, generator=make_generator(9))
    out = ens(x)
    for e in range(3):
        ref = build_mlp(6, [5, 4], 2, generator=make_generator(e))
        torch.testing.assert_close(out[e], ref(x[e]))
        torch.testing.assert_close(ens.member(e)(x[e]), ref(x[e]))


# --------------------------------------------------------------------------
# ablation
# --------------------------------------------------------------------------


def _tiny_net() -> torch.nn.Sequential:
    net = build_mlp(3, [4], 2).double()
    with torch.no_grad():
        net[0].weight.copy_(
            torch.tensor([[1.0, -1, 0.5], [0.2, 0.3, -0.4], [-1, 1, 1], [0.5, 0.5, 0.5]])
        )
        net[0].bias.copy_(torch.tensor([0.1, -0.2, 0.0, 0.3]))
        net[2].weight.copy_(torch.tensor([[1.0, -2, 0.5, 0.3], [-1, 1, 2, -0.5]]))
        net[2].bias.copy_(torch.tensor([0.05, -0.05]))
    return net


def _numpy_ce(net: torch.nn.Sequential, x: np.ndarray, y: np.ndarray, drop: int | None) -> float:
    w1, b1 = net[0].weight.detach().numpy().copy(), net[0].bias.detach().numpy().copy()
    w2, b2 = net[2].weight.detach().numpy().copy(), net[2].bias.detach().numpy().copy()
    if drop is not None:
        w1[drop], b1[drop], w2[:, drop] = 0, 0, 0
    h = np.maximum(x @ w1.T + b1, 0)
    z = h @ w2.T + b2
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_ablation_scores_equal_hand_computation():
    net = _tiny_net()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3))
    y = rng.integers(0, 2, 16)
    base = _numpy_ce(net, x, y, None)
    expected = [abs(_numpy_ce(net, x, y, j) - base) for j in range(4)]
    xt, yt = torch.tensor(x), torch.tensor(y)
    for chunk in (1, 3, 64):
        got = ablation_scores(net, xt, yt, chunk=chunk)["0"]
        np.testing.assert_allclose(got.numpy(), expected, atol=ATOL_F64)
    np.testing.assert_allclose(ablation_scores_exact(net, xt, yt)["0"].numpy(), expected,
                               atol=ATOL_F64)  # fmt: skip
    assert torch.equal(net[0].weight, _tiny_net()[0].weight)  # restored


def test_ablation_vectorised_equals_exact_on_deep_net():
    net = build_mlp(6, [9, 7, 5], 3, generator=make_generator(2)).double()
    x = torch.randn(40, 6, generator=make_generator(3)).double()
    y = torch.randint(0, 3, (40,), generator=make_generator(4))
    fast, slow = ablation_scores(net, x, y, chunk=4), ablation_scores_exact(net, x, y)
    assert fast.keys() == slow.keys() == {"0", "2", "4"}
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name].double(), atol=ATOL_F64, rtol=0)


# --------------------------------------------------------------------------
# pruning
# --------------------------------------------------------------------------


def test_keep_masks_global_and_layer():
    scores = {"a": torch.tensor([0.5, 0.1, 0.9]), "b": torch.tensor([0.2, 0.05])}
    k = keep_masks(scores, 0.4)
    assert k["a"].tolist() == [True, False, True] and k["b"].tolist() == [True, False]
    k = keep_masks(scores, 0.5, scope="layer")
    assert k["a"].tolist() == [True, False, True] and k["b"].tolist() == [True, False]
    assert all(m.all() for m in keep_masks(scores, 0.0).values())
    assert not any(m.any() for m in keep_masks(scores, 1.0).values())
    with pytest.raises(QsemValueError, match="argument 'fraction'"):
        keep_masks(scores, 1.5)
    with pytest.raises(QsemValueError, match="argument 'scope'"):
        keep_masks(scores, 0.5, scope="all")


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_pruning_masks_persist_after_optimizer_steps(weight_decay):
    net = build_mlp(4, [8, 6], 2, generator=make_generator(0))
    keep = {"0": torch.tensor([1, 0, 1, 1, 0, 1, 1, 0], dtype=torch.bool),
            "2": torch.tensor([0, 1, 1, 1, 1, 0], dtype=torch.bool)}  # fmt: skip
    masker = prune_neurons(net, keep)
    opt = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=weight_decay)
    masker.attach(opt)
    gen = make_generator(1)
    for _ in range(25):
        x = torch.randn(32, 4, generator=gen)
        y = (x[:, 0] > 0).long()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        for p in (net[0].weight, net[2].weight):
            assert p.grad is not None
        assert float(net[0].weight.grad[1].abs().sum()) == 0.0  # masked gradient
        opt.step()
        for g, k in zip(neuron_groups(net), keep.values(), strict=True):
            assert float(g.in_layer.weight.detach()[~k].abs().sum()) == 0.0
            assert float(g.in_layer.bias.detach()[~k].abs().sum()) == 0.0
            assert float(g.out_layer.weight.detach()[:, ~k].abs().sum()) == 0.0
            assert float(g.in_layer.weight.detach()[k].abs().sum()) > 0.0
    # unpruned weights did change
    assert masker.masked_fraction() > 0


def test_prune_neurons_removes_neurons_from_function():
    net = build_mlp(3, [5], 2, generator=make_generator(4)).double()
    keep = {"0": torch.tensor([True, False, True, False, True])}
    ref = build_mlp(3, [3], 2).double()
    with torch.no_grad():
        ref[0].weight.copy_(net[0].weight[keep["0"]])
        ref[0].bias.copy_(net[0].bias[keep["0"]])
        ref[2].weight.copy_(net[2].weight[:, keep["0"]])
        ref[2].bias.copy_(net[2].bias)
    prune_neurons(net, keep)
    x = torch.randn(10, 3, generator=make_generator(5)).double()
    torch.testing.assert_close(net(x), ref(x), atol=ATOL_F64, rtol=0)
    with pytest.raises(QsemValueError, match="argument 'keep'"):
        prune_neurons(net, {"7": keep["0"]})
    with pytest.raises(QsemValueError, match="argument 'keep'"):
        prune_neurons(net, {"0": torch.ones(4, dtype=torch.bool)})


def test_attribution_scores_by_hand():
    net = _tiny_net()
    x = torch.randn(12, 3, generator=make_generator(6)).double()
    y = torch.randint(0, 2, (12,), generator=make_generator(7))
    got = attribution_scores(net, x, y)["0"]
    # by hand: a = relu(W1 x + b1); dL_i/da = W2^T (softmax(z_i) - onehot(y_i))
    with torch.no_grad():
        a = torch.relu(x @ net[0].weight.T + net[0].bias)
        p = torch.softmax(a @ net[2].weight.T + net[2].bias, dim=1)
        delta = p - torch.nn.functional.one_hot(y, 2).double()
        grad_a = delta @ net[2].weight
        expected = (a * grad_a).abs().mean(0)
    torch.testing.assert_close(got, expected, atol=ATOL_F64, rtol=0)
    assert all(p.grad is None for p in net.parameters())


def test_random_scores_seeded():
    net = build_mlp(3, [5, 4], 2)
    a, b = random_scores(net, make_generator(0)), random_scores(net, make_generator(0))
    assert all(torch.equal(a[n], b[n]) for n in a) and set(a) == {"0", "2"}


# --------------------------------------------------------------------------
# group lasso
# --------------------------------------------------------------------------


def test_group_lasso_penalty_by_hand_and_finite_differences():
    net = build_mlp(3, [4, 2], 2, generator=make_generator(8)).double()
    w1, b1, w2 = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    b2, w3 = net[2].bias.detach(), net[4].weight.detach()
    expected = 0.0
    for j in range(4):
        expected += math.sqrt(sum(v * v for v in w1[j].tolist()) + b1[j].item() ** 2
                              + sum(v * v for v in w2[:, j].tolist()))  # fmt: skip
    for j in range(2):
        expected += math.sqrt(sum(v * v for v in w2[j].tolist()) + b2[j].item() ** 2
                              + sum(v * v for v in w3[:, j].tolist()))  # fmt: skip
    pen = group_lasso_penalty(net, 0.3)
    assert abs(pen.item() - 0.3 * expected) < ATOL_F64
    pen.backward()
    for p in net.parameters():
        flat = p.data.view(-1)
        grad = torch.zeros_like(flat) if p.grad is None else p.grad.view(-1)
        for i in range(flat.numel()):
            saved = flat[i].item()
            flat[i] = saved + FD_STEP
            up = group_lasso_penalty(net, 0.3).item()
            flat[i] = saved - FD_STEP
            down = group_lasso_penalty(net, 0.3).item()
            flat[i] = saved
            assert abs((up - down) / (2 * FD_STEP) - grad[i].item()) < FD_ATOL


def test_group_lasso_zero_group_has_zero_gradient():
    net = build_mlp(3, [4], 2).double()
    prune_neurons(net, {"0": torch.tensor([True, False, True, True])})
    pen = group_lasso_penalty(net)
    pen.backward()
    assert torch.isfinite(net[0].weight.grad).all()
    assert float(net[0].weight.grad[1].abs().sum()) == 0.0
    with pytest.raises(QsemValueError, match="argument 'lam'"):
        group_lasso_penalty(net, -1.0)


# --------------------------------------------------------------------------
# distillation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "temperature"), [(0.1, 20.0), (0.5, 1.0), (1.0, 3.0)])
def test_distillation_loss_by_hand(alpha, temperature):
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) * 3
    y = rng.integers(0, 4, 5)

    def log_softmax(z):
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ce = -log_softmax(s)[np.arange(5), y].mean()
    pt, lpt, lps = (
        np.exp(log_softmax(t / temperature)),
        log_softmax(t / temperature),
        log_softmax(s / temperature),
    )
    kl = (pt * (lpt - lps)).sum(1).mean()
    expected = alpha * ce + (1 - alpha) * temperature**2 * kl
    got = distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), alpha=alpha,
                            temperature=temperature)  # fmt: skip
    assert abs(got.item() - expected) < ATOL_F64


def test_distillation_bad_input():
    s, y = torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)
    with pytest.raises(QsemValueError, match="argument 'alpha'"):
        distillation_loss(s, s, y, alpha=1.5)
    with pytest.raises(QsemValueError, match="argument 'temperature'"):
        distillation_loss(s, s, y, temperature=0)
    with pytest.raises(QsemValueError, match="argument 'teacher_logits'"):
        distillation_loss(s, torch.zeros(3, 3), y)
    with pytest.raises(QsemValueError, match="argument 'targets'"):
        distillation_loss(s, s, torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------


def _write_idx(path, array: np.ndarray, code: int, be: str) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(be).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_reader_on_tiny_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 2, 4)).astype(np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    _write_idx(tmp_path / "img.idx", images, 0x08, ">u1")
    _write_idx(tmp_path / "lab.idx.gz", labels, 0x08, ">u1")
    np.testing.assert_array_equal(read_idx(tmp_path / "img.idx"), images)
    floats = rng.normal(size=(2, 3)).astype(np.float32)
    _write_idx(tmp_path / "f.idx", floats, 0x0D, ">f4")
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)
    x, y = load_mnist_idx(tmp_path / "img.idx", tmp_path / "lab.idx.gz")
    assert x.shape == (3, 8) and x.dtype == np.float32 and y.tolist() == [7, 0, 9]
    np.testing.assert_allclose(x, images.reshape(3, 8) / 255.0, atol=1e-7)


def test_idx_reader_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(QsemValueError, match=r"argument 'path'.*magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(QsemValueError, match=r"argument 'path'.*shape"):
        read_idx(tmp_path / "short")
    with pytest.raises(QsemValueError, match=r"argument 'path'.*no such file"):
        read_idx(tmp_path / "missing")
    _write_idx(tmp_path / "lab", np.array([1, 2], dtype=np.uint8), 0x08, ">u1")
    _write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8), 0x08, ">u1")
    with pytest.raises(QsemValueError, match="argument 'labels'"):
        load_mnist_idx(tmp_path / "img", tmp_path / "lab")


# --------------------------------------------------------------------------
# angle pruning on a small QuantumLayer
# --------------------------------------------------------------------------


_GATES = [("RX", 0, 0), ("RY", 1, 1), ("CNOT", None, (0, 1)), ("RY", 2, 0), ("RX", 3, 1),
          ("CNOT", None, (1, 0)), ("RY", 4, 0), ("RX", 5, 1)]  # fmt: skip


def _circuit(skip=()):
    from qsem.circuits import CNOT, RX, RY, Circuit, ParameterVector

    x, w = ParameterVector("x", 2), ParameterVector("w", 6)
    c = Circuit.qubits(2).add(RY(x[0], wires=0), RY(x[1], wires=1))
    for gate, i, wires in _GATES:
        if gate == "CNOT":
            c.add(CNOT(wires=list(wires)))
        elif i not in skip:
            c.add({"RX": RX, "RY": RY}[gate](w[i], wires=wires))
    return c


def _quantum_layer():
    from qsem.circuits import PauliString
    from qsem.simulators.bridge import QuantumLayer

    obs = [PauliString("Z", wires=[0]), PauliString("Z", wires=[1])]
    return QuantumLayer(_circuit(), obs, weight_shapes={"w": 6}, seed=3)


def test_angle_magnitude_scores():
    a = torch.tensor([0.1, -0.2, 4 * math.pi - 0.05, 2 * math.pi, -4 * math.pi + 0.3])
    torch.testing.assert_close(angle_magnitude_scores(a),
                               torch.tensor([0.1, 0.2, 0.05, 2 * math.pi, 0.3]))  # fmt: skip


def test_angle_pruning_on_quantum_layer():
    layer = _quantum_layer()
    w = layer.weights["w"]
    x = torch.rand(8, 2, generator=make_generator(0)) * math.pi
    target = torch.tensor([[0.5, -0.5]]).expand(8, 2)

    def loss():
        return ((layer(x) - target) ** 2).mean()

    scores = angle_ablation_scores(w, loss)
    # by hand: zero each angle, recompute
    for i in range(6):
        saved = w.data[i].item()
        with torch.no_grad():
            base = loss().item()
            w.data[i] = 0.0
            expected = abs(loss().item() - base)
            w.data[i] = saved
        assert abs(scores[i].item() - expected) < 1e-6
    masker = prune_angles(w, scores, 0.5)
    pruned = scores.argsort(stable=True)[:3]
    assert torch.all(w.detach()[pruned] == 0)
    # a pruned angle is a removed rotation: the output equals the circuit without it
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    masker.attach(opt)
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
        assert torch.all(w.detach()[pruned] == 0)
    assert torch.count_nonzero(w.detach()) == 3
    # the pruned layer computes the circuit with those rotations removed
    from qsem.circuits import PauliString
    from qsem.simulators import TorchSimulator, expval

    ref_circuit = _circuit(skip=set(pruned.tolist()))
    sim = TorchSimulator(dtype=torch.complex128)
    state = sim.run(ref_circuit, {"x": x.double(), "w": w.detach().double()})
    ref = expval(state, [PauliString("Z", wires=[0]), PauliString("Z", wires=[1])])
    torch.testing.assert_close(layer(x).detach().double(), ref.real.reshape(8, 2), atol=1e-5,
                               rtol=0)  # fmt: skip
    with pytest.raises(QsemValueError, match="argument 'scores'"):
        prune_angles(w, scores[:3], 0.5)


def test_angle_wire_groups_of_quantum_layer():
    layer = _quantum_layer()
    # wire 0: w0 (RX), w2, w4; wire 1: w1, w3, w5 (CNOTs carry no angle)
    assert angle_wire_groups(layer.circuit) == {0: [0, 2, 4], 1: [1, 3, 5]}
    with pytest.raises(QsemValueError, match="argument 'name'"):
        angle_wire_groups(layer.circuit, name="v")


def test_wire_pruning_on_quantum_semantic_layer():
    from qsem.layers import QuantumSemanticLayer

    torch.manual_seed(0)
    layer = QuantumSemanticLayer(8, s_dim=3, c_dim=2, z_dim=2, layers=1, init_scale=0.5)
    groups = angle_wire_groups(layer.circuit)
    # the layer's circuit is another engineer's and may change: check the structure, not a list.
    # S qutrit: TRY, TRZ on (0,1), (1,2) first; every weight is on some wire; a two-wire
    # (controlled) rotation is in both wires' groups
    assert set(groups) == {0, 1, 2} and groups[0][:4] == [0, 1, 2, 3]
    assert set().union(*map(set, groups.values())) == set(range(layer.n_weights))
    two_wire = [op for op in layer.circuit.ops if len(op.wires) == 2 and op.params]
    for op in two_wire:
        i = int(op.params[0].name[1:])
        assert all(i in groups[int(w)] for w in op.wires)
    gen = make_generator(1)
    dist = torch.rand(4, 2, 6, generator=gen)
    x = torch.cat([dist / dist.sum(-1, keepdim=True), torch.rand(4, 2, 2, generator=gen)], -1)
    target = torch.rand(4, 2, 3, 2, 2, generator=gen)

    def loss():
        return ((layer(x) - target) ** 2).sum()

    scores = wire_ablation_scores(layer.weights, groups, loss)
    for wire, idx in groups.items():
        saved = layer.weights.data.clone()
        with torch.no_grad():
            base = loss().item()
            layer.weights.data[idx] = 0
            expected = abs(loss().item() - base)
        layer.weights.data.copy_(saved)
        assert abs(scores[wire] - expected) < 1e-5
    masker = prune_wires(layer.weights, groups, [2])
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    masker.attach(opt)
    for _ in range(2):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert torch.all(layer.weights.detach()[groups[2]] == 0)
    kept = sorted(set(range(layer.n_weights)) - set(groups[2]))
    assert torch.all(layer.weights.detach()[kept] != 0)
    with pytest.raises(QsemValueError, match="argument 'wires'"):
        prune_wires(layer.weights, groups, [5])


# --------------------------------------------------------------------------
# train_until and the samples-to-target summary
# --------------------------------------------------------------------------


def _quadratic() -> tuple[torch.nn.Parameter, list[int]]:
    return torch.nn.Parameter(torch.tensor([3.0])), []


@pytest.mark.parametrize("stop", [True, False])
def test_train_until_first_hit_and_budget(stop):
    w, calls = _quadratic()
    model = torch.nn.Module()
    model.w = w  # a parameter to optimise: loss w^2, Adam lr 0.3

    def loss(step: int) -> torch.Tensor:
        calls.append(step)
        return (w**2).sum()

    checked: list[int] = []

    def reached(steps: int) -> bool:
        checked.append(steps)
        return abs(float(w.detach())) < 1.0

    hit = train_until(model, loss, reached, 40, lr=0.3, eval_every=2, stop=stop)
    # Adam moves w by a little under lr = 0.3 a step (the gradient 2w shrinks, so
    # m/sqrt(v) < 1): from 3, w is ~1.2 after 6 steps and ~0.8 after 8
    assert hit == 8 and checked == [0, 2, 4, 6, 8]
    assert calls == list(range(1, 9 if stop else 41))


def test_train_until_already_reached_and_never():
    w, _ = _quadratic()
    model = torch.nn.Module()
    model.w = w
    assert train_until(model, lambda s: (w**2).sum(), lambda s: True, 5) == 0
    assert float(w.detach()) == 3.0  # stop=True returns before any step
    assert train_until(model, lambda s: (w**2).sum(), lambda s: False, 3, eval_every=1) is None
    with pytest.raises(QsemValueError, match="argument 'eval_every'"):
        train_until(model, lambda s: (w**2).sum(), lambda s: False, 3, eval_every=0)


def test_summarise_samples_medians_caps_and_ordering():
    sizes = (4, 8)

    def seed(scratch, distill, gl, attr):
        def row(pair):
            return {"4": pair[0], "8": pair[1]}

        return {"samples": {"scratch": row(scratch), "distill": row(distill),
                            "group_lasso": row(gl), "attribution": row(attr)}}  # fmt: skip

    per_seed = [seed((800, 400), (200, 100), (None, 10), (50, 20)),
                seed((600, None), (300, 100), (100, 30), (70, 30)),
                seed((1000, 500), (100, 900), (None, 20), (60, 10))]  # fmt: skip
    methods = ("scratch", "distill", "group_lasso", "attribution")
    out = summarise_samples(per_seed, methods, sizes, cap=5000.0)
    assert out["median_samples"]["scratch"] == {"4": 800.0, "8": 500.0}
    assert out["median_samples"]["group_lasso"]["4"] == 5000.0  # two of three unreached
    assert out["seeds_reached"]["group_lasso"] == {"4": 1, "8": 3}
    expected = round((math.log10(800) + math.log10(500)) / 2, 4)
    assert out["mean_log10_samples"]["scratch"] == expected
    assert out["ordering_pruning_lt_distill_lt_scratch"]
    assert out["ordering_per_size"] == {"4": True, "8": True}
    assert median_capped([None, 1, 3, None], 10.0) == 6.5
