"""The metrics projection: :class:`~agtrace.eventlog.metrics.MetricsFold` kept in ``catalog.db``,
and the public reads of run and part metrics.

Tables (migration ``m001_metrics`` of projection ``metrics``):

``run_metrics``
    one row per run: the fold's run figures (:data:`~agtrace.eventlog.metrics.RUN_COLUMNS`)
    and ``state``, the canonical JSON of what the fold needs to go on (open tool calls, the set
    of changed paths, the latest part seen);
``part_metrics``
    one row per (run, part) the fold touched: the part's figures.

An update loads the run row and only the part rows its records touch, folds, and writes them
back in the projection mechanism's transaction (with the position). Reads join the run
catalog's ``runs``/``parts`` rows, which hold the lifecycle fields (events, parts, times, end
status; a part's kind, title, tool, end time): each figure is stored once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING

from .catalog import Catalog, CatalogProjection, RunInfo
from .errors import StoreError
from .events import Record
from .metrics import (
    CATALOG_PART_FIELDS,
    CATALOG_RUN_FIELDS,
    PART_COLUMNS,
    RUN_COLUMNS,
    MetricsFold,
    PartMetrics,
    RunMetrics,
)
from .projection import Projection

if TYPE_CHECKING:
    from .store import Store

_SQL_TYPES = {"int": "INTEGER", "float": "REAL"}


def _column(cls: type, name: str) -> str:
    annotation = next(f.type for f in fields(cls) if f.name == name)
    return _SQL_TYPES.get(str(annotation).split(" ")[0].split("[")[0], "TEXT")


def m001_metrics(conn: sqlite3.Connection) -> None:
    run_cols = ", ".join(f"{c} {_column(RunMetrics, c)}" for c in RUN_COLUMNS[1:])
    conn.execute(f"CREATE TABLE run_metrics (run_id TEXT PRIMARY KEY NOT NULL, {run_cols}, state TEXT)")
    part_cols = ", ".join(f"{c} {_column(PartMetrics, c)}" for c in PART_COLUMNS[1:])
    conn.execute(f"CREATE TABLE part_metrics (run_id TEXT NOT NULL, part INTEGER NOT NULL, {part_cols}, "
                 "PRIMARY KEY (run_id, part))")


class MetricsProjection(Projection):
    """The ``run_metrics`` and ``part_metrics`` tables (see the module docstring)."""

    name = "metrics"
    version = 5  # 5: a run without snapshots has its agent patches' line counts as churn; 4: the returned calls kept are bounded; 3: a call id repeated is one call; 2: agent file changes
    stream = "events"
    tables = ("run_metrics", "part_metrics")
    migrations = (m001_metrics,)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        run, state = _load_run(conn, run_id)
        stored = conn.execute("SELECT max(part) FROM part_metrics WHERE run_id=?", [run_id]).fetchone()[0] or 0

        def load(n: int) -> PartMetrics | None:  # parts above the highest stored row have none
            return _load_part(conn, run_id, n) if n <= stored else None

        f = MetricsFold(run, state, load)
        f.apply(records)
        values = [getattr(run, c) for c in RUN_COLUMNS]
        values[RUN_COLUMNS.index("tools")] = json.dumps(run.tools, sort_keys=True)
        conn.execute(f"INSERT OR REPLACE INTO run_metrics ({', '.join(RUN_COLUMNS)}, state) "
                     f"VALUES ({', '.join('?' * (len(RUN_COLUMNS) + 1))})",
                     [*values, json.dumps(f.state(), sort_keys=True)])
        conn.executemany(
            f"INSERT OR REPLACE INTO part_metrics (run_id, {', '.join(PART_COLUMNS)}) "
            f"VALUES ({', '.join('?' * (len(PART_COLUMNS) + 1))})",
            [(run_id, *_part_values(p)) for _, p in sorted(f.touched.items())],
        )


_part_values = attrgetter(*PART_COLUMNS)


def _load_run(conn: sqlite3.Connection, run_id: str) -> tuple[RunMetrics, dict]:
    row = conn.execute(f"SELECT {', '.join(RUN_COLUMNS)}, state FROM run_metrics WHERE run_id=?",
                       [run_id]).fetchone()
    if row is None:
        return RunMetrics(run_id=run_id), {}
    values = dict(zip(RUN_COLUMNS, row[:-1], strict=True))
    values["tools"] = json.loads(values["tools"] or "{}")
    return RunMetrics(**values), json.loads(row[-1] or "{}")


def _load_part(conn: sqlite3.Connection, run_id: str, part: int) -> PartMetrics | None:
    row = conn.execute(f"SELECT {', '.join(PART_COLUMNS)} FROM part_metrics WHERE run_id=? AND part=?",
                       [run_id, part]).fetchone()
    return PartMetrics(**dict(zip(PART_COLUMNS, row, strict=True))) if row else None


# -- reads ----------------------------------------------------------------------------------------

_RUN_SELECT = (f"SELECT r.id, {', '.join('r.' + c for c in CATALOG_RUN_FIELDS)}, "
               f"{', '.join('m.' + c for c in RUN_COLUMNS[1:])} "
               "FROM runs r LEFT JOIN run_metrics m ON m.run_id = r.id")
_PART_SELECT = (f"SELECT p.part, p.kind, p.title, p.tool, p.ts, {', '.join('m.' + c for c in PART_COLUMNS[1:])} "
                "FROM parts p LEFT JOIN part_metrics m ON m.run_id = p.run_id AND m.part = p.part "
                "WHERE p.run_id=? ORDER BY p.part")
_RUN_NAMES = ("run_id", *CATALOG_RUN_FIELDS, *RUN_COLUMNS[1:])
_PART_NAMES = ("part", *CATALOG_PART_FIELDS, *PART_COLUMNS[1:])
_RUN_DEFAULTS = RunMetrics(run_id="")
_PART_DEFAULTS = PartMetrics(part=0)


def _run_from_row(row: tuple) -> RunMetrics:
    values = {k: (v if v is not None else getattr(_RUN_DEFAULTS, k)) for k, v in zip(_RUN_NAMES, row, strict=True)}
    values["tools"] = json.loads(values["tools"]) if isinstance(values["tools"], str) else {}
    return RunMetrics(**values)


def metrics_rows(conn: sqlite3.Connection, run_ids: Iterable[str] | None = None) -> dict[str, RunMetrics]:
    """Stored run metrics (catalog fields joined, no live status) of the given runs, or of all."""
    rows = conn.execute(_RUN_SELECT + " ORDER BY r.id").fetchall()
    wanted = set(run_ids) if run_ids is not None else None
    return {r[0]: _run_from_row(r) for r in rows if wanted is None or r[0] in wanted}


def part_rows(conn: sqlite3.Connection, run_id: str, parts: tuple[int, int] | None = None) -> list[PartMetrics]:
    """Stored per-part metrics of a run: one row per part the run catalog knows, by part (only
    parts ``first..last`` when ``parts`` is given: an indexed range, whatever the run's length)."""
    out = []
    sql, args = _PART_SELECT, [run_id]
    if parts is not None:
        sql, args = sql.replace("ORDER BY", "AND p.part BETWEEN ? AND ? ORDER BY"), [run_id, *parts]
    for row in conn.execute(sql, args):
        values = {k: (v if v is not None or k.startswith("tests_") or k in ("cost_usd", "ended_at")
                      else getattr(_PART_DEFAULTS, k)) for k, v in zip(_PART_NAMES, row, strict=True)}
        out.append(PartMetrics(**values))
    return out


def _require(store: Store) -> None:
    if store.catalog.projections.get(MetricsProjection.name) is None:
        raise StoreError("this store was opened without the metrics projection; open it with the default "
                         "projections (Store(root)) to read metrics")


def run_metrics(store: Store, run_id: str, *, sync: bool = True) -> RunMetrics:
    """The run's metrics, brought up to date with its segments (unless ``sync`` is False, see
    :meth:`Store.info`), with its live status."""
    _require(store)
    info = store.info(run_id, sync=sync)
    m = metrics_rows(store.catalog.conn, [run_id]).get(run_id) or RunMetrics(run_id=run_id)
    m.status, m.reason = info.status, info.reason
    return m


def part_metrics(store: Store, run_id: str, parts: tuple[int, int] | None = None) -> list[PartMetrics]:
    """The run's per-part metrics, brought up to date, by part (parts ``first..last`` only, when
    given)."""
    _require(store)
    store.sync(run_id)
    return part_rows(store.catalog.conn, run_id, parts)


def runs_metrics(store: Store, run_ids: Iterable[str] | None = None, *,
                 infos: Iterable[RunInfo] | None = None) -> dict[str, RunMetrics]:
    """Metrics of many runs (default: every run), by id, with live statuses. Folds only runs
    that some projection has not caught up with (see :meth:`Store.runs`); ``infos``, what
    :meth:`Store.runs` just returned, saves listing the runs again."""
    _require(store)
    infos = {i.id: i for i in (infos if infos is not None else store.runs())}
    wanted = [r for r in run_ids if r in infos] if run_ids is not None else list(infos)
    rows = metrics_rows(store.catalog.conn, wanted)
    out = {}
    for run_id in wanted:
        m = rows.get(run_id) or RunMetrics(run_id=run_id)
        m.status, m.reason = infos[run_id].status, infos[run_id].reason
        out[run_id] = m
    return out


def run_tokens(store: Store) -> dict[str, int]:
    """Every run's stored token total (``RunMetrics.tokens``; 0 when it has none): one column of
    ``run_metrics``, what ``agtrace ls`` shows, without building whole metrics rows."""
    _require(store)
    return {r: t or 0 for r, t in store.catalog.conn.execute("SELECT run_id, tokens FROM run_metrics")}


def fold_metrics(run_id: str, records: Iterable[Record]) -> tuple[RunMetrics, list[PartMetrics]]:
    """Fold a whole run in memory (no store), through the same projections a store keeps:
    its run metrics (no live status) and its part rows by part."""
    catalog = Catalog(":memory:", [CatalogProjection(), MetricsProjection()])
    try:
        batch = list(records)
        catalog.apply(run_id, batch)
        return metrics_rows(catalog.conn, [run_id]).get(run_id) or RunMetrics(run_id=run_id), \
            part_rows(catalog.conn, run_id)
    finally:
        catalog.close()
