"""Search latency on stores of 1,000 and 10,000 runs.

For each store size, a store of N runs (16 events each: messages, reasoning, tool calls and
outputs drawn from a vocabulary of shell commands; 1 run in 100 ran ``git reset --hard``) is
written, then measured:

* ``index``: the first search, which folds the lazy full-text index for every run (once);
* ``search`` (warm, median of ``--rounds``): a rare phrase (``git reset --hard``), a common
  word limited to 50 hits, an FTS5 query, and the rare phrase filtered by agent — each through
  :func:`agtrace.eventlog.search`;
* ``cli``: ``agtrace search 'git reset --hard' --json`` as a process, against ``sqlite-utils
  --version`` (the start-up floor of a Python click CLI on this machine), medians;
* the baseline, measured in the same run: a brute-force scan of every event's searchable text
  (read the segments, test the phrase) — what a search costs without the index; and
  :func:`agtrace.eventlog.grep_runs` (the regex mode, which scans).

Printed: medians in ms and the ratio of each warm search to the brute-force scan (lower is
better), and of the CLI to the floor. No budget is asserted (DESIGN.md has none for search).

    python bench/bench_search.py [--sizes 1000,10000] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agtrace.eventlog import (
    MessageAdded,
    PartEnded,
    ReasoningAdded,
    RunEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    grep_runs,
    search,
    searchable_text,
)

COMMANDS = ["pytest -q tests", "git status", "git diff --stat", "ls -la src", "cat src/parser.py",
            "grep -rn TODO src", "python -m build", "git log --oneline -5", "sed -n 1,40p README.md",
            "make test", "npm test", "cargo build --release", "git stash", "git checkout -b fix"]
WORDS = ["the", "parser", "fails", "on", "nested", "brackets", "because", "the", "tokenizer", "drops", "the", "closing", "token", "so", "we", "need", "to", "track", "depth", "and", "emit", "an", "error", "when", "it", "goes", "negative", "then", "rerun", "the", "tests"]


def make_store(root: Path, runs: int, seed: int = 0) -> Store:
    rng = random.Random(seed)
    store = Store(root)
    for i in range(runs):
        w = store.create_run(RunStarted(agent=rng.choice(["claude-code", "codex", "opencode"]),
                                        model="claude-sonnet-4-5"), durability="off", ts=10**18 + i * 10**9)
        for part in range(1, 5):
            w.append(ReasoningAdded(text=" ".join(rng.choices(WORDS, k=30))), part=part)
            cmd = "git reset --hard HEAD~1" if part == 2 and i % 100 == 7 else rng.choice(COMMANDS)
            w.append(ToolCalled(call_id=f"c{part}", tool="Bash", command=cmd), part=part)
            out = "\n".join(f"{rng.choice(WORDS)} {rng.randint(0, 999)} {rng.choice(WORDS)}" for _ in range(12))
            w.append(ToolReturned(call_id=f"c{part}", output=out, exit_code=rng.choice([0, 0, 1])), part=part)
            w.append(PartEnded(part_kind="tool", title=cmd), part=part)
        w.append(MessageAdded(role="assistant", text=" ".join(rng.choices(WORDS, k=40))))
        w.append(RunEnded(status="completed"))
        store.close_writer(w)
    return store


def brute_force(store: Store, query: str) -> int:
    want = re.findall(r"[^\W_]+", query.lower())
    n = 0
    for run_id in store.run_ids():
        for rec in store.read(run_id):
            text = searchable_text(rec.event)
            if text:
                have = re.findall(r"[^\W_]+", text.lower())
                if any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1)):
                    n += 1
    return n


def median_ms(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def process_ms(argv: list[str], rounds: int, env: dict) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench(size: int, rounds: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"bench-search-{size}-"))
    try:
        t = time.perf_counter()
        store = make_store(root / "store", size)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        rare = search(store, "git reset --hard", limit=None)
        index_s = time.perf_counter() - t
        assert len(rare) == size // 100, len(rare)
        out = {"runs": size, "events": size * 18, "write_s": round(write_s, 1), "index_s": round(index_s, 1)}
        out["search_rare_ms"] = median_ms(lambda: search(store, "git reset --hard", limit=None), rounds)
        out["search_common_50_ms"] = median_ms(lambda: search(store, "tokenizer", limit=50), rounds)
        out["search_fts_ms"] = median_ms(lambda: search(store, "nested AND negative", fts=True, limit=50), rounds)
        out["search_rare_agent_ms"] = median_ms(lambda: search(store, "git reset --hard", agent="codex*"), rounds)
        scan_rounds = max(3, rounds // 2)
        out["brute_force_ms"] = median_ms(lambda: brute_force(store, "git reset --hard"), scan_rounds)
        out["grep_ms"] = median_ms(lambda: grep_runs(store, r"git reset --hard", limit=None), scan_rounds)
        store.close()
        env = {"AGTRACE_HOME": str(root / "store"), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
        agtrace = str(Path(sys.executable).with_name("agtrace"))
        floor = str(Path(sys.executable).with_name("sqlite-utils"))
        process_ms([agtrace, "search", "x"], 1, env)  # bytecode caches
        out["floor_ms"] = process_ms([floor, "--version"], rounds, env)
        out["cli_search_ms"] = process_ms([agtrace, "search", "git reset --hard", "--json"], rounds, env)
        for k in ("search_rare_ms", "search_common_50_ms", "search_fts_ms", "search_rare_agent_ms"):
            out[k.replace("_ms", "_vs_scan")] = round(out[k] / out["brute_force_ms"], 4)
        out["cli_vs_floor"] = round(out["cli_search_ms"] / out["floor_ms"], 2)
        return {k: round(v, 1) if isinstance(v, float) and not k.endswith(("_vs_scan", "_vs_floor")) else v
                for k, v in out.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = [bench(int(n), args.rounds) for n in args.sizes.split(",")]
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['runs']:,} runs ({r['events']:,} events): written in {r['write_s']} s, indexed on first search "
              f"in {r['index_s']} s")
        for k in ("search_rare", "search_common_50", "search_fts", "search_rare_agent"):
            print(f"  {k:<20} {r[k + '_ms']:>9.1f} ms median  ({r[k + '_vs_scan']:.4f}x the brute-force scan)")
        print(f"  {'brute-force scan':<20} {r['brute_force_ms']:>9.1f} ms   grep_runs (regex): {r['grep_ms']:.1f} ms")
        print(f"  {'agtrace search (CLI)':<20} {r['cli_search_ms']:>9.1f} ms median  ({r['cli_vs_floor']}x "
              f"sqlite-utils --version: {r['floor_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
