"""Snapshots from changed paths write their tree from the parent's (only the changed paths'
ancestors) and compute their changes by descending only into differing subtrees: both must equal
what a full walk and libgit2's whole-tree diff give, step by step (adds, deletes, renames, mode
changes, symlinks, nested new directories, deleted directories, type changes, binary files)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from agtrace.capture import Snapshotter
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore
from agtrace.eventlog.git.treeedit import edited_tree, tree_changes

from .test_snapshot_watch import STEPS, WALKS, reference, write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")


def step_chmod_only(w):
    os.chmod(f"{w}/src/pkg0/mod6.py", 0o644)  # executable bit dropped, same bytes


def step_file_becomes_symlink(w):
    os.unlink(f"{w}/README.md")
    os.symlink("src/pkg0/mod0.py", f"{w}/README.md")


def step_symlink_becomes_file(w):
    os.unlink(f"{w}/README.md")
    write(f"{w}/README.md", "a file again\nwith two lines\n")


def step_binary(w):
    with open(f"{w}/blob.bin", "wb") as f:
        f.write(b"\x00\x01\x02\n" * 100)
    with open(f"{w}/src/pkg0/mod0.py", "ab") as f:
        f.write(b"\x00 now binary\n")


def step_binary_edit(w):
    with open(f"{w}/blob.bin", "ab") as f:
        f.write(b"\x00more\n")


def step_empty_dirs(w):
    os.makedirs(f"{w}/empty/deeper")  # git records no empty directory
    for name in os.listdir(f"{w}/src/pkg1"):  # a directory emptied file by file
        os.unlink(f"{w}/src/pkg1/{name}")


def step_rmtree_and_recreate(w):
    shutil.rmtree(f"{w}/src")
    write(f"{w}/src/pkg0/mod0.py", "the same directory, recreated\n")


MORE = [step_chmod_only, step_file_becomes_symlink, step_symlink_becomes_file, step_binary, step_binary_edit,
        step_empty_dirs, step_rmtree_and_recreate]


def test_changed_path_snapshots_equal_walks_and_whole_tree_diffs(tmp_path):
    work = tmp_path / "work"
    for i in range(30):
        write(f"{work}/src/pkg{i % 3}/mod{i}.py", f"x = {i}\n")
    write(f"{work}/README.md", "hello\n")
    write(f"{work}/.gitignore", "*.log\nbuild/\n")
    os.chmod(f"{work}/src/pkg0/mod6.py", 0o755)
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    snap = Snapshotter(tmp_path / "run", work)
    previous = snap.take("base").tree_id
    whole_index_trees = []  # a snapshot from changed paths must not write the whole index's tree
    write_tree = snap.git._write_tree
    snap.git._write_tree = lambda *a, **k: whole_index_trees.append(1) or write_tree(*a, **k)
    for n, step in enumerate(STEPS[:-3] + MORE + STEPS[-3:]):
        step(str(work))
        whole_index_trees.clear()
        event = snap.take(f"part {n}")
        assert whole_index_trees == ([1] if step.__name__ in WALKS else []), step.__name__
        assert event.tree_id == reference(work, tmp_path, n)[0], step.__name__
        if step.__name__ not in WALKS:
            assert event.detector == "inotify", (step.__name__, event.fallback)
        changes = snap.git.diff(previous, event.tree_id)  # libgit2's diff of the two whole trees
        assert [c.path for c in changes if c.status == "added"] == event.added, step.__name__
        assert [c.path for c in changes if c.status == "modified"] == event.modified, step.__name__
        assert [c.path for c in changes if c.status == "deleted"] == event.deleted, step.__name__
        assert sum(c.lines_added for c in changes) == event.lines_added, step.__name__
        assert sum(c.lines_removed for c in changes) == event.lines_removed, step.__name__
        assert tree_changes(snap.git, previous, event.tree_id) == changes, step.__name__
        previous = event.tree_id
    final = snap.take("final", final=True)
    assert final.detector == "inotify+walk" and final.missed == []


def test_tree_changes_equal_diffs_between_any_two_snapshots(tmp_path):
    work = tmp_path / "work"
    for i in range(12):
        write(f"{work}/d{i % 3}/e{i % 2}/f{i}.txt", "line\n" * i)
    store = GitStore.init(tmp_path / "s.git")
    trees = [store.snapshot(work, max_file_bytes=1 << 20, message="0").tree_id]
    for step in (step_chmod_only_in, step_type_swap, step_drop_dir):
        step(work)
        trees.append(store.snapshot(work, max_file_bytes=1 << 20, message="n").tree_id)
    for a in [None, *trees]:
        for b in trees:
            assert tree_changes(store, a, b) == store.diff(a, b)


def step_chmod_only_in(w):
    os.chmod(f"{w}/d0/e0/f0.txt", 0o755)


def step_type_swap(w):
    os.unlink(f"{w}/d1/e1/f1.txt")
    os.makedirs(f"{w}/d1/e1/f1.txt")
    write(f"{w}/d1/e1/f1.txt/inner.txt", "now a directory\n")
    shutil.rmtree(f"{w}/d2/e0")
    write(f"{w}/d2/e0", "now a file\n")


def step_drop_dir(w):
    shutil.rmtree(f"{w}/d0")


def test_edits_apply_in_order_and_empty_directories_vanish(tmp_path):
    store = GitStore.init(tmp_path / "s.git")
    blob = store._repo.create_blob(b"x\n")
    other = store._repo.create_blob(b"y\n")
    base = edited_tree(store, None, [("a/b/c.txt", (blob, 0o100644)), ("a/d.txt", (blob, 0o100644))])
    assert sorted(store.files(str(base))) == ["a/b/c.txt", "a/d.txt"]
    dropped = edited_tree(store, base, [("a/b", None), ("a/b/new.txt", (other, 0o100755)), ("zz", None),
                                        ("a/d.txt/below", None)])
    assert store.files(str(dropped)) == {"a/b/new.txt": str(other), "a/d.txt": str(blob)}
    gone = edited_tree(store, base, [("a/b/c.txt", None), ("a/d.txt", None)])
    assert store.files(str(gone)) == {} and str(gone) == str(edited_tree(store, None, []))
    replaced = edited_tree(store, base, [("a/d.txt", None), ("a/d.txt/inner", (other, 0o100644)), ("a/b", None),
                                         ("a/b", (blob, 0o120000))])
    assert store.files(str(replaced)) == {"a/b": str(blob), "a/d.txt/inner": str(other)}
