"""The metrics projection: real values from a real demo capture, hand-built runs for the edge
cases, and property tests that folding in chunks equals folding at once and that a rebuild
reproduces the rows maintained as events were written exactly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agtrace.eventlog import (
    ErrorOccurred,
    FileChanged,
    MessageAdded,
    MetricsFold,
    ModelCalled,
    PartEnded,
    PartMetrics,
    Record,
    RunEnded,
    RunMetrics,
    RunStarted,
    SnapshotTaken,
    Store,
    TestsRan,
    ToolCalled,
    ToolReturned,
    TurnStarted,
    Usage,
    UsageReported,
    fold_metrics,
    part_metrics,
    run_metrics,
)
from agtrace.replay.listing import list_runs, parse_since

from .conftest import run_agtrace

# -- the demo: a real capture of a scripted Codex agent ------------------------------------------


def dump_metrics(store: Store) -> dict[str, list[tuple]]:
    dump = store.catalog.dump()
    return {t: dump[t] for t in ("run_metrics", "part_metrics")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from agtrace.capture.demo import run_demo

    root = tmp_path_factory.mktemp("metrics-demo")
    store = Store(root / "store")
    summary, _ = run_demo(store, workdir=root / "work", fast=False)
    yield store, summary.run_id
    store.close()


def test_demo_tokens_are_per_turn_deltas_summed_once(demo):
    store, run_id = demo
    m = run_metrics(store, run_id)
    # Codex reports cumulative totals 58,905 input (47,104 of them cached) and 3,302 output on
    # its last turn.completed; the run's spend is exactly that, not the sum of the totals.
    assert (m.tokens_input, m.tokens_cache_read, m.tokens_output) == (11_801, 47_104, 3_302)
    assert m.tokens_input + m.tokens_cache_read == 58_905
    assert m.tokens == 62_207 and m.usage_reports == 3
    cumulative_cache = [r.event.cumulative.cache_read for r in store.read(run_id)
                        if isinstance(r.event, UsageReported)]
    assert sum(cumulative_cache) != m.tokens_cache_read  # the classic double count
    parts = part_metrics(store, run_id)
    assert sum(p.tokens for p in parts) == m.tokens
    assert [(p.part, p.tokens) for p in parts if p.tokens] == [(6, 8_803), (18, 25_281), (26, 28_123)]


def test_demo_status_parts_turns_tools_files(demo):
    store, run_id = demo
    m = run_metrics(store, run_id)
    assert (m.status, m.end_status, m.parts, m.turns, m.model_calls) == ("completed", "completed", 26, 3, 3)
    assert m.duration_s is not None and 0 < m.duration_s < 120
    assert m.tools == {"apply_patch": {"calls": 3, "errors": 0}, "shell": {"calls": 11, "errors": 2}}
    assert (m.tool_calls, m.tool_errors) == (14, 2)
    assert m.tool_error_rates()["shell"] == pytest.approx(2 / 11)
    assert (m.files_changed, m.churn_lines_added, m.churn_lines_removed) == (3, 34, 4)
    assert m.events == sum(1 for _ in store.read(run_id))
    assert store.catalog.position(run_id, "metrics") == m.events


def test_demo_test_curve_fail_fail_pass(demo):
    store, run_id = demo
    m = run_metrics(store, run_id)
    curve = [(p.part, p.tests_passed, p.tests_failed, p.tests_total)
             for p in part_metrics(store, run_id) if p.tests_total is not None]
    assert curve == [(9, 2, 1, 3), (12, 4, 1, 5), (15, 5, 0, 5)]
    assert m.tests_ran == 3
    assert (m.tests_first_pass_part, m.tests_best_part, m.tests_final_part) == (15, 15, 15)
    assert (m.tests_final_passed, m.tests_final_failed, m.tests_final_total) == (5, 0, 5)
    by_part = {p.part: p for p in part_metrics(store, run_id)}
    assert by_part[9].tool_errors == 1 and by_part[9].kind == "test"
    assert (by_part[8].files_changed, by_part[8].churn_lines_added) == (1, 20)
    assert (by_part[22].churn_lines_added, by_part[22].churn_lines_removed) == (0, 3)  # the revert


def test_demo_rebuild_and_cli_reindex_reproduce_rows(demo):
    store, run_id = demo
    run_metrics(store, run_id)
    before = dump_metrics(store)
    assert before["run_metrics"] and len(before["part_metrics"]) == 26
    assert store.reindex() == 1
    assert dump_metrics(store) == before
    store.close()
    run_agtrace(["reindex"], store.root, check=True)
    assert dump_metrics(store) == before


def test_demo_metrics_cli_json_csv_per_part(demo):
    store, run_id = demo
    out = run_agtrace(["metrics", run_id[:12], "--json"], store.root, check=True)
    data = json.loads(out.stdout)
    assert data["tokens"] == 62_207 and data["tools"]["shell"]["errors"] == 2
    assert data["status"] == "completed" and data["tests_first_pass_part"] == 15
    out = run_agtrace(["metrics", run_id, "--per-part", "--csv"], store.root, check=True)
    lines = out.stdout.decode().splitlines()
    assert lines[0].startswith("part,kind,title,tool") and len(lines) == 27
    out = run_agtrace(["metrics", run_id], store.root, check=True)
    assert "62,207" in out.stdout.decode() and "first pass at part 15" in out.stdout.decode()


# -- hand-built runs ---------------------------------------------------------------------------


def _write(store: Store, items, started: RunStarted | None = None, ts: int | None = None) -> str:
    w = store.create_run(started or RunStarted(agent="hand"), ts=ts)
    for event, part in items:
        w.append(event, part=part)
    store.close_writer(w)
    return w.run_id


def test_attribution_errors_base_snapshot_and_cost(store):
    run_id = _write(store, [
        (SnapshotTaken(tree_id="b" * 40, added=["a.py", "b.py"], lines_added=50), None),  # base
        (TestsRan(suite="s", passed=0, failed=2, total=2), None),  # before any part: part 0
        (TurnStarted(turn=1), None),
        (ToolCalled(call_id="c1", tool="bash", command="false"), 1),
        (ToolReturned(call_id="c1", status="error", exit_code=1), 1),  # one error, not two
        (SnapshotTaken(tree_id="c" * 40, modified=["a.py"], lines_added=2, lines_removed=1), 1),
        (PartEnded(part_kind="tool", tool="bash"), 1),
        (UsageReported(usage=Usage(input=100, output=10, cache_write=5), cost_usd=0.25), None),  # → part 1
        (ToolReturned(call_id="orphan", tool="edit", exit_code=2), 2),  # a result without a call
        (TestsRan(suite="s", passed=2, total=2), 2),
        (SnapshotTaken(tree_id="d" * 40, added=["c.py"], modified=["a.py"], lines_added=3), 2),
        (PartEnded(part_kind="tool", tool="edit"), 2),
        (UsageReported(usage=Usage(input=1, output=1), cost_usd=0.5), 2),
        (ModelCalled(ok=False, error="429"), None),
        (ErrorOccurred(message="boom"), None),
        (SnapshotTaken(tree_id="d" * 40, final=True), 2),
        (RunEnded(status="failed", reason="gave up"), None),
    ])
    m = run_metrics(store, run_id)
    assert (m.status, m.reason, m.parts, m.turns) == ("failed", "gave up", 2, 1)
    assert m.tools == {"bash": {"calls": 1, "errors": 1}, "edit": {"calls": 1, "errors": 1}}
    assert (m.files_changed, m.churn_lines_added, m.churn_lines_removed) == (2, 5, 1)  # a.py, c.py; base excluded
    assert m.cost_usd == pytest.approx(0.75) and m.tokens == 117 and (m.usage_reports, m.unpriced_usage) == (2, 0)
    assert (m.tests_first_pass_part, m.tests_best_part, m.tests_final_part) == (2, 2, 2)
    assert (m.model_calls, m.model_errors, m.errors) == (1, 1, 1)
    p1, p2 = part_metrics(store, run_id)
    assert (p1.tokens_input, p1.tokens_cache_write, p1.cost_usd, p1.tool_errors) == (100, 5, 0.25, 1)
    assert (p2.tokens, p2.files_changed, p2.tests_passed, p2.tests_failed) == (2, 2, 2, 0)


def test_a_run_without_snapshots_has_its_patches_line_counts_as_churn(store):
    """An import without trees (an ISO-Bench patch, a Codex `apply_patch`) showed "+10 -2" in its
    part titles and churn 0 in `metrics`; its agent `file_changed` counts are its churn now, per
    part too. Once a snapshot is there, snapshots alone count, as for files."""
    imported = _write(store, [
        (FileChanged(path="a.py", change="modify", origin="agent", lines_added=10, lines_removed=2), 1),
        (PartEnded(part_kind="patch", title="patch: 1 files +10 -2"), 1),
        (FileChanged(path="b.py", change="add", origin="agent", lines_added=3), 2),
        (FileChanged(path="c.py", change="modify", origin="agent"), 2),  # a source that gives no counts
        (PartEnded(part_kind="patch"), 2),
    ])
    m = run_metrics(store, imported)
    assert (m.files_changed, m.churn_lines_added, m.churn_lines_removed) == (3, 13, 2)
    assert [(p.files_changed, p.churn_lines_added, p.churn_lines_removed) for p in part_metrics(store, imported)] == [
        (1, 10, 2), (2, 3, 0)]
    captured = _write(store, [
        (FileChanged(path="a.py", change="modify", origin="agent", lines_added=10, lines_removed=2), 1),
        (SnapshotTaken(tree_id="c" * 40, modified=["a.py"], lines_added=4, lines_removed=1), 1),
        (PartEnded(part_kind="tool"), 1),
        (FileChanged(path="z.py", change="modify", origin="agent", lines_added=99), 2),
        (PartEnded(part_kind="tool"), 2),
    ])
    m = run_metrics(store, captured)
    assert (m.files_changed, m.churn_lines_added, m.churn_lines_removed) == (1, 4, 1)


def test_metrics_are_maintained_as_events_are_written(store):
    w = store.create_run(RunStarted(agent="live"))
    w.append(MessageAdded(role="assistant", text="hi"), part=1)
    w.append(PartEnded(part_kind="message"), part=1)
    w.flush()
    other = Store(store.root)  # another connection, reading without folding anything itself
    assert other.catalog.position(w.run_id, "metrics") == 3
    m = run_metrics(store, w.run_id)
    assert (m.events, m.parts, m.status) == (3, 1, "running")
    w.append(UsageReported(usage=Usage(input=7, output=3)))  # counts for part 1
    w.flush()
    assert run_metrics(other, w.run_id, sync=False).tokens == 10
    assert part_metrics(store, w.run_id)[0].tokens == 10
    assert run_metrics(store, w.run_id).events == 4  # idempotent
    store.close_writer(w)
    other.close()


def test_a_failed_transaction_leaves_rows_and_positions_as_they_were(store):
    w = store.create_run(RunStarted(agent="x"))
    w.append(MessageAdded(role="user", text="a"), part=1)
    w.flush()
    before = dump_metrics(store)["run_metrics"]
    positions = store.catalog.dump()["positions"]
    store.catalog.conn.execute("DROP TABLE part_metrics")  # the part rows cannot be written
    w.append(UsageReported(usage=Usage(input=5)), part=1)
    with pytest.raises(Exception, match="part_metrics"):
        w.flush()
    assert [tuple(r) for r in store.catalog.conn.execute("SELECT * FROM run_metrics")] == before
    assert sorted(store.catalog.conn.execute("SELECT * FROM positions")) == positions
    w.abandon()


def test_ls_filters_and_sorts(store):
    day = 86_400 * 10**9
    now = 1_800_000_000 * 10**9
    a = _write(store, [(UsageReported(usage=Usage(input=500)), None), (RunEnded(status="completed"), None)],
               RunStarted(agent="codex", model="gpt-5", tags={"exp": "a"}), ts=now - 3 * day)
    b = _write(store, [(UsageReported(usage=Usage(input=50)), None), (RunEnded(status="failed"), None)],
               RunStarted(agent="claude", model="claude-sonnet-4", tags={"exp": "b"}), ts=now - day // 2)
    c = _write(store, [(RunEnded(status="completed"), None)],
               RunStarted(agent="claude", model="claude-opus-4", tags={"exp": "a"}), ts=now - day // 4)
    ids = lambda rows: [r.info.id for r in rows]  # noqa: E731
    assert ids(list_runs(store, agent="claude")) == [c, b]  # newest first
    assert ids(list_runs(store, model="claude-*")) == [c, b]
    assert ids(list_runs(store, status="completed")) == [c, a]
    assert ids(list_runs(store, since_ns=parse_since("1d", now))) == [c, b]
    assert ids(list_runs(store, tags={"exp": "a"})) == [c, a]
    assert ids(list_runs(store, sort="tokens")) == [a, b, c]  # most first
    assert ids(list_runs(store, sort="tokens", reverse=True)) == [c, b, a]
    assert [r.tokens for r in list_runs(store, sort="tokens")] == [500, 50, 0]
    assert ids(list_runs(store, limit=2)) == [c, b]
    assert ids(list_runs(store, limit=2, reverse=True)) == [a, b]
    assert parse_since("2h", now) == now - 2 * 3600 * 10**9
    with pytest.raises(ValueError, match="ISO date"):
        parse_since("yesterday")
    out = run_agtrace(["ls", "--agent", "claude", "--tag", "exp=a", "--json"], store.root, check=True)
    assert [r["id"] for r in json.loads(out.stdout)] == [c]
    out = run_agtrace(["ls", "--sort", "tokens"], store.root, check=True)
    assert out.stdout.decode().splitlines()[1].startswith(a) and "TOKENS" in out.stdout.decode()
    assert run_agtrace(["ls", "--since", "soon"], store.root).returncode == 2


# -- properties ---------------------------------------------------------------------------------

_event = st.one_of(
    st.builds(lambda i, o, c: UsageReported(usage=Usage(input=i, output=o, cache_read=c)),
              st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**6)),
    st.builds(lambda c: UsageReported(usage=Usage(input=1), cost_usd=c), st.floats(0, 5, allow_nan=False)),
    st.builds(lambda k, t: ToolCalled(call_id=f"c{k}", tool=t), st.integers(0, 4), st.sampled_from(["sh", "ed"])),
    st.builds(lambda k, s, x: ToolReturned(call_id=f"c{k}", status=s, exit_code=x), st.integers(0, 4),
              st.sampled_from(["ok", "error"]), st.sampled_from([None, 0, 1])),
    st.builds(lambda p, f: TestsRan(passed=p, failed=f, total=p + f), st.integers(0, 5), st.integers(0, 3)),
    st.builds(lambda a, m, n: SnapshotTaken(tree_id="t" * 40, added=a, modified=m, lines_added=n),
              st.lists(st.sampled_from("abcdef"), max_size=3), st.lists(st.sampled_from("abc"), max_size=2),
              st.integers(0, 50)),
    st.builds(lambda k: PartEnded(part_kind=k), st.sampled_from(["tool", "message"])),
    st.just(TurnStarted(turn=1)),
    st.just(ModelCalled(ok=False)),
)
_items = st.lists(st.tuples(_event, st.one_of(st.none(), st.integers(1, 6))), min_size=1, max_size=40)


def _records(items) -> list[Record]:
    out = [Record(1, 1_000, None, RunStarted(agent="p"))]
    for i, (ev, part) in enumerate(items, start=2):
        out.append(Record(i, 1_000 + i * 7, part, ev))
    return out


@settings(max_examples=200, deadline=None)
@given(_items, st.lists(st.integers(1, 40), max_size=6))
def test_folding_in_chunks_equals_folding_at_once(items, cuts):
    records = _records(items)
    whole = MetricsFold(RunMetrics(run_id="R"))
    whole.apply(records)
    stored_run, stored_state, stored_parts = RunMetrics(run_id="R"), {}, {}
    bounds = sorted({0, len(records), *(c for c in cuts if c < len(records))})
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        # each chunk starts from what storage would give back: JSON state, copied rows
        f = MetricsFold(RunMetrics(**json.loads(json.dumps(stored_run.__dict__))), json.loads(json.dumps(stored_state)),
                        lambda n: PartMetrics(**stored_parts[n].__dict__) if n in stored_parts else None)
        f.apply(records[lo:hi])
        stored_run, stored_state = f.run, f.state()
        stored_parts.update(f.touched)
    assert stored_run == whole.run
    assert stored_parts == whole.touched
    folded, parts = fold_metrics("R", records)
    assert (folded.tokens, folded.tool_errors, folded.tests_final_passed) == (
        whole.run.tokens, whole.run.tool_errors, whole.run.tests_final_passed)
    assert sum(p.tokens for p in parts) <= folded.tokens


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_items, st.lists(st.integers(1, 40), max_size=4))
def test_rebuild_reproduces_rows_maintained_while_writing(items, cuts):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        w = store.create_run(RunStarted(agent="p"))
        cut_at = set(cuts)
        for i, (ev, part) in enumerate(items, start=1):
            w.append(ev, part=part)
            if i in cut_at:
                w.flush()
        w.append(RunEnded(status="completed"))
        store.close_writer(w)
        maintained = store.catalog.dump()
        store.reindex()
        assert store.catalog.dump() == maintained
        assert run_metrics(store, w.run_id).tokens == fold_metrics(w.run_id, store.read(w.run_id))[0].tokens
        store.close()


def test_a_fold_is_freed_when_dropped_without_the_cycle_collector():
    """A fold is no reference cycle: its touched rows go when it goes (a bulk append folds
    every 50k events; rows waiting for the collector cost memory and collection time)."""
    import gc
    import weakref

    f = MetricsFold(RunMetrics(run_id="R"))
    f.apply(_records([(ToolCalled(call_id="c", tool="bash"), 1), (PartEnded(part_kind="tool"), 1)]))
    assert f.touched
    gone = weakref.ref(f)
    gc.disable()
    try:
        del f
        assert gone() is None
    finally:
        gc.enable()


def test_the_returned_calls_kept_are_bounded_and_chunking_still_equals_once(monkeypatch):
    """The fold remembers returned calls to count a repeated return once; its state is rewritten
    on every update, so what it keeps is bounded (the latest RETURNED_KEPT, in order) and a fold
    in chunks still equals one at once."""
    import agtrace.eventlog.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "RETURNED_KEPT", 3)
    items = []
    for k in range(8):
        items += [(ToolCalled(call_id=f"c{k}", tool="sh"), 1), (ToolReturned(call_id=f"c{k}", status="error"), 1)]
    items += [(ToolReturned(call_id="c7", status="ok"), 1),  # recent: the same call, now ok
              (ToolReturned(call_id="c0", status="error"), 1)]  # forgotten long ago: a new call
    records = _records(items)
    whole = MetricsFold(RunMetrics(run_id="R"))
    whole.apply(records)
    assert (whole.run.tool_calls, whole.run.tool_errors) == (9, 8)
    assert [k for k, *_ in whole.state()["returned"]] == ["c6", "c7", "c0"]
    for cut in range(1, len(records)):
        first = MetricsFold(RunMetrics(run_id="R"))
        first.apply(records[:cut])
        again = MetricsFold(RunMetrics(**json.loads(json.dumps(first.run.__dict__))),
                            json.loads(json.dumps(first.state())),
                            lambda n, first=first: PartMetrics(**first.touched[n].__dict__) if n in first.touched else None)
        again.apply(records[cut:])
        assert again.run == whole.run and again.state() == whole.state(), cut
