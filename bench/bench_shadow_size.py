"""The shadow repository's bytes on disk against its run's bundles, during a long run and after it.

DESIGN.md's budget: the shadow repository (``runs/<id>/repo.git``: packs, loose objects, index
and state files, every file under it) ≤ 2× the run's bundles (``runs/<id>/bundles/*.bundle``,
git's own packs, with deltas) during and after a run. Two runs of real snapshots (a
`Snapshotter` with its inotify watcher, one snapshot per part):

* ``flat``: a 20-file workdir (the long-run fixture's), one line of one file edited per part;
* ``nested``: ``--files`` files in nested directories (``common.build_tree``, 20 × 9 × 4 of
  them), 1–3 lines of 1–3 files edited per part (every part rewrites the trees on their paths,
  the root's included);
* ``wide``: the same files in 4 directories (a tree of ~30 KB each: every part rewrites 1–3 of
  them, which is what stores whole objects costs most).

The run is sealed (its next bundle written, as a run's capture does) at ``--samples`` points and
at the end, after the final snapshot; each row is ``shadow bytes / bundle bytes`` there.

    python bench/bench_shadow_size.py [--parts 4000] [--files 3000] [--samples 4] [--json]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import build_tree, print_report  # noqa: E402

from agtrace.capture import Snapshotter  # noqa: E402

RATIO_BUDGET = 2.0


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def edit_line(full: str, rng: random.Random, step: int) -> None:
    with open(full) as f:
        lines = f.read().splitlines()
    lines[rng.randrange(len(lines))] = f"    return {step}  # edited at part {step}"
    with open(full, "w") as f:
        f.write("\n".join(lines) + "\n")


def one_run(kind: str, parts: int, files: int, samples: int, tmp: str) -> dict:
    rng = random.Random(11)
    work = os.path.join(tmp, f"{kind}-work")
    if kind == "flat":
        os.makedirs(work)
        paths = []
        for i in range(20):
            rel = f"mod{i}.py"
            with open(os.path.join(work, rel), "w") as f:
                f.write("".join(f"def f{j}():\n    return {j}\n" for j in range(60)))
            paths.append(rel)
    else:
        paths = build_tree(work, files, files * 1500, rng, (20, 9, 4) if kind == "nested" else (4,))
    run_dir = Path(tmp, f"{kind}-run")
    snap = Snapshotter(run_dir, work)
    snap.take("base")
    at = {round(parts * k / samples) for k in range(1, samples)}
    rows, ms = [], []
    for n in range(1, parts + 1):
        for rel in (rng.sample(paths, 1) if kind == "flat" else rng.sample(paths, rng.randint(1, 3))):
            edit_line(os.path.join(work, rel), rng, n)
        started = time.perf_counter()
        snap.take(f"part {n}", final=n == parts)
        ms.append((time.perf_counter() - started) * 1000)
        if n in at or n == parts:
            snap.seal()
            shadow, bundles = tree_bytes(run_dir / "repo.git"), tree_bytes(run_dir / "bundles")
            packs = len(list((run_dir / "repo.git" / "objects" / "pack").glob("*.pack")))
            rows.append((n, shadow, bundles, packs))
    return {"rows": rows, "snapshot_ms_median": round(statistics.median(ms), 2),
            "snapshot_ms_p99": round(sorted(ms)[int(len(ms) * 0.99)], 2)}


def run(parts: int, files: int, samples: int, kinds=("flat", "nested", "wide")) -> dict:
    report: dict = {}
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-shadow-")
    try:
        for kind in kinds:
            out = one_run(kind, parts, files, samples, tmp)
            for n, shadow, bundles, packs in out["rows"]:
                label = "end" if n == parts else f"part{n}"
                report[f"{kind}_{label}_shadow_bytes"] = shadow
                report[f"{kind}_{label}_bundle_bytes"] = bundles
                report[f"{kind}_{label}_packs"] = packs
                report[f"{kind}_{label}_ratio"] = round(shadow / bundles, 2)
            report[f"{kind}_worst_ratio"] = max(round(s / b, 2) for _, s, b, _ in out["rows"])
            report[f"{kind}_snapshot_ms_median"] = out["snapshot_ms_median"]
            report[f"{kind}_snapshot_ms_p99"] = out["snapshot_ms_p99"]
        report["ratio_budget"] = RATIO_BUDGET
        report["parts"], report["files"] = parts, files
        return report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=int, default=4000)
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--only", choices=("flat", "nested", "wide"), action="append")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print_report(run(args.parts, args.files, args.samples, args.only or ("flat", "nested", "wide")), args.json)


if __name__ == "__main__":
    main()
