"""`agtrace append` folds its projections in a forked child (``eventlog/fold_child.py``).

Real CLI processes, a real store: the events are those of a real Claude Code session (imported
from ``shared/fixtures``) repeated part after part. What the child folded must be what a fold
in the writer gives, be there when append returns, survive a SIGKILL of the parent and a
Ctrl-C, and a child that fails leaves the fold to its parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agtrace.eventlog import Store, append_json_lines

from .conftest import FIXTURES, run_agtrace

CLAUDE_SESSION = FIXTURES / "claude-code" / "daaain_representative_messages.jsonl"
TABLES = ("runs", "parts", "run_metrics", "part_metrics", "test_results")


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> bytes:
    """The session's events (but its start and end) repeated with later parts: ~6,000 lines."""
    root = tmp_path_factory.mktemp("source")
    run_agtrace(["import", str(CLAUDE_SESSION)], root, check=True)
    run_id = run_agtrace(["ls", "--json"], root, check=True)
    [run_id] = [r["id"] for r in json.loads(run_id.stdout)]
    events = [json.loads(line) for line in run_agtrace(["log", run_id, "--json"], root, check=True).stdout.splitlines()]
    events = [e for e in events if e["kind"] not in ("run_started", "run_ended")]
    top = max(e["part"] or 0 for e in events)
    out = []
    for copy in range(6000 // len(events) + 1):
        for e in events:
            e = {**e, "part": e["part"] + copy * top if e["part"] is not None else None}
            e.pop("seq", None)
            if "call_id" in e:
                e["call_id"] = f"{e['call_id']}-{copy}"
            out.append(json.dumps(e))
    return ("\n".join(out) + "\n").encode()


def _new(root: Path) -> str:
    return run_agtrace(["new", "--agent", "fold-test"], root, check=True).stdout.decode().strip()


def _rows(root: Path, run_id: str) -> dict[str, list]:
    """The run's rows of the projection tables, as the catalog holds them (nothing synced)."""
    with Store(root, create=False) as store:
        conn = store.catalog.conn
        out = {}
        for table in TABLES:
            key = "id" if table == "runs" else "run_id"
            cols = [c[1] for c in conn.execute(f"PRAGMA table_info({table})") if c[1] != key]
            out[table] = conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {key}=? ORDER BY 1, 2",
                                      [run_id]).fetchall()
        return out


def _columns(root: Path, names: tuple[str, ...]) -> list[int]:
    """Where ``names`` are in :func:`_rows`' rows of ``runs``."""
    with Store(root, create=False) as store:
        cols = [c[1] for c in store.catalog.conn.execute("PRAGMA table_info(runs)") if c[1] != "id"]
    return [cols.index(n) for n in names]


def _positions(root: Path, run_id: str) -> dict[str, int]:
    with Store(root, create=False) as store:
        return store.catalog.projections.positions(run_id)


def _events_on_disk(root: Path, run_id: str) -> int:
    with Store(root, create=False) as store:
        return sum(1 for _ in store.read(run_id))


def _same_run_folded_in_the_writer(tmp_path: Path, lines: bytes) -> dict[str, list]:
    """The same events appended by the library with the writer's own fold, under the same run id."""
    import io

    root = tmp_path / "here"
    with Store(root) as store:
        writer = store.create_run()
        writer_run = writer.run_id
        append_json_lines(writer, io.BytesIO(lines))
        store.close_writer(writer)
    return _rows(root, writer_run)


def test_append_returns_with_every_projection_folded_as_the_writer_folds_them(tmp_path, lines):
    root = tmp_path / "child"
    run_id = _new(root)
    proc = run_agtrace(["append", run_id, "--json"], root, input=lines, check=True)
    appended = json.loads(proc.stdout)["appended"]
    assert appended == lines.count(b"\n") > 5000
    last = appended + 1
    positions = _positions(root, run_id)
    assert positions and set(positions.values()) == {last}, positions  # folded before append returned
    got, want = _rows(root, run_id), _same_run_folded_in_the_writer(tmp_path, lines)
    assert got["run_metrics"] and got["part_metrics"] and len(got["parts"]) > 100
    (run,), (same,) = got.pop("runs"), want.pop("runs")  # the runs' own starts differ, not what was folded
    cols = ("events", "parts", "model", "end_status")
    assert [run[i] for i in _columns(root, cols)] == [same[i] for i in _columns(root, cols)]
    assert got == want
    with Store(root, create=False) as store:
        assert store.info(run_id, sync=False).events == last


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _wait_gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return True
        time.sleep(0.05)
    return False


def _start_append(root: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "append", run_id],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "AGTRACE_HOME": str(root)}, start_new_session=True)


def _feed_until_on_disk(proc: subprocess.Popen, root: Path, run_id: str, lines: bytes) -> int:
    """Write the lines in pieces (flushed) until some are in the run's files; the child's pid."""
    pieces = lines.splitlines(keepends=True)
    events = root / "runs" / run_id / "events"
    for i in range(0, len(pieces), 200):
        proc.stdin.write(b"".join(pieces[i:i + 200]))
        proc.stdin.flush()
        time.sleep(0.02)
        if sum(p.stat().st_size for p in events.iterdir() if p.suffix in (".open", ".seg")) > 60_000:
            break
    deadline = time.monotonic() + 30
    while not (children := _children_of(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert children, "append forked no fold child"
    return children[0]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_killed_or_interrupted_append_leaves_the_catalog_with_what_is_on_disk(tmp_path, lines, how):
    """SIGKILL of the appending process (its child, told by the pipe that closed, folds what the
    files hold and exits), and Ctrl-C to the whole process group (the child ignores it; the
    parent closes the run and the child folds the rest): either way the catalog holds exactly the
    events on disk, and the child is gone."""
    root = tmp_path / "store"
    run_id = _new(root)
    proc = _start_append(root, run_id)
    child = None
    try:
        child = _feed_until_on_disk(proc, root, run_id, lines)
        if how == "SIGKILL":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        assert _wait_gone(child), "the fold child did not exit"
    finally:
        for pid in (proc.pid, child):
            if pid is not None and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
    assert "Traceback" not in stderr, stderr
    on_disk = _events_on_disk(root, run_id)
    assert on_disk > 1
    assert set(_positions(root, run_id).values()) == {on_disk}


FAILING_CHILD = """
import io, sys
from agtrace.eventlog import Store, append_json_lines, fold_child

def fail(*args):
    raise RuntimeError("the child fails")

fold_child._follow = fail
with Store(sys.argv[1]) as store:
    writer = store.create_run(durability="strict")  # no flusher thread: the fork needs a lone thread
    store.close_writer(writer)
    writer = store.open_writer(writer.run_id, fold="child")
    assert store._fold_children, "no child was forked"
    append_json_lines(writer, io.BytesIO(sys.stdin.buffer.read()))
    store.close_writer(writer)
    print(writer.run_id)
"""


def test_a_child_that_fails_leaves_the_fold_to_its_parent(tmp_path, lines):
    """A fold child that dies (here: it raises at once) is no error: closing the writer folds
    what it left, in the parent, and nothing of it reaches the terminal."""
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", FAILING_CHILD, str(root)], input=lines, capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr and b"the child fails" not in proc.stderr
    run_id = proc.stdout.decode().strip()
    assert set(_positions(root, run_id).values()) == {lines.count(b"\n") + 1}
