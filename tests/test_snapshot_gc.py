"""`agtrace gc` on an ended run's shadow repository: objects no ref reaches go whether they are
loose or packed (snapshots from changed paths write packs, which `git prune` never touches), the
packs are rewritten into one, and every tree the run's events name stays whole. Real runs
(Recorder with the inotify watcher), real git, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agtrace.capture.recorder import Recorder
from agtrace.capture.watcher import open_watcher
from agtrace.eventlog import GitStore, Store
from agtrace.eventlog.git.bundle import unreachable_objects
from tests.conftest import run_agtrace

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
GIT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def packs(repo):
    return sorted(p for p in os.listdir(repo / "objects" / "pack") if p.endswith(".pack"))


def test_gc_drops_packed_objects_no_ref_reaches_and_keeps_every_recorded_tree(tmp_path):
    if open_watcher(tmp_path) is None:
        pytest.skip("inotify is not available here")
    work = tmp_path / "work"
    for i in range(20):
        (work / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (work / f"d{i % 3}" / f"f{i}.txt").write_text(f"{i}\n")
    home = tmp_path / "home"
    store = Store(home)
    with Recorder(store, workdir=work, agent="t", model="m", task="gc") as rec:
        for n in range(4):
            call = rec.tool_call("shell", {"cmd": "edit"}, command="edit")
            (work / "d0" / f"f{n}.txt").write_text(f"edited {n}\n")
            rec.tool_result(call, output="ok", exit_code=0)
        rid = rec.run_id
    trees = {getattr(r.event, "tree_id", "") for r in store.read(rid)} - {""}
    store.close()
    repo = home / "runs" / rid / "repo.git"
    assert len(trees) >= 5 and not unreachable_objects(repo)
    # a snapshot no ref reaches and no event names (e.g. a capture killed between the two), packed
    git = GitStore.open(repo)
    (work / "d1" / "orphan.txt").write_text("never recorded\n")
    orphan = git.snapshot(work, exclude=["__pycache__/", "*.pyc", ".venv/", "node_modules/"],
                          max_file_bytes=10 * 1024 * 1024, message="orphan", parent_commit=git.head,
                          changed={"d1/orphan.txt"}, move_ref=False)
    assert orphan.detector == "paths" and orphan.created_commit
    lost = unreachable_objects(repo)
    assert orphan.commit_id in lost and orphan.tree_id in lost
    assert all(not (repo / "objects" / o[:2] / o[2:]).exists() for o in lost)  # every one of them packed
    packs_before = packs(repo)

    proc = run_agtrace(["gc", "--json"], home)
    assert proc.returncode == 0, proc.stderr.decode()
    items = [i for i in json.loads(proc.stdout)["items"] if i["kind"] == "repository"]
    assert items and items[0]["objects"] == len(lost) and items[0]["bytes"] > 0
    assert not unreachable_objects(repo) and len(packs(repo)) == 1 and packs(repo) != packs_before
    fresh = GitStore.open(repo)
    seen: set[str] = set()
    for tree in trees:
        assert fresh.damage_in(tree, seen) is None
    subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling"], env=GIT_ENV, check=True,
                   capture_output=True)
    again = run_agtrace(["gc", "--json"], home)  # nothing left to do
    assert not [i for i in json.loads(again.stdout)["items"] if i["kind"] == "repository"]
