"""Capture overhead per part through the CLI (issue 14, item 6), against the bare agent.

A raw agent script thinks ``--think-ms`` (so the capture keeps up with it: each part's snapshot
sees its edit and freezes a live agent), edits one file of a 2,000-file repository and prints
``PART <n>``, N times.
Measured in the same run, medians over ``--repeats``, for N = ``--small`` and N = ``--parts``:

* bare: the script run directly (stdout to a pipe drained by this process);
* captured: ``agtrace run --agent raw --marker '^PART' -q --json -- <script>`` (CLI start,
  base and final snapshot, bundle included);
* the snapshot time recorded per part (``snapshot_taken.duration_ms``).

The overhead per part is the slope between the two sizes, (captured - bare) per extra part,
minus the median snapshot time: what a part costs beyond its snapshot once the fixed costs
(CLI start, first and last snapshot) are paid. Budget ≤ 10 ms.
``bench/bench_scale.py --only capture`` prints it against its budget in the one scale table.

    python bench/bench_capture_cli.py [--files 2000] [--parts 200] [--small 20] [--repeats 3] [--think-ms 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import clock, print_report, python_env  # noqa: E402

from agtrace.eventlog import SnapshotTaken, Store  # noqa: E402

BUDGET_MS = 10.0
AGENT = """
import sys, time
n, think = int(sys.argv[1]), float(sys.argv[2])
for i in range(n):
    time.sleep(think)
    with open(f"pkg{i % 20}/file{i % 20}.py", "a") as f:
        f.write(f"# part {i}\\n")
    print(f"PART {i}", flush=True)
"""


def build(root: str, files: int) -> None:
    for i in range(files):
        rel = f"pkg{i % 20}/file{i}.py"
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(root, rel), "w") as f:
            f.write(f"x = {i}\n" * 100)


def bare(work: str, script: str, n: int, think: float) -> tuple[float, float]:
    """Wall and CPU seconds of the agent script run directly."""
    wall, cpu = clock(lambda: subprocess.run([sys.executable, script, str(n), str(think)], cwd=work, check=True,
                                             capture_output=True))
    return wall / 1000, cpu / 1000


def captured(work: str, script: str, n: int, store: str, think: float) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds of the script under ``agtrace run``, and its parts' snapshot times (ms)."""
    cmd = [sys.executable, "-m", "agtrace.cli.main", "--store", store, "run", "--agent", "raw",
           "--marker", "^PART", "--workdir", work, "-q", "--json", "--", sys.executable, script, str(n), str(think)]
    done = []
    wall, cpu = clock(lambda: done.append(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                                         env=python_env())))
    run_id = json.loads(done[0].stdout)["run_id"]
    snaps = [r.event.duration_ms for r in Store(store).read(run_id)
             if isinstance(r.event, SnapshotTaken) and r.part and not r.event.final]
    return wall / 1000, cpu / 1000, snaps


def run(files: int, parts: int, small: int, repeats: int, think_ms: float = 20.0) -> dict:
    think = think_ms / 1000
    tmp = tempfile.mkdtemp(prefix="agtrace-bench-capture-")
    try:
        script = os.path.join(tmp, "agent.py")
        with open(script, "w") as f:
            f.write(AGENT)
        warm = os.path.join(tmp, "warm")
        build(warm, 10)
        captured(warm, script, 1, os.path.join(tmp, "store"), think)  # writes the bytecode caches
        times: dict[tuple[str, int], list[tuple[float, float]]] = {}
        snap_ms: list[float] = []
        for i in range(repeats):
            for n in (small, parts):
                for how in ("bare", "captured"):
                    work = os.path.join(tmp, f"work-{how}-{n}-{i}")
                    build(work, files)
                    if how == "bare":
                        got = bare(work, script, n, think)
                    else:
                        *got, snaps = captured(work, script, n, os.path.join(tmp, "store"), think)
                        snap_ms.extend(snaps)
                    times.setdefault((how, n), []).append(tuple(got))
                    shutil.rmtree(work)
        med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
        extra = parts - small
        slope_ms = ((med[("captured", parts)] - med[("bare", parts)])
                    - (med[("captured", small)] - med[("bare", small)])) * 1000 / extra
        cpu_slope_ms = ((cpu[("captured", parts)] - cpu[("bare", parts)])
                        - (cpu[("captured", small)] - cpu[("bare", small)])) * 1000 / extra
        snapshot_ms = statistics.median(snap_ms)
        return {
            "files": files, "parts": parts, "small": small, "repeats": repeats, "think_ms": think_ms,
            "bare_s": round(med[("bare", parts)], 3), "captured_s": round(med[("captured", parts)], 3),
            "bare_small_s": round(med[("bare", small)], 3), "captured_small_s": round(med[("captured", small)], 3),
            "per_part_ms_all_in": round((med[("captured", parts)] - med[("bare", parts)]) * 1000 / parts, 2),
            "per_part_ms_marginal": round(slope_ms, 2),
            "snapshot_ms_median": round(snapshot_ms, 2),
            "overhead_beyond_snapshot_ms": round(slope_ms - snapshot_ms, 2),
            "budget_ms": BUDGET_MS,
            "bare_cpu_s": round(cpu[("bare", parts)], 3), "captured_cpu_s": round(cpu[("captured", parts)], 3),
            "cpu_per_part_ms_marginal": round(cpu_slope_ms, 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--small", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--think-ms", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print_report(run(args.files, args.parts, args.small, args.repeats, args.think_ms), args.json)


if __name__ == "__main__":
    main()
