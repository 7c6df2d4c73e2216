"""GitStore.switch and the warm-replay helpers: a directory switched between trees equals a
fresh checkout of the target, touches only what differs, and never writes outside itself."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pygit2
import pytest

from agtrace.capture.recorder import Recorder
from agtrace.eventlog import GitStore, GitStoreError
from agtrace.replay.checkout_cache import ScratchTree, switch_to
from agtrace.replay.workspace import materialize

MAX = 1_000_000


def state(root: Path) -> dict[str, tuple]:
    """Everything a tree records about a directory: kind, exec bit, bytes or link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", os.access(full, os.X_OK), full.read_bytes())
    return out


@pytest.fixture
def trees(tmp_path: Path) -> tuple[GitStore, list[str]]:
    """Five snapshots covering add, modify, delete, exec bit, symlinks and type changes."""
    git = GitStore.init(tmp_path / "repo.git")
    wd = tmp_path / "work"
    (wd / "src" / "pkg").mkdir(parents=True)
    (wd / "README.md").write_text("hello\n")
    (wd / "src" / "app.py").write_text("print('a')\n")
    (wd / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (wd / "gone" / "deep").mkdir(parents=True)
    (wd / "gone" / "deep" / "f.txt").write_text("bye\n")
    ids = []

    def snap(label: str) -> None:
        ids.append(git.snapshot(wd, max_file_bytes=MAX, message=label).tree_id)

    snap("base")
    (wd / "src" / "app.py").write_text("print('b')\n")
    (wd / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (wd / "run.sh").chmod(0o755)
    os.symlink("src/app.py", wd / "link")
    snap("modify, exec, symlink")
    shutil.rmtree(wd / "gone")
    (wd / "run.sh").chmod(0o644)
    os.unlink(wd / "link")
    (wd / "link").mkdir()  # symlink becomes a directory
    (wd / "link" / "inside.txt").write_text("in\n")
    snap("delete dir, exec off, link to dir")
    shutil.rmtree(wd / "src" / "pkg")
    snap("dir removed")  # (snapshot cannot take a directory turned file in one step yet)
    (wd / "src" / "pkg").write_text("now a file\n")  # ids[2] -> ids[4]: directory becomes a file
    os.symlink("../README.md", wd / "src" / "readme")
    for i in range(20):
        (wd / f"n{i}.txt").write_text(f"{i}\n")
    snap("many new files")
    return git, ids


def test_switch_between_every_pair_equals_a_fresh_checkout(trees, tmp_path):
    git, ids = trees
    expected = {}
    for tree in ids:
        out = tmp_path / f"fresh-{tree[:8]}"
        git.checkout(tree, out)
        expected[tree] = state(out)
    for a in ids:
        for b in ids:
            out = tmp_path / "warm"
            shutil.rmtree(out, ignore_errors=True)
            git.checkout(a, out)
            result = git.switch(a, b, out)
            assert result.tree_id == b
            assert state(out) == expected[b], (a, b)
            changed = set(git.changed_paths(a, b))
            assert set(result.written) | set(result.removed) <= changed | {
                p.rsplit("/", 1)[0] for p in changed
            } | {p.split("/", 1)[0] for p in changed}


def test_switch_touches_only_changed_paths(trees, tmp_path):
    git, ids = trees
    out = tmp_path / "out"
    git.checkout(ids[3], out)
    before = {p: os.lstat(out / p).st_ino for p in state(out)}
    result = git.switch(ids[3], ids[4], out)
    assert set(result.written) == {f"n{i}.txt" for i in range(20)} | {"src/pkg", "src/readme"}
    assert result.removed == ()
    for path, ino in before.items():
        assert os.lstat(out / path).st_ino == ino, path  # untouched files are the same inodes


def test_dirty_paths_are_repaired_and_planted_symlinks_never_followed(trees, tmp_path):
    git, ids = trees
    out = tmp_path / "out"
    victim = tmp_path / "victim"
    victim.mkdir()
    git.checkout(ids[1], out)
    (out / "README.md").write_text("edited by a scorer\n")
    (out / "junk").mkdir()
    (out / "junk" / "cache.pyc").write_bytes(b"\0")
    (out / "run.sh").chmod(0o644)
    shutil.rmtree(out / "src" / "pkg")
    os.symlink(victim, out / "src" / "pkg")  # where ids[2] has a directory
    dirty = ["README.md", "junk", "run.sh", "src/pkg"]
    git.switch(ids[1], ids[2], out, dirty=dirty)
    fresh = tmp_path / "fresh"
    git.checkout(ids[2], fresh)
    assert state(out) == state(fresh)
    assert list(victim.iterdir()) == []


def raw_tree(repo: pygit2.Repository, entries) -> str:
    body = b"".join(b"%o %s\0" % (mode, name) + oid.raw for mode, name, oid in entries)
    return str(repo.odb.write(pygit2.enums.ObjectType.TREE, body))


@pytest.mark.parametrize(
    "case", ["dotdot", "slash", "dotgit", "absolute", "symlink_then_dir", "duplicate"]
)
def test_hostile_target_writes_nothing_outside(trees, tmp_path, case):
    git, ids = trees
    repo = git._repo
    payload = repo.create_blob(b"pwned\n")
    victim = tmp_path / "victim"
    victim.mkdir()
    inner = raw_tree(repo, [(0o100644, b"pwned", payload)])
    link = repo.create_blob(str(victim).encode())
    entries = {
        "dotdot": [(0o040000, b"..", inner)],
        "slash": [(0o100644, b"../victim/pwned", payload)],
        "absolute": [(0o100644, str(victim / "pwned").encode(), payload)],
        "dotgit": [(0o040000, b".git", inner)],
        "symlink_then_dir": [(0o120000, b"a", link), (0o040000, b"a", inner)],
        "duplicate": [(0o120000, b"a", link), (0o100644, b"a", payload)],
    }[case]
    hostile = raw_tree(repo, [(m, n, pygit2.Oid(hex=str(o))) for m, n, o in entries])
    out = tmp_path / "box" / "out"
    git.checkout(ids[0], out)
    with pytest.raises(GitStoreError):
        git.switch(ids[0], hostile, out)
    assert list(victim.iterdir()) == []
    assert not (tmp_path / "box" / "pwned").exists()


def test_scratch_tree_finds_what_a_scorer_changed(trees, tmp_path):
    git, ids = trees
    scratch = ScratchTree(tmp_path / "scratch")
    assert scratch.show(git, ids[1]).how == "checkout"
    # a scorer, right after: same-size in-place edit, chmod, new files, deletion, new dir
    with open(scratch.path / "src" / "app.py", "r+b") as f:
        f.write(b"PRINT")
    (scratch.path / "README.md").chmod(0o755)
    (scratch.path / "__pycache__").mkdir()
    (scratch.path / "__pycache__" / "x.pyc").write_bytes(b"1")
    (scratch.path / "src" / "pkg" / "mod.py").unlink()
    (scratch.path / "result.xml").write_text("<x/>")
    shown = scratch.show(git, ids[1])
    assert shown.how == "switch" and shown.repaired == 5
    fresh = tmp_path / "fresh1"
    git.checkout(ids[1], fresh)
    assert state(scratch.path) == state(fresh)
    assert scratch.show(git, ids[1]).how == "same"
    for tree in (ids[3], ids[0], ids[4], ids[2]):
        scratch.show(git, tree)
        (scratch.path / "README.md").write_text("scorer was here\n")
        fresh = tmp_path / f"fresh-{tree[:8]}"
        git.checkout(tree, fresh)
        scratch.show(git, tree)
        assert state(scratch.path) == state(fresh)
    scratch.remove()
    assert not scratch.path.exists()


def test_switch_to_part_equals_materialize(store, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    for i in range(30):
        (wd / f"f{i}.txt").write_text(f"{i}\n" * 50)
    with Recorder(store, workdir=wd, agent="t") as rec:
        for part in range(1, 6):
            call = rec.tool_call("shell", command=f"edit {part}")
            (wd / f"f{part}.txt").write_text(f"part {part}\n")
            if part == 3:
                (wd / "f20.txt").unlink()
            rec.tool_result(call, output="ok", exit_code=0)
    run_id = rec.run_id
    warm = tmp_path / "warm"
    tree = materialize(store, run_id, 1, warm).tree_id
    for part in (2, 5, 3, 1, 4):
        started = time.perf_counter()
        result = switch_to(store, run_id, part, warm, tree)
        assert time.perf_counter() - started < 5
        fresh = tmp_path / f"fresh{part}"
        assert materialize(store, run_id, part, fresh).tree_id == result.tree_id
        assert state(warm) == state(fresh)
        tree = result.tree_id
