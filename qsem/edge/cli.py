"""``qsem history PATH users|show USER|export USER --format csv|json``: inspect a history store.

* ``users``: one line per user (steps, labels, events, θ^(u));
* ``show USER``: the user's summary, events and parameters (JSON);
* ``export USER --format csv|json``: every step record (step, Δφ, label, query, φ
  as a nested list) and event, to stdout or ``--out FILE``. JSON is standard JSON
  that loses nothing: NaN and infinities as the strings ``"NaN"``, ``"Infinity"``,
  ``"-Infinity"``, complex numbers as ``[real, imag]``, ``-0.0`` as ``-0.0``.

The store is opened read-only (and checked with ``PRAGMA integrity_check``); a bad
path, a damaged store or record, or an unknown user is one line on stderr
(:class:`qsem.edge.HistoryStoreError`, exit 1).

>>> # qsem history runs/personalise-.../history.sqlite users
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from typing import Any

from qsem.circuits.errors import QsemError

from .store import HistoryStore

__all__ = ["add_parser", "export", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``history`` on the ``qsem`` sub-command parser ``sub``."""
    p = sub.add_parser("history", help="inspect a per-user history store (SQLite)",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)  # fmt: skip
    p.add_argument("path", metavar="PATH", help="the history store file (history.sqlite)")
    what = p.add_subparsers(dest="history_command", metavar="ACTION")
    what.required = True
    what.add_parser("users", help="list the users")
    show = what.add_parser("show", help="a user's summary, events and parameters")
    show.add_argument("user", metavar="USER")
    exp = what.add_parser("export", help="a user's records as CSV or JSON")
    exp.add_argument("user", metavar="USER")
    exp.add_argument("--format", choices=("csv", "json"), default="json", dest="fmt")
    exp.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")


def _jsonable(x: Any) -> Any:
    """``x`` in standard JSON, losing nothing: a non-finite float as the string ``"NaN"``,
    ``"Infinity"`` or ``"-Infinity"``, a complex number as ``[real, imag]``, through lists
    and dicts (``-0.0`` stays ``-0.0``)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, complex):
        return [_jsonable(x.real), _jsonable(x.imag)]
    if isinstance(x, list):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    return x


def _dumps(x: Any, indent: int | None = None) -> str:
    return json.dumps(_jsonable(x), indent=indent, allow_nan=False)


def export(store: HistoryStore, user: str, fmt: str) -> str:
    """The user's steps and events as ``csv`` (one row per step, events as a column) or
    ``json`` (``{"user", "summary", "steps", "events", "params"}``), in standard JSON:
    NaN and infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, a
    complex number as ``[real, imag]``."""
    steps = store.steps(user)
    events = store.events(user)
    if fmt == "json":
        return _dumps({
            "user": user, "summary": store.summary(user),
            "steps": [{"step": r.step, "dphi": r.dphi, "label": r.label,
                       "query": r.query, "phi_dtype": r.phi.dtype.name,
                       "phi_shape": list(r.phi.shape), "phi": r.phi.tolist()} for r in steps],
            "events": [{"step": e.step, "value": e.value, "detector": e.detector, **e.extra}
                       for e in events],
            "params": {k: v.tolist() for k, v in store.params(user).items()},
        }, indent=1)  # fmt: skip
    fired = {e.step for e in events}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "dphi", "label", "event", "query", "phi_dtype", "phi_shape", "phi"])
    for r in steps:
        w.writerow([r.step, "" if r.dphi is None else repr(r.dphi),
                    "" if r.label is None else r.label, int(r.step in fired), r.query or "",
                    r.phi.dtype.name, "x".join(map(str, r.phi.shape)),
                    _dumps(r.phi.reshape(-1).tolist())])  # fmt: skip
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    """Carry out ``qsem history``; errors are :class:`QsemError` (one line, exit 1)."""
    with HistoryStore(args.path) as store:
        if args.history_command == "users":
            users = store.users()
            if not users:
                print(f"{args.path}: no users")
            for u in users:
                s = store.summary(u)
                theta = "-" if s["theta"] is None else f"{s['theta']:.4g}"
                print(f"{u}\tsteps={s['steps']}\tlabels={s['labels']}\t"
                      f"events={s['events']}\ttheta={theta}")  # fmt: skip
            return 0
        if args.history_command == "show":
            params = store.params(args.user)
            out = {"summary": store.summary(args.user),
                   "schema_version": store.schema_version,
                   "events": [{"step": e.step, "value": e.value, "detector": e.detector,
                               **e.extra} for e in store.events(args.user)],
                   "params": {k: v.tolist() for k, v in params.items()}}  # fmt: skip
            print(_dumps(out, indent=1))
            return 0
        text = export(store, args.user, args.fmt)
    if args.out:
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        except OSError as exc:
            raise QsemError(f"--out {args.out}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0
