"""Projections: tables derived from a run's stream, folded as the events are written.

A projection is a small class (see :class:`Projection`): a ``name``, a ``version``, the
``stream`` it folds (``events`` or ``scores``), the ``tables`` it owns, forward-only
``migrations`` that create them, and ``apply(conn, run_id, records)``, a deterministic fold
that reads and writes only its own tables. :class:`Projections` is the registry of one catalog
database; it keeps, beside the projections' own tables:

``projections``
    the version of each projection whose tables are in the database;
``migrations``
    the migrations applied, per owner (a projection's name);
``positions``
    per projection and run, the seq of the last record folded;
``projection_errors``
    per projection and run, the seq and message of the record its ``apply`` raised on.

Contracts:

* **Atomic with its position.** A batch of records is folded into every projection of its
  stream in one transaction; each projection's rows and its new position are written together
  (a savepoint each), so a crash leaves every projection at a position it really reached.
  Positions are read inside that transaction, so two processes folding the same run never
  fold a record twice: records at or below a projection's position are skipped.
* **Contiguous.** A projection only ever receives the records right after its position; a
  batch that would leave a gap is refused (:meth:`Projections.apply` returns False) and the
  caller reads the missing records from the segments instead.
* **Isolated failures.** A projection whose ``apply`` raises on a run (any exception but
  ``sqlite3.OperationalError``, which means the database itself failed and aborts the whole
  batch) keeps its rows and position from before the batch, gets a ``projection_errors`` row
  naming the record, and is skipped for that run until the run is re-indexed. Other
  projections and other runs go on.
* **Eager or lazy.** An eager projection (the default) is fed as events are written and
  caught up by every read (``Store.runs``, ``Store.sync``). A lazy one (``eager = False``:
  full-text search, costs) is too slow or too heavy to import for the write path: it is folded
  only when a read asks for it (``Store.catch_up``), from its position, reading the segments.
  ``reindex`` empties it; :meth:`Projections.dump` (what ``reindex`` must reproduce) leaves it
  out, since what it holds depends on which reads ran.
* **Versioned.** On open, a projection whose stored version differs from its code's version is
  rebuilt: its tables are dropped, its migrations and positions forgotten, its migrations run
  again. Its rows come back lazily: the next read of a run folds that run from its first
  event (``agtrace ls`` folds every run once). A database of another bookkeeping format
  (``PRAGMA user_version``; 0 is a catalog from before projections) is emptied first: all of
  it is derived.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from .database import Migration, migrate, table_names, transaction
from .events import Record

FORMAT = 1
"""Bookkeeping format of a catalog database, kept in ``PRAGMA user_version``."""

STREAMS = ("events", "scores")

DAMAGED = "damaged log: "
NEWER = "NewerFormat: "
"""How a damage mark (:data:`DAMAGED`) whose cause is a segment of a newer format goes on: no
damage, so its messages say to upgrade, not to verify and restore."""
"""How a ``projection_errors`` message starts when the stream itself could not be read."""


class Projection:
    """Base class of a projection; subclasses set the class attributes and implement ``apply``.

    Every table a projection owns has a ``run_id`` column, so the default :meth:`forget` can
    delete a run's rows; override it otherwise.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    stream: ClassVar[str] = "events"
    tables: ClassVar[tuple[str, ...]] = ()
    migrations: ClassVar[tuple[Migration, ...]] = ()
    eager: ClassVar[bool] = True

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        """Fold ``records`` (the run's next records, in seq order; iterate them once) into this
        projection's tables. Runs inside the caller's transaction; must not commit."""
        raise NotImplementedError

    def forget(self, conn: sqlite3.Connection, run_id: str) -> None:
        """Delete every row of ``run_id`` from this projection's tables."""
        for table in self.tables:
            conn.execute(f"DELETE FROM {table} WHERE run_id=?", [run_id])

    def __repr__(self) -> str:
        return f"<projection {self.name} v{self.version} of {self.stream}>"


@dataclass(frozen=True)
class ProjectionFailure:
    """A projection stopped on a run: it raised on the record ``seq``."""

    projection: str
    run_id: str
    seq: int
    message: str

    @property
    def damaged(self) -> bool:
        """The run's log could not be read past ``seq`` (see :meth:`Projections.mark_damaged`)."""
        return self.message.startswith(DAMAGED)

    def __str__(self) -> str:
        if self.damaged and self.message[len(DAMAGED):].startswith(NEWER):
            return (f"run {self.run_id} cannot be read from seq {self.seq} on "
                    f"({self.message[len(DAMAGED) + len(NEWER):]}); its figures stop before it")
        if self.damaged:
            return (f"run {self.run_id} cannot be read from seq {self.seq} on "
                    f"({self.message[len(DAMAGED):]}); its figures stop before it. `agtrace verify "
                    f"{self.run_id}` says what is damaged and which parts still replay")
        return (f"the {self.projection} projection failed on seq {self.seq} of run {self.run_id} "
                f"({self.message}); its figures for this run stop before it. Report it; "
                "`agtrace reindex` retries")


class _Undo(Exception):
    """Undoes a fold that was only run again to find where it fails."""


class _Cursor:
    """Records handed to one ``apply``; remembers the seq being folded when it raised."""

    __slots__ = ("records", "seq")

    def __init__(self, records: Sequence[Record]):
        self.records = records
        self.seq = records[0].seq

    def __iter__(self) -> Iterator[Record]:
        for rec in self.records:
            self.seq = rec.seq
            yield rec


def _m001_bookkeeping(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE migrations (owner TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (owner, name))")
    conn.execute("CREATE TABLE projections (name TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("CREATE TABLE positions (projection TEXT NOT NULL, run_id TEXT NOT NULL, "
                 "seq INTEGER NOT NULL, PRIMARY KEY (projection, run_id))")
    conn.execute("CREATE TABLE projection_errors (projection TEXT NOT NULL, run_id TEXT NOT NULL, "
                 "seq INTEGER NOT NULL, message TEXT NOT NULL, PRIMARY KEY (projection, run_id))")


_BY_RUN = {"positions_by_run": "positions", "projection_errors_by_run": "projection_errors"}


def _index_by_run(conn: sqlite3.Connection) -> None:
    """Index the bookkeeping by run (one run's positions and failures are read before every
    fold; keyed by (projection, run_id) alone, each read scanned every run's rows, so folding
    every run of a store cost the square of its size). Added to older stores on open."""
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    if have >= set(_BY_RUN):
        return
    with transaction(conn):
        for name, table in _BY_RUN.items():
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} (run_id)")


class Projections:
    """The registered projections of one catalog database, and their bookkeeping."""

    def __init__(self, conn: sqlite3.Connection, projections: Sequence[Projection]):
        names = [p.name for p in projections]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"projections need distinct, non-empty names, not {names}")
        for p in projections:
            if p.stream not in STREAMS:
                raise ValueError(f"projection {p.name} folds {p.stream!r}; streams are {', '.join(STREAMS)}")
        self.conn = conn
        self.all: tuple[Projection, ...] = tuple(projections)
        self._by_stream = {s: [p for p in self.all if p.stream == s] for s in STREAMS}

    def of(self, stream: str, *, lazy: Collection[str] = ()) -> list[Projection]:
        """The eager projections of ``stream`` and its lazy ones named in ``lazy``."""
        return [p for p in self._by_stream[stream] if p.eager or p.name in lazy]

    def lazy(self) -> list[Projection]:
        """The lazy projections (see the module contract)."""
        return [p for p in self.all if not p.eager]

    def get(self, name: str) -> Projection | None:
        return next((p for p in self.all if p.name == name), None)

    # -- opening ----------------------------------------------------------------------------

    def open(self) -> list[str]:
        """Bring the bookkeeping and every projection's schema to this code's version; return
        the names of the projections that were (re)built (see the module contract)."""
        conn = self.conn
        if conn.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
            with transaction(conn):
                if conn.execute("PRAGMA user_version").fetchone()[0] != FORMAT:
                    for table in sorted(table_names(conn)):  # IF EXISTS: a virtual table drops its shadows
                        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
                    _m001_bookkeeping(conn)
                    conn.execute(f"PRAGMA user_version={FORMAT}")
        _index_by_run(conn)
        stored = dict(conn.execute("SELECT name, version FROM projections").fetchall())
        rebuilt = []
        for p in self.all:
            if stored.get(p.name) != p.version:
                with transaction(conn):
                    row = conn.execute("SELECT version FROM projections WHERE name=?", [p.name]).fetchone()
                    if (row[0] if row else None) != p.version:
                        self._reset(p)
                        rebuilt.append(p.name)
            migrate(conn, p.name, p.migrations)
        return rebuilt

    def _reset(self, p: Projection) -> None:
        conn = self.conn
        existing = table_names(conn)
        for table in p.tables:
            if table in existing:
                conn.execute(f'DROP TABLE "{table}"')
        conn.execute("DELETE FROM migrations WHERE owner=?", [p.name])
        for table in ("positions", "projection_errors"):
            conn.execute(f"DELETE FROM {table} WHERE projection=?", [p.name])
        conn.execute("INSERT OR REPLACE INTO projections (name, version) VALUES (?, ?)", [p.name, p.version])

    # -- positions --------------------------------------------------------------------------

    def positions(self, run_id: str) -> dict[str, int]:
        """The position of every projection that folded some of ``run_id``."""
        return dict(self.conn.execute("SELECT projection, seq FROM positions WHERE run_id=?", [run_id]).fetchall())

    def all_positions(self) -> dict[tuple[str, str], int]:
        """``{(projection, run_id): seq}`` for every run."""
        return {(p, r): s for p, r, s in self.conn.execute("SELECT projection, run_id, seq FROM positions")}

    def start(self, run_id: str, stream: str, *, lazy: Collection[str] = ()) -> int | None:
        """The first seq some working projection of ``stream`` (and its lazy ones named
        in ``lazy``) still needs, or None when no projection folds the stream or all of them
        failed on this run."""
        pos = self.positions(run_id)
        failed = self.failed(run_id)
        active = [pos.get(p.name, 0) for p in self.of(stream, lazy=lazy) if p.name not in failed]
        return min(active) + 1 if active else None

    # -- folding ----------------------------------------------------------------------------

    def apply(self, run_id: str, stream: str, records: Sequence[Record], *,
              lazy: Collection[str] = ()) -> bool:
        """Fold contiguous ``records`` of ``stream`` into every eager projection of that stream
        (and into its lazy ones named in ``lazy``).

        Returns False, folding nothing, if some projection's position is below
        ``records[0].seq - 1`` (read the gap from the segments and call again).
        """
        projections = self.of(stream, lazy=lazy)
        if not records or not projections:
            return True
        first, last = records[0].seq, records[-1].seq
        conn = self.conn
        with transaction(conn):
            pos = self.positions(run_id)
            failed = self.failed(run_id)
            todo = []
            for p in projections:
                at = pos.get(p.name, 0)
                if p.name in failed or at >= last:
                    continue
                if at < first - 1:
                    return False
                todo.append((p, at))
            for p, at in todo:
                chunk = records[at - first + 1:] if at >= first else records
                try:
                    with transaction(conn):
                        p.apply(conn, run_id, chunk)
                        conn.execute("INSERT OR REPLACE INTO positions (projection, run_id, seq) VALUES (?, ?, ?)",
                                     [p.name, run_id, last])
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded; the run is marked, others go on
                    conn.execute("INSERT OR REPLACE INTO projection_errors (projection, run_id, seq, message) "
                                 "VALUES (?, ?, ?, ?)", [p.name, run_id, self._failing_seq(p, run_id, chunk),
                                                         f"{type(exc).__name__}: {exc}"])
        return True

    def _failing_seq(self, p: Projection, run_id: str, records: Sequence[Record]) -> int:
        """The seq of ``records`` that ``p.apply`` raised on: folded again through a cursor that
        notes each seq, and undone (the fast path hands the plain sequence, so a fold that
        succeeds pays nothing for this). An ``apply`` that does not raise again names the first."""
        cursor = _Cursor(records)
        try:
            with transaction(self.conn):
                p.apply(self.conn, run_id, cursor)
                raise _Undo
        except _Undo:
            return records[0].seq
        except sqlite3.OperationalError:
            raise
        except Exception:  # noqa: BLE001 - the failure already being recorded
            return cursor.seq

    # -- failures and forgetting ------------------------------------------------------------

    def mark_damaged(self, run_id: str, stream: str, seq: int, message: str) -> None:
        """Record that ``stream`` of ``run_id`` cannot be read from ``seq`` on: every projection of
        that stream that has not failed already stops there (a ``projection_errors`` row whose
        message starts with :data:`DAMAGED`), until the run is re-indexed."""
        with transaction(self.conn) as conn:
            failed = self.failed(run_id)
            for p in self._by_stream[stream]:
                if p.name not in failed:
                    conn.execute("INSERT OR REPLACE INTO projection_errors (projection, run_id, seq, message) "
                                 "VALUES (?, ?, ?, ?)", [p.name, run_id, seq, DAMAGED + message])

    def failed(self, run_id: str) -> set[str]:
        rows = self.conn.execute("SELECT projection FROM projection_errors WHERE run_id=?", [run_id])
        return {r[0] for r in rows}

    def errors(self, run_id: str | None = None) -> list[ProjectionFailure]:
        """Failures of the registered projections, of one run or all, by run and projection."""
        sql = "SELECT projection, run_id, seq, message FROM projection_errors"
        rows = self.conn.execute(sql + (" WHERE run_id=?" if run_id else "") + " ORDER BY run_id, projection",
                                 [run_id] if run_id else [])
        names = {p.name for p in self.all}
        out, damaged = [], set()
        for r in rows:
            failure = ProjectionFailure(*r)
            if r[0] not in names or (failure.damaged and (r[1], r[2]) in damaged):
                continue  # one damage is one failure, however many projections it stopped
            if failure.damaged:
                damaged.add((r[1], r[2]))
            out.append(failure)
        return out

    def forget(self, run_id: str) -> None:
        """Delete a run from every projection and from the bookkeeping (one transaction)."""
        with transaction(self.conn) as conn:
            for p in self.all:
                p.forget(conn, run_id)
            conn.execute("DELETE FROM positions WHERE run_id=?", [run_id])
            conn.execute("DELETE FROM projection_errors WHERE run_id=?", [run_id])

    def dump(self) -> dict[str, list[tuple]]:
        """Every row of every eager projection's tables and of their ``positions``, sorted."""
        out = {}
        for p in self.all:
            for table in p.tables if p.eager else ():
                out[table] = sorted(tuple(r) for r in self.conn.execute(f"SELECT * FROM {table}"))
        lazy = {p.name for p in self.lazy()}
        out["positions"] = sorted(tuple(r) for r in self.conn.execute("SELECT * FROM positions") if r[0] not in lazy)
        return out
