"""Benchmark replay (warm switch, cold from bundle) and re-scoring throughput.

Records a run with the Recorder API over a 2,000-file / ~25 MB repository: N parts, each
editing a few files, except that every part whose number is not a multiple of ``--repeat``
leaves the tree alone (so trees repeat, as when an agent reads and thinks). Then measures, in
the same run:

* replay warm: ``switch_to`` from a part to the next part with another tree (adjacent) and
  between random parts, against the budget (≤ 50 ms) and against a full checkout from the
  warm cache (what ``materialize`` does);
* replay cold: ``GitStore.from_bundles`` into a fresh cache + checkout of a part (≤ 0.5 s);
* today's way: a clone of the bundle (``git init`` + ``git fetch`` of its refs) + ``git
  checkout`` of the part's commit;
* re-scoring a scorer (``test -f …``) over every part: parts/s with tree dedupe, without it
  (every part run, scratch dirs switched), and the naive way (fresh checkout per part).

Usage: python bench/bench_replay.py [--files 2000] [--mb 25] [--parts 200] [--repeat 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_tree, git_env  # noqa: E402

from agtrace.capture import LocalSandbox  # noqa: E402
from agtrace.capture.recorder import Recorder  # noqa: E402
from agtrace.eventlog import GitStore, SnapshotTaken, Store  # noqa: E402
from agtrace.replay.checkout_cache import switch_to  # noqa: E402
from agtrace.replay.rescoring import rescore  # noqa: E402
from agtrace.replay.results import ResultSpec  # noqa: E402
from agtrace.replay.workspace import snapshots, tree_of_part  # noqa: E402

WARM_BUDGET_MS, COLD_BUDGET_MS = 50.0, 500.0


def record_run(store: Store, work: str, paths: list[str], parts: int, repeat: int, rng) -> str:
    with Recorder(store, workdir=work, agent="bench", heartbeat_s=60) as rec:
        for n in range(1, parts + 1):
            call = rec.tool_call("shell", command=f"edit {n}")
            if n % repeat == 0:
                for rel in rng.sample(paths, 3):
                    with open(os.path.join(work, rel), "a") as f:
                        f.write(f"# part {n}\n")
            rec.tool_result(call, output="", exit_code=0)
    return rec.run_id


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def run(files: int, mb: int, parts: int, repeat: int, repeats: int, jobs: int) -> dict:
    rng = random.Random(11)
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-replay-")
    try:
        work = os.path.join(tmp, "work")
        paths = build_tree(work, files, mb * 1_000_000, rng)
        store = Store(os.path.join(tmp, "store"))
        t = time.perf_counter()
        run_id = record_run(store, work, paths, parts, repeat, rng)
        record_s = time.perf_counter() - t
        git = snapshots(store, run_id)
        trees = {n: tree_of_part(store, run_id, n) for n in range(1, parts + 1)}
        commits = {
            r.part: r.event.commit_id
            for r in store.read(run_id)
            if isinstance(r.event, SnapshotTaken) and r.part and not r.event.final
        }

        # warm: full checkout (today's materialize) vs switch
        full = []
        for i in range(repeats):
            out = os.path.join(tmp, f"full-{i}")
            full.append(timed(lambda out=out: git.checkout(trees[parts], out)))
            shutil.rmtree(out)
        warm_dir = os.path.join(tmp, "warm")
        git.checkout(trees[1], warm_dir)
        adjacent, current = [], trees[1]
        for n in range(2, parts + 1):
            if trees[n] == current:
                continue  # the part changed nothing: a switch is a no-op, not worth timing
            adjacent.append(
                timed(lambda n=n, cur=current: switch_to(store, run_id, n, warm_dir, cur, git=git))
            )
            current = trees[n]
        random_pairs = []
        for _ in range(max(20, repeats * 4)):
            n = rng.randint(1, parts)
            random_pairs.append(
                timed(lambda n=n, cur=current: switch_to(store, run_id, n, warm_dir, cur, git=git))
            )
            current = trees[n]

        # cold: from the bundle into a fresh cache, then check out the part
        bundles = sorted((store.run_dir(run_id) / "bundles").glob("*.bundle"))
        cold, today = [], []
        for i in range(repeats):
            part = rng.randint(1, parts)

            def cold_replay(i=i, part=part):
                restored = GitStore.from_bundles(
                    bundles, os.path.join(tmp, f"cache-{i}", "repo.git")
                )
                restored.checkout(trees[part], os.path.join(tmp, f"cold-{i}"))

            cold.append(timed(cold_replay))

            def todays_way(i=i, part=part):
                clone, env = os.path.join(tmp, f"clone-{i}"), git_env()
                subprocess.run(["git", "init", "-q", clone], env=env, check=True)
                for bundle in bundles:  # the bundles carry refs/agtrace/snapshots, not a branch
                    subprocess.run(
                        ["git", "-C", clone, "fetch", "-q", str(bundle), "+refs/*:refs/*"],
                        env=env,
                        check=True,
                    )
                subprocess.run(
                    ["git", "-C", clone, "checkout", "-q", commits[part]], env=env, check=True
                )

            today.append(timed(todays_way))
            for d in (f"cache-{i}", f"cold-{i}", f"clone-{i}"):
                shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)

        # re-scoring throughput
        sandbox = LocalSandbox()
        spec = ResultSpec("exit")
        throughput = {}
        for label, reuse in (("dedupe", True), ("no_dedupe", False)):
            report = rescore(
                store,
                [run_id],
                name=label,
                cmd=f"test -f {paths[0]}  # {label}",
                sandbox=sandbox,
                parts="all",
                jobs=jobs,
                result=spec,
                reuse=reuse,
            )
            throughput[label] = (report.selected / report.duration_s, report.ran)
        sample = list(range(1, parts + 1, max(1, parts // 10)))
        naive = []
        for n in sample:  # today's way: a fresh checkout per part, then the scorer
            out = os.path.join(tmp, f"naive-{n}")

            def naive_score(n=n, out=out):
                git.checkout(trees[n], out)
                sandbox.run(out, f"test -f {paths[0]}", 60)

            naive.append(timed(naive_score))
            shutil.rmtree(out)
        naive_rate = 1000 / statistics.median(naive) * jobs  # as if run on `jobs` workers

        warm_adj, warm_rand, cold_med = median(adjacent), median(random_pairs), median(cold)
        return {
            "files": files,
            "mb": mb,
            "parts": parts,
            "distinct_trees": len(set(trees.values())),
            "record_s": round(record_s, 2),
            "replay_warm_switch_adjacent_median_ms": warm_adj,
            "replay_warm_switch_random_median_ms": warm_rand,
            "replay_warm_full_checkout_median_ms": median(full),
            "replay_warm_budget_ms": WARM_BUDGET_MS,
            "replay_warm_pass": warm_rand <= WARM_BUDGET_MS and warm_adj <= WARM_BUDGET_MS,
            "replay_cold_median_ms": cold_med,
            "replay_cold_budget_ms": COLD_BUDGET_MS,
            "replay_cold_pass": cold_med <= COLD_BUDGET_MS,
            "todays_way_clone_checkout_median_ms": median(today),
            "warm_speedup_vs_todays_way": round(median(today) / warm_rand, 1),
            "cold_speedup_vs_todays_way": round(median(today) / cold_med, 2),
            "rescore_jobs": jobs,
            "rescore_parts_per_s_dedupe": round(throughput["dedupe"][0], 1),
            "rescore_scorer_runs_dedupe": throughput["dedupe"][1],
            "rescore_parts_per_s_no_dedupe": round(throughput["no_dedupe"][0], 1),
            "rescore_parts_per_s_naive_checkout": round(naive_rate, 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--mb", type=int, default=25)
    parser.add_argument("--parts", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=4, help="one tree change every N parts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.files, args.mb, args.parts, args.repeat, args.repeats, args.jobs)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    width = max(map(len, report))
    for key, value in report.items():
        mark = ""
        if key.endswith("_pass"):
            mark, value = ("PASS" if value else "FAIL"), ""
        print(f"{key:<{width}}  {value}{mark}")


if __name__ == "__main__":
    main()
