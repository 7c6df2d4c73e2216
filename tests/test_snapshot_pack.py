"""A big snapshot writes its blobs as packs (hashed and deflated in threads); a small one as
loose objects. Both choices give the same tree, pass ``git fsck``, replay to the same bytes, and
leave out what the policy leaves out (no credential is ever hashed into a pack)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agtrace.capture import Snapshotter
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore
from agtrace.eventlog.git import pack, packset

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
GIT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def big_tree(root, n=200):
    for i in range(n):
        write(f"{root}/pkg{i % 4}/sub{i % 7}/m{i}.py", f"x = {i}\n" * (i % 50))
    write(f"{root}/same/a.txt", "duplicate\n")  # equal contents: one object
    write(f"{root}/same/b.txt", "duplicate\n")
    write(f"{root}/empty.txt", "")
    write(f"{root}/bin/blob.bin", bytes(range(256)) * 400)
    write(f"{root}/run.sh", "#!/bin/sh\necho hi\n")
    os.chmod(f"{root}/run.sh", 0o755)
    os.symlink("pkg0/sub0/m0.py", f"{root}/link")
    write(f"{root}/keys/deploy.py", "K = '''\n" + PRIVATE_KEY + "'''\n")  # a credential by content
    write(f"{root}/.env", "TOKEN=1\n")  # by name
    write(f"{root}/huge.dat", b"z" * 300_000)  # over max_file_bytes below


def git_tree(root, tmp_path):
    """``git add -A && git write-tree`` of ``root`` minus what the policy leaves out."""
    env = GIT_ENV | {"GIT_DIR": str(tmp_path / "cli.git"), "GIT_WORK_TREE": str(root),
                     "GIT_INDEX_FILE": str(tmp_path / "cli.index")}
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "cli.git")], env=GIT_ENV, check=True)
    subprocess.run(["git", "add", "-A", "--", ".", ":!keys/deploy.py", ":!.env", ":!huge.dat"], cwd=root,
                   env=env, check=True)
    return subprocess.run(["git", "write-tree"], cwd=root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def snap(store_path, root, **kw):
    return GitStore.init(store_path).snapshot(root, max_file_bytes=200_000, message="first", **kw)


def object_kinds(git_dir):
    """How many objects of each kind ``git_dir`` holds."""
    out = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-all-objects",
                          "--batch-check=%(objecttype)"], env=GIT_ENV, check=True, capture_output=True, text=True)
    kinds = out.stdout.split()
    return {k: kinds.count(k) for k in ("blob", "tree", "commit")}


def loose_blobs(git_dir):
    out = subprocess.run(["git", "--git-dir", str(git_dir), "count-objects", "-v"], env=GIT_ENV, check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split(": ") for line in out.splitlines())


def test_packed_and_loose_snapshots_are_the_same_tree_and_replay_alike(tmp_path, monkeypatch):
    root = tmp_path / "work"
    big_tree(root)
    packed = snap(tmp_path / "packed.git", root)
    counts = loose_blobs(tmp_path / "packed.git")
    assert int(counts["packs"]) == 1 and int(counts["in-pack"]) >= 190
    monkeypatch.setattr(pack, "MIN_BLOBS", 10**9)  # the same snapshot with loose objects only
    loose = snap(tmp_path / "loose.git", root)
    assert int(loose_blobs(tmp_path / "loose.git")["packs"]) == 0
    assert packed.tree_id == loose.tree_id == git_tree(root, tmp_path)
    assert packed.excluded == loose.excluded
    assert {(e.path, e.reason) for e in packed.excluded} == {
        ("keys/deploy.py", "credential_content"), (".env", "credential"), ("huge.dat", "size")}
    assert (packed.added, packed.lines_added) == (loose.added, loose.lines_added)
    for name in ("packed", "loose"):
        subprocess.run(["git", "--git-dir", str(tmp_path / f"{name}.git"), "fsck", "--strict", "--no-dangling"],
                       env=GIT_ENV, check=True, capture_output=True)
        out = tmp_path / f"out-{name}"
        GitStore.open(tmp_path / f"{name}.git").checkout(packed.tree_id, out)
        assert os.readlink(out / "link") == "pkg0/sub0/m0.py" and os.access(out / "run.sh", os.X_OK)
        assert (out / "bin/blob.bin").read_bytes() == (root / "bin/blob.bin").read_bytes()
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
            p.relative_to(root) for p in root.rglob("*") if p.name not in ("deploy.py", ".env", "huge.dat")
            and p.name != "keys")
    secret = subprocess.run(["git", "--git-dir", str(tmp_path / "packed.git"), "cat-file", "--batch-all-objects",
                             "--batch"], env=GIT_ENV, check=True, capture_output=True).stdout
    assert b"PRIVATE KEY" not in secret and b"TOKEN=1" not in secret


def test_a_bundle_of_a_packed_snapshot_restores_it(tmp_path):
    root = tmp_path / "work"
    big_tree(root, 120)
    store = GitStore.init(tmp_path / "s.git")
    result = store.snapshot(root, max_file_bytes=200_000, message="first")
    store.write_bundle(tmp_path / "b.bundle")
    restored = GitStore.from_bundles([tmp_path / "b.bundle"], tmp_path / "r.git")
    assert restored.files(result.tree_id) == store.files(result.tree_id)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
def test_a_big_new_directory_from_changed_paths_is_packed_and_equals_a_walk(tmp_path):
    root = tmp_path / "work"
    write(f"{root}/README.md", "hi\n")
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    snapper = Snapshotter(tmp_path / "run", root)
    snapper.take("base")
    big_tree(root / "vendored", 150)
    event = snapper.take("part 1")
    assert event.detector == "inotify"
    walked = GitStore.init(tmp_path / "ref.git").snapshot(root, exclude=list(snapper.policy.exclude),
                                                          max_file_bytes=snapper.policy.max_file_bytes, message="r")
    assert event.tree_id == walked.tree_id
    assert int(loose_blobs(tmp_path / "run" / "repo.git")["packs"]) == 1
    assert "vendored/pkg0/sub0/m0.py" in event.added and len(event.added) == len(walked.added) - 1


def test_a_snapshot_bigger_than_one_pack_writes_several(tmp_path, monkeypatch):
    root = tmp_path / "work"
    big_tree(root, 150)
    monkeypatch.setattr(pack, "PACK_BYTES", 500)  # a pack closes every 500 bytes of entries
    monkeypatch.setattr(packset, "FANIN", 1000)  # and they are not merged here
    result = snap(tmp_path / "many.git", root)
    assert int(loose_blobs(tmp_path / "many.git")["packs"]) > 2
    subprocess.run(["git", "--git-dir", str(tmp_path / "many.git"), "fsck", "--strict", "--no-dangling"],
                   env=GIT_ENV, check=True, capture_output=True)
    assert result.tree_id == git_tree(root, tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
def test_a_renamed_directory_is_read_whole_but_its_blobs_are_not_stored_again(tmp_path):
    root = tmp_path / "work"
    big_tree(root / "lib", 150)
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    snapper = Snapshotter(tmp_path / "run", root)
    first = snapper.take("base")
    before = loose_blobs(tmp_path / "run" / "repo.git")
    blobs = object_kinds(tmp_path / "run" / "repo.git")["blob"]
    os.rename(root / "lib", root / "renamed")  # the watcher reports a new directory: read whole
    event = snapper.take("part 1")
    assert event.detector == "inotify" and len(event.added) == len(event.deleted) == len(first.added)
    after = loose_blobs(tmp_path / "run" / "repo.git")
    # the new trees and the commit, as one more pack; not one blob again
    assert int(after["packs"]) == int(before["packs"]) + 1 and after["count"] == before["count"]
    assert object_kinds(tmp_path / "run" / "repo.git")["blob"] == blobs
