"""Verify means verified; one damaged run harms nothing else (issue 12, item 6).

Each test is one reproduction of the issue: it failed on the code before the fix. Real files,
real SQLite, real git repositories and bundles, the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from agtrace.capture import Recorder
from agtrace.eventlog import (
    MessageAdded,
    NewerFormat,
    RunEnded,
    RunStarted,
    Store,
    StoreError,
)
from agtrace.eventlog.reader import list_segments

from .conftest import run_agtrace


def segments(store: Store, run_id: str) -> list[Path]:
    return [p for _f, _l, p in list_segments(store.run_dir(run_id) / "events")]


def plain_run(store: Store, *, events: int = 5, end: bool = True, seal: bool = True) -> str:
    """A run of two sealed segments (run_started; the rest), or an open second one."""
    writer = store.create_run(RunStarted(agent="t"), durability="strict")
    store.close_writer(writer)
    writer = store.open_writer(writer.run_id, durability="strict")
    for i in range(events):
        writer.append(MessageAdded(role="user", text=f"m{i}"))
    if end:
        writer.append(RunEnded(status="completed"))
    if seal:
        store.close_writer(writer)
    else:
        writer.close(seal=False)
    store.sync(writer.run_id)
    return writer.run_id


def captured_run(store: Store, work: Path, parts: int = 3) -> str:
    """A run captured with snapshots (shadow repository and a bundle), ``parts`` tool parts."""
    work.mkdir(exist_ok=True)
    (work / "a.txt").write_text("zero\n")
    with Recorder(store, workdir=work, agent="t") as rec:
        for i in range(parts):
            (work / "a.txt").write_text(f"part {i + 1}\n")
            (work / f"f{i}.txt").write_text(f"file {i}\n" * 50)
            call = rec.tool_call("shell", command=f"step {i}")
            rec.tool_result(call, output="ok", exit_code=0)
    return rec.run_id


# -- completeness ------------------------------------------------------------------------------


@pytest.mark.parametrize("catalog", ["kept", "deleted"])
def test_deleting_the_last_sealed_segment_is_found(tmp_path, catalog):
    store = Store(tmp_path / "s")
    run_id = plain_run(store)
    assert store.verify(run_id).ok
    last = segments(store, run_id)[-1]
    last.unlink()
    if catalog == "deleted":
        store.close()
        (tmp_path / "s" / "catalog.db").unlink()
        store = Store(tmp_path / "s")
    report = store.verify(run_id)
    assert not report.ok
    assert any(str(last) in p and "missing" in p for p in report.problems), report.problems
    if catalog == "kept":  # the catalog saw the end: its run_ended is named
        assert any("run_ended event is missing" in p for p in report.problems), report.problems


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_losing_the_open_segment_is_found(tmp_path, how):
    store = Store(tmp_path / "s")
    run_id = plain_run(store, end=False, seal=False)
    (open_seg,) = [p for p in segments(store, run_id) if p.suffix == ".open"]
    assert store.verify(run_id).ok
    if how == "deleted":
        open_seg.unlink()
    else:
        open_seg.write_bytes(b"")
    report = store.verify(run_id)
    assert not report.ok
    assert any(str(open_seg) in p for p in report.problems), report.problems
    assert any("catalog indexed seqs up to 6" in p for p in report.problems), report.problems


def test_verify_of_a_whole_captured_run_says_every_part_replays(tmp_path):
    store = Store(tmp_path / "s")
    run_id = captured_run(store, tmp_path / "w")
    report = store.verify(run_id)
    assert report.ok, report.problems
    (check,) = report.checks
    assert check.ended and check.parts == 3 and check.replayable == [0, 1, 2, 3]
    assert check.snapshots == {"repo.git": "ok", "bundles": "ok"}
    assert report.trees == 4 and report.tree_checks == 8  # four trees, in two sources


def _objects(repo: Path) -> list[Path]:
    return [p for p in (repo / "objects").rglob("*") if p.is_file() and p.parent.name not in ("info",)]


def test_damage_to_the_shadow_repository_is_found_and_bundles_still_replay(tmp_path):
    store = Store(tmp_path / "s")
    run_id = captured_run(store, tmp_path / "w")
    repo = store.run_dir(run_id) / "repo.git"
    for obj in _objects(repo):  # every loose object and pack: damage them all
        obj.chmod(0o644)
        data = bytearray(obj.read_bytes())
        data[len(data) // 2] ^= 0xFF
        obj.write_bytes(bytes(data))
    report = store.verify(run_id)
    assert not report.ok
    (check,) = report.checks
    assert check.snapshots["bundles"] == "ok" and check.snapshots["repo.git"] != "ok"
    assert any("repo.git" in p for p in report.problems)
    assert check.replayable == [0, 1, 2, 3]  # from the bundles
    from agtrace.replay import materialize

    view = materialize(store, run_id, 2, tmp_path / "out")  # and replay uses them
    assert view.part == 2 and (tmp_path / "out" / "a.txt").read_text() == "part 2\n"


def test_a_blob_missing_from_the_shadow_repository_is_named_and_bundles_replay(tmp_path):
    """A file's blob deleted from repo.git (its tree is still there): `replay` takes the tree
    from the bundles; with the bundles gone too it names the missing object (exit 1), never an
    internal error (libgit2's NotFoundError used to reach the user as a bug)."""
    import zlib

    store = Store(tmp_path / "s")
    run_id = captured_run(store, tmp_path / "w")
    run_dir = store.run_dir(run_id)
    store.close()
    blobs = [p for p in _objects(run_dir / "repo.git")
             if len(p.parent.name) == 2 and zlib.decompress(p.read_bytes()).startswith(b"blob ")]
    assert blobs, "the first snapshot's blobs are loose objects"
    for blob in blobs:
        blob.unlink()
    done = run_agtrace(["replay", run_id, "--part", "0", "--out", str(tmp_path / "out")], tmp_path / "s")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == "zero\n"
    for bundle in (run_dir / "bundles").glob("*.bundle"):
        bundle.unlink()
    failed = run_agtrace(["replay", run_id, "--part", "0", "--out", str(tmp_path / "out2")], tmp_path / "s")
    err = failed.stderr.decode()
    assert failed.returncode == 1 and "internal error" not in err and "Traceback" not in err, err
    assert "missing" in err and "repo.git" in err, err


def test_damaged_bundles_and_repository_leave_no_part_replayable(tmp_path):
    store = Store(tmp_path / "s")
    run_id = captured_run(store, tmp_path / "w")
    run_dir = store.run_dir(run_id)
    for bundle in (run_dir / "bundles").glob("*.bundle"):
        bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    for obj in _objects(run_dir / "repo.git"):
        obj.unlink()
    report = store.verify(run_id)
    (check,) = report.checks
    assert not report.ok and check.replayable == []
    assert sorted(check.not_replayable) == [0, 1, 2, 3]
    assert any("bundles" in p for p in report.problems), report.problems
    assert any("missing or damaged" in why for why in check.not_replayable.values())


def test_verify_json_names_problems_and_replayable_parts(tmp_path):
    s = tmp_path / "s"
    store = Store(s)
    good = plain_run(store)
    bad = plain_run(store)
    segments(store, bad)[-1].unlink()
    store.close()
    proc = run_agtrace(["verify", "--json"], s)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert not data["ok"] and data["runs"] == 2
    checks = {c["run_id"]: c for c in data["checks"]}
    assert checks[good]["ok"] and not checks[bad]["ok"]
    assert checks[bad]["last_seq"] == 1 and checks[bad]["problems"]
    assert b"Traceback" not in proc.stderr
    text = run_agtrace(["verify"], s)
    assert text.returncode == 1 and f"run {bad}: " in text.stderr.decode()


# -- one damaged run harms nothing else --------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_damaged_run_never_breaks_reindex_or_ls_of_the_others(tmp_path):
    s = tmp_path / "s"
    store = Store(s)
    ids = [plain_run(store) for _ in range(3)]
    _flip(segments(store, ids[1])[-1], 40)
    store.close()
    proc = run_agtrace(["reindex"], s)
    assert proc.returncode == 0, proc.stderr
    assert f"run {ids[1]} cannot be read from seq 2 on" in proc.stderr.decode()
    proc = run_agtrace(["ls", "--json"], s)
    assert proc.returncode == 0, proc.stderr
    listed = {r["id"]: r for r in json.loads(proc.stdout)}
    assert set(listed) == set(ids)
    assert listed[ids[0]]["status"] == listed[ids[2]]["status"] == "completed"
    assert listed[ids[1]]["projection_errors"] and listed[ids[1]]["events"] == 1
    assert run_agtrace(["show", ids[0]], s).returncode == 0
    assert run_agtrace(["metrics", ids[2], "--json"], s).returncode == 0


def test_a_run_damaged_at_its_first_frame_is_listed_as_damaged(tmp_path):
    store = Store(tmp_path / "s")
    good, bad = plain_run(store), plain_run(store)
    store.close()
    (tmp_path / "s" / "catalog.db").unlink()
    _flip(segments(store, bad)[0], 40)
    store = Store(tmp_path / "s")
    runs = {r.id: r for r in store.runs()}
    assert runs[good].status == "completed"
    assert runs[bad].status == "damaged" and "cannot be read from seq 1" in runs[bad].reason
    store.close()
    proc = run_agtrace(["ls", "--status", "damaged", "--json"], tmp_path / "s", check=True)
    assert [r["id"] for r in json.loads(proc.stdout)] == [bad]


@pytest.mark.parametrize("content", [b"this is not a database at all" * 10, b"", "sqlite-of-another-kind"])
def test_a_damaged_or_replaced_catalog_is_set_aside_and_rebuilt(tmp_path, content):
    s = tmp_path / "s"
    store = Store(s)
    ids = [plain_run(store) for _ in range(2)]
    store.close()
    catalog = s / "catalog.db"
    if content == "sqlite-of-another-kind":
        catalog.unlink()
        other = sqlite3.connect(catalog)
        other.execute("CREATE TABLE runs (x)")
        other.commit()
        other.close()
    else:
        data = bytearray(catalog.read_bytes())
        data[:100] = content[:100].ljust(100, b"\0") if content else bytes(100)
        catalog.write_bytes(bytes(data))
    proc = run_agtrace(["ls", "--json"], s)
    assert proc.returncode == 0, proc.stderr
    assert {r["id"] for r in json.loads(proc.stdout)} == set(ids)
    assert b"Traceback" not in proc.stderr
    if content != "sqlite-of-another-kind":
        assert b"the catalog was damaged; it was moved to" in proc.stderr
        assert list(s.glob("catalog.db.damaged-*"))


def test_a_stale_tree_id_in_the_catalog_is_rebuilt_not_trusted(tmp_path):
    from agtrace.replay import materialize

    store = Store(tmp_path / "s")
    run_id = captured_run(store, tmp_path / "w")
    rows = {r["part"]: r["tree_id"] for r in store.catalog.part_rows(run_id)}
    store.catalog.conn.execute("UPDATE parts SET tree_id=? WHERE run_id=? AND part=2", [rows[1], run_id])
    view = materialize(store, run_id, 2, tmp_path / "out")
    assert view.tree_id == rows[2]
    assert (tmp_path / "out" / "a.txt").read_text() == "part 2\n"
    assert store.catalog.part_row(run_id, 2)["tree_id"] == rows[2]  # the row was rebuilt


def test_a_lock_replaced_by_a_symlink_never_truncates_its_target(tmp_path):
    store = Store(tmp_path / "s")
    run_id = plain_run(store, end=False)
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    lock = store.run_dir(run_id) / "lock"
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        store.open_writer(run_id)
    assert victim.read_text() == "do not truncate me\n"
    assert store.info(run_id).status in ("running", "crashed")  # reading still works
    proc = run_agtrace(["append", run_id], tmp_path / "s", input=b'{"kind":"message_added","role":"user"}\n')
    assert proc.returncode == 1 and b"symbolic link" in proc.stderr and b"Traceback" not in proc.stderr
    assert victim.read_text() == "do not truncate me\n"
    os.unlink(lock)
    store.open_writer(run_id).close()


# -- a crashed capture still ships its trees; killed imports and pushes leave nothing ---------

CAPTURE_CHILD = """
import sys, time
from pathlib import Path
from agtrace.capture import Recorder
from agtrace.eventlog import Store

store, work = Store(sys.argv[1]), Path(sys.argv[2])
with Recorder(store, workdir=work, agent="t") as rec:
    for i in range(3):
        (work / "a.txt").write_text(f"part {i + 1}\\n")
        call = rec.tool_call("shell", command=f"step {i}")
        rec.tool_result(call, output="ok", exit_code=0)
    rec.writer.flush()  # durable: the crash below loses nothing
    print("parts 3", rec.run_id, flush=True)
    time.sleep(120)
"""


def test_a_crashed_capture_ships_a_bundle_and_replays_after_push_and_pull(tmp_path):
    import signal
    import subprocess
    import sys

    from agtrace.eventlog import pull, push, remote_for
    from agtrace.replay import materialize

    work = tmp_path / "w"
    work.mkdir()
    (work / "a.txt").write_text("zero\n")
    child = subprocess.Popen([sys.executable, "-c", CAPTURE_CHILD, str(tmp_path / "s"), str(work)],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert line[:2] == ["parts", "3"], line
    run_id = line[2]
    store = Store(tmp_path / "s")
    assert not list((store.run_dir(run_id) / "bundles").glob("*.bundle"))  # the crash: no bundle
    (tmp_path / "remote").mkdir()
    remote = remote_for(f"file://{tmp_path / 'remote'}")
    push(store, remote, [run_id])
    assert len(list((store.run_dir(run_id) / "bundles").glob("*.bundle"))) == 1
    assert push(store, remote, [run_id]).uploaded == 0  # and only once
    fresh = Store(tmp_path / "fresh")
    pull(fresh, remote, [run_id])
    assert fresh.info(run_id).status == "crashed"
    view = materialize(fresh, run_id, 2, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_text() == "part 2\n" and view.part == 2
    (check,) = fresh.verify(run_id).checks
    assert check.replayable == [0, 1, 2, 3] and check.snapshots["repo.git"] == "absent"


STAGING_CHILD = """
import sys, time
from agtrace.eventlog import Store
d = Store(sys.argv[1]).staging_dir()
(d / "half-built").write_text("x")
print(d, flush=True)
time.sleep(120)
"""


def test_staging_left_by_a_killed_import_is_removed_by_the_next(tmp_path):
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", STAGING_CHILD, str(tmp_path / "s")],
                             stdout=subprocess.PIPE, text=True)
    alive = subprocess.Popen([sys.executable, "-c", STAGING_CHILD, str(tmp_path / "s")],
                             stdout=subprocess.PIPE, text=True)
    try:
        left = Path(child.stdout.readline().strip())
        live = Path(alive.stdout.readline().strip())
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert left.is_dir()
        mine = Store(tmp_path / "s").staging_dir()
        assert not left.exists()  # its owner is dead
        assert live.is_dir()  # a live import's is kept
        assert mine.is_dir()
    finally:
        alive.send_signal(signal.SIGKILL)
        alive.wait()


def test_temp_files_of_a_killed_file_push_are_removed_by_the_next(tmp_path):
    from agtrace.eventlog import leftover, push, remote_for

    store = Store(tmp_path / "s")
    run_id = plain_run(store)
    (tmp_path / "remote").mkdir()
    remote = remote_for(f"file://{tmp_path / 'remote'}")
    push(store, remote, [run_id])
    events = tmp_path / "remote" / "runs" / run_id / "events"
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    mine = leftover.tag()
    host = mine[1:mine.rindex("-")]
    stale = events / f".x.seg.@{host}-{dead}@.tmp"
    partial = events / f"..x.seg.@{host}-{dead}@.tmp.part"
    other = events / ".someone-elses"
    for p in (stale, partial, other):
        p.write_bytes(b"half")
    push(Store(tmp_path / "s"), remote_for(f"file://{tmp_path / 'remote'}"), [run_id])
    assert not stale.exists() and not partial.exists() and other.exists()


def test_a_pull_killed_while_it_fetches_a_blob_leaves_no_segment_naming_it(tmp_path):
    """Found by the fault soak: a pull killed after a segment was in place and before the blob it
    names left a run that `verify` fails. The remote's blob is a named pipe here, so the pull
    blocks reading it (deterministically) until it is killed."""
    import signal
    import subprocess
    import sys
    import time

    from agtrace.eventlog import RunEnded, RunStarted, ToolReturned

    store = Store(tmp_path / "s")
    writer = store.create_run(RunStarted(agent="t"))
    inline, digest, nbytes = store.blobs.inline_or_put("y" * 100_000)
    writer.append(ToolReturned(call_id="c1", output=inline, output_blob=digest, output_bytes=nbytes), part=1)
    writer.append(RunEnded(status="completed"))
    store.close_writer(writer)
    remote = tmp_path / "remote"
    remote.mkdir()
    run_agtrace(["push", "--all", "--remote", f"file://{remote}"], tmp_path / "s", check=True)
    blob = remote / "blobs" / digest[:2] / f"{digest}.zst"
    saved = blob.read_bytes()
    blob.unlink()
    os.mkfifo(blob)

    fresh = tmp_path / "fresh"
    proc = subprocess.Popen([sys.executable, "-c", "from agtrace.cli.main import main; main()", "pull", "--all",
                             "--remote", f"file://{remote}"], env={**os.environ, "AGTRACE_HOME": str(fresh)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(12000):  # until the pull blocks opening the pipe (the kernel's fifo_open)
            with open(f"/proc/{proc.pid}/wchan") as fh:
                if fh.read().strip() == "wait_for_partner":
                    break
            assert proc.poll() is None, "the pull ended without reading the blob"
            time.sleep(0.005)
        else:
            pytest.fail("the pull never opened the remote's blob")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    report = Store(fresh).verify()
    assert report.ok, report.problems  # the run is absent or whole, never a segment without its blob
    blob.unlink()
    blob.write_bytes(saved)
    run_agtrace(["pull", "--all", "--remote", f"file://{remote}"], fresh, check=True)
    again = Store(fresh)
    assert again.verify().ok and again.blobs.has(digest)
    assert [r.event for r in again.read(writer.run_id)] == [r.event for r in store.read(writer.run_id)]


def test_a_run_damaged_at_its_first_frame_is_damage_to_show_and_replay_not_bad_usage(tmp_path):
    """replay finding 6: with the run's only segment damaged, `show` said "has no events" and
    `replay --part last` "no completed part yet", both exit 2 (bad usage), while `log` named the
    damaged frame. Now every one of them names the segment and the byte, points at `agtrace
    verify RUN` and exits 1; words that cannot be parts are still bad usage (exit 2)."""
    s = tmp_path / "s"
    store = Store(s)
    run = captured_run(store, tmp_path / "w")
    store.close()
    (first,) = segments(store, run)[:1]
    (s / "catalog.db").unlink()
    _flip(first, 40)
    for args in (["show", run], ["show", run, "--json"], ["replay", run, "--part", "last", "--out", str(tmp_path / "o")],
                 ["replay", run, "--part", "2", "--transcript"], ["log", run, "--part", "1"], ["metrics", run],
                 ["cat", run, "--part", "1", "--list"]):
        proc = run_agtrace(args, s)
        err = proc.stderr.decode()
        assert proc.returncode == 1, (args, proc.returncode, err)
        assert f"{first}: damaged frame at byte" in err and f"`agtrace verify {run}`" in err, (args, err)
        assert "has no events" not in err and "no completed part" not in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o").exists()
    proc = run_agtrace(["replay", run, "--part", "abc", "--out", str(tmp_path / "o")], s)
    assert proc.returncode == 2 and b"cannot read 'abc' as parts" in proc.stderr, proc.stderr


def test_the_last_part_of_a_run_damaged_after_some_parts_is_not_known(tmp_path):
    """A run of six parts whose second segment (parts 4-6) is damaged: `replay --part last`
    replayed part 3 as if it were the last, exit 0; `log --part 5` said the run has no part 5
    (exit 2). Now both name the damage (exit 1), and `last` says which parts can be named;
    part 3, before the damage, still replays."""
    s = tmp_path / "s"
    run = run_agtrace(["new", "--agent", "t"], s, check=True).stdout.decode().strip()
    for parts in ((1, 2, 3), (4, 5, 6)):  # one segment each
        lines = "".join(json.dumps({"kind": "message_added", "role": "user", "text": f"m{i}", "part": i}) + "\n"
                        + json.dumps({"kind": "part_ended", "part": i, "part_kind": "turn", "title": f"t{i}"}) + "\n"
                        for i in parts)
        run_agtrace(["append", run], s, input=lines.encode(), check=True)
    store = Store(s)
    last = segments(store, run)[-1]
    store.close()
    (s / "catalog.db").unlink()
    _flip(last, 40)
    for args, said in ((["replay", run, "--part", "last", "--transcript"], "parts 1..3, before it, can be named"),
                       (["metrics", run, "--per-part", "--parts", "2-last"], "the last part of run"),
                       (["log", run, "--part", "5"], "part 5 of run")):
        proc = run_agtrace(args, s)
        err = proc.stderr.decode()
        assert proc.returncode == 1, (args, proc.returncode, err)
        assert said in err and f"{last}: damaged frame at byte" in err and f"`agtrace verify {run}`" in err, (args, err)
    proc = run_agtrace(["replay", run, "--part", "3", "--transcript"], s, check=True)
    assert b"m3" in proc.stdout and b"m4" not in proc.stdout


def test_rescore_of_a_store_leaves_a_damaged_run_out_and_scores_the_others(tmp_path):
    """With the fix that made damage an error in the part readers, one damaged run stopped a
    whole `rescore --all` (exit 1, nothing scored). The damaged run is now left out with the
    damage named, and the good run is scored."""
    s = tmp_path / "s"
    store = Store(s)
    good, bad = captured_run(store, tmp_path / "w1"), captured_run(store, tmp_path / "w2")
    damaged = segments(store, bad)[0]
    store.close()
    (s / "catalog.db").unlink()
    _flip(damaged, 40)
    for parts in ("last", "1"):
        proc = run_agtrace(["rescore", "--all", "--name", f"n{parts}", "--cmd", "true", "--parts", parts], s)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0, (parts, out, err)
        assert f"{damaged}: damaged frame at byte" in out + err and "Traceback" not in err, (out, err)
        scores = json.loads(run_agtrace(["scores", good, "--json"], s, check=True).stdout)
        assert scores, (parts, scores)


def _newer_header(path: Path) -> bytes:
    """Give a segment the header a newer agtrace would write (``AGTSEG2``); its bytes after."""
    data = b"AGTSEG2\n" + path.read_bytes()[8:]
    path.write_bytes(data)
    return data


def test_a_segment_of_a_newer_format_is_named_as_such_and_never_repaired(tmp_path):
    """Issue: a segment whose header names a newer format (written by a newer agtrace) was
    damage: `verify` said "bad segment header" and told to restore it, `log`/`show` too; an
    open one was cut to nothing by recovery. Now each says it was written by a newer version
    and to upgrade, the other runs are checked, and no byte of it changes."""
    store = Store(tmp_path / "s")
    newer_run, other = plain_run(store), plain_run(store)
    sealed = segments(store, newer_run)[-1]
    open_run = plain_run(store, end=False, seal=False)
    opened = segments(store, open_run)[-1]
    assert opened.suffix == ".open"
    store.close()
    kept = {sealed: _newer_header(sealed), opened: _newer_header(opened)}
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):  # as after a pull: read from the segments
        (tmp_path / "s" / name).unlink(missing_ok=True)
    words = "written by a newer version of agtrace (format 2; this one reads format 1); upgrade agtrace to read it"
    verified = run_agtrace(["verify", "--json"], tmp_path / "s")
    assert verified.returncode == 1
    report = json.loads(verified.stdout)
    assert report["problems"] == [] and len(report["newer"]) == 2 and all(words in n for n in report["newer"])
    assert {c["run_id"]: c["ok"] for c in report["checks"]}[other] is True
    text = run_agtrace(["verify"], tmp_path / "s").stderr.decode()
    assert f"  newer: {sealed}: {words}" in text and "bad segment header" not in text and "Restore" not in text
    for command in (["log", newer_run], ["show", newer_run], ["log", open_run], ["show", open_run],
                    ["replay", newer_run, "--part", "last", "--out", str(tmp_path / "o")]):
        proc = run_agtrace(command, tmp_path / "s")
        err = proc.stderr.decode()
        assert (proc.returncode != 0 or command[0] == "show") and words in err, (command, err)  # show: a warning
        assert "damaged" not in err and "bad segment header" not in err and "Traceback" not in err, (command, err)
    # opening the run to write would recover it: refused, untouched
    with Store(tmp_path / "s") as again, pytest.raises(NewerFormat, match="upgrade agtrace"):
        again.open_writer(open_run)
    assert {p: p.read_bytes() for p in kept} == kept
    assert sorted(p.name for p in opened.parent.iterdir()) == sorted(
        p.name for p in opened.parent.iterdir() if ".damaged" not in p.name)
