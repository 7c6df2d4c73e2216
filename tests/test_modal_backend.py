"""The sandbox backend, against InMemorySandboxAPI: the same capture as the local path, snapshots
taken in the sandbox and fetched back, nothing lost when the sandbox dies, and scoring."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agtrace.capture import (
    AgentPort,
    InMemorySandboxAPI,
    LocalProcess,
    ModalScorer,
    Recorder,
    RemoteSnapshotter,
    SandboxAgentProcess,
    SandboxError,
    SnapshotPort,
    Snapshotter,
    run_agent,
    run_agent_in_sandbox,
    run_checked,
    upload_tree,
)
from agtrace.capture.demo import demo_command
from agtrace.capture.demo_agent import setup_demo_repo
from agtrace.eventlog import GitStore, PartEnded, SnapshotTaken, Store, ToolCalled, ToolReturned

PACE = "0.3"
SETUP = f"{sys.executable} -c 'from agtrace.capture.demo_agent import setup_demo_repo; setup_demo_repo(\".\")'"


@pytest.fixture
def api():
    sandbox = InMemorySandboxAPI()
    yield sandbox
    sandbox.terminate()


def _shape(store: Store, run_id: str) -> dict:
    recs = list(store.read(run_id))
    return {
        "parts": [(r.part, r.event.part_kind, r.event.tool, r.event.title, r.event.tree_id)
                  for r in recs if isinstance(r.event, PartEnded)],
        "calls": [(r.part, r.event.tool, r.event.command) for r in recs if isinstance(r.event, ToolCalled)],
        "returns": [(r.part, r.event.status, r.event.exit_code) for r in recs if isinstance(r.event, ToolReturned)],
        "snapshots": [(r.part, r.event.tree_id, r.event.added, r.event.modified, r.event.deleted,
                       r.event.lines_added, r.event.lines_removed, r.event.final)
                      for r in recs if isinstance(r.event, SnapshotTaken)],
        "kinds": [r.kind for r in recs if r.kind not in ("heartbeat_sent",)],
    }


@pytest.mark.slow  # 10-30 s on a loaded 2-core machine
def test_sandbox_capture_equals_local_capture(tmp_path, api):
    local = Store(tmp_path / "local")
    wd = tmp_path / "wd"
    wd.mkdir()
    setup_demo_repo(wd)
    # paced so that each part's snapshot is taken before the agent's next action, on both paths
    expected = run_agent(local, demo_command("--parts-delay", PACE), agent="codex", workdir=wd)

    remote = Store(tmp_path / "remote")
    run_checked(api, SETUP, what="demo setup")
    got = run_agent_in_sandbox(remote, api, demo_command("--parts-delay", PACE), agent="codex")

    assert (got.status, got.parts, got.tokens, got.exit_code) == (expected.status, expected.parts,
                                                                    expected.tokens, expected.exit_code)
    a, b = _shape(local, expected.run_id), _shape(remote, got.run_id)
    assert b["parts"] == a["parts"] and len(a["parts"]) == expected.parts > 5
    assert b["calls"] == a["calls"] and b["returns"] == a["returns"]
    assert b["snapshots"] == a["snapshots"]  # same trees, same changes, at the same parts
    assert b["kinds"] == a["kinds"]
    # the run's own shadow repository holds every tree, and its sealed bundles rebuild it offline
    final_tree = a["snapshots"][-1][1]
    repo = GitStore.open(remote.run_dir(got.run_id) / "repo.git")
    assert all(repo.tree_of(t) for _, *_, t in [(p[0], p[4]) for p in b["parts"]])
    bundles = sorted((remote.run_dir(got.run_id) / "bundles").glob("*.bundle"))
    rebuilt = GitStore.from_bundles(bundles, tmp_path / "cache")
    assert rebuilt.tree_of(rebuilt.head) == final_tree
    assert rebuilt.read_blob(final_tree, "textstats/core.py") == (wd / "textstats" / "core.py").read_bytes()
    started = next(iter(remote.read(got.run_id))).event
    assert started.config["backend"] == "sandbox" and started.config["sandbox"] == {"sandbox": "in-memory"}


def test_a_lost_sandbox_loses_no_streamed_event_or_snapshot(tmp_path, api):
    store = Store(tmp_path / "store")
    run_checked(api, SETUP, what="demo setup")
    parts_seen = []

    def on_part(p):
        parts_seen.append(p.part)
        if p.part == 3:  # preempt: the container goes away while the agent runs
            threading.Thread(target=lambda: (time.sleep(0.3), api.terminate()), daemon=True).start()

    summary = run_agent_in_sandbox(store, api, demo_command("--parts-delay", "0.2"), agent="codex", on_part=on_part)
    assert summary.status == "failed" and "sandbox" in summary.reason
    recs = list(store.read(summary.run_id))
    assert recs[-1].kind == "run_ended"
    ended = [r.event for r in recs if isinstance(r.event, PartEnded)]
    assert len(ended) >= 3 and [r.part for r in recs if isinstance(r.event, PartEnded)] == parts_seen
    repo = GitStore.open(store.run_dir(summary.run_id) / "repo.git")
    with_tree = [ev for ev in ended if ev.tree_id]
    assert len(with_tree) >= 3 and ended[: len(with_tree)] == with_tree  # treeless only after the loss
    for ev in with_tree:  # every part that ended before the loss has its tree locally
        assert repo.tree_of(ev.tree_id) == ev.tree_id
    bundles = sorted((store.run_dir(summary.run_id) / "bundles").glob("*.bundle"))
    assert bundles, "the snapshots fetched before the loss are sealed"


def test_sandbox_api_streams_lines_as_they_arrive(api):
    proc = api.exec(["bash", "-c", "echo one; sleep 1; echo two >&2; sleep 0.2; echo three"])
    got = []
    t0 = time.monotonic()
    for stream, line, _ts in proc.lines():
        got.append((stream, line, time.monotonic() - t0))
    assert [(s, x) for s, x, _ in got] == [("stdout", "one"), ("stderr", "two"), ("stdout", "three")]
    assert got[0][2] < 0.9 <= got[1][2]  # the first line came before the command finished
    assert proc.wait() == 0
    api.write_file(f"{api.scratch}/x/y.bin", b"\x00\xff")
    assert api.read_file(f"{api.scratch}/x/y.bin") == b"\x00\xff"
    with pytest.raises(SandboxError, match="exit code 3"):
        run_checked(api, "echo bad >&2; exit 3")


def test_modal_scorer_shape_and_results(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "t.sh").write_text("echo 2 passed; echo '{\"ok\": 1}' > result.json; exit 1\n")
    scorer = ModalScorer(InMemorySandboxAPI, label="test")
    assert scorer.describe() == {"sandbox": "in-memory", "label": "test"}
    res = scorer.run(tree, "bash t.sh; echo err >&2; exit 1", 30, files=["result.json", "absent"])
    assert (res.exit_code, res.timed_out) == (1, False)
    assert "2 passed" in res.output and "err" in res.output
    assert res.files == {"result.json": b'{"ok": 1}\n'}
    slow = scorer.run(tree, "sleep 30", 0.5)
    assert slow.timed_out and slow.exit_code is None and slow.duration_ms < 10_000
    try:
        from agtrace.replay.sandbox import Sandbox
    except ImportError:
        return
    assert isinstance(scorer, Sandbox)


def test_upload_tree_copies_files_and_modes(tmp_path, api):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_text("hi")
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o755)
    upload_tree(api, src, f"{api.workdir}/copy")
    assert run_checked(api, "cat copy/d/f.txt; echo; ./copy/run.sh") == "hi\nran"


def test_both_backends_satisfy_both_ports(tmp_path, api):
    assert isinstance(LocalProcess(["true"], cwd=tmp_path), AgentPort)
    assert isinstance(SandboxAgentProcess(api, ["true"]), AgentPort)
    assert isinstance(Snapshotter(tmp_path / "run", tmp_path), SnapshotPort)
    assert isinstance(RemoteSnapshotter(api, tmp_path / "run2"), SnapshotPort)


def test_a_recorder_takes_a_sandbox_snapshotter(tmp_path, api):
    """A framework that drives an agent in a sandbox itself records the sandbox's workdir."""
    store = Store(tmp_path / "store")
    with Recorder(store, agent="fw", snapshotter=functools.partial(RemoteSnapshotter, api)) as rec:
        run_checked(api, "echo hi > a.txt")
        rec.message("assistant", "wrote a.txt")
    snaps = [r for r in store.read(rec.run_id) if isinstance(r.event, SnapshotTaken)]
    assert [(r.part, r.event.added, r.event.final) for r in snaps] == [
        (None, [], False), (1, ["a.txt"], False), (1, [], True)]
    parts = [r.event for r in store.read(rec.run_id) if isinstance(r.event, PartEnded)]
    repo = GitStore.open(store.run_dir(rec.run_id) / "repo.git")
    assert repo.read_blob(parts[0].tree_id, "a.txt") == b"hi\n"
    assert store.info(rec.run_id).status == "completed"


def _pack_files(git_dir: Path) -> tuple[int, int]:
    """(packs, loose objects) of a repository."""
    objects = git_dir / "objects"
    loose = sum(1 for d in objects.iterdir() if len(d.name) == 2 for _ in d.iterdir())
    return len(list((objects / "pack").glob("*.pack"))), loose


@pytest.mark.slow
def test_sandbox_snapshots_keep_the_shadow_repository_few_packs_and_one_at_the_end(tmp_path, api):
    """Each snapshot fetched from the sandbox is a bundle, so a pack of git's, and a loose
    commit: rolled up as the run goes (git's geometric repack), and into one pack after the
    final snapshot; every snapshot's tree stays readable, byte for byte."""
    from agtrace.capture.sandboxes.remote_snapshot import REPACK_EVERY

    work = Path(api.workdir)
    for d in range(4):
        (work / f"d{d}").mkdir()
        for f in range(10):
            (work / f"d{d}" / f"f{f}.py").write_text("".join(f"line {i} of {d}/{f}\n" for i in range(40)))
    snap = RemoteSnapshotter(api, tmp_path / "run")
    git_dir = Path(snap.git.path)
    expected, most = {}, (0, 0)
    parts = 5 * REPACK_EVERY
    for i in range(parts):
        path = work / f"d{i % 4}" / f"f{i % 10}.py"
        path.write_text(path.read_text() + f"edit {i}\n")
        if i % 7 == 3:
            (work / f"new{i}.txt").write_bytes(os.urandom(64))
        taken = snap.take(f"part {i}", final=i == parts - 1)
        expected[taken.tree_id] = {p.relative_to(work).as_posix(): p.read_bytes() for p in work.rglob("*") if p.is_file()}
        packs, loose = _pack_files(git_dir)
        most = (max(most[0], packs), max(most[1], loose))
    assert most[0] <= 2 * REPACK_EVERY and most[1] <= REPACK_EVERY  # before: one pack and one loose commit per part
    assert _pack_files(git_dir) == (1, 0)
    fsck = subprocess.run(["git", f"--git-dir={git_dir}", "fsck", "--strict", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    repo = GitStore.open(git_dir)
    for n, (tree, files) in enumerate(expected.items()):
        out = tmp_path / f"out{n}"
        repo.checkout(tree, out)
        assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


OLD_GIT = """#!/bin/sh
# git as older than 2.32 answers a geometric repack; everything else is the real git
for arg in "$@"; do
  case "$arg" in --geometric*)
    echo x >> "$AGT_TEST_GEOMETRIC_TRIES"
    echo "error: unknown option \\`geometric=2'" >&2
    exit 129;;
  esac
done
exec {git} "$@"
"""


def test_a_git_without_geometric_repack_is_tried_once_per_run_and_the_end_still_packs(tmp_path, api, monkeypatch):
    """With a git older than 2.32 (a wrapper that answers ``--geometric`` as it does, and runs
    the real git for everything else), the first mid-run repack fails and the run's other
    mid-run repacks are not tried; the final ``repack -a`` still makes one pack, and every
    snapshot stays readable."""
    import shutil

    from agtrace.capture.sandboxes.remote_snapshot import REPACK_EVERY

    bin_dir, tries = tmp_path / "bin", tmp_path / "geometric-tries"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(OLD_GIT.format(git=shutil.which("git")))
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AGT_TEST_GEOMETRIC_TRIES", str(tries))
    work = Path(api.workdir)
    snap = RemoteSnapshotter(api, tmp_path / "run")
    trees = {}
    parts = 3 * REPACK_EVERY + 1
    for i in range(parts):
        (work / f"f{i % 5}.txt").write_text(f"version {i}\n" * 50)
        taken = snap.take(f"part {i}", final=i == parts - 1)
        trees[taken.tree_id] = {p.name: p.read_bytes() for p in work.iterdir()}
    assert tries.read_text().count("x") == 1
    assert _pack_files(Path(snap.git.path)) == (1, 0)
    repo = GitStore.open(snap.git.path)
    for n, (tree, files) in enumerate(trees.items()):
        repo.checkout(tree, tmp_path / f"out{n}")
        assert {p.name: p.read_bytes() for p in (tmp_path / f"out{n}").iterdir()} == files


def test_a_big_sandbox_repository_is_rolled_up_not_repacked_whole_at_the_end(tmp_path, api, monkeypatch):
    """Past FULL_REPACK_BYTES the run's end rolls the packs up geometrically (a full repack would
    cost seconds): no loose object is left, and every snapshot stays readable."""
    from agtrace.eventlog.git import bundle

    monkeypatch.setattr(bundle, "FULL_REPACK_BYTES", 0)
    work = Path(api.workdir)
    snap = RemoteSnapshotter(api, tmp_path / "run")
    trees = {}
    for i in range(12):
        (work / f"f{i % 5}.txt").write_text(f"version {i}\n" * 50)
        taken = snap.take(f"part {i}", final=i == 11)
        trees[taken.tree_id] = {p.name: p.read_bytes() for p in work.iterdir()}
    packs, loose = _pack_files(Path(snap.git.path))
    assert loose == 0 and 1 <= packs < 12
    repo = GitStore.open(snap.git.path)
    for n, (tree, files) in enumerate(trees.items()):
        repo.checkout(tree, tmp_path / f"out{n}")
        assert {p.name: p.read_bytes() for p in (tmp_path / f"out{n}").iterdir()} == files
