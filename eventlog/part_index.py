"""The part index: what reading part N needs, kept as events are written, so that it costs what
part 1 costs.

The run catalog's ``parts`` table already maps a part to its seq range and tree. This projection
adds the one fact a part's description needs from before the part: the latest test result.

``test_results``
    one row per ``tests_ran`` event: run, seq, part (or null), suite and counts. "The tests at
    part N" is the row with the highest seq at or below part N's last seq: one indexed lookup
    instead of a scan of events 1..N.

Reads (:func:`latest_test_result`, :func:`previous_tree`, :func:`previous_tree_part`) are single indexed queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .events import Record, TestsRan
from .projection import Projection


def m001_test_results(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE test_results (run_id TEXT NOT NULL, seq INTEGER NOT NULL, part INTEGER, suite TEXT, "
        "passed INTEGER, failed INTEGER, errors INTEGER, total INTEGER, PRIMARY KEY (run_id, seq))"
    )


class PartIndexProjection(Projection):
    """The ``test_results`` table (see the module docstring)."""

    name = "part_index"
    version = 1
    stream = "events"
    tables = ("test_results",)
    migrations = (m001_test_results,)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        rows = [(run_id, r.seq, r.part, r.event.suite, r.event.passed, r.event.failed, r.event.errors,
                 r.event.total) for r in records if type(r.event) is TestsRan]
        if rows:
            conn.executemany("INSERT OR REPLACE INTO test_results (run_id, seq, part, suite, passed, failed, "
                             "errors, total) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def latest_test_result(conn: sqlite3.Connection, run_id: str, at_seq: int) -> dict | None:
    """The last test result of ``run_id`` at or before ``at_seq`` (``part``, ``suite``,
    ``passed``, ``failed``, ``errors``, ``total``), or None."""
    row = conn.execute(
        "SELECT part, suite, passed, failed, errors, total FROM test_results WHERE run_id=? AND seq<=? "
        "ORDER BY seq DESC LIMIT 1", [run_id, at_seq]).fetchone()
    if row is None:
        return None
    return dict(zip(("part", "suite", "passed", "failed", "errors", "total"), row, strict=True))


def previous_tree_part(conn: sqlite3.Connection, run_id: str, part: int) -> int | None:
    """The last part before ``part`` whose row recorded a tree (None if none did)."""
    row = _previous_tree_row(conn, run_id, part)
    return row[0] if row else None


def previous_tree(conn: sqlite3.Connection, run_id: str, part: int) -> str:
    """The tree of the last part before ``part`` that recorded one ("" if none did)."""
    row = _previous_tree_row(conn, run_id, part)
    return row[1] if row else ""


def _previous_tree_row(conn: sqlite3.Connection, run_id: str, part: int) -> tuple[int, str] | None:
    return conn.execute(
        "SELECT part, tree_id FROM parts WHERE run_id=? AND part<? AND coalesce(tree_id, '')<>'' "
        "ORDER BY part DESC LIMIT 1", [run_id, part]).fetchone()
