"""Behaviour check for refactors: every experiment on a tiny config, before and after.

    python tools/behaviour_runs.py record DIR [NAME ...]   # run each into DIR/NAME
    python tools/behaviour_runs.py compare BEFORE AFTER    # results/config/metrics, timing aside

Record with the old code, change it, record again, compare: keys that hold measured
times (``*seconds``, ``*_ms``, latencies) and the times quoted in summary lines are
skipped; any other difference is printed (floats marked ``rounding`` when they agree
to 1e-9 relative).
"""

import json
import math
import re
import sys
import time
from pathlib import Path

TINY = {
    "demo": ["epochs=3"],
    "emergence-cmsp": [
        "seeds=2",
        "tune_seeds=1",
        "steps=30",
        "n_task=8",
        "k=2",
        "widths=8",
        "per_task=8",
        "eval_per_task=16",
        "probe_per_task=4",
        "lag=5",
        "max_lag=20",
        "merge_gap=10",
        "before=5",
        "refractory=10",
        "horizon=10",
        "epot_windows=5",
        "onset=3",
        "plateau=10",
        "hybrid_seeds=1",
        "hybrid_steps=12",
        "hybrid_per_task=4",
        "hybrid_probe_per_task=2",
        "hybrid_widths=4",
        "n_qubits=2",
        "q_layers=1",
        "shots=20",
        "shot_every=4",
        "log_every=5",
    ],
    "emergence-quantum": [
        "seeds=1",
        "tune_seeds=1",
        "hybrid_steps=40",
        "hybrid_per_task=4",
        "eval_per_task=8",
        "hybrid_probe_per_task=2",
        "n_qubits=2",
        "q_layers=1",
        "shot_grid=10,20",
        "timing_reps=1",
        "aer=false",
        "lag=8",
        "slow_lag=16",
        "plateau=10",
        "onset=3",
        "max_lag=20",
        "refractory=10",
        "warmup=8",
        "log_every=10",
        "n_task=8",
        "k=2",
        "n_atoms=2",
        "n_control=2",
        "hybrid_widths=4",
        "shot_every=4",
    ],  # its results.json table quotes step times (ms): those cells differ run to run
    "emergence-transfer": [
        "families=cmsp,msp,null",
        "steps=200",
        "seeds=2",
        "tune_seeds=1",
        "widths=16,16",
        "lr=3e-3",
        "per_task=32",
        "eval_per_task=16",
        "probe_per_task=4",
        "lag=20",
        "slow_lag=40",
        "onset=11",
        "plateau=100",
        "max_lag=200",
        "log_every=100",
    ],
    "kleene": [
        "n_train_kbs=8",
        "n_test_kbs=3",
        "queries_per_kb=8",
        "n_entities=10",
        "max_depth=2",
        "epochs=3",
        "batch_size=32",
    ],
    "narrow-curriculum": [
        "seeds=2",
        "n_task=8",
        "k=2",
        "widths=8",
        "broad_steps=6",
        "narrow_steps=4",
        "eval_every=3",
        "eval_samples=50",
        "broad_per_task=8",
        "narrow_per_step=16",
    ],
    "narrow-digits": [
        "seeds=1",
        "teacher_steps=20",
        "teacher_widths=8,8",
        "sizes=4,16",
        "max_steps=10",
        "eval_every=5",
        "attribution_samples=16",
    ],
    "narrow-pruning": [
        "widths=8",
        "train_steps=6",
        "sparsities=0.0,0.5",
        "recovery_steps=2",
        "offtarget_steps=2",
        "gl_steps=2",
        "eval_every=3",
        "eval_samples=60",
        "train_per_task=8",
        "recovery_batch=16",
        "offtarget_batch=16",
        "gl_batch=16",
    ],
    "narrow-semantic": [
        "seeds=2",
        "n_train_kbs=6",
        "n_test_kbs=3",
        "queries_per_kb=12",
        "teacher_epochs=2",
        "teacher_hidden=8",
        "sizes=2,4",
        "max_steps=10",
        "eval_every=5",
        "recovery_steps=3",
        "attribution_samples=16",
        "angle_samples=24",
    ],
    "noisy-training": [
        "n_seeds=2",
        "qubits=2",
        "layers=1",
        "n_train=16",
        "n_test=16",
        "epochs=2",
        "shots=256",
    ],
    "personalise": [
        "n_train_kbs=8",
        "n_test_kbs=6",
        "queries_per_kb=8",
        "epochs=2",
        "batch_size=32",
        "labels_per_user=10",
        "personal.steps=10",
        "personal.steps_per_label=1",
        "personal.probe_size=4",
        "edge.recovery_steps=3",
        "edge.latency_queries=5",
        "edge.batch=8",
    ],
    "profiles": ["n_train_kbs=6", "n_test_kbs=2", "queries_per_kb=8", "max_depth=2", "epochs=2"],
    "qutrit-noise": [
        "n_seeds=2",
        "epochs=2",
        "strengths=[0, 2]",
        "kleene_train_kbs=2",
        "kleene_test_kbs=2",
    ],
    "qutrit-vs-classical": [
        "n_seeds=2",
        "epochs=3",
        "hidden=3",
        "kleene_train_kbs=2",
        "kleene_test_kbs=1",
        "cmsp_n_train=40",
        "cmsp_n_test=40",
    ],
    "self-distill": [
        "n_seeds=2",
        "epochs=2",
        "n_train_kbs=12",
        "n_test_kbs=4",
        "queries_per_kb=8",
        "probe_size=8",
        "batch_size=32",
        "distill.probe_every=2",
        "distill.adaptive_min_history=2",
        "distill.adaptive_window=4",
        "distill.refractory=2",
        "distill.theta_quantum=0.0",
        "distill.trigger=quantum",
        "distill.correction_steps=1",
        "distill.shots=200",
        "distill.aer_queries=2",
    ],
    "story": [
        "self_distill.n_seeds=2",
        "self_distill.epochs=2",
        "self_distill.n_train_kbs=12",
        "self_distill.n_test_kbs=4",
        "self_distill.queries_per_kb=8",
        "self_distill.probe_size=8",
        "self_distill.batch_size=32",
        "self_distill.distill.probe_every=2",
        "self_distill.distill.adaptive_min_history=2",
        "self_distill.distill.adaptive_window=4",
        "self_distill.distill.refractory=2",
        "self_distill.distill.theta_quantum=0.0",
        "self_distill.distill.shots=200",
        "self_distill.distill.aer_queries=2",
        "heads.n_seeds=2",
        "heads.epochs=20",
        "heads.kleene_train_kbs=4",
        "heads.kleene_test_kbs=2",
        "labels_per_user=10",
        "personal.steps=20",
        "personal.steps_per_label=1",
        "personal.probe_size=8",
        "edge.recovery_steps=5",
        "edge.latency_queries=20",
        "edge.hidden=4",
    ],
    "swap-demo": ["steps=6", "shots=50,400", "aer=false", "stride=2"],
}


TIMING = re.compile(r"(seconds|_ms|_s|latency|wall|time|timings|speed)", re.I)


def cmp(a, b, path, out, tol=1e-9):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            out.append(f"{path}: keys differ {sorted(set(a) ^ set(b))}")
        for k in sorted(set(a) & set(b)):
            if TIMING.search(str(k)):
                continue
            cmp(a[k], b[k], f"{path}.{k}", out, tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: len {len(a)} vs {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            cmp(x, y, f"{path}[{i}]", out, tol)
    elif isinstance(a, float) and isinstance(b, float):
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            out.append(
                f"{path}: {a!r} vs {b!r} "
                f"({'rounding' if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else 'DIFFERS'})"
            )
    elif isinstance(a, str) and isinstance(b, str) and a != b:
        # summary lines quote times
        mask = r"[0-9.]+( ?(->|vs) ?[0-9.]+)? ?(s|ms)\b"
        sa, sb = re.sub(mask, "T", a), re.sub(mask, "T", b)
        if sa != sb:
            out.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} vs {b!r}")


def record(out: str, names: list[str]) -> None:
    from qsem.experiments import get_experiment
    from qsem.runner import run_experiment

    for name in names or sorted(TINY):
        tick = time.time()
        run_experiment(get_experiment(name), overrides=TINY[name], out=f"{out}/{name}",
                       quiet=True, report=False)  # fmt: skip
        print(name, round(time.time() - tick, 1), flush=True)


def _lines(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def compare(before: Path, after: Path) -> int:
    bad = 0
    for d in sorted(before.iterdir()):
        out: list[str] = []
        for name in ("results.json", "config.json"):
            cmp(json.loads((d / name).read_text()), json.loads((after / d.name / name).read_text()),
                name, out)  # fmt: skip
        cmp(_lines(d / "metrics.jsonl"), _lines(after / d.name / "metrics.jsonl"), "metrics", out)
        verdict = f"{len(out)} differences" if out else "identical (timing keys aside)"
        print(f"{d.name}: {verdict}")
        for line in out[:8]:
            print("   ", line)
        bad += bool(out)
    return bad


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
