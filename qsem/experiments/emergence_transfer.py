"""``qsem run emergence-transfer``: detectors tuned on one task family, scored on the others.

Leave-one-family-out. Each family of :mod:`qsem.narrow.families` (a preset of
:data:`FAMILY_PRESETS` over this config's keys) trains ``tune_seeds`` MLPs
(seeds ``tune_offset + i``) and ``seeds`` MLPs (seeds ``seed + i``) with
:func:`qsem.narrow.emergence_train.train_mlp`; the ground truth of each run is
:func:`qsem.experiments.emergence_cmsp.ground_truth` of its scored tasks'
losses. Then, for every *tuning family* T (a family with transitions), every
detector's grid is searched on T's tuning seeds (best pooled F1,
:func:`qsem.emergence.benchmark.tune`) and the chosen setting is scored on the
*scored* seeds of every other family S ≠ T (the null family included). The
table pools, per detector and scored family, the scores over all T ≠ S; the
"all" row pools every (T, S) with transitions; null runs give false alarms
per run. Nothing is ever tuned on a scored seed, nor on the family it is
scored on. Besides the pooled signal's detectors, two per-task CUSUMs watch one
signal per task (:func:`task_detectors`), and E_pot is scored as a forecaster
the same way (:mod:`._emergence_transfer_epot`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from qsem.checks import check_real
from qsem.emergence import SelfCalibratingCUSUM, per_task_cusum
from qsem.emergence.benchmark import Run, online_events, pooled_score, tune
from qsem.emergence.pertask import RETIRE
from qsem.narrow.emergence_train import SIGNALS, TASK_SIGNALS, train_mlp
from qsem.narrow.families import FAMILY_NAMES, make_family
from qsem.runner import ConfigError, Experiment, RunContext

from ._emergence_cmsp_detectors import l1_detector, scalar_detectors
from ._emergence_cmsp_report import plot_detections
from ._emergence_keys import EmergenceRunKeys, RunTailKeys
from ._emergence_transfer_epot import epot_lofo, epot_table
from ._emergence_transfer_report import TARGETS, table, targets_met
from .emergence_cmsp import RULE, ground_truth, run_phases

__all__ = ["EXPERIMENT", "FAMILY_PRESETS", "EmergenceTransferConfig", "run"]

#: family name -> the config keys it overrides (the rest are shared)
FAMILY_PRESETS: dict[str, dict[str, Any]] = {
    "cmsp": {"family": "cmsp"},
    "cmsp-b": {
        "family": "cmsp",
        "n_atoms": 3,
        "n_control": 3,
        "k": 3,
        "n_task": 24,
        "widths": (128,),
        "lr": 1.5e-3,
    },
    "msp": {"family": "msp", "n_atoms": 6, "n_control": 6, "n_task": 20, "alpha": 1.0},
    "grok": {
        "family": "grok",
        "modulus": 59,
        "train_frac": 0.5,
        "weight_decay": 1.0,
        "widths": (256,),
        "lr": 3e-3,
    },
    "null": {"family": "null"},
}


@dataclass(frozen=True)
class _TransferLead:
    #: the families (keys of FAMILY_PRESETS); every one with transitions is a tuning family
    families: tuple[str, ...] = ("cmsp", "cmsp-b", "msp", "null")


@dataclass(frozen=True)
class _FamilyKeys:
    #: the task family of the shared keys (each family preset sets its own)
    family: str = "cmsp"
    #: msp: task i is drawn with probability proportional to (i + 1)^-alpha
    alpha: float = 1.0
    #: grok: the modulus p of (a + b) mod p
    modulus: int = 59
    #: grok: fraction of the p^2 pairs in the training split
    train_frac: float = 0.5
    #: grok: seed of the train / test split
    split_seed: int = 0
    #: AdamW weight decay (0: plain Adam)
    weight_decay: float = 0.0
    #: the per-task Δφ of the per-task CUSUM: literal_task, lagged_task, ema_task, ema_slow_task
    task_signal: str = "ema_slow_task"
    #: per-task detectors: steps of each channel's warm-up (its reference fills first)
    task_warmup: int = 200
    #: per-task detectors: which channels an event retires, "all" or "dominant" (PerTask;
    #: chosen on the tuning seeds only, docs/emergence.md)
    task_retire: str = "dominant"
    #: per-task detectors: a retired channel is re-armed after this many quiet steps (0: never)
    task_rearm: int = 0
    #: task_retire "dominant": a channel of a group is retired when its own move is at least
    #: this share of the group's largest (1: the largest only), per-task Δφ and entropy
    task_dominance: tuple[float, float] = (0.5, 0.75)


@dataclass(frozen=True)
class EmergenceTransferConfig(RunTailKeys, _FamilyKeys, EmergenceRunKeys, _TransferLead):
    """Config of ``qsem run emergence-transfer`` (override any key with ``key=value``): the
    families, the shared emergence keys (:class:`~._emergence_keys.EmergenceRunKeys`, with
    this experiment's defaults; CMSP's keys are the msp / null families' too), the family
    keys, the tail."""

    #: scored seeds per family
    seeds: int = 5
    #: tuning seeds per family: tune_offset, tune_offset + 1, ...
    tune_seeds: int = 3
    #: CMSP / msp / null: task bits (irrelevant bits = n_task - n_atoms * k)
    n_task: int = 16
    widths: tuple[int, ...] = (64, 64)
    #: learning rate of Adam (AdamW when weight_decay > 0)
    lr: float = 1e-3
    per_task: int = 100
    #: training steps per run
    steps: int = 3000
    eval_per_task: int = 64
    probe_per_task: int = 16
    #: the signal the scalar detectors see: literal, lagged, ema, ema_slow
    signal: str = "ema_slow"
    #: an event up to max_lag steps after a start matches it
    max_lag: int = 400
    #: transitions of one run starting within merge_gap steps of an earlier one are merged
    merge_gap: int = 150
    refractory: int = 300
    log_every: int = 100

    def __post_init__(self) -> None:
        self.check_run_keys(self.tune_seeds)
        self.check_tail_keys()
        bad = [f for f in self.families if f not in FAMILY_PRESETS]
        if bad or len(set(self.families)) != len(self.families):
            raise ConfigError(
                f"config key 'families': distinct names of {sorted(FAMILY_PRESETS)}, got "
                f"{list(self.families)}"
            )
        if len([f for f in self.families if f != "null"]) < 2:
            raise ConfigError("config key 'families': need two families with transitions")
        if self.family not in FAMILY_NAMES:
            raise ConfigError(f"config key 'family': one of {list(FAMILY_NAMES)}")
        if self.task_signal not in TASK_SIGNALS[:-1]:
            raise ConfigError(
                f"config key 'task_signal': one of {list(TASK_SIGNALS[:-1])}, "
                f"got {self.task_signal!r}"
            )
        if self.task_retire not in RETIRE:
            raise ConfigError(f"config key 'task_retire': one of {list(RETIRE)}")
        if len(self.task_dominance) != 2 or not all(0 <= x <= 1 for x in self.task_dominance):
            raise ConfigError("config key 'task_dominance': two shares in [0, 1] (Δφ, entropy)")
        if self.task_rearm < 0:
            raise ConfigError(f"config key 'task_rearm': must be >= 0, got {self.task_rearm}")
        if not 2 <= self.task_warmup <= 500:
            raise ConfigError("config key 'task_warmup': must lie in [2, 500]")
        if self.signal not in SIGNALS:
            raise ConfigError(f"config key 'signal': one of {list(SIGNALS)}, got {self.signal!r}")
        check_real("weight_decay", self.weight_decay, minimum=0, config=True)
        for f in self.families:
            try:
                make_family(self.for_family(f))
            except ValueError as exc:
                raise ConfigError(f"config key 'families': {f}: {exc}") from None

    def for_family(self, name: str) -> Any:
        """This config's keys with the family's preset applied (the preset wins), a namespace."""
        return SimpleNamespace(**{**asdict(self), **FAMILY_PRESETS[name]})


# -- runs -----------------------------------------------------------------------------------------


def _runs(res: dict[str, Any], fcfg: Any, name: str) -> list[Run]:
    losses = np.asarray(res["losses"])
    scored = make_family(fcfg).scored_tasks
    out = []
    for e in range(losses.shape[1]):
        gt = ground_truth(losses[:, e][:, scored], fcfg)
        if name == "l1":
            sig = np.asarray(res["ema_snapshots"])[:, e]
        elif name in TASK_SIGNALS:
            sig = np.asarray(res["task_signals"][name])[:, e]
        else:
            sig = np.asarray(res["signals"][name])[:, e]
        out.append(Run(sig, gt["starts"], gt["ends"], steps=losses.shape[0] - 1))
    return out


def _own_runs(res: dict[str, Any], fcfg: Any, name: str) -> list[Run]:
    """One run per (seed, scored task): that task's channel of ``name`` ``(steps + 1, E, T)``
    and its own transition (start, learned), unmerged (the per-task forecaster's runs)."""
    losses = np.asarray(res["losses"])
    scored = make_family(fcfg).scored_tasks
    sig = np.asarray(res["task_signals"][name])
    out = []
    for e in range(losses.shape[1]):
        for c, tr in enumerate(ground_truth(losses[:, e][:, scored], fcfg)["per_task"]):
            st, en = ([tr[0]], [tr[1]]) if tr is not None else ([], [])
            out.append(Run(sig[:, e, c], st, en, steps=losses.shape[0] - 1))
    return out


def detectors(cfg: EmergenceTransferConfig, tune_runs: dict[str, list[Run]]) -> dict[str, Any]:
    """``name -> (signal kind, detect, grid)``: the emergence-cmsp grids plus the CUSUM."""
    sig = tune_runs["signal"]
    out = {n: ("signal", d, g) for n, (d, g) in scalar_detectors(cast(Any, cfg), sig).items()}
    det_l1, grid_l1 = l1_detector(cast(Any, cfg), tune_runs["l1"])
    out["l1"] = ("l1", det_l1, grid_l1)

    def cusum(p: dict[str, Any], r: Run) -> list[int]:
        det = SelfCalibratingCUSUM(p["drift"], p["arl"], p["window"], min(100, p["window"]),
                                   refractory=cfg.refractory)  # fmt: skip
        return online_events(det, r.signal)

    grid = [{"drift": d, "arl": a, "window": w}
            for d in (0.5, 1.0, 2.0) for a in (1e3, 1e4, 1e5) for w in (200, 1000)]  # fmt: skip
    out["cusum"] = ("signal", cusum, grid)
    out["cusum (untuned)"] = ("signal", cusum, [{"drift": 1.0, "arl": 1e4, "window": 500}])
    out.update(task_detectors(cfg))
    return out


#: the kinds of signal a detector may see -> the recorded series (cfg attribute or name)
KINDS = {"signal": "signal", "l1": "l1", "task": "task_signal", "entropy": "entropy_task"}


def _series_name(cfg: EmergenceTransferConfig, kind: str) -> str:
    return str(getattr(cfg, KINDS[kind], KINDS[kind]))


def task_detectors(cfg: EmergenceTransferConfig) -> dict[str, Any]:
    """The per-task detectors: one self-calibrating CUSUM per task's probe signal
    (:func:`qsem.emergence.per_task_cusum`, each channel retired once it fires, by the
    rule ``task_retire`` / ``task_dominance`` / ``task_rearm``; an event when any
    channel fires; events within ``merge_gap`` steps fold into one, as the ground
    truth folds starts). With a rule other than "retire every channel that fires",
    the same detectors under that rule are scored too (rows ``..., retire all``)."""

    def detect(direction: str, log: bool, rule: dict[str, Any]) -> Any:
        def run_(p: dict[str, Any], r: Run) -> list[int]:
            det = per_task_cusum(
                np.asarray(r.signal).shape[1], p["drift"], p["arl"], 500, cfg.task_warmup,
                once=True, refractory=cfg.merge_gap, direction=direction, log=log,
                min_spread=p.get("min_spread", 1e-6), **rule,
            )  # fmt: skip
            return online_events(det, r.signal)

        return run_

    dphi = [{"drift": d, "arl": a} for d in (1.0, 2.0) for a in (1e4, 1e5)]
    ent = [{"drift": d, "arl": 1e4, "min_spread": m} for d in (1.0, 2.0) for m in (0.01, 0.03, 0.1)]
    rules = {
        "": [{"retire": cfg.task_retire, "rearm": cfg.task_rearm, "dominance": d}
             for d in cfg.task_dominance],
    }  # fmt: skip
    if cfg.task_retire != "all" or cfg.task_rearm:
        rules[", retire all"] = [{"retire": "all"}] * 2
    out = {}
    for tag, (r_dphi, r_ent) in rules.items():
        out[f"cusum (per-task Δφ{tag})"] = ("task", detect("up", True, r_dphi), dphi)
        out[f"cusum (per-task entropy{tag})"] = ("entropy", detect("down", False, r_ent), ent)
    return out


def lofo(done: dict[str, Any], cfg: EmergenceTransferConfig) -> dict[str, Any]:
    """Tune on each family's tuning seeds, score on every other family's scored seeds."""
    fams = list(cfg.families)
    runs = {
        (f, phase, kind): _runs(done[f"{f}-{phase}"], cfg.for_family(f), name)
        for f in fams
        for phase in ("tune", "score")
        for kind in KINDS
        for name in (_series_name(cfg, kind),)
    }
    for f in fams:
        for phase in ("tune", "score"):
            runs[(f, phase, "own")] = _own_runs(done[f"{f}-{phase}"], cfg.for_family(f),
                                                cfg.task_signal)  # fmt: skip
    tuning = [f for f in fams if any(r.starts for r in runs[(f, "tune", "signal")])]
    pairs: list[dict[str, Any]] = []
    for t in tuning:
        tr = {k: runs[(t, "tune", k)] for k in KINDS}
        for name, (kind, detect, grid) in detectors(cfg, tr).items():
            best, _ = tune(detect, grid, tr[kind], max_lag=cfg.max_lag, before=cfg.before)
            for s in fams:
                if s == t:
                    continue
                sr = runs[(s, "score", kind)]
                events = [detect(best, r) for r in sr]
                pairs.append({"tuned_on": t, "scored_on": s, "detector": name, "kind": kind,
                              "params": best, "events": events})  # fmt: skip
    return {"tuning_families": tuning, "pairs": pairs, "runs": runs}


def summarise(out: dict[str, Any], cfg: EmergenceTransferConfig) -> dict[str, Any]:
    """Pooled scores per (detector, scored family) over all tuning families, and 'all'."""
    kw = {"max_lag": cfg.max_lag, "before": cfg.before}
    by: dict[tuple[str, str], tuple[list[Any], list[Run]]] = {}
    for p in out["pairs"]:
        kind = p["kind"]
        runs = out["runs"][(p["scored_on"], "score", kind)]
        for key in ((p["detector"], p["scored_on"]),) + (
            ((p["detector"], "all"),) if p["scored_on"] != "null" else ()
        ):
            ev, rr = by.setdefault(key, ([], []))
            ev += p["events"]
            rr += runs
    rows: dict[str, dict[str, Any]] = {}
    for (det, fam), (ev, rr) in by.items():
        s = pooled_score(ev, rr, **kw)
        s.pop("per_run")
        s["false_alarms_per_run"] = s["false_alarms"] / len(rr)
        s["runs"] = len(rr)
        rows.setdefault(det, {})[fam] = s
    for fams in rows.values():
        fams["targets"] = targets_met(fams.get("all"), fams.get("null"))
    return rows


def run(cfg: EmergenceTransferConfig, ctx: RunContext) -> dict[str, Any]:
    tune_seeds = [cfg.tune_offset + i for i in range(cfg.tune_seeds)]
    score_seeds = [cfg.seed + i for i in range(cfg.seeds)]
    phases = []
    for f in cfg.families:
        fcfg = cfg.for_family(f)
        for phase, seeds in (("tune", tune_seeds), ("score", score_seeds)):

            def train(resume: Any, checkpoint: Any, fcfg=fcfg, seeds=seeds, tag=f"{f}-{phase}"):
                return train_mlp(fcfg, seeds, tag=tag, resume=resume, checkpoint=checkpoint,
                                 log=ctx.log)  # fmt: skip

            phases.append((f"{f}-{phase}", cfg.steps, train))
    done = run_phases(ctx, phases, desc="emergence-transfer phases")
    out = lofo(done, cfg)
    rows = summarise(out, cfg)
    ep = epot_lofo(out["runs"], out["tuning_families"], list(cfg.families), cfg)
    md = table(rows, list(cfg.families), out["tuning_families"])
    md += "\n" + epot_table(ep, cfg.horizon)
    ctx.write_text("table.md", md)
    truths = _figures(done, out, cfg, ctx)
    return {
        "table": md,
        "scores": rows,
        "targets": TARGETS,
        "epot_auroc": ep,
        "tuning_families": out["tuning_families"],
        "pairs": out["pairs"],
        "transitions": truths,
        "seeds": score_seeds,
        "tune_seeds": tune_seeds,
        "transition_rule": RULE.format(
            high=cfg.high_bits,
            low=cfg.low_bits,
            onset=cfg.onset,
            plateau=cfg.plateau,
            gap=cfg.merge_gap,
            before=cfg.before,
            max_lag=cfg.max_lag,
        ),
        "family_presets": {f: FAMILY_PRESETS[f] for f in cfg.families},
        "timings_s": {tag: done[tag]["seconds"] for tag, _, _ in phases},
        "config": asdict(cfg),
    }


def _figures(
    done: dict[str, Any], out: dict[str, Any], cfg: EmergenceTransferConfig, ctx: RunContext
) -> dict[str, list[dict[str, Any]]]:
    """One detection figure per family (its first two scored seeds, the events of the
    detectors tuned on the first other tuning family); returns the ground truths."""
    truths = {}
    for f in cfg.families:
        fcfg = cfg.for_family(f)
        res = done[f"{f}-score"]
        scored = make_family(fcfg).scored_tasks
        losses = np.asarray(res["losses"])
        truths[f] = [ground_truth(losses[:, e][:, scored], fcfg) for e in range(cfg.seeds)]
        other = [t for t in out["tuning_families"] if t != f][:1]
        dets = {
            p["detector"]: {"per_run": [{"events": e} for e in p["events"]]}
            for p in out["pairs"]
            if p["scored_on"] == f and p["tuned_on"] in other
        }
        res_fig = {**res, "losses": losses[:, :, scored]}
        fig = plot_detections(
            res_fig, truths[f], {"signal": cfg.signal, "detectors": dets}, cfg,
            task_names=_task_names(fcfg),
        )  # fmt: skip
        ctx.save_figure(fig, f"detections-{f}.png")
    return truths


def _task_names(fcfg: Any) -> list[str]:
    fam = make_family(fcfg)
    return [str(fam.tasks[i]) for i in fam.scored_tasks]


EXPERIMENT = Experiment(
    name="emergence-transfer",
    description="Emergence detectors tuned on one task family, scored on the others (LOFO)",
    defaults=EmergenceTransferConfig(),
    run=run,
    checkpoint_every=500,
    results=(
        "table",
        "scores",
        "targets",
        "epot_auroc",
        "tuning_families",
        "pairs",
        "transitions",
        "seeds",
        "tune_seeds",
        "transition_rule",
        "family_presets",
        "timings_s",
        "config",
    ),
)
