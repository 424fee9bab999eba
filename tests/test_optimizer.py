"""The one home of optimisers and schedules, :func:`qsem.training.make_optimizer`:
what it builds (against torch's own classes and hand-written updates), the cosine
schedule against its closed form, the deprecated ``adam_cosine``, refused input,
and that nothing else in the package (or the benchmarks) builds an optimiser."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from conftest import ATOL_OPTIM

from qsem.errors import QsemTypeError, QsemValueError
from qsem.training import make_optimizer

REPO = Path(__file__).resolve().parents[1]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(3, 2, generator=gen, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(4, generator=gen, dtype=torch.float64))]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "reference"),
    [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_the_optimiser_is_torchs_with_only_the_given_settings(kind: str, reference: type) -> None:
    opt, sched = make_optimizer(_params(), 0.05, kind=kind, eps=1e-6, weight_decay=0.1)  # type: ignore[arg-type]
    ref = reference(_params(), lr=0.05, eps=1e-6, weight_decay=0.1)
    assert type(opt) is reference and sched is None
    assert opt.state_dict() == ref.state_dict()  # every other hyper-parameter: torch's default
    plain, _ = make_optimizer(_params(), 0.05)
    assert plain.state_dict() == torch.optim.Adam(_params(), lr=0.05).state_dict()


def test_a_module_gives_its_parameters_in_order() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt, _ = make_optimizer(model, 0.1)
    listed, _ = make_optimizer(list(model.parameters()), 0.1)
    got = opt.param_groups[0]["params"]
    assert [id(p) for p in got] == [id(p) for p in listed.param_groups[0]["params"]]
    assert [id(p) for p in got] == [id(p) for p in model.parameters()]


def _first_step(kind: str, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on ``sum(w * c)`` (gradient ``c``): the result and the hand-written update."""
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(5, generator=gen, dtype=torch.float64)
    c = torch.randn(5, generator=gen, dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    lr, eps = 0.1, 1e-8
    opt, _ = make_optimizer([w], lr, kind=kind, eps=eps, weight_decay=weight_decay)  # type: ignore[arg-type]
    opt.zero_grad()
    (w * c).sum().backward()
    opt.step()
    # Adam's first step: m̂ = g, v̂ = g², so the move is lr * g / (|g| + eps)
    if kind == "adamw":  # decoupled: w ← w (1 − lr λ), then the Adam move on g = c
        expected = w0 * (1 - lr * weight_decay) - lr * c / (c.abs() + eps)
    else:  # L2: the decay joins the gradient, g = c + λ w
        g = c + weight_decay * w0
        expected = w0 - lr * g / (g.abs() + eps)
    return w.detach(), expected


@pytest.mark.parametrize(("kind", "weight_decay"), [("adam", 0.0), ("adam", 0.3), ("adamw", 0.3)])
def test_first_step_is_the_hand_written_update(kind: str, weight_decay: float) -> None:
    got, expected = _first_step(kind, weight_decay)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL_OPTIM)


@pytest.mark.parametrize(
    ("lr", "steps", "final_lr"), [(0.03, 12, None), (0.5, 7, 0.1), (1e-3, 1, 0.0), (2.0, 40, 0.0)]
)
def test_cosine_schedule_is_the_closed_form(lr: float, steps: int, final_lr: float | None) -> None:
    opt, sched = make_optimizer(_params(), lr, schedule="cosine", steps=steps, final_lr=final_lr)
    floor = lr / 20 if final_lr is None else final_lr
    seen = [sched.get_last_lr()[0]]
    for _ in range(steps):
        opt.step()
        sched.step()
        seen.append(sched.get_last_lr()[0])
        assert opt.param_groups[0]["lr"] == seen[-1]
    closed = [floor + (lr - floor) * (1 + math.cos(math.pi * t / steps)) / 2
              for t in range(steps + 1)]  # fmt: skip
    assert seen == pytest.approx(closed, rel=0, abs=ATOL_OPTIM)
    assert seen[0] == lr and seen[-1] == pytest.approx(floor, rel=0, abs=ATOL_OPTIM)


def test_the_old_adam_cosine_warns_and_builds_the_same() -> None:
    from qsem.experiments.kleene import adam_cosine as exported
    from qsem.tasks.kleene_training import adam_cosine

    assert exported is adam_cosine
    model = torch.nn.Linear(3, 2)
    with pytest.warns(DeprecationWarning, match="make_optimizer") as caught:
        opt, sched = adam_cosine(model, 0.03, 12)
    assert caught[0].filename == __file__  # points at the user's line
    twin, twin_sched = make_optimizer(model, 0.03, schedule="cosine", steps=12)
    assert opt.state_dict() == twin.state_dict()
    assert type(sched) is type(twin_sched) and sched.state_dict() == twin_sched.state_dict()
    assert sched.state_dict()["eta_min"] == 0.03 / 20  # the old floor, bit for bit


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"lr": -0.1}, QsemValueError, "lr"),
        ({"lr": float("nan")}, QsemValueError, "lr"),
        ({"lr": "0.1"}, QsemTypeError, "lr"),
        ({"eps": -1e-8}, QsemValueError, "eps"),
        ({"weight_decay": -0.5}, QsemValueError, "weight_decay"),
        ({"kind": "sgd"}, QsemValueError, "kind"),
        ({"schedule": "linear"}, QsemValueError, "schedule"),
        ({"schedule": "cosine"}, QsemTypeError, "steps"),
        ({"schedule": "cosine", "steps": 0}, QsemValueError, "steps"),
        ({"schedule": "cosine", "steps": 5, "final_lr": 0.2}, QsemValueError, "final_lr"),
        ({"steps": 5}, QsemValueError, "steps"),
        ({"final_lr": 0.01}, QsemValueError, "final_lr"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict, error: type, name: str) -> None:
    settings = {"lr": 0.1, **kwargs}
    with pytest.raises(error, match=f"^argument '{name}': "):
        make_optimizer(_params(), **settings)


# --------------------------------------------------------------------------
# nobody else builds an optimiser or a schedule
# --------------------------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _torch_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> the torch name it is bound to by the module's imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "torch":
                    local = a.asname or a.name.split(".")[0]
                    names[local] = a.name if a.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "torch":
                for a in node.names:
                    names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _is_optimiser_or_schedule(name: str) -> bool:
    """``name`` (``torch.optim...``) is a class of optimiser or learning-rate schedule;
    a name torch does not have counts too (better a false alarm than a miss)."""
    if not name.startswith("torch.optim."):
        return False
    obj: object = torch
    for part in name.split(".")[1:]:
        if not hasattr(obj, part):
            return True
        obj = getattr(obj, part)
    bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler,
             torch.optim.lr_scheduler.ReduceLROnPlateau)  # fmt: skip
    return isinstance(obj, type) and issubclass(obj, bases)


def optimiser_constructions(source: str) -> list[tuple[int, str]]:
    """``(line, torch name)`` of every call that builds a torch optimiser or schedule,
    through any import form (``torch.optim.Adam``, ``from torch import optim``,
    ``from torch.optim import Adam as A``, ``torch.optim.lr_scheduler.X``, ...)."""
    tree = ast.parse(source)
    names = _torch_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (dotted := _dotted(node.func)) is not None:
            head, _, rest = dotted.partition(".")
            if head in names:
                full = names[head] + (f".{rest}" if rest else "")
                if _is_optimiser_or_schedule(full):
                    found.append((node.lineno, full))
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.optim.Adam(p, lr=0.1)",
        "import torch.optim as O\nO.SGD(p, lr=0.1)",
        "import torch.optim\ntorch.optim.AdamW(p)",
        "from torch import optim\noptim.RMSprop(p)",
        "from torch.optim import Adam as A\nA(p)",
        "from torch.optim.lr_scheduler import CosineAnnealingLR\nCosineAnnealingLR(o, 3)",
        "import torch\ntorch.optim.lr_scheduler.StepLR(o, 2)",
        "from torch.optim import lr_scheduler as s\ns.ReduceLROnPlateau(o)",
        "import torch as t\ndef f(p):\n    return t.optim.Adagrad(p)",
    ],
)
def test_the_check_finds_every_import_form(source: str) -> None:
    assert len(optimiser_constructions(source)) == 1, source


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ndef f(o: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:\n"
        "    return o",
        "import torch\nisinstance(o, torch.optim.Adam)",
        "from qsem.training import make_optimizer\nmake_optimizer(p, 0.1)",
        "class Adam:\n    pass\nAdam()",
        "import torch\ntorch.nn.Linear(2, 3)",
        "import torch\no = torch.optim.Adam\no.zero_grad",
    ],
)
def test_the_check_leaves_other_code_alone(source: str) -> None:
    assert optimiser_constructions(source) == [], source


#: the only module that builds optimisers and schedules (tests build torch's own as
#: references, and users' code in the example notebooks may use torch directly)
_OPTIMISER_HOMES = {"qsem/training.py"}

#: the code that is scanned: the package, its folders, the benchmarks and the tools
_SCANNED = ("qsem", "circuits", "simulators", "benchmarks", "tools")


def test_no_optimiser_is_built_outside_qsem_training() -> None:
    found = {
        str(p.relative_to(REPO)): hits
        for top in _SCANNED
        for p in sorted((REPO / top).rglob("*.py"))
        if (hits := optimiser_constructions(p.read_text(encoding="utf-8")))
    }
    assert set(found) == _OPTIMISER_HOMES, found
    assert {name for _, name in found["qsem/training.py"]} == {
        "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.lr_scheduler.CosineAnnealingLR"
    }  # fmt: skip


def test_the_docstring_examples_run() -> None:
    """make_optimizer's own examples and the Kleene training module's (which uses it)."""
    import doctest

    import qsem.tasks.kleene_training
    import qsem.training

    for module in (qsem.training, qsem.tasks.kleene_training):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
