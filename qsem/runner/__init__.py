"""The experiment runner: configs, run directories, metrics, checkpoints, resume.

>>> from qsem.runner import Experiment, run_experiment  # doctest: +SKIP
>>> result = run_experiment(EXPERIMENT, overrides=["epochs=5"], out="runs/try")  # doctest: +SKIP

See the "Runner" page of the documentation for the command line (``qsem run``) and
the files a run writes; the "Config reference" page lists every experiment's keys.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, build_config, config_diff, layer_config, load_config_file
from .context import CHECKPOINT_FILE, METRICS_FILE, RunContext
from .core import (
    CONFIG_FILE,
    RESULTS_FILE,
    RUN_INFO_FILE,
    Experiment,
    RunDirError,
    RunResult,
    default_run_dir,
    experiment_config_dict,
    run_experiment,
)
from .info import package_versions, seed_everything, torch_threads

__all__ = [
    "CHECKPOINT_FILE", "CONFIG_FILE", "METRICS_FILE", "RESULTS_FILE", "RUN_INFO_FILE",
    "CheckpointError", "ConfigError", "Experiment", "RunContext", "RunDirError", "RunResult",
    "build_config", "config_diff", "default_run_dir", "experiment_config_dict", "layer_config",
    "load_checkpoint", "load_config_file", "package_versions", "run_experiment", "save_checkpoint",
    "seed_everything", "torch_threads",
]  # fmt: skip
