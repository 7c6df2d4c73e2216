"""The projection mechanism: registry, write-time folding, versions, failures, concurrency, and
a catalog made by agtrace before projections existed."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from agtrace.eventlog import (
    CatalogProjection,
    ErrorOccurred,
    MessageAdded,
    MetricsProjection,
    PartEnded,
    Projection,
    RunEnded,
    RunStarted,
    Store,
    Usage,
    UsageReported,
    default_projections,
    run_costs,
    run_metrics,
    score_rows,
)
from agtrace.eventlog.database import connect, transaction

from .conftest import REPO, run_agtrace

GOLDEN_CATALOG = REPO / "tests" / "golden" / "catalog-v0" / "store"
GOLDEN_RUN = "01JGOLDENV1000000000000000"


class Kinds(Projection):
    """A small projection of its own: events per kind per run."""

    name = "kinds"
    tables = ("kinds",)

    @staticmethod
    def m001_kinds(conn):
        conn.execute("CREATE TABLE kinds (run_id TEXT, kind TEXT, n INTEGER, PRIMARY KEY (run_id, kind))")

    migrations = (m001_kinds,)

    def apply(self, conn, run_id, records):
        for rec in records:
            conn.execute("INSERT INTO kinds VALUES (?, ?, 1) ON CONFLICT DO UPDATE SET n = n + 1",
                         [run_id, rec.kind])


class Exploding(Projection):
    """Raises on the first error event of a run."""

    name = "exploding"
    tables = ("seen",)

    @staticmethod
    def m001_seen(conn):
        conn.execute("CREATE TABLE seen (run_id TEXT PRIMARY KEY, n INTEGER)")

    migrations = (m001_seen,)

    def apply(self, conn, run_id, records):
        n = 0
        for rec in records:
            if isinstance(rec.event, ErrorOccurred):
                raise ValueError(f"cannot fold {rec.event.message!r}")
            n += 1
        conn.execute("INSERT INTO seen VALUES (?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n", [run_id, n])


def _run(store: Store, events, ended: bool = True) -> str:
    w = store.create_run(RunStarted(agent="a"))
    for ev, part in events:
        w.append(ev, part=part)
    if ended:
        w.append(RunEnded(status="completed"))
    store.close_writer(w)
    return w.run_id


def _usage(n: int):
    return UsageReported(usage=Usage(input=n))


def test_a_registered_projection_is_folded_as_events_are_written_and_rebuilt(tmp_path):
    store = Store(tmp_path / "s", projections=[*default_projections(), Kinds()])
    w = store.create_run(RunStarted(agent="a"))
    w.append(MessageAdded(role="assistant", text="x"), part=1)
    w.append(PartEnded(part_kind="message"), part=1)
    w.flush()
    counts = dict(store.catalog.conn.execute("SELECT kind, n FROM kinds WHERE run_id=?", [w.run_id]).fetchall())
    assert counts == {"run_started": 1, "message_added": 1, "part_ended": 1}
    store.close_writer(w)
    before = store.catalog.dump()
    assert store.reindex() == 1
    assert store.catalog.dump() == before
    assert store.catalog.conn.execute("SELECT name FROM migrations WHERE owner='kinds'").fetchall() == [("m001_kinds",)]
    with pytest.raises(ValueError, match="run catalog"):
        Store(tmp_path / "s", projections=[Kinds()])
    store.close()


def test_ls_of_indexed_runs_reads_no_segment(tmp_path):
    store = Store(tmp_path / "s")
    ids = [_run(store, [(_usage(10 * (n + 1)), None)]) for n in range(3)]
    run_costs(store)  # the lazy costs projection too, as the first `ls --json` leaves it
    store.close()
    for run_id in ids:  # every projection is up to date: nothing may need the events any more
        for seg in (tmp_path / "s" / "runs" / run_id / "events").iterdir():
            # garbage of the same size, in place, with the old mtime: unreadable, yet no stat
            # tells (a changed stat makes `ls` read the segment again, see test_store_truth.py)
            st = seg.stat()
            with open(seg, "r+b") as fh:
                fh.write(b"\0" * st.st_size)
            os.utime(seg, ns=(st.st_atime_ns, st.st_mtime_ns))
    listed = json.loads(run_agtrace(["ls", "--json"], tmp_path / "s", check=True).stdout)
    assert sorted(r["tokens"] for r in listed) == [10, 20, 30]  # (ls lists newest first)
    assert all(r["cost"]["calls"] == 1 for r in listed)


def test_a_version_change_rebuilds_that_projection_and_refolds_lazily(tmp_path):
    store = Store(tmp_path / "s")
    run_id = _run(store, [(_usage(7), 1), (PartEnded(part_kind="message"), 1)])
    before = store.catalog.dump()
    store.close()

    class MetricsV2(MetricsProjection):
        version = MetricsProjection.version + 1

    again = Store(tmp_path / "s", projections=[CatalogProjection(), MetricsV2()])
    assert again.catalog.rebuilt == ["metrics"]
    assert again.catalog.position(run_id, "metrics") == 0  # dropped; nothing refolded yet
    assert again.catalog.position(run_id, "catalog") == before["runs"][0][-2]
    assert run_metrics(again, run_id).tokens == 7  # the first read folds it
    assert again.catalog.dump()["run_metrics"] == before["run_metrics"]
    again.close()
    third = Store(tmp_path / "s", projections=[CatalogProjection(), MetricsV2()])
    assert third.catalog.rebuilt == []
    third.close()


def test_a_failing_projection_marks_its_run_and_the_rest_goes_on(tmp_path):
    store = Store(tmp_path / "s", projections=[*default_projections(), Exploding()])
    bad = _run(store, [(_usage(5), None), (ErrorOccurred(message="boom"), None), (_usage(6), None)])
    good = _run(store, [(_usage(1), None)])
    info = store.info(bad)
    assert len(info.projection_errors) == 1
    assert "exploding projection failed on seq 3" in info.projection_errors[0]
    assert "ValueError: cannot fold 'boom'" in info.projection_errors[0]
    assert store.info(good).projection_errors == ()
    assert run_metrics(store, bad).tokens == 11 and run_metrics(store, good).tokens == 1  # others unaffected
    seen = dict(store.catalog.conn.execute("SELECT run_id, n FROM seen").fetchall())
    assert seen == {bad: 1, good: 3}  # its rows stop before the batch it failed on (run_started alone)
    assert [e.seq for e in store.catalog.errors()] == [3]
    listed = json.loads(run_agtrace(["ls", "--json"], tmp_path / "s", check=True).stdout)
    assert [r["projection_errors"] for r in listed] == [[], []]  # the CLI's store has no such projection
    store.reindex()
    assert [(e.run_id, e.seq) for e in store.catalog.errors()] == [(bad, 3)]  # retried, and failed again
    store.close()


def test_an_older_catalog_is_rebuilt_on_open(tmp_path):
    """tests/golden/catalog-v0 was made by main before projections (tests/golden/SOURCES.md)."""
    shutil.copytree(GOLDEN_CATALOG, tmp_path / "s")
    old = sqlite3.connect(tmp_path / "s" / "catalog.db")
    assert "indexed_seq" in [r[1] for r in old.execute("PRAGMA table_info(runs)")]
    old.close()
    proc = run_agtrace(["ls", "--json"], tmp_path / "s")  # (the golden id is not a ULID: no `show` by id)
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    (listed,) = json.loads(proc.stdout)
    assert (listed["id"], listed["tokens"], listed["parts"], listed["status"]) == (GOLDEN_RUN, 17, 1, "completed")
    store = Store(tmp_path / "s")
    m = run_metrics(store, GOLDEN_RUN)
    assert (m.tokens, m.tokens_input, m.events, m.parts, m.tool_calls) == (17, 10, 20, 1, 1)
    assert [(r["scored_part"], r["value"]) for r in score_rows(store, GOLDEN_RUN)] == [(1, 0.75)]
    columns = [r[1] for r in store.catalog.conn.execute("PRAGMA table_info(runs)")]
    assert "indexed_seq" not in columns
    assert store.catalog.conn.execute("PRAGMA user_version").fetchone()[0] == 1
    store.close()


def _count(path: str, n: int, errors) -> None:
    conn = connect(path)
    failed = 0
    for _ in range(n):
        try:
            with transaction(conn):  # read, then write: the pattern a deferred BEGIN cannot serve
                v = conn.execute("SELECT coalesce(max(v), 0) FROM t").fetchone()[0]
                conn.execute("INSERT INTO t VALUES (?)", [v + 1])
        except sqlite3.OperationalError:
            failed += 1
    errors.put(failed)


def test_transactions_of_several_processes_wait_for_each_other(tmp_path):
    path = str(tmp_path / "t.db")
    conn = connect(path)
    conn.execute("CREATE TABLE t (v INTEGER)")
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_count, args=(path, 150, errors)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [errors.get(timeout=5) for _ in procs] == [0, 0, 0]
    assert conn.execute("SELECT count(*), max(v) FROM t").fetchone() == (450, 450)  # no lost update
    with transaction(conn):
        with pytest.raises(ZeroDivisionError), transaction(conn):  # a savepoint: only its own work is undone
            conn.execute("INSERT INTO t VALUES (-1)")
            raise ZeroDivisionError("undo the savepoint")
        conn.execute("INSERT INTO t VALUES (-2)")
    assert [r[0] for r in conn.execute("SELECT v FROM t WHERE v < 0")] == [-2]
    conn.close()


def _sync(root: str, run_id: str) -> None:
    store = Store(root)
    store.sync(run_id)
    store.close()


def test_processes_catching_up_the_same_run_fold_each_event_once(tmp_path):
    store = Store(tmp_path / "s")
    run_id = _run(store, [(_usage(n), n % 7 or None) for n in range(1, 400)])
    expected = store.catalog.dump()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp_path / "s" / "catalog.db") + suffix).unlink(missing_ok=True)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_sync, args=(str(tmp_path / "s"), run_id)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    store = Store(tmp_path / "s")
    assert store.catalog.dump() == expected
    assert run_metrics(store, run_id).tokens == sum(range(1, 400))
    store.close()


def test_one_runs_bookkeeping_is_read_through_an_index_and_older_stores_gain_it(tmp_path):
    """Every fold first reads the run's positions and failures; by (projection, run_id) alone
    that read scanned every run's rows (a first search of 10,000 runs took 34 s)."""
    root = tmp_path / "s"
    with Store(root) as store:
        store.create_run(RunStarted(agent="x")).close()
        conn = store.catalog.conn
        for sql in ("SELECT projection, seq FROM positions WHERE run_id=?",
                    "SELECT projection FROM projection_errors WHERE run_id=?"):
            plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", ["R"]))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
    db = sqlite3.connect(root / "catalog.db")
    db.execute("DROP INDEX positions_by_run")
    db.execute("DROP INDEX projection_errors_by_run")
    db.commit()
    db.close()
    with Store(root) as store:  # a store made before the indexes existed
        names = {r[0] for r in store.catalog.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert {"positions_by_run", "projection_errors_by_run"} <= names
        assert len(store.runs()) == 1
