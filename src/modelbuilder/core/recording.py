"""What a run records while it runs: metrics, logs, progress, best metrics, resume points, artifacts
and, at the end of an attempt, its compute time and cost.

The writes are the worker's. Each carries the worker's attempt number and is refused with
`StaleAttempt` once that attempt no longer holds the run (fencing; `_lifecycle.check_holder`). The
reads are every face's (the run page, `runs logs`, the SDK's `Run.metrics()`). A run's submission,
status and stop requests are `RunService`'s (runs.py), a service of its own beside this one.
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from modelbuilder import names
from modelbuilder.core import _billing, _lifecycle, _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import check_relpath
from modelbuilder.core.sizes import SizeCatalog, default_catalog
from modelbuilder.core.store import Store
from modelbuilder.errors import InvalidInput

LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_LOG_MESSAGE = 16_000
MAX_METRIC_KEY = 250


def json_dict(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A JSON-safe copy of `value` (what is stored must read back the same on SQLite and PostgreSQL)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(f"The {what} must be a mapping, got {type(value).__name__}.", "pass a dict.")
    try:
        loaded: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise InvalidInput(
            f"The {what} cannot be stored as JSON ({error}).", "use strings, finite numbers, lists and dicts."
        ) from None
    return loaded


def _metric_value(key: object, value: object) -> float | None:
    if not isinstance(key, str) or not key or len(key) > MAX_METRIC_KEY:
        raise InvalidInput(f"Metric name {str(key)[:60]!r} is not valid.", "use 1 to 250 characters.")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"Metric {key!r} must be a number, got {value!r}.", "log floats only.")
    return None if math.isnan(value) else float(value)  # NULL stands for NaN (a diverged loss)


class RunRecorder:
    """What runs record, and reading it back."""

    def __init__(self, store: Store, catalog: SizeCatalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or default_catalog()

    def log_metrics(self, run_id: str, attempt: int, epoch: int, values: Mapping[str, float]) -> None:
        """Record one value per metric for `epoch`; logging an epoch again (after a resume) replaces it."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InvalidInput(f"Epoch must be a whole number >= 0, got {epoch!r}.", "pass the epoch number.")
        clean = {key: _metric_value(key, value) for key, value in values.items()}
        if not clean:
            return
        now = e.utcnow()
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            insert = self.store.insert(r.MetricRow).values(
                [
                    {
                        "run_id": run_id,
                        "key": key,
                        "step": epoch,
                        "value": value,
                        "at": now,
                        "attempt": attempt,
                    }
                    for key, value in clean.items()
                ]
            )
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["run_id", "key", "step"],
                    set_={
                        "value": insert.excluded.value,
                        "at": insert.excluded.at,
                        "attempt": insert.excluded.attempt,
                    },
                )
            )

    def metrics(self, run_id: str, key: str | None = None, after_step: int | None = None
                ) -> builtins.list[e.MetricPoint]:
        """The run's metric points by key, then step; only `key`'s, and only the steps after `after_step`,
        when given (a live view asks for what is new since the epoch it has).

        The columns are selected without the ORM: a point is five values, and building an ORM object
        for each cost 7.4 ms of a 10 ms read at 360 points.
        """
        m = r.MetricRow.__table__.c
        query = select(m.run_id, m.key, m.step, m.value, m.at).where(m.run_id == run_id)
        if key is not None:
            query = query.where(m.key == key)
        if after_step is not None:
            query = query.where(m.step > after_step)
        with self.store.read() as session:
            _lookup.run_row(session, run_id)
            rows = session.execute(query.order_by(m.key, m.step)).all()
        nan = float("nan")  # NULL stands for NaN (a diverged loss)
        return [e.MetricPoint(run, name, step, nan if value is None else value, at)
                for run, name, step, value, at in rows]

    def append_logs(self, run_id: str, attempt: int | None, lines: Iterable[str | tuple[str, str]]) -> int:
        """Append log lines (a message, or (level, message)); returns the number of the last line."""
        entries = []
        for line in lines:
            level, message = ("info", line) if isinstance(line, str) else line
            if level not in LOG_LEVELS:
                raise InvalidInput(f"Log level {level!r} is not valid.", f"use one of: {', '.join(LOG_LEVELS)}.")
            if len(message) > MAX_LOG_MESSAGE:
                message = message[:MAX_LOG_MESSAGE] + " ... (cut)"
            entries.append((level, message))
        now = e.utcnow()
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if attempt is not None:
                _lifecycle.check_holder(row, attempt)
            for level, message in entries:
                row.log_seq += 1
                session.add(
                    r.LogRow(
                        run_id=run_id,
                        seq=row.log_seq,
                        at=now,
                        level=level,
                        message=message,
                        attempt=row.attempt if attempt is None else attempt,
                    )
                )
            return row.log_seq

    def logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> builtins.list[e.LogLine]:
        """Log lines numbered above `after_seq`, oldest first (poll with the last number to follow)."""
        names.positive_int(limit, "limit", maximum=100_000)
        with self.store.read() as session:
            _lookup.run_row(session, run_id)
            rows = session.scalars(
                select(r.LogRow)
                .where(r.LogRow.run_id == run_id, r.LogRow.seq > after_seq)
                .order_by(r.LogRow.seq)
                .limit(limit)
            )
            return [r.log_line(row) for row in rows]

    def update_progress(self, run_id: str, attempt: int, progress: Mapping[str, Any]) -> None:
        stored = json_dict(progress, "progress")
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            row.progress = stored

    def set_best_metrics(self, run_id: str, attempt: int, metrics: Mapping[str, float]) -> None:
        stored = json_dict(metrics, "best metrics")
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            row.best_metrics = stored

    def set_resume_point(self, run_id: str, attempt: int, checkpoint_relpath: str, epoch: int, step: int) -> None:
        """Remember the newest checkpoint, where the next attempt resumes after an interruption."""
        check_relpath(checkpoint_relpath)
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            row.resume_from, row.resume_epoch, row.resume_step = checkpoint_relpath, epoch, step

    def record_artifacts(self, run_id: str, records: Iterable[e.ArtifactRecord], attempt: int | None = None) -> None:
        """Record (or update) the run's artifacts by path, as the artifact store wrote them."""
        rows = [
            {
                "run_id": run_id,
                "path": check_relpath(rec.path),
                "size": rec.size,
                "sha256": rec.sha256,
                "created_at": rec.created_at,
            }
            for rec in records
        ]
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if attempt is not None:
                _lifecycle.check_holder(row, attempt)
            if not rows:
                return
            insert = self.store.insert(r.ArtifactRow).values(rows)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["run_id", "path"],
                    set_={k: insert.excluded[k] for k in ("size", "sha256", "created_at")},
                )
            )

    def artifacts(self, run_id: str) -> builtins.list[e.ArtifactRecord]:
        with self.store.read() as session:
            _lookup.run_row(session, run_id)
            rows = session.scalars(
                select(r.ArtifactRow).where(r.ArtifactRow.run_id == run_id).order_by(r.ArtifactRow.path)
            )
            return [r.artifact(row) for row in rows]

    def runs_with_artifact(self, path: str, sha256: str) -> builtins.list[str]:
        """The runs whose file `path` has these contents (its SHA-256), newest record first: which run a copy
        of a result (a downloaded MLModel.zip) came from."""
        with self.store.read() as session:
            return list(session.scalars(
                select(r.ArtifactRow.run_id).where(r.ArtifactRow.path == path, r.ArtifactRow.sha256 == sha256)
                .order_by(r.ArtifactRow.created_at.desc())))

    def charge_attempt(self, run_id: str, attempt: int, until: datetime | None = None) -> e.Run:
        """The worker's end: charge `attempt` for its time from its claim to `until` (now), at the
        compute's price, unless the agent or the reaper already did (see `_billing`)."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _billing.charge(session, row, attempt, until or e.utcnow(), "worker", self.catalog)
            return _lookup.run_entity(session, row)

    def charges(self, run_id: str) -> builtins.list[e.Charge]:
        """What each attempt of the run was charged, and by whom."""
        with self.store.read() as session:
            _lookup.run_row(session, run_id)
            query = select(r.ChargeRow).where(r.ChargeRow.run_id == run_id).order_by(r.ChargeRow.attempt)
            return [r.charge(row) for row in session.scalars(query)]
