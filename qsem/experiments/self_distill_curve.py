"""``qsem run self-distill-curve``: where self-distillation pays, over label fractions.

Two sweeps (``qsem sweep``, run as a command: the sweep is an entry point above
the experiments) into the run directory, over the same scored seeds and the same Kleene task:

* ``sweeps/self-distill``: ``qsem sweep self-distill --grid label_fraction=...``,
  one seed per trial (``n_seeds=1``): the hard-label arm and the
  self-distillation arm (:class:`qsem.distill.SelfDistiller`) at each fraction;
* ``sweeps/kleene``: ``qsem sweep kleene`` with every label (the full-label
  reference, the same model, data, epochs and optimiser as the hard arm).

Per label fraction ``f`` and seed ``s`` the study pairs ``hard[s]``,
``distill[s]`` and ``full[s]`` and reports the fraction of the full-label gap
recovered::

    recovered(f) = (mean_s distill − mean_s hard) / (mean_s full − mean_s hard)

with a paired bootstrap interval over seeds, the Wilcoxon signed-rank and
paired t-test p-values of ``distill − hard`` (:func:`qsem.stats.paired_tests`),
and the label fraction from which on it no longer helps (the smallest tested
fraction at and above which no fraction has ``distill > hard`` at
``p < alpha``). The loop's settings (teacher, τ, soft weight) are fixed in the
config, never chosen on the scored seeds' labels. Writes ``results.json`` (the
table per fraction, the per-seed rows), ``self-distill-curve.png`` and the two
sweep directories; resuming (``--resume``) continues both sweeps.

>>> from qsem.runner import run_experiment  # doctest: +SKIP
>>> exp = get_experiment("self-distill-curve")  # doctest: +SKIP
>>> res = run_experiment(exp, out="runs/sdc").results  # doctest: +SKIP
>>> res["table"][0]["recovered"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from qsem.checks import check_int
from qsem.io import read_json
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.stats import paired_tests

__all__ = ["EXPERIMENT", "SelfDistillCurveConfig", "curve_rows", "plot_curve", "run"]

#: the metrics the study reads from the two sweeps' trials
SD_METRICS = ("accuracy.hard.mean", "accuracy.distill.mean")
#: the control arm's metric (``control=true``: the loop without its soft term)
CONTROL_METRIC = "accuracy.control.mean"
FULL_METRIC = "test_accuracy"


@dataclass(frozen=True)
class SelfDistillCurveConfig:
    """Config of ``qsem run self-distill-curve``."""

    #: the first scored seed; the seeds are seed, seed+1, ..., seed+n_seeds-1
    seed: int = 0
    #: scored seeds (each trains hard, self-distill and full-label models per fraction)
    n_seeds: int = 10
    #: label fractions of the curve (the full-label reference is label_fraction 1)
    label_fractions: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
    #: task and training overrides for both sweeps (keys of ``qsem run kleene``)
    task: tuple[str, ...] = ("n_train_kbs=100", "n_test_kbs=25", "epochs=8", "batch_size=64")
    #: overrides of the self-distill sweep only: the loop, fixed before the scored run and
    #: never tuned on scored seeds (library defaults: EMA teacher 0.99, τ = 2, w_soft =
    #: w_hard = 1; a labelled batch of 16 per step, chosen on tuning seeds 100-102)
    loop: tuple[str, ...] = (
        "distill.teacher=ema", "distill.ema_decay=0.99", "distill.temperature=2.0",
        "distill.w_soft=1.0", "distill.w_hard=1.0", "distill.labelled_batch=16",
        'distill.detectors=["frobenius"]', "aer_seeds=0", "figure=false",
    )  # fmt: skip
    #: also train the control arm (the loop with w_soft = 0, everything else equal) and
    #: report distill − control: what the soft term itself adds
    control: bool = True
    #: sweep worker processes (0: the trials run in this process, one by one)
    workers: int = 2
    #: significance level of "self-distillation helps" (Wilcoxon signed-rank, distill > hard)
    alpha: float = 0.05
    #: the goal: this fraction of the full-label gap recovered at ...
    target_recovered: float = 0.85
    #: ... a label fraction of at most this
    target_fraction: float = 0.05
    #: paired bootstrap resamples of the seeds for the interval of ``recovered``
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0, config=True)
        check_int("n_seeds", self.n_seeds, 2, config=True)
        check_int("workers", self.workers, 0, config=True)
        check_int("bootstrap", self.bootstrap, 0, config=True)
        fr = self.label_fractions
        if not fr or any(not (0.0 < f < 1.0) for f in fr) or list(fr) != sorted(set(fr)):
            raise ConfigError(
                f"config key 'label_fractions': must be increasing values in (0, 1), got {fr}"
            )
        for key in ("alpha", "target_recovered", "target_fraction"):
            v = getattr(self, key)
            if not (math.isfinite(v) and 0.0 < v <= 1.0):
                raise ConfigError(f"config key '{key}': must lie in (0, 1], got {v}")
        for key in ("task", "loop"):
            bad = [o for o in getattr(self, key) if "=" not in o]
            if bad:
                raise ConfigError(f"config key '{key}': expected key=value items, got {bad[0]!r}")


def _bootstrap_recovered(
    hard: np.ndarray, sd: np.ndarray, full: np.ndarray, n: int, seed: int
) -> tuple[float | None, float | None]:
    """Percentile 95 % interval of ``recovered`` over paired resamples of the seeds."""
    if n == 0 or len(hard) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(hard), size=(n, len(hard)))
    h, d, f = hard[idx].mean(1), sd[idx].mean(1), full[idx].mean(1)
    gap = f - h
    ok = gap > 1e-12
    if not ok.any():
        return None, None
    r = (d[ok] - h[ok]) / gap[ok]
    return float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))


def curve_rows(per_seed: list[dict[str, Any]], cfg: SelfDistillCurveConfig) -> list[dict[str, Any]]:
    """One row per label fraction from the per-seed rows ``{fraction, seed, hard, distill, full}``.

    ``recovered = (mean distill − mean hard) / (mean full − mean hard)`` (None where
    the hard arm is not below the full-label reference); ``helps``: ``distill > hard``
    on average with a Wilcoxon signed-rank p below ``alpha``.

    >>> rows = [{"fraction": 0.1, "seed": s, "hard": 0.5 + s / 100, "distill": 0.8 + s / 50,
    ...          "full": 1.0} for s in range(3)]
    >>> round(curve_rows(rows, SelfDistillCurveConfig(bootstrap=0))[0]["recovered"], 4)
    0.6275
    """
    out = []
    for f in cfg.label_fractions:
        rows = sorted((r for r in per_seed if r["fraction"] == f), key=lambda r: r["seed"])
        hard, sd, full = (np.array([r[k] for r in rows]) for k in ("hard", "distill", "full"))
        gap = float(full.mean() - hard.mean()) if rows else float("nan")
        rec = float(sd.mean() - hard.mean()) / gap if rows and gap > 1e-12 else None
        low, high = _bootstrap_recovered(hard, sd, full, cfg.bootstrap, cfg.seed)
        vs_hard = paired_tests(sd.tolist(), hard.tolist())
        vs_full = paired_tests(sd.tolist(), full.tolist())
        p = vs_hard["wilcoxon_p"]
        out.append({
            "label_fraction": f, "seeds": len(rows),
            "hard": float(hard.mean()) if rows else None,
            "hard_std": float(hard.std(ddof=1)) if len(rows) > 1 else None,
            "distill": float(sd.mean()) if rows else None,
            "distill_std": float(sd.std(ddof=1)) if len(rows) > 1 else None,
            "full": float(full.mean()) if rows else None,
            "gap": gap if rows else None, "recovered": rec,
            "recovered_low": low, "recovered_high": high,
            "diff": vs_hard["mean_diff"], "wilcoxon_p": p, "ttest_p": vs_hard["ttest_p"],
            "wins": int((sd > hard).sum()), "losses": int((sd < hard).sum()),
            "diff_vs_full": vs_full["mean_diff"], "wilcoxon_p_vs_full": vs_full["wilcoxon_p"],
            "helps": bool(rows) and (vs_hard["mean_diff"] or 0.0) > 0 and p is not None
            and p < cfg.alpha,
            **_control_columns(rows, hard, sd, gap),
        })  # fmt: skip
    return out


def _control_columns(
    rows: list[dict[str, Any]], hard: np.ndarray, sd: np.ndarray, gap: float
) -> dict[str, Any]:
    """The control arm's columns (rows with a ``control`` value): its mean, the share of
    the gap it recovers, and the paired tests of distill − control (the soft term's part)."""
    if not rows or "control" not in rows[0]:
        return {}
    ctl = np.array([r["control"] for r in rows])
    vs_ctl = paired_tests(sd.tolist(), ctl.tolist())
    return {
        "control": float(ctl.mean()),
        "control_std": float(ctl.std(ddof=1)) if len(rows) > 1 else None,
        "recovered_control": float(ctl.mean() - hard.mean()) / gap if gap > 1e-12 else None,
        "diff_vs_control": vs_ctl["mean_diff"], "wilcoxon_p_vs_control": vs_ctl["wilcoxon_p"],
        "ttest_p_vs_control": vs_ctl["ttest_p"],
        "wins_vs_control": int((sd > ctl).sum()), "losses_vs_control": int((sd < ctl).sum()),
    }  # fmt: skip


def _verdict(table: list[dict[str, Any]], cfg: SelfDistillCurveConfig) -> dict[str, Any]:
    """The fraction from which on self-distillation no longer helps, and the goal."""
    stop = None
    for row in reversed(table):
        if row["helps"]:
            break
        stop = row["label_fraction"]
    eligible = [r for r in table if r["label_fraction"] <= cfg.target_fraction]
    best = max((r["recovered"] for r in eligible if r["recovered"] is not None), default=None)
    met = best is not None and best >= cfg.target_recovered
    return {"no_longer_helps_from": stop, "best_recovered_at_target": best, "target_met": met}


def plot_curve(table: list[dict[str, Any]], per_seed: list[dict[str, Any]], cfg: Any) -> Any:
    """Accuracy against label fraction (hard, self-distill, full) and the gap recovered."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax_acc, ax_rec = fig.subplots(1, 2)
    xs = [r["label_fraction"] * 100 for r in table]
    arms = [("hard", "#7570b3", "hard labels only"), ("distill", "#d95f02", "self-distillation")]
    if "control" in table[0]:
        arms.append(("control", "#1b9e77", "control: the loop, w_soft = 0"))
    for key, color, label in arms:
        ax_acc.errorbar(xs, [r[key] for r in table], yerr=[r[f"{key}_std"] or 0 for r in table],
                        marker="o", capsize=3, color=color, label=label)  # fmt: skip
        pts = [(r["fraction"] * 100, r[key]) for r in per_seed]
        ax_acc.plot(*zip(*pts, strict=True), ls="none", marker=".", ms=3, alpha=0.35, color=color)
    full = statistics.fmean(r["full"] for r in per_seed)
    ax_acc.axhline(full, color="k", lw=1, ls="--", label=f"all labels ({full:.3f})")
    ax_acc.set(xscale="log", xlabel="labelled training queries (%)", ylabel="test accuracy",
               title=f"Kleene, mean ± std over {table[0]['seeds']} seeds")  # fmt: skip
    ax_acc.set_xticks(xs, [f"{x:g}" for x in xs])
    ax_acc.legend(fontsize=8, loc="lower right")
    rec = [r["recovered"] if r["recovered"] is not None else float("nan") for r in table]
    lo = [r["recovered"] - r["recovered_low"] if r["recovered_low"] is not None else 0
          for r in table]  # fmt: skip
    hi = [r["recovered_high"] - r["recovered"] if r["recovered_high"] is not None else 0
          for r in table]  # fmt: skip
    ax_rec.errorbar(xs, rec, yerr=[lo, hi], marker="o", capsize=3, color="#d95f02")
    ax_rec.axhline(cfg.target_recovered, color="#1b9e77", ls=":", label="goal")
    ax_rec.axhline(0.0, color="0.5", lw=0.8)
    for x, r in zip(xs, table, strict=True):
        p = r["wilcoxon_p"]
        ax_rec.annotate("p=n/a" if p is None else f"p={p:.2g}", (x, r["recovered"] or 0),
                        textcoords="offset points", xytext=(4, 6), fontsize=7)  # fmt: skip
    ax_rec.set(xscale="log", xlabel="labelled training queries (%)", ylabel="gap recovered",
               title="(SD − hard) / (full − hard), 95 % bootstrap")  # fmt: skip
    ax_rec.set_xticks(xs, [f"{x:g}" for x in xs])
    ax_rec.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _sweep(
    name: str, ctx: RunContext, cfg: SelfDistillCurveConfig, args: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``qsem sweep NAME ARGS`` over the scored seeds into ``sweeps/NAME``: (values, points).

    Run as a command (the sweep is an entry point, above the experiments); its
    output goes to ``sweeps/NAME.log``. Running it again continues the sweep.
    """
    out = ctx.path(f"sweeps/{name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = f"{cfg.seed}-{cfg.seed + cfg.n_seeds - 1}"
    cmd = [sys.executable, "-m", "qsem", "sweep", name, *args, "--seeds", seeds,
           "--workers", str(cfg.workers), "--out", str(out)]  # fmt: skip
    log = ctx.path(f"sweeps/{name}.log")
    with log.open("a") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if code in (130, 143):
        raise KeyboardInterrupt
    if code != 0:
        tail = log.read_text().strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"qsem sweep {name} exited with {code}: {tail[0]} (see {log})")
    summary = read_json(out / "summary.json")
    ctx.echo(f"{ctx.label}: sweep {name}: {summary['trials']}")
    return summary["values"], summary["points"]


def run(cfg: SelfDistillCurveConfig, ctx: RunContext) -> dict[str, Any]:
    tick = time.perf_counter()
    ctx.checkpoint(0, {"sweeps": ["self-distill", "kleene"]}, force=True, where="start")
    full_values, _ = _sweep("kleene", ctx, cfg, [*cfg.task, "--metric", FULL_METRIC])
    fr = ",".join(f"{f:g}" for f in cfg.label_fractions)
    names = (*SD_METRICS, CONTROL_METRIC) if cfg.control else SD_METRICS
    metrics = [a for m in names for a in ("--metric", m)]
    control = ["control=true"] if cfg.control else []
    sd_values, points = _sweep(
        "self-distill", ctx, cfg,
        [*cfg.task, *cfg.loop, *control, "n_seeds=1", *metrics,
         "--grid", f"label_fraction={fr}"],
    )  # fmt: skip
    (full_point,) = full_values.values()
    per_seed = []
    for name, by_seed in sd_values.items():
        f = float(points[name]["label_fraction"])
        for s, m in sorted(by_seed.items(), key=lambda kv: int(kv[0])):
            per_seed.append({
                "fraction": f, "seed": int(s), "hard": m[SD_METRICS[0]],
                "distill": m[SD_METRICS[1]], "full": full_point[s][FULL_METRIC],
                **({"control": m[CONTROL_METRIC]} if cfg.control else {}),
            })  # fmt: skip
    per_seed.sort(key=lambda r: (r["fraction"], r["seed"]))
    table = curve_rows(per_seed, cfg)
    verdict = _verdict(table, cfg)
    ctx.save_figure(plot_curve(table, per_seed, cfg), "self-distill-curve.png")
    seconds = round(time.perf_counter() - tick, 1)
    head = [
        f"full-label accuracy {table[0]['full']:.3f} (mean over {cfg.n_seeds} seeds)",
        *(f"{r['label_fraction']:g}: hard {r['hard']:.3f}, self-distill {r['distill']:.3f}, "
          f"recovered {r['recovered'] if r['recovered'] is None else round(r['recovered'], 3)}, "
          f"Wilcoxon p {r['wilcoxon_p']}"
          + (f"; control {r['control']:.3f}, distill vs control Wilcoxon p "
             f"{r['wilcoxon_p_vs_control']}" if "control" in r else "") for r in table),
        f"goal (>= {cfg.target_recovered:g} recovered at <= {cfg.target_fraction:g} labels): "
        + ("met" if verdict["target_met"] else "MISSED"),
    ]  # fmt: skip
    return {
        "summary": head, "table": table, "per_seed": per_seed, **verdict,
        "seeds": list(range(cfg.seed, cfg.seed + cfg.n_seeds)),
        "full_accuracy": table[0]["full"], "wall_seconds": seconds,
        "columns": {"table": _COLUMNS},
    }  # fmt: skip


_COLUMNS = {
    "label_fraction": "fraction of training queries labelled",
    "hard": "mean test accuracy, hard labels only", "distill": "mean, self-distillation",
    "full": "mean, every label (the reference)", "gap": "full − hard",
    "recovered": "(distill − hard) / (full − hard)",
    "recovered_low": "95 % paired bootstrap over seeds", "recovered_high": "",
    "diff": "mean distill − hard", "wilcoxon_p": "Wilcoxon signed-rank, distill vs hard",
    "helps": "diff > 0 and wilcoxon_p < alpha",
}  # fmt: skip

EXPERIMENT = Experiment(
    name="self-distill-curve",
    description="where self-distillation pays: gap to full labels recovered at 1-10 % labels",
    defaults=SelfDistillCurveConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "summary",
        "table",
        "per_seed",
        "no_longer_helps_from",
        "best_recovered_at_target",
        "target_met",
        "seeds",
        "full_accuracy",
        "wall_seconds",
        "columns",
    ),
)
