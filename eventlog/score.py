"""The scores projection: every ``scored`` event of every run's score stream, in ``scores``.

One row per event of ``runs/<id>/scores/``, keyed by (run, seq), with the result's fields
(migrations ``m001_scores``… of projection ``scores``). It serves two lookups: "was (tree,
scorer digest) already scored, anywhere?" (:func:`find_score`, for reuse) and "what were a
run's parts scored?" (:func:`score_rows`, :func:`scored_parts`). Like every projection it is
maintained as the score stream is written and rebuilt by ``agtrace reindex``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .events import Record, Scored
from .projection import Projection

if TYPE_CHECKING:
    from .store import Store

COLUMNS = (
    "run_id", "seq", "ts", "scorer", "scorer_digest", "tree_id", "scored_part", "value", "passed",
    "failed", "total", "status", "exit_code", "duration_ms", "reused_from", "output_tail", "final",
)


def m001_scores(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE scores (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, scorer TEXT, "
        "scorer_digest TEXT, tree_id TEXT, scored_part INTEGER, value REAL, passed INTEGER, "
        "failed INTEGER, total INTEGER, status TEXT, exit_code INTEGER, duration_ms REAL, "
        "reused_from TEXT, PRIMARY KEY (run_id, seq))"
    )
    conn.execute("CREATE INDEX scores_by_tree ON scores (scorer_digest, tree_id)")
    conn.execute("CREATE INDEX scores_by_part ON scores (run_id, scorer, scored_part)")


def m002_output_tail(conn: sqlite3.Connection) -> None:
    """The end of the scorer's output, so that ``scores`` can show why a scorer failed."""
    conn.execute("ALTER TABLE scores ADD COLUMN output_tail TEXT")


def m003_final(conn: sqlite3.Connection) -> None:
    """Whether the tree scored is the run's final tree rather than ``scored_part``'s own
    (:attr:`Scored.final`): the run's score is the final tree's, and a part's is its own tree's.
    The projection's version was raised with it, so the rows are folded again from the events."""
    conn.execute("ALTER TABLE scores ADD COLUMN final INTEGER NOT NULL DEFAULT 0")


class ScoresProjection(Projection):
    """The ``scores`` table (see the module docstring)."""

    name = "scores"
    version = 4  # 4: a score of a tree other than its part's own is final (older rescores said part N)
    stream = "scores"
    tables = ("scores",)
    migrations = (m001_scores, m002_output_tail, m003_final)

    def apply(self, conn: sqlite3.Connection, run_id: str, records: Iterable[Record]) -> None:
        scored = [rec for rec in records if type(rec.event) is Scored]
        trees = _part_trees(conn, run_id) if any(not rec.event.final for rec in scored) else {}
        rows = [_row(run_id, rec, trees) for rec in scored]
        conn.executemany(f"INSERT INTO scores ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)


def _part_trees(conn: sqlite3.Connection, run_id: str) -> dict[int, str]:
    """Each part's own tree, from the catalog's ``parts`` table (folded from the run's events,
    which come before its scores); empty when there is no such table (the projection alone)."""
    try:
        return {part: tree for part, tree in conn.execute(
            "SELECT part, tree_id FROM parts WHERE run_id=? AND tree_id IS NOT NULL AND tree_id != ''", [run_id])}
    except sqlite3.OperationalError:
        return {}


def _row(run_id: str, rec: Record, trees: dict[int, str]) -> tuple:
    """The row of a ``scored`` event. A result not marked ``final`` whose tree is not its part's
    own is the final tree's: a `rescore --parts last` from before :attr:`Scored.final` recorded
    the run's final tree under its last part's number, and it must not pass for that part's."""
    ev: Scored = rec.event
    own = trees.get(ev.scored_part) if ev.scored_part is not None else None
    final = ev.final or (own is not None and ev.tree_id != own)
    return (run_id, rec.seq, rec.ts, ev.scorer, ev.scorer_digest, ev.tree_id, ev.scored_part, ev.value,
            ev.passed, ev.failed, ev.total, ev.status, ev.exit_code, ev.duration_ms, ev.reused_from,
            ev.output_tail, int(final))


def _conn(store: Store) -> sqlite3.Connection:
    return store.catalog.conn


def score_rows(store: Store, run_id: str, scorer: str | None = None) -> list[dict]:
    """Every score of a run (optionally one scorer's), in the order they were appended, with
    ``final`` a bool; the run's score stream is folded first."""
    store.sync(run_id)
    sql, args = "SELECT * FROM scores WHERE run_id=?", [run_id]
    if scorer:
        sql, args = sql + " AND scorer=?", [run_id, scorer]
    return [{**row, "final": bool(row["final"])} for row in store.catalog.query(sql + " ORDER BY seq", args)]


def find_score(store: Store, scorer_digest: str, tree_id: str, scorer: str | None = None) -> dict | None:
    """The original (not itself reused) result for this (digest, tree) pair, oldest first, among
    the scores already folded (call ``store.sync`` on the runs that matter first); with
    ``scorer``, only that scorer name's (results are reused within one name only)."""
    sql, args = "SELECT * FROM scores WHERE scorer_digest=? AND tree_id=? AND reused_from=''", [scorer_digest, tree_id]
    if scorer is not None:
        sql, args = sql + " AND scorer=?", [*args, scorer]
    rows = list(store.catalog.query(sql + " ORDER BY ts, run_id, seq LIMIT 1", args))
    return rows[0] if rows else None


def scored_parts(store: Store, run_id: str, scorer_digest: str,
                 scorer: str | None = None) -> set[tuple[int | None, str, bool]]:
    """(part, tree, final) of a run already scored with this digest (what a resumed rescore
    skips), by scorer name ``scorer`` when given; the run's score stream is folded first. A
    final tree scored by an older rescore as its part (no ``final``) is among the final ones
    (see :func:`_row`): the next ``--parts last`` skips it."""
    store.sync(run_id)
    sql = "SELECT scored_part, tree_id, final FROM scores WHERE run_id=? AND scorer_digest=?"
    args = [run_id, scorer_digest]
    if scorer is not None:
        sql, args = sql + " AND scorer=?", [*args, scorer]
    return {(p, t, bool(f)) for p, t, f in _conn(store).execute(sql, args)}


def latest_score(rows: list[dict], scorer: str | None = None) -> float | None:
    """A run's score from its :func:`score_rows`: the value of the newest result of its final
    tree when one was scored apart from its last part (``final``), else of its highest scored
    part (of any scorer, or of ``scorer``), None if no result has a value. The one rule: the
    runs index (``agtrace view``) sorts and filters by the same in SQL, and ``compare`` and the
    report show it as ``score``. Not the last appended: a part whose result was reused is
    appended with its original, before parts scored after it."""
    valued = [r for r in rows if r["value"] is not None and (scorer is None or r["scorer"] == scorer)]
    if not valued:
        return None
    return max(valued, key=_score_order)["value"]


def _score_order(row: dict) -> tuple:
    """Which result is a run's score (the largest): a final tree's over any part's, then the
    higher part, then the newer; the index's SQL orders by the same, descending."""
    return (bool(row["final"]), -1 if row["scored_part"] is None else row["scored_part"], row["seq"])


def score_series(store: Store, run_id: str) -> dict[str, list[dict]]:
    """Each scorer's results over a run's parts, by scorer name (sorted): the newest result per
    part, in part order, then the newest of the final tree when it was scored apart from the
    last part, as ``{"part", "final", "value", "passed", "total", "status", "tree_id"}`` (what a
    per-scorer plot or table draws; a failed result has status ``error``/``timeout`` and no
    value). The last item is the scorer's result for the run."""
    latest: dict[str, dict[tuple, dict]] = {}
    for row in score_rows(store, run_id):
        latest.setdefault(row["scorer"], {})[(row["final"], row["scored_part"])] = row
    return {
        name: [{"part": part, "final": final, "value": r["value"], "passed": r["passed"], "total": r["total"],
                "status": r["status"], "tree_id": r["tree_id"]}
               for (final, part), r in sorted(by_part.items(), key=lambda kv: _score_order(kv[1])[:2])]
        for name, by_part in sorted(latest.items())
    }
