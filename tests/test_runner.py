"""The experiment runner: config layering, atomic files, checkpoints, resume, the CLI.

A tiny experiment (``counter``) draws from the global Python, NumPy and torch
generators at every step, so a resumed run equals an uninterrupted one only if
metrics, state *and* generator states are all restored exactly.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import runpy
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qsem.circuits.errors import QsemError, QsemTypeError
from qsem.cli import main
from qsem.experiments import EXPERIMENTS, get_experiment, visible_experiments
from qsem.io import atomic_write, atomic_write_text, jsonable, read_jsonl, write_json
from qsem.runner import (
    CheckpointError,
    ConfigError,
    Experiment,
    RunContext,
    RunDirError,
    build_config,
    config_diff,
    layer_config,
    load_checkpoint,
    run_experiment,
    save_checkpoint,
    seed_everything,
)
from qsem.runner.checkpoint import get_rng_state, set_rng_state
from qsem.runner.config import Leaf, config_schema
from qsem.runner.rundir import default_run_dir, locked

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {"config.json", "run_info.json", "metrics.jsonl", "results.json", "checkpoint.pt"}


# --------------------------------------------------------------------------
# a tiny experiment
# --------------------------------------------------------------------------


class Boom(RuntimeError):
    """Stands in for a run killed mid-way."""


@dataclass(frozen=True)
class CounterConfig:
    seed: int = 0
    steps: int = 10
    scale: float = 1.0


def make_counter(
    fail_at: int | None = None,
    *,
    exc: type[BaseException] = Boom,
    call_restore: bool = True,
    every: int = 3,
) -> Experiment:
    """Sum of random draws from all three global generators, one per step."""

    def run(cfg: CounterConfig, ctx: RunContext) -> dict[str, Any]:
        total = torch.zeros((), dtype=torch.float64)
        start = 0
        state = ctx.restore() if call_restore else None
        if state is not None:
            total, start = state["total"], state["step"]
        for step in range(start + 1, cfg.steps + 1):
            if step == fail_at:
                raise exc(f"killed at step {step}")
            draw = float(torch.rand(())) + float(np.random.rand()) + random.random()  # noqa: NPY002
            total = total + cfg.scale * draw
            ctx.log(step, draw=draw, total=float(total))
            ctx.checkpoint(step, {"total": total, "step": step}, force=step == cfg.steps)
        return {"total": float(total), "steps": cfg.steps}

    return Experiment(
        "counter", "sum of random draws", CounterConfig(), run, checkpoint_every=every
    )


def steps_of(out: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(out / "metrics.jsonl")]


# --------------------------------------------------------------------------
# config layering
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Optim:
    lr: float = 0.1
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass(frozen=True)
class Nested:
    seed: int = 0
    name: str = "x"
    flag: bool = False
    limit: int | None = None
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    optim: Optim = field(default_factory=Optim)


def test_layers_in_order(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"name": "file", "optim": {"lr": 1}, "sizes": [5]}))
    layered = layer_config(Nested(), file=cfg_file, overrides=["name=cli", "optim.betas=0.5,0.6"])
    assert layered == {
        "seed": 0,
        "name": "cli",  # the override beats the file
        "flag": False,
        "limit": None,
        "sizes": [5],  # from the file
        "optim": {"lr": 1.0, "betas": [0.5, 0.6]},
    }
    assert isinstance(layered["optim"]["lr"], float)  # JSON 1 into a float key
    assert layer_config(Nested(), overrides=["seed=3"], seed=9)["seed"] == 9  # --seed last
    typed = build_config(Nested(), layered)
    assert typed == Nested(name="cli", sizes=[5], optim=Optim(lr=1.0, betas=(0.5, 0.6)))
    assert isinstance(typed.optim.betas, tuple)


def test_toml_config_file(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('name = "toml"\nlimit = 4\n[optim]\nlr = 0.25\n')
    layered = layer_config(Nested(), file=cfg_file)
    assert (layered["name"], layered["limit"], layered["optim"]["lr"]) == ("toml", 4, 0.25)


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("flag=true", "flag", True),
        ("flag=YES", "flag", True),
        ("flag=off", "flag", False),
        ("flag=0", "flag", False),
        ("seed=-7", "seed", -7),
        ("name=a=b", "name", "a=b"),
        ("name=", "name", ""),
        ("limit=12", "limit", 12),
        ("limit=none", "limit", None),
        ("sizes=3,4,5", "sizes", [3, 4, 5]),
        ("sizes=[6, 7]", "sizes", [6, 7]),
        ("sizes=", "sizes", []),
        ("optim.lr=1e-3", "optim", {"lr": 0.001, "betas": [0.9, 0.999]}),
        ("optim.lr=2", "optim", {"lr": 2.0, "betas": [0.9, 0.999]}),
    ],
)
def test_override_type_conversion(override: str, key: str, expected: Any) -> None:
    value = layer_config(Nested(), overrides=[override])[key]
    assert value == expected
    assert type(value) is type(expected)


def test_dict_defaults_with_dots() -> None:
    defaults = {"seed": 1, "model": {"width": 8, "act": "relu", "drop": 0.0}, "tags": ["a"]}
    layered = layer_config(defaults, overrides=["model.width=32", "model.drop=0.5", "tags=b,c"])
    assert layered == {
        "seed": 1,
        "model": {"width": 32, "act": "relu", "drop": 0.5},
        "tags": ["b", "c"],
    }
    assert defaults["model"]["width"] == 8  # defaults untouched


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("seed=1.5", "config key 'seed' (command line): expected an integer, got '1.5'"),
        ("flag=maybe", "config key 'flag' (command line): expected true or false"),
        ("optim.lr=fast", "config key 'optim.lr' (command line): expected a number"),
        ("optim.lr=nan", "'optim.lr'"),
        ("limit=many", "expected an integer or null"),
        ("sizes=1,x", "config key 'sizes[1]'"),
        ("epochs=3", "unknown config key 'epochs' (command line); known keys: flag, limit, name"),
        ("optim.momentum=0.9", "unknown config key 'optim.momentum' (command line); "
                               "known keys in optim: betas, lr"),
        ("name.first=a", "config key 'name' has no sub-keys"),
        ("optim=3", "config key 'optim' is a section; set its keys with optim.KEY=VALUE"),
        ("seed", "override 'seed' is not of the form key=value"),
        ("=3", "not of the form key=value"),
    ],
)  # fmt: skip
def test_bad_overrides_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        layer_config(Nested(), overrides=[override])
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"epochs": 3}, "unknown config key 'epochs'"),
        ({"optim": {"eps": 1e-8}}, "unknown config key 'optim.eps'"),
        ({"seed": 1.0}, "config key 'seed'"),
        ({"seed": True}, "expected an integer, got True"),
        ({"flag": 1}, "expected true or false, got 1"),
        ({"optim": {"lr": "0.1"}}, "expected a number, got '0.1'"),
        ({"optim": 0.1}, "config key 'optim'"),
        ({"sizes": [1, 2.5]}, "config key 'sizes[1]'"),
        ({"name": None}, "expected a string, got None"),
    ],
)
def test_bad_config_file_names_key_and_file(tmp_path: Path, content: Any, fragment: str) -> None:
    cfg_file = tmp_path / "bad.json"
    cfg_file.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as info:
        layer_config(Nested(), file=cfg_file)
    assert fragment in str(info.value)
    assert str(cfg_file) in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("c.yaml", "seed: 1", "unknown format '.yaml'; use .json or .toml"),
        ("c.json", "{seed: 1", "not valid JSON"),
        ("c.toml", "seed = = 1", "not valid TOML"),
        ("c.json", "[1, 2]", "expected a table of keys"),
    ],
)
def test_unreadable_config_file(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match="config file") as info:
        layer_config(Nested(), file=tmp_path / name)
    assert fragment in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        layer_config(Nested(), file=tmp_path / "absent.json")


def test_schema_and_descriptions() -> None:
    schema = config_schema(Nested())
    assert schema["limit"] == Leaf(int, optional=True)
    assert schema["sizes"] == Leaf(list, elem=Leaf(int))
    assert isinstance(schema["optim"], dict)
    assert schema["optim"]["betas"] == Leaf(tuple, elem=Leaf(float))
    assert Leaf(tuple, elem=Leaf(float)).describe() == "a list of numbers"
    assert Leaf(int, optional=True).describe() == "an integer or null"


def test_config_diff() -> None:
    a = {"seed": 0, "optim": {"lr": 0.1}, "flag": True}
    b = {"seed": 0, "optim": {"lr": 0.2}, "flag": 1}
    assert config_diff(a, b) == ["flag: True -> 1", "optim.lr: 0.1 -> 0.2"]
    assert config_diff(a, a) == []


@pytest.mark.parametrize(
    ("name", "defaults", "fragment"),
    [
        ("Bad Name", {"seed": 0}, "must match"),
        ("ok", {"steps": 1}, "integer 'seed'"),
        ("ok", {"seed": 0.5}, "integer 'seed'"),
    ],
)
def test_experiment_definition_checked(name: str, defaults: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Experiment(name, "d", defaults, lambda cfg, ctx: {})


# --------------------------------------------------------------------------
# atomic files
# --------------------------------------------------------------------------


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text('{"old": true}\n')

    def half_then_fail(fh: Any) -> None:
        fh.write(b'{"new": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temp left


def test_atomic_write_failure_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: str, dst: str) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(tmp_path / "new.txt", "data")
    assert list(tmp_path.iterdir()) == []


def test_write_json_serialises_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json(target, {"a": 1})
    with pytest.raises(QsemError, match=r"value\['b'\]: a object cannot be written as JSON"):
        write_json(target, {"b": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_write_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("x")
    target.chmod(0o640)
    atomic_write_text(target, "y")
    assert (target.stat().st_mode & 0o777, target.read_text()) == (0o640, "y")


def test_jsonable() -> None:
    value = {
        "t": torch.tensor(1.5),
        "v": torch.tensor([1, 2]),
        "n": np.float32(0.25),
        "i": np.int64(3),
        "nan": float("nan"),
        "inf": torch.tensor(float("inf")),
        "tup": (1, "a"),
        "p": Path("x/y"),
    }
    assert jsonable(value) == {
        "t": 1.5, "v": [1, 2], "n": 0.25, "i": 3, "nan": None, "inf": None, "tup": [1, "a"],
        "p": "x/y",
    }  # fmt: skip
    with pytest.raises(QsemError, match="complex"):
        jsonable({"c": torch.tensor(1j)})


def test_read_jsonl_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2\n')
    with pytest.raises(QsemError, match="line 2 is not valid JSON"):
        read_jsonl(path)


# --------------------------------------------------------------------------
# runs, resume, refusal
# --------------------------------------------------------------------------


def test_fresh_run_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_experiment(make_counter(), out=out, overrides=["steps=5"], seed=11, quiet=True)
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp or lock files
    assert json.loads((out / "config.json").read_text()) == {"seed": 11, "steps": 5, "scale": 1.0}
    assert steps_of(out) == [1, 2, 3, 4, 5]
    assert json.loads((out / "results.json").read_text()) == result.results
    info = json.loads((out / "run_info.json").read_text())
    assert info["status"] == "completed"
    assert info["experiment"] == "counter"
    assert info["seeds"] == {"python": 11, "numpy": 11, "torch": 11}
    for name in ("python", "torch", "numpy", "qsem"):
        assert isinstance(info["versions"][name], str), name
    assert "qiskit" in info["versions"] and "pennylane" in info["versions"]
    assert info["start_time"] and info["end_time"] and info["wall_time_s"] >= 0
    assert info["command"] and info["platform"]["system"]
    assert len(info["sessions"]) == 1


def test_same_seed_same_results(tmp_path: Path) -> None:
    a = run_experiment(make_counter(), out=tmp_path / "a", quiet=True)
    b = run_experiment(make_counter(), out=tmp_path / "b", quiet=True)
    c = run_experiment(make_counter(), out=tmp_path / "c", seed=1, quiet=True)
    assert a.results == b.results != c.results


@pytest.mark.parametrize("fail_at", [4, 7, 8, 10])
def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path, fail_at: int) -> None:
    reference = run_experiment(make_counter(), out=tmp_path / "ref", quiet=True)
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=fail_at), out=out, quiet=True)
    assert not (out / "results.json").exists()
    assert json.loads((out / "run_info.json").read_text())["status"] == "failed"
    assert steps_of(out) == list(range(1, fail_at))  # what was logged is on disk
    resumed = run_experiment(make_counter(), out=out, resume=True, quiet=True)
    last_checkpoint = (fail_at - 1) // 3 * 3
    assert resumed.resumed_from_step == last_checkpoint
    assert steps_of(out) == list(range(1, 11))  # each step exactly once
    assert read_jsonl(out / "metrics.jsonl") == read_jsonl(tmp_path / "ref" / "metrics.jsonl")
    assert resumed.results == reference.results
    info = json.loads((out / "run_info.json").read_text())
    assert [s["status"] for s in info["sessions"]] == ["failed", "completed"]
    assert info["status"] == "completed" and info["error"] is None


def test_resume_twice_and_keyboard_interrupt(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_experiment(make_counter(fail_at=5, exc=KeyboardInterrupt), out=out, quiet=True)
    assert json.loads((out / "run_info.json").read_text())["status"] == "interrupted"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=9), out=out, resume=True, quiet=True)
    result = run_experiment(make_counter(), out=out, resume=True, quiet=True)
    assert result.resumed_from_step == 6
    assert steps_of(out) == list(range(1, 11))
    reference = run_experiment(make_counter(), out=tmp_path / "ref", quiet=True)
    assert result.results == reference.results


def test_resume_keeps_overrides_of_the_original_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=5), out=out, overrides=["scale=2"], seed=4, quiet=True)
    # no config options: the stored config is used
    result = run_experiment(make_counter(), out=out, resume=True, quiet=True)
    assert result.config == {"seed": 4, "steps": 10, "scale": 2.0}
    reference = run_experiment(make_counter(), out=tmp_path / "ref", overrides=["scale=2"], seed=4)
    assert result.results == reference.results


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=5), out=out, overrides=["scale=2"], quiet=True)
    before = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(RunDirError, match=r"differs from its config.json \(scale: 2.0 -> 3.0\)"):
        run_experiment(make_counter(), out=out, resume=True, overrides=["scale=3"])
    with pytest.raises(RunDirError, match="seed: 0 -> 1"):
        run_experiment(make_counter(), out=out, resume=True, overrides=["scale=2"], seed=1)
    assert (out / "metrics.jsonl").read_bytes() == before  # nothing touched
    # the same config, spelled out, is fine
    run_experiment(make_counter(), out=out, resume=True, overrides=["scale=2.0"], quiet=True)
    assert steps_of(out) == list(range(1, 11))


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_experiment(make_counter(), out=out, quiet=True)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run_experiment(make_counter(), out=out, resume=True, quiet=True)
    assert again.already_complete and again.results == first.results
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


def test_refuses_to_overwrite_a_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_experiment(make_counter(), out=out, quiet=True)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(
        RunDirError, match=r"already contains a run .*--resume or choose a new --out"
    ):
        run_experiment(make_counter(), out=out, overrides=["steps=2"], quiet=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == snapshot


def test_refuses_a_directory_with_user_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"already contains files \(notes.txt\)"):
        run_experiment(make_counter(), out=tmp_path, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is not a directory"):
        run_experiment(make_counter(), out=tmp_path / "file", quiet=True)


def test_empty_existing_directory_is_used(tmp_path: Path) -> None:
    run_experiment(make_counter(), out=tmp_path, overrides=["steps=1"], quiet=True)
    assert (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ("none", "--resume needs --out DIR"),
        ("missing", "nothing to resume: .* does not exist"),
        ("empty", "nothing to resume in .*: it has no config.json"),
    ],
)
def test_resume_needs_a_run(tmp_path: Path, setup: str, fragment: str) -> None:
    out: Path | None = None
    if setup == "missing":
        out = tmp_path / "absent"
    elif setup == "empty":
        out = tmp_path
    with pytest.raises(RunDirError, match=fragment):
        run_experiment(make_counter(), out=out, resume=True)


def test_resume_refuses_another_experiment(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=4), out=out, quiet=True)
    other = Experiment("other", "d", CounterConfig(), make_counter().run)
    with pytest.raises(RunDirError, match="holds a run of experiment 'counter', not 'other'"):
        run_experiment(other, out=out, resume=True)


def _interrupted(tmp_path: Path, name: str = "run", **kw: Any) -> Path:
    out = tmp_path / name
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=8), out=out, quiet=True, **kw)
    return out


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo owned > owned.txt",))


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("garbage", "is corrupt or not a plain-data torch file"),
        ("truncated", "is corrupt or not a plain-data torch file"),
        ("pickle", "is corrupt or not a plain-data torch file"),
        ("evil_torch", "refusing to unpickle anything else"),
        ("state_dict", "is not a qsem checkpoint"),
        ("version", "format version 99"),
        ("experiment", "belongs to experiment 'demo', not 'counter'"),
        ("other_config", "different config"),
        ("bad_field", "field 'metrics_lines' is missing or malformed"),
    ],
)
def test_refuses_corrupt_or_foreign_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    out = _interrupted(tmp_path)
    ckpt = out / "checkpoint.pt"
    good = torch.load(ckpt, weights_only=True)
    if kind == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint at all")
    elif kind == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:200])
    elif kind == "pickle":
        ckpt.write_bytes(pickle.dumps(_Evil()))
    elif kind == "evil_torch":
        torch.save({"format": "qsem-checkpoint", "x": _Evil()}, ckpt)
    elif kind == "state_dict":
        torch.save({"weight": torch.ones(2)}, ckpt)
    elif kind == "version":
        torch.save({**good, "version": 99}, ckpt)
    elif kind == "experiment":
        torch.save({**good, "experiment": "demo"}, ckpt)
    elif kind == "other_config":
        other = _interrupted(tmp_path, "other", seed=5)
        ckpt.write_bytes((other / "checkpoint.pt").read_bytes())
    elif kind == "bad_field":
        torch.save({**good, "metrics_lines": "6"}, ckpt)
    metrics_before = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError) as info:
        run_experiment(make_counter(), out=out, resume=True)
    assert str(ckpt) in str(info.value) and fragment in str(info.value)
    assert not (tmp_path / "owned.txt").exists()  # nothing from the file was executed
    assert (out / "metrics.jsonl").read_bytes() == metrics_before


def test_metrics_shorter_than_checkpoint_is_refused(tmp_path: Path) -> None:
    out = _interrupted(tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(CheckpointError, match=r"records 6 metric lines but .* has only 2"):
        run_experiment(make_counter(), out=out, resume=True)


def test_corrupt_stored_config_is_refused(tmp_path: Path) -> None:
    out = _interrupted(tmp_path)
    (out / "config.json").write_text('{"seed": 0, "steps": "ten", "scale": 1.0}')
    with pytest.raises(RunDirError, match=r"cannot resume .*config key 'steps'"):
        run_experiment(make_counter(), out=out, resume=True)
    (out / "config.json").write_text('{"seed": 0,')
    with pytest.raises(QsemError, match=r"config\.json: not valid JSON"):
        run_experiment(make_counter(), out=out, resume=True)


def test_checkpoint_state_must_be_plain_data(tmp_path: Path) -> None:
    with pytest.raises(QsemTypeError, match="argument 'state': a checkpoint may hold only tensors"):
        save_checkpoint(
            tmp_path / "c.pt",
            experiment="x",
            config={"seed": 0},
            step=1,
            metrics_lines=0,
            state={"rng": np.random.default_rng(0)},
        )
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_round_trip_restores_rng(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    seed_everything(5)
    torch.rand(3), np.random.rand(2), random.random()  # noqa: NPY002
    save_checkpoint(
        tmp_path / "c.pt",
        experiment="x",
        config={"seed": 5},
        step=3,
        metrics_lines=2,
        state={"model": model.state_dict(), "optimizer": opt.state_dict()},
    )
    expected = (torch.rand(4), np.random.rand(4), random.random())  # noqa: NPY002
    seed_everything(99)
    payload = load_checkpoint(tmp_path / "c.pt", experiment="x", config={"seed": 5})
    set_rng_state(payload["rng"])
    got = (torch.rand(4), np.random.rand(4), random.random())  # noqa: NPY002
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(payload["state"]["model"])
    assert torch.equal(restored.weight, model.weight)
    assert (payload["step"], payload["metrics_lines"]) == (3, 2)


def test_rng_state_is_plain_data() -> None:
    state = get_rng_state()
    assert set(state) == {"python", "numpy", "torch", "cuda"}
    assert isinstance(state["numpy"]["key"], torch.Tensor)


def test_resumed_run_must_restore_before_logging(tmp_path: Path) -> None:
    out = _interrupted(tmp_path)
    with pytest.raises(RuntimeError, match=r"must call ctx.restore\(\) before logging"):
        run_experiment(make_counter(call_restore=False), out=out, resume=True)


def test_experiment_must_return_a_dict(tmp_path: Path) -> None:
    exp = Experiment("bad", "d", {"seed": 0}, lambda cfg, ctx: [1, 2])
    with pytest.raises(TypeError, match="returned list, expected a dict"):
        run_experiment(exp, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run_info.json").read_text())["status"] == "failed"


@pytest.mark.parametrize(
    ("declared", "fragment"),
    [(("total",), r"undeclared \['steps'\]"), (("total", "steps", "mean"), r"missing \['mean'\]")],
)
def test_declared_results_must_match(
    tmp_path: Path, declared: tuple[str, ...], fragment: str
) -> None:
    exp = replace(make_counter(), results=declared)
    with pytest.raises(RuntimeError, match=fragment):
        run_experiment(exp, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run_info.json").read_text())["status"] == "failed"
    ok = replace(make_counter(), results=("steps", "total"))
    assert set(run_experiment(ok, out=tmp_path / "ok").results) == {"steps", "total"}


def test_checkpoint_every_zero_writes_only_forced(tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(Boom):
        run_experiment(make_counter(fail_at=9), out=out, checkpoint_every=0, quiet=True)
    assert not (out / "checkpoint.pt").exists()
    # nothing to continue from: refused (never a silent start from step 1) ...
    with pytest.raises(RunDirError, match="stopped before its first checkpoint"):
        run_experiment(make_counter(), out=out, resume=True, quiet=True)
    # ... and started over only when asked to
    result = run_experiment(make_counter(), out=out, restart=True, quiet=True)
    assert result.resumed_from_step is None
    assert steps_of(out) == list(range(1, 11))


def test_locked_directory_is_refused(tmp_path: Path) -> None:
    out = _interrupted(tmp_path)
    with locked(out), pytest.raises(RunDirError, match="in use by another qsem process"):
        run_experiment(make_counter(), out=out, resume=True)


def test_default_run_dir(tmp_path: Path) -> None:
    first = default_run_dir("demo", tmp_path)
    assert first.parent == tmp_path and first.name.startswith("demo-")
    first.mkdir()
    assert default_run_dir("demo", tmp_path) != first
    result = run_experiment(make_counter(), runs_root=tmp_path / "runs", quiet=True)
    assert result.out_dir.parent == tmp_path / "runs"
    assert (result.out_dir / "results.json").exists()


def test_context_paths_stay_inside(tmp_path: Path) -> None:
    def run(cfg: Any, ctx: RunContext) -> dict[str, Any]:
        ctx.write_json("extra.json", {"a": 1})
        ctx.write_text("table.md", "| a |\n")
        with pytest.raises(QsemError, match="plain name inside the run directory"):
            ctx.path("../escape.json")
        return {}

    run_experiment(Experiment("paths", "d", {"seed": 0}, run), out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "extra.json").read_text()) == {"a": 1}
    assert (tmp_path / "r" / "table.md").read_text() == "| a |\n"


def test_seed_everything() -> None:
    seed_everything(3)
    a = (torch.rand(2), np.random.rand(2), random.random())  # noqa: NPY002
    seed_everything(3)
    b = (torch.rand(2), np.random.rand(2), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------


@pytest.fixture
def counter_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXPERIMENTS, "counter", make_counter())


def test_registry() -> None:
    assert get_experiment("demo") is EXPERIMENTS["demo"]
    assert "demo" in [e.name for e in visible_experiments()]
    assert Experiment("_hidden", "d", {"seed": 0}, lambda c, x: {}).hidden
    with pytest.raises(ConfigError, match="unknown experiment 'nope'; known experiments: ") as info:
        get_experiment("nope")
    known = str(info.value).split("known experiments: ")[1].split(" (see")[0].split(", ")
    assert known == [e.name for e in visible_experiments()]


def test_cli_run_resume_and_refusals(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    counter_cli: None,
) -> None:
    out = str(tmp_path / "run")
    assert main(["run", "counter", "steps=4", "--out", out, "--seed", "2", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # -q: no result lines, no messages
    assert json.loads(Path(out, "config.json").read_text()) == {"seed": 2, "steps": 4, "scale": 1.0}
    # options and key=value in any order
    assert main(["run", "--quiet", "counter", "--out", out + "2", "steps=3", "scale=0.5"]) == 0
    assert json.loads(Path(out + "2", "config.json").read_text())["scale"] == 0.5
    capsys.readouterr()

    assert main(["run", "counter", "--out", out]) == 1  # refuses to overwrite
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already contains a run" in err and "Traceback" not in err

    assert main(["run", "counter", "--out", out, "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out

    assert main(["run", "counter", "--out", out, "--resume", "steps=5"]) == 1
    assert "steps: 4 -> 5" in capsys.readouterr().err


def test_cli_keyboard_interrupt_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "run")
    monkeypatch.setitem(EXPERIMENTS, "counter", make_counter(fail_at=5, exc=KeyboardInterrupt))
    assert main(["run", "counter", "--out", out, "-q"]) == 130
    assert f"qsem run counter --out {out} --resume" in capsys.readouterr().err
    monkeypatch.setitem(EXPERIMENTS, "counter", make_counter())
    assert main(["run", "counter", "--out", out, "--resume"]) == 0
    assert "resumed after step 3" in capsys.readouterr().out
    assert steps_of(Path(out)) == list(range(1, 11))


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["run", "nope"], 2, "unknown experiment 'nope'; known experiments: counter, demo"),
        (["run", "counter", "stepz=3"], 2, "unknown config key 'stepz'"),
        (["run", "counter", "steps=many"], 2, "config key 'steps' (command line): expected an int"),
        (["run", "counter", "steps"], 2, "not of the form key=value"),
        (["run", "counter", "--config", "x.toml"], 2, "config file x.toml: cannot be read"),
        (["run", "counter", "--checkpoint-every", "-1"], 2, "--checkpoint-every must be >= 0"),
        (["run", "counter", "--resume"], 1, "--resume needs --out DIR"),
        (["run", "counter", "--seed", "x"], 2, "argument --seed: invalid int value"),
        (["run"], 2, "the following arguments are required: NAME"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
        ([], 2, "the following arguments are required: COMMAND"),
    ],
)  # fmt: skip
def test_cli_errors(
    argv: list[str],
    code: int,
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    counter_cli: None,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # a refused run leaves nothing behind


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("qsem ")


def test_cli_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo ") and "iris" in out
    assert "_" not in out.split()[0]
    assert main(["show", "demo"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] >= 1


def test_python_dash_m_qsem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m qsem list`` (the demo test runs ``python -m qsem.cli`` in a subprocess)."""
    monkeypatch.setattr(sys, "argv", ["qsem", "list"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("qsem", run_name="__main__")
    assert info.value.code == 0
    assert capsys.readouterr().out.split()[0] == "demo"


def test_console_script_entry_point() -> None:
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["qsem"] == "qsem.__main__:entry"
