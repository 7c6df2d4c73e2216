"""The part index: describing part N reads what part N needs, and says what a full scan says.

A run is recorded through the real Recorder on a real workdir (snapshots in a real shadow
repository); every part's description (its latest test result, the tree before it, the files
changed) is checked against the same facts computed by scanning the events from the start, and
the index is rebuilt row for row by ``reindex``.
"""

from __future__ import annotations

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import PartEnded, SnapshotTaken, Store, TestsRan
from agtrace.replay import describe_part, resolve_part


def _record(store: Store, workdir) -> str:
    workdir.mkdir()
    (workdir / "a.py").write_text("x = 0\n")
    with Recorder(store, workdir=workdir, agent="synthetic", durability="off") as rec:
        for n in range(1, 31):
            if n % 4 == 0:
                (workdir / "a.py").write_text(f"x = {n}\n")
                call = rec.tool_call("apply_patch", {"path": "a.py"}, command="patch a.py")
                rec.tool_result(call, "patched")
            elif n % 7 == 0:
                call = rec.tool_call("shell", command="pytest -q")
                rec.tool_result(call, "ok")
                rec.test_result(suite="pytest", passed=n, failed=30 - n, total=30)
            else:
                rec.message("assistant", f"part {n}")
        rec.end("completed", "done")
        return rec.run_id


def _scanned(store: Store, run_id: str) -> tuple[dict, dict]:
    """Per part, by scanning every event: the latest test result at or before the part's last
    event (what `describe` said before the index) and the tree before it."""
    records = list(store.read(run_id))
    last_seq = {r.part: r.seq for r in records if r.part is not None}
    tests, before, tree = {}, {}, ""
    for part in sorted(last_seq):
        found = [r for r in records if isinstance(r.event, TestsRan) and r.seq <= last_seq[part]]
        ev = found[-1].event if found else None
        tests[part] = ev and {"part": found[-1].part, "suite": ev.suite, "passed": ev.passed,
                              "failed": ev.failed, "errors": ev.errors, "total": ev.total}
    for rec in records:
        if isinstance(rec.event, SnapshotTaken) and rec.part is None and not tree:
            tree = rec.event.tree_id
        elif isinstance(rec.event, PartEnded):
            before[rec.part] = tree
            tree = rec.event.tree_id or tree
    return tests, before


def test_each_part_is_described_as_a_full_scan_says(tmp_path):
    store = Store(tmp_path / "s")
    run_id = _record(store, tmp_path / "w")
    tests, before = _scanned(store, run_id)
    assert any(tests.values()) and len(tests) == 30
    for part in range(1, 31):
        view = describe_part(store, run_id, part)
        assert view.tests == tests[part], part
        changed = {c["path"] for c in view.changed}
        assert changed == ({"a.py"} if part % 4 == 0 else set()), part
    # the tree before part N is the one part N-1 (or the base) recorded
    from agtrace.eventlog import previous_tree

    assert previous_tree(store.catalog.conn, run_id, 5) == store.catalog.part_row(run_id, 4)["tree_id"]
    assert previous_tree(store.catalog.conn, run_id, 1) == "" and before[1]


def test_parts_are_resolved_by_indexed_queries(tmp_path):
    store = Store(tmp_path / "s")
    run_id = _record(store, tmp_path / "w")
    rows = store.catalog.part_rows(run_id)
    assert resolve_part(store, run_id, part="last") == 30
    assert resolve_part(store, run_id, part="12") == 12
    assert resolve_part(store, run_id, at_seq=rows[9]["last_seq"]) == 10
    assert resolve_part(store, run_id, at_seq=1) == 0
    assert resolve_part(store, run_id, at_time_ns=rows[19]["ts"]) == 20


def test_reindex_rebuilds_the_part_index_row_for_row(tmp_path):
    store = Store(tmp_path / "s")
    run_id = _record(store, tmp_path / "w")
    store.sync(run_id)
    before = store.catalog.dump()["test_results"]
    assert len(before) == 3  # parts 7, 14, 21
    store.reindex()
    assert store.catalog.dump()["test_results"] == before


def test_metrics_per_part_prints_one_page_of_rows(tmp_path):
    import json

    from .conftest import run_agtrace

    store = Store(tmp_path / "s")
    run_id = _record(store, tmp_path / "w")
    store.close()
    every = json.loads(run_agtrace(["metrics", run_id, "--per-part", "--json"], tmp_path / "s", check=True).stdout)
    page = json.loads(run_agtrace(["metrics", run_id, "--per-part", "--part", "11-13", "--json"],
                                  tmp_path / "s", check=True).stdout)
    assert page == every[10:13] and [r["part"] for r in page] == [11, 12, 13]
    bad = run_agtrace(["metrics", run_id, "--part", "3"], tmp_path / "s")
    assert bad.returncode == 2 and "--per-part" in bad.stderr.decode()
