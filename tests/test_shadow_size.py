"""The shadow repository stays within twice its bundles during and after a run
(``eventlog/git/packset.py``: merged packs store each new version of a tree or file as a delta
against the one before): real snapshots of a workdir whose big directory and big file change a
little every part; the deltas read back as git and libgit2 read them; a pack git wrote with
OFS_DELTAs is merged too; and a snapshotting process SIGKILLed at random moments (mid-merge
included) leaves a repository whose every recorded snapshot reads back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agtrace.capture import Snapshotter
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore
from agtrace.eventlog.git import packset
from agtrace.eventlog.git.packed import ObjectReader

from .procs import end
from .test_snapshot_packset import git, packs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def work(tmp_path):
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    root = tmp_path / "work"
    (root / "wide").mkdir(parents=True)
    rng = random.Random(1)
    for i in range(600):  # a directory tree of ~24 KB, rewritten by every part, of 600 KB of files
        (root / "wide" / f"module_{i:04d}.py").write_text("".join(f"v{j} = {rng.random():.15f}\n" for j in range(40)))
    (root / "big.py").write_text("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(1500)))
    return root


def edit(root: Path, rng: random.Random, n: int) -> None:
    (root / "wide" / f"module_{rng.randrange(600):04d}.py").write_text(f"value = {n}  # part {n}\n")
    lines = (root / "big.py").read_text().splitlines()
    lines[rng.randrange(len(lines))] = f"    return x - {n}"
    (root / "big.py").write_text("\n".join(lines) + "\n")


def every_object_reads_as_git_reads_it(repo: Path) -> int:
    reader = ObjectReader(str(repo / "objects"))
    listed = [line.split()[0] for line in git(repo, "rev-list", "--objects", "--all").splitlines()]
    batch = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "--batch"], input="\n".join(listed).encode() + b"\n",
                           capture_output=True, check=True).stdout
    at = 0
    for oid in listed:
        header_end = batch.index(b"\n", at)
        _, kind, size = batch[at:header_end].split()
        body = batch[header_end + 1: header_end + 1 + int(size)]
        at = header_end + 2 + int(size)
        assert reader.read(oid) == (kind, body), oid
    return len(listed)


def test_a_run_editing_a_big_tree_and_a_big_file_stays_within_twice_its_bundles(work, tmp_path):
    rng = random.Random(5)
    run = tmp_path / "run"
    snap = Snapshotter(run, work)
    snap.take("base")
    ratios = []
    for n in range(1, 241):
        edit(work, rng, n)
        event = snap.take(f"part {n}", final=n == 240)
        assert event.detector in ("inotify", "inotify+walk")
        if n % 60 == 0:  # sealed as a run's capture seals: its next bundle written
            snap.seal()
            ratios.append(disk_bytes(run / "repo.git") / disk_bytes(run / "bundles"))
    assert max(ratios) <= 2.0, ratios  # whole objects only: 4-6x
    pack_dir = run / "repo.git" / "objects" / "pack"
    listing = "".join(git(run / "repo.git", "verify-pack", "-v", str(pack_dir / p.replace(".pack", ".idx")))
                      for p in packs(run / "repo.git"))
    assert "chain length = 2" in listing  # deltas on deltas
    depths = [int(line.split("chain length = ")[1].split(":")[0]) for line in listing.splitlines()
              if "chain length = " in line]
    assert max(depths) <= packset.MAX_DEPTH
    git(run / "repo.git", "fsck", "--strict", "--no-dangling")
    assert every_object_reads_as_git_reads_it(run / "repo.git") > 240 * 3
    restored = GitStore.from_bundles(sorted((run / "bundles").glob("*.bundle")), tmp_path / "restored.git")
    assert restored.tree_of(restored.head) == event.tree_id


def test_a_pack_git_wrote_with_offset_deltas_is_merged_with_ours(work, tmp_path, monkeypatch):
    monkeypatch.setattr(packset, "FANIN", 2)
    rng = random.Random(9)
    run = tmp_path / "run"
    snap = Snapshotter(run, work)
    snap.take("base")
    for n in range(3):
        edit(work, rng, n)
        snap.take(f"part {n}")
    repo = run / "repo.git"
    oids = [line.split()[0] for line in git(repo, "rev-list", "--objects", "--all").splitlines()]
    made = git(repo, "pack-objects", "--delta-base-offset", "--window=10", "--depth=10",
               str(repo / "objects" / "pack" / "git"), input="\n".join(oids) + "\n").strip()
    assert packset._source(str(repo / "objects" / "pack" / f"git-{made}")) is not None
    snap.git._packset = packset.PackSet(str(repo))  # as a store opened now sees the directory
    for n in range(3, 12):
        edit(work, rng, n)
        snap.take(f"part {n}")
    assert f"git-{made}.pack" not in packs(repo)  # merged (its deltas re-pointed), then deleted
    git(repo, "fsck", "--strict", "--no-dangling")
    every_object_reads_as_git_reads_it(repo)


_CHILD = textwrap.dedent("""
    import random, sys
    from pathlib import Path
    from agtrace.capture import Snapshotter
    from agtrace.eventlog.git import packset
    packset.FANIN = 2  # a merge after every other snapshot, cascading
    work, run, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    snap = Snapshotter(run, work)
    for n in range(10**6):
        (work / "wide" / f"module_{rng.randrange(600):04d}.py").write_text(f"value = {n} {seed}\\n")
        lines = (work / "big.py").read_text().splitlines() or ["pass"]  # a kill mid-write empties it
        lines[rng.randrange(len(lines))] = f"    return x - {n} - {seed}"
        (work / "big.py").write_text("\\n".join(lines) + "\\n")
        event = snap.take(f"part {n}")
        if n % 10 == 9:
            snap.git.compact()  # a run's end merges every pack: killed in that too
        print(event.commit_id, flush=True)
""")


@pytest.mark.slow
def test_a_snapshotting_process_killed_at_any_moment_leaves_every_snapshot_readable(work, tmp_path):
    run = tmp_path / "run"
    rng = random.Random(3)
    recorded: list[str] = []
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(work), str(run), str(round_)],
                                stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(rng.randrange(5, 40)):  # some snapshots and merges, then a kill mid-way
                line = proc.stdout.readline()
                assert line, "the snapshotting child ended early"
                recorded.append(line.strip())
            time.sleep(rng.random() * 0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            end([proc.pid])
        repo = run / "repo.git"
        git(repo, "fsck", "--strict", "--no-dangling")  # what the ref reaches is all there
        store = GitStore.open(repo)
        for commit in recorded[-10:]:
            assert store.damage_in(store.tree_of(commit), set()) is None
        every_object_reads_as_git_reads_it(repo)
    assert not [p for p in os.listdir(run / "repo.git" / "objects" / "pack") if p.endswith(".idx")
                and not os.path.exists(run / "repo.git" / "objects" / "pack" / p.replace(".idx", ".pack"))]
