"""Full-text search: the lazy index equals a brute-force scan, the CLI, regex mode, reindex."""

from __future__ import annotations

import json
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agtrace.eventlog import (
    BlobStore,
    ErrorOccurred,
    LineLogged,
    MessageAdded,
    ReasoningAdded,
    RunEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    grep_runs,
    search,
    searchable_text,
)

from .conftest import run_agtrace

WORDS = ["git", "reset", "hard", "push", "Force", "test", "pytest", "fail", "ok", "x1"]
SEPARATORS = [" ", "  ", "--", "\n", ", ", "/", "_", "."]


def _text(draw_words: list[str], seps: list[str]) -> str:
    return "".join(w + s for w, s in zip(draw_words, seps, strict=False))


texts = st.builds(_text, st.lists(st.sampled_from(WORDS), max_size=8), st.lists(st.sampled_from(SEPARATORS), max_size=8))
events = st.one_of(
    st.builds(lambda t: MessageAdded(role="assistant", text=t), texts),
    st.builds(lambda t: ReasoningAdded(text=t), texts),
    st.builds(lambda t: ToolCalled(call_id="c", tool="shell", command=t), texts),
    st.builds(lambda t: ToolReturned(call_id="c", output=t, exit_code=1), texts),
    st.builds(lambda t: ErrorOccurred(message=t or "e"), texts),
    st.builds(lambda t: LineLogged(stream="stdout", text=t), texts),  # not indexed
)
runs = st.lists(st.lists(st.tuples(events, st.one_of(st.none(), st.integers(1, 3))), max_size=12), min_size=1, max_size=3)
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" -- ".join)


def _fill(store: Store, runs_events) -> list[str]:
    ids = []
    for i, evs in enumerate(runs_events):
        ts = 10**18 + 10**9 * len(store.run_ids())  # ids sort in creation order
        w = store.create_run(RunStarted(agent=f"agent{i % 2}"), durability="off", ts=ts)
        for ev, part in evs:
            w.append(ev, part=part)
        w.append(RunEnded(status="completed"))
        store.close_writer(w)
        ids.append(w.run_id)
    return ids


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)]


def _brute_force(store: Store, query: str) -> list[tuple[str, int]]:
    """Every (run, seq) whose searchable text holds the query's words as a contiguous run."""
    want = _words(query)
    out = []
    for run_id in store.run_ids():
        for rec in store.read(run_id):
            text = searchable_text(rec.event)
            if not text:
                continue
            have = _words(text)
            if any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1)):
                out.append((run_id, rec.seq))
    return sorted(out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs, queries)
def test_hits_equal_a_brute_force_scan(runs_events, query):
    with tempfile.TemporaryDirectory() as root, Store(root) as store:
        _fill(store, runs_events)
        hits = search(store, query, limit=None)
        assert [(h.run_id, h.seq) for h in hits] == _brute_force(store, query)
        for h in hits:
            assert "[" in h.snippet and h.kind != "line"


def test_index_is_lazy_caught_up_incrementally_and_rebuilt_by_reindex(tmp_path):
    store = Store(tmp_path)
    (a,) = _fill(store, [[(ToolCalled(call_id="1", tool="bash", command="git reset --hard HEAD~1"), 1)]])
    # written, not indexed: the write path never pays for the index
    assert store.catalog.conn.execute("SELECT count(*) FROM search_text").fetchone()[0] == 0
    assert [h.run_id for h in search(store, "git reset --hard")] == [a]
    (b,) = _fill(store, [[(MessageAdded(role="assistant", text="I ran git reset --hard"), None)]])
    hits = search(store, "git reset --hard")
    assert [(h.run_id, h.kind, h.part) for h in hits] == [(a, "tool_call", 1), (b, "message", None)]
    assert "[git reset --hard] HEAD~1" in hits[0].snippet
    assert search(store, "reset hard git") == []  # a phrase: order matters
    assert [h.run_id for h in search(store, "reset AND git", fts=True)] == [a, b]
    before = [h.to_dict() for h in search(store, "git", limit=None)]
    store.reindex()
    assert store.catalog.conn.execute("SELECT count(*) FROM search_text").fetchone()[0] == 0
    assert [h.to_dict() for h in search(store, "git", limit=None)] == before
    # filters and paging
    assert [h.run_id for h in search(store, "git", run_ids=[b])] == [b]
    assert [h.run_id for h in search(store, "git", kinds=["tool_call"])] == [a]
    assert [h.run_id for h in search(store, "git", limit=1, offset=1)] == [b]
    store.close()


def test_regex_reads_blobs_and_raw_lines(tmp_path):
    store = Store(tmp_path)
    big = "x" * 70_000 + " needle-42 "
    blob = BlobStore(tmp_path / "blobs").put(big.encode())
    _fill(store, [[(ToolReturned(call_id="1", output=big[:100], output_blob=blob), 1),
                   (LineLogged(stream="stdout", text='{"cmd": "rm -rf /tmp/x"}'), 1)]])
    assert search(store, "needle 42") == []  # beyond the inline prefix the index holds
    hits = grep_runs(store, r"needle-\d+")
    assert [h.kind for h in hits] == ["tool_output"] and "[needle-42]" in hits[0].snippet
    assert [h.kind for h in grep_runs(store, r"rm -rf /tmp")] == ["line"]
    assert grep_runs(store, "RM -RF", ignore_case=True, kinds=["line"])[0].kind == "line"
    store.close()


def test_cli_search(tmp_path):
    store = Store(tmp_path)
    ids = _fill(store, [[(ToolCalled(call_id="1", tool="bash", command="git reset --hard"), 2)],
                        [(MessageAdded(role="user", text="never git reset --hard"), 1)]])
    store.close()
    proc = run_agtrace(["search", "git reset --hard", "--json"], tmp_path, check=True)
    hits = json.loads(proc.stdout)
    assert [(h["run_id"], h["part"], h["kind"]) for h in hits] == [(ids[0], 2, "tool_call"), (ids[1], 1, "message")]
    proc = run_agtrace(["search", "git reset", "--agent", "agent1"], tmp_path, check=True)
    assert ids[1] in proc.stdout.decode() and ids[0] not in proc.stdout.decode()
    proc = run_agtrace(["search", "--regex", r"reset --h\w+", "--kind", "message", "--json"], tmp_path, check=True)
    assert [h["run_id"] for h in json.loads(proc.stdout)] == [ids[1]]
    bad = run_agtrace(["search", "--fts", '"unclosed'], tmp_path)
    assert bad.returncode == 2 and b"not a valid FTS5 query" in bad.stderr and b"Traceback" not in bad.stderr
    bad = run_agtrace(["search", "--", "-- ."], tmp_path)
    assert bad.returncode == 2 and b"no word to search for" in bad.stderr
    bad = run_agtrace(["search", "x", "--kind", "raw"], tmp_path)
    assert bad.returncode == 2 and b"--regex" in bad.stderr
    for option, value in (("--limit", "-1"), ("--offset", "-5")):  # were accepted, as `ls --limit -1` is not
        bad = run_agtrace(["search", "git", option, value], tmp_path)
        assert (bad.returncode, bad.stdout) == (2, b"") and f"{value} is not in the range x>=0".encode() in bad.stderr
