"""The catalog: a SQLite projection of every run's events (runs, parts, segments).

It is derived, never the truth: :meth:`Catalog.apply` folds events into rows and records the
position (``runs.indexed_seq``) in the same transaction, so applying is idempotent and can
resume; :func:`rebuild` deletes everything and folds all segments again, row for row identical.
No column depends on when or by whom the fold ran.

Schema changes are forward-only numbered migrations (``m001_…``) recorded in ``migrations``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from .events import (
    Event,
    ModelCalled,
    PartEnded,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    UsageReported,
)

_RUN_KINDS = frozenset((RunStarted, RunEnded, ModelCalled, UsageReported))


def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "agent": str,
            "agent_version": str,
            "model": str,
            "task_id": str,
            "prompt_sha256": str,
            "repo": str,
            "base_commit": str,
            "attempt": int,
            "parent_run": str,
            "tags": str,
            "host": str,
            "source": str,
            "heartbeat_s": float,
            "started_at": int,
            "last_ts": int,
            "ended_at": int,
            "end_status": str,
            "end_reason": str,
            "exit_code": int,
            "events": int,
            "parts": int,
            "indexed_seq": int,
        },
        pk="id",
        not_null={"id"},
    )
    db["parts"].create(
        {
            "run_id": str,
            "part": int,
            "first_seq": int,
            "last_seq": int,
            "kind": str,
            "title": str,
            "tool": str,
            "tree_id": str,
            "ts": int,
        },
        pk=("run_id", "part"),
    )
    db["segments"].create(
        {
            "run_id": str,
            "stream": str,
            "name": str,
            "first_seq": int,
            "last_seq": int,
            "bytes": int,
            "sealed": int,
        },
        pk=("run_id", "stream", "name"),
    )
    db["runs"].create_index(["started_at"])
    db["runs"].create_index(["task_id"])


MIGRATIONS = [m001_initial]


class Catalog:
    """The SQLite catalog of a store. One connection per instance (per thread)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db = sqlite_utils.Database(conn)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def _migrate(self) -> None:
        conn = self.db.conn
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY)")
        done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
        for migration in MIGRATIONS:
            if migration.__name__ not in done:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if migration.__name__ not in {r[0] for r in conn.execute("SELECT name FROM migrations")}:
                        migration(self.db)
                        conn.execute("INSERT INTO migrations VALUES (?)", [migration.__name__])
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

    def close(self) -> None:
        self.db.conn.close()

    # -- folding -----------------------------------------------------------------------------

    def indexed_seq(self, run_id: str) -> int:
        row = self.db.conn.execute("SELECT indexed_seq FROM runs WHERE id=?", [run_id]).fetchone()
        return row[0] if row else 0

    def apply(self, run_id: str, first_seq: int, items: list[tuple[int, int | None, Event]]) -> None:
        """Fold events ``first_seq …`` of a run into the catalog, atomically with the position.

        Events at or below the stored position are skipped, so applying twice is harmless.
        """
        if not items:
            return
        skip = self.indexed_seq(run_id) - first_seq + 1
        if skip >= len(items):
            return
        if skip > 0:
            items = items[skip:]
            first_seq += skip
        last_seq = first_seq + len(items) - 1
        parts: dict[int, dict] = {}
        run: dict = {}
        called_model = ""
        for seq, (ts, part, ev) in enumerate(items, first_seq):
            t = type(ev)
            if part is not None:
                p = parts.get(part)
                if p is None:
                    parts[part] = p = {"first_seq": seq, "last_seq": seq}
                else:
                    p["last_seq"] = seq
                if t is PartEnded:
                    p.update(kind=ev.part_kind, title=ev.title, tool=ev.tool, ts=ts)
                    if ev.tree_id:
                        p["tree_id"] = ev.tree_id
                elif t is SnapshotTaken and not ev.final:
                    p["tree_id"] = ev.tree_id
            if t in _RUN_KINDS:
                if t is RunStarted:
                    run.update(_run_started_row(ev, ts))
                elif t is RunEnded:
                    run.update(ended_at=ts, end_status=ev.status, end_reason=ev.reason, exit_code=ev.exit_code)
                elif not called_model and ev.model:
                    called_model = ev.model
        last_ts = items[-1][0]
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR IGNORE INTO runs (id, events, parts, indexed_seq) VALUES (?, 0, 0, 0)", [run_id])
            if run:
                cols = ", ".join(f"{k}=?" for k in run)
                conn.execute(f"UPDATE runs SET {cols} WHERE id=?", [*run.values(), run_id])
            if called_model:  # the model as actually called, when run_started did not name it
                conn.execute("UPDATE runs SET model=? WHERE id=? AND coalesce(model, '')=''",
                             [called_model, run_id])
            max_part = max(parts) if parts else 0
            conn.execute(
                "UPDATE runs SET last_ts=max(coalesce(last_ts, 0), ?), events=?, indexed_seq=?, "
                "parts=max(parts, ?) WHERE id=?",
                [last_ts, last_seq, last_seq, max_part, run_id],
            )
            conn.executemany(
                    "INSERT INTO parts (run_id, part, first_seq, last_seq, kind, title, tool, tree_id, ts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, part) DO UPDATE SET "
                    "first_seq=min(first_seq, excluded.first_seq), last_seq=max(last_seq, excluded.last_seq), "
                    "kind=coalesce(excluded.kind, kind), title=coalesce(excluded.title, title), "
                    "tool=coalesce(excluded.tool, tool), tree_id=coalesce(excluded.tree_id, tree_id), "
                    "ts=coalesce(excluded.ts, ts)",
                    [
                        (run_id, part, p["first_seq"], p["last_seq"], p.get("kind"), p.get("title"),
                         p.get("tool"), p.get("tree_id"), p.get("ts"))
                        for part, p in parts.items()
                    ],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def record_segments(self, run_id: str, stream: str, segments: Iterable[tuple[str, int, int, int, bool]]) -> None:
        """Replace the segment rows of a run's stream with ``(name, first, last, bytes, sealed)``."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM segments WHERE run_id=? AND stream=?", [run_id, stream])
            conn.executemany(
                "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, stream, n, f, la, b, int(s)) for n, f, la, b, s in segments],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def forget(self, run_id: str) -> None:
        for table in ("runs", "parts", "segments"):
            col = "id" if table == "runs" else "run_id"
            self.db.conn.execute(f"DELETE FROM {table} WHERE {col}=?", [run_id])

    # -- queries -----------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.db.conn.execute("SELECT id FROM runs ORDER BY id")]

    def run_row(self, run_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE id=?", [run_id]))
        return rows[0] if rows else None

    def run_rows(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM runs ORDER BY id"))

    def part_row(self, run_id: str, part: int) -> dict | None:
        rows = list(self.db.query("SELECT * FROM parts WHERE run_id=? AND part=?", [run_id, part]))
        return rows[0] if rows else None

    def part_rows(self, run_id: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM parts WHERE run_id=? ORDER BY part", [run_id]))

    def dump(self) -> dict[str, list[tuple]]:
        """Every row of every projection table, sorted: what ``reindex`` must reproduce."""
        out = {}
        for table in ("runs", "parts", "segments"):
            out[table] = sorted(tuple(r) for r in self.db.conn.execute(f"SELECT * FROM {table}"))
        return out


def _run_started_row(ev: RunStarted, ts: int) -> dict:
    return {
        "agent": ev.agent,
        "agent_version": ev.agent_version,
        "model": ev.model,
        "task_id": ev.task_id,
        "prompt_sha256": ev.prompt_sha256,
        "repo": ev.repo,
        "base_commit": ev.base_commit,
        "attempt": ev.attempt,
        "parent_run": ev.parent_run,
        "tags": json.dumps(ev.tags, sort_keys=True),
        "host": ev.host,
        "source": ev.source,
        "heartbeat_s": ev.heartbeat_s,
        "started_at": ts,
    }
