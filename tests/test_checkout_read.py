"""How a checkout reads file contents: loose objects in Python (``eventlog/git/loose.py``, GIL
released while inflating and hashing), packed ones through libgit2; both give the recorded tree,
and a damaged object is refused by name instead of written."""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pytest

from agtrace.eventlog import GitStore, GitStoreError
from agtrace.eventlog.git.checkout import hash_dir
from agtrace.eventlog.git.loose import DamagedObject, read_loose

MAX = 1 << 20


def _git(git_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], env=env, capture_output=True,
                          check=True).stdout.decode()


def _disk_tree(out: Path) -> str:
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return hash_dir(fd)
    finally:
        os.close(fd)


def _recorded(tmp_path: Path) -> tuple[GitStore, list[str]]:
    """A shadow repository with three trees: files in nested dirs, an executable, an empty file,
    a file and a directory symlink, a big file (several reads), a file replaced by a directory."""
    work = tmp_path / "work"
    (work / "src" / "deep").mkdir(parents=True)
    for i in range(40):
        (work / "src" / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n" * (i + 1))
    (work / "src" / "deep" / "big.bin").write_bytes(os.urandom(300_000))  # > one 64 KiB read
    (work / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (work / "run.sh").chmod(0o755)
    (work / "empty").write_bytes(b"")
    os.symlink("src/m1.py", work / "link")
    os.symlink("src/deep", work / "dirlink")
    store = GitStore.init(tmp_path / "repo.git")
    trees = [store.snapshot(work, max_file_bytes=MAX, message="1").tree_id]
    (work / "src" / "m3.py").write_text("changed\n")
    (work / "run.sh").chmod(0o644)
    trees.append(store.snapshot(work, max_file_bytes=MAX, message="2").tree_id)
    (work / "empty").unlink()
    (work / "empty").mkdir()
    (work / "empty" / "inside").write_text("now a directory\n")
    trees.append(store.snapshot(work, max_file_bytes=MAX, message="3").tree_id)
    return store, trees


def _loose_blob_paths(store: GitStore, tree: str) -> dict[str, Path]:
    objects = Path(store.path) / "objects"
    return {rel: objects / oid[:2] / oid[2:] for rel, oid in store.files(tree).items()}


INFLATERS = [pytest.param(zlib, id="zlib"), pytest.param(None, id="default")]  # default: ISA-L's if installed


@pytest.mark.parametrize("inflater", INFLATERS)
def test_loose_reader_agrees_with_libgit2_on_every_object(tmp_path, inflater):
    store, trees = _recorded(tmp_path)
    objects = Path(store.path) / "objects"
    seen = 0
    for tree in trees:
        for oid in [tree, *store.files(tree).values()]:
            kind, data = read_loose(str(objects), oid, inflater)
            want_kind, want = store._repo.odb.read(oid)  # noqa: SLF001 - compare with libgit2 itself
            assert data == want and kind == (b"tree" if oid == tree else b"blob")
            seen += 1
    assert seen > 40
    assert read_loose(str(objects), "0" * 40) is None  # not loose here: the caller asks libgit2


def test_packed_and_loose_repositories_check_out_every_tree_identically(tmp_path):
    store, trees = _recorded(tmp_path)
    packed_dir = tmp_path / "packed.git"
    subprocess.run(["cp", "-a", store.path, str(packed_dir)], check=True)
    _git(packed_dir, "repack", "-a", "-d", "-q")
    _git(packed_dir, "prune-packed")
    assert not [p for p in (packed_dir / "objects").glob("??/*")], "every object is in the pack now"
    packed = GitStore.open(packed_dir)
    for i, tree in enumerate(trees):
        a, b = tmp_path / f"loose-{i}", tmp_path / f"packed-{i}"
        assert store.checkout(tree, a) == tree
        assert packed.checkout(tree, b) == tree
        assert _disk_tree(a) == _disk_tree(b) == tree  # re-read from disk: bytes, modes, links
    assert os.readlink(tmp_path / "loose-0" / "dirlink") == "src/deep"
    assert os.access(tmp_path / "packed-0" / "run.sh", os.X_OK)
    assert not os.access(tmp_path / "packed-1" / "run.sh", os.X_OK)
    assert (tmp_path / "packed-2" / "empty" / "inside").read_text() == "now a directory\n"


def _rewrite_loose(path: Path, raw: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(raw)


@pytest.mark.parametrize("damage", ["other content", "truncated", "not zlib", "bad header"])
def test_a_damaged_loose_blob_is_refused_by_name_and_nothing_wrong_is_written(tmp_path, damage):
    store, trees = _recorded(tmp_path)
    path = _loose_blob_paths(store, trees[0])["src/m5.py"]
    good = path.read_bytes()
    raw = {
        "other content": zlib.compress(b"blob 6\0wrong\n"),  # a valid object, of another name
        "truncated": good[: len(good) // 2],
        "not zlib": b"\x00" * len(good),
        "bad header": zlib.compress(b"blob 999\0short"),
    }[damage]
    _rewrite_loose(path, raw)
    oid = path.parent.name + path.name
    for inflater in (zlib, None):  # zlib, and the default (ISA-L's when installed)
        with pytest.raises(DamagedObject):
            read_loose(str(Path(store.path) / "objects"), oid, inflater)
    out = tmp_path / "out"
    with pytest.raises(GitStoreError, match=oid):
        store.checkout(trees[0], out, jobs=2)
    assert not (out / "src" / "m5.py").exists() or (out / "src" / "m5.py").read_bytes() != b"wrong\n"
    with pytest.raises(GitStoreError, match=oid):
        store.read_blob(trees[0], "src/m5.py")


def test_a_loose_tree_object_where_a_file_belongs_is_refused(tmp_path):
    store, trees = _recorded(tmp_path)
    blob = _loose_blob_paths(store, trees[0])["src/m7.py"]
    tree_obj = Path(store.path) / "objects" / trees[0][:2] / trees[0][2:]
    _rewrite_loose(blob, tree_obj.read_bytes())  # the file's name now holds the tree's bytes
    with pytest.raises(GitStoreError, match="damaged"):
        store.checkout(trees[0], tmp_path / "out")


def test_stat_data_taken_while_writing_equals_a_walk_of_what_was_written(tmp_path):
    from agtrace.replay.checkout_cache import _scan, _signature

    store, trees = _recorded(tmp_path)
    for i, tree in enumerate(trees):
        out, stats = tmp_path / f"out-{i}", {}
        assert store.checkout(tree, out, jobs=3, stats=stats) == tree
        walked = dict(_scan(out, ""))
        assert {rel: _signature(st) for rel, st in stats.items()} == walked
        assert {"link", "dirlink", "src", "src/deep", "src/deep/big.bin"} <= set(walked)


def test_a_symlink_planted_where_a_loose_object_belongs_is_refused_not_followed(tmp_path):
    store, trees = _recorded(tmp_path)
    path = _loose_blob_paths(store, trees[0])["src/m9.py"]
    secret = tmp_path / "secret"
    secret.write_bytes(path.read_bytes())  # even the right bytes, behind a link, are not read
    path.unlink()
    os.symlink(secret, path)
    with pytest.raises(GitStoreError, match="cannot be read"):
        store.checkout(trees[0], tmp_path / "out")
