"""A checkout split across two processes (``treewrite._Halves``): in a single-threaded process
on Linux with two cores, a forked child writes about half of a big tree's files.

The split is only taken where no other thread runs, and a pytest-xdist worker has threads of
its own, so every case here runs in a fresh ``python`` process (a script below, or the CLI),
with ``FORK_FILES`` lowered so that the small recorded trees of ``test_checkout_read`` split
too. The script counts the forks it makes and says which side refused what."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agtrace.eventlog import Store
from agtrace.eventlog.git import treewrite
from agtrace.eventlog.git.checkout import hash_dir

from .conftest import run_on_a_terminal
from .test_checkout_read import _loose_blob_paths, _recorded, _rewrite_loose

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2, reason="the split needs Linux and 2 cores")

FORK_COUNTER = r"""
import os, sys
forks, real_fork = [], os.fork

def counting_fork():
    pid = real_fork()
    if pid:
        forks.append(pid)
    return pid

os.fork = counting_fork
"""
"""The start of both scripts: ``forks`` holds the pid of every child this process forked."""

SCRIPT = FORK_COUNTER + r"""
import json
from agtrace.eventlog import GitStore, GitStoreError
from agtrace.eventlog.git import treewrite
from agtrace.replay.checkout_cache import _scan, _signature

repo, out_root, mode, trees = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
treewrite.FORK_FILES = 1
parent = os.getpid()
real_in_child, real_write = treewrite._in_child, treewrite._write_files

def in_child(job, files):
    if mode == "child-dies":
        os._exit(3)
    try:
        return real_in_child(job, files)
    except GitStoreError:
        os.write(2, b"refused in the child\n")
        raise

def write_files(git, fd, files, *rest):
    if mode == "parent-fails" and os.getpid() == parent:
        raise GitStoreError("the parent's half failed on purpose")
    return real_write(git, fd, files, *rest)

treewrite._in_child, treewrite._write_files = in_child, write_files
store = GitStore.open(repo)
result = []
for i, tree in enumerate(trees):
    out, stats = os.path.join(out_root, f"out-{i}"), {}
    try:
        written = store.checkout(tree, out, stats=stats)
    except GitStoreError as exc:
        result.append({"error": str(exc)})
        continue
    walked = dict(_scan(out, ""))
    result.append({"written": written, "stats_match": {r: _signature(s) for r, s in stats.items()} == walked})
try:
    os.waitpid(-1, os.WNOHANG)
    children_left = True
except ChildProcessError:
    children_left = False
print(json.dumps({"results": result, "forks": len(forks), "children_left": children_left}))
"""


def _run(tmp_path: Path, repo: str, trees: list[str], mode: str = "plain") -> tuple[dict, str]:
    out_root = tmp_path / f"outs-{mode}"
    out_root.mkdir()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, repo, str(out_root), mode, *trees],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_a_split_checkout_writes_every_recorded_tree_with_its_stat_data(tmp_path):
    store, trees = _recorded(tmp_path)
    got, _ = _run(tmp_path, store.path, trees)
    assert got["forks"] == len(trees) and not got["children_left"]
    for i, (tree, res) in enumerate(zip(trees, got["results"], strict=True)):
        assert res == {"written": tree, "stats_match": True}
        out = tmp_path / "outs-plain" / f"out-{i}"
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert hash_dir(fd) == tree  # re-read from disk: exec bits, links, every byte
        finally:
            os.close(fd)
    assert os.access(tmp_path / "outs-plain" / "out-0" / "run.sh", os.X_OK)
    assert os.readlink(tmp_path / "outs-plain" / "out-0" / "link") == "src/m1.py"


def test_a_tree_of_one_directory_is_split_between_the_two(tmp_path):
    """Halves are cut by files, not directories: one flat directory still gets both processes."""
    from agtrace.eventlog import GitStore

    work = tmp_path / "flat"
    work.mkdir()
    for i in range(30):
        (work / f"f{i}.txt").write_text(f"file {i}\n" * i)
    store = GitStore.init(tmp_path / "repo.git")
    tree = store.snapshot(work, max_file_bytes=1 << 20, message="flat").tree_id
    got, _ = _run(tmp_path, store.path, [tree])
    assert got["results"] == [{"written": tree, "stats_match": True}]
    assert got["forks"] == 1 and not got["children_left"]


@pytest.mark.parametrize("path, in_child", [("run.sh", True), ("src/m0.py", True), ("src/m5.py", False),
                                            ("src/deep/big.bin", False)])
def test_a_damaged_blob_on_either_side_is_refused_by_name(tmp_path, path, in_child):
    """The child writes the first half of the files in the walk's order: the root's two, then
    ``src``'s first 19 in git's name order (m0, m1, m10-m19, m2, m20-m25): ``src`` is cut
    between the two processes; the rest of ``src`` and ``src/deep`` are the parent's."""
    store, trees = _recorded(tmp_path)
    blob = _loose_blob_paths(store, trees[0])[path]
    _rewrite_loose(blob, b"\x00" * 40)
    oid = blob.parent.name + blob.name
    got, stderr = _run(tmp_path, store.path, trees[:1])
    (res,) = got["results"]
    assert oid in res["error"] and not got["children_left"]
    assert ("refused in the child" in stderr) == in_child


def test_a_child_that_dies_is_an_error_and_is_reaped(tmp_path):
    store, trees = _recorded(tmp_path)
    got, _ = _run(tmp_path, store.path, trees[:1], "child-dies")
    (res,) = got["results"]
    assert "the process writing half of its files ended (exit status 3)" in res["error"]
    assert "delete it and retry" in res["error"] and not got["children_left"]


def test_a_failing_parent_half_ends_the_child(tmp_path):
    store, trees = _recorded(tmp_path)
    got, _ = _run(tmp_path, store.path, trees[:1], "parent-fails")
    (res,) = got["results"]
    assert res["error"] == "the parent's half failed on purpose" and not got["children_left"]


def test_no_split_while_another_thread_runs():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not treewrite._may_fork()
    finally:
        stop.set()
        other.join()


def _big_run(tmp_path: Path) -> tuple[str, str]:
    """``(run id, tree of part 1)`` of a run of a 700-file tree (over FORK_FILES) in
    ``tmp_path / "store"``; part 1 writes ``edited`` into pkg3/m3.py."""
    from agtrace.capture.recorder import Recorder
    from agtrace.replay.workspace import tree_of_part

    work = tmp_path / "work"
    rng = random.Random(5)
    for i in range(700):
        path = work / f"pkg{i % 7}" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(0, 9000)))
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60) as rec:
        call = rec.tool_call("shell", command="edit")
        (work / "pkg3" / "m3.py").write_text("edited\n")
        rec.tool_result(call, output="", exit_code=0)
    tree = tree_of_part(store, rec.run_id, 1)
    store.close()
    return rec.run_id, tree


def _cli_counting_forks(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    forks = tmp_path / "forks"
    env = {k: v for k, v in os.environ.items() if k != "AGTRACE_HOME"}
    proc = subprocess.run([sys.executable, "-c", CLI_COUNTING_FORKS, str(forks), "--store", str(tmp_path / "store"),
                           *args], env=env, capture_output=True, text=True, timeout=120)
    return proc, int(forks.read_text())


def test_cli_replay_of_a_big_tree_splits_and_writes_it_exactly(tmp_path):
    """Through the CLI as users run it: a 700-file tree (over FORK_FILES) replayed into a new
    directory equals the recorded tree, byte for byte."""
    run_id, tree = _big_run(tmp_path)
    out = tmp_path / "replayed"
    proc, forks = _cli_counting_forks(tmp_path, "replay", run_id, "--part", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert hash_dir(fd) == tree
    finally:
        os.close(fd)
    assert (out / "pkg3" / "m3.py").read_text() == "edited\n"
    assert forks == 1  # the CLI process forked its second writer, once


def test_cli_replay_on_a_terminal_shows_the_files_written_and_still_splits(tmp_path):
    """Standard error a terminal: `replay` draws a bar counting the files written as batches of
    directories are done (256 at a time: 1,050 files in 350 directories make two batches), and the bar
    draws without rich's refresh thread, so the checkout still forks its second writer (a
    thread would keep it from forking). The tree is written exactly."""
    from agtrace.capture.recorder import Recorder
    from agtrace.replay.workspace import tree_of_part

    work = tmp_path / "work"
    for i in range(1050):
        path = work / f"d{i // 3}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {i}\n" * 20)
    store = Store(tmp_path / "store")
    with Recorder(store, workdir=work, agent="test", heartbeat_s=60) as rec:
        rec.tool_result(rec.tool_call("shell", command="look"), output="", exit_code=0)
    tree = tree_of_part(store, rec.run_id, 1)
    store.close()
    out, forks = tmp_path / "replayed", tmp_path / "forks"
    env = {k: v for k, v in os.environ.items() if k != "AGTRACE_HOME"}
    code, drawn, stdout = run_on_a_terminal(
        [sys.executable, "-c", CLI_COUNTING_FORKS, str(forks), "--store", str(tmp_path / "store"), "replay",
         rec.run_id, "--part", "1", "--out", str(out)], {**env, "COLUMNS": "150"})
    assert code == 0, drawn[-600:]
    assert f"writing part 1 of {rec.run_id[:10]}".encode() in drawn
    counts = {int(n.replace(b",", b"")) for n in re.findall(rb"([\d,]+) files", drawn)}
    assert 1050 in counts and any(0 < n < 1050 for n in counts), counts  # the first batch, then all
    assert b"(written, verified)" in stdout
    assert int(forks.read_text()) == 1  # the first batch (~765 files) was split; the second is too small
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert hash_dir(fd) == tree
    finally:
        os.close(fd)


def test_a_checkout_reports_the_files_written_batch_by_batch(tmp_path):
    """``checkout(progress=)``: called after each batch of directories with the files written so
    far, and every ``TICK_FILES`` files within one, growing, ending at every file of the tree:
    the 700 files in 7 directories are one batch, which still shows progress."""
    run_id, tree = _big_run(tmp_path)
    from agtrace.replay.workspace import snapshots

    store = Store(tmp_path / "store")
    seen: list[int] = []
    snapshots(store, run_id).checkout(tree, tmp_path / "out", jobs=1, progress=seen.append)
    store.close()
    assert seen == sorted(seen) and seen[-1] == 700
    assert [n for n in seen if n < 700] == [300, 600]  # by directory (100 files each), every 256 files or more


def test_a_checkout_split_with_a_child_reports_progress_within_its_one_batch(tmp_path):
    """The same with the files split between this process and a forked child (a fresh process,
    as the split needs): the parent counts the child's half as its own while both write."""
    run_id, tree = _big_run(tmp_path)
    script = FORK_COUNTER + r"""
import json
from agtrace.eventlog import Store
from agtrace.replay.workspace import snapshots
store = Store(sys.argv[1])
seen = []
snapshots(store, sys.argv[2]).checkout(sys.argv[3], sys.argv[4], progress=seen.append)
print(json.dumps({"seen": seen, "forks": len(forks)}))
"""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "store"), run_id, tree, str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["forks"] == 1
    seen = got["seen"]
    assert seen == sorted(seen) and seen[-1] == 700 and any(0 < n < 700 for n in seen), seen


@pytest.mark.parametrize("jobs, split", [("1", 1), ("2", 0)])
def test_cli_rescore_of_a_big_tree_splits_its_first_checkout_with_one_job(tmp_path, jobs, split):
    """``rescore`` with one job runs on the calling thread, so its scratch tree's first checkout
    splits as a replay's does; with two jobs the work is on threads and nothing forks. Either
    way the scorer sees the recorded tree (the checkout verifies its tree id; the scorer checks the
    part's edit and the number of files)."""
    run_id, tree = _big_run(tmp_path)
    check = "grep -qx edited pkg3/m3.py && test $(find . -type f | wc -l) -eq 700"
    proc, forks = _cli_counting_forks(tmp_path, "rescore", run_id, "--name", "fork", "--cmd", check,
                                      "--parts", "1", "--jobs", jobs, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["ok"], report["failed"]) == (1, 0), report
    assert forks == split


CLI_COUNTING_FORKS = FORK_COUNTER + r"""
path, sys.argv = sys.argv[1], ["agtrace", *sys.argv[2:]]
from agtrace.cli.main import main
try:
    main()
finally:
    with open(path, "w") as f:
        f.write(str(len(forks)))
"""
