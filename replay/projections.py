"""Metrics of a run: pure folds over its events, stored in the catalog with their position.

A run's metrics (``run_metrics`` table, one row per run) and its per-part metrics
(``part_metrics``, one row per part) are a projection of the run's ``events`` stream, like the
catalog itself. Contracts:

* **Pure fold.** :class:`MetricsFold` folds records in seq order into a :class:`RunMetrics` and
  :class:`PartMetrics` rows. Nothing depends on the time, the machine or how the events were
  split into batches: folding in chunks equals folding at once, field for field.
* **Tracked position.** ``run_metrics.position`` is the seq of the last event folded. It is
  written in the same SQLite transaction as the rows it produced, so a crash leaves either the
  old rows and the old position or the new ones; :func:`update_metrics` resumes from it and
  reads only the events after it (cost of an update = cost of the new events).
* **Rebuildable.** :func:`rebuild_metrics` deletes every row and folds every run again; it
  reproduces the incrementally maintained rows exactly. ``agtrace reindex`` calls it.
* **Schema.** Forward-only migrations ``m101_…`` recorded in the catalog's ``migrations`` table
  (the catalog's own are ``m001_…``).

What every metric means is in ``docs/metrics.md``. In short: tokens are the sum of the
``usage_reported`` deltas (the ``cumulative`` evidence is never summed); usage, test and
snapshot events without a part count for the latest part seen before them; the base snapshot
(no part, not final) is the starting tree, not a change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import sqlite_utils

from agtrace.eventlog import Record, Store

from .errors import ReplayError
from .metrics import (
    PART_COLUMNS,
    RUN_COLUMNS,
    TOKEN_TYPES,
    MetricsFold,
    PartMetrics,
    RunMetrics,
    fold,
)

__all__ = [
    "TOKEN_TYPES", "MetricsFold", "PartMetrics", "RunMetrics", "dump_metrics", "ensure_schema", "fold",
    "part_metrics", "rebuild_metrics", "refresh_metrics", "run_metrics", "update_metrics",
]

_BATCH = 10_000


# -- storage ----------------------------------------------------------------------------------


def m101_metrics(db: sqlite_utils.Database) -> None:
    """Tables ``run_metrics`` (one row per run, with ``position`` and the fold ``state``) and
    ``part_metrics`` (one row per run and part)."""
    run_cols = {c: _column_type(RunMetrics, c) for c in RUN_COLUMNS}
    run_cols["state"] = str
    db["run_metrics"].create(run_cols, pk="run_id", not_null={"run_id"})
    part_cols = {"run_id": str, **{c: _column_type(PartMetrics, c) for c in PART_COLUMNS}}
    db["part_metrics"].create(part_cols, pk=("run_id", "part"))


def _column_type(cls: type, name: str) -> type:
    """SQLite column type of a dataclass field (annotations are strings here)."""
    annotation = cls.__dataclass_fields__[name].type
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    return str  # str, and dicts stored as JSON


MIGRATIONS = [m101_metrics]


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Apply the metrics migrations not yet recorded in ``migrations`` (idempotent, atomic each)."""
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    for migration in MIGRATIONS:
        if migration.__name__ in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not conn.execute("SELECT 1 FROM migrations WHERE name=?", [migration.__name__]).fetchone():
                migration(db)
                conn.execute("INSERT INTO migrations VALUES (?)", [migration.__name__])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _load_run(db: sqlite_utils.Database, run_id: str) -> tuple[RunMetrics, dict]:
    rows = list(db.query("SELECT * FROM run_metrics WHERE run_id=?", [run_id]))
    if not rows:
        return RunMetrics(run_id=run_id), {}
    row = rows[0]
    state = json.loads(row.pop("state") or "{}")
    row["tools"] = json.loads(row["tools"] or "{}")
    return RunMetrics(**row), state


def _load_part(db: sqlite_utils.Database, run_id: str, part: int) -> PartMetrics | None:
    rows = list(db.query("SELECT * FROM part_metrics WHERE run_id=? AND part=?", [run_id, part]))
    if not rows:
        return None
    row = rows[0]
    row.pop("run_id")
    return PartMetrics(**row)


def _save(db: sqlite_utils.Database, f: MetricsFold, expected_position: int) -> bool:
    """Write the fold's rows and position atomically; False if another fold moved the position."""
    conn, run = db.conn, f.run
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT position FROM run_metrics WHERE run_id=?", [run.run_id]).fetchone()
        if (row[0] if row else 0) != expected_position:
            conn.execute("ROLLBACK")
            return False
        values = {c: getattr(run, c) for c in RUN_COLUMNS}
        values["tools"] = json.dumps(run.tools, sort_keys=True)
        values["state"] = json.dumps(f.state(), sort_keys=True)
        cols = list(values)
        conn.execute(f"INSERT OR REPLACE INTO run_metrics ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                     [values[c] for c in cols])
        pcols = ["run_id", *PART_COLUMNS]
        conn.executemany(
            f"INSERT OR REPLACE INTO part_metrics ({', '.join(pcols)}) VALUES ({', '.join('?' * len(pcols))})",
            [[run.run_id, *(getattr(p, c) for c in PART_COLUMNS)] for _, p in sorted(f.touched.items())],
        )
        conn.execute("COMMIT")
        return True
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def update_metrics(store: Store, run_id: str) -> RunMetrics:
    """Fold the run's events after the stored position into its metrics; return them.

    Idempotent; reads only the new events and rewrites only the part rows they touch. Rows and
    position are committed in one transaction. If another process folded the same run
    meanwhile, this one starts again from the new position. ``status`` is the live status.
    """
    db = store.catalog.db
    ensure_schema(db)
    for _ in range(5):
        run, state = _load_run(db, run_id)
        start = run.position
        f = MetricsFold(run, state, lambda n: _load_part(db, run_id, n))
        batch: list[Record] = []
        for rec in store.read(run_id, start + 1):
            batch.append(rec)
            if len(batch) >= _BATCH:
                f.apply(batch)
                batch = []
        f.apply(batch)
        if run.position == start or _save(db, f, start):
            return _with_status(store, run)
    raise ReplayError(f"the metrics of run {run_id} kept changing under this update "
                      "(several processes folding it at once); run the command again")


def rebuild_metrics(store: Store, progress: Callable[[int, int], None] | None = None) -> int:
    """Delete every metrics row and fold every run from its first event. Returns the run count."""
    db = store.catalog.db
    ensure_schema(db)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM run_metrics")
    conn.execute("DELETE FROM part_metrics")
    conn.execute("COMMIT")
    ids = store.run_ids()
    for i, run_id in enumerate(ids):
        update_metrics(store, run_id)
        if progress:
            progress(i + 1, len(ids))
    return len(ids)


def refresh_metrics(store: Store, run_ids: Iterable[str] | None = None) -> dict[str, RunMetrics]:
    """Metrics of many runs (default: all in the catalog), folding only runs whose catalog
    position is ahead of their metrics position. Statuses are not filled in."""
    db = store.catalog.db
    ensure_schema(db)
    wanted = set(run_ids) if run_ids is not None else None
    stale = [r[0] for r in db.conn.execute(
        "SELECT r.id FROM runs r LEFT JOIN run_metrics m ON m.run_id = r.id "
        "WHERE m.position IS NULL OR m.position < r.indexed_seq")]
    for run_id in stale:
        if wanted is None or run_id in wanted:
            update_metrics(store, run_id)
    out = {}
    for run_id in (sorted(wanted) if wanted is not None else [r[0] for r in db.conn.execute(
            "SELECT run_id FROM run_metrics ORDER BY run_id")]):
        run, _ = _load_run(db, run_id)
        if run.position:
            out[run_id] = run
    return out


def run_metrics(store: Store, run_id: str) -> RunMetrics | None:
    """The stored metrics of a run as of its stored position (no fold), or None if never folded."""
    ensure_schema(store.catalog.db)
    run, _ = _load_run(store.catalog.db, run_id)
    return _with_status(store, run) if run.position else None


def part_metrics(store: Store, run_id: str) -> list[PartMetrics]:
    """The stored per-part metrics of a run, by part."""
    db = store.catalog.db
    ensure_schema(db)
    rows = db.query("SELECT * FROM part_metrics WHERE run_id=? ORDER BY part", [run_id])
    return [PartMetrics(**{k: v for k, v in r.items() if k != "run_id"}) for r in rows]


def dump_metrics(store: Store) -> dict[str, list[tuple]]:
    """Every metrics row, sorted: what :func:`rebuild_metrics` must reproduce."""
    db = store.catalog.db
    ensure_schema(db)
    return {t: sorted(tuple(r) for r in db.conn.execute(f"SELECT * FROM {t}")) for t in ("run_metrics", "part_metrics")}


def _with_status(store: Store, run: RunMetrics) -> RunMetrics:
    info = store.info(run.run_id)
    run.status, run.reason = info.status, info.reason
    return run
