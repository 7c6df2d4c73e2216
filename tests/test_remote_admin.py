"""What a remote holds and how a store is kept small, through the CLI: push/pull counts that
say what happened, `ls --remote`, `pull PREFIX`, `rm`, `gc`, retention (issue 13, items 4, 8)."""

from __future__ import annotations

import json

import pytest

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import RunStarted, Store
from tests.conftest import FIXTURES, run_agtrace, run_on_a_terminal
from tests.test_remote import FileBackend, S3Backend, moto_server  # noqa: F401 - the fixture

BIG = "same output, long enough to be a blob " * 5000


@pytest.fixture(params=["file", "s3"])
def backend(request, tmp_path):
    if request.param == "file":
        return FileBackend(tmp_path / "remote")
    import uuid

    return S3Backend(request.getfixturevalue("moto_server"), f"agtrace-{uuid.uuid4().hex[:12]}")


def _json(proc):
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def _recorded(store: Store, work, n: int) -> list[str]:
    """``n`` captured runs whose tool outputs are the same blob."""
    ids = []
    for i in range(n):
        (work / "a.txt").write_text(f"{i}\n")
        with Recorder(store, workdir=work, agent="t", model="m", task=f"task {i}") as rec:
            call = rec.tool_call("shell", {"cmd": "cat big"}, command="cat big")
            (work / "a.txt").write_text(f"{i} edited\n")
            rec.tool_result(call, output=BIG, exit_code=0)
            ids.append(rec.run_id)
    return ids


@pytest.fixture
def home(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "home"
    store = Store(path)
    ids = _recorded(store, work, 3)
    store.close()
    return {"path": path, "ids": ids, "work": work}


def test_push_to_an_empty_remote_reports_nothing_as_already_there(backend, home):
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    store = Store(home["path"])
    live = store.create_run(RunStarted(agent="live"))  # its open segment is not pushed
    try:
        proc = run_agtrace(["push", "--all"], home["path"], env=env)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, err
        assert "0 already there" in out and "2 blob(s) another run of this push had already sent" in out
        assert f"skipped 1 open segment(s) (runs {live.run_id}" in err
        report = _json(run_agtrace(["push", "--all", "--json"], home["path"], env=env))
    finally:
        store.close_writer(live)
        store.close()
    assert report["uploaded"] == 0 and report["existed"] > 0 and report["shared"] == 2
    assert report["skipped"] == 1 and report["skipped_runs"] == [live.run_id]
    first_objects = len(backend.objects())
    assert first_objects == report["existed"]  # every object counted once


def test_ls_remote_lists_what_a_remote_holds_and_pull_resolves_a_prefix_against_it(backend, home, tmp_path):
    env = {**backend.env}
    a, b, c = home["ids"]
    run_agtrace(["push", a, b, "--remote", backend.url], home["path"], env=env, check=True)
    listed = _json(run_agtrace(["ls", "--remote", backend.url, "--json"], home["path"], env=env))
    assert [r["id"] for r in listed] == [a, b] and all(r["local"] and r["manifest"] for r in listed)
    assert all(r["segments"] >= 1 and r["bytes"] > 0 and r["last_seq"] > 1 for r in listed)
    human = run_agtrace(["ls", "--remote", backend.url], home["path"], env=env).stdout.decode()
    assert a in human and b in human and c not in human and "2 run(s)" in human
    fresh = tmp_path / "fresh"
    listed = _json(run_agtrace(["ls", "--remote", backend.url, "--json"], fresh, env=env))
    assert [r["local"] for r in listed] == [False, False] and not fresh.exists()  # nothing created
    missing = run_agtrace(["pull", "ZZZ", "--remote", backend.url], fresh, env=env)
    assert missing.returncode == 2 and f"agtrace ls --remote {backend.url}" in missing.stderr.decode()
    assert "full run id" not in missing.stderr.decode()
    prefix = next(b[:n] for n in range(10, 27) if not a.startswith(b[:n]))
    pulled = _json(run_agtrace(["pull", prefix.lower(), "--remote", backend.url, "--json"], fresh, env=env))
    assert pulled["runs"] == [b] and pulled["ok"]
    common = a[:8] if b.startswith(a[:8]) else None
    if common:
        ambiguous = run_agtrace(["pull", common, "--remote", backend.url], fresh, env=env)
        assert ambiguous.returncode == 2 and "matches 2 runs" in ambiguous.stderr.decode()


def test_rm_remote_removes_the_runs_objects_and_only_with_remote_given(backend, home):
    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    a, b, _c = home["ids"]
    run_agtrace(["push", "--all"], home["path"], env=env, check=True)
    blobs_before = {k for k in backend.objects() if k.startswith("blobs/")}
    refused = run_agtrace(["rm", a, "--remote", backend.url], home["path"], env=env, input=b"")
    assert refused.returncode == 2 and "--yes" in refused.stderr.decode()
    dry = _json(run_agtrace(["rm", a, "--remote", backend.url, "--dry-run", "--json"], home["path"], env=env))
    assert dry["runs"] == [a] and dry["objects"] >= 3 and dry["dry_run"]
    assert any(k.startswith(f"runs/{a}/") for k in backend.objects())
    done = _json(run_agtrace(["rm", a[:12], "--remote", backend.url, "--yes", "--json"], home["path"], env=env))
    assert done["runs"] == [a] and done["objects"] == dry["objects"]
    keys = backend.objects()
    assert not any(k.startswith(f"runs/{a}/") for k in keys) and any(k.startswith(f"runs/{b}/") for k in keys)
    assert {k for k in keys if k.startswith("blobs/")} == blobs_before  # shared blobs stay
    assert a in [r["id"] for r in _json(run_agtrace(["ls", "--json"], home["path"], env=env))]  # local untouched
    # AGTRACE_REMOTE set, no --remote: `rm` is about the store, and says so
    local = run_agtrace(["rm", b, "--yes"], home["path"], env=env)
    assert local.returncode == 0 and str(home["path"]) in local.stdout.decode()
    assert any(k.startswith(f"runs/{b}/") for k in backend.objects())


def test_rm_and_gc_free_a_store_and_never_what_a_run_references(home):
    store_path = home["path"]
    a, b, c = home["ids"]
    blob_dir = store_path / "blobs"
    blobs = sorted(p for p in blob_dir.rglob("*.zst"))
    assert len(blobs) == 1  # the three runs share one blob
    refused = run_agtrace(["rm", a], store_path, input=b"")
    assert refused.returncode == 2 and "without --yes" in refused.stderr.decode()
    assert (store_path / "runs" / a).is_dir()
    dry = _json(run_agtrace(["rm", a, b, "--dry-run", "--json"], store_path))
    assert dry["runs"] == [a, b] and dry["bytes"] > 0 and (store_path / "runs" / a).is_dir()
    removed = run_agtrace(["rm", a, b, "--yes"], store_path)
    assert removed.returncode == 0 and "removed 2 run(s)" in removed.stdout.decode()
    assert [r["id"] for r in _json(run_agtrace(["ls", "--json"], store_path))] == [c]
    assert not (store_path / "runs" / a).exists() and not (store_path / "runs" / b).exists()
    run_agtrace(["verify"], store_path, check=True)
    kept = _json(run_agtrace(["gc", "--json"], store_path))  # c still references the blob
    assert not [i for i in kept["items"] if i["kind"] == "blob"] and blobs[0].exists()
    run_agtrace(["rm", c, "--yes"], store_path, check=True)
    blob_bytes = blobs[0].stat().st_size
    dry = run_agtrace(["gc", "--dry-run"], store_path).stdout.decode()
    assert "1 unreferenced blob(s)" in dry and blobs[0].name in dry and "would free" in dry and blobs[0].exists()
    done = _json(run_agtrace(["gc", "--json"], store_path))
    assert done["counts"]["blob"] == 1 and done["bytes"] >= blob_bytes
    assert not blobs[0].exists()
    assert _json(run_agtrace(["gc", "--json"], store_path))["items"] == []


def test_rm_refuses_a_run_being_written(home):
    store = Store(home["path"])
    live = store.create_run(RunStarted(agent="live"))
    try:
        proc = run_agtrace(["rm", live.run_id, "--yes"], home["path"])
        assert proc.returncode != 0 and f"run {live.run_id} is being written (by pid" in proc.stderr.decode()
        assert store.has_run(live.run_id)
        kept = _json(run_agtrace(["rm", "--keep", "0", "--dry-run", "--json"], home["path"]))
        assert live.run_id not in kept["runs"] and len(kept["runs"]) == 3  # retention skips it
    finally:
        store.close_writer(live)
        store.close()


def test_removing_runs_reports_its_progress_run_by_run(backend, home):
    """``remove_runs`` and ``remove_remote_runs`` call ``progress(done, total)`` per run (a remote:
    listing, then deleting), so `rm` of hundreds of runs, on S3 a request or more each, shows
    how far it is; on a terminal `rm` draws it (stderr a pty), and stdout keeps its report."""
    import os
    import sys

    from agtrace.eventlog import remove_remote_runs, remove_runs

    env = {**backend.env, "AGTRACE_REMOTE": backend.url}
    a, b, c = home["ids"]
    run_agtrace(["push", "--all"], home["path"], env=env, check=True)
    seen: list[tuple[int, int]] = []
    with backend.remote() as remote:
        remove_remote_runs(remote, [a, b], dry_run=True, progress=lambda *p: seen.append(p))
        assert seen == [(1, 2), (2, 2)]
        seen.clear()
        remove_remote_runs(remote, [a, b], progress=lambda *p: seen.append(p))
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    store = Store(home["path"])
    seen.clear()
    remove_runs(store, [a], progress=lambda *p: seen.append(p))
    store.close()
    assert seen == [(1, 1)]
    code, drawn, out = run_on_a_terminal([sys.executable, "-c", "from agtrace.cli.main import main; main()", "rm",
                                           b, c, "--yes"], {**os.environ, **env, "AGTRACE_HOME": str(home["path"])})
    assert code == 0, drawn
    assert b"removing 2 run(s)" in drawn and b"removed 2 run(s)" in out


def test_retention_keeps_the_newest_and_removes_the_old(tmp_path):
    import time

    from agtrace.eventlog import RunEnded

    store = Store(tmp_path / "store")
    day = 86400 * 10**9
    ids = []
    for age_days in (10, 5, 0):
        w = store.create_run(RunStarted(agent="a"), ts=time.time_ns() - age_days * day)
        w.append(RunEnded(status="completed"))
        store.close_writer(w)
        ids.append(w.run_id)
    store.close()
    old, middle, new = ids
    dry = _json(run_agtrace(["rm", "--older-than", "7d", "--dry-run", "--json"], store.root))
    assert dry["runs"] == [old]
    both = _json(run_agtrace(["rm", "--older-than", "1d", "--keep", "2", "--dry-run", "--json"], store.root))
    assert both["runs"] == [old]  # older than a day AND beyond the newest two
    run_agtrace(["rm", "--keep", "1", "--yes"], store.root, check=True)
    assert [r["id"] for r in _json(run_agtrace(["ls", "--json"], store.root))] == [new]
    bad = run_agtrace(["rm", "--older-than", "soon", "--yes"], store.root)
    assert bad.returncode == 2 and "--older-than" in bad.stderr.decode()
    both_kinds = run_agtrace(["rm", new, "--keep", "1"], store.root)
    assert both_kinds.returncode == 2


def test_gc_collects_caches_of_removed_runs_and_old_leftovers(home):
    import os

    store_path = home["path"]
    ghost = store_path / "cache" / "01M8AAAAAAAAAAAAAAAAAAAAAA" / "repo.git"
    ghost.mkdir(parents=True)
    (ghost / "HEAD").write_text("ref: refs/heads/x\n")
    leftover = store_path / "staging" / "tmp-interrupted"
    leftover.mkdir(parents=True)
    (leftover / "half.seg").write_bytes(b"x" * 1000)
    fresh = store_path / "staging" / "tmp-now"  # an import may be building it right now
    fresh.mkdir()
    half_blob = store_path / "blobs" / "ab" / ".ab12.999.tmp"  # a writer killed while storing a blob
    half_blob.parent.mkdir(parents=True, exist_ok=True)
    half_blob.write_bytes(b"z" * 10)
    two_hours_ago = __import__("time").time() - 2 * 3600
    os.utime(leftover, (two_hours_ago, two_hours_ago))
    os.utime(half_blob, (two_hours_ago, two_hours_ago))
    dry = _json(run_agtrace(["gc", "--dry-run", "--json"], store_path))
    kinds = {(i["kind"], os.path.basename(i["path"])) for i in dry["items"]}
    assert ("cache", "01M8AAAAAAAAAAAAAAAAAAAAAA") in kinds and ("staging", "tmp-interrupted") in kinds
    assert ("staging", "tmp-now") not in kinds and ghost.exists() and leftover.exists()
    assert ("staging", ".ab12.999.tmp") in kinds and half_blob.exists()
    assert dry["bytes"] >= 1000
    run_agtrace(["gc"], store_path, check=True)
    assert not ghost.parent.exists() and not leftover.exists() and fresh.exists() and not half_blob.exists()
    run_agtrace(["verify"], store_path, check=True)


def test_gc_keeps_recent_unreferenced_blobs_while_a_run_is_being_written(home):
    store = Store(home["path"])
    for rid in home["ids"]:
        run_agtrace(["rm", rid, "--yes"], home["path"], check=True)
    digest = store.blobs.put(b"stored by a writer, not yet named by an event " * 100)
    live = store.create_run(RunStarted(agent="live"))
    try:
        report = _json(run_agtrace(["gc", "--json"], home["path"]))
        assert report["kept_recent_blobs"] >= 1 and store.blobs.has(digest)
        human = run_agtrace(["gc", "--dry-run"], home["path"])
        assert "a run is being written" in human.stderr.decode()
    finally:
        store.close_writer(live)
    report = _json(run_agtrace(["gc", "--json"], home["path"]))
    assert report["counts"].get("blob", 0) >= 1 and not store.blobs.has(digest)
    store.close()


def _slow_claude_session(path, lines: int = 3000) -> None:
    """A real Claude session with one message large enough to be a blob (line 2), then ``lines``
    more, so that its import goes on for seconds after it stored the blob."""
    real = (FIXTURES / "claude-code" / "daaain_representative_messages.jsonl").read_text().split("\n")
    rec = json.loads(real[1])
    rec["message"]["content"][0]["text"] = "BIGBLOB-" + "x" * 200_000
    out = [real[0], json.dumps(rec)]
    for i in range(lines):
        rec = json.loads(real[1])
        rec["uuid"], rec["message"]["id"] = f"u{i}", f"m{i}"
        rec["message"]["content"][0]["text"] = f"line {i} " + "y" * 2000
        out.append(json.dumps(rec))
    path.write_text("\n".join(out + real[2:]))


def test_gc_keeps_the_blobs_and_the_staging_of_an_import_in_progress(tmp_path):
    """An import builds its run in staging/ (no lock) but puts its blobs into the shared blobs/
    as it goes: gc while it is in progress removes neither, however old; once the run is
    adopted, gc removes only what no run names."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    from agtrace.capture.importers.base import ImportContext
    from agtrace.eventlog import RawRecorded, RunEnded, collect_garbage
    from agtrace.eventlog.leftover import tag

    store = Store(tmp_path / "store")
    two_hours_ago = time.time() - 2 * 3600
    orphan = store.blobs.put(b"left by a removed run " * 5000)
    os.utime(store.blobs.path(orphan), (two_hours_ago, two_hours_ago))
    ctx = ImportContext(store)
    sink = ctx.new_run("a source", RunStarted(agent="claude", source="import:claude-session"), 10**18)
    inline, blob, _ = sink.text("BIGBLOB-" + "x" * 200_000)
    assert blob and store.blobs.has(blob) and not store.run_ids()
    for path in (store.blobs.path(blob), sink.dir, ctx.staging):  # an import that has run for hours
        os.utime(path, (two_hours_ago, two_hours_ago))

    report = collect_garbage(store)
    assert store.blobs.has(blob) and store.blobs.has(orphan) and ctx.staging.is_dir()
    assert report.building == [str(ctx.staging)] and report.kept_building_blobs == 2 and not report.items
    human = run_agtrace(["gc"], store.root)
    assert human.returncode == 0 and "kept 2 unreferenced blob(s): a run is being imported" in human.stderr.decode()
    assert store.blobs.has(blob)

    sink.append(RawRecorded(source="import:claude-session", text=inline, blob=blob, location="s.jsonl:2"))
    sink.append(RunEnded(status="completed"))
    sink.close()
    run_id = store.adopt(sink.dir)
    shutil.rmtree(ctx.staging)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    killed = store.root / "staging" / f"tmp{tag().replace(f'-{os.getpid()}@', f'-{int(dead.stdout)}@')}x"
    killed.mkdir()  # what a killed import left: its maker is gone, it protects nothing
    report = collect_garbage(store)
    assert report.building == [] and {(i["kind"], i["path"]) for i in report.items} == {
        ("blob", str(store.blobs.path(orphan)))}
    assert store.blobs.has(blob) and store.verify(run_id).ok


@pytest.mark.slow  # seconds of real processes; CI runs it
def test_gc_while_a_real_import_is_under_way_leaves_the_imported_run_intact(tmp_path):
    """`agtrace import` in its own process, stopped (SIGSTOP) once it has stored its first blob
    and before it adopted its run; `agtrace gc` then; the import goes on: `verify` passes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    source = tmp_path / "claude_slow.jsonl"
    _slow_claude_session(source)
    for attempt in range(3):  # each is caught under way in practice: the import goes on for seconds
        store_path = tmp_path / f"store{attempt}"
        run_agtrace(["import", str(FIXTURES / "codex-exec-json")], store_path, check=True)  # runs gc reads
        before = set(os.listdir(store_path / "runs"))
        proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "import",
                                 str(source)], env={**os.environ, "AGTRACE_HOME": str(store_path)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while proc.poll() is None and not list((store_path / "blobs").glob("*/*.zst")):
            time.sleep(0.002)
        stopped = proc.poll() is None  # not reaped: the pid stays its own until communicate()
        if stopped:
            os.kill(proc.pid, signal.SIGSTOP)
        try:
            under_way = stopped and set(os.listdir(store_path / "runs")) == before
            gc = run_agtrace(["gc", "--json"], store_path) if under_way else None
        finally:
            if stopped:
                os.kill(proc.pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        if under_way:
            break
    assert under_way, "the import ended before gc could run, three times"
    verified = run_agtrace(["verify"], store_path)
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()
    assert _json(gc)["kept_building_blobs"] >= 1


def test_an_unreachable_remote_gives_each_command_its_own_next_step(tmp_path):
    """`pull` and `ls --remote` of an endpoint nobody listens on said "a retried push resumes"."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AGTRACE_S3_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "a",
           "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    steps = {("pull", "--all"): "pulling again resumes", ("ls",): "list again once the endpoint answers"}
    for args, step in steps.items():
        proc = run_agtrace([*args, "--remote", "s3://agtrace-x/p"], tmp_path / "home", env=env)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "cannot reach" in err and step in err, err
        assert "push" not in err and "Traceback" not in err, err


def test_a_failed_pull_into_a_new_path_leaves_nothing_and_keeps_a_store_that_was_there(tmp_path):
    """Before: a pull that failed (a run the remote lacks, an unreachable remote) left an empty
    store at the --store path it had created."""
    remote = tmp_path / "remote"
    remote.mkdir()
    new = tmp_path / "a" / "b" / "store"
    missing = ["pull", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--remote", f"file://{remote}"]
    proc = run_agtrace(missing, new)
    assert proc.returncode != 0 and b"Traceback" not in proc.stderr
    assert not (tmp_path / "a").exists()
    proc = run_agtrace(["pull", "--all", "--remote", f"file://{tmp_path / 'nowhere'}"], new)
    assert proc.returncode != 0 and not (tmp_path / "a").exists()
    old = tmp_path / "old"
    Store(old).close()
    assert run_agtrace(missing, old).returncode != 0
    assert (old / "runs").is_dir()  # a store that existed is never removed


def test_gc_removes_the_bundle_temp_files_of_killed_writers_and_keeps_a_live_ones(home):
    """A capture or push killed while writing a bundle leaves its temp file in the run's
    ``bundles/`` (as big as the bundle); only a later bundle of the same run removed it, and an
    ended run gets none. `gc` removes those whose writer is gone: named by a dead owner, or
    named the older way (``.<name>.tmp-<pid>``, no host) and untouched for an hour. A live
    writer's, and a recent old-style one, are kept."""
    import os
    import subprocess
    import time

    from agtrace.eventlog import leftover

    store_path = home["path"]
    bundles = store_path / "runs" / home["ids"][0] / "bundles"
    bundles.mkdir(exist_ok=True)
    dead_pid = subprocess.Popen(["true"])  # a pid that has exited
    dead_pid.wait()
    host = leftover.tag().rsplit("-", 1)[0]  # "@<host>"
    kept = sorted(p.name for p in bundles.glob("*.bundle"))
    dead = bundles / f".0002.bundle.{host}-{dead_pid.pid}@0a1b2c3d.tmp"
    alive = bundles / f".0003.bundle.{leftover.tag()}0a1b2c3e.tmp"  # this process: alive
    old = bundles / ".0004.bundle.tmp-999999"
    recent_old = bundles / ".0005.bundle.tmp-999998"
    for path in (dead, alive, old, recent_old):
        path.write_bytes(b"b" * 4096)
    hour_ago = time.time() - 2 * 3600
    os.utime(old, (hour_ago, hour_ago))
    dry = _json(run_agtrace(["gc", "--dry-run", "--json"], store_path))
    named = {os.path.basename(i["path"]) for i in dry["items"] if i["kind"] == "staging"}
    assert named == {dead.name, old.name} and dead.exists() and old.exists()
    run_agtrace(["gc"], store_path, check=True)
    assert not dead.exists() and not old.exists() and alive.exists() and recent_old.exists()
    assert kept and sorted(p.name for p in bundles.glob("*.bundle")) == kept  # the bundles themselves stay
    run_agtrace(["verify"], store_path, check=True)
