"""A snapshot from changed paths writes its blobs, trees and commit as one pack, and small packs
are merged in tiers (``eventlog/git/packset.py``): through many snapshots and merges every tree
still equals a full walk's, every recorded tree reads back whole, ``git fsck --strict`` passes
(the commits written in Python included), the pack count stays bounded, deleted packs' handles
are dropped, and a pack git wrote with REF_DELTAs is never merged nor deleted (one with
OFS_DELTAs is: ``test_shadow_size.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agtrace.capture import Snapshotter
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore
from agtrace.eventlog.git import packset
from agtrace.eventlog.git.recorder import commit_body

from .test_snapshot_watch import reference, write

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
GIT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(git_dir, *args, **kw):
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], env=GIT_ENV, check=True,
                          capture_output=True, text=True, **kw).stdout


def packs(git_dir):
    return sorted(p for p in os.listdir(os.path.join(git_dir, "objects", "pack")) if p.endswith(".pack"))


def loose_count(git_dir):
    return int(dict(line.split(": ") for line in git(git_dir, "count-objects", "-v").splitlines())["count"])


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def work(tmp_path):
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    root = tmp_path / "work"
    for i in range(40):
        write(f"{root}/d{i % 4}/e{i % 3}/f{i}.py", f"x = {i}\n")
    return root


@pytest.mark.slow
def test_many_snapshots_merge_their_packs_and_every_tree_stays_whole(work, tmp_path, monkeypatch):
    monkeypatch.setattr(packset, "FANIN", 3)  # merges after every 3rd snapshot, cascading
    snap = Snapshotter(tmp_path / "run", work)
    repo = tmp_path / "run" / "repo.git"
    snap.take("base")
    base_loose = loose_count(repo)  # a first snapshot of 40 files: loose objects
    trees, fds = [], []
    for n in range(20):
        with open(f"{work}/d{n % 4}/e{n % 3}/f{n}.py", "a") as f:
            f.write(f"y = {n}\n")
        if n % 5 == 0:
            write(f"{work}/new{n}/deep/g.txt", f"new {n}\n")  # a new directory
        if n % 7 == 3:
            os.unlink(f"{work}/d{n % 4}/e{n % 3}/f{n}.py")  # a deleted file
        event = snap.take(f"part {n}")
        assert event.detector == "inotify", event.fallback
        assert event.tree_id == reference(work, tmp_path, n)[0], n
        assert snap.git.head == event.commit_id  # the ref, written in Python, follows
        trees.append(event.tree_id)
        fds.append(open_fds())
    assert snap.git._packset.merges >= 5
    assert len(packs(repo)) <= 1 + 2 * 3 * 3  # the first snapshot's, and < FANIN per tier
    assert not [p for p in os.listdir(repo / "objects" / "pack") if p.startswith("tmp-")]
    assert max(fds[10:]) - min(fds[10:]) <= 6  # merged packs' handles are dropped, not kept
    assert loose_count(repo) == base_loose  # every object of a snapshot from changed paths is packed
    git(repo, "fsck", "--strict", "--no-dangling")
    seen: set[str] = set()
    for tree in trees:
        assert snap.git.damage_in(tree, seen) is None
    reopened = GitStore.open(repo)  # another process's view: every tree and commit reads back
    assert reopened.first_parents(snap.commit_id)[:20] == reopened.first_parents(event.commit_id)[:20]
    assert [reopened.tree_of(c) for c in reopened.first_parents(snap.commit_id)[:20][::-1]] == trees
    final = snap.take("final", final=True)
    assert final.detector == "inotify+walk" and final.missed == []


def test_a_pack_with_ref_deltas_is_never_merged(work, tmp_path, monkeypatch):
    monkeypatch.setattr(packset, "FANIN", 2)
    snap = Snapshotter(tmp_path / "run", work)
    repo = tmp_path / "run" / "repo.git"
    snap.take("base")
    big = "".join(f"line {i} of a file git will store as a delta\n" for i in range(400))
    write(f"{work}/big.txt", big)
    snap.take("a")
    write(f"{work}/big.txt", big + "one more line\n")
    snap.take("b")
    oids = git(repo, "rev-list", "--objects", "--all").split()
    made = git(repo, "pack-objects", "--window=10", "--depth=10", str(repo / "objects" / "pack" / "git"),  # REF_DELTAs
               input="\n".join(o for o in oids if len(o) == 40) + "\n").strip()
    delta_pack = f"git-{made}.pack"
    assert " delta " in git(repo, "verify-pack", "-v", str(repo / "objects" / "pack" / f"git-{made}.idx")) or \
        "chain length" in git(repo, "verify-pack", "-v", str(repo / "objects" / "pack" / f"git-{made}.idx"))
    snap.git._packset = packset.PackSet(str(repo))  # as a store opened now would see the directory
    for n in range(8):
        write(f"{work}/d0/e0/f{n}.py", f"changed {n}\n")
        assert snap.take(f"part {n}").tree_id == reference(work, tmp_path, n)[0]
    assert delta_pack in packs(repo)
    ours = [p for p in packs(repo) if p.startswith("pack-")]
    assert packset._source(str(repo / "objects" / "pack" / delta_pack[:-5])) is None
    assert all(packset._source(str(repo / "objects" / "pack" / p[:-5])) for p in ours)
    group = [(str(repo / "objects" / "pack" / p[:-5]), 1) for p in [delta_pack, *ours]]
    snap.git._packset._merge(group)  # asked to merge it: the delta pack stays, the others merge
    assert delta_pack in packs(repo) and len(packs(repo)) == 2
    git(repo, "fsck", "--strict", "--no-dangling")


def test_the_commit_written_in_python_is_what_libgit2_writes(tmp_path):
    store = GitStore.init(tmp_path / "s.git")
    write(f"{tmp_path}/w/a.txt", "a\n")
    first = store.snapshot(tmp_path / "w", max_file_bytes=1 << 20, message="first")
    import pygit2
    repo = pygit2.Repository(str(tmp_path / "s.git"))
    commit = repo[first.commit_id]
    body = commit_body(first.tree_id, None, "first", now=commit.commit_time)
    assert repo.odb.read(commit.id)[1] == body  # the walk's commit (libgit2) has the same bytes
    second = commit_body(first.tree_id, first.commit_id, "ünïcode message\nwith two lines", now=1.5e9)
    oid = repo.odb.write(pygit2.enums.ObjectType.COMMIT, second)
    parsed = repo[oid]
    assert parsed.parents[0].id == commit.id and parsed.author.name == "agtrace" and parsed.commit_time == 1_500_000_000
    assert parsed.message == "ünïcode message\nwith two lines"
    git(tmp_path / "s.git", "fsck", "--strict", "--no-dangling")


def test_a_path_git_refuses_falls_back_to_the_index_tree_after_the_pack(work, tmp_path):
    snap = Snapshotter(tmp_path / "run", work)
    snap.take("base")
    write(f"{work}/.GIT", "libgit2 refuses this name in an index\n")
    write(f"{work}/d0/new.txt", "new\n")
    event = snap.take("part 1")
    assert event.detector == "inotify" and event.tree_id == reference(work, tmp_path, 1)[0]
    assert ("invalid_path", ".GIT") in {(e.reason, e.path) for e in event.excluded}
    assert event.added == ["d0/new.txt"]
    write(f"{work}/d1/later.txt", "later\n")
    assert snap.take("part 2").tree_id == reference(work, tmp_path, 2)[0]
    git(tmp_path / "run" / "repo.git", "fsck", "--strict", "--no-dangling")
