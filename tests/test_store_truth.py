"""A sealed segment damaged after the catalog indexed it is found by `ls`, `show` and `metrics`.

Before, they kept showing the run's old figures as if it were whole until `agtrace reindex`
(a run that ended is never read again). The catalog now records each sealed segment's size,
mtime and inode and the store stats them; a copied store (`cp -r`: new mtimes and inodes,
same bytes) must not be taken for a damaged one. Real files and the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agtrace.eventlog import IndexQuery, Store, index_runs

from .conftest import run_agtrace


def _run(store: Path) -> str:
    """A run of five sealed segments through the CLI: seqs 1 | 2-3 | 4-5 | 6-7 | 8 (run_ended)."""
    run = run_agtrace(["new", "--agent", "t"], store, check=True).stdout.decode().strip()
    for i in (1, 2, 3):
        lines = (json.dumps({"kind": "message_added", "role": "user", "text": f"m{i}", "part": i}) + "\n"
                 + json.dumps({"kind": "part_ended", "part": i, "part_kind": "turn", "title": f"t{i}"}) + "\n")
        run_agtrace(["append", run], store, input=lines.encode(), check=True)
    run_agtrace(["close", run, "--status", "completed"], store, check=True)
    return run


def _segments(store: Path, run: str) -> list[Path]:
    return sorted((store / "runs" / run / "events").glob("*.seg"))


def _ls(store: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads(run_agtrace(["ls", "--json"], store, check=True).stdout)}


def _damage(seg: Path, how: str) -> None:
    if how == "flip":  # in place: same size and inode, only the mtime tells
        data = bytearray(seg.read_bytes())
        data[40] ^= 0x10
        seg.write_bytes(bytes(data))
    elif how == "truncate":
        os.truncate(seg, seg.stat().st_size - 5)
    elif how == "replace":  # another whole segment of the run (seqs 6-7) under this one's name: same size
        os.replace(shutil.copy2(seg.with_name("0000000000000006-0000000000000007.seg"), seg.with_name("x")), seg)
    else:
        seg.unlink()


@pytest.mark.parametrize("how", ["flip", "truncate", "replace", "remove"])
def test_a_segment_damaged_after_indexing_shows_as_damaged_in_ls_show_and_metrics(tmp_path, how):
    s = tmp_path / "s"
    run, other = _run(s), _run(s)
    listed = _ls(s)
    assert listed[run]["status"] == "completed" and listed[run]["events"] == 8  # indexed whole
    seg = _segments(s, run)[2]  # seqs 4-5
    _damage(seg, how)
    listed = _ls(s)
    assert listed[other]["status"] == "completed" and not listed[other]["projection_errors"]
    bad = listed[run]
    assert bad["status"] == "damaged", bad
    assert bad["events"] == 3 and bad["parts"] == 1  # the figures stop at the damage
    assert "cannot be read from seq 4 on" in bad["reason"] and f"`agtrace verify {run}`" in bad["reason"]
    assert (seg.name if how != "remove" else "no segment holds seqs 4..5") in bad["reason"]
    proc = run_agtrace(["ls", "--status", "damaged", "--json"], s, check=True)
    assert [r["id"] for r in json.loads(proc.stdout)] == [run]
    shown = run_agtrace(["show", run], s, check=True).stdout.decode()
    assert "status:        damaged" in shown and "events:        3" in shown
    metrics = json.loads(run_agtrace(["metrics", run, "--json"], s, check=True).stdout)
    assert metrics["events"] == 3 and metrics["end_status"] is None


def test_show_alone_finds_the_damage(tmp_path):
    s = tmp_path / "s"
    run = _run(s)
    assert _ls(s)[run]["status"] == "completed"
    _damage(_segments(s, run)[-1], "truncate")  # the run_ended segment
    shown = json.loads(run_agtrace(["show", run, "--json"], s, check=True).stdout)
    assert shown["status"] == "damaged" and shown["events"] == 7


def test_a_copied_store_is_not_taken_for_a_damaged_one(tmp_path):
    s = tmp_path / "s"
    runs = [_run(s), _run(s)]
    assert {r["status"] for r in _ls(s).values()} == {"completed"}
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(s), str(copy)], check=True)  # new inodes and mtimes, same bytes
    listed = _ls(copy)
    assert [listed[r]["status"] for r in runs] == ["completed", "completed"]
    assert all(listed[r]["events"] == 8 and not listed[r]["projection_errors"] for r in runs)
    with sqlite3.connect(copy / "catalog.db") as db:  # the copies' stats are recorded: checked once
        rows = db.execute("SELECT run_id, stream, name, mtime_ns, inode FROM segments").fetchall()
    assert len(rows) == 10
    for run_id, stream, name, mtime_ns, inode in rows:
        st = (copy / "runs" / run_id / stream / name).stat()
        assert (mtime_ns, inode) == (st.st_mtime_ns, st.st_ino)
    _damage(_segments(copy, runs[0])[1], "flip")  # and damage in the copy is still found
    assert _ls(copy)[runs[0]]["status"] == "damaged"
    assert _ls(s)[runs[0]]["status"] == "completed"


def test_a_run_damaged_before_it_was_first_indexed_is_damaged_not_crashed(tmp_path):
    s = tmp_path / "s"
    run = _run(s)
    (s / "catalog.db").unlink()
    _damage(_segments(s, run)[2], "flip")
    proc = run_agtrace(["ls"], s, check=True)
    row = next(line for line in proc.stdout.decode().splitlines() if line.startswith(run))
    assert " damaged " in row and "crashed" not in row
    assert f"run {run} cannot be read from seq 4 on" in proc.stderr.decode()


def test_the_view_index_says_damaged_and_open_as_ls_does(tmp_path):
    """`agtrace view` lists runs by SQL (eventlog.index_runs), not through `Store.info`: its
    status must be the same, also when filtered by it."""
    s = tmp_path / "s"
    damaged, whole = _run(s), _run(s)
    opened = run_agtrace(["new", "--agent", "t"], s, check=True).stdout.decode().strip()
    _damage(_segments(s, damaged)[1], "flip")
    listed = _ls(s)  # finds the damage (the view's discovery folds runs the same way)
    assert [listed[r]["status"] for r in (damaged, whole, opened)] == ["damaged", "completed", "open"]
    with Store(s) as store:
        rows = {r["id"]: r for r in index_runs(store, IndexQuery(limit=10)).rows}
        assert {r: rows[r]["status"] for r in rows} == {damaged: "damaged", whole: "completed", opened: "open"}
        assert rows[damaged]["reason"] == listed[damaged]["reason"]
        assert rows[opened]["reason"] == listed[opened]["reason"]
        for status, want in (("damaged", [damaged]), ("open", [opened]), ("crashed", [])):
            assert [r["id"] for r in index_runs(store, IndexQuery(status=status)).rows] == want


HOLD_CATALOG = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")  # the catalog's write lock, until stdin closes
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow  # the copy waits out the catalog's busy timeout (--lock-wait 2)
def test_cp_whose_destination_catalog_update_failed_is_finished_by_a_retry_not_copied_twice(tmp_path):
    """`cp --to DIR` moved the copy in, then failed on DIR's catalog (held by another process):
    it said so, and a retry made a second copy under a new id. Now the failure says the copy is
    in and a retry finishes it; a complete earlier copy is still copied again on request."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    run = _run(src)
    first = run_agtrace(["cp", run, "--to", str(dest)], src, check=True).stdout.decode().strip()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CATALOG, str(dest / "catalog.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        proc = run_agtrace(["--lock-wait", "2", "cp", run, "--to", str(dest)], src)
    finally:
        holder.stdin.close()
        holder.wait(30)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in err, err
    moved = sorted(p.name for p in (dest / "runs").iterdir() if p.name != first)
    assert len(moved) == 1 and f"run {moved[0]} was copied into {dest}" in err and "run the same `agtrace cp`" in err
    proc = run_agtrace(["cp", run, "--to", str(dest), "--json"], src, check=True)
    out = json.loads(proc.stdout)
    assert out["id"] == moved[0] and out["finished_earlier_copy"] is True
    assert f"run {moved[0]} in {dest} is a complete copy of {run}" in proc.stderr.decode()
    assert sorted(p.name for p in (dest / "runs").iterdir()) == sorted([first, moved[0]])  # no second copy
    listed = _ls(dest)
    assert {r: listed[r]["status"] for r in listed} == {first: "completed", moved[0]: "completed"}
    assert all(listed[r]["events"] == 8 for r in listed)
    again = run_agtrace(["cp", run, "--to", str(dest)], src, check=True).stdout.decode().strip()
    assert again not in (first, moved[0])  # both copies are whole: asked again, a third copy is made


def test_a_catalog_a_newer_agtrace_added_columns_to_is_used_as_it_is(tmp_path):
    """A newer agtrace's migration may add a column to any table (as m002_segment_stats added two
    to `segments`, which broke every write of the agtrace before it: "table segments has 9
    columns but 7 values were supplied"). This version names the columns it writes, so on such
    a catalog new/append/tag/note/close/ls/show/metrics/verify work and read what it wrote."""
    s = tmp_path / "s"
    old = _run(s)
    _ls(s)
    with sqlite3.connect(s / "catalog.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE "
                                           "'sqlite_%' AND name NOT LIKE 'search_text%'")]  # FTS tables: no ALTER
        assert {"runs", "parts", "segments", "notes", "run_tags", "usage_costs", "test_results", "scores"} <= set(tables)
        for table in tables:
            db.execute(f"ALTER TABLE {table} ADD COLUMN from_the_future TEXT DEFAULT 'x'")
        db.execute("INSERT INTO migrations (owner, name) VALUES ('catalog', 'm999_from_the_future')")
    run = run_agtrace(["new", "--agent", "t", "--model", "gpt-4o"], s, check=True).stdout.decode().strip()
    lines = [{"kind": "message_added", "role": "user", "text": "hi", "part": 1},
             {"kind": "usage_reported", "model": "gpt-4o", "usage": {"input": 1000, "output": 50}, "part": 1},
             {"kind": "tests_ran", "passed": 2, "failed": 1, "total": 3, "part": 1},
             {"kind": "part_ended", "part": 1, "part_kind": "turn", "title": "t1"}]
    run_agtrace(["append", run], s, input="".join(json.dumps(x) + "\n" for x in lines).encode(), check=True)
    run_agtrace(["tag", run, "k=v"], s, check=True)
    run_agtrace(["note", run, "a note"], s, check=True)
    run_agtrace(["close", run, "--status", "completed"], s, check=True)
    listed = _ls(s)
    assert listed[old]["status"] == listed[run]["status"] == "completed"
    shown = json.loads(run_agtrace(["show", run, "--json"], s, check=True).stdout)
    assert shown["tags"]["k"] == "v" and shown["parts"] == 1
    assert "a note" in run_agtrace(["show", run], s, check=True).stdout.decode()
    metrics = json.loads(run_agtrace(["metrics", run, "--json"], s, check=True).stdout)
    assert metrics["tokens_input"] == 1000 and metrics["tests_final_passed"] == 2
    assert metrics["cost"]["priced_calls"] == 1 and metrics["cost"]["cost_usd"] > 0  # usage_costs written
    run_agtrace(["verify"], s, check=True)


@pytest.mark.slow
def test_reindex_over_and_over_beside_cp_and_a_slow_append_loses_nothing(tmp_path):
    """`reindex` deletes catalog.db and folds every run again while other processes have it
    open: `cp --to` adopting runs into the store and an `append` whose writer feeds the catalog
    as it goes. Their rows written into the deleted catalog are caught up from the segments by
    the next reader: every copy and the appended run come out whole, nothing fails."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    runs = [_run(src) for _ in range(6)]
    live = run_agtrace(["new", "--agent", "live"], dst, check=True).stdout.decode().strip()
    env = {**os.environ, "AGTRACE_HOME": str(dst)}
    cli = [sys.executable, "-c", "from agtrace.cli.main import main; main()"]
    copier = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\n"
                               f"for r in {runs!r}:\n"
                               f"    subprocess.run({cli!r} + ['--store', {str(src)!r}, 'cp', r, '--to', {str(dst)!r}],"
                               " check=True, capture_output=True)"], env=env, stderr=subprocess.PIPE)
    appender = subprocess.Popen([*cli, "append", live], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    reindexes = 0
    for i in range(1, 41):
        line = {"kind": "part_ended", "part": i, "part_kind": "turn", "title": f"t{i}"}
        appender.stdin.write((json.dumps(line) + "\n").encode())
        appender.stdin.flush()
        if i % 4 == 0:
            run_agtrace(["reindex"], dst, check=True)
            reindexes += 1
    appender.stdin.close()
    assert appender.wait(60) == 0, appender.stderr.read().decode()
    while copier.poll() is None:
        run_agtrace(["reindex"], dst, check=True)
        reindexes += 1
    assert copier.returncode == 0, copier.stderr.read().decode()
    run_agtrace(["close", live, "--status", "completed"], dst, check=True)
    assert reindexes >= 10
    listed = _ls(dst)
    assert listed[live]["events"] == 42 and listed[live]["parts"] == 40 and listed[live]["status"] == "completed"
    copies = [r for r in listed.values() if r["id"] != live]
    assert len(copies) == 6 and all((r["status"], r["events"], r["parts"]) == ("completed", 8, 3) for r in copies)
    assert not any(r["projection_errors"] for r in listed.values())
    run_agtrace(["verify"], dst, check=True)
