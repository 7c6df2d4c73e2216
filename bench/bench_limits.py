"""What the checks at the door cost: appending with and without ``check_record``.

Every event is range-checked before it gets a seq (``agtrace.eventlog.limit``). This measures,
in one run, the same ≈1.5 KB realistic events of ``bench_eventlog.py`` appended through
``Store`` (``normal`` durability: create, append, close) with the check (as shipped) and with it
replaced by a no-op (the baseline), plus the check alone per event. Medians of ``--repeat`` runs;
the ratio is printed, never asserted.

Usage: python bench/bench_limits.py [--events 50000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eventlog import agtrace_append, make_events  # noqa: E402

from agtrace.eventlog import check_record, writer  # noqa: E402


def _append_eps(work: Path, events, checked: bool) -> float:
    saved = writer.check_record
    if not checked:
        writer.check_record = lambda *args, **kwargs: None
    try:
        root = Path(tempfile.mkdtemp(dir=work))
        seconds, store, _run = agtrace_append(root, events, "normal")
        store.close()
        shutil.rmtree(root)
        return len(events) / seconds
    finally:
        writer.check_record = saved


def _check_us(events) -> float:
    t0 = time.perf_counter()
    for event, part in events:
        check_record(event, None, part)
    return (time.perf_counter() - t0) / len(events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = make_events(args.events)
    work = Path(tempfile.mkdtemp(prefix="agtrace-bench-limits-"))
    try:
        rows = []
        for _ in range(max(3, args.repeat)):
            base = _append_eps(work, events, checked=False)
            checked = _append_eps(work, events, checked=True)
            rows.append((base, checked, _check_us(events)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(r[0] for r in rows)
    checked = statistics.median(r[1] for r in rows)
    result = {"events": args.events, "repeats": len(rows), "append_eps_unchecked": round(base),
              "append_eps_checked": round(checked), "ratio": round(checked / base, 3),
              "check_us_per_event": round(statistics.median(r[2] for r in rows), 3)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"append (normal), {args.events:,} events, median of {len(rows)}:")
    print(f"  without the check (baseline) {base:>12,.0f} events/s")
    print(f"  with the check               {checked:>12,.0f} events/s   ratio {checked / base:.3f}")
    print(f"  the check alone              {result['check_us_per_event']:>12.3f} µs/event")


if __name__ == "__main__":
    main()
