"""Bulk export: JSONL and Parquet round-trips through DuckDB, filters, the docs' queries, memory."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import textwrap

import msgspec
import pytest

from agtrace.eventlog import (
    PartEnded,
    RunEnded,
    RunNotFound,
    RunStarted,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
    record_to_json,
)
from agtrace.replay import select_runs
from agtrace.replay.errors import OutputNotEmpty
from agtrace.replay.export import COLUMNS, ExportError, export

from .conftest import FIXTURES, REPO, one_of_each, run_agtrace

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")

T0 = 1_700_000_000_000_000_000


def _q(sql: str):
    """The result cursor of one query on a fresh in-memory DuckDB."""
    return duckdb.connect().execute(sql)


def _run(store: Store, events, *, agent="a", model="m-1", tags=None, t0=T0) -> str:
    """A run whose n-th event has ts ``t0 + n`` seconds."""
    w = store.create_run(RunStarted(agent=agent, model=model, tags=tags or {}), ts=t0, durability="off")
    for i, (ev, part) in enumerate(events, 1):
        w.append(ev, part=part, ts=t0 + i * 10**9)
    store.close_writer(w)
    return w.run_id


def _tool_part(part: int, ok: bool, passed: int) -> list:
    call = f"c{part}"
    return [(ToolCalled(call_id=call, tool="shell", command="pytest"), part),
            (ToolReturned(call_id=call, tool="shell", status="ok" if ok else "error", exit_code=0 if ok else 1,
                          output="x" * 10), part),
            (TestsRan(suite="unit", passed=passed, failed=4 - passed, total=4), part),
            (UsageReported(usage=Usage(input=100 * part, output=10, cache_read=5), model="m-1", cost_usd=0.5), part),
            (PartEnded(part_kind="tool", tool="shell", call_id=call), part)]


@pytest.fixture
def populated(store) -> Store:
    _run(store, [(e, 1) for e in one_of_each()[1:]], agent="demo", tags={"campaign": "c1"})
    _run(store, [*_tool_part(1, False, 1), *_tool_part(2, True, 4), (RunEnded(status="completed"), None)],
         agent="claude-code", model="m-2", t0=T0 + 10**12)
    _run(store, [*_tool_part(1, True, 2), (RunEnded(status="failed"), None)], agent="codex", t0=T0 + 2 * 10**12)
    return store


def _counts(store: Store, ids) -> dict[str, int]:
    out: dict[str, int] = {}
    for rid in ids:
        for rec in store.read(rid):
            out[rec.kind] = out.get(rec.kind, 0) + 1
    return out


def test_parquet_round_trip_counts_in_duckdb_equal_the_store(populated, tmp_path):
    ids = populated.run_ids()
    report = export(populated, ids, format="parquet", out=tmp_path / "pq")
    expected = _counts(populated, ids)
    assert report.events == sum(expected.values()) and report.by_kind == dict(sorted(expected.items()))
    con = duckdb.connect()
    rel = f"read_parquet('{tmp_path}/pq/day=*/kind=*/*.parquet', hive_partitioning = true)"
    got = dict(con.execute(f"SELECT kind, count(*) FROM {rel} GROUP BY kind").fetchall())
    assert got == expected
    per_run = dict(con.execute(f"SELECT run, count(*) FROM {rel} GROUP BY run").fetchall())
    assert per_run == {rid: sum(1 for _ in populated.read(rid)) for rid in ids}
    files = f"read_parquet('{tmp_path}/pq/*/*/*.parquet', hive_partitioning = false)"
    cols = [d[0] for d in con.execute(f"SELECT * FROM {files}").description]
    assert tuple(cols) == COLUMNS
    # typed columns hold the event's fields; body is the event as JSON
    row = con.execute(f"SELECT exit_code, status, tool, call_id, body FROM {rel} "
                  "WHERE kind='tool_returned' ORDER BY run, seq LIMIT 1").fetchone()
    assert row[:4] == (0, "ok", "shell", "c1") and json.loads(row[4])["kind"] == "tool_returned"
    tokens = con.execute(f"SELECT sum(tokens_input), sum(tokens_cache_read), sum(cost_usd) FROM {rel} "
                     "WHERE kind='usage_reported'").fetchone()
    want = [r.event for rid in ids for r in populated.read(rid) if isinstance(r.event, UsageReported)]
    assert tokens == (sum(u.usage.input for u in want), sum(u.usage.cache_read for u in want),
                      pytest.approx(sum(u.cost_usd or 0 for u in want)))
    seq_ts = con.execute(f"SELECT seq, ts, epoch_ns(time) // 1000 FROM {rel} ORDER BY run, seq LIMIT 3").fetchall()
    assert [(s, t // 1000) for s, t, _ in seq_ts] == [(s, us) for s, _, us in seq_ts]


def test_jsonl_lines_are_log_json_plus_run(populated, tmp_path):
    ids = populated.run_ids()
    out = tmp_path / "all.jsonl"
    report = export(populated, ids, out=out)
    lines = out.read_bytes().splitlines()
    assert len(lines) == report.events == sum(_counts(populated, ids).values())
    expected = [(rid, record_to_json(r)) for rid in ids for r in populated.read(rid)]
    for line, (rid, log_line) in zip(lines, expected, strict=True):
        data = json.loads(line)
        assert data.pop("run") == rid
        assert data == json.loads(log_line)
    got = _q(f"SELECT count(*) FROM read_ndjson_objects('{out}')").fetchone()[0]
    assert got == len(lines)


def test_kinds_filter(populated, tmp_path):
    ids = populated.run_ids()
    report = export(populated, ids, format="parquet", out=tmp_path / "pq", kinds=["tool_returned", "tests_ran"])
    counts = _counts(populated, ids)
    assert report.by_kind == {"tests_ran": counts["tests_ran"], "tool_returned": counts["tool_returned"]}
    kinds = {p.name for p in (tmp_path / "pq").glob("day=*/kind=*")}
    assert kinds == {"kind=tool_returned", "kind=tests_ran"}
    j = export(populated, ids, out=tmp_path / "k.jsonl", kinds=["run_ended"])
    assert {json.loads(x)["kind"] for x in (tmp_path / "k.jsonl").read_text().splitlines()} == {"run_ended"}
    assert j.events == counts["run_ended"]
    with pytest.raises(ExportError, match="unknown event kind"):
        export(populated, ids, out=tmp_path / "bad.jsonl", kinds=["nope"])


def test_since_filter(populated, tmp_path):
    ids = populated.run_ids()
    since = T0 + 10**12 + 3 * 10**9  # the second run's fourth event onwards, and all of the third run
    report = export(populated, ids, format="parquet", out=tmp_path / "pq", since_ns=since)
    expected = sum(1 for rid in ids for r in populated.read(rid) if r.ts >= since)
    assert 0 < report.events == expected < sum(_counts(populated, ids).values())
    rel = f"read_parquet('{tmp_path}/pq/*/*/*.parquet')"
    assert _q(f"SELECT count(*), min(ts) >= {since} FROM {rel}").fetchone() == (expected, True)


def test_output_is_never_overwritten_and_failed_exports_leave_nothing(populated, tmp_path, monkeypatch):
    out = tmp_path / "x.jsonl"
    out.write_text("keep")
    with pytest.raises(OutputNotEmpty):
        export(populated, populated.run_ids(), out=out)
    assert out.read_text() == "keep"
    with pytest.raises(RunNotFound):
        export(populated, [*populated.run_ids(), "01ZZZZZZZZZZZZZZZZZZZZZZZZ"], out=tmp_path / "y.jsonl")

    def interrupt(done, total):
        if done == 30:
            raise KeyboardInterrupt

    monkeypatch.setattr("agtrace.replay.export.PROGRESS_EVERY", 1)
    for fmt in ("parquet", "jsonl"):
        with pytest.raises(KeyboardInterrupt):
            export(populated, populated.run_ids(), format=fmt, out=tmp_path / "pq", progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "x.jsonl"]


def test_select_runs_and_metrics_tables(populated, tmp_path):
    ids = populated.run_ids()
    assert select_runs(populated, all_runs=True, where={"agent": "claude*"}) == [ids[1]]
    assert select_runs(populated, all_runs=True, where={"campaign": "c1"}) == [ids[0]]
    assert select_runs(populated, all_runs=True, where={"model": "m-1", "status": "failed"}) == [ids[2]]
    report = export(populated, ids, format="parquet", out=tmp_path / "pq", metrics=True)
    assert report.metrics_tables == ["run_metrics.parquet", "part_metrics.parquet", "scores.parquet"]
    tokens = dict(_q(f"SELECT run_id, tokens_input FROM '{tmp_path}/pq/_metrics/run_metrics.parquet'").fetchall())
    assert tokens[ids[1]] == 300 and tokens[ids[2]] == 100
    # the events glob does not pick the metrics tables up
    n = _q(f"SELECT count(*) FROM read_parquet('{tmp_path}/pq/day=*/kind=*/*.parquet')").fetchone()[0]
    assert n == report.events


def test_remote_output_uploads_every_file(populated, tmp_path):
    url = f"file://{tmp_path}/bucket/exports"
    (tmp_path / "bucket" / "exports").mkdir(parents=True)
    report = export(populated, populated.run_ids(), format="parquet", out=url)
    files = sorted(p for p in (tmp_path / "bucket" / "exports").rglob("*.parquet"))
    assert report.out == url and len(files) == report.files
    n = _q(f"SELECT count(*) FROM read_parquet('{tmp_path}/bucket/exports/day=*/kind=*/*.parquet')").fetchone()
    assert n[0] == report.events
    export(populated, populated.run_ids(), out=f"{url}/all.jsonl")
    assert len((tmp_path / "bucket" / "exports" / "all.jsonl").read_text().splitlines()) == report.events


def test_docs_queries_run(populated, tmp_path, monkeypatch):
    """Every ```sql block of docs/export.md runs on an export and returns rows."""
    ids = populated.run_ids()
    export(populated, ids, format="parquet", out=tmp_path / "export")
    export(populated, ids, out=tmp_path / "export.jsonl")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "export.md").read_text(), re.S)
    assert len(blocks) >= 6
    con = duckdb.connect()
    results = [con.execute(block).fetchall() for block in blocks]
    days, tokens, curves, errors = results[1], results[3], results[4], results[5]
    events = sum(1 for rid in ids for _ in populated.read(rid))
    assert sum(r[1] for r in days) == events and max(r[2] for r in days) <= len(ids)
    assert {r[0]: r[2] for r in tokens} == {"m-1": 100 + 200 + 100, "gpt-x": 10}
    assert [(r[1], r[2], r[3]) for r in curves if r[0] == ids[1]] == [(1, 1, 4), (2, 4, 4)]
    assert [r[:3] for r in errors] == [("shell", 4, 1)]
    assert all(results[i] for i in (2, 6, 7)), results


def test_cli_export(populated, tmp_path):
    populated.close()
    root = populated.root
    proc = run_agtrace(["export", "--where", "agent=c*", "--format", "parquet", "-o", str(tmp_path / "pq"), "--json"],
                       root, check=True)
    report = msgspec.json.decode(proc.stdout)
    assert report["runs"] == 2 and report["format"] == "parquet"
    proc = run_agtrace(["export", "-o", str(tmp_path / "x.jsonl")], root)
    assert proc.returncode == 2 and b"--all" in proc.stderr
    proc = run_agtrace(["export", "--all", "-o", str(tmp_path / "pq")], root)
    assert proc.returncode == 1 and b"already exists" in proc.stderr


def test_cli_export_that_cannot_be_written_names_the_path_given(populated, tmp_path):
    """`export -o /proc/x.jsonl` said `No such file or directory: /proc/.x.jsonl.dla32l8u;
    /proc/.x.jsonl.dla32l8u does not exist`: a temp name the user never typed, twice. Now the
    error is said of the path given, and nothing is left beside it."""
    populated.close()
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    cases = [("jsonl", str(blocker / "x.jsonl")), ("parquet", str(blocker / "pq"))]
    if os.path.isdir("/proc/self"):  # procfs: no new file can be made there
        cases += [("jsonl", "/proc/agtrace-x.jsonl"), ("parquet", "/proc/agtrace-pq"), ("otlp", "/proc/agtrace.otlp"),
                  ("atif", "/proc/agtrace-atif")]
    for fmt, out in cases:
        proc = run_agtrace(["export", "--all", "--format", fmt, "-o", out], populated.root)
        err = proc.stderr.decode()
        assert proc.returncode == 1, err
        assert err.startswith(f"error: cannot write the export to {out}: "), err
        assert "nothing was exported" in err and err.count("\n") == 1, err
        assert "/." not in err, err  # no hidden temp name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "store"]


def test_cli_export_to_standard_output(populated, tmp_path):
    """`export -o -` wrote a file named `-` in the current directory; now `-` is standard output
    for the one-stream formats (jsonl, otlp), with the summary on stderr, and refused (exit 2)
    for the directory formats and for options that would write beside it."""
    populated.close()
    root = populated.root
    run_agtrace(["export", "--all", "-o", str(tmp_path / "all.jsonl")], root, check=True)
    run_agtrace(["export", "--all", "--format", "otlp", "-o", str(tmp_path / "all.otlp")], root, check=True)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cli = [sys.executable, "-c", "from agtrace.cli.main import main; main()", "--store", str(root), "export", "--all"]
    for fmt, same_as in (("jsonl", "all.jsonl"), ("otlp", "all.otlp")):
        proc = subprocess.run([*cli, "--format", fmt, "-o", "-"], cwd=cwd, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (tmp_path / same_as).read_bytes()
        assert b"to standard output" in proc.stderr
    for args, says in ((["--format", "parquet"], "parquet exports are directories: give -o DIR"),
                       (["--format", "atif"], "atif exports are directories: give -o DIR"),
                       (["--metrics"], "cannot go with --metrics"), (["--json"], "cannot go with --json")):
        proc = subprocess.run([*cli, *args, "-o", "-"], cwd=cwd, capture_output=True, timeout=120)
        assert (proc.returncode, proc.stdout) == (2, b""), proc.stderr
        assert proc.stderr.decode().startswith("error: -o - ") and says in proc.stderr.decode(), proc.stderr
    assert list(cwd.iterdir()) == []  # no file named "-"


CHILD = textwrap.dedent("""
    import sys
    from agtrace.eventlog import Store
    from agtrace.replay.export import export
    store = Store(sys.argv[1])
    export(store, store.run_ids(), format=sys.argv[2], out=sys.argv[3])
""")


def _peak_rss_mib(store_dir, fmt: str, out) -> float:
    """Peak RSS of a fresh subprocess doing the export (RUSAGE_CHILDREN is the max over children,
    so each measurement runs in its own grandchild and reports its own maximum)."""
    code = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]], "
            "check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code, CHILD, str(store_dir), fmt, str(out)],
                          capture_output=True, text=True, check=True, timeout=1200)
    return int(proc.stdout.strip()) / 1024


@pytest.mark.slow
def test_export_of_a_million_events_stays_in_bounded_memory(tmp_path):
    """1,000,000 events (~330 MB as JSON lines) export within a fixed memory bound.

    The bound is the peak RSS of the same export of a 1-event store (interpreter, msgspec,
    pyarrow and their allocators: ~30 MiB for JSONL, ~80 MiB with pyarrow) plus 160 MiB. The
    Parquet writer holds at most 65,536 rows (or 32 MiB of bodies) plus the open segment (32 MiB)
    and the row-group metadata of the open files; measured ~+50 MiB on the reference machine, so
    the bound leaves 3x headroom for allocator noise. An export that kept a run in memory needs
    more than 1 GiB here (1M decoded events as Python objects alone exceed it).
    """
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from bench_export import build_store
    finally:
        sys.path.pop(0)
    build_store(tmp_path / "big", 1_000_000, 2).close()
    tiny = Store(tmp_path / "tiny")
    _run(tiny, [(RunEnded(status="completed"), None)])
    tiny.close()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
    for fmt in ("jsonl", "parquet"):
        base = _peak_rss_mib(tmp_path / "tiny", fmt, tmp_path / f"tiny-{fmt}")
        big = _peak_rss_mib(tmp_path / "big", fmt, tmp_path / f"big-{fmt}")
        print(f"{fmt}: baseline {base:.0f} MiB, 1M events {big:.0f} MiB")
        assert big < base + 160, f"{fmt} export of 1M events peaked at {big:.0f} MiB (baseline {base:.0f} MiB)"
    n = _q(f"SELECT count(*) FROM read_parquet('{tmp_path}/big-parquet/*/*/*.parquet')").fetchone()[0]
    assert n == sum(1 for rid in Store(tmp_path / "big").run_ids() for _ in Store(tmp_path / "big").read(rid))


def test_parquet_files_are_per_day_and_kind_not_per_run(populated, tmp_path):
    ids = populated.run_ids()
    export(populated, ids, format="parquet", out=tmp_path / "pq")
    files = sorted((tmp_path / "pq").glob("day=*/kind=*/*.parquet"))
    pairs = {(f.parent.parent.name, f.parent.name) for f in files}
    assert len(ids) > 1 and len(files) == len(pairs)  # one file per (day, kind), whatever the runs
    rows = _q(f"SELECT DISTINCT day, kind, strftime(time, '%Y-%m-%d') = day FROM read_parquet("
              f"'{tmp_path}/pq/day=*/kind=*/*.parquet', hive_partitioning = true)").fetchall()
    assert rows and all(same for _, _, same in rows)  # each event is in the file of its UTC day
    runs = _q(f"SELECT count(DISTINCT run) FROM read_parquet('{tmp_path}/pq/*/kind=run_started/*.parquet')")
    assert runs.fetchone()[0] == len(ids)


def test_a_damaged_run_never_stops_the_export_of_the_others(populated, tmp_path):
    """One run with a damaged segment stopped `export --all` in every format with nothing
    written (`error: ….seg: damaged frame at byte 8`, exit 1), although a damaged run must never
    stop commands on other runs (docs/format.md). Now every other run is exported; a damaged
    run's events before the damage are in a JSON lines or Parquet export (the figures `metrics`
    has for it stop there too) and the run is left out of ATIF and OTLP (a trajectory or trace
    of half a run would pass as whole); the damage is named and the command exits 1."""
    from agtrace.eventlog.reader import list_segments

    writer = populated.create_run(RunStarted(agent="t"), durability="strict")
    populated.close_writer(writer)  # a first segment of run_started, a second of the rest
    writer = populated.open_writer(writer.run_id, durability="strict")
    for i in range(5):
        writer.append(ToolCalled(call_id=f"c{i}", tool="shell"), part=i + 1)
    writer.append(RunEnded(status="completed"))
    populated.close_writer(writer)
    ids = populated.run_ids()
    damaged = writer.run_id
    last = [p for _f, _l, p in list_segments(populated.run_dir(damaged) / "events")][-1]
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x10
    last.write_bytes(bytes(data))
    populated.close()
    root = populated.root
    readable = {rid: 0 for rid in ids}
    store = Store(root)
    for rid in ids:
        try:
            for _ in store.read(rid):
                readable[rid] += 1
        except Exception:  # noqa: BLE001 - counting what reads before the damage
            pass
    store.close()
    assert readable[damaged] == 1
    for fmt, out in (("jsonl", "x.jsonl"), ("parquet", "pq"), ("atif", "atif"), ("otlp", "x.otlp")):
        proc = run_agtrace(["export", "--all", "--format", fmt, "-o", str(tmp_path / out), "--json"], root)
        assert proc.returncode == 1 and proc.stdout, (fmt, proc.stderr)
        report = json.loads(proc.stdout)
        assert [d["run"] for d in report["damaged"]] == [damaged], fmt
        assert f"run {damaged} cannot be read from seq" in report["damaged"][0]["problem"]
        err = proc.stderr.decode()
        assert f"run {damaged} cannot be read from seq" in err and "Traceback" not in err, err
        if fmt == "jsonl":
            runs = [json.loads(line)["run"] for line in (tmp_path / out).read_text().splitlines()]
            assert {rid: runs.count(rid) for rid in ids} == readable
        elif fmt == "parquet":
            got = dict(_q(f"SELECT run, count(*) FROM read_parquet('{tmp_path}/pq/day=*/kind=*/*.parquet') "
                          "GROUP BY run").fetchall())
            assert got == readable
        elif fmt == "atif":
            assert sorted(p.stem for p in (tmp_path / out).iterdir()) == sorted(set(ids) - {damaged})
        else:
            traces = {span["traceId"] for line in (tmp_path / out).read_text().splitlines()
                      for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]}
            assert len(traces) == len(ids) - 1
    proc = run_agtrace(["export", "--all", "-o", str(tmp_path / "y.jsonl")], root)
    assert proc.returncode == 1 and b"exported " in proc.stderr and f"run {damaged}".encode() in proc.stderr


def test_metrics_tables_and_atif_hold_what_metrics_json_prints(populated, tmp_path):
    """`export --metrics` says its run_metrics rows are the figures "exactly as `agtrace metrics
    --json` prints them", and ATIF's `final_metrics.extra.agtrace_metrics` "the whole of" it; both
    lacked its `cost` object (the priced cost every page shows: `$0.0050` in `report`, nothing
    in the export). Now they carry it (in the tables as JSON text, like `tools`)."""
    ids = populated.run_ids()
    populated.close()
    root = populated.root
    want = {rid: json.loads(run_agtrace(["metrics", rid, "--json"], root, check=True).stdout) for rid in ids}
    assert all("cost" in m for m in want.values())
    run_agtrace(["export", "--all", "--metrics", "-o", str(tmp_path / "x.jsonl")], root, check=True)
    run_agtrace(["export", "--all", "--metrics", "--format", "parquet", "-o", str(tmp_path / "pq")], root, check=True)
    run_agtrace(["export", "--all", "--format", "atif", "-o", str(tmp_path / "atif")], root, check=True)
    decode = {"tools": json.loads, "cost": json.loads}
    rows = [json.loads(line) for line in (tmp_path / "x.run_metrics.jsonl").read_text().splitlines()]
    con = duckdb.connect()
    pq_rows = con.execute(f"SELECT * FROM '{tmp_path}/pq/_metrics/run_metrics.parquet'")
    names = [d[0] for d in pq_rows.description]
    for got in (rows, [dict(zip(names, r, strict=True)) for r in pq_rows.fetchall()]):
        got = {r["run_id"]: {k: decode.get(k, lambda v: v)(v) for k, v in r.items()} for r in got}
        assert got == want
    for rid in ids:
        atif = json.loads((tmp_path / "atif" / f"{rid}.json").read_text())
        assert atif["final_metrics"]["extra"]["agtrace_metrics"] == want[rid]


def test_events_without_a_time_are_in_day_unknown_not_1970(tmp_path):
    """A swe-agent trajectory records no times, so its events have ts 0: they were exported as
    ``day=1970-01-01`` with 1970 in ``time``. They go to ``day=unknown`` with ``time`` null."""
    store = tmp_path / "store"
    traj = FIXTURES / "swe-agent" / "swe-agent__test-repo-i1.traj"
    run_agtrace(["--store", str(store), "import", str(traj)], store, check=True)
    run_agtrace(["--store", str(store), "export", "--all", "--format", "parquet", "-o", str(tmp_path / "pq")],
                store, check=True)
    assert [p.name for p in (tmp_path / "pq").iterdir()] == ["day=unknown"]
    rows = _q(f"SELECT DISTINCT day, ts, time FROM read_parquet('{tmp_path}/pq/day=*/kind=*/*.parquet', "
              "hive_partitioning = true)").fetchall()
    assert rows == [("unknown", 0, None)]


def test_export_of_a_selection_matching_nothing_exits_0_and_writes_nothing(populated, tmp_path):
    """`ls --agent nope` exits 0 ("no runs match"); `export --where agent=nope` exited 1. Both
    exit 0 now, and the export writes no file."""
    out = tmp_path / "none.jsonl"
    proc = run_agtrace(["--store", str(populated.root), "export", "--where", "agent=nope", "-o", str(out)],
                       populated.root)
    assert proc.returncode == 0 and b"no runs match" in proc.stderr, proc.stderr
    assert not out.exists()
    as_json = run_agtrace(["--store", str(populated.root), "export", "--where", "agent=nope", "-o", str(out),
                           "--json"], populated.root)
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and (report["runs"], report["events"], report["files"]) == (0, 0, 0)
    assert "no runs match" in report["notes"][0] and not out.exists()
