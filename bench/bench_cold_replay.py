"""Cold replay through the CLI (issue 14, item 4): `agtrace replay` into a new directory.

Records a run over a 2,000-file / 25 MB repository (``--files``, ``--mb``) with the Recorder
API, then measures in the same run, medians over ``--repeats``:

* ``agtrace replay <id> --part N --out <new dir>`` (a subprocess, CLI start included) with the
  run's snapshots already in the store (its shadow repository), budget ≤ 0.5 s;
* the physical floor: a plain Python write of the same bytes (``makedirs`` + ``open``/``write``
  per file, data already in memory), budget ≤ 1.5× of it;
* today's way: ``git clone`` of the run's bundle + ``git checkout`` of the part's commit, budget
  ≥ 3× slower than the replay;
* ``GitStore.checkout`` alone (in-process), with 1 and with the default number of threads.

    python bench/bench_cold_replay.py [--files 2000] [--mb 25] [--repeats 3] [--json]

``bench/bench_scale.py --only cold_replay`` prints these against their budgets in the one scale table.
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

from common import build_tree, clock, git_env, print_report, python_env  # noqa: E402

from agtrace.capture.recorder import Recorder  # noqa: E402
from agtrace.eventlog import SnapshotTaken, Store  # noqa: E402
from agtrace.replay.workspace import snapshots, tree_of_part  # noqa: E402

COLD_MS_BUDGET, FLOOR_RATIO_BUDGET, CLONE_SPEEDUP_BUDGET = 500.0, 1.5, 3.0


def run(files: int, mb: int, repeats: int, parts: int = 5) -> dict:
    rng = random.Random(3)
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-cold-")
    try:
        work = os.path.join(tmp, "work")
        paths = build_tree(work, files, mb * 1_000_000, rng)
        store = Store(os.path.join(tmp, "store"))
        with Recorder(store, workdir=work, agent="bench", heartbeat_s=60) as rec:
            for n in range(1, parts + 1):
                call = rec.tool_call("shell", command=f"edit {n}")
                for rel in rng.sample(paths, 3):
                    with open(os.path.join(work, rel), "a") as f:
                        f.write(f"# part {n}\n")
                rec.tool_result(call, output="", exit_code=0)
        run_id, part = rec.run_id, parts
        git = snapshots(store, run_id)
        tree = tree_of_part(store, run_id, part)
        commit = next(r.event.commit_id for r in store.read(run_id)
                      if isinstance(r.event, SnapshotTaken) and r.part == part)
        blobs = _tree_bytes(git, tree)
        bundles = sorted((store.run_dir(run_id) / "bundles").glob("*.bundle"))
        cli = [sys.executable, "-m", "agtrace.cli.main"]
        # as users run it: with bytecode caches (the warm-up below writes them)
        env = python_env()
        env["AGTRACE_HOME"] = store.root.as_posix()
        subprocess.run([*cli, "--store", str(store.root), "ls"], env=env, check=True, capture_output=True)
        rows: dict[str, list[tuple[float, float]]] = {
            k: [] for k in ("cli", "floor", "clone", "checkout_1", "checkout_n")}
        for i in range(repeats):  # alternating: load on a shared machine hits each alike
            out = os.path.join(tmp, f"cli-{i}")
            rows["cli"].append(clock(lambda out=out: subprocess.run(
                [*cli, "--store", str(store.root), "replay", run_id, "--part", str(part), "--out", out],
                env=env, check=True, capture_output=True)))
            rows["floor"].append(clock(lambda i=i: _plain_write(os.path.join(tmp, f"floor-{i}"), blobs)))
            rows["clone"].append(clock(lambda i=i: _clone(os.path.join(tmp, f"clone-{i}"), bundles, commit)))
            rows["checkout_1"].append(clock(lambda i=i: git.checkout(tree, os.path.join(tmp, f"co1-{i}"), jobs=1)))
            rows["checkout_n"].append(clock(lambda i=i: git.checkout(tree, os.path.join(tmp, f"con-{i}"))))
            for d in ("cli", "floor", "clone", "co1", "con"):
                shutil.rmtree(os.path.join(tmp, f"{d}-{i}"), ignore_errors=True)
        med = {k: round(statistics.median(w for w, _ in v), 1) for k, v in rows.items()}
        cpu = {k: round(statistics.median(c for _, c in v), 1) for k, v in rows.items()}
        return {
            "files": files, "bytes": sum(len(b) for b in blobs.values()), "repeats": repeats,
            "cli_replay_ms": med["cli"], "cli_replay_ms_budget": COLD_MS_BUDGET,
            "plain_write_ms": med["floor"], "cli_vs_plain_write": round(med["cli"] / med["floor"], 2),
            "cli_vs_plain_write_budget": FLOOR_RATIO_BUDGET,
            "clone_checkout_ms": med["clone"], "clone_vs_cli": round(med["clone"] / med["cli"], 2),
            "clone_vs_cli_budget": CLONE_SPEEDUP_BUDGET,
            "checkout_1_thread_ms": med["checkout_1"], "checkout_default_ms": med["checkout_n"],
            "checkout_vs_plain_write": round(med["checkout_n"] / med["floor"], 2),
            "cli_replay_cpu_ms": cpu["cli"], "plain_write_cpu_ms": cpu["floor"],
            "clone_checkout_cpu_ms": cpu["clone"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_bytes(git, tree: str) -> dict[str, bytes]:
    """Every file of ``tree`` (path → bytes), read through the store's public API."""
    return {path: git.blob(oid) for path, oid in git.files(tree).items()}


def _plain_write(root: str, blobs: dict[str, bytes]) -> None:
    for rel, data in blobs.items():
        full = os.path.join(root, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)


def _clone(clone: str, bundles, commit: str) -> None:
    env = git_env()
    subprocess.run(["git", "init", "-q", clone], env=env, check=True)
    for bundle in bundles:  # the bundles carry refs/agtrace/snapshots, not a branch
        subprocess.run(["git", "-C", clone, "fetch", "-q", str(bundle), "+refs/*:refs/*"], env=env, check=True)
    subprocess.run(["git", "-C", clone, "checkout", "-q", commit], env=env, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--mb", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print_report(run(args.files, args.mb, args.repeats), args.json)


if __name__ == "__main__":
    main()
