"""``qsem run personalise``: two users, two readings of the same Kleene queries, a model each.

1. **Shared model.** The chained semantic model of ``qsem run kleene`` is trained on
   open-world Kleene queries (:func:`qsem.tasks.kleene_training.fit`, checkpoints every
   epoch), ``n_slices`` emergence slices.
2. **Personal readings.** Two simulated users label queries of knowledge bases the
   model never saw (:func:`qsem.edge.simulate_users`): one open-world (unknown stays
   ``|U>``), one closed-world (unknown means ``|F>``), ``labels_per_user`` labels
   each; their labels arrive one at a time and each user's reading (slice weights
   ``α^(u)``, calibration ``M^(u)``, sensitivity ``θ^(u)``; :func:`qsem.edge.personalise_users`)
   is fitted from them. A *shared* reading is fitted on both users' labels together.
   Every user's history ``H^(u)`` (readings φ_t, Δφ_t, labels, L1-detector events,
   θ^(u), personal parameters) goes into ``history.sqlite`` in the run directory
   (inspect it with ``qsem history``).
3. **Edge model.** The ``edge_user``'s reading is narrowed and compressed
   (:func:`qsem.edge.edge_model`): the table full / narrowed / compressed.

Writes ``results.json`` (``per_user_accuracy``, ``shared_accuracy``,
``labels_per_user``, ``edge_table``, ``users``, ``examples``, ``summary``),
``personalise.png`` and ``history.sqlite``. Checkpoints after every epoch of the
shared model and after each later stage; ``--resume`` continues (an interrupted
personalisation stage starts again with a fresh history file of its own).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from qsem.edge import (
    WORLDS,
    EdgeConfig,
    HistoryStore,
    PersonalConfig,
    PersonalReading,
    edge_model,
    personalise_users,
    simulate_users,
)
from qsem.models import SemanticModel
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.tasks.kleene_training import evaluate, fit, make_data, model_config

from .kleene import KleeneConfig

__all__ = ["EXPERIMENT", "PersonaliseConfig", "plot_personalise", "run"]

#: the history store of a run, in its directory.
HISTORY_FILE = "history.sqlite"


@dataclass(frozen=True)
class PersonaliseConfig(KleeneConfig):
    """Config of ``qsem run personalise``: the Kleene keys of the shared model, the users,
    ``personal.*`` (the personal readings) and ``edge.*`` (the small model)."""

    #: knowledge bases the shared model is trained on (open-world labels)
    n_train_kbs: int = 100
    #: unseen knowledge bases whose queries the users label (and are tested on)
    n_test_kbs: int = 30
    #: training epochs of the shared model
    epochs: int = 20
    #: emergence slices of the shared model (the user's Π_edge weights mix them)
    n_slices: int = 2
    #: labels each simulated user gives (their personal readings learn from these only)
    labels_per_user: int = 50
    #: held-out queries per user (0: every pool query no user labelled)
    n_heldout: int = 0
    #: the world (open / closed) of the user whose model is narrowed for the edge
    edge_user: str = "closed"
    #: how the personal readings are fitted (section)
    personal: PersonalConfig = field(default_factory=PersonalConfig)
    #: how the edge model is narrowed and compressed (section)
    edge: EdgeConfig = field(default_factory=EdgeConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.labels_per_user < 1:
            raise ConfigError(f"config key 'labels_per_user': must be >= 1, got "
                              f"{self.labels_per_user}")  # fmt: skip
        if self.n_heldout < 0:
            raise ConfigError(f"config key 'n_heldout': must be >= 0, got {self.n_heldout}")
        if self.edge_user not in WORLDS:
            raise ConfigError(f"config key 'edge_user': expected one of {WORLDS}, got "
                              f"{self.edge_user!r}")  # fmt: skip
        if self.edge.hidden > self.hidden:
            raise ConfigError(f"config key 'edge.hidden': {self.edge.hidden} > hidden = "
                              f"{self.hidden}")  # fmt: skip
        if self.edge.top_p > self.n_slices:
            raise ConfigError(f"config key 'edge.top_p': {self.edge.top_p} > n_slices = "
                              f"{self.n_slices}")  # fmt: skip


def run(
    cfg: PersonaliseConfig, ctx: RunContext, model: SemanticModel | None = None
) -> dict[str, Any]:
    """The experiment (see the module); its ``results.json`` dict.

    ``model``: an already trained model (any :class:`~qsem.models.SemanticModel` on the
    Kleene vocabulary with ``s_dim = 3``) to personalise instead of training one (stage 1
    is skipped, its weights are not changed; ``edge.top_p`` must not exceed its slices).
    Only ``ctx`` is used for files, logs and checkpoints, so a nested context works.

    >>> # results = run(PersonaliseConfig(epochs=12), ctx, model=my_trained_model)
    """
    return _run(cfg, ctx, model)


def _remove_store(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _run(cfg: PersonaliseConfig, ctx: RunContext, given: SemanticModel | None) -> dict[str, Any]:
    tick = time.perf_counter()
    train, test = make_data(cfg)
    torch.manual_seed(cfg.seed)
    model = SemanticModel(model_config(cfg)) if given is None else given
    state = ctx.restore()
    stage = state.get("stage") if state is not None else None
    done: dict[str, Any] = {}
    if state is not None and stage is not None:
        done = dict(state["done"])
        if given is None:
            model.load_state_dict(state["model"])
    else:
        if given is None:
            fit(cfg, model, train, test, ctx)
        done["base_test_accuracy"] = evaluate(model, test)["accuracy"]
        done["base_seconds"] = round(time.perf_counter() - tick, 2)
        done["base_slices"] = model.emergence.n_slices
    model.eval()
    step = cfg.epochs
    users = simulate_users(test, cfg.labels_per_user, cfg.seed, n_test=cfg.n_heldout or None)

    def snapshot(name: str) -> dict[str, Any]:
        weights = model.state_dict() if given is None else None  # a given model is not ours
        return {"stage": name, "model": weights, "done": done}

    store_path = str(ctx.path(HISTORY_FILE))
    if stage in (None, "base"):
        ctx.checkpoint(step + 1, snapshot("base"), force=True)
        _remove_store(store_path)  # a history file of an interrupted stage 2 is ours to redo
        t0 = time.perf_counter()

        def log(t: int, rec: dict[str, Any]) -> None:
            ctx.log(step + 1 + t, **rec)

        with HistoryStore(store_path, writable=True) as store:
            res = personalise_users(model, users, cfg.personal, store=store, log=log)
        done["personal"] = res.as_dict()
        done["personal_states"] = {n: f.reading.personal_state() for n, f in res.fits.items()}
        done["streams"] = {n: {"dphi": f.dphi, "theta": f.theta,
                               "events": [e["step"] for e in f.events]}
                           for n, f in res.fits.items()}  # fmt: skip
        done["personal_seconds"] = round(time.perf_counter() - t0, 2)
        ctx.echo(f"{ctx.label}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in res.per_user_accuracy.items()))  # fmt: skip
        ctx.checkpoint(step + 2, snapshot("personal"), force=True)
        stage = "personal"
    if stage == "personal":
        t0 = time.perf_counter()
        user = next(u for u in users if u.world == cfg.edge_user)
        reading = PersonalReading(model, cfg.personal.calibration_init)
        reading.load_personal_state(done["personal_states"][user.name])
        table = edge_model(reading, user, train.tokens, cfg.edge, cfg.personal,
                           ctx.path("edge"), seed=cfg.seed)  # fmt: skip
        done["edge_table"] = table.rows
        done["edge_svd_rel_error"] = table.svd_rel_error
        done["edge_kept_slices"] = table.kept_slices
        done["edge_user"] = user.name
        done["edge_seconds"] = round(time.perf_counter() - t0, 2)
        ctx.checkpoint(step + 3, snapshot("edge"), force=True)
    ctx.save_figure(plot_personalise(done), "personalise.png")
    return _results(cfg, done, time.perf_counter() - tick)


def _results(cfg: PersonaliseConfig, done: dict[str, Any], seconds: float) -> dict[str, Any]:
    p = done["personal"]
    users = [{**u, "calibration": str(u["calibration"]), "slice_weights": str(u["slice_weights"])}
             for u in p["users"]]  # fmt: skip
    sh = p["shared_accuracy"]
    acc = p["per_user_accuracy"]
    rows = {r["model"]: r for r in done["edge_table"]}
    full, small = rows["full"], rows["compressed"]
    summary = [
        f"shared model (open-world Kleene, {done['base_slices']} slices): test accuracy "
        f"{done['base_test_accuracy']:.3f} on unseen knowledge bases",
        "personalised, "
        + ", ".join(f"{k}: {v:.3f}" for k, v in acc.items())
        + f" on each user's held-out labels (from {cfg.labels_per_user} labels each)",
        f"one shared reading for both users: disputed queries {sh['disputed']:.3f}, "
        + ", ".join(f"{k} {v:.3f}" for k, v in sh.items() if k not in ("disputed", "mean")),
        f"same input, different users: {len(p['examples'])} example(s) of different answers "
        "in 'examples'",
        f"edge ({done['edge_user']}): {full['parameters']} -> {small['parameters']} parameters, "
        f"{full['bytes']} -> {small['bytes']} bytes, accuracy {full['accuracy']:.3f} -> "
        f"{small['accuracy']:.3f}, latency {full['latency_ms']:.2f} -> "
        f"{small['latency_ms']:.2f} ms/query (1 thread)",
    ]
    return {
        "summary": summary,
        "per_user_accuracy": acc,
        "shared_accuracy": sh,
        "labels_per_user": p["labels_per_user"],
        "base_accuracy": p["base_accuracy"],
        "personal_disputed_accuracy": p["personal_disputed_accuracy"],
        "base_test_accuracy": done["base_test_accuracy"],
        "meets_bar": all(v >= 0.95 for v in acc.values()),
        "users": users,
        "examples": p["examples"],
        "edge_table": done["edge_table"],
        "edge_user": done["edge_user"],
        "edge_svd_rel_error": done["edge_svd_rel_error"],
        "edge_kept_slices": done["edge_kept_slices"],
        "streams": done["streams"],
        "history_file": HISTORY_FILE,
        "seconds": {"base": done.get("base_seconds"), "personal": done["personal_seconds"],
                    "edge": done["edge_seconds"], "this_session": round(seconds, 2)},
    }  # fmt: skip


#: (results key, legend name, colour) of the bars of :func:`plot_readings`, in order: the
#: one home of these names and colours (the personalise figure and panel d of the story).
READINGS = (
    ("base_accuracy", "base model as it is", "0.7"),
    ("shared_accuracy", "one shared reading", "#7570b3"),
    ("per_user_accuracy", "personal reading", "#1b9e77"),
)


def plot_readings(ax: Any, accuracies: Mapping[str, Mapping[str, float]]) -> None:
    """Each user's held-out accuracy under each reading (:data:`READINGS`), the legend in
    the band above accuracy 1 (the y axis runs to 1.45), so it never covers a bar."""
    names = list(accuracies["per_user_accuracy"])
    width = 0.8 / len(READINGS)
    for i, (key, label, colour) in enumerate(READINGS):
        xs = [j + (i - (len(READINGS) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [accuracies[key][n] for n in names], width, color=colour, label=label)
    ax.set(xticks=range(len(names)), xticklabels=[f"{n} user" for n in names], ylim=(0, 1.45),
           yticks=[0, 0.25, 0.5, 0.75, 1.0],
           ylabel="accuracy on the user's held-out labels")  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", frameon=False)


def plot_personalise(done: dict[str, Any]) -> Any:
    """Accuracy per user (:func:`plot_readings`) and each user's Δφ stream with θ^(u)."""
    from matplotlib.figure import Figure

    p = done["personal"]
    names = list(p["per_user_accuracy"])
    fig = Figure(figsize=(10, 3.8))
    ax_acc, ax_d = fig.subplots(1, 2)
    plot_readings(ax_acc, p)
    for n in names:
        s = done["streams"][n]
        (line,) = ax_d.plot(range(1, len(s["dphi"]) + 1), s["dphi"], lw=1, label=f"Δφ, {n}")
        if s["theta"] is not None:  # None: fewer than two labels, no θ^(u)
            ax_d.axhline(s["theta"], color=line.get_color(), lw=0.8, ls="--")
        ev = [e for e in s["events"] if 1 <= e <= len(s["dphi"])]
        ax_d.plot(ev, [s["dphi"][e - 1] for e in ev], "o", color=line.get_color(), ms=4)
    ax_d.set(xlabel="label t", ylabel=r"$\|\varphi_t - \varphi_{t-1}\|_1$ on the probe",
             yscale="log", title=r"stream: dashed $\theta^{(u)}$, dots: L1 events")  # fmt: skip
    ax_d.legend(fontsize=7)
    fig.tight_layout()
    return fig


EXPERIMENT = Experiment(
    name="personalise",
    description="two users read Kleene queries open- vs closed-world: personal readings, "
    "history store, a small model per user",
    defaults=PersonaliseConfig(),
    run=run,
    checkpoint_every=1,
    results=(
        "summary",
        "per_user_accuracy",
        "shared_accuracy",
        "labels_per_user",
        "base_accuracy",
        "personal_disputed_accuracy",
        "base_test_accuracy",
        "meets_bar",
        "users",
        "examples",
        "edge_table",
        "edge_user",
        "edge_svd_rel_error",
        "edge_kept_slices",
        "streams",
        "history_file",
        "seconds",
    ),
)
