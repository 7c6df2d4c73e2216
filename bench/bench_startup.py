"""CLI start-up: `agtrace --version`, `--help`, `ls` and `show ID` against `sqlite-utils --version`.

sqlite-utils is a click CLI installed beside agtrace (by the `test` extra), so
its `--version` is the floor a Python CLI of this kind starts at on this machine. The budget
(DESIGN.md) is 1.2x that floor for each of the four commands, on a store with a few runs.

Every command runs as a real process through its console script; the commands alternate
(baseline, then each agtrace command, round after round) so load on a shared machine hits them
alike. A warm-up round first writes the bytecode caches (``PYTHONDONTWRITEBYTECODE`` is dropped
from the children's environment): an installed package has them, and without them every
agtrace module would be compiled at each start while sqlite-utils' were compiled at install. Printed per command: the median wall time and CPU time (user + sys of the child) over
the rounds, the ratio of each to the baseline's median, and the budget beside it. A command
passes when its wall-time ratio is within budget.

    python bench/bench_startup.py [--rounds 7] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import console_script, python_env, timed  # noqa: E402

BUDGET = 1.2


def make_store(root: Path, agtrace: str, runs: int, env: dict[str, str]) -> str:
    """A store with ``runs`` small runs (events appended through the CLI); the newest run's id."""
    run_id = ""
    for i in range(runs):
        made = subprocess.run([agtrace, "new", "--agent", "bench", "--model", f"m{i}", "--task", "startup"],
                              env=env, capture_output=True, check=True)
        run_id = made.stdout.decode().strip()
        lines = []
        for part in range(1, 21):
            lines.append(json.dumps({"kind": "message_added", "role": "assistant", "text": f"step {part}",
                                     "part": part}))
            lines.append(json.dumps({"kind": "usage_reported", "usage": {"input": 100, "output": 20},
                                     "part": part}))
            lines.append(json.dumps({"kind": "part_ended", "part_kind": "message", "title": f"step {part}",
                                     "part": part}))
        subprocess.run([agtrace, "append", run_id], env=env, input="\n".join(lines).encode(),
                       capture_output=True, check=True)
        subprocess.run([agtrace, "close", run_id, "--status", "completed"], env=env, capture_output=True,
                       check=True)
    return run_id


def startup_commands(agtrace: str, baseline: str, run_id: str) -> dict[str, list[str]]:
    """The baseline (first) and the four agtrace commands whose start-up is budgeted."""
    return {
        "sqlite-utils --version": [baseline, "--version"],
        "agtrace --version": [agtrace, "--version"],
        "agtrace --help": [agtrace, "--help"],
        "agtrace ls": [agtrace, "ls"],
        "agtrace show ID": [agtrace, "show", run_id],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="repeats of every command (>= 5)")
    ap.add_argument("--runs", type=int, default=5, help="runs in the store")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error("--rounds must be at least 5")
    agtrace, baseline = console_script("agtrace"), console_script("sqlite-utils")
    with tempfile.TemporaryDirectory(prefix="agtrace-bench-startup-") as tmp:
        env = python_env()
        env["AGTRACE_HOME"] = str(Path(tmp) / "store")
        run_id = make_store(Path(tmp) / "store", agtrace, args.runs, env)
        commands = startup_commands(agtrace, baseline, run_id)
        for argv in commands.values():  # warm the page cache and write the .pyc files once
            timed(argv, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                samples[name].append(timed(argv, env))
    wall = {n: statistics.median(w for w, _ in s) for n, s in samples.items()}
    cpu = {n: statistics.median(c for _, c in s) for n, s in samples.items()}
    base = "sqlite-utils --version"
    rows = [
        {"command": n, "wall_s": round(wall[n], 4), "cpu_s": round(cpu[n], 4),
         "wall_ratio": round(wall[n] / wall[base], 3), "cpu_ratio": round(cpu[n] / cpu[base], 3),
         "budget": None if n == base else BUDGET, "ok": None if n == base else wall[n] / wall[base] <= BUDGET}
        for n in commands
    ]
    if args.json:
        print(json.dumps({"rounds": args.rounds, "runs": args.runs, "results": rows}, indent=2))
        return
    print(f"CLI start-up, medians of {args.rounds} alternating rounds, store of {args.runs} runs")
    print(f"{'command':<24} {'wall s':>8} {'cpu s':>8} {'wall x':>8} {'cpu x':>8}  budget")
    for r in rows:
        verdict = "(baseline)" if r["budget"] is None else f"<= {BUDGET}x  {'ok' if r['ok'] else 'OVER'}"
        print(f"{r['command']:<24} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f} {r['wall_ratio']:>8.2f} "
              f"{r['cpu_ratio']:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
