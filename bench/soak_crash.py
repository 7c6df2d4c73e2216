"""Crash soak: SIGKILL real writer processes many times and check the log after every kill.

Each policy (strict, normal, off) gets one run; successive writer processes
(``tests/crash_child.py``) reopen it, append realistic events and are killed at random
moments. After every kill the run is reopened (torn tail cut), and every seq the writer reported
durable must be present, seqs gapless, every event intact, ``verify`` clean, the catalog caught
up, and the next writer must start at the next seq. The first failure stops the soak.

Usage: python bench/soak_crash.py [--kills 1000] [--policies strict,normal,off] [--seed 0]
       [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crash_child import CrashRun, CrashStats  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=1000, help="total kills, split over policies")
    ap.add_argument("--policies", default="strict,normal,off")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="keep the store here (default: a temporary directory)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    policies = args.policies.split(",")

    with tempfile.TemporaryDirectory(prefix="agtrace-soak-") as tmp:
        root = Path(args.dir or tmp)
        stats: dict[str, CrashStats] = {}
        t0 = time.perf_counter()
        for i, policy in enumerate(policies):
            kills = args.kills // len(policies) + (i < args.kills % len(policies))
            run = CrashRun(root / policy, policy, seed=args.seed * 31 + i)
            t1 = time.perf_counter()
            try:
                for k in range(kills):
                    run.kill_once()
                    if not args.json and (k + 1) % 50 == 0:
                        s = run.stats
                        print(
                            f"  {policy:6} {k + 1:5}/{kills} kills, {s.events} events, "
                            f"{s.torn_tails} torn tails, {time.perf_counter() - t1:.0f}s",
                            flush=True,
                        )
            finally:
                run.close()
            run.stats.seconds = time.perf_counter() - t1
            stats[policy] = run.stats
        total_s = time.perf_counter() - t0

    if args.json:
        print(json.dumps({"seconds": total_s, "policies": {p: vars(s) for p, s in stats.items()}}))
        return 0
    print(
        f"\n{'policy':8}{'kills':>7}{'early':>7}{'torn':>6}{'events':>9}{'acked':>9}"
        f"{'segments':>10}{'seconds':>9}"
    )
    for p, s in stats.items():
        print(
            f"{p:8}{s.kills:7}{s.killed_before_start:7}{s.torn_tails:6}{s.events:9}"
            f"{s.acked:9}{s.segments:10}{s.seconds:9.1f}"
        )
    kills = sum(s.kills for s in stats.values())
    print(
        f"\n{kills} kills in {total_s:.1f}s: every acknowledged event present and intact, "
        "logs verified, appends continued at the next seq after every kill"
    )
    print("('early' = killed before the writer was open; 'torn' = torn tails cut on reopen)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
