"""The catalog: a store's SQLite database of projections, and the run catalog projection.

:class:`Catalog` opens ``catalog.db`` with a registry of projections (see
:mod:`agtrace.eventlog.projection`): it brings their schemas to the code's versions on open and
folds records into them. It also keeps the ``segments`` table (run, stream, file, seq range,
bytes, and the file's mtime and inode when recorded), which is fed from the segment files rather
than from events; :mod:`agtrace.eventlog.fingerprint` compares it with the files.

:class:`CatalogProjection` is the projection every store has: ``runs`` (one row per run:
identity from ``run_started``, the model as called, end status from ``run_ended``, ``events`` = the last seq,
``parts`` = the highest part that ended, ``last_ts`` = the largest ts of any event, whatever the
order or batching of the events) and ``parts`` (one row per part
that has an event: its seq range, and from ``part_ended`` its kind, title, tool, tree and end
time). No column depends on when or by whom the fold ran, so a rebuild is row for row identical.
:class:`RunInfo` is a ``runs`` row with the run's live status (:func:`status_of`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .database import BUSY_TIMEOUT_S, close, connect, connect_copy, migrate, transaction
from .events import (
    ModelCalled,
    PartEnded,
    Record,
    RunEnded,
    RunStarted,
    SnapshotTaken,
    UsageReported,
)
from .projection import DAMAGED, NEWER, Projection, ProjectionFailure, Projections

_RUN_KINDS = frozenset((RunStarted, RunEnded, ModelCalled, UsageReported))

STALE_WITHOUT_HEARTBEAT_S = 15 * 60
"""An imported run with no end event counts as ``unknown`` (not ``running``) after this long
without events (the tool that writes its source may still be writing it; agtrace holds no writer
of it to ask)."""

UNENDED_STATUSES = ("running", "open", "crashed", "unknown")
"""The live statuses of a run without an end event (:func:`status_of`)."""


@dataclass(frozen=True)
class RunInfo:
    """One run as listed: the catalog row plus the live status."""

    id: str
    agent: str
    agent_version: str
    model: str
    task_id: str
    status: str
    reason: str
    parts: int
    events: int
    started_at: int | None
    ended_at: int | None
    last_ts: int | None
    parent_run: str
    tags: dict
    exit_code: int | None = None
    projection_errors: tuple[str, ...] = ()
    """Projections that stopped on this run, each as a sentence (see ``projection_errors``)."""

    @property
    def duration_s(self) -> float | None:
        end = self.ended_at or self.last_ts
        if self.started_at is None or end is None or end < self.started_at:
            return None  # events fed by hand (`log --json | append`) may end before the run started
        return (end - self.started_at) / 1e9

    @classmethod
    def of_row(cls, row: dict, status: str, reason: str, tags: dict, errors=()) -> RunInfo:
        """The run of a ``runs`` row (a damaged run's row may hold only id and end status)."""
        return cls(id=row["id"], agent=row.get("agent") or "", agent_version=row.get("agent_version") or "",
                   model=row.get("model") or "", task_id=row.get("task_id") or "", status=status, reason=reason,
                   parts=row.get("parts") or 0, events=row.get("events") or 0, started_at=row.get("started_at"),
                   ended_at=row.get("ended_at"), last_ts=row.get("last_ts"),
                   parent_run=row.get("parent_run") or "", tags=tags, exit_code=row.get("exit_code"),
                   projection_errors=tuple(errors))

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["duration_s"] = self.duration_s
        d["projection_errors"] = list(self.projection_errors)
        return d


def status_of(row: dict, writer_alive: bool, now_ns: int | None = None) -> tuple[str, str]:
    """A run's status from its catalog row and whether a writer holds its lock.

    The end event's status once ended; else ``running`` while a writer holds the run's lock
    (released by the kernel when the writer dies); else ``open`` for a run made by `agtrace new`
    (``source == "append"``: it is fed by `agtrace append` and nothing says it stopped, its writer
    is only gone between two appends), ``crashed`` for a captured run (its capture stopped
    without ending it), and for an imported run (whose source another tool may still be writing)
    ``running`` until :data:`STALE_WITHOUT_HEARTBEAT_S` of silence, then ``unknown``: its source
    has no end record and does not say how the run ended (an importer that finds evidence of a
    crash ends the run ``crashed`` itself). The rule is in ``docs/metrics.md``.
    """
    if row.get("end_status"):
        return row["end_status"], row.get("end_reason") or ""
    if writer_alive:
        return "running", ""
    run = row.get("id") or "RUN"
    if row.get("heartbeat_s"):
        return "crashed", "the capture process stopped without ending the run"
    if row.get("source") == "append":
        return "open", f"`agtrace append {run}` adds events; `agtrace close {run} --status …` ends it"
    if not (row.get("source") or "").startswith("import"):
        return "crashed", (f"no writer holds the run and it has no end event; `agtrace append {run}` "
                           f"continues it, `agtrace close {run} --status completed` ends it")
    now_ns = now_ns if now_ns is not None else time.time_ns()
    last = row.get("last_ts") or row.get("started_at") or 0
    if now_ns - last > STALE_WITHOUT_HEARTBEAT_S * 1e9:
        return "unknown", (f"imported from a source with no end record, which does not say how the run ended "
                           f"(no events for over {STALE_WITHOUT_HEARTBEAT_S // 60} minutes); `agtrace close {run} "
                           "--status …` records how it ended")
    return "running", ""


def damage_status(failures: Iterable[ProjectionFailure]) -> tuple[str, str] | None:
    """``("damaged", sentence)`` when the run catalog stopped on a run because its events cannot
    be read past some seq (a segment damaged, truncated or missing: its figures stop there, and
    the sentence names the file and byte), ``("newer-format", sentence)`` when that is a segment of a
    newer agtrace; None otherwise. Damage wins over the end status and the lock: a run whose log is
    damaged is shown so, never as completed, running or crashed."""
    for failure in failures:
        if failure.projection == CatalogProjection.name and failure.damaged:
            newer = failure.message[len(DAMAGED):].startswith(NEWER)
            return ("newer-format" if newer else "damaged"), str(failure)
    return None


def m001_runs_parts(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE runs (id TEXT PRIMARY KEY NOT NULL, agent TEXT, agent_version TEXT, model TEXT, "
        "task_id TEXT, prompt_sha256 TEXT, repo TEXT, base_commit TEXT, attempt INTEGER, parent_run TEXT, "
        "tags TEXT, host TEXT, source TEXT, heartbeat_s REAL, started_at INTEGER, last_ts INTEGER, "
        "ended_at INTEGER, end_status TEXT, end_reason TEXT, exit_code INTEGER, events INTEGER, parts INTEGER)"
    )
    conn.execute(
        "CREATE TABLE parts (run_id TEXT NOT NULL, part INTEGER NOT NULL, first_seq INTEGER, last_seq INTEGER, "
        "kind TEXT, title TEXT, tool TEXT, tree_id TEXT, ts INTEGER, PRIMARY KEY (run_id, part))"
    )
    conn.execute("CREATE INDEX runs_by_start ON runs (started_at)")
    conn.execute("CREATE INDEX runs_by_task ON runs (task_id)")


def m001_segments(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE segments (run_id TEXT NOT NULL, stream TEXT NOT NULL, name TEXT NOT NULL, "
        "first_seq INTEGER, last_seq INTEGER, bytes INTEGER, sealed INTEGER, PRIMARY KEY (run_id, stream, name))"
    )


def m002_segment_stats(conn: sqlite3.Connection) -> None:
    """The file's ``st_mtime_ns`` and ``st_ino`` when its row was recorded (NULL in rows recorded
    before): with ``bytes``, what tells a segment changed on disk after it was indexed."""
    conn.execute("ALTER TABLE segments ADD COLUMN mtime_ns INTEGER")
    conn.execute("ALTER TABLE segments ADD COLUMN inode INTEGER")


class CatalogProjection(Projection):
    """The ``runs`` and ``parts`` tables (see the module docstring)."""

    name = "catalog"
    version = 2  # 2: last_ts is the largest ts of any event (was the last ts of a batch: batching showed)
    stream = "events"
    tables = ("runs", "parts")
    migrations = (m001_runs_parts,)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        parts: dict[int, dict] = {}
        run: dict = {}
        called_model = ""
        ended_part = 0
        last_seq = last_ts = 0
        for rec in records:
            seq, ev, part = rec.seq, rec.event, rec.part
            last_seq = seq
            if rec.ts > last_ts:  # the largest ts, whatever the order or batching of the events
                last_ts = rec.ts
            t = type(ev)
            if part is not None:
                p = parts.get(part)
                if p is None:
                    parts[part] = p = {"first_seq": seq, "last_seq": seq}
                else:
                    p["last_seq"] = seq
                if t is PartEnded:
                    p.update(kind=ev.part_kind, title=ev.title, tool=ev.tool, ts=rec.ts)
                    if ev.tree_id:
                        p["tree_id"] = ev.tree_id
                    ended_part = max(ended_part, part)
                elif t is SnapshotTaken and not ev.final:
                    p["tree_id"] = ev.tree_id
            if t in _RUN_KINDS:
                if t is RunStarted:
                    run.update(_run_started_row(ev, rec.ts))
                elif t is RunEnded:
                    run.update(ended_at=rec.ts, end_status=ev.status, end_reason=ev.reason, exit_code=ev.exit_code)
                elif not called_model and ev.model:
                    called_model = ev.model
        if not last_seq:
            return
        conn.execute("INSERT OR IGNORE INTO runs (id, events, parts) VALUES (?, 0, 0)", [run_id])
        if run:
            cols = ", ".join(f"{k}=?" for k in run)
            conn.execute(f"UPDATE runs SET {cols} WHERE id=?", [*run.values(), run_id])
        if called_model:  # the model as actually called, when run_started did not name it
            conn.execute("UPDATE runs SET model=? WHERE id=? AND coalesce(model, '')=''", [called_model, run_id])
        conn.execute(
            "UPDATE runs SET last_ts=max(coalesce(last_ts, 0), ?), events=?, parts=max(parts, ?) WHERE id=?",
            [last_ts, last_seq, ended_part, run_id],
        )
        conn.executemany(
            "INSERT INTO parts (run_id, part, first_seq, last_seq, kind, title, tool, tree_id, ts) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id, part) DO UPDATE SET "
            "first_seq=min(first_seq, excluded.first_seq), last_seq=max(last_seq, excluded.last_seq), "
            "kind=coalesce(excluded.kind, kind), title=coalesce(excluded.title, title), "
            "tool=coalesce(excluded.tool, tool), tree_id=coalesce(excluded.tree_id, tree_id), "
            "ts=coalesce(excluded.ts, ts)",
            [(run_id, part, p["first_seq"], p["last_seq"], p.get("kind"), p.get("title"), p.get("tool"),
              p.get("tree_id"), p.get("ts")) for part, p in parts.items()],
        )

    def forget(self, conn: sqlite3.Connection, run_id: str) -> None:
        conn.execute("DELETE FROM runs WHERE id=?", [run_id])
        conn.execute("DELETE FROM parts WHERE run_id=?", [run_id])


class Catalog:
    """The SQLite database of a store. One connection per instance, shareable by threads.

    ``projections`` defaults to the run catalog alone; :class:`~agtrace.eventlog.Store` opens it
    with its registry. ``rebuilt`` names the projections that opening (re)built. With
    ``read_only`` (a store that cannot be written) it is a private in-memory copy of the file
    (:func:`~agtrace.eventlog.database.connect_copy`): projections are brought up to date and
    folded in memory, and nothing is ever written to ``path`` or beside it.
    """

    def query(self, sql: str, params=()):
        """Rows as dicts (sqlite-utils is not imported: with pandas installed it costs ~0.4 s)."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(names, row, strict=True))

    def __init__(self, path: str | os.PathLike, projections: Sequence[Projection] | None = None, *,
                 on_wait: Callable[[str], None] | None = None, read_only: bool = False,
                 wait_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.read_only = read_only
        projections = tuple(projections) if projections is not None else (CatalogProjection(),)
        if not any(isinstance(p, CatalogProjection) for p in projections):
            raise ValueError("a catalog needs the run catalog projection (CatalogProjection)")
        self.conn = (connect_copy(self.path, wait_s) if read_only
                     else connect(self.path, on_wait=on_wait, wait_s=wait_s))
        try:
            self.projections = Projections(self.conn, projections)
            self.rebuilt = self.projections.open()
            migrate(self.conn, "segments", [m001_segments, m002_segment_stats])
        except BaseException:
            close(self.conn)
            raise

    def close(self) -> None:
        close(self.conn)

    # -- folding -----------------------------------------------------------------------------

    def apply(self, run_id: str, records: Sequence[Record], stream: str = "events", *,
              lazy: Collection[str] = ()) -> bool:
        """Fold contiguous records into every eager projection of ``stream`` (and the lazy
        ones named in ``lazy``; see :meth:`Projections.apply`); False if a projection needs earlier
        records first."""
        return self.projections.apply(run_id, stream, records, lazy=lazy)

    def position(self, run_id: str, projection: str = "catalog") -> int:
        """The last seq ``projection`` folded of ``run_id`` (0 if none)."""
        return self.projections.positions(run_id).get(projection, 0)

    def indexed_seq(self, run_id: str) -> int:
        """The run catalog's position: the last seq of the run it has folded."""
        return self.position(run_id)

    def errors(self, run_id: str | None = None) -> list[ProjectionFailure]:
        return self.projections.errors(run_id)

    def stale_runs(self, run_ids: Iterable[str], names: Iterable[str] | None = None) -> list[str]:
        """Runs of ``run_ids`` (in their order) whose events some projection of ``names``
        (default: the eager events projections) has not folded as far as the run catalog did,
        or that the catalog does not know or that have not ended (they may have grown). One
        query over those runs (the comparison runs in SQLite, not per run in Python)."""
        ids = list(run_ids)
        names = [p.name for p in self.projections.of("events")] if names is None else sorted(set(names))
        marks = ", ".join("?" * len(names)) or "NULL"
        chosen = "r.id IN (SELECT value FROM json_each(?))"
        listed = json.dumps(ids)
        behind = {r[0] for r in self.conn.execute(
            f"SELECT r.id FROM runs r WHERE {chosen} AND r.end_status IS NULL UNION "
            f"SELECT r.id FROM runs r JOIN projections n ON n.name IN ({marks}) "
            "LEFT JOIN positions p ON p.projection = n.name AND p.run_id = r.id "
            f"WHERE {chosen} AND coalesce(p.seq, 0) < coalesce(r.events, 0) AND NOT EXISTS (SELECT 1 FROM "
            "projection_errors e WHERE e.projection = n.name AND e.run_id = r.id)", [listed, *names, listed])}
        known = {r[0] for r in self.conn.execute(f"SELECT id FROM runs r WHERE {chosen}", [listed])}
        return [run_id for run_id in ids if run_id in behind or run_id not in known]

    def record_segments(self, run_id: str, stream: str,
                        segments: Iterable[tuple[str, int, int, int, bool, int | None, int | None]]) -> None:
        """Replace the segment rows of a run's stream with
        ``(name, first, last, bytes, sealed, mtime_ns, inode)``."""
        rows = [(run_id, stream, *seg) for seg in segments]
        with transaction(self.conn) as conn:
            conn.execute("DELETE FROM segments WHERE run_id=? AND stream=?", [run_id, stream])
            conn.executemany("INSERT INTO segments (run_id, stream, name, first_seq, last_seq, bytes, sealed, "
                             "mtime_ns, inode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def forget(self, run_id: str) -> None:
        """Delete every row of a run from every projection and from ``segments``."""
        with transaction(self.conn) as conn:
            self.projections.forget(run_id)
            conn.execute("DELETE FROM segments WHERE run_id=?", [run_id])

    # -- queries -----------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY id")]

    def run_row(self, run_id: str) -> dict | None:
        rows = list(self.query("SELECT * FROM runs WHERE id=?", [run_id]))
        return rows[0] if rows else None

    def run_rows(self) -> list[dict]:
        return list(self.query("SELECT * FROM runs ORDER BY id"))

    def part_row(self, run_id: str, part: int) -> dict | None:
        rows = list(self.query("SELECT * FROM parts WHERE run_id=? AND part=?", [run_id, part]))
        return rows[0] if rows else None

    def part_rows(self, run_id: str) -> list[dict]:
        return list(self.query("SELECT * FROM parts WHERE run_id=? ORDER BY part", [run_id]))

    def dump(self) -> dict[str, list[tuple]]:
        """Every row of every registered projection, of ``positions`` and of ``segments`` (without
        the files' mtime and inode, which belong to the file system, not to the events), sorted:
        what ``reindex`` must reproduce."""
        out = self.projections.dump()
        out["segments"] = sorted(tuple(r) for r in self.conn.execute(
            "SELECT run_id, stream, name, first_seq, last_seq, bytes, sealed FROM segments"))
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


def open_catalog(path: Path, projections, *, on_wait=None, read_only: bool = False,
                 wait_s: float = BUSY_TIMEOUT_S) -> tuple[Catalog, Path | None]:
    """Open the catalog at ``path``; one that is not an SQLite database (or whose header is
    damaged) is derived data: it is moved aside to ``catalog.db.damaged-<ns>`` (with its -wal
    and -shm removed) and a new one is made, to be refolded from the segments. Returns the
    catalog and where a damaged one was moved (None if none was). With ``read_only`` the
    catalog is an in-memory copy (see :class:`Catalog`) and a damaged file is left where it is."""
    if read_only:
        return Catalog(path, projections, on_wait=on_wait, read_only=True, wait_s=wait_s), None
    try:
        return Catalog(path, projections, on_wait=on_wait, wait_s=wait_s), None
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) or not ("not a database" in text or "malformed" in text):
            raise
    set_aside = path.with_name(f"{path.name}.damaged-{time.time_ns()}")
    os.replace(path, set_aside)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return Catalog(path, projections, on_wait=on_wait, wait_s=wait_s), set_aside
