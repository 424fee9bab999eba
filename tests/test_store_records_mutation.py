"""Event records, θ and their damaged forms in a history store (``qsem.edge.store``),
pinned where mutation testing found them loose: every refusal of ``append_events``
names the record and field, and a stored value that is not a real number is reported
as damage naming the record (the stored rows are written with plain ``sqlite3``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from test_store_mutation import _message

from qsem.circuits.errors import QsemTypeError, QsemValueError
from qsem.edge import EventRecord, HistoryStore
from qsem.edge.store import _checksum


def test_event_records_are_refused_naming_the_record_and_field(tmp_path: Path) -> None:
    good = EventRecord(0, 1.0, "l1")
    with HistoryStore(tmp_path / "h.sqlite", writable=True) as store:
        for bad, cls, message in [
            ((0, 1.0), QsemTypeError, "argument 'events': expected EventRecord, got tuple"),
            (EventRecord(1, None, "l1"), QsemValueError,  # type: ignore[arg-type]
             "argument 'events[1].value': expected a real number, got None"),
            (EventRecord(1, 2.0, "l1", {"name": "x"}), QsemValueError,
             "argument 'events[1].extra': the key 'name' is the detector's"),
            (EventRecord(1, 2.0, "l1", {"f": object()}), QsemValueError,
             "argument 'events[1].extra': not JSON-serialisable (Object of type object is"
             " not JSON serializable)"),
            (EventRecord(1.5, 2.0, "l1"), QsemTypeError,  # type: ignore[arg-type]
             "argument 'events[1].step': expected an integer, got 1.5"),
        ]:  # fmt: skip
            assert _message(lambda b=bad: store.append_events("u", [good, b]), cls) == message
        assert store.users() == []  # nothing was written


def test_a_damaged_theta_names_the_user(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.set_theta("u", 0.25)
    con = sqlite3.connect(path)
    con.execute("UPDATE users SET theta = x'000102' WHERE user = 'u'")
    con.commit()
    con.close()
    with HistoryStore(path) as store:
        assert _message(lambda: store.theta("u")) == (
            f"history store {path}: theta of 'u' is damaged (ValueError: a stored real"
            " number has 3 bytes, not 8)"
        )


def test_an_event_value_stored_as_null_under_its_own_checksum_is_damage(tmp_path: Path) -> None:
    """A NULL value whose checksum is the checksum of None (no writer stores that): the
    record is reported as damaged, not read back as an event without a value."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_events("u", [EventRecord(3, 1.0, "l1")])
    con = sqlite3.connect(path)
    (detector,) = con.execute("SELECT detector FROM events").fetchone()
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = replace(sql, 'value REAL NOT NULL', "
                "'value REAL') WHERE name = 'events'")  # fmt: skip
    con.commit()
    con.close()
    con = sqlite3.connect(path)
    con.execute("UPDATE events SET value = NULL, checksum = ?",
                (_checksum("u", 3, None, detector),))  # fmt: skip
    con.commit()
    con.close()
    with HistoryStore(path, check=False) as store:
        assert _message(lambda: store.events("u")) == (
            f"history store {path}: event at step 3 of 'u' is damaged (TypeError: an event"
            " value is NULL)"
        )


def _tamper(path: Path, sql: str, args: tuple) -> None:
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def test_a_detector_name_that_is_not_a_string_is_damage(tmp_path: Path) -> None:
    """A record whose checksum matches but whose detector name is a number."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.append_events("u", [EventRecord(3, 1.0, "l1")])
    detector = '{"name": 5}'
    _tamper(path, "UPDATE events SET detector = ?, checksum = ?",
            (detector, _checksum("u", 3, 1.0, detector)))  # fmt: skip
    with HistoryStore(path) as store:
        assert _message(lambda: store.events("u")) == (
            f"history store {path}: event at step 3 of 'u' is damaged (TypeError: detector"
            " name 5 is not a string)"
        )


def test_a_parameter_that_cannot_be_decoded_is_damage(tmp_path: Path) -> None:
    """A parameter row whose checksum matches but whose dtype is no NumPy dtype."""
    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        store.set_param("u", "w", [1.0, 2.0])
    con = sqlite3.connect(path)
    shape, data = con.execute("SELECT shape, data FROM params").fetchone()
    con.close()
    _tamper(path, "UPDATE params SET dtype = 'no-such-dtype', checksum = ?",
            (_checksum("u", "w", "no-such-dtype", shape, data),))  # fmt: skip
    with HistoryStore(path) as store:
        message = _message(lambda: store.params("u"))
    assert message == (
        f"history store {path}: parameter 'w' of 'u' is damaged (ValueError: unknown dtype"
        " 'no-such-dtype')"
    )


def test_step_records_fail_their_checks_naming_the_step(tmp_path: Path) -> None:
    """A query that is not a string is refused; a stored step whose checksum does not
    match, or whose dtype is no NumPy dtype under a matching checksum, names the step."""
    import numpy as np

    from qsem.edge import StepRecord

    path = tmp_path / "h.sqlite"
    with HistoryStore(path, writable=True) as store:
        bad = StepRecord(1, np.zeros(2), query=5)  # type: ignore[arg-type]
        assert _message(lambda: store.append_steps("u", [StepRecord(0, np.zeros(2)), bad]),
                        QsemTypeError) == (
            "argument 'records[1].query': expected a str or None, got int"
        )  # fmt: skip
        store.append_steps("u", [StepRecord(0, np.zeros(2))])
    con = sqlite3.connect(path)
    row = con.execute("SELECT phi_shape, phi, dphi, label, query FROM steps").fetchone()
    con.close()
    _tamper(path, "UPDATE steps SET checksum = 'x'", ())
    with HistoryStore(path, check=False) as store:
        assert _message(lambda: store.steps("u")) == (
            f"history store {path}: step 0 of user 'u' fails its checksum"
        )
    shape, data, dphi, label, query = row
    digest = _checksum("u", 0, "no-such-dtype", shape, data, dphi, label, query)
    _tamper(path, "UPDATE steps SET phi_dtype = 'no-such-dtype', checksum = ?", (digest,))
    with HistoryStore(path, check=False) as store:
        assert _message(lambda: store.steps("u")) == (
            f"history store {path}: step 0 of user 'u' is damaged (ValueError: unknown dtype"
            " 'no-such-dtype')"
        )
