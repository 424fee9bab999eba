"""A JSON form of any circuit (qudits, channels, symbols included) that loads back exactly.

The document is ``{"format": "qsem.circuit", "version": 1, "dims": [...], "ops": [...]}``.
Each operation is ``{"type": class name, "wires": [...], ...}`` with, by kind:

* ``"params"``: numbers as JSON numbers (Python writes the shortest text that reads
  back to the same float64), tensors as ``{"tensor": nested list, "dtype": ...}``,
  symbols as ``{"parameter": name, "scale": s, "index": i, "length": K}``;
  ``hyperparameters`` (a subspace ...) as further keys;
* ``Controlled``: ``"base"`` (an operation), ``"control_wires"``, ``"control_values"``;
  ``Adjoint``: ``"base"``;
* ``Unitary`` / ``Kraus``: ``"matrix"`` / ``"operators"`` as
  ``{"dtype", "shape", "real", "imag"}`` (flat lists, bit-exact).

Classes are looked up in one registry built from the gate and channel classes of
:mod:`qsem.circuits.gates` and :mod:`qsem.circuits.channels`; an operation of a
user's own class is refused.

>>> from qsem.circuits import Circuit, Parameter, TRY, TAdd
>>> c = Circuit([3, 3]).add(TRY(Parameter("x"), wires=0, subspace=(1, 2)), TAdd(wires=[0, 1]))
>>> from_json(to_json(c)).ops
[SubspaceRY(x, subspace=(1, 2), wires=[0]), Add(wires=[0, 1])]
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from . import channels as CH
from . import gates as G
from .circuit import Circuit
from .errors import QsemTypeError, QsemValueError, arg_error
from .operations import Adjoint, Operation
from .parameters import Parameter, ParamLike

__all__ = ["FORMAT", "VERSION", "from_json", "to_json"]

FORMAT = "qsem.circuit"
#: Bumped whenever the document layout changes; loading refuses other versions.
VERSION = 1

_REGISTRY: dict[str, type[Operation]] = {
    cls.__name__: cls
    for cls in [getattr(G, n) for n in G.__all__] + [getattr(CH, n) for n in CH.__all__]
    if isinstance(cls, type) and issubclass(cls, Operation)
}
_REGISTRY["Adjoint"] = Adjoint


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _dtype(name: Any, where: str) -> torch.dtype:
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise arg_error(where, f"unknown dtype {name!r}")
    return dt


def _enc_complex(t: torch.Tensor) -> dict[str, Any]:
    t = t.detach().cpu().resolve_conj()
    return {
        "dtype": _dtype_name(t.dtype),
        "shape": list(t.shape),
        "real": t.real.reshape(-1).tolist(),
        "imag": t.imag.reshape(-1).tolist(),
    }


def _dec_complex(d: Any, where: str) -> torch.Tensor:
    try:
        dt = _dtype(d["dtype"], where)
        real = torch.tensor(d["real"], dtype=torch.float64)
        imag = torch.tensor(d["imag"], dtype=torch.float64)
        return torch.complex(real, imag).reshape(d["shape"]).to(dt)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise arg_error(where, f"not a complex tensor entry ({exc})") from None


def _enc_param(p: ParamLike) -> Any:
    if isinstance(p, Parameter):
        return {"parameter": p.name, "scale": p.scale, "index": p.index, "length": p.length}
    if isinstance(p, torch.Tensor):
        return {"tensor": p.detach().cpu().tolist(), "dtype": _dtype_name(p.dtype)}
    return float(p)


def _dec_param(v: Any, where: str) -> ParamLike:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, dict) and "parameter" in v:
        return Parameter(v["parameter"], float(v["scale"]), v.get("index"), v.get("length"))
    if isinstance(v, dict) and "tensor" in v:
        return torch.tensor(v["tensor"], dtype=_dtype(v.get("dtype"), where))
    raise arg_error(where, f"not a parameter entry: {v!r}")


def _encode(op: Operation) -> dict[str, Any]:
    name = type(op).__name__
    if _REGISTRY.get(name) is not type(op):
        raise arg_error(
            "circuit",
            f"{name} is not a qsem operation class; only qsem's gates and channels serialize "
            "(use Unitary or Kraus for your own)",
            QsemTypeError,
        )
    d: dict[str, Any] = {"type": name, "wires": list(op.wires)}
    if isinstance(op, G.Controlled) and not isinstance(op, G._NamedControlled):
        d["base"] = _encode(op.base)
        d["control_wires"] = list(op.control_wires)
        d["control_values"] = list(op.control_values)
    elif isinstance(op, Adjoint):
        d["base"] = _encode(op.base)
    elif isinstance(op, G.Unitary):
        d["matrix"] = _enc_complex(op.unitary)
    elif isinstance(op, CH.Kraus):
        d["operators"] = _enc_complex(op.operators)
    else:
        d["params"] = [_enc_param(p) for p in op.params]
        hyper = {} if isinstance(op, G._NamedControlled) else op.hyperparameters()
        for k, v in hyper.items():
            d[k] = list(v) if isinstance(v, tuple) else v
    return d


def _decode(d: Any, where: str) -> Operation:
    if not isinstance(d, dict) or d.get("type") not in _REGISTRY:
        got = d.get("type") if isinstance(d, dict) else d
        raise arg_error(where, f"unknown operation {got!r}")
    cls = _REGISTRY[d["type"]]
    wires = d.get("wires")
    if cls is G.Controlled:
        base = _decode(d["base"], where + ".base")
        return G.Controlled(base, d["control_wires"], d["control_values"])  # type: ignore[arg-type]
    if cls is Adjoint:
        return Adjoint(_decode(d["base"], where + ".base"))  # type: ignore[arg-type]
    if cls is G.Unitary:  # checked when first built; loaded exactly as written
        return G.Unitary(_dec_complex(d["matrix"], where), wires=wires, atol=math.inf)
    if cls is CH.Kraus:
        return CH.Kraus(_dec_complex(d["operators"], where), wires=wires, atol=math.inf)
    params = [_dec_param(v, f"{where}.params") for v in d.get("params", [])]
    extra = {k: v for k, v in d.items() if k not in ("type", "wires", "params")}
    return cls(*params, wires=wires, **extra)


def to_json(circuit: Circuit, indent: int | None = None) -> str:
    """The JSON text of ``circuit`` (see the module docstring for the layout)."""
    if not isinstance(circuit, Circuit):
        raise arg_error(
            "circuit", f"expected a Circuit, got {type(circuit).__name__}", QsemTypeError
        )
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "dims": list(circuit.dims),
        "ops": [_encode(op) for op in circuit.ops],
    }
    return json.dumps(doc, indent=indent, allow_nan=False)


def from_json(text: str | bytes) -> Circuit:
    """The circuit of a :func:`to_json` text; one-line errors for anything else."""
    if not isinstance(text, (str, bytes)):
        raise arg_error("text", f"expected JSON text, got {type(text).__name__}", QsemTypeError)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise arg_error("text", f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise arg_error("text", f"not a qsem circuit document (format must be {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise QsemValueError(
            f"argument 'text': circuit document version {doc.get('version')!r}; this qsem "
            f"reads version {VERSION}"
        )
    out = Circuit(doc["dims"])
    for i, d in enumerate(doc.get("ops", [])):
        try:
            op = _decode(d, f"ops[{i}]")
        except (KeyError, TypeError) as exc:
            raise arg_error("text", f"ops[{i}] is malformed ({exc!r})") from None
        out.add(op)
    return out
