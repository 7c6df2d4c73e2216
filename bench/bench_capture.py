"""Overhead of capture: the scripted demo agent run bare vs under `agtrace run` (same run).

Prints medians over repeats of: wall time bare, wall time captured, the overhead ratio, and the
per-part snapshot latency recorded in the captured runs (snapshot_taken.duration_ms). For
snapshot latency on a 2,000-file / 25 MB repository see bench_snapshot.py.

    python bench/bench_capture.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agtrace.capture.demo import demo_command
from agtrace.capture.demo_agent import setup_demo_repo
from agtrace.capture.runner import run_agent
from agtrace.eventlog import SnapshotTaken, Store


def bare(tmp: Path) -> float:
    wd = tmp / "bare"
    wd.mkdir()
    setup_demo_repo(wd)
    t0 = time.perf_counter()
    subprocess.run(demo_command("--fast"), cwd=wd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def captured(tmp: Path) -> tuple[float, list[float], int]:
    wd = tmp / "captured"
    wd.mkdir()
    setup_demo_repo(wd)
    store = Store(tmp / "store")
    t0 = time.perf_counter()
    summary = run_agent(store, demo_command("--fast"), agent="codex", workdir=wd)
    elapsed = time.perf_counter() - t0
    snaps = [r.event.duration_ms for r in store.read(summary.run_id)
             if isinstance(r.event, SnapshotTaken) and r.part and not r.event.final]
    return elapsed, snaps, summary.parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bare_s, cap_s, snap_ms, parts = [], [], [], 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            bare_s.append(bare(Path(d)))
        with tempfile.TemporaryDirectory() as d:
            elapsed, snaps, parts = captured(Path(d))
            cap_s.append(elapsed)
            snap_ms.extend(snaps)
    result = {
        "parts": parts,
        "bare_s_median": statistics.median(bare_s),
        "captured_s_median": statistics.median(cap_s),
        "overhead_ratio": statistics.median(cap_s) / statistics.median(bare_s),
        "overhead_ms_per_part": (statistics.median(cap_s) - statistics.median(bare_s)) * 1000 / parts,
        "snapshot_ms_median": statistics.median(snap_ms),
        "snapshot_ms_p90": statistics.quantiles(snap_ms, n=10)[-1],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"demo agent, {parts} parts, {args.repeat} repeats (medians)")
    print(f"  bare                 {result['bare_s_median']:.3f} s")
    print(f"  under agtrace run    {result['captured_s_median']:.3f} s   "
          f"ratio {result['overhead_ratio']:.2f}x, {result['overhead_ms_per_part']:.1f} ms per part")
    print(f"  snapshot per part    median {result['snapshot_ms_median']:.1f} ms, p90 {result['snapshot_ms_p90']:.1f} ms "
          f"(small repo; budget ≤ 20 ms on 2,000 files: see bench_snapshot.py)")


if __name__ == "__main__":
    sys.exit(main())
