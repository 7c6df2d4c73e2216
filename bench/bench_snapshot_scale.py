"""Snapshots at the scale of a big checkout (issue 14, item 5), against git in the same run.

Builds a 24,000-file / 170 MB tree (``--files``, ``--mb``), reads it once so the page cache is
warm for both sides, then measures, medians over ``--repeats``:

* first snapshot: a `Snapshotter`'s base snapshot into a fresh run directory, against
  ``git add -A && git write-tree`` into a fresh GIT_DIR and index (budget ≤ 1.2× git's);
* incremental snapshot after 1–5 edits: `Snapshotter.take` (inotify watcher) against
  ``git add -A && git write-tree`` on a warm index, both after the same edits, which of them runs
  first alternating, medians over ``--edits`` (budget ≤ 50 ms and ≥ 10× faster than git);
* the same incremental snapshot with ``watch=False`` (a full stat walk), for reference;
* how many packs the watched run's repository holds at the end (each incremental snapshot
  writes one; small ones are merged in tiers, so this stays small).

    python bench/bench_snapshot_scale.py [--files 24000] [--mb 170] [--repeats 5] [--edits 30] [--json]

``bench/bench_scale.py --only snapshot`` prints these against their budgets in the one scale table.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_tree, clock, git_env, print_report  # noqa: E402

from agtrace.capture import Snapshotter  # noqa: E402

LAYOUT = (40, 30, 7)
"""The tree's directories: ~1,000 of them, like a big source checkout."""

FIRST_RATIO_BUDGET, INCREMENTAL_MS_BUDGET, INCREMENTAL_SPEEDUP_BUDGET = 1.2, 50.0, 10.0


def warm(root: str) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                f.read()


def git_snapshot(work: str, git_dir: str, index: str) -> tuple[float, float]:
    """Wall and CPU ms of ``git add -A && git write-tree`` of ``work``."""
    env = git_env(GIT_DIR=git_dir, GIT_WORK_TREE=work, GIT_INDEX_FILE=index)

    def both() -> None:
        subprocess.run(["git", "add", "-A"], cwd=work, env=env, check=True)
        subprocess.run(["git", "write-tree"], cwd=work, env=env, check=True, capture_output=True)
    return clock(both)


def git_init(path: str) -> str:
    subprocess.run(["git", "init", "-q", "--bare", path], env=git_env(), check=True)
    return path


def edit(work: str, paths: list[str], rng: random.Random, step: int) -> None:
    for rel in rng.sample(paths, rng.randint(1, 5)):
        with open(os.path.join(work, rel), "a") as f:
            f.write(f"# step {step}\n")


def run(files: int, mb: int, repeats: int, edits: int) -> dict:
    rng = random.Random(7)
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-scale-")
    try:
        work = os.path.join(tmp, "work")
        paths = build_tree(work, files, mb * 1_000_000, rng, LAYOUT)
        warm(work)
        first_ours, first_git = [], []
        for i in range(repeats):  # alternate who goes first, so neither always runs on a warmer machine
            sides = [lambda i=i: first_git.append(git_snapshot(work, git_init(os.path.join(tmp, f"first-{i}.git")),
                                                               os.path.join(tmp, f"first-{i}.index"))),
                     lambda i=i: first_ours.append(clock(lambda: Snapshotter(os.path.join(tmp, f"first-run-{i}"),
                                                                             work, watch=False).take("base")))]
            for side in sides if i % 2 == 0 else sides[::-1]:
                side()
                os.sync()  # each side starts on a quiet disk; stores are removed only at the end
                # (deleting 24,000 loose objects keeps ext4 busy for seconds, slowing what writes next)
        first_packs = len(list(Path(tmp, "first-run-0", "repo.git", "objects", "pack").glob("*.pack")))

        watched = Snapshotter(os.path.join(tmp, "run-watched"), work)
        walked = Snapshotter(os.path.join(tmp, "run-walked"), work, watch=False)
        watched.take("base")
        walked.take("base")
        base_git, base_index = git_init(os.path.join(tmp, "base.git")), os.path.join(tmp, "base.index")
        git_snapshot(work, base_git, base_index)  # a warm index, as our first snapshot made ours
        os.sync()
        inc_ours, inc_walk, inc_git, events = [], [], [], []
        for step in range(edits):  # the same edits for all three; who goes first alternates
            edit(work, paths, rng, step)
            sides = [lambda step=step: inc_ours.append(clock(lambda: events.append(watched.take(f"part {step}")))),
                     lambda step=step: inc_walk.append(clock(lambda: walked.take(f"part {step}"))),
                     lambda: inc_git.append(git_snapshot(work, base_git, base_index))]
            for side in sides if step % 2 else sides[::-1]:
                side()
        final = watched.take("final", final=True)
        watched_packs = len(list(Path(tmp, "run-watched", "repo.git", "objects", "pack").glob("*.pack")))

        def med(samples: list[tuple[float, float]], at: int = 0) -> float:
            return statistics.median(x[at] for x in samples)
        return {
            "files": files, "bytes": sum(os.path.getsize(os.path.join(work, p)) for p in paths),
            "first_ms": round(med(first_ours), 1), "first_git_ms": round(med(first_git), 1),
            "first_ratio": round(med(first_ours) / med(first_git), 3), "first_ratio_budget": FIRST_RATIO_BUDGET,
            "incremental_ms": round(med(inc_ours), 2), "incremental_ms_budget": INCREMENTAL_MS_BUDGET,
            "incremental_walk_ms": round(med(inc_walk), 2), "incremental_git_ms": round(med(inc_git), 2),
            "incremental_speedup_vs_git": round(med(inc_git) / med(inc_ours), 1),
            "incremental_speedup_budget": INCREMENTAL_SPEEDUP_BUDGET,
            "first_packs": first_packs, "packs_after_incremental": watched_packs,
            "detectors": sorted({e.detector for e in events}), "final_detector": final.detector, "final_missed": len(final.missed),
            "repeats": repeats, "edits": edits,
            "first_cpu_ms": round(med(first_ours, 1), 1), "first_git_cpu_ms": round(med(first_git, 1), 1),
            "incremental_cpu_ms": round(med(inc_ours, 1), 2), "incremental_git_cpu_ms": round(med(inc_git, 1), 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=24000)
    ap.add_argument("--mb", type=int, default=170)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print_report(run(args.files, args.mb, args.repeats, args.edits), args.json)


if __name__ == "__main__":
    main()
