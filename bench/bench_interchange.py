"""Interchange export throughput and memory: ATIF trajectories and OTLP traces (JSON lines file).

Builds the synthetic store of ``bench_export.py`` (tool parts with outputs, messages, usage) as
one long run and as a short one, folds their metrics (a projection the exports read, not part of
the export's cost), then exports each ``--repeat`` times per format, every export in a fresh
subprocess so its peak RSS is its own. Prints medians: events/s against a baseline measured in
the same run (the JSON lines export of the same store), and the peak RSS of the long run against
the short one (memory that grows with the run would show there).

    python bench/bench_interchange.py [--events 200000] [--repeat 3] [--json]

No budget in DESIGN.md covers these formats; the ratios are the figures to watch.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_export import build_store  # noqa: E402

CHILD = """
import json, resource, sys, time
from agtrace.eventlog import Store
from agtrace.replay import export_atif, export_otlp
from agtrace.replay.export import export
store_dir, fmt, out = sys.argv[1:4]
store = Store(store_dir)
ids = store.run_ids()
t = time.perf_counter()
if fmt == "atif":
    n = export_atif(store, ids, out=out).events
elif fmt == "otlp":
    n = export_otlp(store, ids, out=out).events
else:
    n = export(store, ids, format="jsonl", out=out).events
elapsed = time.perf_counter() - t
print(json.dumps({"events": n, "seconds": elapsed, "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

FOLD = """
import sys
from agtrace.eventlog import Store
from agtrace.eventlog import run_metrics
store = Store(sys.argv[1])
for run_id in store.run_ids():
    run_metrics(store, run_id)
"""


def measure(store_dir: Path, fmt: str, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store_dir), fmt, str(out)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="agtrace-bench-interchange-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        for name, events in (("long", args.events), ("short", 800)):
            build_store(tmp / name, events, 1).close()
            subprocess.run([sys.executable, "-c", FOLD, str(tmp / name)], check=True)
        build_s = time.perf_counter() - t
        for fmt in ("jsonl", "atif", "otlp"):
            for name in ("long", "short"):
                rates, rss = [], []
                for i in range(args.repeat):
                    out = tmp / f"out-{name}-{fmt}-{i}" / "export"
                    m = measure(tmp / name, fmt, out)
                    rates.append(m["events"] / m["seconds"])
                    rss.append(m["rss_kib"] / 1024)
                    subprocess.run(["rm", "-rf", str(out.parent)], check=False)
                results[f"{fmt}-{name}"] = {"events": m["events"], "events_per_s": statistics.median(rates),
                                            "peak_rss_mib": statistics.median(rss), "runs": rates}
    base = results["jsonl-long"]["events_per_s"]
    lines = [f"one run of {results['jsonl-long']['events']:,} events (built and folded in {build_s:.1f}s); "
             f"medians of {args.repeat}",
             f"  jsonl (baseline)  {base:>10,.0f} events/s  peak RSS {results['jsonl-long']['peak_rss_mib']:.0f} MiB"]
    for fmt in ("atif", "otlp"):
        long, short = results[f"{fmt}-long"], results[f"{fmt}-short"]
        long.update(ratio_to_jsonl=long["events_per_s"] / base,
                    rss_ratio_to_short_run=long["peak_rss_mib"] / short["peak_rss_mib"])
        lines.append(f"  {fmt:<17} {long['events_per_s']:>10,.0f} events/s  ({long['ratio_to_jsonl']:.2f}x of "
                     f"jsonl)  peak RSS {long['peak_rss_mib']:.0f} MiB ({long['rss_ratio_to_short_run']:.2f}x of a "
                     f"{short['events']:,}-event run's {short['peak_rss_mib']:.0f} MiB)")
    if args.json:
        print(json.dumps({"build_s": build_s, "results": results}, indent=2))
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
