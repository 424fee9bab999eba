"""The config keys the emergence benchmarks share, declared once.

``qsem run emergence-cmsp`` and ``qsem run emergence-transfer`` train the same
ReLU MLPs (:func:`qsem.narrow.emergence_train.train_mlp`) on CMSP-like tasks,
read the same ground truth off the per-task losses and score the same detectors
on the same probe signals. Their configs compose these groups: the seeds, the
task, the MLP's training, the probe signals, the ground truth and the scoring
window are :class:`EmergenceRunKeys` (defaults: emergence-cmsp's; an experiment
redefines a default without redeclaring the key's meaning), and
:class:`RunTailKeys` (``log_every``, ``threads``) close every config.

>>> from qsem.experiments.emergence_transfer import EmergenceTransferConfig
>>> EmergenceTransferConfig().lag == EmergenceRunKeys().lag
True
"""

from __future__ import annotations

from dataclasses import dataclass

from qsem.checks import check_int, check_real
from qsem.errors import ConfigError

__all__ = ["EmergenceRunKeys", "RunTailKeys"]

#: keys that count something (at least 1)
_COUNTS = ("seeds", "tune_seeds", "per_task", "steps", "eval_per_task", "probe_per_task", "lag",
           "slow_lag", "horizon")  # fmt: skip
#: keys that may be 0
_NON_NEGATIVE = ("seed", "tune_offset", "max_lag", "merge_gap", "before", "refractory", "onset")


@dataclass(frozen=True)
class EmergenceRunKeys:
    """Seeds, task, MLP training, probe signals, ground truth and scoring of an emergence
    benchmark (:mod:`qsem.experiments.emergence_cmsp`, :mod:`~.emergence_transfer`)."""

    #: the first scored seed; the scored seeds are seed, seed+1, ...
    seed: int = 0
    #: scored seeds of the MLP (trained together as one ensemble)
    seeds: int = 10
    #: tuning seeds: tune_offset, tune_offset + 1, ... (never scored)
    tune_seeds: int = 5
    #: first tuning seed
    tune_offset: int = 100
    #: control bits of a CMSP input (one per atom at least)
    n_control: int = 4
    #: task bits of a CMSP input
    n_task: int = 32
    #: atomic subtasks of CMSP
    n_atoms: int = 4
    #: task bits per atom (an atom is the parity of its k bits)
    k: int = 3
    #: hidden widths of the ReLU MLP
    widths: tuple[int, ...] = (128, 128)
    #: Adam learning rate of the MLP
    lr: float = 2e-3
    #: Adam epsilon
    adam_eps: float = 1e-5
    #: samples of each task per training step
    per_task: int = 200
    #: training steps of the MLP
    steps: int = 6000
    #: samples of each task in the fixed evaluation set (ground truth)
    eval_per_task: int = 128
    #: samples of each task in the fixed probe batch (detector signals)
    probe_per_task: int = 32
    #: ground truth: a task's loss above this many bits is not yet learned
    high_bits: float = 0.9
    #: ground truth: a task is learned once its loss is below this many bits
    low_bits: float = 0.1
    #: ground truth: the start is the onset of the drop, found with a running mean of this
    #: many steps against the plateau level (median loss over `plateau` steps); 0: the
    #: last step above high_bits
    onset: int = 51
    #: steps before the crossing whose median loss is the plateau level
    plateau: int = 1000
    #: signal: "auto" (chosen on the tuning seeds) or one of literal, lagged, ema, ema_slow
    signal: str = "auto"
    #: decay of the EMA signal ema
    ema_beta: float = 0.99
    #: lag in steps of the lagged and ema signals (and of the lagged snapshots of the
    #: probe outputs and Ω)
    lag: int = 100
    #: the slow EMA signal ema_slow
    slow_beta: float = 0.995
    #: lag in steps of the slow EMA signal ema_slow
    slow_lag: int = 200
    #: scoring window [start - before, start + max_lag] (composite drops last ~1000-1600 steps)
    max_lag: int = 1000
    #: transitions of one seed starting within merge_gap steps of an earlier one are merged
    merge_gap: int = 500
    #: an event up to this many steps before a start still matches it
    before: int = 50
    #: steps after an event in which a detector stays silent
    refractory: int = 500
    #: E_pot forecast target: a transition starts within this many steps
    horizon: int = 200
    #: E_pot trailing windows tried on the tuning seeds (the best AUROC there is used)
    epot_windows: tuple[int, ...] = (50, 200, 500)

    def check_run_keys(self, tune_seeds: int) -> None:
        """Refuse bad shared keys with a one-line :class:`ConfigError` naming the key;
        ``tune_seeds``: the most tuning seeds any model uses (they must not meet the
        scored ones)."""
        for key in _COUNTS:
            check_int(key, getattr(self, key), 1, config=True)
        for key in _NON_NEGATIVE:
            check_int(key, getattr(self, key), 0, config=True)
        if self.tune_offset < self.seed + self.seeds and self.seed < self.tune_offset + tune_seeds:
            raise ConfigError(
                f"config key 'tune_offset': tuning seeds from {self.tune_offset} overlap the "
                f"scored seeds {self.seed}..{self.seed + self.seeds - 1}"
            )
        for key in ("widths", "epot_windows"):
            w = getattr(self, key)
            if not w or any(x < 1 for x in w):
                raise ConfigError(f"config key '{key}': positive widths needed, got {w}")
        for key in ("lr", "adam_eps"):
            check_real(key, getattr(self, key), minimum=0, strict=True, config=True)
        if not 0 < self.low_bits < self.high_bits:
            raise ConfigError(
                f"config key 'low_bits': need 0 < low_bits < high_bits, got "
                f"{self.low_bits}, {self.high_bits}"
            )
        for key in ("ema_beta", "slow_beta"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(
                    f"config key '{key}': must lie in [0, 1), got {getattr(self, key)}"
                )


@dataclass(frozen=True)
class RunTailKeys:
    """The last keys of an emergence benchmark's config: logging and threads."""

    #: steps between two training log records
    log_every: int = 50
    #: torch intra-op threads while training (0: leave torch's setting)
    threads: int = 1

    def check_tail_keys(self) -> None:
        check_int("log_every", self.log_every, 1, config=True)
        check_int("threads", self.threads, 0, config=True)
