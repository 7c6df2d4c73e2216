"""The ``scores`` table of the catalog: every ``scored`` event of every run's score stream.

A projection like the rest of the catalog: one row per event of ``runs/<id>/scores/``, keyed by
(run, seq); the highest seq of a run is the fold's position, so :func:`sync_scores` is
idempotent and resumes; :func:`rebuild_scores` drops the rows and folds every stream again,
row for row identical. It serves two lookups: "was (tree, scorer digest) already scored,
anywhere?" (dedupe, by ``scorer_digest, tree_id``) and "what was part N scored?" (by run).

The table is created by migration ``m201_scores`` (2xx: migrations owned by ``agtrace.replay``),
recorded in the catalog's ``migrations`` table like the eventlog's own ``m0xx`` ones.
"""

from __future__ import annotations

from agtrace.eventlog import Scored, Store

MIGRATION = "m201_scores"
COLUMNS = (
    "run_id",
    "seq",
    "ts",
    "scorer",
    "scorer_digest",
    "tree_id",
    "scored_part",
    "value",
    "passed",
    "failed",
    "total",
    "status",
    "exit_code",
    "duration_ms",
    "reused_from",
)


def m201_scores(conn) -> None:
    conn.execute(
        "CREATE TABLE scores (run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER, scorer TEXT, "
        "scorer_digest TEXT, tree_id TEXT, scored_part INTEGER, value REAL, passed INTEGER, "
        "failed INTEGER, total INTEGER, status TEXT, exit_code INTEGER, duration_ms REAL, "
        "reused_from TEXT, PRIMARY KEY (run_id, seq))"
    )
    conn.execute("CREATE INDEX scores_by_tree ON scores (scorer_digest, tree_id)")
    conn.execute("CREATE INDEX scores_by_part ON scores (run_id, scorer, scored_part)")


def ensure_table(store: Store) -> None:
    """Apply ``m201_scores`` once (recorded in ``migrations``); safe against a concurrent caller."""
    conn = store.catalog.db.conn
    if conn.execute("SELECT 1 FROM migrations WHERE name=?", [MIGRATION]).fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not conn.execute("SELECT 1 FROM migrations WHERE name=?", [MIGRATION]).fetchone():
            m201_scores(conn)
            conn.execute("INSERT INTO migrations VALUES (?)", [MIGRATION])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def add_rows(store: Store, run_id: str, records) -> None:
    """Fold ``Record``s of a run's score stream into the table (one transaction; rows already
    there are kept, so folding twice is harmless)."""
    rows = [_row(run_id, rec) for rec in records if isinstance(rec.event, Scored)]
    if not rows:
        return
    conn = store.catalog.db.conn
    marks = ", ".join("?" * len(COLUMNS))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            f"INSERT OR IGNORE INTO scores ({', '.join(COLUMNS)}) VALUES ({marks})", rows
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def sync_scores(store: Store, run_id: str) -> None:
    """Bring the table up to date with a run's score stream (cheap when it already is)."""
    ensure_table(store)
    row = store.catalog.db.conn.execute(
        "SELECT max(seq) FROM scores WHERE run_id=?", [run_id]
    ).fetchone()
    done = row[0] or 0
    if (store.run_dir(run_id) / "scores").is_dir():
        add_rows(store, run_id, store.read(run_id, done + 1, stream="scores"))


def rebuild_scores(store: Store) -> int:
    """Drop every row and fold every run's score stream again; returns the number of rows."""
    ensure_table(store)
    store.catalog.db.conn.execute("DELETE FROM scores")
    for run_id in store.run_ids():
        sync_scores(store, run_id)
    return store.catalog.db.conn.execute("SELECT count(*) FROM scores").fetchone()[0]


def find_result(store: Store, scorer_digest: str, tree_id: str) -> dict | None:
    """The original (not itself reused) result for this (digest, tree) pair, oldest first."""
    rows = list(
        store.catalog.db.query(
            "SELECT * FROM scores WHERE scorer_digest=? AND tree_id=? AND reused_from='' "
            "ORDER BY ts, run_id, seq LIMIT 1",
            [scorer_digest, tree_id],
        )
    )
    return rows[0] if rows else None


def scored_parts(store: Store, run_id: str, scorer_digest: str) -> set[tuple[int | None, str]]:
    """(part, tree) pairs of a run already scored with this digest (what a resume skips)."""
    rows = store.catalog.db.conn.execute(
        "SELECT scored_part, tree_id FROM scores WHERE run_id=? AND scorer_digest=?",
        [run_id, scorer_digest],
    )
    return {(p, t) for p, t in rows}


def score_rows(store: Store, run_id: str, scorer: str | None = None) -> list[dict]:
    """Every score of a run (optionally one scorer's), in the order they were appended."""
    sync_scores(store, run_id)
    sql, args = "SELECT * FROM scores WHERE run_id=?", [run_id]
    if scorer:
        sql, args = sql + " AND scorer=?", [run_id, scorer]
    return list(store.catalog.db.query(sql + " ORDER BY seq", args))


def dump(store: Store) -> list[tuple]:
    """Every row, sorted: what :func:`rebuild_scores` must reproduce."""
    ensure_table(store)
    return sorted(tuple(r) for r in store.catalog.db.conn.execute("SELECT * FROM scores"))


def _row(run_id: str, rec) -> tuple:
    ev: Scored = rec.event
    return (
        run_id,
        rec.seq,
        rec.ts,
        ev.scorer,
        ev.scorer_digest,
        ev.tree_id,
        ev.scored_part,
        ev.value,
        ev.passed,
        ev.failed,
        ev.total,
        ev.status,
        ev.exit_code,
        ev.duration_ms,
        ev.reused_from,
    )
