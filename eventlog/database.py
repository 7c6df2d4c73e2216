"""The catalog's SQLite connection: one way to open it, one way to write it, one way to migrate it.

Contracts:

* :func:`connect` opens a database in WAL mode with ``synchronous=NORMAL`` and a
  busy timeout of ``wait_s`` seconds (default :data:`BUSY_TIMEOUT_S`; the switch to WAL retries
  for as long, and every write of the connection waits as long for the lock), in autocommit
  mode (``isolation_level=None``): nothing is ever in a transaction except inside
  :func:`transaction`. Given ``on_wait``, it is told (once per wait, with a sentence saying
  so) when opening the database or taking its write lock has waited :data:`NOTICE_AFTER_S` for
  another process, so a command is not silent for the 30 s it may wait.
* :func:`transaction` is the only way anything writes. The outermost block is ``BEGIN
  IMMEDIATE``: it takes the write lock before it reads, so a writer waits for another process's
  transaction (up to the busy timeout) instead of failing. A deferred ``BEGIN`` (what
  sqlite-utils' ``Database.atomic()`` issues) that reads and then writes fails at once with
  ``database is locked`` when another process committed in between, whatever the busy timeout
  (SQLite cannot upgrade a stale read snapshot). Nested blocks are savepoints: an exception
  rolls back the block it leaves and nothing outside it. The connection may be shared by the
  threads of one process; a per-connection lock makes their transactions take turns, and a
  ``fork`` waits for the one under way (a child must open its own connection: SQLite's rule).
* :func:`migrate` applies an owner's forward-only migrations (``m001_…``) that are not yet
  recorded in ``migrations``, each in its own transaction together with its record, so two
  processes opening the same database apply each migration exactly once.
* :func:`connect_copy` is the catalog of a store that cannot be written (a read-only mount, an
  archive): a private in-memory copy of the file, read without writing anything beside it
  (no ``-wal`` or ``-shm`` is made); whatever is then written to it is gone when it closes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

BUSY_TIMEOUT_S = 30.0
"""How long opening a database or taking its write lock waits for other processes, unless
:func:`connect` is told otherwise (the CLI's ``--lock-wait``)."""
NOTICE_AFTER_S = 1.0
"""How long a wait lasts before ``on_wait`` is told of it."""

Migration = Callable[[sqlite3.Connection], None]
"""A forward-only schema step; its ``__name__`` (``m001_runs``) is what ``migrations`` records."""


class _Guard:
    """The lock that makes one connection's transactions take turns, and the nesting depth of
    the thread that holds it (savepoint names)."""

    __slots__ = ("busy_ms", "depth", "lock", "on_wait")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0
        self.on_wait: Callable[[str], None] | None = None
        self.busy_ms = _BUSY_MS


_GUARDS: dict[int, _Guard] = {}
_GUARDS_MU = threading.Lock()


def connect(path: str | os.PathLike, *, on_wait: Callable[[str], None] | None = None,
            wait_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to the database at ``path`` (created if absent) that waits up to ``wait_s``
    seconds for another process; ``on_wait(sentence)`` is told of a wait longer than
    :data:`NOTICE_AFTER_S`. See the module contract."""
    conn = sqlite3.connect(path, timeout=wait_s, isolation_level=None, check_same_thread=False)
    try:
        guard = _guard(conn)
        guard.busy_ms = busy_ms = int(wait_s * 1000)
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        guard.on_wait = on_wait if busy_ms > _NOTICE_MS else None  # a shorter wait is not announced
        notice = guard.on_wait and (lambda: on_wait(_waiting(path, "open", wait_s)))
        _set_wal(conn, wait_s, notice)
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        close(conn)
        raise
    return conn


_BUSY_MS, _NOTICE_MS = int(BUSY_TIMEOUT_S * 1000), int(NOTICE_AFTER_S * 1000)


def _waiting(path: str | os.PathLike, what: str, wait_s: float) -> str:
    return (f"{path} is held by another process (an agtrace command writing it?); waiting up to "
            f"{wait_s:g} s to {what} it")


def _set_wal(conn: sqlite3.Connection, patience: float, notice: Callable[[], None] | None = None) -> None:
    """Switch to WAL, waiting out other processes that create or close the same database.

    SQLite answers ``database is locked`` here at once, without calling the busy handler, while
    another connection holds the file's exclusive lock to create it or to checkpoint it as its
    last connection closes; so this retries for up to ``patience`` seconds.
    """
    started = time.monotonic()
    deadline, busy_ms = started + patience, int(patience * 1000)
    pause = 0.005
    if notice is not None:  # the busy handler's wait too is cut at a second to say so
        conn.execute(f"PRAGMA busy_timeout={_NOTICE_MS}")
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            if notice is not None and time.monotonic() - started >= NOTICE_AFTER_S:
                notice()
                notice = None
                conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    finally:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")


def connect_copy(path: str | os.PathLike, wait_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A private in-memory copy of the database at ``path`` (empty when there is none, or when
    it is not an SQLite database), opened like :func:`connect` but without writing anything
    on disk: for a directory that cannot be written.

    The file is read with ``mode=ro``, which sees the committed pages of a ``-wal`` that is there
    (SQLite needs an existing ``-shm`` for that); where that fails (no ``-shm`` and none can be
    made) it is read ``immutable``, without the ``-wal``: an older but consistent state, which
    the caller catches up from the segments, in memory.
    """
    import urllib.parse  # only here: most commands never read a store they cannot write

    copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    if os.path.exists(path):
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        for flags in ("", "&immutable=1"):
            try:
                disk = sqlite3.connect(uri + flags, uri=True, timeout=wait_s)
            except sqlite3.OperationalError:
                continue
            try:
                disk.backup(copy)
                break
            except sqlite3.OperationalError:
                continue
            except sqlite3.DatabaseError:  # not a database: derived data, rebuilt in memory
                copy.close()
                copy = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                break
            finally:
                disk.close()
    return copy


def close(conn: sqlite3.Connection) -> None:
    """Close a connection opened by :func:`connect`."""
    with _GUARDS_MU:
        _GUARDS.pop(id(conn), None)
    conn.close()


def _guard(conn: sqlite3.Connection) -> _Guard:
    with _GUARDS_MU:
        guard = _GUARDS.get(id(conn))
        if guard is None:
            guard = _GUARDS[id(conn)] = _Guard()
        return guard


_FORK_WAIT_S = 5.0
_held_over_fork: list[threading.RLock] = []


def _before_fork() -> None:
    """Hold every connection's lock (waiting up to :data:`_FORK_WAIT_S` for each) and the guards'
    lock across a ``fork``: a child forked while another thread was inside a transaction got
    SQLite's locks, and ours, copied held, and nothing there would release them (a harness's
    ``multiprocessing`` pool beside a writer folding projections: the child waited forever)."""
    for guard in list(_GUARDS.values()):  # before _GUARDS_MU: a transaction takes it to nest
        if guard.lock.acquire(timeout=_FORK_WAIT_S):
            _held_over_fork.append(guard.lock)
    _GUARDS_MU.acquire()


def _after_fork() -> None:
    _GUARDS_MU.release()
    while _held_over_fork:
        _held_over_fork.pop().release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (a savepoint when nested); roll back on any exception."""
    guard = _guard(conn)
    with guard.lock:
        guard.depth += 1
        try:
            if guard.depth > 1:
                yield from _savepoint(conn, f"sp{guard.depth}")
            else:
                yield from _immediate(conn, guard)
        finally:
            guard.depth -= 1


def _immediate(conn: sqlite3.Connection, guard: _Guard) -> Iterator[sqlite3.Connection]:
    _begin_immediate(conn, guard)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT or an error may have ended it already
            conn.execute("ROLLBACK")
        raise


def _begin_immediate(conn: sqlite3.Connection, guard: _Guard) -> None:
    """``BEGIN IMMEDIATE``, waiting up to the busy timeout for another process's write lock;
    with ``on_wait``, a first try waits :data:`NOTICE_AFTER_S`, then ``on_wait`` is told and
    the rest of the timeout is waited."""
    on_wait, busy_ms = guard.on_wait, guard.busy_ms
    if on_wait is None:
        conn.execute("BEGIN IMMEDIATE")
        return
    conn.execute(f"PRAGMA busy_timeout={_NOTICE_MS}")
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        on_wait(_waiting(_file_of(conn), "write", busy_ms / 1000))
        conn.execute(f"PRAGMA busy_timeout={busy_ms - _NOTICE_MS}")
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")


def _file_of(conn: sqlite3.Connection) -> str:
    return next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "the database")


def _savepoint(conn: sqlite3.Connection, name: str) -> Iterator[sqlite3.Connection]:
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # an error may have ended the whole transaction
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def migrate(conn: sqlite3.Connection, owner: str, migrations: Sequence[Migration]) -> list[str]:
    """Apply ``owner``'s migrations not yet recorded, in order; return the names applied.

    Each runs in its own transaction with its ``migrations`` row, after checking again inside
    the transaction that no other process applied it meanwhile.
    """
    done = applied(conn, owner)
    ran = []
    for migration in migrations:
        name = migration.__name__
        if name in done:
            continue
        with transaction(conn):
            if conn.execute("SELECT 1 FROM migrations WHERE owner=? AND name=?", [owner, name]).fetchone():
                continue
            migration(conn)
            conn.execute("INSERT INTO migrations (owner, name) VALUES (?, ?)", [owner, name])
        ran.append(name)
    return ran


def applied(conn: sqlite3.Connection, owner: str) -> set[str]:
    """Names of ``owner``'s migrations recorded in ``migrations``."""
    return {r[0] for r in conn.execute("SELECT name FROM migrations WHERE owner=?", [owner])}


def table_names(conn: sqlite3.Connection) -> set[str]:
    """Every table of the database (SQLite's own excluded)."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
    return {r[0] for r in rows}
