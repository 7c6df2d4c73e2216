"""Snapshots from a file watcher (inotify) equal snapshots from a full walk, step by step.

Each step changes a real workdir (edits, renames, deletes, new directories, symlinks, chmod,
files made by a subprocess, credential files, a .gitignore, a kernel queue overflow), takes a
snapshot with the run's Snapshotter (watcher on) and compares its tree and exclusions with a
first snapshot of the same workdir into a fresh store (a full walk, no watcher).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pygit2
import pytest

from agtrace.capture import Snapshotter
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def write(path, text="x\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def reference(work, tmp_path, n):
    """Tree id and exclusions of a full walk of ``work`` into a fresh store."""
    result = GitStore.init(tmp_path / f"ref-{n}.git").snapshot(
        work, exclude=["__pycache__/", "*.pyc", ".venv/", "node_modules/"], max_file_bytes=10 * 1024 * 1024,
        message="ref")
    return result.tree_id, sorted((e.path, e.reason) for e in result.excluded)


@pytest.fixture
def work(tmp_path):
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    root = tmp_path / "work"
    for i in range(30):
        write(f"{root}/src/pkg{i % 3}/mod{i}.py", f"x = {i}\n")
    write(f"{root}/README.md", "hello\n")
    write(f"{root}/.gitignore", "*.log\nbuild/\n")
    write(f"{root}/node_modules/dep/index.js", "ignored\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)  # the agent's own .git: never recorded
    return root


def step_edit(w):
    with open(f"{w}/src/pkg0/mod0.py", "a") as f:
        f.write("y = 1\n")
    write(f"{w}/README.md", "hello again\n")


def step_rename(w):
    os.rename(f"{w}/src/pkg1/mod1.py", f"{w}/src/pkg1/renamed.py")
    os.rename(f"{w}/src/pkg2/mod2.py", f"{w}/top_level.py")


def step_delete(w):
    os.unlink(f"{w}/src/pkg0/mod3.py")


def step_new_dirs(w):
    os.makedirs(f"{w}/new/a/b/c")
    write(f"{w}/new/a/b/c/deep.py", "deep\n")
    write(f"{w}/new/a/shallow.txt", "shallow\n")
    write(f"{w}/new/build/out.o", "ignored by .gitignore\n")
    write(f"{w}/new/trace.log", "ignored too\n")


def step_symlinks(w):
    os.symlink("src/pkg0/mod0.py", f"{w}/link_to_file")
    os.symlink("src/pkg1", f"{w}/link_to_dir")
    os.symlink("nowhere", f"{w}/dangling")


def step_retarget_and_chmod(w):
    os.unlink(f"{w}/link_to_file")
    os.symlink("README.md", f"{w}/link_to_file")
    os.chmod(f"{w}/src/pkg0/mod6.py", 0o755)


def step_subprocess(w):
    subprocess.run(["sh", "-c", "mkdir -p gen/x && echo made > gen/x/by_sh.txt && echo more >> README.md"],
                   cwd=w, check=True)


def step_move_dir(w):
    os.rename(f"{w}/new/a", f"{w}/moved_a")
    write(f"{w}/moved_a/b/c/after_move.py", "after\n")  # a change below the moved directory


def step_delete_dir(w):
    shutil.rmtree(f"{w}/src/pkg2")
    write(f"{w}/moved_a/b/c/deep.py", "edited below the directory moved by the last step\n")


def step_type_changes(w):
    os.unlink(f"{w}/top_level.py")
    write(f"{w}/top_level.py/inside.py", "a file became a directory\n")
    shutil.rmtree(f"{w}/gen")
    write(f"{w}/gen", "a directory became a file\n")


def step_credentials(w):
    write(f"{w}/keys/id_rsa", PRIVATE_KEY)  # by name
    write(f"{w}/src/pkg0/mod9.py", "KEY = '''\n" + PRIVATE_KEY + "'''\n")  # by content
    write(f"{w}/.env", "TOKEN=1\n")


def step_credential_gone(w):
    write(f"{w}/src/pkg0/mod9.py", "clean again\n")


def step_gitignore(w):
    write(f"{w}/.gitignore", "*.log\n")  # build/ is no longer ignored


def step_after_gitignore(w):
    write(f"{w}/new/build/out2.o", "now recorded, in a directory watched since the rules changed\n")


def step_nested_repo(w):
    os.makedirs(f"{w}/vendor/lib")
    write(f"{w}/vendor/lib/code.py", "vendored\n")
    subprocess.run(["git", "init", "-q"], cwd=f"{w}/vendor/lib", check=True)


STEPS = [step_edit, step_rename, step_delete, step_new_dirs, step_symlinks, step_retarget_and_chmod,
         step_subprocess, step_move_dir, step_delete_dir, step_type_changes, step_credentials,
         step_credential_gone, step_gitignore, step_after_gitignore, step_nested_repo]
WALKS = {"step_gitignore": ".gitignore changed", "step_nested_repo": "nested repository"}


def test_watched_snapshots_equal_full_walks(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work)
    base = snap.take("base")
    assert base.detector == "walk" and snap._watcher is not None
    assert base.tree_id == reference(work, tmp_path, "base")[0]
    for n, step in enumerate(STEPS):
        step(str(work))
        event = snap.take(f"part {n}")
        tree, excluded = reference(work, tmp_path, n)
        assert event.tree_id == tree, step.__name__
        assert sorted((e.path, e.reason) for e in event.excluded) == excluded, step.__name__
        if step.__name__ in WALKS:
            assert event.detector == "walk" and WALKS[step.__name__] in event.fallback, step.__name__
        else:
            assert event.detector == "inotify", (step.__name__, event.fallback)
            assert event.duration_ms is not None
    assert ("keys/id_rsa", "credential") in {(e.path, e.reason) for e in event.excluded}
    final = snap.take("final", final=True)
    assert final.detector == "inotify+walk" and final.missed == []
    assert final.tree_id == reference(work, tmp_path, "final")[0]
    assert snap._watcher is None


def test_queue_overflow_falls_back_to_a_walk_and_watches_again(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    a, b = f"{work}/README.md", f"{work}/src/pkg0/mod0.py"
    for _ in range(limit // 2 + 100):  # alternating, so the kernel cannot merge them
        os.utime(a)
        os.utime(b)
    os.makedirs(f"{work}/late")  # its event is lost with the overflow
    write(f"{work}/late/first.py", "1\n")
    event = snap.take("overflowed")
    assert event.detector == "walk" and "overflow" in event.fallback
    assert event.tree_id == reference(work, tmp_path, "overflow")[0]
    write(f"{work}/late/second.py", "2\n")  # below a directory made while events were lost
    event = snap.take("after")
    assert event.detector == "inotify" and event.added == ["late/second.py"]
    assert event.tree_id == reference(work, tmp_path, "after")[0]


def test_the_final_walk_records_what_the_watcher_missed(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    write(f"{work}/src/pkg0/mod0.py", "changed where the watcher did not see it\n")
    snap._watcher.changes()  # the watcher's report is lost, as a shared mmap's write would be
    event = snap.take("part 1")
    assert event.detector == "inotify" and event.modified == []
    final = snap.take("final", final=True)
    assert final.detector == "inotify+walk" and final.missed == ["src/pkg0/mod0.py"]
    assert final.modified == ["src/pkg0/mod0.py"]
    assert final.tree_id == reference(work, tmp_path, "final")[0]
    repo = pygit2.Repository(str(tmp_path / "run" / "repo.git"))  # the verifying walk wrote the index
    assert str(pygit2.Index(str(tmp_path / "run" / "repo.git" / "index")).write_tree(repo)) == final.tree_id


def test_a_path_git_cannot_hold_is_excluded_alike_and_never_missed(work, tmp_path):
    """A file named ``.GIT``: the watcher's snapshot leaves it out as ``invalid_path``; the
    final walk (whose libgit2 iterator never lists it) must not call it a change the watcher
    missed, and keeps the same exclusion."""
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    write(f"{work}/.GIT", "not a repository\n")
    write(f"{work}/README.md", "edited\n")
    event = snap.take("part 1")
    assert event.detector == "inotify" and event.modified == ["README.md"]
    assert [(e.path, e.reason) for e in event.excluded if e.path == ".GIT"] == [(".GIT", "invalid_path")]
    final = snap.take("final", final=True)
    assert final.detector == "inotify+walk" and final.missed == [], final.missed
    assert [(e.path, e.reason) for e in final.excluded if e.path == ".GIT"] == [(".GIT", "invalid_path")]


def test_without_a_watcher_every_snapshot_walks(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work, watch=False)
    snap.take("base")
    step_edit(str(work))
    event = snap.take("part 1")
    assert event.detector == "walk" and event.fallback == "" and event.modified == ["README.md", "src/pkg0/mod0.py"]
    assert snap.take("final", final=True).detector == "walk"


def test_first_snapshot_line_counts_equal_the_diffs(work, tmp_path):
    with open(f"{work}/binary.bin", "wb") as f:
        f.write(b"\x00\x01\n" * 10)
    write(f"{work}/no_newline.txt", "a\nb")
    write(f"{work}/empty.txt", "")
    os.symlink("README.md", f"{work}/link")
    store = GitStore.init(tmp_path / "lines.git")
    result = store.snapshot(work, max_file_bytes=1 << 20, message="first")
    assert result.lines_added == sum(c.lines_added for c in store.diff(None, result.tree_id))
    assert list(result.added) == [c.path for c in store.diff(None, result.tree_id)]


def test_a_dropped_snapshotter_closes_its_watcher(work, tmp_path):
    def inotify_fds():
        return sum(os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify" for fd in os.listdir("/proc/self/fd")
                   if os.path.exists(f"/proc/self/fd/{fd}"))

    before = inotify_fds()
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    assert inotify_fds() == before + 1
    del snap  # no final snapshot: the run was dropped
    assert inotify_fds() == before


def test_a_stale_index_file_costs_hashing_never_a_wrong_tree(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    for step in (step_edit, step_rename, step_new_dirs, step_delete_dir):
        step(str(work))
        assert snap.take(step.__name__).detector == "inotify"  # the index file is not rewritten
    other = GitStore.open(tmp_path / "run" / "repo.git")  # another process, reading the old file
    result = other.snapshot(work, exclude=["__pycache__/", "*.pyc", ".venv/", "node_modules/"],
                            max_file_bytes=10 * 1024 * 1024, message="walk", parent_commit=snap.commit_id)
    assert result.detector == "walk" and result.tree_id == snap.tree_id == reference(work, tmp_path, "x")[0]
    assert not result.created_commit


def test_names_that_are_not_utf8_are_walked_and_recorded_as_bytes(work, tmp_path):
    """Issue: a new file named ``bad\\377name`` made the watcher's snapshot raise
    UnicodeEncodeError (pygit2's ignore lookup takes UTF-8 text only) and the run failed. A
    snapshot from changed paths now walks when it meets such a name (libgit2's walk matches the
    bytes against the ignore rules), and records it with its exact bytes; then it watches again."""
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    raw = os.fsencode(work)
    steps = [
        lambda: Path(os.fsdecode(raw + b"/bad\xffname")).write_bytes(b"z"),
        lambda: Path(os.fsdecode(raw + b"/trace\xfe.log")).write_bytes(b"ignored by *.log"),
        lambda: (os.makedirs(raw + b"/d\xfd/in"), Path(os.fsdecode(raw + b"/d\xfd/in/f")).write_bytes(b"f")),
        lambda: os.unlink(raw + b"/bad\xffname"),
    ]
    for n, step in enumerate(steps):
        step()
        event = snap.take(f"part {n}")
        assert event.tree_id == reference(work, tmp_path, f"u{n}")[0], n
        assert event.detector == "walk" and "a name that is not UTF-8 changed" in event.fallback, n
        msgspec.json.encode(event)  # an event that can be stored: names in their quoted form
    assert event.deleted == ['"bad\\377name"']
    assert "d\udcfd/in/f" in GitStore.open(tmp_path / "run" / "repo.git").files(event.tree_id)
    write(f"{work}/README.md", "edited\n")
    event = snap.take("plain")
    assert event.detector == "inotify" and event.modified == ["README.md"]
    final = snap.take("final", final=True)
    assert final.missed == [] and final.tree_id == reference(work, tmp_path, "final")[0]
