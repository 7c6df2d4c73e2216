"""Bulk export throughput and memory: JSONL and Parquet over a synthetic store.

Builds a store of ``--runs`` runs with ``--events`` events in total (a realistic mix: tool calls
with outputs, messages, usage, lines, part ends; durability "off"), then exports all of it
``--repeat`` times per format, each export in a fresh subprocess so its peak RSS is its own.
Prints the median events/s per format against its budget (PASS/FAIL), the median peak RSS, and
the ratio to a baseline measured in the same run: a plain read of every record
(``Store.read``), which no export can beat.

    python bench/bench_export.py [--events 1000000] [--runs 10] [--repeat 3] [--json]

Budgets (DESIGN.md, 2-core machine): JSONL >= 150,000 events/s, Parquet >= 80,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agtrace.eventlog import (
    LineLogged,
    MessageAdded,
    PartEnded,
    RunEnded,
    RunStarted,
    Store,
    ToolCalled,
    ToolReturned,
    Usage,
    UsageReported,
)

BUDGETS = {"jsonl": 150_000, "parquet": 80_000}


def part_events(part: int) -> list:
    """The 8 events of one synthetic tool part."""
    call = f"call_{part}"
    return [
        MessageAdded(role="assistant", text=f"Running the tests again after the fix for part {part}.", model="gpt-x"),
        ToolCalled(call_id=call, tool="shell", arguments={"cmd": "pytest -q"}, command="pytest -q"),
        LineLogged(stream="stderr", text=f"progress {part}"),
        ToolReturned(call_id=call, tool="shell", status="ok" if part % 5 else "error",
                     output="." * 150 + f"\n{part % 7} failed, 40 passed in 0.{part % 10}s\n",
                     exit_code=0 if part % 5 else 1, duration_ms=812.5),
        UsageReported(usage=Usage(input=1200 + part % 100, output=80, cache_read=600), model="gpt-x",
                      cost_usd=0.0021),
        LineLogged(stream="stdout", text='{"type":"item.completed"}'),
        LineLogged(stream="stderr", text="warning: something"),
        PartEnded(part_kind="tool", title="shell pytest -q", tool="shell", call_id=call, tree_id="a" * 40),
    ]


def build_store(root: Path, events: int, runs: int) -> Store:
    """A store of ``runs`` runs holding about ``events`` events in total."""
    store = Store(root)
    per_run = max(events // runs, 10)
    t0 = time.time_ns()
    for r in range(runs):
        w = store.create_run(RunStarted(agent="bench", model="gpt-x", task_id=f"task-{r % 3}"),
                             durability="off", ts=t0 + r)
        n, part, batch = 1, 0, []
        while n < per_run - 1:
            part += 1
            for ev in part_events(part):
                batch.append((ev, part, t0 + r * 10**9 + n))
                n += 1
            if len(batch) >= 8192:
                w.append_many(batch)
                batch = []
        if batch:
            w.append_many(batch)
        w.append(RunEnded(status="completed"))
        store.close_writer(w)
    return store


CHILD = """
import json, resource, sys, time
from agtrace.eventlog import Store
from agtrace.replay.export import export
store_dir, fmt, out = sys.argv[1:4]
store = Store(store_dir)
ids = store.run_ids()
t = time.perf_counter()
if fmt == "read":
    n = sum(1 for r in ids for _ in store.read(r))
else:
    n = export(store, ids, format=fmt, out=out).events
elapsed = time.perf_counter() - t
print(json.dumps({"events": n, "seconds": elapsed,
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure(store_dir: Path, fmt: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store_dir), fmt, str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="agtrace-bench-export-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        build_store(tmp / "store", args.events, args.runs).close()
        build_s = time.perf_counter() - t
        os.sync()  # the build's dirty pages must not be written back during the measurements
        for fmt in ("read", "jsonl", "parquet"):
            rates, rss = [], []
            for i in range(args.repeat):
                out = tmp / f"out-{fmt}-{i}" / ("export.jsonl" if fmt == "jsonl" else "export")
                m = measure(tmp / "store", fmt, out)
                rates.append(m["events"] / m["seconds"])
                rss.append(m["rss_kib"] / 1024)
                subprocess.run(["rm", "-rf", str(out.parent)], check=False)
            results[fmt] = {"events": m["events"], "events_per_s": statistics.median(rates),
                            "peak_rss_mib": statistics.median(rss), "runs": rates}
    base = results["read"]["events_per_s"]
    ok = True
    lines = [f"store: {results['read']['events']:,} events in {args.runs} runs (built in {build_s:.1f}s); "
             f"medians of {args.repeat}"]
    lines.append(f"  read (baseline)  {base:>12,.0f} events/s  peak RSS {results['read']['peak_rss_mib']:.0f} MiB")
    for fmt, budget in BUDGETS.items():
        r = results[fmt]
        verdict = "PASS" if r["events_per_s"] >= budget else "FAIL"
        ok &= verdict == "PASS"
        r.update(budget=budget, verdict=verdict, ratio_to_read=r["events_per_s"] / base)
        lines.append(f"  {fmt:<16} {r['events_per_s']:>12,.0f} events/s  (budget {budget:,}: {verdict}; "
                     f"{r['ratio_to_read']:.2f}x of a plain read)  peak RSS {r['peak_rss_mib']:.0f} MiB")
    if args.json:
        print(json.dumps({"build_s": build_s, "results": results}, indent=2))
    else:
        print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
