"""Benchmark GitStore snapshots, checkout and unbundling against git CLI baselines.

Builds a 2,000-file / ~25 MB workdir, takes a first (full) snapshot, then N incremental snapshots
each after modifying a few files, and times in the same run:

* baseline: ``git add -A && git write-tree`` with a separate GIT_DIR and GIT_INDEX_FILE;
* checkout of the last tree into a fresh directory (warm store), baseline
  ``git read-tree`` + ``git checkout-index -a`` into a fresh directory;
* ``GitStore.from_bundles`` into a fresh cache directory (cold).

Usage: python bench/bench_snapshot.py [--files 2000] [--mb 25] [--snapshots 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time

from agtrace.eventlog import GitStore


def git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", **extra)
    return env


def build_workdir(root: str, files: int, total_bytes: int, rng: random.Random) -> list[str]:
    paths = []
    size = total_bytes // files
    for i in range(files):
        rel = f"pkg{i % 20}/mod{i % 9}/file{i}.py"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        lines = [f"def f{i}_{j}(x):  # {rng.random():.12f}\n" for j in range(size // 30)]
        with open(os.path.join(root, rel), "w") as f:
            f.write("".join(lines)[:size])
        paths.append(rel)
    subprocess.run(["git", "init", "-q"], cwd=root, env=git_env(), check=True)
    return paths


def modify_some(root: str, paths: list[str], rng: random.Random, step: int) -> None:
    for rel in rng.sample(paths, 3):
        with open(os.path.join(root, rel), "a") as f:
            f.write(f"# step {step}\n")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(files: int, mb: int, snapshots: int, repeats: int) -> dict:
    rng = random.Random(7)
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-")
    try:
        work = os.path.join(tmp, "work")
        os.makedirs(work)
        paths = build_workdir(work, files, mb * 1_000_000, rng)
        store = GitStore.init(os.path.join(tmp, "repo.git"))
        first = store.snapshot(work, max_file_bytes=10_000_000, message="first")

        base_dir = os.path.join(tmp, "baseline.git")
        subprocess.run(["git", "init", "-q", "--bare", base_dir], env=git_env(), check=True)
        base_env = git_env(
            GIT_DIR=base_dir, GIT_WORK_TREE=work, GIT_INDEX_FILE=os.path.join(tmp, "base-index")
        )

        def baseline() -> float:
            t = time.perf_counter()
            subprocess.run(["git", "add", "-A"], cwd=work, env=base_env, check=True)
            subprocess.run(
                ["git", "write-tree"], cwd=work, env=base_env, check=True, capture_output=True
            )
            return (time.perf_counter() - t) * 1000

        baseline()  # fill the baseline's index, as the first snapshot filled ours
        ours, theirs = [], []
        result = first
        for step in range(snapshots):
            modify_some(work, paths, rng, step)
            result = store.snapshot(work, max_file_bytes=10_000_000, message=f"part {step}")
            ours.append(result.duration_ms)
            theirs.append(baseline())

        checkout_ms, checkout_base_ms = [], []
        for i in range(repeats):
            out = os.path.join(tmp, f"co-{i}")
            t = time.perf_counter()
            store.checkout(result.tree_id, out)
            checkout_ms.append((time.perf_counter() - t) * 1000)
            shutil.rmtree(out)
            out = os.path.join(tmp, f"cob-{i}")
            env = git_env(
                GIT_DIR=store.path,
                GIT_WORK_TREE=out,
                GIT_INDEX_FILE=os.path.join(tmp, f"co-index-{i}"),
            )
            t = time.perf_counter()
            os.makedirs(out)
            subprocess.run(["git", "read-tree", result.tree_id], env=env, check=True)
            subprocess.run(["git", "checkout-index", "-a"], env=env, check=True)
            checkout_base_ms.append((time.perf_counter() - t) * 1000)
            shutil.rmtree(out)

        bundle = os.path.join(tmp, "repo.bundle")
        t = time.perf_counter()
        store.write_bundle(bundle)
        bundle_ms = (time.perf_counter() - t) * 1000
        unbundle_ms = []
        for i in range(repeats):
            t = time.perf_counter()
            restored = GitStore.from_bundles([bundle], os.path.join(tmp, f"cache-{i}"))
            unbundle_ms.append((time.perf_counter() - t) * 1000)
            assert restored.head == store.head
        du = sum(os.path.getsize(os.path.join(work, p)) for p in paths)
        snap_med, base_med = statistics.median(ours), statistics.median(theirs)
        return {
            "files": files,
            "workdir_bytes": du,
            "first_snapshot_ms": round(first.duration_ms, 2),
            "snapshots": snapshots,
            "snapshot_median_ms": round(snap_med, 2),
            "snapshot_p90_ms": round(pct(ours, 0.9), 2),
            "baseline_median_ms": round(base_med, 2),
            "baseline_p90_ms": round(pct(theirs, 0.9), 2),
            "snapshot_vs_baseline": round(snap_med / base_med, 3),
            "checkout_warm_median_ms": round(statistics.median(checkout_ms), 2),
            "checkout_baseline_median_ms": round(statistics.median(checkout_base_ms), 2),
            "write_bundle_ms": round(bundle_ms, 2),
            "bundle_bytes": os.path.getsize(bundle),
            "from_bundles_cold_median_ms": round(statistics.median(unbundle_ms), 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=25)
    parser.add_argument("--snapshots", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.files, args.mb, args.snapshots, args.repeats)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
