"""``qsem run narrow-digits``: ways to get a small even-digit classifier.

A general MLP teacher is trained on all ten digits. The narrow task is the even
digits (5 classes: 0, 2, 4, 6, 8). For students with ``x`` hidden neurons we
count the training samples (sample presentations, ``steps × batch``) until the
even-digit test accuracy reaches ``target_accuracy``:

1. **scratch** — a fresh MLP trained on the even digits;
2. **distill** — the same MLP trained with ``α·CE + (1-α)·T²·KL`` against the
   teacher's even-class logits (α = 0.1, T = 20);
3. **group lasso** — the teacher (head restricted to the even classes) trained on
   the even digits with the neuron group lasso; after every ``eval_every`` steps it
   is pruned to each size by neuron norm, no recovery — the first sample count at
   which the pruned net reaches the target;
4. **attribution** — the teacher (even head) pruned to each size by
   ``|activation × gradient|`` on ``attribution_samples`` samples, then recovery
   training until the target (samples = attribution samples + recovery samples).

The paper reports pruning < distillation < scratch in samples needed. Data:
scikit-learn's 8×8 digits by default, or MNIST from local IDX files
(``mnist_dir`` holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally ``.gz``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qsem.narrow import (
    Masker,
    attribution_scores,
    build_mlp,
    distillation_loss,
    group_lasso_penalty,
    keep_masks,
    load_digits_8x8,
    load_mnist_idx,
    make_generator,
    neuron_groups,
    neuron_norms,
    prune_neurons,
    train_until,
)
from qsem.narrow.compare import plot_samples_pareto, samples_table, summarise_samples
from qsem.runner import ConfigError, Experiment, RunContext
from qsem.training import descent, make_optimizer, run_steps

__all__ = ["EXPERIMENT", "DigitsConfig", "load_data", "run"]

EVEN = (0, 2, 4, 6, 8)
METHODS = ("scratch", "distill", "group_lasso", "attribution")
_MNIST = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DigitsConfig:
    """Config of ``qsem run narrow-digits``."""

    #: the first seed; the seeds are seed, seed+1, ..., seed+seeds-1
    seed: int = 0
    #: seeds, each with its own split, teacher and students
    seeds: int = 3
    #: "" for scikit-learn's 8x8 digits; else a folder with the four MNIST IDX files
    mnist_dir: str = ""
    #: fraction of the samples held out for testing (0.05 to 0.8)
    test_size: float = 0.3
    #: hidden widths of the ten-digit MLP teacher
    teacher_widths: tuple[int, ...] = (128, 128)
    #: training steps of the teacher (batches of 2·batch)
    teacher_steps: int = 3000
    #: total hidden neurons of the students / pruned nets (split evenly over the layers)
    sizes: tuple[int, ...] = (8, 16, 32, 64)
    #: even-digit test accuracy a method must reach
    target_accuracy: float = 0.95
    #: samples per training step
    batch: int = 32
    #: Adam learning rate
    lr: float = 1e-3
    #: most training steps per method and size
    max_steps: int = 3000
    #: steps between two checks of the target
    eval_every: int = 10
    #: distillation: weight α of the hard term in α·CE + (1-α)·T²·KL
    alpha: float = 0.1
    #: distillation temperature T
    temperature: float = 20.0
    #: strength of the neuron group lasso
    gl_lambda: float = 2e-3
    #: samples scored for attribution pruning (|activation × gradient|)
    attribution_samples: int = 256
    #: torch device (cpu, cuda, ...)
    device: str = "cpu"
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.mnist_dir:
            missing = [n for n in _MNIST.values() if _find(Path(self.mnist_dir), n) is None]
            if missing:
                raise ConfigError(
                    f"config key 'mnist_dir': {self.mnist_dir!r} lacks {', '.join(missing)}"
                )
        if not 0.05 <= self.test_size <= 0.8:
            raise ConfigError(
                f"config key 'test_size': must lie in [0.05, 0.8], got {self.test_size}"
            )
        if not self.teacher_widths or any(w < 1 for w in self.teacher_widths):
            raise ConfigError("config key 'teacher_widths': positive widths needed")
        total = sum(self.teacher_widths)
        if not self.sizes or any(not len(self.teacher_widths) <= s <= total for s in self.sizes):
            raise ConfigError(
                f"config key 'sizes': each size must lie in [{len(self.teacher_widths)}, {total}] "
                f"(the teacher's hidden neurons), got {self.sizes}"
            )
        if not 0 < self.target_accuracy <= 1:
            raise ConfigError("config key 'target_accuracy': must lie in (0, 1]")
        for key in ("seeds", "batch", "max_steps", "eval_every", "attribution_samples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': must be >= 1, got {getattr(self, key)}")
        if self.teacher_steps < 0 or self.threads < 0:
            raise ConfigError("config keys 'teacher_steps', 'threads': must be >= 0")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"config key 'alpha': must lie in [0, 1], got {self.alpha}")
        for key in ("temperature", "lr"):
            v = getattr(self, key)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"config key '{key}': must be positive, got {v}")
        if not (self.gl_lambda >= 0 and math.isfinite(self.gl_lambda)):
            raise ConfigError(f"config key 'gl_lambda': must be >= 0, got {self.gl_lambda}")


def _find(folder: Path, name: str) -> Path | None:
    for cand in (folder / name, folder / f"{name}.gz"):
        if cand.is_file():
            return cand
    return None


def load_data(cfg: DigitsConfig, seed: int) -> dict[str, torch.Tensor]:
    """All-digit and even-digit train/test tensors (even labels mapped to 0..4)."""
    if cfg.mnist_dir:
        folder = Path(cfg.mnist_dir)
        files = {k: _find(folder, v) or folder / v for k, v in _MNIST.items()}
        x_tr, y_tr = load_mnist_idx(files["x_train"], files["y_train"])
        x_te, y_te = load_mnist_idx(files["x_test"], files["y_test"])
    else:
        from sklearn.model_selection import train_test_split

        x, y = load_digits_8x8()
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=cfg.test_size, random_state=seed % 2**32, stratify=y
        )
    dev = torch.device(cfg.device)
    out = {
        "x_train": torch.as_tensor(x_tr, device=dev),
        "y_train": torch.as_tensor(y_tr, device=dev),
        "x_test": torch.as_tensor(x_te, device=dev),
        "y_test": torch.as_tensor(y_te, device=dev),
    }
    for split in ("train", "test"):
        even = np.isin(np.asarray(out[f"y_{split}"].cpu()), EVEN)
        idx = torch.as_tensor(np.nonzero(even)[0], device=dev)
        out[f"xe_{split}"] = out[f"x_{split}"][idx]
        out[f"ye_{split}"] = out[f"y_{split}"][idx] // 2
    return out


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def _even_head(teacher: nn.Sequential) -> nn.Sequential:
    """A copy of the teacher whose head keeps only the even-digit logits."""
    net = copy.deepcopy(teacher)
    last = net[-1]
    assert isinstance(last, nn.Linear)
    head = nn.Linear(last.in_features, len(EVEN)).to(last.weight.device)
    with torch.no_grad():
        head.weight.copy_(last.weight[list(EVEN)])
        head.bias.copy_(last.bias[list(EVEN)])
    net[-1] = head
    return net


def train_teacher(cfg: DigitsConfig, data: dict[str, torch.Tensor], seed: int) -> nn.Sequential:
    gen = make_generator(seed)
    x, y = data["x_train"], data["y_train"]
    net = build_mlp(x.shape[1], list(cfg.teacher_widths), 10, generator=gen).to(x.device)
    opt, _ = make_optimizer(net, cfg.lr)

    def loss(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(y), (cfg.batch * 2,), generator=gen).to(x.device)
        return F.cross_entropy(net(x[idx]), y[idx])

    run_steps(descent(opt, loss), range(cfg.teacher_steps))
    return net


def samples_to_target(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    cfg: DigitsConfig,
    gen: torch.Generator,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    masker: Masker | None = None,
) -> int | None:
    """Train on the even digits until the test accuracy reaches the target.

    Returns the samples used (None: never reached).
    """
    x, y = data["xe_train"], data["ye_train"]
    xt, yt = data["xe_test"], data["ye_test"]

    def step_loss(_step: int) -> torch.Tensor:
        idx = torch.randint(0, len(y), (cfg.batch,), generator=gen).to(x.device)
        out = model(x[idx])
        return F.cross_entropy(out, y[idx]) if loss_fn is None else loss_fn(out, y[idx], idx)

    def reached(_steps: int) -> bool:
        return _acc(model, xt, yt) >= cfg.target_accuracy

    steps = train_until(model, step_loss, reached, cfg.max_steps, lr=cfg.lr,
                        eval_every=cfg.eval_every, masker=masker)  # fmt: skip
    return None if steps is None else steps * cfg.batch


def _student(cfg: DigitsConfig, size: int, in_dim: int, gen: torch.Generator) -> nn.Sequential:
    layers = len(cfg.teacher_widths)
    widths = [size // layers + (1 if i < size % layers else 0) for i in range(layers)]
    return build_mlp(in_dim, widths, len(EVEN), generator=gen)


def group_lasso_samples(
    narrow: nn.Sequential, data: dict[str, torch.Tensor], cfg: DigitsConfig, gen: torch.Generator
) -> dict[int, int | None]:
    """Per size: samples of group-lasso training after which pruning by norm meets the target."""
    net = copy.deepcopy(narrow)
    x, y = data["xe_train"], data["ye_train"]
    xt, yt = data["xe_test"], data["ye_test"]
    total = sum(g.size for g in neuron_groups(net))
    found: dict[int, int | None] = dict.fromkeys(cfg.sizes)

    def check(samples: int) -> bool:  # True once every size is found
        scores = {g.name: neuron_norms(g).detach() for g in neuron_groups(net)}
        for size in cfg.sizes:
            if found[size] is None:
                pruned = copy.deepcopy(net)
                prune_neurons(pruned, keep_masks(scores, 1 - size / total))
                if _acc(pruned, xt, yt) >= cfg.target_accuracy:
                    found[size] = samples
        return all(v is not None for v in found.values())

    def step_loss(_step: int) -> torch.Tensor:
        idx = torch.randint(0, len(y), (cfg.batch,), generator=gen).to(x.device)
        return F.cross_entropy(net(x[idx]), y[idx]) + group_lasso_penalty(net, cfg.gl_lambda)

    train_until(net, step_loss, lambda steps: check(steps * cfg.batch), cfg.max_steps,
                lr=cfg.lr, eval_every=cfg.eval_every)  # fmt: skip
    return found


def one_seed(cfg: DigitsConfig, seed: int) -> dict[str, Any]:
    data = load_data(cfg, seed)
    teacher = train_teacher(cfg, data, seed)
    narrow = _even_head(teacher)
    out: dict[str, Any] = {
        "teacher_accuracy_all": round(_acc(teacher, data["x_test"], data["y_test"]), 4),
        "teacher_accuracy_even": round(_acc(narrow, data["xe_test"], data["ye_test"]), 4),
        "teacher_hidden": sum(cfg.teacher_widths),
    }
    in_dim = data["x_train"].shape[1]
    with torch.no_grad():
        teacher_even = narrow(data["xe_train"])

    def distill(out_s: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return distillation_loss(out_s, teacher_even[idx], y, alpha=cfg.alpha,
                                 temperature=cfg.temperature)  # fmt: skip

    samples: dict[str, dict[int, int | None]] = {m: {} for m in METHODS}
    total = sum(cfg.teacher_widths)
    for size in cfg.sizes:
        g = make_generator(seed * 7919 + size)
        samples["scratch"][size] = samples_to_target(_student(cfg, size, in_dim, g), data, cfg, g)
        g = make_generator(seed * 7919 + size)
        samples["distill"][size] = samples_to_target(
            _student(cfg, size, in_dim, g), data, cfg, g, loss_fn=distill
        )
        g = make_generator(seed * 7919 + size + 1)
        idx = torch.randint(0, len(data["ye_train"]), (cfg.attribution_samples,), generator=g)
        scores = attribution_scores(narrow, data["xe_train"][idx], data["ye_train"][idx])
        pruned = copy.deepcopy(narrow)
        masker = prune_neurons(pruned, keep_masks(scores, 1 - size / total))
        rec = samples_to_target(pruned, data, cfg, g, masker=masker)
        samples["attribution"][size] = None if rec is None else rec + cfg.attribution_samples
    samples["group_lasso"] = group_lasso_samples(narrow, data, cfg, make_generator(seed * 7919 + 3))
    out["samples"] = {m: {str(k): v for k, v in d.items()} for m, d in samples.items()}
    return out


def summarise(cfg: DigitsConfig, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Median samples per method and size (unreached counted as the cap), and the ordering."""
    cap = float(cfg.max_steps * cfg.batch + cfg.attribution_samples)
    return summarise_samples(per_seed, METHODS, cfg.sizes, cap)


def run(cfg: DigitsConfig, ctx: RunContext) -> dict[str, Any]:
    per_seed = []
    for i in ctx.progress(range(cfg.seeds), total=cfg.seeds, desc="narrow-digits seeds"):
        tick = time.perf_counter()
        r = one_seed(cfg, cfg.seed + i)
        r["seconds"] = round(time.perf_counter() - tick, 1)
        ctx.log(i, **{k: v for k, v in r.items() if k != "samples"}, samples=r["samples"])
        per_seed.append(r)
    summary = summarise(cfg, per_seed)
    fig = plot_samples_pareto(
        summary, METHODS, cfg.sizes, title="narrowing to even digits (median over seeds)",
        ylabel=f"training samples to {cfg.target_accuracy:.0%} even-digit accuracy",
    )  # fmt: skip
    ctx.save_figure(fig, "pareto.png")
    md = samples_table(summary, METHODS, cfg.sizes, cfg.seeds)
    ctx.path("table.md").write_text(md)
    return {
        **summary,
        "dataset": "mnist" if cfg.mnist_dir else "sklearn-digits-8x8",
        "per_seed": per_seed,
        "paper": "pruning < distillation < scratch in samples needed (MNIST even digits)",
        "config": asdict(cfg),
        "table": md,
    }


EXPERIMENT = Experiment(
    name="narrow-digits",
    description="even digits: scratch vs distillation vs group-lasso vs attribution pruning",
    defaults=DigitsConfig(),
    run=run,
    results=(
        "median_samples",
        "seeds_reached",
        "cap_for_unreached",
        "mean_log10_samples",
        "ordering_pruning_lt_distill_lt_scratch",
        "ordering_per_size",
        "dataset",
        "per_seed",
        "paper",
        "config",
        "table",
    ),
)
