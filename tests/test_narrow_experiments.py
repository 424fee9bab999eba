"""The narrowing experiments: fast smoke runs of each (tiny configs), slow reproductions.

The slow tests (``make studies``) run the default configs and assert the
qualitative results of "On the creation of narrow AI" (arXiv 2505.15811):
broad training learns the composite where composite-only training does not;
ablation pruning keeps accuracy to high sparsity after recovery, group lasso
further, with the off-target composite left unlearned; pruning < distillation <
scratch in samples needed (digits: only pruning < scratch reproduces); and, on
the semantic model narrowed to depth <= 1, pruning < scratch at matched sizes.
"""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from qsem.experiments import get_experiment, narrow_semantic
from qsem.models import ModelConfig, SemanticModel
from qsem.runner import ConfigError, run_experiment

PNG = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


def _run(name: str, tmp_path: Path, overrides: list[str]):
    return run_experiment(get_experiment(name), overrides=overrides, out=tmp_path / name,
                          quiet=True)  # fmt: skip


def _files(out: Path, pngs: list[str]) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert (out / "table.md").read_text().startswith("|")
    for png in pngs:
        assert (out / png).read_bytes()[:8] == PNG
    return results


# --------------------------------------------------------------------------
# smoke runs
# --------------------------------------------------------------------------


def test_curriculum_smoke(tmp_path):
    r = _run("narrow-curriculum", tmp_path, ["seeds=2", "n_task=8", "k=2", "widths=8",
             "broad_steps=6", "narrow_steps=4", "eval_every=3", "eval_samples=50",
             "broad_per_task=8", "narrow_per_step=16"])  # fmt: skip
    res = _files(r.out_dir, ["curriculum_curves.png"])
    assert res["seeds"] == 2 and 0 <= res["broad_converged"] <= 2
    assert len(res["broad_convergence_steps"]) == 2 and res["paper"]["broad_converged"] == 27
    assert res["narrow"]["steps_run"] == 4 and res["narrow"]["curve_steps"] == [3, 4]


class _Boom(Exception):
    pass


@pytest.mark.parametrize("die_at", [6, 12])  # during broad, during narrow
def test_curriculum_resumes_identically(tmp_path, interrupt_log, die_at):

    exp = get_experiment("narrow-curriculum")
    overrides = ["seeds=2", "n_task=8", "k=2", "widths=8", "broad_steps=8", "narrow_steps=8",
                 "eval_every=2", "eval_samples=40", "broad_per_task=8", "narrow_per_step=16",
                 "stop_when_converged=false"]  # fmt: skip
    ref = run_experiment(exp, overrides=overrides, out=tmp_path / "ref", quiet=True,
                         checkpoint_every=4)  # fmt: skip
    record = itertools.count(1)
    out = tmp_path / "run"
    with interrupt_log(lambda step, v: next(record) == die_at // 2, _Boom), pytest.raises(_Boom):
        run_experiment(exp, overrides=overrides, out=out, quiet=True, checkpoint_every=4)
    resumed = run_experiment(exp, out=out, resume=True, quiet=True, checkpoint_every=4)
    assert resumed.resumed_from_step is not None
    strip = ("seconds",)
    for cond in ("broad", "narrow"):
        a = {k: v for k, v in resumed.results[cond].items() if k not in strip}
        b = {k: v for k, v in ref.results[cond].items() if k not in strip}
        assert a == b
    assert (out / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


def test_pruning_smoke(tmp_path):
    r = _run("narrow-pruning", tmp_path, ["widths=8", "train_steps=6", "sparsities=0.0,0.5",
             "recovery_steps=2", "offtarget_steps=2", "gl_steps=2", "eval_every=3",
             "eval_samples=60", "train_per_task=8", "recovery_batch=16", "offtarget_batch=16",
             "gl_batch=16"])  # fmt: skip
    res = _files(r.out_dir, ["pruning_width8.png"])
    curve = res["per_width"]["8"]["unregularised"]
    assert curve["sparsity"] == [0.0, 0.5] and curve["neurons_kept"] == [16, 8]
    assert len(curve["accuracy_B_relearned"]) == 2
    assert isinstance(res["offtarget_B_at_chance_after_group_lasso"], bool)


def test_digits_smoke(tmp_path):
    r = _run("narrow-digits", tmp_path, ["seeds=1", "teacher_steps=20", "teacher_widths=8,8",
             "sizes=4,16", "max_steps=10", "eval_every=5", "attribution_samples=16"])  # fmt: skip
    res = _files(r.out_dir, ["pareto.png"])
    assert res["dataset"] == "sklearn-digits-8x8"
    assert set(res["median_samples"]) == {"scratch", "distill", "group_lasso", "attribution"}
    assert isinstance(res["ordering_pruning_lt_distill_lt_scratch"], bool)


SEMANTIC_TINY = ["seeds=2", "n_train_kbs=6", "n_test_kbs=3", "queries_per_kb=12",
                 "teacher_epochs=2", "teacher_hidden=8", "sizes=2,4", "max_steps=10",
                 "eval_every=5", "recovery_steps=3", "attribution_samples=16",
                 "angle_samples=24"]  # fmt: skip


def test_semantic_smoke(tmp_path):
    r = _run("narrow-semantic", tmp_path, SEMANTIC_TINY)
    res = _files(r.out_dir, ["pareto.png", "accuracy.png"])
    assert set(res["median_samples"]) == {"scratch", "distill", "group_lasso", "attribution"}
    assert isinstance(res["ordering_pruning_lt_distill_lt_scratch"], bool)
    seed0 = res["per_seed"][0]
    assert seed0["n_test_outside"] > 0 and seed0["n_train_inside"] > 0
    for size in ("2", "4"):
        rows = {m: seed0["models"][m][size] for m in seed0["models"]}
        # matched sizes: a pruned teacher has the structure of a fresh model of that width
        full = SemanticModel(ModelConfig(hidden=int(size))).num_parameters()
        for r in rows.values():  # nonzero parameters + pruned angles <= a model of that width
            assert r["nonzero_parameters"] + (11 - r["angles_kept"]) <= full
        assert all(0 <= r["angles_kept"] <= 11 for r in rows.values())
        assert all(0.0 <= r["accuracy_outside"] <= 1.0 for r in rows.values())


def test_semantic_resume_after_a_seed(tmp_path):
    """Killed after the first seed: the resumed run skips it and ends like an uninterrupted one."""
    exp = get_experiment("narrow-semantic")
    ref = run_experiment(exp, overrides=SEMANTIC_TINY, out=tmp_path / "ref", quiet=True)
    real = narrow_semantic.one_seed
    computed: list[int] = []

    def dies_on_second(cfg, seed):
        computed.append(seed)
        if computed == [0, 1]:
            raise KeyboardInterrupt
        return real(cfg, seed)

    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(narrow_semantic, "one_seed", dies_on_second)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(exp, overrides=SEMANTIC_TINY, out=out, quiet=True)
        res = run_experiment(exp, overrides=SEMANTIC_TINY, out=out, resume=True, quiet=True)
    assert computed == [0, 1, 1]  # the resumed run did not recompute seed 0

    def untimed(record: dict) -> dict:  # wall-clock times differ between runs
        out = {k: v for k, v in record.items() if k != "seconds"}
        out["teacher"] = {k: v for k, v in record["teacher"].items() if k != "train_seconds"}
        return out

    for a, b in zip(res.results["per_seed"], ref.results["per_seed"], strict=True):
        assert untimed(a) == untimed(b)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.astype(">u1").tobytes())


def test_digits_reads_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 60), ("t10k", 30)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, size=(n, 4, 4)) + 20 * labels[:, None, None]
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images.astype(np.uint8))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    r = _run("narrow-digits", tmp_path, [f"mnist_dir={folder}", "seeds=1", "teacher_steps=5",
             "teacher_widths=4,4", "sizes=4", "max_steps=5", "eval_every=5",
             "attribution_samples=8"])  # fmt: skip
    assert r.results["dataset"] == "mnist"
    with pytest.raises(ConfigError, match="mnist_dir"):
        _run("narrow-digits", tmp_path / "x", [f"mnist_dir={tmp_path}"])


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("narrow-curriculum", "k=9", "config"),
        ("narrow-curriculum", "seeds=0", "seeds"),
        ("narrow-pruning", "sparsities=0.5,1.0", "sparsities"),
        ("narrow-pruning", "n_atoms=4", "n_atoms"),
        ("narrow-digits", "sizes=1000", "sizes"),
        ("narrow-digits", "alpha=2", "alpha"),
        ("narrow-semantic", "narrow_depth=3", "narrow_depth"),
        ("narrow-semantic", "sizes=64", "sizes"),
        ("narrow-semantic", "max_side=9", "max_side"),
    ],
)
def test_bad_config(tmp_path, name, override, key):
    with pytest.raises(ConfigError, match=key):
        _run(name, tmp_path, [override])


def test_paper_config_file_is_valid():
    from qsem.runner import build_config, layer_config

    exp = get_experiment("narrow-curriculum")
    path = REPO / "qsem" / "narrow" / "configs" / "narrow_curriculum_paper.json"
    cfg = build_config(exp.defaults, layer_config(exp.defaults, file=path))
    assert (cfg.n_control, cfg.n_task, cfg.k, cfg.widths) == (4, 64, 4, (128, 128))
    assert (cfg.lr, cfg.adam_eps, cfg.broad_per_task) == (1e-3, 1e-5, 2000)


# --------------------------------------------------------------------------
# slow reproductions (make studies)
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_curriculum_reproduces_broad_vs_narrow(tmp_path):
    res = _run("narrow-curriculum", tmp_path, []).results
    assert res["seeds"] >= 10
    assert res["broad_converged"] > res["seeds"] / 2  # most seeds (paper: 27/40)
    assert res["narrow_converged"] == 0  # none (paper: 0/40)


@pytest.mark.slow
def test_pruning_reproduces_sparsity_and_group_lasso(tmp_path):
    res = _run("narrow-pruning", tmp_path, []).results
    unreg = res["max_sparsity_recovered_unregularised"]
    gl = res["max_sparsity_recovered_group_lasso"]
    assert unreg is not None and unreg >= 0.8  # paper: ~0.9 at width 256
    assert gl is not None and gl >= unreg  # paper: ~0.97
    assert res["offtarget_B_at_chance_after_group_lasso"]  # paper: {3,4,5} unlearned


@pytest.fixture(scope="module")
def digits_default(tmp_path_factory):
    return _run("narrow-digits", tmp_path_factory.mktemp("digits"), []).results


@pytest.mark.slow
@pytest.mark.xfail(
    reason="does not reproduce on scikit-learn's 8x8 digits (default run: attribution pruning "
    "needs the fewest samples at >= 32 neurons, but scratch beats distillation at T = 20 and "
    "group lasso at every size); the paper's result is on MNIST",
    strict=False,
)
def test_digits_reproduces_ordering(digits_default):
    assert digits_default["ordering_pruning_lt_distill_lt_scratch"]


@pytest.mark.slow
def test_digits_attribution_pruning_beats_scratch(digits_default):
    """The part of the paper's ordering that does reproduce: pruning < scratch for large sizes."""
    med = digits_default["median_samples"]
    largest = str(max(int(s) for s in med["scratch"]))
    assert med["attribution"][largest] < med["scratch"][largest]


@pytest.mark.slow
def test_semantic_pruning_beats_scratch_at_matched_sizes(tmp_path):
    """Narrowing the Kleene model to depth <= 1: attribution pruning of the broad model plus
    recovery reaches the target with fewer sub-domain samples than training a model of the
    same size from scratch, at every size, and ends at the target accuracy (paper: pruning <
    scratch). Distillation at T = 20 does not beat scratch here (see docs/narrow.md)."""
    res = _run("narrow-semantic", tmp_path, []).results
    med, models = res["median_samples"], res["models"]
    for size in med["scratch"]:
        assert res["seeds_reached"]["attribution"][size] == res["config"]["seeds"]
        assert med["attribution"][size] < med["scratch"][size]
        assert models["attribution"][size]["accuracy"][0] >= res["config"]["target_accuracy"]
        # matched sizes: the pruned teacher is no bigger than the model trained from scratch
        pruned = models["attribution"][size]["nonzero_parameters"][0]
        assert pruned <= models["scratch"][size]["nonzero_parameters"][0] + 11
    assert res["mean_log10_samples"]["attribution"] < res["mean_log10_samples"]["scratch"]
