"""`agtrace view` and `agtrace cat` (issue 15, item 1), against a real server process on
127.0.0.1: the index API's sorts, filters and pages against the values the runs were written
with, the files at any part against `agtrace replay`'s tree on disk, the token and Host checks,
hostile run data, and the errors. The browser tests are in tests/test_view_browser.py."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap

import pytest

from agtrace.eventlog import Store
from agtrace.replay import diff_parts, diff_run_trees

from .conftest import run_agtrace
from .view_server import ViewServer, fast_dir
from .view_store import AGENTS, HOSTILE_TASK, make_store, run_values

pytestmark = pytest.mark.slow  # a server, two captures and a CLI call per check: over 5 s in all
N = 60
SCRIPT = textwrap.dedent("""
    import pathlib, sys, time
    root = pathlib.Path('.')
    for i in range(4):
        (root / f'notes-{i}.txt').write_text(f'note {i} of run {sys.argv[1]}\\n')
        if i == 2:
            (root / 'data.bin').write_bytes(bytes(range(256)) * 4)
        print(f'PART {i}', flush=True)
        time.sleep(float(sys.argv[2]))
""")


def capture(root, tmp, name: str, *, pause: float = 0.05, task_id: str = "tiny/notes", wait: bool = True):
    """`agtrace run` of a raw script that writes a few files (one binary) over 4 parts."""
    work = tmp / f"work-{name}"
    work.mkdir(parents=True)
    (work / "agent.py").write_text(SCRIPT)
    args = ["run", "--workdir", str(work), "--task-id", task_id, "--marker", "^PART", "--tag", f"who={name}",
            "--", sys.executable, "agent.py", name, str(pause)]
    if not wait:
        import os
        import subprocess

        return subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", *args],
                                env={**os.environ, "AGTRACE_HOME": str(root)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    proc = run_agtrace(args, root, check=True)
    return proc.stdout.decode().split()[-1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = fast_dir(tmp_path_factory.mktemp("view"))
    root = tmp / "store"
    ids = make_store(root, N)
    runs = [capture(root, tmp, name) for name in ("one", "two")]
    with ViewServer(root) as server:
        yield server, root, ids, runs, tmp
    shutil.rmtree(tmp, ignore_errors=True)


def _expected(ids, key, reverse=False, where=lambda v: True):
    values = {run_id: run_values(i) for i, run_id in enumerate(ids)}
    figure = {"tokens": lambda v: v["tokens"], "started": lambda v: v["started"], "parts": lambda v: v["parts"],
              "duration": lambda v: v["seconds"], "tests": lambda v: v["passed"] / v["total"]}[key]
    chosen = [r for r in ids if where(values[r])]
    return sorted(chosen, key=lambda r: (figure(values[r]), r), reverse=not reverse)


def _page(server, query: str) -> dict:
    return server.json(f"/api/runs?{query}")


def _synthetic(rows, ids):
    known = set(ids)
    return [r["id"] for r in rows if r["id"] in known]


def test_index_sorts_and_pages_in_the_order_of_the_values_written(served):
    server, _, ids, _, _ = served
    for key in ("tokens", "started", "parts", "duration", "tests"):
        for reverse in (False, True):
            rows = _page(server, f"sort={key}&limit=500{'&reverse=1' if reverse else ''}")["rows"]
            assert _synthetic(rows, ids) == _expected(ids, key, reverse), (key, reverse)
    # pages of 7 put together are the whole order, and each says how many matched
    whole, offset = [], 0
    while True:
        page = _page(server, f"sort=tokens&limit=7&offset={offset}")
        assert page["matched"] == N + 2 and page["offset"] == offset
        if not page["rows"]:
            break
        whole += [r["id"] for r in page["rows"]]
        offset += 7
    assert _synthetic([{"id": i} for i in whole], ids) == _expected(ids, "tokens")
    assert len(whole) == N + 2


def test_index_filters_by_identity_tags_tests_and_ranges(served):
    server, _, ids, runs, _ = served
    codex = _page(server, "agent=codex&sort=started&limit=500")
    assert [r["id"] for r in codex["rows"]] == _expected(ids, "started", where=lambda v: v["agent"] == "codex")
    assert codex["matched"] == len(codex["rows"]) == sum(1 for i in range(N) if AGENTS[i % 3] == "codex")
    globbed = _page(server, "model=GPT-5*&limit=500")["rows"]
    assert globbed and {r["model"] for r in globbed} == {"gpt-5-codex"}
    failed = _page(server, "status=failed&limit=500")["rows"]
    assert {r["status"] for r in failed} == {"failed"} and len(failed) == N // 5
    tagged = _page(server, "tag=exp%3Da&tag=seed%3D3&limit=500")["rows"]
    assert sorted(r["id"] for r in tagged) == sorted(
        r for i, r in enumerate(ids) if i % 2 and i % 5 == 3)
    passing = _page(server, "tests=pass&limit=500")["rows"]
    assert sorted(r["id"] for r in passing) == sorted(
        r for i, r in enumerate(ids) if run_values(i)["passed"] == run_values(i)["total"])
    big = _page(server, "min_tokens=500000&max_duration=1500&limit=500")["rows"]
    assert sorted(r["id"] for r in big) == sorted(
        r for i, r in enumerate(ids) if run_values(i)["tokens"] >= 500_000 and run_values(i)["seconds"] <= 1500)
    task = _page(server, "task=tiny/notes&limit=500")
    assert sorted(r["id"] for r in task["rows"]) == sorted(runs)
    assert {r["tags"]["who"] for r in task["rows"]} == {"one", "two"}


def test_index_groups_by_task_with_counts(served):
    server, _, ids, _, _ = served
    page = _page(server, "group=task&sort=tokens&limit=500")
    tasks = [r["task_id"] for r in page["rows"]]
    assert tasks == sorted(tasks)  # a task's runs are adjacent
    for task, group in page["groups"].items():
        members = [i for i in range(N) if (HOSTILE_TASK if i == 0 else run_values(i)["task_id"]) == task]
        if task != "tiny/notes":
            assert group["runs"] == len(members)
            assert group["passing"] == sum(1 for i in members if run_values(i)["passed"] == run_values(i)["total"])
    within = [r["tokens"] for r in page["rows"] if r["task_id"] == "swe/task-03"]
    assert within == sorted(within, reverse=True)


def test_files_at_any_part_are_the_replayed_tree(served, tmp_path):
    server, root, _, runs, _ = served
    run_id = runs[0]
    for part in (1, 3, 4):
        listed = server.json(f"/api/runs/{run_id[:12]}/files?part={part}")
        out = tmp_path / f"replay-{part}"
        run_agtrace(["replay", run_id, "--part", str(part), "--out", str(out)], root, check=True)
        on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        assert [f["path"] for f in listed["files"]] == on_disk
        cli = json.loads(run_agtrace(["cat", run_id, "--part", str(part), "--list", "--json"], root,
                                     check=True).stdout)
        assert cli["files"] == listed["files"]
        for path in on_disk:
            shown = server.json(f"/api/runs/{run_id}/file?part={part}&path={path}")
            data = (out / path).read_bytes()
            assert shown["size"] == len(data) and shown["binary"] == (b"\0" in data)
            if not shown["binary"]:
                assert shown["text"] == data.decode()
                assert run_agtrace(["cat", run_id, "--part", str(part), path], root, check=True).stdout == data
    # the tree really changes between parts: notes-3 is only there at the end
    assert "notes-3.txt" not in [f["path"] for f in server.json(f"/api/runs/{run_id}/files?part=1")["files"]]
    assert server.json(f"/api/runs/{run_id}/file?part=4&path=notes-3.txt")["text"] == "note 3 of run one\n"


def test_cat_says_a_binary_file_is_binary(served):
    _, root, _, runs, _ = served
    proc = run_agtrace(["cat", runs[0], "--part", "last", "data.bin"], root)
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"data.bin at part 4 is a binary file (1,024 bytes); --binary writes its bytes" in proc.stderr
    raw = run_agtrace(["cat", runs[0], "data.bin", "--binary"], root, check=True).stdout
    assert raw == bytes(range(256)) * 4
    missing = run_agtrace(["cat", runs[0], "--part", "1", "nope.txt"], root)
    assert missing.returncode == 1 and b"--list` lists its files" in missing.stderr
    no_part = run_agtrace(["cat", runs[0], "--part", "9", "data.bin"], root)
    assert no_part.returncode == 2 and b"no part 9" in no_part.stderr  # bad input, as in every command
    assert b"Traceback" not in missing.stderr + no_part.stderr


def test_cat_list_with_a_path_lists_what_is_under_it(tmp_path):
    """`cat RUN --list PATH` ignored PATH and listed every file; now it lists PATH itself or the
    files under it (a directory), and a PATH that names nothing is bad input."""
    from agtrace.capture.recorder import Recorder

    work = tmp_path / "work"
    for rel in ("src/a.py", "src/sub/b.py", "srcx.py", "README"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(rel)
    store = Store(tmp_path / "s")
    with Recorder(store, workdir=work, agent="t") as rec:
        rec.message("assistant", "look")
    store.close()
    listed = lambda *args: run_agtrace(["cat", rec.run_id, "--list", *args], tmp_path / "s",  # noqa: E731
                                       check=True).stdout.decode().split()
    assert listed() == ["README", "src/a.py", "src/sub/b.py", "srcx.py"]
    assert listed("src") == listed("src/") == listed("./src") == ["src/a.py", "src/sub/b.py"]
    assert listed("src/sub/b.py") == ["src/sub/b.py"]
    as_json = json.loads(run_agtrace(["cat", rec.run_id, "--list", "src/sub", "--json"], tmp_path / "s",
                                     check=True).stdout)
    assert [f["path"] for f in as_json["files"]] == ["src/sub/b.py"]
    nothing = run_agtrace(["cat", rec.run_id, "--list", "sr"], tmp_path / "s")
    assert (nothing.returncode, nothing.stdout) == (2, b"")
    assert nothing.stderr.decode().startswith("error: no file at or under 'sr' at part ") and b"--list` lists them all" in nothing.stderr


def test_diff_of_two_runs_at_chosen_parts(served):
    server, root, _, runs, _ = served
    d = server.json(f"/api/diff?a={runs[0]}&pa=1&b={runs[1]}&pb=last")
    last = server.json(f"/api/runs/{runs[1]}/files")["part"]
    assert (d["part_a"], d["part_b"]) == (1, last)
    files_a = {f["path"]: f["blob"] for f in server.json(f"/api/runs/{runs[0]}/files?part=1")["files"]}
    files_b = {f["path"]: f["blob"] for f in server.json(f"/api/runs/{runs[1]}/files?part={last}")["files"]}
    want = {p: "added" if p not in files_a else "deleted" if p not in files_b else "modified"
            for p in set(files_a) | set(files_b) if files_a.get(p) != files_b.get(p)}
    by_path = {f["path"]: f for f in d["files"]}
    assert {p: f["status"] for p, f in by_path.items()} == want
    assert by_path["notes-0.txt"]["status"] == "modified"  # "one" vs "two"
    assert by_path["notes-3.txt"]["status"] == "added" and by_path["data.bin"]["binary"]
    assert "+note 3 of run two" in by_path["notes-3.txt"]["patch"]
    # one run against itself at two parts is that run's diff between them
    with Store(root) as store:
        same = diff_run_trees(store, runs[0], runs[0], part_a=1, part_b=4)
        assert [(f.path, f.status) for f in same.files] == \
            [(f.path, f.status) for f in diff_parts(store, runs[0], 1, 4).files]


def test_compare_and_run_pages_serve(served):
    server, _, ids, runs, _ = served
    status, headers, body = server.get(f"/compare?runs={runs[0]},{runs[1]}")
    assert status == 200 and "connect-src 'self'" in body.decode()
    assert server.json(f"/api/compare?runs={runs[0]},{runs[1]}")["runs"][1]["id"] == runs[1]
    status, headers, body = server.get(f"/runs/{ids[0]}")
    page = body.decode()
    assert status == 200 and headers["cache-control"] == "no-store"
    # hostile run data are escaped by the report (the browser test checks nothing runs)
    assert '<img src=x onerror="window.PWNED=1">' not in page and "&lt;img src=x onerror" in page
    assert "<script>window.PWNED" not in page and '<b onmouseover="window.PWNED' not in page
    _, _, index = server.get("/")
    assert b"PWNED" not in index  # the index holds no run data; its script draws them as text


def test_api_errors_say_what_to_do(served):
    server, _, ids, _, _ = served
    for path, status, words in (
        ("/api/runs?sort=colour", 400, "sort by one of"),
        ("/api/runs?limit=x", 400, "limit is a whole number"),
        ("/api/runs?tag=novalue", 400, "KEY=VALUE"),
        ("/api/runs/ZZZZZZZZ/files", 404, "ZZZZZZZZ"),
        (f"/api/runs/{ids[1]}/files?part=1", 400, "recorded no snapshot"),
        (f"/api/runs/{ids[1]}/files?part=2", 400, "has no part 2"),
        ("/compare", 400, "name the runs to compare"),
        (f"/api/runs/{ids[1]}/files?part=99999999999999999999999", 400, "part is out of range"),  # was a 500
        (f"/api/diff?a={ids[1]}&b={ids[2]}&pa=-99999999999999999999", 400, "pa is out of range"),
    ):
        got, headers, body = server.get(path)
        assert got == status, (path, got, body)
        assert headers["content-type"].startswith("application/json")
        assert words in json.loads(body)["error"], (path, body)


def test_only_loopback_hosts_without_a_token(served):
    server, _, _, _, _ = served
    status, _, body = server.get("/api/runs", headers={"Host": "attacker.example:8765"})
    assert status == 403 and b"--token" in body
    assert server.get("/api/runs", headers={"Host": "localhost"})[0] == 200


def test_a_token_is_required_on_every_request(served):
    _, root, _, _, _ = served
    with ViewServer(root, "--token", "s3cret-token-for-tests") as server:
        assert server.url.endswith("/?token=s3cret-token-for-tests")
        assert server.get("/api/runs")[0] == 401
        assert server.get("/api/runs", headers={"Authorization": "Bearer wrong-token-1234"})[0] == 401
        assert server.get("/", headers={"Host": "attacker.example"})[0] == 401
        assert server.get("/api/runs", headers={"Authorization": "Bearer s3cret-token-for-tests"})[0] == 200
        status, headers, _ = server.get("/?token=s3cret-token-for-tests&sort=tokens", follow=False)
        assert status == 303 and headers["location"] == "/?sort=tokens"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
        assert server.get("/api/runs", headers={"Cookie": cookie})[0] == 200


def test_view_json_announces_the_server_for_scripts(served):
    _, root, _, _, _ = served
    with ViewServer(root, "--json", "--token", "json-token-for-tests") as server:
        banner = json.loads(server.banner)
        assert banner["url"] == server.url and banner["url"].endswith("?token=json-token-for-tests")
        assert banner["host"] == "127.0.0.1" and banner["port"] > 0 and banner["token_required"] is True
        assert banner["store"] == str(root)
        assert server.get("/api/runs", headers={"Authorization": "Bearer json-token-for-tests"})[0] == 200


def test_view_without_its_extra_says_which_to_install(tmp_path):
    import os
    import subprocess

    code = "import sys; sys.modules['uvicorn'] = None\nfrom agtrace.cli.main import main; main()"
    proc = subprocess.run([sys.executable, "-c", code, "view"], capture_output=True, timeout=60,
                          env={**os.environ, "AGTRACE_HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert b"install the `view` extra (pip install 'agtrace[view]')" in proc.stderr
    from agtrace.cli.view_cmds import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("192.168.1.4")


def test_background_folds_give_way_to_waiting_requests():
    """The live thread's catch-up takes the store's lock only while no request waits for it, so
    a request is served between two of its chunks, never after all of them."""
    import threading
    import time

    from agtrace.replay.viewer import Gate

    gate, chunks, done = Gate(), [], threading.Event()

    def catch_up():
        for i in range(200):
            with gate.after_requests():
                chunks.append(i)
                time.sleep(0.005)
        done.set()

    worker = threading.Thread(target=catch_up)
    worker.start()
    while not chunks:
        time.sleep(0.001)
    with gate:
        served_after = len(chunks)
    worker.join()
    assert done.is_set() and served_after < 200


def test_a_request_that_waits_out_the_lock_is_answered_503_and_the_next_is_served(tmp_path, monkeypatch):
    """`agtrace view` waits --lock-wait (here AGTRACE_LOCK_WAIT=1) for another process writing the
    catalog, then answers 503 saying to retry, not a 500; once the writer is gone the same page
    is served with the events folded meanwhile."""
    import sqlite3

    from agtrace.eventlog import MessageAdded, RunStarted
    from agtrace.eventlog.writer import RunWriter

    root = tmp_path / "store"
    store = Store(root)
    writer = store.create_run(RunStarted(agent="held", task_id="lock/wait"))
    writer.append(MessageAdded(role="user", text="first"))
    store.close_writer(writer)
    run_id = writer.run_id
    store.close()
    monkeypatch.setenv("AGTRACE_LOCK_WAIT", "1")
    with ViewServer(root) as server:
        holder = sqlite3.connect(root / "catalog.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:  # events the catalog has not folded: the page must write it to show them
            raw = RunWriter(root / "runs" / run_id, run_id, durability="strict")
            raw.append(MessageAdded(role="assistant", text="written while the catalog was held"))
            raw.close()
            status, headers, body = server.get(f"/runs/{run_id}")
            assert status == 503, (status, body[:300])
            assert headers["content-type"].startswith("application/json")
            assert "retry" in json.loads(body)["error"] and "--lock-wait" in json.loads(body)["error"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        status, _, body = server.get(f"/runs/{run_id}")
        assert status == 200 and b"written while the catalog was held" in body


def test_the_index_finds_a_segment_damaged_before_or_while_the_viewer_runs(tmp_path):
    """Like `ls`, the viewer's index stats the sealed segments: a run damaged before it started
    is listed damaged at once, one damaged while it runs within its 20-poll rescan (~10 s), with
    its figures stopping at the damage (before, both stayed "completed" until a reindex)."""
    import time

    from .test_store_truth import _damage, _run, _segments

    root = tmp_path / "store"
    before, during = _run(root), _run(root)
    run_agtrace(["ls"], root, check=True)  # both indexed whole
    _damage(_segments(root, before)[2], "flip")
    with ViewServer(root) as server:
        rows = {r["id"]: r for r in server.json("/api/runs?limit=50")["rows"]}
        assert rows[before]["status"] == "damaged" and rows[before]["events"] == 3
        assert rows[during]["status"] == "completed" and rows[during]["events"] == 8
        _damage(_segments(root, during)[2], "truncate")
        deadline = time.monotonic() + 40
        while rows[during]["status"] != "damaged":
            assert time.monotonic() < deadline, rows[during]
            time.sleep(0.5)
            rows = {r["id"]: r for r in server.json("/api/runs?limit=50")["rows"]}
        assert rows[during]["events"] == 3 and "cannot be read from seq 4 on" in rows[during]["reason"]
