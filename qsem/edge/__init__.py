"""Edge personalisation: per-user history, personal readings, a small model per user.

* :mod:`~qsem.edge.store` — the history store ``H^(u)`` in SQLite (:class:`HistoryStore`);
  :mod:`~qsem.edge.store_open` recognises a store file (and its logs) before SQLite may
  change it, with :mod:`~qsem.edge.store_files` (bytes, locks, errors) and
  :mod:`~qsem.edge.store_schema` (schema, migrations, atomic creation);
* :mod:`~qsem.edge.codec` — lossless tensors (dtype, shape, bytes) and record checksums;
* :mod:`~qsem.edge.personal` — a user's reading of a trained model (slice weights,
  readout calibration, sensitivity ``θ^(u)``): :class:`PersonalReading`;
* :mod:`~qsem.edge.scenario` — open- and closed-world users, :func:`personalise_users`;
* :mod:`~qsem.edge.small` — a narrowed, compressed model per user: :func:`edge_model`.
"""

from __future__ import annotations

from .codec import decode_tensor, encode_tensor
from .personal import (
    PersonalConfig,
    PersonalReading,
    UserData,
    UserFit,
    fit_reading,
    learn_theta,
    personalise_user,
    reading_accuracy,
)
from .scenario import (
    WORLDS,
    PersonaliseResult,
    personalise_users,
    query_text,
    simulate_users,
    world_labels,
)
from .small import EdgeConfig, EdgeTable, edge_model, latency_ms, narrow_composer
from .store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    EventRecord,
    HistoryStore,
    HistoryStoreError,
    StepRecord,
)

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "WORLDS",
    "EdgeConfig",
    "EdgeTable",
    "EventRecord",
    "HistoryStore",
    "HistoryStoreError",
    "PersonalConfig",
    "PersonalReading",
    "PersonaliseResult",
    "StepRecord",
    "UserData",
    "UserFit",
    "decode_tensor",
    "edge_model",
    "encode_tensor",
    "fit_reading",
    "latency_ms",
    "learn_theta",
    "narrow_composer",
    "personalise_user",
    "personalise_users",
    "query_text",
    "reading_accuracy",
    "simulate_users",
    "world_labels",
]
